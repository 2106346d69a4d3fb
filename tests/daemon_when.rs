//! When the daemon starts runs and when it holds them back: lease-file arrivals, blackout
//! windows, the concurrency cap, backoff after failures, and the stale alert.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

fn log_index(log: &str, needle: &str) -> usize {
    log.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the log:\n{log}"))
}

#[test]
fn a_lease_file_change_starts_a_presence_check_at_once() {
    let mut sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let leases = tempfile::NamedTempFile::new().unwrap();
    fs::write(
        leases.path(),
        "1764000000 aa:bb:cc:dd:ee:ff 192.168.1.20 phone *\n",
    )
    .unwrap();
    let setup = Setup::new(&sshd.host_toml("laptop", &[src.path()], ""), "");
    setup.init();
    // Presence would only be checked once an hour without the watch.
    let state = setup.dir.path().join("state");
    let mut text = fs::read_to_string(&setup.config).unwrap();
    text.push_str(&format!(
        "\n[daemon]\nstate_dir = \"{}\"\npresence_interval = \"1h\"\nwatch = [\"{}\"]\n",
        state.display(),
        leases.path().display()
    ));
    fs::write(&setup.config, text).unwrap();
    sshd.stop();
    let daemon = setup.start_daemon();
    wait_until(
        "the laptop to be seen away",
        Duration::from_secs(20),
        || daemon.host_state("laptop") == "away",
    );
    sshd.start_again();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        daemon.host_state("laptop"),
        "away",
        "no check before the hour is up"
    );

    // dnsmasq hands the laptop a lease.
    fs::write(
        leases.path(),
        "1764000000 aa:bb:cc:dd:ee:ff 192.168.1.20 phone *\n1764000100 11:22:33:44:55:66 192.168.1.21 laptop *\n",
    )
    .unwrap();
    wait_until(
        "the backup after the lease appeared",
        Duration::from_secs(20),
        || setup.storage.join("laptop/latest").exists(),
    );
}

#[test]
fn blackout_holds_scheduled_runs_but_not_a_request() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let setup = Setup::new(
        &local_host("box", src.path()),
        "blackout = [\"Mon-Sun 00:00-24:00\"]",
    );
    setup.init();
    setup.with_daemon_table("");
    let daemon = setup.start_daemon();
    wait_until("the blackout state", Duration::from_secs(10), || {
        daemon.host_state("box") == "blackout"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !setup.storage.join("box").exists(),
        "nothing ran in the blackout"
    );
    let t = text(&setup.snapnest(&["status"]));
    assert!(t.contains("blackout until"), "{t}");

    let out = setup.snapnest(&["backup", "box"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "asking overrides a blackout: {}",
        text(&out)
    );
    assert_eq!(setup.snapshots("box").len(), 1);
}

#[test]
fn one_run_at_a_time_by_default() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for d in [a.path(), b.path()] {
        for i in 0..20 {
            write_file(
                &d.join(format!("f{i}")),
                &vec![i as u8; 100_000],
                1_700_000_000_000_000_000,
            );
        }
    }
    // 2 MB each at 1 MiB/s: about 2 s per host.
    let hosts = format!(
        "{}{}",
        local_host("alpha", a.path()),
        local_host("beta", b.path())
    );
    let setup = Setup::new(&hosts, "bwlimit = \"1MiB/s\"");
    setup.init();
    setup.with_daemon_table("");
    let daemon = setup.start_daemon();
    wait_until("both backed up", Duration::from_secs(30), || {
        setup.storage.join("alpha/latest").exists() && setup.storage.join("beta/latest").exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    let log = daemon.log_text();
    let starts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("backup starting"))
        .collect();
    assert_eq!(starts.len(), 2, "{log}");
    let (first, second) = if starts[0].contains("host=alpha") {
        ("alpha", "beta")
    } else {
        ("beta", "alpha")
    };
    let first_done = log_index(&log, &format!("host={first} run=1 good"));
    let second_start = log_index(&log, &format!("host={second} backup starting"));
    assert!(
        first_done < second_start,
        "{second} waited for {first}:\n{log}"
    );
}

#[test]
fn a_failing_host_backs_off_and_status_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("share-not-mounted");
    let setup = Setup::new(&local_host("share", &gone), "");
    setup.init();
    setup.with_daemon_table("");
    let daemon = setup.start_daemon();
    wait_until("the backoff state", Duration::from_secs(20), || {
        daemon.host_state("share") == "backoff"
    });
    let st = daemon.status().unwrap();
    let host = &st["hosts"][0];
    assert_eq!(host["failures"], 1);
    assert_eq!(host["last_result"], "failed");
    let until = host["state"]["until_ms"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    // First retry after 5 minutes.
    assert!(
        (until - now) > 4 * 60 * 1000 && (until - now) <= 5 * 60 * 1000,
        "{until} vs {now}"
    );
    let t = text(&setup.snapnest(&["status"]));
    assert!(
        t.contains("backoff") && t.contains("1 failure(s) in a row, retry at"),
        "{t}"
    );
    assert!(
        daemon.log_text().contains("host=share run=1 failed"),
        "{}",
        daemon.log_text()
    );
    // Still one run only: backoff holds the next.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !daemon.log_text().contains("run=2"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn a_late_host_is_marked_and_its_owner_told() {
    let bin = tempfile::tempdir().unwrap();
    let record = recording_command(bin.path(), "notify-send");
    let sshd = Sshd::with_bin_on_path(bin.path());
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let setup = Setup::new(
        &sshd.host_toml(
            "laptop",
            &[src.path()],
            "every = \"30days\"\nstale_after = \"1day\"\nnotify = \"linux\"",
        ),
        "",
    );
    setup.init();
    setup.backup("laptop", 0);
    // The last good backup was two days ago, yet not due again for a month.
    let db = rusqlite::Connection::open(setup.storage.join(".snapnest/catalog.db")).unwrap();
    let two_days_ago = chrono::Utc::now().timestamp_millis() - 2 * 86_400_000;
    db.execute(
        "UPDATE runs SET started_ms = ?1, finished_ms = ?1",
        [two_days_ago],
    )
    .unwrap();
    drop(db);
    setup.with_daemon_table("");
    let daemon = setup.start_daemon();
    wait_until("the stale notification", Duration::from_secs(20), || {
        fs::read_to_string(&record).is_ok_and(|t| t.contains("Backup overdue"))
    });
    let said = fs::read_to_string(&record).unwrap();
    assert!(said.contains("laptop: no good backup for 2 days"), "{said}");
    let st = daemon.status().unwrap();
    assert_eq!(st["hosts"][0]["late"], true);
    assert_eq!(st["hosts"][0]["state"]["state"], "scheduled");
    let t = text(&setup.snapnest(&["status"]));
    assert!(t.contains("LATE/"), "{t}");
    // Rate-limited: one notification, not one per check.
    std::thread::sleep(Duration::from_secs(6));
    let calls = fs::read_to_string(&record)
        .unwrap()
        .matches("Backup overdue")
        .count();
    assert_eq!(calls, 1, "{}", fs::read_to_string(&record).unwrap());
    // Also across a restart: the alert time is kept in the state folder.
    drop(daemon);
    let daemon = setup.start_daemon();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(daemon.status().unwrap()["hosts"][0]["late"], true);
    let calls = fs::read_to_string(&record)
        .unwrap()
        .matches("Backup overdue")
        .count();
    assert_eq!(calls, 1, "{}", fs::read_to_string(&record).unwrap());
}

#[test]
fn a_storage_held_by_another_process_makes_runs_wait() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let setup = Setup::new(&local_host("box", src.path()), "schedule = \"manual\"");
    setup.init();
    setup.with_daemon_table("");
    let daemon = setup.start_daemon();
    // Another writer (as a manual `snapnest prune` would be) holds the storage.
    let storage = snapnest::storage::Storage::open(&setup.storage).unwrap();
    let lock = storage.try_lock_writer().unwrap().expect("free at first");
    let id = snapnest::daemon::queue::submit(&daemon.state_dir, "box").unwrap();
    wait_until(
        "the run to wait for the storage",
        Duration::from_secs(10),
        || daemon.host_state("box") == "waiting_for_storage",
    );
    let t = text(&setup.snapnest(&["status"]));
    assert!(
        t.contains(&format!("storage in use by pid {}", std::process::id())),
        "{t}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(!setup.storage.join("box").exists(), "nothing ran meanwhile");
    drop(lock);
    let done = snapnest::daemon::queue::wait(&daemon.state_dir, &id, || {}).unwrap();
    assert_eq!(done.outcome, "good", "{}", done.summary);
}

#[test]
fn with_one_slot_the_most_overdue_host_goes_first() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    // `often` comes first in the config and is due, but `never` has no backup at all.
    let hosts = format!(
        "{}\n{}",
        local_host("often", src.path()),
        local_host("never", src.path())
    );
    let setup = Setup::new(&hosts, "every = \"1h\"");
    setup.init();
    setup.backup("often", 0);
    let db = rusqlite::Connection::open(setup.storage.join(".snapnest/catalog.db")).unwrap();
    db.execute(
        "UPDATE runs SET started_ms = started_ms - 7200000, finished_ms = finished_ms - 7200000",
        [],
    )
    .unwrap();
    drop(db);
    setup.with_daemon_table("max_concurrent = 1");
    let daemon = setup.start_daemon();
    wait_until("both to run", Duration::from_secs(20), || {
        let log = daemon.log_text();
        log.contains("host=often backup starting") && log.contains("host=never backup starting")
    });
    let log = daemon.log_text();
    assert!(
        log_index(&log, "host=never backup starting")
            < log_index(&log, "host=often backup starting"),
        "{log}"
    );
}
