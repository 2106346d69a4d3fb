//! The tree the destination tests back up and change, and what they measure on a disk.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{sample_tree, text, write_file};

/// Names exFAT/FAT refuse, symlinks, modes, an owner, ns mtimes, an empty folder, and a
/// 3 MiB file that stays the same across runs (to measure what the second snapshot costs).
pub fn odd_tree(root: &Path) {
    sample_tree(root);
    write_file(
        &root.join("odd/a:b*c?.txt"),
        b"colon star question\n",
        1_700_000_300_000_000_007,
    );
    write_file(
        &root.join("odd/100%.txt"),
        b"percent\n",
        1_700_000_300_000_000_000,
    );
    write_file(
        &root.join("odd/%41 not A"),
        b"escape of escape\n",
        1_700_000_300_000_000_000,
    );
    write_file(
        &root.join("odd/trailing."),
        b"dot\n",
        1_700_000_300_000_000_000,
    );
    write_file(
        &root.join("odd/<pipe|quote\">"),
        b"more\n",
        1_700_000_300_000_000_000,
    );
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    write_file(
        &root.join("big/unchanged.bin"),
        &big,
        1_700_000_400_000_000_000,
    );
}

/// The second run's changes: one file rewritten, one deleted, one added, one mode changed.
pub fn change(root: &Path) {
    write_file(
        &root.join("a.txt"),
        b"hello again, changed\n",
        1_700_100_000_000_000_001,
    );
    std::os::unix::fs::chown(root.join("a.txt"), Some(1234), Some(5678)).unwrap();
    fs::remove_file(root.join("docs/report.odt")).unwrap();
    write_file(
        &root.join("odd/new?.txt"),
        b"new\n",
        1_700_100_000_000_000_000,
    );
    fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    // Folder mtimes change with their contents: set them back to known values.
    set_dir_mtime(&root.join("odd"), 1_700_100_000_000_000_000);
    set_dir_mtime(&root.join("docs"), 1_700_100_000_000_000_000);
}

pub fn set_dir_mtime(p: &Path, ns: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns as u64);
    fs::File::open(p)
        .unwrap()
        .set_times(fs::FileTimes::new().set_modified(t))
        .unwrap();
}

/// A copy of the source as it is now, to compare a restore with later.
pub fn keep_copy(src: &Path, to: &Path) {
    let out = std::process::Command::new("cp")
        .args(["-a"])
        .arg(src)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "cp -a: {}", text(&out));
}

pub fn used_bytes(p: &Path) -> u64 {
    let _ = std::process::Command::new("sync").arg("-f").arg(p).output();
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%b %f %S"])
        .arg(p)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = t.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0] - v[1]) * v[2]
}
