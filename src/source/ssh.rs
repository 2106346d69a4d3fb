//! One SSH connection: TCP with a timeout, the host key checked against the pinned
//! fingerprint before any credential is sent, key or agent authentication, and helpers to run
//! commands whose paths travel on stdin, never on the command line.
//!
//! Blocking libssh2 (the `ssh2` crate) rather than async-ssh2-lite: with a blocking session
//! libssh2's own timeout covers every network wait, and the program needs no async-io/rustix
//! timer stack (which hangs on 32-bit MIPS musl, see the design notes).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::Engine;
use ssh2::{Channel, HashType, Session};

use crate::config::SshSpec;
use crate::error::{Error, Result};

pub struct Connection {
    pub session: Session,
    pub host: String,
}

/// Output of a command that was run to completion.
pub struct Finished {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: i32,
}

impl Connection {
    /// Connect and authenticate. With `verify`, a host without a pinned key is refused and a
    /// different key is a hard error; without it (only `snapnest hostkey`), no credentials
    /// are offered and the connection is only good for reading the key.
    pub fn connect(
        name: &str,
        spec: &SshSpec,
        timeout: Duration,
        verify: bool,
    ) -> Result<Connection> {
        let fail = |message: String| Error::Ssh {
            host: name.to_string(),
            message,
        };
        if verify && spec.host_key.is_none() {
            return Err(Error::HostKeyNotPinned {
                host: name.to_string(),
            });
        }
        let addrs: Vec<_> = (spec.address.as_str(), spec.port)
            .to_socket_addrs()
            .map_err(|e| fail(format!("resolving {}: {e}", spec.address)))?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(format!("connecting to {addr}: {e}")),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            fail(last.unwrap_or_else(|| format!("{} has no address", spec.address)))
        })?;
        let _ = tcp.set_nodelay(true);
        let mut session = Session::new().map_err(|e| fail(format!("starting SSH: {e}")))?;
        session.set_tcp_stream(tcp);
        session.set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
        session.handshake().map_err(|e| {
            fail(format!(
                "SSH handshake with {}:{}: {e}",
                spec.address, spec.port
            ))
        })?;
        let conn = Connection {
            session,
            host: name.to_string(),
        };
        if verify {
            let actual = conn.fingerprint()?;
            let expected = spec.host_key.clone().unwrap_or_default();
            if actual != expected {
                return Err(Error::HostKeyMismatch {
                    host: name.to_string(),
                    expected,
                    actual,
                });
            }
            conn.authenticate(spec)?;
        }
        conn.session.set_keepalive(false, 15);
        Ok(conn)
    }

    /// `SHA256:<base64>` as OpenSSH prints it.
    pub fn fingerprint(&self) -> Result<String> {
        let hash = self
            .session
            .host_key_hash(HashType::Sha256)
            .ok_or_else(|| self.fail("the server sent no host key"))?;
        Ok(format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(hash)
        ))
    }

    /// The host key's algorithm name, e.g. `ssh-ed25519`.
    pub fn key_type(&self) -> &'static str {
        use ssh2::HostKeyType::*;
        match self.session.host_key().map(|(_, t)| t) {
            Some(Rsa) => "ssh-rsa",
            Some(Dss) => "ssh-dss",
            Some(Ecdsa256) => "ecdsa-sha2-nistp256",
            Some(Ecdsa384) => "ecdsa-sha2-nistp384",
            Some(Ecdsa521) => "ecdsa-sha2-nistp521",
            Some(Ed25519) => "ssh-ed25519",
            _ => "unknown",
        }
    }

    fn authenticate(&self, spec: &SshSpec) -> Result<()> {
        let result = match &spec.identity {
            Some(key) => {
                if let Err(e) = std::fs::metadata(key) {
                    return Err(self.fail(format!("identity file {}: {e}", key.display())));
                }
                self.session
                    .userauth_pubkey_file(&spec.user, None, key, None)
                    .map_err(|e| {
                        format!(
                            "key {} was not accepted for user {}: {e}",
                            key.display(),
                            spec.user
                        )
                    })
            }
            None => self.session.userauth_agent(&spec.user).map_err(|e| {
                format!(
                    "ssh-agent authentication as {} failed ({e}); set `identity` to a key file",
                    spec.user
                )
            }),
        };
        result.map_err(|m| self.fail(m))?;
        if !self.session.authenticated() {
            return Err(self.fail(format!("authentication as {} failed", spec.user)));
        }
        Ok(())
    }

    pub fn fail(&self, message: impl Into<String>) -> Error {
        Error::Ssh {
            host: self.host.clone(),
            message: message.into(),
        }
    }

    pub fn keepalive(&self) -> Result<()> {
        self.session
            .keepalive_send()
            .map(|_| ())
            .map_err(|e| self.fail(format!("connection lost: {e}")))
    }

    /// Start `command`, send `stdin`, close stdin. Output is read only after all input is
    /// sent: fine for commands whose output stays small until they have read their input;
    /// others go through `spawn` and `ReadAhead`, which feeds and reads at once.
    pub fn start(&self, command: &str, stdin: &[u8]) -> Result<Channel> {
        let mut ch = self.spawn(command)?;
        self.send_input(&mut ch, stdin)?;
        Ok(ch)
    }

    /// Start `command` and leave it waiting for its input (`send_input`).
    pub fn spawn(&self, command: &str) -> Result<Channel> {
        let mut ch = self
            .session
            .channel_session()
            .map_err(|e| self.fail(format!("opening a channel: {e}")))?;
        ch.exec(command)
            .map_err(|e| self.fail(format!("running a command: {e}")))?;
        Ok(ch)
    }

    /// Send all of a spawned command's input, then end it. The same caveat as `start`.
    pub fn send_input(&self, ch: &mut Channel, stdin: &[u8]) -> Result<()> {
        // No `flush`: libssh2's channel flush throws away output already received, and a
        // command that started before its input ended (a spawned tar) has sent some.
        ch.write_all(stdin)
            .map_err(|e| self.fail(format!("sending to the command: {e}")))?;
        ch.send_eof()
            .map_err(|e| self.fail(format!("sending to the command: {e}")))
    }

    /// Run `command` to the end, collecting its output.
    pub fn run(&self, command: &str, stdin: &[u8]) -> Result<Finished> {
        let mut ch = self.start(command, stdin)?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        {
            let mut r = ChannelReader {
                conn: self,
                channel: &mut ch,
                stderr: &mut stderr,
            };
            r.read_to_end(&mut stdout)
                .map_err(|e| self.fail(format!("reading command output: {e}")))?;
        }
        self.finish(ch, &mut stderr).map(|status| Finished {
            stdout,
            stderr,
            status,
        })
    }

    /// After stdout ended: collect the rest of stderr and the exit status.
    pub fn finish(&self, mut ch: Channel, stderr: &mut Vec<u8>) -> Result<i32> {
        ch.stderr()
            .read_to_end(stderr)
            .map_err(|e| self.fail(format!("reading command errors: {e}")))?;
        ch.wait_close()
            .map_err(|e| self.fail(format!("closing channel: {e}")))?;
        // A command killed by a signal has no exit status (libssh2 then says 0): -1.
        if ch.exit_signal().is_ok_and(|s| s.exit_signal.is_some()) {
            return Ok(-1);
        }
        // Only reliable once the channel is closed.
        ch.exit_status()
            .map_err(|e| self.fail(format!("reading exit status: {e}")))
    }
}

/// Reads a channel's stdout while draining its stderr on the side: unread stderr holds
/// channel window, and a command with much to complain about would stall its stdout.
pub struct ChannelReader<'a> {
    pub conn: &'a Connection,
    pub channel: &'a mut Channel,
    pub stderr: &'a mut Vec<u8>,
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.channel.read(buf)?;
        drain_stderr(&self.conn.session, self.channel, self.stderr)?;
        Ok(n)
    }
}

/// Whatever stderr the channel holds now, without waiting for more (the session is switched
/// to non-blocking for it).
fn drain_stderr(session: &Session, channel: &mut Channel, stderr: &mut Vec<u8>) -> io::Result<()> {
    session.set_blocking(false);
    let drained = take_stderr(channel, stderr);
    session.set_blocking(true);
    drained.map(|_| ())
}

/// Append what stderr holds now to `stderr`, on a session that is already non-blocking.
/// Whether there was any.
pub fn take_stderr(channel: &mut Channel, stderr: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 8192];
    let mut any = false;
    loop {
        match channel.stderr().read(&mut chunk) {
            Ok(0) => return Ok(any),
            Ok(k) => {
                stderr.extend_from_slice(&chunk[..k]);
                any = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
            Err(e) => return Err(e),
        }
    }
}

/// Single-quote for a POSIX shell. Only config-given folders go through here; names that
/// come from a host travel on stdin.
pub fn sh_quote(s: &str) -> String {
    super::commands::quote(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(super::sh_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
