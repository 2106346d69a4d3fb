//! Which request goes where, and who may do it. Reading needs a login or a token unless
//! `public_read`; actions always need one, and forms from a session carry its CSRF token.

use askama::Template;

use super::auth::{self, Who};
use super::http::{percent_decode, Request, Response};
use super::view::Chrome;
use super::{api, browse, download, pages, App};
use crate::config::Config;
use crate::daemon::queue;
use crate::logging;

/// The path split into decoded segments. `.`/`..`, a `/` or NUL hidden in an escape, and
/// broken escapes are refused outright: no lookup ever sees them.
fn segments(path: &str) -> Result<Vec<Vec<u8>>, Response> {
    let bad = |why: &str| Response::text(400, format!("bad path: {why}\n"));
    let mut out = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let seg = percent_decode(raw.as_bytes()).ok_or_else(|| bad("broken escape"))?;
        if seg == b"." || seg == b".." {
            return Err(bad("no . or .. parts"));
        }
        if seg.contains(&b'/') || seg.contains(&0) {
            return Err(bad("escaped separator"));
        }
        out.push(seg);
    }
    Ok(out)
}

fn identify(app: &App, req: &Request) -> Result<Who, Response> {
    let web = app.web();
    if let Some(v) = req.header("authorization") {
        let given = v.strip_prefix("Bearer ").unwrap_or("").trim();
        return match &web.token {
            Some(t) if auth::same(given.as_bytes(), t.as_bytes()) => Ok(Who::Token),
            _ => Err(Response::text(401, "wrong token\n")
                .with("WWW-Authenticate", "Bearer realm=\"snapnest\"")),
        };
    }
    Ok(req
        .cookie(auth::COOKIE)
        .and_then(|id| app.sessions.get(id))
        .unwrap_or(Who::Anonymous))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    c: Chrome,
    error: Option<String>,
    next: String,
    password_set: bool,
}

/// Only paths on this site: never a redirect to somewhere else.
fn local_next(next: Option<String>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n
        }
        _ => "/".into(),
    }
}

fn login_page(app: &App, status: u16, error: Option<&str>, next: String) -> Response {
    let page = LoginPage {
        c: Chrome::new("log in", &Who::Anonymous),
        error: error.map(str::to_string),
        next,
        password_set: app.web().password_hash.is_some(),
    };
    let mut r = pages::render(&page);
    r.status = status;
    r
}

/// A form post's own origin check on top of the CSRF token: a browser always sends
/// `Origin` on a cross-site POST.
fn same_origin(req: &Request) -> bool {
    match (req.header("origin"), req.header("host")) {
        (None, _) => true,
        (Some(o), Some(h)) => o
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(h)),
        (Some(_), None) => false,
    }
}

fn notice(code: Option<String>) -> Option<String> {
    match code.as_deref() {
        Some("queued") => Some("Backup requested: it starts as soon as a slot is free.".into()),
        Some("cancel") => Some("Cancel requested: the run stops at its next checkpoint; its staging folder stays for the next run.".into()),
        Some("idle") => Some("Nothing was running.".into()),
        _ => None,
    }
}

pub fn route(app: &App, req: &Request) -> Response {
    let segs = match segments(&req.path) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let s: Vec<&[u8]> = segs.iter().map(|s| s.as_slice()).collect();
    let config = app.config();
    let web = app.web();
    if !super::guard::host_allowed(req.header("host"), &web.hostnames) {
        // DNS rebinding: another site's name pointed at this box. Refused before anything.
        return Response::text(
            403,
            "unknown Host: open the page by the box's address, or add the name to [web] hostnames\n",
        );
    }
    let get = req.method == "GET" || req.method == "HEAD";
    let post = req.method == "POST";
    if !get && !post {
        return Response::text(405, "method not allowed\n").with("Allow", "GET, HEAD, POST");
    }
    if s == [b"healthz".as_slice()] && get {
        return api::healthz(&config);
    }
    let who = match identify(app, req) {
        Ok(w) => w,
        Err(r) => return r,
    };
    match (post, s.as_slice()) {
        (false, [b"login"]) => return login_page(app, 200, None, local_next(req.param("next"))),
        (true, [b"login"]) => {
            let next = local_next(req.form("next"));
            let Some(hash) = web.password_hash.as_ref() else {
                return login_page(app, 403, Some("no password is configured"), next);
            };
            let pw = req.form("password").unwrap_or_default();
            let ip = req.peer.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
            if let Some(wait) = app.pacing.wait(ip) {
                let secs = wait.as_secs() + 1;
                return login_page(
                    app,
                    429,
                    Some(&format!("too many wrong passwords: try again in {secs} s")),
                    next,
                )
                .with("Retry-After", secs.to_string());
            }
            return match app.sessions.login(hash, &pw) {
                auth::Login::Ok(id) => {
                    app.pacing.succeeded(ip);
                    Response::redirect(&next).with("Set-Cookie", auth::cookie(&id))
                }
                auth::Login::Wrong => {
                    app.pacing.failed(ip);
                    logging::warn(format!("web: failed login from {ip}"));
                    login_page(app, 401, Some("wrong password"), next)
                }
                auth::Login::Busy => login_page(
                    app,
                    503,
                    Some("busy checking another login: try again"),
                    next,
                )
                .with("Retry-After", "2"),
            };
        }
        _ => {}
    }
    if post {
        if !who.authenticated() {
            return Response::text(401, "log in first\n");
        }
        if let Who::Session { .. } = &who {
            let token = req.form("csrf").unwrap_or_default();
            if !same_origin(req) || !auth::same(token.as_bytes(), who.csrf().as_bytes()) {
                return Response::text(
                    403,
                    "stale or missing form token: reload the page and try again\n",
                );
            }
        }
        return action(&config, &who, app, &s);
    }
    // `public_read` opens the status pages, never the backed-up files themselves.
    let files = matches!(
        s.first(),
        Some(&b"browse") | Some(&b"file") | Some(&b"archive")
    );
    let readable = who.authenticated() || (web.public_read && !files);
    if !readable {
        return match s.first() {
            Some(&b"api") | Some(&b"metrics") => Response::text(401, "log in or send a token\n")
                .with("WWW-Authenticate", "Bearer realm=\"snapnest\""),
            _ => Response::redirect(&format!(
                "/login?next={}",
                super::http::percent_encode(req.path.as_bytes(), false)
            )),
        };
    }
    match s.as_slice() {
        [] => pages::dashboard(&config, &who, None),
        [b"host", h] => match find_host(&config, h) {
            Some(host) => pages::host(&config, host, &who, notice(req.param("done"))),
            None => Response::text(404, "host not found\n"),
        },
        [b"browse", rest @ ..] => match browse::resolve(&config, &segs[1..][..rest.len()]) {
            Ok(t) => browse::page(t, &who),
            Err(r) => r,
        },
        [b"file", rest @ ..] => match browse::resolve(&config, &segs[1..][..rest.len()]) {
            Ok(t) => download::file(t, req),
            Err(r) => r,
        },
        [b"archive", rest @ ..] => {
            let format = match req.param("format").as_deref() {
                None | Some("tar") => download::Format::Tar,
                Some("zip") => download::Format::Zip,
                Some(_) => return Response::text(400, "format is tar or zip\n"),
            };
            match browse::resolve(&config, &segs[1..][..rest.len()]) {
                Ok(t) => download::archive(t, format),
                Err(r) => r,
            }
        }
        [b"api", b"status"] => api::status(&config),
        [b"metrics"] => api::metrics(&config),
        _ => Response::text(404, "not found\n"),
    }
}

fn find_host<'a>(config: &'a Config, name: &[u8]) -> Option<&'a crate::config::Host> {
    let name = std::str::from_utf8(name).ok()?;
    config.hosts.iter().find(|h| h.name == name)
}

/// POSTs, already authenticated and checked.
fn action(config: &Config, who: &Who, app: &App, s: &[&[u8]]) -> Response {
    let state_dir = &config.daemon.state_dir;
    match s {
        [b"logout"] => {
            if let Who::Session { id, .. } = who {
                app.sessions.logout(id);
            }
            Response::redirect("/").with("Set-Cookie", auth::clear_cookie())
        }
        [b"host", h, act @ (b"backup" | b"cancel")] => {
            let Some(host) = find_host(config, h) else {
                return Response::text(404, "host not found\n");
            };
            let done = if *act == b"backup" {
                match queue::submit(state_dir, &host.name) {
                    Ok(_) => {
                        logging::info(format!(
                            "host={} backup requested on the web page",
                            host.name
                        ));
                        "queued"
                    }
                    Err(e) => return Response::text(500, format!("{e}\n")),
                }
            } else {
                match queue::cancel(state_dir, &host.name) {
                    Ok(()) => {
                        logging::info(format!(
                            "host={} cancel requested on the web page",
                            host.name
                        ));
                        "cancel"
                    }
                    Err(e) => return Response::text(500, format!("{e}\n")),
                }
            };
            Response::redirect(&format!("{}?done={done}", pages::host_url(&host.name)))
        }
        _ => Response::text(404, "not found\n"),
    }
}
