//! A host whose SSH server is dropbear (a small NAS, another router). Dropbear takes only
//! 24 KiB of a command's input ahead of what the command has read, where OpenSSH takes 2 MiB:
//! the names of the files to fetch must flow while the tar stream is read, or the pull stalls.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::keys::public_line;
use common::user::TestUser;
use common::*;

const DROPBEAR: &str = "/usr/sbin/dropbear";

/// dropbear on 127.0.0.1 with its own host key, in the foreground; killed when dropped.
struct Dropbear {
    port: u16,
    fingerprint: String,
    child: Child,
}

impl Dropbear {
    fn start(dir: &Path) -> Dropbear {
        assert!(
            Path::new(DROPBEAR).exists(),
            "{DROPBEAR} is missing (apt install dropbear-bin; .ci/run installs it)"
        );
        let key = dir.join("host_key");
        let out = Command::new("dropbearkey")
            .args(["-t", "ed25519", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "dropbearkey: {}", text(&out));
        // `dropbearkey -y` prints the public key line: its fingerprint, the OpenSSH way.
        let out = Command::new("dropbearkey")
            .arg("-y")
            .arg("-f")
            .arg(&key)
            .output()
            .unwrap();
        let public = String::from_utf8(out.stdout).unwrap();
        let line = public
            .lines()
            .find(|l| l.starts_with("ssh-ed25519 "))
            .unwrap();
        fs::write(dir.join("host_key.pub"), format!("{line}\n")).unwrap();
        let fingerprint = fingerprint_of(&dir.join("host_key.pub"));
        let port = free_port();
        let child = Command::new(DROPBEAR)
            .args(["-F", "-E", "-s", "-r"])
            .arg(&key)
            .args(["-p", &format!("127.0.0.1:{port}"), "-P"])
            .arg(dir.join("dropbear.pid"))
            .stderr(fs::File::create(dir.join("dropbear.log")).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("dropbear to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Dropbear {
            port,
            fingerprint,
            child,
        }
    }
}

impl Drop for Dropbear {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 4,000 files of 2 KiB under long names: about 300 KB of names, more than dropbear's window
/// and than what tar reads ahead while its output waits.
fn many_files(root: &Path) {
    for d in 0..40 {
        let dir = root.join(format!("a-folder-with-a-rather-long-name-{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let body = format!("{d}/{f}\n").repeat(2048 / 6);
            fs::write(
                dir.join(format!("a-file-with-a-rather-long-name-{f:04}.txt")),
                body,
            )
            .unwrap();
        }
    }
}

#[test]
fn a_dropbear_host_with_thousands_of_files_is_backed_up_whole() {
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    keygen(&keys.path().join("client_key"));
    user.authorize_key(&public_line(&keys.path().join("client_key")));
    let server = Dropbear::start(keys.path());
    let src = user.dir.path().join("data");
    many_files(&src);

    let host = format!(
        "[[host]]\nname = \"nas\"\naddress = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\n\
         identity = \"{}\"\nhost_key = \"{}\"\nfolders = [\"{}\"]\ntimeout = \"15s\"\n",
        server.port,
        user.name,
        keys.path().join("client_key").display(),
        server.fingerprint,
        src.display()
    );
    let s = Setup::new(&host, "");
    s.init();
    let out = s.backup("nas", 0);
    assert!(out.contains("good via ssh (find+tar stream)"), "{out}");
    assert!(out.contains("4000 files"), "{out}");
    assert_same_tree(&src, &in_snap(&s.latest("nas"), &src));
}
