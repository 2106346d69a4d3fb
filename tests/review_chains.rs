//! Where restore and the web page find a snapshot's files when copy-with-history runs have
//! moved them: into a run still in progress (or killed), into later history snapshots only,
//! never another version, never through a symlink; and an archive that cannot include a
//! file fails instead of leaving it out.

mod common;
mod webutil;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;
use webutil::snap_url;

fn restore(
    setup: &Setup,
    snapshot: &str,
    path: &Path,
) -> (std::process::Output, tempfile::TempDir) {
    let to = tempfile::tempdir().unwrap();
    let out = setup.snapnest(&[
        "restore",
        "box",
        snapshot,
        &path.display().to_string(),
        "--to",
        &to.path().display().to_string(),
    ]);
    (out, to)
}

/// Review #4: a history run that is killed keeps the previous snapshot's unchanged files in
/// its staging folder; restore, /file and /archive find them there.
#[test]
fn files_in_a_killed_history_runs_staging_folder_are_still_restored_and_served() {
    let disk = LoopDisk::ext4(96);
    let src = tempfile::tempdir().unwrap();
    let KilledHistoryRun {
        setup,
        first,
        original,
    } = killed_history_run(&disk, src.path(), "schedule = \"manual\"");

    let first_name = name_of(&first);
    let to = setup.restore_folder("box", &first_name, src.path());
    assert_same_tree(original.path(), &to.path().join(name_of(src.path())));

    let web = webutil::start_with(setup, "");
    let r = web.get_t(&snap_url(
        "file",
        "box",
        &first_name,
        &src.path().join("keep0"),
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, vec![0u8; 1 << 20]);
    let r = web.get_t(&format!(
        "{}?format=tar",
        snap_url("archive", "box", &first_name, src.path())
    ));
    assert_eq!(r.status, 200);
    assert!(r.complete, "the whole archive arrived");
    let mut names: Vec<String> = tar::Archive::new(&r.body[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .filter(|n| n.contains("keep"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 10, "{names:?}");

    // The staged copy is lost (disk trouble): the archive stops, visibly, rather than
    // finishing without it.
    let staging = fs::read_dir(web.setup.storage.join("box"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| name_of(p).starts_with(".incomplete-"))
        .expect("the killed run's staging folder");
    fs::remove_file(in_snap(&staging, src.path()).join("keep0")).unwrap();
    let r = web.get_t(&format!(
        "{}?format=tar",
        snap_url("archive", "box", &first_name, src.path())
    ));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(!r.complete, "a cut archive must look cut");
    let r = web.get_t(&snap_url(
        "file",
        "box",
        &first_name,
        &src.path().join("keep0"),
    ));
    assert_eq!(r.status, 404);
}

/// Review #7: after hard links then copy-with-history, the last hard-link snapshot's files
/// are found in the history snapshot (web too); a file found further along is used only if
/// it is this snapshot's version; no symlink in a later snapshot is followed.
#[test]
fn chains_follow_history_runs_and_never_serve_another_version_or_a_symlink() {
    let disk = LoopDisk::ext4(64);
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write_file(&s.join("a.txt"), b"aaa\n", 1_700_000_000_000_000_000);
    write_file(
        &s.join("b.txt"),
        b"version one\n",
        1_700_000_000_000_000_000,
    );
    write_file(&s.join("sub/c.txt"), b"ccc\n", 1_700_000_000_000_000_000);
    let mut setup = Setup::new(&local_host("box", s), "schedule = \"manual\"");
    setup.store_in(disk.path());
    set_strategy(&setup, "hardlink");
    setup.init();
    setup.backup("box", 0);
    let first = setup.latest("box");
    let first_name = name_of(&first);
    let original = tempfile::tempdir().unwrap();
    sh(&format!(
        "cp -a {}/. {}",
        s.display(),
        original.path().display()
    ));

    std::thread::sleep(Duration::from_millis(1100));
    set_strategy(&setup, "history");
    write_file(
        &s.join("b.txt"),
        b"version two, longer\n",
        1_700_000_100_000_000_000,
    );
    setup.backup("box", 0);
    let second = setup.latest("box");
    assert_ne!(second, first);
    assert!(
        !in_snap(&first, s).join("a.txt").exists(),
        "the history run took a.txt from the hard-link snapshot"
    );

    // Restore and the web page both find it in the history snapshot.
    let to = setup.restore_folder("box", &first_name, s);
    assert_same_tree(original.path(), &to.path().join(name_of(s)));
    let web = webutil::start_with(setup, "");
    let r = web.get_t(&snap_url("file", "box", &first_name, &s.join("a.txt")));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"aaa\n"[..]),
        "{}",
        r.text()
    );

    // The first snapshot's own b.txt is lost: the second's (another version) is not it.
    fs::remove_file(in_snap(&first, s).join("b.txt")).unwrap();
    let (out, to) = restore(&web.setup, &first_name, &s.join("b.txt"));
    assert!(
        !out.status.success(),
        "restored another version: {}",
        text(&out)
    );
    assert!(!to.path().join("b.txt").exists());
    let r = web.get_t(&snap_url("file", "box", &first_name, &s.join("b.txt")));
    assert_eq!(r.status, 404, "{}", r.text());

    // A symlink planted in the later snapshot, where a folder was, is not followed.
    let later_sub = in_snap(&second, s).join("sub");
    fs::rename(&later_sub, in_snap(&second, s).join("sub-real")).unwrap();
    std::os::unix::fs::symlink("sub-real", &later_sub).unwrap();
    let (out, _to) = restore(&web.setup, &first_name, &s.join("sub"));
    assert!(!out.status.success(), "followed a symlink: {}", text(&out));
}
