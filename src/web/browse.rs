//! Browsing snapshots like a file manager. Names come from the catalog manifest (as the
//! source had them); only manifest paths are ever opened, and opening walks the snapshot
//! folder one component at a time without following any symlink.

use std::path::Path;

use askama::Template;

use super::auth::Who;
use super::http::{percent_encode, Response};
use super::pages::{host_url, render};
use super::view::{self, Chrome};
use crate::catalog::{Catalog, SnapshotRow};
use crate::config::{Config, Host};
use crate::model::{Entry, Kind};
use crate::storage::Storage;
use crate::strategy::chain::Chain;

/// Folders with more entries than this show the first ones and offer the archive.
const MAX_LISTED: usize = 5000;

/// Where a snapshot's files are on the disk (see `strategy::chain`).
#[derive(Clone, Debug)]
pub struct Stored {
    chain: Chain,
}

impl Stored {
    pub fn new(
        storage: &Storage,
        catalog: &Catalog,
        host: &str,
        snapshot: &SnapshotRow,
    ) -> crate::Result<Stored> {
        let chain = Chain::new(&storage.root().join(host), catalog, host, snapshot)?;
        Ok(Stored { chain })
    }

    /// The snapshot's own folder, for messages.
    pub fn dir(&self) -> &Path {
        self.chain.dir()
    }

    /// Open the stored file of manifest entry `e` for reading. Never follows a symlink.
    pub fn open(&self, e: &Entry) -> std::io::Result<crate::store::parts::Joined> {
        self.chain.open(e)
    }
}

/// `/browse/<host>/<snapshot>/<path>` with every part escaped.
pub fn browse_url(host: &str, snapshot: &str, path: &[u8]) -> String {
    url("browse", host, snapshot, path)
}

pub fn file_url(host: &str, snapshot: &str, path: &[u8]) -> String {
    url("file", host, snapshot, path)
}

pub fn url(kind: &str, host: &str, snapshot: &str, path: &[u8]) -> String {
    let mut u = format!(
        "/{kind}/{}/{}",
        percent_encode(host.as_bytes(), false),
        percent_encode(snapshot.as_bytes(), false)
    );
    if !path.is_empty() {
        u.push('/');
        u.push_str(&percent_encode(path, true));
    }
    u
}

/// A request's host, snapshot and manifest path, checked against config and catalog.
pub struct Target {
    pub host: Host,
    pub catalog: Catalog,
    pub snapshot: SnapshotRow,
    pub stored: Stored,
    pub path: Vec<u8>,
    /// The manifest entry; None for the snapshot's root and unlisted parent folders.
    pub entry: Option<Entry>,
}

/// Resolve `/<kind>/<host>/<snapshot>/<path...>` (segments already decoded and free of
/// `.`/`..`). Anything that isn't a configured host, a published snapshot or a manifest
/// path is a 404.
pub fn resolve(config: &Config, segs: &[Vec<u8>]) -> Result<Target, Response> {
    let nf = |what: &str| Response::text(404, format!("{what} not found\n"));
    let [host, snap, rest @ ..] = segs else {
        return Err(nf("snapshot"));
    };
    let host = std::str::from_utf8(host)
        .ok()
        .and_then(|h| config.hosts.iter().find(|c| c.name == h))
        .ok_or_else(|| nf("host"))?
        .clone();
    let storage = Storage::open(&config.storage)
        .map_err(|e| Response::text(503, format!("the backup disk is not available: {e}\n")))?;
    let catalog = storage
        .catalog()
        .map_err(|e| Response::text(503, format!("{e}\n")))?;
    let snap = std::str::from_utf8(snap).map_err(|_| nf("snapshot"))?;
    let snapshot = catalog
        .snapshots(Some(&host.name))
        .map_err(|e| Response::text(500, format!("{e}\n")))?
        .into_iter()
        .find(|s| s.published && s.name == snap)
        .ok_or_else(|| nf("snapshot"))?;
    let path = rest.join(&b'/');
    let entry = if path.is_empty() {
        None
    } else {
        match catalog.entry(snapshot.id, &path) {
            Ok(Some(e)) => Some(e),
            Ok(None) if catalog.has_children(snapshot.id, &path).unwrap_or(false) => None,
            Ok(None) => return Err(nf("path")),
            Err(e) => return Err(Response::text(500, format!("{e}\n"))),
        }
    };
    let stored = Stored::new(&storage, &catalog, &host.name, &snapshot)
        .map_err(|e| Response::text(500, format!("{e}\n")))?;
    Ok(Target {
        host,
        catalog,
        snapshot,
        stored,
        path,
        entry,
    })
}

impl Target {
    pub fn is_dir(&self) -> bool {
        self.entry.as_ref().is_none_or(|e| e.kind == Kind::Dir)
    }

    /// The last name of the path ("" for the root), for download file names.
    pub fn base_name(&self) -> Vec<u8> {
        self.path
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or(b"")
            .to_vec()
    }
}

struct Row {
    name: String,
    url: Option<String>,
    size: String,
    mtime: String,
    note: String,
}

struct Version {
    name: String,
    url: String,
    size: String,
    mtime: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "browse.html")]
struct BrowsePage {
    c: Chrome,
    host: String,
    host_url: String,
    snapshot: String,
    crumbs: Vec<(String, String)>,
    is_dir: bool,
    rows: Vec<Row>,
    truncated: bool,
    tar_url: String,
    zip_url: String,
    file_url: String,
    size: String,
    mtime: String,
    versions: Vec<Version>,
}

fn name_of(path: &[u8]) -> String {
    String::from_utf8_lossy(path.rsplit(|&b| b == b'/').next().unwrap_or(b"")).into_owned()
}

pub fn page(t: Target, who: &Who) -> Response {
    let (h, s) = (t.host.name.as_str(), t.snapshot.name.as_str());
    let mut crumbs = vec![("/".to_string(), browse_url(h, s, b""))];
    let mut acc: Vec<u8> = Vec::new();
    for part in t.path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        if !acc.is_empty() {
            acc.push(b'/');
        }
        acc.extend_from_slice(part);
        crumbs.push((
            String::from_utf8_lossy(part).into_owned(),
            browse_url(h, s, &acc),
        ));
    }
    let mut page = BrowsePage {
        c: Chrome::new(format!("{h} {}", name_of(&t.path)), who),
        host: h.to_string(),
        host_url: host_url(h),
        snapshot: s.to_string(),
        crumbs,
        is_dir: t.is_dir(),
        rows: Vec::new(),
        truncated: false,
        tar_url: format!("{}?format=tar", url("archive", h, s, &t.path)),
        zip_url: format!("{}?format=zip", url("archive", h, s, &t.path)),
        file_url: file_url(h, s, &t.path),
        size: String::new(),
        mtime: String::new(),
        versions: Vec::new(),
    };
    if page.is_dir {
        let (children, truncated) = match t.catalog.children(t.snapshot.id, &t.path, MAX_LISTED) {
            Ok(c) => c,
            Err(e) => return Response::text(500, format!("{e}\n")),
        };
        page.truncated = truncated;
        page.rows = children
            .iter()
            .map(|e| {
                let name = name_of(&e.path);
                match e.kind {
                    Kind::Dir => Row {
                        name: format!("{name}/"),
                        url: Some(browse_url(h, s, &e.path)),
                        size: String::new(),
                        mtime: view::date_ns(e.mtime_ns),
                        note: String::new(),
                    },
                    Kind::File => Row {
                        name,
                        url: Some(browse_url(h, s, &e.path)),
                        size: view::bytes(e.size),
                        mtime: view::date_ns(e.mtime_ns),
                        note: String::new(),
                    },
                    Kind::Symlink => Row {
                        name,
                        url: None,
                        size: String::new(),
                        mtime: view::date_ns(e.mtime_ns),
                        note: format!(
                            "→ {}",
                            String::from_utf8_lossy(e.target.as_deref().unwrap_or(b""))
                        ),
                    },
                    other => Row {
                        name,
                        url: None,
                        size: String::new(),
                        mtime: view::date_ns(e.mtime_ns),
                        note: format!("({other:?}, not stored)").to_lowercase(),
                    },
                }
            })
            .collect();
    } else {
        let e = t.entry.as_ref().expect("a file has an entry");
        page.size = view::bytes(e.size);
        page.mtime = view::date_ns(e.mtime_ns);
        // Every snapshot's copy of this path: "last Tuesday's version".
        let snaps = t.catalog.snapshots(Some(h)).unwrap_or_default();
        for sn in snaps.iter().rev().filter(|x| x.published) {
            if let Ok(Some(v)) = t.catalog.entry(sn.id, &t.path) {
                if v.kind == Kind::File {
                    page.versions.push(Version {
                        name: sn.name.clone(),
                        url: browse_url(h, &sn.name, &t.path),
                        size: view::bytes(v.size),
                        mtime: view::date_ns(v.mtime_ns),
                        current: sn.id == t.snapshot.id,
                    });
                }
            }
        }
    }
    render(&page)
}
