//! The record format of a spilled run, and a reader over one run.
//!
//! A record is `len` (LEB128) followed by `len` bytes of body: kind code (1 byte), path length
//! and path, size, mtime (zigzag), mode, uid, gid, then 0 for no target or target length + 1
//! and the target. Numbers are LEB128, so a typical record is its path plus ~15 bytes.
//! The format lives only as long as the process: it needs no version and no magic.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::model::{Entry, Kind};

/// Longest LEB128 encoding of a u64.
const MAX_VARINT: usize = 10;

/// One record, length prefix included, appended to `out`.
pub(super) fn encode(e: &Entry, body: &mut Vec<u8>, out: &mut Vec<u8>) {
    body.clear();
    body.push(e.kind.code() as u8);
    put_varint(body, e.path.len() as u64);
    body.extend_from_slice(&e.path);
    put_varint(body, e.size);
    put_varint(body, zigzag(e.mtime_ns));
    put_varint(body, u64::from(e.mode));
    put_varint(body, u64::from(e.uid));
    put_varint(body, u64::from(e.gid));
    match &e.target {
        None => put_varint(body, 0),
        Some(t) => {
            put_varint(body, t.len() as u64 + 1);
            body.extend_from_slice(t);
        }
    }
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// The entry of one record body; None if the bytes are not one whole record.
fn decode(body: &[u8]) -> Option<Entry> {
    let mut r = Cursor(body);
    let kind = Kind::from_code(char::from(r.byte()?))?;
    let path = r.bytes()?;
    let size = r.varint()?;
    let mtime_ns = unzigzag(r.varint()?);
    let mode = u32::try_from(r.varint()?).ok()?;
    let uid = u32::try_from(r.varint()?).ok()?;
    let gid = u32::try_from(r.varint()?).ok()?;
    let target = match r.varint()? {
        0 => None,
        n => Some(r.take(usize::try_from(n - 1).ok()?)?.to_vec()),
    };
    r.0.is_empty().then_some(Entry {
        path,
        kind,
        size,
        mtime_ns,
        mode,
        uid,
        gid,
        target,
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The value and how many bytes it took; None if `b` ends inside it or it overflows.
fn get_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(MAX_VARINT) {
        let bits = u64::from(byte & 0x7f);
        if i == MAX_VARINT - 1 && byte > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if byte < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn varint(&mut self) -> Option<u64> {
        let (v, n) = get_varint(self.0)?;
        self.0 = &self.0[n..];
        Some(v)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = usize::try_from(self.varint()?).ok()?;
        Some(self.take(n)?.to_vec())
    }
}

/// Reads one run front to back through its own buffer and its own offset (pread), so any
/// number of readers can walk the same file at once.
pub(super) struct RunReader {
    /// File offset of the first byte not yet in `buf`.
    offset: u64,
    /// Length of the run in the file.
    end: u64,
    /// Bytes read but not yet decoded are `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    /// Usual size of one read; a record longer than this grows `buf` for itself.
    chunk: usize,
}

impl RunReader {
    pub(super) fn new(end: u64, chunk: usize) -> RunReader {
        RunReader {
            offset: 0,
            end,
            buf: Vec::new(),
            pos: 0,
            chunk,
        }
    }

    /// The next entry of the run, or None at its end.
    pub(super) fn next(&mut self, file: &File) -> io::Result<Option<Entry>> {
        if self.pos == self.buf.len() && self.offset == self.end {
            return Ok(None);
        }
        self.fill(file, MAX_VARINT)?;
        let (len, n) = get_varint(&self.buf[self.pos..]).ok_or_else(damaged)?;
        self.pos += n;
        let len = usize::try_from(len).map_err(|_| damaged())?;
        self.fill(file, len)?;
        let body = self.buf.get(self.pos..self.pos + len).ok_or_else(damaged)?;
        let entry = decode(body).ok_or_else(damaged)?;
        self.pos += len;
        Ok(Some(entry))
    }

    /// At least `want` unread bytes in `buf`, or all that is left of the run.
    fn fill(&mut self, file: &File, want: usize) -> io::Result<()> {
        if self.buf.len() - self.pos >= want || self.offset == self.end {
            return Ok(());
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        let have = self.buf.len();
        let room = want.max(self.chunk).saturating_sub(have) as u64;
        let n = room.min(self.end - self.offset) as usize;
        self.buf.resize(have + n, 0);
        file.read_exact_at(&mut self.buf[have..], self.offset)?;
        self.offset += n as u64;
        Ok(())
    }
}

fn damaged() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a record of the listing spill is damaged",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_round_trip_at_the_extremes() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert!(b.len() <= MAX_VARINT);
            assert_eq!(get_varint(&b), Some((v, b.len())), "{v}");
            assert_eq!(get_varint(&b[..b.len() - 1]), None, "{v} cut short");
        }
        for v in [0, 1, -1, i64::MIN, i64::MAX, -1_700_000_000_123_456_789] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        // Eleven bytes, or a tenth byte carrying more than the 64th bit: not a u64.
        assert_eq!(get_varint(&[0xff; 11]), None);
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
    }

    #[test]
    fn a_record_decodes_to_the_same_entry_and_a_cut_one_does_not() {
        let e = Entry {
            path: b"a/\xff\x00b".to_vec(),
            kind: Kind::Symlink,
            size: u64::MAX,
            mtime_ns: i64::MIN,
            mode: u32::MAX,
            uid: u32::MAX,
            gid: 0,
            target: Some(b"".to_vec()),
        };
        let (mut body, mut rec) = (Vec::new(), Vec::new());
        encode(&e, &mut body, &mut rec);
        assert_eq!(decode(&body), Some(e.clone()));
        assert_eq!(decode(&body[..body.len() - 1]), None);
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None, "trailing bytes are damage too");
        let no_target = Entry { target: None, ..e };
        encode(&no_target, &mut body, &mut Vec::new());
        assert_eq!(decode(&body), Some(no_target));
    }
}
