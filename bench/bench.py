#!/usr/bin/env python3
"""snapnest vs rsync --link-dest (and optionally rsnapshot), side by side, same run, same sshd.

    sudo bench/bench.py                      # 100k small files, 20 large (50-200 MiB), home mix
    LARGE_SCALE=0.25 REPS=3 bench/bench.py --out bench/results/today.md

Knobs (environment): SEED=20261129, SMALL_FILES=100000, LARGE_COUNT=20, LARGE_SCALE=1.0
(large sizes times this), HOME_MIX=1, REPS=3, SCALING="10000" (file counts of the scaling run;
100k comes from the main run), SCALE_1M=1 (adds 1,000,000;
SCALE_1M_TOOLS="snapnest" runs only snapnest there), RSNAPSHOT=1 (adds rsnapshot if
installed), SNAPNEST_BIN (use this binary, no build), RSYNC_OLD
(a second rsync binary, e.g. 3.2.7, as its own column), WORK=/var/tmp (the temp folder),
KEEP=1 (keep it), DEFER_DELETE (1 = finished trees wait in WORK/.trash until the end, the
default except on tmpfs: on ext4 without a journal a create right after a big deletion costs
10x, see workfs.py), SETTLE=35 (seconds of quiet after a deletion on tmpfs), CLEAN_LOGIN=1 (hide
root's ~/.bashrc from the remote commands, in a private mount namespace: a heavy one is paid
once per remote command, and snapnest runs 2 + files/20000 of them against rsync's 1).

Runs as root: it re-executes itself in a private network namespace (`unshare --net`) so the
loopback byte counters count only its own traffic; sshd listens on 127.0.0.1 there. Not a
test and not run by CI: it only reports numbers, nothing fails on a timing.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402
import rig  # noqa: E402
import trees  # noqa: E402
import workfs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIND_FORMAT = r"%y\0%m\0%s\0%T@\0%U\0%G\0%p\0%l\0"
CIPHERS = ["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]


def env_int(name, default):
    return int(os.environ.get(name, default))


def knobs():
    return {
        "seed": os.environ.get("SEED", "20261129"),
        "small_files": env_int("SMALL_FILES", 100000),
        "large_count": env_int("LARGE_COUNT", 20),
        "large_scale": float(os.environ.get("LARGE_SCALE", "1.0")),
        "home": env_int("HOME_MIX", 1) == 1,
        "reps": env_int("REPS", 3),
        "scaling": [int(x) for x in os.environ.get("SCALING", "10000").split()]
        + ([1000000] if env_int("SCALE_1M", 0) == 1 else []),
        "rsnapshot": env_int("RSNAPSHOT", 0) == 1 and shutil.which("rsnapshot") is not None,
    }


def in_private_netns():
    if os.environ.get("SNAPNEST_BENCH_NETNS") == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        rc = os.path.expanduser("~root/.bashrc")
        if os.environ.get("CLEAN_LOGIN") == "1" and os.path.exists(rc):
            # Debian's bash reads ~/.bashrc for every command sshd runs; a heavy one (pyenv
            # init: ~0.3-0.8 s here) is paid once per remote command. Hidden in this
            # namespace only: nothing changes for the rest of the machine.
            subprocess.run(["mount", "--bind", "/dev/null", rc], check=True)
        return
    if os.geteuid() != 0:
        sys.exit("bench.py: run as root (private network namespace, sshd, root login by key)")
    env = dict(os.environ, SNAPNEST_BENCH_NETNS="1")
    os.execvpe("unshare", ["unshare", "--net", "--mount", "--propagation", "private",
                           sys.executable, *sys.argv], env)


class Tools:
    """The commands under test, per dataset: snapnest (one config, one host per dataset),
    rsync -a --delete --link-dest into numbered copies, rsnapshot with link_dest."""

    def __init__(self, sshd, snapnest, rep_dir, sources, use_rsnapshot):
        self.sshd, self.snapnest, self.rep_dir, self.sources = sshd, snapnest, rep_dir, sources
        self.store = os.path.join(rep_dir, "snapnest")
        os.makedirs(self.store)
        self.cfg = os.path.join(rep_dir, "snapnest.toml")
        with open(self.cfg, "w") as f:
            f.write(f'[storage]\npath = "{self.store}"\n')
            for ds, src in sources.items():
                f.write(f'\n[[host]]\nname = "bench-{ds}"\naddress = "127.0.0.1"\n'
                        f'port = {sshd.port}\nuser = "root"\nidentity = "{sshd.key}"\n'
                        f'host_key = "{sshd.fingerprint}"\nfolders = ["{src}"]\n')
        subprocess.run([snapnest, "--config", self.cfg, "init"], check=True,
                       stdout=subprocess.DEVNULL)
        self.copies = {(t, ds): 0 for t in ("rsync", "rsync-old") for ds in sources}
        # RSYNC_OLD: a second rsync binary (e.g. 3.2.7 unpacked from its .deb), run on both
        # ends, in its own column.
        self.rsync_old = os.environ.get("RSYNC_OLD")
        self.names = (["snapnest", "rsync"] + (["rsync-old"] if self.rsync_old else [])
                      + (["rsnapshot"] if use_rsnapshot else []))
        if use_rsnapshot:
            self.rsnap_cfg = {ds: self._rsnapshot_config(ds, src) for ds, src in sources.items()}

    def _rsnapshot_config(self, ds, src):
        root = os.path.join(self.rep_dir, "rsnapshot", ds)
        os.makedirs(root)
        path = os.path.join(self.rep_dir, f"rsnapshot-{ds}.conf")
        ssh_args = " ".join(self.sshd.ssh_cmd()[1:])
        lines = [("config_version", "1.2"), ("snapshot_root", root + "/"),
                 ("cmd_cp", "/bin/cp"), ("cmd_rm", "/bin/rm"), ("cmd_rsync", "/usr/bin/rsync"),
                 ("cmd_ssh", "/usr/bin/ssh"), ("ssh_args", ssh_args), ("retain", "alpha\t30"),
                 ("link_dest", "1"), ("verbose", "1"),
                 ("lockfile", os.path.join(self.rep_dir, f"rsnapshot-{ds}.pid")),
                 ("backup", f"root@127.0.0.1:{src}/\tbench/")]
        with open(path, "w") as f:
            f.writelines(f"{k}\t{v}\n" for k, v in lines)
        return path

    def command(self, tool, ds):
        src = self.sources[ds]
        if tool == "snapnest":
            return [self.snapnest, "--config", self.cfg, "backup", f"bench-{ds}"]
        if tool in ("rsync", "rsync-old"):
            n = self.copies[(tool, ds)] = self.copies[(tool, ds)] + 1
            dest = os.path.join(self.rep_dir, tool, ds, str(n))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            link = [f"--link-dest=../{n - 1}"] if n > 1 else []
            binary = ["rsync"] if tool == "rsync" else [self.rsync_old,
                                                         f"--rsync-path={self.rsync_old}"]
            return [*binary, "-a", "--delete", *link, "-e", " ".join(self.sshd.ssh_cmd()),
                    f"root@127.0.0.1:{src}/", dest + "/"]
        return ["rsnapshot", "-c", self.rsnap_cfg[ds], "alpha"]

    def snapshots(self, tool, ds):
        """Published snapshots (oldest first) and the copy of the source inside the newest."""
        src = self.sources[ds]
        if tool == "snapnest":
            d = os.path.join(self.store, f"bench-{ds}")
            snaps = sorted(os.path.join(d, n) for n in os.listdir(d) if n[:2] == "20")
            return snaps, snaps[-1] + src
        if tool in ("rsync", "rsync-old"):
            d = os.path.join(self.rep_dir, tool, ds)
            snaps = [os.path.join(d, str(i)) for i in range(1, self.copies[(tool, ds)] + 1)]
            return snaps, snaps[-1]
        d = os.path.join(self.rep_dir, "rsnapshot", ds)
        snaps = sorted((os.path.join(d, n) for n in os.listdir(d) if n.startswith("alpha.")),
                       key=lambda p: -int(p.rsplit(".", 1)[1]))
        return snaps, snaps[-1] + "/bench" + src

    def disk_kib(self, tool, ds):
        """What the newest snapshot adds on disk (du, hard links counted once). snapnest's
        catalog (per-file manifest) growth is included."""
        snaps, _ = self.snapshots(tool, ds)
        figures = rig.du_kib(snaps)
        return figures[-1]


def catalog_kib(store):
    return rig.du_kib([os.path.join(store, ".snapnest")])[0]


def verify(label, copy, source, problems, checksum):
    """Same names, types, modes, owners, mtimes, symlink targets; content by checksum when
    `checksum` (the last rep), else by size and mtime."""
    flags = "-anic" if checksum else "-ani"
    out = subprocess.run(["rsync", flags, "--delete", source + "/", copy + "/"],
                         capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line and line != ".d..t...... ./"]
    if out.returncode != 0 or lines:
        problems.append(f"verify {label}: differs from the source: {lines[:5]} {out.stderr[:200]}")
        print(f"   !! {label} differs from the source", file=sys.stderr)
    else:
        print(f"   verified {label}")


def run_rep(rep, k, w, sshd, snapnest, sources, results, problems):
    rep_dir = os.path.join(w, f"rep{rep}")
    os.makedirs(rep_dir)
    tools = Tools(sshd, snapnest, rep_dir, sources, k["rsnapshot"])
    order = tools.names if rep % 2 == 1 else list(reversed(tools.names))
    m = rig.Measure(sshd, os.path.join(w, "log"))
    print(f"== rep {rep}/{k['reps']}: order {' then '.join(order)}", flush=True)

    def one(ds, scenario):
        for tool in order:
            cat0 = catalog_kib(tools.store) if tool == "snapnest" else 0
            r = m.run(f"r{rep}-{ds}-{scenario}-{tool}", tools.command(tool, ds))
            if r["rc"] != 0 and not (tool == "snapnest" and r["rc"] == 1):
                problems.append(f"{ds}/{scenario}/{tool} rep {rep}: exit {r['rc']}, see {r['log']}")
            r["disk_kib"] = tools.disk_kib(tool, ds)
            if tool == "snapnest":
                r["disk_kib"] += catalog_kib(tools.store) - cat0
            if tool.startswith("rsync"):
                r["sync_after"] = rig.timed(["sync"])
            results.setdefault(f"{ds}|{scenario}|{tool}", []).append(r)
            print(f"   {ds:6} {scenario:9} {tool:9} {r['wall']:7.2f} s  cpu {r['cpu_box']:6.2f}"
                  f" / {r['cpu_remote']:6.2f} s  rss {r['rss_kib'] / 1024:6.1f} MB  wire"
                  f" {r['wire'] / 1e6:8.1f} MB  disk {r['disk_kib'] / 1024:8.1f} MiB"
                  f"  {' '.join(r['ciphers'])}", flush=True)

    for ds in sources:
        one(ds, "initial")
        one(ds, "no-change")
    for ds, src in sources.items():
        c = trees.churn(src, k["seed"], rep, large=(ds == "large"), scale=k["large_scale"])
        results.setdefault(f"churn|{ds}", []).append(c)
        print(f"   churn {ds}: {c}", flush=True)
        one(ds, "churn")
    for ds, src in sources.items():
        for tool in tools.names:
            verify(f"{ds} {tool} rep {rep}", tools.snapshots(tool, ds)[1], src, problems,
                   rep == k["reps"])
    limits(rep, w, sshd, m, sources, tools, results)
    if rep < k["reps"]:
        workfs.retire(rep_dir, w)


def limits(rep, w, sshd, m, sources, tools, results):
    """What the machine allows, measured between the tools' runs in the same rep."""
    if "large" in sources:
        files = trees.regular_files(sources["large"])
        size = sum(os.path.getsize(p) for p in files)
        for c in CIPHERS:
            r = m.run(f"r{rep}-cat-{c}", sshd.ssh_cmd(c) + ["root@127.0.0.1", "cat", *files],
                      sync=False, stdout=subprocess.DEVNULL)
            r["mb_s"] = size / 1e6 / r["wall"]
            results.setdefault(f"limit|ssh cat {c}", []).append(r)
            print(f"   limit  ssh cat {c}: {r['mb_s']:.0f} MB/s", flush=True)
    if "small" in sources:
        src = sources["small"]
        r = m.run(f"r{rep}-find", sshd.ssh_cmd() + ["root@127.0.0.1",
                  f"find {src} -printf '{FIND_FORMAT}' >/dev/null"])
        results.setdefault("limit|remote find", []).append(r)
        dest = os.path.join(w, "tar-limit")
        os.makedirs(dest)
        r = m.run(f"r{rep}-tar", ["sh", "-c", " ".join(sshd.ssh_cmd()) +
                  f" root@127.0.0.1 'tar -C {src} -cf - .' | tar -C {dest} -xf -"])
        results.setdefault("limit|tar stream over ssh", []).append(r)
        workfs.retire(dest, w)
        copy = os.path.join(w, "cpal-limit")
        r = m.run(f"r{rep}-cpal", ["cp", "-al", tools.snapshots("rsync", "small")[0][0], copy])
        results.setdefault("limit|cp -al", []).append(r)
        workfs.retire(copy, w)
        print("   limit  find {:.2f} s, tar stream {:.2f} s, cp -al {:.2f} s".format(
            *(results[x][-1]["wall"] for x in
              ("limit|remote find", "limit|tar stream over ssh", "limit|cp -al"))), flush=True)


def scaling(k, w, sshd, snapnest, results, counts):
    """snapnest and rsync at other file counts: initial and no-change, alternating."""
    for n in counts:
        if n == k["small_files"]:
            continue
        src = os.path.join(w, "src-scale", f"n{n}")
        t0 = time.monotonic()
        trees.make_small(src, n, k["seed"])
        print(f"== scaling: {n} files ({time.monotonic() - t0:.0f} s to make)", flush=True)
        rep_dir = os.path.join(w, f"scale{n}")
        os.makedirs(rep_dir)
        tools = Tools(sshd, snapnest, rep_dir, {"small": src}, False)
        m = rig.Measure(sshd, os.path.join(w, "log"))
        # SCALE_1M_TOOLS: which tools run at 1M files. Each tool's initial pull is another
        # full copy of the tree (~6.5 GB on tmpfs at 1M), so "snapnest" alone fits where
        # three copies do not.
        names = tools.names
        if n >= 1000000:
            wanted = os.environ.get("SCALE_1M_TOOLS", " ".join(names)).split()
            names = [t for t in names if t in wanted]
        for scenario in ("initial", "no-change"):
            for tool in names:
                r = m.run(f"scale{n}-{scenario}-{tool}", tools.command(tool, "small"))
                results.setdefault(f"scale|{n}|{scenario}|{tool}", []).append(r)
                print(f"   {n:8} {scenario:9} {tool:9} {r['wall']:7.2f} s  rss"
                      f" {r['rss_kib'] / 1024:6.1f} MB", flush=True)
        workfs.retire(rep_dir, w)
        workfs.retire(src, w)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="also write the markdown report here")
    args = ap.parse_args()
    in_private_netns()
    k = knobs()
    snapnest = os.environ.get("SNAPNEST_BIN")
    if not snapnest:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        snapnest = os.path.join(target, "release", "snapnest")
    w = tempfile.mkdtemp(prefix="snapnest-bench.", dir=os.environ.get("WORK", "/var/tmp"))
    os.makedirs(os.path.join(w, "log"))
    sshd = None
    try:
        sources = {}
        t0 = time.monotonic()
        if k["small_files"] > 0:
            sources["small"] = os.path.join(w, "src", "small")
            trees.make_small(sources["small"], k["small_files"], k["seed"])
        if k["large_count"] > 0:
            sources["large"] = os.path.join(w, "src", "large")
            trees.make_large(sources["large"], k["large_count"], k["large_scale"], k["seed"])
        if k["home"]:
            sources["home"] = os.path.join(w, "src", "home")
            trees.make_home(sources["home"], k["seed"])
        os.sync()
        shape = {ds: report.tree_shape(src) for ds, src in sources.items()}
        print(f"== trees in {w}/src ({time.monotonic() - t0:.0f} s): {shape}", flush=True)
        sshd = rig.Sshd(w)
        print(f"== sshd 127.0.0.1:{sshd.port}, remote CPU via {sshd.cgroup.kind}", flush=True)
        print(f"== work folder on {workfs.describe(w)}; finished trees"
              f" {'wait in .trash' if workfs.defers_deletes(w) else 'are deleted at once'}",
              flush=True)
        results, problems = {}, []

        def write_report(done):
            """After every rep: a run stopped early still leaves the medians of what it did."""
            env = report.environment(ROOT, snapnest, sshd, dict(k, reps_done=done), shape)
            env["work_fs"] = workfs.describe(w)
            md = report.markdown(env, dict(k, reps=done), results, problems)
            if args.out:
                with open(args.out, "w") as f:
                    f.write(md)
                with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
                    json.dump({"env": env, "knobs": k, "results": results,
                               "problems": problems}, f, indent=1, default=str)
            return md

        # The scaling run first: short, and its numbers do not need the medians. 1M files
        # last: it takes long, and a run stopped there keeps everything else.
        scaling(k, w, sshd, snapnest, results, [n for n in k["scaling"] if n < 1000000])
        md = write_report(0)
        for rep in range(1, k["reps"] + 1):
            run_rep(rep, k, w, sshd, snapnest, sources, results, problems)
            md = write_report(rep)
        if any(n >= 1000000 for n in k["scaling"]):
            scaling(k, w, sshd, snapnest, results, [n for n in k["scaling"] if n >= 1000000])
            md = write_report(k["reps"])
        print()
        print(md)
        return 1 if problems else 0
    finally:
        if sshd:
            sshd.stop()
        if os.environ.get("KEEP") == "1":
            print(f"kept {w}")
        else:
            shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
