//! Per-host bandwidth limit. Reading slower makes TCP's flow control slow the sender,
//! so limiting what we read limits what crosses the network.

use std::io::{self, Read};
use std::time::{Duration, Instant};

pub struct Throttle {
    rate: Option<u64>,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    pub fn new(bytes_per_second: Option<u64>) -> Throttle {
        Throttle {
            rate: bytes_per_second,
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// Account for `n` bytes just read; sleeps until the average rate is within the limit.
    pub fn consumed(&mut self, n: usize) {
        let Some(rate) = self.rate else { return };
        self.bytes += n as u64;
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
        // Forget history now and then, so an idle stretch does not buy a burst later.
        if elapsed > Duration::from_secs(5) {
            self.started = Instant::now();
            self.bytes = 0;
        }
    }

    pub fn reader<'a, R: Read + ?Sized>(&'a mut self, inner: &'a mut R) -> Throttled<'a, R> {
        Throttled {
            inner,
            throttle: self,
        }
    }
}

pub struct Throttled<'a, R: Read + ?Sized> {
    inner: &'a mut R,
    throttle: &'a mut Throttle,
}

impl<R: Read + ?Sized> Read for Throttled<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.throttle.consumed(n);
        Ok(n)
    }
}
