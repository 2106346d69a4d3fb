//! Live counters of a running job, written by the job and read by whoever shows them
//! (a terminal progress bar now, the status page later). Reads are never blocked long.

// portable-atomic: 32-bit MIPS (a router target) has no native 64-bit atomics.
use portable_atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Default)]
pub struct Progress {
    phase: Mutex<&'static str>,
    current: Mutex<String>,
    pub files_total: AtomicU64,
    pub bytes_total: AtomicU64,
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    cancelled: AtomicBool,
}

/// A consistent-enough copy for display.
#[derive(Clone, Debug, Default)]
pub struct ProgressView {
    pub phase: &'static str,
    pub current: String,
    pub files_total: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub bytes_done: u64,
}

impl Progress {
    pub fn new() -> Progress {
        let p = Progress::default();
        p.set_phase("starting");
        p
    }

    pub fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap() = phase;
    }

    pub fn set_current(&self, path: &str) {
        let mut c = self.current.lock().unwrap();
        c.clear();
        c.push_str(path);
    }

    pub fn start_totals(&self, files: u64, bytes: u64) {
        self.files_total.store(files, Relaxed);
        self.bytes_total.store(bytes, Relaxed);
        self.files_done.store(0, Relaxed);
        self.bytes_done.store(0, Relaxed);
    }

    /// More work found (the job counts its listing window by window).
    pub fn add_totals(&self, files: u64, bytes: u64) {
        self.files_total.fetch_add(files, Relaxed);
        self.bytes_total.fetch_add(bytes, Relaxed);
    }

    /// Ask the job to stop at its next checkpoint; the staging folder stays for resume.
    pub fn cancel(&self) {
        self.cancelled.store(true, Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Relaxed)
    }

    /// `Err(Cancelled)` once `cancel` was called: the job's checkpoints between steps.
    pub fn checkpoint(&self) -> crate::Result<()> {
        if self.is_cancelled() {
            Err(crate::Error::Cancelled)
        } else {
            Ok(())
        }
    }

    pub fn view(&self) -> ProgressView {
        ProgressView {
            phase: *self.phase.lock().unwrap(),
            current: self.current.lock().unwrap().clone(),
            files_total: self.files_total.load(Relaxed),
            bytes_total: self.bytes_total.load(Relaxed),
            files_done: self.files_done.load(Relaxed),
            bytes_done: self.bytes_done.load(Relaxed),
        }
    }
}

/// `fetching 120/5000 files, 56 MB/1.2 GB at 12 MB/s`: one format for the terminal, the
/// daemon's queue waiters and `snapnest status`.
pub fn progress_line(phase: &str, files: (u64, u64), bytes: (u64, u64), rate: u64) -> String {
    format!(
        "{phase} {}/{} files, {}/{} at {}/s",
        files.0,
        files.1,
        bytesize::ByteSize(bytes.0),
        bytesize::ByteSize(bytes.1),
        bytesize::ByteSize(rate)
    )
}
