//! One pull of one host: the only place where source, staging folder and catalog meet.
//!
//! list (through an external sort: runs spill to the backup disk) → window by window: merge-join
//! with the previous manifest, link unchanged files, fetch the rest into
//! `<host>/.incomplete-<stamp>/`, symlinks, append the window's manifest rows → folder metadata →
//! catalog → sync → rename → `latest`. Memory is bounded by the window, not by the host's file
//! count. An interrupted run leaves the staging folder; the next run resumes into it.

mod filtered;
pub mod progress;
mod publish;
mod report;
pub mod sorted;
pub mod stage;
pub mod stream_filters;
mod tail;
mod window;

use std::fs;
use std::path::Path;
use std::time::Instant;

use crate::catalog::Catalog;
use crate::config::Host;
use crate::error::{Error, IoContext, Result};
use crate::model::{Entry, FileProblem, Kind, Outcome, Severity};
use crate::source::{Entries, Listing, Source};
use crate::storage::{sync_dir, Storage};
use crate::strategy::Active;
use filtered::{join_prev, Filtered};
pub use progress::{progress_line, Progress, ProgressView};
pub use publish::{find_staging, new_staging_path, staging_dir, staging_folders};
use publish::{point_latest, snapshot_name};
pub use report::Report;
use sorted::Sorter;
use stage::Stage;
use window::Windows;

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
        if outcome.is_err() {
            // The run's half-written manifest goes now rather than at the host's next run; if
            // that fails too (the disk went away), the next run's recover does it.
            if let Err(e) = catalog.recover(&host.name, |name| host_dir.join(name).is_dir()) {
                crate::logging::info(format!(
                    "{}: dropping the failed run's catalog rows: {e}",
                    host.name
                ));
            }
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

/// Entries held in memory at once: while listing (the rest wait in sorted runs on the backup
/// disk), and per window while linking, fetching and recording; at most twice this while the
/// last sorted run and a window overlap. What bounds the box's memory on a large host
/// (~170 B an entry). Each window is a remote command: its start (~80 ms with a heavy login
/// shell) overlaps the window before, but its CPU on the host does not.
/// `SNAPNEST_WINDOW` changes it (tests cross window boundaries with a window of 3).
fn window_len() -> usize {
    std::env::var("SNAPNEST_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(32_768)
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
    let first = first_run(catalog, &host.name);
    if let Some(access) = access.filter(|_| first) {
        report.advice = access.advice(&host.name);
        if let Some(why) = &access.fallback {
            report.advice.push(format!("reading by SFTP because {why}"));
        }
    }

    if first {
        // Everything is fetched: the first tar starts up while the host lists.
        source.get_ready()?;
    }
    progress.checkpoint()?;
    progress.set_phase("listing");
    let window = window_len();
    let roots = host.folder_paths();
    // The listing's sorted runs go to the backup disk, not to the box's RAM or flash.
    let mut listing = Listing {
        entries: Entries::new(Sorter::spilling(host_dir, window), roots.clone()),
        problems: Vec::new(),
    };
    source.list(&host.name, &host.folders, &mut listing)?;
    if !listing.entries.listed_root() {
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
    let sorted = listing.entries.finish()?;

    let preserve_owner = rustix::process::geteuid().is_root();
    let prev = catalog.latest_snapshot(&host.name)?;
    // A previous snapshot stored under other name rules (the disk was measured differently
    // since) shares nothing: its files are found under its own names only, so all is fetched.
    let prev_names = match &prev {
        Some(p) => Some(catalog.snapshot_names(p.id)?),
        None => None,
    };
    let same_names = prev_names
        .as_ref()
        .is_none_or(|n| *n == active.keep().names);
    let base = prev.as_ref().filter(|_| same_names).map(|p| p.id);
    let prev_root = prev.as_ref().map(|p| host_dir.join(&p.name));
    let prev_renamed = match prev.as_ref().filter(|_| same_names) {
        Some(p) => catalog.snapshot_renamed(p.id)?,
        None => Default::default(),
    };
    let (staging, resuming) = active.staging(host_dir, prev_root.as_deref())?;
    let mut stage = Stage {
        root: staging.clone(),
        preserve_owner: preserve_owner && active.findings.owner_kept.ok,
        keep: active.keep().split_at_most(host.split_at),
        renamed: Default::default(),
    };
    let mut filtered = Filtered::new(&sorted, host, &roots)?;

    // Case clashes get names of their own (see store::clash), the same ones as last run. The
    // names of a folder are compared with each other, so on a case-insensitive disk the
    // whole listing is one window.
    let mut whole = None;
    let mut clashes = Default::default();
    if !active.findings.case_sensitive {
        let entries = filtered.by_ref().collect::<Result<Vec<Entry>>>()?;
        let joined = join_prev(catalog, base, &entries, preserve_owner)?;
        let names = &stage.keep.names;
        let assigned = crate::store::clash::assign(&entries, names, &joined.in_prev, &prev_renamed);
        stage.renamed = assigned.renamed;
        clashes = assigned.clashes;
        whole = Some((entries, joined));
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
        match &whole {
            Some((entries, _)) => {
                stage
                    .remove_unlisted(entries)
                    .at(&staging, "cleaning up interrupted run in")?;
            }
            None => {
                // Stored names sort otherwise than paths: a second sort, of the stored names.
                let mut names = Sorter::spilling(host_dir, window);
                for e in Filtered::new(&sorted, host, &roots)? {
                    let e = e?;
                    let path = stage.stored(&e.path).into_owned();
                    names.push(Entry { path, ..e });
                }
                let names = names.finish()?;
                let mut wanted = names
                    .iter()?
                    .map(|e| e.map(|e| (e.path, e.kind == Kind::Dir)));
                stage.remove_unlisted_sorted(&mut wanted)?;
            }
        }
    }

    let snapshot_id = catalog.start_snapshot(&host.name, run_id, now_ms())?;
    progress.start_totals(0, 0);
    let mut windows = Windows {
        active,
        catalog,
        host,
        progress,
        report,
        source: &mut source,
        stage: &stage,
        snapshot_id,
        prev: base.zip(prev_root.as_deref()),
        prev_renamed: &prev_renamed,
        resuming,
        clashes,
        refused: Default::default(),
        renamed_kept: Default::default(),
        hash_buf: vec![0u8; 1 << 16],
        buf: vec![0u8; 1 << 20],
    };
    match whole {
        Some((entries, joined)) => windows.store(entries, joined, false)?,
        None => loop {
            let batch = filtered
                .by_ref()
                .take(window)
                .collect::<Result<Vec<Entry>>>()?;
            if batch.is_empty() {
                break;
            }
            let joined = join_prev(windows.catalog, base, &batch, preserve_owner)?;
            let full = batch.len() == window;
            windows.store(batch, joined, full)?;
        },
    }
    let renamed = std::mem::take(&mut windows.renamed_kept);
    drop(windows);
    drop(source);
    report.stats.excluded = filtered.excluded;
    report.problems.append(&mut filtered.problems);
    drop(filtered);
    drop(sorted);

    progress.checkpoint()?;
    progress.set_phase("finishing");
    // Folders last, deepest first: their times and modes after everything inside them.
    catalog.for_each_dir_rev(snapshot_id, |e| {
        if !e.path.is_empty() {
            stage
                .finish_dir(&e)
                .at(stage.path(&e), "setting folder metadata")?;
        }
        Ok(())
    })?;
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
    catalog.finish_snapshot(
        snapshot_id,
        &name,
        report.outcome,
        &report.stats,
        started.elapsed().as_millis() as i64,
    )?;
    catalog.set_snapshot_strategy(snapshot_id, active.strategy.name())?;
    catalog.set_snapshot_names(snapshot_id, &stage.keep.names)?;
    catalog.set_snapshot_renamed(snapshot_id, &renamed)?;
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
/// The whole-listing reference that `stream_filters::WellFormed` (what the job runs) is
/// tested against.
#[cfg(test)]
fn keep_well_formed(mut entries: Vec<Entry>, problems: &mut Vec<FileProblem>) -> Vec<Entry> {
    let mut dirs: std::collections::HashSet<Vec<u8>> = Default::default();
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
