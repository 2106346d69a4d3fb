//! Removing pruned snapshots off the critical path: one background thread at idle I/O
//! priority. A snapshot is first marked in the catalog (never linked from or listed again),
//! then renamed out of sight, then removed, then forgotten; a crash at any step is finished
//! by the next start.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

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

/// Queued or in-progress deletions, by (storage id, snapshot id): a disk that comes and goes
/// re-submits its unfinished deletions, and each must still be done once.
type Pending = Arc<Mutex<HashSet<(String, i64)>>>;

/// Handle of the background deleter; `pending` says whether it still has work.
pub struct Deleter {
    tx: Sender<(Storage, Doomed)>,
    pending: Pending,
}

impl Deleter {
    pub fn start() -> Deleter {
        let (tx, rx) = channel::<(Storage, Doomed)>();
        let pending: Pending = Default::default();
        let queued = pending.clone();
        std::thread::Builder::new()
            .name("deleter".into())
            .spawn(move || {
                for (storage, d) in rx {
                    match delete_checked(&storage, &d) {
                        Ok(true) => logging::info(format!("host={} pruned {}", d.host, d.name)),
                        Ok(false) => {}
                        Err(e) => logging::error(format!("host={} prune: {}: {e}", d.host, d.name)),
                    }
                    let key = (storage.id().to_string(), d.id);
                    queued
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                }
            })
            .expect("spawning deleter thread");
        Deleter { tx, pending }
    }

    /// Queue a snapshot already marked `deleting`; a no-op if it is queued already.
    pub fn submit(&self, storage: &Storage, d: Doomed) {
        let key = (storage.id().to_string(), d.id);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.insert(key.clone()) && self.tx.send((storage.clone(), d)).is_err() {
            pending.remove(&key);
        }
    }

    /// Snapshots queued or being removed.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The background path: only if the disk mounted now is the one the deletion was decided on
/// and the catalog still says `deleting` for exactly this snapshot. Ok(false): skipped.
fn delete_checked(queued_on: &Storage, d: &Doomed) -> crate::Result<bool> {
    let now = Storage::open(queued_on.root())?;
    if now.id() != queued_on.id() {
        logging::warn(format!(
            "host={} not pruning {}: a different disk is mounted now (finishes when the first returns)",
            d.host, d.name
        ));
        return Ok(false);
    }
    if !now.catalog()?.is_deleting(d.id, &d.host, &d.name)? {
        return Ok(false);
    }
    delete(&now, d)?;
    Ok(true)
}

/// Remove one marked snapshot now (also used by `snapnest prune` in the foreground).
/// The tree goes at idle I/O priority; the catalog part at normal priority, because it holds
/// the catalog's write lock that a backup may be waiting for.
pub fn delete(storage: &Storage, d: &Doomed) -> crate::Result<()> {
    let _idle = IdlePriority::enter();
    let host_dir = storage.root().join(&d.host);
    let visible = host_dir.join(&d.name);
    let hidden = host_dir.join(format!("{DELETING_PREFIX}{}", d.name));
    if fs::symlink_metadata(&visible).is_ok() {
        crate::strategy::before_delete(storage, &d.host, d.id, &d.name)?;
        // The hand-over renames reach the disk before the tree they came from goes: on a
        // disk without a journal (exFAT, FAT) a power cut could keep the removal and lose a
        // rename, and with it the only copy of a file.
        let dir =
            fs::File::open(&host_dir).map_err(|e| crate::Error::io(&host_dir, "opening", e))?;
        rustix::fs::syncfs(&dir).map_err(|e| crate::Error::io(&host_dir, "syncing", e.into()))?;
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
    drop(_idle);
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

/// Deleting a big hard-linked tree is slow; at idle priority it never slows a backup. The
/// calling thread's I/O class and nice value are restored on drop.
pub(crate) struct IdlePriority {
    io: libc::c_long,
    nice: libc::c_int,
}

const IOPRIO_WHO_PROCESS: libc::c_int = 1;

impl IdlePriority {
    pub(crate) fn enter() -> IdlePriority {
        const IOPRIO_CLASS_IDLE: libc::c_long = 3;
        const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
        // who = 0: the calling thread (Linux applies both calls per thread).
        unsafe {
            let io = libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
            let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
            libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                0,
                IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
            );
            libc::setpriority(libc::PRIO_PROCESS, 0, nice.saturating_add(10).min(19));
            IdlePriority { io, nice }
        }
    }
}

impl Drop for IdlePriority {
    fn drop(&mut self) {
        unsafe {
            if self.io >= 0 {
                libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, self.io);
            }
            // Lowering nice again needs CAP_SYS_NICE; without it the thread stays nicer.
            libc::setpriority(libc::PRIO_PROCESS, 0, self.nice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A storage at `root` with one published snapshot `box/<name>` marked deleting.
    fn doomed_snapshot(root: &Path, name: &str) -> (Storage, Doomed) {
        fs::create_dir_all(root).unwrap();
        Storage::init(root).unwrap();
        let storage = Storage::open(root).unwrap();
        let mut cat = storage.catalog().unwrap();
        let run = cat.begin_run("box", 1).unwrap();
        let stats = crate::model::Stats::default();
        let id = (cat.add_snapshot(
            "box",
            name,
            run,
            crate::model::Outcome::Good,
            &stats,
            1,
            1,
            &[],
            &[],
        ))
        .unwrap();
        cat.publish(id).unwrap();
        fs::create_dir_all(root.join("box").join(name)).unwrap();
        fs::write(root.join("box").join(name).join("f"), "data").unwrap();
        assert!(cat.mark_deleting(id).unwrap());
        assert!(!cat.mark_deleting(id).unwrap(), "marking twice is refused");
        let d = Doomed {
            id,
            host: "box".into(),
            name: name.into(),
        };
        (storage, d)
    }

    #[test]
    fn a_queued_deletion_never_touches_another_disk_mounted_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        let (queued_on, d) = doomed_snapshot(&mnt, "2026-01-01_000000");
        // The disk is swapped for another one with a snapshot of the same name.
        fs::rename(&mnt, dir.path().join("first-disk")).unwrap();
        let other = dir.path().join("other");
        let (_, other_d) = doomed_snapshot(&other, "2026-01-01_000000");
        let db = rusqlite::Connection::open(Storage::open(&other).unwrap().catalog_path()).unwrap();
        db.execute("UPDATE snapshots SET state = 'published'", [])
            .unwrap();
        drop(db);
        fs::rename(&other, &mnt).unwrap();
        assert!(!delete_checked(&queued_on, &d).unwrap());
        assert!(
            mnt.join("box/2026-01-01_000000/f").exists(),
            "other disk untouched"
        );

        // The same disk, but the catalog no longer says deleting (a stale queue): skipped too.
        assert!(!delete_checked(&Storage::open(&mnt).unwrap(), &other_d).unwrap());
        assert!(mnt.join("box/2026-01-01_000000/f").exists());

        // The first disk back: now it goes, once.
        fs::rename(&mnt, &other).unwrap();
        fs::rename(dir.path().join("first-disk"), &mnt).unwrap();
        assert!(delete_checked(&queued_on, &d).unwrap());
        assert!(!mnt.join("box/2026-01-01_000000").exists());
        assert!(
            !delete_checked(&queued_on, &d).unwrap(),
            "a duplicate is a no-op"
        );
    }

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
