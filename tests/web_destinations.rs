//! The web page on a disk that stores things its own way: exFAT, where names like `a:b` are
//! stored escaped and copy-with-history keeps an older snapshot's unchanged files in the
//! later snapshot's folder. Browsing shows the source's names; downloads give the right bytes.

mod common;
mod mounts;
mod webutil;

use std::fs;

use common::*;
use mounts::{Fs, Mounted};
use webutil::snap_url;

#[test]
fn exfat_history_snapshots_browse_and_download_with_the_sources_names() {
    let m = Mounted::new(Fs::Exfat, 64);
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("a:b*c?.txt"), b"odd name, stored escaped").unwrap();
    fs::write(src.path().join("stable.bin"), vec![9u8; 300_000]).unwrap();
    fs::write(src.path().join("notes.txt"), b"version one").unwrap();
    let mut setup = Setup::new(&local_host("box", src.path()), "schedule = \"manual\"");
    setup.store_in(&m.mnt);
    setup.init();
    setup.backup("box", 0);
    let first = setup.snapshots("box")[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(src.path().join("notes.txt"), b"version two").unwrap();
    setup.backup("box", 0);
    // Copy-with-history moved the unchanged files out of the first snapshot's folder.
    let first_dir = setup.snapshots("box")[0].clone();
    assert!(!in_snap(&first_dir, src.path()).join("stable.bin").exists());

    let web = webutil::start_with(setup, "");
    let dash = web.get_t("/").text();
    assert!(dash.contains("strategy: history (exfat"), "{dash}");
    let folder = web
        .get_t(&snap_url("browse", "box", &first, src.path()))
        .text();
    assert!(
        folder.contains(">a:b*c?.txt</a>"),
        "the source's name is shown: {folder}"
    );
    let get = |name: &str| web.get_t(&snap_url("file", "box", &first, &src.path().join(name)));
    let r = get("a:b*c?.txt");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"odd name, stored escaped");
    let r = get("stable.bin");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.body,
        vec![9u8; 300_000],
        "found in the later snapshot's folder"
    );
    let r = get("notes.txt");
    assert_eq!(r.body, b"version one", "the first snapshot's own version");
}

/// Two names that differ only in case on exFAT: the page lists both under the source's
/// names and each download gives its own bytes (the disk would open either for both).
#[test]
fn exfat_case_clash_browses_and_downloads_each_file() {
    let m = Mounted::new(Fs::Exfat, 64);
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("Notes.txt"), b"capital").unwrap();
    fs::write(src.path().join("notes.txt"), b"small").unwrap();
    let mut setup = Setup::new(&local_host("box", src.path()), "schedule = \"manual\"");
    setup.store_in(&m.mnt);
    setup.init();
    setup.backup("box", 0);
    let snap = setup.snapshots("box")[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let web = webutil::start_with(setup, "");
    let folder = web
        .get_t(&snap_url("browse", "box", &snap, src.path()))
        .text();
    assert!(
        folder.contains(">Notes.txt</a>") && folder.contains(">notes.txt</a>"),
        "{folder}"
    );
    for (name, body) in [("Notes.txt", &b"capital"[..]), ("notes.txt", b"small")] {
        let r = web.get_t(&snap_url("file", "box", &snap, &src.path().join(name)));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, body, "{name}");
    }
}
