//! ipamd as a real process on a VPC-in-a-box node, and pods added through the libcni client
//! (include with `#[path = "support/ipamd_node.rs"] mod ipamd_node;` after `vpcsim`, `netns`,
//! `tempdir` and `cni_client`).
//!
//! [`Ipamd::start`] runs our binary as `aws-k8s-agent` inside the node's namespace with the node's
//! environment (EC2 and IMDS endpoints, credentials) plus the test's settings, and waits until the
//! plugin socket says it is ready. [`Ipamd::add_pod`] creates a pod namespace and runs CNI ADD through
//! libcni with the conflist ipamd wrote; [`Pod`]s are deleted (CNI DEL, namespace removed) on drop.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vpc_cni::rpc;

use super::cni_client;
use super::netns::TestNs;
use super::tempdir::TempDir;
use super::vpcsim::{Node, VpcSim};

/// Reference CNI plugins chained in the conflist (Debian's containernetworking-plugins).
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// One ipamd process on one sim node.
pub struct Ipamd {
    pub node: Node,
    pub dir: TempDir,
    pub env: BTreeMap<String, String>,
    child: Option<Child>,
    client: Option<cni_client::Libcni>,
    /// A directory searched for plugins before ipamd's own `bin` (e.g. a wrapper of `aws-cni`).
    plugin_dir: Option<PathBuf>,
}

/// A pod networked by our plugin.
#[derive(Debug)]
pub struct Pod {
    pub ns: TestNs,
    pub name: String,
    pub container_id: String,
    pub ip: Ipv4Addr,
    pub result: Value,
}

impl Ipamd {
    /// The node's namespace.
    pub fn netns(&self) -> &str {
        self.node.namespace.as_deref().unwrap()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.0.join("ipamd.sock")
    }

    /// The checkpoint file (`AWS_VPC_K8S_CNI_BACKING_STORE`, in the ipamd directory unless the
    /// settings moved it).
    pub fn checkpoint(&self) -> PathBuf {
        self.env
            .get("AWS_VPC_K8S_CNI_BACKING_STORE")
            .map_or_else(|| self.dir.0.join("ipam.json"), PathBuf::from)
    }

    /// The process id of the running ipamd, if one runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Puts `dir` before ipamd's `bin` in the plugin search path of the CNI client (None: only
    /// `bin` again); the next operation starts a new client.
    pub fn set_plugin_dir(&mut self, dir: Option<PathBuf>) {
        self.plugin_dir = dir;
        // The old client is killed on drop.
        self.client = None;
    }

    /// Every log file of this node: ipamd's log and stderr, the plugin's log, the CNI client's
    /// stderr (path, text).
    pub fn all_logs(&self) -> Vec<(PathBuf, String)> {
        [
            "ipamd.log",
            "ipamd.stderr",
            "plugin.log",
            "cni-client.stderr",
        ]
        .iter()
        .map(|f| self.dir.0.join(f))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            (p, text)
        })
        .collect()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.0.join("ipamd.log")
    }

    /// Starts ipamd on `node` with `settings` (variable, value) on top of the node's environment.
    pub fn start(node: &Node, settings: &[(&str, &str)]) -> Ipamd {
        let dir = TempDir::new("ipamd");
        let mut env: BTreeMap<String, String> = node.netns_env.iter().cloned().collect();
        for (k, v) in [
            ("AWS_VPC_K8S_CNI_BACKING_STORE", dir.0.join("ipam.json")),
            ("HOST_CNI_BIN_PATH", dir.0.join("bin")),
            ("HOST_CNI_CONFDIR_PATH", dir.0.join("net.d")),
            ("AWS_VPC_K8S_CNI_LOG_FILE", dir.0.join("ipamd.log")),
            ("AWS_VPC_K8S_PLUGIN_LOG_FILE", dir.0.join("plugin.log")),
            (rpc::SOCKET_ENV, dir.0.join("ipamd.sock")),
        ] {
            env.insert(k.to_string(), v.display().to_string());
        }
        env.insert("AWS_VPC_K8S_CNI_LOGLEVEL".into(), "DEBUG".into());
        // The metrics port is per node namespace: each node's own.
        for (k, v) in settings {
            env.insert((*k).to_string(), (*v).to_string());
        }
        std::fs::create_dir_all(dir.0.join("sbin")).unwrap();
        let agent = dir.0.join("sbin/aws-k8s-agent");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vpc-cni"), &agent).unwrap();
        let mut d = Ipamd {
            node: node.clone(),
            dir,
            env,
            child: None,
            client: None,
            plugin_dir: None,
        };
        d.spawn();
        d.wait_ready(Duration::from_secs(60));
        d
    }

    /// Starts the process again (after [`kill9`](Self::kill9) or [`stop`](Self::stop)) with the same
    /// files.
    pub fn restart(&mut self) {
        self.spawn();
        self.wait_ready(Duration::from_secs(60));
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join("ipamd.stderr"))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", self.netns()])
            .arg(self.dir.0.join("sbin/aws-k8s-agent"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until the plugin socket answers STATUS ready; panics with the log otherwise.
    pub fn wait_ready(&mut self, budget: Duration) {
        let began = Instant::now();
        let client = rpc::Client::new(self.socket(), Duration::from_secs(2));
        while began.elapsed() < budget {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "ipamd exited with {status} before it was ready:\n{}",
                        self.log()
                    );
                }
            }
            if let Ok(s) = client.status() {
                if s.ready {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("ipamd not ready after {budget:?}:\n{}", self.log());
    }

    /// ipamd's log so far.
    pub fn log(&self) -> String {
        let mut s = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(self.dir.0.join("ipamd.stderr")).unwrap_or_default());
        s
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // `ip netns exec` execs the program: the child is ipamd itself.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let pid = rustix::process::Pid::from_raw(c.id() as i32)?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let began = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if began.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&mut self) -> &mut cni_client::Libcni {
        if self.client.is_none() {
            let mut path = format!("{}:{REFERENCE_PLUGINS}", self.dir.0.join("bin").display());
            if let Some(d) = &self.plugin_dir {
                path = format!("{}:{path}", d.display());
            }
            let stderr = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.0.join("cni-client.stderr"))
                .unwrap();
            self.client = Some(cni_client::Libcni::spawn(
                self.netns(),
                &self.dir.0.join("net.d/10-aws.conflist"),
                &path,
                &self.dir.0.join("cni-cache"),
                &[(rpc::SOCKET_ENV, &self.socket())],
                Some(stderr),
            ));
        }
        self.client.as_mut().unwrap()
    }

    /// One libcni operation; returns the client's answer (`ok`, `result` or `error`).
    pub fn cni(&mut self, op: &str, container_id: &str, netns: &Path, pod: &str) -> Value {
        self.client()
            .pod_op(op, container_id, netns, pod, Value::Null)
    }

    /// Creates a pod namespace and adds it; panics with the CNI error if ADD fails.
    pub fn add_pod(&mut self, name: &str) -> Pod {
        self.try_add_pod(name)
            .unwrap_or_else(|e| panic!("ADD {name}: {e}\n{}", self.log()))
    }

    /// Like [`add_pod`](Self::add_pod), but returns the CNI error (the namespace is removed then).
    pub fn try_add_pod(&mut self, name: &str) -> Result<Pod, Value> {
        self.try_add_pod_as(name, &format!("c-{name}"))
            .map_err(|(_, e)| e)
    }

    /// ADD of pod `name` in a new namespace under `container_id` (a new sandbox of the same pod
    /// has a new one); on failure the namespace is handed back with the CNI error, for the DEL a
    /// runtime sends after a failed ADD.
    pub fn try_add_pod_as(
        &mut self,
        name: &str,
        container_id: &str,
    ) -> Result<Pod, (TestNs, Value)> {
        let ns = TestNs::new("pod");
        let container_id = container_id.to_string();
        let a = self.cni("add", &container_id, &ns.path(), name);
        if a["ok"] != json!(true) {
            return Err((ns, a["error"].clone()));
        }
        let ip: Ipv4Addr = a["result"]["ips"][0]["address"]
            .as_str()
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no address in {a}"));
        Ok(Pod {
            ns,
            name: name.to_string(),
            container_id,
            ip,
            result: a["result"].clone(),
        })
    }

    /// CNI DEL of a pod, then its namespace goes.
    pub fn del_pod(&mut self, pod: Pod) {
        let a = self.cni("del", &pod.container_id, &pod.ns.path(), &pod.name);
        assert_eq!(a["ok"], json!(true), "DEL {}: {a}", pod.name);
    }

    /// The checkpoint's allocations: (container id, IPv4).
    pub fn checkpoint_allocations(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.checkpoint()).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        v["allocations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["containerID"].as_str().unwrap_or("").to_string(),
                            e["ipv4"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Ipamd {
    fn drop(&mut self) {
        // The client goes first (killed on drop).
        self.client = None;
        self.kill9();
    }
}

impl Pod {
    /// Pings `ip` from the pod: whether one echo came back.
    pub fn ping(&self, ip: &str) -> bool {
        self.ns
            .try_exec("ping", &["-c", "1", "-W", "3", "-q", ip])
            .0
    }

    /// Sends a line over TCP to `ip:port` from the pod and reads the echo.
    pub fn tcp_echo(&self, ip: &str, port: u16) -> Result<String, String> {
        let script = format!(
            "exec 3<>/dev/tcp/{ip}/{port} && echo hello-{} >&3 && read -t 3 line <&3 && echo \"$line\"",
            self.name
        );
        let (ok, out) = self.ns.try_exec("timeout", &["5", "bash", "-c", &script]);
        if ok {
            Ok(out.trim().to_string())
        } else {
            Err(out)
        }
    }
}

/// An EC2 client of the sim's node user (the real API, SigV4-signed): what the tests read back.
pub fn ec2(sim: &VpcSim) -> vpc_cni::aws::ec2::Ec2Client {
    use std::sync::Arc;
    use vpc_cni::aws::credentials::Credentials;
    let creds = Credentials::new_static(sim.access_key_id(), sim.secret_access_key(), None);
    let env: BTreeMap<String, String> = sim.env().into_iter().collect();
    vpc_cni::aws::ec2::Ec2Client::from_env(sim.region(), Arc::new(creds), &|k| env.get(k).cloned())
        .unwrap()
}

/// The ENIs attached to `instance_id`, as EC2 describes them, by device index.
pub fn enis_of(
    ec2: &vpc_cni::aws::ec2::Ec2Client,
    instance_id: &str,
) -> Vec<vpc_cni::aws::ec2::NetworkInterface> {
    use vpc_cni::aws::ec2::{DescribeNetworkInterfaces, Ec2, Filter};
    let mut v = ec2
        .describe_network_interfaces(&DescribeNetworkInterfaces {
            ids: vec![],
            filters: vec![Filter::new("attachment.instance-id", [instance_id])],
        })
        .unwrap();
    v.sort_by_key(|n| n.attachment.as_ref().and_then(|a| a.device_index));
    v
}

/// An EC2 client of the sim's `extended` user: what a test uses to set EC2 up and read it back
/// while it counts ipamd's calls, which are signed with the node user's key
/// ([`VpcSim::access_key_id`]); returns the client and the key it signs with.
pub fn ec2_test_user(sim: &VpcSim) -> (vpc_cni::aws::ec2::Ec2Client, String) {
    use std::sync::Arc;
    use vpc_cni::aws::credentials::Credentials;
    let c = &sim.state()["credentials"]["extended"];
    let key = c["access_key_id"].as_str().unwrap().to_string();
    let secret = c["secret_access_key"].as_str().unwrap();
    let creds = Credentials::new_static(&key, secret, None);
    let env: BTreeMap<String, String> = sim.env().into_iter().collect();
    let client = vpc_cni::aws::ec2::Ec2Client::from_env(sim.region(), Arc::new(creds), &|k| {
        env.get(k).cloned()
    })
    .unwrap();
    (client, key)
}

/// An HTTP answer read with curl: status (0 when nothing answered) and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub body: String,
}

impl HttpAnswer {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Ipamd {
    /// GET `url` with curl from inside the node namespace (where ipamd's 127.0.0.1 is);
    /// `extra` goes before the URL (e.g. `--unix-socket PATH`).
    pub fn http_get(&self, url: &str, extra: &[&str]) -> HttpAnswer {
        let mut args: Vec<&str> = vec![
            "netns",
            "exec",
            self.netns(),
            "curl",
            "-s",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code}",
        ];
        args.extend_from_slice(extra);
        args.push(url);
        let out = Command::new("ip").args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        HttpAnswer {
            status: code.trim().parse().unwrap_or(0),
            body: body.to_string(),
        }
    }
}

/// Secondary addresses and prefixes per ENI (in the order given, by device index from [`enis_of`]).
pub fn shape(enis: &[vpc_cni::aws::ec2::NetworkInterface]) -> Vec<(usize, usize)> {
    enis.iter()
        .map(|n| {
            (
                n.private_ips.iter().filter(|p| !p.primary).count(),
                n.ipv4_prefixes.len(),
            )
        })
        .collect()
}

/// Waits until the ENIs `read` returns have this [`shape`]; panics with the last one and the log.
pub fn wait_shape_by(
    d: &Ipamd,
    budget: Duration,
    want: &[(usize, usize)],
    mut read: impl FnMut() -> Vec<vpc_cni::aws::ec2::NetworkInterface>,
) {
    let began = Instant::now();
    let mut last = vec![];
    while began.elapsed() < budget {
        last = shape(&read());
        if last == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "EC2 shape {last:?}, expected {want:?} within {budget:?}\n{}",
        d.log()
    );
}

/// Waits until `f` holds (polling), or panics with `what` and the ipamd log.
pub fn eventually(d: &Ipamd, budget: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let began = Instant::now();
    while began.elapsed() < budget {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what}: not within {budget:?}\n{}", d.log());
}

/// Adds `n` pods, retrying an ADD refused while the pool grows (as the kubelet retries).
pub fn add_pods(d: &mut Ipamd, prefix: &str, n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| {
            let name = format!("{prefix}{i}");
            let began = Instant::now();
            loop {
                match d.try_add_pod(&name) {
                    Ok(p) => break p,
                    Err(_) if began.elapsed() < Duration::from_secs(30) => {
                        std::thread::sleep(Duration::from_millis(300));
                    }
                    Err(e) => panic!("ADD {name}: {e}\n{}", d.log()),
                }
            }
        })
        .collect()
}
