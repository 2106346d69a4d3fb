//! What stands in front of the handlers: the `Host` check (a page on another site that
//! rebinds its DNS name to this box must not be able to read it through a LAN browser),
//! login pacing (a failed password slows that address down; a check already running means
//! "busy", never a queue), and a floor on how slowly a response may be taken.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether a request's `Host` names this box: an IP literal (the listen address, or any
/// other of the box's: rebinding needs a name), `localhost`, or one of `names`. A request
/// without Host (not a browser) passes.
pub fn host_allowed(host: Option<&str>, names: &[String]) -> bool {
    let Some(host) = host else { return true };
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return match rest.split_once(']') {
            Some((ip, port)) => {
                ip.parse::<Ipv6Addr>().is_ok() && (port.is_empty() || is_port(port))
            }
            None => false,
        };
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if is_port(port) => h,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

fn is_port(s: &str) -> bool {
    s.strip_prefix(':')
        .unwrap_or(s)
        .bytes()
        .all(|b| b.is_ascii_digit())
        && !s.trim_start_matches(':').is_empty()
}

/// Failed logins per client address.
#[derive(Default)]
pub struct Pacing {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    until: Instant,
}

/// Failures allowed at once before each further one costs a wait (typos happen).
const FREE_FAILURES: u32 = 3;
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Addresses remembered; beyond that the ones whose wait is over are forgotten first.
const MAX_ADDRESSES: usize = 4096;

impl Pacing {
    /// How long `ip` must still wait before its next password check, if at all.
    pub fn wait(&self, ip: IpAddr) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let f = map.get(&ip)?;
        f.until.checked_duration_since(Instant::now())
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_ADDRESSES {
            map.retain(|_, f| f.until > now);
        }
        if map.len() >= MAX_ADDRESSES {
            return; // a flood from many addresses: the verify lock still bounds the cost
        }
        let f = map.entry(ip).or_insert(Failures {
            count: 0,
            until: now,
        });
        f.count += 1;
        let over = f.count.saturating_sub(FREE_FAILURES);
        let wait = if over == 0 {
            Duration::ZERO
        } else {
            (Duration::from_secs(1) * 2u32.saturating_pow(over - 1).min(64)).min(MAX_WAIT)
        };
        f.until = now + wait;
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }
}

/// How long one socket write may block (the socket's write timeout): short, so the rate is
/// checked often. A blocked write can otherwise last until the kernel has drained half of a
/// send buffer of megabytes, which at a trickle is longer than any stall limit.
pub const WRITE_SLICE: Duration = Duration::from_secs(2);

/// A response writer that gives up on a client taking less than `min_rate` bytes per
/// second on average once `grace` has passed, or taking nothing for `stall`: a stall limit
/// alone lets a client that takes a few bytes a minute hold a worker forever.
/// The socket under it must have `WRITE_SLICE` as its write timeout.
pub struct Paced<W: Write> {
    inner: W,
    started: Instant,
    written: u64,
    min_rate: u64,
    grace: Duration,
    stall: Duration,
}

impl<W: Write> Paced<W> {
    pub fn new(inner: W, min_rate: u64, grace: Duration, stall: Duration) -> Paced<W> {
        Paced {
            inner,
            started: Instant::now(),
            written: 0,
            min_rate,
            grace,
            stall,
        }
    }

    fn too_slow(&self) -> io::Result<()> {
        let elapsed = self.started.elapsed();
        if self.min_rate > 0
            && elapsed > self.grace
            && (self.written as f64) < self.min_rate as f64 * elapsed.as_secs_f64()
        {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "client took {} bytes in {:.0} s, under the minimum of {} bytes/s",
                    self.written,
                    elapsed.as_secs_f64(),
                    self.min_rate
                ),
            ));
        }
        Ok(())
    }
}

impl<W: Write> Write for Paced<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let stalled_since = Instant::now();
        loop {
            self.too_slow()?;
            match self.inner.write(buf) {
                Ok(n) => {
                    self.written += n as u64;
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) && stalled_since.elapsed() < self.stall => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_name_this_box() {
        let names = vec!["backup.lan".to_string()];
        for ok in [
            None,
            Some("192.168.1.1"),
            Some("192.168.1.1:8080"),
            Some("[::1]:8080"),
            Some("[fe80::1]"),
            Some("localhost:8080"),
            Some("Backup.LAN:8080"),
            Some("backup.lan."),
        ] {
            assert!(host_allowed(ok, &names), "{ok:?}");
        }
        for bad in [
            Some("evil.example"),
            Some("evil.example:8080"),
            Some("192.168.1.1.evil.example"),
            Some("backup.lan.evil.example"),
            Some("[::1"),
            Some("x"),
            Some(""),
            Some("192.168.1.1:80x"),
        ] {
            assert!(!host_allowed(bad, &names), "{bad:?}");
        }
    }

    #[test]
    fn failures_beyond_the_free_ones_cost_a_growing_wait() {
        let p = Pacing::default();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            p.failed(ip);
            assert_eq!(p.wait(ip), None);
        }
        p.failed(ip);
        let w = p.wait(ip).unwrap();
        assert!(
            w > Duration::from_millis(500) && w <= Duration::from_secs(1),
            "{w:?}"
        );
        p.failed(ip);
        assert!(p.wait(ip).unwrap() > Duration::from_millis(1500));
        assert_eq!(p.wait("10.0.0.8".parse().unwrap()), None, "per address");
        p.succeeded(ip);
        assert_eq!(p.wait(ip), None);
    }
}
