//! The config file as written: every key optional, spans kept so that validation errors
//! can name the line. Nothing here is checked beyond TOML types and unknown keys.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub storage: Option<Spanned<RawStorage>>,
    #[serde(default)]
    pub defaults: Option<Spanned<RawHost>>,
    #[serde(default)]
    pub host: Vec<Spanned<RawHost>>,
    pub daemon: Option<Spanned<RawDaemon>>,
    pub web: Option<Spanned<super::web::RawWeb>>,
    pub verify: Option<Spanned<super::verify::RawVerify>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub state_dir: Option<Spanned<String>>,
    pub max_concurrent: Option<Spanned<i64>>,
    pub presence_interval: Option<Spanned<String>>,
    pub watch: Option<Spanned<Vec<Spanned<String>>>>,
    pub log: Option<Spanned<String>>,
    pub shutdown_grace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub path: Option<Spanned<String>>,
    pub min_free: Option<Spanned<String>>,
    /// "auto" (the probe decides), or "hardlink", "btrfs", "reflink", "history".
    pub strategy: Option<Spanned<String>>,
    /// With strategy = "image": the image's size, e.g. "200G".
    pub image_size: Option<Spanned<String>>,
    /// Files larger than this are stored in parts (the disk's own limit applies anyway).
    pub split_at: Option<Spanned<String>>,
}

/// Keys of a `[[host]]` table; `[defaults]` takes the same keys except `name`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub name: Option<Spanned<String>>,
    pub source: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub user: Option<Spanned<String>>,
    pub identity: Option<Spanned<String>>,
    pub host_key: Option<Spanned<String>>,
    pub folders: Option<Spanned<Vec<Spanned<String>>>>,
    pub exclude: Option<Spanned<Vec<Spanned<String>>>>,
    pub include: Option<Spanned<Vec<Spanned<String>>>>,
    pub bwlimit: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// How to read an SSH host: "auto" (GNU find+tar when present, else SFTP), "stream", "sftp".
    pub transfer: Option<Spanned<String>>,
    /// `from=` of the key line `snapnest authorize` prints: the box's address as the host sees it.
    pub authorize_from: Option<Spanned<String>>,
    pub schedule: Option<Spanned<String>>,
    pub every: Option<Spanned<String>>,
    pub blackout: Option<Spanned<Vec<Spanned<String>>>>,
    pub keep: Option<Spanned<toml::Value>>,
    pub before: Option<Spanned<toml::Value>>,
    pub after: Option<Spanned<toml::Value>>,
    pub on_error: Option<Spanned<toml::Value>>,
    pub notify: Option<Spanned<String>>,
    pub notify_user: Option<Spanned<String>>,
    pub stale_after: Option<Spanned<String>>,
}
