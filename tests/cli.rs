//! The command line as a user meets it: help, bad usage, bad config, missing folders.

mod common;

use std::fs;

use common::*;

#[test]
fn help_names_every_command() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let t = text(&out);
    for cmd in [
        "init",
        "hostkey",
        "backup",
        "list",
        "restore",
        "quickstart",
        "--config",
        "Exit codes",
    ] {
        assert!(t.contains(cmd), "--help mentions {cmd}: {t}");
    }
}

#[test]
fn bad_usage_exits_2() {
    let s = Setup::new("", "");
    let out = s.snapnest(&["backup"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = s.snapnest(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn malformed_config_names_file_line_and_key() {
    let s = Setup::new("[[host]]\nname = \"box\"\nsource = \"local\"\nfolders = [\"/tmp\"]\nbwlimit = \"very fast\"\n", "");
    let out = s.snapnest(&["backup", "box"]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains(s.config.to_str().unwrap()) && t.contains("line 11") && t.contains("bwlimit"),
        "{t}"
    );

    fs::write(
        &s.config,
        "[storage]\npath = \"/x\"\n[[host]]\nname = \"box\"\nsourc = \"local\"\n",
    )
    .unwrap();
    let t = text(&s.snapnest(&["list"]));
    assert!(t.contains("line 5") && t.contains("sourc"), "{t}");
}

#[test]
fn config_comes_from_the_environment_when_no_flag_is_given() {
    let src = tempfile::tempdir().unwrap();
    write_file(&src.path().join("x"), b"x", 1_700_000_000_000_000_000);
    let s = Setup::new(&local_host("box", src.path()), "");
    s.init();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .args(["backup", "--all"])
        .env("SNAPNEST_CONFIG", &s.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("box: good"));
}

#[test]
fn unknown_host_and_missing_folder_are_clear() {
    let src = tempfile::tempdir().unwrap();
    write_file(&src.path().join("x"), b"x", 1_700_000_000_000_000_000);
    let both = format!(
        "\"/nonexistent/snapnest-test\", \"{}\"",
        src.path().display()
    );
    let s = Setup::new(
        &format!("[[host]]\nname = \"box\"\nsource = \"local\"\nfolders = [{both}]\n"),
        "",
    );
    s.init();
    let t = text(&s.snapnest(&["backup", "nosuch"]));
    assert!(
        t.contains("no host named \"nosuch\"") && t.contains("box"),
        "{t}"
    );

    // A configured folder that is not there: the run is partial and says which.
    let t = s.backup("box", 1);
    assert!(
        t.contains("/nonexistent/snapnest-test") && t.contains("configured folder"),
        "{t}"
    );
    assert_eq!(s.snapshots("box").len(), 1);

    // No folder there at all (a share not mounted): failed, and no empty snapshot.
    let cfg = fs::read_to_string(&s.config)
        .unwrap()
        .replace(&both, "\"/nonexistent/snapnest-test\"");
    fs::write(&s.config, cfg).unwrap();
    let t = s.backup("box", 2);
    assert!(t.contains("nothing could be listed"), "{t}");
    assert_eq!(s.snapshots("box").len(), 1);

    // The same when the folder's parent is there (an empty mount point's parent).
    let gone = src.path().join("share-not-mounted");
    let cfg = fs::read_to_string(&s.config)
        .unwrap()
        .replace("/nonexistent/snapnest-test", gone.to_str().unwrap());
    fs::write(&s.config, cfg).unwrap();
    let t = s.backup("box", 2);
    assert!(t.contains("nothing could be listed"), "{t}");
    assert_eq!(
        s.snapshots("box").len(),
        1,
        "no snapshot of just the parent folders"
    );
}

#[test]
fn quickstart_backs_up_the_sample_twice_linking_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_snapnest"))
            .args(["quickstart", "--dir", dir.path().to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("sample: good"));
    let out = run();
    let t = text(&out);
    assert!(
        out.status.success() && t.contains("0 new files") && t.contains("3 linked"),
        "{t}"
    );
    let latest = fs::canonicalize(dir.path().join("snapnest-data/sample/latest")).unwrap();
    let sample = fs::canonicalize(dir.path().join("snapnest-sample")).unwrap();
    let copy = in_snap(&latest, &sample);
    assert_eq!(
        fs::read_to_string(copy.join("documents/todo.txt")).unwrap(),
        "buy milk\nback up the laptop\n"
    );
    assert!(
        !copy.join("scratch.tmp").exists() && !copy.join(".cache").exists(),
        "excludes applied"
    );
}
