//! Destinations on real filesystems: what `snapnest probe` finds, and a full round trip
//! (backup → change → incremental → restore every snapshot) with the strategy it chose.

mod common;
mod mounts;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use mounts::tree::{change, keep_copy, odd_tree, set_dir_mtime, used_bytes};
use mounts::{box_on_disk, missing_facility, Fs, Mounted};
// The sparse and over-4-GiB round trips are in destinations_big.rs.
#[allow(unused_imports)]
use mounts::big::{data_regions, same_content};

fn mount(fs: Fs, size_mib: u64) -> Option<Mounted> {
    // A machine that cannot mount it fails the test: a skipped filesystem is an untested one.
    if let Some(why) = missing_facility(fs) {
        panic!("cannot test {fs:?} on this machine: {why}");
    }
    Some(Mounted::new(fs, size_mib))
}

fn probe_json(dir: &Path) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .args(["probe", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("probe --json: {e}: {}", text(&out)));
    // Exit 2 exactly when no strategy can work there.
    let refused = v["strategy"]["refused"].is_string();
    assert_eq!(
        out.status.code(),
        Some(if refused { 2 } else { 0 }),
        "{}",
        text(&out)
    );
    v
}

fn ok(v: &serde_json::Value, key: &str) -> bool {
    v[key]["ok"]
        .as_bool()
        .unwrap_or_else(|| panic!("{key} in {v}"))
}

/// What the probe must find on each filesystem (design.md's table).
struct Expect {
    hard_links: bool,
    symlinks: bool,
    mtime_step_ns: u64,
    mode: bool,
    case_sensitive: bool,
    refuses_colon: bool,
    max_file_size: Option<u64>,
    sparse: bool,
    reflink: bool,
    btrfs: bool,
    strategy: &'static str,
}

fn check_probe(m: &Mounted, e: &Expect) {
    let v = probe_json(&m.mnt);
    let what = format!("{:?}: {v:#}", m.fs);
    assert_eq!(ok(&v, "hard_links"), e.hard_links, "hard links on {what}");
    assert_eq!(ok(&v, "symlinks"), e.symlinks, "symlinks on {what}");
    assert_eq!(
        v["mtime_step_ns"].as_u64(),
        Some(e.mtime_step_ns),
        "mtime step on {what}"
    );
    assert_eq!(ok(&v, "mode_kept"), e.mode, "mode on {what}");
    assert_eq!(
        v["case_sensitive"].as_bool(),
        Some(e.case_sensitive),
        "case on {what}"
    );
    let refused: Vec<u8> = serde_json::from_value(v["refused_bytes"].clone()).unwrap();
    assert_eq!(refused.contains(&b':'), e.refuses_colon, "':' on {what}");
    assert_eq!(
        v["max_file_size"].as_u64(),
        e.max_file_size,
        "max size on {what}"
    );
    assert_eq!(ok(&v, "sparse_files"), e.sparse, "sparse on {what}");
    assert_eq!(ok(&v, "reflink"), e.reflink, "reflink on {what}");
    assert_eq!(
        ok(&v, "btrfs_snapshots"),
        e.btrfs,
        "btrfs snapshots on {what}"
    );
    assert_eq!(
        v["strategy"]["name"].as_str(),
        Some(e.strategy),
        "strategy on {what}"
    );
    assert!(ok(&v, "durable_on_close"));
    let names: Vec<String> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lost+found")
        .collect();
    assert!(
        names.is_empty(),
        "probe left {names:?} behind on {:?}",
        m.fs
    );
}

/// Bytes of regular files under `p`.
fn tree_bytes(p: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                n += md.len();
            }
        }
    }
    n
}

struct Trip {
    strategy: &'static str,
    snapshots: Vec<PathBuf>,
    src: PathBuf,
    /// Bytes the disk reports used by the second run (None where statfs reports nothing).
    second_run_used: Option<u64>,
}

/// Back up, change, back up again, and restore both snapshots: each must equal the source
/// as it was. `config_extra` goes into [storage].
fn round_trip(m: &Mounted, config_extra: &str) -> Trip {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    odd_tree(&src);
    let (store, config) = box_on_disk(&m.mnt, work.path(), &src, config_extra, "");
    let run = |args: &[&str], code: i32| {
        let out = snapnest(&config, args);
        let t = text(&out);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?} on {:?}:\n{t}",
            m.fs
        );
        t
    };
    let init = run(&["init"], 0);
    let strategy = init
        .lines()
        .find_map(|l| l.strip_prefix("strategy: "))
        .unwrap_or_else(|| panic!("init names the strategy: {init}"))
        .to_string();
    let first = work.path().join("first");
    keep_copy(&src, &first);
    run(&["backup", "box"], 0);
    let before = (m.fs != Fs::Fat32).then(|| used_bytes(&m.mnt));
    change(&src);
    let second = work.path().join("second");
    keep_copy(&src, &second);
    let t = run(&["backup", "box"], 0);
    assert!(t.contains("box: good"), "{t}");
    let after = before.map(|b| used_bytes(&m.mnt).saturating_sub(b));
    eprintln!(
        "{:?}: the second run took {after:?} bytes of the disk",
        m.fs
    );

    let list = run(&["list", "box"], 0);
    assert!(
        list.contains(&format!("strategy {strategy}")),
        "list names the strategy: {list}"
    );
    let snapshots = mounts::snapshot_dirs(&store.join("box"));
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    for (snap, expected) in snapshots.iter().zip([&first, &second]) {
        let name = snap.file_name().unwrap().to_str().unwrap();
        assert!(
            list.lines()
                .any(|l| l.contains(name) && l.contains(&strategy)),
            "{name} listed with its strategy: {list}"
        );
        let to = work.path().join(format!("restored-{name}"));
        run(
            &["restore", "box", name, "/", "--to", to.to_str().unwrap()],
            0,
        );
        assert_same_tree(expected, &in_snap(&to, &src));
    }
    Trip {
        strategy: Box::leak(strategy.into_boxed_str()),
        snapshots,
        src,
        second_run_used: after,
    }
}

const MIB: u64 = 1 << 20;

/// Hard links: the unchanged big file is one inode in both snapshots.
fn assert_shared_by_links(t: &Trip) {
    let p = |s: &Path| in_snap(s, &t.src).join("big/unchanged.bin");
    let (a, b) = (
        fs::metadata(p(&t.snapshots[0])).unwrap(),
        fs::metadata(p(&t.snapshots[1])).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "unchanged file shared between snapshots");
    assert!(
        t.second_run_used.unwrap() < 2 * MIB,
        "second run used {:?}",
        t.second_run_used
    );
}

#[test]
fn ext4_hard_links() {
    let Some(m) = mount(Fs::Ext4, 64) else { return };
    check_probe(
        &m,
        &Expect {
            hard_links: true,
            symlinks: true,
            mtime_step_ns: 1,
            mode: true,
            case_sensitive: true,
            refuses_colon: false,
            max_file_size: None,
            sparse: true,
            reflink: false,
            btrfs: false,
            strategy: "hardlink",
        },
    );
    let t = round_trip(&m, "");
    assert_eq!(t.strategy, "hardlink");
    assert_shared_by_links(&t);
}

#[test]
fn xfs_hard_links_and_reflink_on_request() {
    let Some(m) = mount(Fs::Xfs, 300) else { return };
    check_probe(
        &m,
        &Expect {
            hard_links: true,
            symlinks: true,
            mtime_step_ns: 1,
            mode: true,
            case_sensitive: true,
            refuses_colon: false,
            max_file_size: None,
            sparse: true,
            reflink: true,
            btrfs: false,
            strategy: "hardlink",
        },
    );
    let t = round_trip(&m, "strategy = \"reflink\"");
    assert_eq!(t.strategy, "reflink");
    let p = |s: &Path| in_snap(s, &t.src).join("big/unchanged.bin");
    assert_ne!(
        fs::metadata(p(&t.snapshots[0])).unwrap().ino(),
        fs::metadata(p(&t.snapshots[1])).unwrap().ino(),
        "reflinks are separate files"
    );
    assert!(
        t.second_run_used.unwrap() < 2 * MIB,
        "cloned, not copied: {:?}",
        t.second_run_used
    );
}

#[test]
fn btrfs_read_only_subvolume_snapshots() {
    let Some(m) = mount(Fs::Btrfs, 160) else {
        return;
    };
    check_probe(
        &m,
        &Expect {
            hard_links: true,
            symlinks: true,
            mtime_step_ns: 1,
            mode: true,
            case_sensitive: true,
            refuses_colon: false,
            max_file_size: None,
            sparse: true,
            reflink: true,
            btrfs: true,
            strategy: "btrfs",
        },
    );
    let t = round_trip(&m, "");
    assert_eq!(t.strategy, "btrfs");
    for s in &t.snapshots {
        assert_eq!(
            fs::metadata(s).unwrap().ino(),
            256,
            "{} is a subvolume",
            s.display()
        );
        assert!(
            fs::write(s.join("intruder"), b"x").is_err(),
            "{} is read-only",
            s.display()
        );
    }
    assert!(
        t.second_run_used.unwrap() < 2 * MIB,
        "second run used {:?}",
        t.second_run_used
    );
}

#[test]
fn tmpfs_hard_links() {
    let Some(m) = mount(Fs::Tmpfs, 64) else {
        return;
    };
    check_probe(
        &m,
        &Expect {
            hard_links: true,
            symlinks: true,
            mtime_step_ns: 1,
            mode: true,
            case_sensitive: true,
            refuses_colon: false,
            max_file_size: None,
            sparse: true,
            reflink: false,
            btrfs: false,
            strategy: "hardlink",
        },
    );
    let t = round_trip(&m, "");
    assert_shared_by_links(&t);
}

#[test]
fn ntfs_hard_links_with_modes_in_the_manifest() {
    let Some(m) = mount(Fs::Ntfs, 64) else { return };
    check_probe(
        &m,
        &Expect {
            hard_links: true,
            symlinks: true,
            mtime_step_ns: 100,
            mode: false,
            case_sensitive: true,
            refuses_colon: false,
            max_file_size: None,
            sparse: true,
            reflink: false,
            btrfs: false,
            strategy: "hardlink",
        },
    );
    let v = probe_json(&m.mnt);
    assert_eq!(v["filesystem"].as_str(), Some("ntfs (ntfs-3g)"), "{v:#}");
    let t = round_trip(&m, "");
    assert_shared_by_links(&t);
}

/// Copy-with-history: the older snapshot keeps only what the second run replaced or deleted.
fn assert_history_layout(t: &Trip) {
    assert_eq!(t.strategy, "history");
    let old = in_snap(&t.snapshots[0], &t.src);
    // a.txt (replaced), docs/report.odt (deleted), bin/run.sh (mode changed: refetched).
    let kept = tree_bytes(&t.snapshots[0]);
    let expected = 6 + 300_000 + 18;
    assert_eq!(
        kept, expected,
        "older snapshot holds only replaced/deleted files"
    );
    assert!(old.join("docs/report.odt").is_file());
    assert!(!old.join("big/unchanged.bin").exists());
    assert!(in_snap(&t.snapshots[1], &t.src)
        .join("big/unchanged.bin")
        .is_file());
}

#[test]
fn exfat_copy_with_history_escaped_names() {
    let Some(m) = mount(Fs::Exfat, 64) else {
        return;
    };
    check_probe(
        &m,
        &Expect {
            hard_links: false,
            symlinks: false,
            mtime_step_ns: 1_000_000_000,
            mode: false,
            case_sensitive: false,
            refuses_colon: true,
            max_file_size: None,
            sparse: false,
            reflink: false,
            btrfs: false,
            strategy: "history",
        },
    );
    let t = round_trip(&m, "");
    assert_history_layout(&t);
    let odd = in_snap(&t.snapshots[1], &t.src).join("odd");
    assert!(
        odd.join("a%3Ab%2Ac%3F.txt").is_file(),
        "escaped name on the disk"
    );
}

/// fusefat (the only FAT32 driver on a kernel without vfat, as here) loses data appended to
/// a reopened file and the files of a renamed folder: the probe finds both, and the disk
/// gets copy-with-history with the catalog copied whole (tests/destinations_fat32.rs).
#[test]
fn fat32_through_fusefat_is_probed() {
    let Some(m) = mount(Fs::Fat32, 64) else {
        return;
    };
    let v = probe_json(&m.mnt);
    let what = format!("{v:#}");
    assert!(
        !ok(&v, "hard_links") && !ok(&v, "symlinks") && !ok(&v, "mode_kept"),
        "{what}"
    );
    assert_eq!(v["mtime_step_ns"].as_u64(), Some(2_000_000_000), "{what}");
    assert_eq!(v["case_sensitive"].as_bool(), Some(false), "{what}");
    // fusefat refuses to write past 2 GiB (FAT32 itself holds 4 GiB − 1).
    assert_eq!(v["max_file_size"].as_u64(), Some(1 << 31), "{what}");
    assert!(!ok(&v, "sparse_files"), "{what}");
    assert!(!ok(&v, "appends_kept"), "{what}");
    assert!(!ok(&v, "folder_renames"), "{what}");
    assert_eq!(v["strategy"]["name"].as_str(), Some("history"), "{what}");
    assert!(
        v["strategy"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("a whole copy replaces the disk's"),
        "{what}"
    );
    let names: Vec<_> = fs::read_dir(&m.mnt).unwrap().collect();
    assert!(names.is_empty(), "probe left {names:?} behind");
}

#[test]
fn a_named_strategy_that_cannot_work_is_refused_with_the_reason() {
    let Some(m) = mount(Fs::Tmpfs, 16) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("snapnest.toml");
    fs::write(
        &config,
        format!(
            "[storage]\npath = \"{}\"\nstrategy = \"btrfs\"\n",
            m.mnt.display()
        ),
    )
    .unwrap();
    let out = snapnest(&config, &["init"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("strategy \"btrfs\" cannot work") && t.contains("not btrfs"),
        "{t}"
    );
    assert!(
        !m.mnt.join(".snapnest").exists(),
        "nothing written when refused"
    );
}

#[test]
fn another_disk_under_the_same_marker_is_probed_again() {
    let Some(a) = mount(Fs::Ext4, 64) else { return };
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_file(&src.join("f"), b"x", 1_700_000_000_000_000_000);
    let (store, config) = box_on_disk(&a.mnt, work.path(), &src, "", "");
    assert_eq!(snapnest(&config, &["init"]).status.code(), Some(0));
    assert_eq!(snapnest(&config, &["backup", "box"]).status.code(), Some(0));
    // The same storage copied to another disk: the marker matches, the disk does not.
    let b = mount(Fs::Tmpfs, 64).unwrap();
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(&store)
        .arg(&b.mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let config_b = work.path().join("b.toml");
    fs::write(
        &config_b,
        format!(
            "[storage]\npath = \"{}\"\n\n{}",
            b.mnt.join("store").display(),
            local_host("box", &src)
        ),
    )
    .unwrap();
    write_file(&src.join("g"), b"y", 1_700_000_000_000_000_000);
    let out = snapnest(&config_b, &["backup", "box"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let list = text(&snapnest(&config_b, &["list", "box"]));
    assert!(list.contains("(tmpfs): strategy hardlink"), "{list}");
    assert_eq!(
        list.matches("box ").count(),
        2,
        "both snapshots listed: {list}"
    );
}

/// Three snapshots, the middle one pruned: the first and the last still restore exactly.
/// For copy-with-history the first snapshot's copy of a file that stayed the same into the
/// second run lives in the second snapshot's folder, and must survive its pruning.
fn prune_the_middle(m: &Mounted) -> Vec<PathBuf> {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    odd_tree(&src);
    // One day, three snapshots: `daily = 2` keeps the newest and, short of a second day,
    // the oldest.
    let keep = "keep = { daily = 2 }\n";
    let (store, config) = box_on_disk(&m.mnt, work.path(), &src, "", keep);
    let run = |args: &[&str]| {
        let out = snapnest(&config, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        text(&out)
    };
    run(&["init"]);
    let first = work.path().join("first");
    keep_copy(&src, &first);
    run(&["backup", "box"]);
    write_file(
        &src.join("added.txt"),
        b"added in run 2\n",
        1_700_200_000_000_000_000,
    );
    set_dir_mtime(&src, 1_700_200_000_000_000_000);
    run(&["backup", "box"]);
    // Unchanged from run 1 to run 2, replaced in run 3.
    write_file(
        &src.join("docs/deep/er/notes.md"),
        b"# rewritten\n",
        1_700_300_000_000_000_000,
    );
    set_dir_mtime(&src.join("docs/deep/er"), 1_700_300_000_000_000_000);
    let third = work.path().join("third");
    keep_copy(&src, &third);
    run(&["backup", "box"]);
    let t = run(&["prune", "box"]);
    assert!(t.contains("pruned 1 snapshot"), "{t}");
    let left = mounts::snapshot_dirs(&store.join("box"));
    assert_eq!(left.len(), 2, "{left:?}");
    for (snap, expected) in left.iter().zip([&first, &third]) {
        let name = snap.file_name().unwrap().to_str().unwrap();
        let to = work.path().join(format!("restored-{name}"));
        run(&["restore", "box", name, "/", "--to", to.to_str().unwrap()]);
        assert_same_tree(expected, &in_snap(&to, &src));
    }
    left
}

#[test]
fn exfat_history_survives_pruning_the_middle_snapshot() {
    let Some(m) = mount(Fs::Exfat, 64) else {
        return;
    };
    prune_the_middle(&m);
}

#[test]
fn btrfs_pruning_deletes_the_subvolume() {
    let Some(m) = mount(Fs::Btrfs, 160) else {
        return;
    };
    let left = prune_the_middle(&m);
    let out = std::process::Command::new("btrfs")
        .args(["subvolume", "list", "-o"])
        .arg(m.mnt.join("store/box"))
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert_eq!(
        t.lines().count(),
        2,
        "only the two kept snapshots remain: {t}"
    );
    for s in left {
        assert!(t.contains(s.file_name().unwrap().to_str().unwrap()), "{t}");
    }
}

// Case clashes on exFAT: tests/destinations_clash.rs.

#[test]
fn ext4_copy_with_history_on_request_keeps_symlinks_and_modes_on_disk() {
    let Some(m) = mount(Fs::Ext4, 64) else { return };
    let t = round_trip(&m, "strategy = \"history\"");
    assert_history_layout(&t);
    let newest = in_snap(&t.snapshots[1], &t.src);
    assert_eq!(
        fs::read_link(newest.join("link-rel")).unwrap(),
        Path::new("a.txt")
    );
    assert_eq!(
        fs::metadata(newest.join("bin/run.sh")).unwrap().mode() & 0o7777,
        0o700
    );
}

#[test]
fn an_unknown_strategy_in_the_config_names_line_and_key() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("snapnest.toml");
    fs::write(
        &config,
        "[storage]\npath = \"/mnt/usb\"\nstrategy = \"zfs\"\n",
    )
    .unwrap();
    let out = snapnest(&config, &["list"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("line 3") && t.contains("storage.strategy") && t.contains("\"history\""),
        "{t}"
    );
}
