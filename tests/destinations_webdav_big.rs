//! The big-file round trip on WebDAV through davfs2 (Apache mod_dav on 127.0.0.1):
//! the odd tree beside a 2 GiB sparse file and a file of 4 GiB + 1 byte, backed up, changed,
//! backed up again, and both snapshots restored from what the server holds. WebDAV has no
//! sparse files, so all 6 GiB cross the loopback; davfs2 caches whole files and uploads
//! them after close.

mod common;
mod mounts;

use std::fs;
use std::path::Path;
use std::time::Instant;

use common::*;
use mounts::big::{assert_huge_restored, change_huge, huge_files, sparse_copy, GIB, MIB};
use mounts::box_on_disk;
use mounts::tree::{change, odd_tree};
use mounts::webdav::{missing_facility, WebDav};

fn run(config: &Path, args: &[&str]) -> String {
    let t0 = Instant::now();
    let out = snapnest(config, args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{args:?}:\n{t}");
    eprintln!("webdav: {args:?} took {:.1} s", t0.elapsed().as_secs_f64());
    t
}

/// Bytes of the regular files under `dir` (what the server stores: it has no holes).
fn file_bytes(dir: &Path) -> u64 {
    let mut sum = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            sum += file_bytes(&e.path());
        } else if t.is_file() {
            sum += e.metadata().unwrap().len();
        }
    }
    sum
}

/// Free bytes where `p` is (`stat -f`).
fn free_bytes(p: &Path) -> u64 {
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(p)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = t.split_whitespace().map(|x| x.parse().unwrap()).collect();
    v[0] * v[1]
}

#[test]
fn webdav_sparse_multi_gib_and_over_4_gib_files_round_trip() {
    if let Some(why) = missing_facility() {
        panic!("cannot test WebDAV on this machine: {why}");
    }
    // The server's folder (8 GiB: no holes on WebDAV) and davfs2's cache (as much again)
    // both live in the temp dir: say so plainly rather than fail half way with ENOSPC.
    let tmp = std::env::temp_dir();
    let free = free_bytes(&tmp);
    assert!(
        free > 17 * GIB,
        "this test needs ~17 GiB free in {} (server copy + davfs2 cache), has {} MiB",
        tmp.display(),
        free / MIB
    );
    let t0 = Instant::now();
    let dav = WebDav::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    odd_tree(&src.join("tree"));
    huge_files(&src.join("huge"));
    let (_store, config) = box_on_disk(&dav.mnt, work.path(), &src, "", "");
    assert!(run(&config, &["init"]).contains("strategy: history"));
    let first = work.path().join("first");
    sparse_copy(&src, &first);
    assert!(run(&config, &["backup", "box"]).contains("box: good"));
    change(&src.join("tree"));
    change_huge(&src.join("huge"));
    let second = work.path().join("second");
    sparse_copy(&src, &second);
    assert!(run(&config, &["backup", "box"]).contains("box: good"));

    // Unmounted, davfs2 has uploaded everything: look at the server's own folder.
    let t = Instant::now();
    dav.unmount();
    eprintln!(
        "webdav: unmount (uploads) took {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let on_server = mounts::snapshot_dirs(&dav.served.join("store/box"));
    assert_eq!(on_server.len(), 2, "{on_server:?}");
    let (old, new) = (
        in_snap(&on_server[0], &src).join("huge"),
        in_snap(&on_server[1], &src).join("huge"),
    );
    // Copy-with-history: the newest is the full mirror (6 GiB + the tree, holes written
    // out); the older holds only what the second run replaced or deleted — the old 2 GiB
    // image and two small files — not the unchanged 4 GiB + 1 file or the 3 MiB one.
    assert_eq!(fs::metadata(new.join("disk.img")).unwrap().len(), 2 * GIB);
    assert_eq!(
        fs::metadata(new.join("over-4-gib.bin")).unwrap().len(),
        4 * GIB + 1
    );
    assert_eq!(fs::metadata(old.join("disk.img")).unwrap().len(), 2 * GIB);
    assert!(!old.join("over-4-gib.bin").exists());
    assert!(!in_snap(&on_server[0], &src)
        .join("tree/big/unchanged.bin")
        .exists());
    let second_cost = file_bytes(&on_server[0]);
    let total = file_bytes(&dav.served.join("store/box"));
    eprintln!(
        "webdav: the server holds {} MiB; the second snapshot added {} MiB",
        total / MIB,
        second_cost / MIB
    );
    assert!(
        second_cost >= 2 * GIB && second_cost < 2 * GIB + MIB,
        "older snapshot on the server: {second_cost} bytes"
    );
    assert!(
        total >= 8 * GIB && total < 8 * GIB + 16 * MIB,
        "server: {total} bytes"
    );

    // Mounted again with an empty davfs2 cache: both snapshots restore from the server.
    dav.forget_cache();
    dav.mount();
    let names: Vec<String> = on_server
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    for (name, expected) in names.iter().zip([&first, &second]) {
        let to = work.path().join(format!("restored-{name}"));
        run(
            &config,
            &["restore", "box", name, "/", "--to", to.to_str().unwrap()],
        );
        let back = in_snap(&to, &src);
        assert_same_tree(&expected.join("tree"), &back.join("tree"));
        assert_huge_restored(
            &expected.join("huge"),
            &back.join("huge"),
            &format!("{name} on WebDAV"),
        );
        fs::remove_dir_all(&to).unwrap();
    }
    // Every stored byte read back against the hash taken while it was written.
    let t = run(&config, &["verify"]);
    assert!(!t.contains("DAMAGED"), "{t}");
    eprintln!("webdav: whole test {:.1} s", t0.elapsed().as_secs_f64());
}
