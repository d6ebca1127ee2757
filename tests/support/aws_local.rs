//! Small local HTTP servers on std::net for the AWS adapter tests: an IMDSv2 stand-in, a
//! container credentials endpoint, an STS stand-in, a scripted EC2 stand-in. Each records the
//! requests it saw.
#![allow(dead_code)]
// Test support: a panic here is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// Close the connection without answering.
    pub drop: bool,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            body: body.into(),
            headers: Vec::new(),
            drop: false,
        }
    }
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply::new(200, body)
    }
    pub fn dropped() -> Reply {
        Reply {
            status: 0,
            body: String::new(),
            headers: Vec::new(),
            drop: true,
        }
    }
}

type Handler = dyn Fn(&SeenRequest) -> Reply + Send + Sync;

/// A running server; stops accepting when dropped.
pub struct LocalServer {
    pub addr: String,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    stop: Arc<AtomicBool>,
}

impl LocalServer {
    /// Serves `handler` on 127.0.0.1 (any free port).
    pub fn start(handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> LocalServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let seen = seen.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let handler = handler.clone();
                    let seen = seen.clone();
                    thread::spawn(move || serve(stream, &*handler, &seen));
                }
            });
        }
        LocalServer { addr, seen, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Reads one HTTP/1.1 request (Content-Length bodies only).
pub fn read_request(stream: &mut impl Read) -> Option<SeenRequest> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some(SeenRequest {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Writes `reply` as an HTTP/1.1 answer with `Connection: close`.
pub fn write_reply(stream: &mut impl Write, reply: &Reply) {
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(reply.body.as_bytes());
    let _ = stream.flush();
}

fn serve(mut stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<SeenRequest>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(req) = read_request(&mut stream) else {
        return;
    };
    seen.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    if reply.drop {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    write_reply(&mut stream, &reply);
}

/// An IMDSv2 stand-in with a key/value tree, token TTLs and knobs for failures.
pub struct FakeImds {
    pub keys: Mutex<BTreeMap<String, String>>,
    /// token -> expiry (Instant)
    pub tokens: Mutex<BTreeMap<String, std::time::Instant>>,
    /// Answer this many GETs with 500 before answering normally.
    pub fail_next: Mutex<u32>,
    /// Reject every token issued so far (as if IMDS restarted).
    pub counter: Mutex<u64>,
}

impl FakeImds {
    pub fn new(keys: &[(&str, &str)]) -> Arc<FakeImds> {
        Arc::new(FakeImds {
            keys: Mutex::new(
                keys.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            tokens: Mutex::new(BTreeMap::new()),
            fail_next: Mutex::new(0),
            counter: Mutex::new(0),
        })
    }

    pub fn set(&self, key: &str, value: &str) {
        self.keys
            .lock()
            .unwrap()
            .insert(key.to_string(), value.to_string());
    }

    pub fn revoke_tokens(&self) {
        self.tokens.lock().unwrap().clear();
    }

    pub fn handle(&self, req: &SeenRequest) -> Reply {
        if req.method == "PUT" && req.path == "/latest/api/token" {
            let ttl: u64 = match req
                .header("x-aws-ec2-metadata-token-ttl-seconds")
                .and_then(|v| v.parse().ok())
            {
                Some(t) if (1..=21600).contains(&t) => t,
                _ => return Reply::new(400, ""),
            };
            let mut n = self.counter.lock().unwrap();
            *n += 1;
            let token = format!("token-{}", *n);
            self.tokens.lock().unwrap().insert(
                token.clone(),
                std::time::Instant::now() + Duration::from_secs(ttl),
            );
            return Reply::ok(token);
        }
        if req.method != "GET" {
            return Reply::new(405, "");
        }
        let valid = req
            .header("x-aws-ec2-metadata-token")
            .and_then(|t| self.tokens.lock().unwrap().get(t).copied())
            .is_some_and(|exp| exp > std::time::Instant::now());
        if !valid {
            return Reply::new(401, "");
        }
        {
            let mut f = self.fail_next.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Reply::new(500, "");
            }
        }
        let key = req.path.trim_start_matches("/latest/meta-data/");
        match self.keys.lock().unwrap().get(key) {
            Some(v) => Reply::ok(v.clone()),
            None => Reply::new(404, ""),
        }
    }

    /// Starts a server for this IMDS.
    pub fn serve(self: &Arc<Self>) -> LocalServer {
        let me = self.clone();
        LocalServer::start(move |r| me.handle(r))
    }
}
