//! Our plugin (the `aws-cni` role of the binary) under the real CNI 1.1 clients: libcni v1.3 (tests/cni-client)
//! and the official cnitool of the same release, both built by scripts/build-peers. ADD, CHECK, DEL, STATUS and GC
//! go through the client's own logic (result cache, conflist version gating, GC's DEL of stale cached attachments
//! before the plugin's own GC), inside a "node" namespace this test creates; pods are namespaces too. ipamd's RPC
//! server is hosted in this process over a unix socket, backed by the ipam datastore seeded with two ENIs.
//!
//! Needs root, `ip`, `unshare`, ping and the peer cache (scripts/build-peers cni).

#![allow(clippy::unwrap_used)]

#[path = "support/cni_client.rs"]
mod cni_client;
#[path = "support/netns.rs"]
mod netns;
#[path = "support/seeded_ipamd.rs"]
mod seeded_ipamd;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use netns::TestNs;
use serde_json::{json, Value};
use vpc_cni::cni::install;
use vpc_cni::rpc;

const NODE_IP: &str = "10.0.0.10";

// ---------------------------------------------------------------------------------------------------------------
// The node: a namespace with "eth0" holding the node and pod-subnet addresses, a plugin dir with our binary as
// aws-cni, our conflist at CNI 1.1.0 (aws-cni alone: Debian's reference plugins stop at 1.0.0), the RPC server.

struct Node {
    ns: TestNs,
    dir: PathBuf,
    socket: PathBuf,
    pool: seeded_ipamd::SeededIpamd,
    server: Option<rpc::ServerHandle>,
    conflist: PathBuf,
}

impl Node {
    fn new(tag: &str) -> Node {
        let ns = TestNs::new("peercni");
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ]);
        ns.ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", "eth0"]);
        ns.ip(&["addr", "add", "10.0.1.10/24", "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["link", "set", "eth0p", "up"]);
        let dir = std::env::temp_dir().join(format!("vcni-peercni-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["bin", "net.d", "varlib", "cache"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vpc-cni"), dir.join("bin/aws-cni")).unwrap();
        let mut env: BTreeMap<&str, String> = BTreeMap::new();
        env.insert(
            "AWS_VPC_K8S_PLUGIN_LOG_FILE",
            dir.join("plugin.log").display().to_string(),
        );
        env.insert("POD_MTU", "1500".into());
        let cfg = install::InstallConfig::from_vars(|k| env.get(k).cloned()).unwrap();
        let mut list = install::conflist(&cfg);
        list["cniVersion"] = json!("1.1.0");
        let plugins: Vec<Value> = list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["type"] == "aws-cni")
            .cloned()
            .collect();
        assert_eq!(plugins.len(), 1, "{list}");
        list["plugins"] = Value::Array(plugins);
        let conflist = dir.join("net.d/10-aws.conflist");
        std::fs::write(&conflist, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
        let socket = dir.join("ipamd.sock");
        let pool = seeded_ipamd::SeededIpamd::new(&dir.join("ipam.json"));
        let server = rpc::Server::bind(&socket)
            .unwrap()
            .spawn(pool.service.clone(), Duration::from_secs(5))
            .unwrap();
        Node {
            ns,
            dir,
            socket,
            pool,
            server: Some(server),
            conflist,
        }
    }

    fn stop_ipamd(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }

    /// A libcni client in the node namespace with its result cache in `cache` (under the node's dir).
    fn client(&self, cache: &str) -> CniClient {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns.name])
            .arg(cni_client::go_client())
            .arg("-conflist")
            .arg(&self.conflist)
            .arg("-path")
            .arg(self.dir.join("bin"))
            .arg("-cache")
            .arg(self.dir.join(cache))
            .env(rpc::SOCKET_ENV, &self.socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        CniClient {
            child,
            stdin,
            stdout,
        }
    }

    /// Runs `cnitool <verb> aws-cni <netns>` in the node namespace. cnitool keeps libcni's result cache in the fixed
    /// /var/lib/cni: it runs in a private mount namespace where the node's own dir is bound over /var/lib, so the
    /// machine's /var/lib is never written. Returns (success, stdout, stderr).
    fn cnitool(&self, verb: &str, netns: &Path, cni_args: &str) -> (bool, String, String) {
        let script = r#"mount --bind "$1" /var/lib && shift && exec ip netns exec "$@""#;
        let out = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(self.dir.join("varlib"))
            .arg(&self.ns.name)
            .arg(cni_client::cnitool())
            .args([verb, "aws-cni"])
            .arg(netns)
            .env("NETCONFPATH", self.dir.join("net.d"))
            .env("CNI_PATH", self.dir.join("bin"))
            .env("CNI_ARGS", cni_args)
            .env(rpc::SOCKET_ENV, &self.socket)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Host-side veths of pods.
    fn pod_links(&self) -> Vec<String> {
        self.ns
            .ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| {
                l.split(": ")
                    .nth(1)
                    .map(|n| n.split('@').next().unwrap_or(n).to_string())
            })
            .filter(|n| !matches!(n.as_str(), "lo" | "eth0" | "eth0p"))
            .collect()
    }

    /// The to-pod rules (priority 512) in the node namespace.
    fn to_pod_rules(&self) -> Vec<String> {
        self.ns
            .ip(&["rule", "show"])
            .lines()
            .filter(|l| l.starts_with("512:"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_ipamd();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct CniClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl CniClient {
    fn send(&mut self, req: Value) -> Value {
        writeln!(self.stdin, "{req}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("client answered {line:?}: {e}"))
    }

    fn call(&mut self, op: &str, pod: &Pod) -> Value {
        self.send(json!({
            "op": op,
            "containerID": pod.container_id,
            "netns": pod.ns.path(),
            "ifname": "eth0",
            "args": [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", "default"], ["K8S_POD_NAME", pod.name],
                     ["K8S_POD_INFRA_CONTAINER_ID", pod.container_id]],
        }))
    }
}

impl Drop for CniClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Pod {
    ns: TestNs,
    name: String,
    container_id: String,
}

fn pod(i: usize) -> Pod {
    let ns = TestNs::new("peerpod");
    Pod {
        container_id: format!("ctr{}x{i}", std::process::id()),
        name: format!("web-{i}"),
        ns,
    }
}

fn ok(answer: &Value, what: &str) -> Value {
    assert_eq!(answer["ok"], true, "{what}: {answer}");
    answer["result"].clone()
}

fn pod_ip(result: &Value) -> String {
    let cidr = result["ips"][0]["address"].as_str().unwrap();
    cidr.split('/').next().unwrap().to_string()
}

fn ping(from: &TestNs, to: &str) -> bool {
    from.try_exec("ping", &["-c", "1", "-W", "2", to]).0
}

/// Polls `cond` for up to 5 s (the kernel destroys a deleted namespace's veth asynchronously).
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

// ---------------------------------------------------------------------------------------------------------------

#[test]
fn libcni_1_3_add_check_del_with_a_1_1_0_conflist() {
    let node = Node::new("acd");
    let mut client = node.client("cache");
    let version = ok(
        &client.send(json!({"op": "version", "plugin": "aws-cni"})),
        "VERSION",
    );
    assert!(
        version["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.1.0")),
        "{version}"
    );
    let pods: Vec<Pod> = (0..3).map(pod).collect();
    let mut ips = Vec::new();
    for p in &pods {
        let result = ok(&client.call("add", p), "ADD");
        assert_eq!(result["cniVersion"], "1.1.0", "{result}");
        let ip = pod_ip(&result);
        assert!(ping(&p.ns, NODE_IP), "pod {ip} cannot reach the node");
        assert!(ping(&node.ns, &ip), "node cannot reach pod {ip}");
        // CHECK gets the cached result as prevResult from libcni.
        ok(&client.call("check", p), "CHECK");
        ips.push(ip);
    }
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{ips:?}");
    assert_eq!(node.pool.assigned_ids().len(), 3);
    // A broken pod route is found by CHECK through libcni and reported with the plugin's code.
    pods[1].ns.ip(&["route", "del", "default"]);
    let answer = client.call("check", &pods[1]);
    assert_eq!(answer["ok"], false, "{answer}");
    for p in &pods {
        ok(&client.call("del", p), "DEL");
    }
    assert!(node.pool.assigned_ids().is_empty());
    assert_eq!(node.pod_links(), Vec::<String>::new());
    assert_eq!(node.to_pod_rules(), Vec::<String>::new());
    // libcni dropped its cached results: a second DEL (runtimes retry) still succeeds.
    ok(&client.call("del", &pods[0]), "second DEL");
}

#[test]
fn libcni_1_3_status_follows_ipamd() {
    let mut node = Node::new("status");
    let mut client = node.client("cache");
    ok(
        &client.send(json!({"op": "status"})),
        "STATUS while ipamd serves",
    );
    // Every address taken: ipamd says not ready, and STATUS through libcni says so with code 50.
    let pods: Vec<Pod> = (0..32).map(pod).collect();
    for p in &pods {
        ok(&client.call("add", p), "ADD");
    }
    let answer = client.send(json!({"op": "status"}));
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error"]["code"], 50, "{answer}");
    ok(&client.call("del", &pods[0]), "DEL");
    ok(
        &client.send(json!({"op": "status"})),
        "STATUS with a free address",
    );
    node.stop_ipamd();
    let answer = client.send(json!({"op": "status"}));
    assert_eq!(answer["error"]["code"], 50, "ipamd down: {answer}");
}

#[test]
fn libcni_1_3_gc_keeps_valid_attachments_and_frees_the_rest() {
    let node = Node::new("gc");
    let mut client = node.client("cache");
    let pods: Vec<Pod> = (0..3).map(pod).collect();
    let ips: Vec<String> = pods
        .iter()
        .map(|p| pod_ip(&ok(&client.call("add", p), "ADD")))
        .collect();
    // An attachment libcni's cache does not know (made through another cache): only the plugin's GC frees it.
    let orphan = pod(9);
    let mut other = node.client("other-cache");
    let orphan_ip = pod_ip(&ok(&other.call("add", &orphan), "ADD of the orphan"));
    drop(other);
    assert_eq!(node.pool.assigned_ids().len(), 4);

    let valid = json!([{"containerID": pods[0].container_id, "ifname": "eth0"}]);
    ok(
        &client.send(json!({"op": "gc", "validAttachments": valid})),
        "GC",
    );
    // libcni DELs the cached stale ones (pods 1 and 2); our plugin's GC releases the orphan in ipamd and removes
    // its rules.
    assert_eq!(node.pool.assigned_ids(), vec![pods[0].container_id.clone()]);
    let rules = node.to_pod_rules();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(rules[0].contains(&format!("to {} ", ips[0])), "{rules:?}");
    assert!(!rules[0].contains(&orphan_ip), "{rules:?}");
    assert!(ping(&node.ns, &ips[0]), "the valid pod still works");
}

#[test]
fn cnitool_add_check_status_gc_del() {
    let node = Node::new("cnitool");
    let p = pod(0);
    let args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={}",
        p.name
    );
    let (success, out, err) = node.cnitool("add", &p.ns.path(), &args);
    assert!(success, "cnitool add: {err}");
    let result: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(result["cniVersion"], "1.1.0");
    let ip = pod_ip(&result);
    assert!(ping(&p.ns, NODE_IP), "pod {ip} cannot reach the node");
    assert_eq!(node.pool.assigned_ids().len(), 1);
    // cnitool names the container after the netns path; ipamd got that id.
    assert!(node.pool.assigned_ids()[0].starts_with("cnitool-"));
    let (success, _, err) = node.cnitool("check", &p.ns.path(), &args);
    assert!(success, "cnitool check: {err}");
    let (success, _, err) = node.cnitool("status", &p.ns.path(), &args);
    assert!(success, "cnitool status: {err}");
    // The result cache went to the bound dir, not to the machine's /var/lib/cni.
    assert!(node.dir.join("varlib/cni/results").is_dir());

    // cnitool's GC passes no valid attachments: everything is stale, DEL'd from its cache, then GC'd.
    let (success, _, err) = node.cnitool("gc", &p.ns.path(), &args);
    assert!(success, "cnitool gc: {err}");
    assert!(node.pool.assigned_ids().is_empty());
    assert!(
        eventually(|| node.pod_links().is_empty()),
        "{:?}",
        node.pod_links()
    );
    assert_eq!(node.to_pod_rules(), Vec::<String>::new());
    let (success, _, err) = node.cnitool("del", &p.ns.path(), &args);
    assert!(success, "cnitool del after gc: {err}");
}
