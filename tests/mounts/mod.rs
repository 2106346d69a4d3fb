//! Real filesystems for tests: loop-mounted ext4/xfs/btrfs images, exFAT and NTFS through
//! FUSE, FAT32 through fusefat, tmpfs. Unmounted (and loop devices freed) when dropped.
#![allow(dead_code)]

pub mod big;
pub mod tree;
pub mod webdav;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fs {
    Ext4,
    Xfs,
    Btrfs,
    Tmpfs,
    Exfat,
    Fat32,
    Ntfs,
}

pub struct Mounted {
    pub fs: Fs,
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    loopdev: Option<String>,
    /// Loop devices are few (8 nodes and no udev to make more in a container): the tests of
    /// this binary take them one at a time.
    _loop_turn: Option<std::sync::MutexGuard<'static, ()>>,
}

static LOOP_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Attach `img` to a free loop device; other processes may take the one `-f` found, so try
/// again for a while.
fn attach(img: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = Command::new("losetup")
            .args(["-f", "--show", img])
            .output()
            .expect("losetup (util-linux)");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no free loop device for 60 s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (CI installs it in .ci/run)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A storage folder `store` made on `disk`, and a config in `work` that backs up `src` as the
/// local host "box" into it: `storage` goes into [storage], `host` at the end of the host
/// table (`keep = …`). Returns (store, config).
pub fn box_on_disk(
    disk: &Path,
    work: &Path,
    src: &Path,
    storage: &str,
    host: &str,
) -> (PathBuf, PathBuf) {
    let store = disk.join("store");
    fs::create_dir(&store).unwrap();
    let config = work.join("snapnest.toml");
    fs::write(
        &config,
        format!(
            "[storage]\npath = \"{}\"\n{storage}\n\n{}{host}",
            store.display(),
            crate::common::local_host("box", src)
        ),
    )
    .unwrap();
    (store, config)
}

/// Why this machine cannot mount `fs` at all (no loop devices, no FUSE), if it cannot.
/// The snapshot folders in a host's folder on the disk, oldest first (their names sort by date).
pub fn snapshot_dirs(host_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(host_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("20"))
        .collect();
    v.sort();
    v
}

pub fn missing_facility(fs: Fs) -> Option<String> {
    let needs_loop = matches!(fs, Fs::Ext4 | Fs::Xfs | Fs::Btrfs | Fs::Exfat);
    let needs_fuse = matches!(fs, Fs::Exfat | Fs::Fat32 | Fs::Ntfs);
    if needs_loop && !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control: this machine has no loop devices".into());
    }
    if needs_fuse && !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse: this machine cannot mount FUSE filesystems".into());
    }
    None
}

impl Mounted {
    /// A fresh filesystem of `fs` mounted on a temp folder. `size_mib` for image files.
    pub fn new(fs: Fs, size_mib: u64) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let (img_s, mnt_s) = (img.to_str().unwrap(), mnt.to_str().unwrap());
        let mut loopdev = None;
        let needs_loop = matches!(fs, Fs::Ext4 | Fs::Xfs | Fs::Btrfs | Fs::Exfat);
        let loop_turn = needs_loop.then(|| LOOP_TURN.lock().unwrap_or_else(|p| p.into_inner()));
        if fs != Fs::Tmpfs {
            fs::File::create(&img)
                .unwrap()
                .set_len(size_mib << 20)
                .unwrap();
        }
        match fs {
            Fs::Tmpfs => {
                run(
                    "mount",
                    &[
                        "-t",
                        "tmpfs",
                        "-o",
                        &format!("size={size_mib}m"),
                        "tmpfs",
                        mnt_s,
                    ],
                );
            }
            Fs::Ext4 | Fs::Xfs | Fs::Btrfs => {
                match fs {
                    Fs::Ext4 => run("mkfs.ext4", &["-q", "-F", img_s]),
                    Fs::Xfs => run("mkfs.xfs", &["-q", "-f", img_s]),
                    _ => run("mkfs.btrfs", &["-q", "-f", img_s]),
                };
                let dev = attach(img_s);
                run("mount", &[&dev, mnt_s]);
                loopdev = Some(dev);
            }
            Fs::Exfat => {
                run("mkfs.exfat", &[img_s]);
                // exfat-fuse wants a block device.
                let dev = attach(img_s);
                run("mount.exfat-fuse", &[&dev, mnt_s]);
                loopdev = Some(dev);
            }
            Fs::Fat32 => {
                run("mkfs.vfat", &["-F", "32", img_s]);
                run("fusefat", &["-o", "rw+", img_s, mnt_s]);
            }
            Fs::Ntfs => {
                run("mkfs.ntfs", &["-q", "-F", "-f", img_s]);
                run("ntfs-3g", &[img_s, mnt_s]);
            }
        }
        Mounted {
            fs,
            dir,
            mnt,
            loopdev,
            _loop_turn: loop_turn,
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let mnt = self.mnt.to_str().unwrap().to_string();
        for _ in 0..50 {
            let ok = Command::new("umount")
                .arg(&mnt)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok || !is_mounted(&self.mnt) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if let Some(dev) = &self.loopdev {
            let _ = Command::new("losetup").args(["-d", dev]).output();
        }
    }
}

fn is_mounted(p: &Path) -> bool {
    let s = p.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(s))
}
