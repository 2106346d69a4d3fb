//! The outcome of one run as the user reads it: counters, problems, one summary line.

use std::time::Duration;

use crate::model::{FileProblem, Outcome, Stats};

/// What one run did, for the summary line and the exit code.
#[derive(Debug)]
pub struct Report {
    pub host: String,
    /// The catalog's id of this run, once it was recorded.
    pub run_id: Option<i64>,
    pub outcome: Outcome,
    pub stats: Stats,
    /// Folder name of the published snapshot.
    pub snapshot: Option<String>,
    pub problems: Vec<FileProblem>,
    /// Setup advice for the user (first run of a host: folders the key cannot read, and why).
    pub advice: Vec<String>,
    /// Why the run failed, when it did.
    pub message: Option<String>,
    pub duration: Duration,
    pub method: &'static str,
    /// Stopped on request (shutdown, cancel), not by a fault.
    pub interrupted: bool,
}

impl Report {
    /// A run that has not (yet) done anything: failed until it says otherwise.
    pub fn failed(host: &str, message: Option<String>) -> Report {
        Report {
            host: host.to_string(),
            run_id: None,
            outcome: Outcome::Failed,
            stats: Stats::default(),
            snapshot: None,
            problems: Vec::new(),
            advice: Vec::new(),
            message,
            duration: Duration::ZERO,
            method: "",
            interrupted: false,
        }
    }

    pub fn summary(&self) -> String {
        let s = &self.stats;
        let mut line = format!(
            "{}: {}{} in {}: {} files, {} ({} new files, {} new; {} linked",
            self.host,
            self.outcome.as_str(),
            if self.method.is_empty() {
                String::new()
            } else {
                format!(" via {}", self.method)
            },
            humantime::format_duration(Duration::from_millis(self.duration.as_millis() as u64)),
            s.files,
            bytesize::ByteSize(s.bytes),
            s.new_files,
            bytesize::ByteSize(s.new_bytes),
            s.linked,
        );
        if s.resumed > 0 {
            line += &format!(", {} resumed", s.resumed);
        }
        line += ")";
        if s.warnings + s.errors > 0 {
            line += &format!(", {} warnings, {} errors", s.warnings, s.errors);
        }
        if let Some(name) = &self.snapshot {
            line += &format!(" -> {name}");
        }
        if let Some(m) = &self.message {
            line += &format!(": {m}");
        }
        line
    }
}
