//! `snapnest verify`: read stored files again and compare them with the BLAKE3 hashes
//! recorded when they were written, to catch bit rot on cheap USB disks.
//!
//! Reads only: it takes no lock, so backups and prunes go on meanwhile. What such a run can
//! do to a file (a prune deletes its snapshot, a copy-with-history run moves it) is checked
//! again before anything is called damage.

pub mod hash;
pub mod schedule;
pub mod status;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use portable_atomic::AtomicU64;
use serde::Serialize;

use crate::catalog::{Catalog, Damage, VerifyRun};
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::strategy::Locator;
use hash::{hash_open, hex};

/// Which snapshots to verify.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub host: Option<String>,
    /// A name, unique prefix or `latest`; only with `host`.
    pub snapshot: Option<String>,
}

/// A share of the hashed files, in percent (0 < p <= 100).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample(pub f64);

impl Sample {
    pub fn parse(s: &str) -> std::result::Result<Sample, String> {
        let t = s.trim();
        let n = t.strip_suffix('%').unwrap_or(t).trim();
        match n.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(Sample(p)),
            _ => Err(format!(
                "sample {s:?}: expected a share between 0% and 100%, like \"5%\""
            )),
        }
    }

    pub fn describe(self) -> String {
        format!("{}%", self.0)
    }

    /// How many of `total` files one run reads: at least one while there are any.
    pub fn of(self, total: u64) -> u64 {
        ((total as f64 * self.0 / 100.0).ceil() as u64).min(total)
    }
}

/// Live counters, for the daemon's status page and the CLI's progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub total: AtomicU64,
    pub done: AtomicU64,
    pub bytes: AtomicU64,
    pub cancel: AtomicBool,
}

/// A snapshot whose files (some or all) have no recorded hash: made before hashes existed.
#[derive(Clone, Debug, Serialize)]
pub struct NotHashed {
    pub host: String,
    pub snapshot: String,
    pub files: u64,
}

#[derive(Debug)]
pub struct Report {
    pub run: VerifyRun,
    pub damage: Vec<Damage>,
    pub not_hashed: Vec<NotHashed>,
}

impl Report {
    pub fn damaged(&self) -> bool {
        self.run.damaged > 0
    }
}

/// How many files are read between two records of progress in the catalog, so that an
/// interrupted sampled run still moves the rotation on.
const MARK_EVERY: usize = 500;

/// Verify `scope` (all of it, or `sample` of it: the files read longest ago first).
pub fn verify(
    storage: &Storage,
    scope: &Scope,
    sample: Option<Sample>,
    progress: &Arc<Progress>,
) -> Result<Report> {
    let mut catalog = storage.catalog()?;
    let started_ms = crate::job::now_ms();
    let snaps = select(&catalog, scope)?;
    let scope_text = match (&scope.host, &snaps[..]) {
        (None, _) => "all hosts".to_string(),
        (Some(h), [one]) if scope.snapshot.is_some() => format!("{h} {}", one.name),
        (Some(h), _) => h.clone(),
    };
    let sample_text = sample.map(Sample::describe);
    let run_id = catalog.begin_verify(&scope_text, sample_text.as_deref(), started_ms)?;
    let mut run = VerifyRun {
        id: run_id,
        started_ms,
        scope: scope_text,
        sample: sample_text,
        ..Default::default()
    };

    let mut not_hashed = Vec::new();
    for s in &snaps {
        let n = catalog.unhashed_files(s.id)?;
        if n > 0 {
            run.not_hashed += n;
            not_hashed.push(NotHashed {
                host: s.host.clone(),
                snapshot: s.name.clone(),
                files: n,
            });
        }
    }
    let ids: Vec<i64> = snaps.iter().map(|s| s.id).collect();
    let total = if ids.is_empty() {
        0
    } else {
        catalog.count_hashed(&ids)?
    };
    let limit = sample.map(|s| s.of(total));
    let files = if ids.is_empty() {
        Vec::new()
    } else {
        catalog.hashed_files(&ids, limit)?
    };
    progress.total.store(files.len() as u64, Ordering::Relaxed);

    let mut locators: HashMap<i64, (String, String, Locator)> = HashMap::new();
    for s in &snaps {
        let loc = Locator::new(storage, &catalog, &s.host, &s.name)?;
        locators.insert(s.id, (s.host.clone(), s.name.clone(), loc));
    }
    // Hard-linked snapshots share inodes: each one is read once per run.
    let mut seen: HashMap<(u64, u64), std::result::Result<([u8; 32], u64), String>> =
        HashMap::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut damage: Vec<(Vec<u8>, Damage)> = Vec::new();
    let mut batch: Vec<(i64, &[u8])> = Vec::new();
    for f in &files {
        if progress.cancel.load(Ordering::Relaxed) {
            run.message = Some("stopped before the end".into());
            break;
        }
        let (host, name, loc) = &locators[&f.snapshot_id];
        let entry = crate::model::Entry {
            path: f.path.clone(),
            kind: crate::model::Kind::File,
            size: f.size,
            mtime_ns: f.mtime_ns,
            mode: 0,
            uid: 0,
            gid: 0,
            target: None,
        };
        let opened = loc
            .open_io(&entry)
            .and_then(|file| file.first().metadata().map(|md| (file, md)));
        let found = match opened {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Missing,
            Err(e) => Found::Unreadable(e.to_string()),
            Ok((_, md)) if !md.is_file() => Found::Unreadable("not a regular file".into()),
            Ok((file, md)) => {
                let key = (md.dev(), md.ino());
                let got = match seen.get(&key) {
                    Some(r) => r.clone(),
                    None => {
                        let r = hash_open(file, &mut buf).map_err(|e| e.to_string());
                        if let Ok((_, n)) = &r {
                            progress.bytes.fetch_add(*n, Ordering::Relaxed);
                            run.bytes += n;
                        }
                        seen.insert(key, r.clone());
                        r
                    }
                };
                match got {
                    Ok((h, _)) if h == f.hash => Found::Same,
                    Ok((h, _)) => Found::Differs(h),
                    Err(e) => Found::Unreadable(e),
                }
            }
        };
        run.checked += 1;
        progress.done.fetch_add(1, Ordering::Relaxed);
        batch.push((f.snapshot_id, &f.path));
        if batch.len() >= MARK_EVERY {
            catalog.mark_verified(&batch, crate::job::now_ms())?;
            batch.clear();
        }
        if matches!(found, Found::Same) {
            continue;
        }
        if moved_away(storage, &catalog, f.snapshot_id, host, &found)? {
            run.skipped += 1;
            continue;
        }
        let (problem, found_text) = match found {
            Found::Same => unreachable!(),
            Found::Missing => ("missing", "missing".to_string()),
            Found::Differs(h) => ("differs", hex(&h)),
            Found::Unreadable(e) => ("unreadable", e),
        };
        run.damaged += 1;
        damage.push((
            f.path.clone(),
            Damage {
                host: host.clone(),
                snapshot: name.clone(),
                path: format!("/{}", String::from_utf8_lossy(&f.path)),
                problem: problem.into(),
                expected: hex(&f.hash),
                found: found_text,
            },
        ));
    }
    // A disk unplugged or swapped mid-run makes every file look missing: that is no damage.
    if run.damaged > 0 && !Storage::open(storage.root()).is_ok_and(|s| s.id() == storage.id()) {
        return Err(Error::Other(format!(
            "the backup disk at {} went away during verify; nothing recorded as damaged",
            storage.root().display()
        )));
    }
    catalog.mark_verified(&batch, crate::job::now_ms())?;
    run.finished_ms = Some(crate::job::now_ms());
    catalog.finish_verify(&run, &damage)?;
    Ok(Report {
        run,
        damage: damage.into_iter().map(|(_, d)| d).collect(),
        not_hashed,
    })
}

enum Found {
    Same,
    Missing,
    Differs([u8; 32]),
    Unreadable(String),
}

/// Whether a backup or prune running alongside explains what was found: the snapshot is no
/// longer published (being pruned), or a copy-with-history run of its host is moving files.
fn moved_away(
    storage: &Storage,
    catalog: &Catalog,
    snapshot_id: i64,
    host: &str,
    found: &Found,
) -> Result<bool> {
    if !catalog.is_published(snapshot_id)? {
        return Ok(true);
    }
    if matches!(found, Found::Missing)
        && catalog.snapshot_strategy(snapshot_id)?.as_deref() == Some("history")
    {
        // A backup holds the host's lock while it moves files between snapshots.
        return Ok(storage.lock_host(host).is_err());
    }
    Ok(false)
}

/// The published snapshots in `scope`, oldest first per host.
fn select(catalog: &Catalog, scope: &Scope) -> Result<Vec<crate::catalog::SnapshotRow>> {
    match (&scope.host, &scope.snapshot) {
        (Some(h), Some(spec)) => Ok(vec![crate::restore::find_snapshot(catalog, h, spec)?]),
        (None, Some(_)) => Err(Error::Other(
            "a snapshot can only be named together with its host".into(),
        )),
        (host, None) => Ok(catalog
            .snapshots(host.as_deref())?
            .into_iter()
            .filter(|s| s.published)
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_and_round_up() {
        assert_eq!(Sample::parse("5%"), Ok(Sample(5.0)));
        assert_eq!(Sample::parse(" 12.5 % "), Ok(Sample(12.5)));
        assert!(Sample::parse("0%").is_err());
        assert!(Sample::parse("101%").is_err());
        assert!(Sample::parse("five").is_err());
        assert_eq!(Sample(5.0).of(0), 0);
        assert_eq!(Sample(5.0).of(1), 1);
        assert_eq!(Sample(5.0).of(100), 5);
        assert_eq!(Sample(30.0).of(10), 3);
        assert_eq!(Sample(100.0).of(7), 7);
    }
}
