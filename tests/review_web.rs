//! The web page against DNS rebinding and clients that try to hold it: the Host check,
//! login pacing without a queue, and a floor on how slowly a download may be taken.

mod common;
mod webutil;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use webutil::{raw, snap_url, PASSWORD, TOKEN};

#[test]
fn requests_for_another_host_name_are_refused() {
    let src = tempfile::tempdir().unwrap();
    write_file(&src.path().join("f"), b"x", 1_700_000_000_000_000_000);
    let web = webutil::start(
        &local_host("lap", src.path()),
        "hostnames = [\"backup.lan\"]",
    );
    let get = |host: &str| {
        raw(
            web.port,
            format!(
                "GET /api/status HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    // A page on evil.example whose name now points at the box, read by a LAN browser.
    for host in [
        "evil.example",
        &format!("evil.example:{}", web.port),
        "backup.lan.evil.example",
    ] {
        let r = get(host);
        assert_eq!(r.status, 403, "{host}: {}", r.text());
        assert!(!r.text().contains("hosts"), "{host}");
    }
    for host in [
        format!("127.0.0.1:{}", web.port),
        "127.0.0.1".to_string(),
        format!("[::1]:{}", web.port),
        format!("localhost:{}", web.port),
        format!("BACKUP.lan:{}", web.port),
    ] {
        assert_eq!(get(&host).status, 200, "{host}");
    }
}

#[test]
fn logins_never_queue_and_wrong_passwords_slow_the_address_down() {
    let src = tempfile::tempdir().unwrap();
    write_file(&src.path().join("f"), b"x", 1_700_000_000_000_000_000);
    let setup = Setup::new(&local_host("lap", src.path()), "schedule = \"manual\"");
    setup.init();
    setup.with_daemon_table("");
    let port = free_port();
    // Slow on purpose: a check takes long enough to overlap a second login.
    let hash = snapnest::web::auth::PasswordHash::new(PASSWORD, 3_000_000);
    let mut text = fs::read_to_string(&setup.config).unwrap();
    text.push_str(&format!(
        "\n[web]\nlisten = \"127.0.0.1:{port}\"\npassword_hash = \"{hash}\"\n"
    ));
    fs::write(&setup.config, text).unwrap();
    let _daemon = setup.start_daemon();
    wait_until("the web page to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let login = move |pw: &str| {
        let body = format!("password={pw}&next=%2F");
        raw(
            port,
            format!(
                "POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    let started = Instant::now();
    let first = std::thread::spawn(move || login("wrong"));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let busy = login("wrong");
    let busy_took = t.elapsed();
    let first = first.join().unwrap();
    let check_took = started.elapsed();
    assert_eq!(first.status, 401);
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert!(
        busy_took * 2 < check_took,
        "answered at once ({busy_took:?}), not after the running check ({check_took:?})"
    );
    assert!(busy.header("retry-after").is_some());

    // Three wrong passwords are free (typos); after the fourth the address waits.
    assert_eq!(login("wrong").status, 401);
    assert_eq!(login("wrong").status, 401);
    assert_eq!(login("wrong").status, 401);
    let r = login(&PASSWORD.replace(' ', "+"));
    assert_eq!(r.status, 429, "even the right password waits: {}", r.text());
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    std::thread::sleep(Duration::from_secs(wait));
    let r = login(&PASSWORD.replace(' ', "+"));
    assert_eq!(r.status, 303, "{}", r.text());
}

#[test]
fn a_client_that_reads_too_slowly_is_dropped() {
    let src = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    write_file(&src.path().join("big.bin"), &big, 1_700_000_000_000_000_000);
    let web = webutil::start(
        &local_host("lap", src.path()),
        "min_download_rate = \"1MiB/s\"",
    );
    web.setup.backup("lap", 0);
    let snap = web.latest("lap");
    let url = snap_url("file", "lap", &snap, &src.path().join("big.bin"));
    let mut s = TcpStream::connect(("127.0.0.1", web.port)).unwrap();
    s.write_all(
        format!("GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // About 40 KiB/s: the server gives up after its grace period, not after 800 s.
    let started = Instant::now();
    let mut got = 0usize;
    let mut buf = [0u8; 4096];
    let ended = loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break started.elapsed(),
            Ok(n) => got += n,
        }
        if started.elapsed() > Duration::from_secs(40) {
            panic!("still sending after 40 s ({got} bytes)");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(got < big.len(), "the whole file went ({got} bytes)");
    assert!(
        ended >= Duration::from_secs(9),
        "dropped before the grace period: {ended:?}"
    );
    // A fast client still gets everything.
    let r = web.get_t(&url);
    assert_eq!((r.status, r.body.len()), (200, big.len()));
}
