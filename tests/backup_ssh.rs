//! Backing up real trees through a real OpenSSH server on 127.0.0.1.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::*;

fn one_host(sshd: &Sshd, src: &std::path::Path, extra: &str) -> Setup {
    let s = Setup::new(&sshd.host_toml("laptop", &[src], extra), "");
    s.init();
    s
}

#[test]
fn first_backup_is_a_faithful_copy_and_second_links_everything() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let s = one_host(&sshd, src.path(), "");

    let out = s.backup("laptop", 0);
    assert!(out.contains("laptop: good"), "{out}");
    let first = s.latest("laptop");
    assert_same_tree(src.path(), &in_snap(&first, src.path()));
    // Parent folders of the backed-up folder exist in the snapshot, with their metadata.
    let parent = src.path().parent().unwrap();
    assert_eq!(
        fs::metadata(parent).unwrap().mode() & 0o7777,
        fs::metadata(in_snap(&first, parent)).unwrap().mode() & 0o7777
    );

    // Owner-only host folder: stored setuid files are not runnable by others on the box.
    assert_eq!(
        fs::metadata(s.storage.join("laptop")).unwrap().mode() & 0o777,
        0o700
    );

    let out = s.backup("laptop", 0);
    assert!(out.contains("0 new files"), "{out}");
    let second = s.latest("laptop");
    assert_ne!(first, second);
    assert_same_tree(src.path(), &in_snap(&second, src.path()));
    for f in [
        "a.txt",
        "docs/report.odt",
        "docs/deep/er/notes.md",
        "bin/run.sh",
    ] {
        let a = fs::metadata(in_snap(&first, &src.path().join(f))).unwrap();
        let b = fs::metadata(in_snap(&second, &src.path().join(f))).unwrap();
        assert_eq!(
            a.ino(),
            b.ino(),
            "{f} shares its inode with the previous snapshot"
        );
    }
}

#[test]
fn changes_are_fetched_and_deletes_show_only_in_the_new_snapshot() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let s = one_host(&sshd, src.path(), "");
    s.backup("laptop", 0);
    let first = s.latest("laptop");

    // Same size, new content, mtime differing only in nanoseconds: rsync would miss this.
    write_file(
        &src.path().join("a.txt"),
        b"HELLO\n",
        1_700_000_000_123_456_790,
    );
    fs::remove_file(src.path().join("docs/deep/er/notes.md")).unwrap();
    write_file(
        &src.path().join("new/file.bin"),
        &vec![1u8; 5000],
        1_700_000_300_000_000_000,
    );

    let out = s.backup("laptop", 0);
    assert!(out.contains("2 new files"), "{out}");
    let second = s.latest("laptop");
    assert_same_tree(src.path(), &in_snap(&second, src.path()));
    assert_eq!(
        fs::read(in_snap(&first, &src.path().join("a.txt"))).unwrap(),
        b"hello\n"
    );
    assert!(in_snap(&first, &src.path().join("docs/deep/er/notes.md")).exists());
    assert!(!in_snap(&second, &src.path().join("docs/deep/er/notes.md")).exists());
    let unchanged = src.path().join("docs/report.odt");
    assert_eq!(
        fs::metadata(in_snap(&first, &unchanged)).unwrap().ino(),
        fs::metadata(in_snap(&second, &unchanged)).unwrap().ino()
    );
}

#[test]
fn list_shows_snapshots_with_counts_and_restore_brings_files_back() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let s = one_host(&sshd, src.path(), "");
    s.backup("laptop", 0);

    let out = s.snapnest(&["list", "laptop"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let row = t.lines().find(|l| l.starts_with("laptop")).expect(&t);
    assert!(
        row.contains(" 4 ") && row.ends_with("good"),
        "4 files, good: {row}"
    );

    let to = s.dir.path().join("restored");
    let docs = src.path().join("docs");
    let out = s.snapnest(&[
        "restore",
        "laptop",
        "latest",
        docs.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_tree(&docs, &to.join("docs"));

    // Never overwrites.
    let out = s.snapnest(&[
        "restore",
        "laptop",
        "latest",
        docs.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("already exists"), "{}", text(&out));
}

#[test]
fn excluded_paths_are_left_out_and_includes_win() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    write_file(&root.join("keep.txt"), b"k", 1_700_000_000_000_000_000);
    write_file(&root.join("junk.tmp"), b"j", 1_700_000_000_000_000_000);
    write_file(&root.join(".cache/big"), b"c", 1_700_000_000_000_000_000);
    write_file(
        &root.join("Downloads/movie.iso"),
        b"m",
        1_700_000_000_000_000_000,
    );
    write_file(
        &root.join("Downloads/keep/wanted.pdf"),
        b"w",
        1_700_000_000_000_000_000,
    );
    let extra = format!(
        "exclude = [\"{d}/Downloads/\"]\ninclude = [\"{d}/Downloads/keep/\"]",
        d = root.display()
    );
    let s = Setup::new(
        &sshd.host_toml("laptop", &[root], &extra),
        "exclude = [\"*.tmp\", \".cache/\"]",
    );
    s.init();
    s.backup("laptop", 0);
    let snap = in_snap(&s.latest("laptop"), root);
    assert!(snap.join("keep.txt").exists());
    assert!(snap.join("Downloads/keep/wanted.pdf").exists());
    assert!(!snap.join("junk.tmp").exists());
    assert!(!snap.join(".cache").exists());
    assert!(!snap.join("Downloads/movie.iso").exists());
}

#[test]
fn missing_marker_refuses_to_back_up() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let s = Setup::new(&sshd.host_toml("laptop", &[src.path()], ""), "");
    // No init: as if the disk were not mounted.
    let out = s.snapnest(&["backup", "laptop"]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("not a snapnest storage folder") && t.contains("mounted"),
        "{t}"
    );
    assert_eq!(
        fs::read_dir(&s.storage).unwrap().count(),
        0,
        "nothing written into the empty mount point"
    );

    // init never creates the storage folder itself.
    fs::remove_dir(&s.storage).unwrap();
    let out = s.snapnest(&["init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("never creates it"), "{}", text(&out));
    assert!(!s.storage.exists());
}

#[test]
fn hostkey_prints_the_pin_and_a_changed_key_is_refused() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    // Unpinned host: hostkey prints the line, backup refuses.
    let unpinned = sshd
        .host_toml("laptop", &[src.path()], "")
        .replace(&format!("host_key = \"{}\"\n", sshd.fingerprint), "");
    let s = Setup::new(&unpinned, "");
    s.init();
    let out = s.snapnest(&["hostkey", "laptop"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("host_key = \"{}\"", sshd.fingerprint)),
        "{}",
        text(&out)
    );
    let out = s.backup("laptop", 2);
    assert!(out.contains("no `host_key` is pinned"), "{out}");

    // Pinned to another key: a hard error naming both.
    let other = tempfile::tempdir().unwrap();
    keygen(&other.path().join("k"));
    let wrong = fingerprint_of(&other.path().join("k.pub"));
    let s = Setup::new(
        &sshd
            .host_toml("laptop", &[src.path()], "")
            .replace(&sshd.fingerprint, &wrong),
        "",
    );
    s.init();
    let out = s.backup("laptop", 2);
    assert!(
        out.contains("HOST KEY CHANGED") && out.contains(&wrong) && out.contains(&sshd.fingerprint),
        "{out}"
    );
    assert!(s.snapshots("laptop").is_empty());
}

#[test]
fn bandwidth_limit_slows_the_transfer_to_the_configured_rate() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    write_file(
        &src.path().join("big.bin"),
        &vec![9u8; 3_000_000],
        1_700_000_000_000_000_000,
    );
    let s = one_host(&sshd, src.path(), "bwlimit = \"8Mbit\""); // 1 MB/s
    let started = std::time::Instant::now();
    s.backup("laptop", 0);
    // A lower bound only: no machine is too fast for it, however noisy.
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(2500),
        "3 MB at 1 MB/s took only {took:?}"
    );
    assert_same_tree(src.path(), &in_snap(&s.latest("laptop"), src.path()));
}

#[test]
fn files_hard_linked_together_on_the_source_are_both_stored() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    write_file(
        &src.path().join("a.txt"),
        b"shared content",
        1_700_000_000_000_000_000,
    );
    fs::hard_link(src.path().join("a.txt"), src.path().join("b.txt")).unwrap();
    let s = one_host(&sshd, src.path(), "");
    let out = s.backup("laptop", 0);
    assert!(
        out.contains("2 new files") && !out.contains("warning"),
        "{out}"
    );
    assert_same_tree(src.path(), &in_snap(&s.latest("laptop"), src.path()));
}
