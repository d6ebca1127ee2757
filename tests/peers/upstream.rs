//! Upstream's node agent (aws-k8s-agent v1.23, built by scripts/build-peers) as the aws-node DaemonSet runs it:
//! the environment it gets, the conflist its entrypoint renders, and waiting until it serves its socket.
//! Include with `#[path = "peers/upstream.rs"] mod upstream;` next to `cni_client`, `node` and `vpcsim`.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cni_client::peer;
use crate::node::NodeDaemon;
use crate::vpcsim;

/// The environment an ipamd on `node` gets (the aws-node DaemonSet's, pointed at the sim and the test cluster).
pub fn daemon_env(
    node: &vpcsim::Node,
    node_name: &str,
    kubeconfig: &Path,
    dir: &Path,
) -> Vec<(String, String)> {
    let mut env = node.netns_env.clone();
    for (k, v) in [
        ("MY_NODE_NAME", node_name.to_string()),
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("AWS_VPC_K8S_CNI_LOG_FILE", "stdout".to_string()),
        ("AWS_VPC_K8S_CNI_LOGLEVEL", "DEBUG".to_string()),
        (
            "AWS_VPC_K8S_PLUGIN_LOG_FILE",
            dir.join("plugin.log").display().to_string(),
        ),
        ("AWS_VPC_K8S_CNI_VETHPREFIX", "eni".to_string()),
        ("AWS_VPC_ENI_MTU", "9001".to_string()),
        ("WARM_ENI_TARGET", "1".to_string()),
        ("ENABLE_IPv4", "true".to_string()),
        ("ENABLE_IPv6", "false".to_string()),
        ("DISABLE_METRICS", "true".to_string()),
        // Upstream v1.23 discovers subnets by default (DescribeSubnets), which the sim's seed policy does not
        // grant; our daemon has no subnet discovery either.
        ("ENABLE_SUBNET_DISCOVERY", "false".to_string()),
    ] {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v));
    }
    env
}

/// Upstream's conflist template with the values their entrypoint puts in for an IPv4 node.
pub fn render_conflist(node_ip: &str, dir: &Path) -> String {
    let template = std::fs::read_to_string(peer("upstream", "VPC_CNI_PEER_UPSTREAM_CONFLIST"))
        .expect("read upstream's conflist template");
    let d = |p: &str| dir.join(p).display().to_string();
    [
        ("__VETHPREFIX__", "eni".to_string()),
        ("__MTU__", "9001".to_string()),
        ("__PODSGENFORCINGMODE__", "strict".to_string()),
        ("__PLUGINLOGFILE__", d("plugin.log")),
        ("__PLUGINLOGLEVEL__", "DEBUG".to_string()),
        ("__EGRESSPLUGINLOGFILE__", d("egress-plugin.log")),
        ("__EGRESSPLUGINENABLED__", "false".to_string()),
        ("__EGRESSPLUGINIPAMSUBNET__", "fd00::ac:00/118".to_string()),
        ("__EGRESSPLUGINIPAMDST__", "::/0".to_string()),
        ("__EGRESSPLUGINIPAMDATADIR__", d("egress-v6-ipam")),
        ("__RANDOMIZESNAT__", "prng".to_string()),
        ("__NODEIP__", node_ip.to_string()),
    ]
    .iter()
    .fold(template, |t, (k, v)| t.replace(k, v))
}

/// Polls upstream's gRPC health endpoint on its socket every `every` until it answers SERVING; panics with the
/// daemon's log when it exits or `budget` passes.
pub fn wait_serving(ipamd: &mut NodeDaemon, budget: Duration, every: Duration) {
    let probe = peer("upstream", "VPC_CNI_PEER_GRPC_HEALTH_PROBE");
    let deadline = Instant::now() + budget;
    loop {
        let ok = ipamd
            .enter(&probe)
            .args(["-addr", "unix:///var/run/aws-node/ipamd.sock"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        if let Some(status) = ipamd.exited() {
            panic!("upstream ipamd exited ({status}):\n{}", ipamd.log_tail(60));
        }
        assert!(
            Instant::now() < deadline,
            "upstream ipamd not serving in {budget:?}:\n{}",
            ipamd.log_tail(60)
        );
        std::thread::sleep(every);
    }
}
