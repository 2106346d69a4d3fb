//! Small real filesystems for tests: a sparse image file, formatted and loop-mounted;
//! unmounted again when dropped (lazily, so a failing test never leaves it mounted).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopDisk {
    pub image: PathBuf,
    pub mnt: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl LoopDisk {
    /// An ext4 filesystem of `mib` MiB, mounted on a fresh folder.
    pub fn ext4(mib: u32) -> LoopDisk {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        sh(&format!(
            "truncate -s {mib}M {0} && mkfs.ext4 -q -F -m 0 {0}",
            image.display()
        ));
        let d = LoopDisk {
            image,
            mnt,
            _dir: dir,
        };
        d.mount();
        d
    }

    pub fn mount(&self) {
        sh(&format!(
            "mount -o loop {} {}",
            self.image.display(),
            self.mnt.display()
        ));
    }

    pub fn unmount(&self) {
        sh(&format!("umount {}", self.mnt.display()));
    }

    /// (total, available) bytes as statvfs says, as the daemon sees them.
    pub fn space(&self) -> (u64, u64) {
        let s = rustix::fs::statvfs(&self.mnt).unwrap();
        (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize)
    }

    pub fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}
