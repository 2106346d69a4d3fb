//! Is a machine on the LAN? A TCP connect to its SSH port with a short timeout: cheap for
//! both sides and no credentials. Watched files (dnsmasq's lease file, /proc/net/arp) tell
//! when something arrived, so a check can run at once instead of at the next interval.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Host, SourceSpec};

/// Longest a presence check waits for one address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// `Ok(())` when the host answers on its SSH port; `Err(why)` otherwise.
/// Blocking: the daemon runs it on a helper thread.
pub fn check(host: &Host) -> Result<(), String> {
    let SourceSpec::Ssh(spec) = &host.source else {
        return Ok(());
    };
    let addrs = (spec.address.as_str(), spec.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", spec.address))?;
    let timeout = CONNECT_TIMEOUT.min(host.timeout);
    let mut last = format!("{} has no address", spec.address);
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// Notices changes of the watched files by content: /proc files have no useful mtime.
pub struct Watch {
    files: Vec<PathBuf>,
    last: Vec<u64>,
}

impl Watch {
    pub fn new(files: Vec<PathBuf>) -> Watch {
        let mut w = Watch {
            last: vec![0; files.len()],
            files,
        };
        w.changed();
        w
    }

    /// True when any watched file changed since the last call.
    pub fn changed(&mut self) -> bool {
        let mut any = false;
        for (i, f) in self.files.iter().enumerate() {
            // Lease files and the ARP table are a few KiB; a missing file hashes as empty.
            let text = std::fs::read(f).unwrap_or_default();
            let h = fnv1a(&text);
            if h != self.last[i] {
                any = true;
                self.last[i] = h;
            }
        }
        any
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_file_change_is_noticed_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("dhcp.leases");
        std::fs::write(&f, "1700000000 aa:bb laptop\n").unwrap();
        let mut w = Watch::new(vec![f.clone()]);
        assert!(!w.changed());
        std::fs::write(&f, "1700000000 aa:bb laptop\n1700000100 cc:dd phone\n").unwrap();
        assert!(w.changed());
        assert!(!w.changed());
        std::fs::remove_file(&f).unwrap();
        assert!(w.changed(), "a file that disappears is a change too");
    }
}
