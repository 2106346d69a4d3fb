//! `snapnest probe DIR [--json]` and what `init` and `list` say about the destination.

use std::path::Path;

use crate::dest::probe::{self, Findings};
use crate::storage::{InitOutcome, Storage};
use crate::strategy::{self, Choice, Wanted};

/// `image_size` is the config's, when it names strategy = "image".
pub fn probe_command(
    dir: &Path,
    wanted: &Wanted,
    image_size: Option<u64>,
    json: bool,
) -> anyhow::Result<i32> {
    let findings = probe::probe(dir)?;
    let choice = match image_size {
        // The share holds the image: whether one fits here, not what is inside it.
        Some(size) => super::image::probe_line(&findings, size)
            .map(|why| Choice {
                strategy: strategy::Strategy::Image,
                reasons: vec![why],
            })
            .map_err(|why| {
                crate::error::Error::Other(format!(
                    "strategy \"image\" cannot work on {} ({}): {why}",
                    dir.display(),
                    findings.filesystem
                ))
            }),
        None => strategy::choose(&findings, wanted),
    };
    if json {
        let mut v = serde_json::to_value(&findings)?;
        v["strategy"] = match &choice {
            Ok(c) => serde_json::json!({ "name": c.strategy.name(), "reasons": c.reasons }),
            Err(e) => serde_json::json!({ "refused": e.to_string() }),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_findings(&findings);
        match &choice {
            Ok(c) => print_choice(c),
            Err(e) => println!("strategy: refused: {e}"),
        }
    }
    Ok(if choice.is_ok() { 0 } else { 2 })
}

pub fn print_findings(f: &Findings) {
    println!("probe of {}:", f.path.display());
    for (what, finding) in f.rows() {
        println!("  {what:<17} {finding}");
    }
}

pub fn print_choice(c: &Choice) {
    println!("strategy: {}", c.strategy.name());
    for r in &c.reasons {
        println!("  {r}");
    }
}

/// `init`: probe first (a named strategy that cannot work here is refused before anything
/// is written), then the marker and catalog, then the probe recorded in the catalog.
pub fn init(root: &Path, wanted: &Wanted) -> anyhow::Result<i32> {
    if !root.is_dir() {
        // Storage::init explains what an absent folder means (an unmounted disk).
        Storage::init(root)?;
    }
    let findings = probe::probe(root)?;
    print_findings(&findings);
    let choice = strategy::choose(&findings, wanted)?;
    print_choice(&choice);
    init_recorded(root, &findings, &choice)
}

/// Marker and catalog (kept when there), then the probe and choice recorded in it.
pub fn init_recorded(root: &Path, findings: &Findings, choice: &Choice) -> anyhow::Result<i32> {
    match Storage::init_with(root, !findings.appends_kept.ok)? {
        InitOutcome::Created { id } => println!("initialised {} (storage id {id})", root.display()),
        InitOutcome::AlreadyInitialised { id } => {
            println!(
                "{} is already initialised (storage id {id}); probe and strategy recorded again",
                root.display()
            )
        }
    }
    Storage::open(root)?
        .catalog()?
        .record_probe(findings, choice)?;
    Ok(0)
}

/// The line `list` prints about the destination.
pub fn describe(storage: &Storage) -> anyhow::Result<Option<String>> {
    let catalog = storage.catalog()?;
    Ok(catalog.strategy_info()?.map(|s| {
        format!(
            "storage {} ({}): strategy {}: {}",
            storage.root().display(),
            s.filesystem,
            s.strategy,
            s.reasons.join("; ")
        )
    }))
}
