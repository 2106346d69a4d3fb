#!/usr/bin/env python3
"""What a snapnest run costs in memory with almost no files: the fixed floor under peak RSS.

    sudo bench/floor.py

Makes a small tree (FLOOR_FILES, default 300), pulls it once over the private sshd, then runs
the no-change pull twice: once under GNU time (peak RSS), once under gdb stopped at the run's
`syncfs` (everything is loaded and the manifest written) to read /proc/PID/smaps and sum the
resident memory per mapping: the binary's code and data, each shared library, the heap,
anonymous maps (large allocations), stacks. SNAPNEST_BIN picks the binary (else this checkout
is built). Not a test, not run by CI."""

import collections
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rig  # noqa: E402
import trees  # noqa: E402
from bench import ROOT, Tools, in_private_netns  # noqa: E402

GDB_SCRIPT = """
set pagination off
set confirm off
catch syscall syncfs
run
python
import collections, gdb
pid = gdb.selected_inferior().pid
rss = collections.OrderedDict()
name = None
for line in open(f"/proc/{pid}/smaps"):
    parts = line.split()
    if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
        name = parts[5] if len(parts) > 5 else "[anonymous]"
    elif parts[0] == "Rss:":
        rss[name] = rss.get(name, 0) + int(parts[1])
print("SMAPS-BEGIN")
for k, v in sorted(rss.items(), key=lambda kv: -kv[1]):
    print(f"{v} {k}")
print("SMAPS-END")
print(open(f"/proc/{pid}/status").read())
end
kill
quit
"""


def main():
    in_private_netns()
    snapnest = os.environ.get("SNAPNEST_BIN")
    if not snapnest:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        snapnest = os.path.join(ROOT, "target", "release", "snapnest")
    w = tempfile.mkdtemp(prefix="snapnest-floor.", dir=os.environ.get("WORK", "/var/tmp"))
    src = os.path.join(w, "src")
    trees.make_small(src, int(os.environ.get("FLOOR_FILES", "300")), "20261129")
    sshd = rig.Sshd(w)
    try:
        tools = Tools(sshd, snapnest, os.path.join(w, "rep"), {"t": src}, False)
        cmd = tools.command("snapnest", "t")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        ru = os.path.join(w, "ru")
        subprocess.run(["/usr/bin/time", "-q", "-f", "%M", "-o", ru, *cmd], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"peak RSS (GNU time, no-change): {int(open(ru).read().split()[-1]) / 1024:.1f} MB")
        gdbs = os.path.join(w, "gdb.cmd")
        open(gdbs, "w").write(GDB_SCRIPT)
        out = subprocess.run(["gdb", "-q", "-batch", "-x", gdbs, "--args", *cmd],
                             capture_output=True, text=True).stdout
        body = out.split("SMAPS-BEGIN")[1].split("SMAPS-END")
        rows = [line.split(" ", 1) for line in body[0].strip().splitlines()]
        groups = collections.Counter()
        for kib, name in rows:
            key = os.path.basename(name) if name.startswith("/") else name
            groups[key] += int(kib)
        print("resident at syncfs, by mapping (KiB):")
        for name, kib in groups.most_common():
            if kib:
                print(f"  {kib:7d}  {name}")
        print(f"  {sum(groups.values()):7d}  total")
        for line in body[1].splitlines():
            if line.startswith(("VmHWM", "VmRSS", "RssAnon", "RssFile")):
                print("  " + line)
    finally:
        sshd.stop()
        if os.environ.get("KEEP") != "1":
            subprocess.run(["rm", "-rf", w])


if __name__ == "__main__":
    main()
