//! `snapnest verify`: print what was damaged, a summary, and exit non-zero on any damage.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::storage::Storage;
use crate::verify::{self, Progress, Sample, Scope};

pub fn verify(
    config: &Config,
    host: Option<&str>,
    snapshot: Option<&str>,
    sample: Option<&str>,
) -> anyhow::Result<i32> {
    if let Some(h) = host {
        config.host(h)?;
    }
    let sample = match sample {
        Some(s) => Some(Sample::parse(s).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let storage = Storage::open(&config.storage)?;
    let scope = Scope {
        host: host.map(str::to_string),
        snapshot: snapshot.map(str::to_string),
    };
    let progress = Arc::new(Progress::default());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = std::io::stderr().is_terminal().then(|| {
        let (p, done) = (progress.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                eprint!(
                    "\rverifying: {}/{} files, {}   ",
                    p.done.load(Ordering::Relaxed),
                    p.total.load(Ordering::Relaxed),
                    bytesize::ByteSize(p.bytes.load(Ordering::Relaxed))
                );
            }
            eprintln!();
        })
    });
    let result = verify::verify(&storage, &scope, sample, &progress);
    done.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.join();
    }
    let report = result?;
    for d in &report.damage {
        println!(
            "DAMAGED {} {} {}: {} (expected {}, found {})",
            d.host, d.snapshot, d.path, d.problem, d.expected, d.found
        );
    }
    for n in &report.not_hashed {
        println!(
            "not hashed: {} {}: {} files (backed up before snapnest recorded content hashes; not checked)",
            n.host, n.snapshot, n.files
        );
    }
    let count = |what: &str| report.damage.iter().filter(|d| d.problem == what).count();
    let r = &report.run;
    println!(
        "verify {}{}: {} files read ({}), {} damaged ({} differ, {} missing, {} unreadable), {} not hashed{}{}",
        r.scope,
        r.sample
            .as_ref()
            .map(|s| format!(", {s} sample"))
            .unwrap_or_default(),
        r.checked,
        bytesize::ByteSize(r.bytes),
        r.damaged,
        count("differs"),
        count("missing"),
        count("unreadable"),
        r.not_hashed,
        if r.skipped > 0 {
            format!(", {} skipped (pruned or moved by a run meanwhile)", r.skipped)
        } else {
            String::new()
        },
        r.message
            .as_ref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default(),
    );
    Ok(if report.damaged() { 1 } else { 0 })
}
