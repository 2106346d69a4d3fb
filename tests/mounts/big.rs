//! The per-filesystem round trip with big files: the odd tree (names the disk
//! refuses, symlinks, modes, owners, ns mtimes) beside a 2 GiB sparse file and a file of
//! 4 GiB + 1 byte, backed up, changed, backed up again, and both snapshots restored.

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::Instant;

use super::tree::{change, odd_tree, used_bytes};
use super::{missing_facility, Fs, Mounted};
use crate::common::{assert_same_tree, in_snap, set_mtime, snapnest, text};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const HUGE: [&str; 2] = ["disk.img", "over-4-gib.bin"];

/// The data regions of a sparse file (SEEK_DATA / SEEK_HOLE): everything else reads as zeros.
pub fn data_regions(f: &fs::File) -> Vec<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let len = f.metadata().unwrap().len() as i64;
    let mut out = Vec::new();
    let mut pos = 0i64;
    while pos < len {
        // SAFETY: lseek on an open descriptor.
        let start = unsafe { libc::lseek(f.as_raw_fd(), pos, libc::SEEK_DATA) };
        if start < 0 {
            break;
        }
        let end = unsafe { libc::lseek(f.as_raw_fd(), start, libc::SEEK_HOLE) };
        out.push((start as u64, end as u64));
        pos = end;
    }
    out
}

/// Same size, and every data region of either file reads the same in both: holes are
/// zeros on both sides, so the files are equal without reading GiBs of them.
pub fn same_content(a: &Path, b: &Path) -> bool {
    let (fa, fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let mut regions = data_regions(&fa);
    regions.extend(data_regions(&fb));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    for (start, end) in regions {
        let mut pos = start;
        while pos < end {
            let n = ((end - pos) as usize).min(ba.len());
            fa.read_exact_at(&mut ba[..n], pos).unwrap();
            fb.read_exact_at(&mut bb[..n], pos).unwrap();
            if ba[..n] != bb[..n] {
                return false;
            }
            pos += n as u64;
        }
    }
    true
}

/// `huge/` of the source: a 2 GiB disk image with two data regions, and a file whose last
/// byte is at 4 GiB exactly (one past FAT32's limit), both sparse here.
pub fn huge_files(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let f = fs::File::create(dir.join("disk.img")).unwrap();
    f.write_all_at(b"boot sector", 0).unwrap();
    f.write_all_at(&[7u8; 100_000], GIB).unwrap();
    f.set_len(2 * GIB).unwrap();
    let g = fs::File::create(dir.join("over-4-gib.bin")).unwrap();
    g.write_all_at(b"first", 0).unwrap();
    g.write_all_at(b"X", 4 * GIB).unwrap();
    set_mtime(&dir.join("disk.img"), 1_700_000_000_000_000_000);
    set_mtime(&dir.join("over-4-gib.bin"), 1_700_000_000_000_000_003);
}

/// The second run's change to `huge/`: 21 bytes written into the 2 GiB image's hole at
/// 1.5 GiB, and a new mtime; the 4 GiB + 1 file stays as it was.
pub fn change_huge(dir: &Path) {
    let img = dir.join("disk.img");
    fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all_at(b"a new partition table", 3 * GIB / 2)
        .unwrap();
    set_mtime(&img, 1_700_100_000_000_000_000);
}

/// The restored `huge/` (`back`) is `expected` again: size, ns mtime, mode, content, holes
/// kept on the restore side, and the big one is 4 GiB + 1 byte exactly.
pub fn assert_huge_restored(expected: &Path, back: &Path, what: &str) {
    for file in HUGE {
        let (a, b) = (expected.join(file), back.join(file));
        let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
        let what = format!("{file} of {what}");
        assert_eq!(ma.len(), mb.len(), "size of {what}");
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "mtime of {what}"
        );
        assert_eq!(ma.mode(), mb.mode(), "mode of {what}");
        assert!(mb.blocks() * 512 < 4 * MIB, "{what} restored sparse");
        assert!(same_content(&a, &b), "content of {what}");
    }
    let big = fs::metadata(back.join("over-4-gib.bin")).unwrap().len();
    assert_eq!(big, 4 * GIB + 1, "over-4-gib.bin of {what}");
}

/// A copy that keeps holes (the source's state at one point, to compare restores with).
pub fn sparse_copy(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp")
        .args(["-a", "--sparse=always"])
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "cp: {}", text(&out));
}

/// The round trip on a fresh `fs` of `size_mib`. Where the disk has sparse files, the stored
/// copies must keep their holes, and the second snapshot must cost next to nothing; where
/// it has none (exFAT), it must cost the changed 2 GiB file and not the unchanged 4 GiB one.
pub fn big_files_round_trip(fs: Fs, size_mib: u64) {
    if let Some(why) = missing_facility(fs) {
        panic!("cannot test {fs:?} on this machine: {why}");
    }
    let sparse_disk = fs != Fs::Exfat && fs != Fs::Fat32;
    let m = Mounted::new(fs, size_mib);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    odd_tree(&src.join("tree"));
    huge_files(&src.join("huge"));
    let (store, config) = super::box_on_disk(&m.mnt, work.path(), &src, "", "");
    let run = |args: &[&str]| {
        let t0 = Instant::now();
        let out = snapnest(&config, args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?} on {fs:?}:\n{t}");
        eprintln!("{fs:?}: {args:?} took {:.1} s", t0.elapsed().as_secs_f64());
        t
    };
    run(&["init"]);
    let first = work.path().join("first");
    sparse_copy(&src, &first);
    run(&["backup", "box"]);
    let before = used_bytes(&m.mnt);

    change(&src.join("tree"));
    change_huge(&src.join("huge"));
    let second = work.path().join("second");
    sparse_copy(&src, &second);
    let t = run(&["backup", "box"]);
    assert!(t.contains("box: good"), "{t}");
    let used = used_bytes(&m.mnt).saturating_sub(before);
    eprintln!("{fs:?}: the second run took {} MiB of the disk", used / MIB);
    if sparse_disk {
        assert!(used < 16 * MIB, "second run on {fs:?} used {used} bytes");
    } else {
        // The changed image again in full (no holes here); the 4 GiB file is not copied.
        assert!(
            used > 2 * GIB - 64 * MIB && used < 2 * GIB + 64 * MIB,
            "second run on {fs:?} used {used} bytes"
        );
    }

    let snapshots = super::snapshot_dirs(&store.join("box"));
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    if sparse_disk {
        // Holes stay holes on the disk: each stored copy holds its few data blocks only.
        for snap in &snapshots {
            for name in HUGE {
                let p = in_snap(snap, &src).join("huge").join(name);
                let b = fs::metadata(&p).unwrap().blocks() * 512;
                assert!(b < 4 * MIB, "{} on {fs:?} takes {b} bytes", p.display());
            }
        }
    }
    for (snap, expected) in snapshots.iter().zip([&first, &second]) {
        let name = snap.file_name().unwrap().to_str().unwrap();
        let to = work.path().join(format!("restored-{name}"));
        run(&["restore", "box", name, "/", "--to", to.to_str().unwrap()]);
        let back = in_snap(&to, &src);
        assert_same_tree(&expected.join("tree"), &back.join("tree"));
        assert_huge_restored(
            &expected.join("huge"),
            &back.join("huge"),
            &format!("{name} on {fs:?}"),
        );
        fs::remove_dir_all(&to).unwrap();
    }
    // Every stored byte read back against the hash taken while it was written.
    let t = run(&["verify"]);
    assert!(!t.contains("DAMAGED"), "{t}");
}
