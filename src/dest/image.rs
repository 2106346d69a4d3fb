//! The image strategy: an ext4 image file on a share that has no hard links (exFAT, NTFS
//! without links, SMB), loop-mounted by snapnest — Time Machine's trick. The storage itself
//! (marker, catalog, hard-linked snapshots) lives inside the mounted image, so everything
//! after the mount is the hard-link strategy on ext4.
//!
//! Layout: `<[storage] path>/snapnest.img`, mounted (nosuid, nodev) on
//! `<state_dir>/image/<share path with / as ->`. A one-shot command mounts it when needed and
//! unmounts it at its end; the daemon keeps it mounted.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::dest::probe::Findings;
use crate::error::{Error, IoContext, Result};

pub const IMAGE_FILE: &str = "snapnest.img";
/// Smaller images hold too little to be worth a loop device (and mkfs.ext4 needs some room).
pub const MIN_SIZE: u64 = 16 << 20;

/// `[storage] strategy = "image"` with its `image_size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// The share folder named by `[storage] path`; it holds the image file.
    pub share: PathBuf,
    /// Size the image is created with; `snapnest image grow` takes it further.
    pub size: u64,
    /// Where snapnest mounts it; this is the storage root every command works in.
    pub mount_point: PathBuf,
}

impl ImageSpec {
    pub fn new(share: PathBuf, size: u64, state_dir: &Path) -> ImageSpec {
        // One mount point per share, readable: /mnt/usb/snapnest -> mnt-usb-snapnest.
        let mut name = String::new();
        for c in share.to_string_lossy().trim_matches('/').chars() {
            match c {
                '/' => name.push('-'),
                '-' | '%' => name.push_str(&format!("%{:02X}", c as u32)),
                c => name.push(c),
            }
        }
        let mount_point =
            state_dir
                .join("image")
                .join(if name.is_empty() { "root".into() } else { name });
        ImageSpec {
            share,
            size,
            mount_point,
        }
    }

    pub fn file(&self) -> PathBuf {
        self.share.join(IMAGE_FILE)
    }

    /// One line for `list`, `init` and `status`.
    pub fn describe(&self) -> String {
        let size = fs::metadata(self.file())
            .map(|m| bytesize::ByteSize(m.len()).to_string())
            .unwrap_or_else(|_| "missing".into());
        format!(
            "image {} ({size} ext4 image, loop-mounted at {})",
            self.file().display(),
            self.mount_point.display()
        )
    }
}

/// Why an image of `size` bytes can work on a share with these findings, or why it cannot.
pub fn fits(f: &Findings, size: u64) -> std::result::Result<String, String> {
    fits_adding(f, size, size)
}

/// `fits` for an image of `size` bytes of which `adding` are not on the share yet.
fn fits_adding(f: &Findings, size: u64, adding: u64) -> std::result::Result<String, String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root: mounting an image needs root".into());
    }
    for tool in ["mkfs.ext4", "mount", "umount"] {
        if which(tool).is_none() {
            return Err(format!(
                "{tool} is not installed (e2fsprogs / util-linux); it is needed to make and mount the image"
            ));
        }
    }
    if let Some(limit) = f.max_file_size.filter(|l| size > *l) {
        return Err(format!(
            "image_size {} is more than the largest file {} holds ({})",
            bytesize::ByteSize(size),
            f.filesystem,
            bytesize::ByteSize(limit)
        ));
    }
    if !f.appends_kept.ok {
        return Err(format!(
            "this filesystem driver loses data written to existing files ({})",
            f.appends_kept.detail
        ));
    }
    if !f.durable_on_close.ok {
        // davfs2 keeps a whole copy of an open file in its cache and uploads all of it
        // after close: an image would travel in full every time.
        return Err(format!(
            "a network share that uploads whole files after close ({})",
            f.durable_on_close.detail
        ));
    }
    if !f.loop_mount.ok {
        return Err(format!("no loop mount ({})", f.loop_mount.detail));
    }
    let sparse = f.sparse_files.ok;
    if let Some(free) = f.free_bytes.filter(|free| !sparse && adding > *free) {
        return Err(format!(
            "{} more for the image is more than the {} free on {} (it has no sparse files, so the image takes its whole size at once)",
            bytesize::ByteSize(adding),
            bytesize::ByteSize(free),
            f.filesystem
        ));
    }
    Ok(format!(
        "a {} ext4 image on {} ({}), loop-mounted: hard-link snapshots inside it{}",
        bytesize::ByteSize(size),
        f.path.display(),
        f.filesystem,
        if sparse {
            ", space taken as it fills"
        } else {
            "; no sparse files here, so the image takes its whole size now"
        }
    ))
}

/// Make the image file: its full size (sparse where the share allows), then mkfs.ext4.
/// An image that is already there is kept as it is.
pub fn create(spec: &ImageSpec) -> Result<bool> {
    let file = spec.file();
    let f = match OpenOptions::new().write(true).create_new(true).open(&file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(Error::io(file, "creating image file", e)),
    };
    let made = (|| {
        f.set_len(spec.size).at(&file, "sizing image file")?;
        f.sync_all().at(&file, "syncing image file")?;
        drop(f);
        // nodiscard: discarding a file-backed image only punches holes it does not have yet.
        run(
            "mkfs.ext4",
            &[
                "-q".as_ref(),
                "-F".as_ref(),
                "-m".as_ref(),
                "0".as_ref(),
                "-L".as_ref(),
                "snapnest".as_ref(),
                "-E".as_ref(),
                "nodiscard".as_ref(),
                file.as_os_str(),
            ],
        )
    })();
    if let Err(e) = made {
        // A half-made image would be mounted as garbage next time: remove what we made.
        let _ = fs::remove_file(&file);
        return Err(e);
    }
    Ok(true)
}

/// The image mounted on its mount point for as long as this lives: unmounted when dropped
/// if this process mounted it, unless `keep` was called (the daemon).
#[derive(Debug)]
pub struct Attachment {
    mount_point: PathBuf,
    mounted_here: bool,
}

impl Attachment {
    /// Leave the image mounted after this process (the daemon keeps it mounted).
    pub fn keep(mut self) {
        self.mounted_here = false;
    }

    pub fn mounted_here(&self) -> bool {
        self.mounted_here
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if self.mounted_here {
            if let Err(e) = unmount(&self.mount_point) {
                eprintln!("snapnest: warning: {e}");
            }
        }
    }
}

/// Mount the image unless it is mounted already. Nothing is created: a missing share or
/// image is an error that says which.
pub fn attach(spec: &ImageSpec) -> Result<Attachment> {
    let file = spec.file();
    if !spec.share.is_dir() {
        return Err(Error::Other(format!(
            "storage share {} is not there (is the disk mounted?); its image {IMAGE_FILE} lives in it",
            spec.share.display()
        )));
    }
    let image = match fs::canonicalize(&file) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Other(format!(
                "image {} is missing (the share is there); run `snapnest init` to make a new one",
                file.display()
            )))
        }
        Err(e) => return Err(Error::io(file, "reading image file", e)),
    };
    if let Some(dev) = mounted_device(&spec.mount_point) {
        return match backing_file(&dev) {
            Some(b) if b == image => Ok(Attachment {
                mount_point: spec.mount_point.clone(),
                mounted_here: false,
            }),
            other => Err(Error::Other(format!(
                "{} is mounted on {}, not the image {}; unmount it first",
                other.map_or(dev, |b| b.display().to_string()),
                spec.mount_point.display(),
                image.display()
            ))),
        };
    }
    fs::create_dir_all(&spec.mount_point).at(&spec.mount_point, "creating image mount point")?;
    // Loop devices are few and shared with other programs: another one may take the free
    // device `mount` found; try again for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // nosuid, nodev: snapshots keep the hosts' setuid files and device nodes, which
        // must not work from the box.
        let r = run(
            "mount",
            &[
                "-t".as_ref(),
                "ext4".as_ref(),
                "-o".as_ref(),
                "loop,nosuid,nodev".as_ref(),
                image.as_os_str(),
                spec.mount_point.as_os_str(),
            ],
        );
        match r {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline && e.to_string().contains("loop device") => {
                std::thread::sleep(Duration::from_millis(500))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Attachment {
        mount_point: spec.mount_point.clone(),
        mounted_here: true,
    })
}

/// Unmount (retrying while a just-closed file keeps it busy); the loop device goes with it.
pub fn unmount(mount_point: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if mounted_device(mount_point).is_none() {
            return Ok(());
        }
        match run("umount", &[mount_point.as_os_str()]) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::Other(format!(
                    "could not unmount the image from {}: {e}",
                    mount_point.display()
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `snapnest image grow`: make the image `size` bytes and its ext4 as large. Offline when
/// this process can unmount it; online (needs CAP_SYS_RESOURCE) while the daemon holds it.
pub fn grow(spec: &ImageSpec, size: u64) -> Result<String> {
    let att = attach(spec)?;
    let file = spec.file();
    let old = fs::metadata(&file).at(&file, "reading image file")?.len();
    if size <= old {
        return Err(Error::Other(format!(
            "the image is {} already; shrinking is not supported (give a larger size)",
            bytesize::ByteSize(old)
        )));
    }
    let findings = crate::dest::probe::probe(&spec.share)?;
    fits_adding(&findings, size, size - old)
        .map_err(|why| Error::Other(format!("cannot grow {}: {why}", file.display())))?;
    for tool in ["e2fsck", "resize2fs"] {
        if which(tool).is_none() {
            return Err(Error::Other(format!("{tool} (e2fsprogs) is not installed")));
        }
    }
    let mounted_elsewhere = !att.mounted_here();
    drop(att);
    let f = OpenOptions::new()
        .write(true)
        .open(&file)
        .at(&file, "opening image file")?;
    f.set_len(size).at(&file, "growing image file")?;
    f.sync_all().at(&file, "syncing image file")?;
    drop(f);
    if mounted_elsewhere {
        let dev = mounted_device(&spec.mount_point).ok_or_else(|| {
            Error::Other("the image was unmounted while growing it; run grow again".into())
        })?;
        run("losetup", &["-c".as_ref(), dev.as_ref()])?;
        run("resize2fs", &[dev.as_ref()]).map_err(|e| {
            Error::Other(format!(
                "the image file is {} now, but its filesystem could not grow while mounted ({e}); stop the daemon and run `snapnest image grow` again",
                bytesize::ByteSize(size)
            ))
        })?;
    } else {
        run("e2fsck", &["-f".as_ref(), "-p".as_ref(), file.as_os_str()])?;
        run("resize2fs", &[file.as_os_str()])?;
    }
    Ok(format!(
        "grew {} from {} to {}",
        file.display(),
        bytesize::ByteSize(old),
        bytesize::ByteSize(size)
    ))
}

/// The device mounted on `p`, from /proc/self/mountinfo.
fn mounted_device(p: &Path) -> Option<String> {
    let want = fs::canonicalize(p).ok()?;
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let at = unescape_mountinfo(f.get(4)?);
        if Path::new(&at) != want {
            return None;
        }
        let sep = f.iter().position(|x| *x == "-")?;
        Some(f.get(sep + 2)?.to_string())
    })
}

/// The file behind loop device `dev` (`/dev/loop3`), from sysfs.
fn backing_file(dev: &str) -> Option<PathBuf> {
    let name = dev.strip_prefix("/dev/")?;
    let s = fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(s.trim_end_matches('\n')))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn run(tool: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    let exe = which(tool).unwrap_or_else(|| tool.into());
    let out = Command::new(&exe)
        .args(args)
        .output()
        .map_err(|e| Error::io(exe.clone(), "running", e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Other(format!(
        "{tool} {}: {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_readable_mount_point_per_share() {
        let s = ImageSpec::new(
            "/mnt/usb-2/snap%nest".into(),
            1 << 30,
            Path::new("/var/lib/snapnest"),
        );
        assert_eq!(
            s.mount_point,
            Path::new("/var/lib/snapnest/image/mnt-usb%2D2-snap%25nest")
        );
        assert_eq!(s.file(), Path::new("/mnt/usb-2/snap%nest/snapnest.img"));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
