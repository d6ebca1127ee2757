//! Upstream's own ipamd (aws-k8s-agent of amazon-vpc-cni-k8s, built by scripts/build-peers) on a VPC-in-a-box
//! node, exactly as ours will run: in the node's network namespace, with the node's EC2 and IMDS, its own
//! iptables, a real kube-apiserver (with etcd) reachable on the node's loopback, upstream's CRDs and a Node object.
//! Pods are added through libcni 1.3 with upstream's plugin (their aws-cni and egress-cni) and their conflist,
//! rendered the way their entrypoint renders it.
//!
//! This is the reference behaviour our daemon is compared with. Needs root, the VPC-in-a-box venv (scripts/setup)
//! and the peer cache (scripts/build-peers).

#![allow(clippy::unwrap_used)]

#[path = "peers/cluster.rs"]
mod cluster;
#[path = "support/cni_client.rs"]
mod cni_client;
#[path = "support/netns.rs"]
mod netns;
#[path = "peers/node.rs"]
mod node;
#[path = "peers/upstream.rs"]
mod upstream;
#[path = "support/vpcsim.rs"]
mod vpcsim;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use cni_client::peer;
use netns::TestNs;
use serde_json::{json, Value};
use vpc_cni::aws::imds::Imds;

struct CniClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl CniClient {
    fn call(&mut self, op: &str, pod: &TestNs, id: &str) -> Value {
        let req = json!({
            "op": op, "containerID": id, "netns": pod.path(), "ifname": "eth0",
            "args": [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", "default"], ["K8S_POD_NAME", id],
                     ["K8S_POD_INFRA_CONTAINER_ID", id]],
        });
        writeln!(self.stdin, "{req}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("client answered {line:?}: {e}"))
    }
}

impl Drop for CniClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("VPC_CNI_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn ip(ns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every secondary IPv4 address of every ENI of the node, as IMDS reports it.
fn eni_secondary_ips(node: &vpcsim::Node) -> BTreeSet<String> {
    let imds = Imds::new(&node.imds_endpoint).unwrap();
    let call = imds.within(Duration::from_secs(10));
    call.interfaces()
        .unwrap()
        .iter()
        .flat_map(|i| i.local_ipv4s.iter().skip(1).map(ToString::to_string))
        .collect()
}

#[test]
fn upstream_ipamd_on_a_sim_node_serves_three_pods_through_libcni() {
    let sim = vpcsim::VpcSim::start_with(
        "peerup",
        vpcsim::StartOptions {
            nodes: vec!["m5.large".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let node = sim.nodes().remove(0);
    let ns = node.namespace.clone().unwrap();
    let dir = TempDir(std::env::temp_dir().join(format!("vcni-upstream-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(dir.0.join("bin")).unwrap();

    // The control plane on the node's loopback.
    let cluster = cluster::Cluster::start("upstream", Some(&ns));
    let crds = peer("upstream", "VPC_CNI_PEER_UPSTREAM_CRDS");
    let mut names = cluster.apply_crds(&crds.join("eniconfigs.yaml"));
    names.extend(cluster.apply_crds(&crds.join("cninodes.yaml")));
    assert!(
        names.contains(&"eniconfigs.crd.k8s.amazonaws.com".to_string()),
        "{names:?}"
    );
    let node_name = format!(
        "ip-{}.{}.compute.internal",
        node.primary_ip.replace('.', "-"),
        sim.region()
    );
    cluster.create_node(
        &node_name,
        &format!("aws:///{}/{}", node.az, node.instance_id),
        &json!({"kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": node.instance_type,
                "topology.kubernetes.io/zone": node.az}),
    );
    // What kubelet would report for an m5.large with upstream's max-pods formula: 3 ENIs x (10 - 1) + 2.
    cluster.set_node_pods(&node_name, 29);

    // Upstream's ipamd in the node, /run private.
    let env = upstream::daemon_env(&node, &node_name, &cluster.kubeconfig, &dir.0);
    let mut ipamd = node::NodeDaemon::start(
        &ns,
        &dir.0.join("run"),
        &dir.0.join("ipamd.log"),
        &peer("upstream", "VPC_CNI_PEER_IPAMD"),
        &[],
        &env,
    );
    upstream::wait_serving(
        &mut ipamd,
        Duration::from_secs(180),
        Duration::from_millis(500),
    );
    assert!(
        dir.0.join("run/aws-node/ipamd.sock").exists(),
        "the socket is in the test's /run"
    );

    // Their plugin and conflist under libcni 1.3.
    for (name, var) in [
        ("aws-cni", "VPC_CNI_PEER_AWS_CNI"),
        ("egress-cni", "VPC_CNI_PEER_EGRESS_CNI"),
    ] {
        std::os::unix::fs::symlink(peer("upstream", var), dir.0.join("bin").join(name)).unwrap();
    }
    let conflist = dir.0.join("10-aws.conflist");
    std::fs::write(
        &conflist,
        upstream::render_conflist(&node.primary_ip, &dir.0),
    )
    .unwrap();
    let mut child = ipamd
        .enter(&cni_client::go_client())
        .arg("-conflist")
        .arg(&conflist)
        .arg("-path")
        .arg(format!("{}:/usr/lib/cni", dir.0.join("bin").display()))
        .arg("-cache")
        .arg(dir.0.join("cache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut client = CniClient {
        stdin: child.stdin.take().unwrap(),
        stdout: BufReader::new(child.stdout.take().unwrap()),
        child,
    };

    let pods: Vec<(TestNs, String)> = (0..3)
        .map(|i| {
            (
                TestNs::new("uppod"),
                format!("up{}x{i}", std::process::id()),
            )
        })
        .collect();
    let mut ips = Vec::new();
    // Upstream serves its socket before its warm pool is filled (ENIs attached, addresses assigned through EC2);
    // until then ADD fails (ipamd logs "no available IP/Prefix addresses") and the runtime retries, as kubelet does.
    let deadline = Instant::now() + Duration::from_secs(180);
    for (pod, id) in &pods {
        let mut answer = client.call("add", pod, id);
        while answer["ok"] != true && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            answer = client.call("add", pod, id);
        }
        assert_eq!(
            answer["ok"],
            true,
            "ADD {id}: {answer}\nipamd:\n{}\nplugin:\n{}",
            ipamd.log_tail(40),
            std::fs::read_to_string(dir.0.join("plugin.log")).unwrap_or_default()
        );
        let ip = answer["result"]["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        ips.push(ip);
    }
    // Upstream's checkpoint (in the test's /run) holds the three allocations.
    let saved: Value =
        serde_json::from_slice(&std::fs::read(dir.0.join("run/aws-node/ipam.json")).unwrap())
            .unwrap();
    let saved_ips: BTreeSet<&str> = saved["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["ipv4"].as_str())
        .collect();
    assert_eq!(
        saved_ips,
        ips.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        "{saved}"
    );
    let eni_ips = eni_secondary_ips(&node);
    for ip in &ips {
        assert!(
            eni_ips.contains(ip),
            "{ip} is not a secondary address of the node's ENIs {eni_ips:?}"
        );
    }
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 3, "{ips:?}");
    for ((pod, _), ip) in pods.iter().zip(&ips) {
        let (ok, out) = pod.try_exec("ping", &["-c", "1", "-W", "2", &node.primary_ip]);
        assert!(ok, "pod {ip} cannot reach its node: {out}");
    }

    for (pod, id) in &pods {
        let answer = client.call("del", pod, id);
        assert_eq!(answer["ok"], true, "DEL {id}: {answer}");
    }
    // Upstream's DEL releases the address and removes the pod's route and rules; the veth goes with the
    // sandbox's namespace (the runtime's job), not with DEL.
    let checkpoint = || -> Value {
        let path = dir.0.join("run/aws-node/ipam.json");
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    };
    assert!(
        checkpoint()["allocations"]
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "{}",
        checkpoint()
    );
    let rules = ip(&ns, &["rule", "show"]);
    let routes = ip(&ns, &["route", "show"]);
    for ip in &ips {
        assert!(!rules.contains(&format!("{ip} ")), "{ip}: {rules}");
        assert!(!routes.contains(&format!("{ip} dev")), "{ip}: {routes}");
    }
    drop(pods);
    assert!(
        (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            !ip(&ns, &["-o", "link", "show"]).contains(": eni")
        }),
        "pod veths outlived their namespaces"
    );
    drop(client);
    drop(ipamd);
    drop(cluster);
    sim.stop().unwrap();
}
