//! Names that differ only in case on a case-insensitive disk (exFAT): all are stored, under
//! renamed names where they clash, and read back under their own names across runs,
//! restores and pruning.

mod common;
mod mounts;

use std::fs;
use std::path::Path;

use common::*;
use mounts::tree::{keep_copy, set_dir_mtime};
use mounts::{box_on_disk, Fs, Mounted};

const T: i64 = 1_700_000_000_000_000_000;

/// Rows of a per-snapshot table, and how many belong to no snapshot.
fn rows(catalog: &Path, table: &str) -> (i64, i64) {
    let db = rusqlite::Connection::open(catalog).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    (
        count(&format!("SELECT count(*) FROM {table}")),
        count(&format!(
            "SELECT count(*) FROM {table} WHERE snapshot_id NOT IN (SELECT id FROM snapshots)"
        )),
    )
}

#[test]
fn exfat_case_clashes_are_stored_renamed_and_restored_under_their_own_names() {
    let m = Mounted::new(Fs::Exfat, 64);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_file(&src.join("Report.txt"), b"upper\n", T);
    write_file(&src.join("report.txt"), b"lower\n", T + 1);
    write_file(&src.join("Docs/a.txt"), b"big D\n", T + 2);
    write_file(&src.join("docs/a.txt"), b"small d\n", T + 3);
    write_file(&src.join("A:B"), b"escaped and clashing\n", T + 4);
    write_file(&src.join("a:b"), b"its twin\n", T + 5);
    for d in ["Docs", "docs", ""] {
        set_dir_mtime(&src.join(d), T);
    }
    // One day, three snapshots: `daily = 2` prunes the middle one.
    let keep = "keep = { daily = 2 }\n";
    let (store, config) = box_on_disk(&m.mnt, work.path(), &src, "", keep);
    let run = |args: &[&str]| {
        let out = snapnest(&config, args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {t}");
        t
    };
    let snapshots = || mounts::snapshot_dirs(&store.join("box"));
    let restore_equals = |snap: &Path, expected: &Path| {
        let name = snap.file_name().unwrap().to_str().unwrap();
        let to = work.path().join(format!("restored-{name}"));
        let _ = fs::remove_dir_all(&to);
        run(&["restore", "box", name, "/", "--to", to.to_str().unwrap()]);
        assert_same_tree(expected, &in_snap(&to, &src));
    };
    run(&["init"]);
    let first = work.path().join("first");
    keep_copy(&src, &first);
    let t = run(&["backup", "box"]);
    assert!(t.contains("box: good"), "nothing left out: {t}");
    let s1 = in_snap(&snapshots()[0], &src);
    let mut on_disk: Vec<String> = fs::read_dir(&s1)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    // The first of each pair in listing order keeps its (escaped) name; the other gets its
    // first letter escaped, which reads back as the original.
    assert_eq!(
        on_disk,
        [
            "%61%3Ab",
            "%64ocs",
            "%72eport.txt",
            "A%3AB",
            "Docs",
            "Report.txt"
        ],
        "stored names"
    );
    assert_eq!(fs::read(s1.join("%72eport.txt")).unwrap(), b"lower\n");
    assert_eq!(fs::read(s1.join("%64ocs/a.txt")).unwrap(), b"small d\n");

    // Run 2: one of the pair changes, the other is deleted.
    fs::remove_file(src.join("Report.txt")).unwrap();
    write_file(&src.join("report.txt"), b"lower, changed\n", T + 10);
    set_dir_mtime(&src, T + 10);
    let second = work.path().join("second");
    keep_copy(&src, &second);
    let t = run(&["backup", "box"]);
    assert!(t.contains("box: good"), "{t}");
    let s2 = in_snap(&snapshots()[1], &src);
    assert_eq!(
        fs::read(s2.join("%72eport.txt")).unwrap(),
        b"lower, changed\n",
        "the same stored name as in run 1"
    );
    assert!(!s2.join("Report.txt").exists());
    // Copy-with-history: run 1's versions of what changed or went stay in its folder.
    assert_eq!(fs::read(s1.join("%72eport.txt")).unwrap(), b"lower\n");
    assert_eq!(fs::read(s1.join("Report.txt")).unwrap(), b"upper\n");
    for (snap, expected) in snapshots().iter().zip([&first, &second]) {
        restore_equals(snap, expected);
    }
    let catalog = store.join(".snapnest/catalog.db");
    let db = rusqlite::Connection::open(&catalog).unwrap();
    let renamed: i64 = db
        .query_row("SELECT count(*) FROM snapshot_renamed", [], |r| r.get(0))
        .unwrap();
    assert_eq!(renamed, 6, "three renamed entries per snapshot");
    drop(db);

    // Run 3 changes a file in the renamed folder; pruning run 2 hands its copy of the
    // unchanged-then version back to run 1, under the renamed folder.
    write_file(&src.join("docs/a.txt"), b"small d, changed\n", T + 20);
    set_dir_mtime(&src.join("docs"), T);
    let third = work.path().join("third");
    keep_copy(&src, &third);
    run(&["backup", "box"]);
    assert_eq!(rows(&catalog, "snapshot_names"), (3, 0));
    assert_eq!(rows(&catalog, "snapshot_renamed"), (9, 0));
    let t = run(&["prune", "box"]);
    assert!(t.contains("pruned 1 snapshot"), "{t}");
    assert_eq!(rows(&catalog, "snapshot_names"), (2, 0), "pruned with it");
    assert_eq!(rows(&catalog, "snapshot_renamed"), (6, 0), "pruned with it");
    let left = snapshots();
    assert_eq!(left.len(), 2);
    restore_equals(&left[0], &first);
    restore_equals(&left[1], &third);
    let t = run(&["verify"]);
    assert!(!t.contains("DAMAGED"), "{t}");
}

/// A copy-with-history run killed after it moved both files of a pair (unchanged) out of
/// the first snapshot: reading the first snapshot finds each in the staging folder under
/// its own stored name (the plain name would open the other file there: same size, mtimes
/// within exFAT's step), and the next run resumes and publishes both.
#[test]
fn exfat_case_clash_in_a_killed_history_run_is_read_and_resumed_under_its_own_name() {
    use std::process::{Command, Stdio};
    let m = Mounted::new(Fs::Exfat, 64);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_file(&src.join("Pair.txt"), b"UPPER\n", T);
    write_file(&src.join("pair.txt"), b"lower\n", T + 1);
    set_dir_mtime(&src, T);
    let store = m.mnt.join("store");
    fs::create_dir(&store).unwrap();
    let config = work.path().join("snapnest.toml");
    let host = local_host("box", &src).replace("folders = [", "bwlimit = \"2MiB/s\"\nfolders = [");
    fs::write(
        &config,
        format!("[storage]\npath = \"{}\"\n\n{host}", store.display()),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = snapnest(&config, args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {t}");
        t
    };
    run(&["init"]);
    run(&["backup", "box"]);
    let first = work.path().join("first");
    keep_copy(&src, &first);
    let snap1 = mounts::snapshot_dirs(&store.join("box")).remove(0);
    let renamed = in_snap(&snap1, &src).join("%70air.txt");
    assert_eq!(fs::read(&renamed).unwrap(), b"lower\n");

    // A slow second run: it moves both out of the first snapshot, then fetches `big`.
    write_file(&src.join("big"), &vec![7u8; 12 << 20], T + 2);
    set_dir_mtime(&src, T + 2);
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .arg("--config")
        .arg(&config)
        .args(["backup", "box"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "the pair to be moved into staging",
        std::time::Duration::from_secs(20),
        || !renamed.exists(),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!renamed.exists() && !in_snap(&snap1, &src).join("Pair.txt").exists());
    let name = snap1.file_name().unwrap().to_str().unwrap().to_string();
    let to = work.path().join("while-killed");
    run(&["restore", "box", &name, "/", "--to", to.to_str().unwrap()]);
    assert_same_tree(&first, &in_snap(&to, &src));

    let t = run(&["backup", "box"]);
    assert!(t.contains("box: good"), "{t}");
    let second = work.path().join("second");
    keep_copy(&src, &second);
    let snaps = mounts::snapshot_dirs(&store.join("box"));
    assert_eq!(snaps.len(), 2);
    assert_eq!(
        fs::read(in_snap(&snaps[1], &src).join("%70air.txt")).unwrap(),
        b"lower\n"
    );
    for (snap, expected) in snaps.iter().zip([&first, &second]) {
        let name = snap.file_name().unwrap().to_str().unwrap();
        let to = work.path().join(format!("restored-{name}"));
        run(&["restore", "box", name, "/", "--to", to.to_str().unwrap()]);
        assert_same_tree(expected, &in_snap(&to, &src));
    }
}
