//! One pull of one host: the only place where source, staging folder and catalog meet.
//!
//! list → merge-join with the previous manifest → link unchanged files, fetch the rest into
//! `<host>/.incomplete-<stamp>/` → symlinks and folder metadata → catalog → sync → rename →
//! `latest`. An interrupted run leaves the staging folder; the next run resumes into it.

pub mod progress;
mod publish;
mod report;
pub mod sorted;
pub mod stage;
pub mod stream_filters;
mod tail;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::Instant;

use crate::catalog::Catalog;
use crate::config::Host;
use crate::error::{Error, IoContext, Result};
use crate::model::{Entry, FileProblem, Kind, Outcome, Severity};
use crate::source::{Fetched, Source, Throttle};
use crate::storage::{sync_dir, Storage};
use crate::strategy::{Active, Strategy};
pub use progress::{progress_line, Progress, ProgressView};
pub use publish::{find_staging, new_staging_path, staging_dir, staging_folders};
use publish::{point_latest, snapshot_name};
pub use report::Report;
use stage::{CopyError, Linked, Stage};

/// A run that failed because the disk went away says so: "No such file or directory" on a
/// staging path would send the user looking at the source.
fn explain_failure(storage: &Storage, e: &Error) -> String {
    if matches!(e, Error::Cancelled) {
        return e.to_string();
    }
    match Storage::open(storage.root()) {
        Ok(now) if now.id() == storage.id() => e.to_string(),
        Ok(_) => format!("the backup disk was swapped during the run ({e})"),
        Err(_) => format!("the backup disk went away during the run ({e})"),
    }
}

/// Back up `host` into `storage` now. Never panics on bad input; failures are in the report.
pub fn backup_host(storage: &Storage, host: &Host, progress: &Progress) -> Report {
    let started = Instant::now();
    let mut report = Report::failed(&host.name, None);
    let result = (|| -> Result<()> {
        let _lock = storage.lock_host(&host.name)?;
        let mut catalog = storage.catalog()?;
        let host_dir = storage.host_dir(&host.name)?;
        // The disk is still the one probed, or it is probed again now.
        let active = Active::load(storage, &catalog, &host.strategy)?;
        if let Some(why) = &active.reprobed {
            crate::logging::info(format!(
                "storage {}: {why}; strategy {}",
                storage.root().display(),
                active.strategy.name()
            ));
        }
        catalog.recover(&host.name, |name| host_dir.join(name).is_dir())?;
        // A crash between rename and `latest` leaves the link one snapshot behind.
        if let Some(newest) = catalog
            .latest_snapshot(&host.name)?
            .filter(|_| active.findings.symlinks.ok)
        {
            if std::fs::read_link(host_dir.join("latest")).ok().as_deref()
                != Some(Path::new(&newest.name))
            {
                point_latest(&host_dir, &newest.name)?;
            }
        }
        let run_id = catalog.begin_run(&host.name, now_ms())?;
        report.run_id = Some(run_id);
        let outcome = run(
            &active,
            &mut catalog,
            run_id,
            &host_dir,
            host,
            progress,
            &mut report,
            started,
        );
        report.duration = started.elapsed();
        if let Err(e) = &outcome {
            report.outcome = Outcome::Failed;
            report.message = Some(explain_failure(storage, e));
        }
        catalog.finish_run(
            run_id,
            report.outcome,
            &report.stats,
            report.message.as_deref(),
            &report.problems,
            now_ms(),
        )?;
        if matches!(outcome, Err(Error::Cancelled)) {
            // Not a failure: no backoff, and the next run resumes.
            report.interrupted = true;
            catalog.mark_interrupted(run_id)?;
        }
        // Where the disk holds a copy of the catalog (FAT32), the run is only on the disk
        // once the copy is: a silent failure would leave a snapshot no catalog lists there.
        catalog.save_copy().map_err(|e| {
            Error::Other(format!(
                "the snapshot is stored, but the catalog copy on the disk was not updated \
                 ({e}); the next command saves it again"
            ))
        })?;
        outcome
    })();
    if let Err(e) = result {
        report.outcome = Outcome::Failed;
        report.message.get_or_insert_with(|| e.to_string());
    }
    report.duration = started.elapsed();
    report
}

/// No snapshot yet: the run whose messages tell the user how to set the host up.
fn first_run(catalog: &Catalog, host: &str) -> bool {
    matches!(catalog.latest_snapshot(host), Ok(None))
}

#[allow(clippy::too_many_arguments)]
fn run(
    active: &Active,
    catalog: &mut Catalog,
    run_id: i64,
    host_dir: &Path,
    host: &Host,
    progress: &Progress,
    report: &mut Report,
    started: Instant,
) -> Result<()> {
    progress.set_phase("connecting");
    let (mut source, access) = Source::open_checked(host)?;
    report.method = source.method();
    if let Some(access) = access.filter(|_| first_run(catalog, &host.name)) {
        report.advice = access.advice(&host.name);
        if let Some(why) = &access.fallback {
            report.advice.push(format!("reading by SFTP because {why}"));
        }
    }

    progress.checkpoint()?;
    progress.set_phase("listing");
    let listing = source.list(&host.name, &host.folders)?;
    let roots = host.folder_paths();
    let listed_a_folder = listing
        .entries
        .iter()
        .any(|e| e.kind == Kind::Dir && roots.contains(&e.path));
    if !listed_a_folder {
        // Not one configured folder could be listed (a share not mounted, the tools failed):
        // never publish a snapshot of nothing.
        let why = listing
            .problems
            .first()
            .map(|p| format!("{}: {}", p.path, p.message));
        report.problems.extend(listing.problems);
        return Err(Error::Listing {
            host: host.name.clone(),
            folder: host.folders.join(", "),
            message: format!(
                "nothing could be listed ({})",
                why.unwrap_or_else(|| "no output".into())
            ),
        });
    }
    report.problems.extend(listing.problems);
    let mut entries = listing.entries;
    // In place: a stable sort allocates a scratch copy of the listing (8 MB of a 28 MB heap
    // peak at 100,000 files, bench/profile.py massif). Equal paths are the same record.
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|a, b| a.path == b.path);
    let entries = keep_well_formed(entries, &mut report.problems);
    let (mut entries, excluded) = host.rules.filter(entries, &host.folder_paths());
    report.stats.excluded = excluded;

    // Merge-join with the previous manifest: both sorted by path bytes.
    let preserve_owner = rustix::process::geteuid().is_root();
    let prev = catalog.latest_snapshot(&host.name)?;
    let mut unchanged = vec![false; entries.len()];
    let mut in_prev = vec![false; entries.len()];
    // A previous snapshot stored under other name rules (the disk was measured differently
    // since) shares nothing: its files are found under its own names only, so all is fetched.
    let prev_names = match &prev {
        Some(p) => Some(catalog.snapshot_names(p.id)?),
        None => None,
    };
    let same_names = prev_names
        .as_ref()
        .is_none_or(|n| *n == active.keep().names);
    if let Some(prev) = prev.as_ref().filter(|_| same_names) {
        let mut i = 0;
        catalog.for_each_entry(prev.id, None, |old, dirty| {
            while i < entries.len() && entries[i].path < old.path {
                i += 1;
            }
            if i < entries.len() && entries[i].path == old.path {
                in_prev[i] = true;
                unchanged[i] =
                    !dirty && old.kind == Kind::File && entries[i].same_as(&old, preserve_owner);
            }
            Ok(())
        })?;
    }
    // Content hashes of the previous snapshot: an unchanged, shared file keeps its hash.
    // One vector for old and new hashes (33 B a file): a file that is fetched after all
    // overwrites the old one, and one that ends up not stored leaves the manifest.
    let mut hashes: Vec<Option<[u8; 32]>> = vec![None; entries.len()];
    if let Some(prev) = &prev {
        let mut i = 0;
        catalog.for_each_hash(prev.id, |path, hash| {
            while i < entries.len() && entries[i].path.as_slice() < path {
                i += 1;
            }
            if i < entries.len() && entries[i].path == path && unchanged[i] {
                hashes[i] = Some(hash);
            }
        })?;
    }
    let prev_root = prev.as_ref().map(|p| host_dir.join(&p.name));

    // Case clashes get names of their own (see store::clash), the same ones as last run.
    let prev_renamed = match prev.as_ref().filter(|_| same_names) {
        Some(p) => catalog.snapshot_renamed(p.id)?,
        None => Default::default(),
    };
    let assigned = match active.findings.case_sensitive {
        true => Default::default(),
        false => {
            let names = active.keep().names;
            crate::store::clash::assign(&entries, &names, &in_prev, &prev_renamed)
        }
    };
    let (staging, resuming) = active.staging(host_dir, prev_root.as_deref())?;
    let stage = Stage {
        root: staging.clone(),
        preserve_owner: preserve_owner && active.findings.owner_kept.ok,
        keep: active.keep().split_at_most(host.split_at),
        renamed: assigned.renamed,
    };
    if !stage.renamed.is_empty() || !prev_renamed.is_empty() {
        // Shared only under one name: the previous snapshot's is looked up as this run's.
        for (i, e) in entries.iter().enumerate() {
            let before = prev_renamed.path(&stage.keep.names, &e.path);
            if unchanged[i] && before != stage.stored(&e.path) {
                unchanged[i] = false;
            }
        }
    }
    // Whatever the strategy is now: the interrupted run may have been a copy-with-history run
    // (the strategy changed, or a re-probe chose another), whose staging folder holds files
    // moved out of the previous snapshot. They go back before anything is cleaned up.
    // give_back moves only what the previous snapshot lacks, so otherwise it does nothing.
    if let (true, Some(prev), Some(root)) = (resuming, &prev, &prev_root) {
        let names = prev_names.as_ref().expect("recorded with prev");
        let renamed = &prev_renamed;
        crate::strategy::history::give_back(catalog, prev.id, &stage, root, names, renamed)?;
    }
    if resuming {
        stage
            .remove_unlisted(&entries)
            .at(&staging, "cleaning up interrupted run in")?;
    }

    progress.set_phase("linking");
    let mut to_fetch: Vec<usize> = Vec::new();
    let mut stored = vec![true; entries.len()];
    let stats = &mut report.stats;
    // Folders whose name this disk refuses: they and everything in them are left out.
    let mut refused: HashSet<&[u8]> = HashSet::new();
    // Files already on the disk whose hash is not known yet (resumed, or linked from a
    // snapshot made before hashes): read once, through one buffer for the whole run.
    let mut hash_buf = vec![0u8; 1 << 16];
    let mut hash_stored = |p: &Path| {
        crate::verify::hash::hash_file(p, &mut hash_buf)
            .ok()
            .map(|(h, _)| h)
    };
    for (i, e) in entries.iter().enumerate() {
        if i % 4096 == 0 {
            progress.checkpoint()?;
        }
        if crate::config::rules::parent(&e.path).is_some_and(|p| refused.contains(p)) {
            stored[i] = false;
            if e.kind == Kind::Dir {
                refused.insert(&e.path);
            }
            continue;
        }
        if let Some(other) = assigned.clashes.get(&i) {
            // Storing it would overwrite the other file on this case-insensitive disk.
            report.problems.push(problem(
                e,
                "writing",
                format!(
                    "not stored: this disk does not tell its name from {other} (case-insensitive)"
                ),
                Severity::Error,
            ));
            stored[i] = false;
            if e.kind == Kind::Dir {
                refused.insert(&e.path);
            }
            continue;
        }
        match e.kind {
            Kind::Dir => match stage.dir(e) {
                Ok(()) => {}
                Err(err) if name_not_storable(&err) => {
                    report.problems.push(problem(
                        e,
                        "writing",
                        format!("folder cannot be stored on this disk, left out with its contents: {err}"),
                        Severity::Error,
                    ));
                    stored[i] = false;
                    refused.insert(&e.path);
                }
                Err(err) => return Err(Error::io(stage.path(e), "creating folder", err)),
            },
            Kind::File => {
                // A btrfs staging snapshot holds the previous copies: only unchanged ones count.
                let trusted = active.strategy != Strategy::Btrfs || unchanged[i];
                if resuming && trusted && stage.complete(e) {
                    stats.resumed += 1;
                    // Written by the interrupted run: read it once to learn its hash.
                    if hashes[i].is_none() {
                        hashes[i] = hash_stored(&stage.path(e));
                    }
                    continue;
                }
                let linked = match (&prev_root, unchanged[i]) {
                    (Some(root), true) => {
                        active.share(&stage, root, e).at(stage.path(e), "linking")?
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

    let mut dirty = vec![false; entries.len()];
    // Large files that grew at their end: only the new part crosses the wire (tail.rs).
    if let (Some(prev), Some(root), true) = (&prev, &prev_root, same_names) {
        let mut throttle = Throttle::new(host.bwlimit);
        let appended = tail::fetch_appended(
            &mut source,
            catalog,
            prev.id,
            root,
            &stage,
            &entries,
            &mut to_fetch,
            &mut throttle,
            progress,
            &mut report.problems,
        )?;
        for a in appended {
            hashes[a.index] = Some(a.hash);
            dirty[a.index] = a.changed;
            entries[a.index].size = a.size;
            report.stats.new_files += 1;
            report.stats.new_bytes += a.fetched;
        }
    }

    progress.set_phase("fetching");
    progress.start_totals(
        to_fetch.len() as u64,
        to_fetch.iter().map(|&i| entries[i].size).sum(),
    );
    let mut fetched_size: Vec<Option<u64>> = vec![None; to_fetch.len()];
    {
        let refs: Vec<&Entry> = to_fetch.iter().map(|&i| &entries[i]).collect();
        let mut throttle = Throttle::new(host.bwlimit);
        let mut buf = vec![0u8; 1 << 20];
        let problems = &mut report.problems;
        let local = matches!(source, Source::Local(_));
        let hashes = &mut hashes;
        let mut sink = |k: usize, event: Fetched<'_>| -> Result<()> {
            let i = to_fetch[k];
            let e = &entries[i];
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
                    let shown = match stage.write(e, &mut reader, &mut buf, &mut on_chunk) {
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
                        stage
                            .mark_unfinished(e)
                            .map_err(|err| Error::io(stage.path(e), "writing", err))?;
                        problems.push(problem(
                            e,
                            "reading",
                            "changed while being read (size differs from the listing)".into(),
                            Severity::Warning,
                        ));
                    }
                    fetched_size[k] = Some(shown);
                    progress
                        .files_done
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Fetched::Changed { message } => {
                    dirty[i] = true;
                    stage
                        .mark_unfinished(e)
                        .map_err(|err| Error::io(stage.path(e), "writing", err))?;
                    problems.push(problem(
                        e,
                        "reading",
                        format!("changed while being read: {message}"),
                        Severity::Warning,
                    ));
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
        source.fetch(&refs, &mut throttle, &mut sink)?;
    }
    for (k, &i) in to_fetch.iter().enumerate() {
        match fetched_size[k] {
            Some(n) => {
                report.stats.new_files += 1;
                report.stats.new_bytes += n;
                entries[i].size = n;
            }
            None => stored[i] = false,
        }
    }
    drop(source);
    // Per-file state that the rest of the run does not need goes before the manifest is
    // built: the high-water mark is what the box pays.
    drop((to_fetch, fetched_size, unchanged));

    progress.checkpoint()?;
    progress.set_phase("finishing");
    // Content that changed while read was kept out of resume's "complete" test until now.
    for (i, e) in entries.iter().enumerate() {
        if dirty[i] && stored[i] && e.kind == Kind::File {
            stage
                .finish_file_time(e)
                .at(stage.path(e), "setting file time")?;
        }
    }
    for (i, e) in entries.iter().enumerate() {
        if e.kind == Kind::Symlink && stored[i] {
            if let Err(err) = stage.symlink(e) {
                if name_not_storable(&err) {
                    report.problems.push(problem(
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
    for (_, e) in entries
        .iter()
        .enumerate()
        .rev()
        .filter(|(i, e)| e.kind == Kind::Dir && !e.path.is_empty() && stored[*i])
    {
        stage
            .finish_dir(e)
            .at(stage.path(e), "setting folder metadata")?;
    }

    // The manifest says what is in the snapshot: stored entries, with fetched sizes.
    // Filtered in place, as the listing is the largest thing in memory.
    // Its dirty flags and hashes are compacted the same way, in place too.
    let mut manifest = entries;
    let (mut i, mut kept) = (0, 0);
    manifest.retain(|e| {
        let keep = stored[i] || e.kind.is_special();
        if keep {
            let stats = &mut report.stats;
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
    drop(stored);
    dirty.truncate(kept);
    hashes.truncate(kept);
    let manifest_dirty = dirty;
    report.stats.warnings = report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .count() as u64;
    report.stats.errors = report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count() as u64;
    report.outcome = if report.stats.errors > 0 {
        Outcome::Partial
    } else {
        Outcome::Good
    };

    progress.set_phase("publishing");
    let name = snapshot_name(host_dir);
    let snapshot_id = catalog.add_snapshot(
        &host.name,
        &name,
        run_id,
        report.outcome,
        &report.stats,
        now_ms(),
        started.elapsed().as_millis() as i64,
        &manifest,
        &manifest_dirty,
    )?;
    catalog.set_snapshot_strategy(snapshot_id, active.strategy.name())?;
    catalog.set_snapshot_names(snapshot_id, &stage.keep.names)?;
    let mut renamed = stage.renamed.clone();
    renamed.retain(|p| {
        manifest
            .binary_search_by(|e| e.path.as_slice().cmp(p))
            .is_ok()
    });
    catalog.set_snapshot_renamed(snapshot_id, &renamed)?;
    catalog.set_hashes(
        snapshot_id,
        manifest
            .iter()
            .zip(&hashes)
            .filter_map(|(e, h)| Some((e.path.as_slice(), h.as_ref()?))),
    )?;
    // Everything written so far reaches the disk before the snapshot gets its name.
    let dir = fs::File::open(&staging).at(&staging, "opening")?;
    rustix::fs::syncfs(&dir).map_err(|e| Error::io(&staging, "syncing", e.into()))?;
    let final_path = host_dir.join(&name);
    active.publish_folder(&staging, &final_path)?;
    sync_dir(host_dir)?;
    active.published(&final_path)?;
    if active.findings.symlinks.ok {
        point_latest(host_dir, &name)?;
    }
    catalog.publish(snapshot_id)?;
    report.snapshot = Some(name);
    Ok(())
}

/// Drop entries whose parent is not a folder of the listing: a well-behaved host never sends
/// them, and storing them could mean writing through a symlink.
/// In place: the listing is the largest thing in memory.
fn keep_well_formed(mut entries: Vec<Entry>, problems: &mut Vec<FileProblem>) -> Vec<Entry> {
    let mut dirs: HashSet<Vec<u8>> = HashSet::new();
    entries.retain(|e| {
        let ok = match crate::config::rules::parent(&e.path) {
            // The snapshot root itself can only be a folder.
            None if e.path.is_empty() => e.kind == Kind::Dir,
            None => true,
            Some(p) => dirs.contains(p),
        };
        if !ok {
            problems.push(problem(
                e,
                "listing",
                "refused: its parent is not a listed folder".into(),
                Severity::Error,
            ));
            return false;
        }
        if e.kind == Kind::Dir {
            dirs.insert(e.path.clone());
        }
        true
    });
    entries
}

fn problem(e: &Entry, action: &'static str, message: String, severity: Severity) -> FileProblem {
    FileProblem {
        path: e.display_path(),
        action,
        message,
        severity,
    }
}

/// Errors that concern one name rather than the disk (too long, characters refused).
fn name_not_storable(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENAMETOOLONG) | Some(libc::EILSEQ) | Some(libc::EINVAL)
    )
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
