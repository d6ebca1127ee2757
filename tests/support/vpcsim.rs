//! Test harness for the VPC-in-a-box (tests/vpcsim): starts the Python sim, reads its state file, drives its
//! control API, and stops it on drop.
//!
//! Include it from an integration test with:
//! ```ignore
//! #[path = "support/vpcsim.rs"]
//! mod vpcsim;
//! ```
//! The sim runs as root (it creates network namespaces `<name>-vpc`, `<name>-n1`, ...). Its name is the given
//! prefix plus this process's pid and a counter, so parallel tests never share one.
#![allow(dead_code)]

use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why a sim operation failed: the step and what was seen.
#[derive(Debug)]
pub struct SimError(pub String);

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vpcsim: {}", self.0)
    }
}

impl std::error::Error for SimError {}

fn err(msg: impl Into<String>) -> SimError {
    SimError(msg.into())
}

/// Options for [`VpcSim::start_with`].
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Create network namespaces (vpc router, internet, one per node). Off: EC2 + loopback IMDS only (faster).
    pub netns: bool,
    /// Nodes (instance types) to launch during start.
    pub nodes: Vec<String>,
    /// Region of the simulated EC2.
    pub region: String,
    /// Seed of the scattered address allocation (None: random; the state file's `ec2.seed` tells which).
    pub seed: Option<u64>,
    /// Hand out addresses and /28s lowest free first instead of scattered over the subnet (EC2's way).
    pub lowest_first: bool,
    /// Seconds an attached ENI stays `attaching` before the node sees it (None: the sim's default, 1 s).
    pub attach_delay: Option<f64>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            netns: true,
            nodes: Vec::new(),
            region: "us-west-2".into(),
            seed: None,
            lowest_first: false,
            attach_delay: None,
        }
    }
}

/// A simulated instance: an EC2 instance, its IMDS and (with namespaces) its network namespace.
#[derive(Debug, Clone)]
pub struct Node {
    /// Short name inside the sim (`n1`, `n2`, ...).
    pub name: String,
    pub instance_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub az: String,
    pub primary_ip: String,
    /// The public IPv4 address the internet gateway translates `primary_ip` to (None: no public address).
    pub public_ip: Option<String>,
    pub primary_eni: String,
    pub mac: String,
    /// `http://127.0.0.1:PORT`: this node's IMDS on loopback (what AWS_EC2_METADATA_SERVICE_ENDPOINT should be).
    pub imds_endpoint: String,
    /// The node's network namespace (`<sim>-n1`), when the sim runs with namespaces.
    pub namespace: Option<String>,
    /// `http://169.254.169.254` reachable from inside `namespace`.
    pub imds_netns_endpoint: Option<String>,
    /// Environment for a client on this node (AWS keys, region, EC2 endpoint, this node's IMDS endpoint).
    pub env: Vec<(String, String)>,
    /// Environment for a process inside `namespace` (EC2 on 169.254.170.10, IMDS on 169.254.169.254).
    pub netns_env: Vec<(String, String)>,
}

impl Node {
    fn from_json(v: &Value) -> Result<Node, SimError> {
        let s = |k: &str| -> Result<String, SimError> {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| err(format!("node JSON lacks string field {k}: {v}")))
        };
        let opt = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(Node {
            name: s("name")?,
            instance_id: s("instance_id")?,
            instance_type: s("type")?,
            subnet_id: s("subnet_id")?,
            az: s("az")?,
            primary_ip: s("primary_ip")?,
            public_ip: opt("public_ip"),
            primary_eni: s("primary_eni")?,
            mac: s("mac")?,
            imds_endpoint: s("imds_endpoint")?,
            namespace: opt("namespace"),
            imds_netns_endpoint: opt("imds_netns_endpoint"),
            env: env_pairs(v.get("env")),
            netns_env: env_pairs(v.get("netns_env")),
        })
    }
}

fn env_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A fault to inject into the sim's EC2 for one action (or `*`).
#[derive(Debug, Clone)]
pub struct Fault {
    spec: Value,
}

impl Fault {
    /// Answer `action` with EC2 error `code` and HTTP `status` (e.g. RequestLimitExceeded, 503).
    pub fn error(action: &str, code: &str, status: u16) -> Fault {
        Fault {
            spec: json!({"action": action, "code": code, "status": status}),
        }
    }
    /// Delay `action` by `ms` milliseconds before answering normally.
    pub fn latency(action: &str, ms: u64) -> Fault {
        Fault {
            spec: json!({"action": action, "latency_ms": ms}),
        }
    }
    /// Close the connection of `action` calls without an answer (the action does not run).
    pub fn drop_connection(action: &str) -> Fault {
        Fault {
            spec: json!({"action": action, "drop": true}),
        }
    }
    /// Run `action`, then close the connection without its answer: the effect stays, the caller never hears.
    pub fn lose_answer(action: &str) -> Fault {
        Fault {
            spec: json!({"action": action, "lose_answer": true}),
        }
    }
    /// Only the next `n` matching calls.
    pub fn count(mut self, n: u32) -> Fault {
        self.spec["count"] = json!(n);
        self
    }
    /// Only this fraction (0..=1) of matching calls.
    pub fn probability(mut self, p: f64) -> Fault {
        self.spec["probability"] = json!(p);
        self
    }
    /// Error message (with [`Fault::error`]).
    pub fn message(mut self, m: &str) -> Fault {
        self.spec["message"] = json!(m);
        self
    }
    /// Add latency to an error fault too.
    pub fn with_latency(mut self, ms: u64) -> Fault {
        self.spec["latency_ms"] = json!(ms);
        self
    }
}

/// One EC2 call as the sim saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub seq: u64,
    pub action: String,
    /// Query parameters (without Action/Version), e.g. `NetworkInterfaceId`.
    pub params: Value,
    /// HTTP status answered (0 for a dropped connection).
    pub status: u16,
    /// EC2 error code, if the call failed.
    pub error: Option<String>,
    /// Seconds since the epoch.
    pub time: f64,
    /// Access key id the call was signed with (None: unsigned, e.g. AssumeRoleWithWebIdentity).
    pub access_key_id: Option<String>,
    /// `ec2`, `sts` (AssumeRoleWithWebIdentity) or `eks-auth` (the Pod Identity agent's AssumeRoleForPodIdentity).
    pub service: String,
    /// For STS and Pod Identity calls: the access key id of the temporary keys handed out.
    pub issued_access_key_id: Option<String>,
    /// The action ran but its answer was lost (a `lose_answer` fault).
    pub lost: bool,
}

/// A running VPC-in-a-box. Dropping it stops the sim and removes its namespaces.
#[derive(Debug)]
pub struct VpcSim {
    name: String,
    state_dir: PathBuf,
    root: PathBuf,
    state: Value,
    control: String,
    token: String,
    stopped: bool,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python(root: &Path) -> PathBuf {
    root.join(".venv/bin/python")
}

impl VpcSim {
    /// Starts a sim with namespaces and no nodes; panics with the sim's log if it cannot start.
    pub fn start(name_prefix: &str) -> VpcSim {
        match VpcSim::start_with(name_prefix, StartOptions::default()) {
            Ok(sim) => sim,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts a sim with the given options.
    pub fn start_with(name_prefix: &str, opts: StartOptions) -> Result<VpcSim, SimError> {
        let clean: String = name_prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .take(10)
            .collect();
        let clean = if clean.starts_with(|c: char| c.is_ascii_lowercase()) {
            clean
        } else {
            format!("s{clean}")
        };
        let name = format!(
            "{clean}{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let root = repo_root();
        let state_dir = std::env::temp_dir().join("vpcsim");
        let py = python(&root);
        if !py.exists() {
            return Err(err(format!(
                "{} is missing: run scripts/setup",
                py.display()
            )));
        }
        let mut cmd = Command::new(&py);
        cmd.current_dir(&root)
            .args([
                "-m",
                "tests.vpcsim",
                "start",
                "--name",
                &name,
                "--state-dir",
            ])
            .arg(&state_dir)
            .args(["--region", &opts.region, "--watch-pid"])
            .arg(std::process::id().to_string());
        if !opts.netns {
            cmd.arg("--no-netns");
        }
        if let Some(seed) = opts.seed {
            cmd.args(["--seed", &seed.to_string()]);
        }
        if opts.lowest_first {
            cmd.args(["--allocation", "lowest"]);
        }
        if let Some(d) = opts.attach_delay {
            cmd.args(["--attach-delay", &d.to_string()]);
        }
        for n in &opts.nodes {
            cmd.args(["--node", n]);
        }
        let out = cmd
            .output()
            .map_err(|e| err(format!("running {}: {e}", py.display())))?;
        if !out.status.success() {
            return Err(err(format!(
                "start {name} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let state: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| err(format!("start {name}: state JSON unreadable: {e}")))?;
        let control = state
            .get("control_url")
            .and_then(Value::as_str)
            .ok_or_else(|| err("state file lacks control_url"))?
            .to_owned();
        let token = state
            .get("control_token")
            .and_then(Value::as_str)
            .ok_or_else(|| err("state file lacks control_token"))?
            .to_owned();
        Ok(VpcSim {
            name,
            state_dir,
            root,
            state,
            control,
            token,
            stopped: false,
        })
    }

    /// The sim's name; namespaces are `<name>-vpc`, `<name>-inet`, `<name>-n1`, ...
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The last state read (see the README for its fields).
    pub fn state(&self) -> &Value {
        &self.state
    }
    /// Path of the state file.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join(format!("{}.json", self.name))
    }
    /// Re-reads the state from the running sim.
    pub fn refresh(&mut self) -> Result<&Value, SimError> {
        self.state = self.get("/state")?;
        Ok(&self.state)
    }
    fn str_field(&self, key: &str) -> &str {
        self.state.get(key).and_then(Value::as_str).unwrap_or("")
    }
    /// `http://127.0.0.1:PORT`: the EC2 endpoint (SigV4 checked).
    pub fn ec2_endpoint(&self) -> &str {
        self.str_field("endpoint")
    }
    pub fn region(&self) -> &str {
        self.str_field("region")
    }
    pub fn access_key_id(&self) -> &str {
        self.str_field("access_key_id")
    }
    pub fn secret_access_key(&self) -> &str {
        self.str_field("secret_access_key")
    }
    /// `http://127.0.0.1:PORT`: STS for AssumeRoleWithWebIdentity (what AWS_ENDPOINT_URL_STS should be).
    pub fn sts_endpoint(&self) -> &str {
        self.str_field("sts_endpoint")
    }
    /// `http://127.0.0.1:PORT/v1/credentials`: the EKS Pod Identity agent (AWS_CONTAINER_CREDENTIALS_FULL_URI).
    pub fn pod_identity_endpoint(&self) -> &str {
        self.str_field("pod_identity_endpoint")
    }
    /// ARN of the node role (seed 001's policy): what IMDS, IRSA and Pod Identity hand out keys of.
    pub fn role_arn(&self) -> &str {
        self.str_field("role_arn")
    }
    /// The cluster's OIDC issuer URL (the `iss` of its service-account tokens).
    pub fn oidc_issuer(&self) -> &str {
        self.state
            .pointer("/web_identity/issuer")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    /// A service-account token (JWT) from the sim's issuer for `subject` (None: aws-node's,
    /// `system:serviceaccount:kube-system:aws-node`) and `audience` (`sts.amazonaws.com` for IRSA,
    /// `pods.eks.amazonaws.com` for Pod Identity), valid for 24 h.
    pub fn service_account_token(
        &self,
        audience: &str,
        subject: Option<&str>,
    ) -> Result<String, SimError> {
        let mut body = json!({ "audience": audience });
        if let Some(s) = subject {
            body["subject"] = json!(s);
        }
        let v = self.request("POST", "/identity/token", Some(&body))?;
        v.get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| err(format!("token answer without token: {v}")))
    }
    /// The VPC's id.
    pub fn vpc_id(&self) -> &str {
        self.state
            .pointer("/vpc/id")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    /// Subnets as `(id, name, cidr, az)`; names are `a`, `b` (IPv6 too) and `v4only`.
    pub fn subnets(&self) -> Vec<(String, String, String, String)> {
        let list = self
            .state
            .get("subnets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        list.iter()
            .map(|s| {
                let f = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                (f("id"), f("name"), f("cidr"), f("az"))
            })
            .collect()
    }
    /// Environment for a client: AWS keys, region, AWS_ENDPOINT_URL_EC2 (and the first node's IMDS endpoint).
    pub fn env(&self) -> Vec<(String, String)> {
        env_pairs(self.state.get("env"))
    }
    /// Nodes launched so far (from the last state read).
    pub fn nodes(&self) -> Vec<Node> {
        self.state
            .get("nodes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|n| Node::from_json(n).ok()).collect())
            .unwrap_or_default()
    }

    /// RunInstances of `instance_type` in subnet `a`, with its namespace and IMDS; panics on failure.
    pub fn launch_node(&mut self, instance_type: &str) -> Node {
        match self.try_launch_node(instance_type, None) {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        }
    }

    /// RunInstances in a given subnet (id, name or CIDR).
    pub fn try_launch_node(
        &mut self,
        instance_type: &str,
        subnet: Option<&str>,
    ) -> Result<Node, SimError> {
        let mut spec = json!({ "type": instance_type });
        if let Some(s) = subnet {
            spec["subnet"] = json!(s);
        }
        let v = self.request("POST", "/nodes", Some(&spec))?;
        let node = Node::from_json(&v)?;
        self.refresh()?;
        Ok(node)
    }

    /// TerminateInstances and remove the node's namespace.
    pub fn terminate_node(&mut self, node: &Node) -> Result<(), SimError> {
        self.request("DELETE", &format!("/nodes/{}", node.name), None)?;
        self.refresh()?;
        Ok(())
    }

    /// Adds a fault; returns its id.
    pub fn inject_fault(&self, fault: &Fault) -> Result<u64, SimError> {
        let v = self.request("POST", "/faults", Some(&fault.spec))?;
        v.get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| err(format!("fault answer without id: {v}")))
    }
    /// Removes every fault.
    pub fn clear_faults(&self) -> Result<(), SimError> {
        self.request("DELETE", "/faults", None).map(|_| ())
    }

    /// The EC2 call log (all actions, or one).
    pub fn calls(&self, action: Option<&str>) -> Result<Vec<Call>, SimError> {
        let path = match action {
            Some(a) => format!("/calls?action={a}"),
            None => "/calls".to_owned(),
        };
        let v = self.get(&path)?;
        let list = v
            .as_array()
            .ok_or_else(|| err(format!("call log is not a list: {v}")))?;
        Ok(list
            .iter()
            .map(|c| Call {
                seq: c.get("seq").and_then(Value::as_u64).unwrap_or(0),
                action: c
                    .get("action")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                params: c.get("params").cloned().unwrap_or(Value::Null),
                status: c
                    .get("status")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(0),
                error: c.get("error").and_then(Value::as_str).map(str::to_owned),
                time: c.get("time").and_then(Value::as_f64).unwrap_or(0.0),
                access_key_id: c
                    .get("access_key_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                service: c
                    .get("service")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                issued_access_key_id: c
                    .get("issued_access_key_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                lost: c.get("lost").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect())
    }
    /// How many calls of `action` the sim has seen.
    pub fn call_count(&self, action: &str) -> Result<usize, SimError> {
        Ok(self.calls(Some(action))?.len())
    }
    /// Empties the call log.
    pub fn clear_calls(&self) -> Result<(), SimError> {
        self.request("DELETE", "/calls", None).map(|_| ())
    }
    /// IMDS shows EC2 changes only after `seconds` (for one node, or all).
    pub fn set_imds_lag(&self, seconds: f64, node: Option<&Node>) -> Result<(), SimError> {
        let mut body = json!({ "seconds": seconds });
        if let Some(n) = node {
            body["node"] = json!(n.name);
        }
        self.request("POST", "/imds/lag", Some(&body)).map(|_| ())
    }
    /// Makes IMDS answer `status` for paths below /latest/ starting with `path` (one node or all), `count` times
    /// (None: until cleared).
    pub fn inject_imds_fault(
        &self,
        node: Option<&Node>,
        path: &str,
        status: u16,
        count: Option<u32>,
    ) -> Result<(), SimError> {
        let body = json!({
            "node": node.map(|n| n.name.clone()),
            "path": path,
            "status": status,
            "count": count,
        });
        self.request("POST", "/imds/faults", Some(&body))
            .map(|_| ())
    }
    /// Removes every IMDS fault.
    pub fn clear_imds_faults(&self) -> Result<(), SimError> {
        self.request("DELETE", "/imds/faults", None).map(|_| ())
    }
    /// A detached ENI stays attached, in state `detaching`, for `seconds` (0: detach is immediate).
    pub fn set_detach_delay(&self, seconds: f64) -> Result<(), SimError> {
        self.request(
            "POST",
            "/ec2/detach-delay",
            Some(&json!({ "seconds": seconds })),
        )
        .map(|_| ())
    }
    /// An attached ENI stays `attaching` (not in IMDS, no device in the node) for `seconds` (default 1).
    pub fn set_attach_delay(&self, seconds: f64) -> Result<(), SimError> {
        self.request(
            "POST",
            "/ec2/attach-delay",
            Some(&json!({ "seconds": seconds })),
        )
        .map(|_| ())
    }
    /// Addresses and prefixes scattered over the subnet (EC2's way; `seed` makes it repeatable), or lowest free
    /// first (`lowest_first`).
    pub fn set_allocation(&self, lowest_first: bool, seed: Option<u64>) -> Result<(), SimError> {
        let mut body = json!({ "mode": if lowest_first { "lowest" } else { "scattered" } });
        if let Some(s) = seed {
            body["seed"] = json!(s);
        }
        self.request("POST", "/ec2/allocation", Some(&body))
            .map(|_| ())
    }
    /// Packets dropped so far by the router's source/destination check and by the internet gateway.
    pub fn drops(&self) -> Result<(u64, u64), SimError> {
        let v = self.get("/network/drops")?;
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        Ok((n("source_dest_check"), n("internet_gateway")))
    }
    /// Waits until the sim has applied every EC2 change to namespaces and IMDS.
    pub fn sync(&self) -> Result<(), SimError> {
        self.request("POST", "/sync", Some(&json!({}))).map(|_| ())
    }
    /// Peers the internet namespace's echo listener has seen: `{proto, src, sport, time, private_src, node}`;
    /// `src` is the public address, `private_src` the node address the internet gateway translated.
    pub fn internet_peers(&self) -> Result<Vec<Value>, SimError> {
        Ok(self
            .get("/internet/peers")?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
    /// The "outside" address in the internet namespace (echo on TCP and UDP port 7).
    pub fn internet_ip(&self) -> Option<String> {
        self.state
            .pointer("/internet/outside_ip")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn get(&self, path: &str) -> Result<Value, SimError> {
        self.request("GET", path, None)
    }

    /// One unsigned form POST to the EC2 endpoint, e.g. `Action=DescribeInstances&Version=2016-11-15`; returns
    /// the HTTP status and body. The sim answers `MissingAuthenticationToken` unless a fault answers first; use it
    /// to test fault injection and the call log without a signer.
    pub fn post_ec2_unsigned(&self, form: &str) -> Result<(u16, String), SimError> {
        let rest = self
            .ec2_endpoint()
            .strip_prefix("http://")
            .ok_or_else(|| err("EC2 endpoint is not http"))?
            .to_owned();
        http_raw(
            &rest,
            "POST",
            "/",
            "application/x-www-form-urlencoded; charset=utf-8",
            form,
            None,
        )
    }

    /// One control-API request (`path` below /vpcsim).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, SimError> {
        let url = format!("{}{}", self.control, path);
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| err(format!("control URL is not http: {url}")))?;
        let (host, p) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let payload = body.map(Value::to_string).unwrap_or_default();
        let (status, body) = http_raw(
            host,
            method,
            p,
            "application/json",
            &payload,
            Some(&self.token),
        )?;
        if status != 200 {
            return Err(err(format!("{method} {url} -> {status}: {body}")));
        }
        serde_json::from_str(&body).map_err(|e| err(format!("{method} {url}: bad JSON: {e}")))
    }

    /// Stops the sim now (Drop does the same).
    pub fn stop(mut self) -> Result<(), SimError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), SimError> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let out = Command::new(python(&self.root))
            .current_dir(&self.root)
            .args([
                "-m",
                "tests.vpcsim",
                "stop",
                "--name",
                &self.name,
                "--state-dir",
            ])
            .arg(&self.state_dir)
            .output()
            .map_err(|e| err(format!("running stop: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(err(format!(
                "stop {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }
}

/// The header that carries the sim's control token (state file field `control_token`).
pub const CONTROL_TOKEN_HEADER: &str = "X-Vpcsim-Token";

/// A minimal HTTP/1.1 exchange (the sim closes the connection after each answer); `token` goes in the
/// control-token header.
fn http_raw(
    host: &str,
    method: &str,
    path: &str,
    content_type: &str,
    payload: &str,
    token: Option<&str>,
) -> Result<(u16, String), SimError> {
    let mut stream = TcpStream::connect(host).map_err(|e| err(format!("connect {host}: {e}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| err(format!("timeout: {e}")))?;
    let auth = token
        .map(|t| format!("{CONTROL_TOKEN_HEADER}: {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{payload}",
        payload.len()
    );
    stream
        .write_all(req.as_bytes())
        .map_err(|e| err(format!("{method} {host}{path}: {e}")))?;
    let mut resp = String::new();
    stream
        .read_to_string(&mut resp)
        .map_err(|e| err(format!("{method} {host}{path}: {e}")))?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| err(format!("{method} {host}{path}: no HTTP header in {resp:?}")))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(format!("{method} {host}{path}: bad status line {head:?}")))?;
    Ok((status, body.to_owned()))
}

impl Drop for VpcSim {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            eprintln!("{e}");
        }
    }
}
