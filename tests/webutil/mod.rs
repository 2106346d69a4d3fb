//! Fixtures for the web page tests: a daemon with a `[web]` table on a free loopback port,
//! and a tiny HTTP client that shows exactly what the server sent (raw requests included,
//! for the hostile ones).
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

pub mod cdp;

use crate::common::{free_port, DaemonProc, Setup};

pub const PASSWORD: &str = "correct horse battery";
pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct Web {
    pub setup: Setup,
    pub daemon: DaemonProc,
    pub port: u16,
}

/// A daemon serving the web page for `hosts`, with a password and a token; `extra` goes
/// into the `[web]` table.
pub fn start(hosts: &str, extra: &str) -> Web {
    let setup = Setup::new(hosts, "");
    setup.init();
    start_with(setup, extra)
}

pub fn start_with(setup: Setup, extra: &str) -> Web {
    setup.with_daemon_table("");
    let port = free_port();
    let hash = snapnest::web::auth::PasswordHash::new(PASSWORD, 1000);
    let mut text = fs::read_to_string(&setup.config).unwrap();
    text.push_str(&format!(
        "\n[web]\nlisten = \"127.0.0.1:{port}\"\npassword_hash = \"{hash}\"\ntoken = \"{TOKEN}\"\n{extra}\n"
    ));
    fs::write(&setup.config, text).unwrap();
    let daemon = setup.start_daemon();
    crate::common::wait_until("the web page to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Web {
        setup,
        daemon,
        port,
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body arrived whole (for a chunked one: its last chunk came).
    pub complete: bool,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send raw bytes, read the answer to the end.
pub fn raw(port: u16, request: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut data = Vec::new();
    let _ = s.read_to_end(&mut data);
    parse(&data)
}

pub fn parse(data: &[u8]) -> Resp {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(data)));
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = &data[end + 4..];
    let chunked = headers.iter().any(|(k, v): &(String, String)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let (body, complete) = if chunked {
        dechunk(body)
    } else {
        (body.to_vec(), true)
    };
    Resp {
        status,
        headers,
        body,
        complete,
    }
}

/// A chunked body's bytes, and whether its last (empty) chunk arrived.
fn dechunk(mut data: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let Ok(n) = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16) else {
            return (body, false);
        };
        data = &data[eol + 2..];
        if n == 0 {
            return (body, data.starts_with(b"\r\n"));
        }
        if data.len() < n + 2 {
            body.extend_from_slice(&data[..n.min(data.len())]);
            return (body, false);
        }
        body.extend_from_slice(&data[..n]);
        data = &data[n + 2..];
    }
}

impl Web {
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", self.port);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        raw(self.port, req.as_bytes())
    }

    /// GET with the bearer token.
    pub fn get_t(&self, path: &str) -> Resp {
        self.get(path, &[("Authorization", &format!("Bearer {TOKEN}"))])
    }

    pub fn post(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        raw(self.port, req.as_bytes())
    }

    /// Log in with the password; the `Cookie` header value.
    pub fn login(&self) -> String {
        let r = self.post(
            "/login",
            &format!("password={}", PASSWORD.replace(' ', "+")),
            &[],
        );
        assert_eq!(r.status, 303, "{}", r.text());
        let c = r
            .header("set-cookie")
            .expect("a session cookie")
            .to_string();
        c.split(';').next().unwrap().to_string()
    }

    /// The CSRF token in a page's forms.
    pub fn csrf(&self, cookie: &str) -> String {
        let page = self.get("/", &[("Cookie", cookie)]).text();
        let at = page
            .find("name=\"csrf\" value=\"")
            .expect("a form with a csrf token")
            + 19;
        page[at..at + page[at..].find('"').unwrap()].to_string()
    }

    /// The newest snapshot name of `host`.
    pub fn latest(&self, host: &str) -> String {
        self.setup
            .latest(host)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

/// `/file/…` style path of a source file inside a snapshot, escaped.
pub fn snap_url(kind: &str, host: &str, snap: &str, src: &Path) -> String {
    let rel = src.to_str().unwrap().trim_start_matches('/');
    let enc: String = rel
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/{kind}/{host}/{snap}/{enc}")
}
