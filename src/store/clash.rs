//! Case clashes on case-insensitive disks (exFAT, FAT, SMB): `Report.txt` and `report.txt`
//! would be one file there. All but one of such a group are stored under a renamed
//! component, and each snapshot records which (catalog `snapshot_renamed`): readers must
//! open exactly the stored name, since the plain one would open the other file.
//!
//! A renamed component is the plain escape (see `names`) with letters escaped as `%XX`:
//! first only the first letter (`%72eport.txt`), else all of them. Plain escapes never
//! escape a letter, so on a disk with active name rules a renamed component cannot equal
//! another entry's stored name, and `unescape` still gives the original. Every choice is
//! checked against the folder's other names, case-folded, all the same.
//!
//! The choice is stable across runs: an entry the previous snapshot had keeps its stored
//! name there (plain or renamed) while nothing else holds it, so unchanged files can be
//! linked or moved from the previous snapshot under one name.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::names::{escape, stored_path, NameRules};
use crate::model::Entry;

/// Paths stored under another last component than their plain escape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Renamed(HashMap<Vec<u8>, Vec<u8>>);

impl Renamed {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn insert(&mut self, path: Vec<u8>, stored: Vec<u8>) {
        self.0.insert(path, stored);
    }

    pub fn get(&self, path: &[u8]) -> Option<&[u8]> {
        self.0.get(path).map(Vec::as_slice)
    }

    /// (original path, stored last component)
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(p, s)| (p.as_slice(), s.as_slice()))
    }

    /// Keep only the paths `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        self.0.retain(|p, _| keep(p));
    }

    /// Where manifest path `path` is stored: each component escaped, or as recorded here
    /// (a renamed folder moves everything in it).
    pub fn path<'a>(&self, rules: &NameRules, path: &'a [u8]) -> Cow<'a, [u8]> {
        if self.0.is_empty() || path.is_empty() {
            return stored_path(rules, path);
        }
        let mut out = Vec::with_capacity(path.len() + 8);
        let mut start = 0;
        for end in (0..=path.len()).filter(|&i| i == path.len() || path[i] == b'/') {
            if start > 0 {
                out.push(b'/');
            }
            match self.0.get(&path[..end]) {
                Some(stored) => out.extend_from_slice(stored),
                None => out.extend_from_slice(&escape(&path[start..end], rules)),
            }
            start = end + 1;
        }
        Cow::Owned(out)
    }
}

/// The stored names of one run's listing on a case-insensitive disk.
#[derive(Debug, Default)]
pub struct Assigned {
    pub renamed: Renamed,
    /// Entries (by index) that get no name of their own, with the path that holds the name:
    /// left out and reported, as before renaming existed (only if every renaming collides).
    pub clashes: HashMap<usize, String>,
}

/// How a case-insensitive disk compares names.
fn fold(stored: &[u8]) -> String {
    String::from_utf8_lossy(stored).to_lowercase()
}

fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

fn last(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// `plain` with letters escaped: the first one only (`all` false) or every one. Existing
/// `%XX` escapes are kept; a non-ASCII character is escaped whole, so the name stays UTF-8.
fn letters_escaped(plain: &[u8], all: bool) -> Vec<u8> {
    let hex = |c: u8| c.is_ascii_hexdigit();
    let mut out = Vec::with_capacity(plain.len() * 2);
    let mut done = false;
    let mut i = 0;
    while i < plain.len() {
        let b = plain[i];
        if b == b'%' && i + 2 < plain.len() && hex(plain[i + 1]) && hex(plain[i + 2]) {
            out.extend_from_slice(&plain[i..i + 3]);
            i += 3;
            continue;
        }
        let n = if b.is_ascii() {
            1
        } else {
            // The whole character (or the one invalid byte).
            (2..=4)
                .find(|&n| {
                    plain
                        .get(i..i + n)
                        .is_some_and(|c| std::str::from_utf8(c).is_ok())
                })
                .unwrap_or(1)
        };
        if !done && (b.is_ascii_alphabetic() || !b.is_ascii()) {
            for &c in &plain[i..i + n] {
                out.extend_from_slice(format!("%{c:02X}").as_bytes());
            }
            done = !all;
        } else {
            out.extend_from_slice(&plain[i..i + n]);
        }
        i += n;
    }
    out
}

/// Choose stored names for `entries` (sorted by path). `in_prev[i]`: the previous snapshot
/// (stored under the same rules) has entry `i`; `prev` is what it renamed.
pub fn assign(entries: &[Entry], rules: &NameRules, in_prev: &[bool], prev: &Renamed) -> Assigned {
    // Folders that need a look: where two names fold together, or an entry was renamed.
    let mut first: HashMap<(&[u8], String), usize> = HashMap::new();
    let mut busy: HashSet<&[u8]> = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        if e.path.is_empty() {
            continue;
        }
        let dir = parent(&e.path);
        if in_prev[i] && prev.get(&e.path).is_some() {
            busy.insert(dir);
        }
        let key = fold(&escape(last(&e.path), rules));
        if first.insert((dir, key), i).is_some() {
            busy.insert(dir);
        }
    }
    drop(first);
    let mut out = Assigned::default();
    if busy.is_empty() {
        return out;
    }
    let mut folders: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if !e.path.is_empty() && busy.contains(parent(&e.path)) {
            folders.entry(parent(&e.path)).or_default().push(i);
        }
    }
    for members in folders.values() {
        assign_folder(entries, rules, in_prev, prev, members, &mut out);
    }
    out
}

fn assign_folder(
    entries: &[Entry],
    rules: &NameRules,
    in_prev: &[bool],
    prev: &Renamed,
    members: &[usize],
    out: &mut Assigned,
) {
    let plain = |i: usize| escape(last(&entries[i].path), rules).into_owned();
    let plain_keys: HashSet<String> = members.iter().map(|&i| fold(&plain(i))).collect();
    // Folded stored name -> the entry holding it.
    let mut taken: HashMap<String, usize> = HashMap::new();
    let mut done: HashSet<usize> = HashSet::new();
    // What the previous snapshot stored plainly keeps its plain name; then what it renamed
    // keeps that name; then the new entries, in listing order.
    for &i in members.iter().filter(|&&i| in_prev[i]) {
        if prev.get(&entries[i].path).is_none() {
            let key = fold(&plain(i));
            if let std::collections::hash_map::Entry::Vacant(v) = taken.entry(key) {
                v.insert(i);
                done.insert(i);
            }
        }
    }
    for &i in members.iter().filter(|&&i| in_prev[i]) {
        if let Some(stored) = prev.get(&entries[i].path) {
            let key = fold(stored);
            if let std::collections::hash_map::Entry::Vacant(v) = taken.entry(key) {
                v.insert(i);
                done.insert(i);
                out.renamed.insert(entries[i].path.clone(), stored.to_vec());
            }
        }
    }
    for &i in members.iter().filter(|i| !done.contains(i)) {
        let p = plain(i);
        let key = fold(&p);
        let holder = match taken.get(&key) {
            None => {
                taken.insert(key, i);
                continue;
            }
            Some(&h) => h,
        };
        let choice = [false, true]
            .into_iter()
            .map(|all| letters_escaped(&p, all))
            .find(|c| {
                let k = fold(c);
                *c != p && !plain_keys.contains(&k) && !taken.contains_key(&k)
            });
        match choice {
            Some(c) => {
                taken.insert(fold(&c), i);
                out.renamed.insert(entries[i].path.clone(), c);
            }
            None => {
                out.clashes.insert(i, entries[holder].display_path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;
    use crate::store::names::unescape;

    fn entry(p: &str) -> Entry {
        Entry::bare(p.as_bytes(), Kind::File)
    }

    fn listing(paths: &[&str]) -> Vec<Entry> {
        let mut v: Vec<Entry> = paths.iter().map(|p| entry(p)).collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    fn fat() -> NameRules {
        NameRules::from_refused(b":*?\"<>|\\\x01\xff")
    }

    /// Stored paths of a listing, checked to be distinct case-folded and reversible.
    fn stored(entries: &[Entry], a: &Assigned) -> Vec<String> {
        let r = fat();
        let out: Vec<String> = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| !a.clashes.contains_key(i))
            .map(|(_, e)| {
                let s = a.renamed.path(&r, &e.path).into_owned();
                let back: Vec<u8> = s
                    .split(|&b| b == b'/')
                    .map(unescape)
                    .collect::<Vec<_>>()
                    .join(&b'/');
                assert_eq!(back, e.path, "reversible");
                String::from_utf8(s).unwrap()
            })
            .collect();
        let folded: HashSet<String> = out.iter().map(|s| s.to_lowercase()).collect();
        assert_eq!(folded.len(), out.len(), "distinct on the disk: {out:?}");
        out
    }

    #[test]
    fn every_spelling_gets_its_own_name_and_plain_names_stay_plain() {
        let e = listing(&[
            "home/Report.txt",
            "home/report.txt",
            "home/REPORT.TXT",
            "home/other.txt",
            "home/a:b",
            "home/ab",
            "home/aB",
            "home/Ab",
            "home/Ünï",
            "home/ünï",
            "Docs",
            "Docs/x",
            "docs",
            "docs/x",
        ]);
        let a = assign(&e, &fat(), &vec![false; e.len()], &Renamed::default());
        assert!(a.clashes.is_empty());
        let s = stored(&e, &a);
        assert!(s.contains(&"home/REPORT.TXT".to_string()), "{s:?}");
        assert!(s.contains(&"home/%52eport.txt".to_string()), "{s:?}");
        assert!(s.contains(&"home/%72eport.txt".to_string()), "{s:?}");
        assert!(s.contains(&"home/other.txt".to_string()));
        assert!(s.contains(&"home/a%3Ab".to_string()));
        assert!(
            s.contains(&"%64ocs/x".to_string()),
            "the folder moves its files: {s:?}"
        );
    }

    #[test]
    fn names_are_kept_across_runs_while_the_file_is_there() {
        let r = fat();
        let one = listing(&["Report.txt", "report.txt"]);
        let a = assign(&one, &r, &[false, false], &Renamed::default());
        assert_eq!(a.renamed.get(b"report.txt"), Some(&b"%72eport.txt"[..]));
        // Next run: `Report.txt` deleted, `RePort.txt` new; `report.txt` keeps its name.
        let two = listing(&["RePort.txt", "report.txt"]);
        let b = assign(&two, &r, &[false, true], &a.renamed);
        assert_eq!(b.renamed.get(b"report.txt"), Some(&b"%72eport.txt"[..]));
        assert_eq!(b.renamed.get(b"RePort.txt"), None, "free again: plain");
        // A new spelling that sorts first does not take the plain name from an old file.
        let three = listing(&["REPORT.txt", "RePort.txt", "report.txt"]);
        let c = assign(&three, &r, &[false, true, true], &b.renamed);
        assert_eq!(c.renamed.get(b"RePort.txt"), None);
        assert_eq!(c.renamed.get(b"report.txt"), Some(&b"%72eport.txt"[..]));
        assert_eq!(c.renamed.get(b"REPORT.txt"), Some(&b"%52EPORT.txt"[..]));
        stored(&three, &c);
    }

    #[test]
    fn nothing_is_renamed_without_a_clash_and_a_name_that_cannot_differ_is_reported() {
        let r = fat();
        let e = listing(&["a/x", "b/X", "c"]);
        let a = assign(&e, &r, &[false; 3], &Renamed::default());
        assert!(a.renamed.is_empty() && a.clashes.is_empty());
        // No letters to escape: "1" and "1" cannot clash, but two names that fold alike
        // with nothing to tell them apart can (here: the same name twice in a listing).
        let e = vec![entry("d/%41"), entry("d/%41")];
        let a = assign(&e, &r, &[false; 2], &Renamed::default());
        assert_eq!(a.clashes.get(&1).map(String::as_str), Some("/d/%41"));
    }
}
