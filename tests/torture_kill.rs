//! kill -9 at random moments of a prune: whatever instant it dies, the catalog opens, every
//! snapshot still listed is complete, and the next prune finishes what the killed one began.
//! SNAPNEST_TORTURE_ITERATIONS raises the count for a long run (CI runs a handful).

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn iterations() -> u32 {
    std::env::var("SNAPNEST_TORTURE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// A deterministic spread of kill delays (ms) without a random crate: 20 … 220, where a
/// prune of two 4,000-file snapshots is under way on this machine class.
fn delay(i: u32) -> u64 {
    20 + u64::from(i) * 53 % 201
}

#[test]
fn kill_9_during_prune_never_leaves_a_broken_snapshot_or_catalog() {
    let src = tempfile::tempdir().unwrap();
    // Many small files, so deleting one snapshot takes a while.
    for d in 0..40 {
        fs::create_dir(src.path().join(format!("d{d}"))).unwrap();
        for f in 0..100 {
            fs::write(src.path().join(format!("d{d}/f{f}")), format!("{d}/{f}")).unwrap();
        }
    }
    for i in 0..iterations() {
        let setup = Setup::new(&local_host("box", src.path()), "keep = { last = 1 }");
        setup.init();
        for n in 0..3 {
            fs::write(src.path().join("counter"), n.to_string()).unwrap();
            setup.backup("box", 0);
            std::thread::sleep(Duration::from_millis(1050));
        }
        let latest = setup.latest("box");
        let mut child = Command::new(env!("CARGO_BIN_EXE_snapnest"))
            .arg("--config")
            .arg(&setup.config)
            .arg("prune")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay(i)));
        let _ = child.kill();
        let _ = child.wait();

        let caught = fs::read_dir(setup.storage.join("box"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".deleting-"));
        eprintln!(
            "iteration {i}: killed after {} ms, mid-deletion: {caught}",
            delay(i)
        );
        // Whatever it got to: the catalog opens, the kept snapshot is whole.
        let list = setup.snapnest(&["list", "box"]);
        assert_eq!(
            list.status.code(),
            Some(0),
            "iteration {i}: {}",
            text(&list)
        );
        assert_eq!(setup.latest("box"), latest, "iteration {i}");
        assert_same_tree(src.path(), &in_snap(&latest, src.path()));
        // Every snapshot still listed is complete (the two older ones differ only in counter).
        for snap in setup.snapshots("box") {
            let stored = in_snap(&snap, src.path());
            assert!(
                stored.join("d39/f99").is_file(),
                "iteration {i}: {} is incomplete",
                snap.display()
            );
        }
        // The next prune finishes the job.
        let out = setup.snapnest(&["prune"]);
        assert_eq!(out.status.code(), Some(0), "iteration {i}: {}", text(&out));
        assert_eq!(
            setup.snapshots("box"),
            vec![latest.clone()],
            "iteration {i}: {}",
            text(&out)
        );
        let hidden: Vec<_> = fs::read_dir(setup.storage.join("box"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".deleting-"))
            .collect();
        assert!(hidden.is_empty(), "iteration {i}: leftovers {hidden:?}");
        let list = text(&setup.snapnest(&["list", "box"]));
        assert_eq!(list.matches("good").count(), 1, "iteration {i}: {list}");
    }
}
