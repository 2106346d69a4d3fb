//! Configuration in two steps: `raw` is the TOML as written, `Config` is what was checked.
//! Every error names the file, the line and the key.

mod automation;
pub mod rate;
mod raw;
pub mod rules;
pub mod verify;
pub mod web;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::error::{Error, Result};
pub use automation::{Automation, Daemon};
use raw::{RawConfig, RawHost};
pub use rules::Rules;
pub use web::Web;

pub const DEFAULT_PATH: &str = "/etc/snapnest/snapnest.toml";
pub const ENV_VAR: &str = "SNAPNEST_CONFIG";

#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub storage: PathBuf,
    /// Free-space floor of the storage's disk: below it, the oldest unprotected snapshots go.
    pub min_free: Option<crate::retention::MinFree>,
    /// `[storage] strategy`: how snapshots are kept on the disk.
    pub strategy: crate::strategy::Wanted,
    /// With strategy = "image": the image on the share at `[storage] path`; `storage` is
    /// then its mount point.
    pub image: Option<crate::dest::image::ImageSpec>,
    pub daemon: Daemon,
    pub hosts: Vec<Host>,
    /// The status web page; None without a `[web]` table.
    pub web: Option<Web>,
    /// `[verify]`: the daemon's nightly slice of `snapnest verify`.
    pub verify: verify::Verify,
}

#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub source: SourceSpec,
    /// Absolute source folders as written (normalised), e.g. `/home/alice`.
    pub folders: Vec<String>,
    pub rules: Rules,
    /// Bytes per second.
    pub bwlimit: Option<u64>,
    /// Longest wait for any single network step.
    pub timeout: Duration,
    /// Schedule, retention, hooks and notifications.
    pub automation: Automation,
    /// The storage's `[storage] strategy`, carried to each run.
    pub strategy: crate::strategy::Wanted,
    /// `[storage] split_at`: files larger are stored in parts, carried to each run.
    pub split_at: Option<u64>,
}

#[derive(Clone, Debug)]
pub enum SourceSpec {
    Local,
    Ssh(SshSpec),
}

#[derive(Clone, Debug)]
pub struct SshSpec {
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Private key file; None means ask ssh-agent.
    pub identity: Option<PathBuf>,
    /// Pinned `SHA256:…` fingerprint.
    pub host_key: Option<String>,
    pub transfer: Transfer,
    /// `from=` pattern for `snapnest authorize` (None: the box's own address towards the host).
    pub authorize_from: Option<String>,
}

/// How content and listings travel from an SSH host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// GNU find + tar streams when the host has them, SFTP otherwise.
    Auto,
    /// Always GNU find + tar streams.
    Stream,
    /// Always SFTP (BusyBox, macOS and other hosts without GNU tools).
    Sftp,
}

impl Host {
    /// Folders as snapshot paths: no leading slash; `/` becomes the empty path.
    pub fn folder_paths(&self) -> Vec<Vec<u8>> {
        self.folders
            .iter()
            .map(|f| f.trim_start_matches('/').as_bytes().to_vec())
            .collect()
    }
}

impl Config {
    /// `--config`, else `$SNAPNEST_CONFIG`, else the system default.
    pub fn locate(cli: Option<&Path>) -> PathBuf {
        if let Some(p) = cli {
            return p.to_path_buf();
        }
        match std::env::var_os(ENV_VAR) {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => PathBuf::from(DEFAULT_PATH),
        }
    }

    pub fn load(path: &Path) -> Result<Config> {
        // Relative paths inside resolve against the file's folder, which must be absolute:
        // the daemon and hooks may run from another working directory.
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading config {}: {e}", path.display())))?;
        let config = Config::parse(&text, path)?;
        crate::storage::use_state_dir(&config.daemon.state_dir);
        Ok(config)
    }

    pub fn parse(text: &str, file: &Path) -> Result<Config> {
        // Line, column and message only: toml's own Display quotes the source line, which
        // may hold a secret and would land in the daemon's log on a bad reload.
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| s.start.min(text.len())).unwrap_or(0);
            let line = text[..at].matches('\n').count() + 1;
            let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
            Error::Config(format!(
                "config {}, line {line}, column {col}: {}",
                file.display(),
                e.message().trim_end()
            ))
        })?;
        Validator { text, file }.config(raw)
    }

    pub fn host(&self, name: &str) -> Result<&Host> {
        self.hosts.iter().find(|h| h.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
            Error::Config(format!(
                "no host named {name:?} in {} (configured: {})",
                self.file.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }
}

struct Validator<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Validator<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        msg: impl std::fmt::Display,
    ) -> Result<T> {
        let line = self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        Err(Error::Config(format!(
            "config {}, line {line}, key `{key}`: {msg}",
            self.file.display()
        )))
    }

    fn config(&self, raw: RawConfig) -> Result<Config> {
        let Some(storage) = raw.storage else {
            return Err(Error::Config(format!(
                "config {}: missing [storage] table with `path = \"/mnt/usb/snapnest\"`",
                self.file.display()
            )));
        };
        let storage_span = storage.span();
        let storage = storage.into_inner();
        let image_size = storage.image_size.clone();
        let split_at = match &storage.split_at {
            None => None,
            Some(s) => match s.get_ref().parse::<bytesize::ByteSize>() {
                Ok(b) if b.as_u64() >= 1 << 20 => Some(b.as_u64()),
                Ok(_) => return self.err(s.span(), "storage.split_at", "must be at least 1 MiB"),
                Err(e) => return self.err(s.span(), "storage.split_at", e),
            },
        };
        let min_free = self.min_free(storage.min_free)?;
        let strategy = match &storage.strategy {
            None => crate::strategy::Wanted::Auto,
            Some(s) => match crate::strategy::Wanted::parse(s.get_ref()) {
                Ok(w) => w,
                Err(msg) => return self.err(s.span(), "storage.strategy", msg),
            },
        };
        let Some(path) = storage.path else {
            return self.err(
                storage_span,
                "storage.path",
                "missing: where snapshots are written",
            );
        };
        if path.get_ref().trim().is_empty() {
            return self.err(path.span(), "storage.path", "must not be empty");
        }
        let storage = self.resolve(path.get_ref());
        let daemon = self.daemon(raw.daemon)?;
        let image = self.image(&strategy, storage_span, &storage, image_size, &daemon)?;
        let storage = image.as_ref().map_or(storage, |i| i.mount_point.clone());

        let defaults = raw.defaults.map(Spanned::into_inner).unwrap_or_default();
        if let Some(name) = &defaults.name {
            return self.err(
                name.span(),
                "defaults.name",
                "a name belongs to a [[host]], not to [defaults]",
            );
        }
        if let Some(folders) = &defaults.folders {
            return self.err(
                folders.span(),
                "defaults.folders",
                "folders belong to a [[host]], not to [defaults]",
            );
        }

        let mut hosts = Vec::new();
        let mut names = HashSet::new();
        for (i, host) in raw.host.into_iter().enumerate() {
            let span = host.span();
            let mut host = self.host(i, span.clone(), host.into_inner(), &defaults)?;
            host.strategy = strategy.clone();
            host.split_at = split_at;
            if !names.insert(host.name.clone()) {
                return self.err(
                    span,
                    "host.name",
                    format!("host name {:?} is used twice", host.name),
                );
            }
            hosts.push(host);
        }
        Ok(Config {
            file: self.file.to_path_buf(),
            storage,
            min_free,
            strategy,
            image,
            daemon,
            hosts,
            web: self.web(raw.web)?,
            verify: self.verify(raw.verify)?,
        })
    }

    fn host(
        &self,
        index: usize,
        span: std::ops::Range<usize>,
        h: RawHost,
        d: &RawHost,
    ) -> Result<Host> {
        let Some(name) = h.name.clone() else {
            return self.err(
                span,
                &format!("host[{index}].name"),
                "every [[host]] needs a name",
            );
        };
        let n = name.get_ref();
        let valid_chars = n
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if n.is_empty() || !valid_chars || n.starts_with('.') || n.len() > 64 {
            return self.err(
                name.span(),
                "host.name",
                format!("{n:?} is not a valid host name: use 1-64 of a-z 0-9 . _ -, not starting with a dot (it becomes a folder name)"),
            );
        }
        let name = n.clone();
        let key = |k: &str| format!("host {name:?}: {k}");

        // Host values override defaults; include/exclude add to them.
        let source = h.source.as_ref().or(d.source.as_ref());
        let is_local = match source {
            None => false,
            Some(s) if s.get_ref() == "ssh" => false,
            Some(s) if s.get_ref() == "local" => true,
            Some(s) => {
                return self.err(
                    s.span(),
                    &key("source"),
                    format!("{:?}: expected \"ssh\" or \"local\"", s.get_ref()),
                )
            }
        };

        let Some(folders_raw) = h.folders.clone() else {
            return self.err(
                span,
                &key("folders"),
                "missing: which folders to back up, e.g. folders = [\"/home/alice\"]",
            );
        };
        if folders_raw.get_ref().is_empty() {
            return self.err(
                folders_raw.span(),
                &key("folders"),
                "must name at least one folder",
            );
        }
        let mut folders: Vec<String> = Vec::new();
        for f in folders_raw.get_ref() {
            let path = if is_local {
                self.resolve(f.get_ref()).to_string_lossy().into_owned()
            } else {
                f.get_ref().clone()
            };
            let norm =
                normalize_folder(&path).or_else(|m| self.err(f.span(), &key("folders"), m))?;
            for other in &folders {
                if overlaps(other, &norm) {
                    return self.err(
                        f.span(),
                        &key("folders"),
                        format!("{norm:?} overlaps {other:?}; list only the outer folder"),
                    );
                }
            }
            folders.push(norm);
        }

        let mut exclude = Vec::new();
        let mut include = Vec::new();
        let strings = |l: &Option<Spanned<Vec<Spanned<String>>>>| -> Vec<String> {
            l.iter()
                .flat_map(|l| l.get_ref().iter().map(|p| p.get_ref().clone()))
                .collect()
        };
        exclude.extend(strings(&d.exclude));
        exclude.extend(strings(&h.exclude));
        include.extend(strings(&d.include));
        include.extend(strings(&h.include));
        let rules = Rules::new(&exclude, &include).or_else(|m| {
            let at = h
                .exclude
                .as_ref()
                .or(h.include.as_ref())
                .or(d.exclude.as_ref())
                .or(d.include.as_ref());
            self.err(
                at.map(|s| s.span()).unwrap_or(span.clone()),
                &key("exclude/include"),
                m,
            )
        })?;

        let bwlimit = match h.bwlimit.as_ref().or(d.bwlimit.as_ref()) {
            None => None,
            Some(s) => Some(
                rate::parse_rate(s.get_ref())
                    .or_else(|m| self.err(s.span(), &key("bwlimit"), m))?,
            ),
        };
        let timeout = match h.timeout.as_ref().or(d.timeout.as_ref()) {
            None => Duration::from_secs(30),
            Some(s) => {
                let t = humantime::parse_duration(s.get_ref()).or_else(|e| {
                    self.err(
                        s.span(),
                        &key("timeout"),
                        format!("{:?}: {e} (examples: \"30s\", \"2m\")", s.get_ref()),
                    )
                })?;
                if t < Duration::from_secs(1) {
                    return self.err(s.span(), &key("timeout"), "must be at least 1s");
                }
                t
            }
        };

        let source = if is_local {
            for (k, v) in [
                ("address", h.address.as_ref().map(|s| s.span())),
                ("user", h.user.as_ref().map(|s| s.span())),
                ("host_key", h.host_key.as_ref().map(|s| s.span())),
                ("identity", h.identity.as_ref().map(|s| s.span())),
                (
                    "authorize_from",
                    h.authorize_from.as_ref().map(|s| s.span()),
                ),
            ] {
                if let Some(sp) = v {
                    return self.err(sp, &key(k), "has no meaning for source = \"local\"");
                }
            }
            SourceSpec::Local
        } else {
            let Some(address) = h.address.as_ref().or(d.address.as_ref()) else {
                return self.err(
                    span,
                    &key("address"),
                    "missing: the machine's name or IP address (or set source = \"local\")",
                );
            };
            if address.get_ref().trim().is_empty() || address.get_ref().starts_with('-') {
                return self.err(
                    address.span(),
                    &key("address"),
                    format!("{:?} is not a host address", address.get_ref()),
                );
            }
            let port = match h.port.as_ref().or(d.port.as_ref()) {
                None => 22,
                Some(p) => u16::try_from(*p.get_ref())
                    .ok()
                    .filter(|p| *p > 0)
                    .map_or_else(
                        || {
                            self.err(
                                p.span(),
                                &key("port"),
                                format!("{} is not a TCP port (1-65535)", p.get_ref()),
                            )
                        },
                        Ok,
                    )?,
            };
            let Some(user) = h.user.as_ref().or(d.user.as_ref()) else {
                return self.err(
                    span,
                    &key("user"),
                    "missing: the login name on the machine, e.g. user = \"backup\"",
                );
            };
            let identity = h
                .identity
                .as_ref()
                .or(d.identity.as_ref())
                .map(|s| self.resolve(s.get_ref()));
            let host_key = match &h.host_key {
                None => None,
                Some(k) => {
                    let v = k.get_ref();
                    if !v.starts_with("SHA256:") || v.len() < 20 {
                        return self.err(k.span(), &key("host_key"), format!("{v:?} is not a fingerprint; expected \"SHA256:…\" as printed by `snapnest hostkey {name}`"));
                    }
                    Some(v.clone())
                }
            };
            let transfer = match h.transfer.as_ref().or(d.transfer.as_ref()) {
                None => Transfer::Auto,
                Some(t) => match t.get_ref().as_str() {
                    "auto" => Transfer::Auto,
                    "stream" => Transfer::Stream,
                    "sftp" => Transfer::Sftp,
                    other => {
                        return self.err(
                            t.span(),
                            &key("transfer"),
                            format!("{other:?}: expected \"auto\", \"stream\" or \"sftp\""),
                        )
                    }
                },
            };
            let authorize_from = match h.authorize_from.as_ref().or(d.authorize_from.as_ref()) {
                None => None,
                Some(f) => match crate::authorize::check_from(f.get_ref()) {
                    Ok(()) => Some(f.get_ref().clone()),
                    Err(m) => return self.err(f.span(), &key("authorize_from"), m),
                },
            };
            SourceSpec::Ssh(SshSpec {
                address: address.get_ref().clone(),
                port,
                user: user.get_ref().clone(),
                identity,
                host_key,
                transfer,
                authorize_from,
            })
        };

        let automation = self.automation(&h, d, &key, is_local)?;
        Ok(Host {
            name,
            source,
            folders,
            rules,
            bwlimit,
            timeout,
            automation,
            strategy: crate::strategy::Wanted::Auto,
            split_at: None,
        })
    }

    /// `image_size` goes with strategy = "image", and only with it.
    fn image(
        &self,
        strategy: &crate::strategy::Wanted,
        span: std::ops::Range<usize>,
        share: &Path,
        size: Option<Spanned<String>>,
        daemon: &Daemon,
    ) -> Result<Option<crate::dest::image::ImageSpec>> {
        use crate::strategy::{Strategy, Wanted};
        let wants_image = *strategy == Wanted::Named(Strategy::Image);
        match (wants_image, size) {
            (false, None) => Ok(None),
            (false, Some(s)) => self.err(
                s.span(),
                "storage.image_size",
                "only used with strategy = \"image\"",
            ),
            (true, None) => self.err(
                span,
                "storage.image_size",
                "strategy = \"image\" needs the image's size, e.g. image_size = \"200G\"",
            ),
            (true, Some(s)) => match s.get_ref().parse::<bytesize::ByteSize>() {
                Ok(b) if b.0 >= crate::dest::image::MIN_SIZE => Ok(Some(
                    crate::dest::image::ImageSpec::new(share.to_path_buf(), b.0, &daemon.state_dir),
                )),
                Ok(b) => self.err(
                    s.span(),
                    "storage.image_size",
                    format!("{b} is too small for an image (at least 16 MiB)"),
                ),
                Err(e) => self.err(
                    s.span(),
                    "storage.image_size",
                    format!(
                        "{:?}: {e} (write e.g. \"200G\" or \"500 GiB\")",
                        s.get_ref()
                    ),
                ),
            },
        }
    }

    /// Relative paths in the config are relative to the config file's folder.
    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.file.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

/// `/home//alice/` → `/home/alice`; refuses relative paths and `.`/`..` parts.
fn normalize_folder(p: &str) -> std::result::Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must be an absolute path (starting with /)"));
    }
    let mut parts = Vec::new();
    for part in p.split('/').filter(|s| !s.is_empty()) {
        if part == "." || part == ".." {
            return Err(format!("{p:?} must not contain . or .. parts"));
        }
        parts.push(part);
    }
    Ok(format!("/{}", parts.join("/")))
}

fn overlaps(a: &str, b: &str) -> bool {
    let within = |outer: &str, inner: &str| {
        outer == "/" || inner == outer || inner.starts_with(&format!("{outer}/"))
    };
    within(a, b) || within(b, a)
}

#[cfg(test)]
mod tests;
