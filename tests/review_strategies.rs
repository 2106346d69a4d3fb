//! Copy-with-history next to what other strategies left on the same disk: btrfs snapshots
//! it cannot move files out of, and snapshots stored under name rules measured differently.

mod common;
mod mounts;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;
use mounts::{Fs, Mounted};

fn copy_of(src: &Path) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    sh(&format!("cp -a {}/. {}", src.display(), t.path().display()));
    t
}

/// Review #8: history named on a btrfs disk whose previous snapshot is a read-only
/// subvolume: the run fetches what it cannot move instead of failing every time.
#[test]
fn history_after_btrfs_snapshots_fetches_what_it_cannot_move() {
    let m = Mounted::new(Fs::Btrfs, 160);
    let src = tempfile::tempdir().unwrap();
    write_file(
        &src.path().join("a.txt"),
        b"aaa\n",
        1_700_000_000_000_000_000,
    );
    write_file(
        &src.path().join("b.txt"),
        b"one\n",
        1_700_000_000_000_000_000,
    );
    let mut setup = Setup::new(&local_host("box", src.path()), "");
    setup.store_in(&m.mnt);
    setup.init();
    let out = setup.backup("box", 0);
    let first = setup.latest("box");
    assert_eq!(
        fs::metadata(&first)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap(),
        256,
        "{out}"
    );
    let v1 = copy_of(src.path());

    set_strategy(&setup, "history");
    std::thread::sleep(Duration::from_millis(1100));
    write_file(
        &src.path().join("b.txt"),
        b"two, longer\n",
        1_700_000_100_000_000_000,
    );
    setup.backup("box", 0);
    let v2 = copy_of(src.path());
    write_file(
        &src.path().join("c.txt"),
        b"new\n",
        1_700_000_200_000_000_000,
    );
    setup.backup("box", 0);
    let snaps = setup.snapshots("box");
    assert_eq!(snaps.len(), 3);

    for (snap, want) in [
        (&snaps[0], &v1),
        (&snaps[1], &v2),
        (&snaps[2], &copy_of(src.path())),
    ] {
        let to = setup.restore_folder("box", &name_of(snap), src.path());
        assert_same_tree(want.path(), &to.path().join(name_of(src.path())));
    }
}

/// Review #9: the disk's name rules change (a re-probe measured it differently); every
/// snapshot is still read under the rules it was stored with.
#[test]
fn each_snapshot_is_read_under_its_own_name_rules() {
    let m = Mounted::new(Fs::Exfat, 64);
    let src = tempfile::tempdir().unwrap();
    write_file(
        &src.path().join("a:b.txt"),
        b"colon\n",
        1_700_000_000_000_000_000,
    );
    write_file(
        &src.path().join("t~1.txt"),
        b"tilde\n",
        1_700_000_000_000_000_000,
    );
    write_file(
        &src.path().join("plain.txt"),
        b"plain\n",
        1_700_000_000_000_000_000,
    );
    let mut setup = Setup::new(&local_host("box", src.path()), "");
    setup.store_in(&m.mnt);
    setup.init();
    setup.backup("box", 0);
    let first = setup.snapshots("box")[0].clone();
    assert!(in_snap(&first, src.path()).join("t~1.txt").exists());
    let v1 = copy_of(src.path());

    // As if another driver for the same disk refused `~` too: the recorded probe changes,
    // the disk stays the same (no new probe).
    let db = m.mnt.join(".snapnest/catalog.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let json: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'probe'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let mut probe: serde_json::Value = serde_json::from_str(&json).unwrap();
    probe["refused_bytes"]
        .as_array_mut()
        .unwrap()
        .push(b'~'.into());
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'probe'",
        [probe.to_string()],
    )
    .unwrap();
    drop(conn);

    let to = setup.restore_folder("box", &name_of(&first), src.path());
    assert_same_tree(v1.path(), &to.path().join(name_of(src.path())));

    // A run under the new rules shares nothing with the old snapshot (fetches all), and
    // both snapshots restore whole.
    std::thread::sleep(Duration::from_millis(1100));
    write_file(
        &src.path().join("plain.txt"),
        b"plain, changed\n",
        1_700_000_100_000_000_000,
    );
    setup.backup("box", 0);
    let second = setup.snapshots("box")[1].clone();
    assert!(in_snap(&second, src.path()).join("t%7E1.txt").exists());
    for (snap, want) in [(&first, &v1), (&second, &copy_of(src.path()))] {
        let to = setup.restore_folder("box", &name_of(snap), src.path());
        assert_same_tree(want.path(), &to.path().join(name_of(src.path())));
    }
}

/// Review #12: pruning a copy-with-history snapshot hands its files to the older one by
/// renames; those reach the disk (syncfs) before the pruned tree is hidden and removed.
/// Watched with strace on the real binary, on exFAT (no journal).
#[test]
fn hand_over_renames_are_synced_before_the_pruned_tree_goes() {
    let m = Mounted::new(Fs::Exfat, 64);
    let src = tempfile::tempdir().unwrap();
    write_file(
        &src.path().join("kept.txt"),
        b"same in 1 and 2\n",
        1_700_000_000_000_000_000,
    );
    write_file(
        &src.path().join("other.txt"),
        b"x\n",
        1_700_000_000_000_000_000,
    );
    let mut setup = Setup::new(&local_host("box", src.path()), "keep = { daily = 2 }");
    setup.store_in(&m.mnt);
    setup.init();
    setup.backup("box", 0);
    std::thread::sleep(Duration::from_millis(1100));
    write_file(
        &src.path().join("other.txt"),
        b"y, longer\n",
        1_700_000_100_000_000_000,
    );
    setup.backup("box", 0);
    let middle = name_of(&setup.snapshots("box")[1]);
    std::thread::sleep(Duration::from_millis(1100));
    // Replaced in run 3: run 2's copy (the first snapshot's too) stays in the middle one.
    write_file(
        &src.path().join("kept.txt"),
        b"changed in 3, longer\n",
        1_700_000_200_000_000_000,
    );
    setup.backup("box", 0);

    let trace = setup.dir.path().join("prune.strace");
    let out = std::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=rename,renameat,renameat2,syncfs,unlink,unlinkat",
        ])
        .arg("-o")
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_snapnest"))
        .arg("--config")
        .arg(&setup.config)
        .args(["prune", "box"])
        .output()
        .expect("strace");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pruned 1 snapshot"), "{}", text(&out));
    let lines: Vec<String> = fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let pos = |f: &dyn Fn(&str) -> bool| lines.iter().position(|l| f(l));
    let hand_over = lines
        .iter()
        .rposition(|l| l.contains("rename") && l.contains("kept.txt"))
        .unwrap_or_else(|| panic!("no hand-over rename:\n{}", lines.join("\n")));
    let hide = pos(&|l: &str| l.contains("rename") && l.contains(&format!("{middle}\"")))
        .unwrap_or_else(|| panic!("no hiding rename:\n{}", lines.join("\n")));
    let sync = lines[hand_over..]
        .iter()
        .position(|l| l.contains("syncfs(") && !l.contains("= -1"))
        .map(|p| p + hand_over);
    assert!(
        sync.is_some_and(|s| s < hide),
        "no syncfs between the hand-over and hiding the tree:\n{}",
        lines.join("\n")
    );
    // The first snapshot restores whole with run 2's copy of kept.txt.
    let first = name_of(&setup.snapshots("box")[0]);
    let to = setup.restore_folder("box", &first, src.path());
    assert_eq!(
        fs::read(to.path().join(name_of(src.path())).join("kept.txt")).unwrap(),
        b"same in 1 and 2\n"
    );
}
