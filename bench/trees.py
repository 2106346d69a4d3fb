"""Deterministic benchmark trees and their "day of churn", all derived from one seed.

Same seed, same knobs -> the same names, sizes, bytes, modes and mtimes (git objects too:
authors and dates are fixed). Nothing here measures anything.
"""

import os
import random
import subprocess

MIB = 1 << 20
# All mtimes are fixed relative to this (2026-11-01 00:00 UTC), so trees are byte-identical.
BASE_TIME = 1793491200


class Pool:
    """Incompressible bytes from the seed; files are slices of it (distinct offsets)."""

    def __init__(self, rng, size=64 * MIB):
        self.data = rng.randbytes(size)
        self.rng = rng

    def take(self, size):
        if size <= 0:
            return b""
        out = []
        while size > 0:
            n = min(size, len(self.data) // 2)
            off = self.rng.randrange(0, len(self.data) - n)
            out.append(self.data[off:off + n])
            size -= n
        return b"".join(out)


def _write(path, data, mtime, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))


def small_size(rng):
    """Small files as in the issue's reference tree: 10% < 64 B, 60% < 4 KiB, 30% < 16 KiB."""
    r = rng.random()
    if r < 0.10:
        return rng.randrange(0, 64)
    if r < 0.70:
        return rng.randrange(64, 4096)
    return rng.randrange(4096, 16385)


def doc_size(rng):
    """Home-folder documents: mostly small, 5% up to 256 KiB, 3% of 1-5 MiB."""
    r = rng.random()
    if r < 0.92:
        return small_size(rng)
    if r < 0.97:
        return rng.randrange(16384, 262144)
    return rng.randrange(1, 6) * MIB


def make_small(root, files, seed, per_dir=25):
    """`files` small files in deep folders: folder k lives at d<digits of k in base 6>,
    five levels deep (6^5 = 7776 leaf folders at most), ~25 files each."""
    rng = random.Random(f"{seed}/small/{files}")
    pool = Pool(rng)
    os.makedirs(root, exist_ok=True)
    folders = (files + per_dir - 1) // per_dir
    width = 1
    while 6 ** width < folders:
        width += 1
    width = max(width, 5)
    made = set()
    for i in range(files):
        k = i // per_dir
        digits = []
        for _ in range(width):
            digits.append(k % 6)
            k //= 6
        d = os.path.join(root, *[f"d{x}" for x in digits])
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)
        name = f"file-{i:07d}" + rng.choice([".txt", ".dat", ".json", "", ".c", ".jpg"])
        _write(os.path.join(d, name), pool.take(small_size(rng)),
               BASE_TIME + rng.randrange(0, 86400 * 300),
               rng.choice([0o644, 0o644, 0o644, 0o600, 0o755]))
    _fix_dir_times(root)


def large_sizes(count, scale, seed):
    rng = random.Random(f"{seed}/large-sizes")
    return [max(1, int(rng.randrange(50, 201) * MIB * scale)) for _ in range(count)]


def make_large(root, count, scale, seed):
    """`count` large files of 50-200 MiB each, times `scale`."""
    rng = random.Random(f"{seed}/large")
    pool = Pool(rng)
    os.makedirs(root, exist_ok=True)
    for i, size in enumerate(large_sizes(count, scale, seed)):
        path = os.path.join(root, f"large-{i:02d}.bin")
        with open(path, "wb") as f:
            left = size
            while left > 0:
                n = min(left, 8 * MIB)
                f.write(pool.take(n))
                left -= n
        os.utime(path, (BASE_TIME + i * 3600,) * 2)
    _fix_dir_times(root)


GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_AUTHOR_DATE": "2026-11-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-11-01T00:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}


def _git(repo, *args):
    env = dict(os.environ)
    env.update(GIT_ENV)
    subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "gc.auto=0", *args],
                   cwd=repo, env=env, check=True, stdout=subprocess.DEVNULL)


def make_home(root, seed, repos=6, repo_files=400, docs=3000):
    """A home folder: dotfiles, documents (a few MiB-sized), git checkouts with history,
    symlinks (relative, absolute, dangling, to a folder), names with spaces and UTF-8."""
    rng = random.Random(f"{seed}/home")
    pool = Pool(rng, 16 * MIB)
    os.makedirs(root, exist_ok=True)
    for d in [".config/app", ".local/share/app", ".cache/thumbs", "Documents/letters",
              "Documents/taxes 2025", "Pictures/été", "Music", "src"]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    words = ["alpha", "beta", "gamma", "delta", "main", "util", "test", "lib", "core", "io"]
    for i in range(docs):
        d = rng.choice(["Documents/letters", "Documents/taxes 2025", "Pictures/été", "Music",
                        ".config/app", ".local/share/app", ".cache/thumbs"])
        size = doc_size(rng)
        _write(os.path.join(root, d, f"{rng.choice(words)} {i:05d}.bin"), pool.take(size),
               BASE_TIME + rng.randrange(0, 86400 * 300))
    for r in range(repos):
        repo = os.path.join(root, "src", f"project-{r}")
        os.makedirs(repo)
        _git(repo, "init", "-q")
        for commit in range(3):
            for i in range(repo_files // 3):
                sub = os.path.join(repo, rng.choice(words), rng.choice(words))
                os.makedirs(sub, exist_ok=True)
                text = "\n".join(f"fn {rng.choice(words)}_{j}() {{ {rng.random()} }}"
                                 for j in range(rng.randrange(5, 200)))
                with open(os.path.join(sub, f"{rng.choice(words)}_{i}.rs"), "w") as f:
                    f.write(text)
            _git(repo, "add", "-A")
            _git(repo, "commit", "-q", "-m", f"commit {commit}")
        os.symlink("../../Documents", os.path.join(repo, "docs-link"))
    os.symlink("Documents/letters", os.path.join(root, "letters"))
    os.symlink("/etc/hostname", os.path.join(root, "absolute-link"))
    os.symlink("no/such/file", os.path.join(root, "dangling-link"))
    os.symlink(".config/app", os.path.join(root, ".app-config"))
    # Everything, git's own files included, gets a fixed time.
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.utime(p, (BASE_TIME + 7200,) * 2)
    _fix_dir_times(root)


def _fix_dir_times(root):
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, (BASE_TIME,) * 2)


def regular_files(root):
    out = []
    for dirpath, _, filenames in os.walk(root):
        for n in filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                out.append(p)
    out.sort()
    return out


def churn(root, seed, day, large=False, changed=0.01, added=0.005, deleted=0.005,
          append_every=4, append_mib=4, scale=1.0):
    """A day of churn: `changed` of the files rewritten (half same size, new bytes), `added`
    new files next to existing ones, `deleted` removed; for large trees, every
    `append_every`-th file grows by `append_mib` MiB (times `scale`) at its end.
    Returns counts."""
    rng = random.Random(f"{seed}/churn/{day}/{root}")
    pool = Pool(rng, 16 * MIB)
    files = regular_files(root)
    t = BASE_TIME + 86400 * (330 + day)
    counts = {"changed": 0, "added": 0, "deleted": 0, "appended": 0, "appended_bytes": 0}
    if large:
        for i, p in enumerate(files):
            if i % append_every == 0:
                n = max(1, int(append_mib * MIB * scale))
                with open(p, "ab") as f:
                    f.write(pool.take(n))
                os.utime(p, (t + i,) * 2)
                counts["appended"] += 1
                counts["appended_bytes"] += n
        return counts
    n = len(files)
    picks = rng.sample(range(n), int(n * (changed + deleted)))
    to_change = picks[:int(n * changed)]
    to_delete = picks[int(n * changed):]
    for k, i in enumerate(to_change):
        p = files[i]
        size = os.path.getsize(p) if k % 2 == 0 else small_size(rng)
        _write(p, pool.take(size), t + k, os.stat(p).st_mode & 0o7777)
        counts["changed"] += 1
    for i in to_delete:
        os.remove(files[i])
        counts["deleted"] += 1
    for k in range(int(n * added)):
        d = os.path.dirname(files[rng.randrange(n)])
        if not os.path.isdir(d):
            continue
        p = os.path.join(d, f"new-{day}-{k:06d}.dat")
        _write(p, pool.take(small_size(rng)), t + k)
        counts["added"] += 1
    return counts
