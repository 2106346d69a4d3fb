//! What filesystem a folder is on, and which disk: the mount table entry, the statfs
//! magic and fsid, and a name a user recognises ("exfat (FUSE)", "ext4").

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which disk a folder is on, cheap to read on every run. FUSE mounts have no fsid, and
/// their device number changes on every mount, so they are known by type and source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub magic: i64,
    pub fsid: u64,
    pub fstype: String,
    pub source: String,
}

impl Identity {
    pub fn of(path: &Path) -> std::io::Result<Identity> {
        let (magic, fsid) = statfs(path)?;
        let m = mount_of(path);
        Ok(Identity {
            magic,
            fsid,
            fstype: m.as_ref().map(|m| m.fstype.clone()).unwrap_or_default(),
            source: m.map(|m| m.source).unwrap_or_default(),
        })
    }

    /// The same disk as `recorded`? A known fsid decides; without one, type and source do.
    pub fn same_disk(&self, recorded: &Identity) -> bool {
        if self.magic != recorded.magic {
            return false;
        }
        if self.fsid != 0 || recorded.fsid != 0 {
            return self.fsid == recorded.fsid;
        }
        self.fstype == recorded.fstype && self.source == recorded.source
    }

    pub fn describe(&self) -> String {
        format!(
            "{} on {} (statfs type {:#x}, fsid {:#x})",
            self.fstype, self.source, self.magic, self.fsid
        )
    }
}

fn statfs(path: &Path) -> std::io::Result<(i64, u64)> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statfs fills a zeroed struct it owns for the call.
    let st = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        st
    };
    // f_fsid is two ints; its fields are private in libc's type.
    let raw: [u32; 2] = unsafe { std::mem::transmute(st.f_fsid) };
    Ok((st.f_type as i64, (raw[0] as u64) | ((raw[1] as u64) << 32)))
}

/// One line of /proc/self/mountinfo.
#[derive(Clone, Debug)]
pub struct Mount {
    pub point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub options: String,
}

/// The mount a path lives on: the longest mount point that contains it.
pub fn mount_of(path: &Path) -> Option<Mount> {
    let real = std::fs::canonicalize(path).ok()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<Mount> = None;
    for line in text.lines() {
        let (left, right) = line.split_once(" - ")?;
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if f.len() < 5 || r.len() < 2 {
            continue;
        }
        let point = PathBuf::from(unescape_octal(f[4]));
        if !real.starts_with(&point) {
            continue;
        }
        // Later lines are mounted over earlier ones at the same point.
        if best
            .as_ref()
            .is_none_or(|b| point.as_os_str().len() >= b.point.as_os_str().len())
        {
            best = Some(Mount {
                point,
                fstype: r[0].to_string(),
                source: unescape_octal(r[1]),
                options: r.get(2).unwrap_or(&"").to_string(),
            });
        }
    }
    best
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(((b[i + 1] - b'0') << 6) | ((b[i + 2] - b'0') << 3) | (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The family a filesystem belongs to, for the few facts no cheap experiment can learn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Fat,
    Exfat,
    Ntfs,
    Davfs,
    Other,
}

/// A share over the network (WebDAV, SMB, NFS, sshfs): no shared memory across it.
pub fn is_network(m: &Mount) -> bool {
    matches!(
        m.fstype.as_str(),
        "davfs" | "fuse.davfs2" | "cifs" | "smb3" | "nfs" | "nfs4" | "fuse.sshfs"
    ) || m.source.starts_with("http://")
        || m.source.starts_with("https://")
}

/// A name users know: "ext4", "exfat (FUSE)", "vfat (fusefat)".
pub fn name_and_family(m: Option<&Mount>) -> (String, Family) {
    let Some(m) = m else {
        return ("unknown".into(), Family::Other);
    };
    let t = m.fstype.as_str();
    let family = match t {
        "vfat" | "msdos" | "fuse.fusefat" => Family::Fat,
        "exfat" => Family::Exfat,
        "ntfs" | "ntfs3" | "fuse.ntfs-3g" | "fuseblk.ntfs-3g" => Family::Ntfs,
        "davfs" | "fuse.davfs2" => Family::Davfs,
        // mount.davfs registers as plain "fuse" with the URL as its source.
        "fuse" if m.source.starts_with("http://") || m.source.starts_with("https://") => {
            Family::Davfs
        }
        // ntfs-3g and exfat-fuse show as plain FUSE: the boot sector tells which one it is.
        "fuseblk" | "fuse" => device_signature(&m.source),
        _ => Family::Other,
    };
    let name = match (t, family) {
        ("fuse.fusefat", _) => "vfat (fusefat)".to_string(),
        ("fuseblk" | "fuse", Family::Exfat) => "exfat (FUSE)".to_string(),
        ("fuseblk" | "fuse", Family::Ntfs) => "ntfs (ntfs-3g)".to_string(),
        ("fuseblk" | "fuse", Family::Fat) => "vfat (FUSE)".to_string(),
        ("fuse", Family::Davfs) => "davfs2 (WebDAV)".to_string(),
        _ => t.to_string(),
    };
    (name, family)
}

/// The family from the first sector of a device or image file.
fn device_signature(source: &str) -> Family {
    let mut sector = [0u8; 512];
    let ok = std::fs::File::open(source)
        .and_then(|mut f| f.read_exact(&mut sector))
        .is_ok();
    if !ok {
        return Family::Other;
    }
    match &sector[3..11] {
        b"EXFAT   " => Family::Exfat,
        b"NTFS    " => Family::Ntfs,
        _ if &sector[82..87] == b"FAT32" || &sector[54..57] == b"FAT" => Family::Fat,
        _ => Family::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_table_escapes_are_decoded() {
        assert_eq!(unescape_octal("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape_octal("/plain"), "/plain");
    }

    #[test]
    fn fuse_identity_uses_type_and_source() {
        let a = Identity {
            magic: 0x65735546,
            fsid: 0,
            fstype: "fuseblk".into(),
            source: "/dev/sdb1".into(),
        };
        let mut b = a.clone();
        assert!(a.same_disk(&b));
        b.source = "/dev/sdc1".into();
        assert!(!a.same_disk(&b));
        let e = Identity {
            magic: 0xEF53,
            fsid: 7,
            fstype: "ext4".into(),
            source: "/dev/sdb1".into(),
        };
        let mut f = e.clone();
        f.source = "/dev/sdc1".into();
        assert!(e.same_disk(&f), "an ext4 fsid survives a new device name");
        f.fsid = 8;
        assert!(!e.same_disk(&f));
    }
}
