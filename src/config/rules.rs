//! Include/exclude rules. Patterns follow rsync's habits: `*.tmp` matches a name at any depth,
//! `.cache/` (trailing slash) only folders, `/home/alice/Downloads/` (leading slash, or any
//! inner slash) the absolute source path. `*` stays within one name, `**` crosses folders.
//!
//! The decision for a path comes from the rules that match the path itself, the last such rule
//! winning; a path no rule matches inherits its folder's decision. So a rule for a deeper path
//! beats one for its parent ("more specific wins") and includes, listed after excludes, beat
//! excludes at the same depth ("later wins").

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use crate::model::{Entry, Kind};

#[derive(Clone, Debug)]
struct Rule {
    include: bool,
    dir_only: bool,
    anchored: bool,
    matcher: GlobMatcher,
}

#[derive(Clone, Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Excludes first, then includes: includes win where both match the same path.
    pub fn new(exclude: &[String], include: &[String]) -> Result<Rules, String> {
        let mut rules = Vec::new();
        for (pattern, inc) in exclude
            .iter()
            .map(|p| (p, false))
            .chain(include.iter().map(|p| (p, true)))
        {
            rules.push(Rule::parse(pattern, inc)?);
        }
        Ok(Rules { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// `Some(true)` include, `Some(false)` exclude, `None` no rule matches this path itself.
    /// `path` is the snapshot path (absolute source path without the leading `/`).
    pub fn decide(&self, path: &[u8], is_dir: bool) -> Option<bool> {
        let mut abs = Vec::with_capacity(path.len() + 1);
        abs.push(b'/');
        abs.extend_from_slice(path);
        let abs = Path::new(OsStr::from_bytes(&abs));
        let name = Path::new(OsStr::from_bytes(basename(path)));
        let mut decision = None;
        for rule in &self.rules {
            if rule.dir_only && !is_dir {
                continue;
            }
            let hit = if rule.anchored {
                rule.matcher.is_match(abs)
            } else {
                rule.matcher.is_match(name)
            };
            if hit {
                decision = Some(rule.include);
            }
        }
        decision
    }

    /// Keep what the rules keep. `entries` must be sorted by path; folders that are excluded
    /// but hold an included path are kept as bare folders so the included path has a home.
    /// Returns the kept entries (still sorted) and how many were excluded.
    pub fn filter(&self, entries: Vec<Entry>, roots: &[Vec<u8>]) -> (Vec<Entry>, u64) {
        if self.rules.is_empty() {
            return (entries, 0);
        }
        // Decisions of folders, looked up by children; bytewise order puts a parent first.
        let mut dir_included: HashMap<&[u8], bool> = HashMap::new();
        let mut keep = vec![false; entries.len()];
        let mut index_of: HashMap<&[u8], usize> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let is_dir = e.kind == Kind::Dir;
            let is_root = roots.iter().any(|r| is_ancestor_or_self(&e.path, r));
            let own = self.decide(&e.path, is_dir);
            let inherited = parent(&e.path)
                .and_then(|p| dir_included.get(p).copied())
                .unwrap_or(true);
            let included = is_root || own.unwrap_or(inherited);
            if is_dir {
                dir_included.insert(&e.path, included);
                index_of.insert(&e.path, i);
            }
            keep[i] = included;
            if included {
                // Excluded ancestors become bare containers.
                let mut p = parent(&e.path);
                while let Some(dir) = p {
                    match index_of.get(dir) {
                        Some(&j) if !keep[j] => keep[j] = true,
                        _ => break,
                    }
                    p = parent(dir);
                }
            }
        }
        let excluded = keep.iter().filter(|k| !**k).count() as u64;
        let kept = entries
            .into_iter()
            .zip(keep)
            .filter_map(|(e, k)| k.then_some(e))
            .collect();
        (kept, excluded)
    }
}

impl Rule {
    fn parse(pattern: &str, include: bool) -> Result<Rule, String> {
        if pattern.is_empty() || pattern == "/" {
            return Err(format!("{pattern:?} is not a useful pattern"));
        }
        let dir_only = pattern.ends_with('/');
        let body = pattern.trim_end_matches('/');
        let anchored = body.contains('/');
        let glob = if anchored && !body.starts_with('/') {
            format!("/{body}")
        } else {
            body.to_string()
        };
        let matcher = GlobBuilder::new(&glob)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("{pattern:?} is not a valid pattern: {e}"))?
            .compile_matcher();
        Ok(Rule {
            include,
            dir_only,
            anchored,
            matcher,
        })
    }
}

fn basename(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// The folder holding `path`, or None at the top.
pub fn parent(path: &[u8]) -> Option<&[u8]> {
    path.iter().rposition(|&b| b == b'/').map(|i| &path[..i])
}

pub(crate) fn is_ancestor_or_self(a: &[u8], b: &[u8]) -> bool {
    b == a || (b.len() > a.len() && b.starts_with(a) && b[a.len()] == b'/') || a.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: Kind) -> Entry {
        Entry::bare(path.as_bytes(), kind)
    }

    fn kept(rules: &Rules, list: &[(&str, Kind)]) -> Vec<String> {
        let mut entries: Vec<Entry> = list.iter().map(|(p, k)| entry(p, *k)).collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let (kept, _) = rules.filter(entries, &[b"home/alice".to_vec()]);
        kept.into_iter()
            .map(|e| String::from_utf8(e.path).unwrap())
            .collect()
    }

    #[test]
    fn name_patterns_match_at_any_depth_and_dir_patterns_only_folders() {
        let r = Rules::new(&["*.tmp".into(), ".cache/".into()], &[]).unwrap();
        assert_eq!(r.decide(b"home/alice/x.tmp", false), Some(false));
        assert_eq!(r.decide(b"home/alice/deep/er/x.tmp", false), Some(false));
        assert_eq!(r.decide(b"home/alice/x.tmpl", false), None);
        assert_eq!(r.decide(b"home/alice/.cache", true), Some(false));
        assert_eq!(
            r.decide(b"home/alice/.cache", false),
            None,
            "a file named .cache is not a folder"
        );
    }

    #[test]
    fn anchored_patterns_match_the_absolute_path() {
        let r = Rules::new(&["/home/*/Downloads/".into(), "etc/shadow".into()], &[]).unwrap();
        assert_eq!(r.decide(b"home/alice/Downloads", true), Some(false));
        assert_eq!(
            r.decide(b"home/alice/x/Downloads", true),
            None,
            "* stays in one name"
        );
        assert_eq!(r.decide(b"etc/shadow", false), Some(false));
        assert_eq!(r.decide(b"srv/etc/shadow", false), None);
    }

    #[test]
    fn more_specific_include_wins_and_keeps_its_folders() {
        let r = Rules::new(
            &["/home/alice/Downloads/".into()],
            &["/home/alice/Downloads/keep/".into()],
        )
        .unwrap();
        let list = [
            ("home/alice", Kind::Dir),
            ("home/alice/a.txt", Kind::File),
            ("home/alice/Downloads", Kind::Dir),
            ("home/alice/Downloads/big.iso", Kind::File),
            ("home/alice/Downloads/keep", Kind::Dir),
            ("home/alice/Downloads/keep/k.txt", Kind::File),
            ("home/alice/Downloads/keep.txt", Kind::File),
        ];
        assert_eq!(
            kept(&r, &list),
            vec![
                "home/alice",
                "home/alice/Downloads",
                "home/alice/Downloads/keep",
                "home/alice/Downloads/keep/k.txt",
                "home/alice/a.txt",
            ]
        );
    }

    #[test]
    fn later_rule_wins_at_the_same_path() {
        let r = Rules::new(&["*.log".into()], &["important.log".into()]).unwrap();
        assert_eq!(r.decide(b"var/important.log", false), Some(true));
        assert_eq!(r.decide(b"var/other.log", false), Some(false));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Rules::new(&["[".into()], &[]).is_err());
        assert!(Rules::new(&["".into()], &[]).is_err());
    }
}
