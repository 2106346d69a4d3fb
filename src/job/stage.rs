//! Writing one snapshot into its staging folder. Paths come from a validated listing, every
//! parent is created here as a real folder before anything inside it, and symlinks are made
//! last: so no write below the staging folder can pass through a symlink.

use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{Entry, Kind};

pub struct Stage {
    pub root: PathBuf,
    /// Owner and group are only settable as root.
    pub preserve_owner: bool,
    /// What the disk can hold; the rest lives in the manifest only.
    pub keep: Keep,
}

/// What a destination keeps of an entry besides its content (from the probe).
#[derive(Clone, Debug)]
pub struct Keep {
    pub mode: bool,
    pub symlinks: bool,
    pub names: crate::store::names::NameRules,
    /// Runs of zeros may be left as holes (the disk has sparse files).
    pub sparse: bool,
}

impl Keep {
    /// An ordinary Linux filesystem: everything, names as given.
    pub fn all() -> Keep {
        Keep {
            mode: true,
            symlinks: true,
            names: crate::store::names::NameRules::none(),
            sparse: true,
        }
    }
}

/// Result of sharing a file with the previous snapshot.
pub enum Linked {
    Yes,
    /// The previous copy is at the filesystem's link-count limit: a local copy was made.
    Copied,
    /// The previous copy is gone or unusable: fetch it again.
    No,
}

/// Where a failed copy went wrong: reading the source is the network's fault, writing the
/// disk's.
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

impl Stage {
    /// Where `e` is stored: names the disk refuses are escaped (see `store::names`).
    pub fn path(&self, e: &Entry) -> PathBuf {
        let stored = crate::store::names::stored_path(&self.keep.names, &e.path);
        self.root.join(std::ffi::OsStr::from_bytes(&stored))
    }

    /// A real folder at `e`, replacing whatever an earlier attempt left there.
    pub fn dir(&self, e: &Entry) -> io::Result<()> {
        let p = self.path(e);
        if e.path.is_empty() {
            return Ok(());
        }
        match fs::DirBuilder::new().mode(0o700).create(&p) {
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                if fs::symlink_metadata(&p)?.is_dir() {
                    return Ok(());
                }
                remove(&p)?;
                fs::DirBuilder::new().mode(0o700).create(&p)
            }
            other => other,
        }
    }

    /// Resume check: is `e` already complete in the staging folder? A file's mtime is set
    /// only after all of its content was written, so size + mtime identify finished files.
    pub fn complete(&self, e: &Entry) -> bool {
        match fs::symlink_metadata(self.path(e)) {
            Ok(md) => {
                md.file_type().is_file()
                    && md.len() == e.size
                    && md.mtime() * 1_000_000_000 + md.mtime_nsec() == e.mtime_ns
            }
            Err(_) => false,
        }
    }

    /// Share the previous snapshot's copy of `e`.
    pub fn link(&self, prev_root: &Path, e: &Entry) -> io::Result<Linked> {
        let stored = crate::store::names::stored_path(&self.keep.names, &e.path);
        let from = prev_root.join(std::ffi::OsStr::from_bytes(&stored));
        let to = self.path(e);
        let mut attempt = fs::hard_link(&from, &to);
        if matches!(&attempt, Err(err) if err.kind() == io::ErrorKind::AlreadyExists) {
            remove(&to)?;
            attempt = fs::hard_link(&from, &to);
        }
        match attempt {
            Ok(()) => Ok(Linked::Yes),
            Err(err) if err.raw_os_error() == Some(libc::EMLINK) => {
                // Link-count limit (ext4 65,000, NTFS 1,023): a fresh copy starts a new chain.
                let mut src = match open_nofollow(&from) {
                    Ok(f) => f,
                    Err(_) => return Ok(Linked::No),
                };
                let mut buf = vec![0u8; 256 * 1024];
                match self.write(e, &mut src, &mut buf, &mut |_| {}) {
                    Ok(_) => Ok(Linked::Copied),
                    Err(CopyError::Read(_)) => Ok(Linked::No),
                    Err(CopyError::Write(err)) => Err(err),
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Linked::No),
            Err(err)
                if err.raw_os_error() == Some(libc::ENOSPC)
                    || err.raw_os_error() == Some(libc::EIO) =>
            {
                Err(err)
            }
            Err(_) => Ok(Linked::No),
        }
    }

    /// Reflink the previous snapshot's copy of `e` (FICLONE): a full copy in name, sharing
    /// every block until one side changes.
    pub fn clone_from(&self, prev_root: &Path, e: &Entry) -> io::Result<Linked> {
        let stored = crate::store::names::stored_path(&self.keep.names, &e.path);
        let from = prev_root.join(std::ffi::OsStr::from_bytes(&stored));
        let src = match open_nofollow(&from) {
            Ok(f) if f.metadata()?.is_file() => f,
            _ => return Ok(Linked::No),
        };
        let p = self.path(e);
        remove(&p)?;
        let dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)?;
        if let Err(err) = crate::dest::btrfs::clone_file(&src, &dst) {
            drop(dst);
            remove(&p)?;
            return if err.raw_os_error() == Some(libc::ENOSPC) {
                Err(err)
            } else {
                Ok(Linked::No)
            };
        }
        self.apply_file_meta(&dst, e)?;
        Ok(Linked::Yes)
    }

    /// Write `e` from `content` (until it ends), then its metadata; the mtime last, as the
    /// mark of a finished file. Returns the bytes written. `on_chunk` sees progress.
    pub fn write(
        &self,
        e: &Entry,
        content: &mut dyn Read,
        buf: &mut [u8],
        on_chunk: &mut dyn FnMut(u64),
    ) -> Result<u64, CopyError> {
        let p = self.path(e);
        // Always a new inode: whatever an interrupted run left here may be a hard link into a
        // published snapshot, and writing into it would rewrite history.
        let create = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&p)
        };
        let mut file = match create() {
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                remove(&p).map_err(CopyError::Write)?;
                create()
            }
            other => other,
        }
        .map_err(CopyError::Write)?;
        let mut written = 0u64;
        loop {
            let n = match content.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(CopyError::Read(err)),
            };
            if self.keep.sparse && is_zeros(&buf[..n]) {
                // A hole: skipped here, so a sparse multi-GiB image costs what it holds.
                file.seek(io::SeekFrom::Current(n as i64))
                    .map_err(CopyError::Write)?;
            } else {
                file.write_all(&buf[..n]).map_err(CopyError::Write)?;
            }
            written += n as u64;
            on_chunk(n as u64);
        }
        if self.keep.sparse {
            // A trailing hole is not written either: the length makes it.
            file.set_len(written).map_err(CopyError::Write)?;
        }
        self.apply_file_meta(&file, e).map_err(CopyError::Write)?;
        Ok(written)
    }

    fn apply_file_meta(&self, file: &File, e: &Entry) -> io::Result<()> {
        if self.preserve_owner {
            std::os::unix::fs::fchown(file, Some(e.uid), Some(e.gid))?;
        }
        // After chown, which clears setuid bits.
        if self.keep.mode {
            file.set_permissions(Permissions::from_mode(e.mode))?;
        }
        let t = system_time(e.mtime_ns);
        file.set_times(FileTimes::new().set_modified(t).set_accessed(t))
    }

    /// Keep a staged file out of `complete()` (its content is not trustworthy) until
    /// `finish_file_time` just before publishing, so a crash in between refetches it.
    pub fn mark_unfinished(&self, e: &Entry) -> io::Result<()> {
        match set_times_nofollow(&self.path(e), 0) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()), // nothing was stored
            other => other,
        }
    }

    pub fn finish_file_time(&self, e: &Entry) -> io::Result<()> {
        set_times_nofollow(&self.path(e), e.mtime_ns)
    }

    /// On a disk without symlinks, the manifest alone keeps it (restore recreates it).
    pub fn symlink(&self, e: &Entry) -> io::Result<()> {
        if !self.keep.symlinks {
            return Ok(());
        }
        let p = self.path(e);
        let target = std::ffi::OsStr::from_bytes(e.target.as_deref().unwrap_or(b""));
        if let Err(err) = std::os::unix::fs::symlink(target, &p) {
            if err.kind() != io::ErrorKind::AlreadyExists {
                return Err(err);
            }
            remove(&p)?;
            std::os::unix::fs::symlink(target, &p)?;
        }
        if self.preserve_owner {
            std::os::unix::fs::lchown(&p, Some(e.uid), Some(e.gid))?;
        }
        set_times_nofollow(&p, e.mtime_ns)
    }

    /// Folder metadata, applied after everything inside was written (writing changes mtime).
    pub fn finish_dir(&self, e: &Entry) -> io::Result<()> {
        // Through a descriptor opened without following: chmod on a path would follow a
        // symlink that took the folder's place (case-folding disks, hostile listings).
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(self.path(e))?;
        if self.preserve_owner {
            std::os::unix::fs::fchown(&dir, Some(e.uid), Some(e.gid))?;
        }
        if self.keep.mode {
            dir.set_permissions(Permissions::from_mode(e.mode))?;
        }
        let t = system_time(e.mtime_ns);
        dir.set_times(FileTimes::new().set_modified(t).set_accessed(t))
    }

    /// Resume: delete what an earlier attempt wrote that the new listing no longer has.
    /// `wanted` must be sorted. Returns how many objects were removed.
    pub fn remove_unlisted(&self, wanted: &[Entry]) -> io::Result<u64> {
        // Compared as stored: escaped names sort differently from the originals.
        let mut stored: Vec<(Vec<u8>, bool)> = wanted
            .iter()
            .map(|e| {
                let p = crate::store::names::stored_path(&self.keep.names, &e.path);
                (p.into_owned(), e.kind == Kind::Dir)
            })
            .collect();
        stored.sort();
        let mut removed = 0;
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for item in fs::read_dir(&dir)? {
                let item = item?;
                let path = item.path();
                let rel = path
                    .strip_prefix(&self.root)
                    .unwrap_or(&path)
                    .as_os_str()
                    .as_bytes();
                let listed = stored.binary_search_by(|e| e.0.as_slice().cmp(rel));
                let keep = match listed {
                    Ok(i) => {
                        let is_dir = item.file_type()?.is_dir();
                        stored[i].1 == is_dir
                    }
                    Err(_) => false,
                };
                if !keep {
                    remove(&path)?;
                    removed += 1;
                } else if item.file_type()?.is_dir() {
                    // A crash after folder modes were applied can leave read-only folders.
                    if self.keep.mode {
                        fs::set_permissions(&path, Permissions::from_mode(0o700))?;
                    }
                    stack.push(path);
                }
            }
        }
        Ok(removed)
    }
}

/// All zeros? Word-wise: this runs over every byte fetched.
fn is_zeros(b: &[u8]) -> bool {
    // SAFETY: every bit pattern is a valid u64.
    let (head, words, tail) = unsafe { b.align_to::<u64>() };
    head.iter().all(|&x| x == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&x| x == 0)
}

pub fn open_nofollow(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
}

/// Remove a file, symlink or whole folder (never following a symlink).
pub fn remove(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn set_times_nofollow(p: &Path, ns: i64) -> io::Result<()> {
    crate::file_time::set_times(p, ns, crate::file_time::Follow::NoLinks)
}
