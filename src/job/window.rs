//! One window of the sorted listing: link what is unchanged, fetch the rest, make the
//! symlinks, and append the window's manifest rows. Only the window is in memory; what
//! crosses windows (refused folders, counters, problems) is small.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::catalog::Catalog;
use crate::config::Host;
use crate::error::{Error, IoContext, Result};
use crate::model::{Entry, FileProblem, Kind, Severity};
use crate::source::{Fetched, Source, Throttle};
use crate::strategy::{Active, Strategy};

use super::filtered::Joined;
use super::report::Report;
use super::stage::{self, CopyError, Linked, Stage};
use super::{name_not_storable, problem, tail, Progress};

/// What every window of one run shares.
pub struct Windows<'a> {
    pub active: &'a Active,
    pub catalog: &'a mut Catalog,
    pub host: &'a Host,
    pub progress: &'a Progress,
    pub report: &'a mut Report,
    pub source: &'a mut Source,
    pub stage: &'a Stage,
    /// The snapshot being written (`Catalog::start_snapshot`).
    pub snapshot_id: i64,
    /// The previous snapshot, where its files can be shared (same name rules).
    pub prev: Option<(i64, &'a Path)>,
    pub prev_renamed: &'a crate::store::clash::Renamed,
    pub resuming: bool,
    /// Entries (by index in the only window) that this case-insensitive disk cannot hold.
    pub clashes: HashMap<usize, String>,
    /// Folders whose name this disk refuses: they and everything in them are left out.
    pub refused: HashSet<Vec<u8>>,
    /// Renamed entries that made it into the manifest.
    pub renamed_kept: crate::store::clash::Renamed,
    /// Files already on the disk whose hash is not known yet (resumed, or linked from a
    /// snapshot made before hashes) are read once, through this buffer.
    pub hash_buf: Vec<u8>,
    pub buf: Vec<u8>,
}

impl Windows<'_> {
    /// Store one window (sorted, after every window before it) and record it. `more`: other
    /// windows are likely to follow.
    pub fn store(&mut self, mut entries: Vec<Entry>, joined: Joined, more: bool) -> Result<()> {
        let Joined {
            mut unchanged,
            in_prev: _,
            mut hashes,
        } = joined;
        let (active, stage, progress) = (self.active, self.stage, self.progress);
        if !stage.renamed.is_empty() || !self.prev_renamed.is_empty() {
            // Shared only under one name: the previous snapshot's is looked up as this run's.
            for (i, e) in entries.iter().enumerate() {
                let before = self.prev_renamed.path(&stage.keep.names, &e.path);
                if unchanged[i] && before != stage.stored(&e.path) {
                    unchanged[i] = false;
                }
            }
        }

        progress.set_phase("linking");
        let mut to_fetch: Vec<usize> = Vec::new();
        let mut stored = vec![true; entries.len()];
        let stats = &mut self.report.stats;
        let problems = &mut self.report.problems;
        let hash_buf = &mut self.hash_buf;
        let mut hash_stored = |p: &Path| {
            crate::verify::hash::hash_file(p, hash_buf)
                .ok()
                .map(|(h, _)| h)
        };
        for (i, e) in entries.iter().enumerate() {
            if i % 4096 == 0 {
                progress.checkpoint()?;
            }
            if crate::config::rules::parent(&e.path).is_some_and(|p| self.refused.contains(p)) {
                stored[i] = false;
                if e.kind == Kind::Dir {
                    self.refused.insert(e.path.clone());
                }
                continue;
            }
            if let Some(other) = self.clashes.get(&i) {
                // Storing it would overwrite the other file on this case-insensitive disk.
                problems.push(problem(
                    e,
                    "writing",
                    format!(
                        "not stored: this disk does not tell its name from {other} (case-insensitive)"
                    ),
                    Severity::Error,
                ));
                stored[i] = false;
                if e.kind == Kind::Dir {
                    self.refused.insert(e.path.clone());
                }
                continue;
            }
            match e.kind {
                Kind::Dir => match stage.dir(e) {
                    Ok(()) => {}
                    Err(err) if name_not_storable(&err) => {
                        problems.push(problem(
                            e,
                            "writing",
                            format!("folder cannot be stored on this disk, left out with its contents: {err}"),
                            Severity::Error,
                        ));
                        stored[i] = false;
                        self.refused.insert(e.path.clone());
                    }
                    Err(err) => return Err(Error::io(stage.path(e), "creating folder", err)),
                },
                Kind::File => {
                    // A btrfs staging snapshot holds the previous copies: only unchanged ones count.
                    let trusted = active.strategy != Strategy::Btrfs || unchanged[i];
                    if self.resuming && trusted && stage.complete(e) {
                        stats.resumed += 1;
                        // Written by the interrupted run: read it once to learn its hash.
                        if hashes[i].is_none() {
                            hashes[i] = hash_stored(&stage.path(e));
                        }
                        continue;
                    }
                    let linked = match (self.prev, unchanged[i]) {
                        (Some((_, root)), true) => {
                            active.share(stage, root, e).at(stage.path(e), "linking")?
                        }
                        _ => Linked::No,
                    };
                    match linked {
                        Linked::Yes | Linked::Copied => {
                            stats.linked += 1;
                            // Unhashed only when the previous snapshot predates hashes: read it
                            // once, so every snapshot from now on is hashed.
                            if hashes[i].is_none() {
                                hashes[i] = hash_stored(&stage.path(e));
                            }
                        }
                        Linked::No => to_fetch.push(i),
                    }
                }
                Kind::Symlink => {}
                _ => {
                    stats.skipped_special += 1;
                    stored[i] = false;
                }
            }
        }
        drop(unchanged);

        let mut dirty = vec![false; entries.len()];
        // Large files that grew at their end: only the new part crosses the wire (tail.rs).
        if let Some((prev_id, root)) = self.prev {
            let mut throttle = Throttle::new(self.host.bwlimit);
            let appended = tail::fetch_appended(
                self.source,
                self.catalog,
                prev_id,
                root,
                stage,
                &entries,
                &mut to_fetch,
                &mut throttle,
                progress,
                &mut self.report.problems,
            )?;
            for a in appended {
                hashes[a.index] = Some(a.hash);
                dirty[a.index] = a.changed;
                entries[a.index].size = a.size;
                self.report.stats.new_files += 1;
                self.report.stats.new_bytes += a.fetched;
            }
        }

        self.source.expect_more(more);
        self.fetch(
            &mut entries,
            &to_fetch,
            &mut stored,
            &mut dirty,
            &mut hashes,
        )?;
        drop(to_fetch);

        progress.checkpoint()?;
        // Content that changed while read was kept out of resume's "complete" test until now.
        for (i, e) in entries.iter().enumerate() {
            if dirty[i] && stored[i] && e.kind == Kind::File {
                stage
                    .finish_file_time(e)
                    .at(stage.path(e), "setting file time")?;
            }
        }
        // Every entry of the listing is a real folder, file or symlink by now, and no entry is
        // below a symlink (well formed): later windows cannot write through these.
        for (i, e) in entries.iter().enumerate() {
            if e.kind == Kind::Symlink && stored[i] {
                if let Err(err) = stage.symlink(e) {
                    if name_not_storable(&err) {
                        self.report.problems.push(problem(
                            e,
                            "writing",
                            format!("symlink cannot be stored on this disk: {err}"),
                            Severity::Error,
                        ));
                        stored[i] = false;
                    } else {
                        return Err(Error::io(stage.path(e), "creating symlink", err));
                    }
                }
            }
        }
        self.record(entries, &stored, dirty, hashes)
    }

    /// Fetch `to_fetch` (indices into `entries`); files that could not be stored get
    /// `stored` false, fetched ones their fetched size and hash.
    fn fetch(
        &mut self,
        entries: &mut [Entry],
        to_fetch: &[usize],
        stored: &mut [bool],
        dirty: &mut [bool],
        hashes: &mut [Option<[u8; 32]>],
    ) -> Result<()> {
        let (stage, progress) = (self.stage, self.progress);
        progress.set_phase("fetching");
        // Totals grow window by window: the listing is not counted ahead of the work.
        progress.add_totals(
            to_fetch.len() as u64,
            to_fetch.iter().map(|&i| entries[i].size).sum(),
        );
        let mut fetched_size: Vec<Option<u64>> = vec![None; to_fetch.len()];
        {
            let refs: Vec<&Entry> = to_fetch.iter().map(|&i| &entries[i]).collect();
            let mut throttle = Throttle::new(self.host.bwlimit);
            let buf = &mut self.buf;
            let problems = &mut self.report.problems;
            let local = matches!(self.source, Source::Local(_));
            // Kept out of resume's "complete" test, and reported: the next run fetches it again.
            let changed = |e: &Entry, message: String, problems: &mut Vec<FileProblem>| {
                stage
                    .mark_unfinished(e)
                    .map_err(|err| Error::io(stage.path(e), "writing", err))?;
                problems.push(problem(e, "reading", message, Severity::Warning));
                Result::Ok(())
            };
            let mut sink = |k: usize, event: Fetched<'_>| -> Result<()> {
                let i = to_fetch[k];
                let e = refs[k];
                progress.checkpoint()?;
                match event {
                    Fetched::Content {
                        owner: Some(owner), ..
                    } if owner != (e.uid, e.gid) => {
                        // Another owner than listed: the name now leads somewhere else (a folder
                        // swapped for a symlink). Storing it could expose someone else's file.
                        problems.push(problem(
                            e,
                            "reading",
                            format!(
                                "owner changed from {}:{} to {}:{} between listing and reading; skipped, the next run fetches it",
                                e.uid, e.gid, owner.0, owner.1
                            ),
                            Severity::Warning,
                        ));
                        stage::remove(&stage.path(e))
                            .map_err(|err| Error::io(stage.path(e), "removing", err))?;
                    }
                    Fetched::Content { reader, size, .. } => {
                        progress.set_current(&e.display_path());
                        let mut on_chunk = |n| {
                            progress
                                .bytes_done
                                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                        };
                        // Hashed as written: what verify later expects to read back.
                        let mut reader = crate::verify::hash::HashingReader::new(reader);
                        let shown = match stage.write(e, &mut reader, buf, &mut on_chunk) {
                            Ok(n) => {
                                hashes[i] = Some(reader.finish());
                                n
                            }
                            Err(CopyError::Read(err)) if local => {
                                // A bad sector or an I/O error on a share: this file, not the run.
                                problems.push(problem(e, "reading", err.to_string(), Severity::Error));
                                fetched_size[k] = None;
                                stage::remove(&stage.path(e)).map_err(|err| Error::io(stage.path(e), "removing", err))?;
                                return Ok(());
                            }
                            Err(CopyError::Read(err)) => {
                                return Err(Error::Other(format!(
                                    "the connection stopped while reading {} ({err}); the next run resumes where this one stopped",
                                    e.display_path()
                                )))
                            }
                            Err(CopyError::Write(err)) if name_not_storable(&err) => {
                                problems.push(problem(
                                    e,
                                    "writing",
                                    format!("cannot be stored on this disk: {err}"),
                                    Severity::Error,
                                ));
                                return Ok(());
                            }
                            Err(CopyError::Write(err)) => {
                                return Err(Error::io(stage.path(e), "writing", err))
                            }
                        };
                        if shown != e.size || size != e.size {
                            dirty[i] = true;
                            let why = "changed while being read (size differs from the listing)";
                            changed(e, why.into(), problems)?;
                        }
                        fetched_size[k] = Some(shown);
                        progress
                            .files_done
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Fetched::Changed { message } => {
                        dirty[i] = true;
                        changed(e, format!("changed while being read: {message}"), problems)?;
                    }
                    Fetched::Failed(p) => {
                        problems.push(p);
                        // Whatever reached the staging folder for it is not the file.
                        fetched_size[k] = None;
                        stage::remove(&stage.path(e))
                            .map_err(|err| Error::io(stage.path(e), "removing", err))?;
                    }
                }
                Ok(())
            };
            if !refs.is_empty() {
                self.source.fetch(&refs, &mut throttle, &mut sink)?;
            }
        }
        for (k, &i) in to_fetch.iter().enumerate() {
            match fetched_size[k] {
                Some(n) => {
                    self.report.stats.new_files += 1;
                    self.report.stats.new_bytes += n;
                    entries[i].size = n;
                }
                None => stored[i] = false,
            }
        }
        Ok(())
    }

    /// Append the window's manifest rows: stored entries (with fetched sizes) and the
    /// special files, which are recorded but not stored.
    fn record(
        &mut self,
        mut entries: Vec<Entry>,
        stored: &[bool],
        mut dirty: Vec<bool>,
        mut hashes: Vec<Option<[u8; 32]>>,
    ) -> Result<()> {
        let (mut i, mut kept) = (0, 0);
        let stats = &mut self.report.stats;
        entries.retain(|e| {
            let keep = stored[i] || e.kind.is_special();
            if keep {
                if !e.kind.is_special() {
                    stats.entries += 1;
                }
                if e.kind == Kind::File {
                    stats.files += 1;
                    stats.bytes += e.size;
                }
                dirty[kept] = dirty[i];
                hashes[kept] = hashes[i].filter(|_| e.kind == Kind::File);
                kept += 1;
            }
            i += 1;
            keep
        });
        dirty.truncate(kept);
        hashes.truncate(kept);
        for (path, stored_as) in self.stage.renamed.iter() {
            if entries
                .binary_search_by(|e| e.path.as_slice().cmp(path))
                .is_ok()
            {
                self.renamed_kept.insert(path.to_vec(), stored_as.to_vec());
            }
        }
        self.catalog
            .append_entries(self.snapshot_id, &entries, &dirty, &hashes)
    }
}
