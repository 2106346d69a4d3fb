//! The status web page, served by the daemon: a dashboard of every machine, each host's
//! history, snapshot browsing and downloads, run-now/cancel actions, and `/api/status`,
//! `/metrics`, `/healthz` for machines. Everything is read from the same places
//! `snapnest status` reads (the daemon's status file and the catalog); actions go through
//! the daemon's request queue.

mod api;
pub mod auth;
mod browse;
mod download;
mod guard;
pub mod http;
mod pages;
mod routes;
mod server;
mod view;
mod zip;

use std::sync::{Arc, RwLock};

use crate::config::{Config, Web};
pub use browse::Stored;
pub use server::Handle;

/// What every request handler shares.
pub struct App {
    config: RwLock<Config>,
    sessions: auth::Sessions,
    limits: http::Limits,
    pacing: guard::Pacing,
}

impl App {
    fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn web(&self) -> Web {
        self.config()
            .web
            .expect("the server only runs with a [web] table")
    }
}

/// Start serving `config.web.listen` on a small pool of threads. The returned handle stops
/// the server when dropped and takes config reloads.
pub fn start(config: Config) -> crate::Result<Handle> {
    let web = config
        .web
        .clone()
        .ok_or_else(|| crate::Error::Other("no [web] table in the config".into()))?;
    let app = Arc::new(App {
        config: RwLock::new(config),
        sessions: auth::Sessions::default(),
        limits: http::Limits::default(),
        pacing: guard::Pacing::default(),
    });
    server::start(web.listen, app, server::Pool::default())
}
