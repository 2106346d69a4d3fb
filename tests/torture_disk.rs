//! The backup disk on its worst day: full in the middle of a run, or pulled out. Real small
//! ext4 disks; what must survive is every published snapshot and the catalog.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use common::*;

/// `mib` MiB that share nothing with other calls (no dedup or sparse tricks).
fn noise(path: &Path, mib: usize, seed: u64) {
    let mut f = fs::File::create(path).unwrap();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for b in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
}

#[test]
fn a_disk_that_fills_mid_run_fails_cleanly_and_loses_nothing() {
    let disk = LoopDisk::ext4(48);
    let src = tempfile::tempdir().unwrap();
    for i in 0..3 {
        noise(&src.path().join(format!("photo{i}.raw")), 6, i);
    }
    let mut setup = Setup::new(&local_host("box", src.path()), "");
    setup.store_in(disk.path());
    setup.init();
    setup.backup("box", 0);
    let first = setup.latest("box");
    let kept = tempfile::tempdir().unwrap();
    sh(&format!(
        "cp -a {}/. {}",
        src.path().display(),
        kept.path().display()
    ));

    // Far more new data than the disk holds.
    for i in 3..9 {
        noise(&src.path().join(format!("video{i}.raw")), 8, i);
    }
    let out = setup.snapnest(&["backup", "box"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("(the disk is full)"), "{t}");
    assert_eq!(
        setup.latest("box"),
        first,
        "latest still points to the good snapshot"
    );
    assert_eq!(
        setup.snapshots("box"),
        vec![first.clone()],
        "no half snapshot published"
    );
    assert_same_tree(kept.path(), &in_snap(&first, src.path()));
    let list = text(&setup.snapnest(&["list", "box"]));
    assert!(list.contains("failed"), "{list}");

    // Room again (the big files move elsewhere): the next run completes, nothing left over.
    for i in 3..9 {
        fs::remove_file(src.path().join(format!("video{i}.raw"))).unwrap();
    }
    noise(&src.path().join("small.raw"), 1, 42);
    setup.backup("box", 0);
    assert_eq!(setup.snapshots("box").len(), 2);
    assert_same_tree(src.path(), &in_snap(&setup.latest("box"), src.path()));
    let leftovers: Vec<String> = fs::read_dir(setup.storage.join("box"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging cleaned up: {leftovers:?}");
}

#[test]
fn a_disk_pulled_mid_run_leaves_the_empty_mount_point_empty() {
    let disk = LoopDisk::ext4(64);
    let src = tempfile::tempdir().unwrap();
    for i in 0..8 {
        fs::create_dir_all(src.path().join(format!("d{i}"))).unwrap();
        noise(&src.path().join(format!("d{i}/f.raw")), 2, i);
    }
    let mut setup = Setup::new(
        &local_host("box", src.path()).replace("folders = [", "bwlimit = \"4MiB/s\"\nfolders = ["),
        "",
    );
    setup.store_in(disk.path());
    setup.init();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .arg("--config")
        .arg(&setup.config)
        .args(["backup", "box"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "the run to write",
        std::time::Duration::from_secs(10),
        || {
            fs::read_dir(disk.path().join("box"))
                .map(|d| d.count() > 0)
                .unwrap_or(false)
        },
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Yanked: the kernel detaches it; the folder underneath is the root filesystem's.
    sh(&format!("umount -l {}", disk.path().display()));
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("the backup disk went away during the run"),
        "{t}"
    );
    let written: Vec<_> = fs::read_dir(disk.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        written.is_empty(),
        "nothing written to the bare mount point: {written:?}\n{t}"
    );
    // Plugged back in: what was published before is intact and the next run completes.
    disk.mount();
    setup.backup("box", 0);
    assert_same_tree(src.path(), &in_snap(&setup.latest("box"), src.path()));
}
