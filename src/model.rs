//! Plain domain types shared by sources, the job and the catalog.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What kind of filesystem object an entry is. Only files, folders and symlinks are stored;
/// the others are recorded in the manifest and never opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    BlockDevice,
    CharDevice,
}

impl Kind {
    /// One-letter code, as GNU find's `%y` prints it; also the catalog encoding.
    pub fn code(self) -> char {
        match self {
            Kind::File => 'f',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
            Kind::BlockDevice => 'b',
            Kind::CharDevice => 'c',
        }
    }

    pub fn from_code(c: char) -> Option<Kind> {
        Some(match c {
            'f' => Kind::File,
            'd' => Kind::Dir,
            'l' => Kind::Symlink,
            'p' => Kind::Fifo,
            's' => Kind::Socket,
            'b' => Kind::BlockDevice,
            'c' => Kind::CharDevice,
            _ => return None,
        })
    }

    /// From the `S_IFMT` bits of a stat mode.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & 0o170000 {
            0o100000 => Kind::File,
            0o040000 => Kind::Dir,
            0o120000 => Kind::Symlink,
            0o010000 => Kind::Fifo,
            0o140000 => Kind::Socket,
            0o060000 => Kind::BlockDevice,
            0o020000 => Kind::CharDevice,
            _ => return None,
        })
    }

    pub fn is_special(self) -> bool {
        !matches!(self, Kind::File | Kind::Dir | Kind::Symlink)
    }
}

/// One object of a source listing or a snapshot manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the snapshot: the absolute source path without its leading `/`
    /// (`home/alice/a.txt`). Raw bytes: names need not be UTF-8.
    pub path: Vec<u8>,
    pub kind: Kind,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch (whole seconds where the source
    /// can't tell more).
    pub mtime_ns: i64,
    /// Permission bits, including setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Symlink target, stored verbatim and never followed.
    pub target: Option<Vec<u8>>,
}

impl Entry {
    /// An entry with only a path and a kind (mode 0644, root, epoch): for tests of logic
    /// that looks at names.
    #[cfg(test)]
    pub fn bare(path: &[u8], kind: Kind) -> Entry {
        Entry {
            path: path.to_vec(),
            kind,
            size: 0,
            mtime_ns: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            target: None,
        }
    }

    pub fn rel_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }

    /// The same object, as far as a backup can tell without reading it.
    pub fn same_as(&self, other: &Entry, compare_owner: bool) -> bool {
        self.kind == other.kind
            && self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.mode == other.mode
            && self.target == other.target
            && (!compare_owner || (self.uid == other.uid && self.gid == other.gid))
    }

    /// The path as the user knows it on the source machine.
    pub fn display_path(&self) -> String {
        format!("/{}", String::from_utf8_lossy(&self.path))
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything listed was stored.
    Good,
    /// A snapshot was published, but some files could not be read.
    Partial,
    /// No snapshot was published.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Good => "good",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "good" => Outcome::Good,
            "partial" => Outcome::Partial,
            "failed" => Outcome::Failed,
            _ => return None,
        })
    }

    /// Exit code convention of the command line: 0 good, 1 partial, 2 failed.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Good => 0,
            Outcome::Partial => 1,
            Outcome::Failed => 2,
        }
    }

    /// The worse of two outcomes, for summarising several hosts.
    pub fn worst(self, other: Outcome) -> Outcome {
        if self.exit_code() >= other.exit_code() {
            self
        } else {
            other
        }
    }
}

/// Counters of one run; also what the catalog stores per snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Objects in the snapshot (files, folders, symlinks).
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    /// Files fetched from the source this run, and their bytes.
    pub new_files: u64,
    pub new_bytes: u64,
    /// Files shared with the previous snapshot.
    pub linked: u64,
    /// Files that were already complete in an interrupted run's staging folder.
    pub resumed: u64,
    /// FIFOs, sockets and devices: recorded, not stored.
    pub skipped_special: u64,
    pub excluded: u64,
    pub warnings: u64,
    pub errors: u64,
}

/// A problem with one path that does not stop the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProblem {
    pub path: String,
    pub action: &'static str,
    pub message: String,
    /// Warnings (vanished, changed while read) keep the run good; errors make it partial.
    pub severity: Severity,
}

impl std::fmt::Display for FileProblem {
    /// `error /home/a/x: permission denied (reading)`: how problems are printed and queued.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} ({})",
            self.severity.as_str(),
            self.path,
            self.message,
            self.action
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}
