//! Folder and file names are data, never shell: configured folders holding shell
//! metacharacters are backed up as plain folders on every path (tar stream, SFTP, through the
//! forced-command filter), and no injected command runs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// Folders whose names would run `touch <marker>` if a shell ever saw them unquoted.
fn hostile_folders(root: &Path, marker: &Path) -> Vec<PathBuf> {
    let m = marker.display();
    [
        format!("x; touch {m}"),
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("it's \"quoted\" & | > {m}"),
        format!("new\nline; touch {m}"),
        "-rf --version".to_string(),
        "*".to_string(),
    ]
    .iter()
    .map(|n| {
        let dir = root.join(n);
        fs::create_dir_all(&dir).unwrap();
        write_file(
            &dir.join("kept.txt"),
            n.as_bytes(),
            1_700_000_000_000_000_000,
        );
        // A file name that is also an attempt.
        write_file(
            &dir.join(format!("$(touch {m}).txt")),
            b"data\n",
            1_700_000_000_000_000_001,
        );
        dir
    })
    .collect()
}

fn toml_list(folders: &[PathBuf]) -> String {
    folders
        .iter()
        .map(|f| toml::Value::String(f.display().to_string()).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn setup(sshd: &Sshd, folders: &[PathBuf], extra: &str) -> Setup {
    let host = sshd.host_toml("laptop", &[], extra).replace(
        "folders = []",
        &format!("folders = [{}]", toml_list(folders)),
    );
    let s = Setup::new(&host, "");
    s.init();
    s
}

fn check(s: &Setup, folders: &[PathBuf], marker: &Path, exact_times: bool) {
    let snap = s.latest("laptop");
    for f in folders {
        let copy = in_snap(&snap, f);
        assert!(copy.is_dir(), "{} missing from the snapshot", f.display());
        if exact_times {
            assert_same_tree(f, &copy);
        } else {
            assert_same_tree_secs(f, &copy);
        }
    }
    assert!(!marker.exists(), "an injected command ran");
}

#[test]
fn hostile_folder_names_are_plain_folders_over_the_stream() {
    let sshd = Sshd::start();
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join("pwned");
    let folders = hostile_folders(&root.path().join("src"), &marker);
    let s = setup(&sshd, &folders, "");
    let out = s.backup("laptop", 0);
    assert!(out.contains("via ssh (find+tar stream)"), "{out}");
    check(&s, &folders, &marker, true);
    let out = s.snapnest(&["hostkey", "laptop"]);
    assert!(
        text(&out).contains(&format!(
            "All {} configured folders are readable",
            folders.len()
        )),
        "{}",
        text(&out)
    );
    assert!(!marker.exists());
}

#[test]
fn hostile_folder_names_are_plain_folders_over_sftp() {
    let sshd = Sshd::start();
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join("pwned");
    let folders = hostile_folders(&root.path().join("src"), &marker);
    let s = setup(&sshd, &folders, "transfer = \"sftp\"");
    let out = s.backup("laptop", 0);
    assert!(out.contains("via ssh (sftp)"), "{out}");
    check(&s, &folders, &marker, false);
}

#[test]
fn hostile_folder_names_pass_through_the_filter() {
    let sshd = Sshd::start();
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join("pwned");
    let folders = hostile_folders(&root.path().join("src"), &marker);
    let s = setup(&sshd, &folders, "");
    let filter = root.path().join("filter");
    let ak = sshd.authorized_keys();
    let out = s.snapnest(&[
        "authorize",
        "laptop",
        "--mode",
        "filter",
        "--install",
        "--authorized-keys",
        ak.to_str().unwrap(),
        "--script-path",
        filter.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = s.backup("laptop", 0);
    assert!(out.contains("via ssh (find+tar stream)"), "{out}");
    check(&s, &folders, &marker, true);
}
