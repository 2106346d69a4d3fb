#!/usr/bin/env python3
"""Where does a snapnest run spend its time? Profile one scenario on a seeded tree.

    sudo bench/profile.py [initial|no-change|churn|large-initial|large-churn] [strace|perf|phases|massif|rss]

Builds the small tree (SMALL_FILES, default 100000) or, for large-*, LARGE_COUNT large
files (LARGE_SCALE), starts the private sshd, runs the scenarios before the one asked for
unmeasured, then the asked one under `strace -c -f` (system calls by count and time), `perf
record -g` (report printed, top entries) or `phases` (snapnest's own progress phases with
times, from strace marks) or `massif` (valgrind heap profile). SNAPNEST_BIN profiles that
binary instead of building this checkout (to compare two builds). On ext4 without a journal
(this VM's root) a run within ~6 min of a big deletion (an earlier profile's cleanup, say)
pays 10x system CPU for its creates (bench/workfs.py): profile on tmpfs or a fresh folder.
Not a test, not run by CI."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rig  # noqa: E402
import trees  # noqa: E402
from bench import ROOT, Tools, in_private_netns  # noqa: E402


def phases(trace, t0):
    """Summarise a `strace -ttt -T` log into the run's phases: connect, listing (until the
    first link), linking, fetching (files created in the staging folder), syncfs, rename."""
    first, last, syncfs = {}, {}, 0.0
    start = None
    for line in open(trace):
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        t, rest = float(parts[1]), parts[2]
        start = start or t
        kind = None
        if rest.startswith("connect(") and "AF_INET" in rest:
            kind = "connect"
        elif rest.startswith("linkat("):
            kind = "link"
        elif rest.startswith("openat(") and ".incomplete-" in rest and "O_CREAT" in rest:
            kind = "create"
        elif rest.startswith("syncfs("):
            kind = "syncfs"
            syncfs += float(rest.rsplit("<", 1)[1].rstrip(">\n "))
        elif rest.startswith(("rename(", "renameat2(")) and ".incomplete-" in rest:
            kind = "publish"
        elif rest.startswith("exit_group("):
            kind = "exit"
        if kind:
            first.setdefault(kind, t)
            last[kind] = t
    print("phase marks (s from the first traced call; strace slows system calls):")
    for k in ("connect", "link", "create", "syncfs", "publish", "exit"):
        if k in first:
            print(f"  {k:8} first {first[k] - start:7.2f}  last {last[k] - start:7.2f}")
    print(f"  syncfs took {syncfs:.2f} s")


def main():
    scenario = sys.argv[1] if len(sys.argv) > 1 else "no-change"
    how = sys.argv[2] if len(sys.argv) > 2 else "strace"
    in_private_netns()
    snapnest = os.environ.get("SNAPNEST_BIN")
    if not snapnest:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        snapnest = os.path.join(ROOT, "target", "release", "snapnest")
    w = tempfile.mkdtemp(prefix="snapnest-profile.", dir=os.environ.get("WORK", "/var/tmp"))
    seed = os.environ.get("SEED", "20261129")
    large = scenario.startswith("large-")
    src = os.path.join(w, "src")
    if large:
        trees.make_large(src, int(os.environ.get("LARGE_COUNT", "20")),
                         float(os.environ.get("LARGE_SCALE", "0.25")), seed)
    else:
        trees.make_small(src, int(os.environ.get("SMALL_FILES", "100000")), seed)
    sshd = rig.Sshd(w)
    try:
        tools = Tools(sshd, snapnest, os.path.join(w, "rep"), {"t": src}, False)
        steps = ["initial", "no-change", "churn"]
        wanted = scenario[len("large-"):] if large else scenario
        for step in steps[:steps.index(wanted)]:
            subprocess.run(tools.command("snapnest", "t"), check=True, stdout=subprocess.DEVNULL)
        if wanted == "churn":
            print("churn:", trees.churn(src, seed, 1, large=large,
                                        scale=float(os.environ.get("LARGE_SCALE", "0.25"))))
        os.sync()
        cmd = tools.command("snapnest", "t")
        t0 = time.monotonic()
        if how == "strace":
            subprocess.run(["strace", "-c", "-f", "-o", os.path.join(w, "strace.txt"), *cmd],
                           check=True)
            print(open(os.path.join(w, "strace.txt")).read())
        elif how == "perf":
            data = os.path.join(w, "perf.data")
            subprocess.run(["perf", "record", "-g", "-o", data, "--", *cmd], check=True)
            out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                                  "--percent-limit", os.environ.get("PERF_LIMIT", "1.5"), "-g", "none", *os.environ.get("PERF_ARGS", "").split()],
                                 capture_output=True, text=True).stdout
            print(out[:12000])
        elif how == "rss":
            # Peak RSS of the same scenario, repeated (no-change stays no-change), for each
            # binary in RSS_BINS and each environment in RSS_ENVS ("-" = as is; e.g.
            # MALLOC_MMAP_THRESHOLD_=131072 to see what glibc's heap keeps resident). Wall and
            # CPU seconds too: the binaries alternate, so their ratio is fair on a busy machine.
            # RSS_FRESH=1 with `initial`: each run starts from an empty store.
            bins = os.environ.get("RSS_BINS", snapnest).split()
            envs = os.environ.get("RSS_ENVS", "-").split()
            ru = os.path.join(w, "ru")
            for rep in range(int(os.environ.get("RSS_REPS", "2"))):
                for b in bins:
                    for e in envs:
                        if wanted == "initial" and os.environ.get("RSS_FRESH") == "1":
                            # Every run an initial pull: an empty store each time.
                            shutil.rmtree(tools.store)
                            os.makedirs(tools.store)
                            subprocess.run([b, "--config", tools.cfg, "init"], check=True,
                                           stdout=subprocess.DEVNULL)
                            os.sync()
                        env = dict(os.environ)
                        if e != "-":
                            k, v = e.split("=", 1)
                            env[k] = v
                        subprocess.run(["/usr/bin/time", "-q", "-f", "%M %e %U %S", "-o", ru, b,
                                        *cmd[1:]], check=True, env=env, stdout=subprocess.DEVNULL)
                        kib, wall, user, sys_ = open(ru).read().split()[-4:]
                        cpu = float(user) + float(sys_)
                        print(f"rss {wanted} {os.path.basename(b)} {e}: {int(kib) / 1024:.1f} MB,"
                              f" wall {float(wall):.2f} s, cpu {cpu:.2f} s", flush=True)
        elif how == "massif":
            out = os.path.join(w, "massif.out")
            subprocess.run(["valgrind", "--tool=massif", "--pages-as-heap=no",
                            f"--massif-out-file={out}", *cmd], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            text = subprocess.run(["ms_print", out], capture_output=True, text=True).stdout
            open(os.environ.get("MASSIF_TEXT", os.path.join(w, "massif.txt")), "w").write(text)
            print(text[:3000])
        else:
            trace = os.path.join(w, "phases.txt")
            subprocess.run(["strace", "-f", "-ttt", "-T", "-o", trace, "-e",
                            os.environ.get("TRACE", "trace=connect,linkat,openat,syncfs,rename,renameat2,exit_group"),
                            *cmd], check=True, stdout=subprocess.DEVNULL)
            phases(trace, t0)
        print(f"wall {time.monotonic() - t0:.2f} s ({how}, {wanted})")
    finally:
        sshd.stop()
        if os.environ.get("KEEP") != "1":
            subprocess.run(["rm", "-rf", w])


if __name__ == "__main__":
    main()
