//! Least privilege on the backed-up machines: the `authorized_keys` line (and, per mode, the
//! filter script and sudoers line) that lets the box's key read the configured folders and
//! nothing else, and its installation over the current, still unrestricted, connection.
//!
//! Modes: `filter` (the fast tar stream through a forced-command filter that allows only
//! snapnest's exact commands), `sftp` (`internal-sftp -R`: read-only, any file the login user
//! can read) and `sudo` (the filter, run as root through `sudo -n` by a dedicated user).

pub mod filter;

use std::net::{ToSocketAddrs, UdpSocket};

use crate::config::{Host, SshSpec};
use crate::error::{Error, Result};
use crate::source::commands::quote;
use crate::source::ssh::Connection;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Filter,
    Sftp,
    Sudo,
}

/// Where the filter lives on the host: relative to the login user's home (sshd starts the
/// forced command there). In sudo mode it must be root-owned, so it lives outside the home.
pub const FILTER_PATH: &str = ".ssh/snapnest-filter";
pub const SUDO_FILTER_PATH: &str = "/usr/local/sbin/snapnest-filter";

/// Everything one host needs, as text to print or install.
#[derive(Debug)]
pub struct Plan {
    pub mode: Mode,
    /// The `authorized_keys` line.
    pub line: String,
    /// The key's base64 blob: what identifies its older lines on the host.
    pub key_blob: String,
    /// The filter script and where it goes (filter and sudo modes).
    pub script: Option<(String, String)>,
    /// The sudoers drop-in (sudo mode).
    pub sudoers: Option<String>,
}

/// A `from=` pattern list: addresses, host names, CIDR, `*`/`?` wildcards, `!` negation.
pub fn check_from(s: &str) -> std::result::Result<(), String> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:*?!,-/_%[]".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a from= pattern (addresses, names, CIDR, * and ? wildcards, comma-separated)"
        ))
    }
}

/// The box's own address towards `spec`'s host, as the host will see it (no NAT between
/// them on a home LAN). A UDP "connection" only picks the route: no packet is sent.
pub fn box_address(spec: &SshSpec) -> Result<String> {
    let fail = |m: String| {
        Error::Other(format!(
            "finding this box's address towards {}: {m}; pass --from or set authorize_from",
            spec.address
        ))
    };
    let addr = (spec.address.as_str(), spec.port)
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("no address".into()))?;
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind).map_err(|e| fail(e.to_string()))?;
    sock.connect(addr).map_err(|e| fail(e.to_string()))?;
    Ok(sock
        .local_addr()
        .map_err(|e| fail(e.to_string()))?
        .ip()
        .to_string())
}

/// The public half of the configured identity (`<identity>.pub`): type and blob.
pub fn public_key(host: &str, spec: &SshSpec) -> Result<(String, String)> {
    let Some(identity) = &spec.identity else {
        return Err(Error::Other(format!(
            "host {host}: no `identity` key file is configured; authorize needs the key the box uses"
        )));
    };
    let mut path = identity.clone().into_os_string();
    path.push(".pub");
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::io(&path, "reading public key", e))?;
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(t), Some(b))
            if t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-") =>
        {
            Ok((t.to_string(), b.to_string()))
        }
        _ => Err(Error::Other(format!(
            "{}: not an OpenSSH public key",
            std::path::Path::new(&path).display()
        ))),
    }
}

/// A path that goes into `command="…"` (through the login shell) and, in sudo mode, sudoers.
fn check_script_path(path: &str, mode: Mode) -> Result<()> {
    let bad = path.is_empty()
        || path
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
        || (mode == Mode::Sudo
            && (!path.starts_with('/')
                || !path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))));
    if bad {
        return Err(Error::Other(format!(
            "script path {path:?}: {}",
            if mode == Mode::Sudo {
                "sudo mode needs an absolute path of letters, digits and / . _ -"
            } else {
                "must not hold quotes, backslashes or control characters"
            }
        )));
    }
    Ok(())
}

pub fn plan(
    host: &Host,
    spec: &SshSpec,
    mode: Mode,
    from: &str,
    script_path: Option<&str>,
) -> Result<Plan> {
    check_from(from).map_err(Error::Other)?;
    let (key_type, key_blob) = public_key(&host.name, spec)?;
    let path = script_path
        .unwrap_or(if mode == Mode::Sudo {
            SUDO_FILTER_PATH
        } else {
            FILTER_PATH
        })
        .to_string();
    let command = match mode {
        Mode::Sftp => "internal-sftp -R".to_string(),
        Mode::Filter | Mode::Sudo => {
            check_script_path(&path, mode)?;
            format!("/bin/sh {}", quote(&path))
        }
    };
    let script = match mode {
        Mode::Sftp => None,
        Mode::Filter => Some((
            filter::script(&host.name, &host.folders, None),
            path.clone(),
        )),
        Mode::Sudo => Some((
            filter::script(&host.name, &host.folders, Some(&path)),
            path.clone(),
        )),
    };
    let sudoers = (mode == Mode::Sudo).then(|| {
        format!(
            "Defaults!{path} !requiretty\n{user} ALL=(root) NOPASSWD: {path}\n",
            user = spec.user
        )
    });
    let comment: String = host
        .name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    Ok(Plan {
        mode,
        line: format!("restrict,from=\"{from}\",command=\"{command}\" {key_type} {key_blob} snapnest@{comment}"),
        key_blob,
        script,
        sudoers,
    })
}

/// What `install` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    Done,
    /// The key is already restricted on the host (its filter or sftp-only command refused
    /// the installation): nothing changed.
    AlreadyRestricted(String),
}

/// Write the filter (filter mode) and replace this key's lines in `authorized_keys` (a path
/// relative to the login user's home, or absolute) with the plan's line. Idempotent: the
/// script is rewritten whole, and older lines for the same key are replaced, never added to.
pub fn install(conn: &Connection, plan: &Plan, authorized_keys: &str) -> Result<Installed> {
    if plan.mode == Mode::Sudo {
        return Err(conn.fail(
            "--install cannot set up sudo mode: the filter must be root-owned and sudoers edited as root; \
             follow the printed steps on the host instead",
        ));
    }
    let mut cmd = String::from("umask 077 && mkdir -p .ssh && ");
    let mut stdin = Vec::new();
    if let Some((script, path)) = &plan.script {
        let (p, new) = (quote(path), quote(&format!("{path}.snapnest-new")));
        cmd += &format!(
            "mkdir -p \"$(dirname {p})\" && cat > {new} && chmod 700 {new} && mv -f {new} {p} && "
        );
        stdin = script.clone().into_bytes();
    }
    let (ak, new) = (
        quote(authorized_keys),
        quote(&format!("{authorized_keys}.snapnest-new")),
    );
    cmd += &format!(
        "touch {ak} && {{ grep -vF {blob} {ak}; printf '%s\\n' {line}; }} > {new} && mv -f {new} {ak} && echo snapnest-installed",
        blob = quote(&plan.key_blob),
        line = quote(&plan.line),
    );
    let out = conn.run(&cmd, &stdin)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status == 0 && stdout.contains("snapnest-installed") {
        return Ok(Installed::Done);
    }
    if let Some(l) = format!("{stdout}{stderr}").lines().find(|l| {
        l.contains("snapnest-filter: refused") || l.contains("allows sftp connections only")
    }) {
        return Ok(Installed::AlreadyRestricted(l.trim().to_string()));
    }
    Err(conn.fail(format!(
        "installing the key line failed (status {}): {}",
        out.status,
        stderr.trim()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_patterns_are_checked() {
        for ok in [
            "192.168.1.1",
            "10.0.0.0/8,!10.0.0.5",
            "fe80::1%eth0",
            "*.lan",
            "router",
        ] {
            assert!(check_from(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1.2.3.4\" evil", "a b", "x,command=\"id\"", "a\nb"] {
            assert!(check_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_refuses_a_bad_authorize_from_naming_the_key() {
        let text =
            "[storage]\npath = \"/srv\"\n[[host]]\nname = \"l\"\naddress = \"h\"\nuser = \"u\"\n\
                    folders = [\"/h\"]\nauthorize_from = \"1.2.3.4\\\" x\"\n";
        let e = crate::config::Config::parse(text, std::path::Path::new("/c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("authorize_from") && e.contains("line 8"), "{e}");
        let ok = text.replace("1.2.3.4\\\" x", "192.168.1.0/24");
        let c = crate::config::Config::parse(&ok, std::path::Path::new("/c.toml")).unwrap();
        let crate::config::SourceSpec::Ssh(spec) = &c.hosts[0].source else {
            panic!("ssh host expected")
        };
        assert_eq!(spec.authorize_from.as_deref(), Some("192.168.1.0/24"));
    }
}
