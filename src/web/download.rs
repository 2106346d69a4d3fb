//! Getting files out: one file with its content type and Range support, or a folder as a
//! .tar or .zip streamed while it is read (the first bytes leave at once; no size limit) in
//! chunked encoding, so a cut stream is never mistaken for a whole one.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::browse::{Stored, Target};
use super::http::{percent_encode, Body, Request, Response};
use super::zip::{ZipKind, ZipWriter};
use crate::logging;
use crate::model::{Entry, Kind};

/// A file by name, for `Content-Disposition`. Browsers use `filename*`; the ASCII fallback
/// keeps old clients from choking.
fn disposition(name: &[u8]) -> String {
    let ascii: String = String::from_utf8_lossy(name)
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        percent_encode(name, false)
    )
}

fn content_type(name: &[u8]) -> &'static str {
    let ext = name
        .rsplit(|&b| b == b'.')
        .next()
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_slice() {
        b"txt" | b"log" | b"md" | b"csv" | b"conf" | b"toml" | b"ini" => {
            "text/plain; charset=utf-8"
        }
        b"html" | b"htm" => "text/html; charset=utf-8",
        b"pdf" => "application/pdf",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"png" => "image/png",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"svg" => "image/svg+xml",
        b"mp3" => "audio/mpeg",
        b"mp4" | b"m4v" => "video/mp4",
        b"mkv" => "video/x-matroska",
        b"zip" => "application/zip",
        b"gz" | b"tgz" => "application/gzip",
        b"tar" => "application/x-tar",
        b"json" => "application/json",
        b"odt" => "application/vnd.oasis.opendocument.text",
        b"ods" => "application/vnd.oasis.opendocument.spreadsheet",
        b"docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        b"xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// A single `bytes=` range against `len`: Ok(None) means "send it all" (no header, several
/// ranges, or one we don't understand); Err means unsatisfiable.
fn range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = match (a.trim(), b.trim()) {
        ("", "") => return Ok(None),
        ("", n) => match n.parse::<u64>() {
            Ok(0) => return Err(()),
            Ok(n) => (len.saturating_sub(n), len.saturating_sub(1)),
            Err(_) => return Ok(None),
        },
        (s, "") => match s.parse::<u64>() {
            Ok(s) => (s, len.saturating_sub(1)),
            Err(_) => return Ok(None),
        },
        (s, e) => match (s.parse::<u64>(), e.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => (s, e.min(len.saturating_sub(1))),
            _ => return Ok(None),
        },
    };
    if start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

pub fn file(t: Target, req: &Request) -> Response {
    let Some(e) = t.entry.as_ref().filter(|e| e.kind == Kind::File) else {
        return Response::text(404, "not a file\n");
    };
    let f = match t.stored.open(e) {
        Ok(f) => f,
        Err(err) => {
            logging::warn(format!(
                "web: opening {} in {}: {err}",
                e.display_path(),
                t.stored.dir().display()
            ));
            return Response::text(404, "the stored file could not be opened\n");
        }
    };
    let len = f.len();
    let name = t.base_name();
    // No validators are sent, so a conditional range can't be honoured: send everything.
    let wanted = if req.header("if-range").is_some() {
        Ok(None)
    } else {
        range(req.header("range"), len)
    };
    let base = |status: u16, start: u64, n: u64| Response {
        status,
        headers: vec![
            ("Content-Type", content_type(&name).to_string()),
            ("Content-Disposition", disposition(&name)),
            ("Accept-Ranges", "bytes".into()),
            ("Cache-Control", "private, no-cache".into()),
        ],
        body: Body::File {
            file: f,
            start,
            len: n,
        },
    };
    match wanted {
        Ok(None) => base(200, 0, len),
        Ok(Some((s, end))) => {
            base(206, s, end - s + 1).with("Content-Range", format!("bytes {s}-{end}/{len}"))
        }
        Err(()) => Response::text(416, "range not satisfiable\n")
            .with("Content-Range", format!("bytes */{len}")),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    Zip,
}

/// Entries are read from the catalog this many at a time, so a long download holds no
/// read transaction that would stop the catalog's log from being checkpointed.
const PAGE: usize = 500;

pub fn archive(t: Target, format: Format) -> Response {
    if !t.is_dir() {
        return Response::text(404, "not a folder\n");
    }
    let top: Vec<u8> = if t.path.is_empty() {
        format!("{}-{}", t.host.name, t.snapshot.name).into_bytes()
    } else {
        t.base_name()
    };
    let (ext, ctype) = match format {
        Format::Tar => ("tar", "application/x-tar"),
        Format::Zip => ("zip", "application/zip"),
    };
    let file_name = [&top[..], b".", ext.as_bytes()].concat();
    Response {
        status: 200,
        headers: vec![
            ("Content-Type", ctype.to_string()),
            ("Content-Disposition", disposition(&file_name)),
            ("Cache-Control", "no-store".into()),
        ],
        body: Body::Stream(Box::new(move |out: &mut dyn Write| {
            let mut sink = Sink::new(format, out);
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = t
                    .catalog
                    .entries_page(t.snapshot.id, &t.path, after.as_deref(), PAGE)
                    .map_err(io::Error::other)?;
                let Some(last) = page.last() else { break };
                after = Some(last.path.clone());
                for e in &page {
                    // `docs/a.txt` under a download of `home/alice/docs`.
                    let rest = &e.path[t.path.len()..];
                    let rest = rest.strip_prefix(b"/").unwrap_or(rest);
                    let name = if rest.is_empty() {
                        top.clone()
                    } else {
                        [&top[..], b"/", rest].concat()
                    };
                    sink.add(&t.stored, e, &name)?;
                }
            }
            sink.finish()
        })),
    }
}

enum Sink<'a> {
    Tar(tar::Builder<&'a mut dyn Write>),
    Zip(ZipWriter<&'a mut dyn Write>),
}

impl<'a> Sink<'a> {
    fn new(format: Format, out: &'a mut dyn Write) -> Sink<'a> {
        match format {
            Format::Tar => Sink::Tar(tar::Builder::new(out)),
            Format::Zip => Sink::Zip(ZipWriter::new(out)),
        }
    }

    /// One manifest entry. A stored file that can't be opened stops the archive (and is
    /// logged): the response then ends without its last chunk, so the browser reports a
    /// failed download instead of keeping an archive that silently lacks a file.
    fn add(&mut self, stored: &Stored, e: &Entry, name: &[u8]) -> io::Result<()> {
        let mtime = e.mtime_ns.div_euclid(1_000_000_000);
        let mode = e.mode & 0o7777;
        let mut file = match e.kind {
            Kind::File => match stored.open(e) {
                Ok(f) => Some(f),
                Err(err) => {
                    logging::warn(format!(
                        "web: archive of {} stopped: {} could not be opened: {err}",
                        stored.dir().display(),
                        e.display_path()
                    ));
                    return Err(err);
                }
            },
            Kind::Dir | Kind::Symlink => None,
            _ => return Ok(()),
        };
        let size = match &file {
            Some(f) => f.len(),
            None => 0,
        };
        match self {
            Sink::Tar(b) => {
                let mut h = tar::Header::new_gnu();
                h.set_mode(mode);
                h.set_mtime(mtime.max(0) as u64);
                h.set_uid(e.uid as u64);
                h.set_gid(e.gid as u64);
                h.set_size(size);
                let path = Path::new(std::ffi::OsStr::from_bytes(name));
                match (e.kind, file.as_mut()) {
                    (Kind::File, Some(f)) => {
                        h.set_entry_type(tar::EntryType::Regular);
                        b.append_data(&mut h, path, io::Read::take(f, size))
                    }
                    (Kind::Dir, _) => {
                        h.set_entry_type(tar::EntryType::Directory);
                        b.append_data(&mut h, path, io::empty())
                    }
                    _ => {
                        h.set_entry_type(tar::EntryType::Symlink);
                        let target = e.target.clone().unwrap_or_default();
                        b.append_link(
                            &mut h,
                            path,
                            Path::new(std::ffi::OsStr::from_bytes(&target)),
                        )
                    }
                }
            }
            Sink::Zip(z) => match (e.kind, file.as_mut()) {
                (Kind::File, Some(f)) => {
                    let mut limited = io::Read::take(f, size);
                    z.add(name, ZipKind::File(&mut limited), size, mode, mtime)
                }
                (Kind::Dir, _) => z.add(name, ZipKind::Dir, 0, mode, mtime),
                _ => {
                    let target = e.target.clone().unwrap_or_default();
                    z.add(
                        name,
                        ZipKind::Symlink(&target),
                        target.len() as u64,
                        0o777,
                        mtime,
                    )
                }
            },
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Tar(b) => b.into_inner().map(|_| ()),
            Sink::Zip(z) => z.finish().map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges() {
        assert_eq!(range(None, 100), Ok(None));
        assert_eq!(range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(range(Some("bytes=-1000"), 100), Ok(Some((0, 99))));
        assert_eq!(range(Some("bytes=50-1000"), 100), Ok(Some((50, 99))));
        assert_eq!(range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(range(Some("bytes=-0"), 100), Err(()));
        assert_eq!(range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(range(Some("bytes=9-1"), 100), Ok(None));
        assert_eq!(range(Some("items=0-1"), 100), Ok(None));
        assert_eq!(range(Some("bytes=0-0"), 0), Err(()));
    }
}
