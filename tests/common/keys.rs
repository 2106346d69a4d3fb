//! Keys and the OpenSSH client, for tests of what a restricted key can and cannot do: write
//! `authorized_keys` lines with options, and run the real `ssh`/`sftp` with a key.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::Sshd;

impl Sshd {
    /// The `authorized_keys` file this server reads for root.
    pub fn authorized_keys(&self) -> std::path::PathBuf {
        self.dir.path().join("authorized_keys")
    }

    /// Replace the authorized keys with `lines`.
    pub fn set_authorized_keys(&self, lines: &[String]) {
        fs::write(self.authorized_keys(), lines.join("\n") + "\n").unwrap();
    }

    pub fn authorized_keys_text(&self) -> String {
        fs::read_to_string(self.authorized_keys()).unwrap()
    }

    /// Run the OpenSSH client as `user` with `key`: `ssh … user@127.0.0.1 <args>`, `stdin` fed in.
    pub fn ssh_as(&self, user: &str, key: &Path, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new("ssh")
            .args(self.client_options(key))
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{user}@127.0.0.1"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        let _ = writer.join();
        out
    }

    /// `ssh` as root with the config's client key.
    pub fn ssh(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.ssh_as("root", &self.client_key, args, stdin)
    }

    /// `sftp -b -` as `user` with `key`, running the batch `commands`.
    pub fn sftp_as(&self, user: &str, key: &Path, commands: &str) -> Output {
        let mut child = Command::new("sftp")
            .args(self.client_options(key))
            .arg("-P")
            .arg(self.port.to_string())
            .args(["-b", "-"])
            .arg(format!("{user}@127.0.0.1"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(commands.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn client_options(&self, key: &Path) -> Vec<String> {
        [
            "-i",
            &key.display().to_string(),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// The public key line of a private key file (`<key>.pub`), without a trailing newline.
pub fn public_line(key: &Path) -> String {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    fs::read_to_string(p).unwrap().trim().to_string()
}

/// The key lines of `authorized_keys` text that hold the key of `key` (its base64 blob).
pub fn lines_for_key<'a>(text: &'a str, key: &Path) -> Vec<&'a str> {
    let blob = public_line(key)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    text.lines().filter(|l| l.contains(&blob)).collect()
}
