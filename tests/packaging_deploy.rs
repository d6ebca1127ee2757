//! `deploy/aws-node.yaml` against a real kube-apiserver (v1.34, from the peer cache): every object is accepted by
//! a server-side dry run with strict field validation, a broken copy is refused, and the DaemonSet carries
//! upstream v1.23.0's environment, host paths, scheduling and update strategy (upstream's own manifest, from the
//! Go module cache the peers were built from, is dry-run through the same server and compared), with probes on
//! the daemon's /healthz and /readyz. Needs the peer cache (`scripts/build-peers`), openssl and curl.

#![allow(clippy::unwrap_used)]

#[path = "peers/cluster.rs"]
mod cluster;
#[path = "support/cni_client.rs"]
mod cni_client;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cluster::Cluster;
use serde_json::{json, Value};

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/aws-node.yaml");

/// The YAML documents of a manifest (comment-only documents left out).
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            docs.push(String::new());
        } else if let Some(d) = docs.last_mut() {
            d.push_str(line);
            d.push('\n');
        }
    }
    docs.into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// `kind` and `metadata.namespace` of a document (top-level keys of our own manifests).
fn kind_and_namespace(doc: &str) -> (String, Option<String>) {
    let kind = doc
        .lines()
        .find_map(|l| l.strip_prefix("kind: "))
        .unwrap_or_else(|| panic!("no kind in\n{doc}"))
        .trim()
        .to_string();
    let mut in_metadata = false;
    let mut namespace = None;
    for l in doc.lines() {
        if l == "metadata:" {
            in_metadata = true;
        } else if !l.starts_with(' ') {
            in_metadata = false;
        } else if in_metadata {
            if let Some(ns) = l.strip_prefix("  namespace: ") {
                namespace = Some(ns.trim().to_string());
            }
        }
    }
    (kind, namespace)
}

fn collection(kind: &str, namespace: Option<&str>) -> String {
    let ns = namespace.unwrap_or_else(|| panic!("{kind} without a namespace"));
    match kind {
        "ServiceAccount" => format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        "DaemonSet" => format!("/apis/apps/v1/namespaces/{ns}/daemonsets"),
        other => panic!("the test knows no collection for kind {other}: add it"),
    }
}

/// Server-side dry-run create of one YAML document, unknown fields refused; (status, body).
fn dry_run(cluster: &Cluster, doc: &str) -> (u16, String) {
    let (kind, ns) = kind_and_namespace(doc);
    let path = format!(
        "{}?dryRun=All&fieldValidation=Strict",
        collection(&kind, ns.as_deref())
    );
    cluster.request("POST", &path, Some(("application/yaml", doc.as_bytes())))
}

fn wait_for(cluster: &Cluster, path: &str) {
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(60) {
        if cluster.request("GET", path, None).0 == 200 {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{path} not there within 60 s\n{}", cluster.logs());
}

/// Upstream v1.23.0's manifest in the Go module cache the peers were built from.
fn upstream_manifest() -> PathBuf {
    let env = cni_client::peer_env("upstream");
    let version = env
        .get("VPC_CNI_PEER_UPSTREAM_VERSION")
        .cloned()
        .unwrap_or_else(|| "v1.23.0".into());
    let cache = std::env::var("VPC_CNI_PEER_CACHE")
        .ok()
        .or_else(|| env.get("VPC_CNI_PEER_CACHE").cloned())
        .unwrap_or_else(|| "/var/cache/vpc-cni-peers".into());
    let p = PathBuf::from(cache).join(format!(
        "gomod/github.com/aws/amazon-vpc-cni-k8s@{version}/config/master/aws-k8s-cni.yaml"
    ));
    assert!(
        p.exists(),
        "{} missing: run scripts/build-peers",
        p.display()
    );
    p
}

fn container<'a>(pod_spec: &'a Value, list: &str, name: &str) -> &'a Value {
    pod_spec[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {list} {name}"))
}

fn host_paths(pod_spec: &Value) -> BTreeSet<String> {
    pod_spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str().map(str::to_string))
        .collect()
}

fn mount_paths(c: &Value) -> BTreeSet<String> {
    c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn manifest_is_accepted_by_kube_apiserver_and_matches_upstream() {
    let text = std::fs::read_to_string(MANIFEST).unwrap();
    let docs = documents(&text);
    let kinds: Vec<String> = docs.iter().map(|d| kind_and_namespace(d).0).collect();
    assert_eq!(
        kinds,
        ["ServiceAccount", "DaemonSet"],
        "no RBAC objects: ipamd calls no Kubernetes API"
    );

    let cluster = Cluster::start("deploy", None);
    wait_for(&cluster, "/api/v1/namespaces/kube-system");
    wait_for(
        &cluster,
        "/apis/scheduling.k8s.io/v1/priorityclasses/system-node-critical",
    );

    let mut accepted = Vec::new();
    for doc in &docs {
        let (code, body) = dry_run(&cluster, doc);
        assert_eq!(code, 201, "dry-run create refused: {body}\n{doc}");
        accepted.push(serde_json::from_str::<Value>(&body).unwrap());
    }
    // A dry run stores nothing.
    let (code, _) = cluster.request(
        "GET",
        "/apis/apps/v1/namespaces/kube-system/daemonsets/aws-node",
        None,
    );
    assert_eq!(code, 404);

    let sa = &accepted[0];
    assert_eq!(sa["metadata"]["name"], "aws-node");
    assert_eq!(sa["automountServiceAccountToken"], false);
    let ds = &accepted[1];
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], "aws-node");

    // Probes on the daemon's own endpoints.
    let node = container(spec, "containers", "aws-node");
    let port = i64::from(vpc_cni::ipamd::metrics::METRICS_PORT);
    for (probe, path) in [
        ("startupProbe", vpc_cni::ipamd::introspection::HEALTHZ),
        ("livenessProbe", vpc_cni::ipamd::introspection::HEALTHZ),
        ("readinessProbe", vpc_cni::ipamd::introspection::READYZ),
    ] {
        assert_eq!(node[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(node[probe]["httpGet"]["port"], port, "{probe}");
    }
    assert_eq!(node["ports"][0]["containerPort"], port);

    // Our configuration accepts the DaemonSet's environment as it is (every bad variable would be listed).
    let pairs: Vec<(String, String)> = node["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .arg("config")
        .env_clear()
        .envs(pairs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vpc-cni config with the DaemonSet's environment: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The init container installs the plugin through the same binary, and not the conflist.
    let init = container(spec, "initContainers", "aws-vpc-cni-init");
    assert_eq!(init["command"], json!(["/usr/bin/vpc-cni", "install-cni"]));
    assert!(mount_paths(init).contains("/host/opt/cni/bin"));
    let confdir = init["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "HOST_CNI_CONFDIR_PATH")
        .and_then(|e| e["value"].as_str())
        .unwrap();
    assert!(
        !confdir.starts_with("/host/"),
        "the init container must not write the host's conflist: {confdir}"
    );

    // Upstream's manifest, through the same server: same environment (names, values, order), the same
    // scheduling, and every host path but the network policy agent's and iptables' lock.
    let upstream_text = std::fs::read_to_string(upstream_manifest()).unwrap();
    let upstream_doc = documents(&upstream_text)
        .into_iter()
        .find(|d| kind_and_namespace(d).0 == "DaemonSet")
        .unwrap();
    let (code, body) = cluster.request(
        "POST",
        "/apis/apps/v1/namespaces/kube-system/daemonsets?dryRun=All",
        Some(("application/yaml", upstream_doc.as_bytes())),
    );
    assert_eq!(code, 201, "upstream's DaemonSet: {body}");
    let up: Value = serde_json::from_str(&body).unwrap();
    let up_spec = &up["spec"]["template"]["spec"];
    let up_node = container(up_spec, "containers", "aws-node");
    assert_eq!(node["env"], up_node["env"], "aws-node environment");
    let up_init = container(up_spec, "initContainers", "aws-vpc-cni-init");
    for e in up_init["env"].as_array().unwrap() {
        assert!(
            init["env"].as_array().unwrap().contains(e),
            "init env {e} as upstream"
        );
    }
    for key in [
        "priorityClassName",
        "hostNetwork",
        "tolerations",
        "terminationGracePeriodSeconds",
    ] {
        assert_eq!(spec[key], up_spec[key], "{key}");
    }
    assert_eq!(ds["spec"]["updateStrategy"], up["spec"]["updateStrategy"]);
    assert_eq!(ds["spec"]["selector"], up["spec"]["selector"]);
    assert_eq!(ds["metadata"]["name"], up["metadata"]["name"]);
    let not_ours: BTreeSet<String> = ["/sys/fs/bpf", "/run/xtables.lock"]
        .map(String::from)
        .into();
    let missing: Vec<String> = host_paths(up_spec)
        .difference(&host_paths(spec))
        .filter(|p| !not_ours.contains(*p))
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "upstream host paths missing: {missing:?}"
    );
    let missing_mounts: Vec<String> = mount_paths(up_node)
        .difference(&mount_paths(node))
        .filter(|p| p.as_str() != "/run/xtables.lock")
        .cloned()
        .collect();
    assert!(
        missing_mounts.is_empty(),
        "upstream aws-node mounts missing: {missing_mounts:?}"
    );
}

#[test]
fn a_broken_manifest_is_refused() {
    let text = std::fs::read_to_string(MANIFEST).unwrap();
    let ds = documents(&text)
        .into_iter()
        .find(|d| kind_and_namespace(d).0 == "DaemonSet")
        .unwrap();
    let cluster = Cluster::start("deploy-bad", None);
    wait_for(&cluster, "/api/v1/namespaces/kube-system");
    wait_for(
        &cluster,
        "/apis/scheduling.k8s.io/v1/priorityclasses/system-node-critical",
    );
    assert_eq!(dry_run(&cluster, &ds).0, 201, "the intact copy is accepted");
    for (what, from, to) in [
        ("a port out of range", "port: 61678", "port: 616780"),
        ("a misspelt field", "hostNetwork: true", "hostNetwrk: true"),
        (
            "a selector that misses the pod labels",
            "matchLabels:\n      k8s-app: aws-node",
            "matchLabels:\n      k8s-app: aws-node-x",
        ),
    ] {
        assert!(ds.contains(from), "{what}: {from:?} not in the manifest");
        let broken = ds.replacen(from, to, 1);
        let (code, body) = dry_run(&cluster, &broken);
        assert!(
            (400..500).contains(&code),
            "{what} accepted ({code}): {body}"
        );
    }
}
