//! The run-now queue: `snapnest backup` (and later the web page) drops a request file into
//! the daemon's state folder; the daemon takes it ahead of scheduled work and leaves the
//! result next to it. Files, not a socket: nothing to listen on, survives a daemon restart.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

const DIR: &str = "queue";

/// A request to back up `host` now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// File stem, sortable by arrival.
    pub id: String,
    pub host: String,
}

/// What the requester reads back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Done {
    /// `good`, `partial` or `failed`.
    pub outcome: String,
    pub exit_code: i32,
    pub summary: String,
    /// Per-file problems, at most a few dozen, as printed lines.
    pub problems: Vec<String>,
}

impl Done {
    /// A request that could not be served at all.
    pub fn failed(summary: String) -> Done {
        Done {
            outcome: "failed".into(),
            exit_code: 2,
            summary,
            problems: vec![],
        }
    }
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join(DIR)
}

/// Ask the daemon to back up `host`; returns the request id to wait on.
pub fn submit(state_dir: &Path, host: &str) -> Result<String> {
    let d = dir(state_dir);
    fs::create_dir_all(&d).at(&d, "creating queue folder")?;
    let id = format!(
        "{:013}-{}-{}",
        chrono::Utc::now().timestamp_millis(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    // Written under a temporary name so the daemon never reads half a request.
    let tmp = d.join(format!(".{id}.tmp"));
    fs::write(&tmp, host).at(&tmp, "writing request")?;
    let req = d.join(format!("{id}.req"));
    fs::rename(&tmp, &req).at(&req, "writing request")?;
    Ok(id)
}

fn names_ending(d: &Path, suffix: &str) -> Vec<String> {
    let Ok(rd) = fs::read_dir(d) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(suffix) && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// At daemon start: requests an earlier daemon took but never answered are queued again,
/// so a restart (or a crash) loses no request and no waiting `snapnest backup` hangs.
pub fn recover(state_dir: &Path) -> usize {
    let d = dir(state_dir);
    let taken = names_ending(&d, ".taken");
    for n in &taken {
        let from = d.join(n);
        let _ = fs::rename(&from, from.with_extension("req"));
    }
    taken.len()
}

/// Requests not yet taken, oldest first. Taking one renames its file to `.taken` until it is
/// answered. A request file that cannot be read is set aside as `.bad` and reported as Err.
pub fn take_all(state_dir: &Path) -> Vec<std::result::Result<Request, String>> {
    let d = dir(state_dir);
    let mut out = Vec::new();
    for n in names_ending(&d, ".req") {
        let p = d.join(&n);
        let id = n.trim_end_matches(".req").to_string();
        let host = match fs::read_to_string(&p) {
            Ok(h) if !h.trim().is_empty() => h.trim().to_string(),
            Ok(_) => {
                let _ = fs::rename(&p, p.with_extension("bad"));
                out.push(Err(format!("{}: empty request, set aside", p.display())));
                continue;
            }
            Err(e) => {
                let _ = fs::rename(&p, p.with_extension("bad"));
                out.push(Err(format!("{}: {e}; set aside", p.display())));
                continue;
            }
        };
        if let Err(e) = fs::rename(&p, p.with_extension("taken")) {
            out.push(Err(format!("{}: taking request: {e}", p.display())));
            continue;
        }
        out.push(Ok(Request { id, host }));
    }
    out
}

/// Answer a request (its `.taken` file goes). Results nobody collected are swept after a day.
pub fn answer(state_dir: &Path, id: &str, done: &Done) -> Result<()> {
    let d = dir(state_dir);
    let tmp = d.join(format!(".{id}.tmp"));
    let text = serde_json::to_string(done).map_err(|e| Error::Other(e.to_string()))?;
    fs::write(&tmp, text).at(&tmp, "writing result")?;
    let path = d.join(format!("{id}.done"));
    fs::rename(&tmp, &path).at(&path, "writing result")?;
    let _ = fs::remove_file(d.join(format!("{id}.taken")));
    sweep(&d);
    Ok(())
}

fn sweep(d: &Path) {
    let Ok(rd) = fs::read_dir(d) else { return };
    for e in rd.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(24 * 3600));
        let name = e.file_name().to_string_lossy().into_owned();
        if old && (name.ends_with(".done") || name.ends_with(".bad")) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Whether the request is still waiting to be taken.
pub fn pending(state_dir: &Path, id: &str) -> bool {
    dir(state_dir).join(format!("{id}.req")).exists()
}

/// Wait for the answer; `tick` is called about once a second (to draw progress).
pub fn wait(state_dir: &Path, id: &str, mut tick: impl FnMut()) -> Result<Done> {
    let path = dir(state_dir).join(format!("{id}.done"));
    let started = Instant::now();
    loop {
        match fs::read_to_string(&path) {
            Ok(text) => {
                let _ = fs::remove_file(&path);
                return serde_json::from_str(&text)
                    .map_err(|e| Error::Other(format!("reading {}: {e}", path.display())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, "reading result", e)),
        }
        if started.elapsed() > Duration::from_secs(2) && !super::lock::daemon_running(state_dir) {
            return Err(Error::Other(
                "the daemon stopped before answering; the request stays queued for its next start"
                    .into(),
            ));
        }
        tick();
        std::thread::sleep(Duration::from_millis(250));
    }
}
