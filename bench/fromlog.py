"""Rebuild the report from the lines a run printed, for a run stopped before its first report
was written: bench/fromlog.py LOG OUT.md "LABEL" "SNAPNEST VERSION" REPS_DONE.
CPU of the limits and rsync's sync time are not in the printed lines ("-" in the table)."""
import re, sys, json
import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report
log, out = sys.argv[1], sys.argv[2]
results = {}
shape = None
line_re = re.compile(r"^\s+(small|large|home)\s+(initial|no-change|churn)\s+(\w+)\s+([\d.]+) s\s+cpu\s+([\d.]+) /\s+([\d.]+) s\s+rss\s+([\d.]+) MB\s+wire\s+([\d.]+) MB\s+disk\s+([\d.]+) MiB\s+(\S*)")
for l in open(log):
    if l.startswith("== trees"):
        shape = eval(l.split(": ", 1)[1])
    m = line_re.match(l)
    if m:
        ds, sc, tool = m.group(1, 2, 3)
        w, cb, cr, rss, wire, disk = map(float, m.group(4, 5, 6, 7, 8, 9))
        results.setdefault(f"{ds}|{sc}|{tool}", []).append({"wall": w, "cpu_box": cb, "cpu_remote": cr, "rss_kib": rss * 1024, "wire": wire * 1e6, "disk_kib": disk * 1024, "ciphers": [m.group(10)]})
    m = re.match(r"^\s+churn (\w+): (\{.*\})", l)
    if m:
        results.setdefault(f"churn|{m.group(1)}", []).append(eval(m.group(2)))
    m = re.match(r"^\s+limit\s+ssh cat (\S+): ([\d.]+) MB/s", l)
    if m:
        results.setdefault(f"limit|ssh cat {m.group(1)}", []).append({"mb_s": float(m.group(2)), "wall": float("nan"), "cpu_box": float("nan"), "cpu_remote": float("nan")})
    m = re.match(r"^\s+limit\s+find ([\d.]+) s, tar stream ([\d.]+) s, cp -al ([\d.]+) s", l)
    if m:
        for k, v in zip(["remote find", "tar stream over ssh", "cp -al"], m.groups()):
            results.setdefault(f"limit|{k}", []).append({"wall": float(v), "cpu_box": float("nan"), "cpu_remote": float("nan")})
    m = re.match(r"^\s+(\d+) (initial|no-change)\s+(\w+)\s+([\d.]+) s\s+rss\s+([\d.]+) MB", l)
    if m:
        results.setdefault(f"scale|{m.group(1)}|{m.group(2)}|{m.group(3)}", []).append({"wall": float(m.group(4)), "rss_kib": float(m.group(5)) * 1024})
env = {"date": sys.argv[3], "cpus": 2, "kernel": "", "load": ["?"], "rsync": "rsync  version 3.5.0  protocol version 32", "ssh": "OpenSSH_9.2p1 Debian-2+deb12u10", "rsnapshot": "1.4.5-1", "snapnest": sys.argv[4], "remote_cpu": "cgroup v1 cpuacct", "shape": shape}
k = {"seed": "20261129", "reps": int(sys.argv[5]), "large_scale": 0.25, "small_files": 100000}
open(out, "w").write(report.markdown(env, k, results, []))
