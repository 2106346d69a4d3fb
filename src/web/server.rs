//! The listener and a fixed pool of workers. A connection is answered by one worker and
//! closed; when all workers are busy and the short backlog is full, new connections get a
//! 503 at once instead of a thread each, so a flood costs the router nothing it can't spare.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http::{read_request_by, ReadError, Response};
use super::App;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::logging;

/// How many requests are served at once, and how many more may wait.
#[derive(Clone, Copy, Debug)]
pub struct Pool {
    pub workers: usize,
    pub backlog: usize,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            workers: 8,
            backlog: 16,
        }
    }
}

/// A running server; dropping it stops it.
pub struct Handle {
    addr: SocketAddr,
    app: Arc<App>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Handle {
    /// The address actually bound (port 0 in the config picks a free one).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A reloaded config: hosts, storage and `[web]` credentials; the listen address stays.
    pub fn set_config(&self, config: Config) {
        if config.web.is_some() {
            *self.app.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

pub fn start(listen: SocketAddr, app: Arc<App>, pool: Pool) -> Result<Handle> {
    let listener = TcpListener::bind(listen)
        .map_err(|e| Error::Other(format!("web page: listening on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Other(format!("web page: {e}")))?;
    // With the moment of accept: a connection's time to send its request runs while it
    // waits for a worker, so slow clients queued behind slow clients (slowloris) cannot hold
    // the workers wave after wave.
    let (tx, rx) = sync_channel::<(TcpStream, Instant)>(pool.backlog);
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..pool.workers {
        let rx = rx.clone();
        let app = app.clone();
        std::thread::Builder::new()
            .name(format!("web-{i}"))
            .spawn(move || loop {
                let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                match next {
                    Ok((stream, accepted)) => serve(&app, stream, accepted),
                    Err(_) => return,
                }
            })
            .map_err(|e| Error::Other(format!("web page: starting a worker: {e}")))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    // Short, so `guard::Paced` checks the rate often; it enforces the stall limit itself.
    let write_stall = super::guard::WRITE_SLICE;
    let acceptor = std::thread::Builder::new()
        .name("web-accept".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = conn else {
                    // Out of file descriptors and the like: don't spin.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let _ = stream.set_write_timeout(Some(write_stall));
                match tx.try_send((stream, Instant::now())) {
                    Ok(()) => {}
                    Err(TrySendError::Full((mut s, _))) => {
                        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                        let _ = s.write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n",
                        );
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        })
        .map_err(|e| Error::Other(format!("web page: starting the listener: {e}")))?;
    logging::info(format!("web page listening on http://{addr}/"));
    Ok(Handle {
        addr,
        app,
        stop,
        acceptor: Some(acceptor),
    })
}

/// Close with a reset: the megabytes the kernel still holds for a client that reads too
/// slowly are dropped, instead of trickling out to it after the worker let go.
fn reset(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// One connection: one request, one response, close.
fn serve(app: &App, mut stream: TcpStream, accepted: Instant) {
    let deadline = accepted + app.limits.request_time;
    let resp = match read_request_by(&mut stream, &app.limits, deadline) {
        Ok(req) => {
            let head = req.method == "HEAD";
            let resp = super::routes::route(app, &req);
            let paced = super::guard::Paced::new(
                &stream,
                app.web().min_download_rate,
                app.limits.download_grace,
                app.limits.write_stall,
            );
            if let Err(e) = resp.write_to(paced, head) {
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) {
                    reset(&stream);
                }
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) {
                    logging::warn(format!("web: {} {}: {e}", req.method, req.path));
                }
            }
            return;
        }
        Err(ReadError::Gone) => return,
        Err(ReadError::Status(code, why)) => Response::text(code, format!("{why}\n")),
    };
    let _ = resp.write_to(&stream, false);
    // Let the client read the error before the socket closes under unread input.
    let _ = stream.shutdown(std::net::Shutdown::Write);
}
