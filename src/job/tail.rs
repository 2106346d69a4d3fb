//! Large files that grew at their end (logs, mailboxes, VM images appended to): when the
//! previous snapshot's copy equals the host's first bytes — sha256 computed on both sides,
//! the host's by `head -c N | sha256sum` — the new file is that copy (reflinked where the disk
//! can, else copied: never hard-linked, it is about to change) plus the fetched tail.
//! Anything else (old part rewritten, tools missing, command refused) is fetched whole.

use std::fs::{FileTimes, OpenOptions, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::Digest;

use super::progress::Progress;
use super::stage::{self, Stage};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model::{Entry, FileProblem, Kind, Severity};
use crate::source::tail::{After, Grown, TailEvent};
use crate::source::{Source, Throttle};

/// Below this old size the tar stream's fixed cost per file is smaller than a round trip.
pub const MIN_OLD_SIZE: u64 = 1 << 20;

/// A file whose new content is the old copy plus the fetched tail.
pub struct Appended {
    pub index: usize,
    /// BLAKE3 of the whole new content, as verify reads it back.
    pub hash: [u8; 32],
    /// Bytes in the snapshot's file, and of those, fetched.
    pub size: u64,
    pub fetched: u64,
    /// Changed while being read: kept, flagged like other source changes.
    pub changed: bool,
}

/// What was learned reading the old copy.
struct Candidate {
    index: usize,
    old: u64,
    blake: blake3::Hasher,
}

/// Fetch the grown files of `to_fetch` by their tails where the old part is unchanged, and
/// take them out of `to_fetch`. `prev_root` is the previous snapshot (same name rules).
#[allow(clippy::too_many_arguments)]
pub fn fetch_appended(
    source: &mut Source,
    catalog: &Catalog,
    prev_id: i64,
    prev_root: &Path,
    stage: &Stage,
    entries: &[Entry],
    to_fetch: &mut Vec<usize>,
    throttle: &mut Throttle,
    progress: &Progress,
    problems: &mut Vec<FileProblem>,
) -> Result<Vec<Appended>> {
    if matches!(source, Source::Local(_)) {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; 1 << 20];
    // Grown files whose stored copy is there: (index, old size, stored path).
    let mut grown = Vec::new();
    for &i in to_fetch.iter() {
        let e = &entries[i];
        if e.kind != Kind::File || e.size <= MIN_OLD_SIZE {
            continue;
        }
        let Some(old) = previous(catalog, prev_id, e)? else {
            continue;
        };
        let from = prev_root.join(std::ffi::OsStr::from_bytes(&stage.stored(&e.path)));
        if std::fs::symlink_metadata(&from).is_ok_and(|m| m.is_file() && m.len() == old) {
            grown.push((i, old, from));
        }
    }
    if grown.is_empty() {
        return Ok(Vec::new());
    }
    progress.checkpoint()?;
    let asked: Vec<Grown<'_>> = grown
        .iter()
        .map(|(i, old, _)| (&entries[*i], *old))
        .collect();
    // The stored copies are read whole while the host reads its files: a disk read, not
    // the wire.
    let mut candidates = Vec::new();
    let mut ours = Vec::new();
    let theirs = source.prefix_hashes(&asked, &mut || {
        for (i, old, from) in &grown {
            if let Ok((sha, blake)) = hash_old(from, *old, &mut buf) {
                candidates.push(Candidate {
                    index: *i,
                    old: *old,
                    blake,
                });
                ours.push(sha);
            }
        }
    });
    // Only the copies that could be read are candidates: line theirs up with them.
    let by_index: std::collections::HashMap<usize, usize> = grown
        .iter()
        .enumerate()
        .map(|(k, (i, _, _))| (*i, k))
        .collect();
    let theirs: Vec<Option<[u8; 32]>> = candidates
        .iter()
        .map(|c| theirs[by_index[&c.index]])
        .collect();
    let (same, _): (Vec<_>, Vec<_>) = candidates
        .into_iter()
        .zip(ours.iter().zip(&theirs))
        .partition(|(_, (o, t))| t.as_ref() == Some(*o));
    let mut same: Vec<Candidate> = same.into_iter().map(|(c, _)| c).collect();
    if same.is_empty() {
        return Ok(Vec::new());
    }

    // Each new file starts as the old copy; it has no mtime yet, so a crash leaves it out
    // of resume's "complete" test and it is fetched again.
    let mut ready = Vec::new();
    for c in same.drain(..) {
        let e = &entries[c.index];
        let from = prev_root.join(std::ffi::OsStr::from_bytes(&stage.stored(&e.path)));
        match start_from_old(stage, &from, e, c.old) {
            Ok(file) => ready.push((c, file)),
            Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => {
                return Err(Error::io(stage.path(e), "writing", err))
            }
            Err(_) => {}
        }
    }
    let asked: Vec<Grown<'_>> = ready
        .iter()
        .map(|(c, _)| (&entries[c.index], c.old))
        .collect();
    progress.set_phase("fetching");
    progress.start_totals(
        asked.len() as u64,
        asked.iter().map(|(e, old)| e.size - old).sum(),
    );
    let mut results: Vec<Option<Appended>> = (0..ready.len()).map(|_| None).collect();
    let mut failed = vec![false; ready.len()];
    {
        let mut sink = |k: usize, event: TailEvent<'_>| -> Result<()> {
            let (c, file) = &mut ready[k];
            let e = &entries[c.index];
            progress.checkpoint()?;
            match event {
                TailEvent::Body(reader) => {
                    progress.set_current(&e.display_path());
                    let mut written = 0u64;
                    loop {
                        let n = match reader.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                            Err(err) => {
                                return Err(Error::Other(format!(
                                    "the connection stopped while reading {} ({err}); the next run resumes where this one stopped",
                                    e.display_path()
                                )))
                            }
                        };
                        match file.write_all(&buf[..n]) {
                            Ok(()) => {}
                            // A full or failing disk stops the run, as for any file.
                            Err(err)
                                if matches!(
                                    err.raw_os_error(),
                                    Some(libc::ENOSPC) | Some(libc::EIO) | Some(libc::EROFS)
                                ) =>
                            {
                                return Err(Error::io(stage.path(e), "writing", err))
                            }
                            // Anything else (a file-size limit): this file is fetched whole,
                            // by the path that knows how to store it.
                            Err(_) => {
                                failed[k] = true;
                                return Ok(());
                            }
                        }
                        c.blake.update(&buf[..n]);
                        written += n as u64;
                        progress
                            .bytes_done
                            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    results[k] = Some(Appended {
                        index: c.index,
                        hash: [0; 32],
                        size: c.old + written,
                        fetched: written,
                        changed: false,
                    });
                }
                TailEvent::End(after) => {
                    let Some(done) = results[k].as_mut() else {
                        return Ok(());
                    };
                    match judge(e, after) {
                        Judged::Same => {}
                        Judged::Changed => done.changed = true,
                        Judged::Refetch => failed[k] = true,
                    }
                    done.hash = *c.blake.finalize().as_bytes();
                    progress
                        .files_done
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                TailEvent::Failed(_) => failed[k] = true,
            }
            Ok(())
        };
        source.fetch_tails(&asked, throttle, &mut sink)?;
    }
    let mut out = Vec::new();
    for (k, (c, file)) in ready.into_iter().enumerate() {
        let e = &entries[c.index];
        let done = results[k].take().filter(|_| !failed[k]);
        let Some(done) = done else {
            // Fetched whole below, with the tar stream's own checks and messages.
            drop(file);
            stage::remove(&stage.path(e))
                .map_err(|err| Error::io(stage.path(e), "removing", err))?;
            continue;
        };
        finish(stage, &file, e, done.changed)
            .map_err(|err| Error::io(stage.path(e), "writing", err))?;
        if done.changed {
            problems.push(FileProblem {
                path: e.display_path(),
                action: "reading",
                message: "changed while being read (size or time differs from the listing)".into(),
                severity: Severity::Warning,
            });
        }
        out.push(done);
    }
    let taken: std::collections::HashSet<usize> = out.iter().map(|d| d.index).collect();
    to_fetch.retain(|i| !taken.contains(i));
    Ok(out)
}

/// The previous snapshot's size of `e` when `e` may have grown from it: a clean regular file
/// of at least `MIN_OLD_SIZE`, smaller than now.
fn previous(catalog: &Catalog, prev_id: i64, e: &Entry) -> Result<Option<u64>> {
    let mut old = None;
    catalog.for_each_entry(prev_id, Some(&e.path), |o, dirty| {
        if o.path == e.path && o.kind == Kind::File && !dirty {
            old = Some(o.size);
        }
        Ok(())
    })?;
    Ok(old.filter(|&n| n >= MIN_OLD_SIZE && n < e.size))
}

/// sha256 (to compare with the host) and BLAKE3 (to go on over the tail) of the stored copy,
/// which must be exactly `old` bytes long.
fn hash_old(path: &Path, old: u64, buf: &mut [u8]) -> io::Result<([u8; 32], blake3::Hasher)> {
    let f = stage::open_nofollow(path)?;
    let md = f.metadata()?;
    if !md.is_file() || md.len() != old {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let mut sha = sha2::Sha256::new();
    let mut blake = blake3::Hasher::new();
    let seen = crate::verify::hash::each_chunk(f, buf, |chunk| {
        sha.update(chunk);
        blake.update(chunk);
    })?;
    if seen != old {
        return Err(io::ErrorKind::InvalidData.into());
    }
    Ok((sha.finalize().into(), blake))
}

/// A new inode in the staging folder holding the old copy, positioned at its end. Reflinked
/// where the disk can (shares the blocks), else copied (`copy_file_range`).
fn start_from_old(stage: &Stage, from: &Path, e: &Entry, old: u64) -> io::Result<std::fs::File> {
    let mut src = stage::open_nofollow(from)?;
    let p = stage.path(e);
    stage::remove(&p)?;
    let mut dst = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&p)?;
    if crate::dest::btrfs::clone_file(&src, &dst).is_err() {
        dst.set_len(0)?;
        io::copy(&mut (&mut src).take(old), &mut dst)?;
    }
    if dst.metadata()?.len() != old {
        drop(dst);
        stage::remove(&p)?;
        return Err(io::ErrorKind::InvalidData.into());
    }
    dst.seek(io::SeekFrom::Start(old))?;
    Ok(dst)
}

enum Judged {
    Same,
    /// Grew or was touched while read: kept and flagged, like the tar stream's "changed".
    Changed,
    /// Shrank, another owner, or the host could not say: fetched whole instead.
    Refetch,
}

fn judge(e: &Entry, after: Option<After>) -> Judged {
    let Some(a) = after else {
        return Judged::Refetch;
    };
    if a.owner.is_some_and(|o| o != (e.uid, e.gid)) || a.size < e.size {
        return Judged::Refetch;
    }
    if a.size != e.size || a.mtime_s != e.mtime_ns.div_euclid(1_000_000_000) {
        return Judged::Changed;
    }
    Judged::Same
}

/// Owner, mode, and the mtime last: the mark of a finished file (0 while not trusted).
fn finish(stage: &Stage, file: &std::fs::File, e: &Entry, changed: bool) -> io::Result<()> {
    if stage.preserve_owner {
        std::os::unix::fs::fchown(file, Some(e.uid), Some(e.gid))?;
    }
    if stage.keep.mode {
        file.set_permissions(Permissions::from_mode(e.mode))?;
    }
    let t = stage::system_time(if changed { 0 } else { e.mtime_ns });
    file.set_times(FileTimes::new().set_modified(t).set_accessed(t))
}
