//! Large files that grew at their end, pulled from a real OpenSSH server on loopback through
//! a byte-counting TCP relay: only the new tail crosses the wire when the old part is
//! unchanged (checked by sha256 on the host), the whole file otherwise, and the snapshot is
//! exact either way.

mod common;
mod mounts;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const MIB: usize = 1 << 20;

/// A relay in front of sshd that counts the bytes the host sends to the box.
struct Counted {
    port: u16,
    down: Arc<AtomicU64>,
}

impl Counted {
    fn start(target: u16) -> Counted {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let down = Arc::new(AtomicU64::new(0));
        let d = down.clone();
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                let server = TcpStream::connect(("127.0.0.1", target)).unwrap();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let d = d.clone();
                std::thread::spawn(move || pump(server, c2, Some(d)));
                std::thread::spawn(move || pump(client, s2, None));
            }
        });
        Counted { port, down }
    }

    fn take(&self) -> u64 {
        self.down.swap(0, Ordering::SeqCst)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(c) = &count {
                    c.fetch_add(n as u64, Ordering::SeqCst);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Deterministic, incompressible-looking bytes (libssh2 does not compress, but be sure).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Host {
    sshd: Sshd,
    relay: Counted,
    src: tempfile::TempDir,
    setup: Setup,
}

impl Host {
    fn folder(&self) -> PathBuf {
        self.src.path().join("home")
    }

    fn big(&self) -> PathBuf {
        self.folder().join("logs/big.log")
    }

    fn backup(&self, code: i32) -> (String, u64) {
        self.relay.take();
        let out = self.setup.backup("laptop", code);
        (out, self.relay.take())
    }

    fn latest_big(&self) -> PathBuf {
        in_snap(&self.setup.latest("laptop"), &self.big())
    }

    fn assert_exact(&self) {
        assert_same_tree(
            &self.folder(),
            &in_snap(&self.setup.latest("laptop"), &self.folder()),
        );
        let v = self.setup.snapnest(&["verify", "laptop"]);
        assert_eq!(v.status.code(), Some(0), "verify: {}", text(&v));
        assert!(text(&v).contains(", 0 not hashed"), "{}", text(&v));
    }
}

/// A host with a 6 MiB log and a few small files, backed up once through the relay.
fn host_with_log(sshd: Sshd, extra: &str) -> Host {
    host_with_log_on(sshd, extra, None)
}

/// The same, its snapshots stored in `store` (a mounted test disk) when given.
fn host_with_log_on(sshd: Sshd, extra: &str, store: Option<&Path>) -> Host {
    let relay = Counted::start(sshd.port);
    let src = tempfile::tempdir().unwrap();
    let home = src.path().join("home");
    sample_tree(&home);
    write_file(
        &home.join("logs/big.log"),
        &noise(6 * MIB, 1),
        1_700_000_000_000_000_000,
    );
    let toml = sshd.host_toml("laptop", &[&home], extra).replace(
        &format!("port = {}", sshd.port),
        &format!("port = {}", relay.port),
    );
    let mut setup = Setup::new(&toml, "");
    if let Some(dir) = store {
        setup.store_in(dir);
    }
    setup.init();
    let h = Host {
        sshd,
        relay,
        src,
        setup,
    };
    let (_, first) = h.backup(0);
    assert!(
        first > 6 * MIB as u64,
        "the first run fetches the log: {first}"
    );
    h
}

fn append(path: &Path, bytes: &[u8], mtime_ns: i64) {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    set_mtime(path, mtime_ns);
}

/// What crossed the wire for one unchanged-prefix append of `added` bytes: the tail and the
/// run's fixed cost (handshake, probe, listing), far below the 6 MiB file.
/// `before` is the file as the previous snapshot holds it, which must stay so.
fn assert_only_the_tail(h: &Host, out: &str, wire: u64, added: u64, before: &[u8]) {
    assert!(
        wire >= added && wire < added + 400_000,
        "{wire} bytes on the wire for {added} appended to a 6 MiB file: {out}"
    );
    assert!(out.contains("1 new files"), "{out}");
    // A new inode in the new snapshot; the older snapshot keeps its version.
    let snaps = h.setup.snapshots("laptop");
    let old = in_snap(&snaps[snaps.len() - 2], &h.big());
    assert_ne!(
        fs::metadata(&old).unwrap().ino(),
        fs::metadata(h.latest_big()).unwrap().ino()
    );
    assert!(
        fs::read(&old).unwrap() == before,
        "the older snapshot's copy changed"
    );
}

#[test]
fn appended_log_sends_only_its_tail() {
    let h = host_with_log(Sshd::start(), "");
    let tail = noise(300_000, 2);
    append(&h.big(), &tail, 1_700_000_100_000_000_000);
    let (out, wire) = h.backup(0);
    assert!(out.contains("via ssh (find+tar stream)"), "{out}");
    assert_only_the_tail(&h, &out, wire, tail.len() as u64, &noise(6 * MIB, 1));
    h.assert_exact();

    // And again from the new snapshot: the appended copy is itself a good base.
    let before = fs::read(h.big()).unwrap();
    append(&h.big(), &noise(100_000, 3), 1_700_000_200_000_000_000);
    let (out, wire) = h.backup(0);
    assert_only_the_tail(&h, &out, wire, 100_000, &before);
    h.assert_exact();
}

#[test]
fn rewritten_start_is_fetched_whole() {
    let h = host_with_log(Sshd::start(), "");
    // One byte changed in the old part, then appended to: not an append.
    let mut data = fs::read(h.big()).unwrap();
    data[1000] ^= 0xff;
    data.extend_from_slice(&noise(50_000, 4));
    write_file(&h.big(), &data, 1_700_000_100_000_000_000);
    let (out, wire) = h.backup(0);
    assert!(
        wire > data.len() as u64,
        "the whole file is fetched again: {wire} bytes: {out}"
    );
    assert!(
        fs::read(h.latest_big()).unwrap() == data,
        "stored as it is now"
    );
    h.assert_exact();
}

#[test]
fn sftp_reads_the_tail_at_an_offset() {
    let h = host_with_log(Sshd::start(), "transfer = \"sftp\"");
    let tail = noise(200_000, 5);
    append(&h.big(), &tail, 1_700_000_100_000_000_000);
    let (out, wire) = h.backup(0);
    assert!(out.contains("via ssh (sftp)"), "{out}");
    assert_only_the_tail(&h, &out, wire, tail.len() as u64, &noise(6 * MIB, 1));
    // SFTP times are whole seconds: compare what SFTP can carry.
    assert!(
        fs::read(h.latest_big()).unwrap() == fs::read(h.big()).unwrap(),
        "exact"
    );
}

#[test]
fn filter_key_fetches_tails_too() {
    let h = host_with_log(Sshd::start(), "");
    let filter = h.src.path().join("snapnest-filter");
    let ak = h.sshd.authorized_keys();
    let out = h.setup.snapnest(&[
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
    assert!(out.status.success(), "authorize --install: {}", text(&out));
    let tail = noise(250_000, 6);
    append(&h.big(), &tail, 1_700_000_100_000_000_000);
    let (out, wire) = h.backup(0);
    assert!(out.contains("via ssh (find+tar stream)"), "{out}");
    assert_only_the_tail(&h, &out, wire, tail.len() as u64, &noise(6 * MIB, 1));
    h.assert_exact();
}

/// A `tail` on the host's PATH that runs the real one, after `before` (shell code, with the
/// file as "$f").
fn wrapped_tail(bin: &Path, before: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = bin.join("tail");
    fs::write(
        &p,
        format!("#!/bin/sh\nfor a in \"$@\"; do f=$a; done\n{before}\nexec /usr/bin/tail \"$@\"\n"),
    )
    .unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_file_growing_while_its_tail_is_read_is_reported_and_fetched_whole_next_time() {
    let bin = tempfile::tempdir().unwrap();
    wrapped_tail(bin.path(), "");
    let h = host_with_log(Sshd::with_bin_on_path(bin.path()), "");
    append(&h.big(), &noise(100_000, 7), 1_700_000_100_000_000_000);
    // It grows again between the listing and the reading of its tail.
    wrapped_tail(bin.path(), "printf 'late' >> \"$f\"");
    let (out, wire) = h.backup(0);
    assert!(out.contains("changed while being read"), "{out}");
    assert!(out.contains("warnings"), "{out}");
    assert!(wire < 1_000_000, "still only the tail: {wire}: {out}");
    // What was stored is the file as listed: the old part and the tail up to the listed size.
    let now = fs::read(h.big()).unwrap();
    let stored = fs::read(h.latest_big()).unwrap();
    assert!(
        stored[..] == now[..now.len() - 4],
        "stored up to the listed size"
    );

    // The changed copy is no base: the next run fetches the file whole, and it is exact.
    wrapped_tail(bin.path(), "");
    let (out, wire) = h.backup(0);
    assert!(wire > 6 * MIB as u64, "{wire}: {out}");
    h.assert_exact();
}

#[test]
fn killed_during_a_tail_publishes_nothing_and_the_next_run_finishes() {
    let bin = tempfile::tempdir().unwrap();
    let h = {
        wrapped_tail(bin.path(), "");
        host_with_log(Sshd::with_bin_on_path(bin.path()), "")
    };
    let tail = noise(500_000, 8);
    append(&h.big(), &tail, 1_700_000_100_000_000_000);
    // Send part of the tail, then hang: the run is killed mid-append.
    wrapped_tail(
        bin.path(),
        "/usr/bin/tail \"$@\" | head -c 100000; sleep 30; exit 0",
    );
    let mut child = spawn_backup(&h.setup, "laptop");
    let host_dir = h.setup.storage.join("laptop");
    let rel = h.big().strip_prefix("/").unwrap().to_path_buf();
    let staged = || -> Option<PathBuf> {
        fs::read_dir(&host_dir).ok()?.flatten().find_map(|e| {
            let p = e.path().join(&rel);
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with(".incomplete") && p.exists()).then_some(p)
        })
    };
    wait_until(
        "part of the tail to be written",
        Duration::from_secs(30),
        || staged().is_some_and(|p| fs::metadata(p).unwrap().len() > 6 * MIB as u64),
    );
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(
        h.setup.snapshots("laptop").len(),
        1,
        "nothing new published"
    );
    assert!(
        fs::read(h.latest_big()).unwrap() == noise(6 * MIB, 1),
        "latest unchanged"
    );
    let half = staged().unwrap();
    assert_ne!(
        fs::metadata(&half).unwrap().mtime(),
        1_700_000_100,
        "a half-written file does not look finished"
    );

    wrapped_tail(bin.path(), "");
    let (out, wire) = h.backup(0);
    assert_only_the_tail(&h, &out, wire, tail.len() as u64, &noise(6 * MIB, 1));
    h.assert_exact();
}

#[test]
fn sftp_only_key_cannot_hash_so_the_file_is_fetched_whole() {
    let h = host_with_log(Sshd::start(), "");
    let ak = h.sshd.authorized_keys();
    let out = h.setup.snapnest(&[
        "authorize",
        "laptop",
        "--mode",
        "sftp",
        "--install",
        "--authorized-keys",
        ak.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "authorize --install: {}", text(&out));
    let tail = noise(100_000, 9);
    append(&h.big(), &tail, 1_700_000_100_000_000_000);
    let (out, wire) = h.backup(0);
    assert!(out.contains("via ssh (sftp)"), "{out}");
    // No command runs for this key, so nothing can vouch for the old part: all of it again.
    assert!(wire > 6 * MIB as u64, "{wire}: {out}");
    assert!(
        fs::read(h.latest_big()).unwrap() == fs::read(h.big()).unwrap(),
        "exact"
    );
}

/// Extents of `p` that `filefrag` marks shared (reflinked with another file).
fn shared_extents(p: &Path) -> usize {
    let out = std::process::Command::new("filefrag")
        .arg("-v")
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("shared"))
        .count()
}

#[test]
fn on_btrfs_and_xfs_the_old_part_is_shared_not_copied() {
    use mounts::{Fs, Mounted};
    for (fs, mib) in [(Fs::Btrfs, 160), (Fs::Xfs, 300)] {
        let m = Mounted::new(fs, mib);
        let h = host_with_log_on(Sshd::start(), "", Some(&m.mnt));
        let tail = noise(200_000, 10);
        append(&h.big(), &tail, 1_700_000_100_000_000_000);
        let (out, wire) = h.backup(0);
        assert_only_the_tail(&h, &out, wire, tail.len() as u64, &noise(6 * MIB, 1));
        h.assert_exact();
        assert!(
            shared_extents(&h.latest_big()) > 0,
            "{fs:?}: the old part is a reflink of the stored copy: {out}"
        );
    }
}

#[test]
fn busybox_host_hashes_with_its_applets_and_sends_the_tail_by_sftp() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: apt-get install busybox (see .ci/run)"
    );
    // Only BusyBox on the host's PATH: no GNU find/tar (so SFTP), BusyBox's xargs, head and
    // sha256sum for the check.
    let bin = tempfile::tempdir().unwrap();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for applet in [
        "sh",
        "find",
        "tar",
        "cat",
        "head",
        "tail",
        "xargs",
        "sha256sum",
        "stat",
        "test",
        "[",
        "echo",
        "id",
        "grep",
        "wc",
    ] {
        symlink(busybox, bin.path().join(applet)).unwrap();
    }
    let sshd = Sshd::start_with(&[&format!("SetEnv PATH={}", bin.path().display())]);
    let h = host_with_log(sshd, "");
    let tail = noise(150_000, 11);
    append(&h.big(), &tail, 1_700_000_100_000_000_000);
    let (out, wire) = h.backup(0);
    assert!(out.contains("via ssh (sftp)"), "{out}");
    assert_only_the_tail(&h, &out, wire, tail.len() as u64, &noise(6 * MIB, 1));
    assert!(
        fs::read(h.latest_big()).unwrap() == fs::read(h.big()).unwrap(),
        "exact"
    );
}
