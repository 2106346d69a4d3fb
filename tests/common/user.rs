//! A throwaway login user on this machine (tests run as root): for hosts that must be
//! reached as someone other than root, and SSH servers that read only ~/.ssh/authorized_keys.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::text;

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(out.status.success(), "{cmd} {args:?}: {}", text(&out));
}

/// A login user (`snt<pid>x<n>`) with a home in a temp folder; removed with its group and
/// sudoers drop-in when dropped.
pub struct TestUser {
    pub name: String,
    pub home: PathBuf,
    pub dir: tempfile::TempDir,
    pub group: Option<String>,
    pub sudoers: Option<PathBuf>,
}

impl TestUser {
    pub fn create() -> TestUser {
        let name = format!(
            "snt{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        run(
            "useradd",
            &["-m", "-d", home.to_str().unwrap(), "-s", "/bin/sh", &name],
        );
        // "*", not useradd's "!": sshd without PAM refuses locked accounts.
        run("usermod", &["-p", "*", &name]);
        TestUser {
            name,
            home,
            dir,
            group: None,
            sudoers: None,
        }
    }

    /// Let `key` log in as this user without restrictions (the setup before `authorize`).
    pub fn authorize_key(&self, line: &str) {
        let ssh = self.home.join(".ssh");
        fs::create_dir_all(&ssh).unwrap();
        fs::write(ssh.join("authorized_keys"), format!("{line}\n")).unwrap();
        run(
            "chown",
            &["-R", &format!("{0}:{0}", self.name), ssh.to_str().unwrap()],
        );
    }

    pub fn authorized_keys_text(&self) -> String {
        fs::read_to_string(self.home.join(".ssh/authorized_keys")).unwrap()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if let Some(s) = &self.sudoers {
            let _ = fs::remove_file(s);
        }
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
        if let Some(g) = &self.group {
            let _ = Command::new("groupdel").arg(g).output();
        }
    }
}
