//! The status web page, over real HTTP against the daemon on 127.0.0.1: who may see and do
//! what, escaping of hostile names, traversal attempts, Range, archives, hostile clients.

mod common;
mod webutil;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use common::{local_host, wait_until, write_file};
use webutil::{raw, snap_url, Web, PASSWORD, TOKEN};

/// A source tree with a hostile name, a big file, a symlink out of the tree, and a backup of it.
fn backed_up() -> (tempfile::TempDir, Web) {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write_file(
        &s.join("docs/<script>alert(1)<x>.txt"),
        b"hostile name\n",
        1_700_000_000_000_000_000,
    );
    write_file(
        &s.join("docs/\"><img src=x onerror=alert(2)>"),
        b"quote\n",
        1_700_000_000_000_000_000,
    );
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write_file(&s.join("docs/big.bin"), &big, 1_700_000_000_000_000_000);
    write_file(
        &s.join("docs/sub/a.txt"),
        b"aaa\n",
        1_700_000_000_000_000_000,
    );
    symlink("/etc/passwd", s.join("docs/passwd-link")).unwrap();
    let web = webutil::start(&local_host("lap", s), "");
    web.setup.backup("lap", 0);
    (src, web)
}

#[test]
fn pages_need_a_login_or_token_and_machines_get_json_and_metrics() {
    let (_src, web) = backed_up();
    let r = web.get("/", &[]);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login?next=%2F"));
    assert_eq!(web.get("/api/status", &[]).status, 401);
    assert_eq!(web.get("/metrics", &[]).status, 401);
    let snap = web.latest("lap");
    assert_eq!(web.get(&format!("/browse/lap/{snap}"), &[]).status, 303);
    let wrong = web.get(
        "/api/status",
        &[("Authorization", "Bearer nope-nope-nope-nope")],
    );
    assert_eq!(wrong.status, 401);

    let health = web.get("/healthz", &[]);
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

    let api = web.get_t("/api/status");
    assert_eq!(api.status, 200);
    assert_eq!(api.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&api.body).unwrap();
    assert_eq!(v["hosts"][0]["name"], "lap");
    assert_eq!(v["hosts"][0]["summary"], "ok");
    assert_eq!(v["hosts"][0]["last_run"]["state"], "good");
    assert_eq!(v["hosts"][0]["last_run"]["snapshot"], snap.as_str());
    assert_eq!(v["daemon"]["disk"]["state"], "ready");

    let m = web.get_t("/metrics").text();
    for needle in [
        "snapnest_last_success_timestamp_seconds{host=\"lap\"} ",
        "snapnest_last_success_duration_seconds{host=\"lap\"} ",
        "snapnest_last_success_bytes{host=\"lap\"} 300023",
        "snapnest_last_run_errors{host=\"lap\"} 0",
        "snapnest_disk_free_bytes ",
        "snapnest_disk_present 1",
    ] {
        assert!(m.contains(needle), "{needle} in\n{m}");
    }
    let dash = web.get_t("/").text();
    assert!(dash.contains("<span class=\"st ok\">ok</span>"), "{dash}");
    assert!(dash.contains("free of"), "{dash}");
    assert!(dash.contains("strategy: hardlink ("), "{dash}");
    let host = web.get_t("/host/lap").text();
    assert!(host.contains("<svg"), "history chart: {host}");
    assert!(host.contains(&snap), "{host}");
}

#[test]
fn public_read_opens_pages_but_not_actions() {
    let src = tempfile::tempdir().unwrap();
    write_file(&src.path().join("f"), b"x", 1_700_000_000_000_000_000);
    let web = webutil::start(&local_host("lap", src.path()), "public_read = true");
    assert_eq!(web.get("/", &[]).status, 200);
    assert_eq!(web.get("/api/status", &[]).status, 200);
    assert!(!web.get("/host/lap", &[]).text().contains("back up now"));
    assert_eq!(web.post("/host/lap/backup", "", &[]).status, 401);
    // The backed-up files themselves are never public: browse, file and archive need a login.
    web.setup.backup("lap", 0);
    let snap = web.latest("lap");
    for kind in ["browse", "file", "archive"] {
        let r = web.get(&snap_url(kind, "lap", &snap, &src.path().join("f")), &[]);
        assert_eq!(r.status, 303, "{kind} without login: {}", r.text());
        let r = web.get_t(&snap_url(kind, "lap", &snap, &src.path().join("f")));
        assert_ne!(r.status, 303, "{kind} with the token");
    }
}

#[test]
fn login_cookie_is_httponly_samesite_and_actions_need_the_csrf_token() {
    let (_src, web) = backed_up();
    let bad = web.post("/login", "password=wrong", &[]);
    assert_eq!(bad.status, 401);
    assert!(bad.header("set-cookie").is_none());
    assert!(bad.text().contains("wrong password"));

    let r = web.post(
        "/login",
        &format!("password={}&next=%2Fhost%2Flap", PASSWORD.replace(' ', "+")),
        &[],
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/host/lap"));
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    // `next` never leaves the site.
    let r = web.post(
        "/login",
        &format!(
            "password={}&next=%2F%2Fevil.example",
            PASSWORD.replace(' ', "+")
        ),
        &[],
    );
    assert_eq!(r.header("location"), Some("/"));
    // A tab the header writer would strip must not turn `/\t/evil` into `//evil`.
    let r = web.post(
        "/login",
        &format!(
            "password={}&next=%2F%09%2Fevil.example",
            PASSWORD.replace(' ', "+")
        ),
        &[],
    );
    assert_eq!(r.header("location"), Some("/"));

    let cookie = web.login();
    let page = web.get("/host/lap", &[("Cookie", &cookie)]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("back up now"));
    let csrf = web.csrf(&cookie);
    assert_eq!(csrf.len(), 48);

    let runs = || {
        web.get_t("/api/status").text().matches("\"id\"").count();
        let v: serde_json::Value = serde_json::from_slice(&web.get_t("/api/status").body).unwrap();
        v["hosts"][0]["last_run"]["id"].as_i64().unwrap()
    };
    let before = runs();
    // No token, a wrong one, a foreign origin, no session: refused, nothing queued.
    assert_eq!(
        web.post("/host/lap/backup", "", &[("Cookie", &cookie)])
            .status,
        403
    );
    assert_eq!(
        web.post("/host/lap/backup", "csrf=0000", &[("Cookie", &cookie)])
            .status,
        403
    );
    let foreign = [
        ("Cookie", cookie.as_str()),
        ("Origin", "http://evil.example"),
    ];
    assert_eq!(
        web.post("/host/lap/backup", &format!("csrf={csrf}"), &foreign)
            .status,
        403
    );
    assert_eq!(
        web.post("/host/lap/backup", &format!("csrf={csrf}"), &[])
            .status,
        401
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(), before, "a refused action must not queue a backup");
    assert!(
        !web.setup.dir.path().join("state/queue").exists()
            || fs::read_dir(web.setup.dir.path().join("state/queue"))
                .unwrap()
                .count()
                == 0
    );

    let ok = web.post(
        "/host/lap/backup",
        &format!("csrf={csrf}"),
        &[("Cookie", &cookie)],
    );
    assert_eq!(ok.status, 303);
    assert_eq!(ok.header("location"), Some("/host/lap?done=queued"));
    wait_until(
        "the requested backup to run",
        Duration::from_secs(20),
        || runs() > before,
    );
    // A bearer token needs no CSRF token (browsers never send it on their own).
    let t = web.post(
        "/host/lap/backup",
        "",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    );
    assert_eq!(t.status, 303);

    let out = web.post("/logout", &format!("csrf={csrf}"), &[("Cookie", &cookie)]);
    assert_eq!(out.status, 303);
    assert_eq!(
        web.get("/", &[("Cookie", &cookie)]).status,
        303,
        "the session ended"
    );
}

#[test]
fn hostile_names_are_shown_escaped_and_download_byte_for_byte() {
    let (src, web) = backed_up();
    let snap = web.latest("lap");
    let dir = web.get_t(&snap_url("browse", "lap", &snap, &src.path().join("docs")));
    assert_eq!(dir.status, 200);
    let html = dir.text();
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;x&#62;.txt"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("passwd-link") && html.contains("→ /etc/passwd"));
    for name in ["<script>alert(1)<x>.txt", "\"><img src=x onerror=alert(2)>"] {
        let p = src.path().join("docs").join(name);
        let r = web.get_t(&snap_url("file", "lap", &snap, &p));
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.body, fs::read(&p).unwrap());
        let cd = r.header("content-disposition").unwrap();
        assert!(
            cd.starts_with("attachment;") && cd.contains("filename*=UTF-8''"),
            "{cd}"
        );
    }
    let txt = web.get_t(&snap_url(
        "file",
        "lap",
        &snap,
        &src.path().join("docs/sub/a.txt"),
    ));
    assert_eq!(
        txt.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(txt.header("x-content-type-options"), Some("nosniff"));
    assert!(txt
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
}

#[test]
fn traversal_and_symlinks_never_reach_outside_the_store() {
    let (src, web) = backed_up();
    let snap = web.latest("lap");
    let docs = src.path().join("docs");
    let in_store = web
        .setup
        .latest("lap")
        .join(docs.strip_prefix("/").unwrap());
    // Someone with shell access plants symlinks inside the snapshot, where the manifest
    // says a file and a folder are.
    fs::remove_file(in_store.join("sub/a.txt")).unwrap();
    symlink("/etc/passwd", in_store.join("sub/a.txt")).unwrap();
    fs::rename(in_store.join("sub"), in_store.join("sub-moved")).unwrap();
    symlink("/etc", in_store.join("sub")).unwrap();
    let base = format!("/file/lap/{snap}");
    let attempts = [
        format!("{base}/../../../../etc/passwd"),
        format!("{base}/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
        format!("{base}/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd"),
        format!("/file/lap/..%2f..%2f..%2fetc/passwd"),
        format!("/file/lap/{snap}/etc/passwd"),
        format!("{base}/{}/passwd-link", docs.display()),
        format!("{base}/{}/sub/a.txt", docs.display()),
        format!("{base}/{}/sub/../../../../etc/passwd", docs.display()),
        format!("{base}/{}%00.txt", docs.join("big.bin").display()),
        format!("/file/nobody/{snap}/etc/passwd"),
        format!("/file/lap/2000-01-01_000000/etc/passwd"),
        format!("/archive/lap/{snap}/etc"),
        format!("/browse/lap/{snap}/../../"),
        "/%zz".to_string(),
        "/file/lap/..".to_string(),
    ];
    for path in &attempts {
        let r = raw(
            web.port,
            format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            )
            .as_bytes(),
        );
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
        assert!(!r.text().contains("root:"), "{path} leaked /etc/passwd");
    }
    // The planted folder symlink is not followed inside an archive either.
    let tar = web.get_t(&format!(
        "{}?format=tar",
        snap_url("archive", "lap", &snap, &docs)
    ));
    assert_eq!(tar.status, 200);
    assert!(!String::from_utf8_lossy(&tar.body).contains("root:x:0"));
}

#[test]
fn range_requests_serve_the_asked_bytes() {
    let (src, web) = backed_up();
    let snap = web.latest("lap");
    let p = src.path().join("docs/big.bin");
    let whole = fs::read(&p).unwrap();
    let url = snap_url("file", "lap", &snap, &p);
    let auth = format!("Bearer {TOKEN}");
    let get = |range: &str| web.get(&url, &[("Authorization", &auth), ("Range", range)]);

    let full = web.get_t(&url);
    assert_eq!(full.status, 200);
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    assert_eq!(full.body, whole);

    let r = get("bytes=1000-1999");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 1000-1999/300000"));
    assert_eq!(r.body, &whole[1000..2000]);
    let r = get("bytes=299990-");
    assert_eq!((r.status, r.body.as_slice()), (206, &whole[299_990..]));
    let r = get("bytes=-5");
    assert_eq!((r.status, r.body.as_slice()), (206, &whole[299_995..]));
    let r = get("bytes=300000-");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */300000"));
    // Several ranges: the whole file, which is allowed.
    assert_eq!(get("bytes=0-1,5-6").status, 200);
    let head = raw(
        web.port,
        format!("HEAD {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(head.header("content-length"), Some("300000"));
    assert!(head.body.is_empty());
}

#[test]
fn folders_download_as_streamed_tar_and_zip() {
    let (src, web) = backed_up();
    let snap = web.latest("lap");
    let docs = src.path().join("docs");
    let out = tempfile::tempdir().unwrap();
    for (format, cmd) in [("tar", vec!["tar", "-xf"]), ("zip", vec!["unzip", "-q"])] {
        let r = web.get_t(&format!(
            "{}?format={format}",
            snap_url("archive", "lap", &snap, &docs)
        ));
        assert_eq!(r.status, 200, "{format}");
        assert!(
            r.header("content-length").is_none(),
            "streamed, not buffered"
        );
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert!(r.complete, "{format}: the last chunk came");
        assert_eq!(
            r.header("content-disposition"),
            Some(
                format!("attachment; filename=\"docs.{format}\"; filename*=UTF-8''docs.{format}")
                    .as_str()
            )
        );
        let dest = out.path().join(format);
        fs::create_dir(&dest).unwrap();
        let file = out.path().join(format!("docs.{format}"));
        fs::write(&file, &r.body).unwrap();
        let st = std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .arg(&file)
            .current_dir(&dest)
            .status()
            .unwrap();
        assert!(st.success(), "{format} archive unpacks");
        for f in ["<script>alert(1)<x>.txt", "big.bin", "sub/a.txt"] {
            assert_eq!(
                fs::read(dest.join("docs").join(f)).unwrap(),
                fs::read(docs.join(f)).unwrap(),
                "{format}: {f}"
            );
        }
        assert_eq!(
            fs::read_link(dest.join("docs/passwd-link")).unwrap(),
            std::path::Path::new("/etc/passwd"),
            "{format}: symlinks stay symlinks"
        );
    }
    // The whole snapshot, as one archive named after host and snapshot.
    let all = web.get_t(&format!("/archive/lap/{snap}?format=tar"));
    assert_eq!(all.status, 200);
    assert!(all
        .header("content-disposition")
        .unwrap()
        .contains(&format!("lap-{snap}.tar")));
}

#[test]
fn hostile_clients_get_4xx_and_cannot_pin_the_server() {
    let (_src, web) = backed_up();
    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    assert_eq!(raw(web.port, huge.as_bytes()).status, 431);
    let many: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
    assert_eq!(
        raw(web.port, format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).status,
        431
    );
    assert_eq!(raw(web.port, b"GARBAGE\r\n\r\n").status, 400);
    assert_eq!(raw(web.port, b"DELETE / HTTP/1.1\r\n\r\n").status, 405);
    let body = "x".repeat(100_000);
    let r = raw(
        web.port,
        format!(
            "POST /login HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413);

    // A slow client gets a 408 after the request time, not a thread forever.
    let mut slow = TcpStream::connect(("127.0.0.1", web.port)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    slow.read_to_end(&mut got).unwrap();
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"),
        "{got:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(15));

    // A flood of idle connections: the pool and backlog fill, the rest are told "busy" at
    // once; the daemon's thread count stays bounded, a new request is answered promptly,
    // and the page serves again once the idle ones time out.
    let pid = web.daemon.status().unwrap()["pid"].as_u64().unwrap();
    let threads = || fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
    let before = threads();
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", web.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        threads() <= before + 2,
        "threads: {before} before, {} during the flood",
        threads()
    );
    let t = Instant::now();
    let answer = web.get("/healthz", &[]);
    assert!(
        answer.status == 503 || answer.status == 200,
        "{}",
        answer.status
    );
    // At worst it waited in the queue until the idle ones' 10 s request deadline (counted
    // from accept): answered, never held for as long as they stay connected.
    assert!(
        t.elapsed() < Duration::from_secs(11),
        "answered within the request deadline, took {:?}",
        t.elapsed()
    );
    wait_until(
        "the idle connections to time out",
        Duration::from_secs(30),
        || web.get("/healthz", &[]).status == 200,
    );
    drop(idle);
}

#[test]
fn cancel_stops_a_running_backup_through_the_daemon_queue() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..40 {
        write_file(
            &src.path().join(format!("f{i:02}")),
            &vec![i as u8; 256 * 1024],
            1_700_000_000_000_000_000,
        );
    }
    // 10 MiB at 1 MiB/s: about ten seconds, plenty to cancel in.
    let host = format!(
        "{}bwlimit = \"1MiB/s\"\nschedule = \"manual\"\n",
        local_host("lap", src.path())
    );
    let web = webutil::start(&host, "");
    let auth = format!("Bearer {TOKEN}");
    let h = [("Authorization", auth.as_str())];
    assert_eq!(web.post("/host/lap/backup", "", &h).status, 303);
    wait_until("the backup to fetch files", Duration::from_secs(20), || {
        web.daemon.status().is_some_and(|s| {
            s["hosts"][0]["state"]["state"] == "running"
                && s["hosts"][0]["state"]["files_done"].as_u64().unwrap_or(0) >= 1
        })
    });
    let page = web.get_t("/host/lap").text();
    assert!(
        page.contains("class=\"files\""),
        "live progress on the host page: {page}"
    );
    let r = web.post("/host/lap/cancel", "", &h);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/host/lap?done=cancel"));
    wait_until("the run to stop", Duration::from_secs(10), || {
        web.daemon.host_state("lap") != "running"
    });
    let v: serde_json::Value = serde_json::from_slice(&web.get_t("/api/status").body).unwrap();
    assert_eq!(v["hosts"][0]["last_run"]["state"], "interrupted", "{v}");
    assert!(web.daemon.log_text().contains("host=lap cancel requested"));
    assert!(web.setup.snapshots("lap").is_empty(), "nothing published");
}

#[test]
fn passwd_prints_a_config_line_that_logs_in() {
    use std::process::{Command, Stdio};
    let run = |input: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_snapnest"))
            .arg("passwd")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let out = run("a long passphrase\n");
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let hash = line
        .strip_prefix("password_hash = \"")
        .and_then(|l| l.trim_end().strip_suffix('"'))
        .unwrap_or_else(|| panic!("{line}"));
    let parsed = snapnest::web::auth::PasswordHash::parse(hash).unwrap();
    assert!(parsed.verify("a long passphrase"));
    assert!(!parsed.verify("a long passphrase\n"));
    let short = run("short\n");
    assert_eq!(short.status.code(), Some(2));
    assert!(short.stdout.is_empty());
}

#[test]
fn a_taken_port_is_logged_and_backups_go_on() {
    let src = tempfile::tempdir().unwrap();
    write_file(&src.path().join("f"), b"x", 1_700_000_000_000_000_000);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let setup = common::Setup::new(&local_host("lap", src.path()), "");
    setup.init();
    setup.with_daemon_table("");
    let mut text = fs::read_to_string(&setup.config).unwrap();
    text.push_str(&format!(
        "\n[web]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n"
    ));
    fs::write(&setup.config, text).unwrap();
    let daemon = setup.start_daemon();
    wait_until(
        "the scheduled first backup",
        Duration::from_secs(20),
        || setup.storage.join("lap").exists() && !setup.snapshots("lap").is_empty(),
    );
    assert!(
        daemon.log_text().contains("running without the web page"),
        "{}",
        daemon.log_text()
    );
}
