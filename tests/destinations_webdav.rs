//! A WebDAV share through davfs2 (Apache mod_dav on 127.0.0.1): what the probe finds, and a
//! full round trip with the strategy it picks, checked on what reached the server.

mod common;
mod mounts;

use std::fs;
use std::path::Path;

use common::*;
use mounts::box_on_disk;
use mounts::tree::{change, keep_copy, odd_tree};
use mounts::webdav::{missing_facility, WebDav};

fn probe_json(dir: &Path) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .args(["probe", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("probe --json: {e}: {}", text(&out)))
}

fn run(config: &Path, args: &[&str], code: i32) -> String {
    let out = snapnest(config, args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}:\n{t}");
    t
}

#[test]
fn webdav_through_davfs2_copy_with_history_round_trip() {
    if let Some(why) = missing_facility() {
        panic!("cannot test WebDAV on this machine: {why}");
    }
    let dav = WebDav::start();

    let v = probe_json(&dav.mnt);
    let what = format!("{v:#}");
    assert!(
        v["filesystem"].as_str().unwrap().contains("davfs2"),
        "{what}"
    );
    assert_eq!(v["hard_links"]["ok"], false, "{what}");
    // davfs2 uploads a closed file later: not stored at close, and said why.
    assert_eq!(v["durable_on_close"]["ok"], false, "{what}");
    assert!(
        v["durable_on_close"]["detail"]
            .as_str()
            .unwrap()
            .contains("davfs2"),
        "{what}"
    );
    assert_eq!(v["strategy"]["name"], "history", "{what}");
    let left: Vec<_> = fs::read_dir(&dav.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "lost+found")
        .collect();
    assert!(left.is_empty(), "probe left {left:?}");

    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    odd_tree(&src);
    let (_store, config) = box_on_disk(&dav.mnt, work.path(), &src, "", "");
    let init = run(&config, &["init"], 0);
    assert!(init.contains("strategy: history"), "{init}");
    let first = work.path().join("first");
    keep_copy(&src, &first);
    assert!(run(&config, &["backup", "box"], 0).contains("box: good"));
    change(&src);
    let second = work.path().join("second");
    keep_copy(&src, &second);
    assert!(run(&config, &["backup", "box"], 0).contains("box: good"));
    let list = run(&config, &["list", "box"], 0);
    assert!(list.contains("strategy history"), "{list}");

    // Unmount (davfs2 uploads what it holds) and look at the server's own folder.
    dav.unmount();
    let served = dav.served.join("store");
    assert!(served.join(".snapnest/marker").is_file());
    assert!(served.join(".snapnest/catalog.db").is_file());
    let on_server = mounts::snapshot_dirs(&served.join("box"));
    assert_eq!(on_server.len(), 2, "{on_server:?}");
    // The newest is the full mirror; the older keeps only what the second run replaced or
    // deleted (a.txt, docs/report.odt), not the unchanged 3 MiB file.
    let in_old = |p: &str| in_snap(&on_server[0], &src).join(p);
    assert!(in_old("a.txt").is_file() && in_old("docs/report.odt").is_file());
    assert!(!in_old("big/unchanged.bin").exists());
    assert!(in_snap(&on_server[1], &src)
        .join("big/unchanged.bin")
        .is_file());

    // Mounted again with an empty davfs2 cache: both snapshots restore as they were, from
    // what the server holds.
    dav.forget_cache();
    dav.mount();
    let names: Vec<String> = on_server
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    for (name, expected) in names.iter().zip([&first, &second]) {
        let to = work.path().join(format!("restored-{name}"));
        run(
            &config,
            &["restore", "box", name, "/", "--to", to.to_str().unwrap()],
            0,
        );
        assert_same_tree(expected, &in_snap(&to, &src));
    }
}
