//! Removing pruned snapshots off the critical path: one background thread at idle I/O
//! priority. A snapshot is first marked in the catalog (never linked from or listed again),
//! then renamed out of sight, then removed, then forgotten; a crash at any step is finished
//! by the next start.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;

use crate::logging;
use crate::storage::Storage;

pub const DELETING_PREFIX: &str = ".deleting-";

/// One snapshot to remove, already marked `deleting` in the catalog.
#[derive(Clone, Debug)]
pub struct Doomed {
    pub id: i64,
    pub host: String,
    pub name: String,
}

/// Handle of the background deleter; the count says whether it still has work.
pub struct Deleter {
    tx: Sender<(Storage, Doomed)>,
    pending: Arc<AtomicUsize>,
}

impl Deleter {
    pub fn start() -> Deleter {
        let (tx, rx) = channel::<(Storage, Doomed)>();
        let pending = Arc::new(AtomicUsize::new(0));
        let count = pending.clone();
        std::thread::Builder::new()
            .name("deleter".into())
            .spawn(move || {
                set_idle_io_priority();
                for (storage, d) in rx {
                    if let Err(e) = delete(&storage, &d) {
                        logging::error(format!("host={} prune: {}: {e}", d.host, d.name));
                    } else {
                        logging::info(format!("host={} pruned {}", d.host, d.name));
                    }
                    count.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .expect("spawning deleter thread");
        Deleter { tx, pending }
    }

    pub fn submit(&self, storage: &Storage, d: Doomed) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send((storage.clone(), d)).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Snapshots queued or being removed.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

/// Remove one marked snapshot now (also used by `snapnest prune` in the foreground).
pub fn delete(storage: &Storage, d: &Doomed) -> crate::Result<()> {
    let host_dir = storage.root().join(&d.host);
    let visible = host_dir.join(&d.name);
    let hidden = host_dir.join(format!("{DELETING_PREFIX}{}", d.name));
    if fs::symlink_metadata(&visible).is_ok() {
        crate::strategy::before_delete(storage, &d.host, d.id, &d.name)?;
        fs::rename(&visible, &hidden)
            .map_err(|e| crate::Error::io(&visible, "hiding pruned snapshot", e))?;
    }
    if crate::dest::btrfs::is_subvolume(&hidden) {
        crate::dest::btrfs::delete_subvolume(&hidden)
            .map_err(|e| crate::Error::io(&hidden, "deleting btrfs snapshot", e))?;
    } else {
        remove_tree(&hidden)
            .map_err(|e| crate::Error::io(&hidden, "removing pruned snapshot", e))?;
    }
    storage.catalog()?.forget_snapshot(d.id)
}

/// `rm -rf` that also gets through folders the snapshot made read-only.
fn remove_tree(root: &Path) -> io::Result<()> {
    match fs::symlink_metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(md) if !md.is_dir() => return fs::remove_file(root),
        Ok(_) => {}
    }
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.last().cloned() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let mut pushed = false;
        for item in fs::read_dir(&dir)? {
            let item = item?;
            if item.file_type()?.is_dir() {
                stack.push(item.path());
                pushed = true;
            } else {
                fs::remove_file(item.path())?;
            }
        }
        if !pushed {
            fs::remove_dir(&dir)?;
            stack.pop();
        }
    }
    Ok(())
}

/// Deleting a big hard-linked tree is slow; at idle priority it never slows a backup.
fn set_idle_io_priority() {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    const IOPRIO_CLASS_IDLE: libc::c_int = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_int = 13;
    // who = 0: the calling thread.
    unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        );
        libc::nice(10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_folders_are_removed_too() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".deleting-x");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("a/link")).unwrap();
        fs::set_permissions(root.join("a/b"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert!(
            Path::new("/etc/passwd").exists(),
            "a symlink is removed, never followed"
        );
    }
}
