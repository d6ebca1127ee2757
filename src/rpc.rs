//! The plugin ↔ ipamd protocol: a unix stream socket carrying framed JSON requests and replies.
//!
//! **Framing.** Each message is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON
//! (at most [`MAX_FRAME`]). A connection carries one or more request/reply pairs in turn; the plugin sends
//! one and closes.
//!
//! **Request**: `{"clientVersion": "<crate::VERSION>", "call": {"method": "AddNetwork", "params": {…}}}`;
//! methods `AddNetwork`, `DelNetwork`, `Status` (no params), `GcNetwork`.
//! **Reply**: `{"ok": {"method": "AddNetwork", "result": {…}}}` or `{"error": {"code": "FailedPrecondition",
//! "message": "…"}}`.
//!
//! The server rejects a request whose `clientVersion` differs from its own [`crate::VERSION`] with
//! `FailedPrecondition`, as upstream's `validateVersion` does. Each side applies a deadline to every read and
//! write (socket timeouts). The socket is created with mode 0660 (owned by the user ipamd runs as: root).
//!
//! The fields of `AddNetwork`/`DelNetwork` are those of upstream's gRPC `AddNetworkRequest`/`Reply` and
//! `DelNetworkRequest`/`Reply`; `GcNetwork` is ours (CNI 1.1 GC).
//!
//! **Hosting it in ipamd**: implement [`AddressManager`] over the datastore (assign/unassign, checkpoint write,
//! undo on a failed write; answer `NotFound` for an unknown key on DEL, `Unavailable` before the node is
//! initialised, `ResourceExhausted` when no address is free; report the primary ENI's addresses with
//! `route_table_id: 0`), then bind and serve, and install the conflist once ready:
//!
//! ```no_run
//! use std::sync::{Arc, Condvar, Mutex};
//! use std::time::Duration;
//! use vpc_cni::rpc::{self, AddressManager};
//! # fn host(manager: Arc<dyn AddressManager>, config: &vpc_cni::config::Config) -> Result<(), Box<dyn std::error::Error>> {
//! let server = rpc::Server::bind(rpc::socket_path_from_env())?.spawn(manager, Duration::from_secs(5))?;
//! // … once the datastore can serve ADDs:
//! vpc_cni::cni::install::install(&vpc_cni::cni::install::InstallConfig::from_config(config))?;
//! // keep `server` alive for the daemon's lifetime; dropping it stops accepting and removes the socket.
//! # drop(server); Ok(()) }
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default socket path (upstream v1.23+).
pub const DEFAULT_SOCKET: &str = "/var/run/aws-node/ipamd.sock";
/// Environment variable overriding the socket path (both sides read it).
pub const SOCKET_ENV: &str = "VPC_CNI_IPAMD_SOCKET";
/// Largest frame accepted, in bytes.
pub const MAX_FRAME: usize = 1 << 20;
/// Default per-request deadline of the plugin's client.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The socket path from [`SOCKET_ENV`], else [`DEFAULT_SOCKET`].
pub fn socket_path_from_env() -> PathBuf {
    std::env::var_os(SOCKET_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// `AddNetwork`: assign an address to (network name, container id, ifname).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct AddNetworkRequest {
    /// `K8S_POD_NAME`.
    pub k8s_pod_name: String,
    /// `K8S_POD_NAMESPACE`.
    pub k8s_pod_namespace: String,
    /// `K8S_POD_INFRA_CONTAINER_ID`.
    pub k8s_pod_infra_container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub if_name: String,
    /// Network name from the configuration.
    pub network_name: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// Multi-NIC pods (not wired by this plugin yet; always false).
    pub requires_multi_nic_attachment: bool,
}

/// One address handed out (or released).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct IpAllocation {
    /// IPv4 address (dotted quad), empty if none.
    pub ipv4_addr: String,
    /// IPv6 address, empty if none.
    pub ipv6_addr: String,
    /// Device number of the ENI that owns the address.
    pub device_number: u32,
    /// Route table of that ENI; **0 means the primary ENI** (main table, no from-pod rule).
    pub route_table_id: u32,
}

/// Reply to `AddNetwork`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct AddNetworkReply {
    /// Whether an address was assigned.
    pub success: bool,
    /// The addresses (one per interface; the plugin wires the first).
    pub ip_allocations: Vec<IpAllocation>,
    /// `AWS_VPC_K8S_CNI_EXTERNALSNAT`.
    pub use_external_snat: bool,
    /// VPC IPv4 CIDRs.
    pub vpc_v4_cidrs: Vec<String>,
    /// VPC IPv6 CIDRs.
    pub vpc_v6_cidrs: Vec<String>,
    /// VLAN id for branch-ENI pods (0 = none).
    pub pod_vlan_id: u32,
    /// Branch ENI MAC.
    pub pod_eni_mac: String,
    /// Branch ENI subnet gateway.
    pub pod_eni_subnet_gw: String,
    /// Parent interface index for branch ENIs.
    pub parent_if_index: u32,
    /// Network policy mode (empty = no policy agent call).
    pub network_policy_mode: String,
}

/// `DelNetwork`: release the address of (network name, container id, ifname).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct DelNetworkRequest {
    /// `K8S_POD_NAME`.
    pub k8s_pod_name: String,
    /// `K8S_POD_NAMESPACE`.
    pub k8s_pod_namespace: String,
    /// `K8S_POD_INFRA_CONTAINER_ID`.
    pub k8s_pod_infra_container_id: String,
    /// Why: `PodDeleted`, or `SetupNSFailed` when an ADD is undone.
    pub reason: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub if_name: String,
    /// Network name.
    pub network_name: String,
    /// `K8S_POD_UID`.
    pub k8s_pod_uid: String,
    /// Ours: the interface index, in the host namespace, of the host end of the pod's veth (0: none
    /// found). ipamd deletes the pair after replying, so that the kernel's slow unregistration of
    /// the link is not part of the DEL.
    pub host_veth_index: u32,
}

/// Reply to `DelNetwork`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct DelNetworkReply {
    /// Whether an address was released.
    pub success: bool,
    /// The released addresses.
    pub ip_allocations: Vec<IpAllocation>,
    /// VLAN id for branch-ENI pods.
    pub pod_vlan_id: u32,
    /// Network policy mode.
    pub network_policy_mode: String,
    /// Ours: ipamd took the request's `hostVethIndex` and deletes that link after replying; when
    /// false, the plugin deletes the pair itself before it answers the runtime.
    pub host_veth_taken: bool,
}

/// Reply to `Status` (CNI STATUS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct StatusReply {
    /// Whether ipamd can serve ADDs (initialised, with addresses to give).
    pub ready: bool,
    /// Why not, when not ready.
    pub message: String,
}

/// One (container id, ifname) pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct AttachmentKey {
    /// Container id.
    pub container_id: String,
    /// Interface name.
    pub if_name: String,
}

/// `GcNetwork` (CNI GC): release every assignment of `network_name` whose key is not in `valid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct GcRequest {
    /// Network name.
    pub network_name: String,
    /// Attachments to keep.
    pub valid: Vec<AttachmentKey>,
}

/// One assignment released by GC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Released {
    /// The key it was assigned to.
    pub key: AttachmentKey,
    /// The address.
    pub ipv4_addr: String,
    /// Pod namespace recorded with the assignment (to find its host veth), empty if unknown.
    pub k8s_pod_namespace: String,
    /// Pod name recorded with the assignment, empty if unknown.
    pub k8s_pod_name: String,
}

/// Reply to `GcNetwork`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct GcReply {
    /// What was released.
    pub released: Vec<Released>,
}

/// A request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params")]
pub enum Call {
    /// Assign an address.
    AddNetwork(AddNetworkRequest),
    /// Release an address.
    DelNetwork(DelNetworkRequest),
    /// Readiness.
    Status,
    /// Garbage-collect assignments.
    GcNetwork(GcRequest),
}

/// A request frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// The sender's [`crate::VERSION`].
    pub client_version: String,
    /// What is asked.
    pub call: Call,
}

/// A successful reply body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "result")]
pub enum Reply {
    /// To `AddNetwork`.
    AddNetwork(AddNetworkReply),
    /// To `DelNetwork`.
    DelNetwork(DelNetworkReply),
    /// To `Status`.
    Status(StatusReply),
    /// To `GcNetwork`.
    GcNetwork(GcReply),
}

/// gRPC-style status codes the server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcCode {
    /// Version mismatch between plugin and ipamd.
    FailedPrecondition,
    /// Malformed request.
    InvalidArgument,
    /// No assignment for that key (DEL of an unknown pod).
    NotFound,
    /// No address available now.
    ResourceExhausted,
    /// ipamd not ready yet.
    Unavailable,
    /// Anything else.
    Internal,
}

/// An error answered by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcError {
    /// The kind.
    pub code: RpcCode,
    /// What failed, on which object.
    pub message: String,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: RpcCode, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for RpcError {}

/// A reply frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReplyFrame {
    /// Success.
    Ok(Reply),
    /// Failure.
    Error(RpcError),
}

/// Writes one frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds {MAX_FRAME}", body.len()),
        ));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` on a clean end of stream before the length.
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} exceeds {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad frame: {e}")))
}

/// Why a call from the plugin failed.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing is listening (or the socket does not exist): ipamd is down or not started.
    Unreachable {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// ipamd accepted but did not answer within the deadline, or the stream broke.
    Io {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// ipamd answered something we do not understand.
    Protocol(String),
    /// ipamd answered with an error.
    Remote(RpcError),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable { path, source } => {
                write!(f, "connect to ipamd at {}: {source}", path.display())
            }
            ClientError::Io { path, source } => {
                write!(f, "talk to ipamd at {}: {source}", path.display())
            }
            ClientError::Protocol(m) => write!(f, "unexpected answer from ipamd: {m}"),
            ClientError::Remote(e) => write!(f, "ipamd: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The plugin's side: one connection per call, with a deadline on every read and write.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    timeout: Duration,
}

impl Client {
    /// A client for the socket at `path`.
    pub fn new(path: impl Into<PathBuf>, timeout: Duration) -> Self {
        Client {
            path: path.into(),
            timeout,
        }
    }

    /// A client for [`socket_path_from_env`] with [`DEFAULT_TIMEOUT`].
    pub fn from_env() -> Self {
        Client::new(socket_path_from_env(), DEFAULT_TIMEOUT)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `call` and returns the reply.
    pub fn call(&self, call: Call) -> Result<Reply, ClientError> {
        let mut stream =
            UnixStream::connect(&self.path).map_err(|source| ClientError::Unreachable {
                path: self.path.clone(),
                source,
            })?;
        let io_err = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(io_err)?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(io_err)?;
        let req = Request {
            client_version: crate::VERSION.to_string(),
            call,
        };
        write_frame(&mut stream, &req).map_err(io_err)?;
        match read_frame::<ReplyFrame>(&mut stream).map_err(io_err)? {
            None => Err(ClientError::Protocol(
                "connection closed without a reply".into(),
            )),
            Some(ReplyFrame::Ok(reply)) => Ok(reply),
            Some(ReplyFrame::Error(e)) => Err(ClientError::Remote(e)),
        }
    }

    /// `AddNetwork`.
    pub fn add_network(&self, req: AddNetworkRequest) -> Result<AddNetworkReply, ClientError> {
        match self.call(Call::AddNetwork(req))? {
            Reply::AddNetwork(r) => Ok(r),
            other => Err(ClientError::Protocol(format!(
                "AddNetwork answered with {other:?}"
            ))),
        }
    }

    /// `DelNetwork`.
    pub fn del_network(&self, req: DelNetworkRequest) -> Result<DelNetworkReply, ClientError> {
        match self.call(Call::DelNetwork(req))? {
            Reply::DelNetwork(r) => Ok(r),
            other => Err(ClientError::Protocol(format!(
                "DelNetwork answered with {other:?}"
            ))),
        }
    }

    /// `Status`.
    pub fn status(&self) -> Result<StatusReply, ClientError> {
        match self.call(Call::Status)? {
            Reply::Status(r) => Ok(r),
            other => Err(ClientError::Protocol(format!(
                "Status answered with {other:?}"
            ))),
        }
    }

    /// `GcNetwork`.
    pub fn gc_network(&self, req: GcRequest) -> Result<GcReply, ClientError> {
        match self.call(Call::GcNetwork(req))? {
            Reply::GcNetwork(r) => Ok(r),
            other => Err(ClientError::Protocol(format!(
                "GcNetwork answered with {other:?}"
            ))),
        }
    }
}

/// What ipamd implements behind the socket. Calls arrive on the server's worker threads, concurrently.
pub trait AddressManager: Send + Sync {
    /// Assign (or return the existing) address of the request's key.
    fn add_network(&self, req: &AddNetworkRequest) -> Result<AddNetworkReply, RpcError>;
    /// Release the address of the request's key; `NotFound` if there is none.
    fn del_network(&self, req: &DelNetworkRequest) -> Result<DelNetworkReply, RpcError>;
    /// Whether ADDs can be served now.
    fn status(&self) -> StatusReply;
    /// Release assignments of the network absent from the valid list.
    fn gc_network(&self, req: &GcRequest) -> Result<GcReply, RpcError>;
}

/// Answers one request: version check, then dispatch.
pub fn dispatch(manager: &dyn AddressManager, req: Request) -> ReplyFrame {
    if req.client_version != crate::VERSION {
        return ReplyFrame::Error(RpcError::new(
            RpcCode::FailedPrecondition,
            format!(
                "plugin version {:?} does not match ipamd version {:?}; install the same release of both",
                req.client_version,
                crate::VERSION
            ),
        ));
    }
    let result = match req.call {
        Call::AddNetwork(r) => manager.add_network(&r).map(Reply::AddNetwork),
        Call::DelNetwork(r) => manager.del_network(&r).map(Reply::DelNetwork),
        Call::Status => Ok(Reply::Status(manager.status())),
        Call::GcNetwork(r) => manager.gc_network(&r).map(Reply::GcNetwork),
    };
    match result {
        Ok(r) => ReplyFrame::Ok(r),
        Err(e) => ReplyFrame::Error(e),
    }
}

/// A bound, not yet serving, ipamd socket.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    listener: UnixListener,
}

/// Why the server could not start.
#[derive(Debug)]
pub enum ServerError {
    /// Another process answers on the socket.
    InUse(PathBuf),
    /// Creating, binding or chmod-ing the socket failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::InUse(p) => write!(
                f,
                "ipamd socket {} is served by another process",
                p.display()
            ),
            ServerError::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for ServerError {}

impl Server {
    /// Binds `path` (creating its directory), replacing a stale socket nobody answers on; mode 0660.
    pub fn bind(path: impl Into<PathBuf>) -> Result<Server, ServerError> {
        let path = path.into();
        let io = |op, source| ServerError::Io {
            op,
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("create directory of", e))?;
        }
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if UnixStream::connect(&path).is_ok() {
                    return Err(ServerError::InUse(path));
                }
                std::fs::remove_file(&path).map_err(|e| io("remove stale socket", e))?;
                UnixListener::bind(&path).map_err(|e| io("bind", e))?
            }
            Err(e) => return Err(io("bind", e)),
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| io("chmod 0660", e))?;
        Ok(Server { path, listener })
    }

    /// Serves with the default limits ([`ServeLimits::new`]): [`DEFAULT_WORKERS`] connections at once,
    /// `deadline` per read/write.
    pub fn spawn(
        self,
        manager: Arc<dyn AddressManager>,
        deadline: Duration,
    ) -> Result<ServerHandle, ServerError> {
        self.spawn_with(manager, ServeLimits::new(deadline))
    }

    /// Serves on a background thread that accepts connections and `limits.workers` threads that
    /// serve them. At most `workers + queue` connections are taken from the socket at once; further
    /// ones wait in the kernel's listen queue until a worker is free (their clients' deadlines still
    /// run). When accepting fails for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) the accept
    /// thread backs off instead of retrying at once.
    pub fn spawn_with(
        self,
        manager: Arc<dyn AddressManager>,
        limits: ServeLimits,
    ) -> Result<ServerHandle, ServerError> {
        let Server { path, listener } = self;
        let start_error = |source| ServerError::Io {
            op: "start the server threads for",
            path: path.clone(),
            source,
        };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            in_flight: Mutex::new(0),
            slot_freed: Condvar::new(),
            max_in_flight: limits.workers.max(1) + limits.queue,
        });
        let (tx, rx) = std::sync::mpsc::channel::<UnixStream>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..limits.workers.max(1) {
            let (rx, manager, shared) = (rx.clone(), manager.clone(), shared.clone());
            let deadline = limits.deadline;
            std::thread::Builder::new()
                .name("ipamd-rpc-conn".into())
                .spawn(move || loop {
                    // The accept thread dropping its sender ends the worker.
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(stream) = next else { return };
                    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        serve_connection(stream, manager.as_ref(), deadline)
                    }));
                    if served.is_err() {
                        log::error!("rpc: a call panicked; its connection was closed");
                    }
                    shared.release_slot();
                })
                .map_err(start_error)?;
        }
        let accept_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ipamd-rpc".into())
            .spawn(move || {
                accept_loop(
                    || listener.accept().map(|(s, _)| s),
                    &accept_shared,
                    &mut std::thread::sleep,
                    |s| tx.send(s).is_ok(),
                );
            })
            .map_err(start_error)?;
        Ok(ServerHandle {
            path,
            shared,
            thread: Some(thread),
        })
    }
}

/// Default number of connections served at once.
pub const DEFAULT_WORKERS: usize = 8;
/// Default number of accepted connections that may wait for a worker.
pub const DEFAULT_QUEUE: usize = 32;
/// First back-off after the accept call ran out of resources; it doubles up to [`MAX_ACCEPT_BACKOFF`].
pub const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// Longest back-off between accept attempts (also bounds how long shutdown waits for it).
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_millis(640);

/// How much the server takes on at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections served at once, each by its own worker thread (at least 1).
    pub workers: usize,
    /// Accepted connections that may wait for a free worker.
    pub queue: usize,
    /// Deadline of each read and write on a connection.
    pub deadline: Duration,
}

impl ServeLimits {
    /// [`DEFAULT_WORKERS`] and [`DEFAULT_QUEUE`] with `deadline`.
    pub fn new(deadline: Duration) -> Self {
        ServeLimits {
            workers: DEFAULT_WORKERS,
            queue: DEFAULT_QUEUE,
            deadline,
        }
    }
}

/// State the accept thread, the workers and the handle share.
#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    /// Connections accepted and not yet finished (being served or waiting for a worker).
    in_flight: Mutex<usize>,
    slot_freed: Condvar,
    max_in_flight: usize,
}

impl Shared {
    /// Waits until a connection may be accepted and reserves its slot; false once stopping.
    fn take_slot(&self) -> bool {
        let mut n = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= self.max_in_flight && !self.stop.load(Ordering::SeqCst) {
            n = self.slot_freed.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        if self.stop.load(Ordering::SeqCst) {
            return false;
        }
        *n += 1;
        true
    }

    fn release_slot(&self) {
        let mut n = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        self.slot_freed.notify_one();
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _n = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        self.slot_freed.notify_all();
    }
}

/// Whether a failed accept means the process or system ran out of something (retrying at once
/// would only spin).
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(n) if n == rustix::io::Errno::MFILE.raw_os_error()
            || n == rustix::io::Errno::NFILE.raw_os_error()
            || n == rustix::io::Errno::NOBUFS.raw_os_error()
            || n == rustix::io::Errno::NOMEM.raw_os_error()
    )
}

/// Accepts until stopped: takes a slot, accepts, hands the connection to a worker. After an
/// out-of-resources failure it sleeps, [`MIN_ACCEPT_BACKOFF`] doubling up to [`MAX_ACCEPT_BACKOFF`],
/// until an accept succeeds again; other failures (an aborted connection) are retried at once.
fn accept_loop(
    mut accept: impl FnMut() -> io::Result<UnixStream>,
    shared: &Shared,
    sleep: &mut dyn FnMut(Duration),
    mut hand_off: impl FnMut(UnixStream) -> bool,
) {
    let mut backoff = MIN_ACCEPT_BACKOFF;
    while shared.take_slot() {
        let conn = accept();
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(stream) => {
                backoff = MIN_ACCEPT_BACKOFF;
                if !hand_off(stream) {
                    break;
                }
            }
            Err(e) => {
                shared.release_slot();
                if out_of_resources(&e) {
                    if backoff == MIN_ACCEPT_BACKOFF {
                        log::warn!("rpc: cannot accept connections: {e}; backing off");
                    }
                    sleep(backoff);
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                } else {
                    log::debug!("rpc: accept failed: {e}");
                }
            }
        }
    }
}

fn serve_connection(mut stream: UnixStream, manager: &dyn AddressManager, deadline: Duration) {
    if stream.set_read_timeout(Some(deadline)).is_err()
        || stream.set_write_timeout(Some(deadline)).is_err()
    {
        return;
    }
    loop {
        let reply = match read_frame::<Request>(&mut stream) {
            Ok(None) => return,
            Ok(Some(req)) => dispatch(manager, req),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                ReplyFrame::Error(RpcError::new(RpcCode::InvalidArgument, e.to_string()))
            }
            Err(e) => {
                log::debug!("rpc: connection ended: {e}");
                return;
            }
        };
        let failed = matches!(&reply, ReplyFrame::Error(e) if e.code == RpcCode::InvalidArgument);
        if let Err(e) = write_frame(&mut stream, &reply) {
            log::debug!("rpc: cannot send a reply: {e}");
            return;
        }
        if failed {
            return;
        }
    }
}

/// A serving socket; shutting down (or dropping) stops accepting and removes the socket file.
#[derive(Debug)]
pub struct ServerHandle {
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting new connections, waits for the accept thread and removes the socket.
    /// Connections being served finish on their worker threads, which then end.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shared.stop();
            // Wake the blocking accept.
            let _ = UnixStream::connect(&self.path);
            let _ = thread.join();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn frames_are_length_prefixed_json() {
        let mut buf = Vec::new();
        let req = Request {
            client_version: "1.2.3".into(),
            call: Call::Status,
        };
        write_frame(&mut buf, &req).unwrap();
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        assert_eq!(len, buf.len() - 4);
        let text = std::str::from_utf8(&buf[4..]).unwrap();
        assert_eq!(
            text,
            r#"{"clientVersion":"1.2.3","call":{"method":"Status"}}"#
        );
        let back: Request = read_frame(&mut &buf[..]).unwrap().unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn oversized_and_truncated_frames_are_refused() {
        let mut big = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
        big.extend_from_slice(b"{}");
        assert!(read_frame::<Request>(&mut &big[..]).is_err());
        let truncated = [0u8, 0, 0, 10, b'{'];
        assert!(read_frame::<Request>(&mut &truncated[..]).is_err());
        assert!(read_frame::<Request>(&mut &[][..]).unwrap().is_none());
    }

    /// A fixed-answer manager, to test the transport only.
    struct Recorder(Mutex<Vec<String>>);

    impl AddressManager for Recorder {
        fn add_network(&self, req: &AddNetworkRequest) -> Result<AddNetworkReply, RpcError> {
            self.0
                .lock()
                .unwrap()
                .push(format!("add {}", req.container_id));
            Ok(AddNetworkReply {
                success: true,
                ip_allocations: vec![IpAllocation {
                    ipv4_addr: "10.0.0.9".into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
        }
        fn del_network(&self, req: &DelNetworkRequest) -> Result<DelNetworkReply, RpcError> {
            self.0
                .lock()
                .unwrap()
                .push(format!("del {}", req.container_id));
            Err(RpcError::new(RpcCode::NotFound, "no such pod"))
        }
        fn status(&self) -> StatusReply {
            StatusReply {
                ready: true,
                message: String::new(),
            }
        }
        fn gc_network(&self, _req: &GcRequest) -> Result<GcReply, RpcError> {
            Ok(GcReply::default())
        }
    }

    fn temp_socket(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vcni-rpc-{}-{tag}.sock", std::process::id()))
    }

    #[test]
    fn client_and_server_talk_over_a_socket_with_mode_0660() {
        let path = temp_socket("talk");
        let mgr = Arc::new(Recorder(Mutex::new(Vec::new())));
        let handle = Server::bind(&path)
            .unwrap()
            .spawn(mgr.clone(), Duration::from_secs(2))
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let client = Client::new(&path, Duration::from_secs(2));
        let r = client
            .add_network(AddNetworkRequest {
                container_id: "c1".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.ip_allocations[0].ipv4_addr, "10.0.0.9");
        match client.del_network(DelNetworkRequest::default()) {
            Err(ClientError::Remote(e)) => assert_eq!(e.code, RpcCode::NotFound),
            other => panic!("unexpected {other:?}"),
        }
        assert!(client.status().unwrap().ready);
        assert_eq!(
            *mgr.0.lock().unwrap(),
            vec!["add c1".to_string(), "del ".to_string()]
        );
        // A second server on the same live socket is refused.
        assert!(matches!(Server::bind(&path), Err(ServerError::InUse(_))));
        handle.shutdown();
        assert!(!path.exists());
        match client.status() {
            Err(ClientError::Unreachable { .. }) => {}
            other => panic!("expected unreachable, got {other:?}"),
        }
    }

    #[test]
    fn a_different_client_version_is_a_failed_precondition() {
        let mgr = Recorder(Mutex::new(Vec::new()));
        let reply = dispatch(
            &mgr,
            Request {
                client_version: "0.0.0-other".into(),
                call: Call::Status,
            },
        );
        match reply {
            ReplyFrame::Error(e) => {
                assert_eq!(e.code, RpcCode::FailedPrecondition);
                assert!(e.message.contains("0.0.0-other"));
            }
            other => panic!("{other:?}"),
        }
        assert!(mgr.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_server_that_never_answers_hits_the_deadline() {
        let path = temp_socket("silent");
        let _ = std::fs::remove_file(&path);
        // Bound and listening (the kernel completes the connection), but nobody reads or answers.
        let _listener = UnixListener::bind(&path).unwrap();
        let started = std::time::Instant::now();
        match Client::new(&path, Duration::from_millis(200)).status() {
            Err(ClientError::Io { source, .. }) => {
                assert!(
                    matches!(
                        source.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ),
                    "{source}"
                );
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        let _ = std::fs::remove_file(&path);
    }

    /// A client call that stays connected afterwards, holding its worker.
    fn held_connection(path: &Path) -> UnixStream {
        let mut s = UnixStream::connect(path).unwrap();
        write_frame(
            &mut s,
            &Request {
                client_version: crate::VERSION.to_string(),
                call: Call::Status,
            },
        )
        .unwrap();
        let reply: ReplyFrame = read_frame(&mut s).unwrap().unwrap();
        assert!(matches!(reply, ReplyFrame::Ok(_)), "{reply:?}");
        s
    }

    #[test]
    fn connections_beyond_the_workers_wait_for_a_free_one() {
        let path = temp_socket("bounded");
        let handle = Server::bind(&path)
            .unwrap()
            .spawn_with(
                Arc::new(Recorder(Mutex::new(Vec::new()))),
                ServeLimits {
                    workers: 2,
                    queue: 1,
                    deadline: Duration::from_secs(30),
                },
            )
            .unwrap();
        // Two connections keep both workers; one more is accepted and waits in the queue.
        let first = held_connection(&path);
        let _second = held_connection(&path);
        let mut queued = UnixStream::connect(&path).unwrap();
        write_frame(
            &mut queued,
            &Request {
                client_version: crate::VERSION.to_string(),
                call: Call::Status,
            },
        )
        .unwrap();
        // Beyond that nothing is taken on: a client gives up after its deadline, unanswered.
        match Client::new(&path, Duration::from_millis(300)).status() {
            Err(ClientError::Io { .. }) => {}
            other => panic!("a connection beyond workers + queue was served: {other:?}"),
        }
        // A worker coming free serves the queued connection, then new ones.
        drop(first);
        queued
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reply: ReplyFrame = read_frame(&mut queued).unwrap().unwrap();
        assert!(matches!(reply, ReplyFrame::Ok(_)), "{reply:?}");
        drop(queued);
        assert!(Client::new(&path, Duration::from_secs(5)).status().is_ok());
        drop(handle);
    }

    fn shared(max_in_flight: usize) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            in_flight: Mutex::new(0),
            slot_freed: Condvar::new(),
            max_in_flight,
        }
    }

    /// Runs the accept loop over `results` (then stops) and returns the back-off sleeps.
    fn sleeps_for(results: Vec<io::Result<UnixStream>>) -> (Vec<Duration>, usize) {
        let sh = shared(100);
        let mut results = results.into_iter();
        let mut slept = Vec::new();
        let mut handed = 0;
        accept_loop(
            || {
                results.next().unwrap_or_else(|| {
                    sh.stop();
                    Err(io::Error::from_raw_os_error(4))
                })
            },
            &sh,
            &mut |d| slept.push(d),
            |_| {
                handed += 1;
                true
            },
        );
        (slept, handed)
    }

    #[test]
    fn accept_backs_off_when_out_of_descriptors_and_resets_after_a_success() {
        let emfile = || Err(io::Error::from_raw_os_error(24));
        let ms = Duration::from_millis;
        let (slept, _) = sleeps_for((0..9).map(|_| emfile()).collect());
        assert_eq!(
            slept,
            vec![
                ms(10),
                ms(20),
                ms(40),
                ms(80),
                ms(160),
                ms(320),
                ms(640),
                ms(640),
                ms(640)
            ]
        );
        let ok = || Ok(UnixStream::pair().unwrap().0);
        let enfile = || Err(io::Error::from_raw_os_error(23));
        let aborted = || Err(io::Error::from_raw_os_error(103));
        let (slept, handed) = sleeps_for(vec![emfile(), enfile(), ok(), emfile(), aborted(), ok()]);
        assert_eq!(
            slept,
            vec![ms(10), ms(20), ms(10)],
            "ECONNABORTED is retried at once"
        );
        assert_eq!(handed, 2);
    }

    #[test]
    fn a_stale_socket_file_is_replaced() {
        let path = temp_socket("stale");
        let _ = std::fs::remove_file(&path);
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let handle = Server::bind(&path)
            .unwrap()
            .spawn(
                Arc::new(Recorder(Mutex::new(Vec::new()))),
                Duration::from_secs(1),
            )
            .unwrap();
        assert!(Client::new(&path, Duration::from_secs(1)).status().is_ok());
        drop(handle);
    }

    #[test]
    fn garbage_gets_an_invalid_argument_reply() {
        let path = temp_socket("garbage");
        let handle = Server::bind(&path)
            .unwrap()
            .spawn(
                Arc::new(Recorder(Mutex::new(Vec::new()))),
                Duration::from_secs(1),
            )
            .unwrap();
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(&[0, 0, 0, 3, b'x', b'y', b'z']).unwrap();
        let reply: ReplyFrame = read_frame(&mut s).unwrap().unwrap();
        assert!(matches!(
            reply,
            ReplyFrame::Error(RpcError {
                code: RpcCode::InvalidArgument,
                ..
            })
        ));
        drop(handle);
    }
}
