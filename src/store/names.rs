//! Reversible names for disks that refuse some (exFAT, FAT, SMB: `:*?"<>|\`, control
//! characters, invalid UTF-8, a trailing dot or space).
//!
//! The rule, per path component, on a disk that refuses anything:
//! every refused byte, every byte below 0x20, 0x7f, every byte of invalid UTF-8, a trailing
//! `.` or ` `, and `%` itself become `%XX` (two upper-case hex digits). Nothing else changes,
//! so ordinary names look the same on the disk. On a disk that refuses nothing, names are
//! stored as they are and `unescape` must not be applied.
//!
//! `escape` and `unescape` are pure: the same name always maps to the same stored name. On
//! case-insensitive disks some entries are stored under another name (case clashes, see
//! `clash`), recorded per snapshot: readers find a manifest path on the disk with
//! `Renamed::path`, which falls back to `stored_path(&rules, path)`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// What a destination refuses in names, as the probe measured it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRules {
    /// Bytes refused anywhere in a name (ASCII only; see `invalid_utf8`).
    pub refused: Vec<u8>,
    /// Names must be valid UTF-8.
    pub invalid_utf8: bool,
}

impl NameRules {
    /// A disk that stores every name as given.
    pub fn none() -> NameRules {
        NameRules::default()
    }

    /// Does this disk need escaping at all?
    pub fn active(&self) -> bool {
        !self.refused.is_empty() || self.invalid_utf8
    }

    /// From the probe's list of refused bytes (0xff stands for invalid UTF-8).
    pub fn from_refused(bytes: &[u8]) -> NameRules {
        NameRules {
            refused: bytes.iter().copied().filter(|b| b.is_ascii()).collect(),
            invalid_utf8: bytes.iter().any(|b| !b.is_ascii()),
        }
    }
}

/// The name to store for the original component `original`.
pub fn escape<'a>(original: &'a [u8], rules: &NameRules) -> Cow<'a, [u8]> {
    if !rules.active() {
        return Cow::Borrowed(original);
    }
    let bad_utf8 = if rules.invalid_utf8 {
        invalid_utf8_bytes(original)
    } else {
        vec![false; original.len()]
    };
    let last = original.len().saturating_sub(1);
    let needs = |i: usize, b: u8| {
        b == b'%'
            || b < 0x20
            || b == 0x7f
            || rules.refused.contains(&b)
            || bad_utf8[i]
            || (i == last && (b == b'.' || b == b' ') && original != b"." && original != b"..")
    };
    if !original.iter().enumerate().any(|(i, &b)| needs(i, b)) {
        return Cow::Borrowed(original);
    }
    let mut out = Vec::with_capacity(original.len() + 8);
    for (i, &b) in original.iter().enumerate() {
        if needs(i, b) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// The original component of a name stored by `escape` (on a disk whose rules are active).
pub fn unescape(stored: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(stored.len());
    let mut i = 0;
    while i < stored.len() {
        if stored[i] == b'%' && i + 2 < stored.len() {
            if let (Some(h), Some(l)) = (hex(stored[i + 1]), hex(stored[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(stored[i]);
        i += 1;
    }
    out
}

/// A whole manifest path (`home/a/b`), component by component.
pub fn stored_path<'a>(rules: &NameRules, path: &'a [u8]) -> Cow<'a, [u8]> {
    if !rules.active() {
        return Cow::Borrowed(path);
    }
    let parts: Vec<Cow<[u8]>> = path
        .split(|&b| b == b'/')
        .map(|c| escape(c, rules))
        .collect();
    if parts.iter().all(|p| matches!(p, Cow::Borrowed(_))) {
        return Cow::Borrowed(path);
    }
    Cow::Owned(parts.join(&b'/'))
}

/// Which bytes of `s` belong to invalid UTF-8 sequences.
fn invalid_utf8_bytes(s: &[u8]) -> Vec<bool> {
    let mut bad = vec![false; s.len()];
    let mut i = 0;
    while i < s.len() {
        match std::str::from_utf8(&s[i..]) {
            Ok(_) => break,
            Err(e) => {
                let start = i + e.valid_up_to();
                let n = e.error_len().unwrap_or(s.len() - start);
                for b in &mut bad[start..start + n] {
                    *b = true;
                }
                i = start + n;
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fat() -> NameRules {
        NameRules::from_refused(b":*?\"<>|\\\x01\xff")
    }

    #[test]
    fn refused_characters_round_trip() {
        let r = fat();
        for name in [
            &b"plain.txt"[..],
            b"a:b*c?d\"e<f>g|h\\i",
            b"100% sure",
            b"%41 is not A",
            b"tab\there",
            b"ends with dot.",
            b"ends with space ",
            b"caf\xc3\xa9 ok",
            b"bad \xff\xfe utf8",
            b"cut \xc3",
            b"..",
            b".",
            b"",
        ] {
            let s = escape(name, &r);
            assert_eq!(
                unescape(&s),
                name,
                "{:?} -> {:?}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(&s)
            );
            assert!(std::str::from_utf8(&s).is_ok(), "stored names are UTF-8");
            for &b in b":*?\"<>|\\\t" {
                assert!(!s.contains(&b));
            }
        }
    }

    #[test]
    fn ordinary_names_are_untouched_and_valid_utf8_kept() {
        let r = fat();
        assert!(matches!(escape(b"report.odt", &r), Cow::Borrowed(_)));
        assert_eq!(&*escape("café".as_bytes(), &r), "café".as_bytes());
        assert_eq!(&*escape(b"a:b", &r), b"a%3Ab");
        assert_eq!(&*escape(b"a.", &r), b"a%2E");
        assert_eq!(&*stored_path(&r, b"home/a:b/c?"), b"home/a%3Ab/c%3F");
    }

    #[test]
    fn disks_that_refuse_nothing_store_names_as_given() {
        let r = NameRules::none();
        assert_eq!(&*escape(b"a:b%41\xff", &r), b"a:b%41\xff");
        assert_eq!(&*stored_path(&r, b"x/a:b"), b"x/a:b");
    }
}
