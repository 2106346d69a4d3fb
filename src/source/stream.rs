//! The fast path for SSH hosts with GNU find and tar: one `find -printf` for the listing and
//! one `tar` stream per batch of files, file names sent NUL-separated on stdin. Few round
//! trips, so the link is kept full (the design notes: streaming beats per-file requests).

use std::io::Read;

use super::commands;
use super::listing::{all_ancestors, folder_of, parse_find_output, whole_records_len};
use super::read_ahead::ReadAhead;
use super::ssh::{ChannelReader, Connection};
use super::{Fetched, Listing, Throttle};
use crate::error::{Error, Result};
use crate::model::{Entry, FileProblem, Severity};

/// Names per tar stream, and their bytes: what the box holds at once (the host takes them as
/// it reads, `ReadAhead`). A window (32,768 entries) is one stream, mostly.
const BATCH_FILES: usize = 32_768;
const BATCH_NAME_BYTES: usize = 4 << 20;

pub struct StreamSource {
    pub conn: Connection,
    /// A tar started ahead of need and waiting for its names: its startup (a login shell
    /// with a heavy rc file takes 100 ms and more) overlaps the batch before it.
    spare: Option<ssh2::Channel>,
    /// More fetches are likely after the current one (`Source::expect_more`).
    more: bool,
}

/// Does `--version` output show GNU findutils and GNU tar ≥ 1.29 (for `--verbatim-files-from`)?
pub fn is_gnu(text: &str) -> bool {
    let tar_ok = text
        .lines()
        .find_map(|l| l.strip_prefix("tar (GNU tar) "))
        .and_then(|v| {
            let mut it = v.trim().split('.');
            Some((
                it.next()?.parse::<u32>().ok()?,
                it.next()?.parse::<u32>().ok()?,
            ))
        })
        .is_some_and(|(maj, min)| (maj, min) >= (1, 29));
    text.contains("GNU findutils") && tar_ok
}

impl StreamSource {
    pub fn new(conn: Connection) -> StreamSource {
        StreamSource {
            conn,
            spare: None,
            more: false,
        }
    }

    pub fn list(&mut self, host: &str, folders: &[String], listing: &mut Listing) -> Result<()> {
        let cmd = commands::listing(folders);
        let ancestors = all_ancestors(folders);
        let mut roots = folders.to_vec();
        roots.extend(ancestors);
        let bad_listing = |m: String| Error::Listing {
            host: host.to_string(),
            folder: folders.join(", "),
            message: m,
        };
        let mut channel = self.conn.start(&cmd, b"")?;
        let mut stderr = Vec::new();
        {
            // Parse as it arrives: the raw listing is never held whole.
            let mut reader = ChannelReader {
                conn: &self.conn,
                channel: &mut channel,
                stderr: &mut stderr,
            };
            let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
            let mut chunk = vec![0u8; 256 << 10];
            loop {
                let n = reader
                    .read(&mut chunk)
                    .map_err(|e| self.conn.fail(format!("reading the listing: {e}")))?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let whole = whole_records_len(&buf);
                parse_find_output(&buf[..whole], folder_of(&roots), listing)
                    .map_err(bad_listing)?;
                buf.drain(..whole);
            }
            parse_find_output(&buf, folder_of(&roots), listing).map_err(bad_listing)?;
        }
        let status = self.conn.finish(channel, &mut stderr)?;
        // 1 is find's "some paths could not be read" (reported below); anything else, or no
        // status at all (killed by a signal), means the listing may be cut short.
        if status != 0 && status != 1 && status != 126 && status != 127 {
            return Err(bad_listing(format!(
                "find ended with status {status}: {}",
                String::from_utf8_lossy(&stderr).trim()
            )));
        }
        if status == 126 || status == 127 {
            return Err(Error::Listing {
                host: host.to_string(),
                folder: folders.join(", "),
                message: format!(
                    "find could not run: {}",
                    String::from_utf8_lossy(&stderr).trim()
                ),
            });
        }
        // Only find's own complaints: the login shell may print startup noise too.
        for line in String::from_utf8_lossy(&stderr)
            .lines()
            .filter(|l| l.starts_with("find: "))
        {
            listing.problems.push(FileProblem {
                path: error_path(line).unwrap_or_default(),
                action: "listing",
                message: line.trim().to_string(),
                severity: Severity::Error,
            });
        }
        Ok(())
    }

    /// Whether fetches are likely to follow the current one: only then is a spare started.
    pub fn expect_more(&mut self, more: bool) {
        self.more = more;
    }

    /// Start a tar now if none is waiting: a fetch is coming.
    pub fn get_ready(&mut self) -> Result<()> {
        if self.spare.is_none() {
            self.spare = Some(self.conn.spawn(commands::TAR)?);
        }
        Ok(())
    }

    pub fn fetch(
        &mut self,
        files: &[&Entry],
        throttle: &mut Throttle,
        sink: &mut dyn FnMut(usize, Fetched<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut start = 0;
        while start < files.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < files.len() && end - start < BATCH_FILES && bytes < BATCH_NAME_BYTES {
                bytes += files[end].path.len() + 1;
                end += 1;
            }
            let next_too = end < files.len() || self.more;
            self.fetch_batch(&files[start..end], start, next_too, throttle, sink)?;
            self.conn.keepalive()?;
            start = end;
        }
        Ok(())
    }

    fn fetch_batch(
        &mut self,
        files: &[&Entry],
        offset: usize,
        next_too: bool,
        throttle: &mut Throttle,
        sink: &mut dyn FnMut(usize, Fetched<'_>) -> Result<()>,
    ) -> Result<()> {
        // Sent sorted by bytes: the read-only filter on the host hands tar the names in that
        // order (it intersects sorted lists), and settling below relies on tar's order.
        let mut order: Vec<usize> = (0..files.len()).collect();
        order.sort_by(|&a, &b| files[a].path.cmp(&files[b].path));
        let sorted: Vec<&Entry> = order.iter().map(|&i| files[i]).collect();
        let files = &sorted[..];
        let sink =
            &mut |index: usize, event: Fetched<'_>| sink(offset + order[index - offset], event);
        let mut names = Vec::with_capacity(files.iter().map(|f| f.path.len() + 1).sum());
        for f in files {
            names.extend_from_slice(&f.path);
            names.push(0);
        }
        let channel = match self.spare.take() {
            Some(ch) => ch,
            None => self.conn.spawn(commands::TAR)?,
        };
        if next_too {
            self.spare = Some(self.conn.spawn(commands::TAR)?);
        }
        let mut reader = ReadAhead::start(&self.conn, channel, names)?;
        let mut missing = Vec::new();
        let mut next = 0; // files before `next` are settled
        {
            let mut throttled = throttle.reader(&mut reader);
            let mut archive = tar::Archive::new(&mut throttled);
            let entries = archive
                .entries()
                .map_err(|e| self.conn.fail(format!("reading tar stream: {e}")))?;
            for item in entries {
                let mut item =
                    item.map_err(|e| self.conn.fail(format!("reading tar stream: {e}")))?;
                let name = item.path_bytes().into_owned();
                // tar keeps request order; anything it skipped could not be read.
                let Some(pos) = files[next..].iter().position(|f| f.path == name) else {
                    continue; // not something we asked for: ignore it
                };
                missing.extend(next..next + pos);
                let index = next + pos;
                next = index + 1;
                let event = if item.header().entry_type().is_file() {
                    let size = item.size();
                    let h = item.header();
                    let owner = match (h.uid(), h.gid()) {
                        (Ok(u), Ok(g)) => Some((u as u32, g as u32)),
                        _ => None,
                    };
                    Fetched::Content {
                        reader: &mut item,
                        size,
                        owner,
                    }
                } else {
                    Fetched::Failed(FileProblem {
                        path: files[index].display_path(),
                        action: "reading",
                        message: "changed into a folder or symlink while being read; skipped"
                            .into(),
                        severity: Severity::Warning,
                    })
                };
                sink(offset + index, event)?;
            }
            drop(archive);
            // The end-of-archive padding, so the channel can close cleanly.
            std::io::copy(&mut throttled, &mut std::io::sink())
                .map_err(|e| self.conn.fail(format!("reading tar stream: {e}")))?;
        }
        missing.extend(next..files.len());
        let (channel, mut stderr) = reader
            .finish()
            .map_err(|e| self.conn.fail(format!("reading tar stream: {e}")))?;
        let status = self.conn.finish(channel, &mut stderr)?;

        if status == 126 || status == 127 {
            return Err(self.conn.fail(format!(
                "tar could not run: {}",
                String::from_utf8_lossy(&stderr).trim()
            )));
        }
        let said = tar_messages(&stderr, files);
        let missing_set: std::collections::HashSet<usize> = missing.iter().copied().collect();
        let no_messages = Vec::new();
        for (index, f) in files.iter().enumerate() {
            let said = said.get(&index).unwrap_or(&no_messages);
            if missing_set.contains(&index) {
                let vanished = said.iter().any(|l| l.contains("No such file"));
                let message = match said.first() {
                    Some(m) => m.clone(),
                    None => "not delivered by tar".to_string(),
                };
                sink(
                    offset + index,
                    Fetched::Failed(FileProblem {
                        path: f.display_path(),
                        action: "reading",
                        message: if vanished {
                            "vanished before it could be read".into()
                        } else {
                            message
                        },
                        severity: if vanished {
                            Severity::Warning
                        } else {
                            Severity::Error
                        },
                    }),
                )?;
            } else if let Some(l) = said.iter().find(|l| !l.contains("changed as we read")) {
                // Delivered, but tar says it could not read it all (a read error, or it
                // shrank and was padded with zeros): the content is not the file.
                sink(
                    offset + index,
                    Fetched::Failed(FileProblem {
                        path: f.display_path(),
                        action: "reading",
                        message: l.clone(),
                        severity: if l.contains("shrank") {
                            Severity::Warning
                        } else {
                            Severity::Error
                        },
                    }),
                )?;
            } else if let Some(l) = said.first() {
                sink(offset + index, Fetched::Changed { message: l.clone() })?;
            }
        }
        Ok(())
    }
}

/// tar's complaints per requested file: `tar: NAME: MESSAGE` lines (names printed literally,
/// and may themselves hold ": "), keyed by index into `files`.
fn tar_messages(stderr: &[u8], files: &[&Entry]) -> std::collections::HashMap<usize, Vec<String>> {
    let index: std::collections::HashMap<&[u8], usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.path.as_slice(), i))
        .collect();
    let mut out: std::collections::HashMap<usize, Vec<String>> = std::collections::HashMap::new();
    for line in stderr.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"tar: ") else {
            continue;
        };
        // Try every ": " as the end of the name, longest name first.
        let splits: Vec<usize> = rest
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w == b": ")
            .map(|(i, _)| i)
            .collect();
        for &at in splits.iter().rev() {
            if let Some(&i) = index.get(&rest[..at]) {
                out.entry(i)
                    .or_default()
                    .push(String::from_utf8_lossy(&rest[at + 2..]).into_owned());
                break;
            }
        }
    }
    out
}

/// `find: '/x': Permission denied` → `/x`.
fn error_path(line: &str) -> Option<String> {
    let rest = line.strip_prefix("find: ")?;
    let rest = rest.strip_prefix('\'').or_else(|| rest.strip_prefix('‘'))?;
    let end = rest.find("': ").or_else(|| rest.find("’: "))?;
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tar_messages_find_names_holding_colons() {
        let e = |p: &str| crate::model::Entry {
            path: p.as_bytes().to_vec(),
            kind: crate::model::Kind::File,
            size: 0,
            mtime_ns: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            target: None,
        };
        let (a, b) = (e("h/a: b"), e("h/c"));
        let files = [&a, &b];
        let m = super::tar_messages(
            b"tar: h/a: b: Cannot open: Permission denied\ntar: h/c: file changed as we read it\ntar: other\n",
            &files,
        );
        assert_eq!(m[&0], vec!["Cannot open: Permission denied"]);
        assert_eq!(m[&1], vec!["file changed as we read it"]);
    }

    #[test]
    fn find_error_lines_name_the_path() {
        assert_eq!(
            super::error_path("find: '/root/x': Permission denied").as_deref(),
            Some("/root/x")
        );
        assert_eq!(super::error_path("something else"), None);
    }
}
