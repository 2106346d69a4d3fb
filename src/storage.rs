//! The storage folder on the backup disk: its marker, catalog and per-host locks.
//! Layout: `<root>/.snapnest/{marker,catalog.db,lock-<host>}` and `<root>/<host>/<snapshot>/…`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

const META_DIR: &str = ".snapnest";
const MARKER: &str = "marker";
const CATALOG: &str = "catalog.db";

#[derive(Clone, Debug)]
pub struct Storage {
    root: PathBuf,
    id: String,
    /// The working catalog is in the state folder, the disk holds a copy (`catalog::copy`).
    copied_catalog: bool,
}

/// The line in the marker of a disk whose catalog is a copy.
const COPIED: &str = "catalog = \"copy\"";

static STATE_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The state folder of this process's config (the first one loaded), where copied catalogs'
/// working copies live.
pub fn use_state_dir(dir: &Path) {
    let _ = STATE_DIR.set(dir.to_path_buf());
}

fn state_dir() -> PathBuf {
    STATE_DIR
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/var/lib/snapnest"))
}

/// What `init` found or did.
#[derive(Debug)]
pub enum InitOutcome {
    Created { id: String },
    AlreadyInitialised { id: String },
}

impl Storage {
    /// Prepare `root` for backups. The folder itself must already exist: an absent folder
    /// usually means an unmounted disk, and creating it would fill the wrong filesystem.
    pub fn init(root: &Path) -> Result<InitOutcome> {
        Storage::init_with(root, false)
    }

    /// As `init`; `copied_catalog` where the disk's driver loses data written to existing
    /// files: the catalog then works in the state folder and the disk gets whole copies.
    pub fn init_with(root: &Path, copied_catalog: bool) -> Result<InitOutcome> {
        let meta = fs::metadata(root).map_err(|e| {
            Error::Other(format!(
                "storage folder {} does not exist or cannot be read ({e}); snapnest never creates it \
                 itself. Mount the backup disk, or create the folder, then run init again",
                root.display()
            ))
        })?;
        if !meta.is_dir() {
            return Err(Error::Other(format!(
                "storage path {} is not a folder",
                root.display()
            )));
        }
        if let Ok(s) = Storage::open(root) {
            return Ok(InitOutcome::AlreadyInitialised { id: s.id });
        }
        let meta_dir = root.join(META_DIR);
        fs::create_dir_all(&meta_dir).at(&meta_dir, "creating")?;
        let id = uuid::Uuid::new_v4().to_string();
        // Catalog first, marker last: a marker promises a usable catalog.
        if copied_catalog {
            let local = local_catalog(&id);
            if let Some(parent) = local.parent() {
                fs::create_dir_all(parent).at(parent, "creating state folder")?;
            }
            let mut catalog = crate::catalog::Catalog::open(&local)?;
            catalog.set_storage_id(&id)?;
            catalog.copy_to(&meta_dir.join(CATALOG));
            catalog.save_copy()?;
        } else {
            let catalog = crate::catalog::Catalog::open(&meta_dir.join(CATALOG))?;
            catalog.set_storage_id(&id)?;
            drop(catalog);
        }
        let marker = meta_dir.join(MARKER);
        let tmp = meta_dir.join("marker.tmp");
        let mut text = format!(
            "# snapnest storage marker: backups only run where this file is present.\nid = \"{id}\"\ncreated = \"{}\"\n",
            chrono::Local::now().to_rfc3339()
        );
        if copied_catalog {
            text.push_str("# catalog.db is a whole copy, replaced after each change (this disk's driver\n# loses data written to existing files).\n");
            text.push_str(COPIED);
            text.push('\n');
        }
        let mut f = File::create(&tmp).at(&tmp, "creating")?;
        f.write_all(text.as_bytes()).at(&tmp, "writing")?;
        f.sync_all().at(&tmp, "syncing")?;
        fs::rename(&tmp, &marker).at(&marker, "creating")?;
        sync_dir(&meta_dir)?;
        Ok(InitOutcome::Created { id })
    }

    /// Open an initialised storage folder; refuses when the marker is missing.
    pub fn open(root: &Path) -> Result<Storage> {
        let marker = root.join(META_DIR).join(MARKER);
        let text = match fs::read_to_string(&marker) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotInitialised {
                    storage: root.to_path_buf(),
                    marker,
                })
            }
            Err(e) => return Err(Error::io(marker, "reading storage marker", e)),
        };
        let id = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("id = \"")?
                    .strip_suffix('"')
                    .map(str::to_string)
            })
            .ok_or_else(|| {
                Error::Other(format!(
                    "storage marker {} is damaged (no id line)",
                    marker.display()
                ))
            })?;
        let copied_catalog = text.lines().any(|l| l.trim() == COPIED);
        Ok(Storage {
            root: root.to_path_buf(),
            id,
            copied_catalog,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The working catalog (in the state folder where the disk holds a copy).
    pub fn catalog_path(&self) -> PathBuf {
        match self.copied_catalog {
            true => local_catalog(&self.id),
            false => self.disk_catalog_path(),
        }
    }

    /// The catalog file on the disk.
    pub fn disk_catalog_path(&self) -> PathBuf {
        self.root.join(META_DIR).join(CATALOG)
    }

    /// Whether the disk holds a copy of a working catalog kept in the state folder.
    pub fn copied_catalog(&self) -> bool {
        self.copied_catalog
    }

    /// Open the catalog and check it belongs to this disk's marker.
    pub fn catalog(&self) -> Result<crate::catalog::Catalog> {
        let path = self.catalog_path();
        if self.copied_catalog {
            let c = crate::catalog::copy::open(&path, &self.disk_catalog_path(), &self.id)?;
            return self.check_id(c, &path);
        }
        if !path.exists() {
            return Err(Error::Other(format!(
                "catalog {} is missing although the marker is present; the disk may be damaged",
                path.display()
            )));
        }
        let c = crate::catalog::Catalog::open(&path)?;
        self.check_id(c, &path)
    }

    fn check_id(&self, c: crate::catalog::Catalog, path: &Path) -> Result<crate::catalog::Catalog> {
        match c.storage_id()? {
            Some(id) if id == self.id => Ok(c),
            other => Err(Error::Other(format!(
                "catalog {} belongs to storage {:?}, but the marker says {:?}; refusing to mix two disks",
                path.display(),
                other.unwrap_or_default(),
                self.id
            ))),
        }
    }

    /// `<root>/<host>`, created on first use (inside an initialised storage only).
    pub fn host_dir(&self, host: &str) -> Result<PathBuf> {
        let dir = self.root.join(host);
        // Owner-only: snapshots keep the hosts' modes, setuid bits included, and must not
        // become runnable by other users of the box.
        use std::os::unix::fs::DirBuilderExt;
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => sync_dir(&self.root)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(dir, "creating host folder", e)),
        }
        Ok(dir)
    }

    /// One backup per host at a time, across processes. Released when dropped.
    pub fn lock_host(&self, host: &str) -> Result<HostLock> {
        let path = self.root.join(META_DIR).join(format!("lock-{host}"));
        let file = open_lock_file(&path)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(HostLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Other(format!(
                "host {host}: another snapnest backup of this host is running"
            ))),
            Err(e) => Err(Error::io(path, "locking", e.into())),
        }
    }
}

pub struct HostLock {
    _file: File,
}

/// Held by whichever process writes to the storage (a daemon while it works, a manual
/// backup or prune): two processes never share a storage folder. Released when dropped.
/// Not held while idle, so an idle daemon never keeps the disk from being unmounted.
pub struct WriterLock {
    _file: File,
}

/// Why the writer lock is not ours.
#[derive(Debug)]
pub struct Busy {
    /// What the holder wrote into the lock file: its pid and command.
    pub holder: String,
}

impl Storage {
    /// Take the storage's writer lock without waiting.
    pub fn try_lock_writer(&self) -> Result<std::result::Result<WriterLock, Busy>> {
        let path = self.root.join(META_DIR).join("writer.lock");
        let mut file = open_lock_file(&path)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                let me = format!("pid {} ({})", std::process::id(), process_name());
                let _ = file.set_len(0);
                let _ = file.write_all(me.as_bytes());
                Ok(Ok(WriterLock { _file: file }))
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = std::io::Read::read_to_string(&mut file, &mut holder);
                if holder.trim().is_empty() {
                    holder = "another snapnest process".into();
                }
                Ok(Err(Busy { holder }))
            }
            Err(e) => Err(Error::io(path, "locking", e.into())),
        }
    }

    /// Take the writer lock, waiting for the holder to finish; `waiting` is told once who it is.
    pub fn lock_writer(&self, mut waiting: impl FnMut(&Busy)) -> Result<WriterLock> {
        let mut told = false;
        loop {
            match self.try_lock_writer()? {
                Ok(lock) => return Ok(lock),
                Err(busy) => {
                    if !told {
                        waiting(&busy);
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            }
        }
    }
}

/// A lock file, created if missing and never truncated on open: it may hold the holder's pid.
pub fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .at(path, "opening lock file")
}

fn process_name() -> String {
    std::env::args().take(2).collect::<Vec<_>>().join(" ")
}

/// The working copy of a copied catalog: `<state_dir>/catalogs/<storage id>.db`.
fn local_catalog(id: &str) -> PathBuf {
    state_dir().join("catalogs").join(format!("{id}.db"))
}

/// Make a rename or create in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .at(dir, "syncing folder")
}
