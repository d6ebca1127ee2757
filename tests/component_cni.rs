//! The CNI plugin under a real CNI client: libcni 1.3 (tests/cni-client, built by scripts/build-peers) runs our conflist with Debian's
//! reference plugins (portmap, bandwidth, tuning) chained after aws-cni, inside a "node" namespace this test
//! creates; pods are namespaces too. ipamd's RPC server is hosted in this process over a unix socket, backed by
//! the ipam datastore seeded directly with two ENIs (no EC2 needed to prove the plugin).
//!
//! Needs root, `ip`, ping, iptables, /usr/lib/cni and Go with libcni sources (scripts/setup installs them).

#![allow(clippy::unwrap_used)]

#[path = "support/cni_client.rs"]
mod cni_client;
#[path = "support/cni_node.rs"]
mod cni_node;
#[path = "support/netns.rs"]
mod netns;
#[path = "support/seeded_ipamd.rs"]
mod seeded_ipamd;

use netns::TestNs;
use std::io::Write;
use std::ops::Deref;
use std::path::Path;
use std::process::{Command, Stdio};

use cni_client::Libcni;
use cni_node::{eventually, ok, ping, pod_ip, CniNode, Pod, NODE_IP};
use serde_json::{json, Value};
use vpc_cni::rpc;

const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

// ---------------------------------------------------------------------------------------------------------------
// The node (tests/support/cni_node.rs) with our conflist chained to the reference plugins.

struct Node(CniNode);

#[derive(Clone, Copy)]
struct NodeOpts {
    cni_version: &'static str,
    bandwidth: bool,
    tuning: bool,
}

/// CNI 1.0.0, aws-cni and portmap only.
const PLAIN: NodeOpts = NodeOpts {
    cni_version: "1.0.0",
    bandwidth: false,
    tuning: false,
};

impl Deref for Node {
    type Target = CniNode;
    fn deref(&self) -> &CniNode {
        &self.0
    }
}

impl Node {
    fn new(tag: &str, opts: NodeOpts) -> Node {
        let bandwidth = opts.bandwidth.to_string();
        let tuning = opts.tuning.to_string();
        Node(CniNode::new(
            "cni",
            tag,
            &[
                ("ENABLE_BANDWIDTH_PLUGIN", &bandwidth),
                ("DISABLE_POD_V6", &tuning),
            ],
            "10-aws.conflist",
            |list| list["cniVersion"] = json!(opts.cni_version),
        ))
    }

    fn stop_ipamd(&mut self) {
        self.0.stop_ipamd();
    }

    fn client(&self) -> Libcni {
        self.client_with(&self.conflist, &self.dir.join("bin"))
    }

    fn client_with(&self, conflist: &Path, bin_dir: &Path) -> Libcni {
        self.libcni(
            conflist,
            &format!("{}:{REFERENCE_PLUGINS}", bin_dir.display()),
            "cache",
        )
    }

    /// Runs the aws-cni binary directly (no libcni) in the node namespace; returns (exit success, stdout JSON).
    fn invoke(&self, env: &[(&str, &str)], stdin: &[u8]) -> (bool, Value) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns.name])
            .arg(self.dir.join("bin/aws-cni"))
            .env(rpc::SOCKET_ENV, &self.socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let v = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text:?}"))
        };
        (out.status.success(), v)
    }

    /// The pods' host-side veths.
    fn extra_links(&self) -> Vec<String> {
        self.pod_links()
    }

    /// Pod rules (priorities 512 and 1536) in the node namespace.
    fn pod_rules(&self) -> Vec<String> {
        self.rules_at(&[512, 1536])
    }
}

fn pod(i: usize) -> Pod {
    Pod::new("cnipod", i, |i, ns| {
        format!("web-{i}-{}", ns.name.rsplit('-').next().unwrap_or("0"))
    })
}

fn bandwidth_args() -> Value {
    json!({"capabilityArgs": {"bandwidth": {"ingressRate": 100_000_000, "ingressBurst": 100_000_000,
                                            "egressRate": 100_000_000, "egressBurst": 100_000_000}}})
}

// ---------------------------------------------------------------------------------------------------------------

#[test]
fn libcni_runs_twenty_pods_through_the_reference_chain_with_traffic_both_ways() {
    let node = Node::new(
        "twenty",
        NodeOpts {
            cni_version: "0.4.0",
            bandwidth: true,
            tuning: true,
        },
    );
    let mut client = node.client();
    let pods: Vec<Pod> = (0..20).map(pod).collect();
    let mut ips = Vec::new();
    for (i, p) in pods.iter().enumerate() {
        let mut extra = bandwidth_args();
        extra["capabilityArgs"]["portMappings"] =
            json!([{"hostPort": 18000 + i, "containerPort": 8080, "protocol": "tcp"}]);
        let result = ok(&client.call("add", p, extra), "ADD");
        assert_eq!(result["cniVersion"], "0.4.0");
        assert_eq!(result["ips"][0]["version"], "4");
        assert_eq!(result["ips"][0]["gateway"], "169.254.1.1");
        assert_eq!(
            result["interfaces"][1]["sandbox"],
            p.ns.path().display().to_string()
        );
        ips.push(pod_ip(&result));
    }
    // Pods on the secondary ENI (route table 2) get a from-pod rule; pods on the primary ENI do not.
    assert_eq!(node.pool.assigned(), 20);
    let rules = node.pod_rules();
    assert_eq!(
        rules.iter().filter(|r| r.starts_with("512:")).count(),
        20,
        "{rules:?}"
    );
    let secondary: Vec<&String> = ips.iter().filter(|ip| ip.starts_with("10.0.1.")).collect();
    assert_eq!(
        rules.iter().filter(|r| r.starts_with("1536:")).count(),
        secondary.len(),
        "{rules:?}"
    );
    for ip in &secondary {
        assert!(
            rules
                .iter()
                .any(|r| r.contains(&format!("from {ip} lookup 2"))),
            "{ip}: {rules:?}"
        );
    }
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 20);

    for (p, ip) in pods.iter().zip(&ips) {
        // Pod side as planned: address, link route to the gateway, default route, permanent neighbour.
        let addr = p.ns.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(addr.contains(&format!("{ip}/32")), "{addr}");
        let routes = p.ns.ip(&["route", "show"]);
        assert!(
            routes.contains("default via 169.254.1.1 dev eth0"),
            "{routes}"
        );
        assert!(
            routes.contains("169.254.1.1 dev eth0 scope link"),
            "{routes}"
        );
        let neigh = p.ns.ip(&["neigh", "show", "169.254.1.1"]);
        assert!(neigh.contains("PERMANENT"), "{neigh}");
        let mtu = p.ns.ip(&["link", "show", "eth0"]);
        assert!(mtu.contains("mtu 1500"), "{mtu}");
        // tuning ran on our result inside the pod.
        let v6 =
            p.ns.exec("cat", &["/proc/sys/net/ipv6/conf/all/disable_ipv6"]);
        assert_eq!(v6.trim(), "1");
        // Traffic both ways.
        assert!(ping(&p.ns, NODE_IP), "pod {ip} cannot reach the node");
        assert!(ping(&node.ns, ip), "node cannot reach pod {ip}");
    }
    // portmap used our result (container IP from prevResult): its DNAT rule names the pod address.
    let nat = node.ns.exec("iptables", &["-t", "nat", "-S"]);
    assert!(nat.contains(&format!("{}:8080", ips[0])), "{nat}");

    for p in &pods {
        ok(&client.call("check", p, bandwidth_args()), "CHECK");
    }
    for p in &pods {
        ok(&client.call("del", p, bandwidth_args()), "DEL");
    }
    assert_eq!(node.pool.assigned(), 0);
    assert_eq!(node.pod_links_after_dels(), Vec::<String>::new());
    assert_eq!(node.pod_rules(), Vec::<String>::new());
    let host_routes = node.ns.ip(&["route", "show"]);
    assert!(
        !host_routes.contains("/32") && !host_routes.contains("10.0.0.20 "),
        "{host_routes}"
    );
    // DEL again (runtimes retry): still success, nothing to release.
    for p in pods.iter().take(3) {
        ok(&client.call("del", p, bandwidth_args()), "second DEL");
    }
    assert!(
        !node.plugin_log().is_empty(),
        "plugin logs go to pluginLogFile"
    );
}

#[test]
fn libcni_with_a_1_0_0_conflist() {
    let node = Node::new("v100", PLAIN);
    let mut client = node.client();
    let pods: Vec<Pod> = (0..5).map(pod).collect();
    for p in &pods {
        let result = ok(&client.call("add", p, json!({})), "ADD");
        assert_eq!(result["cniVersion"], "1.0.0");
        assert!(result["ips"][0].get("version").is_none(), "{result}");
        assert!(ping(&p.ns, NODE_IP));
        assert!(ping(&node.ns, &pod_ip(&result)));
        ok(&client.call("check", p, json!({})), "CHECK");
    }
    for p in &pods {
        ok(&client.call("del", p, json!({})), "DEL");
    }
    assert_eq!(node.pool.assigned(), 0);
    assert_eq!(node.pod_links_after_dels(), Vec::<String>::new());
}

#[test]
fn ipamd_deletes_the_veth_after_answering_the_del() {
    let node = Node::new("reap", PLAIN);
    let mut client = node.client();
    let p = pod(0);
    let ip = pod_ip(&ok(&client.call("add", &p, json!({})), "ADD"));
    assert_eq!(node.extra_links().len(), 1);
    ok(&client.call("del", &p, json!({})), "DEL");
    // The plugin removed the rules and the host route, and left the pair to ipamd.
    let log = node.plugin_log();
    assert!(
        log.contains(&format!("teardown: delete host route {ip}/32 dev ")),
        "{log}"
    );
    assert!(!log.contains("teardown: delete link eth0 in"), "{log}");
    // ipamd deleted it although the pod's namespace is still there (a runtime that keeps it).
    assert!(
        eventually(|| node.extra_links().is_empty()),
        "{:?}",
        node.extra_links()
    );
    let pod_links = p.ns.ip(&["-o", "link", "show"]);
    assert_eq!(pod_links.lines().count(), 1, "only lo left: {pod_links}");
    assert_eq!(node.pod_rules(), Vec::<String>::new());
    assert_eq!(node.pool.assigned(), 0);
}

fn base_env<'a>(cmd: &'a str, p: &'a Pod, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", p.container_id.as_str()),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bad-input",
        ),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

const PLUGIN_CONF: &str =
    r#"{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni","mtu":"9001"}"#;

#[test]
fn bad_input_gets_spec_errors_and_leaves_nothing_behind() {
    let mut node = Node::new("bad", PLAIN);
    let p = pod(0);
    let netns = p.ns.path().display().to_string();
    type Env<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, Env<'_>, &str, u64, &str)> = vec![
        (
            "malformed stdin",
            base_env("ADD", &p, &netns),
            "{\"cniVersion\": ",
            6,
            "decode",
        ),
        (
            "unknown version",
            base_env("ADD", &p, &netns),
            r#"{"cniVersion":"0.9.9","name":"aws-cni","type":"aws-cni"}"#,
            1,
            "incompatible CNI version",
        ),
        (
            "missing CNI_NETNS",
            base_env("ADD", &p, &netns)
                .into_iter()
                .filter(|(k, _)| *k != "CNI_NETNS")
                .collect(),
            PLUGIN_CONF,
            4,
            "CNI_NETNS",
        ),
        (
            "bad ifname",
            base_env("ADD", &p, &netns)
                .into_iter()
                .map(|(k, v)| {
                    if k == "CNI_IFNAME" {
                        (k, "eth0/evil")
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            PLUGIN_CONF,
            4,
            "CNI_IFNAME",
        ),
        (
            "netns that does not exist",
            base_env("ADD", &p, "/var/run/netns/vcni-no-such-ns"),
            PLUGIN_CONF,
            4,
            "CNI_NETNS",
        ),
        (
            "invalid mtu",
            base_env("ADD", &p, &netns),
            r#"{"cniVersion":"1.0.0","name":"aws-cni","mtu":42}"#,
            7,
            "mtu",
        ),
    ];
    for (what, env, stdin, code, word) in cases {
        let (success, out) = node.invoke(&env, stdin.as_bytes());
        assert!(!success, "{what}: exit status must be non-zero");
        assert_eq!(out["code"], code, "{what}: {out}");
        let text = format!("{} {}", out["msg"], out["details"]);
        assert!(text.contains(word), "{what}: {text}");
        assert!(out["cniVersion"].is_string(), "{what}: {out}");
        assert_eq!(node.pool.assigned(), 0, "{what}");
        assert_eq!(node.extra_links(), Vec::<String>::new(), "{what}");
    }
    // ipamd down on ADD: try again later (11), nothing wired.
    node.stop_ipamd();
    let (success, out) = node.invoke(&base_env("ADD", &p, &netns), PLUGIN_CONF.as_bytes());
    assert!(!success);
    assert_eq!(out["code"], 11, "{out}");
    assert!(out["msg"].as_str().unwrap().contains("ipamd"), "{out}");
    assert_eq!(node.extra_links(), Vec::<String>::new());
    let pod_links = p.ns.ip(&["-o", "link", "show"]);
    assert_eq!(
        pod_links.lines().count(),
        1,
        "only lo in the pod: {pod_links}"
    );
}

#[test]
fn del_works_with_ipamd_down_and_with_the_namespace_gone() {
    let mut node = Node::new(
        "deldown",
        NodeOpts {
            cni_version: "0.4.0",
            bandwidth: false,
            tuning: false,
        },
    );
    let mut client = node.client();
    let a = pod(0);
    let b = pod(1);
    ok(&client.call("add", &a, json!({})), "ADD a");
    ok(&client.call("add", &b, json!({})), "ADD b");
    assert_eq!(node.extra_links().len(), 2);

    // b's namespace disappears first (the runtime removed the sandbox): DEL still cleans the host side and
    // releases the address.
    let b_path = b.ns.path();
    drop(b.ns);
    let b_gone = Pod {
        ns: TestNs::new("cnipod"),
        name: b.name.clone(),
        container_id: b.container_id.clone(),
    };
    let mut req = json!({});
    req["netns"] = json!(b_path);
    ok(
        &client.call("del", &b_gone, req),
        "DEL with the namespace gone",
    );
    assert_eq!(node.pool.assigned(), 1);
    assert!(
        eventually(|| node.extra_links().len() == 1),
        "{:?}",
        node.extra_links()
    );

    // ipamd goes away: DEL of a tears down from prevResult and still succeeds.
    node.stop_ipamd();
    ok(&client.call("del", &a, json!({})), "DEL with ipamd down");
    assert_eq!(node.extra_links(), Vec::<String>::new());
    assert_eq!(node.pod_rules(), Vec::<String>::new());
    assert!(
        node.plugin_log().contains("tearing down from prevResult"),
        "{}",
        node.plugin_log()
    );
}

#[test]
fn a_setup_failure_after_allocation_is_undone_and_the_address_released() {
    let node = Node::new("undo", PLAIN);
    let p = pod(0);
    // Something already holds the pod's interface name, so creating the veth fails after ipamd assigned.
    p.ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "squat",
    ]);
    let mut client = node.client();
    let answer = client.call("add", &p, json!({}));
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error"]["code"], 101, "{answer}");
    let details = answer["error"]["details"].as_str().unwrap();
    assert!(
        details.contains("create veth") && details.contains("released"),
        "{details}"
    );
    assert_eq!(
        node.pool.assigned(),
        0,
        "address released with SetupNSFailed"
    );
    assert_eq!(node.extra_links(), Vec::<String>::new());
    assert_eq!(node.pod_rules(), Vec::<String>::new());
}

#[test]
fn check_names_what_is_broken() {
    let node = Node::new("check", PLAIN);
    let mut client = node.client();
    let p = pod(0);
    let ip = pod_ip(&ok(&client.call("add", &p, json!({})), "ADD"));
    ok(
        &client.call("check", &p, json!({})),
        "CHECK of fresh wiring",
    );
    p.ns.ip(&["neigh", "del", "169.254.1.1", "dev", "eth0"]);
    node.ns.ip(&["rule", "del", "prio", "512", "to", &ip]);
    let answer = client.call("check", &p, json!({}));
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["error"]["code"], 102, "{answer}");
    let details = answer["error"]["details"].as_str().unwrap();
    assert!(
        details.contains("permanent neighbour 169.254.1.1"),
        "{details}"
    );
    assert!(
        details.contains(&format!("rule prio 512 to {ip}/32 lookup 254: missing")),
        "{details}"
    );
    assert!(
        !details.contains("host route"),
        "only broken pieces are named: {details}"
    );
    ok(&client.call("del", &p, json!({})), "DEL");
}

#[test]
fn status_and_gc_verbs_of_cni_1_1() {
    let mut node = Node::new("gc", PLAIN);
    let conf11 = r#"{"cniVersion":"1.1.0","name":"aws-cni","type":"aws-cni"}"#;
    let pods: Vec<Pod> = (0..3).map(pod).collect();
    let mut ips = Vec::new();
    for p in &pods {
        let netns = p.ns.path().display().to_string();
        let mut env = base_env("ADD", p, &netns);
        let args = format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={}", p.name);
        env.retain(|(k, _)| *k != "CNI_ARGS");
        env.push(("CNI_ARGS", &args));
        let (success, out) = node.invoke(&env, conf11.as_bytes());
        assert!(success, "{out}");
        assert_eq!(out["cniVersion"], "1.1.0");
        ips.push(pod_ip(&out));
    }
    let (success, out) = node.invoke(&[("CNI_COMMAND", "STATUS")], conf11.as_bytes());
    assert!(success && out.is_null(), "{out}");

    // The sandboxes of pods 1 and 2 are gone without a DEL (their veths went with their namespaces): their
    // addresses and rules leak until GC, which keeps pod 0 only.
    let mut pods = pods;
    pods.truncate(1);
    // A deleted namespace is destroyed asynchronously by the kernel.
    assert!(
        eventually(|| node.extra_links().len() == 1),
        "{:?}",
        node.extra_links()
    );
    assert_eq!(node.pod_rules().len(), 3);
    let gc = json!({"cniVersion":"1.1.0","name":"aws-cni","type":"aws-cni",
                    "cni.dev/valid-attachments":[{"containerID": pods[0].container_id, "ifname":"eth0"}]});
    let (success, out) = node.invoke(&[("CNI_COMMAND", "GC")], gc.to_string().as_bytes());
    assert!(success, "{out}");
    assert_eq!(node.pool.assigned(), 1);
    let rules = node.pod_rules();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(rules[0].contains(&ips[0]), "{rules:?}");
    assert_eq!(node.extra_links().len(), 1);
    assert!(ping(&node.ns, &ips[0]), "the valid pod still works");

    node.stop_ipamd();
    let (success, out) = node.invoke(&[("CNI_COMMAND", "STATUS")], conf11.as_bytes());
    assert!(!success);
    assert_eq!(out["code"], 50, "{out}");
    let (success, out) = node.invoke(&[("CNI_COMMAND", "VERSION")], conf11.as_bytes());
    assert!(success);
    assert_eq!(
        out["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

#[test]
fn concurrent_clients_get_distinct_addresses_and_working_pods() {
    let node = Node::new("concurrent", PLAIN);
    let node = &node;
    let ips: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                s.spawn(move || {
                    let mut client = node.client();
                    let pods: Vec<Pod> = (0..5).map(|i| pod(w * 10 + i)).collect();
                    let mut ips = Vec::new();
                    for p in &pods {
                        let ip = pod_ip(&ok(&client.call("add", p, json!({})), "ADD"));
                        assert!(ping(&p.ns, NODE_IP), "pod {ip} cannot reach the node");
                        ips.push(ip);
                    }
                    for p in &pods {
                        ok(&client.call("del", p, json!({})), "DEL");
                    }
                    ips
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 20, "{ips:?}");
    assert_eq!(node.pool.assigned(), 0);
    assert_eq!(node.pod_links_after_dels(), Vec::<String>::new());
    assert_eq!(node.pod_rules(), Vec::<String>::new());
}

#[test]
fn del_of_an_old_sandbox_leaves_the_new_sandbox_of_the_same_pod_working() {
    let node = Node::new("resandbox", PLAIN);
    let mut client = node.client();
    let old = pod(0);
    let new = Pod {
        ns: TestNs::new("cnipod"),
        name: old.name.clone(),
        container_id: format!("{}-new", old.container_id),
    };
    let old_ip = pod_ip(&ok(&client.call("add", &old, json!({})), "ADD old sandbox"));
    // The runtime creates the replacement sandbox before it deletes the old one; the host veth name (from the
    // pod's namespace and name) is the same.
    let new_ip = pod_ip(&ok(&client.call("add", &new, json!({})), "ADD new sandbox"));
    assert_ne!(old_ip, new_ip);
    ok(&client.call("del", &old, json!({})), "DEL old sandbox");
    assert!(ping(&new.ns, NODE_IP), "new sandbox lost its network");
    assert!(ping(&node.ns, &new_ip));
    assert_eq!(node.pod_rules().len(), 1, "{:?}", node.pod_rules());
    ok(&client.call("check", &new, json!({})), "CHECK new sandbox");
    ok(&client.call("del", &new, json!({})), "DEL new sandbox");
    assert_eq!(node.pool.assigned(), 0);
    assert_eq!(node.pod_links_after_dels(), Vec::<String>::new());
}

#[test]
fn install_cni_writes_what_libcni_loads_and_runs() {
    let node = Node::new(
        "install",
        NodeOpts {
            cni_version: "0.4.0",
            bandwidth: false,
            tuning: false,
        },
    );
    let conf_dir = node.dir.join("net.d");
    let bin_dir = node.dir.join("opt-cni-bin");
    let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .arg("install-cni")
        .env("HOST_CNI_CONFDIR_PATH", &conf_dir)
        .env("HOST_CNI_BIN_PATH", &bin_dir)
        .env(
            "AWS_VPC_K8S_PLUGIN_LOG_FILE",
            node.dir.join("installed-plugin.log"),
        )
        .env("POD_MTU", "1460")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bin_dir.join("aws-cni").is_file());
    let conflist = conf_dir.join("10-aws.conflist");
    let mut client = node.client_with(&conflist, &bin_dir);
    let p = pod(0);
    let result = ok(
        &client.call("add", &p, json!({})),
        "ADD with the installed conflist",
    );
    assert!(ping(&p.ns, NODE_IP));
    assert!(p.ns.ip(&["link", "show", "eth0"]).contains("mtu 1460"));
    ok(&client.call("check", &p, json!({})), "CHECK");
    ok(&client.call("del", &p, json!({})), "DEL");
    assert_eq!(node.pool.assigned(), 0);
    assert_eq!(result["cniVersion"], "0.4.0");
    // A bad environment is refused with the variable named, and nothing is written.
    let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .arg("install-cni")
        .env("HOST_CNI_CONFDIR_PATH", node.dir.join("never"))
        .env("HOST_CNI_BIN_PATH", node.dir.join("never-bin"))
        .env("POD_MTU", "100")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("POD_MTU"));
    assert!(!node.dir.join("never").exists());
}
