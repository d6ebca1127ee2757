//! A real Kubernetes control plane for tests: etcd and kube-apiserver (both built by scripts/build-peers) on
//! loopback, optionally inside a network namespace (a VPC-in-a-box node's, so a daemon there reaches it on
//! 127.0.0.1), with a temp data dir, a static bearer token, a kubeconfig, and helpers to apply upstream's CRDs and
//! create Node objects.
//!
//! Include with `#[path = "peers/cluster.rs"] mod cluster;` next to `#[path = "support/cni_client.rs"] mod
//! cni_client;`. Every process is started under `setpriv --pdeathsig KILL`, so it dies with the test thread that
//! started it even when the test process is killed; [`Cluster`]'s drop kills them and removes the data dir.
//! Talking to the API server uses `curl` (run in the same namespace).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cni_client::peer;

/// The bearer token of the cluster's only user (`system:masters`).
pub const TOKEN: &str = "vpc-cni-test-admin-token";

/// A running etcd + kube-apiserver.
pub struct Cluster {
    /// https://127.0.0.1:PORT
    pub server: String,
    /// A kubeconfig for `server` with [`TOKEN`] (TLS not verified: the server's certificate is self-signed).
    pub kubeconfig: PathBuf,
    /// The temp dir holding the data, certificates, logs and kubeconfig.
    pub dir: PathBuf,
    netns: Option<String>,
    procs: Vec<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// `cmd` wrapped so it runs in `netns` (if any) and dies with its parent.
fn wrapped(netns: Option<&str>, program: &Path) -> Command {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "setpriv"]);
            c
        }
        None => Command::new("setpriv"),
    };
    cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
    cmd
}

impl Cluster {
    /// Starts etcd and kube-apiserver (in `netns` when given) and waits until the API server is ready (60 s).
    pub fn start(tag: &str, netns: Option<&str>) -> Cluster {
        Cluster::start_bound(tag, netns, "127.0.0.1")
    }

    /// Like [`start`](Self::start), the API server listening on `bind` (an address of `netns`, e.g. a
    /// VPC-in-a-box node's primary address, so daemons on the other nodes reach it through the VPC).
    pub fn start_bound(tag: &str, netns: Option<&str>, bind: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("vcni-kube-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("certs")).expect("create cluster dir");
        let mut cluster = Cluster {
            server: String::new(),
            kubeconfig: dir.join("kubeconfig"),
            dir: dir.clone(),
            netns: netns.map(str::to_owned),
            procs: Vec::new(),
        };
        let (client_port, peer_port, api_port) = (free_port(), free_port(), free_port());

        let etcd_log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log");
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = wrapped(netns, &peer("etcd", "VPC_CNI_PEER_ETCD"))
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--log-level=warn")
            .stdout(Stdio::null())
            .stderr(etcd_log)
            .spawn()
            .expect("start etcd");
        cluster.procs.push(etcd);

        // Service-account signing key (the API server refuses to start without one).
        let sa_key = dir.join("sa.key");
        let ok = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&sa_key)
            .arg("2048")
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "openssl genrsa failed");
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{TOKEN},admin,admin-uid,system:masters\n"),
        )
        .expect("token file");

        let api_log = std::fs::File::create(dir.join("kube-apiserver.log")).expect("apiserver log");
        let apiserver = wrapped(netns, &peer("kube", "VPC_CNI_PEER_KUBE_APISERVER"))
            .arg(format!("--etcd-servers={client_url}"))
            .arg(format!("--bind-address={bind}"))
            .arg(format!("--advertise-address={bind}"))
            .arg(format!("--secure-port={api_port}"))
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .arg(format!(
                "--token-auth-file={}",
                dir.join("tokens.csv").display()
            ))
            .arg("--authorization-mode=AlwaysAllow")
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!("--service-account-key-file={}", sa_key.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key.display()
            ))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--enable-priority-and-fairness=false")
            .arg("--disable-admission-plugins=ServiceAccount")
            // As EKS: privileged pods are allowed (the aws-node DaemonSet has privileged containers).
            .arg("--allow-privileged=true")
            .arg("--v=1")
            .stdout(Stdio::null())
            .stderr(api_log)
            .spawn()
            .expect("start kube-apiserver");
        cluster.procs.push(apiserver);
        cluster.server = format!("https://{bind}:{api_port}");
        std::fs::write(&cluster.kubeconfig, cluster.kubeconfig_text()).expect("kubeconfig");

        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (code, _) = cluster.request("GET", "/readyz", None);
            if code == 200 {
                break;
            }
            if let Some(dead) = cluster.exited() {
                panic!("{dead}\n{}", cluster.logs());
            }
            if Instant::now() > deadline {
                panic!("kube-apiserver not ready in 90 s\n{}", cluster.logs());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        cluster
    }

    fn kubeconfig_text(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    \
             insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {TOKEN}\ncontexts:\n- \
             name: test\n  context:\n    cluster: test\n    user: admin\ncurrent-context: test\n",
            self.server
        )
    }

    /// Which process has exited, if any.
    fn exited(&mut self) -> Option<String> {
        for (i, p) in self.procs.iter_mut().enumerate() {
            if let Ok(Some(status)) = p.try_wait() {
                let what = ["etcd", "kube-apiserver"].get(i).copied().unwrap_or("?");
                return Some(format!("{what} exited: {status}"));
            }
        }
        None
    }

    /// The tails of etcd's and the API server's logs (for failure messages).
    pub fn logs(&self) -> String {
        let tail = |f: &str| {
            let text = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        format!(
            "--- etcd.log\n{}\n--- kube-apiserver.log\n{}",
            tail("etcd.log"),
            tail("kube-apiserver.log")
        )
    }

    fn curl(&self) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "curl"]);
                c
            }
            None => Command::new("curl"),
        };
        cmd.args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
            .arg("-H")
            .arg(format!("Authorization: Bearer {TOKEN}"));
        cmd
    }

    /// One API request; returns (HTTP status, body). `body` is JSON or YAML (both are accepted by the server).
    pub fn request(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> (u16, String) {
        let mut cmd = self.curl();
        cmd.args(["-X", method]);
        let mut stdin_body = None;
        if let Some((content_type, data)) = body {
            cmd.arg("-H")
                .arg(format!("Content-Type: {content_type}"))
                .args(["--data-binary", "@-"]);
            stdin_body = Some(data.to_vec());
        }
        cmd.arg(format!("{}{path}", self.server));
        let out: Output = match stdin_body {
            None => cmd.stdin(Stdio::null()).output(),
            Some(data) => {
                use std::io::Write;
                let mut child = match cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                {
                    Ok(c) => c,
                    Err(e) => return (0, format!("curl: {e}")),
                };
                if let Some(mut i) = child.stdin.take() {
                    let _ = i.write_all(&data);
                }
                child.wait_with_output()
            }
        }
        .unwrap_or_else(|e| panic!("run curl: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// GET as JSON; panics unless 200.
    pub fn get(&self, path: &str) -> Value {
        let (code, body) = self.request("GET", path, None);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Creates one object (POST of JSON to `collection`); panics unless 201.
    pub fn create(&self, collection: &str, object: &Value) -> Value {
        let data = object.to_string();
        let (code, body) = self.request(
            "POST",
            collection,
            Some(("application/json", data.as_bytes())),
        );
        assert_eq!(code, 201, "POST {collection}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("POST {collection}: {e}: {body}"))
    }

    /// Creates every CustomResourceDefinition in a YAML file (one or more `---`-separated documents) and waits until
    /// each is Established.
    pub fn apply_crds(&self, yaml_file: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(yaml_file)
            .unwrap_or_else(|e| panic!("read {}: {e}", yaml_file.display()));
        let mut names = Vec::new();
        for doc in text.split("\n---") {
            if !doc.contains("kind: CustomResourceDefinition") {
                continue;
            }
            let (code, body) = self.request(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                Some(("application/yaml", doc.as_bytes())),
            );
            assert!(
                code == 201 || code == 409,
                "CRD from {}: {code} {body}",
                yaml_file.display()
            );
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if let Some(name) = v["metadata"]["name"].as_str() {
                names.push(name.to_string());
            }
        }
        for name in &names {
            let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let crd = self.get(&path);
                let established = crd["status"]["conditions"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Established" && c["status"] == "True")
                    })
                    .unwrap_or(false);
                if established {
                    break;
                }
                assert!(Instant::now() < deadline, "CRD {name} not established");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        names
    }

    /// Creates a Node named `name` with `labels`, Ready, with the given provider id (`aws:///AZ/i-...`).
    pub fn create_node(&self, name: &str, provider_id: &str, labels: &Value) -> Value {
        self.create(
            "/api/v1/nodes",
            &json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels},
                "spec": {"providerID": provider_id},
            }),
        )
    }

    /// Sets the Node's `status.capacity.pods` and `status.allocatable.pods` (kubelet's job; upstream's ipamd sizes its
    /// pool by it and allocates nothing while it is 0).
    pub fn set_node_pods(&self, name: &str, pods: u32) {
        let patch = json!({"status": {"capacity": {"pods": pods.to_string()},
                                      "allocatable": {"pods": pods.to_string()}}})
        .to_string();
        let path = format!("/api/v1/nodes/{name}/status");
        let (code, body) = self.request(
            "PATCH",
            &path,
            Some(("application/merge-patch+json", patch.as_bytes())),
        );
        assert_eq!(code, 200, "PATCH {path}: {body}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // API server first, then etcd.
        for p in self.procs.iter_mut().rev() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if std::env::var_os("VPC_CNI_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
