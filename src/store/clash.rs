//! Case clashes on case-insensitive disks (exFAT, FAT, SMB): `Report.txt` and `report.txt`
//! would be one file there, and storing the second would overwrite the first.

use std::collections::HashMap;

use super::names::{stored_path, NameRules};
use crate::model::Entry;

/// Stored paths seen so far in one snapshot, case-folded.
pub struct Folded {
    active: bool,
    names: NameRules,
    seen: HashMap<String, String>,
}

impl Folded {
    /// `active`: the disk is case-insensitive (else `clash` never reports anything).
    pub fn new(active: bool, names: NameRules) -> Folded {
        Folded {
            active,
            names,
            seen: HashMap::new(),
        }
    }

    /// The path of an earlier entry that `e` would overwrite, if any; else `e` is remembered.
    pub fn clash(&mut self, e: &Entry) -> Option<String> {
        if !self.active {
            return None;
        }
        let stored = stored_path(&self.names, &e.path);
        let key = String::from_utf8_lossy(&stored).to_lowercase();
        match self.seen.get(&key) {
            Some(other) => Some(other.clone()),
            None => {
                self.seen.insert(key, e.display_path());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    fn entry(p: &str) -> Entry {
        Entry {
            path: p.as_bytes().to_vec(),
            kind: Kind::File,
            size: 0,
            mtime_ns: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            target: None,
        }
    }

    #[test]
    fn second_spelling_is_a_clash_only_on_case_insensitive_disks() {
        let mut f = Folded::new(true, NameRules::none());
        assert_eq!(f.clash(&entry("home/Report.txt")), None);
        assert_eq!(f.clash(&entry("home/other.txt")), None);
        assert_eq!(
            f.clash(&entry("home/report.TXT")).as_deref(),
            Some("/home/Report.txt")
        );
        assert_eq!(f.clash(&entry("home/Ünïcode")), None);
        assert!(f.clash(&entry("home/üNÏCODE")).is_some());
        let mut g = Folded::new(false, NameRules::none());
        assert_eq!(g.clash(&entry("a/B")), None);
        assert_eq!(g.clash(&entry("a/b")), None);
    }
}
