//! Adversarial HTTP against the real daemon's web page, beyond tests/web.rs: traversal in
//! every encoding, oversized and numerous headers, request smuggling shapes, slow clients
//! (slowloris), and cross-site form posts. Whatever is sent: no file outside the manifest is
//! served, no action runs, the page stays bounded and answers again afterwards.

mod common;
mod webutil;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{local_host, wait_until, write_file};
use webutil::{parse, Resp, Web, TOKEN};

const T: i64 = 1_700_000_000_000_000_000;
/// The first bytes of /etc/passwd on every Linux: never in a response.
const PASSWD: &str = "root:x:0:0";

fn started() -> (tempfile::TempDir, Web) {
    let src = tempfile::tempdir().unwrap();
    write_file(&src.path().join("docs/a.txt"), b"alpha\n", T);
    write_file(&src.path().join("docs/sub/b.txt"), b"bravo\n", T);
    // A file whose *name* looks like an encoded traversal: it must be served as itself.
    write_file(&src.path().join("docs/%2e%2e"), b"literal name\n", T);
    let web = webutil::start(&local_host("lap", src.path()), "");
    web.setup.backup("lap", 0);
    (src, web)
}

/// Send raw bytes; the answer, or None when the server closed without one.
fn try_raw(port: u16, request: &[u8]) -> Option<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer and close before reading all of a huge request.
    let _ = s.write_all(request);
    let mut data = Vec::new();
    let _ = s.read_to_end(&mut data);
    (data.windows(4).any(|w| w == b"\r\n\r\n")).then(|| parse(&data))
}

fn get_raw(port: u16, target: &str) -> Option<Resp> {
    try_raw(
        port,
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    )
}

fn healthy(web: &Web) -> bool {
    web.get("/healthz", &[]).status == 200
}

#[test]
fn traversal_in_any_encoding_never_leaves_the_manifest() {
    let (src, web) = started();
    let snap = web.latest("lap");
    let docs = src.path().join("docs").display().to_string();
    let docs = docs.trim_start_matches('/');
    let base = |kind: &str| format!("/{kind}/lap/{snap}/{docs}");
    let mut tried = 0;
    for kind in ["browse", "file", "archive"] {
        for attack in [
            "../../../../../../etc/passwd",
            "%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
            "%252e%252e/%252e%252e/%252e%252e/etc/passwd",
            "%25252e%25252e/etc/passwd",
            "..%5c..%5c..%5c..%5cetc%5cpasswd",
            "..\\..\\..\\..\\etc\\passwd",
            "%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
            "%e0%80%ae%e0%80%ae/etc/passwd",
            "a.txt%00/../../../etc/passwd",
            "a.txt%00.png",
            "..;/..;/..;/etc/passwd",
            ".%2e/.%2e/.%2e/etc/passwd",
            "....//....//....//etc/passwd",
            "/etc/passwd",
            "//etc/passwd",
            "sub/../../../../../../../etc/passwd",
            "%2fetc%2fpasswd",
            "%",
            "%zz",
            "%e2%80%ae",
        ] {
            let target = format!("{}/{attack}", base(kind));
            tried += 1;
            let r = get_raw(web.port, &target);
            let Some(r) = r else { continue };
            assert!(
                (400..500).contains(&r.status),
                "{target}: {} {}",
                r.status,
                r.text()
            );
            assert!(!r.text().contains(PASSWD), "{target} served /etc/passwd");
        }
    }
    // The request target itself in odd forms: absolute URI, no leading slash, `*`.
    for target in [
        "http://127.0.0.1/../../etc/passwd",
        "file:///etc/passwd",
        "../../etc/passwd",
        "*",
        "/file/lap/../../../etc/passwd",
        "/file/../../../etc/passwd",
        "/file/lap/latest/../../../etc/passwd",
    ] {
        tried += 1;
        if let Some(r) = get_raw(web.port, target) {
            assert!((400..500).contains(&r.status), "{target}: {}", r.status);
            assert!(!r.text().contains(PASSWD), "{target} served /etc/passwd");
        }
    }
    // The literal file named "%2e%2e" is still served, as itself (escaped once in the URL).
    let r = get_raw(web.port, &format!("{}/%252e%252e", base("file"))).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "literal name\n"));
    let r = get_raw(web.port, &format!("{}/a.txt", base("file"))).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "alpha\n"));
    eprintln!("{tried} traversal attempts, none served anything outside the manifest");
    assert!(healthy(&web));
}

#[test]
fn oversized_and_numerous_headers_and_smuggling_shapes_are_refused_and_the_page_lives_on() {
    let (_src, web) = started();
    let port = web.port;
    let status = |req: Vec<u8>| try_raw(port, &req).map(|r| r.status);

    // A 100 KB request line, a 20 KB header, 500 headers: refused before any routing.
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "a".repeat(100_000)
    );
    assert!(matches!(
        status(long_line.into_bytes()),
        Some(414) | Some(431) | Some(400) | None
    ));
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    assert!(matches!(
        status(big_header.into_bytes()),
        Some(431) | Some(400) | None
    ));
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(status(many.into_bytes()), Some(431));
    // 20 MB of header bytes without an end: cut off at the head limit, not buffered.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nX: ").unwrap();
    let chunk = vec![b'z'; 64 * 1024];
    let mut sent = 0usize;
    while sent < 20 << 20 {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(sent < 20 << 20, "the server kept reading a 20 MB header");

    // Smuggling shapes: both framings, conflicting lengths, negative and huge lengths.
    let smuggle = |extra: &str, body: &str| {
        format!(
            "POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n{extra}\r\n{body}"
        )
        .into_bytes()
    };
    for (extra, body) in [
        (
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n",
        ),
        ("Content-Length: 5\r\nContent-Length: 50\r\n", "password=x"),
        ("Content-Length: -1\r\n", "password=x"),
        ("Content-Length: 99999999999999999999\r\n", "password=x"),
        ("Content-Length: 100000000\r\n", "password=x"),
    ] {
        let r = try_raw(port, &smuggle(extra, body));
        if let Some(r) = r {
            assert!(r.status >= 400, "{extra:?}: {} {}", r.status, r.text());
            // One request per connection: a request hidden in the body is never answered.
            assert!(
                !r.text().contains("snapnest_"),
                "{extra:?}: a smuggled request was served"
            );
        }
    }
    // Pipelining: the second request on the connection is not served (Connection: close).
    let two = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    let r = try_raw(port, two.as_bytes()).unwrap();
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("snapnest_"), "{}", r.text());
    // Junk: no method, binary garbage, a header without a colon, HTTP/0.9.
    for junk in [
        &b"\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"G\x00T /healthz HTTP/1.1\r\n\r\n",
    ] {
        if let Some(r) = try_raw(port, junk) {
            assert!(r.status == 200 || r.status >= 400, "{junk:?}: {}", r.status);
        }
    }
    assert!(healthy(&web));
    let metrics = web.get_t("/metrics");
    assert_eq!(metrics.status, 200);
}

/// The daemon's thread count, from its status file's pid.
fn threads(web: &Web) -> usize {
    let pid = web.daemon.status().unwrap()["pid"].as_u64().unwrap();
    let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    st.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn slowloris_is_cut_off_the_page_never_hangs_and_backups_go_on() {
    let (_src, web) = started();
    let port = web.port;
    let before = threads(&web);
    // 40 clients trickling a header byte every 300 ms: more than the 8 workers and 16 waiting
    // places together.
    let mut slow: Vec<TcpStream> = (0..40)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            s
        })
        .collect();
    for s in slow.iter_mut() {
        let _ = s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ");
    }
    let attack = Instant::now();
    let mut closed_at: Vec<Option<Duration>> = vec![None; slow.len()];
    let mut worst = Duration::ZERO;
    let mut answered_503 = 0;
    // Meanwhile a backup through the daemon, which the page's troubles must not touch.
    let config = web.setup.config.clone();
    let backup = std::thread::spawn(move || common::snapnest(&config, &["backup", "lap"]));
    while attack.elapsed() < Duration::from_secs(16) {
        for (i, s) in slow.iter_mut().enumerate() {
            if closed_at[i].is_some() {
                continue;
            }
            let mut b = [0u8; 512];
            let gone = match s.read(&mut b) {
                Ok(_) => true,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            } || s.write_all(b"a").is_err();
            if gone {
                closed_at[i] = Some(attack.elapsed());
            }
        }
        // A normal client during the attack: an answer (200 or a quick 503), never a hang.
        let t = Instant::now();
        let r = try_raw(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let took = t.elapsed();
        worst = worst.max(took);
        match r.map(|r| r.status) {
            Some(200) => {}
            Some(503) => answered_503 += 1,
            other => panic!("during the attack /healthz got {other:?} after {took:?}"),
        }
        assert!(threads(&web) <= before + 2, "threads grew under the attack");
        std::thread::sleep(Duration::from_millis(300));
    }
    let cut = closed_at.iter().filter(|c| c.is_some()).count();
    let last = closed_at
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default();
    eprintln!(
        "slowloris: {cut}/40 cut off, the last after {last:?}; /healthz meanwhile: worst {worst:?}, {answered_503} answers 503"
    );
    // Each has 10 s from its accept to send a request, waiting for a worker included.
    assert_eq!(cut, 40, "slow clients still connected after 16 s");
    assert!(
        last < Duration::from_secs(12),
        "the last slow client lasted {last:?}"
    );
    assert!(
        worst < Duration::from_secs(11),
        "a normal request waited {worst:?}"
    );
    let out = backup.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    wait_until("the page to answer again", Duration::from_secs(5), || {
        healthy(&web)
    });
}

#[test]
fn cross_site_and_forged_form_posts_run_no_action() {
    let (_src, web) = started();
    let cookie = web.login();
    let csrf = web.csrf(&cookie);
    let other_cookie = web.login();
    let other_csrf = web.csrf(&other_cookie);
    assert_ne!(csrf, other_csrf, "each session has its own form token");
    let port = web.port;
    let me = format!("http://127.0.0.1:{port}");
    let body = format!("csrf={csrf}");
    let runs = || {
        let v: serde_json::Value = serde_json::from_slice(&web.get_t("/api/status").body).unwrap();
        v["hosts"][0]["last_run"]["id"].as_i64().unwrap()
    };
    let before = runs();
    for action in ["/host/lap/backup", "/host/lap/cancel"] {
        let refused: Vec<(&str, String, Vec<(&str, String)>)> = vec![
            (
                "another session's token",
                format!("csrf={other_csrf}"),
                vec![("Cookie", cookie.clone())],
            ),
            (
                "token in the query, not the form",
                String::new(),
                vec![("Cookie", cookie.clone())],
            ),
            (
                "a foreign origin",
                body.clone(),
                vec![
                    ("Cookie", cookie.clone()),
                    ("Origin", "http://evil.example".into()),
                ],
            ),
            (
                "the same host on another port",
                body.clone(),
                vec![
                    ("Cookie", cookie.clone()),
                    ("Origin", format!("http://127.0.0.1:{}", port + 1)),
                ],
            ),
            (
                "a null origin (sandboxed frame)",
                body.clone(),
                vec![("Cookie", cookie.clone()), ("Origin", "null".into())],
            ),
            (
                "an origin with our host as a prefix",
                body.clone(),
                vec![
                    ("Cookie", cookie.clone()),
                    ("Origin", format!("{me}.evil.example")),
                ],
            ),
            (
                "a token one byte short",
                format!("csrf={}", &csrf[..csrf.len() - 1]),
                vec![("Cookie", cookie.clone())],
            ),
            (
                "a token twice, the first empty",
                format!("csrf=&csrf={csrf}x"),
                vec![("Cookie", cookie.clone())],
            ),
            (
                "a forged session cookie",
                body.clone(),
                vec![("Cookie", "snapnest_session=0000000000000000".into())],
            ),
        ];
        for (why, form, headers) in refused {
            let path = if why.starts_with("token in the query") {
                format!("{action}?csrf={csrf}")
            } else {
                action.to_string()
            };
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = web.post(&path, &form, &h);
            assert!(
                r.status == 401 || r.status == 403,
                "{action} with {why}: {} {}",
                r.status,
                r.text()
            );
        }
        // GET, HEAD and other methods never run an action.
        for method in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"] {
            let r = try_raw(
                port,
                format!("{method} {action}?csrf={csrf} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\nOrigin: {me}\r\n\r\n")
                    .as_bytes(),
            );
            if let Some(r) = r {
                assert_ne!(r.status, 303, "{method} {action} ran the action");
            }
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(), before, "a refused post queued a backup");
    let queue = web.setup.dir.path().join("state/queue");
    assert!(!queue.exists() || fs::read_dir(&queue).unwrap().count() == 0);
    // The real form post still works, from our own origin.
    let ok = web.post(
        "/host/lap/backup",
        &body,
        &[("Cookie", &cookie), ("Origin", &me)],
    );
    assert_eq!(ok.status, 303, "{}", ok.text());
    wait_until("the requested backup", Duration::from_secs(20), || {
        runs() > before
    });
}
