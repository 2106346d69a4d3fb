//! The daemon end to end: a real `snapnest daemon` process, a real sshd on loopback, signals,
//! hooks and the run-now queue, asserting on what a user would see.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

fn snapshot_count(setup: &Setup, host: &str) -> usize {
    if !setup.storage.join(host).exists() {
        return 0;
    }
    setup.snapshots(host).len()
}

#[test]
fn an_away_host_is_backed_up_soon_after_it_appears() {
    let mut sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let setup = Setup::new(&sshd.host_toml("laptop", &[src.path()], ""), "");
    setup.init();
    setup.with_daemon_table("");
    sshd.stop();

    let daemon = setup.start_daemon();
    wait_until(
        "the laptop to be seen away",
        Duration::from_secs(20),
        || daemon.host_state("laptop") == "away",
    );
    let status = setup.snapnest(&["status"]);
    let t = text(&status);
    assert!(
        t.contains("laptop") && t.contains("away") && t.contains("not reachable"),
        "{t}"
    );
    assert_eq!(snapshot_count(&setup, "laptop"), 0);
    assert!(
        !daemon.log_text().contains("failed"),
        "being away is not a failure:\n{}",
        daemon.log_text()
    );

    sshd.start_again();
    // Presence is checked every 5 s here; the run itself takes a second or two.
    wait_until(
        "a snapshot after the laptop came back",
        Duration::from_secs(30),
        || snapshot_count(&setup, "laptop") == 1,
    );
    // The folder is renamed into place a moment before the run reports.
    wait_until("the run's log line", Duration::from_secs(10), || {
        daemon.log_text().contains("host=laptop run=1 good")
    });
    assert_same_tree(src.path(), &in_snap(&setup.latest("laptop"), src.path()));
    let log = daemon.log_text();
    assert!(
        log.contains("host=laptop backup starting (scheduled)"),
        "{log}"
    );
}

#[test]
fn a_manual_backup_while_the_daemon_runs_goes_through_the_daemon() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    // Manual only: the daemon itself never starts this host.
    let setup = Setup::new(
        &sshd.host_toml("laptop", &[src.path()], "schedule = \"manual\""),
        "",
    );
    setup.init();
    setup.with_daemon_table("");
    let _daemon = setup.start_daemon();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        snapshot_count(&setup, "laptop"),
        0,
        "manual hosts wait for a request"
    );

    let out = setup.snapnest(&["backup", "laptop"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("asking it to back up now"), "{t}");
    assert!(t.contains("laptop: good"), "{t}");
    assert_eq!(snapshot_count(&setup, "laptop"), 1);

    // A host the config doesn't have is refused by the command line, before the queue.
    let out = setup.snapnest(&["backup", "desktop"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no host named \"desktop\""));
}

#[test]
fn a_second_daemon_on_the_same_state_folder_refuses() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let setup = Setup::new(&local_host("box", src.path()), "schedule = \"manual\"");
    setup.init();
    setup.with_daemon_table("");
    let first = setup.start_daemon();
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .arg("--config")
        .arg(&setup.config)
        .arg("daemon")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let t = text(&second);
    assert!(
        t.contains("another snapnest daemon") && t.contains("is running"),
        "{t}"
    );
    drop(first);
}

#[test]
fn sighup_with_a_broken_config_keeps_the_daemon_on_the_old_one() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let setup = Setup::new(&local_host("box", src.path()), "schedule = \"manual\"");
    setup.init();
    let state = setup.with_daemon_table("");
    let mut daemon = setup.start_daemon();
    let good_config = fs::read_to_string(&setup.config).unwrap();

    fs::write(
        &setup.config,
        format!("{good_config}\n[[host]]\nname = \"Bad Name\"\n"),
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    wait_until(
        "the reload error in the log",
        Duration::from_secs(10),
        || daemon.log_text().contains("config reload failed"),
    );
    let log = daemon.log_text();
    assert!(
        log.contains("still running on the previous config"),
        "{log}"
    );
    assert!(
        log.contains("Bad Name"),
        "the log says what is wrong:\n{log}"
    );
    assert!(daemon.alive());

    // Still serving the old config: a run-now request (dropped into the queue directly,
    // as the command line can't read the broken file) is answered.
    let id = snapnest::daemon::queue::submit(&state, "box").unwrap();
    let done = snapnest::daemon::queue::wait(&state, &id, || {}).unwrap();
    assert_eq!(done.outcome, "good", "{}", done.summary);
    assert_eq!(snapshot_count(&setup, "box"), 1);

    // A fixed config with a second host is taken on the next SIGHUP.
    let other = tempfile::tempdir().unwrap();
    sample_tree(other.path());
    fs::write(
        &setup.config,
        format!("{good_config}\n{}", local_host("nas", other.path())),
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    wait_until(
        "the second host in the status",
        Duration::from_secs(10),
        || !daemon.host_state("nas").is_empty(),
    );
    assert!(daemon.log_text().contains("config reloaded: 2 hosts"));
}

#[test]
fn sigterm_mid_transfer_then_restart_resumes() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    // 300 files of 64 KiB at 4 MiB/s: about 5 s of transfer.
    for i in 0..300 {
        write_file(
            &src.path().join(format!("d{}/f{i:03}", i % 7)),
            &vec![(i % 251) as u8; 64 * 1024],
            1_700_000_000_000_000_000 + i as i64,
        );
    }
    let setup = Setup::new(
        &sshd.host_toml("laptop", &[src.path()], "bwlimit = \"4MiB/s\""),
        "",
    );
    setup.init();
    setup.with_daemon_table("");
    let mut daemon = setup.start_daemon();
    wait_until("files to be fetched", Duration::from_secs(30), || {
        daemon.status().is_some_and(|s| {
            s["hosts"][0]["state"]["state"] == "running"
                && s["hosts"][0]["state"]["files_done"].as_u64().unwrap_or(0) >= 20
        })
    });
    daemon.signal(libc::SIGTERM);
    let code = daemon.wait_exit(Duration::from_secs(10));
    assert_eq!(
        code,
        Some(0),
        "exits within the grace period:\n{}",
        daemon.log_text()
    );
    let log = daemon.log_text();
    assert!(log.contains("asked to checkpoint"), "{log}");
    assert!(log.contains("interrupted"), "{log}");
    assert_eq!(
        snapshot_count(&setup, "laptop"),
        0,
        "nothing half-done is published"
    );
    let staged: Vec<_> = fs::read_dir(setup.storage.join("laptop"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".incomplete-"))
        .collect();
    assert_eq!(staged.len(), 1, "the staging folder stays for the next run");
    let list = text(&setup.snapnest(&["list", "laptop"]));
    assert!(list.contains("last run of laptop: interrupted"), "{list}");

    let daemon = setup.start_daemon();
    wait_until(
        "the resumed run to publish",
        Duration::from_secs(60),
        || snapshot_count(&setup, "laptop") == 1,
    );
    wait_until("the run's log line", Duration::from_secs(10), || {
        daemon.log_text().contains("host=laptop run=2")
    });
    assert_same_tree(src.path(), &in_snap(&setup.latest("laptop"), src.path()));
    let log = daemon.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("host=laptop run=2"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("resumed"), "the second run resumes: {line}");
    // An interruption is not a failure: no backoff was applied.
    assert!(!log.contains("backoff"), "{log}");
}

#[test]
fn a_failing_before_hook_aborts_without_touching_snapshots() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let work = tempfile::tempdir().unwrap();
    let marker = work.path().join("on_error.txt");
    let setup = Setup::new(&sshd.host_toml("laptop", &[src.path()], ""), "");
    setup.init();
    setup.backup("laptop", 0);
    let before = setup.snapshots("laptop");
    let latest = setup.latest("laptop");

    let mut text_cfg = fs::read_to_string(&setup.config).unwrap();
    text_cfg = text_cfg.replace(
        "folders = [",
        &format!(
            "before = \"echo cannot dump the database >&2; exit 3\"\non_error = \"echo $SNAPNEST_RESULT: $SNAPNEST_MESSAGE > {}\"\nfolders = [",
            marker.display()
        ),
    );
    fs::write(&setup.config, text_cfg).unwrap();
    setup.with_daemon_table("");
    let daemon = setup.start_daemon();
    // Touch the source: a run that got past the hook would make a new snapshot.
    fs::write(src.path().join("new.txt"), "new").unwrap();

    let out = setup.snapnest(&["backup", "laptop"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("before hook failed") && t.contains("exit 3"),
        "{t}"
    );
    assert!(
        t.contains("cannot dump the database"),
        "the hook's output is shown: {t}"
    );
    assert_eq!(
        setup.snapshots("laptop"),
        before,
        "no snapshot added or removed"
    );
    assert_eq!(setup.latest("laptop"), latest);
    let staged = fs::read_dir(setup.storage.join("laptop"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".incomplete-"));
    assert!(!staged, "no staging folder was even started");
    let on_error = fs::read_to_string(&marker).expect("on_error hook ran");
    assert!(
        on_error.starts_with("failed: before hook failed"),
        "{on_error}"
    );
    let list = text(&setup.snapnest(&["list", "laptop"]));
    assert!(
        list.contains("last run of laptop: failed: before hook failed"),
        "{list}"
    );
    assert!(
        daemon.log_text().contains("host=laptop run=2 failed"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn a_remote_notification_runs_on_the_backed_up_side() {
    let bin = tempfile::tempdir().unwrap();
    let record = recording_command(bin.path(), "notify-send");
    let sshd = Sshd::with_bin_on_path(bin.path());
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let setup = Setup::new(
        &sshd.host_toml("laptop", &[src.path()], "notify = \"linux\""),
        "",
    );
    setup.init();
    setup.with_daemon_table("");
    let _daemon = setup.start_daemon();
    wait_until("the notification", Duration::from_secs(30), || {
        record.exists()
    });
    let args = fs::read_to_string(&record).unwrap();
    assert!(args.contains("snapnest"), "{args}");
    assert!(args.to_lowercase().contains("backup"), "{args}");
    assert!(args.contains("bus=unix:path=/run/user/0/bus"), "{args}");
}

#[test]
fn with_the_disk_missing_runs_wait_and_start_when_it_returns() {
    let disk = LoopDisk::ext4(64);
    let mnt = disk.path().to_path_buf();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let mut setup = Setup::new(&local_host("box", src.path()), "schedule = \"manual\"");
    setup.store_in(&mnt);
    setup.init();
    setup.with_daemon_table("");
    let daemon = setup.start_daemon();

    // The idle daemon holds nothing open on the disk: it can be unmounted.
    disk.unmount();
    wait_until(
        "the daemon to see the disk gone",
        Duration::from_secs(10),
        || {
            daemon
                .status()
                .is_some_and(|s| s["disk"]["state"] == "missing")
        },
    );
    let state = daemon.state_dir.clone();
    let id = snapnest::daemon::queue::submit(&state, "box").unwrap();
    wait_until(
        "the host to wait for the disk",
        Duration::from_secs(10),
        || daemon.host_state("box") == "waiting_for_disk",
    );
    let t = text(&setup.snapnest(&["status"]));
    assert!(
        t.contains("MISSING") && t.contains("waiting for the backup disk"),
        "{t}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        fs::read_dir(&mnt).unwrap().count(),
        0,
        "nothing is written into the empty mount point"
    );

    disk.mount();
    let done = snapnest::daemon::queue::wait(&state, &id, || {}).unwrap();
    assert_eq!(done.outcome, "good", "{}", done.summary);
    assert_same_tree(
        src.path(),
        &in_snap(
            &fs::canonicalize(mnt.join("box/latest")).unwrap(),
            src.path(),
        ),
    );
    drop(daemon);
}

#[test]
fn the_daemon_prunes_after_good_runs_only() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let setup = Setup::new(
        &local_host("box", src.path()),
        "schedule = \"manual\"\nkeep = { last = 2 }",
    );
    setup.init();
    setup.with_daemon_table("");
    let daemon = setup.start_daemon();
    for i in 0..4 {
        fs::write(src.path().join("counter"), i.to_string()).unwrap();
        let out = setup.snapnest(&["backup", "box"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        // Snapshot names have one-second resolution.
        std::thread::sleep(Duration::from_millis(1100));
    }
    wait_until("background deletion", Duration::from_secs(20), || {
        snapshot_count(&setup, "box") == 2
    });
    let left = setup.snapshots("box");
    assert_eq!(
        fs::read_to_string(
            left[1]
                .join(src.path().strip_prefix("/").unwrap())
                .join("counter")
        )
        .unwrap(),
        "3"
    );
    assert_eq!(
        fs::read_to_string(
            left[0]
                .join(src.path().strip_prefix("/").unwrap())
                .join("counter")
        )
        .unwrap(),
        "2"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("pruning") && log.contains("not kept by any rule") || log.contains("pruning"),
        "{log}"
    );
    let hidden = fs::read_dir(setup.storage.join("box"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".deleting-"));
    assert!(!hidden, "deletions finished");

    // A failed run prunes nothing, even with snapshots beyond the rules.
    drop(daemon);
    let cfg = fs::read_to_string(&setup.config)
        .unwrap()
        .replace("last = 2", "last = 1");
    fs::write(&setup.config, cfg).unwrap();
    fs::rename(src.path(), src.path().with_extension("gone")).unwrap();
    let daemon = setup.start_daemon();
    let out = setup.snapnest(&["backup", "box"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(snapshot_count(&setup, "box"), 2, "{}", daemon.log_text());
    let out = setup.snapnest(&["prune", "--dry-run"]);
    assert!(text(&out).contains("its last run failed"), "{}", text(&out));
    fs::rename(src.path().with_extension("gone"), src.path()).unwrap();
}

/// Retention over a synthetic history: eight snapshots whose dates are set in the catalog.
#[test]
fn prune_keeps_exactly_what_the_rules_say() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let setup = Setup::new(
        &local_host("box", src.path()),
        "schedule = \"manual\"\nkeep = { daily = 3, weekly = 2 }",
    );
    setup.init();
    for _ in 0..8 {
        setup.backup("box", 0);
        std::thread::sleep(Duration::from_millis(1100));
    }
    let names: Vec<String> = setup
        .snapshots("box")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // Oldest first: Thu 1 Jan … Mon 12 Jan 2026 (UTC), two on the 5th and two on the 12th.
    let dates = [
        "2026-01-01T12:00:00Z",
        "2026-01-02T12:00:00Z",
        "2026-01-04T12:00:00Z",
        "2026-01-05T09:00:00Z",
        "2026-01-05T18:00:00Z",
        "2026-01-10T12:00:00Z",
        "2026-01-12T08:00:00Z",
        "2026-01-12T20:00:00Z",
    ];
    let db = rusqlite::Connection::open(setup.storage.join(".snapnest/catalog.db")).unwrap();
    for (name, date) in names.iter().zip(dates) {
        let ms = chrono::DateTime::parse_from_rfc3339(date)
            .unwrap()
            .timestamp_millis();
        db.execute(
            "UPDATE snapshots SET created_ms = ?1 WHERE name = ?2",
            rusqlite::params![ms, name],
        )
        .unwrap();
    }
    drop(db);
    // daily 3: 12th (20:00), 10th, 5th (18:00). weekly 2 (ISO weeks, skipping those kept):
    // week 3 (12th) and week 2 (10th) are taken by daily → the 5th 09:00 is week 2... see below.
    // Walk newest first for weekly: 12th 20:00 (w3, kept already), 12th 08:00 (w3 same),
    // 10th (w2, kept already), 5th 18:00 (w2 same), 5th 09:00 (w2 same), 4th (w1: new, keep #1),
    // 2nd (w1 same), 1st (w1 same) → only one weekly found, so the oldest (1st) is kept too.
    let kept = [0usize, 2, 4, 5, 7];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .env("TZ", "UTC")
        .arg("--config")
        .arg(&setup.config)
        .args(["prune", "--dry-run"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for (i, name) in names.iter().enumerate() {
        let line = t
            .lines()
            .find(|l| l.contains(name.as_str()))
            .unwrap_or_else(|| panic!("{name} in {t}"));
        if kept.contains(&i) {
            assert!(
                line.trim_start().starts_with("keep"),
                "{name} (#{i}) is kept: {t}"
            );
        } else {
            assert!(
                line.trim_start().starts_with("would prune"),
                "{name} (#{i}) goes: {t}"
            );
        }
    }
    assert_eq!(setup.snapshots("box").len(), 8, "a dry run deletes nothing");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .env("TZ", "UTC")
        .arg("--config")
        .arg(&setup.config)
        .args(["prune"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let left: Vec<String> = setup
        .snapshots("box")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let expected: Vec<String> = kept.iter().map(|&i| names[i].clone()).collect();
    assert_eq!(left, expected);
    let list = text(&setup.snapnest(&["list", "box"]));
    for (i, name) in names.iter().enumerate() {
        assert_eq!(list.contains(name.as_str()), kept.contains(&i), "{list}");
    }
    // What is left still restores.
    let to = tempfile::tempdir().unwrap();
    let out = setup.snapnest(&[
        "restore",
        "box",
        "latest",
        &src.path().display().to_string(),
        "--to",
        &to.path().display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(Path::new(
        &to.path()
            .join(src.path().file_name().unwrap())
            .join("a.txt")
    )
    .exists());
}

#[test]
fn events_go_to_syslog_when_asked() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let setup = Setup::new(&local_host("box", src.path()), "");
    setup.init();
    setup.with_daemon_table(&format!("log = \"syslog:{}\"", sock_path.display()));
    let _daemon = setup.start_daemon();
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while !lines
        .iter()
        .any(|l: &String| l.contains("host=box run=1 good"))
    {
        let n = sock.recv(&mut buf).expect("a syslog datagram");
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let started = lines
        .iter()
        .find(|l| l.contains("daemon started"))
        .expect("start event");
    // RFC 3164: <facility*8+severity>; daemon.info = 3*8+6 = 30.
    assert!(started.starts_with("<30>"), "{started}");
    assert!(started.contains("snapnest["), "{started}");
}

#[test]
fn an_unreadable_catalog_holds_runs_instead_of_starting_them_over_and_over() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let setup = Setup::new(&local_host("box", src.path()), "every = \"1h\"");
    setup.init();
    // Bit rot on a cheap USB stick: the catalog is no longer a database.
    fs::write(
        setup.storage.join(".snapnest/catalog.db"),
        vec![0x5au8; 64 * 1024],
    )
    .unwrap();
    setup.with_daemon_table("");
    let daemon = setup.start_daemon();
    wait_until(
        "the host to be held with the catalog's error",
        Duration::from_secs(10),
        || daemon.host_state("box") == "catalog_unreadable",
    );
    std::thread::sleep(Duration::from_secs(3));
    let log = daemon.log_text();
    assert_eq!(log.matches("backup starting").count(), 0, "{log}");
    assert_eq!(
        log.matches("reading catalog").count(),
        1,
        "logged once: {log}"
    );
    let t = text(&setup.snapnest(&["status"]));
    assert!(t.contains("cannot read its history"), "{t}");
    assert_eq!(snapshot_count(&setup, "box"), 0);
}

#[test]
fn a_request_taken_by_a_daemon_that_died_is_served_by_the_next_one() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let work = tempfile::tempdir().unwrap();
    let started = work.path().join("before-ran");
    // The first run is slow to start: the daemon is killed while the request is in hand.
    let host = local_host("box", src.path()).replace(
        "folders = [",
        &format!(
            "before = \"echo x >> {}; sleep 3\"\nfolders = [",
            started.display()
        ),
    );
    let setup = Setup::new(&host, "schedule = \"manual\"");
    setup.init();
    let state = setup.with_daemon_table("");
    let mut daemon = setup.start_daemon();
    let id = snapnest::daemon::queue::submit(&state, "box").unwrap();
    wait_until("the run to start", Duration::from_secs(10), || {
        started.exists()
    });
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(Duration::from_secs(5));
    assert!(
        !snapnest::daemon::queue::pending(&state, &id),
        "it was taken"
    );

    let daemon = setup.start_daemon();
    let done = snapnest::daemon::queue::wait(&state, &id, || {}).unwrap();
    assert_eq!(done.outcome, "good", "{}", done.summary);
    assert!(
        daemon.log_text().contains("queued again"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(fs::read_to_string(&started).unwrap().lines().count(), 2);
    assert_eq!(snapshot_count(&setup, "box"), 1);
}

#[test]
fn a_host_removed_by_a_reload_answers_its_queued_requests() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let slow =
        local_host("box", src.path()).replace("folders = [", "before = \"sleep 4\"\nfolders = [");
    let gone = local_host("gone", src.path());
    let setup = Setup::new(&format!("{slow}\n{gone}"), "schedule = \"manual\"");
    setup.init();
    let state = setup.with_daemon_table("max_concurrent = 1");
    let daemon = setup.start_daemon();
    // `box` holds the only slot, so the request for `gone` waits in the queue.
    let busy = snapnest::daemon::queue::submit(&state, "box").unwrap();
    wait_until("box to run", Duration::from_secs(10), || {
        daemon.host_state("box") == "running"
    });
    let id = snapnest::daemon::queue::submit(&state, "gone").unwrap();
    wait_until("gone to be queued", Duration::from_secs(10), || {
        daemon.host_state("gone") == "queued"
    });
    let cfg = fs::read_to_string(&setup.config)
        .unwrap()
        .replace(&gone, "");
    fs::write(&setup.config, cfg).unwrap();
    daemon.signal(libc::SIGHUP);
    let done = snapnest::daemon::queue::wait(&state, &id, || {}).unwrap();
    assert_eq!(done.outcome, "failed");
    assert!(
        done.summary.contains("removed from the config"),
        "{}",
        done.summary
    );
    let done = snapnest::daemon::queue::wait(&state, &busy, || {}).unwrap();
    assert_eq!(done.outcome, "good", "{}", done.summary);
    // An unknown host is answered at once.
    let id = snapnest::daemon::queue::submit(&state, "nobody").unwrap();
    let done = snapnest::daemon::queue::wait(&state, &id, || {}).unwrap();
    assert!(done.summary.contains("no host named"), "{}", done.summary);
}
