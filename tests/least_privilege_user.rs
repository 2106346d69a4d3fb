//! Backing up as a dedicated non-root user on the host (created here with useradd, removed
//! afterwards): read access through an ACL or a group, or root reads through `sudo -n` limited
//! to the filter. snapnest names the folders that user cannot read, and why.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::keys::public_line;
use common::user::{run, TestUser};
use common::*;

/// A server that reads each test user's own ~/.ssh/authorized_keys.
fn sshd() -> Sshd {
    Sshd::start_with(&[
        "Match User snt*",
        "    AuthorizedKeysFile .ssh/authorized_keys",
    ])
}

/// A tree only root can read.
fn root_only_tree(dir: &Path) {
    sample_tree(dir);
    run("chmod", &["-R", "go-rwx", dir.to_str().unwrap()]);
}

fn setup_as(sshd: &Sshd, user: &TestUser, folders: &[&Path]) -> Setup {
    let host = sshd
        .host_toml("laptop", folders, "")
        .replace("user = \"root\"", &format!("user = \"{}\"", user.name));
    let s = Setup::new(&host, "");
    s.init();
    s
}

#[test]
fn acl_or_group_gives_a_dedicated_user_read_access() {
    let sshd = sshd();
    let user = TestUser::create();
    user.authorize_key(&public_line(&sshd.client_key));
    let by_acl = user.dir.path().join("by-acl");
    let by_group = user.dir.path().join("by-group");
    root_only_tree(&by_acl);
    root_only_tree(&by_group);
    let s = setup_as(&sshd, &user, &[&by_acl, &by_group]);
    let denied = |f: &Path| {
        format!(
            "cannot read {}: permission denied for user {}",
            f.display(),
            user.name
        )
    };

    // Before access is given, hostkey and the first backup say what is wrong and for whom.
    let out = s.snapnest(&["hostkey", "laptop"]);
    let t = text(&out);
    assert!(
        t.contains(&format!(
            "Reads as user {} via ssh (find+tar stream)",
            user.name
        )),
        "{t}"
    );
    assert!(t.contains(&denied(&by_acl)), "{t}");
    assert!(t.contains(&denied(&by_group)), "{t}");
    assert!(t.contains("setfacl -R -m u:"), "{t}");
    // The folders themselves are listed, their contents are not: partial.
    let out = s.backup("laptop", 1);
    assert!(
        out.contains(&format!("laptop: {}", denied(&by_acl))),
        "{out}"
    );
    assert!(out.contains("Permission denied"), "{out}");

    // An ACL (and a default ACL for what is created later), and a group.
    let acl = format!("u:{}:rX", user.name);
    run("setfacl", &["-R", "-m", &acl, by_acl.to_str().unwrap()]);
    run(
        "setfacl",
        &["-R", "-d", "-m", &acl, by_acl.to_str().unwrap()],
    );
    let group = format!("{}g", user.name);
    run("groupadd", &[&group]);
    let mut user = user;
    user.group = Some(group.clone());
    run("usermod", &["-aG", &group, &user.name]);
    run("chgrp", &["-R", "-h", &group, by_group.to_str().unwrap()]);
    run("chmod", &["-R", "g+rX", by_group.to_str().unwrap()]);

    let out = s.snapnest(&["hostkey", "laptop"]);
    assert!(
        text(&out).contains("All 2 configured folders are readable"),
        "{}",
        text(&out)
    );
    let out = s.backup("laptop", 0);
    assert!(out.contains("laptop: good"), "{out}");
    let snap = s.latest("laptop");
    assert_same_tree(&by_group, &in_snap(&snap, &by_group));

    // Then restrict the key with the defaults (filter in ~/.ssh, the user's authorized_keys).
    let out = s.snapnest(&["authorize", "laptop", "--install"]);
    assert!(out.status.success(), "{}", text(&out));
    let ak = user.authorized_keys_text();
    assert_eq!(ak.lines().count(), 1, "{ak}");
    assert!(
        ak.contains("command=\"/bin/sh '.ssh/snapnest-filter'\""),
        "{ak}"
    );
    let out = s.backup("laptop", 0);
    assert!(out.contains("via ssh (find+tar stream)"), "{out}");
    assert_same_tree(&by_acl, &in_snap(&s.latest("laptop"), &by_acl));
    let out = sshd.ssh_as(&user.name, &sshd.client_key, &["id"], b"");
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("uid="));
}

#[test]
fn sudo_mode_reads_as_root_through_the_filter_only() {
    let sshd = sshd();
    let mut user = TestUser::create();
    let data = user.dir.path().join("data");
    root_only_tree(&data);
    // A root-only log that grows: its tail is read through sudo too.
    let log = data.join("grows.log");
    write_file(&log, &vec![b'l'; 2 << 20], 1_700_000_000_000_000_000);
    fs::set_permissions(&log, fs::Permissions::from_mode(0o600)).unwrap();
    let s = setup_as(&sshd, &user, &[&data]);
    let sbin = user.dir.path().join("sbin");
    fs::create_dir(&sbin).unwrap();
    let filter = sbin.join("snapnest-filter");
    let p = filter.to_str().unwrap();
    let args = |extra: &[&'static str]| {
        let mut v = vec![
            "authorize",
            "laptop",
            "--mode",
            "sudo",
            "--from",
            "127.0.0.1",
            "--script-path",
            p,
        ];
        v.extend_from_slice(extra);
        v
    };

    // The three things the admin installs as root, printed by snapnest.
    let out = s.snapnest(&args(&["--script"]));
    assert!(out.status.success(), "{}", text(&out));
    fs::write(&filter, &out.stdout).unwrap();
    fs::set_permissions(&filter, fs::Permissions::from_mode(0o755)).unwrap();
    let out = s.snapnest(&args(&["--sudoers"]));
    assert!(out.status.success(), "{}", text(&out));
    let sudoers = PathBuf::from(format!("/etc/sudoers.d/{}", user.name));
    fs::write(&sudoers, &out.stdout).unwrap();
    fs::set_permissions(&sudoers, fs::Permissions::from_mode(0o440)).unwrap();
    user.sudoers = Some(sudoers.clone());
    run("visudo", &["-c", "-f", sudoers.to_str().unwrap()]);
    let out = s.snapnest(&args(&[]));
    assert!(out.status.success(), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        line.starts_with(&format!(
            "restrict,from=\"127.0.0.1\",command=\"/bin/sh '{p}'\" "
        )),
        "{line}"
    );
    user.authorize_key(&line);

    // Root-only files are backed up by the non-root login.
    let out = s.backup("laptop", 0);
    assert!(
        out.contains("laptop: good via ssh (find+tar stream)"),
        "{out}"
    );
    assert_same_tree(&data, &in_snap(&s.latest("laptop"), &data));
    fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"0123456789")
        .unwrap();
    set_mtime(&log, 1_700_000_100_000_000_000);
    let out = s.backup("laptop", 0);
    assert!(
        out.contains("1 new files, 10 B new"),
        "only the tail: {out}"
    );
    assert_same_tree(&data, &in_snap(&s.latest("laptop"), &data));

    // The key still runs nothing else, and the user's sudo runs only the filter, which
    // refuses anything but snapnest's commands.
    let out = sshd.ssh_as(&user.name, &sshd.client_key, &["id"], b"");
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("uid="));
    let as_user = |args: &[&str]| {
        Command::new("runuser")
            .args(["-u", &user.name, "--"])
            .args(args)
            .current_dir("/")
            .output()
            .unwrap()
    };
    let out = as_user(&["sudo", "-n", "/bin/sh", "-c", "id"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("uid=0"));
    let out = as_user(&["sudo", "-n", p, "cat /etc/shadow"]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("root:"));
    let out = as_user(&[
        "sudo",
        "-n",
        p,
        &format!("{} --to-command=id", snapnest::source::commands::TAR),
    ]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out));
}
