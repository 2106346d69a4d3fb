//! End to end in real headless Chromium: log in, click "back up now", watch the dashboard's
//! progress move while the backup runs, browse to a file and download it, byte for byte.

mod common;
mod webutil;

use std::fs;
use std::time::{Duration, Instant};

use common::{local_host, write_file};
use webutil::cdp::{wait_download, Browser};
use webutil::PASSWORD;

#[test]
fn dashboard_shows_a_running_backup_and_a_file_downloads_byte_for_byte() {
    let src = tempfile::tempdir().unwrap();
    let report: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    write_file(
        &src.path().join("docs/report <draft>.odt"),
        &report,
        1_700_000_000_000_000_000,
    );
    for i in 0..24 {
        write_file(
            &src.path().join(format!("photos/img{i:02}.jpg")),
            &vec![i as u8; 512 * 1024],
            1_700_000_000_000_000_000,
        );
    }
    // 12 MiB at 1.5 MiB/s: about eight seconds of visible progress.
    let host = format!(
        "{}bwlimit = \"1536KiB/s\"\nschedule = \"manual\"\n",
        local_host("laptop", src.path())
    );
    let web = webutil::start(&host, "");
    let base = format!("http://127.0.0.1:{}", web.port);
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");

    let mut b = Browser::launch();
    b.goto(&format!("{base}/"));
    b.wait_for("the login page", "location.pathname === '/login'");
    b.eval(&format!(
        "document.querySelector('input[name=password]').value = {}",
        serde_json::json!(PASSWORD)
    ));
    b.click("#login");
    b.wait_for(
        "the dashboard",
        "location.pathname === '/' && !!document.querySelector('#host-laptop')",
    );
    assert_eq!(b.text("#host-laptop .st"), "never");

    b.click_link("laptop");
    b.wait_for("the host page", "!!document.querySelector('#backup-now')");
    b.click("#backup-now");
    b.wait_for(
        "the request to be confirmed",
        "location.search === '?done=queued'",
    );
    assert!(b.text(".msg").contains("Backup requested"));

    // The daemon takes the request on its next tick; reload until the run shows.
    let t = Instant::now();
    loop {
        b.goto(&format!("{base}/"));
        if b.eval("!!document.querySelector('tr.progress .bytes')") == serde_json::json!(true) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the backup never showed as running"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(b.text("#host-laptop .st"), "running");
    let first = b.text("tr.progress .bytes");
    // The page reloads itself every 3 s while something runs (no script on the page).
    let t = Instant::now();
    b.wait_for(
        "the progress to move",
        &format!(
            "document.querySelector('tr.progress .bytes') && document.querySelector('tr.progress .bytes').textContent !== {}",
            serde_json::json!(first)
        ),
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    b.screenshot(&shots.join("dashboard-running.png"));
    b.wait_for(
        "the backup to finish",
        "document.readyState === 'complete' && document.querySelector('#host-laptop .st') && document.querySelector('#host-laptop .st').textContent === 'ok'",
    );
    b.screenshot(&shots.join("dashboard.png"));

    // Browse from the host page down to the file, as a person would.
    b.click_link("laptop");
    b.wait_for(
        "the host page",
        "!!document.querySelector('#browse-latest')",
    );
    b.screenshot(&shots.join("host.png"));
    b.click("#browse-latest");
    b.wait_for(
        "the snapshot root",
        "location.pathname.startsWith('/browse/')",
    );
    let parts: Vec<String> = src
        .path()
        .join("docs")
        .components()
        .skip(1)
        .map(|c| format!("{}/", c.as_os_str().to_string_lossy()))
        .collect();
    for dir in &parts {
        b.wait_for(
            "the next folder's link",
            &format!(
                "[...document.querySelectorAll('a')].some(a => a.textContent === {})",
                serde_json::json!(dir)
            ),
        );
        b.click_link(dir);
    }
    b.wait_for(
        "the docs folder",
        "document.body.innerText.includes('report <draft>.odt')",
    );
    b.screenshot(&shots.join("browse.png"));
    b.click_link("report <draft>.odt");
    b.wait_for("the file page", "!!document.querySelector('#download')");
    let downloads = tempfile::tempdir().unwrap();
    b.download_to(downloads.path());
    b.click("#download");
    let got = wait_download(downloads.path());
    // Chromium replaces `<>` in download names with `_`; the name itself came through.
    assert_eq!(got.file_name().unwrap(), "report _draft_.odt");
    assert_eq!(
        fs::read(&got).unwrap(),
        report,
        "downloaded bytes match the source"
    );
    assert!(
        shots
            .join("dashboard-running.png")
            .metadata()
            .unwrap()
            .len()
            > 1000
    );
}
