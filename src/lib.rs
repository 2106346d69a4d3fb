//! snapnest: a backup pull server for routers and small NAS boxes.
//!
//! The binary is a thin shell over this library; tests drive the same entry points.

pub mod authorize;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dest;
pub mod error;
pub mod file_time;
pub mod hooks;
pub mod job;
pub mod localtime;
pub mod logging;
pub mod model;
pub mod prune;
pub mod quickstart;
pub mod restore;
pub mod retention;
pub mod runner;
pub mod schedule;
pub mod source;
pub mod storage;
pub mod store;
pub mod strategy;
#[cfg(test)]
mod test_rng;
pub mod verify;
pub mod web;

pub use error::{Error, Result};
