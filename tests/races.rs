//! The source changing under a running backup: a folder swapped for a symlink between
//! listing and fetch, a file turned into a symlink. Nothing lands outside the host's folder
//! and nothing is read through a swapped name into the snapshot as if it were the file.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

#[test]
fn a_folder_swapped_for_a_symlink_mid_run_writes_nothing_outside() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    // "a/big" is fetched first (sorted order) and slowly; "b" is swapped meanwhile.
    write_file(
        &root.join("a/big"),
        &vec![1u8; 16 << 20],
        1_700_000_000_000_000_000,
    );
    write_file(
        &root.join("b/f2"),
        b"original f2",
        1_700_000_000_000_000_000,
    );
    write_file(
        &root.join("c/f3"),
        b"original f3",
        1_700_000_000_000_000_000,
    );
    write_file(
        &root.join("d/f4"),
        b"deleted mid-run",
        1_700_000_000_000_000_000,
    );
    let elsewhere = tempfile::tempdir().unwrap();
    write_file(
        &elsewhere.path().join("f2"),
        b"not from the tree",
        1_700_000_000_000_000_000,
    );
    // Someone else's file: the swap must not smuggle it into the snapshot.
    std::os::unix::fs::chown(elsewhere.path().join("f2"), Some(4242), Some(4242)).unwrap();

    let s = Setup::new(
        &sshd.host_toml("laptop", &[root], "bwlimit = \"8MB/s\""),
        "",
    );
    s.init();
    let swapper = {
        let root = root.to_path_buf();
        let target = elsewhere.path().to_path_buf();
        let host_dir = s.storage.join("laptop");
        let big_rel = root.join("a/big").strip_prefix("/").unwrap().to_path_buf();
        std::thread::spawn(move || {
            // Swap once the listing is done and the fetch has started writing a/big.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            'wait: while std::time::Instant::now() < deadline {
                for e in fs::read_dir(&host_dir).into_iter().flatten().flatten() {
                    if e.file_name().to_string_lossy().starts_with(".incomplete-")
                        && e.path().join(&big_rel).exists()
                    {
                        break 'wait;
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            fs::rename(root.join("b"), root.join("b.moved")).unwrap();
            std::os::unix::fs::symlink(&target, root.join("b")).unwrap();
            fs::remove_file(root.join("d/f4")).unwrap();
            fs::remove_file(root.join("c/f3")).unwrap();
            std::os::unix::fs::symlink("/etc/shadow", root.join("c/f3")).unwrap();
        })
    };
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .args(["--config", s.config.to_str().unwrap(), "backup", "laptop"])
        .output();
    let out = child.unwrap();
    swapper.join().unwrap();
    let t = text(&out);
    // Vanished and swapped files are warnings: the run is still good.
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("d/f4") && t.contains("vanished"), "{t}");
    assert!(!snap_has(&s, root, "d/f4"));

    let snap = in_snap(&s.latest("laptop"), root);
    // The snapshot has the tree as listed: b is a real folder inside the snapshot.
    assert!(fs::symlink_metadata(snap.join("b")).unwrap().is_dir());
    assert!(!fs::symlink_metadata(snap.join("c/f3"))
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false));
    if let Ok(content) = fs::read(snap.join("c/f3")) {
        assert_ne!(
            content,
            fs::read("/etc/shadow").unwrap(),
            "a swapped-in symlink is never read as the file"
        );
    }
    assert!(t.contains("c/f3"), "the swapped file is reported: {t}");
    assert_ne!(
        fs::read(snap.join("b/f2")).ok().as_deref(),
        Some(&b"not from the tree"[..]),
        "{t}"
    );
    assert!(t.contains("b/f2") && t.contains("owner changed"), "{t}");
    // Nothing outside the storage's own folders, and the target folder untouched.
    let mut top: Vec<String> = fs::read_dir(&s.storage)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, vec![".snapnest", "laptop"]);
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 1);
    assert_eq!(
        fs::read(elsewhere.path().join("f2")).unwrap(),
        b"not from the tree"
    );
}

fn snap_has(s: &Setup, root: &std::path::Path, rel: &str) -> bool {
    fs::symlink_metadata(in_snap(&s.latest("laptop"), root).join(rel)).is_ok()
}
