//! Who is asking: a password (PBKDF2-SHA256, salted, in the config) that opens a session
//! cookie, or a bearer token for machines. Sessions live in memory: a daemon restart logs
//! everyone out, which is fine for a household page.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use sha2::Sha256;

/// PBKDF2 needs no memory (a 128 MB router serves a login flood without swapping); the
/// iteration count is stored with the hash so it can be tuned per box.
pub const DEFAULT_ITERATIONS: u32 = 100_000;
const SCHEME: &str = "pbkdf2-sha256";
pub const COOKIE: &str = "snapnest_session";
const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// More sessions than a household needs; the oldest goes first when a login flood fills it.
const MAX_SESSIONS: usize = 256;

/// `pbkdf2-sha256$ITERATIONS$SALT$HASH` (standard base64 without padding).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: [u8; 32],
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({SCHEME}, {} iterations)", self.iterations)
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}${}${}${}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.hash)
        )
    }
}

impl PasswordHash {
    pub fn new(password: &str, iterations: u32) -> PasswordHash {
        let salt = random_bytes(16);
        let hash = derive(password, &salt, iterations);
        PasswordHash {
            iterations,
            salt,
            hash,
        }
    }

    pub fn parse(s: &str) -> Result<PasswordHash, String> {
        let bad = || format!("not a password hash (expected {SCHEME}$ITERATIONS$SALT$HASH)");
        let mut parts = s.split('$');
        if parts.next() != Some(SCHEME) {
            return Err(bad());
        }
        let iterations: u32 = parts.next().and_then(|i| i.parse().ok()).ok_or_else(bad)?;
        if !(1000..=10_000_000).contains(&iterations) {
            return Err("iterations must be 1000 to 10000000".into());
        }
        let salt = parts
            .next()
            .and_then(|p| B64.decode(p).ok())
            .filter(|s| s.len() >= 8)
            .ok_or_else(bad)?;
        let hash: [u8; 32] = parts
            .next()
            .and_then(|p| B64.decode(p).ok())
            .and_then(|h| h.try_into().ok())
            .ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    pub fn verify(&self, password: &str) -> bool {
        same(&derive(password, &self.salt, self.iterations), &self.hash)
    }
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

/// Constant-time comparison, so a token can't be guessed byte by byte from response times.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// From the OS generator (through uuid's v4, which the crate already uses).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    out.truncate(n);
    out
}

fn random_token() -> String {
    random_bytes(24)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Who sent a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    /// Logged in with the password; forms must carry this session's CSRF token.
    Session {
        id: String,
        csrf: String,
    },
    /// A bearer token: not sent by browsers on their own, so no CSRF check is needed.
    Token,
}

impl Who {
    pub fn authenticated(&self) -> bool {
        !matches!(self, Who::Anonymous)
    }

    pub fn csrf(&self) -> &str {
        match self {
            Who::Session { csrf, .. } => csrf,
            _ => "",
        }
    }
}

pub enum Login {
    /// The new session's id.
    Ok(String),
    Wrong,
    /// Another password check is running.
    Busy,
}

struct Session {
    csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// One password check at a time: a login flood costs one core, not all of them.
    verifying: Mutex<()>,
}

impl Sessions {
    /// Check the password; a new session id on success. While another check runs the
    /// answer is `Busy` at once: waiting in line would let a flood of logins hold every
    /// web worker.
    pub fn login(&self, hash: &PasswordHash, password: &str) -> Login {
        let ok = {
            let _one = match self.verifying.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Login::Busy,
            };
            hash.verify(password)
        };
        if !ok {
            return Login::Wrong;
        }
        let id = random_token();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                csrf: random_token(),
                expires: now + SESSION_LIFETIME,
            },
        );
        Login::Ok(id)
    }

    pub fn logout(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// The session for a cookie value, if it is live.
    pub fn get(&self, id: &str) -> Option<Who> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.get(id).filter(|s| s.expires > Instant::now())?;
        Some(Who::Session {
            id: id.to_string(),
            csrf: s.csrf.clone(),
        })
    }
}

/// `Set-Cookie` value: HttpOnly (no script reads it), SameSite=Strict (no other site's page
/// can make the browser send it). No `Secure`: the page is plain HTTP on a LAN.
pub fn cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trips_and_checks() {
        let h = PasswordHash::new("correct horse", 1000);
        let parsed = PasswordHash::parse(&h.to_string()).unwrap();
        assert_eq!(parsed, h);
        assert!(parsed.verify("correct horse"));
        assert!(!parsed.verify("correct horse "));
        assert!(!parsed.verify(""));
    }

    #[test]
    fn two_hashes_of_one_password_differ_by_salt() {
        assert_ne!(
            PasswordHash::new("pw", 1000).to_string(),
            PasswordHash::new("pw", 1000).to_string()
        );
    }

    #[test]
    fn malformed_hashes_are_refused() {
        for s in [
            "",
            "plain",
            "pbkdf2-sha256$100$c2FsdHNhbHQ$AAAA",
            "pbkdf2-sha256$100000$c2FsdHNhbHQ$AAAA",
            "argon2id$v=19$m=1,t=1,p=1$abc$def",
        ] {
            assert!(PasswordHash::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn sessions_need_the_password() {
        let s = Sessions::default();
        let h = PasswordHash::new("pw", 1000);
        assert!(matches!(s.login(&h, "wrong"), Login::Wrong));
        let Login::Ok(id) = s.login(&h, "pw") else {
            panic!("the right password")
        };
        let who = s.get(&id).unwrap();
        assert!(who.authenticated() && who.csrf().len() == 48);
        assert!(s.get("nope").is_none());
        s.logout(&id);
        assert!(s.get(&id).is_none());
    }
}
