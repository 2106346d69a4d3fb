"""The markdown report: medians over repetitions, snapnest/rsync ratios, the machine's limits,
the scaling run, and each target of issue 9 marked met or missed."""

import os
import platform
import statistics
import subprocess
import time

FIELDS = [("wall", "wall s", 1, "{:.2f}"), ("cpu_box", "CPU box s", 1, "{:.2f}"),
          ("cpu_remote", "CPU remote s", 1, "{:.2f}"), ("rss_kib", "peak RSS MB", 1024, "{:.1f}"),
          ("wire", "wire MB", 1e6, "{:.1f}"), ("disk_kib", "disk MiB", 1024, "{:.1f}")]


def tree_shape(root):
    files = dirs = links = size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirs += 1
        for n in filenames:
            p = os.path.join(dirpath, n)
            if os.path.islink(p):
                links += 1
            else:
                files += 1
                size += os.path.getsize(p)
        links += sum(1 for d in dirnames if os.path.islink(os.path.join(dirpath, d)))
    return {"files": files, "dirs": dirs, "symlinks": links, "MiB": round(size / 2**20)}


def _out(cmd, cwd=None):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd).stdout.strip()
    except OSError:
        return "?"


def environment(root, snapnest, sshd, k, shape):
    dirty = _out(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"], root)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "load": open("/proc/loadavg").read().split()[:3],
        "rsync": _out(["rsync", "--version"]).splitlines()[0],
        "ssh": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip(),
        "rsync_old": _out([os.environ["RSYNC_OLD"], "--version"]).splitlines()[0]
        if os.environ.get("RSYNC_OLD") else "",
        "rsnapshot": _out(["dpkg-query", "-W", "-f", "${Version}", "rsnapshot"]) or "not installed",
        "snapnest": _out([snapnest, "--version"]) + ", commit " + _out(
            ["git", "rev-parse", "--short", "HEAD"], root) + (" + uncommitted src changes" if dirty else ""),
        "remote_cpu": sshd.cgroup.kind,
        "shape": shape,
    }


def med(rows, field):
    vals = [r[field] for r in rows if field in r]
    return statistics.median(vals) if vals else float("nan")


def ratio(a, b):
    if b and b == b and a == a:
        return a / b
    return float("nan")


def fmt_num(x):
    return "-" if x != x else f"{x:.2f}"


def fmt_ratio(x):
    return "-" if x != x else f"{x:.2f}"


def markdown(env, k, results, problems):
    out = []
    w = out.append
    w(f"# snapnest benchmark, {env['date']}\n")
    w(f"- machine: {env['cpus']} CPUs, kernel {env['kernel']}, load at the end {' '.join(env['load'])}"
      " (shared with other builders: absolute times are noisy, the tools alternate so ratios are fair)")
    w(f"- **{env['rsync']}**; {env['ssh']}; rsnapshot {env['rsnapshot']}")
    if env.get("rsync_old"):
        w(f"- column `rsync-old`: **{env['rsync_old']}** ({os.environ.get('RSYNC_OLD')}, both ends)")
    w(f"- snapnest {env['snapnest']} (release build)")
    if env.get("work_fs"):
        w(f"- trees and snapshots on {env['work_fs']}")
    w(f"- seed {k['seed']}, {k['reps']} repetitions (medians shown), large-file scale {k['large_scale']}")
    for ds, s in env["shape"].items():
        w(f"- tree `{ds}`: {s['files']} files, {s['dirs']} folders, {s['symlinks']} symlinks, {s['MiB']} MiB")
    churn = {ds: results.get(f"churn|{ds}", [{}])[0] for ds in env["shape"]}
    w(f"- churn per rep (day): {churn}")
    w("- measures: wall; CPU box = user+sys of the command and all it waited for (ssh client"
      " included); CPU remote = the private sshd's cgroup (" + env["remote_cpu"] + "), so sshd"
      " crypto + find/tar/rsync server; peak RSS = largest single local process; wire = bytes"
      " on the private namespace's loopback (both directions, TCP/IP headers in); disk = du of"
      " the new snapshot after the older ones (hard links once), snapnest's catalog growth"
      " included. `sync` before every run; snapnest syncfs()es inside its time, rsync never"
      " syncs (a `sync` after it is listed as 'rsync+sync').\n")

    tools = ["snapnest", "rsync", "rsync-old", "rsnapshot"]
    w("## Scenarios (medians; ×rsync = tool / rsync)\n")
    head = "| tree | scenario | tool | " + " | ".join(f"{h} | ×rsync" for _, h, _, _ in FIELDS) + " |"
    w(head)
    w("|" + "---|" * (3 + 2 * len(FIELDS)))
    for ds in env["shape"]:
        for sc in ("initial", "no-change", "churn"):
            base = results.get(f"{ds}|{sc}|rsync", [])
            for t in tools:
                rows = results.get(f"{ds}|{sc}|{t}")
                if not rows:
                    continue
                cells = []
                for f, _, div, fm in FIELDS:
                    v = med(rows, f)
                    cells.append(fm.format(v / div))
                    cells.append(fmt_ratio(ratio(v, med(base, f))))
                w(f"| {ds} | {sc} | {t} | " + " | ".join(cells) + " |")
            if base and med(base, "sync_after") == med(base, "sync_after"):
                w(f"| {ds} | {sc} | rsync+sync | {med(base, 'wall') + med(base, 'sync_after'):.2f} |"
                  + " |" * (2 * len(FIELDS) - 1))
    w("")

    w("## Limits of this machine (same run, medians)\n")
    w("| limit | wall s | MB/s | CPU box s | CPU remote s |")
    w("|---|---|---|---|---|")
    for key in sorted(x for x in results if x.startswith("limit|")):
        rows = results[key]
        mbs = f"{med(rows, 'mb_s'):.0f}" if "mb_s" in rows[0] else ""
        cells = [fmt_num(med(rows, f)) for f in ("wall", "cpu_box", "cpu_remote")]
        w(f"| {key[6:]} | {cells[0]} | {mbs} | {cells[1]} | {cells[2]} |")
    sn_ciphers = sorted({c for key, rows in results.items() if key.endswith("|snapnest")
                         for r in rows for c in r.get("ciphers", [])})
    rs_ciphers = sorted({c for key, rows in results.items() if key.endswith("|rsync")
                         for r in rows for c in r.get("ciphers", [])})
    w(f"\nCipher negotiated: snapnest (libssh2) {', '.join(sn_ciphers) or '?'}; rsync (OpenSSH) {', '.join(rs_ciphers) or '?'}.\n")

    w("## Scaling (snapnest and rsync, one run each; 100k from the medians above)\n")
    w("| files | scenario | snapnest s | rsync s | ×rsync | snapnest RSS MB | rsync RSS MB | ×rsync |")
    w("|---|---|---|---|---|---|---|---|")
    counts = sorted({int(x.split("|")[1]) for x in results if x.startswith("scale|")} | {k["small_files"]})
    for n in counts:
        for sc in ("initial", "no-change"):
            pre = f"scale|{n}|{sc}|" if n != k["small_files"] else f"small|{sc}|"
            sn, rs = results.get(pre + "snapnest"), results.get(pre + "rsync")
            if not sn:
                continue
            if not rs:  # SCALE_1M_TOOLS left rsync out
                w(f"| {n} | {sc} | {med(sn, 'wall'):.2f} | not run | | {med(sn, 'rss_kib') / 1024:.1f} | not run | |")
                continue
            w(f"| {n} | {sc} | {med(sn, 'wall'):.2f} | {med(rs, 'wall'):.2f} |"
              f" {fmt_ratio(ratio(med(sn, 'wall'), med(rs, 'wall')))} | {med(sn, 'rss_kib') / 1024:.1f} |"
              f" {med(rs, 'rss_kib') / 1024:.1f} | {fmt_ratio(ratio(med(sn, 'rss_kib'), med(rs, 'rss_kib')))} |")
    w("")

    w("## Targets of issue 9\n")
    w("| target | measured | verdict |")
    w("|---|---|---|")
    for name, measured, ok in targets(env, k, results, sn_ciphers):
        verdict = "not measured" if ok is None else ("**met**" if ok else "**missed**")
        w(f"| {name} | {measured} | {verdict} |")
    if problems:
        w("\n## Problems\n")
        for p in problems:
            w(f"- {p}")
    return "\n".join(out) + "\n"


def targets(env, k, results, sn_ciphers):
    def wr(ds, sc):
        return ratio(med(results.get(f"{ds}|{sc}|snapnest", []), "wall"),
                     med(results.get(f"{ds}|{sc}|rsync", []), "wall"))

    def wr_old(sc):
        return ratio(med(results.get(f"small|{sc}|snapnest", []), "wall"),
                     med(results.get(f"small|{sc}|rsync-old", []), "wall"))

    t = []
    for sc, limit in (("no-change", 0.2), ("initial", 0.35), ("churn", 0.3)):
        r = wr("small", sc)
        t.append((f"{sc}, {k['small_files']} small files: ≤ {limit}× rsync wall",
                  f"{fmt_ratio(r)}×", None if r != r else r <= limit))
        r = wr_old(sc)
        if r == r:
            t.append((f"{sc}, {k['small_files']} small files: ≤ {limit}× rsync-old wall",
                      f"{fmt_ratio(r)}×", r <= limit))
    large = results.get("large|initial|snapnest")
    if large:
        mib = env["shape"]["large"]["MiB"]
        # The tree grows with each rep's appends; the initial pull of rep 1 saw the original.
        sizes = mib * 2**20
        sn_mbs = statistics.median(sizes / 1e6 / r["wall"] for r in large)
        cipher = sn_ciphers[0] if len(sn_ciphers) == 1 else None
        cat = results.get(f"limit|ssh cat {cipher}") if cipher else None
        if cat:
            lim = med(cat, "mb_s")
            t.append((f"initial pull of large files: ≥ 0.9× `ssh cat` ({cipher})",
                      f"{sn_mbs:.0f} MB/s vs {lim:.0f} MB/s = {sn_mbs / lim:.2f}×", sn_mbs / lim >= 0.9))
        else:
            t.append(("initial pull of large files: ≥ 0.9× `ssh cat` of the same cipher",
                      f"{sn_mbs:.0f} MB/s, cipher {sn_ciphers} not among those measured", None))
    sn, rs = results.get("large|churn|snapnest"), results.get("large|churn|rsync")
    if sn and rs:
        r = ratio(med(sn, "wire"), med(rs, "wire"))
        t.append(("appended large files: bytes over the wire ≤ 2× rsync",
                  f"{med(sn, 'wire') / 1e6:.1f} MB vs {med(rs, 'wire') / 1e6:.1f} MB = {r:.2f}×", r <= 2))
    sn_peak = max((med(results.get(f"small|{sc}|snapnest", []), "rss_kib") for sc in
                   ("initial", "no-change", "churn")), default=float("nan"))
    rs_peak = max((med(results.get(f"small|{sc}|rsync", []), "rss_kib") for sc in
                   ("initial", "no-change", "churn")), default=float("nan"))
    r = ratio(sn_peak, rs_peak)
    t.append((f"peak RSS at {k['small_files']} files ≤ 0.5× rsync's receiver",
              f"{sn_peak / 1024:.1f} MB vs {rs_peak / 1024:.1f} MB = {fmt_ratio(r)}×",
              None if r != r else r <= 0.5))
    def peak(pre):
        rows = [med(results[pre + sc + "|snapnest"], "rss_kib") for sc in ("initial", "no-change")
                if results.get(pre + sc + "|snapnest")]
        return max(rows) if rows else None

    big = peak("scale|1000000|")
    base = peak("small|") if k["small_files"] == 100000 else None
    if big and base:
        g = big / base
        t.append(("peak RSS growth 100k → 1M files < 2× (initial and no-change)",
                  f"{big / 1024:.1f} MB / {base / 1024:.1f} MB = {g:.2f}×", g < 2))
    else:
        t.append(("peak RSS growth 100k → 1M files < 2×", "1M run not done (SCALE_1M=1)", None))
    return t
