//! The portable path for SSH hosts without GNU find/tar (BusyBox, macOS): listing by SFTP
//! `readdir` and content by SFTP reads. Slower (one request per folder and per file) but
//! needs nothing on the host beyond its SSH server. SFTP v3 times are whole seconds.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ssh2::{ErrorCode, FileStat, Sftp};

use super::listing::{all_ancestors, refused, snapshot_path};
use super::ssh::Connection;
use super::{Fetched, Listing, Throttle};
use crate::error::Result;
use crate::model::{Entry, FileProblem, Kind, Severity};

pub struct SftpSource {
    pub conn: Connection,
    sftp: Sftp,
}

impl SftpSource {
    pub fn new(conn: Connection) -> Result<SftpSource> {
        let sftp = conn
            .session
            .sftp()
            .map_err(|e| conn.fail(format!("starting SFTP: {e}")))?;
        Ok(SftpSource { conn, sftp })
    }

    /// The SFTP session, for probes that read nothing (`access`).
    pub fn sftp(&self) -> &Sftp {
        &self.sftp
    }

    pub fn list(&mut self, _host: &str, folders: &[String], listing: &mut Listing) -> Result<()> {
        // Parents are followed like the folders: `/home -> /usr/home` is stored as a folder.
        for anc in all_ancestors(folders) {
            match self.sftp.stat(Path::new(&anc)) {
                Ok(st) => {
                    self.push(listing, anc.as_bytes(), &anc, &st);
                }
                Err(e) => listing.problems.push(problem(&anc, "listing", &e)),
            }
        }
        for folder in folders {
            // stat, not lstat: a configured folder that is a symlink is followed.
            let top = match self.sftp.stat(Path::new(folder)) {
                Ok(st) => st,
                Err(e) => {
                    listing.problems.push(FileProblem {
                        path: folder.clone(),
                        action: "listing",
                        message: format!("configured folder: {e}"),
                        severity: Severity::Error,
                    });
                    continue;
                }
            };
            let is_dir = self.push(listing, folder.as_bytes(), folder, &top);
            let mut stack: Vec<PathBuf> = if is_dir {
                vec![PathBuf::from(folder)]
            } else {
                vec![]
            };
            while let Some(dir) = stack.pop() {
                let children = match self.sftp.readdir(&dir) {
                    Ok(c) => c,
                    Err(e) => {
                        listing
                            .problems
                            .push(problem(&dir.to_string_lossy(), "listing", &e));
                        continue;
                    }
                };
                for (path, st) in children {
                    let name = path.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
                    if name == b"." || name == b".." {
                        continue;
                    }
                    if self.push(listing, path.as_os_str().as_bytes(), folder, &st) {
                        stack.push(path);
                    }
                }
            }
        }
        Ok(())
    }

    /// Add one listed object; true when it is a folder to descend into.
    fn push(&self, listing: &mut Listing, abs: &[u8], folder: &str, st: &FileStat) -> bool {
        let rel = match snapshot_path(abs, folder) {
            Ok(rel) => rel,
            Err(why) => {
                listing.problems.push(refused(abs, why));
                return false;
            }
        };
        let Some(kind) = st.perm.and_then(Kind::from_mode) else {
            listing.problems.push(refused(
                abs,
                "the server did not say what kind of object this is".into(),
            ));
            return false;
        };
        let target = if kind == Kind::Symlink {
            match self
                .sftp
                .readlink(Path::new(std::ffi::OsStr::from_bytes(abs)))
            {
                Ok(t) => Some(t.as_os_str().as_bytes().to_vec()),
                Err(e) => {
                    listing
                        .problems
                        .push(problem(&String::from_utf8_lossy(abs), "listing", &e));
                    return false;
                }
            }
        } else {
            None
        };
        listing.entries.push(Entry {
            path: rel,
            kind,
            size: if kind == Kind::File {
                st.size.unwrap_or(0)
            } else {
                0
            },
            mtime_ns: st.mtime.unwrap_or(0) as i64 * 1_000_000_000,
            mode: st.perm.unwrap_or(0) & 0o7777,
            uid: st.uid.unwrap_or(0),
            gid: st.gid.unwrap_or(0),
            target,
        });
        kind == Kind::Dir
    }

    pub fn fetch(
        &mut self,
        files: &[&Entry],
        throttle: &mut Throttle,
        sink: &mut dyn FnMut(usize, Fetched<'_>) -> Result<()>,
    ) -> Result<()> {
        for (index, f) in files.iter().enumerate() {
            let abs = PathBuf::from(std::ffi::OsStr::from_bytes(&[b"/", &f.path[..]].concat()));
            // Refuse what is no longer a regular file: opening a FIFO would hang the server.
            let opened = self.sftp.lstat(&abs).and_then(|st| {
                if st.file_type().is_file() {
                    self.sftp.open(&abs).map(Some)
                } else {
                    Ok(None)
                }
            });
            match opened {
                Ok(Some(mut file)) => {
                    let st = file.stat().ok();
                    let size = st.as_ref().and_then(|s| s.size).unwrap_or(f.size);
                    let owner = st.as_ref().and_then(|s| Some((s.uid?, s.gid?)));
                    // libssh2 reads ahead in proportion to the caller's buffer; the job reads
                    // with a large one, which keeps several requests in flight.
                    let mut limited = throttle.reader(&mut file).take(size);
                    sink(
                        index,
                        Fetched::Content {
                            reader: &mut limited,
                            size,
                            owner,
                        },
                    )?;
                }
                Ok(None) => sink(
                    index,
                    Fetched::Failed(FileProblem {
                        path: f.display_path(),
                        action: "reading",
                        message: "is no longer a regular file; skipped".into(),
                        severity: Severity::Warning,
                    }),
                )?,
                Err(e) if is_network(&e) => {
                    return Err(self.conn.fail(format!("reading {}: {e}", f.display_path())))
                }
                Err(e) => sink(
                    index,
                    Fetched::Failed(problem(&f.display_path(), "reading", &e)),
                )?,
            }
        }
        Ok(())
    }
}

fn is_network(e: &ssh2::Error) -> bool {
    matches!(e.code(), ErrorCode::Session(_))
}

fn problem(path: &str, action: &'static str, e: &ssh2::Error) -> FileProblem {
    let (severity, message) = match e.code() {
        ErrorCode::SFTP(2) => (
            Severity::Warning,
            "vanished before it could be read".to_string(),
        ),
        ErrorCode::SFTP(3) => (Severity::Error, "permission denied".to_string()),
        _ => (Severity::Error, e.to_string()),
    };
    FileProblem {
        path: path.to_string(),
        action,
        message,
        severity,
    }
}
