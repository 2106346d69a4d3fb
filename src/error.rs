//! Errors of the library. Each carries what was being done and to which path or host,
//! so a message alone tells the user where to look.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {}: {source}{}", path.display(), io_hint(source))]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Config(String),

    #[error(
        "{} is not a snapnest storage folder (no marker {}): the backup disk may not be mounted. \
         Mount it, or run `snapnest init` once to prepare a new one",
        storage.display(),
        marker.display()
    )]
    NotInitialised { storage: PathBuf, marker: PathBuf },

    #[error("catalog {}: {action}: {source}", path.display())]
    Catalog {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    #[error("host {host}: {message}")]
    Ssh { host: String, message: String },

    #[error(
        "host {host}: HOST KEY CHANGED. The config pins {expected} but the server presented {actual}. \
         This can mean someone is intercepting the connection; if the machine was reinstalled, \
         check the new key and update `host_key` (see `snapnest hostkey {host}`)"
    )]
    HostKeyMismatch {
        host: String,
        expected: String,
        actual: String,
    },

    #[error("host {host}: no `host_key` is pinned in the config; run `snapnest hostkey {host}` and add the line it prints")]
    HostKeyNotPinned { host: String },

    #[error("host {host}: listing {folder}: {message}")]
    Listing {
        host: String,
        folder: String,
        message: String,
    },

    #[error("interrupted: snapnest is stopping; the next run resumes from the staging folder")]
    Cancelled,

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            action,
            source,
        }
    }
}

/// What a user should read into the errors a backup disk gives on its bad days.
fn io_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => " (the disk is full)",
        Some(libc::EROFS) => " (the filesystem went read-only: the disk may have errors)",
        Some(libc::EIO) => " (I/O error: the disk may be failing or was unplugged)",
        Some(libc::ENOTCONN) | Some(libc::ENODEV) => " (the disk or share is gone)",
        _ => "",
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path and an action to an io::Result.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>, action: &'static str) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>, action: &'static str) -> Result<T> {
        self.map_err(|e| Error::io(path, action, e))
    }
}
