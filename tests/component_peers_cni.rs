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
#[path = "support/cni_node.rs"]
mod cni_node;
#[path = "support/netns.rs"]
mod netns;
#[path = "support/seeded_ipamd.rs"]
mod seeded_ipamd;

use std::ops::Deref;
use std::path::Path;
use std::process::Command;

use cni_client::Libcni;
use cni_node::{eventually, ok, ping, pod_ip, CniNode, Pod, NODE_IP};
use serde_json::{json, Value};
use vpc_cni::rpc;

// ---------------------------------------------------------------------------------------------------------------
// The node (tests/support/cni_node.rs) with our conflist at CNI 1.1.0 and aws-cni alone (Debian's reference
// plugins stop at 1.0.0), under net.d/ for cnitool.

struct Node(CniNode);

impl Deref for Node {
    type Target = CniNode;
    fn deref(&self) -> &CniNode {
        &self.0
    }
}

impl Node {
    fn new(tag: &str) -> Node {
        let node = CniNode::new("peercni", tag, &[], "net.d/10-aws.conflist", |list| {
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
        });
        std::fs::create_dir_all(node.dir.join("varlib")).unwrap();
        Node(node)
    }

    fn stop_ipamd(&mut self) {
        self.0.stop_ipamd();
    }

    /// A libcni client in the node namespace with its result cache in `cache` (under the node's dir).
    fn client(&self, cache: &str) -> Libcni {
        self.libcni(
            &self.conflist,
            &self.dir.join("bin").display().to_string(),
            cache,
        )
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

    /// The to-pod rules (priority 512) in the node namespace.
    fn to_pod_rules(&self) -> Vec<String> {
        self.rules_at(&[512])
    }
}

fn pod(i: usize) -> Pod {
    Pod::new("peerpod", i, |i, _| format!("web-{i}"))
}

// ---------------------------------------------------------------------------------------------------------------

#[test]
fn libcni_1_3_add_check_del_with_a_1_1_0_conflist() {
    let node = Node::new("acd");
    let mut client = node.client("cache");
    let version = ok(
        &client.send(&json!({"op": "version", "plugin": "aws-cni"})),
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
        let result = ok(&client.call("add", p, json!({})), "ADD");
        assert_eq!(result["cniVersion"], "1.1.0", "{result}");
        let ip = pod_ip(&result);
        assert!(ping(&p.ns, NODE_IP), "pod {ip} cannot reach the node");
        assert!(ping(&node.ns, &ip), "node cannot reach pod {ip}");
        // CHECK gets the cached result as prevResult from libcni.
        ok(&client.call("check", p, json!({})), "CHECK");
        ips.push(ip);
    }
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{ips:?}");
    assert_eq!(node.pool.assigned_ids().len(), 3);
    // A broken pod route is found by CHECK through libcni and reported with the plugin's code.
    pods[1].ns.ip(&["route", "del", "default"]);
    let answer = client.call("check", &pods[1], json!({}));
    assert_eq!(answer["ok"], false, "{answer}");
    for p in &pods {
        ok(&client.call("del", p, json!({})), "DEL");
    }
    assert!(node.pool.assigned_ids().is_empty());
    assert_eq!(node.pod_links_after_dels(), Vec::<String>::new());
    assert_eq!(node.to_pod_rules(), Vec::<String>::new());
    // libcni dropped its cached results: a second DEL (runtimes retry) still succeeds.
    ok(&client.call("del", &pods[0], json!({})), "second DEL");
}

#[test]
fn libcni_1_3_status_follows_ipamd() {
    let mut node = Node::new("status");
    let mut client = node.client("cache");
    ok(
        &client.send(&json!({"op": "status"})),
        "STATUS while ipamd serves",
    );
    // Every address taken: ipamd says not ready, and STATUS through libcni says so with code 50.
    let pods: Vec<Pod> = (0..32).map(pod).collect();
    for p in &pods {
        ok(&client.call("add", p, json!({})), "ADD");
    }
    let answer = client.send(&json!({"op": "status"}));
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error"]["code"], 50, "{answer}");
    ok(&client.call("del", &pods[0], json!({})), "DEL");
    ok(
        &client.send(&json!({"op": "status"})),
        "STATUS with a free address",
    );
    node.stop_ipamd();
    let answer = client.send(&json!({"op": "status"}));
    assert_eq!(answer["error"]["code"], 50, "ipamd down: {answer}");
}

#[test]
fn libcni_1_3_gc_keeps_valid_attachments_and_frees_the_rest() {
    let node = Node::new("gc");
    let mut client = node.client("cache");
    let pods: Vec<Pod> = (0..3).map(pod).collect();
    let ips: Vec<String> = pods
        .iter()
        .map(|p| pod_ip(&ok(&client.call("add", p, json!({})), "ADD")))
        .collect();
    // An attachment libcni's cache does not know (made through another cache): only the plugin's GC frees it.
    let orphan = pod(9);
    let mut other = node.client("other-cache");
    let orphan_ip = pod_ip(&ok(
        &other.call("add", &orphan, json!({})),
        "ADD of the orphan",
    ));
    drop(other);
    assert_eq!(node.pool.assigned_ids().len(), 4);

    let valid = json!([{"containerID": pods[0].container_id, "ifname": "eth0"}]);
    ok(
        &client.send(&json!({"op": "gc", "validAttachments": valid})),
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
