//! The catalog of a disk whose driver loses data written to existing files (fusefat): the
//! working catalog lives in the state folder and the disk holds a whole-file copy.
//!
//! Promise: the disk's `catalog.db` is only ever replaced by a rename of a new file that was
//! written in one go, synced and read back equal; it is never written in place.
//!
//! Each saved copy carries a generation (`meta.generation`, +1 per save). Opening takes the
//! disk's copy when the local one is missing, belongs to another storage or is older (the
//! disk was used from another box or state folder), and saves again when the local one is
//! newer (a save that failed or was killed).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{err_at, Catalog};
use crate::error::{Error, IoContext, Result};

/// Where a copied catalog lives and where its copy goes.
#[derive(Clone, Debug)]
pub struct CopyBack {
    /// `<storage>/.snapnest/catalog.db` on the disk.
    pub disk: PathBuf,
    /// Total changes of the connection when it was opened (or last saved).
    saved_at: u64,
    /// The local copy is newer than the disk's: save even without new changes.
    behind: bool,
}

/// The generation and storage id of a catalog file, read without writing anything next to
/// it (immutable: no journal, no lock files on the disk).
fn stamp(path: &Path) -> Result<(i64, Option<String>)> {
    let uri = format!("file:{}?immutable=1", uri_path(path));
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(err_at(path, "opening copy"))?;
    read_stamp(&conn, path)
}

fn read_stamp(conn: &Connection, path: &Path) -> Result<(i64, Option<String>)> {
    let get = |key: &str| -> Result<Option<String>> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(err_at(path, "reading catalog"))
    };
    let generation = get("generation")?.and_then(|g| g.parse().ok()).unwrap_or(0);
    Ok((generation, get("storage_id")?))
}

/// `path` as the path part of an SQLite URI: `?`, `#` and `%` in a storage path would
/// otherwise end or escape it.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Open the working copy `local` of the disk's catalog `disk` for storage `id`.
pub fn open(local: &Path, disk: &Path, id: &str) -> Result<Catalog> {
    if let Some(parent) = local.parent() {
        fs::create_dir_all(parent).at(parent, "creating state folder")?;
    }
    let on_disk = match disk.exists() {
        true => Some(stamp(disk)?),
        false => None,
    };
    let here = match local.exists() {
        true => stamp_live(local).ok(),
        false => None,
    };
    let mine = |s: &(i64, Option<String>)| s.1.as_deref() == Some(id);
    let behind = match (&on_disk, &here) {
        (None, None) => {
            return Err(Error::Other(format!(
                "catalog {} is missing although the marker is present, and the state folder has no copy ({}); the disk may be damaged",
                disk.display(),
                local.display()
            )))
        }
        (Some(d), Some(h)) if mine(h) && h.0 >= d.0 => h.0 > d.0,
        (None, Some(h)) if mine(h) => true,
        (Some(_), _) => {
            adopt(disk, local)?;
            false
        }
        (None, Some(_)) => {
            return Err(Error::Other(format!(
                "catalog {} is missing and {} belongs to another storage",
                disk.display(),
                local.display()
            )))
        }
    };
    let mut c = Catalog::open(local)?;
    c.copy = Some(CopyBack {
        disk: disk.to_path_buf(),
        saved_at: c.conn.total_changes(),
        behind,
    });
    Ok(c)
}

/// As `stamp`, for the local working copy (a WAL database: read it normally).
fn stamp_live(path: &Path) -> Result<(i64, Option<String>)> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(err_at(path, "opening"))?;
    read_stamp(&conn, path)
}

/// The disk's copy becomes the working copy (its old WAL must not be replayed onto it).
fn adopt(disk: &Path, local: &Path) -> Result<()> {
    let bytes = fs::read(disk).at(disk, "reading catalog copy")?;
    let tmp = local.with_extension("db.in");
    write_new(&tmp, &bytes)?;
    for side in ["db-wal", "db-shm"] {
        let p = local.with_extension(side);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(p, "removing", e))
            }
            _ => {}
        }
    }
    fs::rename(&tmp, local).at(local, "taking the disk's catalog")?;
    Ok(())
}

/// A new file holding `bytes`, synced.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .at(path, "creating")?;
    f.write_all(bytes).at(path, "writing")?;
    f.sync_all().at(path, "syncing")
}

/// Read `path` back past the page cache.
fn read_uncached(path: &Path) -> Result<Vec<u8>> {
    let mut f = File::open(path).at(path, "reading back")?;
    let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
    let mut out = Vec::new();
    f.read_to_end(&mut out).at(path, "reading back")?;
    Ok(out)
}

impl Catalog {
    /// From now on, `disk` gets a whole copy of this catalog after each change.
    pub fn copy_to(&mut self, disk: &Path) {
        self.copy = Some(CopyBack {
            disk: disk.to_path_buf(),
            saved_at: self.conn.total_changes(),
            behind: true,
        });
    }

    /// Write the disk's copy now when this connection changed anything since it was opened
    /// or last saved (or the disk's copy is behind). A no-op for catalogs kept on the disk.
    pub fn save_copy(&mut self) -> Result<()> {
        let Some(copy) = &self.copy else {
            return Ok(());
        };
        if !copy.behind && self.conn.total_changes() == copy.saved_at {
            return Ok(());
        }
        let disk = copy.disk.clone();
        let err = err_at(&self.path, "saving the catalog copy");
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES ('generation', '1')
                 ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                [],
            )
            .map_err(err)?;
        // A consistent whole database, WAL included, in one new local file.
        let snap = self
            .path
            .with_extension(format!("db.out-{}", std::process::id()));
        let _ = fs::remove_file(&snap);
        self.conn
            .execute("VACUUM INTO ?1", [snap.to_string_lossy()])
            .map_err(err)?;
        let bytes = fs::read(&snap).at(&snap, "reading")?;
        let _ = fs::remove_file(&snap);
        let tmp = disk.with_file_name(format!("catalog.db.tmp-{}", std::process::id()));
        write_new(&tmp, &bytes)?;
        if read_uncached(&tmp)? != bytes {
            let _ = fs::remove_file(&tmp);
            return Err(Error::Other(format!(
                "the catalog copy {} read back different from what was written; the previous copy is kept",
                tmp.display()
            )));
        }
        fs::rename(&tmp, &disk).at(&disk, "replacing the catalog copy")?;
        if let Some(dir) = disk.parent() {
            crate::storage::sync_dir(dir)?;
            remove_leftovers(dir);
        }
        let total = self.conn.total_changes();
        if let Some(copy) = &mut self.copy {
            copy.saved_at = total;
            copy.behind = false;
        }
        Ok(())
    }
}

impl Drop for Catalog {
    fn drop(&mut self) {
        if let Err(e) = self.save_copy() {
            // The working copy keeps the change; the next open saves again (it is newer).
            crate::logging::error(format!("catalog copy not saved: {e}"));
        }
    }
}

/// Temp copies left by saves that were killed (their process is gone); never the copy
/// itself, nor a save in progress.
fn remove_leftovers(meta_dir: &Path) {
    for item in fs::read_dir(meta_dir).into_iter().flatten().flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("catalog.db.tmp-") else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .map_or(true, |p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = fs::remove_file(item.path());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_storage_path_with_uri_characters_is_escaped() {
        assert_eq!(
            super::uri_path(std::path::Path::new("/mnt/usb 50%?#/x.db")),
            "/mnt/usb%2050%25%3F%23/x.db"
        );
        // And SQLite finds the file behind it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usb 50%?#").join("catalog.db");
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
             INSERT INTO meta VALUES ('generation', '7'), ('storage_id', 'abc');",
        )
        .unwrap();
        drop(conn);
        assert_eq!(super::stamp(&path).unwrap(), (7, Some("abc".to_string())));
    }
}
