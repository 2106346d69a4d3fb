//! Where files come from. Two sources behind one small interface: the box's own folders and
//! SSH hosts (GNU find/tar streams, or SFTP where those tools are missing).
//! An enum rather than a trait object: the set is closed and the job owns its source.

pub mod access;
pub mod commands;
pub mod listing;
pub mod local;
mod read_ahead;
pub mod sftp;
pub mod ssh;
pub mod stream;
pub mod tail;
pub mod throttle;

use std::io::Read;

use crate::config::{Host, SourceSpec};
use crate::error::Result;
use crate::job::sorted::{Sorted, Sorter};
use crate::model::{Entry, FileProblem, Kind};
pub use throttle::Throttle;

/// A host's folders as listed: entries (paths validated) and the problems met.
#[derive(Default)]
pub struct Listing {
    pub entries: Entries,
    pub problems: Vec<FileProblem>,
}

/// Where a source puts what it lists, in any order: the job's sorter, which holds a bounded
/// number of entries in memory and spills the rest to the backup disk.
#[derive(Default)]
pub struct Entries {
    sorter: Sorter,
    roots: Vec<Vec<u8>>,
    listed_root: bool,
}

impl Entries {
    /// `roots`: the configured folders as snapshot paths, to tell whether any was listed.
    pub fn new(sorter: Sorter, roots: Vec<Vec<u8>>) -> Entries {
        Entries {
            sorter,
            roots,
            listed_root: false,
        }
    }

    pub fn push(&mut self, e: Entry) {
        if !self.listed_root && e.kind == Kind::Dir && self.roots.contains(&e.path) {
            self.listed_root = true;
        }
        self.sorter.push(e);
    }

    /// Some configured folder was listed as a folder.
    pub fn listed_root(&self) -> bool {
        self.listed_root
    }

    /// Sorted by path bytes, each path once.
    pub fn finish(self) -> Result<Sorted> {
        self.sorter.finish()
    }
}

/// What a fetch reports for each requested file, in request order.
pub enum Fetched<'a> {
    /// The content; `size` bytes can be read. A size other than the listed one means the
    /// file changed after it was listed.
    /// `owner` is the uid/gid of what was actually opened, where the source can tell.
    Content {
        reader: &'a mut dyn Read,
        size: u64,
        owner: Option<(u32, u32)>,
    },
    /// The content was delivered but may be inconsistent (changed while being read).
    Changed { message: String },
    /// Nothing usable could be read (sent after `Content` when the content turned out bad).
    Failed(FileProblem),
}

pub enum Source {
    Local(local::LocalSource),
    Stream(stream::StreamSource),
    Sftp(sftp::SftpSource),
}

impl Source {
    /// Connect (for SSH: TCP, pinned host key, key auth) and pick the transfer method.
    pub fn open(host: &Host) -> Result<Source> {
        Source::open_checked(host).map(|(s, _)| s)
    }

    /// Like `open`, and what the SSH host let this key read (None for local sources).
    pub fn open_checked(host: &Host) -> Result<(Source, Option<access::Access>)> {
        match &host.source {
            SourceSpec::Local => Ok((Source::Local(local::LocalSource::new()), None)),
            SourceSpec::Ssh(spec) => {
                let conn = ssh::Connection::connect(&host.name, spec, host.timeout, true)?;
                let (source, access) = access::open(conn, spec, &host.folders)?;
                Ok((source, Some(access)))
            }
        }
    }

    /// How this source reads, for messages: "local", "ssh stream", "ssh sftp".
    pub fn method(&self) -> &'static str {
        match self {
            Source::Local(_) => "local",
            Source::Stream(_) => "ssh (find+tar stream)",
            Source::Sftp(_) => "ssh (sftp)",
        }
    }

    /// List `folders` (absolute, normalised, not overlapping) and their parent folders into
    /// `listing`.
    pub fn list(&mut self, host: &str, folders: &[String], listing: &mut Listing) -> Result<()> {
        match self {
            Source::Local(s) => s.list(folders, listing),
            Source::Stream(s) => s.list(host, folders, listing),
            Source::Sftp(s) => s.list(host, folders, listing),
        }
    }

    /// Read the content of `files` (regular files from this source's listing), calling `sink`
    /// once per file, in order. An Err from `sink` stops the fetch and is returned.
    pub fn fetch(
        &mut self,
        files: &[&Entry],
        throttle: &mut Throttle,
        sink: &mut dyn FnMut(usize, Fetched<'_>) -> Result<()>,
    ) -> Result<()> {
        match self {
            Source::Local(s) => s.fetch(files, throttle, sink),
            Source::Stream(s) => s.fetch(files, throttle, sink),
            Source::Sftp(s) => s.fetch(files, throttle, sink),
        }
    }

    /// Whether more fetches are likely after the next one (a hint: a source may get ready for
    /// them while that one streams).
    pub fn expect_more(&mut self, more: bool) {
        if let Source::Stream(s) = self {
            s.expect_more(more);
        }
    }

    /// A fetch is coming: a source may start what it needs now, to overlap other work.
    pub fn get_ready(&mut self) -> Result<()> {
        match self {
            Source::Stream(s) => s.get_ready(),
            _ => Ok(()),
        }
    }

    /// Between batches: keep an idle SSH connection alive.
    pub fn keepalive(&mut self) -> Result<()> {
        match self {
            Source::Local(_) => Ok(()),
            Source::Stream(s) => s.conn.keepalive(),
            Source::Sftp(s) => s.conn.keepalive(),
        }
    }
}
