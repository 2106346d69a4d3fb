//! Files that grew at their end: the host hashes the old part (`head -c N | sha256sum`, in
//! coreutils and BusyBox alike) and sends only the bytes after it (`tail -c +N`). No agent:
//! two fixed commands, names and numbers on stdin, so the forced-command filter of
//! `snapnest authorize` can allow them byte for byte like the tar stream.
//!
//! A record on stdin is `INDEX OFFSET COUNT NAME` + NUL: three zero-padded 20-digit numbers
//! (a fixed 63-byte prefix the filter can skip) and the name relative to `/`, as tar gets it.

use std::io::{BufRead, BufReader, Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::read_ahead::ReadAhead;
use super::ssh::{ChannelReader, Connection};
use super::{Source, Throttle};
use crate::error::Result;
use crate::model::Entry;

/// Bytes before the name in a record: three 20-digit numbers, each followed by a space.
pub const RECORD_PREFIX: usize = 63;

/// Records per remote command: stdin stays far below the server's channel window.
const BATCH: usize = 1000;

/// sha256 of the first COUNT bytes of each named regular file (not a symlink), one line per
/// record: `INDEX HEX`. A file that cannot be read prints nothing for its record.
pub const HASH: &str = "LC_ALL=C; export LC_ALL; cd / && xargs -0 -n 1 sh -c 'r=$1; i=${r%% *}; r=${r#* }; r=${r#* }; c=${r%% *}; f=/${r#* }; c=${c#\"${c%%[!0]*}\"}; if [ -f \"$f\" ] && [ ! -h \"$f\" ]; then h=$(head -c \"${c:-0}\" \"$f\" | sha256sum) && echo \"$i ${h%% *}\"; fi' sh";

/// For each record: `INDEX OK` + newline, exactly COUNT bytes starting at byte OFFSET
/// (1-based, `tail -c +OFFSET`; zero-padded if the file is shorter), then
/// `SIZE MTIME UID GID` of the file after reading (or `x`); or `INDEX NO` when the name is
/// not a regular file.
pub const TAIL: &str = "LC_ALL=C; export LC_ALL; cd / && xargs -0 -n 1 sh -c 'r=$1; i=${r%% *}; r=${r#* }; s=${r%% *}; r=${r#* }; c=${r%% *}; f=/${r#* }; s=${s#\"${s%%[!0]*}\"}; c=${c#\"${c%%[!0]*}\"}; if [ -f \"$f\" ] && [ ! -h \"$f\" ]; then echo \"$i OK\"; { tail -c \"+${s:-1}\" \"$f\" 2>/dev/null; cat /dev/zero; } | head -c \"${c:-0}\"; stat -L -c \"%s %Y %u %g\" \"$f\" 2>/dev/null || echo x; else echo \"$i NO\"; fi' sh";

/// One record for `HASH` or `TAIL`.
pub fn record(index: u64, offset: u64, count: u64, name: &[u8]) -> Vec<u8> {
    let mut r = format!("{index:020} {offset:020} {count:020} ").into_bytes();
    r.extend_from_slice(name);
    r.push(0);
    r
}

/// What the host said about a file after sending its tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct After {
    pub size: u64,
    pub mtime_s: i64,
    pub owner: Option<(u32, u32)>,
}

/// Events of a tail fetch, per file (index into the request): `Body` then `End`, or `Failed`.
pub enum TailEvent<'a> {
    /// Exactly the requested number of bytes can be read.
    Body(&'a mut dyn Read),
    /// The file as it was after reading; None when the host could not say.
    End(Option<After>),
    Failed(String),
}

/// A file to check and fetch: the listed entry and the length of its stored old part.
pub type Grown<'a> = (&'a Entry, u64);

impl Source {
    /// sha256 of the first `old` bytes of each file on the host; None where the host could
    /// not tell (tools missing, command refused, file unreadable). Never fails the run.
    /// `meanwhile` runs once while the host hashes (the box hashes its copies then).
    pub fn prefix_hashes(
        &mut self,
        files: &[Grown<'_>],
        meanwhile: &mut dyn FnMut(),
    ) -> Vec<Option<[u8; 32]>> {
        let conn = match self {
            Source::Local(_) => {
                meanwhile();
                return vec![None; files.len()];
            }
            Source::Stream(s) => &s.conn,
            Source::Sftp(s) => &s.conn,
        };
        let mut out = vec![None; files.len()];
        let mut waiting = Some(meanwhile);
        for start in (0..files.len()).step_by(BATCH) {
            let end = (start + BATCH).min(files.len());
            let mut stdin = Vec::new();
            for (k, (e, old)) in files.iter().enumerate().take(end).skip(start) {
                stdin.extend(record(k as u64, 0, *old, &e.path));
            }
            let started = conn.start(HASH, &stdin);
            if let Some(f) = waiting.take() {
                f();
            }
            let Ok(mut channel) = started else {
                continue;
            };
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let read = ChannelReader {
                conn,
                channel: &mut channel,
                stderr: &mut stderr,
            }
            .read_to_end(&mut stdout);
            if read.is_err() || conn.finish(channel, &mut stderr).is_err() {
                continue;
            }
            for (k, h) in parse_hashes(&stdout) {
                if (start..end).contains(&k) {
                    out[k] = Some(h);
                }
            }
        }
        if let Some(f) = waiting.take() {
            f();
        }
        out
    }

    /// Read bytes `old..e.size` of each file. Every file gets `Body` + `End` or `Failed`.
    /// An Err (from `sink` or a lost connection) stops the fetch and is returned.
    pub fn fetch_tails(
        &mut self,
        files: &[Grown<'_>],
        throttle: &mut Throttle,
        sink: &mut dyn FnMut(usize, TailEvent<'_>) -> Result<()>,
    ) -> Result<()> {
        match self {
            Source::Local(_) => {
                for k in 0..files.len() {
                    sink(k, TailEvent::Failed("not for local folders".into()))?;
                }
                Ok(())
            }
            Source::Stream(s) => {
                for start in (0..files.len()).step_by(BATCH) {
                    let end = (start + BATCH).min(files.len());
                    stream_tails(&s.conn, files, start..end, throttle, sink)?;
                }
                Ok(())
            }
            Source::Sftp(s) => sftp_tails(s, files, throttle, sink),
        }
    }
}

/// `INDEX HEX` lines; anything else (login noise, errors) is ignored.
fn parse_hashes(stdout: &[u8]) -> Vec<(usize, [u8; 32])> {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .filter_map(|l| {
            let (i, h) = l.trim().split_once(' ')?;
            if i.len() != 20 || h.len() != 64 {
                return None;
            }
            let i: usize = i.parse().ok()?;
            let mut out = [0u8; 32];
            for (k, b) in out.iter_mut().enumerate() {
                *b = u8::from_str_radix(h.get(2 * k..2 * k + 2)?, 16).ok()?;
            }
            Some((i, out))
        })
        .collect()
}

/// `SIZE MTIME UID GID` from `stat -c`, or None.
fn parse_after(line: &str) -> Option<After> {
    let mut it = line.split_whitespace();
    let size = it.next()?.parse().ok()?;
    let mtime_s = it.next()?.parse().ok()?;
    let owner = match (it.next(), it.next()) {
        (Some(u), Some(g)) => Some((u.parse().ok()?, g.parse().ok()?)),
        _ => None,
    };
    Some(After {
        size,
        mtime_s,
        owner,
    })
}

/// One line, at most 200 bytes (a header or a trailer), without its newline.
fn read_line(r: &mut dyn BufRead) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    r.take(200).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Ok(None);
    }
    line.pop();
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn stream_tails(
    conn: &Connection,
    files: &[Grown<'_>],
    range: std::ops::Range<usize>,
    throttle: &mut Throttle,
    sink: &mut dyn FnMut(usize, TailEvent<'_>) -> Result<()>,
) -> Result<()> {
    // Sorted by name: the filter on the host hands the records on in that order.
    let mut order: Vec<usize> = range.clone().collect();
    order.sort_by(|&a, &b| files[a].0.path.cmp(&files[b].0.path));
    let mut stdin = Vec::new();
    for &k in &order {
        let (e, old) = files[k];
        stdin.extend(record(k as u64, old + 1, e.size - old, &e.path));
    }
    let mut settled = vec![false; files.len()];
    // The records flow while the tails are read: a host with a small input window (dropbear)
    // would stop taking records while its output waits.
    let mut reader = ReadAhead::start(conn, conn.spawn(TAIL)?, stdin)?;
    let lost = |e: std::io::Error| {
        conn.fail(format!(
            "the connection stopped while reading appended files ({e}); the next run resumes"
        ))
    };
    {
        let mut throttled = throttle.reader(&mut reader);
        let mut buffered = BufReader::with_capacity(256 << 10, &mut throttled);
        while let Some(header) = read_line(&mut buffered).map_err(lost)? {
            let Some((k, word)) = header
                .split_once(' ')
                .and_then(|(i, w)| Some((i.parse::<usize>().ok()?, w)))
                .filter(|(k, _)| range.contains(k) && !settled[*k])
            else {
                break; // not our protocol: the rest is fetched whole
            };
            settled[k] = true;
            if word != "OK" {
                sink(
                    k,
                    TailEvent::Failed("not a regular file on the host".into()),
                )?;
                continue;
            }
            let (e, old) = files[k];
            let count = e.size - old;
            let mut body = (&mut buffered).take(count);
            sink(k, TailEvent::Body(&mut body))?;
            // Whatever the sink left unread, so the next header lines up.
            std::io::copy(&mut body, &mut std::io::sink()).map_err(lost)?;
            if body.limit() > 0 {
                return Err(lost(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let after = read_line(&mut buffered)
                .map_err(lost)?
                .and_then(|l| parse_after(&l));
            sink(k, TailEvent::End(after))?;
        }
        std::io::copy(&mut buffered, &mut std::io::sink()).map_err(lost)?;
    }
    let (channel, mut stderr) = reader.finish().map_err(lost)?;
    conn.finish(channel, &mut stderr)?;
    for k in range.filter(|&k| !settled[k]) {
        sink(
            k,
            TailEvent::Failed(format!(
                "the host did not send it: {}",
                String::from_utf8_lossy(&stderr).trim()
            )),
        )?;
    }
    Ok(())
}

/// SFTP reads at an offset natively.
fn sftp_tails(
    s: &super::sftp::SftpSource,
    files: &[Grown<'_>],
    throttle: &mut Throttle,
    sink: &mut dyn FnMut(usize, TailEvent<'_>) -> Result<()>,
) -> Result<()> {
    for (k, (e, old)) in files.iter().enumerate() {
        let abs = PathBuf::from(std::ffi::OsStr::from_bytes(&[b"/", &e.path[..]].concat()));
        let opened = s.sftp().lstat(&abs).and_then(|st| {
            if st.file_type().is_file() {
                s.sftp().open(&abs).map(Some)
            } else {
                Ok(None)
            }
        });
        let mut file = match opened {
            Ok(Some(f)) => f,
            Ok(None) => {
                sink(k, TailEvent::Failed("no longer a regular file".into()))?;
                continue;
            }
            Err(err) => {
                sink(k, TailEvent::Failed(err.to_string()))?;
                continue;
            }
        };
        if let Err(err) = file.seek(std::io::SeekFrom::Start(*old)) {
            sink(k, TailEvent::Failed(err.to_string()))?;
            continue;
        }
        let count = e.size - old;
        let mut body = throttle.reader(&mut file).take(count);
        sink(k, TailEvent::Body(&mut body))?;
        if body.limit() > 0 {
            // Short: the file shrank while being read (or the connection went).
            sink(k, TailEvent::Failed("shrank while being read".into()))?;
            continue;
        }
        let after = file.stat().ok().and_then(|st| {
            Some(After {
                size: st.size?,
                mtime_s: st.mtime? as i64,
                owner: Some((st.uid?, st.gid?)),
            })
        });
        sink(k, TailEvent::End(after))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Run a command in a real `sh` with `stdin`, as sshd would.
    fn sh(cmd: &str, stdin: &[u8]) -> Vec<u8> {
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap().stdout
    }

    fn rel(p: &std::path::Path) -> Vec<u8> {
        p.as_os_str().as_bytes()[1..].to_vec()
    }

    #[test]
    fn hash_command_hashes_the_old_part_of_odd_names() {
        use sha2::Digest;
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("it's a $(file)\nwith -n");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&a, &data).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let mut stdin = record(7, 0, 65_536, &rel(&a));
        stdin.extend(record(8, 0, 10, &rel(&link)));
        stdin.extend(record(9, 0, 10, &rel(&d.path().join("gone"))));
        let got = parse_hashes(&sh(HASH, &stdin));
        let want: [u8; 32] = sha2::Sha256::digest(&data[..65_536]).into();
        // The symlink and the missing file print nothing.
        assert_eq!(got, vec![(7, want)]);
    }

    #[test]
    fn tail_command_frames_each_file() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a b");
        std::fs::write(&a, b"0123456789").unwrap();
        let mut stdin = record(0, 4, 6, &rel(&a));
        stdin.extend(record(1, 9, 5, &rel(&a))); // asks beyond the end: padded
        stdin.extend(record(2, 1, 1, &rel(&d.path().join("gone"))));
        let out = sh(TAIL, &stdin);
        let mut r = BufReader::new(&out[..]);
        assert_eq!(read_line(&mut r).unwrap().unwrap(), format!("{:020} OK", 0));
        let mut body = vec![0u8; 6];
        r.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"345678");
        let after = parse_after(&read_line(&mut r).unwrap().unwrap()).unwrap();
        assert_eq!(after.size, 10);
        assert_eq!(read_line(&mut r).unwrap().unwrap(), format!("{:020} OK", 1));
        let mut body = vec![9u8; 5];
        r.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"89\0\0\0");
        read_line(&mut r).unwrap().unwrap();
        assert_eq!(read_line(&mut r).unwrap().unwrap(), format!("{:020} NO", 2));
        assert_eq!(read_line(&mut r).unwrap(), None);
    }
}
