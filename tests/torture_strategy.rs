//! A copy-with-history run moves the previous snapshot's unchanged files into its staging
//! folder. If it is killed and the next run uses another strategy (the config changed, or a
//! re-probe chose differently), those files must still go back: they are the only copies.

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn set_strategy(setup: &Setup, s: &str) {
    let text = fs::read_to_string(&setup.config).unwrap();
    let text = match text.find("strategy = ") {
        Some(_) => text
            .lines()
            .map(|l| {
                if l.starts_with("strategy = ") {
                    format!("strategy = \"{s}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
        None => text.replace("[storage]\n", &format!("[storage]\nstrategy = \"{s}\"\n")),
    };
    fs::write(&setup.config, text).unwrap();
}

#[test]
fn files_moved_by_a_killed_history_run_go_back_even_when_the_strategy_changed() {
    let disk = LoopDisk::ext4(96);
    let src = tempfile::tempdir().unwrap();
    for i in 0..10 {
        fs::write(src.path().join(format!("keep{i}")), vec![i as u8; 1 << 20]).unwrap();
    }
    let mut setup = Setup::new(&local_host("box", src.path()), "");
    setup.store_in(disk.path());
    set_strategy(&setup, "history");
    setup.init();
    setup.backup("box", 0);
    let first = setup.latest("box");
    let original = tempfile::tempdir().unwrap();
    sh(&format!(
        "cp -a {}/. {}",
        src.path().display(),
        original.path().display()
    ));

    // A second, slow run: it moves keep* out of the first snapshot, then fetches `big`.
    fs::write(src.path().join("big"), vec![7u8; 12 << 20]).unwrap();
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
    let moved = in_snap(&first, src.path()).join("keep0");
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

    // Now hard links, and keep0 is gone at the source.
    set_strategy(&setup, "hardlink");
    fs::remove_file(src.path().join("keep0")).unwrap();
    fs::remove_file(src.path().join("big")).unwrap();
    setup.backup("box", 0);

    let first_name = first.file_name().unwrap().to_string_lossy().into_owned();
    let to = setup.restore_folder("box", &first_name, src.path());
    assert_same_tree(
        original.path(),
        &to.path().join(src.path().file_name().unwrap()),
    );
}
