//! Upstream v1.23.0's ipamd (aws-k8s-agent) and plugin on a VPC-in-a-box node, driven like
//! [`crate::ipamd_node::Ipamd`] drives ours: [`UpstreamNode::start`] registers the node with a
//! [`crate::cluster::Cluster`] (Node object, pod capacity), starts their daemon in the node's
//! namespace with a private /run ([`crate::node::NodeDaemon`]) and waits until their gRPC socket
//! answers health checks; [`UpstreamNode::try_add_pod`] runs CNI ADD through libcni 1.3 with their
//! plugin and their conflist (their template rendered as their entrypoint renders it).
//!
//! Include after `cluster`, `node`, `cni_client`, `netns`, `tempdir`, `vpcsim`, `upstream` and `ipamd_node`
//! (whose [`Pod`] it returns).
#![allow(dead_code, clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::cni_client::{self, peer};
use crate::ipamd_node::Pod;
use crate::netns::TestNs;
use crate::node::NodeDaemon;
use crate::tempdir::TempDir;
use crate::vpcsim::Node;

pub use crate::upstream::render_conflist;

/// The Node object name kubelet gives an EC2 instance.
pub fn node_name(node: &Node, region: &str) -> String {
    format!(
        "ip-{}.{region}.compute.internal",
        node.primary_ip.replace('.', "-")
    )
}

/// Upstream's daemon on one sim node.
pub struct UpstreamNode {
    pub node: Node,
    pub node_name: String,
    pub dir: TempDir,
    env: Vec<(String, String)>,
    daemon: Option<NodeDaemon>,
    client: Option<cni_client::Libcni>,
}

impl UpstreamNode {
    /// Registers `node` with `cluster` (29 pods: an m5.large's max-pods) and starts upstream's
    /// ipamd there with `settings` on top of the DaemonSet's environment; waits until it serves
    /// its socket (180 s).
    pub fn start(
        cluster: &Cluster,
        node: &Node,
        region: &str,
        max_pods: u32,
        settings: &[(&str, &str)],
    ) -> UpstreamNode {
        let node_name = node_name(node, region);
        cluster.create_node(
            &node_name,
            &format!("aws:///{}/{}", node.az, node.instance_id),
            &json!({"kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": node.instance_type,
                    "topology.kubernetes.io/zone": node.az}),
        );
        cluster.set_node_pods(&node_name, max_pods);
        // What the node image does (ip_forward: the EKS AMI's sysctl.d, kubelet's requirement)
        // and what upstream's init container (aws-vpc-cni-init) does on an IPv4 node before the
        // daemon starts: loose rp_filter on the primary interface, TCP early demux on. Their
        // daemon relies on these and never sets them.
        for (key, value) in [
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv4/conf/eth0/rp_filter", "2"),
            ("net/ipv4/tcp_early_demux", "1"),
        ] {
            // /proc/sys/net is the namespace's own for a process inside it.
            let ok = std::process::Command::new("ip")
                .args(["netns", "exec", node.namespace.as_deref().unwrap()])
                .args(["sh", "-c", &format!("echo {value} > /proc/sys/{key}")])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "{key}={value} on the node");
        }
        let dir = TempDir::new("upstream");
        std::fs::create_dir_all(dir.0.join("bin")).unwrap();
        for (name, var) in [
            ("aws-cni", "VPC_CNI_PEER_AWS_CNI"),
            ("egress-cni", "VPC_CNI_PEER_EGRESS_CNI"),
        ] {
            std::os::unix::fs::symlink(peer("upstream", var), dir.0.join("bin").join(name))
                .unwrap();
        }
        std::fs::write(
            dir.0.join("10-aws.conflist"),
            render_conflist(&node.primary_ip, &dir.0),
        )
        .unwrap();
        let mut env = node.netns_env.clone();
        for (k, v) in [
            ("MY_NODE_NAME", node_name.clone()),
            ("KUBECONFIG", cluster.kubeconfig.display().to_string()),
            ("AWS_VPC_K8S_CNI_LOG_FILE", "stdout".to_string()),
            ("AWS_VPC_K8S_CNI_LOGLEVEL", "DEBUG".to_string()),
            (
                "AWS_VPC_K8S_PLUGIN_LOG_FILE",
                dir.0.join("plugin.log").display().to_string(),
            ),
            ("DISABLE_METRICS", "true".to_string()),
            // Upstream v1.23 discovers subnets by default (DescribeSubnets), which the sim's seed
            // policy does not grant; ours has no subnet discovery.
            ("ENABLE_SUBNET_DISCOVERY", "false".to_string()),
        ] {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v));
        }
        for (k, v) in settings {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_string(), (*v).to_string()));
        }
        let mut u = UpstreamNode {
            node: node.clone(),
            node_name,
            dir,
            env,
            daemon: None,
            client: None,
        };
        u.restart();
        u
    }

    /// Starts the daemon again with the same /run (its checkpoint and socket) and waits for it.
    pub fn restart(&mut self) {
        let netns = self.netns().to_string();
        let daemon = NodeDaemon::start(
            &netns,
            &self.run_dir(),
            &self.dir.0.join("ipamd.log"),
            &peer("upstream", "VPC_CNI_PEER_IPAMD"),
            &[],
            &self.env,
        );
        self.daemon = Some(daemon);
        crate::upstream::wait_serving(
            self.daemon.as_mut().unwrap(),
            Duration::from_secs(180),
            Duration::from_millis(500),
        );
    }

    /// The node's namespace.
    pub fn netns(&self) -> &str {
        self.node.namespace.as_deref().unwrap()
    }

    /// What stands in for /run in the daemon's mount namespace.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.0.join("run")
    }

    /// Their checkpoint, /var/run/aws-node/ipam.json.
    pub fn checkpoint(&self) -> PathBuf {
        self.run_dir().join("aws-node/ipam.json")
    }

    pub fn conflist(&self) -> PathBuf {
        self.dir.0.join("10-aws.conflist")
    }

    /// The daemon's log (the last 80 lines) and the plugin's.
    pub fn log(&self) -> String {
        let daemon = self
            .daemon
            .as_ref()
            .map(|d| d.log_tail(80))
            .unwrap_or_else(|| {
                let t = std::fs::read_to_string(self.dir.0.join("ipamd.log")).unwrap_or_default();
                let l: Vec<&str> = t.lines().collect();
                l[l.len().saturating_sub(80)..].join("\n")
            });
        let plugin = std::fs::read_to_string(self.dir.0.join("plugin.log")).unwrap_or_default();
        let pl: Vec<&str> = plugin.lines().collect();
        format!(
            "--- upstream ipamd\n{daemon}\n--- upstream plugin\n{}",
            pl[pl.len().saturating_sub(20)..].join("\n")
        )
    }

    /// Stops the daemon (SIGTERM, then SIGKILL after 20 s), as a DaemonSet rollout does; its
    /// kernel state, EC2 state and checkpoint stay.
    pub fn stop(&mut self) {
        self.client = None;
        if let Some(d) = self.daemon.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(d.pid() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let began = Instant::now();
            let mut d = d;
            while d.exited().is_none() && began.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(d);
        }
    }

    fn client(&mut self) -> &mut cni_client::Libcni {
        if self.client.is_none() {
            let d = self.daemon.as_ref().expect("upstream daemon running");
            self.client = Some(cni_client::Libcni::start(
                d.enter(&cni_client::go_client()),
                &self.dir.0.join("10-aws.conflist"),
                &format!("{}:/usr/lib/cni", self.dir.0.join("bin").display()),
                &self.dir.0.join("cni-cache"),
            ));
        }
        self.client.as_mut().unwrap()
    }

    /// One libcni operation with their plugin (same arguments as ours gets in `ipamd_node`).
    pub fn cni(&mut self, op: &str, container_id: &str, netns: &Path, pod: &str) -> Value {
        self.client()
            .pod_op(op, container_id, netns, pod, Value::Null)
    }

    /// A pod namespace and CNI ADD (container id `c-<name>`, as ours); the CNI error otherwise.
    pub fn try_add_pod(&mut self, name: &str) -> Result<Pod, Value> {
        let ns = TestNs::new("upod");
        let container_id = format!("c-{name}");
        let a = self.cni("add", &container_id, &ns.path(), name);
        if a["ok"] != json!(true) {
            return Err(a["error"].clone());
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

    /// `n` pods named `<prefix><i>`, retrying while the pool grows (upstream serves its socket
    /// before its pool is filled, and the kubelet retries).
    pub fn add_pods(&mut self, prefix: &str, n: usize) -> Vec<Pod> {
        (0..n)
            .map(|i| {
                let name = format!("{prefix}{i}");
                let began = Instant::now();
                loop {
                    match self.try_add_pod(&name) {
                        Ok(p) => break p,
                        Err(_) if began.elapsed() < Duration::from_secs(60) => {
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        Err(e) => panic!("upstream ADD {name}: {e}\n{}", self.log()),
                    }
                }
            })
            .collect()
    }

    /// CNI DEL with their plugin.
    pub fn del_pod(&mut self, pod: Pod) {
        let a = self.cni("del", &pod.container_id, &pod.ns.path(), &pod.name);
        assert_eq!(a["ok"], json!(true), "upstream DEL {}: {a}", pod.name);
    }
}

impl Drop for UpstreamNode {
    fn drop(&mut self) {
        self.client = None;
        self.daemon = None;
    }
}
