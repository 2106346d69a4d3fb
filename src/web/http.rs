//! Just enough HTTP/1.1 for the status page, written for hostile clients: the request head is
//! capped in size and in time, bodies only come with a small Content-Length, and every
//! response closes the connection (so one idle browser never pins a worker).

use std::io::{self, BufWriter, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Limits that keep one client from holding the box.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Request line plus headers.
    pub max_head: usize,
    /// Form posts are tiny.
    pub max_body: usize,
    /// Whole request (head and body) must arrive within this.
    pub request_time: Duration,
    /// A client that takes none of a response for this long is dropped.
    pub write_stall: Duration,
    /// From then on a response must have gone at `[web] min_download_rate` on average.
    pub download_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_body: 16 * 1024,
            request_time: Duration::from_secs(10),
            write_stall: Duration::from_secs(60),
            download_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path part of the target, still percent-encoded.
    pub path: String,
    pub query: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client's address (login pacing).
    pub peer: Option<std::net::IpAddr>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// A query (`?a=b`) parameter, decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        form_value(self.query.as_bytes(), name)
    }

    /// A field of an `application/x-www-form-urlencoded` body, decoded.
    pub fn form(&self, name: &str) -> Option<String> {
        form_value(&self.body, name)
    }
}

fn form_value(data: &[u8], name: &str) -> Option<String> {
    data.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[..0]),
        };
        let plus = |s: &[u8]| -> Vec<u8> {
            s.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect()
        };
        let key = percent_decode(&plus(k))?;
        (key == name.as_bytes())
            .then(|| percent_decode(&plus(v)).and_then(|v| String::from_utf8(v).ok()))
            .flatten()
    })
}

/// `%41` → `A`; None for a broken escape.
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Everything but unreserved characters and `/` escaped: safe in a URL path and, after
/// HTML escaping, in an attribute.
pub fn percent_encode(s: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why a request could not be read; the connection closes after the answer (if any).
#[derive(Debug)]
pub enum ReadError {
    /// Answer with this status.
    Status(u16, &'static str),
    /// The client went away or sent nothing: nothing to answer.
    Gone,
}

/// Read one request, within `limits`.
pub fn read_request(stream: &mut TcpStream, limits: &Limits) -> Result<Request, ReadError> {
    read_request_by(stream, limits, Instant::now() + limits.request_time)
}

/// Read one request that must be complete by `deadline`.
pub fn read_request_by(
    stream: &mut TcpStream,
    limits: &Limits,
    deadline: Instant,
) -> Result<Request, ReadError> {
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > limits.max_head {
            return Err(ReadError::Status(431, "request header too large"));
        }
        let n = read_before(stream, &mut chunk, deadline, !buf.is_empty())?;
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_end > limits.max_head {
        return Err(ReadError::Status(431, "request header too large"));
    }
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| ReadError::Status(400, "request header is not text"))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Status(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Status(505, "HTTP/1.x only"));
    }
    if !target.starts_with('/') {
        return Err(ReadError::Status(400, "request target must be a path"));
    }
    let mut headers = Vec::new();
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            return Err(ReadError::Status(400, "malformed header"));
        };
        if headers.len() >= 100 {
            return Err(ReadError::Status(431, "too many headers"));
        }
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    let mut req = Request {
        method: method.to_string(),
        path,
        query,
        headers,
        body: Vec::new(),
        peer: stream.peer_addr().ok().map(|a| a.ip()),
    };
    if req.header("transfer-encoding").is_some() {
        return Err(ReadError::Status(411, "send a Content-Length"));
    }
    let len: usize = match req.header("content-length") {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| ReadError::Status(400, "bad Content-Length"))?,
    };
    if len > limits.max_body {
        return Err(ReadError::Status(413, "request body too large"));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = read_before(stream, &mut chunk, deadline, true)?;
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    req.body = body;
    Ok(req)
}

/// One read that must finish before `deadline` (a client trickling a byte at a time gets
/// no more than the whole request's time).
fn read_before(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    started: bool,
) -> Result<usize, ReadError> {
    let left = deadline.saturating_duration_since(Instant::now());
    let timeout = ReadError::Status(408, "request took too long");
    if left.is_zero() {
        return Err(if started { timeout } else { ReadError::Gone });
    }
    let _ = stream.set_read_timeout(Some(left));
    match stream.read(buf) {
        Ok(0) => Err(ReadError::Gone),
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(if started { timeout } else { ReadError::Gone })
        }
        Err(_) => Err(ReadError::Gone),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Writes a streamed body; called once the head is out.
pub type Streamer = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

pub enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of `file` from `start`.
    File {
        file: crate::store::parts::Joined,
        start: u64,
        len: u64,
    },
    /// Length unknown: sent in chunked encoding, ended by the last (empty) chunk.
    Stream(Streamer),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: Body::Bytes(body.into()),
        }
    }

    pub fn html(status: u16, body: String) -> Response {
        Response::new(status, "text/html; charset=utf-8", body)
    }

    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// After a form post: back to a page with a GET.
    pub fn redirect(to: &str) -> Response {
        Response::new(303, "text/plain; charset=utf-8", "").with("Location", to)
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Send it and close. `head_only` for HEAD requests.
    pub fn write_to<W: Write>(self, stream: W, head_only: bool) -> io::Result<()> {
        let mut out = BufWriter::with_capacity(64 * 1024, stream);
        write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status))?;
        for (k, v) in &self.headers {
            // Header values are ours, but a name from a file could carry a line break.
            let v: String = v.chars().filter(|c| !c.is_control()).collect();
            write!(out, "{k}: {v}\r\n")?;
        }
        // Pages are self-contained: no scripts at all, styles and images inline only.
        out.write_all(
            b"Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'\r\n\
              X-Content-Type-Options: nosniff\r\nReferrer-Policy: same-origin\r\nConnection: close\r\n",
        )?;
        match self.body {
            Body::Bytes(b) => {
                write!(out, "Content-Length: {}\r\n\r\n", b.len())?;
                if !head_only {
                    out.write_all(&b)?;
                }
            }
            Body::File {
                mut file,
                start,
                len,
            } => {
                write!(out, "Content-Length: {len}\r\n\r\n")?;
                if !head_only {
                    use std::io::Seek;
                    file.seek(io::SeekFrom::Start(start))?;
                    let copied = io::copy(&mut file.take(len), &mut out)?;
                    if copied < len {
                        // The file shrank: the promised length can't be met; cut the connection
                        // so the client sees an incomplete download, not a silently short one.
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
                    }
                }
            }
            Body::Stream(f) => {
                out.write_all(b"Transfer-Encoding: chunked\r\n\r\n")?;
                if !head_only {
                    let mut chunked =
                        BufWriter::with_capacity(64 * 1024, Chunked { out: &mut out });
                    // On an error the last chunk is never sent: the client sees a cut body.
                    f(&mut chunked)?;
                    chunked.flush()?;
                    drop(chunked);
                    out.write_all(b"0\r\n\r\n")?;
                }
            }
        }
        out.flush()
    }
}

/// HTTP/1.1 chunked encoding: every write is one chunk (a BufWriter above batches them).
struct Chunked<'a, W: Write> {
    out: &'a mut W,
}

impl<W: Write> Write for Chunked<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0); // an empty chunk would end the body
        }
        write!(self.out, "{:x}\r\n", buf.len())?;
        self.out.write_all(buf)?;
        self.out.write_all(b"\r\n")?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_coding_round_trips_any_bytes() {
        let raw = b"a b/<x>&\xff%2e";
        let enc = percent_encode(raw, true);
        assert_eq!(enc, "a%20b/%3Cx%3E%26%FF%252e");
        assert_eq!(percent_decode(enc.as_bytes()).unwrap(), raw);
        assert!(percent_decode(b"%zz").is_none());
        assert!(percent_decode(b"%4").is_none());
    }

    #[test]
    fn form_fields_are_decoded() {
        let body = b"csrf=ab%2Bc&password=p+w%26d&x";
        assert_eq!(form_value(body, "csrf").as_deref(), Some("ab+c"));
        assert_eq!(form_value(body, "password").as_deref(), Some("p w&d"));
        assert_eq!(form_value(body, "x").as_deref(), Some(""));
        assert_eq!(form_value(body, "y"), None);
    }
}
