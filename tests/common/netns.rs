//! A machine on its own network: an sshd inside a network namespace this test creates,
//! reached over a veth pair whose link the test can take down (Wi-Fi gone, cable pulled).
//! All addresses are inside that pair; nothing leaves the box.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::{sh, sshd_files, wait_until, SSHD};

pub struct NetnsHost {
    pub dir: tempfile::TempDir,
    pub ns: String,
    /// The box's end of the veth pair: `link(false)` pulls the cable.
    pub outer: String,
    pub addr: String,
    pub client_key: PathBuf,
    pub fingerprint: String,
    child: Child,
}

impl NetnsHost {
    pub fn start() -> NetnsHost {
        let id = std::process::id() % 10_000;
        let net = std::process::id() % 250 + 1;
        let (ns, outer, inner) = (format!("snt{id}"), format!("snt{id}a"), format!("snt{id}b"));
        let (box_ip, host_ip) = (format!("10.213.{net}.1"), format!("10.213.{net}.2"));
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        sh(&format!(
            "ip netns add {ns} && ip link add {outer} type veth peer name {inner} && \
             ip link set {inner} netns {ns} && ip addr add {box_ip}/30 dev {outer} && \
             ip link set {outer} up && ip -n {ns} addr add {host_ip}/30 dev {inner} && \
             ip -n {ns} link set {inner} up && ip -n {ns} link set lo up"
        ));
        let (dir, cfg, fingerprint) = sshd_files(&host_ip, 22);
        let d = dir.path();
        fs::write(d.join("sshd_config"), cfg).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, SSHD, "-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let target = format!("{host_ip}:22");
        wait_until("sshd in the namespace", Duration::from_secs(10), || {
            std::net::TcpStream::connect_timeout(&target.parse().unwrap(), Duration::from_secs(1))
                .is_ok()
        });
        NetnsHost {
            client_key: d.join("client_key"),
            fingerprint,
            dir,
            ns,
            outer,
            addr: host_ip,
            child,
        }
    }

    /// Up or down, as a cable plugged in or pulled.
    pub fn link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        sh(&format!("ip link set {} {state}", self.outer));
    }

    pub fn host_toml(&self, name: &str, folders: &[&Path], extra: &str) -> String {
        format!(
            "[[host]]\nname = \"{name}\"\naddress = \"{}\"\nport = 22\nuser = \"root\"\nidentity = \"{}\"\nhost_key = \"{}\"\nfolders = [{}]\n{extra}\n",
            self.addr,
            self.client_key.display(),
            self.fingerprint,
            folders.iter().map(|f| format!("\"{}\"", f.display())).collect::<Vec<_>>().join(", ")
        )
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.outer])
            .status();
    }
}
