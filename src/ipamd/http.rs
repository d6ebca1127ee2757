//! A small blocking HTTP/1.1 server for the introspection and metrics endpoints.
//!
//! One accept thread hands connections to a fixed pool of worker threads through a bounded queue.
//! When the queue is full the accept thread answers `503` itself, without blocking, and closes the
//! connection, so a flood of clients costs a few threads and a few file descriptors at most.
//!
//! Each connection carries one request (`Connection: close`): `GET` or `HEAD`, a request head of at
//! most [`ServerOptions::max_header_bytes`], no body. The whole head must arrive within
//! [`ServerOptions::header_timeout`] (a total deadline, not a per-read one, so a client sending one
//! byte at a time cannot hold a worker longer than that); writes time out after
//! [`ServerOptions::write_timeout`]. Accept errors such as `EMFILE` back off exponentially up to
//! one second instead of spinning.
//!
//! [`HttpHandle::shutdown`] (or dropping the handle) stops accepting, drops queued connections,
//! waits for the workers to finish the request they are on and, for a unix socket, removes the
//! socket file.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV6, TcpListener, TcpStream,
};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::BindAddress;

/// Tuning of an [`HttpServer`]. The defaults suit a node daemon answering a few local probes and
/// a Prometheus scrape.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Worker threads (at least 1). Default 2.
    pub workers: usize,
    /// Accepted connections waiting for a worker; beyond that new connections get `503`. Default 16.
    pub queue: usize,
    /// Total time allowed to receive the request head. Default 5 s (upstream's `ReadTimeout`).
    pub header_timeout: Duration,
    /// Timeout of each write of the response. Default 5 s (upstream's `WriteTimeout`).
    pub write_timeout: Duration,
    /// Largest request head (request line and headers) accepted; larger gets `431`. Default 8 KiB.
    pub max_header_bytes: usize,
    /// Permission bits of a unix socket. Default `0o660`.
    pub unix_mode: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            workers: 2,
            queue: 16,
            header_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_header_bytes: 8 * 1024,
            unix_mode: 0o660,
        }
    }
}

/// The request methods served; anything else is answered `405` before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the handler runs as for `GET`, the server sends the headers only.
    Head,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `HEAD`.
    pub method: Method,
    /// The path, without the query (`/v1/enis`). Not percent-decoded.
    pub path: String,
    /// The query after `?`, if any. Not percent-decoded.
    pub query: Option<String>,
    /// Header fields in arrival order, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A `GET` of `path` with no query and no headers (for calling a router directly).
    pub fn get(path: &str) -> Request {
        Request {
            method: Method::Get,
            path: path.to_string(),
            query: None,
            headers: Vec::new(),
        }
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A complete response. The server adds `Content-Length` and `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type` value.
    pub content_type: String,
    /// Extra header fields.
    pub headers: Vec<(String, String)>,
    /// The body (not sent for `HEAD`).
    pub body: Vec<u8>,
}

/// Content type of plain-text answers.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// Content type of JSON answers.
pub const APPLICATION_JSON: &str = "application/json";

impl Response {
    /// A response with the given status, content type and body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: content_type.to_string(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, TEXT_PLAIN, body.into())
    }

    /// An `application/json` response of an already serialized document.
    pub fn json(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, APPLICATION_JSON, body.into())
    }

    /// `self` with one more header field.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The body as text (lossy), for logs and tests.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The request handler: called on a worker thread for each well-formed `GET`/`HEAD` request.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// The standard reason phrase of the status codes this server and its routers use.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(t),
            Conn::Unix(s) => s.set_read_timeout(t),
        }
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_write_timeout(t),
            Conn::Unix(s) => s.set_write_timeout(t),
        }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_nonblocking(on),
            Conn::Unix(s) => s.set_nonblocking(on),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }

    fn peer(&self) -> String {
        match self {
            Conn::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string()),
            Conn::Unix(_) => "unix".to_string(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

/// A bound, not yet serving listener.
pub struct HttpServer {
    listener: Listener,
    local: BindAddress,
    /// (device, inode) of the socket file we created, to remove only our own on shutdown.
    unix_id: Option<(u64, u64)>,
    opts: ServerOptions,
}

impl fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServer")
            .field("local", &self.local)
            .field("opts", &self.opts)
            .finish()
    }
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl HttpServer {
    /// Binds `addr` with the default [`ServerOptions`].
    pub fn bind(addr: &BindAddress) -> io::Result<HttpServer> {
        HttpServer::bind_with(addr, ServerOptions::default())
    }

    /// Binds `addr`. A TCP port 0 picks a free port (see [`HttpServer::local_addr`]). For a unix
    /// socket, a stale socket file nobody listens on is replaced; a live one or a non-socket file
    /// at the path is an error. The socket file gets [`ServerOptions::unix_mode`].
    pub fn bind_with(addr: &BindAddress, opts: ServerOptions) -> io::Result<HttpServer> {
        let what = format!("listen on {}", addr.display());
        match addr {
            BindAddress::Tcp(a) => {
                let l = listen_tcp(a).map_err(|e| with_context(e, &what))?;
                let local = l.local_addr().map_err(|e| with_context(e, &what))?;
                Ok(HttpServer {
                    listener: Listener::Tcp(l),
                    local: BindAddress::Tcp(local),
                    unix_id: None,
                    opts,
                })
            }
            BindAddress::Unix(path) => {
                remove_stale_socket(path).map_err(|e| with_context(e, &what))?;
                let l = UnixListener::bind(path).map_err(|e| with_context(e, &what))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(opts.unix_mode))
                    .map_err(|e| with_context(e, &what))?;
                let meta = std::fs::symlink_metadata(path).map_err(|e| with_context(e, &what))?;
                Ok(HttpServer {
                    listener: Listener::Unix(l),
                    local: BindAddress::Unix(path.clone()),
                    unix_id: Some((meta.dev(), meta.ino())),
                    opts,
                })
            }
        }
    }

    /// The address actually bound (the real port when bound to port 0).
    pub fn local_addr(&self) -> &BindAddress {
        &self.local
    }

    /// Starts the accept thread and the workers; `handler` answers each request.
    pub fn serve(self, handler: Handler) -> io::Result<HttpHandle> {
        let HttpServer {
            listener,
            local,
            unix_id,
            opts,
        } = self;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel::<Conn>(opts.queue);
        let rx = Arc::new(Mutex::new(rx));
        let mut handle = HttpHandle {
            stop: Arc::clone(&stop),
            accept: None,
            workers: Vec::new(),
            local: local.clone(),
            unix_id,
        };
        // Linux thread names hold 15 bytes.
        let name = match &local {
            BindAddress::Tcp(a) => format!("http{}", a.port()),
            BindAddress::Unix(_) => "httpunix".to_string(),
        };
        for i in 0..opts.workers.max(1) {
            let rx = Arc::clone(&rx);
            let handler = Arc::clone(&handler);
            let stop = Arc::clone(&stop);
            let opts = opts.clone();
            let w = thread::Builder::new()
                .name(format!("{name}-w{i}"))
                .spawn(move || worker(&rx, &handler, &stop, &opts))?;
            handle.workers.push(w);
        }
        let a = thread::Builder::new()
            .name(format!("{name}-acc"))
            .spawn(move || accept_loop(&listener, &tx, &stop))?;
        handle.accept = Some(a);
        Ok(handle)
    }
}

/// Removes a socket file left by a previous process (connecting to it is refused).
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on the socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}

/// A running server. [`HttpHandle::shutdown`] or drop stops it.
pub struct HttpHandle {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    local: BindAddress,
    unix_id: Option<(u64, u64)>,
}

impl fmt::Debug for HttpHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpHandle")
            .field("local", &self.local)
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl HttpHandle {
    /// The address served.
    pub fn local_addr(&self) -> &BindAddress {
        &self.local
    }

    /// Stops accepting, drops queued connections, waits for requests in progress (each bounded by
    /// the header and write timeouts) and joins all threads. A unix socket file is removed.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // The accept thread sits in a blocking accept(); one connection wakes it up to see the flag.
        if !wake(&self.local) {
            // Joining would hang; the threads stay behind, idle, until the process exits.
            log::warn!(
                "http {}: could not wake the accept thread; leaving the server threads behind",
                self.local.display()
            );
            return;
        }
        let _ = accept.join();
        // The accept thread dropped the queue's sender (or will): workers drain and exit.
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let (BindAddress::Unix(path), Some((dev, ino))) = (&self.local, self.unix_id) {
            if let Ok(m) = std::fs::symlink_metadata(path) {
                if m.dev() == dev && m.ino() == ino {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

impl Drop for HttpHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Listens on `addr`. The IPv6 wildcard `[::]` (what `:port` means) takes IPv4 and IPv6 both, as Go's
/// `:port` does: the socket is dual-stack whatever `net.ipv6.bindv6only` says, and a node without IPv6
/// (`ipv6.disable=1`: no AF_INET6 sockets) gets the IPv4 wildcard instead.
pub fn listen_tcp(addr: &SocketAddr) -> io::Result<TcpListener> {
    if addr.ip() != IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        return TcpListener::bind(addr);
    }
    match listen_dual_stack(addr.port()) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::AFNOSUPPORT.raw_os_error()) => {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, addr.port()))
        }
        other => other,
    }
}

fn listen_dual_stack(port: u16) -> io::Result<TcpListener> {
    use rustix::net::{self, sockopt, AddressFamily, SocketFlags, SocketType};
    let fd = net::socket_with(
        AddressFamily::INET6,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_ipv6_v6only(&fd, false)?;
    // As std's TcpListener::bind: a restarted daemon rebinds while old connections sit in TIME_WAIT.
    sockopt::set_socket_reuseaddr(&fd, true)?;
    net::bind(&fd, &SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0))?;
    net::listen(&fd, 128)?;
    Ok(TcpListener::from(fd))
}

/// Connects once to our own listener so that a blocked accept() returns.
fn wake(local: &BindAddress) -> bool {
    match local.connect_target() {
        BindAddress::Tcp(a) => TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok(),
        BindAddress::Unix(p) => UnixStream::connect(p).is_ok(),
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

fn accept_loop(listener: &Listener, tx: &SyncSender<Conn>, stop: &AtomicBool) {
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = match listener {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Conn::Tcp(s)),
            Listener::Unix(l) => l.accept().map(|(s, _)| Conn::Unix(s)),
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok(conn) => {
                backoff = Duration::ZERO;
                match tx.try_send(conn) {
                    Ok(()) => {}
                    Err(TrySendError::Full(conn)) => refuse_busy(conn),
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM and friends: retrying at once would spin.
                backoff = (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                if backoff == BACKOFF_MIN {
                    log::warn!("http accept failed: {e}; backing off");
                } else {
                    log::debug!("http accept failed again: {e}; next try in {backoff:?}");
                }
                thread::sleep(backoff);
                if stop.load(Ordering::SeqCst) {
                    return;
                }
            }
        }
    }
}

/// Answers `503` without ever blocking the accept thread, then closes.
fn refuse_busy(mut conn: Conn) {
    log::debug!(
        "http: all workers busy, refusing a connection from {}",
        conn.peer()
    );
    if conn.set_nonblocking(true).is_ok() {
        let body = "busy, try again\n";
        let msg = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: {TEXT_PLAIN}\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.write(msg.as_bytes());
        conn.shutdown_write();
        drain(&mut conn);
    }
}

/// Reads, without waiting, what the client already sent beyond the request head (a body, a
/// pipelined request): closing with unread data resets the connection, and the reset can destroy
/// the answer before the client reads it.
fn drain(conn: &mut Conn) {
    if conn.set_nonblocking(true).is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    for _ in 0..4 {
        match conn.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

fn worker(rx: &Mutex<Receiver<Conn>>, handler: &Handler, stop: &AtomicBool, opts: &ServerOptions) {
    loop {
        let next = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(conn) = next else {
            return;
        };
        if stop.load(Ordering::SeqCst) {
            continue;
        }
        serve_connection(conn, handler, opts);
    }
}

/// Why reading a request head stopped.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// The deadline passed.
    Timeout,
    /// More than the limit without the end of the head.
    TooLarge,
    /// The peer closed or the read failed; nothing to answer.
    Gone,
}

fn read_head(conn: &mut Conn, deadline: Instant, max: usize) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024.min(max + 4));
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Timeout);
        }
        conn.set_read_timeout(Some(left))
            .map_err(|_| HeadError::Gone)?;
        let n = match conn.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Gone),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::Timeout)
            }
            Err(_) => return Err(HeadError::Gone),
        };
        // Search only where the terminator can newly appear.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf[from..]) {
            buf.truncate(from + end);
            if buf.len() > max {
                return Err(HeadError::TooLarge);
            }
            return Ok(buf);
        }
        if buf.len() > max {
            return Err(HeadError::TooLarge);
        }
    }
}

/// The length of the head up to and including its terminating empty line (`\r\n\r\n` or `\n\n`).
fn head_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// A request head the server answers itself.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Status to answer.
    pub status: u16,
    /// Short explanation, sent as the body.
    pub message: &'static str,
}

fn reject(status: u16, message: &'static str) -> Rejection {
    Rejection { status, message }
}

/// Parses a request head (request line and header fields, with or without the final empty line).
pub fn parse_head(head: &[u8]) -> Result<Request, Rejection> {
    let text = std::str::from_utf8(head).map_err(|_| reject(400, "request head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reject(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/") {
        return Err(reject(400, "malformed request line"));
    }
    if !version.starts_with("HTTP/1.") {
        return Err(reject(505, "only HTTP/1.x is served"));
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(reject(400, "malformed header field"));
        };
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(reject(400, "malformed header field"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            return Err(reject(405, "only GET and HEAD are served"))
        }
        _ => return Err(reject(400, "malformed request line")),
    };
    // origin-form, or absolute-form (`http://host/path`) reduced to its path.
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if !target.starts_with('/') {
        return Err(reject(400, "malformed request target"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    Ok(Request {
        method,
        path,
        query,
        headers,
    })
}

fn serve_connection(mut conn: Conn, handler: &Handler, opts: &ServerOptions) {
    let _ = conn.set_write_timeout(Some(opts.write_timeout));
    let deadline = Instant::now() + opts.header_timeout;
    let (response, head_only) = match read_head(&mut conn, deadline, opts.max_header_bytes) {
        Err(HeadError::Gone) => return,
        Err(HeadError::Timeout) => (
            Response::text(408, "request head not received in time\n"),
            false,
        ),
        Err(HeadError::TooLarge) => (Response::text(431, "request head too large\n"), false),
        Ok(head) => match parse_head(&head) {
            Err(r) => {
                let mut resp = Response::text(r.status, format!("{}\n", r.message));
                if r.status == 405 {
                    resp = resp.with_header("Allow", "GET, HEAD");
                }
                (resp, false)
            }
            Ok(req) => {
                let resp = catch_unwind(AssertUnwindSafe(|| handler(&req))).unwrap_or_else(|_| {
                    log::error!("http handler panicked on {}", req.path);
                    Response::text(500, "internal error\n")
                });
                log::debug!(
                    "http {:?} {} from {}: {}",
                    req.method,
                    req.path,
                    conn.peer(),
                    resp.status
                );
                (resp, req.method == Method::Head)
            }
        },
    };
    let _ = write_response(&mut conn, &response, head_only);
    conn.shutdown_write();
    drain(&mut conn);
}

fn write_response(conn: &mut Conn, r: &Response, head_only: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason_phrase(r.status),
        r.content_type,
        r.body.len()
    );
    for (n, v) in &r.headers {
        // Header injection is impossible from a handler's data: CR/LF are dropped.
        let clean = |s: &str| s.replace(['\r', '\n'], "");
        out.push_str(&format!("{}: {}\r\n", clean(n), clean(v)));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&r.body);
    }
    conn.write_all(&bytes)?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_lines_and_rejects_the_rest() {
        let r = parse_head(b"GET /v1/enis?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent:  curl \r\n\r\n")
            .expect("valid");
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/v1/enis");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(r.header("user-agent"), Some("curl"));
        let r = parse_head(b"HEAD http://h:1/metrics HTTP/1.0\n\n").expect("absolute form");
        assert_eq!((r.method, r.path.as_str()), (Method::Head, "/metrics"));
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\n\r\n").map_err(|e| e.status),
            Err(405)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/2\r\n\r\n").map_err(|e| e.status),
            Err(505)
        );
        assert_eq!(parse_head(b"GET /\r\n\r\n").map_err(|e| e.status), Err(400));
        assert_eq!(
            parse_head(b"GET * HTTP/1.1\r\n\r\n").map_err(|e| e.status),
            Err(400)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nno colon\r\n\r\n").map_err(|e| e.status),
            Err(400)
        );
        assert_eq!(
            parse_head(b"get / HTTP/1.1\r\n\r\n").map_err(|e| e.status),
            Err(400)
        );
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
