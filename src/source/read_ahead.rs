//! A command's stdout read on a thread of its own. On a small-file pull the box's CPU is the
//! limit, and about a third of it is libssh2 decrypting and checking packets (its
//! chacha20-poly1305 is portable C): done on a second core, it overlaps with parsing the tar
//! stream, writing the files and hashing them, as `ssh host tar | tar -x` overlaps its two
//! processes. Boxes with one core lose nothing but a copy of each chunk.

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use ssh2::{Channel, Session};

use super::ssh::drain_stderr;

/// Bytes handed over at a time, and chunks in flight: what read-ahead adds to the box's memory.
const CHUNK: usize = 128 << 10;
const IN_FLIGHT: usize = 4;

/// Reads the channel's stdout ahead into a few chunks while its stderr is drained on the side.
/// Promise: bytes come out in order; after `Ok(0)`, `finish` gives the channel back with
/// everything it wrote to stderr so far.
pub struct ReadAhead {
    chunks: Receiver<io::Result<Vec<u8>>>,
    spare: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    ended: bool,
    reader: Option<JoinHandle<(Channel, Vec<u8>)>>,
}

impl ReadAhead {
    pub fn start(session: Session, mut channel: Channel) -> io::Result<ReadAhead> {
        let (to_reader, chunks) = mpsc::sync_channel::<io::Result<Vec<u8>>>(IN_FLIGHT);
        let (spare, spares) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        let reader = std::thread::Builder::new()
            .name("ssh-read".into())
            .spawn(move || {
                let mut stderr = Vec::new();
                loop {
                    let mut buf = spares.try_recv().unwrap_or_default();
                    buf.resize(CHUNK, 0);
                    let got = fill(&session, &mut channel, &mut stderr, &mut buf);
                    let end = !matches!(got, Ok(n) if n > 0);
                    let sent = match got {
                        Ok(n) => {
                            buf.truncate(n);
                            to_reader.send(Ok(buf))
                        }
                        Err(e) => to_reader.send(Err(e)),
                    };
                    // A closed receiver: the reading side gave up (an error, a cancel).
                    if end || sent.is_err() {
                        return (channel, stderr);
                    }
                }
            })?;
        Ok(ReadAhead {
            chunks,
            spare,
            current: Vec::new(),
            at: 0,
            ended: false,
            reader: Some(reader),
        })
    }

    /// After stdout ended: the channel, and its stderr read so far.
    pub fn finish(mut self) -> io::Result<(Channel, Vec<u8>)> {
        if !self.ended {
            return Err(io::Error::other(
                "the command's output was not read to its end",
            ));
        }
        let reader = self.reader.take().expect("joined once");
        reader
            .join()
            .map_err(|_| io::Error::other("the SSH reading thread failed"))
    }
}

/// Fill `buf` as far as the channel has data without waiting past the first packet; 0 at end.
fn fill(
    session: &Session,
    channel: &mut Channel,
    stderr: &mut Vec<u8>,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut n = channel.read(buf)?;
    if n > 0 {
        // More that has already arrived comes along, so chunks are rarely a single packet.
        session.set_blocking(false);
        let more = loop {
            if n == buf.len() {
                break Ok(());
            }
            match channel.read(&mut buf[n..]) {
                Ok(0) => break Ok(()),
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        session.set_blocking(true);
        more?;
    }
    drain_stderr(session, channel, stderr)?;
    Ok(n)
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            let done = std::mem::take(&mut self.current);
            let _ = self.spare.try_send(done);
            match self.chunks.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => {
                    self.ended = true;
                    return Ok(0);
                }
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("the SSH reading thread stopped")),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
