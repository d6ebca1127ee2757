//! Differential tests: upstream v1.23.0's ipamd and plugin and ours, side by side on two nodes of
//! one VPC-in-a-box, in the same warm-pool configurations, with the same pods added and deleted
//! through libcni 1.3 (0 → 12 → 0). After the pool is filled, after the pods and after they are
//! gone, the two nodes' EC2 state must be the same (ENI count, addresses and prefixes per ENI, tag
//! keys and the rules for their values), each pod's wiring the same (addresses, routes and
//! neighbours in the pod, host routes and rules with priorities, host veth name and MTU), and so
//! the checkpoint entries and the conflist. The only differences allowed are the ones
//! docs/compat.md lists; each is encoded below where the comparison is made (`compat::`), so a new
//! difference fails.
//!
//! A third node hosts the Kubernetes control plane upstream's daemon needs (etcd and
//! kube-apiserver, reached through the VPC); the four configurations run at the same time.
//! Needs root, the VPC-in-a-box venv (scripts/setup) and the peer cache (scripts/build-peers).

#![allow(clippy::unwrap_used)]

#[path = "peers/cluster.rs"]
mod cluster;
#[path = "support/cni_client.rs"]
mod cni_client;
#[path = "support/ipamd_node.rs"]
mod ipamd_node;
#[path = "support/netns.rs"]
mod netns;
#[path = "peers/node.rs"]
mod node;
#[path = "support/tempdir.rs"]
mod tempdir;
#[path = "peers/upstream.rs"]
mod upstream;
#[path = "peers/upstream_node.rs"]
mod upstream_node;
#[path = "support/vpcsim.rs"]
mod vpcsim;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ipamd_node::{ec2, enis_of, Ipamd, Pod};
use serde_json::Value;
use upstream_node::UpstreamNode;
use vpc_cni::aws::ec2::{Ec2Client, NetworkInterface};
use vpcsim::{Node, VpcSim};

/// Pods per configuration.
const PODS: usize = 12;

/// One warm-pool configuration and the EC2 shape (secondary addresses, prefixes per ENI) both
/// daemons are expected to settle at after the fill, with [`PODS`] pods and with none; the
/// shapes only tell the test when to look, the comparison is between the two nodes.
struct Scenario {
    name: &'static str,
    settings: Vec<(&'static str, &'static str)>,
    /// What the kubelet reports as the node's pod capacity (upstream reads it from the Node).
    max_pods: u32,
    fill: Vec<(usize, usize)>,
    full: Vec<(usize, usize)>,
    empty: Vec<(usize, usize)>,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "warm-eni",
            settings: vec![("WARM_ENI_TARGET", "1")],
            max_pods: 29,
            fill: vec![(9, 0)],
            full: vec![(9, 0), (9, 0), (9, 0)],
            empty: vec![(9, 0)],
        },
        Scenario {
            name: "warm-ip",
            settings: vec![("WARM_IP_TARGET", "3"), ("MINIMUM_IP_TARGET", "10")],
            max_pods: 29,
            fill: vec![(9, 0), (1, 0)],
            full: vec![(9, 0), (6, 0)],
            empty: vec![(9, 0), (1, 0)],
        },
        Scenario {
            name: "prefix",
            settings: vec![
                ("ENABLE_PREFIX_DELEGATION", "true"),
                ("WARM_PREFIX_TARGET", "1"),
            ],
            // m5.large with prefix delegation: max-pods 110 (the EKS calculator's cap).
            max_pods: 110,
            fill: vec![(0, 1)],
            full: vec![(0, 2)],
            empty: vec![(0, 1)],
        },
        Scenario {
            name: "max-eni",
            // Also the tags: the cluster's and additional ones on the ENIs each daemon creates.
            settings: vec![
                ("MAX_ENI", "2"),
                ("CLUSTER_NAME", "diff-cluster"),
                (
                    "ADDITIONAL_ENI_TAGS",
                    r#"{"team":"blue","cost-center":"42"}"#,
                ),
            ],
            max_pods: 29,
            fill: vec![(9, 0)],
            full: vec![(9, 0), (9, 0)],
            empty: vec![(9, 0)],
        },
    ]
}

/// Settings both daemons get in every configuration.
const COMMON: &[(&str, &str)] = &[
    ("AWS_VPC_K8S_CNI_VETHPREFIX", "eni"),
    ("AWS_VPC_ENI_MTU", "9001"),
    ("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "DEBUG"),
    ("ENABLE_IPv4", "true"),
    ("ENABLE_IPv6", "false"),
    ("ENABLE_SUBNET_DISCOVERY", "false"),
    // Short, so released addresses leave the pool within the test's budget (both honour it).
    ("IP_COOLDOWN_PERIOD", "5"),
    ("DISABLE_METRICS", "true"),
];

/// The differences docs/compat.md lists, applied where the comparison is made. Every function
/// names its entry; nothing else is excused.
mod compat {
    use serde_json::Value;

    /// compat.md C1: our conflist carries no `egress-cni` entry (the egress plugin is not built
    /// yet; upstream's is there with `"enabled": "false"` on IPv4 nodes, where it does nothing).
    pub fn conflist_without_egress(mut v: Value) -> Value {
        if let Some(p) = v["plugins"].as_array_mut() {
            p.retain(|p| p["type"] != "egress-cni");
        }
        v
    }

    /// compat.md C2: upstream's conflist sets `"disableCheck": true`; ours does not, because our
    /// plugin implements CHECK.
    pub fn conflist_without_disable_check(mut v: Value) -> Value {
        if let Some(o) = v.as_object_mut() {
            o.remove("disableCheck");
        }
        v
    }

    /// compat.md C3: the CNI result. Ours lists the pod's routes (`routes`), the gateway of its
    /// address (169.254.1.1) and the host veth's MAC; upstream's leaves them out. Upstream adds a
    /// third, virtual interface `dummy<hash>` and stores the route table id in the container
    /// interface's `mac` (both read by its DEL when ipamd cannot be reached); ours puts the real
    /// MAC there. Returns (upstream's, ours) with these parts taken out; `sandbox` paths are the
    /// test's.
    pub fn cni_results(mut up: Value, mut ours: Value) -> (Value, Value) {
        if let Some(ifs) = up["interfaces"].as_array_mut() {
            ifs.retain(|i| !i["name"].as_str().unwrap_or("").starts_with("dummy"));
        }
        if let Some(o) = ours.as_object_mut() {
            o.remove("routes");
        }
        if let Some(ips) = ours["ips"].as_array_mut() {
            for ip in ips.iter_mut().filter(|ip| ip["gateway"] == "169.254.1.1") {
                ip.as_object_mut().map(|o| o.remove("gateway"));
            }
        }
        for v in [&mut up, &mut ours] {
            if let Some(ifs) = v["interfaces"].as_array_mut() {
                for i in ifs {
                    let host = i.get("sandbox").is_none();
                    if let Some(o) = i.as_object_mut() {
                        if host {
                            o.remove("mac");
                        } else {
                            o.insert("mac".into(), Value::String("<mac>".into()));
                            o.insert("sandbox".into(), Value::String("<netns>".into()));
                        }
                    }
                }
            }
        }
        (up, ours)
    }

    /// docs/ipam.md deviation 1 (compat.md C6): upstream picks the ENI a pod's address comes from
    /// and the ENI free addresses are released from in Go map order (effectively at random); ours
    /// uses the lowest device first for pods and the highest first for releases. So which ENI a pod
    /// is on, and how the addresses left after a release are spread over the ENIs, are not
    /// compared; the totals and each pod's wiring for its own ENI are.
    pub const PLACEMENT: &str = "docs/ipam.md deviation 1";
}

/// What a comparison found: (what, upstream's, ours) for each difference.
#[derive(Default)]
struct Diffs(Vec<String>);

impl Diffs {
    fn eq<T: std::fmt::Debug + PartialEq>(&mut self, what: &str, upstream: T, ours: T) {
        if upstream != ours {
            self.0.push(format!(
                "{what}:\n  upstream: {upstream:?}\n  ours:     {ours:?}"
            ));
        }
    }
}

/// An ENI as the comparison sees it: everything but identities and addresses.
#[derive(Debug, PartialEq, Eq)]
struct EniView {
    device_index: Option<u32>,
    secondaries: usize,
    prefixes: usize,
    description: String,
    tag_keys: Vec<String>,
    delete_on_termination: Option<bool>,
    status: String,
    interface_type: String,
    node_subnet: bool,
    node_security_groups: bool,
}

fn eni_views(enis: &[NetworkInterface], node: &Node) -> Vec<EniView> {
    let primary_groups: Vec<String> = enis
        .iter()
        .find(|e| e.id == node.primary_eni)
        .map(|e| e.groups.iter().map(|g| g.id.clone()).collect())
        .unwrap_or_default();
    enis.iter()
        .map(|e| {
            let mut tag_keys: Vec<String> = e.tags.iter().map(|t| t.key.clone()).collect();
            tag_keys.sort();
            EniView {
                device_index: e.attachment.as_ref().and_then(|a| a.device_index),
                secondaries: e.private_ips.iter().filter(|p| !p.primary).count(),
                prefixes: e.ipv4_prefixes.len(),
                description: e.description.replace(&node.instance_id, "<instance>"),
                tag_keys,
                delete_on_termination: e.attachment.as_ref().map(|a| a.delete_on_termination),
                status: e.status.clone(),
                interface_type: e.interface_type.clone(),
                node_subnet: e.subnet_id == node.subnet_id,
                node_security_groups: e.groups.iter().map(|g| g.id.clone()).collect::<Vec<_>>()
                    == primary_groups,
            }
        })
        .collect()
}

/// The rules for tag values both daemons must follow: the instance id tag names the node, the
/// creation time is an RFC 3339 UTC time; any other tag value is compared as is.
fn tag_rule_violations(enis: &[NetworkInterface], node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for e in enis {
        for t in &e.tags {
            let ok = match t.key.as_str() {
                "node.k8s.amazonaws.com/instance_id" => t.value == node.instance_id,
                "node.k8s.amazonaws.com/createdAt" => {
                    t.value.len() == 20 && t.value.ends_with('Z') && t.value.as_bytes()[10] == b'T'
                }
                _ => true,
            };
            if !ok {
                out.push(format!("{} tag {}={}", e.id, t.key, t.value));
            }
        }
    }
    out
}

/// Other tag values, which must be equal on both nodes.
fn plain_tags(enis: &[NetworkInterface]) -> Vec<Vec<(String, String)>> {
    // Per ENI, in device order; the instance id and creation time are checked by rule.
    enis.iter()
        .map(|e| {
            let mut v: Vec<(String, String)> = e
                .tags
                .iter()
                .filter(|t| {
                    !matches!(
                        t.key.as_str(),
                        "node.k8s.amazonaws.com/instance_id" | "node.k8s.amazonaws.com/createdAt"
                    )
                })
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect();
            v.sort();
            v
        })
        .collect()
}

/// Compares the two nodes' ENIs. With `spread` false the per-ENI address and prefix counts are
/// compared, with `spread` true only their totals (after releases, [`compat::PLACEMENT`]).
fn compare_ec2(
    d: &mut Diffs,
    stage: &str,
    ec2: &Ec2Client,
    (up, ours): (&Node, &Node),
    spread: bool,
) {
    let (a, b) = (
        enis_of(ec2, &up.instance_id),
        enis_of(ec2, &ours.instance_id),
    );
    let (mut va, mut vb) = (eni_views(&a, up), eni_views(&b, ours));
    if spread {
        let total = |v: &[EniView]| -> (usize, usize) {
            (
                v.iter().map(|e| e.secondaries).sum(),
                v.iter().map(|e| e.prefixes).sum(),
            )
        };
        d.eq(
            &format!("{stage}: total addresses and prefixes"),
            total(&va),
            total(&vb),
        );
        for v in va.iter_mut().chain(vb.iter_mut()) {
            v.secondaries = 0;
            v.prefixes = 0;
        }
    }
    d.eq(&format!("{stage}: ENIs"), va, vb);
    d.eq(
        &format!("{stage}: other tag values"),
        plain_tags(&a),
        plain_tags(&b),
    );
    d.eq(
        &format!("{stage}: tag value rules"),
        tag_rule_violations(&a, up),
        tag_rule_violations(&b, ours),
    );
}

/// The ENI count and the total addresses and prefixes of a shape.
fn totals(shape: &[(usize, usize)]) -> (usize, usize, usize) {
    (
        shape.len(),
        shape.iter().map(|s| s.0).sum(),
        shape.iter().map(|s| s.1).sum(),
    )
}

/// Waits (up to `budget`) until both nodes' EC2 state has the ENI count and totals of `want`;
/// returns the seconds each took (None: not reached).
fn wait_both(
    ec2: &Ec2Client,
    up: &Node,
    ours: &Node,
    want: &[(usize, usize)],
    budget: Duration,
) -> (Option<u64>, Option<u64>) {
    let began = Instant::now();
    let (mut tu, mut to) = (None, None);
    let want = totals(want);
    while began.elapsed() < budget && (tu.is_none() || to.is_none()) {
        if tu.is_none() && totals(&ipamd_node::shape(&enis_of(ec2, &up.instance_id))) == want {
            tu = Some(began.elapsed().as_secs());
        }
        if to.is_none() && totals(&ipamd_node::shape(&enis_of(ec2, &ours.instance_id))) == want {
            to = Some(began.elapsed().as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    (tu, to)
}

fn ip_out(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_mac(t: &str) -> bool {
    t.len() == 17 && t.bytes().filter(|&c| c == b':').count() == 5
}

/// One line of `ip` output with the pod's own values replaced by names.
fn norm(line: &str, subs: &[(String, &str)]) -> String {
    let line = line.replace('\\', " ");
    let mut words: Vec<String> = line
        .split_whitespace()
        // IPv6 duplicate address detection still running on a link that just came up: a moment,
        // not a difference.
        .filter(|w| *w != "tentative")
        .map(|w| {
            let mut w = w.to_string();
            if is_mac(&w) {
                return "MAC".to_string();
            }
            if w.starts_with("fe80::") {
                return "fe80::LL/64".to_string();
            }
            if let Some(at) = w.find("@if") {
                w.truncate(at);
                w.push_str("@ifN");
            }
            for (from, to) in subs {
                if w == *from {
                    return (*to).to_string();
                }
                if let Some(rest) = w.strip_prefix(from.as_str()) {
                    if rest.starts_with('/') {
                        return format!("{to}{rest}");
                    }
                }
            }
            w
        })
        .collect();
    // `ip -o` starts with the interface index.
    if words
        .first()
        .is_some_and(|w| w.ends_with(':') && w[..w.len() - 1].parse::<u32>().is_ok())
        && !line.contains("lookup")
    {
        words.remove(0);
    }
    // Link-netns names and ids are the test's.
    if let Some(i) = words
        .iter()
        .position(|w| w == "link-netns" || w == "link-netnsid")
    {
        words.drain(i..(i + 2).min(words.len()));
    }
    words.join(" ")
}

/// A pod's wiring, normalized: the pod's address is `POD`, its host veth `VETH`, its ENI's route
/// table `ENI_TABLE`, MAC addresses `MAC`.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Wiring {
    pod_addresses: Vec<String>,
    pod_routes: Vec<String>,
    pod_neighbours: Vec<String>,
    pod_link: Vec<String>,
    host_routes: Vec<String>,
    host_rules: Vec<String>,
    host_link: Vec<String>,
    host_neighbours: Vec<String>,
}

fn lines(s: &str, subs: &[(String, &str)]) -> Vec<String> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| norm(l, subs))
        .collect()
}

/// The host veth of `pod` on the node (from the node's `<pod>/32` route).
fn host_veth(node_ns: &str, pod: &Pod) -> String {
    let r = ip_out(&[
        "-n",
        node_ns,
        "-4",
        "route",
        "show",
        &format!("{}/32", pod.ip),
    ]);
    r.split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or("")
        .to_string()
}

/// The device index of the ENI holding `ip`.
fn eni_device_of(enis: &[NetworkInterface], ip: std::net::Ipv4Addr) -> Option<u32> {
    enis.iter()
        .find(|e| {
            e.private_ips.iter().any(|p| p.address == ip)
                || e.ipv4_prefixes.iter().any(|c| c.contains(ip))
        })
        .and_then(|e| e.attachment.as_ref().and_then(|a| a.device_index))
}

/// The node's own wiring, without the pods' lines: every rule, every route of every table, the
/// ENI links (`eth*`) and the sysctls both daemons set, with each ENI's primary address named by
/// its device (`ENI<n>`) and MACs normalized.
#[derive(Debug, PartialEq, Eq)]
struct HostView {
    rules: Vec<String>,
    routes: Vec<String>,
    links: Vec<String>,
    sysctls: Vec<String>,
}

fn host_view(node_ns: &str, enis: &[NetworkInterface], pods: &[Pod]) -> HostView {
    let names: Vec<String> = (0..enis.len()).map(|i| format!("ENI{i}")).collect();
    let mut subs: Vec<(String, &str)> = Vec::new();
    for (e, n) in enis.iter().zip(&names) {
        if let Some(ip) = e.private_ip_address {
            subs.push((ip.to_string(), n.as_str()));
        }
    }
    let pod_line = |l: &str| {
        pods.iter().any(|p| {
            let ip = p.ip.to_string();
            l.split_whitespace()
                .any(|w| w == ip || w == format!("{ip}/32"))
        }) || l.contains(" dev eni")
    };
    let keep = |s: String| -> String {
        s.lines()
            .filter(|l| !pod_line(l))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let links: String = ip_out(&["-n", node_ns, "-o", "link", "show"])
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|n| n.starts_with("eth"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let sysctl = |k: &str| -> String {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", node_ns, "cat", &path])
            .output()
            .unwrap();
        format!("{k}={}", String::from_utf8_lossy(&out.stdout).trim())
    };
    let mut rules = lines(&keep(ip_out(&["-n", node_ns, "-4", "rule", "show"])), &subs);
    let mut routes = lines(
        &keep(ip_out(&[
            "-n", node_ns, "-4", "route", "show", "table", "all",
        ])),
        &subs,
    );
    rules.sort();
    routes.sort();
    HostView {
        rules,
        routes,
        links: lines(&links, &subs),
        sysctls: [
            "net.ipv4.ip_forward",
            "net.ipv4.conf.eth0.rp_filter",
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.tcp_early_demux",
        ]
        .iter()
        .map(|k| sysctl(k))
        .collect(),
    }
}

fn wiring(node_ns: &str, pod: &Pod, device: Option<u32>) -> (String, Wiring) {
    let veth = host_veth(node_ns, pod);
    let ns = pod.ns.name.clone();
    let mut subs = vec![(pod.ip.to_string(), "POD"), (veth.clone(), "VETH")];
    if let Some(d) = device.filter(|&d| d > 0) {
        subs.push(((d + 1).to_string(), "ENI_TABLE"));
    }
    let node_rules: String = ip_out(&["-n", node_ns, "-4", "rule", "show"])
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == pod.ip.to_string()))
        .map(|l| format!("{l}\n"))
        .collect();
    let node_routes: String = ip_out(&["-n", node_ns, "-4", "route", "show", "table", "all"])
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .any(|w| w == pod.ip.to_string() || w == veth)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let perm = |s: String| -> String {
        s.lines()
            .filter(|l| l.contains("PERMANENT"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let w = Wiring {
        pod_addresses: lines(&ip_out(&["-n", &ns, "-o", "addr", "show"]), &subs),
        pod_routes: lines(
            &ip_out(&["-n", &ns, "-4", "route", "show", "table", "all"]),
            &subs,
        ),
        pod_neighbours: lines(&perm(ip_out(&["-n", &ns, "neigh", "show"])), &subs),
        pod_link: lines(&ip_out(&["-n", &ns, "-o", "link", "show"]), &subs),
        host_routes: lines(&node_routes, &subs),
        host_rules: lines(&node_rules, &subs),
        host_link: lines(
            &ip_out(&["-n", node_ns, "-o", "link", "show", "dev", &veth]),
            &subs,
        ),
        host_neighbours: lines(
            &perm(ip_out(&["-n", node_ns, "neigh", "show", "dev", &veth])),
            &subs,
        ),
    };
    (veth, w)
}

/// Checkpoint entries keyed by container id, the address replaced by which pod holds it.
fn checkpoint_entries(path: &std::path::Path, pods: &[Pod]) -> (Value, BTreeMap<String, Value>) {
    let v: Value =
        serde_json::from_slice(&std::fs::read(path).unwrap_or_default()).unwrap_or(Value::Null);
    let mut out = BTreeMap::new();
    for e in v["allocations"].as_array().cloned().unwrap_or_default() {
        let mut e = e.clone();
        let id = e["containerID"].as_str().unwrap_or("").to_string();
        if let Some(p) = pods.iter().find(|p| e["ipv4"] == p.ip.to_string()) {
            e["ipv4"] = Value::String(format!("<{}>", p.name));
        }
        if e.get("allocationTimestamp").is_some() {
            e["allocationTimestamp"] = Value::String("<time>".into());
        }
        out.insert(id, e);
    }
    let mut top = v.clone();
    top["allocations"] = Value::Null;
    (top, out)
}

fn conflist_view(text: &str) -> Value {
    let mut v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if let Some(ps) = v["plugins"].as_array_mut() {
        for p in ps {
            for k in ["pluginLogFile"] {
                if p.get(k).is_some() {
                    p[k] = Value::String("<path>".into());
                }
            }
            if p["ipam"].get("dataDir").is_some() {
                p["ipam"]["dataDir"] = Value::String("<path>".into());
            }
        }
    }
    v
}

/// Runs one configuration on `up_node` (upstream) and `our_node` (ours); returns the differences.
fn run(
    s: &Scenario,
    sim: &VpcSim,
    cluster: &cluster::Cluster,
    up_node: &Node,
    our_node: &Node,
) -> Vec<String> {
    let ec2 = ec2(sim);
    let mut d = Diffs::default();
    let mut settings: Vec<(&str, &str)> = COMMON.to_vec();
    settings.extend(s.settings.iter().copied());
    let mut up = UpstreamNode::start(cluster, up_node, sim.region(), s.max_pods, &settings);
    let mut ours = Ipamd::start(our_node, &settings);
    let budget = Duration::from_secs(150);
    let name = s.name;

    let t = wait_both(&ec2, up_node, our_node, &s.fill, budget);
    eprintln!("{name}: filled (upstream, ours) after {t:?} s");
    compare_ec2(
        &mut d,
        &format!("{name} after the fill"),
        &ec2,
        (up_node, our_node),
        false,
    );

    // Their conflist (as their entrypoint writes it) and ours (as our daemon writes it).
    let up_conf = conflist_view(&std::fs::read_to_string(up.conflist()).unwrap());
    let our_conf = conflist_view(
        &std::fs::read_to_string(ours.dir.0.join("net.d/10-aws.conflist")).unwrap_or_default(),
    );
    d.eq(
        &format!("{name}: conflist"),
        compat::conflist_without_disable_check(compat::conflist_without_egress(up_conf)),
        our_conf,
    );

    let up_pods = up.add_pods("p", PODS);
    let our_pods = ipamd_node::add_pods(&mut ours, "p", PODS);
    let t = wait_both(&ec2, up_node, our_node, &s.full, budget);
    eprintln!("{name}: {PODS} pods (upstream, ours) after {t:?} s");
    compare_ec2(
        &mut d,
        &format!("{name} with {PODS} pods"),
        &ec2,
        (up_node, our_node),
        false,
    );

    let (up_enis, our_enis) = (
        enis_of(&ec2, &up_node.instance_id),
        enis_of(&ec2, &our_node.instance_id),
    );
    // Upstream wires a new ENI some seconds after EC2 attached it (it waits for the attachment
    // first): wait until each node has a `from <ENI address>` rule for every secondary ENI.
    for (ns, enis) in [(up.netns(), &up_enis), (ours.netns(), &our_enis)] {
        let began = Instant::now();
        while ip_out(&["-n", ns, "-4", "rule", "show"])
            .matches("32765:")
            .count()
            + 1
            < enis.len()
            && began.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    d.eq(
        &format!("{name} with {PODS} pods: the node's wiring"),
        host_view(up.netns(), &up_enis, &up_pods),
        host_view(ours.netns(), &our_enis, &our_pods),
    );
    let place = |enis: &[NetworkInterface], pods: &[Pod]| -> Vec<Option<u32>> {
        pods.iter().map(|p| eni_device_of(enis, p.ip)).collect()
    };
    let (pa, pb) = (place(&up_enis, &up_pods), place(&our_enis, &our_pods));
    // Ours is deterministic: pods fill the lowest device first ([`compat::PLACEMENT`]).
    let mut sorted = pb.clone();
    sorted.sort();
    d.eq(
        &format!(
            "{name}: our placement in device order ({})",
            compat::PLACEMENT
        ),
        sorted,
        pb.clone(),
    );
    let up_w: Vec<(String, Wiring)> = up_pods
        .iter()
        .zip(&pa)
        .map(|(p, dv)| wiring(up.netns(), p, *dv))
        .collect();
    let our_w: Vec<(String, Wiring)> = our_pods
        .iter()
        .zip(&pb)
        .map(|(p, dv)| wiring(ours.netns(), p, *dv))
        .collect();
    for i in 0..up_pods.len().min(our_pods.len()) {
        let pod = &up_pods[i].name;
        d.eq(
            &format!("{name}: host veth name of {pod}"),
            &up_w[i].0,
            &our_w[i].0,
        );
        // The same pod on the other side if both are on the primary ENI or both on a secondary
        // one; otherwise one of ours on the same kind of ENI ([`compat::PLACEMENT`]).
        let primary = |dv: Option<u32>| dv == Some(0);
        let j = if primary(pa[i]) == primary(pb[i]) {
            Some(i)
        } else {
            (0..pb.len()).find(|&j| primary(pb[j]) == primary(pa[i]))
        };
        match j {
            Some(j) => d.eq(
                &format!("{name}: wiring of {pod} (ours: {})", our_pods[j].name),
                &up_w[i].1,
                &our_w[j].1,
            ),
            None => d.0.push(format!(
                "{name}: {pod} is on device {:?} upstream, none of ours is on that kind of ENI",
                pa[i]
            )),
        }
        let result = |p: &Pod| -> Value {
            let text = p.result.to_string().replace(&p.ip.to_string(), "POD");
            serde_json::from_str(&text).unwrap()
        };
        let (ra, rb) = compat::cni_results(result(&up_pods[i]), result(&our_pods[j.unwrap_or(i)]));
        d.eq(&format!("{name}: CNI result of {pod}"), ra, rb);
    }
    let (ta, ea) = checkpoint_entries(&up.checkpoint(), &up_pods);
    let (tb, eb) = checkpoint_entries(&ours.checkpoint(), &our_pods);
    d.eq(&format!("{name}: checkpoint header"), ta, tb);
    d.eq(&format!("{name}: checkpoint entries"), ea, eb);

    let ips: Vec<(String, String)> = up_pods
        .iter()
        .zip(&our_pods)
        .map(|(a, b)| (a.ip.to_string(), b.ip.to_string()))
        .collect();
    for p in up_pods {
        up.del_pod(p);
    }
    for p in our_pods {
        ours.del_pod(p);
    }
    let left = |ns: &str, ip: &str| -> Vec<String> {
        let rules = ip_out(&["-n", ns, "-4", "rule", "show"]);
        let routes = ip_out(&["-n", ns, "-4", "route", "show", "table", "all"]);
        rules
            .lines()
            .chain(routes.lines())
            .filter(|l| {
                l.split_whitespace()
                    .any(|w| w == ip || w == format!("{ip}/32"))
            })
            .map(|l| l.replace(ip, "POD"))
            .collect()
    };
    for (a, b) in &ips {
        d.eq(
            &format!("{name}: rules and routes left after DEL"),
            left(up.netns(), a),
            left(ours.netns(), b),
        );
    }
    let t = wait_both(&ec2, up_node, our_node, &s.empty, budget);
    eprintln!("{name}: 0 pods (upstream, ours) after {t:?} s");
    compare_ec2(
        &mut d,
        &format!("{name} after the pods are gone"),
        &ec2,
        (up_node, our_node),
        true,
    );
    if !d.0.is_empty() {
        d.0.push(format!("{name}: logs\n{}\n--- ours\n{}", up.log(), {
            let l = ours.log();
            let v: Vec<&str> = l.lines().collect();
            v[v.len().saturating_sub(40)..].join("\n")
        }));
    }
    d.0
}

#[test]
fn upstream_and_ours_agree_in_every_warm_mode() {
    let all = scenarios();
    let only = std::env::var("VPC_CNI_DIFF_ONLY").ok();
    let chosen: Vec<&Scenario> = all
        .iter()
        .filter(|s| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|x| x == s.name))
        })
        .collect();
    let sim = VpcSim::start_with(
        "diff",
        vpcsim::StartOptions {
            nodes: vec!["m5.large".into(); 1 + 2 * chosen.len()],
            ..Default::default()
        },
    )
    .unwrap();
    let nodes = sim.nodes();
    let control = &nodes[0];
    let cluster =
        cluster::Cluster::start_bound("diff", control.namespace.as_deref(), &control.primary_ip);
    let crds = cni_client::peer("upstream", "VPC_CNI_PEER_UPSTREAM_CRDS");
    cluster.apply_crds(&crds.join("eniconfigs.yaml"));
    cluster.apply_crds(&crds.join("cninodes.yaml"));

    let results: Vec<(String, Result<Vec<String>, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chosen
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (up, ours) = (&nodes[1 + 2 * i], &nodes[2 + 2 * i]);
                let (sim, cluster) = (&sim, &cluster);
                (s.name, scope.spawn(move || run(s, sim, cluster, up, ours)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(n, h)| {
                let r = h.join().map_err(|e| {
                    e.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                });
                (n.to_string(), r)
            })
            .collect()
    });
    drop(cluster);
    sim.stop().unwrap();
    let mut report = String::new();
    for (name, r) in results {
        match r {
            Ok(diffs) if diffs.is_empty() => {}
            Ok(diffs) => report.push_str(&format!("== {name}\n{}\n", diffs.join("\n"))),
            Err(panic) => report.push_str(&format!("== {name} failed: {panic}\n")),
        }
    }
    assert!(
        report.is_empty(),
        "differences not in docs/compat.md:\n{report}"
    );
}

/// `nft list ruleset` of a node namespace, reduced to `table ...` and `chain ...` lines (which
/// tables and chains exist).
fn nft_chains(ns: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "ruleset"])
        .output()
        .unwrap();
    let mut table = String::new();
    let mut v = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let l = l.trim();
        if let Some(t) = l.strip_prefix("table ") {
            table = t.trim_end_matches(" {").to_string();
        } else if let Some(c) = l.strip_prefix("chain ") {
            v.push(format!("{table} {}", c.trim_end_matches(" {")));
        }
    }
    v.sort();
    v
}

/// The rules of one nft chain, as `nft list chain` prints them (without handles and counters).
fn nft_rules(ns: &str, table: &str, chain: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "chain"])
        .args(table.split_whitespace())
        .arg(chain)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("table") && !l.starts_with("chain") && *l != "}"
        })
        .map(|l| {
            // Without `counter packets N bytes M`.
            let w: Vec<&str> = l.split_whitespace().collect();
            let mut out = Vec::new();
            let mut i = 0;
            while i < w.len() {
                if w[i] == "counter" && w.get(i + 1) == Some(&"packets") {
                    i += 5;
                } else {
                    out.push(w[i]);
                    i += 1;
                }
            }
            out.join(" ")
        })
        .collect()
}

/// Every pod reaches every other pod of the node, the node next door and the internet.
fn all_reach(pods: &[&Pod], other_node: &str, what: &str) {
    for a in pods {
        for b in pods {
            if a.name != b.name {
                assert!(
                    a.ping(&b.ip.to_string()),
                    "{what}: {} cannot ping {}",
                    a.name,
                    b.name
                );
            }
        }
        assert!(
            a.ping(other_node),
            "{what}: {} cannot ping the other node",
            a.name
        );
        let echo = a.tcp_echo("203.0.113.10", 7);
        assert_eq!(
            echo.as_deref(),
            Ok(format!("hello-{}", a.name).as_str()),
            "{what}: {} cannot reach the internet",
            a.name
        );
    }
}

/// The (container id, address) pairs a checkpoint file holds.
fn allocations(path: &std::path::Path) -> std::collections::BTreeSet<(String, String)> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(path).unwrap_or_default()).unwrap_or(Value::Null);
    v["allocations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["containerID"].as_str().unwrap_or("").to_string(),
                        e["ipv4"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn expected(pods: &[&Pod]) -> std::collections::BTreeSet<(String, String)> {
    pods.iter()
        .map(|p| (p.container_id.clone(), p.ip.to_string()))
        .collect()
}

/// A node running upstream's daemon with pods is switched to ours (their daemon stopped, ours
/// started on the same node with the same checkpoint file) and back. Every pod keeps its address
/// and its traffic through both switches; each daemon deletes pods the other added and adds its
/// own; ours removes upstream's iptables-nft rules at start. What upstream makes of our nftables
/// table on the way back is measured and asserted here (docs/compat.md, "Rolling back").
#[test]
fn a_node_switches_from_upstream_to_ours_and_back_and_its_pods_keep_their_addresses() {
    let sim = VpcSim::start_with(
        "switch",
        vpcsim::StartOptions {
            nodes: vec!["m5.large".into(); 3],
            ..Default::default()
        },
    )
    .unwrap();
    let nodes = sim.nodes();
    let (control, node, other) = (&nodes[0], &nodes[1], &nodes[2]);
    let cluster =
        cluster::Cluster::start_bound("switch", control.namespace.as_deref(), &control.primary_ip);
    let settings: Vec<(&str, &str)> = COMMON.to_vec();
    let mut up = UpstreamNode::start(&cluster, node, sim.region(), 29, &settings);
    let ns = up.netns().to_string();
    let mut pods = up.add_pods("s", 4);
    all_reach(
        &pods.iter().collect::<Vec<_>>(),
        &other.primary_ip,
        "upstream",
    );
    let chains = nft_chains(&ns);
    for c in [
        "ip nat AWS-SNAT-CHAIN-0",
        "ip aws-cni nat-prerouting",
        "ip aws-cni snat-mark",
    ] {
        assert!(
            chains.iter().any(|x| x == c),
            "upstream made no {c}: {chains:?}"
        );
    }

    // Upstream → ours: their daemon stops, ours starts with their checkpoint file and the
    // runtime's cache of their ADD results.
    up.stop();
    let checkpoint = up.checkpoint().display().to_string();
    let mut ours_settings = settings.clone();
    ours_settings.push(("AWS_VPC_K8S_CNI_BACKING_STORE", &checkpoint));
    let mut ours = Ipamd::start(node, &ours_settings);
    std::os::unix::fs::symlink(up.dir.0.join("cni-cache"), ours.dir.0.join("cni-cache")).unwrap();
    assert_eq!(
        allocations(&up.checkpoint()),
        expected(&pods.iter().collect::<Vec<_>>()),
        "ours kept upstream's allocations"
    );
    let chains = nft_chains(&ns);
    assert!(
        !chains.iter().any(|c| c.contains("AWS-")),
        "upstream's iptables chains are gone: {chains:?}"
    );
    let postrouting = nft_rules(&ns, "ip nat", "POSTROUTING");
    assert!(
        !postrouting.iter().any(|r| r.contains("AWS")),
        "{postrouting:?}"
    );
    for c in [
        "ip aws-cni snat-postrouting",
        "ip aws-cni nat-prerouting",
        "ip aws-cni mangle-prerouting",
    ] {
        assert!(
            chains.iter().any(|x| x == c),
            "ours made no {c}: {chains:?}"
        );
    }
    all_reach(
        &pods.iter().collect::<Vec<_>>(),
        &other.primary_ip,
        "after the switch to ours",
    );
    pods.extend(ipamd_node::add_pods(&mut ours, "t", 2));
    all_reach(
        &pods.iter().collect::<Vec<_>>(),
        &other.primary_ip,
        "ours added two",
    );
    // Ours deletes a pod upstream added.
    let gone = pods.remove(0);
    let gone_ip = gone.ip.to_string();
    ours.del_pod(gone);
    assert_eq!(
        allocations(&up.checkpoint()),
        expected(&pods.iter().collect::<Vec<_>>())
    );
    let rules = ip_out(&["-n", &ns, "rule", "show"]);
    assert!(
        !rules.split_whitespace().any(|w| w == gone_ip),
        "{gone_ip}: {rules}"
    );

    // Ours → upstream (a rollback): ours stops, theirs starts with the checkpoint ours wrote.
    assert_eq!(ours.stop(), Some(0), "{}", ours.log());
    up.restart();
    assert_eq!(
        allocations(&up.checkpoint()),
        expected(&pods.iter().collect::<Vec<_>>()),
        "upstream kept the allocations ours wrote"
    );
    all_reach(
        &pods.iter().collect::<Vec<_>>(),
        &other.primary_ip,
        "after the rollback",
    );
    // Upstream deletes a pod ours added, and adds one.
    let i = pods.iter().position(|p| p.name == "t0").unwrap();
    let gone = pods.remove(i);
    up.del_pod(gone);
    pods.extend(up.add_pods("u", 1));
    assert_eq!(
        allocations(&up.checkpoint()),
        expected(&pods.iter().collect::<Vec<_>>())
    );
    all_reach(
        &pods.iter().collect::<Vec<_>>(),
        &other.primary_ip,
        "upstream added one",
    );

    // What the rollback did to the packet filter (docs/compat.md, "Rolling back"): upstream
    // brought back its iptables-nft rules and rewrote the two chains of `ip aws-cni` its nftables
    // connmark code owns; our SNAT and mangle chains stay, behind upstream's SNAT (priority 110
    // after 100).
    assert_eq!(
        nft_chains(&ns),
        [
            "ip aws-cni mangle-prerouting",
            "ip aws-cni nat-prerouting",
            "ip aws-cni snat-mark",
            "ip aws-cni snat-postrouting",
            "ip mangle PREROUTING",
            "ip nat AWS-SNAT-CHAIN-0",
            "ip nat POSTROUTING",
        ]
    );
    assert_eq!(
        nft_rules(&ns, "ip aws-cni", "nat-prerouting"),
        [
            "type nat hook prerouting priority dstnat + 10; policy accept;",
            "fib daddr type local return",
            "iifname \"eni*\" jump snat-mark",
            "meta mark set ct mark & 0x00000080",
        ],
        "upstream's own form of its connmark chain"
    );
    assert_eq!(
        nft_rules(&ns, "ip aws-cni", "snat-postrouting"),
        [
            "type nat hook postrouting priority srcnat + 10; policy accept;".to_string(),
            "ip daddr 10.0.0.0/16 return".to_string(),
            format!(
                "oifname != \"vlan*\" fib daddr type != local snat to {} fully-random",
                node.primary_ip
            ),
        ],
        "our SNAT chain is left behind"
    );
    assert_eq!(
        nft_rules(&ns, "ip nat", "POSTROUTING"),
        [
            "type nat hook postrouting priority srcnat; policy accept;",
            "jump AWS-SNAT-CHAIN-0",
        ]
    );
    assert_eq!(nft_rules(&ns, "ip aws-cni", "mangle-prerouting").len(), 6);
    // The step docs/compat.md asks for after a rollback: our two chains go; traffic (upstream's
    // SNAT) is unaffected.
    for c in ["snat-postrouting", "mangle-prerouting"] {
        let ok = std::process::Command::new("ip")
            .args([
                "netns", "exec", &ns, "nft", "delete", "chain", "ip", "aws-cni", c,
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "nft delete chain ip aws-cni {c}");
    }
    all_reach(
        &pods.iter().collect::<Vec<_>>(),
        &other.primary_ip,
        "rolled back, our chains deleted",
    );

    for p in pods {
        up.del_pod(p);
    }
    drop(up);
    drop(ours);
    drop(cluster);
    sim.stop().unwrap();
}
