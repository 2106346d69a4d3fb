//! The free-space floor (`[storage] min_free`) on a real, small ext4 disk: the daemon deletes
//! the oldest snapshots until the floor is met, never the newest, and stops deleting when
//! deletions free nothing because something else fills the disk.

mod common;

use std::fs;
use std::io::Write;
use std::time::Duration;

use common::*;

const MIB: u64 = 1 << 20;

/// `mib` MiB that compress and deduplicate to nothing in common with any other call.
fn unique_file(path: &std::path::Path, mib: usize, seed: u8) {
    let mut f = fs::File::create(path).unwrap();
    let mut block = vec![0u8; MIB as usize];
    for i in 0..mib {
        for (j, b) in block.iter_mut().enumerate() {
            *b = (j as u8)
                .wrapping_mul(31)
                .wrapping_add(seed)
                .wrapping_add(i as u8)
                ^ (j >> 8) as u8;
        }
        block[0] = seed;
        block[1] = i as u8;
        f.write_all(&block).unwrap();
    }
}

/// A setup whose storage is a fresh `mib` MiB ext4 disk, with `backups` snapshots of `src`.
fn disk_with_snapshots(
    disk: &LoopDisk,
    src: &std::path::Path,
    backups: u8,
    change: impl Fn(u8),
) -> Setup {
    let mut setup = Setup::new(&local_host("box", src), "schedule = \"manual\"");
    setup.store_in(disk.path());
    setup.init();
    for i in 0..backups {
        change(i);
        setup.backup("box", 0);
        // Snapshot names have one-second resolution.
        std::thread::sleep(Duration::from_millis(1100));
    }
    setup
}

fn set_floor(setup: &Setup, floor: &str) {
    let cfg = fs::read_to_string(&setup.config).unwrap().replace(
        "[storage]\n",
        &format!("[storage]\nmin_free = \"{floor}\"\n"),
    );
    fs::write(&setup.config, cfg).unwrap();
}

#[test]
fn below_the_floor_the_oldest_snapshots_go_until_there_is_room() {
    let disk = LoopDisk::ext4(64);
    let src = tempfile::tempdir().unwrap();
    let setup = disk_with_snapshots(&disk, src.path(), 6, |i| {
        unique_file(&src.path().join("big"), 6, i)
    });
    let before = setup.snapshots("box");
    assert_eq!(before.len(), 6);
    let (_, free) = disk.space();
    // Ask for 14 MiB more than there is: two or three 6 MiB snapshots must go, not more.
    let floor = free + 14 * MIB;
    set_floor(&setup, &format!("{}MiB", floor / MIB));
    setup.with_daemon_table("");
    let daemon = setup.start_daemon();
    wait_until("the floor to be met", Duration::from_secs(60), || {
        disk.space().1 >= floor - MIB
    });
    std::thread::sleep(Duration::from_secs(8));
    let after = setup.snapshots("box");
    let log = daemon.log_text();
    assert!(log.contains("to make room"), "{log}");
    assert!(
        (3..=4).contains(&after.len()),
        "deleted only what was needed: {after:?}\n{log}"
    );
    assert_eq!(
        after[..],
        before[before.len() - after.len()..],
        "oldest first"
    );
    assert_eq!(setup.latest("box"), *before.last().unwrap());
    let content = fs::read(in_snap(&setup.latest("box"), src.path()).join("big")).unwrap();
    assert_eq!(content, fs::read(src.path().join("big")).unwrap());
}

#[test]
fn when_deletions_free_nothing_the_floor_stops_deleting_and_says_why() {
    let disk = LoopDisk::ext4(64);
    let src = tempfile::tempdir().unwrap();
    unique_file(&src.path().join("big"), 4, 7);
    // Five snapshots of unchanged files: all hard links to the same data.
    let setup = disk_with_snapshots(&disk, src.path(), 5, |_| {});
    // Something that is not a snapshot fills the disk.
    let (_, free) = disk.space();
    let filler = disk.path().join("someone-elses-video.mkv");
    unique_file(&filler, (free / MIB) as usize - 4, 99);
    set_floor(&setup, "16MiB");
    setup.with_daemon_table("");
    let daemon = setup.start_daemon();
    wait_until("the floor to pause", Duration::from_secs(60), || {
        daemon.status().is_some_and(|s| {
            s["note"]
                .as_str()
                .is_some_and(|n| n.contains("freed almost nothing"))
        })
    });
    let log = daemon.log_text();
    assert!(log.contains("deletions freed almost nothing"), "{log}");
    std::thread::sleep(Duration::from_secs(6));
    // Three futile deletions, then a pause: two of five snapshots are left, not one.
    assert_eq!(setup.snapshots("box").len(), 2, "{log}");
    let t = text(&setup.snapnest(&["status"]));
    assert!(t.contains("freed almost nothing"), "{t}");
    assert!(
        filler.exists(),
        "snapnest never touches files it did not write"
    );
}
