//! Interruptions: kill -9 mid-run, a full disk, the link-count limit. Nothing is lost and
//! the next run picks up where the last one stopped.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn staging_dirs(s: &Setup, host: &str) -> Vec<std::path::PathBuf> {
    // The host folder appears with the first run.
    fs::read_dir(s.storage.join(host))
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".incomplete-")
        })
        .collect()
}

#[test]
fn kill_9_mid_run_then_rerun_resumes_without_fetching_again() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    forty_files(src.path());
    // 4 MB at 1 MB/s: about four seconds, killed after one and a half.
    let s = Setup::new(
        &sshd.host_toml("laptop", &[src.path()], "bwlimit = \"1MB/s\""),
        "",
    );
    s.init();
    kill_backup_after(&s, "laptop", Duration::from_millis(1500));

    assert!(
        s.snapshots("laptop").is_empty(),
        "no snapshot published by the killed run"
    );
    assert!(!s.storage.join("laptop/latest").exists());
    let staging = staging_dirs(&s, "laptop");
    assert_eq!(staging.len(), 1, "the killed run left its staging folder");

    // The rerun resumes into it: files completed before the kill are not fetched again.
    let (out, resumed) = rerun_unthrottled(&s, "laptop");
    assert!(resumed > 0 && resumed < 40, "{out}");
    assert!(
        out.contains(&format!("{} new files", 40 - resumed)),
        "{out}"
    );
    assert!(staging_dirs(&s, "laptop").is_empty());
    assert_same_tree(src.path(), &in_snap(&s.latest("laptop"), src.path()));

    // The catalog remembers the killed run.
    let list = text(&s.snapnest(&["list", "laptop"]));
    assert_eq!(
        list.lines().filter(|l| l.starts_with("laptop")).count(),
        1,
        "{list}"
    );
}

#[test]
fn a_full_disk_fails_the_run_cleanly_and_keeps_the_previous_snapshot() {
    let img = tempfile::tempdir().unwrap();
    let image = img.path().join("disk.img");
    let mnt = img.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    assert!(Command::new("truncate")
        .args(["-s", "24M"])
        .arg(&image)
        .status()
        .unwrap()
        .success());
    assert!(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&image)
        .status()
        .unwrap()
        .success());
    assert!(
        Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt)
            .status()
            .unwrap()
            .success(),
        "loop mount"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());

    let src = tempfile::tempdir().unwrap();
    write_file(
        &src.path().join("small.txt"),
        b"small",
        1_700_000_000_000_000_000,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    fs::write(
        &config,
        format!("[storage]\npath = \"{}\"\n[[host]]\nname = \"box\"\nsource = \"local\"\nfolders = [\"{}\"]\n", mnt.display(), src.path().display()),
    )
    .unwrap();
    assert!(snapnest(&config, &["init"]).status.success());
    let out = snapnest(&config, &["backup", "box"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let first = fs::canonicalize(mnt.join("box/latest")).unwrap();

    // 40 MB does not fit on a 24 MB disk.
    write_file(
        &src.path().join("big.bin"),
        &vec![3u8; 40 << 20],
        1_700_000_000_000_000_000,
    );
    let out = snapnest(&config, &["backup", "box"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("No space left") && t.contains("big.bin"),
        "the error names the cause and the file: {t}"
    );
    assert_eq!(
        fs::canonicalize(mnt.join("box/latest")).unwrap(),
        first,
        "latest still points at the good snapshot"
    );
    assert_eq!(
        fs::read(
            first
                .join(src.path().strip_prefix("/").unwrap())
                .join("small.txt")
        )
        .unwrap(),
        b"small"
    );
}

#[test]
fn a_file_at_the_link_count_limit_is_copied_not_aborted() {
    let src = tempfile::tempdir().unwrap();
    write_file(
        &src.path().join("popular.txt"),
        b"linked a lot",
        1_700_000_000_000_000_000,
    );
    write_file(
        &src.path().join("other.txt"),
        b"other",
        1_700_000_000_000_000_000,
    );
    let s = Setup::new(&local_host("box", src.path()), "");
    s.init();
    s.backup("box", 0);
    let stored = in_snap(&s.latest("box"), &src.path().join("popular.txt"));
    // Bring the stored file to ext4's limit of 65,000 links.
    let crowd = s.storage.join("crowd");
    fs::create_dir(&crowd).unwrap();
    let started = Instant::now();
    let mut n = fs::metadata(&stored).unwrap().nlink();
    while n < 65_000 {
        match fs::hard_link(&stored, crowd.join(n.to_string())) {
            Ok(()) => n += 1,
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => break,
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!("made {n} links in {:?}", started.elapsed());

    let out = s.backup("box", 0);
    assert!(
        out.contains("0 new files"),
        "copied locally, not fetched: {out}"
    );
    let second = in_snap(&s.latest("box"), &src.path().join("popular.txt"));
    assert_eq!(fs::read(&second).unwrap(), b"linked a lot");
    assert_ne!(
        fs::metadata(&second).unwrap().ino(),
        fs::metadata(&stored).unwrap().ino(),
        "a fresh copy"
    );
    let _ = fs::remove_dir_all(&crowd);
}

#[test]
fn a_host_that_stops_answering_fails_within_the_timeout_and_the_next_run_resumes() {
    let mut sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    thirty_megabytes(src.path());
    // 30 MB at 4 MB/s: more than every buffer between the two ends can hold.
    let s = Setup::new(
        &sshd.host_toml(
            "laptop",
            &[src.path()],
            "bwlimit = \"4MB/s\"\ntimeout = \"2s\"",
        ),
        "",
    );
    s.init();
    let child = spawn_backup(&s, "laptop");
    // Freeze once a few files are complete in the staging folder.
    let done = in_snap(Path::new(""), &src.path().join("f02.bin"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !staging_dirs(&s, "laptop")
        .iter()
        .any(|d| d.join(&done).exists())
    {
        assert!(Instant::now() < deadline, "the transfer never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The machine freezes mid-transfer (laptop lid closed, Wi-Fi gone): nothing more arrives.
    let frozen = sshd.session_pids();
    assert!(!frozen.is_empty(), "a session is being served");
    for pid in &frozen {
        unsafe { libc::kill(*pid as i32, libc::SIGSTOP) };
    }
    let stopped_at = Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = stopped_at.elapsed();
    for pid in &frozen {
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    let t = text(&out);
    eprintln!("after {waited:?}: {t}");
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("laptop: failed"), "{t}");
    assert!(
        waited < Duration::from_secs(20),
        "gave up after {waited:?}, timeout is 2s"
    );
    assert!(s.snapshots("laptop").is_empty());

    sshd.stop();
    let sshd2 = Sshd::start();
    // Same machine, new server instance on another port with another key: re-pin.
    let cfg = fs::read_to_string(&s.config).unwrap();
    let cfg = cfg
        .replace(
            &format!("port = {}", sshd.port),
            &format!("port = {}", sshd2.port),
        )
        .replace(&sshd.fingerprint, &sshd2.fingerprint)
        .replace(
            &sshd.client_key.display().to_string(),
            &sshd2.client_key.display().to_string(),
        )
        .replace("bwlimit = \"4MB/s\"", "");
    fs::write(&s.config, cfg).unwrap();
    let out = s.backup("laptop", 0);
    assert!(out.contains("resumed"), "{out}");
    assert_same_tree(src.path(), &in_snap(&s.latest("laptop"), src.path()));
}

#[test]
fn resuming_over_a_link_to_a_published_snapshot_never_rewrites_that_snapshot() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    let f = src.path().join("f.txt");
    write_file(&f, b"version one", 1_700_000_000_000_000_000);
    let s = Setup::new(&sshd.host_toml("laptop", &[src.path()], ""), "");
    s.init();
    s.backup("laptop", 0);
    let first = s.latest("laptop");
    let published = in_snap(&first, &f);

    // What a run killed after its linking phase leaves: a staging folder whose files are
    // hard links into the published snapshot.
    let staging = s.storage.join("laptop/.incomplete-2000-01-01_000000");
    let staged = in_snap(&staging, &f);
    fs::create_dir_all(staged.parent().unwrap()).unwrap();
    fs::hard_link(&published, &staged).unwrap();

    write_file(&f, b"version two!", 1_700_000_100_000_000_000);
    s.backup("laptop", 0);
    assert_eq!(
        fs::read(&published).unwrap(),
        b"version one",
        "the old snapshot is untouched"
    );
    assert_eq!(
        fs::read(in_snap(&s.latest("laptop"), &f)).unwrap(),
        b"version two!"
    );
}

#[test]
fn a_latest_link_left_behind_by_a_crash_is_repaired_by_the_next_run_even_a_failed_one() {
    let src = tempfile::tempdir().unwrap();
    write_file(&src.path().join("x"), b"x", 1_700_000_000_000_000_000);
    let s = Setup::new(&local_host("box", src.path()), "");
    s.init();
    s.backup("box", 0);
    let snap = s.snapshots("box").pop().unwrap();
    // As if the process died between the rename and repointing `latest`.
    fs::remove_file(s.storage.join("box/latest")).unwrap();
    drop(src); // and the source is gone: this run fails
    s.backup("box", 2);
    assert_eq!(s.latest("box"), fs::canonicalize(snap).unwrap());
}

#[test]
fn a_folder_whose_name_the_disk_refuses_is_left_out_and_the_rest_is_stored() {
    let src = tempfile::tempdir().unwrap();
    write_file(
        &src.path().join("ok.txt"),
        b"fine",
        1_700_000_000_000_000_000,
    );
    // A source path just under PATH_MAX: inside the staging folder it is over it.
    let mut deep = src.path().to_path_buf();
    while deep.as_os_str().len() < 4096 - 260 {
        deep.push("d".repeat(250));
    }
    let room = 4090 - deep.as_os_str().len();
    deep.push("e".repeat(room.min(250)));
    fs::create_dir_all(&deep).unwrap();
    let s = Setup::new(&local_host("box", src.path()), "");
    s.init();
    let out = s.backup("box", 1);
    assert!(
        out.contains("folder cannot be stored on this disk"),
        "{out}"
    );
    assert_eq!(
        fs::read(in_snap(&s.latest("box"), &src.path().join("ok.txt"))).unwrap(),
        b"fine"
    );
}
