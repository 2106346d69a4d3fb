use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::*;
use crate::job::stage::Keep;
use crate::model::{Entry, Kind};
use crate::test_rng::Rng;

fn stage(root: &Path) -> Stage {
    Stage {
        root: root.to_path_buf(),
        preserve_owner: false,
        keep: Keep::all(),
        renamed: Default::default(),
    }
}

fn p(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(rel))
}

/// Names that sort between a file and its parts, parts of several spellings, not-quite
/// parts, and a byte that is not UTF-8.
fn name(rng: &mut Rng) -> Vec<u8> {
    let base = rng.pick(&[
        b"a", b"b", b"x", b"a b", b"a-1", b"a.t", b"a0", b"x!", b"x%a", b"%p", b"\xff",
    ]);
    let suffix = rng.pick(&[
        b"",
        b"",
        b"",
        b"%part001",
        b"%part002",
        b"%part0003",
        b"%partx01",
        b"%part01",
    ]);
    [base, suffix].concat()
}

/// A random staging tree: files, folders (some read-only), symlinks (some to folders).
fn grow(rng: &mut Rng, root: &Path, rel: &[u8], depth: u32) {
    for _ in 0..rng.below(7) {
        let n = name(rng);
        let child = if rel.is_empty() {
            n
        } else {
            [rel, b"/", &n].concat()
        };
        let path = p(root, &child);
        if fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        match rng.below(10) {
            0..=5 => fs::write(&path, &child).unwrap(),
            6..=8 if depth < 3 => {
                fs::create_dir(&path).unwrap();
                grow(rng, root, &child, depth + 1);
                if rng.below(4) == 0 {
                    fs::set_permissions(&path, Permissions::from_mode(0o500)).unwrap();
                }
            }
            _ => {
                let target = rng.pick(&[b".", b"..", b"nowhere"]);
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &path).unwrap();
            }
        }
    }
}

/// Every object below `root`: relative path → what a user would compare.
fn tree(root: &Path) -> BTreeMap<Vec<u8>, String> {
    fn walk(root: &Path, rel: &[u8], out: &mut BTreeMap<Vec<u8>, String>) {
        for item in fs::read_dir(p(root, rel)).unwrap() {
            let item = item.unwrap();
            let name = item.file_name();
            let child = if rel.is_empty() {
                name.as_bytes().to_vec()
            } else {
                [rel, b"/", name.as_bytes()].concat()
            };
            let md = fs::symlink_metadata(item.path()).unwrap();
            let what = if md.is_symlink() {
                format!("link {:?}", fs::read_link(item.path()).unwrap())
            } else if md.is_dir() {
                walk(root, &child, out);
                format!("dir {:o}", md.mode() & 0o7777)
            } else {
                format!("file {:?}", fs::read(item.path()).unwrap())
            };
            out.insert(child, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, b"", &mut out);
    out
}

/// What the new listing wants: most of what is there (some with the other kind), bases of
/// parts as files or folders, names not there at all.
fn wanted(rng: &mut Rng, there: &BTreeMap<Vec<u8>, String>) -> BTreeMap<Vec<u8>, bool> {
    let mut out = BTreeMap::new();
    out.insert(Vec::new(), true);
    for (rel, what) in there {
        let is_dir = what.starts_with("dir");
        match rng.below(10) {
            0..=5 => drop(out.insert(rel.clone(), is_dir)),
            6 => drop(out.insert(rel.clone(), !is_dir)),
            _ => {}
        }
        if let Some(base) = crate::store::parts::base_of(rel) {
            match rng.below(5) {
                0..=2 => drop(out.insert(base.to_vec(), false)),
                3 => drop(out.insert(base.to_vec(), true)),
                _ => {}
            }
        }
    }
    for _ in 0..rng.below(4) {
        let n = [name(rng), b"/".to_vec(), name(rng)].concat();
        out.insert(n, rng.below(2) == 0);
    }
    out
}

fn streamed(s: &Stage, wanted: &BTreeMap<Vec<u8>, bool>) -> Result<u64> {
    let mut it = wanted.iter().map(|(n, d)| Ok((n.clone(), *d)));
    s.remove_unlisted_sorted(&mut it)
}

/// The same random trees and listings: the streamed cleanup leaves exactly what the
/// in-memory one leaves (contents, kinds, folder modes) and counts the same removals.
#[test]
fn streamed_cleanup_matches_the_in_memory_one() {
    let (mut removed_total, mut parts_kept, mut kept_total) = (0, 0, 0);
    for seed in 1..=300u64 {
        let dir = tempfile::tempdir().unwrap();
        let (old_root, new_root) = (dir.path().join("old"), dir.path().join("new"));
        for root in [&old_root, &new_root] {
            fs::create_dir(root).unwrap();
            grow(&mut Rng::new(seed * 0x9e37_79b9), root, b"", 0);
        }
        let before = tree(&old_root);
        assert_eq!(before, tree(&new_root));
        let want = wanted(&mut Rng::new(seed), &before);
        let entries: Vec<Entry> = want
            .iter()
            .map(|(n, &d)| Entry::bare(n, if d { Kind::Dir } else { Kind::File }))
            .collect();
        let old = stage(&old_root).remove_unlisted(&entries).unwrap();
        let new = streamed(&stage(&new_root), &want).unwrap();
        let after = tree(&new_root);
        assert_eq!(tree(&old_root), after, "seed {seed}: {want:?}");
        assert_eq!(old, new, "seed {seed}");
        removed_total += new;
        kept_total += after.len();
        parts_kept += after
            .keys()
            .filter(|k| !want.contains_key(*k) && crate::store::parts::base_of(k).is_some())
            .count();
    }
    // The trees exercise what they are for.
    assert!(removed_total > 300, "{removed_total}");
    assert!(kept_total > 300, "{kept_total}");
    assert!(parts_kept > 20, "{parts_kept}");
}

/// Parts whose file sorts far before them (a whole listed folder in between) are kept;
/// parts of a folder, of an unlisted name, and part-named folders go.
#[test]
fn parts_are_kept_across_whatever_sorts_between_them_and_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let files: &[&[u8]] = &[
        b"x%part001",
        b"x%part002",
        b"x!",
        b"x%a",
        b"d%part001",
        b"z%part001",
        b"w/in",
    ];
    let dirs: &[&[u8]] = &[b"x ", b"x /deep", b"d", b"w", b"y%part001"];
    for d in dirs {
        fs::create_dir(p(root, d)).unwrap();
    }
    for i in 0..50 {
        fs::write(p(root, format!("x /deep/f{i}").as_bytes()), "").unwrap();
    }
    for f in files {
        fs::write(p(root, f), "").unwrap();
    }
    let mut want: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
    for (n, d) in [
        (&b"x"[..], false),
        (b"x ", true),
        (b"x /deep", true),
        (b"x!", false),
        (b"d", true),
        (b"y", false),
        (b"w", true),
        (b"w/in%part001", false),
    ] {
        want.insert(n.to_vec(), d);
    }
    for i in 0..50 {
        want.insert(format!("x /deep/f{i}").into_bytes(), false);
    }
    let removed = streamed(&stage(root), &want).unwrap();
    let left: Vec<String> = tree(root)
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .filter(|k| !k.starts_with("x /deep/"))
        .collect();
    assert_eq!(
        left,
        ["d", "w", "x ", "x /deep", "x!", "x%part001", "x%part002"]
    );
    assert_eq!(tree(root).len(), left.len() + 50);
    // x%a (unlisted), d%part001 (of a folder), z%part001 (of nothing), y%part001 (a
    // folder), w/in (a file whose name is listed only with a part suffix).
    assert_eq!(removed, 5);
}

#[test]
fn names_out_of_order_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("d"), "").unwrap();
    // Found when `c` is passed on the way to `d`, before `d` is judged.
    let mut it = [(b"c".to_vec(), false), (b"a".to_vec(), false)]
        .into_iter()
        .map(Ok);
    let err = stage(dir.path())
        .remove_unlisted_sorted(&mut it)
        .unwrap_err();
    assert!(err.to_string().contains("out of order"), "{err}");
    let mut it = [Err(Error::Other("sort failed".into()))].into_iter();
    let err = stage(dir.path())
        .remove_unlisted_sorted(&mut it)
        .unwrap_err();
    assert!(err.to_string().contains("sort failed"), "{err}");
    assert!(
        dir.path().join("d").exists(),
        "a failed feed removes nothing"
    );
}
