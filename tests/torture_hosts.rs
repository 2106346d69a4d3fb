//! Two torture scenarios about the machine being backed up, against a real loopback sshd:
//! its host key changes (refused, alerted, nothing transferred), and a daemon and a manual
//! backup of the same host run at the same time (one waits, both snapshots whole).

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const T: i64 = 1_700_000_000_000_000_000;

#[test]
fn a_changed_host_key_is_refused_alerted_and_nothing_is_transferred() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_file(&src.join("a.txt"), b"before\n", T);
    let marker = work.path().join("alert.txt");
    let mut sshd = Sshd::start();
    // Log every login (the fixture logs errors only): the proof, below, that none happened.
    let cfg = sshd.dir.path().join("sshd_config");
    let text_cfg = fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, text_cfg.replace("LogLevel ERROR", "LogLevel INFO")).unwrap();
    sshd.stop();
    sshd.start_again();
    let setup = Setup::new(
        &sshd.host_toml(
            "laptop",
            &[&src],
            &format!(
                "schedule = \"manual\"\non_error = \"echo $SNAPNEST_RESULT: $SNAPNEST_MESSAGE > {}\"",
                marker.display()
            ),
        ),
        "",
    );
    setup.init();
    setup.backup("laptop", 0);
    let sshd_log = sshd.dir.path().join("sshd.log");
    assert!(fs::read_to_string(&sshd_log)
        .unwrap()
        .contains("Accepted publickey"));

    // The machine gets a new host key (reinstalled, or someone in the middle).
    write_file(&src.join("secret-after.txt"), b"must not be copied\n", T);
    sshd.stop();
    let key = sshd.dir.path().join("host_key");
    fs::remove_file(&key).unwrap();
    fs::remove_file(key.with_extension("pub")).unwrap();
    keygen(&key);
    let new_fp = fingerprint_of(&key.with_extension("pub"));
    assert_ne!(new_fp, sshd.fingerprint);
    sshd.start_again();

    setup.with_daemon_table("");
    let daemon = setup.start_daemon();
    let out = setup.snapnest(&["backup", "laptop"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("HOST KEY CHANGED") && t.contains(&new_fp), "{t}");
    // Alerted: the on_error hook ran with the reason, the daemon logged it, status shows it.
    wait_until("the on_error hook", Duration::from_secs(10), || {
        marker.exists()
    });
    let alert = fs::read_to_string(&marker).unwrap();
    assert!(
        alert.starts_with("failed: ") && alert.contains("HOST KEY CHANGED"),
        "{alert}"
    );
    assert!(
        daemon.log_text().contains("HOST KEY CHANGED"),
        "{}",
        daemon.log_text()
    );
    let st = daemon.status().unwrap();
    let host = &st["hosts"][0];
    assert_eq!(host["last_result"], "failed", "{st}");
    assert!(
        host["last_message"]
            .as_str()
            .unwrap()
            .contains("HOST KEY CHANGED"),
        "{st}"
    );
    // Nothing transferred: no login at all, no new snapshot, no staging folder.
    let log = fs::read_to_string(&sshd_log).unwrap();
    assert!(
        !log.contains("Accepted"),
        "the server let snapnest log in:\n{log}"
    );
    assert_eq!(setup.snapshots("laptop").len(), 1);
    let leftovers: Vec<String> = fs::read_dir(setup.storage.join("laptop"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".incomplete-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(!in_snap(&setup.latest("laptop"), &src.join("secret-after.txt")).exists());
}

/// A second config on the same storage whose `[daemon]` state folder has no daemon: its
/// `snapnest backup` runs in its own process instead of asking the daemon.
fn manual_config(setup: &Setup) -> std::path::PathBuf {
    let other = setup.dir.path().join("manual.toml");
    let text = fs::read_to_string(&setup.config).unwrap();
    let state = setup.dir.path().join("state").display().to_string();
    let manual_state = setup.dir.path().join("manual-state");
    fs::write(
        &other,
        text.replace(&state, &manual_state.display().to_string()),
    )
    .unwrap();
    other
}

#[test]
fn a_daemon_and_a_manual_backup_of_the_same_host_take_turns() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    // 3 MB at 1 MB/s: each run takes about 3 s, long enough to overlap.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    write_file(&src.join("big.bin"), &big, T);
    write_file(&src.join("small.txt"), b"small\n", T);
    let sshd = Sshd::start();
    let setup = Setup::new(
        &sshd.host_toml("laptop", &[&src], "bwlimit = \"8Mbit\"\nevery = \"1h\""),
        "",
    );
    setup.init();
    setup.with_daemon_table("");
    let manual = manual_config(&setup);

    // 1. The daemon starts the due host at once; a manual backup meanwhile waits its turn.
    let daemon = setup.start_daemon();
    wait_until("the daemon's run", Duration::from_secs(10), || {
        daemon.host_state("laptop") == "running"
    });
    let out = snapnest(&manual, &["backup", "laptop"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("is in use by") && t.contains("laptop: good"),
        "{t}"
    );
    wait_until("two snapshots", Duration::from_secs(20), || {
        setup.snapshots("laptop").len() == 2
    });

    // 2. A manual backup runs first; the daemon, asked to back up, waits for the storage.
    write_file(&src.join("small.txt"), b"changed\n", T + 1);
    fs::write(
        src.join("big.bin"),
        big.iter().rev().copied().collect::<Vec<u8>>(),
    )
    .unwrap();
    let first = Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .arg("--config")
        .arg(&manual)
        .args(["backup", "laptop"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "the manual run to hold the storage",
        Duration::from_secs(10),
        || {
            fs::read_dir(setup.storage.join("laptop"))
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".incomplete-"))
        },
    );
    let mut asked = Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .arg("--config")
        .arg(&setup.config)
        .args(["backup", "laptop"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut saw_wait = false;
    wait_until(
        "the daemon to wait for the storage",
        Duration::from_secs(10),
        || {
            saw_wait = daemon.host_state("laptop") == "waiting_for_storage";
            saw_wait || asked.try_wait().unwrap().is_some()
        },
    );
    assert!(
        saw_wait,
        "the daemon ran while the manual backup held the storage"
    );
    let first_out = first.wait_with_output().unwrap();
    assert_eq!(first_out.status.code(), Some(0), "{}", text(&first_out));
    let via_daemon = asked.wait_with_output().unwrap();
    let t = text(&via_daemon);
    assert_eq!(via_daemon.status.code(), Some(0), "{t}");
    assert!(
        t.contains("asking it to back up now") && t.contains("laptop: good"),
        "{t}"
    );

    // Four runs, four whole snapshots; the last two hold the changed source.
    let snaps = setup.snapshots("laptop");
    assert_eq!(snaps.len(), 4, "{snaps:?}");
    for s in &snaps[2..] {
        assert_same_tree(&src, &in_snap(s, &src));
    }
    for s in &snaps[..2] {
        assert_eq!(fs::read(in_snap(s, &src.join("big.bin"))).unwrap(), big);
        assert_eq!(
            fs::read(in_snap(s, &src.join("small.txt"))).unwrap(),
            b"small\n"
        );
    }
    let v = setup.snapnest(&["verify"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
}
