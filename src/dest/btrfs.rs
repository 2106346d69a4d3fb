//! The few btrfs and clone ioctls snapnest needs, called directly so a router needs no
//! btrfs-progs: create a subvolume, snapshot one (read-only or writable), make one
//! read-only, delete one; and FICLONE (reflink) on any filesystem that has it.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
/// A subvolume's root folder always has this inode number.
const FIRST_FREE_OBJECTID: u64 = 256;
const RDONLY: u64 = 1 << 1;

const fn iow(nr: u64, size: usize) -> u64 {
    (1 << 30) | ((size as u64) << 16) | (0x94 << 8) | nr
}
const FICLONE: u64 = iow(9, 4);
const SUBVOL_CREATE: u64 = iow(14, 4096);
const SNAP_DESTROY: u64 = iow(15, 4096);
const SUBVOL_SETFLAGS: u64 = iow(26, 8);
const SNAP_CREATE_V2: u64 = iow(23, 4096);

#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; 4088],
}

#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}

fn name_bytes<const N: usize>(name: &Path) -> io::Result<[u8; N]> {
    let b = name.as_os_str().as_bytes();
    if b.is_empty() || b.len() >= N || b.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad subvolume name",
        ));
    }
    let mut out = [0u8; N];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

fn parent_and_name(path: &Path) -> io::Result<(File, &Path)> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = Path::new(path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "subvolume path has no name")
    })?);
    Ok((File::open(parent)?, name))
}

fn ioctl<T>(fd: &impl AsRawFd, request: u64, arg: *const T) -> io::Result<()> {
    // SAFETY: `arg` points at a live struct of the layout the kernel expects for `request`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A new, empty subvolume at `path`.
pub fn create_subvolume(path: &Path) -> io::Result<()> {
    let (dir, name) = parent_and_name(path)?;
    let args = VolArgs {
        fd: 0,
        name: name_bytes(name)?,
    };
    ioctl(&dir, SUBVOL_CREATE, &args)
}

/// A snapshot of subvolume `from` at `to` (same filesystem).
pub fn snapshot(from: &Path, to: &Path, read_only: bool) -> io::Result<()> {
    let src = File::open(from)?;
    let (dir, name) = parent_and_name(to)?;
    let args = VolArgsV2 {
        fd: src.as_raw_fd() as i64,
        transid: 0,
        flags: if read_only { RDONLY } else { 0 },
        unused: [0; 4],
        name: name_bytes(name)?,
    };
    ioctl(&dir, SNAP_CREATE_V2, &args)
}

/// Freeze a subvolume: nothing in it can change afterwards (not even by root).
pub fn set_read_only(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    let flags: u64 = RDONLY;
    ioctl(&f, SUBVOL_SETFLAGS, &flags)
}

/// Delete a subvolume (read-only or not) with everything in it; O(1) for the caller, the
/// filesystem frees the space in the background.
pub fn delete_subvolume(path: &Path) -> io::Result<()> {
    let (dir, name) = parent_and_name(path)?;
    let args = VolArgs {
        fd: 0,
        name: name_bytes(name)?,
    };
    ioctl(&dir, SNAP_DESTROY, &args)
}

/// Is `path` the root of a btrfs subvolume (so it must be deleted as one)?
pub fn is_subvolume(path: &Path) -> bool {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return false;
    };
    md.is_dir() && md.ino() == FIRST_FREE_OBJECTID && fs_magic(path) == Some(BTRFS_SUPER_MAGIC)
}

/// `statfs(2)`'s filesystem magic number.
pub fn fs_magic(path: &Path) -> Option<i64> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs fills a zeroed struct it owns for the call.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut st) == 0).then_some(st.f_type as i64)
    }
}

/// Make `to` (an open, empty file) share `from`'s blocks: a copy that costs no space until
/// either side changes.
pub fn clone_file(from: &File, to: &File) -> io::Result<()> {
    // SAFETY: FICLONE takes the source descriptor as its argument value.
    let r = unsafe { libc::ioctl(to.as_raw_fd(), FICLONE as _, from.as_raw_fd()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
