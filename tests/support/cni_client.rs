//! Locates the real peers the tests run against: the libcni v1.3 client (tests/cni-client), the official cnitool,
//! and the other programs scripts/build-peers builds from the Go module proxy into its cache outside the
//! repository (upstream ipamd and plugin, kube-apiserver, etcd, amazon-ec2-metadata-mock).
//!
//! `scripts/build-peers --print-env GROUP` is a no-op when the group is already built for its pins (the test
//! command runs the full build before cargo test); otherwise it builds that group first.
//! A variable already set in the environment (e.g. `VPC_CNI_PEER_CNI_CLIENT=/path`) wins over the cache.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The `NAME=PATH` lines scripts/build-peers prints for `group` (cni, upstream, imds-mock, kube, etcd), built
/// first if needed. Panics with the build's error if it fails.
pub fn peer_env(group: &str) -> BTreeMap<String, String> {
    static GROUPS: OnceLock<Mutex<HashMap<String, BTreeMap<String, String>>>> = OnceLock::new();
    let groups = GROUPS.get_or_init(Default::default);
    let mut groups = groups.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = groups.get(group) {
        return env.clone();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-peers");
    let out = Command::new(&script)
        .args(["--print-env", group])
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "scripts/build-peers {group} failed (see its output above)"
    );
    let env: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    groups.insert(group.to_string(), env.clone());
    env
}

/// The path of one peer program or file: `name` is the variable (e.g. `VPC_CNI_PEER_IPAMD`) of `group`.
pub fn peer(group: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(name) {
        return PathBuf::from(p);
    }
    let env = peer_env(group);
    let p = env
        .get(name)
        .unwrap_or_else(|| panic!("scripts/build-peers {group} printed no {name}: {env:?}"));
    PathBuf::from(p)
}

/// The libcni v1.3 client of tests/cni-client (protocol: one JSON request per stdin line, see its main.go).
pub fn go_client() -> PathBuf {
    peer("cni", "VPC_CNI_PEER_CNI_CLIENT")
}

/// The official cnitool of the same libcni release.
pub fn cnitool() -> PathBuf {
    peer("cni", "VPC_CNI_PEER_CNITOOL")
}

/// A running libcni v1.3 client (tests/cni-client): one JSON request per stdin line, one answer per stdout
/// line (`ok` plus `result` or `error`). The process is killed on drop.
pub struct Libcni {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Libcni {
    /// Starts the client inside the network namespace `netns` with `conflist`, the plugin search `path`
    /// (colon-separated) and its result cache in `cache`; `env` reaches the plugins (e.g. ipamd's socket).
    /// The client's stderr goes to `stderr` if given, else to the test's.
    pub fn spawn(
        netns: &str,
        conflist: &Path,
        path: &str,
        cache: &Path,
        env: &[(&str, &Path)],
        stderr: Option<std::fs::File>,
    ) -> Libcni {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(go_client());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(f) = stderr {
            cmd.stderr(f);
        }
        Libcni::start(cmd, conflist, path, cache)
    }

    /// Starts the client from `cmd`, a command that runs [`go_client`] where the test wants it (a
    /// namespace, a private mount namespace), with `conflist`, plugin `path` and result `cache`.
    pub fn start(mut cmd: Command, conflist: &Path, path: &str, cache: &Path) -> Libcni {
        cmd.arg("-conflist")
            .arg(conflist)
            .arg("-path")
            .arg(path)
            .arg("-cache")
            .arg(cache)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start the libcni client: {e}"));
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            panic!("the libcni client has no stdin/stdout pipe");
        };
        Libcni {
            child,
            stdin,
            stdout: std::io::BufReader::new(stdout),
        }
    }

    /// Sends one request and returns the client's answer.
    pub fn send(&mut self, req: &serde_json::Value) -> serde_json::Value {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{req}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("write to the libcni client: {e}"));
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("read from the libcni client: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("client answered {line:?}: {e}"))
    }

    /// One operation (`add`, `check`, `del`, ...) for a pod's sandbox, with Kubernetes' CNI_ARGS; the members of
    /// `extra` (an object) are merged into the request (e.g. `capabilityArgs`).
    pub fn pod_op(
        &mut self,
        op: &str,
        container_id: &str,
        netns: &Path,
        pod: &str,
        extra: serde_json::Value,
    ) -> serde_json::Value {
        let mut req = serde_json::json!({
            "op": op,
            "containerID": container_id,
            "netns": netns,
            "ifname": "eth0",
            "args": [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", "default"], ["K8S_POD_NAME", pod],
                     ["K8S_POD_INFRA_CONTAINER_ID", container_id]],
        });
        if let serde_json::Value::Object(m) = extra {
            for (k, v) in m {
                req[k] = v;
            }
        }
        self.send(&req)
    }
}

impl Drop for Libcni {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
