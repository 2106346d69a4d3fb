//! Setting file times by path, to the nanosecond, on every target snapnest ships for.
//!
//! Through the libc crate's `utimensat` and `timespec`, not rustix's: on 32-bit big-endian
//! musl 1.2 (mips routers) rustix 1.1 lays its `Timespec` out as {i64 seconds, 32-bit
//! nanoseconds} while musl's 64-bit-time `struct timespec` is {i64 seconds, 4 bytes of
//! padding, nanoseconds}, so musl read the padding as the nanoseconds and every time came
//! back wrong. libc's `timespec` follows musl's layout when cross/build.sh tells it musl is
//! 1.2 (and binds `__utimensat_time64`); std's `File::set_times` goes the same way.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether a symlink at the path itself gets the time, or what it points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// The link's target (or the file, when the path is no link).
    Links,
    /// The symlink itself (or the file, when the path is no link).
    NoLinks,
}

/// Sets access and modification time of `path` to `ns` nanoseconds since the epoch
/// (negative: before 1970).
pub fn set_times(path: &Path, ns: i64, follow: Follow) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let ts = timespec(ns)?;
    let times = [ts, ts];
    let flags = match follow {
        Follow::Links => 0,
        Follow::NoLinks => libc::AT_SYMLINK_NOFOLLOW,
    };
    // SAFETY: `c` is a NUL-terminated path and `times` two initialised timespecs, both
    // alive for the call; utimensat keeps neither.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn timespec(ns: i64) -> io::Result<libc::timespec> {
    // Zeroed, then the two public fields: musl's padding word (private in libc's struct)
    // must not carry garbage, and a literal cannot name it.
    // SAFETY: timespec is plain integers; all-zero is a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    ts.tv_sec = ns.div_euclid(1_000_000_000).try_into().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("time {ns} ns does not fit this system's time_t"),
        )
    })?;
    // Always 0..1e9: fits any c_long.
    ts.tv_nsec = ns.rem_euclid(1_000_000_000) as _;
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mtime_ns(m: &std::fs::Metadata) -> i64 {
        m.mtime() * 1_000_000_000 + m.mtime_nsec()
    }

    #[test]
    fn sets_nanoseconds_before_and_after_1970() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        for ns in [1_700_000_001_123_456_789, -1_500_000_000] {
            set_times(&f, ns, Follow::Links).unwrap();
            let m = std::fs::metadata(&f).unwrap();
            assert_eq!(mtime_ns(&m), ns);
            assert_eq!(m.atime() * 1_000_000_000 + m.atime_nsec(), ns);
        }
    }

    #[test]
    fn no_links_stamps_the_symlink_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        set_times(&target, 1_000_000_000_000_000_000, Follow::Links).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        set_times(&link, 1_600_000_000_000_000_007, Follow::NoLinks).unwrap();
        assert_eq!(
            mtime_ns(&std::fs::symlink_metadata(&link).unwrap()),
            1_600_000_000_000_000_007
        );
        assert_eq!(
            mtime_ns(&std::fs::metadata(&target).unwrap()),
            1_000_000_000_000_000_000
        );

        set_times(&link, 1_650_000_000_000_000_042, Follow::Links).unwrap();
        assert_eq!(
            mtime_ns(&std::fs::metadata(&target).unwrap()),
            1_650_000_000_000_000_042
        );
    }

    #[test]
    fn a_missing_path_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = set_times(&dir.path().join("gone"), 0, Follow::NoLinks).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
