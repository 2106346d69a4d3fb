//! The `[web]` table: where the status page listens and who may use it. Without the table
//! there is no web page at all.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::Validator;
use crate::error::Result;
use crate::web::auth::PasswordHash;

/// Loopback by default: a router also faces the internet, and a page that lists every file of
/// every machine must be opened to the LAN on purpose (`listen = "192.168.1.1:8080"`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    pub listen: Option<Spanned<String>>,
    pub password_hash: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    pub public_read: Option<Spanned<bool>>,
    pub hostnames: Option<Spanned<Vec<String>>>,
    pub min_download_rate: Option<Spanned<String>>,
}

/// The checked `[web]` table.
#[derive(Clone, Debug)]
pub struct Web {
    pub listen: SocketAddr,
    /// Printed by `snapnest passwd`; lets a person log in.
    pub password_hash: Option<PasswordHash>,
    /// `Authorization: Bearer …` for scripts and Prometheus.
    pub token: Option<String>,
    /// Status pages, `/api/status` and `/metrics` readable without login; browsing and
    /// downloading backed-up files and actions still need it.
    pub public_read: bool,
    /// Names the box is reached by besides IP literals and `localhost` (the Host check).
    pub hostnames: Vec<String>,
    /// A client that takes a response slower than this (bytes/s, after the first seconds)
    /// is dropped, so slow readers cannot hold every worker.
    pub min_download_rate: u64,
}

/// 4 KiB/s: far below any real LAN or Wi-Fi client, far above a pinning trickle.
pub const DEFAULT_MIN_DOWNLOAD_RATE: u64 = 4 * 1024;

impl Validator<'_> {
    pub(super) fn web(&self, raw: Option<Spanned<RawWeb>>) -> Result<Option<Web>> {
        let Some(raw) = raw else { return Ok(None) };
        let span = raw.span();
        let raw = raw.into_inner();
        let listen = match &raw.listen {
            None => DEFAULT_LISTEN.parse().expect("valid default"),
            Some(l) => l.get_ref().parse().or_else(|_| {
                self.err(
                    l.span(),
                    "web.listen",
                    format!(
                        "{:?} is not an address:port (e.g. \"192.168.1.1:8080\" or \"0.0.0.0:8080\")",
                        l.get_ref()
                    ),
                )
            })?,
        };
        let password_hash = match &raw.password_hash {
            None => None,
            Some(h) => Some(PasswordHash::parse(h.get_ref()).or_else(|m| {
                self.err(
                    h.span(),
                    "web.password_hash",
                    format!("{m}; create one with `snapnest passwd`"),
                )
            })?),
        };
        let token = match &raw.token {
            None => None,
            Some(t) if t.get_ref().len() < 16 || t.get_ref().contains(char::is_whitespace) => {
                return self.err(
                    t.span(),
                    "web.token",
                    "must be at least 16 characters without spaces (e.g. `head -c 24 /dev/urandom | base64`)",
                )
            }
            Some(t) => Some(t.get_ref().clone()),
        };
        let public_read = raw.public_read.as_ref().is_some_and(|p| *p.get_ref());
        if password_hash.is_none() && token.is_none() && !public_read {
            return self.err(
                span,
                "web",
                "nobody could use the page: set password_hash (from `snapnest passwd`), token, or public_read = true",
            );
        }
        let hostnames = match &raw.hostnames {
            None => Vec::new(),
            Some(h) => {
                let bad = h.get_ref().iter().find(|n| {
                    n.is_empty()
                        || !n
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                });
                if let Some(bad) = bad {
                    return self.err(
                        h.span(),
                        "web.hostnames",
                        format!("{bad:?} is not a host name (e.g. \"backup.lan\")"),
                    );
                }
                h.get_ref().clone()
            }
        };
        let min_download_rate = match &raw.min_download_rate {
            None => DEFAULT_MIN_DOWNLOAD_RATE,
            Some(r) => super::rate::parse_rate(r.get_ref())
                .or_else(|m| self.err(r.span(), "web.min_download_rate", m))?,
        };
        Ok(Some(Web {
            listen,
            password_hash,
            token,
            public_read,
            hostnames,
            min_download_rate,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn parse(web: &str) -> crate::Result<Config> {
        Config::parse(
            &format!("[storage]\npath = \"/mnt/usb\"\n\n[web]\n{web}\n"),
            Path::new("/etc/snapnest/snapnest.toml"),
        )
    }

    #[test]
    fn defaults_to_loopback_and_needs_a_way_in() {
        let c = parse("token = \"0123456789abcdef0\"").unwrap();
        let w = c.web.unwrap();
        assert_eq!(w.listen.to_string(), "127.0.0.1:8080");
        assert!(!w.public_read);
        let e = parse("listen = \"0.0.0.0:8080\"").unwrap_err().to_string();
        assert!(
            e.contains("line 4") && e.contains("nobody could use the page"),
            "{e}"
        );
        assert!(parse("public_read = true").is_ok());
        assert!(Config::parse("[storage]\npath = \"/x\"\n", Path::new("/c"))
            .unwrap()
            .web
            .is_none());
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = parse("listen = \"router:80\"\npublic_read = true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("web.listen") && e.contains("line 5"), "{e}");
        let e = parse("password_hash = \"hunter2\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("web.password_hash") && e.contains("snapnest passwd"),
            "{e}"
        );
        let e = parse("token = \"short\"").unwrap_err().to_string();
        assert!(e.contains("web.token"), "{e}");
        let e = parse("public_read = true\nport = 80")
            .unwrap_err()
            .to_string();
        assert!(e.contains("port"), "{e}");
    }
}
