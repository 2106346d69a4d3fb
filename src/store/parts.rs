//! Files larger than the disk's largest file (FAT32: 4 GiB − 1) are stored as parts beside
//! where the file would be: `<stored name>%part001`, `%part002`, … each at most the limit,
//! each with the file's mode and mtime. Files up to the limit are stored as they are.
//!
//! The suffix cannot clash with a user's file: on every disk with a size limit names are
//! escaped (`store::names`), and there a `%` is always followed by two upper-case hex digits.
//! Promise: a path's stored content is its plain file if there is one, else its parts joined
//! in order (`pieces`, `Joined`); nothing else needs to know about parts.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

const SUFFIX: &[u8] = b"%part";

/// Part `n` (from 1) of the file stored at `base`.
pub fn part_path(base: &Path, n: u32) -> PathBuf {
    let mut name = base.as_os_str().as_bytes().to_vec();
    name.extend_from_slice(SUFFIX);
    name.extend_from_slice(format!("{n:03}").as_bytes());
    PathBuf::from(std::ffi::OsString::from_vec(name))
}

/// The base name of a part's name (`x%part002` → `x`), or None for any other name.
pub fn base_of(name: &[u8]) -> Option<&[u8]> {
    let at = name.windows(SUFFIX.len()).rposition(|w| w == SUFFIX)?;
    let digits = &name[at + SUFFIX.len()..];
    (digits.len() >= 3 && digits.iter().all(u8::is_ascii_digit)).then(|| &name[..at])
}

/// What is stored for `base`: the plain file, else its parts in order (empty: nothing).
/// Nothing is followed: a symlink in the way counts as no file.
pub fn pieces(base: &Path) -> Vec<PathBuf> {
    let is_file = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
    if is_file(base) {
        return vec![base.to_path_buf()];
    }
    let mut out = Vec::new();
    for n in 1.. {
        let p = part_path(base, n);
        if !is_file(&p) {
            break;
        }
        out.push(p);
    }
    out
}

/// Remove the parts of `base` (an earlier attempt's, or another version's).
pub fn remove_parts(base: &Path) -> io::Result<()> {
    for n in 1.. {
        match fs::remove_file(part_path(base, n)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Size of what is stored for `base` (plain or parts), and the mtimes of its pieces.
pub fn stored_size_and_mtimes(base: &Path) -> Option<(u64, Vec<i64>)> {
    use std::os::unix::fs::MetadataExt;
    let pieces = pieces(base);
    if pieces.is_empty() {
        return None;
    }
    let mut size = 0;
    let mut mtimes = Vec::new();
    for p in pieces {
        let md = fs::symlink_metadata(&p).ok()?;
        size += md.len();
        mtimes.push(md.mtime() * 1_000_000_000 + md.mtime_nsec());
    }
    Some((size, mtimes))
}

/// One stored file's content, from one piece or several, read (and seeked) as one.
pub struct Joined {
    pieces: Vec<File>,
    lens: Vec<u64>,
    /// Index of the piece the position is in, and the position in the whole.
    at: usize,
    pos: u64,
}

impl Joined {
    pub fn new(pieces: Vec<File>) -> io::Result<Joined> {
        let lens = pieces
            .iter()
            .map(|f| f.metadata().map(|m| m.len()))
            .collect::<io::Result<Vec<u64>>>()?;
        Ok(Joined {
            pieces,
            lens,
            at: 0,
            pos: 0,
        })
    }

    /// Length of the whole content.
    pub fn len(&self) -> u64 {
        self.lens.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first piece (for its inode and metadata).
    pub fn first(&self) -> &File {
        &self.pieces[0]
    }

    pub fn is_split(&self) -> bool {
        self.pieces.len() > 1
    }
}

impl Read for Joined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at < self.pieces.len() {
            let n = self.pieces[self.at].read(buf)?;
            if n > 0 || buf.is_empty() {
                self.pos += n as u64;
                return Ok(n);
            }
            self.at += 1;
            if self.at < self.pieces.len() {
                self.pieces[self.at].seek(SeekFrom::Start(0))?;
            }
        }
        Ok(0)
    }
}

impl Seek for Joined {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => self.len() as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before start",
            ));
        }
        let target = target as u64;
        let mut start = 0u64;
        self.at = self.pieces.len();
        for (i, len) in self.lens.iter().enumerate() {
            if target < start + len || i + 1 == self.lens.len() {
                self.at = i;
                self.pieces[i].seek(SeekFrom::Start(target - start))?;
                break;
            }
            start += len;
        }
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_are_recognised_and_round_trip() {
        let p = part_path(Path::new("/d/a%3Ab.iso"), 2);
        assert_eq!(p, Path::new("/d/a%3Ab.iso%part002"));
        let name = p.file_name().unwrap().as_bytes();
        assert_eq!(base_of(name), Some(&b"a%3Ab.iso"[..]));
        assert_eq!(base_of(b"a%3Ab.iso"), None);
        assert_eq!(base_of(b"x%partly"), None);
        // A user's own `%part001` is stored escaped, so it is no part name.
        let rules = super::super::names::NameRules::from_refused(b":");
        let escaped = super::super::names::escape(b"x%part001", &rules);
        assert_eq!(base_of(&escaped), None);
    }

    #[test]
    fn joined_pieces_read_and_seek_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("f");
        fs::write(part_path(&base, 1), b"hello ").unwrap();
        fs::write(part_path(&base, 2), b"split ").unwrap();
        fs::write(part_path(&base, 3), b"world").unwrap();
        let files = pieces(&base)
            .iter()
            .map(|p| File::open(p).unwrap())
            .collect();
        let mut j = Joined::new(files).unwrap();
        assert_eq!(j.len(), 17);
        let mut all = String::new();
        j.read_to_string(&mut all).unwrap();
        assert_eq!(all, "hello split world");
        j.seek(SeekFrom::Start(9)).unwrap();
        let mut rest = String::new();
        j.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "it world");
        remove_parts(&base).unwrap();
        assert!(pieces(&base).is_empty());
    }

    #[test]
    fn a_stage_writes_parts_over_the_limit_also_when_the_file_grew() {
        use crate::job::stage::{Keep, Stage};
        use crate::model::{Entry, Kind};
        let dir = tempfile::tempdir().unwrap();
        let stage = Stage {
            root: dir.path().to_path_buf(),
            preserve_owner: false,
            keep: Keep {
                sparse: false,
                ..Keep::all()
            }
            .split_at_most(Some(10)),
            renamed: Default::default(),
        };
        let entry = |name: &str, size: u64| Entry {
            path: name.as_bytes().to_vec(),
            kind: Kind::File,
            size,
            mtime_ns: 1_700_000_000_000_000_000,
            mode: 0o640,
            uid: 0,
            gid: 0,
            target: None,
        };
        let content: Vec<u8> = (0..25u8).collect();
        let sizes = |name: &str| -> Vec<u64> {
            pieces(&dir.path().join(name))
                .iter()
                .map(|p| fs::metadata(p).unwrap().len())
                .collect()
        };
        let mut buf = vec![0u8; 4];
        for (name, listed, len) in [("exact", 10, 10), ("big", 25, 25), ("grew", 5, 25)] {
            let e = entry(name, listed);
            let mut from = &content[..len];
            assert!(stage.write(&e, &mut from, &mut buf, &mut |_| {}).is_ok());
            let e = Entry {
                size: len as u64,
                ..e
            };
            assert!(stage.complete(&e), "{name} complete");
            let mut back = Vec::new();
            let files = pieces(&dir.path().join(name))
                .iter()
                .map(|p| File::open(p).unwrap())
                .collect();
            Joined::new(files).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, &content[..len], "{name}");
        }
        assert_eq!(sizes("exact"), vec![10], "the limit itself is not split");
        assert!(dir.path().join("exact").exists());
        assert_eq!(sizes("big"), vec![10, 10, 5]);
        assert_eq!(sizes("grew"), vec![10, 10, 5]);
        assert!(!dir.path().join("grew").exists(), "renamed to part 1");
        // Written again smaller: the old parts go.
        let e = entry("big", 3);
        let mut from = &content[..3];
        assert!(stage.write(&e, &mut from, &mut buf, &mut |_| {}).is_ok());
        assert_eq!(sizes("big"), vec![3]);
        assert!(!part_path(&dir.path().join("big"), 1).exists());
    }
}
