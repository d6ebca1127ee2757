//! `vpc-cni status`: what the running ipamd holds (ENIs, addresses, prefixes, pods), read from its introspection
//! endpoint, as a table or JSON, with an exit status a probe can use.
//!
//! It reads `/readyz` and `/v1/enis` from INTROSPECTION_BIND_ADDRESS (default `127.0.0.1:61679`; `unix:/path`
//! too; an unspecified address such as `:61679` or `0.0.0.0:61679` is reached on loopback). `/v1/enis` is
//! upstream's `ENIInfos` document, so the command also reads an upstream aws-node's endpoint; upstream has no
//! `/readyz` (its introspection answers unknown paths with the list of commands), and then readiness is
//! "unknown" and taken from `/v1/enis` answering.
//!
//! Exit status ([`Exit`]): 0 ready with at least one free address; 1 the daemon answered but is not ready, or has
//! no free address for the next pod (also on a node that is full); 2 no daemon answered (nothing listens,
//! timeout, introspection disabled) or the answer is not ipamd's; 64 bad usage (`EX_USAGE`).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::flags::Flags;
use crate::config::{self, BindAddress};

const USAGE: &str = "\
usage: vpc-cni status [--json] [--address ADDRESS] [--timeout SECONDS]

Shows the ENIs, addresses, /28 prefixes and pods of the ipamd running on this node, read from its
introspection endpoint (/readyz and /v1/enis).

options:
  --json              print JSON instead of the table
  --address ADDRESS   the endpoint: IP:port, [IPv6]:port, :port, localhost:port or unix:/path
                      (default: $INTROSPECTION_BIND_ADDRESS, else 127.0.0.1:61679)
  --timeout SECONDS   for each request, 1 to 600 (default 3)

exit status:
  0   ready, and at least one address is free for the next pod
  1   the daemon answered but is not ready, or no address is free (also on a full node)
  2   no daemon answered (nothing listening, timeout, introspection disabled), or the answer is not ipamd's
  64  bad usage
";

/// The exit statuses of `vpc-cni status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// 0: ready and an address is free.
    Ready,
    /// 1: answered, but not ready or no free address.
    NotServing,
    /// 2: no usable answer.
    Unreachable,
    /// 64: bad usage.
    Usage,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ready => 0,
            Exit::NotServing => 1,
            Exit::Unreachable => 2,
            Exit::Usage => 64,
        }
    }
}

/// Options of the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// JSON instead of the table.
    pub json: bool,
    /// Where to connect.
    pub address: BindAddress,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Parses the arguments after `status`; `env` reads INTROSPECTION_BIND_ADDRESS. `Ok(None)` for `--help`.
pub fn parse_args(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Options>, String> {
    let mut json = false;
    let mut address: Option<BindAddress> = None;
    let mut timeout = Duration::from_secs(3);
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        match flag.name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => json = flag.switch()?,
            "--address" => {
                let v = flags.value(&flag)?;
                address = Some(config::parse_bind_address(&v).ok_or_else(|| {
                    format!("--address {v:?}: expected IP:port, [IPv6]:port, :port, localhost:port or unix:/path")
                })?);
            }
            "--timeout" => {
                let v = flags.value(&flag)?;
                match v.parse::<u64>() {
                    Ok(n) if (1..=600).contains(&n) => timeout = Duration::from_secs(n),
                    _ => return Err(format!("--timeout {v:?}: expected whole seconds, 1 to 600")),
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let address = match address {
        Some(a) => a,
        None => match env(config::INTROSPECTION_BIND_ADDRESS).filter(|v| !v.is_empty()) {
            None => BindAddress::Tcp(config::DEFAULT_INTROSPECTION_ADDRESS),
            Some(v) => config::parse_bind_address(&v).ok_or_else(|| {
                format!(
                    "{}={v:?} is not an address",
                    config::INTROSPECTION_BIND_ADDRESS
                )
            })?,
        },
    };
    Ok(Some(Options {
        json,
        address,
        timeout,
    }))
}

/// Runs `vpc-cni status` with the arguments after the command name.
pub fn main(args: &[String]) -> ExitCode {
    let opts = match parse_args(args, &|k| std::env::var(k).ok()) {
        Ok(Some(o)) => o,
        Ok(None) => {
            super::out(USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("vpc-cni status: {e}\n\n{USAGE}");
            return ExitCode::from(Exit::Usage.code());
        }
    };
    let status = query(&opts.address, opts.timeout);
    if opts.json {
        match serde_json::to_string_pretty(&status) {
            Ok(s) => super::out(&format!("{s}\n")),
            Err(e) => {
                eprintln!("vpc-cni status: {e}");
                return ExitCode::from(Exit::Unreachable.code());
            }
        }
    } else {
        super::out(&render_table(&status));
    }
    ExitCode::from(status.exit.code())
}

/// What the daemon said about its readiness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// `/readyz` said ok.
    Ready,
    /// `/readyz` said 503 with this reason.
    NotReady(String),
    /// No `/readyz` (an upstream aws-node): taken from `/v1/enis` answering.
    Unknown,
}

/// One tracked address of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressRow {
    /// The address.
    pub address: String,
    /// `assigned`, `cooling` (released, waiting out IP_COOLDOWN_PERIOD) or `free`.
    pub state: &'static str,
    /// `namespace/name` of the pod holding it (assigned only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// One block of an ENI: a secondary address (/32) or a delegated prefix (/28).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockRow {
    /// `a.b.c.d/len`.
    pub cidr: String,
    /// A prefix rather than a single address.
    pub prefix: bool,
    /// Addresses in the block.
    pub size: u64,
    /// Addresses held by pods.
    pub assigned: u64,
    /// The addresses the daemon tracks (assigned or cooling; a free /32 is listed as free).
    pub addresses: Vec<AddressRow>,
}

/// One ENI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EniRow {
    /// ENI id.
    pub id: String,
    /// Device number on the instance.
    pub device_number: u64,
    /// The instance's primary ENI.
    pub primary: bool,
    /// Trunk ENI (security groups for pods).
    pub trunk: bool,
    /// EFA ENI.
    pub efa: bool,
    /// Its blocks, IPv4 then IPv6.
    pub blocks: Vec<BlockRow>,
}

/// A pod and its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodRow {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// The ENI holding it.
    pub eni: String,
}

/// The whole status, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The endpoint asked.
    pub endpoint: String,
    /// Whether an ipamd answered.
    pub reachable: bool,
    /// Readiness, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
    /// Why it is not reachable, or what was wrong with an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Addresses in all blocks (the daemon's `TotalIPs`).
    pub total_ips: u64,
    /// Addresses held by pods (`AssignedIPs`).
    pub assigned_ips: u64,
    /// `total_ips - assigned_ips`: what the next pods can get (cooling addresses included, as upstream counts).
    pub free_ips: u64,
    /// Secondary addresses (/32 blocks) on all ENIs.
    pub secondary_ips: u64,
    /// Delegated prefixes on all ENIs.
    pub prefixes: u64,
    /// ENIs by device number.
    pub enis: Vec<EniRow>,
    /// Pods by namespace and name.
    pub pods: Vec<PodRow>,
    /// The exit status.
    pub exit: Exit,
    /// The exit status as a number.
    pub exit_code: u8,
}

impl Status {
    fn unreachable(endpoint: String, error: String) -> Status {
        Status {
            endpoint,
            reachable: false,
            readiness: None,
            error: Some(error),
            total_ips: 0,
            assigned_ips: 0,
            free_ips: 0,
            secondary_ips: 0,
            prefixes: 0,
            enis: Vec::new(),
            pods: Vec::new(),
            exit: Exit::Unreachable,
            exit_code: Exit::Unreachable.code(),
        }
    }
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Builds the status from the `/readyz` readiness and the `/v1/enis` document (upstream's `ENIInfos`).
pub fn from_enis(endpoint: &str, readiness: Readiness, enis: &Value) -> Result<Status, String> {
    let map = enis
        .get("ENIs")
        .and_then(Value::as_object)
        .ok_or("the /v1/enis answer has no \"ENIs\" object")?;
    let mut rows = Vec::new();
    let mut pods = Vec::new();
    for (key, e) in map {
        let id = match text(e, "ID") {
            "" => key.clone(),
            id => id.to_string(),
        };
        let mut blocks = Vec::new();
        for family in ["AvailableIPv4Cidrs", "IPv6Cidrs"] {
            let Some(cidrs) = e.get(family).and_then(Value::as_object) else {
                continue;
            };
            for (cidr, c) in cidrs {
                blocks.push(block_row(cidr, c, &id, &mut pods));
            }
        }
        blocks.sort_by_key(|b| (b.prefix, sort_key(&b.cidr)));
        rows.push(EniRow {
            id,
            device_number: e.get("DeviceNumber").and_then(Value::as_u64).unwrap_or(0),
            primary: e.get("IsPrimary").and_then(Value::as_bool).unwrap_or(false),
            trunk: e.get("IsTrunk").and_then(Value::as_bool).unwrap_or(false),
            efa: e.get("IsEFA").and_then(Value::as_bool).unwrap_or(false),
            blocks,
        });
    }
    rows.sort_by(|a, b| (a.device_number, &a.id).cmp(&(b.device_number, &b.id)));
    pods.sort_by(|a: &PodRow, b: &PodRow| {
        (&a.namespace, &a.name, &a.address).cmp(&(&b.namespace, &b.name, &b.address))
    });
    let count = |f: fn(&BlockRow) -> bool| -> u64 {
        rows.iter().flat_map(|e| &e.blocks).filter(|b| f(b)).count() as u64
    };
    let secondary_ips = count(|b| !b.prefix);
    let prefixes = count(|b| b.prefix);
    let sum_size: u64 = rows.iter().flat_map(|e| &e.blocks).map(|b| b.size).sum();
    let sum_assigned: u64 = rows
        .iter()
        .flat_map(|e| &e.blocks)
        .map(|b| b.assigned)
        .sum();
    let total_ips = enis
        .get("TotalIPs")
        .and_then(Value::as_u64)
        .unwrap_or(sum_size);
    let assigned_ips = enis
        .get("AssignedIPs")
        .and_then(Value::as_u64)
        .unwrap_or(sum_assigned);
    let free_ips = total_ips.saturating_sub(assigned_ips);
    let exit = match &readiness {
        Readiness::NotReady(_) => Exit::NotServing,
        _ if free_ips == 0 => Exit::NotServing,
        _ => Exit::Ready,
    };
    Ok(Status {
        endpoint: endpoint.to_string(),
        reachable: true,
        readiness: Some(readiness),
        error: None,
        total_ips,
        assigned_ips,
        free_ips,
        secondary_ips,
        prefixes,
        enis: rows,
        pods,
        exit,
        exit_code: exit.code(),
    })
}

/// Sorts addresses and blocks numerically (`10.0.0.9` before `10.0.0.10`).
fn sort_key(cidr: &str) -> (Option<IpAddr>, String) {
    let addr = cidr.split('/').next().and_then(|a| a.parse().ok());
    (addr, cidr.to_string())
}

fn block_row(cidr: &str, c: &Value, eni: &str, pods: &mut Vec<PodRow>) -> BlockRow {
    let prefix_len: Option<u32> = cidr.split_once('/').and_then(|(_, l)| l.parse().ok());
    let is_v6 = cidr.contains(':');
    let bits = if is_v6 { 128 } else { 32 };
    let size = match prefix_len {
        Some(l) if l <= bits => 1u64.checked_shl(bits - l).unwrap_or(u64::MAX),
        _ => 1,
    };
    let prefix = c
        .get("IsPrefix")
        .and_then(Value::as_bool)
        .unwrap_or(size > 1);
    let mut addresses = Vec::new();
    let mut assigned = 0;
    if let Some(ips) = c.get("IPAddresses").and_then(Value::as_object) {
        for (ip, a) in ips {
            let meta = a.get("IPAMMetadata").cloned().unwrap_or(Value::Null);
            let (ns, name) = (text(&meta, "k8sPodNamespace"), text(&meta, "k8sPodName"));
            let key_set = a.get("IPAMKey").is_some_and(|k| {
                ["networkName", "containerID", "ifName"]
                    .iter()
                    .any(|f| !text(k, f).is_empty())
            });
            let released = !matches!(text(a, "UnassignedTime"), "" | ZERO_TIME);
            let state = if key_set || (!released && !name.is_empty()) {
                "assigned"
            } else if released {
                "cooling"
            } else {
                "free"
            };
            let address = match text(a, "Address") {
                "" => ip.clone(),
                x => x.to_string(),
            };
            let pod = (state == "assigned").then(|| {
                pods.push(PodRow {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    address: address.clone(),
                    eni: eni.to_string(),
                });
                format!("{ns}/{name}")
            });
            if state == "assigned" {
                assigned += 1;
            }
            addresses.push(AddressRow {
                address,
                state,
                pod,
            });
        }
    }
    if !prefix && addresses.is_empty() {
        addresses.push(AddressRow {
            address: cidr.split('/').next().unwrap_or(cidr).to_string(),
            state: "free",
            pod: None,
        });
    }
    addresses.sort_by_key(|a| sort_key(&a.address));
    BlockRow {
        cidr: cidr.to_string(),
        prefix,
        size,
        assigned,
        addresses,
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut width = vec![0; n];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// The human table.
pub fn render_table(s: &Status) -> String {
    let mut out = String::new();
    if !s.reachable {
        out.push_str(&format!(
            "ipamd at {}: not reachable: {}\n",
            s.endpoint,
            s.error.as_deref().unwrap_or("no answer")
        ));
        return out;
    }
    let readiness = match &s.readiness {
        Some(Readiness::Ready) => "ready".to_string(),
        Some(Readiness::NotReady(why)) => format!("not ready: {why}"),
        Some(Readiness::Unknown) | None => "readiness unknown (no /readyz)".to_string(),
    };
    out.push_str(&format!("ipamd at {}: {readiness}\n", s.endpoint));
    out.push_str(&format!(
        "{} ENI{}, {} secondary address{}, {} prefix{}; {} addresses: {} assigned, {} free; {} pod{}\n",
        s.enis.len(),
        plural(s.enis.len() as u64, "", "s"),
        s.secondary_ips,
        plural(s.secondary_ips, "", "es"),
        s.prefixes,
        plural(s.prefixes, "", "es"),
        s.total_ips,
        s.assigned_ips,
        s.free_ips,
        s.pods.len(),
        plural(s.pods.len() as u64, "", "s"),
    ));
    if s.free_ips == 0 {
        out.push_str("no free address: the next pod waits for the pool to grow\n");
    }
    out.push('\n');
    let mut enis = vec![[
        "ENI",
        "DEVICE",
        "PRIMARY",
        "ADDRESSES",
        "PREFIXES",
        "ASSIGNED",
        "FREE",
    ]
    .map(String::from)
    .to_vec()];
    for e in &s.enis {
        let size: u64 = e.blocks.iter().map(|b| b.size).sum();
        let assigned: u64 = e.blocks.iter().map(|b| b.assigned).sum();
        let mut id = e.id.clone();
        if e.trunk {
            id.push_str(" (trunk)");
        }
        if e.efa {
            id.push_str(" (efa)");
        }
        enis.push(vec![
            id,
            e.device_number.to_string(),
            yes(e.primary),
            e.blocks.iter().filter(|b| !b.prefix).count().to_string(),
            e.blocks.iter().filter(|b| b.prefix).count().to_string(),
            assigned.to_string(),
            size.saturating_sub(assigned).to_string(),
        ]);
    }
    out.push_str(&columns(&enis));
    out.push('\n');
    let mut addrs = vec![["ENI", "BLOCK", "ADDRESS", "STATE", "POD"]
        .map(String::from)
        .to_vec()];
    for e in &s.enis {
        for b in &e.blocks {
            if b.prefix {
                addrs.push(vec![
                    e.id.clone(),
                    b.cidr.clone(),
                    "-".into(),
                    format!("prefix, {} of {} assigned", b.assigned, b.size),
                    String::new(),
                ]);
            }
            for a in &b.addresses {
                addrs.push(vec![
                    e.id.clone(),
                    b.cidr.clone(),
                    a.address.clone(),
                    a.state.to_string(),
                    a.pod.clone().unwrap_or_default(),
                ]);
            }
        }
    }
    out.push_str(&columns(&addrs));
    out
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: String,
}

/// One `GET` over HTTP/1.1 (`Connection: close`), the whole answer within `timeout`.
pub fn http_get(addr: &BindAddress, path: &str, timeout: Duration) -> io::Result<Answer> {
    let began = Instant::now();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: vpc-cni-status\r\nConnection: close\r\n\r\n");
    let left = || {
        timeout
            .checked_sub(began.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    };
    /// Writes the request and reads the answer to the end, every step within what is `left`.
    fn exchange<S>(
        s: &S,
        request: &[u8],
        left: &dyn Fn() -> io::Result<Duration>,
        set_write: fn(&S, Option<Duration>) -> io::Result<()>,
        set_read: fn(&S, Option<Duration>) -> io::Result<()>,
    ) -> io::Result<Vec<u8>>
    where
        for<'a> &'a S: Read + Write,
    {
        set_write(s, Some(left()?))?;
        let mut w = s;
        w.write_all(request)?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            set_read(s, Some(left()?))?;
            let mut r = s;
            match r.read(&mut buf) {
                Ok(0) => return Ok(raw),
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if raw.len() > 64 * 1024 * 1024 {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "answer larger than 64 MiB",
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "timed out waiting for the answer",
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }
    let raw = match addr.connect_target() {
        BindAddress::Tcp(a) => exchange(
            &TcpStream::connect_timeout(&a, left()?)?,
            request.as_bytes(),
            &left,
            TcpStream::set_write_timeout,
            TcpStream::set_read_timeout,
        )?,
        BindAddress::Unix(p) => exchange(
            &UnixStream::connect(&p)?,
            request.as_bytes(),
            &left,
            UnixStream::set_write_timeout,
            UnixStream::set_read_timeout,
        )?,
    };
    parse_answer(&raw)
}

/// Parses an HTTP/1.x answer read to the end of the connection (`Content-Length` honoured when present).
pub fn parse_answer(raw: &[u8]) -> io::Result<Answer> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("not an HTTP answer (no end of head)"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("HTTP head is not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| bad("not an HTTP answer (bad status line)"))?;
    let mut body = &raw[end + 4..];
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        return Err(bad("chunked answers are not supported"));
    }
    if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if body.len() < n {
            return Err(bad("answer shorter than its Content-Length"));
        }
        body = &body[..n];
    }
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

/// Asks the daemon at `addr`: `/readyz`, then `/v1/enis`.
pub fn query(addr: &BindAddress, timeout: Duration) -> Status {
    let endpoint = addr.display();
    let ready = match http_get(addr, "/readyz", timeout) {
        Ok(a) => a,
        Err(e) => return Status::unreachable(endpoint, e.to_string()),
    };
    let readiness = match ready.status {
        200 if ready.body.trim() == "ok" => Readiness::Ready,
        503 => Readiness::NotReady(
            ready
                .body
                .trim()
                .trim_start_matches("not ready:")
                .trim()
                .to_string(),
        ),
        _ => Readiness::Unknown,
    };
    let enis = match http_get(addr, "/v1/enis", timeout) {
        Ok(a) if a.status == 200 => a,
        Ok(a) => {
            return Status::unreachable(
                endpoint,
                format!("/v1/enis answered {}: {}", a.status, a.body.trim()),
            )
        }
        Err(e) => return Status::unreachable(endpoint, format!("/v1/enis: {e}")),
    };
    let doc: Value = match serde_json::from_str(&enis.body) {
        Ok(v) => v,
        Err(e) => {
            return Status::unreachable(endpoint, format!("/v1/enis is not JSON: {e}"));
        }
    };
    from_enis(&endpoint, readiness, &doc)
        .unwrap_or_else(|e| Status::unreachable(endpoint.clone(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A `/v1/enis` answer in upstream's shape: a primary ENI with three /32s (one assigned, one cooling, one
    /// free and untracked) and a secondary ENI with a /28 prefix holding two pods.
    fn sample() -> Value {
        let zero = "0001-01-01T00:00:00Z";
        let key = |net: &str| json!({"networkName": net, "containerID": "", "ifName": ""});
        json!({
            "TotalIPs": 19,
            "AssignedIPs": 3,
            "ENIs": {
                "eni-0aaa": {
                    "ID": "eni-0aaa", "IsPrimary": true, "IsTrunk": false, "IsEFA": false, "DeviceNumber": 0,
                    "AvailableIPv4Cidrs": {
                        "10.0.1.10/32": {"Cidr": {"IP": "10.0.1.10", "Mask": "/////w=="}, "IsPrefix": false,
                            "AddressFamily": "", "IPAddresses": {
                                "10.0.1.10": {"Address": "10.0.1.10", "IPAMKey": key("aws-cni"),
                                    "IPAMMetadata": {"k8sPodNamespace": "default", "k8sPodName": "web-1"},
                                    "AssignedTime": "2026-12-01T12:00:00.5Z", "UnassignedTime": zero}}},
                        "10.0.1.9/32": {"Cidr": {"IP": "10.0.1.9", "Mask": "/////w=="}, "IsPrefix": false,
                            "AddressFamily": "", "IPAddresses": {
                                "10.0.1.9": {"Address": "10.0.1.9", "IPAMKey": key(""),
                                    "IPAMMetadata": {}, "AssignedTime": zero,
                                    "UnassignedTime": "2026-12-01T12:01:00Z"}}},
                        "10.0.1.200/32": {"Cidr": {"IP": "10.0.1.200", "Mask": "/////w=="}, "IsPrefix": false,
                            "AddressFamily": "", "IPAddresses": {}}
                    },
                    "IPv6Cidrs": {}
                },
                "eni-0bbb": {
                    "ID": "eni-0bbb", "IsPrimary": false, "IsTrunk": false, "IsEFA": false, "DeviceNumber": 1,
                    "AvailableIPv4Cidrs": {
                        "10.0.2.32/28": {"Cidr": {"IP": "10.0.2.32", "Mask": "////8A=="}, "IsPrefix": true,
                            "AddressFamily": "", "IPAddresses": {
                                "10.0.2.33": {"Address": "10.0.2.33", "IPAMKey": key("aws-cni"),
                                    "IPAMMetadata": {"k8sPodNamespace": "kube-system", "k8sPodName": "coredns-x"},
                                    "AssignedTime": "2026-12-01T12:00:01Z", "UnassignedTime": zero},
                                "10.0.2.32": {"Address": "10.0.2.32", "IPAMKey": key("aws-cni"),
                                    "IPAMMetadata": {"k8sPodNamespace": "default", "k8sPodName": "web-2"},
                                    "AssignedTime": "2026-12-01T12:00:02Z", "UnassignedTime": zero}}}
                    },
                    "IPv6Cidrs": null
                }
            }
        })
    }

    fn env_none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_table_shows_enis_blocks_addresses_and_pods() {
        let s = from_enis("127.0.0.1:61679", Readiness::Ready, &sample()).unwrap();
        let want = "\
ipamd at 127.0.0.1:61679: ready
2 ENIs, 3 secondary addresses, 1 prefix; 19 addresses: 3 assigned, 16 free; 3 pods

ENI       DEVICE  PRIMARY  ADDRESSES  PREFIXES  ASSIGNED  FREE
eni-0aaa  0       yes      3          0         1         2
eni-0bbb  1       no       0          1         2         14

ENI       BLOCK          ADDRESS     STATE                     POD
eni-0aaa  10.0.1.9/32    10.0.1.9    cooling
eni-0aaa  10.0.1.10/32   10.0.1.10   assigned                  default/web-1
eni-0aaa  10.0.1.200/32  10.0.1.200  free
eni-0bbb  10.0.2.32/28   -           prefix, 2 of 16 assigned
eni-0bbb  10.0.2.32/28   10.0.2.32   assigned                  default/web-2
eni-0bbb  10.0.2.32/28   10.0.2.33   assigned                  kube-system/coredns-x
";
        assert_eq!(render_table(&s), want);
        assert_eq!(s.exit, Exit::Ready);
    }

    #[test]
    fn json_lists_pods_with_their_eni_and_the_exit_code() {
        let s = from_enis("unix:/run/i.sock", Readiness::Ready, &sample()).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["total_ips"], 19);
        assert_eq!(v["free_ips"], 16);
        assert_eq!(v["prefixes"], 1);
        assert_eq!(v["secondary_ips"], 3);
        assert_eq!(
            v["pods"],
            json!([
                {"namespace": "default", "name": "web-1", "address": "10.0.1.10", "eni": "eni-0aaa"},
                {"namespace": "default", "name": "web-2", "address": "10.0.2.32", "eni": "eni-0bbb"},
                {"namespace": "kube-system", "name": "coredns-x", "address": "10.0.2.33", "eni": "eni-0bbb"},
            ])
        );
        assert_eq!(
            v["enis"][0]["blocks"][0]["addresses"][0]["state"],
            "cooling"
        );
        assert_eq!(v["readiness"], "ready");
    }

    #[test]
    fn not_ready_or_no_free_address_exits_1() {
        let s = from_enis("x", Readiness::NotReady("starting".into()), &sample()).unwrap();
        assert_eq!((s.exit, s.exit_code), (Exit::NotServing, 1));
        assert!(render_table(&s).starts_with("ipamd at x: not ready: starting\n"));
        let mut full = sample();
        full["AssignedIPs"] = json!(19);
        let s = from_enis("x", Readiness::Ready, &full).unwrap();
        assert_eq!(s.exit_code, 1);
        assert!(render_table(&s).contains("no free address"));
        let empty = json!({"TotalIPs": 0, "AssignedIPs": 0, "ENIs": {}});
        let s = from_enis("x", Readiness::Unknown, &empty).unwrap();
        assert_eq!(s.exit_code, 1);
        assert!(render_table(&s).contains("readiness unknown"));
        assert!(from_enis("x", Readiness::Ready, &json!({"AvailableCommands": []})).is_err());
    }

    #[test]
    fn unreachable_exits_2_and_says_why() {
        let dir = std::env::temp_dir().join(format!("vcni-status-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let s = query(
            &BindAddress::Unix(dir.join("nobody.sock")),
            Duration::from_secs(1),
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!((s.reachable, s.exit_code), (false, 2));
        let t = render_table(&s);
        assert!(t.contains("nobody.sock: not reachable: "), "{t}");
    }

    #[test]
    fn arguments_and_the_environment() {
        let o = parse_args(&[], &env_none).unwrap().unwrap();
        assert_eq!(
            o.address,
            BindAddress::Tcp(config::DEFAULT_INTROSPECTION_ADDRESS)
        );
        assert!(!o.json);
        let env =
            |k: &str| (k == "INTROSPECTION_BIND_ADDRESS").then(|| "unix:/run/x.sock".to_string());
        let o = parse_args(&["--json".into()], &env).unwrap().unwrap();
        assert_eq!(o.address, BindAddress::Unix("/run/x.sock".into()));
        assert!(o.json);
        let o = parse_args(
            &["--address=:7000".into(), "--timeout".into(), "9".into()],
            &env,
        )
        .unwrap()
        .unwrap();
        assert_eq!(o.address.connect_target().display(), "127.0.0.1:7000");
        assert_eq!(o.timeout, Duration::from_secs(9));
        assert_eq!(parse_args(&["-h".into()], &env_none).unwrap(), None);
        for bad in [
            vec!["--bogus"],
            vec!["--address"],
            vec!["--address", "example.com:1"],
            vec!["--timeout", "0"],
            vec!["--json=yes"],
        ] {
            let args: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(parse_args(&args, &env_none).is_err(), "{bad:?}");
        }
        let bad_env = |_: &str| Some("nowhere".to_string());
        assert!(parse_args(&[], &bad_env).is_err());
    }

    #[test]
    fn answers_are_parsed_by_content_length() {
        let a = parse_answer(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 19\r\n\r\nnot ready: startingEXTRA").unwrap();
        assert_eq!(
            a,
            Answer {
                status: 503,
                body: "not ready: starting".into()
            }
        );
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_err());
    }
}
