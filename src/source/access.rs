//! What a host lets this key do: the fast find+tar stream (unrestricted, or through the
//! forced-command filter of `snapnest authorize`), or only SFTP (a key restricted to
//! `internal-sftp -R`, or a host without GNU tools); and, per configured folder, whether the
//! login user can read it and, when not, why. One probe round trip on the stream path.

use std::path::Path;

use ssh2::ErrorCode;

use super::commands;
use super::sftp::SftpSource;
use super::ssh::Connection;
use super::stream::StreamSource;
use super::Source;
use crate::config::{SshSpec, Transfer};
use crate::error::Result;

/// Whether the login user can read one configured folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readable {
    Yes,
    PermissionDenied,
    Missing,
    /// It may exist, but a parent folder is not searchable.
    ParentNotSearchable,
    /// The host answered something else (e.g. an SFTP error code).
    Unknown(String),
}

#[derive(Clone, Debug)]
pub struct Access {
    /// The login user the reads run as (under `--mode sudo`, the filter reads as root).
    pub user: String,
    pub method: &'static str,
    /// Why the stream was not used, when it was not.
    pub fallback: Option<String>,
    pub folders: Vec<(String, Readable)>,
}

impl Access {
    /// One line per unreadable folder: what, for whom, and what to do about it.
    pub fn advice(&self, host: &str) -> Vec<String> {
        let user = &self.user;
        self.folders
            .iter()
            .filter_map(|(f, r)| {
                let why = match r {
                    Readable::Yes => return None,
                    Readable::PermissionDenied => format!(
                        "permission denied for user {user}: give {user} read access \
                         (`setfacl -R -m u:{user}:rX {q}; setfacl -R -d -m u:{user}:rX {q}`, or a group), \
                         or read as root through `snapnest authorize {host} --mode sudo`; \
                         on macOS, give sshd Full Disk Access",
                        q = commands::quote(f)
                    ),
                    Readable::Missing => format!("does not exist on {host}"),
                    Readable::ParentNotSearchable => format!(
                        "a parent folder is not searchable by user {user} (it needs x permission)"
                    ),
                    Readable::Unknown(m) => format!("cannot be read by user {user}: {m}"),
                };
                Some(format!("cannot read {f}: {why}"))
            })
            .collect()
    }
}

/// Words the filter or sshd print when a command is not allowed for this key.
fn refusal(stdout: &[u8], stderr: &[u8]) -> Option<String> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    );
    text.lines()
        .find(|l| {
            l.contains("snapnest-filter: refused") || l.contains("allows sftp connections only")
        })
        .map(|l| l.trim().to_string())
}

/// Pick the fastest method this host allows and check the folders with it.
pub fn open(conn: Connection, spec: &SshSpec, folders: &[String]) -> Result<(Source, Access)> {
    let mut fallback = None;
    let host = conn.host.clone();
    if spec.transfer != Transfer::Sftp {
        let out = conn.run(&commands::probe(folders), b"")?;
        let words: Vec<Readable> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("snapnest-folder: "))
            .map(|w| match w {
                "ok" => Readable::Yes,
                "denied" => Readable::PermissionDenied,
                "missing" => Readable::Missing,
                "noparent" => Readable::ParentNotSearchable,
                other => Readable::Unknown(other.to_string()),
            })
            .collect();
        let gnu = super::stream::is_gnu(&String::from_utf8_lossy(&out.stdout));
        if out.status == 0 && gnu && words.len() == folders.len() {
            let access = Access {
                user: spec.user.clone(),
                method: "ssh (find+tar stream)",
                fallback: None,
                folders: folders.iter().cloned().zip(words).collect(),
            };
            return Ok((Source::Stream(StreamSource::new(conn)), access));
        }
        let why = match refusal(&out.stdout, &out.stderr) {
            Some(r) => format!("the host refused the stream commands ({r})"),
            None if !gnu => "the host has no GNU find and tar ≥ 1.29".to_string(),
            None => format!(
                "the probe ended with status {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        };
        if spec.transfer == Transfer::Stream {
            return Err(conn.fail(format!(
                "transfer = \"stream\", but {why}; if the key is restricted by `snapnest authorize`, \
                 the configured folders may have changed since: print the filter again and update it on the host"
            )));
        }
        fallback = Some(why);
    }
    let sftp = match SftpSource::new(conn) {
        Ok(s) => s,
        // The filter allows only the stream: a refused probe means it was printed for other
        // folders (or other commands) than snapnest now sends.
        Err(e) => match &fallback {
            Some(why) if why.contains("snapnest-filter") => {
                return Err(crate::error::Error::Ssh {
                    host: host.clone(),
                    message: format!(
                        "{why}. The filter on the host allows only the commands for the folders it was                          printed for: after changing folders (or upgrading snapnest), print it again with                          `snapnest authorize {host} --script` and replace it on the host ({e})"
                    ),
                })
            }
            _ => return Err(e),
        },
    };
    let folders = folders
        .iter()
        .map(|f| (f.clone(), sftp_readable(&sftp, f)))
        .collect();
    let access = Access {
        user: spec.user.clone(),
        method: "ssh (sftp)",
        fallback,
        folders,
    };
    Ok((Source::Sftp(sftp), access))
}

fn sftp_readable(s: &SftpSource, folder: &str) -> Readable {
    let code = |e: ssh2::Error| match e.code() {
        ErrorCode::SFTP(2) => Readable::Missing,
        ErrorCode::SFTP(3) => Readable::PermissionDenied,
        _ => Readable::Unknown(e.to_string()),
    };
    let st = match s.sftp().stat(Path::new(folder)) {
        Ok(st) => st,
        Err(e) => return code(e),
    };
    let opened = if st.is_dir() {
        s.sftp().opendir(Path::new(folder)).map(drop)
    } else {
        s.sftp().open(Path::new(folder)).map(drop)
    };
    match opened {
        Ok(()) => Readable::Yes,
        Err(e) => code(e),
    }
}

/// For `snapnest hostkey` and first backups: connect and check, nothing transferred.
pub fn check(
    name: &str,
    spec: &SshSpec,
    timeout: std::time::Duration,
    folders: &[String],
) -> Result<Access> {
    let conn = Connection::connect(name, spec, timeout, true)?;
    open(conn, spec, folders).map(|(_, a)| a)
}
