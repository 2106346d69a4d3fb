//! A command fed and read on a thread of its own.
//!
//! Reading: on a small-file pull the box's CPU is the limit, and about a third of it is
//! libssh2 decrypting and checking packets (its chacha20-poly1305 is portable C). Done on a
//! second core it overlaps with parsing the tar stream, writing the files and hashing them,
//! as `ssh host tar | tar -x` overlaps its two processes.
//!
//! Feeding: the names are sent while the output is read, as fast as the host takes them. A
//! host accepts only its channel window of input ahead of what the command has read (2 MiB
//! for OpenSSH, 24 KiB for dropbear), and tar stops reading names while its output is not
//! read: sending every name before reading anything stalls once the names outgrow that.
//!
//! Both directions share one libssh2 session, so the thread drives it non-blocking and waits
//! on the socket itself; nothing else may use the session until `finish` (or a drop).

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, Channel, Session};

use super::ssh::{take_stderr, Connection};
use crate::error::Result;

/// Bytes handed over at a time, and chunks in flight: what read-ahead adds to the box's memory.
const CHUNK: usize = 128 << 10;
const IN_FLIGHT: usize = 4;

/// Sends `input` to the command and reads its stdout ahead into a few chunks, while its
/// stderr is drained on the side. Promise: bytes come out in order; after `Ok(0)`, `finish`
/// gives the channel back, all input sent, with everything it wrote to stderr so far.
pub struct ReadAhead {
    chunks: Receiver<io::Result<Vec<u8>>>,
    spare: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    ended: bool,
    reader: Option<JoinHandle<(Channel, Vec<u8>)>>,
}

impl ReadAhead {
    /// Feed `input` (then end it) to the command on `channel` and read its output. No
    /// progress either way for the session's timeout fails the read (that timeout does not
    /// cover non-blocking calls by itself).
    pub fn start(conn: &Connection, channel: Channel, input: Vec<u8>) -> Result<ReadAhead> {
        let session = conn.session.clone();
        let stall = match session.timeout() {
            0 => Duration::from_secs(60),
            ms => Duration::from_millis(ms.into()),
        };
        let (to_reader, chunks) = mpsc::sync_channel::<io::Result<Vec<u8>>>(IN_FLIGHT);
        let (spare, spares) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        let reader = std::thread::Builder::new()
            .name("ssh-read".into())
            .spawn(move || {
                let mut pump = Pump {
                    session,
                    channel,
                    input,
                    sent: 0,
                    eof_sent: false,
                    stderr: Vec::new(),
                };
                pump.session.set_blocking(false);
                let result = pump.run(&to_reader, &spares, stall);
                pump.session.set_blocking(true);
                if let Err(e) = result {
                    let _ = to_reader.send(Err(e));
                }
                (pump.channel, pump.stderr)
            })
            .map_err(|e| conn.fail(format!("starting a reading thread: {e}")))?;
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

struct Pump {
    session: Session,
    channel: Channel,
    input: Vec<u8>,
    sent: usize,
    eof_sent: bool,
    stderr: Vec<u8>,
}

impl Pump {
    /// Until stdout ends (an empty chunk is sent then) or the reading side hangs up.
    fn run(
        &mut self,
        to_reader: &SyncSender<io::Result<Vec<u8>>>,
        spares: &Receiver<Vec<u8>>,
        stall: Duration,
    ) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut last_progress = Instant::now();
        loop {
            if buf.is_empty() {
                buf = spares.try_recv().unwrap_or_default();
                buf.clear();
            }
            let fed = self.feed()?;
            let filled = buf.len();
            buf.resize(CHUNK, 0);
            let got = match self.channel.read(&mut buf[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            buf.truncate(filled + got);
            let drained = take_stderr(&mut self.channel, &mut self.stderr)?;
            let end = got == 0 && self.channel.eof();
            let progressed = fed || got > 0 || drained;
            // Handed over when full, at the end, or when nothing more has arrived: the
            // reading side never waits on bytes that are here.
            if !buf.is_empty() && (buf.len() == CHUNK || end || got == 0) {
                // A closed receiver: the reading side gave up (an error, a cancel).
                if to_reader.send(Ok(std::mem::take(&mut buf))).is_err() {
                    return Ok(());
                }
                // Waiting for a slow disk is not the host stalling.
                last_progress = Instant::now();
            }
            if end {
                let _ = to_reader.send(Ok(Vec::new()));
                return Ok(());
            }
            if progressed {
                last_progress = Instant::now();
                continue;
            }
            let waited = last_progress.elapsed();
            if waited >= stall {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no data from the host for {}",
                        humantime::format_duration(stall)
                    ),
                ));
            }
            self.wait((stall - waited).min(Duration::from_millis(200)));
        }
    }

    /// Send what the host takes now of the input, then its end. Whether anything was sent.
    fn feed(&mut self) -> io::Result<bool> {
        if self.sent < self.input.len() {
            return match self.channel.write(&self.input[self.sent..]) {
                Ok(n) => {
                    self.sent += n;
                    Ok(n > 0)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) => Err(e),
            };
        }
        if self.eof_sent {
            return Ok(false);
        }
        match self.channel.send_eof().map_err(io::Error::from) {
            Ok(()) => {
                self.eof_sent = true;
                self.input = Vec::new();
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Until the socket is ready the way libssh2 last waited on it, or `at_most`.
    fn wait(&self, at_most: Duration) {
        let events = match self.session.block_directions() {
            BlockDirections::Outbound => libc::POLLOUT,
            BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
            _ => libc::POLLIN,
        };
        let mut fd = libc::pollfd {
            fd: self.session.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        unsafe { libc::poll(&mut fd, 1, at_most.as_millis() as libc::c_int) };
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            let done = std::mem::take(&mut self.current);
            self.at = 0;
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
