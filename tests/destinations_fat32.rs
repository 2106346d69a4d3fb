//! FAT32 through fusefat as a storage: its driver loses data written to reopened files and
//! the contents of renamed folders, so the catalog works in the state folder with whole
//! copies on the disk, snapshots are published by moving files, and a file over FAT32's
//! 4 GiB − 1 is stored in parts and joined again on restore.

mod common;
mod mounts;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;
use mounts::tree::{change, keep_copy, odd_tree};
use mounts::{missing_facility, Fs, Mounted};

fn fat32(size_mib: u64) -> Mounted {
    if let Some(why) = missing_facility(Fs::Fat32) {
        panic!("cannot test FAT32 on this machine: {why}");
    }
    Mounted::new(Fs::Fat32, size_mib)
}

/// A config for `store` backing up `src` as host `box`, with its own state folder.
fn config(work: &Path, name: &str, store: &Path, src: &Path) -> (PathBuf, PathBuf) {
    let state = work.join(format!("state-{name}"));
    let config = work.join(format!("{name}.toml"));
    fs::write(
        &config,
        format!(
            "[storage]\npath = \"{}\"\n\n[daemon]\nstate_dir = \"{}\"\n\n{}",
            store.display(),
            state.display(),
            local_host("box", src)
        ),
    )
    .unwrap();
    (config, state)
}

fn run(config: &Path, args: &[&str]) -> String {
    let out = snapnest(config, args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{args:?}:\n{t}");
    t
}

/// What the disk's own catalog copy says: integrity, snapshots, generation, verify runs.
fn disk_catalog(store: &Path) -> (String, i64, i64, i64) {
    let path = store.join(".snapnest/catalog.db");
    let c = rusqlite::Connection::open_with_flags(
        format!("file:{}?immutable=1", path.display()),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    let one = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    (
        c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap(),
        one("SELECT count(*) FROM snapshots WHERE state = 'published'"),
        one("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation'"),
        one("SELECT count(*) FROM verify_runs"),
    )
}

fn snapshots(store: &Path) -> Vec<PathBuf> {
    mounts::snapshot_dirs(&store.join("box"))
}

fn leftovers(store: &Path) -> Vec<String> {
    fs::read_dir(store.join(".snapnest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("catalog.db.tmp-"))
        .collect()
}

/// Round trip of the odd tree on a small FAT32 disk; a save of the catalog copy killed
/// between writing the new copy and renaming it; the disk used from a second state folder
/// (another box) and back.
#[test]
fn fat32_catalog_is_copied_whole_survives_a_kill_and_moves_with_the_disk() {
    let m = fat32(64);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    odd_tree(&src);
    let store = m.mnt.join("store");
    fs::create_dir(&store).unwrap();
    let (a, state_a) = config(work.path(), "a", &store, &src);

    let init = run(&a, &["init"]);
    assert!(init.contains("appends kept      no"), "{init}");
    assert!(init.contains("folder renames    no"), "{init}");
    assert!(init.contains("strategy: history"), "{init}");
    assert!(init.contains("a whole copy replaces the disk's"), "{init}");
    let marker = fs::read_to_string(store.join(".snapnest/marker")).unwrap();
    assert!(marker.contains("catalog = \"copy\""), "{marker}");
    let id = marker
        .lines()
        .find_map(|l| l.strip_prefix("id = \"")?.strip_suffix('"'))
        .unwrap()
        .to_string();
    assert!(state_a.join(format!("catalogs/{id}.db")).is_file());

    let first = work.path().join("first");
    keep_copy(&src, &first);
    run(&a, &["backup", "box"]);
    change(&src);
    let second = work.path().join("second");
    keep_copy(&src, &second);
    let t = run(&a, &["backup", "box"]);
    assert!(t.contains("box: good"), "{t}");
    let (ok, snaps, generation, _) = disk_catalog(&store);
    assert_eq!((ok.as_str(), snaps), ("ok", 2), "the disk's copy is whole");
    assert!(
        generation >= 3,
        "saved after init and each run: {generation}"
    );

    // Published by moving files: both snapshots hold their files, no staging folder left.
    let s = snapshots(&store);
    assert_eq!(s.len(), 2, "{s:?}");
    let old = in_snap(&s[0], &src);
    assert!(old.join("docs/report.odt").is_file(), "deleted file kept");
    assert!(
        !old.join("big/unchanged.bin").exists(),
        "unchanged file moved on"
    );
    assert!(in_snap(&s[1], &src).join("big/unchanged.bin").is_file());
    assert!(in_snap(&s[1], &src).join("odd/a%3Ab%2Ac%3F.txt").is_file());
    let staging: Vec<_> = fs::read_dir(store.join("box"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".incomplete"))
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
    for (snap, expected) in s.iter().zip([&first, &second]) {
        let name = snap.file_name().unwrap().to_str().unwrap();
        let to = work.path().join(format!("restored-{name}"));
        run(
            &a,
            &["restore", "box", name, "/", "--to", to.to_str().unwrap()],
        );
        assert_same_tree(expected, &in_snap(&to, &src));
    }

    // verify records its run in the catalog; killed at the rename of the new copy.
    let (_, _, generation, _) = disk_catalog(&store);
    let log = work.path().join("strace.log");
    let out = std::process::Command::new("strace")
        .args(["-f", "-o"])
        .arg(&log)
        .args([
            "-e",
            "trace=rename,renameat,renameat2",
            "-e",
            "inject=rename,renameat,renameat2:signal=KILL:when=1",
            env!("CARGO_BIN_EXE_snapnest"),
            "--config",
        ])
        .arg(&a)
        .arg("verify")
        .output()
        .expect("strace (CI installs it in .ci/run)");
    let traced = fs::read_to_string(&log).unwrap();
    assert!(
        traced.contains("catalog.db.tmp-") && traced.contains(".snapnest/catalog.db\""),
        "killed at the copy's rename: {traced}\n{}",
        text(&out)
    );
    assert!(traced.contains("killed by SIGKILL"), "{traced}");
    let (ok, snaps, g, verifies) = disk_catalog(&store);
    assert_eq!(
        (ok.as_str(), snaps, g, verifies),
        ("ok", 2, generation, 0),
        "the old copy is still the disk's, whole"
    );
    assert_eq!(leftovers(&store).len(), 1, "the cut copy is left beside it");
    // The next command finds its working copy newer and saves it.
    let list = run(&a, &["list", "box"]);
    assert_eq!(list.matches(" history ").count(), 2, "{list}");
    let (ok, snaps, g, verifies) = disk_catalog(&store);
    assert_eq!(
        (ok.as_str(), snaps, verifies),
        ("ok", 2, 1),
        "saved at last"
    );
    assert!(g > generation, "{g} > {generation}");
    assert!(leftovers(&store).is_empty(), "{:?}", leftovers(&store));

    // Another box (state folder) adopts the disk's catalog, and its work comes back.
    let (b, state_b) = config(work.path(), "b", &store, &src);
    assert!(!state_b.exists());
    let list = run(&b, &["list", "box"]);
    assert_eq!(list.matches(" history ").count(), 2, "{list}");
    let to = work.path().join("restored-on-b");
    run(
        &b,
        &[
            "restore",
            "box",
            "latest",
            "/",
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert_same_tree(&second, &in_snap(&to, &src));
    fs::write(src.join("third.txt"), "third").unwrap();
    let t = run(&b, &["backup", "box"]);
    assert!(t.contains("box: good"), "{t}");
    let list = run(&a, &["list", "box"]);
    assert_eq!(
        list.matches(" history ").count(),
        3,
        "the first box takes the newer copy: {list}"
    );
    // Without any working copy, the disk's is enough.
    fs::remove_dir_all(state_a.join("catalogs")).unwrap();
    let list = run(&a, &["list", "box"]);
    assert_eq!(list.matches(" history ").count(), 3, "{list}");
}

const GIB: u64 = 1 << 30;

/// Compare two big files without holding them in memory.
fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// The one big test: a sparse file of 4 GiB + 1 byte (FAT has no sparse files: all of it is
/// written) beside the odd tree, through backup → change → incremental → restore.
#[test]
fn fat32_splits_a_file_over_4_gib_into_parts_and_joins_them_on_restore() {
    let m = fat32(4800);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    odd_tree(&src);
    let huge = src.join("big/huge.img");
    {
        let mut f = fs::File::create(&huge).unwrap();
        f.set_len(4 * GIB + 1).unwrap();
        // Marks at the start, across the parts' ends (fusefat: 2 GiB parts), and the very
        // last byte.
        for (at, what) in [
            (0, &b"start"[..]),
            (2 * GIB - 3, b"across"),
            (4 * GIB - 3, b"edge!"),
            (4 * GIB, b"Z"),
        ] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(what).unwrap();
        }
        f.set_len(4 * GIB + 1).unwrap();
    }
    set_mtime(&huge, 1_700_000_500_000_000_000);
    let store = m.mnt.join("store");
    fs::create_dir(&store).unwrap();
    let (a, _) = config(work.path(), "a", &store, &src);
    run(&a, &["init"]);
    let first = work.path().join("first");
    keep_copy(&src, &first);

    let t0 = Instant::now();
    let t = run(&a, &["backup", "box"]);
    let first_run = t0.elapsed();
    assert!(t.contains("box: good"), "{t}");
    let s = snapshots(&store);
    let stored = in_snap(&s[0], &src).join("big");
    let part = |n: u32| stored.join(format!("huge.img%part00{n}"));
    assert!(
        !stored.join("huge.img").exists(),
        "no plain file over the limit"
    );
    // fusefat writes at most 2 GiB into a file (FAT32 itself: 4 GiB − 1).
    assert_eq!(fs::metadata(part(1)).unwrap().len(), 2 * GIB);
    assert_eq!(fs::metadata(part(2)).unwrap().len(), 2 * GIB);
    assert_eq!(fs::metadata(part(3)).unwrap().len(), 1);
    assert!(!part(4).exists());
    assert_eq!(
        fs::metadata(stored.join("unchanged.bin")).unwrap().len(),
        3 << 20,
        "files under the limit are stored as they are"
    );

    change(&src);
    let second = work.path().join("second");
    keep_copy(&src, &second);
    let t0 = Instant::now();
    let t = run(&a, &["backup", "box"]);
    let second_run = t0.elapsed();
    assert!(t.contains("box: good"), "{t}");
    let s = snapshots(&store);
    assert_eq!(s.len(), 2);
    // Copy-with-history: the parts moved on to the newest snapshot; the older one keeps
    // only what the second run replaced or deleted.
    let old_bytes: u64 = walk_bytes(&s[0]);
    assert!(
        old_bytes < 1 << 20,
        "the second snapshot cost {old_bytes} bytes in the first"
    );
    let new_stored = in_snap(&s[1], &src).join("big");
    assert_eq!(
        fs::metadata(new_stored.join("huge.img%part001"))
            .unwrap()
            .len(),
        2 * GIB
    );
    assert!(!in_snap(&s[0], &src).join("big/huge.img%part001").exists());

    let t0 = Instant::now();
    let to = work.path().join("restored");
    run(
        &a,
        &[
            "restore",
            "box",
            s[1].file_name().unwrap().to_str().unwrap(),
            "/",
            "--to",
            to.to_str().unwrap(),
        ],
    );
    let restore = t0.elapsed();
    let back = in_snap(&to, &src).join("big/huge.img");
    assert!(
        same_content(&huge, &back),
        "joined content equals the source"
    );
    // The rest of the tree (names, modes, owners, ns mtimes) without reading 4 GiB twice
    // into memory: the huge file is compared above, its metadata here.
    use std::os::unix::fs::MetadataExt;
    let (ma, mb) = (fs::metadata(&huge).unwrap(), fs::metadata(&back).unwrap());
    assert_eq!(
        (ma.mtime(), ma.mtime_nsec(), ma.mode()),
        (mb.mtime(), mb.mtime_nsec(), mb.mode())
    );
    let folder_time = fs::metadata(second.join("big"))
        .unwrap()
        .modified()
        .unwrap();
    fs::remove_file(&back).unwrap();
    fs::remove_file(second.join("big/huge.img")).unwrap();
    for dir in [second.join("big"), in_snap(&to, &src).join("big")] {
        fs::File::open(dir)
            .unwrap()
            .set_times(fs::FileTimes::new().set_modified(folder_time))
            .unwrap();
    }
    assert_same_tree(&second, &in_snap(&to, &src));
    // The first snapshot's odd folder (its files live partly in the second's folder).
    let to1 = work.path().join("restored-1");
    let odd = src.join("odd");
    run(
        &a,
        &[
            "restore",
            "box",
            s[0].file_name().unwrap().to_str().unwrap(),
            odd.to_str().unwrap(),
            "--to",
            to1.to_str().unwrap(),
        ],
    );
    assert_same_tree(&first.join("odd"), &to1.join("odd"));
    eprintln!(
        "FAT32 (fusefat), 4 GiB + 1 byte: first run {first_run:?}, second run {second_run:?} \
         (it cost {old_bytes} bytes in the first snapshot), restore {restore:?}"
    );
}

fn walk_bytes(p: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let md = fs::symlink_metadata(e.as_ref().unwrap().path()).unwrap();
            if md.is_dir() {
                stack.push(e.unwrap().path());
            } else {
                n += md.len();
            }
        }
    }
    n
}
