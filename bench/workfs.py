"""The filesystem the benchmark works on, and how finished trees leave it without taxing the
next measured run.

ext4 without a journal (this VM's root, /dev/vda) will not reuse an inode within 60 s of its
deletion, or within 360 s while its inode-table block is dirty, and a block gets dirty again
as soon as any inode in it is written (fs/ext4/ialloc.c, recently_deleted(), RECENTCY_MIN 60 +
RECENTCY_DIRTY 300). Every create walks past all such inodes of its block group from the
group's start, one buffer-cache lookup each, so the cost of a create grows with what was
deleted in the last minutes. Measured (20,000 small files, initial pull, loop-mounted ext4
images on tmpfs, system CPU of the whole command): snapnest 0.87 s on a fresh no-journal
image, 11.47 s right after deleting one 20,000-file copy, rsync 13.63 s after the same; on a
journaled image 0.97 / 0.92 / 1.52 s. A rename frees no inode, so finished trees are moved
into a trash folder and deleted with the work folder at the very end.
"""

import glob
import os
import shutil
import time

_trash_count = 0


def _mount_of(path):
    """(mount point, fs type, source) of the mount holding `path`, from /proc/self/mountinfo."""
    path = os.path.realpath(path)
    best = ("/", "?", "?")
    for line in open("/proc/self/mountinfo"):
        left, right = line.split(" - ", 1)
        point = left.split()[4].replace("\\040", " ")
        fstype, source = right.split()[:2]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fstype, source)
    return best


def describe(path):
    """One line for the report, e.g. `ext4 on /dev/vda (no journal)` or `tmpfs`."""
    point, fstype, source = _mount_of(path)
    if fstype != "ext4":
        return f"{fstype} at {point}"
    dev = os.path.basename(os.path.realpath(source))
    journal = "journal" if glob.glob(f"/proc/fs/jbd2/{dev}-*") else "no journal"
    return f"ext4 on {source} ({journal}) at {point}"


def defers_deletes(path):
    """Deleting waits until the end everywhere but on tmpfs (where it frees the RAM the next
    trees need and no inode is ever withheld). DEFER_DELETE=0/1 overrides."""
    knob = os.environ.get("DEFER_DELETE")
    if knob is not None:
        return knob == "1"
    return _mount_of(path)[1] != "tmpfs"


def retire(path, work):
    """Take a finished tree out of the next runs' way: moved into `work`/.trash (deleted with
    `work` at the end), or on tmpfs deleted at once, then SETTLE seconds of quiet (default 35:
    what the deletion leaves to write back)."""
    global _trash_count
    if defers_deletes(work):
        _trash_count += 1
        trash = os.path.join(work, ".trash")
        os.makedirs(trash, exist_ok=True)
        os.rename(path, os.path.join(trash, str(_trash_count)))
        os.sync()
        return
    shutil.rmtree(path)
    os.sync()
    time.sleep(float(os.environ.get("SETTLE", "35")))

