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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub path: Option<Spanned<String>>,
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
}
