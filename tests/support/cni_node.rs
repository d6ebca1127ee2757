//! A "node" for tests of the plugin under a real CNI client (include with
//! `#[path = "support/cni_node.rs"] mod cni_node;` after `cni_client`, `netns` and `seeded_ipamd`): a namespace
//! whose "eth0" (one end of a veth pair: not every kernel has the dummy driver) holds the node and pod-subnet
//! addresses, a plugin dir with our binary as `aws-cni`, our conflist, and ipamd's RPC server hosted in the test
//! process over a unix socket, backed by the seeded datastore. Pods are namespaces too.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use vpc_cni::cni::install;
use vpc_cni::rpc;

use super::cni_client::Libcni;
use super::netns::TestNs;
use super::seeded_ipamd::SeededIpamd;

/// The node's own address on eth0 (the seeded primary ENI's).
pub const NODE_IP: &str = "10.0.0.10";

pub struct CniNode {
    pub ns: TestNs,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub pool: SeededIpamd,
    server: Option<rpc::ServerHandle>,
    pub conflist: PathBuf,
}

impl CniNode {
    /// A node in a namespace named after `ns_prefix`, its files under a temp dir named after `tag`.
    /// The conflist is what `install-cni` writes for `settings` (variables on top of the plugin log file and
    /// POD_MTU=1500), edited by `shape`, and written to `conflist_at` under the node's dir.
    pub fn new(
        ns_prefix: &str,
        tag: &str,
        settings: &[(&str, &str)],
        conflist_at: &str,
        shape: impl FnOnce(&mut Value),
    ) -> CniNode {
        let ns = TestNs::new(ns_prefix);
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ]);
        ns.ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", "eth0"]);
        ns.ip(&["addr", "add", "10.0.1.10/24", "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["link", "set", "eth0p", "up"]);
        let dir =
            std::env::temp_dir().join(format!("vcni-{ns_prefix}-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vpc-cni"), dir.join("bin/aws-cni")).unwrap();
        let mut env: BTreeMap<&str, String> = BTreeMap::new();
        env.insert(
            "AWS_VPC_K8S_PLUGIN_LOG_FILE",
            dir.join("plugin.log").display().to_string(),
        );
        env.insert("POD_MTU", "1500".into());
        for (k, v) in settings {
            env.insert(k, (*v).to_string());
        }
        let cfg = install::InstallConfig::from_vars(|k| env.get(k).cloned()).unwrap();
        let mut list = install::conflist(&cfg);
        shape(&mut list);
        let conflist = dir.join(conflist_at);
        std::fs::create_dir_all(conflist.parent().unwrap()).unwrap();
        std::fs::write(&conflist, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
        let socket = dir.join("ipamd.sock");
        let pool = SeededIpamd::with_veth_reaper(&dir.join("ipam.json"), &ns.path());
        let server = rpc::Server::bind(&socket)
            .unwrap()
            .spawn(pool.service.clone(), Duration::from_secs(5))
            .unwrap();
        CniNode {
            ns,
            dir,
            socket,
            pool,
            server: Some(server),
            conflist,
        }
    }

    /// Stops ipamd's RPC server (the socket goes away).
    pub fn stop_ipamd(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }

    /// A libcni client in the node namespace running `conflist` with plugins from `path` (colon-separated) and
    /// its result cache in `cache` under the node's dir.
    pub fn libcni(&self, conflist: &Path, path: &str, cache: &str) -> Libcni {
        Libcni::spawn(
            &self.ns.name,
            conflist,
            path,
            &self.dir.join(cache),
            &[(rpc::SOCKET_ENV, &self.socket)],
            None,
        )
    }

    /// Links in the node namespace other than lo and the eth0 pair: the pods' host-side veths.
    pub fn pod_links(&self) -> Vec<String> {
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

    /// The pod links left once ipamd's reaper has deleted the veths of answered DELs (it does so
    /// right after answering; this waits up to 5 s for the node to have none).
    pub fn pod_links_after_dels(&self) -> Vec<String> {
        eventually(|| self.pod_links().is_empty());
        self.pod_links()
    }

    /// The node's policy rules at the given priorities (`512` to pods, `1536` from pods).
    pub fn rules_at(&self, priorities: &[u32]) -> Vec<String> {
        self.ns
            .ip(&["rule", "show"])
            .lines()
            .filter(|l| {
                l.split(':')
                    .next()
                    .and_then(|p| p.trim().parse::<u32>().ok())
                    .is_some_and(|p| priorities.contains(&p))
            })
            .map(str::to_string)
            .collect()
    }

    pub fn plugin_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("plugin.log")).unwrap_or_default()
    }
}

impl Drop for CniNode {
    fn drop(&mut self) {
        self.stop_ipamd();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pod: its namespace, its name and its sandbox's container id.
pub struct Pod {
    pub ns: TestNs,
    pub name: String,
    pub container_id: String,
}

impl Pod {
    /// Pod number `i` in a namespace named after `ns_prefix`; `name` makes its name from `i` and the namespace.
    pub fn new(ns_prefix: &str, i: usize, name: impl FnOnce(usize, &TestNs) -> String) -> Pod {
        let ns = TestNs::new(ns_prefix);
        Pod {
            container_id: format!("ctr{}x{i}", std::process::id()),
            name: name(i, &ns),
            ns,
        }
    }
}

impl Libcni {
    /// One operation for `pod`'s sandbox; the members of `extra` are merged into the request.
    pub fn call(&mut self, op: &str, pod: &Pod, extra: Value) -> Value {
        self.pod_op(op, &pod.container_id, &pod.ns.path(), &pod.name, extra)
    }
}

/// The result of a successful answer; panics naming `what` otherwise.
pub fn ok(answer: &Value, what: &str) -> Value {
    assert_eq!(answer["ok"], true, "{what}: {answer}");
    answer["result"].clone()
}

/// The first address of a CNI result, without its prefix length.
pub fn pod_ip(result: &Value) -> String {
    let cidr = result["ips"][0]["address"].as_str().unwrap();
    cidr.split('/').next().unwrap().to_string()
}

pub fn ping(from: &TestNs, to: &str) -> bool {
    from.try_exec("ping", &["-c", "1", "-W", "2", to]).0
}

/// Polls `cond` for up to 5 s (the kernel destroys a deleted namespace's veth asynchronously).
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
