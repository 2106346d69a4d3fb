//! `snapnest probe`: learn what a destination folder can do by trying it, in a scratch
//! folder that is removed afterwards. Every finding says how it was learnt.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::btrfs;
use super::fsinfo::{self, Family, Identity};
use crate::error::{Error, IoContext, Result};

/// One capability: whether it works, and what the experiment saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn yes(detail: impl Into<String>) -> Check {
        Check {
            ok: true,
            detail: detail.into(),
        }
    }
    fn no(detail: impl Into<String>) -> Check {
        Check {
            ok: false,
            detail: detail.into(),
        }
    }
    /// For probes recorded before a check existed.
    fn assumed() -> Check {
        Check::yes("assumed (recorded before this was probed)")
    }
    fn from_io(r: io::Result<()>, yes: &str) -> Check {
        match r {
            Ok(()) => Check::yes(yes),
            Err(e) => Check::no(e.to_string()),
        }
    }
}

/// Everything `probe` learnt about a destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Findings {
    pub path: PathBuf,
    pub filesystem: String,
    pub identity: Identity,
    pub hard_links: Check,
    /// Links one file may have: measured when reached cheaply, else the filesystem's known limit.
    pub link_limit: Option<u64>,
    pub link_limit_note: String,
    pub symlinks: Check,
    /// Smallest mtime step the destination keeps, in nanoseconds.
    pub mtime_step_ns: u64,
    pub mode_kept: Check,
    pub owner_kept: Check,
    pub case_sensitive: bool,
    /// Bytes refused in a name (of `:*?"<>|\`, 0x01 and 0xff as invalid UTF-8).
    pub refused_bytes: Vec<u8>,
    /// Longest name accepted, in bytes (of ASCII letters).
    pub max_name_bytes: u32,
    /// Largest file size, when there is a limit below 4 GiB + 1.
    pub max_file_size: Option<u64>,
    pub max_file_size_note: String,
    pub sparse_files: Check,
    pub reflink: Check,
    pub btrfs_snapshots: Check,
    pub durable_on_close: Check,
    /// Data appended to an existing file through a new descriptor reads back (the catalog
    /// depends on it; fusefat 1.0 loses it).
    pub appends_kept: Check,
    /// A renamed folder keeps what it holds (fusefat 1.0 loses it): else snapshots are
    /// published by moving their files one by one.
    #[serde(default = "Check::assumed")]
    pub folder_renames: Check,
    pub loop_mount: Check,
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
}

const FOUR_GIB: u64 = 4 << 30;
const ODD_CHARS: &[u8] = b":*?\"<>|\\\x01\xff";
/// A time with odd seconds and all nine sub-second digits set.
const PROBE_TIME_NS: i64 = 1_700_000_001_123_456_789;

/// Probe `dir` (an existing folder). Leaves nothing behind, also when an experiment fails.
pub fn probe(dir: &Path) -> Result<Findings> {
    let md = fs::metadata(dir).at(dir, "probing")?;
    if !md.is_dir() {
        return Err(Error::Other(format!("{} is not a folder", dir.display())));
    }
    let scratch = dir.join(format!(".snapnest-probe-{}", std::process::id()));
    let _ = remove_scratch(&scratch);
    fs::create_dir(&scratch).at(&scratch, "creating probe folder in")?;
    let result = run(dir, &scratch);
    let cleaned = remove_scratch(&scratch);
    let findings = result?;
    cleaned.at(&scratch, "removing probe folder")?;
    Ok(findings)
}

fn run(dir: &Path, s: &Path) -> Result<Findings> {
    let identity = Identity::of(dir).at(dir, "reading filesystem of")?;
    let mount = fsinfo::mount_of(dir);
    let (filesystem, family) = fsinfo::name_and_family(mount.as_ref());
    let file = |name: &str, content: &[u8]| -> Result<PathBuf> {
        let p = s.join(name);
        fs::write(&p, content).at(&p, "writing probe file")?;
        Ok(p)
    };
    let a = file("a", b"snapnest probe\n")?;

    let hard_links = Check::from_io(
        fs::hard_link(&a, s.join("a-link")).and_then(|_| {
            let n = fs::metadata(&a)?.nlink();
            if n == 2 {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "link made but the file counts {n} links"
                )))
            }
        }),
        "a second name for one file",
    );
    let (link_limit, link_limit_note) = if hard_links.ok {
        link_limit(s, &a, family, identity.magic)
    } else {
        (None, "no hard links".into())
    };
    let symlinks = Check::from_io(
        std::os::unix::fs::symlink("a", s.join("a-sym")).and_then(|_| {
            match fs::read_link(s.join("a-sym"))?.as_os_str().as_bytes() {
                b"a" => Ok(()),
                t => Err(io::Error::other(format!(
                    "target read back as {:?}",
                    String::from_utf8_lossy(t)
                ))),
            }
        }),
        "stored as symlinks",
    );
    let mtime_step_ns = mtime_step(&a)?;
    let mode_kept = Check::from_io(
        fs::set_permissions(&a, fs::Permissions::from_mode(0o751)).and_then(
            |_| match fs::metadata(&a)?.mode() & 0o7777 {
                0o751 => Ok(()),
                m => Err(io::Error::other(format!("set 751, read back {m:o}"))),
            },
        ),
        "set 751, read back 751",
    );
    let owner_kept = if rustix::process::geteuid().is_root() {
        Check::from_io(
            std::os::unix::fs::chown(&a, Some(4321), Some(8765)).and_then(|_| {
                let m = fs::metadata(&a)?;
                match (m.uid(), m.gid()) {
                    (4321, 8765) => Ok(()),
                    (u, g) => Err(io::Error::other(format!(
                        "set 4321:8765, read back {u}:{g}"
                    ))),
                }
            }),
            "set 4321:8765, read back 4321:8765",
        )
    } else {
        Check::no("not root: owners cannot be set")
    };
    file("Case-Probe", b"")?;
    let case_sensitive = fs::symlink_metadata(s.join("case-probe")).is_err();
    let mut refused_bytes = Vec::new();
    for (i, &b) in ODD_CHARS.iter().enumerate() {
        if !name_kept(&s.join(format!("name-{i}")), &[b'n', b, b'n']) {
            refused_bytes.push(b);
        }
    }
    let max_name_bytes = max_name(s);
    let sparse_files = sparse(s)?;
    let (max_file_size, max_file_size_note) =
        match mount.as_ref().is_some_and(|m| m.fstype == "fuse.fusefat") {
            // Its offsets are signed 32-bit: writing past 2 GiB fails with EPERM (measured:
            // dd stopped at 2,147,483,648 bytes). Not measured each time: 2 GiB of writing.
            true => (
                Some(1 << 31),
                "fusefat: 2 GiB (by driver; FAT32 itself holds 4 GiB − 1)".into(),
            ),
            false => max_size(s, sparse_files.ok, family),
        };
    let reflink = Check::from_io(
        (|| {
            let src = File::open(&a)?;
            let dst = File::create(s.join("a-clone"))?;
            btrfs::clone_file(&src, &dst)
        })(),
        "FICLONE shares the blocks",
    );
    let btrfs_snapshots = if identity.magic == btrfs::BTRFS_SUPER_MAGIC {
        let sub = s.join("subvol");
        let snap = s.join("subvol-snap");
        let r = btrfs::create_subvolume(&sub)
            .and_then(|_| fs::write(sub.join("f"), b"x"))
            .and_then(|_| btrfs::snapshot(&sub, &snap, true))
            .and_then(|_| match fs::write(snap.join("g"), b"x") {
                Ok(()) => Err(io::Error::other("the read-only snapshot accepted a write")),
                Err(_) => Ok(()),
            });
        for p in [&snap, &sub] {
            if btrfs::is_subvolume(p) {
                let _ = btrfs::delete_subvolume(p);
            }
        }
        Check::from_io(r, "read-only snapshot made and deleted")
    } else {
        Check::no("not btrfs")
    };
    let durable_on_close = match family {
        Family::Davfs => Check::no(
            "davfs2 uploads after close() returns; data can still be lost (by mount type)",
        ),
        _ if mount.as_ref().is_some_and(|m| m.source.starts_with("http")) => {
            Check::no("a network share that uploads in the background")
        }
        _ => Check::yes("not a network share (by mount type, not measured)"),
    };
    let appends_kept = match appends(s)? {
        // With 4 KiB clusters fusefat keeps this append but loses a page appended after one
        // rewritten in a reopened file, as SQLite writes (a catalog there was malformed after
        // its first backup): no database on fusefat, whatever the experiment says.
        c if c.ok && mount.as_ref().is_some_and(|m| m.fstype == "fuse.fusefat") => Check::no(
            "fusefat corrupts databases: pages rewritten and appended in a reopened file are lost (by driver)",
        ),
        c => c,
    };
    let folder_renames = folder_renames(s);
    let loop_mount = loop_mount(s, max_file_size);
    let (free_bytes, total_bytes) = space(dir);
    Ok(Findings {
        path: dir.to_path_buf(),
        filesystem,
        identity,
        hard_links,
        link_limit,
        link_limit_note,
        symlinks,
        mtime_step_ns,
        mode_kept,
        owner_kept,
        case_sensitive,
        refused_bytes,
        max_name_bytes,
        max_file_size,
        max_file_size_note,
        sparse_files,
        reflink,
        btrfs_snapshots,
        durable_on_close,
        appends_kept,
        folder_renames,
        loop_mount,
        free_bytes,
        total_bytes,
    })
}

/// Make links until the filesystem refuses, up to a cost worth paying (NTFS: 1,023);
/// larger limits are the filesystem's documented ones.
fn link_limit(s: &Path, a: &Path, family: Family, magic: i64) -> (Option<u64>, String) {
    const TRY: u64 = 1100;
    let dir = s.join("links");
    if fs::create_dir(&dir).is_err() {
        return (None, "could not make a folder for the experiment".into());
    }
    // FUSE filesystems take milliseconds per link: the experiment stops after a second.
    let started = std::time::Instant::now();
    let mut made = 1;
    for i in 2..=TRY {
        if started.elapsed() > std::time::Duration::from_secs(1) {
            break;
        }
        if let Err(e) = fs::hard_link(a, dir.join(i.to_string())) {
            if e.raw_os_error() == Some(libc::EMLINK) {
                return (Some(i), format!("measured: link {} refused", i + 1));
            }
            return (None, format!("stopped at {i} links: {e}"));
        }
        made = i;
    }
    // A link was refused nowhere below `made`; beyond it, the filesystem's documented limit.
    let known = match (family, magic) {
        (_, 0xEF53) => Some((65_000, "ext4")),
        (_, 0x9123_683E) => Some((65_535, "btrfs (per folder)")),
        (_, 0x5846_5342) => Some((u32::MAX as u64, "xfs")),
        _ => None,
    };
    match known {
        Some((n, fs)) => (Some(n), format!("{made} links made; {fs} allows {n}")),
        None if family == Family::Ntfs => (
            None,
            format!("{made} links made (Windows stops at 1,023; snapnest copies when a link is refused)"),
        ),
        None => (None, format!("{made} links made; no known limit")),
    }
}

/// Write 4 KiB, close, reopen, write the next 4 KiB: SQLite does this on every commit.
fn appends(s: &Path) -> Result<Check> {
    let p = s.join("append");
    let first: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let second: Vec<u8> = first.iter().map(|b| b ^ 0x5a).collect();
    let r = (|| -> io::Result<Vec<u8>> {
        File::create(&p)?.write_all_at(&first, 0)?;
        let f = OpenOptions::new().read(true).write(true).open(&p)?;
        f.write_all_at(&second, 4096)?;
        f.sync_all()?;
        drop(f);
        fs::read(&p)
    })();
    Ok(match r {
        Ok(back) if back == [first, second].concat() => {
            Check::yes("appended 4 KiB to a reopened file, read back intact")
        }
        Ok(back) => Check::no(format!(
            "appended 4 KiB to a reopened 4 KiB file: read back {} bytes{}",
            back.len(),
            if back.len() == 8192 {
                " that differ"
            } else {
                ""
            }
        )),
        Err(e) => Check::no(format!("appending to a reopened file: {e}")),
    })
}

/// Rename a folder holding a file; is the file still in it?
fn folder_renames(s: &Path) -> Check {
    let (a, b) = (s.join("ren-a"), s.join("ren-b"));
    let r = (|| -> io::Result<Vec<u8>> {
        fs::create_dir(&a)?;
        fs::write(a.join("f"), b"kept")?;
        fs::rename(&a, &b)?;
        fs::read(b.join("f"))
    })();
    match r {
        Ok(back) if back == b"kept" => Check::yes("a renamed folder keeps its files"),
        Ok(_) => Check::no("a renamed folder's file reads back different"),
        Err(e) => Check::no(format!("a renamed folder lost its file ({e})")),
    }
}

/// Set a time with nine sub-second digits and an odd second; see what survives.
fn mtime_step(a: &Path) -> Result<u64> {
    // By path, not through a descriptor: FUSE filesystems stamp the time of the last
    // write when a descriptor opened for writing is closed.
    let set = |ns: i64| -> io::Result<i64> {
        crate::file_time::set_times(a, ns, crate::file_time::Follow::Links)?;
        let m = fs::metadata(a)?;
        Ok(m.mtime() * 1_000_000_000 + m.mtime_nsec())
    };
    let got = set(PROBE_TIME_NS).at(a, "setting mtime of")?;
    for step in [
        1,
        10,
        100,
        1_000,
        1_000_000,
        10_000_000,
        1_000_000_000,
        2_000_000_000,
    ] {
        let down = PROBE_TIME_NS - PROBE_TIME_NS.rem_euclid(step);
        if got == down || got == down + step {
            return Ok(step as u64);
        }
    }
    Err(Error::Other(format!(
        "{}: set mtime {PROBE_TIME_NS} ns, read back {got} ns: the disk does not keep times",
        a.display()
    )))
}

/// Create a file named `name` in a folder of its own and list the folder: the name must come
/// back byte for byte (network shares may accept a name, then mangle it or fail to list).
fn name_kept(dir: &Path, name: &[u8]) -> bool {
    if fs::create_dir(dir).is_err() {
        return false;
    }
    let p = dir.join(std::ffi::OsStr::from_bytes(name));
    let kept = File::create(&p).is_ok()
        && fs::read_dir(dir).is_ok_and(|items| {
            let names: Vec<Vec<u8>> = items
                .filter_map(|i| i.ok())
                .map(|i| i.file_name().as_bytes().to_vec())
                .collect();
            names == [name.to_vec()]
        });
    let _ = fs::remove_file(&p);
    let _ = fs::remove_dir(dir);
    kept
}

fn max_name(s: &Path) -> u32 {
    let fits = |n: usize| {
        let p = s.join("N".repeat(n));
        let ok = File::create(&p).is_ok();
        let _ = fs::remove_file(&p);
        ok
    };
    let (mut lo, mut hi) = (1usize, 255usize);
    if fits(hi) {
        return 255;
    }
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if fits(mid) {
            lo = mid
        } else {
            hi = mid
        }
    }
    lo as u32
}

/// One byte written 8 MiB into a new file: a sparse file allocates next to nothing.
fn sparse(s: &Path) -> Result<Check> {
    let p = s.join("sparse");
    let f = File::create(&p).at(&p, "creating")?;
    f.write_all_at(b"x", 8 << 20).at(&p, "writing")?;
    f.sync_all().at(&p, "syncing")?;
    let used = f.metadata().at(&p, "reading")?.blocks() * 512;
    drop(f);
    let _ = fs::remove_file(&p);
    Ok(if used < 1 << 20 {
        Check::yes(format!("8 MiB hole uses {used} bytes"))
    } else {
        Check::no(format!("8 MiB hole uses {used} bytes"))
    })
}

/// FAT32's 4 GiB − 1 is learnt by writing one byte at 4 GiB where holes are free; where
/// they are not, such a write would fill 4 GiB, so the filesystem's known limit is used.
fn max_size(s: &Path, sparse: bool, family: Family) -> (Option<u64>, String) {
    if !sparse {
        return match family {
            Family::Fat => (
                Some(FOUR_GIB - 1),
                "FAT: 4 GiB − 1 (known; not measured: no sparse files)".into(),
            ),
            _ => (
                None,
                "not measured: without sparse files the experiment would write 4 GiB".into(),
            ),
        };
    }
    let p = s.join("big");
    let r = File::create(&p).and_then(|f| {
        f.write_all_at(b"x", FOUR_GIB - 2)?;
        match f.write_all_at(b"x", FOUR_GIB) {
            Ok(()) => Ok(None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EFBIG) | Some(libc::EINVAL)) => {
                Ok(Some(e))
            }
            Err(e) => Err(e),
        }
    });
    let _ = fs::remove_file(&p);
    match r {
        Ok(None) => (None, "measured: a byte at 4 GiB is accepted".into()),
        Ok(Some(e)) => (
            Some(FOUR_GIB - 1),
            format!("measured: a byte at 4 GiB refused ({e})"),
        ),
        Err(e) => (None, format!("not measured: {e}")),
    }
}

/// Attach a small image file to a free loop device and detach it again.
fn loop_mount(s: &Path, max_file_size: Option<u64>) -> Check {
    if !rustix::process::geteuid().is_root() {
        return Check::no("not root: loop devices need root");
    }
    if max_file_size.is_some() {
        return Check::no("files are limited to 4 GiB − 1 here: an image could not grow");
    }
    let r = (|| -> io::Result<()> {
        let img = s.join("image");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&img)?;
        f.set_len(1 << 20)?;
        let ctl = File::open("/dev/loop-control")?;
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&ctl), 0x4C82) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(format!("/dev/loop{n}"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: LOOP_SET_FD takes the backing file's descriptor; LOOP_CLR_FD nothing.
        if unsafe { libc::ioctl(dev.as_raw_fd(), 0x4C00, f.as_raw_fd()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        unsafe { libc::ioctl(dev.as_raw_fd(), 0x4C01, 0) };
        Ok(())
    })();
    Check::from_io(r, "an image file attached to a loop device")
}

fn space(dir: &Path) -> (Option<u64>, Option<u64>) {
    match rustix::fs::statvfs(dir) {
        // Some FUSE and SMB mounts answer 0 for both: unknown, not empty.
        Ok(v) if v.f_blocks > 0 => (Some(v.f_bavail * v.f_frsize), Some(v.f_blocks * v.f_frsize)),
        _ => (None, None),
    }
}

/// Remove the scratch folder, including read-only and btrfs leftovers.
fn remove_scratch(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(_) => {
            for item in fs::read_dir(p)? {
                let path = item?.path();
                if btrfs::is_subvolume(&path) {
                    btrfs::delete_subvolume(&path)?;
                } else if fs::symlink_metadata(&path)?.is_dir() {
                    fs::remove_dir_all(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
            }
            fs::remove_dir(p)
        }
    }
}

impl Findings {
    /// Human-readable rows: capability, finding.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let c = |c: &Check| format!("{} ({})", if c.ok { "yes" } else { "no" }, c.detail);
        let size = |b: Option<u64>| {
            b.map(|b| bytesize::ByteSize(b).to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        let step = match self.mtime_step_ns {
            n if n >= 1_000_000_000 => format!("{} s", n / 1_000_000_000),
            n => format!("{n} ns"),
        };
        let refused = if self.refused_bytes.is_empty() {
            "none".to_string()
        } else {
            self.refused_bytes
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() {
                        (b as char).to_string()
                    } else {
                        format!("\\x{b:02x}")
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        vec![
            (
                "filesystem",
                format!("{} ({})", self.filesystem, self.identity.describe()),
            ),
            ("hard links", c(&self.hard_links)),
            (
                "link limit",
                match self.link_limit {
                    Some(n) => format!("{n} ({})", self.link_limit_note),
                    None => self.link_limit_note.clone(),
                },
            ),
            ("symlinks", c(&self.symlinks)),
            ("mtime step", step),
            ("mode kept", c(&self.mode_kept)),
            ("owner kept", c(&self.owner_kept)),
            (
                "case",
                if self.case_sensitive {
                    "sensitive".into()
                } else {
                    "insensitive (Case-Probe = case-probe)".into()
                },
            ),
            ("refused in names", refused),
            ("longest name", format!("{} bytes", self.max_name_bytes)),
            (
                "largest file",
                match self.max_file_size {
                    Some(n) => format!("{n} bytes ({})", self.max_file_size_note),
                    None => format!("no limit found ({})", self.max_file_size_note),
                },
            ),
            ("sparse files", c(&self.sparse_files)),
            ("reflink", c(&self.reflink)),
            ("btrfs snapshots", c(&self.btrfs_snapshots)),
            ("stored at close", c(&self.durable_on_close)),
            ("appends kept", c(&self.appends_kept)),
            ("folder renames", c(&self.folder_renames)),
            ("loop mount", c(&self.loop_mount)),
            (
                "free space",
                format!("{} of {}", size(self.free_bytes), size(self.total_bytes)),
            ),
        ]
    }
}
