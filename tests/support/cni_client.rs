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
