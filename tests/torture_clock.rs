//! A box whose clock was set back (no RTC, NTP not yet synced): the snapshot it publishes
//! gets an older name than the one before. Everything that means "newer" must follow
//! publication order, not names: `latest`, the base of the next run, and the copy-with-history
//! chain that finds an older snapshot's files in the newer one.

mod common;

use std::fs;

use common::*;

#[test]
fn a_snapshot_named_in_the_past_is_still_the_newest() {
    let disk = LoopDisk::ext4(64);
    let src = tempfile::tempdir().unwrap();
    for i in 0..5 {
        fs::write(src.path().join(format!("keep{i}")), vec![i as u8; 100_000]).unwrap();
    }
    let mut setup = Setup::new(&local_host("box", src.path()), "");
    setup.store_in(disk.path());
    let cfg = fs::read_to_string(&setup.config)
        .unwrap()
        .replace("[storage]\n", "[storage]\nstrategy = \"history\"\n");
    fs::write(&setup.config, cfg).unwrap();
    setup.init();
    setup.backup("box", 0);
    let first = setup.latest("box");
    let first_name = first.file_name().unwrap().to_string_lossy().into_owned();
    let original = tempfile::tempdir().unwrap();
    sh(&format!(
        "cp -a {}/. {}",
        src.path().display(),
        original.path().display()
    ));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(src.path().join("keep0"), b"changed").unwrap();
    setup.backup("box", 0);

    // The second run happened while the clock said 2001: rename it as it would have been named.
    let second = setup.latest("box");
    let past = "2001-01-01_000000";
    let host_dir = setup.storage.join("box");
    fs::rename(&second, host_dir.join(past)).unwrap();
    fs::remove_file(host_dir.join("latest")).unwrap();
    std::os::unix::fs::symlink(past, host_dir.join("latest")).unwrap();
    let db = rusqlite::Connection::open(setup.storage.join(".snapnest/catalog.db")).unwrap();
    db.execute(
        "UPDATE snapshots SET name = ?1 WHERE name = ?2",
        [past, second.file_name().unwrap().to_str().unwrap()],
    )
    .unwrap();
    drop(db);

    // The first snapshot's unchanged files now live in the one named 2001: restore finds them.
    let to = setup.restore_folder("box", &first_name, src.path());
    assert_same_tree(
        original.path(),
        &to.path().join(src.path().file_name().unwrap()),
    );

    // The next run builds on the 2001 snapshot (the newest) and keeps `latest` on the newest.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    setup.backup("box", 0);
    let latest = fs::read_link(host_dir.join("latest")).unwrap();
    assert_ne!(
        latest.to_string_lossy(),
        first_name,
        "latest never goes back to an older run"
    );
    assert_same_tree(src.path(), &in_snap(&setup.latest("box"), src.path()));
}
