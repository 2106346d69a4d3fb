//! The box's key, restricted by `snapnest authorize`, on a real OpenSSH server: backups still
//! work, and the key can do nothing else (no shell, no writes, no forwarding, nothing outside
//! the configured folders). The filter script is also attacked directly.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::keys::lines_for_key;
use common::*;
use snapnest::source::commands;

struct Restricted {
    sshd: Sshd,
    src: tempfile::TempDir,
    outside: tempfile::TempDir,
    setup: Setup,
    filter: PathBuf,
}

fn folder(src: &Path) -> PathBuf {
    src.join("home")
}

/// A host whose root key snapnest restricted itself with `authorize --install`.
fn restricted(mode: &str, extra_args: &[&str]) -> Restricted {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    sample_tree(&folder(src.path()));
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret.txt"), b"not for the box\n").unwrap();
    let setup = Setup::new(&sshd.host_toml("laptop", &[&folder(src.path())], ""), "");
    setup.init();
    let filter = src.path().join("snapnest-filter");
    let ak = sshd.authorized_keys();
    let mut args = vec![
        "authorize",
        "laptop",
        "--mode",
        mode,
        "--install",
        "--authorized-keys",
        ak.to_str().unwrap(),
        "--script-path",
        filter.to_str().unwrap(),
    ];
    args.extend_from_slice(extra_args);
    let out = setup.snapnest(&args);
    assert!(out.status.success(), "authorize --install: {}", text(&out));
    Restricted {
        sshd,
        src,
        outside,
        setup,
        filter,
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn filter_key_backs_up_and_can_run_nothing_else() {
    let r = restricted("filter", &[]);
    let ak = r.sshd.authorized_keys_text();
    let lines = lines_for_key(&ak, &r.sshd.client_key);
    assert_eq!(
        lines.len(),
        1,
        "one line for the key, replacing the open one: {ak}"
    );
    assert!(
        lines[0].starts_with(&format!(
            "restrict,from=\"127.0.0.1\",command=\"/bin/sh '{}'\" ssh-ed25519 ",
            r.filter.display()
        )),
        "{}",
        lines[0]
    );

    // The backup works through the filter, on the fast path.
    let out = r.setup.backup("laptop", 0);
    assert!(out.contains("via ssh (find+tar stream)"), "{out}");
    let snap = r.setup.latest("laptop");
    assert_same_tree(
        &folder(r.src.path()),
        &in_snap(&snap, &folder(r.src.path())),
    );

    // No shell, not even a command.
    let out = r.sshd.ssh(&["id"], b"");
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("uid="));
    assert!(
        stderr(&out).contains("snapnest-filter: refused: id"),
        "{}",
        stderr(&out)
    );

    // No writes: not by a command, not by SFTP.
    let marker = r.outside.path().join("written");
    let out = r.sshd.ssh(&[&format!("touch {}", marker.display())], b"");
    assert!(!out.status.success());
    let out = r.sshd.sftp_as(
        "root",
        &r.sshd.client_key,
        &format!("put /etc/hostname {}\n", marker.display()),
    );
    assert!(!out.status.success(), "sftp put: {}", text(&out));
    assert!(!marker.exists());

    // Reading outside the folders: by command, by listing another folder, by sneaking names
    // into the tar stream's stdin. A name inside the folder is the positive control.
    let out = r.sshd.ssh(&["cat /etc/passwd"], b"");
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("root:"));
    let other = commands::listing(&[r.outside.path().display().to_string()]);
    let out = r.sshd.ssh(&[&other], b"");
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("secret"));
    let inside = folder(r.src.path()).join("a.txt");
    let rel = |p: &Path| p.strip_prefix("/").unwrap().display().to_string();
    let names = [
        rel(&r.outside.path().join("secret.txt")),
        "etc/passwd".to_string(),
        format!("{}/../../../etc/passwd", rel(&folder(r.src.path()))),
        format!("{}/../{}", rel(&folder(r.src.path())), "snapnest-filter"),
        rel(&inside),
    ];
    let mut stdin = Vec::new();
    for n in &names {
        stdin.extend_from_slice(n.as_bytes());
        stdin.push(0);
    }
    let out = r.sshd.ssh(&[commands::TAR], &stdin);
    assert_eq!(
        tar_names(&out.stdout),
        vec![rel(&inside)],
        "{}",
        stderr(&out)
    );
}

/// Names in a tar archive, in order.
fn tar_names(archive: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(archive);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

#[test]
fn restricted_key_cannot_forward_ports() {
    let r = restricted("filter", &[]);
    // A service on the host that the key must not reach through the tunnel.
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let service_port = service.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in service.incoming().flatten() {
            let _ = c.write_all(b"SECRET-BANNER\n");
        }
    });
    let local = free_port();
    let mut ssh = Command::new("ssh")
        // INFO: the client reports the refused channel at that level (the first -o wins).
        .args(["-o", "LogLevel=INFO"])
        .args(r.sshd.client_options(&r.sshd.client_key))
        .args(["-N", "-p", &r.sshd.port.to_string(), "-L"])
        .arg(format!("{local}:127.0.0.1:{service_port}"))
        .arg("root@127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(r.src.path().join("ssh.err")).unwrap())
        .spawn()
        .unwrap();
    wait_until("ssh to listen for -L", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", local)).is_ok()
    });
    let mut c = TcpStream::connect(("127.0.0.1", local)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    let _ = ssh.kill();
    let _ = ssh.wait();
    assert!(
        !String::from_utf8_lossy(&got).contains("SECRET"),
        "the tunnel reached the service"
    );
    let err = fs::read_to_string(r.src.path().join("ssh.err")).unwrap();
    assert!(
        err.contains("prohibited") || err.contains("open failed"),
        "ssh said: {err}"
    );
}

#[test]
fn filter_refuses_crafted_commands_when_called_directly() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    let home = src.path().join("home");
    sample_tree(&home);
    let s = Setup::new(&sshd.host_toml("laptop", &[&home], ""), "");
    let out = s.snapnest(&["authorize", "laptop", "--mode", "filter", "--script"]);
    assert!(out.status.success(), "{}", text(&out));
    let script = src.path().join("filter.sh");
    fs::write(&script, &out.stdout).unwrap();

    let folders = vec![home.display().to_string()];
    let list = commands::listing(&folders);
    let probe = commands::probe(&folders);
    let marker = src.path().join("pwned");
    let m = marker.display();
    let run = |cmd: &str| {
        Command::new("sh")
            .arg(&script)
            .env("SSH_ORIGINAL_COMMAND", cmd)
            .current_dir(src.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    // The exact commands run (the positive control).
    let out = run(&probe);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("snapnest-folder: ok"));
    let out = run(&list);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("a.txt"));

    let crafted = [
        String::new(),
        "id".to_string(),
        format!("touch {m}"),
        format!("{list}; touch {m}"),
        format!("{list} && touch {m}"),
        format!("{list}\ntouch {m}"),
        format!("{list} | sh -c 'touch {m}'"),
        format!("{list} $(touch {m})"),
        format!("{list} `touch {m}`"),
        list.replace("find -H", &format!("find -H /etc -fprint {m}")),
        list.replace(" -printf", &format!(" -exec touch {m} ; -printf")),
        list.replace(&home.display().to_string(), "/etc"),
        commands::listing(&["/".to_string()]),
        commands::TAR.replace(" -cf -", " -xf -"),
        commands::TAR.replace("-T -", &format!("-T - --to-command='touch {m}'")),
        format!("{} {m}", commands::TAR),
        format!(" {probe}"),
        format!("{probe} "),
        "internal-sftp".to_string(),
        "/usr/lib/openssh/sftp-server".to_string(),
        "rsync --server --sender -logDtpre.iLsfxC . /".to_string(),
    ];
    for cmd in &crafted {
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(126), "{cmd:?} ran: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("snapnest-filter: refused"),
            "{cmd:?}: {}",
            text(&out)
        );
        assert!(out.stdout.is_empty(), "{cmd:?} printed: {}", text(&out));
    }
    assert!(!marker.exists(), "a crafted command ran");
}

#[test]
fn sftp_key_backs_up_read_only() {
    let r = restricted("sftp", &[]);
    let ak = r.sshd.authorized_keys_text();
    let lines = lines_for_key(&ak, &r.sshd.client_key);
    assert_eq!(lines.len(), 1, "{ak}");
    assert!(
        lines[0].starts_with("restrict,from=\"127.0.0.1\",command=\"internal-sftp -R\" "),
        "{}",
        lines[0]
    );
    // The stream is refused, so snapnest falls back to SFTP by itself, and says why.
    let out = r.setup.backup("laptop", 0);
    assert!(out.contains("via ssh (sftp)"), "{out}");
    assert!(out.contains("allows sftp connections only"), "{out}");
    let snap = r.setup.latest("laptop");
    assert_same_tree_secs(
        &folder(r.src.path()),
        &in_snap(&snap, &folder(r.src.path())),
    );

    let out = r.sshd.ssh(&["id"], b"");
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("uid="));
    let marker = r.outside.path().join("written");
    let out = r.sshd.sftp_as(
        "root",
        &r.sshd.client_key,
        &format!("put /etc/hostname {}\n", marker.display()),
    );
    assert!(!out.status.success(), "{}", text(&out));
    let out = r.sshd.sftp_as(
        "root",
        &r.sshd.client_key,
        &format!("mkdir {}\n", marker.display()),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!marker.exists());
}

#[test]
fn from_restricts_where_the_key_works() {
    let r = restricted("filter", &["--from", "10.77.0.1"]);
    let out = r.setup.backup("laptop", 2);
    assert!(out.contains("not accepted"), "{out}");
    assert!(r.setup.snapshots("laptop").is_empty());
}

#[test]
fn install_twice_changes_nothing_and_new_folders_need_a_new_filter() {
    let r = restricted("filter", &[]);
    let before = r.sshd.authorized_keys_text();
    let filter_before = fs::read(&r.filter).unwrap();
    let ak = r.sshd.authorized_keys();
    let out = r.setup.snapnest(&[
        "authorize",
        "laptop",
        "--mode",
        "filter",
        "--install",
        "--authorized-keys",
        ak.to_str().unwrap(),
        "--script-path",
        r.filter.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("already restricted"), "{}", text(&out));
    assert_eq!(r.sshd.authorized_keys_text(), before);
    assert_eq!(fs::read(&r.filter).unwrap(), filter_before);

    // A folder added after the filter was printed: refused, and the message says what to do.
    let added = r.src.path().join("added");
    fs::create_dir(&added).unwrap();
    let cfg = fs::read_to_string(&r.setup.config).unwrap().replace(
        &format!("folders = [\"{}\"]", folder(r.src.path()).display()),
        &format!(
            "folders = [\"{}\", \"{}\"]",
            folder(r.src.path()).display(),
            added.display()
        ),
    );
    fs::write(&r.setup.config, cfg).unwrap();
    let out = r.setup.backup("laptop", 2);
    assert!(out.contains("snapnest authorize laptop --script"), "{out}");
}

#[test]
fn hostkey_and_first_backup_name_unreadable_folders() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    let home = src.path().join("home");
    sample_tree(&home);
    let missing = src.path().join("not-there");
    let s = Setup::new(&sshd.host_toml("laptop", &[&home, &missing], ""), "");
    s.init();
    let out = s.snapnest(&["hostkey", "laptop"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("Reads as user root via ssh (find+tar stream)"),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "cannot read {}: does not exist on laptop",
            missing.display()
        )),
        "{t}"
    );
    assert!(
        !t.contains(&format!("cannot read {}:", home.display())),
        "{t}"
    );

    let out = s.backup("laptop", 1);
    assert!(
        out.contains(&format!(
            "laptop: cannot read {}: does not exist",
            missing.display()
        )),
        "{out}"
    );
    // Only the first backup gives setup advice.
    let out = s.backup("laptop", 1);
    assert!(!out.contains("cannot read"), "{out}");
}

#[test]
fn authorize_auto_prints_a_filter_line_and_the_script() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    let home = src.path().join("home");
    sample_tree(&home);
    let s = Setup::new(
        &sshd.host_toml("laptop", &[&home], "authorize_from = \"192.168.1.0/24\""),
        "",
    );
    let out = s.snapnest(&["authorize", "laptop"]);
    assert!(out.status.success(), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        line.starts_with(
            "restrict,from=\"192.168.1.0/24\",command=\"/bin/sh '.ssh/snapnest-filter'\" ssh-ed25519 "
        ),
        "{line}"
    );
    assert!(line.ends_with(" snapnest@laptop"), "{line}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--install"));
    // sudo mode prints the sudoers lines for the user, and refuses to install by itself.
    let out = s.snapnest(&["authorize", "laptop", "--mode", "sudo"]);
    let t = text(&out);
    assert!(
        t.contains("root ALL=(root) NOPASSWD: /usr/local/sbin/snapnest-filter"),
        "{t}"
    );
    let out = s.snapnest(&["authorize", "laptop", "--mode", "sudo", "--install"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A bad from= is refused with the reason.
    let out = s.snapnest(&["authorize", "laptop", "--from", "1.2.3.4\" evil"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("not a from= pattern"), "{}", text(&out));
}

/// Review #6: tar follows symlinks in a name's middle parts, so a symlinked folder inside a
/// configured folder (any local user can make one) must not let the key read through it.
#[test]
fn symlinked_folder_inside_does_not_let_names_out() {
    let r = restricted("filter", &[]);
    let home = folder(r.src.path());
    std::os::unix::fs::symlink("/etc", home.join("link")).unwrap();
    std::os::unix::fs::symlink(r.outside.path(), home.join("out")).unwrap();
    fs::create_dir(home.join("real")).unwrap();
    fs::write(home.join("real/kept.txt"), b"inside\n").unwrap();
    std::os::unix::fs::symlink("real", home.join("alias")).unwrap();

    let rel = |p: &Path| p.strip_prefix("/").unwrap().display().to_string();
    let names = [
        rel(&home.join("a.txt")),
        rel(&home.join("alias/kept.txt")),
        rel(&home.join("link/passwd")),
        rel(&home.join("out/secret.txt")),
        rel(&home.join("real/kept.txt")),
    ];
    let mut stdin = Vec::new();
    for n in &names {
        stdin.extend_from_slice(n.as_bytes());
        stdin.push(0);
    }
    let out = r.sshd.ssh(&[commands::TAR], &stdin);
    assert_eq!(
        tar_names(&out.stdout),
        vec![rel(&home.join("a.txt")), rel(&home.join("real/kept.txt"))],
        "{}",
        stderr(&out)
    );

    // A backup through the filter still stores the symlinks as symlinks, and the files.
    let out = r.setup.backup("laptop", 0);
    assert!(out.contains("via ssh (find+tar stream)"), "{out}");
    let snap = in_snap(&r.setup.latest("laptop"), &home);
    assert_eq!(fs::read_link(snap.join("link")).unwrap(), Path::new("/etc"));
    assert_eq!(fs::read(snap.join("real/kept.txt")).unwrap(), b"inside\n");
}

/// Cost of the filter's fence: an initial backup of 20,000 files through it (run by hand:
/// `cargo test --release --test least_privilege -- --ignored --nocapture filter_cost`).
#[test]
#[ignore]
fn filter_cost_20k_files() {
    let r = restricted("filter", &[]);
    let home = folder(r.src.path());
    for d in 0..200 {
        let dir = home.join(format!("d{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            fs::write(dir.join(format!("f{f:03}")), format!("{d} {f}\n")).unwrap();
        }
    }
    let started = std::time::Instant::now();
    let out = r.setup.backup("laptop", 0);
    let took = started.elapsed();
    assert!(out.contains("via ssh (find+tar stream)"), "{out}");
    eprintln!("initial backup of 20,000 files through the filter: {took:?}");
}

#[test]
fn filter_lets_appended_file_commands_read_only_inside_the_folders() {
    use snapnest::source::tail::{record, HASH, TAIL};
    let r = restricted("filter", &[]);
    let rel = |p: &Path| {
        p.strip_prefix("/")
            .unwrap()
            .as_os_str()
            .as_encoded_bytes()
            .to_vec()
    };
    let home = folder(r.src.path());
    let inside = home.join("docs/report.odt");
    // Names a crafted client could send: outside the folders, through `..`, through a
    // symlink inside the folder that points out, the same name twice; and one good one.
    let names: Vec<Vec<u8>> = vec![
        rel(&r.outside.path().join("secret.txt")),
        b"etc/passwd".to_vec(),
        [rel(&home), b"/../../../etc/passwd".to_vec()].concat(),
        rel(&home.join("link-abs")),
        rel(&inside),
        rel(&inside),
    ];
    let mut stdin = Vec::new();
    for (i, n) in names.iter().enumerate() {
        stdin.extend(record(i as u64, 1, 10, n));
    }
    let out = r.sshd.ssh(&[HASH], &stdin);
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(lines, [format!("{:020}", 4)], "{}", stderr(&out));

    let out = r.sshd.ssh(&[TAIL], &stdin);
    let mut want = format!("{:020} OK\n", 4).into_bytes();
    want.extend_from_slice(&[7u8; 10]);
    assert!(out.stdout.starts_with(&want), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("root:"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("not for the box"));

    // Changed by a byte, they are refused like any other command.
    for cmd in [
        HASH.replace("sha256sum", "cat"),
        TAIL.replace("head -c", "cat"),
    ] {
        let out = r.sshd.ssh(&[&cmd], &stdin);
        assert!(
            stderr(&out).contains("snapnest-filter: refused"),
            "{}",
            text(&out)
        );
        assert!(out.stdout.is_empty());
    }
}
