//! Running a hook: on this box in its own process group, or on the host over SSH. Both are
//! bounded by the hook's timeout and keep only the tail of the output, so neither a hung nor
//! a chatty hook can stall the daemon or grow its memory.
//!
//! Remote timeout: the command is wrapped as `timeout <secs> sh -c '<run>'` when the host has
//! a working `timeout` (GNU and BusyBox do; it signals the hook's whole process group), and
//! we also stop waiting `REMOTE_GRACE` later and close the channel, for hosts without one.

use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Hook, HookEnv, Where};
use crate::config::{Host, SourceSpec, SshSpec};
use crate::error::{Error, Result};
use crate::source::ssh::{sh_quote, Connection};

/// How much output a hook's error message and [`HookOutcome`] keep.
pub const TAIL_BYTES: usize = 2048;
/// How long we wait past a remote hook's timeout for the host's `timeout` to act.
const REMOTE_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// A hook that exited 0.
#[derive(Clone, Debug)]
pub struct HookOutcome {
    pub status: i32,
    /// Last ~2 KiB of stdout and stderr together, lossy UTF-8.
    pub output_tail: String,
}

/// The last `TAIL_BYTES` of a stream.
#[derive(Default)]
pub(super) struct Tail {
    buf: Vec<u8>,
    cut: bool,
}

impl Tail {
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > 2 * TAIL_BYTES {
            let excess = self.buf.len() - TAIL_BYTES;
            self.buf.drain(..excess);
            self.cut = true;
        }
    }

    pub(super) fn text(&self) -> String {
        let mut b = &self.buf[..];
        let cut = self.cut || b.len() > TAIL_BYTES;
        if b.len() > TAIL_BYTES {
            b = &b[b.len() - TAIL_BYTES..];
        }
        if cut {
            // Start at a character, not inside one.
            while let [first, rest @ ..] = b {
                if first & 0xC0 != 0x80 {
                    break;
                }
                b = rest;
            }
        }
        let s = String::from_utf8_lossy(b);
        if cut {
            format!("…{s}")
        } else {
            s.into_owned()
        }
    }
}

/// How a command ended.
pub(super) struct Ran {
    /// Exit code; -1 when killed by a signal or when we stopped waiting.
    pub status: i32,
    pub signal: Option<i32>,
    pub tail: String,
    /// We gave up at the limit (local: the group was killed; remote: the channel closed).
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Ran {
    /// "exit 3" or "killed by signal 9", for messages.
    pub(super) fn exit(&self) -> String {
        match self.signal {
            Some(sig) => format!("killed by signal {sig}"),
            None if self.status == -1 => "killed by a signal".to_string(),
            None => format!("exit {}", self.status),
        }
    }

    /// ": <output on one line>", or nothing when there was no output.
    pub(super) fn tail_suffix(&self) -> String {
        let lines: Vec<&str> = self
            .tail
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            String::new()
        } else {
            format!(": {}", lines.join(" | "))
        }
    }
}

/// Run one hook; Err when it could not start, timed out, or exited non-zero, with a message
/// fit for a log line and the run's failure message ("before hook failed (exit 3): …").
/// The hook text is never part of a message: it may hold a password.
pub fn run_hook(hook: &Hook, host: &Host, env: &HookEnv) -> Result<HookOutcome> {
    let what = format!("{} hook", env.event.as_str());
    let vars = env.vars();
    let remote = hook.place == Where::Remote;
    let ran = match (hook.place, &host.source) {
        (Where::Local, _) => run_local(&hook.run, &vars, hook.timeout)
            .map_err(|e| Error::Other(format!("{what} could not start `sh`: {e}")))?,
        (Where::Remote, SourceSpec::Ssh(spec)) => {
            let command = remote_command(&hook.run, &vars, hook.timeout);
            run_remote(host, spec, &command, hook.timeout + REMOTE_GRACE, &what)?
        }
        (Where::Remote, SourceSpec::Local) => {
            return Err(Error::Other(format!(
                "{what} was not run: it has where = \"remote\" but host {} has source = \"local\" (use where = \"local\")",
                host.name
            )))
        }
    };
    let side = if remote { " on the host" } else { "" };
    // The host's `timeout` ends the hook with a non-zero status (124 for GNU) at the limit.
    if ran.timed_out || (remote && ran.status != 0 && ran.elapsed >= hook.timeout) {
        let how = match (remote, ran.timed_out) {
            (false, _) => "it was killed with its child processes",
            (true, false) => "it was stopped on the host",
            (true, true) => "the connection was closed; the host has no working `timeout` command, so the hook may still be running there",
        };
        return Err(Error::Other(format!(
            "{what}{side} timed out after {}: {how}{}",
            humantime::format_duration(hook.timeout),
            ran.tail_suffix()
        )));
    }
    if ran.status != 0 || ran.signal.is_some() {
        return Err(Error::Other(format!(
            "{what}{side} failed ({}){}",
            ran.exit(),
            ran.tail_suffix()
        )));
    }
    Ok(HookOutcome {
        status: 0,
        output_tail: ran.tail,
    })
}

/// `sh -c` the script with the values exported; `sh -c` again because the login shell of
/// the SSH user need not be POSIX. Every value is single-quoted: values come from hosts.
pub(super) fn remote_command(run: &str, vars: &[(String, String)], timeout: Duration) -> String {
    let exports: Vec<String> = vars
        .iter()
        .map(|(k, v)| format!("{k}={}", sh_quote(v)))
        .collect();
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    let run = sh_quote(run);
    let script = format!(
        "export {}; if timeout 1 true 2>/dev/null; then exec timeout {secs} sh -c {run}; fi; exec sh -c {run}",
        exports.join(" ")
    );
    format!("sh -c {}", sh_quote(&script))
}

/// `sh -c script` on this box: stdin null, stdout and stderr into one pipe, own process
/// group (killed as a whole at the limit: TERM, up to 1 s, then KILL).
pub(super) fn run_local(
    script: &str,
    vars: &[(String, String)],
    limit: Duration,
) -> io::Result<Ran> {
    let started = Instant::now();
    let (read_end, write_end) = pipe()?;
    let mut child = {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_end.try_clone()?))
            .stderr(Stdio::from(write_end))
            .process_group(0);
        cmd.spawn()?
        // `cmd` drops here with our copies of the write end, so EOF comes when the hook's
        // processes are done with it.
    };
    let tail = Arc::new(Mutex::new(Tail::default()));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    {
        let tail = Arc::clone(&tail);
        let mut pipe = std::fs::File::from(read_end);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => tail
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = done_tx.send(());
        });
    }
    let deadline = started + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            // `sh` is not reaped yet, so the group id is still ours to signal.
            let pgid = child.id() as libc::pid_t;
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            // The pipe closes once every process of the group is gone.
            let _ = done_rx.recv_timeout(Duration::from_secs(1));
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            break child.wait()?;
        }
        std::thread::sleep(POLL);
    };
    // A background child may keep the output open; don't wait on it for long.
    let _ = done_rx.recv_timeout(Duration::from_secs(if timed_out { 1 } else { 2 }));
    let tail = tail.lock().unwrap_or_else(|p| p.into_inner()).text();
    Ok(Ran {
        status: status.code().unwrap_or(-1),
        signal: if timed_out { None } else { status.signal() },
        tail,
        timed_out,
        elapsed: started.elapsed(),
    })
}

/// Run `command` on the host over a fresh, verified connection, for at most `limit`.
pub(super) fn run_remote(
    host: &Host,
    spec: &SshSpec,
    command: &str,
    limit: Duration,
    what: &str,
) -> Result<Ran> {
    let labelled = |e: Error| match e {
        Error::Ssh { host, message } => Error::Ssh {
            host,
            message: format!("{what}: {message}"),
        },
        other => other,
    };
    let conn = Connection::connect(&host.name, spec, host.timeout, true).map_err(labelled)?;
    let started = Instant::now();
    let ch = conn.start(command, b"").map_err(labelled)?;
    let mut tail = Tail::default();
    let mut timed_out = false;
    // Non-blocking, so a silent hook is not mistaken for a dead connection at `host.timeout`.
    conn.session.set_blocking(false);
    let pumped = (|| -> io::Result<()> {
        let mut buf = [0u8; 8192];
        loop {
            let mut got = false;
            for id in [0, 1] {
                loop {
                    match ch.stream(id).read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            tail.push(&buf[..n]);
                            got = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            if got {
                continue;
            }
            if ch.eof() {
                return Ok(());
            }
            if started.elapsed() >= limit {
                timed_out = true;
                return Ok(());
            }
            let _ = conn.session.keepalive_send();
            std::thread::sleep(POLL);
        }
    })();
    conn.session.set_blocking(true);
    pumped.map_err(|e| conn.fail(format!("{what}: connection lost: {e}")))?;
    if timed_out {
        // A graceful close would wait for the command to exit; drop the connection instead.
        let _ = conn.session.disconnect(None, "hook timed out", None);
        drop(ch);
        return Ok(Ran {
            status: -1,
            signal: None,
            tail: tail.text(),
            timed_out,
            elapsed: started.elapsed(),
        });
    }
    let mut rest = Vec::new();
    let status = conn.finish(ch, &mut rest).map_err(labelled)?;
    tail.push(&rest);
    Ok(Ran {
        status,
        signal: None,
        tail: tail.text(),
        timed_out,
        elapsed: started.elapsed(),
    })
}

/// A close-on-exec pipe: no other child spawned meanwhile may inherit the write end.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let rc = unsafe {
        let rc = libc::pipe(fds.as_mut_ptr());
        if rc == 0 {
            libc::fcntl(fds[0], libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(fds[1], libc::F_SETFD, libc::FD_CLOEXEC);
        }
        rc
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
