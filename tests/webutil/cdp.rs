//! Real headless Chromium, driven over the DevTools protocol (a websocket): navigate, run a
//! line of JavaScript to read or click the page, take screenshots, let downloads land in a
//! folder. Network use stays on loopback: every background service is switched off.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--disable-extensions",
                "--no-default-browser-check",
                "--disable-dev-shm-usage",
                "--window-size=900,1100",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(profile.path().join("chromium.log")).unwrap())
            .spawn()
            .expect("starting chromium (apt-get install chromium)");
        // Chromium writes its DevTools port and browser path here once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let (port, path) = loop {
            if let Ok(t) = fs::read_to_string(&port_file) {
                let mut l = t.lines();
                if let (Some(p), Some(path)) = (l.next(), l.next()) {
                    break (p.to_string(), path.to_string());
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not start: {}",
                fs::read_to_string(profile.path().join("chromium.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let (ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}{path}")).unwrap();
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        let mut b = Browser {
            child,
            ws,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let attached = b.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}));
        b
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.try_send(method, params, session)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    fn try_send(&mut self, method: &str, params: Value, session: bool) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::text(msg.to_string())).unwrap();
        loop {
            let m = self.ws.read().expect("reading from chromium");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    return Err(e.clone());
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// A command to the browser itself (targets, downloads).
    pub fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    pub fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for("the page to load", "document.readyState === 'complete'");
    }

    /// Evaluate a JavaScript expression in the page; its JSON value.
    /// A page that is navigating (a click, its own refresh) has no context for a moment:
    /// such an evaluation is retried.
    pub fn eval(&mut self, js: &str) -> Value {
        let params = json!({"expression": js, "returnByValue": true});
        for _ in 0..100 {
            match self.try_send("Runtime.evaluate", params.clone(), true) {
                Ok(r) => return r["result"]["value"].clone(),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        panic!("the page never settled to evaluate {js}");
    }

    /// Wait until `js` is true in the page (checked every 100 ms, across navigations).
    pub fn wait_for(&mut self, what: &str, js: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.eval(&format!("!!({js})")) == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited a minute for {what}; page: {}",
                self.eval("location.href + '\\n' + (document.body ? document.body.innerText : '')")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Click the element matching `selector` (a real click event on the page).
    pub fn click(&mut self, selector: &str) {
        let found = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
            json!(selector)
        ));
        assert_eq!(found, json!(true), "no element {selector}");
    }

    /// Click the link whose text is `text`.
    pub fn click_link(&mut self, text: &str) {
        let found = self.eval(&format!(
            "(() => {{ const a = [...document.querySelectorAll('a')].find(a => a.textContent === {}); if (!a) return false; a.click(); return true; }})()",
            json!(text)
        ));
        assert_eq!(found, json!(true), "no link {text:?}");
    }

    pub fn text(&mut self, selector: &str) -> String {
        self.eval(&format!(
            "(document.querySelector({}) || {{}}).textContent || ''",
            json!(selector)
        ))
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    pub fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, png).unwrap();
    }

    /// Downloads land in `dir` without asking.
    pub fn download_to(&mut self, dir: &Path) {
        self.call_browser(
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": dir.to_str().unwrap()}),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one finished download in `dir` (Chromium writes `*.crdownload` until done).
pub fn wait_download(dir: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        if let [one] = files.as_slice() {
            if one.extension().is_none_or(|e| e != "crdownload") {
                return one.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no download in {}: {files:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
