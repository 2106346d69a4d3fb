//! One daemon per state folder: an flock held for the daemon's lifetime, with its pid inside
//! so that others can say who holds it.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

const NAME: &str = "daemon.lock";

pub struct DaemonLock {
    _file: File,
}

pub fn acquire(state_dir: &Path) -> Result<DaemonLock> {
    std::fs::create_dir_all(state_dir).at(state_dir, "creating state folder")?;
    let path = state_dir.join(NAME);
    let mut file = crate::storage::open_lock_file(&path)?;
    // `daemon_pid` probes with a brief shared lock; a daemon starting at that moment would
    // see WOULDBLOCK, so it tries for a second before concluding another daemon runs.
    let try_lock =
        || rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
    let mut result = try_lock();
    for _ in 0..20 {
        if result != Err(rustix::io::Errno::WOULDBLOCK) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        result = try_lock();
    }
    match result {
        Ok(()) => {
            file.set_len(0).at(&path, "writing lock file")?;
            file.write_all(std::process::id().to_string().as_bytes())
                .at(&path, "writing lock file")?;
            Ok(DaemonLock { _file: file })
        }
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Err(Error::Other(format!(
                "another snapnest daemon (pid {}) is running with state folder {}",
                pid.trim(),
                state_dir.display()
            )))
        }
        Err(e) => Err(Error::io(path, "locking", e.into())),
    }
}

/// The pid of the daemon holding `state_dir`, if one runs.
pub fn daemon_pid(state_dir: &Path) -> Option<u32> {
    let path = state_dir.join(NAME);
    let mut file = File::open(&path).ok()?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
        // We could lock it: nobody holds it.
        Ok(()) => None,
        Err(_) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Some(pid.trim().parse().unwrap_or(0))
        }
    }
}

pub fn daemon_running(state_dir: &Path) -> bool {
    daemon_pid(state_dir).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_probe_during_start_does_not_make_the_daemon_refuse() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NAME), "").unwrap();
        // What `snapnest status` does while the daemon starts: a brief shared lock.
        let probe = File::open(dir.path().join(NAME)).unwrap();
        rustix::fs::flock(&probe, rustix::fs::FlockOperation::LockShared).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(probe);
        });
        let lock = acquire(dir.path()).expect("acquired once the probe let go");
        t.join().unwrap();
        assert_eq!(daemon_pid(dir.path()), Some(std::process::id()));
        let e = acquire(dir.path())
            .err()
            .expect("a second daemon is refused")
            .to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(lock);
        assert_eq!(daemon_pid(dir.path()), None);
    }
}
