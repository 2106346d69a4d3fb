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
    /// Entries stored under another name than their plain escape (case clashes).
    pub renamed: crate::store::clash::Renamed,
}

/// What a destination keeps of an entry besides its content (from the probe).
#[derive(Clone, Debug)]
pub struct Keep {
    pub mode: bool,
    pub symlinks: bool,
    pub names: crate::store::names::NameRules,
    /// Runs of zeros may be left as holes (the disk has sparse files).
    pub sparse: bool,
    /// The disk's largest file: longer ones are stored in parts (`store::parts`).
    pub split_at: Option<u64>,
}

impl Keep {
    /// Split files over `limit` too (the config's `split_at`), not only over the disk's.
    pub fn split_at_most(mut self, limit: Option<u64>) -> Keep {
        self.split_at = match (self.split_at, limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self
    }

    /// An ordinary Linux filesystem: everything, names as given.
    pub fn all() -> Keep {
        Keep {
            mode: true,
            symlinks: true,
            names: crate::store::names::NameRules::none(),
            sparse: true,
            split_at: None,
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
        self.root
            .join(std::ffi::OsStr::from_bytes(&self.stored(&e.path)))
    }

    /// Where manifest path `path` is stored, relative to a snapshot folder.
    pub fn stored<'a>(&self, path: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        self.renamed.path(&self.keep.names, path)
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
        if self.keep.split_at.is_some() {
            return crate::store::parts::stored_size_and_mtimes(&self.path(e)).is_some_and(
                |(size, mtimes)| size == e.size && mtimes.iter().all(|&m| m == e.mtime_ns),
            );
        }
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
        // The previous snapshot stored it under the same name (the job shares nothing else).
        let from = prev_root.join(std::ffi::OsStr::from_bytes(&self.stored(&e.path)));
        let to = self.path(e);
        if self.keep.split_at.is_some() && fs::symlink_metadata(&from).is_err() {
            return self.link_parts(&from, &to);
        }
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

    /// Hard-link each part of a file stored in parts (no copy at the link limit: refetched).
    fn link_parts(&self, from: &Path, to: &Path) -> io::Result<Linked> {
        let pieces = crate::store::parts::pieces(from);
        if pieces.is_empty() {
            return Ok(Linked::No);
        }
        remove(to)?;
        crate::store::parts::remove_parts(to)?;
        for n in 1..=pieces.len() as u32 {
            let part = crate::store::parts::part_path(to, n);
            if let Err(err) = fs::hard_link(crate::store::parts::part_path(from, n), &part) {
                crate::store::parts::remove_parts(to)?;
                return match err.raw_os_error() {
                    Some(libc::ENOSPC) | Some(libc::EIO) => Err(err),
                    _ => Ok(Linked::No),
                };
            }
        }
        Ok(Linked::Yes)
    }

    /// Reflink the previous snapshot's copy of `e` (FICLONE): a full copy in name, sharing
    /// every block until one side changes.
    pub fn clone_from(&self, prev_root: &Path, e: &Entry) -> io::Result<Linked> {
        // The previous snapshot stored it under the same name (the job shares nothing else).
        let from = prev_root.join(std::ffi::OsStr::from_bytes(&self.stored(&e.path)));
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
        let create = |p: &Path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(p)
        };
        use crate::store::parts::part_path;
        // Over the disk's largest file, the content goes into parts from the start.
        let mut part = match self.keep.split_at {
            Some(limit) => {
                crate::store::parts::remove_parts(&p).map_err(CopyError::Write)?;
                u32::from(e.size > limit)
            }
            None => 0,
        };
        let first = if part == 1 {
            remove(&p).map_err(CopyError::Write)?;
            part_path(&p, 1)
        } else {
            p.clone()
        };
        let mut file = match create(&first) {
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                remove(&first).map_err(CopyError::Write)?;
                create(&first)
            }
            other => other,
        }
        .map_err(CopyError::Write)?;
        let mut written = 0u64;
        let mut in_part = 0u64;
        // A hole skipped last: only then does the length need setting (a system call a file).
        let mut hole_at_end = false;
        loop {
            let n = match content.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(CopyError::Read(err)),
            };
            let mut chunk = &buf[..n];
            while !chunk.is_empty() {
                let room = match self.keep.split_at {
                    Some(limit) if in_part >= limit => {
                        if hole_at_end {
                            file.set_len(in_part).map_err(CopyError::Write)?;
                        }
                        self.apply_file_meta(&file, e).map_err(CopyError::Write)?;
                        let next =
                            create(&part_path(&p, part.max(1) + 1)).map_err(CopyError::Write)?;
                        // Closed before any rename: fusefat loses a file renamed while open.
                        drop(std::mem::replace(&mut file, next));
                        if part == 0 {
                            // The file grew past the limit while it was read.
                            crate::store::moves::rename_keeping_mtime(&p, &part_path(&p, 1))
                                .map_err(CopyError::Write)?;
                            part = 1;
                        }
                        part += 1;
                        in_part = 0;
                        limit
                    }
                    Some(limit) => limit - in_part,
                    None => u64::MAX,
                };
                let (now, rest) = chunk.split_at(chunk.len().min(room as usize));
                if self.keep.sparse && is_zeros(now) {
                    // A hole: skipped here, so a sparse multi-GiB image costs what it holds.
                    file.seek(io::SeekFrom::Current(now.len() as i64))
                        .map_err(CopyError::Write)?;
                    hole_at_end = true;
                } else {
                    file.write_all(now).map_err(CopyError::Write)?;
                    hole_at_end = false;
                }
                in_part += now.len() as u64;
                chunk = rest;
            }
            written += n as u64;
            on_chunk(n as u64);
        }
        if hole_at_end {
            // A trailing hole is not written either: the length makes it.
            file.set_len(in_part).map_err(CopyError::Write)?;
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
        // Nothing stored: nothing to mark.
        for p in crate::store::parts::pieces(&self.path(e)) {
            set_times_nofollow(&p, 0)?;
        }
        Ok(())
    }

    pub fn finish_file_time(&self, e: &Entry) -> io::Result<()> {
        let pieces = crate::store::parts::pieces(&self.path(e));
        if pieces.is_empty() {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        for p in pieces {
            set_times_nofollow(&p, e.mtime_ns)?;
        }
        Ok(())
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
            .map(|e| (self.stored(&e.path).into_owned(), e.kind == Kind::Dir))
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
                let mut listed = stored.binary_search_by(|e| e.0.as_slice().cmp(rel));
                if let (Err(_), Some(base)) = (listed, crate::store::parts::base_of(rel)) {
                    // A part of a listed file (never of a folder: `keep` checks the kind).
                    listed = stored
                        .binary_search_by(|e| e.0.as_slice().cmp(base))
                        .and_then(|i| if stored[i].1 { Err(i) } else { Ok(i) });
                }
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

#[path = "stage_cleanup.rs"]
mod cleanup;
