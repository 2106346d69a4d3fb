//! `snapnest verify`: backups over a real loopback sshd record BLAKE3 hashes; damage planted
//! in the store afterwards (a flipped byte, a deleted file, a file turned into a folder) is
//! found exactly, in every snapshot that shares the damaged file, and nothing else is.

mod common;
mod webutil;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

const T: i64 = 1_700_000_000_000_000_000;

fn hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

fn flip_byte(path: &Path, at: usize) {
    let mut data = fs::read(path).unwrap();
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    data[at] ^= 0x01;
    // Write in place (same inode): what bit rot does to a hard-linked file. Rot does not
    // touch the mtime either, so it is put back.
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    std::io::Write::write_all(&mut &f, &data).unwrap();
    f.set_modified(mtime).unwrap();
}

fn damaged_lines(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("DAMAGED "))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn verify_finds_exactly_the_flipped_deleted_and_replaced_files() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    let shared: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 251) as u8).collect();
    write_file(&s.join("docs/shared.bin"), &shared, T);
    write_file(&s.join("docs/changes.txt"), b"first version\n", T);
    write_file(
        &s.join("docs/gone.txt"),
        b"to be deleted from the store\n",
        T,
    );
    write_file(&s.join("docs/sub/dir.txt"), b"to become a folder\n", T);
    write_file(&s.join("docs/fine.txt"), b"untouched\n", T);
    let sshd = Sshd::start();
    let setup = Setup::new(&sshd.host_toml("box", &[&s.join("docs")], ""), "");
    setup.init();
    setup.backup("box", 0);
    std::thread::sleep(Duration::from_millis(1100));
    write_file(&s.join("docs/changes.txt"), b"second version\n", T + 1);
    setup.backup("box", 0);
    let snaps = setup.snapshots("box");
    assert_eq!(snaps.len(), 2);
    let (first, second) = (&snaps[0], &snaps[1]);

    let clean = setup.snapnest(&["verify"]);
    let out = text(&clean);
    assert_eq!(clean.status.code(), Some(0), "{out}");
    assert!(out.contains("10 files read"), "{out}");
    assert!(out.contains("0 damaged"), "{out}");
    assert!(damaged_lines(&out).is_empty(), "{out}");

    // The shared file is one inode in both snapshots (hard links): one flip damages both.
    let stored_shared = in_snap(second, &s.join("docs/shared.bin"));
    assert_eq!(
        fs::metadata(&stored_shared).unwrap().ino(),
        fs::metadata(in_snap(first, &s.join("docs/shared.bin")))
            .unwrap()
            .ino()
    );
    flip_byte(&stored_shared, 123_456);
    let mut flipped = shared.clone();
    flipped[123_456] ^= 0x01;
    // Deleting removes the second snapshot's link only; the first keeps its copy.
    fs::remove_file(in_snap(second, &s.join("docs/gone.txt"))).unwrap();
    let dir = in_snap(second, &s.join("docs/sub/dir.txt"));
    fs::remove_file(&dir).unwrap();
    fs::create_dir(&dir).unwrap();

    let bad = setup.snapnest(&["verify"]);
    let out = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    let p = |f: &str| s.join("docs").join(f).display().to_string();
    let mut want = vec![
        format!(
            "DAMAGED box {} {}: differs (expected {}, found {})",
            name(first),
            p("shared.bin"),
            hex(&shared),
            hex(&flipped)
        ),
        format!(
            "DAMAGED box {} {}: differs (expected {}, found {})",
            name(second),
            p("shared.bin"),
            hex(&shared),
            hex(&flipped)
        ),
        format!(
            "DAMAGED box {} {}: missing (expected {}, found missing)",
            name(second),
            p("gone.txt"),
            hex(b"to be deleted from the store\n")
        ),
        format!(
            "DAMAGED box {} {}: unreadable (expected {}, found not a regular file)",
            name(second),
            p("sub/dir.txt"),
            hex(b"to become a folder\n")
        ),
    ];
    want.sort();
    assert_eq!(damaged_lines(&out), want, "{out}");
    assert!(
        out.contains("10 files read")
            && out.contains("4 damaged (2 differ, 1 missing, 1 unreadable)"),
        "{out}"
    );

    // One snapshot only: the first one's damage is the shared file, nothing else.
    let one = setup.snapnest(&["verify", "box", &name(first)]);
    let out = text(&one);
    assert_eq!(one.status.code(), Some(1), "{out}");
    assert_eq!(damaged_lines(&out), vec![want[0].clone()], "{out}");

    // The damage stays visible in `snapnest status` until a clean run.
    let st = text(&setup.snapnest(&["status"]));
    assert!(st.contains("verify: DAMAGE FOUND"), "{st}");
    assert!(
        st.contains(&format!(
            "damaged: box {} {}: differs",
            name(first),
            p("shared.bin")
        )),
        "{st}"
    );
}

#[test]
fn snapshots_from_before_hashes_are_not_hashed_not_corrupt_and_the_next_run_hashes() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let setup = Setup::new(&local_host("box", src.path()), "");
    setup.init();
    setup.backup("box", 0);
    // A catalog written before content hashes existed: no hash tables at all.
    let db = setup.storage.join(".snapnest/catalog.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "DROP TABLE file_hashes; DROP TABLE verify_runs; DROP TABLE verify_damage;",
        )
        .unwrap();
    }
    let old = setup.snapshots("box")[0].clone();
    let out = setup.snapnest(&["verify"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!("not hashed: box {}:", name(&old))),
        "{t}"
    );
    assert!(t.contains("0 files read") && t.contains("0 damaged"), "{t}");

    // The next run links the unchanged files and hashes them once: it is fully hashed.
    std::thread::sleep(Duration::from_millis(1100));
    setup.backup("box", 0);
    let out = setup.snapnest(&["verify", "box", "latest"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(!t.contains("not hashed:"), "{t}");
    assert!(t.contains(", 0 not hashed"), "{t}");
    assert!(!t.contains(" 0 files read"), "{t}");
}

#[test]
fn sampled_runs_go_round_every_file_and_find_the_damage_once() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..20 {
        write_file(
            &src.path().join(format!("f{i:02}")),
            format!("file {i}\n").as_bytes(),
            T,
        );
    }
    let setup = Setup::new(&local_host("box", src.path()), "");
    setup.init();
    setup.backup("box", 0);
    let snap = setup.latest("box");
    flip_byte(&in_snap(&snap, &src.path().join("f13")), 2);
    let mut found = 0;
    for run in 0..4 {
        let out = setup.snapnest(&["verify", "--sample", "25%"]);
        let t = text(&out);
        assert!(t.contains("25% sample: 5 files read"), "run {run}: {t}");
        found += damaged_lines(&t).len();
    }
    assert_eq!(
        found, 1,
        "the damaged file is read exactly once in 4 runs of 25%"
    );
    let c = rusqlite::Connection::open(setup.storage.join(".snapnest/catalog.db")).unwrap();
    let never: i64 = c
        .query_row(
            "SELECT count(*) FROM file_hashes WHERE verified_ms IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(never, 0, "every file was read once");
    let bad = setup.snapnest(&["verify", "--sample", "0%"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("between 0% and 100%"), "{}", text(&bad));
}

#[test]
fn the_daemon_verifies_on_schedule_and_web_status_and_metrics_show_damage() {
    let src = tempfile::tempdir().unwrap();
    write_file(&src.path().join("a.txt"), b"alpha\n", T);
    write_file(&src.path().join("b.txt"), b"bravo\n", T);
    let setup = Setup::new(&local_host("lap", src.path()), "");
    setup.init();
    setup.backup("lap", 0);
    flip_byte(&in_snap(&setup.latest("lap"), &src.path().join("b.txt")), 0);
    let mut cfg = fs::read_to_string(&setup.config).unwrap();
    // Every minute, all of it: the test waits for the next minute to come round.
    cfg.push_str("\n[verify]\nschedule = \"* * * * *\"\nsample = \"100%\"\n");
    fs::write(&setup.config, cfg).unwrap();
    let web = webutil::start_with(setup, "");
    wait_until("a scheduled verify", Duration::from_secs(90), || {
        web.daemon.log_text().contains("verify: 2 files read")
    });
    let log = web.daemon.log_text();
    assert!(log.contains("1 damaged"), "{log}");
    assert!(log.contains("b.txt: differs"), "{log}");

    let m = web.get_t("/metrics").text();
    for needle in [
        "snapnest_verify_last_run_timestamp_seconds ",
        "snapnest_verify_files_checked 2\n",
        "snapnest_verify_files_damaged 1\n",
        "snapnest_verify_files_not_hashed 0\n",
    ] {
        assert!(m.contains(needle), "{needle} in\n{m}");
    }
    let api: serde_json::Value = serde_json::from_slice(&web.get_t("/api/status").body).unwrap();
    assert_eq!(api["verify"]["last"]["damaged"], 1, "{api}");
    assert_eq!(api["verify"]["last"]["sample"], "100%", "{api}");
    assert_eq!(api["verify"]["damage"][0]["problem"], "differs", "{api}");
    let dash = web.get_t("/").text();
    assert!(dash.contains("<p id=\"verify\" class=\"err\">"), "{dash}");
    assert!(dash.contains("b.txt: differs"), "{dash}");
    let st = text(&web.setup.snapnest(&["status"]));
    assert!(st.contains("verify: DAMAGE FOUND"), "{st}");
}

use std::os::unix::fs::MetadataExt;

#[test]
fn copy_with_history_snapshots_are_verified_where_their_files_live() {
    let src = tempfile::tempdir().unwrap();
    write_file(&src.path().join("same.txt"), b"unchanged\n", T);
    write_file(&src.path().join("edit.txt"), b"one\n", T);
    let setup = Setup::new(&local_host("box", src.path()), "");
    let cfg = fs::read_to_string(&setup.config).unwrap();
    fs::write(
        &setup.config,
        cfg.replacen("[storage]\n", "[storage]\nstrategy = \"history\"\n", 1),
    )
    .unwrap();
    setup.init();
    setup.backup("box", 0);
    std::thread::sleep(Duration::from_millis(1100));
    write_file(&src.path().join("edit.txt"), b"two\n", T + 1);
    setup.backup("box", 0);
    let snaps = setup.snapshots("box");
    // The older snapshot keeps only what the newer one replaced: same.txt moved on.
    assert!(!in_snap(&snaps[0], &src.path().join("same.txt")).exists());
    let out = setup.snapnest(&["verify"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("4 files read") && t.contains(" 0 damaged"),
        "{t}"
    );
    // One copy of same.txt serves both snapshots: damage to it shows in both.
    flip_byte(&in_snap(&snaps[1], &src.path().join("same.txt")), 0);
    let out = setup.snapnest(&["verify"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let lines = damaged_lines(&t);
    assert_eq!(lines.len(), 2, "{t}");
    assert!(lines.iter().all(|l| l.contains("same.txt: differs")), "{t}");
}
