//! BLAKE3 over a stream: the backup hashes what it writes as it writes it (no second read),
//! and verify hashes what it reads back.

use std::io::{self, Read};
use std::path::Path;

/// A reader that hashes every byte passing through it.
pub struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: blake3::Hasher,
}

impl<'a> HashingReader<'a> {
    pub fn new(inner: &'a mut dyn Read) -> HashingReader<'a> {
        HashingReader {
            inner,
            hasher: blake3::Hasher::new(),
        }
    }

    pub fn finish(&self) -> [u8; 32] {
        *self.hasher.finalize().as_bytes()
    }
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hash a stored file, never following a symlink; with its length.
pub fn hash_file(path: &Path, buf: &mut [u8]) -> io::Result<([u8; 32], u64)> {
    let files = crate::store::parts::pieces(path)
        .iter()
        .map(|p| crate::job::stage::open_nofollow(p))
        .collect::<io::Result<Vec<_>>>()?;
    if files.is_empty() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    hash_open(crate::store::parts::Joined::new(files)?, buf)
}

/// Hash an open file from its current offset to the end; with the length read.
pub fn hash_open(f: impl Read, buf: &mut [u8]) -> io::Result<([u8; 32], u64)> {
    let mut hasher = blake3::Hasher::new();
    let len = each_chunk(f, buf, |chunk| {
        hasher.update(chunk);
    })?;
    Ok((*hasher.finalize().as_bytes(), len))
}

/// Read `f` to its end through `buf`, handing each chunk to `each`; the bytes read.
pub fn each_chunk(
    mut f: impl Read,
    buf: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> io::Result<u64> {
    let mut len = 0u64;
    loop {
        let n = match f.read(buf) {
            Ok(0) => return Ok(len),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        each(&buf[..n]);
        len += n as u64;
    }
}

pub fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_hashes_exactly_what_passes_through() {
        let data = vec![7u8; 300_000];
        let mut src: &[u8] = &data;
        let mut r = HashingReader::new(&mut src);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data);
        assert_eq!(r.finish(), *blake3::hash(&data).as_bytes());
    }
}
