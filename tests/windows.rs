//! A listing larger than the job's window: the listing is sorted through runs spilled to the
//! backup disk and stored window by window. With a window of 3 entries every folder crosses
//! window boundaries; the snapshots must be exactly what one big window makes.

mod common;
mod mounts;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;
use mounts::{Fs, Mounted};

/// Names that sort between a folder and its children (`a` < `a.txt` < `a/x`), deep nesting,
/// a file that becomes a folder, symlinks, a read-only folder, non-UTF-8 names.
fn tricky_tree(root: &Path) {
    let t = 1_700_000_000_000_000_000i64;
    for (i, name) in [
        "a/x",
        "a/y/z",
        "a.txt",
        "a-b",
        "a0",
        "a!",
        "a/b.d/e",
        "a/b/c",
        "ab/c",
        "b",
        "zz/zz/zz/zz",
    ]
    .iter()
    .enumerate()
    {
        write_file(&root.join(name), name.as_bytes(), t + i as i64);
    }
    // 200 files: with runs of 3 entries, more than 32 runs spill, so runs are merged too.
    for d in 0..10 {
        for f in 0..20 {
            write_file(
                &root.join(format!("many/d{d}/f{f}")),
                format!("{d}-{f}").as_bytes(),
                t + 1000 + (d * 100 + f) as i64,
            );
        }
    }
    let odd = std::ffi::OsStr::from_bytes(b"odd-\xff\xfe");
    write_file(&root.join("many").join(odd), b"latin-1", t + 5);
    std::os::unix::fs::symlink("../a.txt", root.join("a/link")).unwrap();
    std::os::unix::fs::symlink("missing", root.join("a.link")).unwrap();
    write_file(&root.join("ro/inside"), b"ro", t + 7);
    fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
}

/// A day of changes that move entries across window boundaries.
fn change(root: &Path) {
    let t = 1_700_000_500_000_000_000i64;
    fs::remove_file(root.join("a.txt")).unwrap();
    fs::create_dir(root.join("a.txt")).unwrap();
    write_file(&root.join("a.txt/now-a-folder"), b"x", t);
    fs::remove_dir_all(root.join("many/d2")).unwrap();
    write_file(&root.join("many/d4/f4"), b"changed!", t + 1);
    write_file(&root.join("a/y/new"), b"new", t + 2);
    write_file(&root.join("a-b"), b"longer than before", t + 3);
    fs::remove_file(root.join("a/link")).unwrap();
    std::os::unix::fs::symlink("elsewhere", root.join("a/link")).unwrap();
}

fn small_windows() {
    // Every snapnest this test binary starts inherits it.
    std::env::set_var("SNAPNEST_WINDOW", "3");
}

/// Nothing but snapshots, `latest` and the catalog's own files is left in the host folder:
/// the spilled runs are unlinked files.
fn assert_no_spill_left(host_dir: &Path) {
    for e in fs::read_dir(host_dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name.starts_with("20") || name == "latest",
            "unexpected {name} in {}",
            host_dir.display()
        );
    }
}

#[test]
fn a_listing_many_windows_long_is_stored_exactly_and_shared_across_runs() {
    small_windows();
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    tricky_tree(src.path());
    let s = Setup::new(&sshd.host_toml("laptop", &[src.path()], ""), "");
    s.init();

    let out = s.backup("laptop", 0);
    assert!(out.contains("laptop: good"), "{out}");
    let first = s.latest("laptop");
    assert_same_tree(src.path(), &in_snap(&first, src.path()));
    assert_no_spill_left(&s.storage.join("laptop"));

    change(src.path());
    let out = s.backup("laptop", 0);
    assert!(out.contains("laptop: good"), "{out}");
    let second = s.latest("laptop");
    assert_same_tree(src.path(), &in_snap(&second, src.path()));
    assert_same_tree(
        &in_snap(&first, src.path()).join("many/d0"),
        &in_snap(&second, src.path()).join("many/d0"),
    );
    // Unchanged files in every window are shared, not fetched again.
    for f in ["a/x", "zz/zz/zz/zz", "many/d5/f8", "ro/inside", "a/b.d/e"] {
        let a = fs::metadata(in_snap(&first, &src.path().join(f))).unwrap();
        let b = fs::metadata(in_snap(&second, &src.path().join(f))).unwrap();
        assert_eq!(a.ino(), b.ino(), "{f} is shared with the first snapshot");
    }
    assert!(out.contains("4 new files"), "{out}");
    assert_no_spill_left(&s.storage.join("laptop"));

    // What the catalog recorded window by window is what is on the disk.
    let out = s.snapnest(&["verify", "laptop"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let restored = s.restore_folder(
        "laptop",
        second.file_name().unwrap().to_str().unwrap(),
        src.path(),
    );
    assert_same_tree(
        src.path(),
        &restored.path().join(src.path().file_name().unwrap()),
    );
}

#[test]
fn excluded_folders_and_their_included_insides_across_windows() {
    small_windows();
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    tricky_tree(root);
    write_file(
        &root.join("Downloads/movie.iso"),
        b"m",
        1_700_000_000_000_000_000,
    );
    write_file(&root.join("Downloads.txt"), b"d", 1_700_000_000_000_000_000);
    write_file(
        &root.join("Downloads/keep/wanted.pdf"),
        b"w",
        1_700_000_000_000_000_000,
    );
    write_file(
        &root.join("Downloads/zzz/other"),
        b"o",
        1_700_000_000_000_000_000,
    );
    let extra = format!(
        "exclude = [\"{d}/Downloads/\", \"{d}/many/d3/\"]\ninclude = [\"{d}/Downloads/keep/\"]",
        d = root.display()
    );
    let s = Setup::new(
        &sshd.host_toml("laptop", &[root], &extra),
        "exclude = [\"*.iso\"]",
    );
    s.init();
    let out = s.backup("laptop", 0);
    assert!(out.contains("laptop: good"), "{out}");
    let snap = in_snap(&s.latest("laptop"), root);
    assert!(snap.join("Downloads/keep/wanted.pdf").exists());
    assert!(snap.join("Downloads.txt").exists());
    assert!(!snap.join("Downloads/movie.iso").exists());
    assert!(!snap.join("Downloads/zzz").exists());
    assert!(!snap.join("many/d3").exists());
    assert_same_tree(&root.join("many/d4"), &snap.join("many/d4"));
    assert_same_tree(&root.join("a"), &snap.join("a"));
}

#[test]
fn btrfs_snapshots_drop_what_was_deleted_window_by_window() {
    small_windows();
    if let Some(why) = mounts::missing_facility(Fs::Btrfs) {
        panic!("cannot test btrfs on this machine: {why}");
    }
    let m = Mounted::new(Fs::Btrfs, 160);
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    tricky_tree(src.path());
    let mut s = Setup::new(&sshd.host_toml("laptop", &[src.path()], ""), "");
    s.store_in(&m.mnt);
    s.init();
    s.backup("laptop", 0);
    let first = s.latest("laptop");
    assert_same_tree(src.path(), &in_snap(&first, src.path()));

    // The staging folder starts as a snapshot of the previous one: deletions are found by
    // walking it against the listing's stored names, sorted through the disk too.
    change(src.path());
    let out = s.backup("laptop", 0);
    assert!(out.contains("laptop: good"), "{out}");
    let second = s.latest("laptop");
    assert_same_tree(src.path(), &in_snap(&second, src.path()));
    assert!(!in_snap(&second, src.path()).join("many/d2").exists());
    assert!(in_snap(&first, src.path()).join("many/d2/f3").exists());
    assert_no_spill_left(&s.storage.join("laptop"));
}

#[test]
fn a_run_killed_between_windows_resumes_and_fetches_only_the_rest() {
    small_windows();
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    forty_files(src.path());
    // 4 MB at 1 MB/s: about four seconds, killed after one and a half.
    let s = Setup::new(
        &sshd.host_toml("laptop", &[src.path()], "bwlimit = \"1MB/s\""),
        "",
    );
    s.init();
    kill_backup_after(&s, "laptop", std::time::Duration::from_millis(1500));
    assert!(s.snapshots("laptop").is_empty());

    // A file deleted meanwhile must not come back from the staging folder.
    fs::remove_file(src.path().join("d0/f00.bin")).unwrap();
    let (out, resumed) = rerun_unthrottled(&s, "laptop");
    assert!(resumed > 0 && resumed < 39, "{out}");
    assert!(
        out.contains(&format!("{} new files", 39 - resumed)),
        "{out}"
    );
    assert_same_tree(src.path(), &in_snap(&s.latest("laptop"), src.path()));
    let list = text(&s.snapnest(&["list", "laptop"]));
    assert_eq!(
        list.lines().filter(|l| l.starts_with("laptop")).count(),
        1,
        "the killed run's half-written manifest is not a snapshot: {list}"
    );
}
