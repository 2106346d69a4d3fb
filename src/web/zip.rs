//! A streaming .zip writer: entries are stored (not compressed; most of what people back up
//! is already compressed, and a router's CPU is better spent moving bytes), sizes and CRC
//! follow each entry in a data descriptor, so nothing needs seeking and the download starts
//! at once. Zip64 records appear only where a size, offset or count needs them.

use std::io::{self, Read, Write};

const LOCAL: u32 = 0x0403_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
const END64: u32 = 0x0606_4b50;
const LOCATOR64: u32 = 0x0706_4b50;
const MAX32: u64 = 0xFFFF_FFFF;
/// Data descriptor follows (bit 3), names are UTF-8 (bit 11).
const FLAGS: u16 = (1 << 3) | (1 << 11);
/// Made by Unix (3), spec 4.5 (zip64).
const MADE_BY: u16 = (3 << 8) | 45;

struct Central {
    name: Vec<u8>,
    crc: u32,
    size: u64,
    offset: u64,
    dos_time: u32,
    external: u32,
}

pub struct ZipWriter<W: Write> {
    out: W,
    offset: u64,
    entries: Vec<Central>,
}

pub enum ZipKind<'a> {
    File(&'a mut dyn Read),
    Dir,
    Symlink(&'a [u8]),
}

impl<W: Write> ZipWriter<W> {
    pub fn new(out: W) -> ZipWriter<W> {
        ZipWriter {
            out,
            offset: 0,
            entries: Vec::new(),
        }
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.offset += b.len() as u64;
        Ok(())
    }

    /// Add one entry. `size_hint` is the file's size (it decides whether the descriptor
    /// needs 64-bit sizes); a file must not grow past it.
    pub fn add(
        &mut self,
        name: &[u8],
        kind: ZipKind<'_>,
        size_hint: u64,
        mode: u32,
        mtime_s: i64,
    ) -> io::Result<()> {
        let mut name = name.to_vec();
        let (type_bits, dos_attr) = match kind {
            ZipKind::File(_) => (0o100000, 0),
            ZipKind::Dir => {
                if !name.ends_with(b"/") {
                    name.push(b'/');
                }
                (0o040000, 0x10)
            }
            ZipKind::Symlink(_) => (0o120000, 0),
        };
        let big = size_hint >= MAX32;
        let offset = self.offset;
        let dos_time = dos_time(mtime_s);
        let mut h = Vec::with_capacity(64 + name.len());
        h.extend_from_slice(&LOCAL.to_le_bytes());
        h.extend_from_slice(&(if big { 45u16 } else { 20u16 }).to_le_bytes());
        h.extend_from_slice(&FLAGS.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes()); // stored
        h.extend_from_slice(&dos_time.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes()); // crc: in the descriptor
        let marker = if big { u32::MAX } else { 0 };
        h.extend_from_slice(&marker.to_le_bytes());
        h.extend_from_slice(&marker.to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&(if big { 20u16 } else { 0 }).to_le_bytes());
        h.extend_from_slice(&name);
        if big {
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&16u16.to_le_bytes());
            h.extend_from_slice(&[0u8; 16]);
        }
        self.put(&h)?;
        let mut crc = crc32fast::Hasher::new();
        let mut size = 0u64;
        match kind {
            ZipKind::File(r) => {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    crc.update(&buf[..n]);
                    self.put(&buf[..n])?;
                    size += n as u64;
                }
            }
            ZipKind::Symlink(target) => {
                crc.update(target);
                self.put(target)?;
                size = target.len() as u64;
            }
            ZipKind::Dir => {}
        }
        if size >= MAX32 && !big {
            return Err(io::Error::other("file grew past 4 GiB while being zipped"));
        }
        let crc = crc.finalize();
        let mut d = Vec::with_capacity(24);
        d.extend_from_slice(&DESCRIPTOR.to_le_bytes());
        d.extend_from_slice(&crc.to_le_bytes());
        if big {
            d.extend_from_slice(&size.to_le_bytes());
            d.extend_from_slice(&size.to_le_bytes());
        } else {
            d.extend_from_slice(&(size as u32).to_le_bytes());
            d.extend_from_slice(&(size as u32).to_le_bytes());
        }
        self.put(&d)?;
        self.entries.push(Central {
            name,
            crc,
            size,
            offset,
            dos_time,
            external: ((type_bits | (mode & 0o7777)) << 16) | dos_attr,
        });
        Ok(())
    }

    /// Write the central directory; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let cd_start = self.offset;
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            let mut extra = Vec::new();
            if e.size >= MAX32 {
                extra.extend_from_slice(&e.size.to_le_bytes());
                extra.extend_from_slice(&e.size.to_le_bytes());
            }
            if e.offset >= MAX32 {
                extra.extend_from_slice(&e.offset.to_le_bytes());
            }
            let mut h = Vec::with_capacity(64 + e.name.len());
            h.extend_from_slice(&CENTRAL.to_le_bytes());
            h.extend_from_slice(&MADE_BY.to_le_bytes());
            h.extend_from_slice(&(if extra.is_empty() { 20u16 } else { 45 }).to_le_bytes());
            h.extend_from_slice(&FLAGS.to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            h.extend_from_slice(&e.dos_time.to_le_bytes());
            h.extend_from_slice(&e.crc.to_le_bytes());
            let s32 = e.size.min(MAX32) as u32;
            h.extend_from_slice(&s32.to_le_bytes());
            h.extend_from_slice(&s32.to_le_bytes());
            h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            let extra_len = if extra.is_empty() { 0 } else { extra.len() + 4 };
            h.extend_from_slice(&(extra_len as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // comment
            h.extend_from_slice(&0u16.to_le_bytes()); // disk
            h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            h.extend_from_slice(&e.external.to_le_bytes());
            h.extend_from_slice(&(e.offset.min(MAX32) as u32).to_le_bytes());
            h.extend_from_slice(&e.name);
            if !extra.is_empty() {
                h.extend_from_slice(&1u16.to_le_bytes());
                h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
                h.extend_from_slice(&extra);
            }
            self.put(&h)?;
        }
        let cd_end = self.offset;
        let (count, cd_size) = (entries.len() as u64, cd_end - cd_start);
        if count >= 0xFFFF || cd_start >= MAX32 || cd_size >= MAX32 {
            let mut z = Vec::with_capacity(76);
            z.extend_from_slice(&END64.to_le_bytes());
            z.extend_from_slice(&44u64.to_le_bytes());
            z.extend_from_slice(&MADE_BY.to_le_bytes());
            z.extend_from_slice(&45u16.to_le_bytes());
            z.extend_from_slice(&[0u8; 8]); // disk numbers
            z.extend_from_slice(&count.to_le_bytes());
            z.extend_from_slice(&count.to_le_bytes());
            z.extend_from_slice(&cd_size.to_le_bytes());
            z.extend_from_slice(&cd_start.to_le_bytes());
            z.extend_from_slice(&LOCATOR64.to_le_bytes());
            z.extend_from_slice(&0u32.to_le_bytes());
            z.extend_from_slice(&cd_end.to_le_bytes());
            z.extend_from_slice(&1u32.to_le_bytes());
            self.put(&z)?;
        }
        let mut z = Vec::with_capacity(22);
        z.extend_from_slice(&END.to_le_bytes());
        z.extend_from_slice(&[0u8; 4]);
        let c16 = count.min(0xFFFF) as u16;
        z.extend_from_slice(&c16.to_le_bytes());
        z.extend_from_slice(&c16.to_le_bytes());
        z.extend_from_slice(&(cd_size.min(MAX32) as u32).to_le_bytes());
        z.extend_from_slice(&(cd_start.min(MAX32) as u32).to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        self.put(&z)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// MS-DOS date and time (local, 2-second steps, 1980–2107).
fn dos_time(unix_s: i64) -> u32 {
    use chrono::{Datelike, Local, TimeZone, Timelike};
    let Some(t) = Local.timestamp_opt(unix_s, 0).single() else {
        return 0x0021_0000; // 1980-01-01
    };
    if t.year() < 1980 || t.year() > 2107 {
        return 0x0021_0000;
    }
    let date = (((t.year() - 1980) as u32) << 9) | (t.month() << 5) | t.day();
    let time = (t.hour() << 11) | (t.minute() << 5) | (t.second() / 2);
    (date << 16) | time
}
