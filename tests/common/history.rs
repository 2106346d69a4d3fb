//! Copy-with-history fixtures: choosing the strategy in a test's config, and a history run
//! killed while it holds the previous snapshot's only copies in its staging folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{in_snap, local_host, sh, wait_until, LoopDisk, Setup};

/// Set `[storage] strategy` in the setup's config, replacing any earlier choice.
pub fn set_strategy(setup: &Setup, s: &str) {
    let text = fs::read_to_string(&setup.config).unwrap();
    let text = if text.contains("\nstrategy = ") {
        text.lines()
            .map(|l| {
                if l.starts_with("strategy = ") {
                    format!("strategy = \"{s}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        text.replace("[storage]\n", &format!("[storage]\nstrategy = \"{s}\"\n"))
    };
    fs::write(&setup.config, text).unwrap();
}

/// The last part of a path, as text (a snapshot's name, a source folder's name).
pub fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// A history storage on `disk` backing up `src` (ten 1 MiB files `keep0`..`keep9`), after a
/// second, bandwidth-limited run was killed -9 once it had moved `keep0` out of the first
/// snapshot: the staging folder holds the first snapshot's only copy.
pub struct KilledHistoryRun {
    pub setup: Setup,
    /// The first (published) snapshot's folder.
    pub first: PathBuf,
    /// The source as the first snapshot saw it.
    pub original: tempfile::TempDir,
}

pub fn killed_history_run(disk: &LoopDisk, src: &Path, host_extra: &str) -> KilledHistoryRun {
    for i in 0..10 {
        fs::write(src.join(format!("keep{i}")), vec![i as u8; 1 << 20]).unwrap();
    }
    let mut setup = Setup::new(&local_host("box", src), host_extra);
    setup.store_in(disk.path());
    set_strategy(&setup, "history");
    setup.init();
    setup.backup("box", 0);
    let first = setup.latest("box");
    let original = tempfile::tempdir().unwrap();
    sh(&format!(
        "cp -a {}/. {}",
        src.display(),
        original.path().display()
    ));

    // A slow second run: it moves keep* out of the first snapshot, then fetches `big`.
    fs::write(src.join("big"), vec![7u8; 12 << 20]).unwrap();
    let cfg = fs::read_to_string(&setup.config)
        .unwrap()
        .replace("folders = [", "bwlimit = \"2MiB/s\"\nfolders = [");
    fs::write(&setup.config, cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .arg("--config")
        .arg(&setup.config)
        .args(["backup", "box"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let moved = in_snap(&first, src).join("keep0");
    wait_until(
        "keep0 to be moved into staging",
        Duration::from_secs(20),
        || !moved.exists(),
    );
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !moved.exists(),
        "the killed run holds the first snapshot's only copy of keep0"
    );
    KilledHistoryRun {
        setup,
        first,
        original,
    }
}
