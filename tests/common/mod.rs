//! Test fixtures: a real OpenSSH server on 127.0.0.1 with its own keys and config in a temp
//! folder, storage folders, trees to back up, and the real `snapnest` binary.
#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod disk;
pub mod history;
pub mod keys;
pub mod netns;
pub mod user;
#[allow(unused_imports)]
pub use disk::*;
#[allow(unused_imports)]
pub use history::{killed_history_run, name_of, set_strategy, KilledHistoryRun};

pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub client_key: PathBuf,
    pub fingerprint: String,
    child: Child,
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_with(&[])
    }

    /// Start sshd with extra `sshd_config` lines (e.g. `SetEnv PATH=…`).
    pub fn start_with(extra: &[&str]) -> Sshd {
        let port = free_port();
        let (dir, mut cfg, fingerprint) = sshd_files("127.0.0.1", port);
        let d = dir.path();
        for line in extra {
            cfg.push_str(line);
            cfg.push('\n');
        }
        fs::write(d.join("sshd_config"), cfg).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .expect("starting sshd (install openssh-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd {
            client_key: d.join("client_key"),
            dir,
            port,
            fingerprint,
            child,
        }
    }

    /// A `[[host]]` table for this server.
    pub fn host_toml(&self, name: &str, folders: &[&Path], extra: &str) -> String {
        format!(
            "[[host]]\nname = \"{name}\"\naddress = \"127.0.0.1\"\nport = {}\nuser = \"root\"\nidentity = \"{}\"\nhost_key = \"{}\"\nfolders = [{}]\n{extra}\n",
            self.port,
            self.client_key.display(),
            self.fingerprint,
            folders.iter().map(|f| format!("\"{}\"", f.display())).collect::<Vec<_>>().join(", ")
        )
    }

    /// Processes serving connections (children of the listening sshd), and theirs.
    pub fn session_pids(&self) -> Vec<u32> {
        let mut found = vec![self.child.id()];
        let mut i = 0;
        while i < found.len() {
            let parent = found[i];
            for e in fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
                    continue;
                };
                let ppid = stat
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) && !found.contains(&pid) {
                    found.push(pid);
                }
            }
            i += 1;
        }
        found.remove(0);
        found
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A server whose sessions find `bin` first on their PATH (stand-in commands).
    pub fn with_bin_on_path(bin: &Path) -> Sshd {
        Sshd::start_with(&[&format!("SetEnv PATH={}:/usr/bin:/bin", bin.display())])
    }

    /// Start the same server again (same port, keys and config) after `stop`.
    pub fn start_again(&mut self) {
        let d = self.dir.path();
        self.child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .expect("starting sshd");
        wait_until("sshd to listen again", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private sshd folder: host and client keys, the client key authorized, and the base
/// `sshd_config` text for `listen`:`port` (the caller adds lines and writes it).
pub fn sshd_files(listen: &str, port: u16) -> (tempfile::TempDir, String, String) {
    fs::create_dir_all("/run/sshd").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(&d.join("host_key"));
    keygen(&d.join("client_key"));
    fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
    fs::set_permissions(d, fs::Permissions::from_mode(0o700)).unwrap();
    let cfg = format!(
        "Port {port}\nListenAddress {listen}\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPidFile {pid}\n\
         StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\nLogLevel ERROR\nMaxStartups 100\n",
        hk = d.join("host_key").display(),
        ak = d.join("authorized_keys").display(),
        pid = d.join("sshd.pid").display(),
    );
    let fingerprint = fingerprint_of(&d.join("host_key.pub"));
    (dir, cfg, fingerprint)
}

pub fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

pub fn fingerprint_of(pubkey: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pubkey)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_string()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `[[host]]` table for a folder on this box.
pub fn local_host(name: &str, folder: &Path) -> String {
    format!(
        "[[host]]\nname = \"{name}\"\nsource = \"local\"\nfolders = [\"{}\"]\n",
        folder.display()
    )
}

/// A storage folder and a config file in a temp folder.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub storage: PathBuf,
    pub config: PathBuf,
}

impl Setup {
    /// `hosts` are `[[host]]` tables; `defaults` goes under `[defaults]`.
    pub fn new(hosts: &str, defaults: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("store");
        fs::create_dir(&storage).unwrap();
        let config = dir.path().join("snapnest.toml");
        fs::write(
            &config,
            format!(
                "[storage]\npath = \"{}\"\n\n[defaults]\n{defaults}\n\n{hosts}",
                storage.display()
            ),
        )
        .unwrap();
        Setup {
            dir,
            storage,
            config,
        }
    }

    pub fn snapnest(&self, args: &[&str]) -> Output {
        snapnest(&self.config, args)
    }

    /// Keep the snapshots in `dir` (a mounted test disk) instead of the temp folder.
    pub fn store_in(&mut self, dir: &Path) {
        let cfg = fs::read_to_string(&self.config).unwrap().replace(
            &format!("path = \"{}\"", self.storage.display()),
            &format!("path = \"{}\"", dir.display()),
        );
        fs::write(&self.config, cfg).unwrap();
        self.storage = dir.to_path_buf();
    }

    pub fn init(&self) {
        let out = self.snapnest(&["init"]);
        assert!(out.status.success(), "init: {}", text(&out));
    }

    /// Run a backup and return its output, asserting the exit code.
    pub fn backup(&self, host: &str, expect_code: i32) -> String {
        let out = self.snapnest(&["backup", host]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(expect_code), "backup {host}:\n{t}");
        t
    }

    pub fn snapshots(&self, host: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.storage.join(host))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.starts_with("20") && p.is_dir()
            })
            .collect();
        v.sort();
        v
    }

    /// `snapnest restore <host> <snapshot> <folder> --to <tmp>`, asserting success; the
    /// folder comes back as `<tmp>/<folder's name>`.
    pub fn restore_folder(&self, host: &str, snapshot: &str, folder: &Path) -> tempfile::TempDir {
        let to = tempfile::tempdir().unwrap();
        let out = self.snapnest(&[
            "restore",
            host,
            snapshot,
            &folder.display().to_string(),
            "--to",
            &to.path().display().to_string(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        to
    }

    pub fn latest(&self, host: &str) -> PathBuf {
        fs::canonicalize(self.storage.join(host).join("latest")).unwrap()
    }
}

pub fn snapnest(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Inside snapshot `snap`, the copy of source path `src`.
pub fn in_snap(snap: &Path, src: &Path) -> PathBuf {
    snap.join(src.strip_prefix("/").unwrap())
}

/// Assert two trees are the same: names (as bytes), types, content, mtimes (ns), modes,
/// owners, symlink targets.
pub fn assert_same_tree(src: &Path, copy: &Path) {
    compare_trees(src, copy, false)
}

/// Like `assert_same_tree`, but mtimes compared to the whole second (SFTP v3 has no more),
/// and the copy's sub-second part must be zero (truncated, never invented).
pub fn assert_same_tree_secs(src: &Path, copy: &Path) {
    compare_trees(src, copy, true)
}

fn compare_trees(src: &Path, copy: &Path, whole_seconds: bool) {
    use std::os::unix::ffi::OsStrExt;
    let names_in = |dir: &Path| {
        let mut v: Vec<Vec<u8>> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().as_bytes().to_vec())
            .collect();
        v.sort();
        v
    };
    let mut stack = vec![PathBuf::new()];
    let mut seen = 0;
    while let Some(rel) = stack.pop() {
        let a = src.join(&rel);
        let b = copy.join(&rel);
        let ma = fs::symlink_metadata(&a).unwrap();
        let mb = fs::symlink_metadata(&b)
            .unwrap_or_else(|e| panic!("{} missing in snapshot: {e}", b.display()));
        seen += 1;
        let what = rel.display();
        assert_eq!(ma.file_type(), mb.file_type(), "type of {what}");
        assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "mode of {what}");
        assert_eq!(
            (ma.uid(), ma.gid()),
            (mb.uid(), mb.gid()),
            "owner of {what}"
        );
        if ma.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(&a).unwrap(),
                fs::read_link(&b).unwrap(),
                "target of {what}"
            );
            continue;
        }
        if whole_seconds {
            assert_eq!(ma.mtime(), mb.mtime(), "mtime (seconds) of {what}");
            assert_eq!(mb.mtime_nsec(), 0, "sub-second mtime of {what}");
        } else {
            assert_eq!(
                (ma.mtime(), ma.mtime_nsec()),
                (mb.mtime(), mb.mtime_nsec()),
                "mtime of {what}"
            );
        }
        if ma.is_file() {
            assert!(
                fs::read(&a).unwrap() == fs::read(&b).unwrap(),
                "content of {what}"
            );
        } else if ma.is_dir() {
            let (na, nb) = (names_in(&a), names_in(&b));
            let lossy = |v: &[Vec<u8>]| {
                v.iter()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect::<Vec<_>>()
            };
            assert_eq!(lossy(&na), lossy(&nb), "entries of {what}");
            assert_eq!(na, nb, "entry bytes of {what}");
            for n in na {
                stack.push(rel.join(std::ffi::OsStr::from_bytes(&n)));
            }
        }
    }
    assert!(seen > 1);
}

/// Write a file with a given mtime (ns precision).
pub fn write_file(path: &Path, content: &[u8], mtime_ns: i64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    set_mtime(path, mtime_ns);
}

pub fn set_mtime(path: &Path, ns: i64) {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(ns as u64);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(fs::FileTimes::new().set_modified(t))
        .unwrap();
}

/// A small tree with the usual variety: nested folders, modes, symlinks, an empty folder,
/// a file with a nanosecond mtime.
pub fn sample_tree(root: &Path) {
    write_file(&root.join("a.txt"), b"hello\n", 1_700_000_000_123_456_789);
    write_file(
        &root.join("docs/report.odt"),
        &vec![7u8; 300_000],
        1_700_000_100_000_000_001,
    );
    write_file(
        &root.join("docs/deep/er/notes.md"),
        b"# notes\n",
        1_690_000_000_000_000_000,
    );
    write_file(
        &root.join("bin/run.sh"),
        b"#!/bin/sh\necho hi\n",
        1_700_000_200_000_000_000,
    );
    fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(root.join("docs/deep"), fs::Permissions::from_mode(0o711)).unwrap();
    fs::create_dir_all(root.join("empty/folder")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("link-abs")).unwrap();
    std::os::unix::fs::symlink("../../outside", root.join("docs/link-out")).unwrap();
    std::os::unix::fs::symlink("missing", root.join("dangling")).unwrap();
    std::os::unix::fs::chown(root.join("a.txt"), Some(1234), Some(5678)).unwrap();
}

/// Poll `f` every 100 ms until it holds; panic naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `snapnest daemon` process on a Setup's config, its stderr in `log`.
pub struct DaemonProc {
    child: Child,
    pub log: PathBuf,
    pub state_dir: PathBuf,
}

impl Setup {
    /// Add a `[daemon]` table with a private state folder and quick presence checks.
    pub fn with_daemon_table(&self, extra: &str) -> PathBuf {
        let state = self.dir.path().join("state");
        let mut text = fs::read_to_string(&self.config).unwrap();
        text.push_str(&format!(
            "\n[daemon]\nstate_dir = \"{}\"\npresence_interval = \"5s\"\nshutdown_grace = \"5s\"\n{extra}\n",
            state.display()
        ));
        fs::write(&self.config, text).unwrap();
        state
    }

    pub fn start_daemon(&self) -> DaemonProc {
        self.start_daemon_on(&self.config, &self.dir.path().join("state"))
    }

    /// A daemon on another config file (whose state folder is `state_dir`).
    pub fn start_daemon_on(&self, config: &Path, state_dir: &Path) -> DaemonProc {
        let state_dir = state_dir.to_path_buf();
        let log = self.dir.path().join(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_snapnest"))
            .arg("--config")
            .arg(config)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = DaemonProc {
            child,
            log,
            state_dir,
        };
        wait_until(
            "the daemon to write its status",
            Duration::from_secs(10),
            || d.status().is_some(),
        );
        d
    }
}

impl DaemonProc {
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's status file, parsed.
    pub fn status(&self) -> Option<serde_json::Value> {
        let text = fs::read_to_string(self.state_dir.join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The `state` word of one host in the status file.
    pub fn host_state(&self, host: &str) -> String {
        self.status()
            .and_then(|s| {
                s["hosts"]
                    .as_array()?
                    .iter()
                    .find(|h| h["name"] == host)
                    .map(|h| h["state"]["state"].as_str().unwrap_or("").to_string())
            })
            .unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Wait for the process to exit; its exit code, or None if it outlived `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in for a command on a test host's PATH (e.g. `notify-send`) that appends each
/// argument on its own line, then `bus=$DBUS_SESSION_BUS_ADDRESS`, to the returned file.
pub fn recording_command(bin: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let record = bin.join(format!("{name}.args"));
    let script = bin.join(name);
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> {r}\necho \"bus=$DBUS_SESSION_BUS_ADDRESS\" >> {r}\n",
            r = record.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    record
}

/// Thirty 1 MB files `f00.bin`..`f29.bin`: with `bwlimit = "4MB/s"` a first run takes
/// seconds, long enough to cut the network under it mid-transfer.
pub fn thirty_megabytes(dir: &Path) {
    for i in 0..30 {
        write_file(
            &dir.join(format!("f{i:02}.bin")),
            &vec![i as u8; 1_000_000],
            1_700_000_000_000_000_000 + i,
        );
    }
}

/// `snapnest backup <host>` started in the background, its output piped.
pub fn spawn_backup(s: &Setup, host: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .args(["--config", s.config.to_str().unwrap(), "backup", host])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Forty files of 100 kB in four folders: about four seconds of fetching at 1 MB/s.
pub fn forty_files(root: &Path) {
    for i in 0..40 {
        write_file(
            &root.join(format!("d{}/f{i:02}.bin", i % 4)),
            &vec![i as u8; 100_000],
            1_700_000_000_000_000_000 + i,
        );
    }
}

/// Start `snapnest backup <host>`, let it run for `after`, then SIGKILL it (asserting it was
/// still running).
pub fn kill_backup_after(s: &Setup, host: &str, after: Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .args(["--config", s.config.to_str().unwrap(), "backup", host])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run should still be going"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// The run after an interrupted one, without the bandwidth limit that made it slow enough to
/// interrupt: its output and how many files it found complete in the staging folder.
pub fn rerun_unthrottled(s: &Setup, host: &str) -> (String, u64) {
    let fast = fs::read_to_string(&s.config)
        .unwrap()
        .replace("bwlimit = \"1MB/s\"", "");
    fs::write(&s.config, fast).unwrap();
    let out = s.backup(host, 0);
    let resumed: u64 = out
        .split(" resumed")
        .next()
        .and_then(|t| t.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary mentions resumed files: {out}"));
    (out, resumed)
}
