//! The network goes away mid-transfer: a machine in its own network namespace whose link is
//! pulled while snapnest pulls from it. The run must end within its timeout with a reason,
//! publish nothing half-done, and the next run must resume.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::NetnsHost;
use common::*;

#[test]
fn a_pulled_cable_fails_the_run_within_its_timeout_and_the_next_run_resumes() {
    let host = NetnsHost::start();
    let src = tempfile::tempdir().unwrap();
    thirty_megabytes(src.path());
    let s = Setup::new(
        &host.host_toml(
            "laptop",
            &[src.path()],
            "bwlimit = \"4MB/s\"\ntimeout = \"3s\"",
        ),
        "",
    );
    s.init();
    let child = spawn_backup(&s, "laptop");
    let done = in_snap(Path::new(""), &src.path().join("f02.bin"));
    wait_until("a few files to arrive", Duration::from_secs(30), || {
        fs::read_dir(s.storage.join("laptop"))
            .is_ok_and(|d| d.flatten().any(|e| e.path().join(&done).exists()))
    });
    host.link(false);
    let pulled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = pulled.elapsed();
    let t = text(&out);
    eprintln!("after {waited:?}: {t}");
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("laptop: failed"), "{t}");
    assert!(
        waited < Duration::from_secs(20),
        "gave up after {waited:?} (timeout 3s): {t}"
    );
    assert!(
        s.snapshots("laptop").is_empty(),
        "nothing half-done is published"
    );

    host.link(true);
    let out = s.backup("laptop", 0);
    assert!(out.contains("resumed"), "{out}");
    assert_same_tree(src.path(), &in_snap(&s.latest("laptop"), src.path()));
}
