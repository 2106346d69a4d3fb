//! Safety against what a source machine can contain: hostile file names, symlinks pointing out
//! of the tree, FIFOs/sockets/devices, unreadable files, and hosts with BusyBox instead of GNU
//! tools. Every test runs the real binary, through a real sshd on 127.0.0.1 where it applies,
//! under a deadline, and checks what a user would see: exit code, output, snapshot content.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Run `snapnest backup <host>` with a deadline: a hang (e.g. on a FIFO) fails the test
/// instead of blocking it forever. Returns the exit code and stdout+stderr.
fn backup_within(s: &Setup, host: &str, limit: Duration) -> (i32, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out_path = s.dir.path().join(format!("backup-{n}.out"));
    let err_path = s.dir.path().join(format!("backup-{n}.err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .arg("--config")
        .arg(&s.config)
        .args(["backup", host])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "snapnest backup {host} still running after {limit:?}: it hangs\n{}{}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&fs::read(&out_path).unwrap()),
        String::from_utf8_lossy(&fs::read(&err_path).unwrap())
    );
    (status.code().unwrap_or(-1), t)
}

const DEADLINE: Duration = Duration::from_secs(60);

/// Back up and assert the exit code; returns the output.
fn backup(s: &Setup, host: &str, code: i32) -> String {
    let (got, t) = backup_within(s, host, DEADLINE);
    assert_eq!(got, code, "backup {host} exit code:\n{t}");
    t
}

fn one_host(toml: &str) -> Setup {
    let s = Setup::new(toml, "");
    s.init();
    s
}

fn p(root: &Path, name: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(name))
}

fn names_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    v.sort();
    v
}

/// Every regular file under `dir`, never following symlinks.
fn regular_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// The storage folder holds only `.snapnest` and the host folder, the host folder only
/// snapshots and `latest`, and each snapshot only the path down to `src`: nothing was
/// written anywhere else.
fn assert_storage_clean(s: &Setup, host: &str, src: &Path) {
    let top: Vec<String> = names_in(&s.storage)
        .into_iter()
        .map(|n| String::from_utf8(n).unwrap())
        .collect();
    assert_eq!(top, vec![".snapnest".to_string(), host.to_string()]);
    for n in names_in(&s.storage.join(host)) {
        let n = String::from_utf8(n).unwrap();
        assert!(
            n == "latest" || n.starts_with("20"),
            "unexpected {n:?} in the host folder"
        );
    }
    for snap in s.snapshots(host) {
        let mut dir = snap.clone();
        for part in src.strip_prefix("/").unwrap().components() {
            let name = part.as_os_str().as_bytes().to_vec();
            assert_eq!(names_in(&dir), vec![name], "entries of {}", dir.display());
            dir = dir.join(part);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1 + 2: hostile names
// ---------------------------------------------------------------------------------------------

/// Names a shell, `find`, `tar` or a careless parser would trip over. Files, with distinct
/// content and nanosecond mtimes.
const HOSTILE_FILES: &[&[u8]] = &[
    b"new\nline",
    b"\nleading-newline",
    b"trailing-newline\n",
    b"tab\there",
    b"back\\slash",
    b"\\n",
    b"caf\xe9",
    b"\xff\xfe\xfd",
    b"\xe9",
    b"-rf",
    b"--help",
    b"-",
    b"--",
    b"...",
    b" .. ",
    b".. ",
    b" .",
    b"....",
    b"it's",
    b"say \"hi\"",
    b"'",
    b"\"",
    b"$(touch snapnest-pwned-1)",
    b"`touch snapnest-pwned-2`",
    b";touch snapnest-pwned-3;",
    b"|touch snapnest-pwned-4",
    b"&& touch snapnest-pwned-5",
    b";rm -rf x",
    b"$HOME",
    b"${IFS}",
    b"*",
    b"?",
    b"[a-z]",
    b"~",
    b" ",
    b"  two leading spaces",
    b"trailing space ",
    b"%s%n%x",
    b"\x1b[31mred\x1b[0m",
    b"\x01\x02\x7f",
    b"\r",
    b"a=b",
    b"x: Cannot open: No such file or directory",
    b"tar: y: Cannot open",
    b"\xef\xbb\xbfbom",
    b"\xe2\x80\xaeevil\xe2\x80\xactxt.exe",
];

/// Files the hostile names would create if anything ran them through a shell.
fn pwned_markers() -> Vec<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/tmp"),
        PathBuf::from("/"),
        PathBuf::from("/root"),
        std::env::current_dir().unwrap(),
    ];
    if let Ok(h) = std::env::var("HOME") {
        dirs.push(PathBuf::from(h));
    }
    let mut v = vec![PathBuf::from("/tmp/pwned")];
    for d in dirs {
        for i in 1..=5 {
            v.push(d.join(format!("snapnest-pwned-{i}")));
        }
    }
    v
}

fn clear_pwned_markers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for m in pwned_markers() {
            if fs::symlink_metadata(&m).is_ok() {
                eprintln!("note: removing leftover {}", m.display());
                let _ = fs::remove_file(&m);
            }
        }
    });
}

fn assert_not_pwned() {
    for m in pwned_markers() {
        assert!(
            fs::symlink_metadata(&m).is_err(),
            "{} exists: a file name was run as a command",
            m.display()
        );
    }
}

fn hostile_tree(root: &Path) {
    let mut t = 1_700_000_000_000_000_001i64;
    for (i, name) in HOSTILE_FILES.iter().enumerate() {
        let mut content = format!("file {i}: ").into_bytes();
        content.extend_from_slice(name);
        content.push(b'\n');
        write_file(&p(root, name), &content, t);
        t += 1_000_000_007;
    }
    // The longest legal name, ASCII and non-UTF-8.
    write_file(&p(root, &[b'x'; 255]), b"255 x\n", t);
    let mut long_latin1 = vec![0xe9u8; 254];
    long_latin1.push(b'!');
    write_file(&p(root, &long_latin1), b"255 bytes of latin-1\n", t + 1);
    // A path over 2,000 bytes (GNU tar long names), made of 250-byte folder names.
    let mut deep = root.to_path_buf();
    for i in 0..8u8 {
        let mut n = vec![b'a' + i; 249];
        n.push(b'\n');
        deep = deep.join(OsStr::from_bytes(&n));
    }
    write_file(&deep.join("bottom -rf"), b"deep\n", t + 2);

    // Folders with hostile names, holding hostile names.
    let d = p(root, b"dir \n'\"$(touch snapnest-pwned-1)`;|&\xe9");
    write_file(&d.join("--"), b"inner dashes\n", t + 3);
    write_file(&d.join("-rf"), b"inner -rf\n", t + 4);
    write_file(&p(&d, b"...\n..."), b"inner dots\n", t + 5);
    fs::create_dir_all(p(root, b"-d/--help")).unwrap(); // an empty folder named --help
    write_file(&p(root, b"-d/-x"), b"-x\n", t + 6);
    fs::create_dir_all(p(root, b". ./ ..")).unwrap();
    // `$(touch /tmp/pwned)` as a path below the source folder: folder `$(touch `, folder
    // `tmp`, file `pwned)`. Pasted into a shell command, it would create /tmp/pwned.
    write_file(&root.join("$(touch /tmp/pwned)"), b"pwned?\n", t + 7);
    write_file(&root.join("x; touch /tmp/pwned; #/y"), b"y\n", t + 8);

    // Symlinks with hostile names and targets, stored verbatim.
    symlink("new\nline", p(root, b"link\nto newline")).unwrap();
    symlink(OsStr::from_bytes(b"caf\xe9"), p(root, b"link-\xe9")).unwrap();
    symlink("$(touch snapnest-pwned-2)", root.join("-link")).unwrap();
    symlink(OsStr::from_bytes(&[b'y'; 1000]), root.join("long-target")).unwrap();
    symlink("../../../../../../etc/shadow", root.join("dots")).unwrap();

    // Odd modes and owners on odd names.
    fs::set_permissions(p(root, b"-rf"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(p(root, b"caf\xe9"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(p(root, b"-d"), fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::lchown(p(root, b"it's"), Some(4321), Some(8765)).unwrap();
    std::os::unix::fs::lchown(root.join("-link"), Some(4321), Some(8765)).unwrap();
}

fn restore_and_compare(s: &Setup, host: &str, src: &Path, whole_seconds: bool) {
    let to = s.dir.path().join("restored");
    let out = s.snapnest(&[
        "restore",
        host,
        "latest",
        src.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "restore: {}", text(&out));
    let back = to.join(src.file_name().unwrap());
    if whole_seconds {
        assert_same_tree_secs(src, &back);
    } else {
        assert_same_tree(src, &back);
    }
}

#[test]
fn hostile_names_round_trip_through_the_ssh_stream() {
    clear_pwned_markers();
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    hostile_tree(src.path());
    let s = one_host(&sshd.host_toml("box", &[src.path()], ""));

    let out = backup(&s, "box", 0);
    assert!(out.contains("box: good via ssh (find+tar stream)"), "{out}");
    assert!(!out.contains("warning") && !out.contains("error"), "{out}");
    assert_not_pwned();
    let snap = s.latest("box");
    assert_same_tree(src.path(), &in_snap(&snap, src.path()));
    assert_storage_clean(&s, "box", src.path());

    // The catalog keeps the raw names: the second run recognises every file.
    let out = backup(&s, "box", 0);
    assert!(
        out.contains("box: good") && out.contains("(0 new files"),
        "{out}"
    );
    assert_not_pwned();
    assert_same_tree(src.path(), &in_snap(&s.latest("box"), src.path()));
    assert_storage_clean(&s, "box", src.path());

    restore_and_compare(&s, "box", src.path(), false);
    assert_not_pwned();
}

#[test]
fn hostile_names_round_trip_through_sftp() {
    clear_pwned_markers();
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    hostile_tree(src.path());
    let s = one_host(&sshd.host_toml("box", &[src.path()], "transfer = \"sftp\""));

    let out = backup(&s, "box", 0);
    assert!(out.contains("box: good via ssh (sftp)"), "{out}");
    assert!(!out.contains("warning") && !out.contains("error"), "{out}");
    assert_not_pwned();
    let snap = s.latest("box");
    assert_same_tree_secs(src.path(), &in_snap(&snap, src.path()));
    assert_storage_clean(&s, "box", src.path());

    let out = backup(&s, "box", 0);
    assert!(
        out.contains("box: good") && out.contains("(0 new files"),
        "{out}"
    );
    assert_same_tree_secs(src.path(), &in_snap(&s.latest("box"), src.path()));
    assert_storage_clean(&s, "box", src.path());

    restore_and_compare(&s, "box", src.path(), true);
    assert_not_pwned();
}

#[test]
fn hostile_names_round_trip_from_a_local_folder() {
    clear_pwned_markers();
    let src = tempfile::tempdir().unwrap();
    hostile_tree(src.path());
    let s = one_host(&local_host("box", src.path()));

    let out = backup(&s, "box", 0);
    assert!(out.contains("box: good via local"), "{out}");
    assert!(!out.contains("warning") && !out.contains("error"), "{out}");
    assert_not_pwned();
    let snap = s.latest("box");
    assert_same_tree(src.path(), &in_snap(&snap, src.path()));
    assert_storage_clean(&s, "box", src.path());
}

// ---------------------------------------------------------------------------------------------
// 3: symlinks are stored, never followed
// ---------------------------------------------------------------------------------------------

#[test]
fn symlinks_out_of_the_tree_are_stored_as_symlinks_and_never_followed() {
    let sshd = Sshd::start();
    let outside = tempfile::tempdir().unwrap();
    let marker = format!(
        "TOP-SECRET-{}-{}",
        std::process::id(),
        outside.path().display()
    );
    write_file(
        &outside.path().join("secret.txt"),
        marker.as_bytes(),
        1_700_000_000_000_000_000,
    );
    write_file(
        &outside.path().join("sub/deeper.txt"),
        marker.as_bytes(),
        1_700_000_000_000_000_000,
    );

    let src = tempfile::tempdir().unwrap();
    let r = src.path();
    write_file(&r.join("plain.txt"), b"plain\n", 1_700_000_000_000_000_000);
    fs::create_dir(r.join("sub")).unwrap();
    let secret_abs = outside.path().join("secret.txt");
    let links: Vec<(PathBuf, PathBuf)> = vec![
        (r.join("abs-file"), secret_abs.clone()),
        (r.join("abs-dir"), outside.path().to_path_buf()),
        (r.join("etc-passwd"), PathBuf::from("/etc/passwd")),
        (r.join("etc"), PathBuf::from("/etc")),
        (r.join("root"), PathBuf::from("/")),
        (
            r.join("sub/rel-out"),
            Path::new("../..")
                .join(outside.path().file_name().unwrap())
                .join("secret.txt"),
        ),
        (
            r.join("sub/rel-out-dir"),
            Path::new("../..").join(outside.path().file_name().unwrap()),
        ),
        (r.join("self-loop"), PathBuf::from("self-loop")),
        (r.join("chain"), PathBuf::from("abs-dir")),
        (r.join("dangling"), PathBuf::from("/nonexistent/at/all")),
        (r.join("in-tree"), PathBuf::from("plain.txt")),
    ];
    for (l, t) in &links {
        symlink(t, l).unwrap();
    }
    // Sanity: the out-of-tree links really reach the secret.
    assert_eq!(fs::read(r.join("sub/rel-out")).unwrap(), marker.as_bytes());
    assert_eq!(fs::read(r.join("abs-file")).unwrap(), marker.as_bytes());

    let hosts = format!(
        "{}{}{}",
        sshd.host_toml("stream", &[r], ""),
        sshd.host_toml("sftp", &[r], "transfer = \"sftp\""),
        local_host("local", r)
    );
    let s = one_host(&hosts);
    for (host, method) in [
        ("stream", "ssh (find+tar stream)"),
        ("sftp", "ssh (sftp)"),
        ("local", "local"),
    ] {
        let out = backup(&s, host, 0);
        assert!(out.contains(&format!("{host}: good via {method}")), "{out}");
        let snap = s.latest(host);
        let copy = in_snap(&snap, r);
        for (l, t) in &links {
            let c = in_snap(&snap, l);
            let md = fs::symlink_metadata(&c)
                .unwrap_or_else(|e| panic!("{host}: {} missing: {e}", c.display()));
            assert!(
                md.file_type().is_symlink(),
                "{host}: {} is a symlink",
                c.display()
            );
            assert_eq!(
                &fs::read_link(&c).unwrap(),
                t,
                "{host}: target of {}",
                c.display()
            );
        }
        // Nothing reached through a link: no file holds the secret, no extra entries.
        for f in regular_files(&snap) {
            assert!(
                !fs::read(&f)
                    .unwrap()
                    .windows(marker.len())
                    .any(|w| w == marker.as_bytes()),
                "{host}: {} holds the content of a symlink's target",
                f.display()
            );
        }
        assert_eq!(
            regular_files(&snap).len(),
            1,
            "{host}: only plain.txt is a file"
        );
        assert!(
            !in_snap(&snap, outside.path()).exists(),
            "{host}: the outside folder is in the snapshot"
        );
        if host == "sftp" {
            assert_same_tree_secs(r, &copy);
        } else {
            assert_same_tree(r, &copy);
        }
        // The secret is untouched.
        assert_eq!(fs::read(&secret_abs).unwrap(), marker.as_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// 4: FIFOs, sockets and devices are recorded and skipped, never opened
// ---------------------------------------------------------------------------------------------

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success(), "mkfifo {}", path.display());
}

/// Special files in `root`: FIFOs (one nested), a live unix socket, and if possible a
/// character device like /dev/zero (reading it would never end) and one like /dev/tty.
/// Returns the listener (keep it alive) and the special paths made.
fn special_tree(root: &Path) -> (std::os::unix::net::UnixListener, Vec<PathBuf>) {
    sample_tree(&root.join("tree"));
    write_file(
        &root.join("plain.txt"),
        b"plain\n",
        1_700_000_000_000_000_000,
    );
    write_file(&root.join("sub/ok.txt"), b"ok\n", 1_700_000_000_000_000_000);
    let mut specials = vec![root.join("fifo"), root.join("sub/fifo2")];
    for f in &specials {
        mkfifo(f);
    }
    let sock = root.join("sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    specials.push(sock);
    for (name, major, minor) in [("zero", "1", "5"), ("tty", "5", "0")] {
        let dev = root.join(name);
        let ok = Command::new("mknod")
            .arg(&dev)
            .args(["c", major, minor])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            specials.push(dev);
        } else {
            eprintln!("note: mknod not permitted here; no device node in the tree");
        }
    }
    (listener, specials)
}

fn catalog_kinds(s: &Setup, host: &str) -> Vec<(Vec<u8>, String)> {
    let db = rusqlite::Connection::open(s.storage.join(".snapnest/catalog.db")).unwrap();
    let mut st = db
        .prepare(
            "SELECT e.path, e.kind FROM entries e JOIN snapshots s ON s.id = e.snapshot_id \
             WHERE s.host = ?1 ORDER BY s.id DESC, e.path",
        )
        .unwrap();
    let rows = st
        .query_map([host], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    rows
}

#[test]
fn fifos_sockets_and_devices_are_skipped_without_hanging() {
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    let r = src.path();
    let (_listener, specials) = special_tree(r);

    let hosts = format!(
        "{}{}{}",
        sshd.host_toml("stream", &[r], ""),
        sshd.host_toml("sftp", &[r], "transfer = \"sftp\""),
        local_host("local", r)
    );
    let s = one_host(&hosts);
    for (host, method) in [
        ("stream", "ssh (find+tar stream)"),
        ("sftp", "ssh (sftp)"),
        ("local", "local"),
    ] {
        let (code, out) = backup_within(&s, host, DEADLINE);
        assert_eq!(code, 0, "{host}: {out}");
        assert!(out.contains(&format!("{host}: good via {method}")), "{out}");
        let snap = s.latest(host);
        let copy = in_snap(&snap, r);
        for sp in &specials {
            assert!(
                fs::symlink_metadata(in_snap(&snap, sp)).is_err(),
                "{host}: special file {} is in the snapshot",
                sp.display()
            );
        }
        // Everything else is there.
        assert_eq!(
            names_in(&copy),
            vec![b"plain.txt".to_vec(), b"sub".to_vec(), b"tree".to_vec()],
            "{host}"
        );
        assert_eq!(
            names_in(&copy.join("sub")),
            vec![b"ok.txt".to_vec()],
            "{host}"
        );
        assert_eq!(fs::read(copy.join("plain.txt")).unwrap(), b"plain\n");
        assert_eq!(fs::read(copy.join("sub/ok.txt")).unwrap(), b"ok\n");
        if host == "sftp" {
            assert_same_tree_secs(&r.join("tree"), &copy.join("tree"));
        } else {
            assert_same_tree(&r.join("tree"), &copy.join("tree"));
        }
        // Recorded in the manifest as what they are.
        let kinds = catalog_kinds(&s, host);
        for sp in &specials {
            let rel = sp.strip_prefix("/").unwrap().as_os_str().as_bytes();
            let kind = kinds
                .iter()
                .find(|(p, _)| p == rel)
                .map(|(_, k)| k.as_str())
                .unwrap_or_else(|| panic!("{host}: {} not recorded", sp.display()));
            let expected = match sp.file_name().unwrap().to_str().unwrap() {
                "sock" => "s",
                "zero" | "tty" => "c",
                _ => "p",
            };
            assert_eq!(kind, expected, "{host}: kind of {}", sp.display());
        }
        // The FIFO is still a FIFO nobody wrote to.
        assert!(fs::symlink_metadata(r.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
    }
}

// ---------------------------------------------------------------------------------------------
// 5: unreadable files and folders (the remote side as a non-root user)
// ---------------------------------------------------------------------------------------------

const TEST_USER: &str = "snapnest-test";

/// A login-able system user for the remote side; None when users cannot be created here.
fn test_user() -> Option<(u32, u32)> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, TEST_USER]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    if id("-u").is_none() {
        let st = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", TEST_USER])
            .status();
        match st {
            Ok(st) if st.success() || id("-u").is_some() => {}
            other => {
                eprintln!("useradd {TEST_USER} failed: {other:?}");
                return None;
            }
        }
    }
    // A fresh account is locked ('!' password), and sshd without PAM refuses locked
    // accounts even for key logins: '*' means "no password" without locking.
    let st = Command::new("usermod")
        .args(["-p", "*", TEST_USER])
        .status()
        .ok()?;
    assert!(st.success(), "usermod -p '*' {TEST_USER}");
    Some((id("-u")?, id("-g")?))
}

/// sshd reads AuthorizedKeysFile as the logging-in user: let others reach it.
fn let_anyone_read_authorized_keys(sshd: &Sshd) {
    fs::set_permissions(sshd.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(
        sshd.dir.path().join("authorized_keys"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
}

#[test]
fn unreadable_files_and_folders_give_a_partial_snapshot_naming_them() {
    let has_useradd = Command::new("useradd")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !has_useradd
        && Command::new("id")
            .arg(TEST_USER)
            .output()
            .map_or(true, |o| !o.status.success())
    {
        eprintln!("SKIPPED: no useradd here and no user {TEST_USER}: cannot run the remote side as non-root");
        return;
    }
    let Some((uid, gid)) = test_user() else {
        panic!("could not create/unlock user {TEST_USER} (see stderr): this test needs it");
    };
    let sshd = Sshd::start();
    let_anyone_read_authorized_keys(&sshd);

    let src = tempfile::tempdir().unwrap();
    let r = src.path();
    sample_tree(&r.join("tree"));
    write_file(
        &r.join("secret.txt"),
        b"secret\n",
        1_700_000_000_000_000_000,
    );
    write_file(
        &r.join("locked/inside.txt"),
        b"inside\n",
        1_700_000_000_000_000_000,
    );
    write_file(
        &r.join("readable.txt"),
        b"readable\n",
        1_700_000_000_000_000_000,
    );
    let st = Command::new("chown")
        .args(["-R", "-h", &format!("{uid}:{gid}")])
        .arg(r)
        .status()
        .unwrap();
    assert!(st.success());
    fs::set_permissions(r, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(r.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();

    let as_user = |name: &str, extra: &str| {
        sshd.host_toml(name, &[r], extra)
            .replace("user = \"root\"", &format!("user = \"{TEST_USER}\""))
    };
    let hosts = format!(
        "{}{}",
        as_user("stream", ""),
        as_user("sftp", "transfer = \"sftp\"")
    );
    let s = one_host(&hosts);
    let secret = r.join("secret.txt").display().to_string();
    let locked = r.join("locked").display().to_string();
    for (host, method) in [("stream", "ssh (find+tar stream)"), ("sftp", "ssh (sftp)")] {
        let out = backup(&s, host, 1);
        assert!(
            out.contains(&format!("{host}: partial via {method}")),
            "{out}"
        );
        assert!(out.contains("2 errors"), "{host}: {out}");
        let err_line = |path: &str| {
            out.lines()
                .find(|l| l.trim_start().starts_with(&format!("error {path}:")))
                .unwrap_or_else(|| panic!("{host}: no error line for {path}:\n{out}"))
                .to_string()
        };
        assert!(
            err_line(&secret)
                .to_lowercase()
                .contains("permission denied"),
            "{host}: {out}"
        );
        assert!(
            err_line(&locked)
                .to_lowercase()
                .contains("permission denied"),
            "{host}: {out}"
        );

        // Published anyway, with everything that could be read.
        let snap = s.latest(host);
        let copy = in_snap(&snap, r);
        if host == "sftp" {
            assert_same_tree_secs(&r.join("tree"), &copy.join("tree"));
        } else {
            assert_same_tree(&r.join("tree"), &copy.join("tree"));
        }
        assert_eq!(fs::read(copy.join("readable.txt")).unwrap(), b"readable\n");
        assert!(
            fs::symlink_metadata(copy.join("secret.txt")).is_err(),
            "{host}: an unread file must not appear (empty or stale) in the snapshot"
        );
        assert!(!copy.join("locked/inside.txt").exists(), "{host}");
        let list = s.snapnest(&["list", host]);
        let lt = text(&list);
        assert!(
            lt.lines()
                .any(|l| l.starts_with(host) && l.ends_with("partial")),
            "{host}: {lt}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6: hosts without GNU find/tar
// ---------------------------------------------------------------------------------------------

const BUSYBOX: &str = "/bin/busybox";

/// A folder of BusyBox applets, plus any `gnu` tools linked to the real GNU binaries.
fn busybox_path(gnu: &[&str]) -> tempfile::TempDir {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: apt-get install busybox (see .ci/run)"
    );
    let d = tempfile::tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for applet in [
        "sh", "ash", "find", "tar", "ls", "cat", "env", "stat", "head", "sed", "grep", "id",
        "test", "[", "echo", "true", "false", "mkdir", "rm", "uname", "dd", "wc", "sort",
    ] {
        symlink(BUSYBOX, d.path().join(applet)).unwrap();
    }
    for tool in gnu {
        let real = ["/usr/bin", "/bin"]
            .iter()
            .map(|b| Path::new(b).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("GNU {tool} not found"));
        fs::remove_file(d.path().join(tool)).unwrap();
        symlink(real, d.path().join(tool)).unwrap();
    }
    d
}

fn start_sshd_with_path(dir: &Path) -> Sshd {
    Sshd::start_with(&[&format!("SetEnv PATH={}", dir.display())])
}

/// What `find` and `tar` the server's shell really runs, as proof the PATH took effect.
fn remote_tools(sshd: &Sshd) -> String {
    let out = Command::new("ssh")
        .args(["-i"])
        .arg(&sshd.client_key)
        .args([
            "-p",
            &sshd.port.to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "root@127.0.0.1",
            "command -v find; command -v tar; find --version 2>&1 | head -1; tar --version 2>&1 | head -1",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn busybox_host_falls_back_to_sftp() {
    let bb = busybox_path(&[]);
    let sshd = start_sshd_with_path(bb.path());
    let tools = remote_tools(&sshd);
    assert!(
        tools.contains(&format!("{}/find", bb.path().display()))
            && tools.contains(&format!("{}/tar", bb.path().display())),
        "SetEnv PATH did not reach the server's commands: {tools}"
    );
    assert!(!tools.contains("GNU"), "{tools}");

    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    hostile_tree(&src.path().join("hostile"));
    let s = one_host(&sshd.host_toml("box", &[src.path()], ""));
    let out = backup(&s, "box", 0);
    assert!(out.contains("box: good via ssh (sftp)"), "{out}");
    assert_same_tree_secs(src.path(), &in_snap(&s.latest("box"), src.path()));
    assert_storage_clean(&s, "box", src.path());
}

#[test]
fn gnu_find_with_busybox_tar_also_falls_back_to_sftp() {
    let bb = busybox_path(&["find"]);
    let sshd = start_sshd_with_path(bb.path());
    let tools = remote_tools(&sshd);
    assert!(tools.contains("GNU findutils"), "{tools}");
    assert!(!tools.contains("GNU tar"), "{tools}");

    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let s = one_host(&sshd.host_toml("box", &[src.path()], ""));
    let out = backup(&s, "box", 0);
    assert!(out.contains("box: good via ssh (sftp)"), "{out}");
    assert_same_tree_secs(src.path(), &in_snap(&s.latest("box"), src.path()));
}

#[test]
fn forcing_the_stream_on_a_busybox_host_fails_without_publishing_a_snapshot() {
    let bb = busybox_path(&[]);
    let sshd = start_sshd_with_path(bb.path());
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let s = one_host(&sshd.host_toml("box", &[src.path()], "transfer = \"stream\""));
    let (code, out) = backup_within(&s, "box", DEADLINE);
    // find without -printf lists nothing: that is a failed run, not a partial snapshot
    // that becomes `latest` while holding none of the host's files.
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("box: failed"), "{out}");
    assert!(
        out.contains("find"),
        "the message should point at find: {out}"
    );
    assert!(s.snapshots("box").is_empty(), "{out}");
    assert!(
        fs::symlink_metadata(s.storage.join("box/latest")).is_err(),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// A configured folder reached through a symlinked parent folder
// ---------------------------------------------------------------------------------------------

#[test]
fn folder_below_a_symlinked_parent_is_backed_up_or_refused_clearly() {
    // Like /home -> /usr/home on FreeBSD/TrueNAS, with folders = ["/home/alice"].
    let sshd = Sshd::start();
    let real = tempfile::tempdir().unwrap();
    sample_tree(&real.path().join("data/alice"));
    let top = tempfile::tempdir().unwrap();
    let via = top.path().join("home");
    symlink(real.path().join("data"), &via).unwrap();
    let folder = via.join("alice");
    let hosts = format!(
        "{}{}{}",
        sshd.host_toml("stream", &[&folder], ""),
        sshd.host_toml("sftp", &[&folder], "transfer = \"sftp\""),
        local_host("local", &folder)
    );
    let s = one_host(&hosts);
    for host in ["stream", "sftp", "local"] {
        let (code, out) = backup_within(&s, host, DEADLINE);
        match code {
            // Backed up as the folder it is, stored as real folders (never through a link).
            0 => {
                let snap = s.latest(host);
                let mut p = snap.clone();
                for part in folder.strip_prefix("/").unwrap().components() {
                    p = p.join(part);
                    assert!(
                        fs::symlink_metadata(&p).unwrap().is_dir(),
                        "{host}: {} must be a real folder in the snapshot",
                        p.display()
                    );
                }
                if host == "sftp" {
                    assert_same_tree_secs(&real.path().join("data/alice"), &p);
                } else {
                    assert_same_tree(&real.path().join("data/alice"), &p);
                }
            }
            // Or refused with one message that names the symlink, and no snapshot.
            2 => {
                assert!(out.contains(&via.display().to_string()), "{host}: {out}");
                assert!(
                    out.lines().filter(|l| l.contains("error")).count() <= 2,
                    "{host}: {out}"
                );
                assert!(s.snapshots(host).is_empty(), "{host}: {out}");
            }
            _ => panic!("{host}: exit {code}, expected 0 (backed up) or 2 (refused):\n{out}"),
        }
    }
}
