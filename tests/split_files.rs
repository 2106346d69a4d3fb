//! Files over `[storage] split_at` (or the disk's largest file) are stored as
//! `<name>%partNNN` and joined again by everything that reads them: restore, verify, the
//! web page's download (ranges across parts), hard-linked later snapshots.

mod common;
mod webutil;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;

const MIB: usize = 1 << 20;

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 253) as u8)
        .collect()
}

fn flip_byte_keeping_mtime(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 1;
    f.write_all_at(&b, at).unwrap();
    f.set_modified(mtime).unwrap();
}

#[test]
fn files_over_split_at_are_stored_in_parts_and_joined_by_every_reader() {
    let src = tempfile::tempdir().unwrap();
    let huge = pattern(3 * MIB + MIB / 2 + 1, 7);
    let exact = pattern(MIB, 9);
    write_file(
        &src.path().join("huge.bin"),
        &huge,
        1_700_000_000_000_000_001,
    );
    write_file(
        &src.path().join("exact.bin"),
        &exact,
        1_700_000_000_000_000_002,
    );
    write_file(
        &src.path().join("notes.txt"),
        b"one",
        1_700_000_000_000_000_003,
    );
    let setup = Setup::new(&local_host("box", src.path()), "schedule = \"manual\"");
    let cfg = fs::read_to_string(&setup.config).unwrap();
    fs::write(
        &setup.config,
        cfg.replacen("[storage]\n", "[storage]\nsplit_at = \"1MiB\"\n", 1),
    )
    .unwrap();
    setup.init();
    setup.backup("box", 0);
    let first = setup.snapshots("box")[0].clone();
    let stored = in_snap(&first, src.path());
    let sizes: Vec<u64> = (1..=5)
        .map(|n| stored.join(format!("huge.bin%part00{n}")))
        .take_while(|p| p.exists())
        .map(|p| fs::metadata(p).unwrap().len())
        .collect();
    let m = MIB as u64;
    assert_eq!(sizes, vec![m, m, m, m / 2 + 1], "whole-MiB parts");
    assert!(!stored.join("huge.bin").exists());
    assert_eq!(
        fs::metadata(stored.join("exact.bin")).unwrap().len(),
        m,
        "a file of exactly the limit is stored as it is"
    );
    assert!(!stored.join("exact.bin%part001").exists());

    std::thread::sleep(std::time::Duration::from_millis(1100));
    write_file(
        &src.path().join("notes.txt"),
        b"two",
        1_700_000_100_000_000_000,
    );
    setup.backup("box", 0);
    let second = setup.snapshots("box")[1].clone();
    for n in 1..=4 {
        let p = |s: &Path| in_snap(s, src.path()).join(format!("huge.bin%part00{n}"));
        let (a, b) = (
            fs::metadata(p(&first)).unwrap(),
            fs::metadata(p(&second)).unwrap(),
        );
        assert_eq!(a.ino(), b.ino(), "part {n} hard-linked, not stored twice");
    }

    let to = setup.dir.path().join("restored");
    let out = setup.snapnest(&[
        "restore",
        "box",
        "latest",
        "/",
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same_tree(src.path(), &in_snap(&to, src.path()));

    let out = setup.snapnest(&["verify"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains(" 0 damaged"), "{t}");
    // Rot in the third part: verify hashes the joined content and finds it.
    let part3 = in_snap(&first, src.path()).join("huge.bin%part003");
    flip_byte_keeping_mtime(&part3, 12345);
    let out = setup.snapnest(&["verify"]);
    let t = text(&out);
    assert!(t.contains("DAMAGED ") && t.contains("huge.bin"), "{t}");
    flip_byte_keeping_mtime(&part3, 12345);

    let snap = second.file_name().unwrap().to_string_lossy().into_owned();
    let web = webutil::start_with(setup, "");
    let url = webutil::snap_url("file", "box", &snap, &src.path().join("huge.bin"));
    let r = web.get_t(&url);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.body == huge, "the download is the joined file");
    // A range across the first part's end.
    let (a, b) = (MIB - 5, MIB + 5);
    let r = web.get(
        &url,
        &[
            ("Authorization", &format!("Bearer {}", webutil::TOKEN)),
            ("Range", &format!("bytes={a}-{b}")),
        ],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &huge[a..=b]);
}
