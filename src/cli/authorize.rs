//! `snapnest authorize`: print (or install) what restricts the box's key on a host to reading
//! its folders; and the access report `snapnest hostkey` prints. The line (or script) goes to
//! stdout, so it can be redirected; explanations go to stderr.

use anyhow::bail;

use crate::authorize::{self, Installed, Mode};
use crate::config::{Config, Host, SourceSpec, SshSpec};
use crate::source::access;
use crate::source::ssh::Connection;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    /// filter if the host has GNU find and tar, else sftp (asks the host).
    Auto,
    /// Fast tar stream through a forced-command filter: only snapnest's commands, only the folders.
    Filter,
    /// Read-only SFTP (`internal-sftp -R`): works everywhere, slower, limited by file permissions only.
    Sftp,
    /// The filter for a dedicated non-root user, reading as root through `sudo -n` (prints a sudoers line).
    Sudo,
}

#[derive(clap::Args, Debug)]
pub struct AuthorizeArgs {
    /// Host name from the config.
    pub host: String,
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: ModeArg,
    /// The from= address (default: `authorize_from` in the config, else this box's address towards the host).
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,
    /// Print the filter script instead of the key line.
    #[arg(long)]
    pub script: bool,
    /// Print the sudoers drop-in (sudo mode) instead of the key line.
    #[arg(long, conflicts_with = "script")]
    pub sudoers: bool,
    /// Install over the current (unrestricted) connection: writes the filter and replaces this
    /// key's line in authorized_keys. After this the key can only read.
    #[arg(long)]
    pub install: bool,
    /// Where the filter goes on the host (default .ssh/snapnest-filter; sudo mode /usr/local/sbin/snapnest-filter).
    #[arg(long, value_name = "PATH")]
    pub script_path: Option<String>,
    /// The authorized_keys file --install edits, relative to the user's home or absolute.
    #[arg(long, value_name = "FILE", default_value = ".ssh/authorized_keys")]
    pub authorized_keys: String,
}

fn ssh_host<'a>(config: &'a Config, name: &str) -> anyhow::Result<(&'a Host, &'a SshSpec)> {
    let host = config.host(name)?;
    let SourceSpec::Ssh(spec) = &host.source else {
        bail!(
            "host {} is a local source; there is no key to restrict",
            host.name
        );
    };
    Ok((host, spec))
}

pub fn run(config: &Config, a: &AuthorizeArgs) -> anyhow::Result<i32> {
    let (host, spec) = ssh_host(config, &a.host)?;
    let mode = match a.mode {
        ModeArg::Filter => Mode::Filter,
        ModeArg::Sftp => Mode::Sftp,
        ModeArg::Sudo => Mode::Sudo,
        ModeArg::Auto => {
            let found = access::check(&host.name, spec, host.timeout, &host.folders).map_err(|e| {
                anyhow::anyhow!("{e}\n(auto mode asks the host which tools it has; pass --mode filter or --mode sftp to skip that)")
            })?;
            if found.fallback.is_none() {
                Mode::Filter
            } else {
                eprintln!(
                    "{}: using sftp mode: {}",
                    host.name,
                    found.fallback.unwrap_or_default()
                );
                Mode::Sftp
            }
        }
    };
    let from = match a.from.clone().or_else(|| spec.authorize_from.clone()) {
        Some(f) => f,
        None => authorize::box_address(spec)?,
    };
    let plan = authorize::plan(host, spec, mode, &from, a.script_path.as_deref())?;
    if a.script {
        let Some((script, _)) = &plan.script else {
            bail!("sftp mode has no filter script");
        };
        print!("{script}");
        return Ok(0);
    }
    if a.sudoers {
        let Some(sudoers) = &plan.sudoers else {
            bail!("only sudo mode has a sudoers drop-in");
        };
        print!("{sudoers}");
        return Ok(0);
    }
    if a.install {
        let conn = Connection::connect(&host.name, spec, host.timeout, true)?;
        return Ok(
            match authorize::install(&conn, &plan, &a.authorized_keys)? {
                Installed::Done => {
                    println!("{}", plan.line);
                    eprintln!(
                    "{}: installed for user {} in {}{}. From now on this key can only read; \
                     changing folders later means printing the filter again (--script) and replacing it as the user",
                    host.name,
                    spec.user,
                    a.authorized_keys,
                    plan.script
                        .as_ref()
                        .map(|(_, p)| format!(", filter at {p}"))
                        .unwrap_or_default()
                );
                    0
                }
                Installed::AlreadyRestricted(why) => {
                    eprintln!(
                        "{}: this key is already restricted on the host, nothing changed ({})",
                        host.name,
                        why.chars().take(120).collect::<String>()
                    );
                    1
                }
            },
        );
    }
    println!("{}", plan.line);
    guide(host, spec, &plan, &a.authorized_keys);
    Ok(0)
}

fn guide(host: &Host, spec: &SshSpec, plan: &authorize::Plan, ak: &str) {
    let n = &host.name;
    let ak = if ak.starts_with('/') {
        ak.to_string()
    } else {
        format!("~/{ak}")
    };
    eprintln!(
        "# On {n}, as user {}: replace this key's line in {ak} with the line above.",
        spec.user
    );
    match plan.mode {
        Mode::Filter => {
            let p = &plan
                .script
                .as_ref()
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            eprintln!(
                "# Save the filter there as {p}: `snapnest authorize {n} --mode filter --script`,"
            );
            eprintln!(
                "# or let snapnest do both now: `snapnest authorize {n} --mode filter --install`."
            );
        }
        Mode::Sftp => {
            eprintln!("# The key can then read (never write) any file user {} can read: give it its own user", spec.user);
            eprintln!("# with read access to the folders only (group or ACL) for a tighter fence.");
        }
        Mode::Sudo => {
            if spec.user == "root" {
                eprintln!("# Note: sudo mode is for a dedicated non-root login; set `user` in the config to it.");
            }
            let p = &plan
                .script
                .as_ref()
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            eprintln!("# As root: save the filter as {p} (owner root, mode 755):");
            eprintln!("#   snapnest authorize {n} --mode sudo --script > {p}  (copy it over), chown root:root {p}; chmod 755 {p}");
            eprintln!(
                "# and allow user {} to run only it as root (visudo -f /etc/sudoers.d/snapnest):",
                spec.user
            );
            for l in plan.sudoers.as_deref().unwrap_or("").lines() {
                eprintln!("#   {l}");
            }
        }
    }
}

/// After `snapnest hostkey` confirmed the pinned key: how snapnest would read the host, and
/// which folders it could not read, and why.
pub fn print_access(host: &Host, spec: &SshSpec) -> anyhow::Result<()> {
    let found = access::check(&host.name, spec, host.timeout, &host.folders)?;
    println!("Reads as user {} via {}", found.user, found.method);
    if let Some(why) = &found.fallback {
        println!("(not the tar stream: {why})");
    }
    let advice = found.advice(&host.name);
    if advice.is_empty() {
        println!(
            "All {} configured folders are readable.",
            host.folders.len()
        );
    }
    for a in advice {
        println!("{a}");
    }
    Ok(())
}
