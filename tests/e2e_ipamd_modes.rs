//! End to end, ipamd's modes and endpoints: throttled EC2 with a lagging IMDS, a no_manage ENI,
//! IMDS-only mode, disabled provisioning, introspection and metrics, ENI tags. ipamd runs as a real
//! process per VPC-in-a-box node, pods are added through the libcni client, and EC2 is read back
//! through the EC2 API with the sim's second (`extended`) user, so the call log tells ipamd's calls
//! (signed with the node user's key) from the test's own. Root only; each test starts its own sim
//! and removes everything it made, also when it fails.

#![allow(clippy::unwrap_used)]

#[path = "support/cni_client.rs"]
mod cni_client;
#[path = "support/ipamd_node.rs"]
mod ipamd_node;
#[path = "support/netns.rs"]
mod netns;
#[path = "support/tempdir.rs"]
mod tempdir;
#[path = "support/vpcsim.rs"]
mod vpcsim;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipamd_node::{ec2_test_user, eventually, shape, wait_shape_by, Ipamd, Pod};
use serde_json::Value;
use vpc_cni::aws::ec2::{
    Addresses, AssignIpv4, AssignPrivateIpAddresses, AttachNetworkInterface,
    CreateNetworkInterface, DescribeNetworkInterfaces, Ec2, Ec2Client, Filter, NetworkInterface,
    Tag,
};
use vpcsim::{Call, Fault, Node, VpcSim};

/// The ENIs attached to `instance_id` by device index, retrying while EC2 throttles the test too.
fn enis(ec2: &Ec2Client, instance_id: &str) -> Vec<NetworkInterface> {
    let mut last = String::new();
    for _ in 0..20 {
        match ec2.describe_network_interfaces(&DescribeNetworkInterfaces {
            ids: vec![],
            filters: vec![Filter::new("attachment.instance-id", [instance_id])],
        }) {
            Ok(mut v) => {
                v.sort_by_key(|n| n.attachment.as_ref().and_then(|a| a.device_index));
                return v;
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("DescribeNetworkInterfaces kept failing: {last}");
}

/// Every address (primary and secondary) of an ENI.
fn addresses(n: &NetworkInterface) -> BTreeSet<Ipv4Addr> {
    n.private_ips.iter().map(|p| p.address).collect()
}

/// The EC2 calls not signed with the test user's key: ipamd's.
fn ipamd_calls(sim: &VpcSim, test_key: &str) -> Vec<Call> {
    sim.calls(None)
        .unwrap()
        .into_iter()
        .filter(|c| c.service == "ec2" && c.access_key_id.as_deref() != Some(test_key))
        .collect()
}

fn summary(calls: &[Call]) -> String {
    calls
        .iter()
        .map(|c| format!("{}:{}", c.action, c.status))
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_read_only(action: &str) -> bool {
    action.starts_with("Describe")
}

/// Creates an ENI in the node's subnet with its security groups and attaches it as `device`;
/// returns it as EC2 describes it once attached and visible on the node.
fn attach_new_eni(
    sim: &VpcSim,
    ec2: &Ec2Client,
    node: &Node,
    device: u32,
    secondaries: u32,
    description: &str,
    tags: Vec<Tag>,
) -> NetworkInterface {
    let primary = enis(ec2, &node.instance_id).remove(0);
    let ni = ec2
        .create_network_interface(&CreateNetworkInterface {
            subnet_id: node.subnet_id.clone(),
            security_group_ids: primary.groups.iter().map(|g| g.id.clone()).collect(),
            description: description.into(),
            tags,
            addresses: Addresses::SecondaryIpv4(secondaries),
        })
        .unwrap();
    ec2.attach_network_interface(&AttachNetworkInterface {
        network_interface_id: ni.id.clone(),
        instance_id: node.instance_id.clone(),
        device_index: device,
        network_card_index: None,
    })
    .unwrap();
    let began = Instant::now();
    loop {
        let now = enis(ec2, &node.instance_id);
        if let Some(n) = now.iter().find(|n| {
            n.id == ni.id
                && n.attachment
                    .as_ref()
                    .is_some_and(|a| a.status == "attached")
        }) {
            sim.sync().unwrap();
            return n.clone();
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "{} never attached",
            ni.id
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Assigns `count` secondary addresses to the node's primary ENI (before ipamd starts).
fn preassign(sim: &VpcSim, ec2: &Ec2Client, node: &Node, count: u32) -> Vec<Ipv4Addr> {
    let got = ec2
        .assign_private_ip_addresses(&AssignPrivateIpAddresses {
            network_interface_id: node.primary_eni.clone(),
            request: AssignIpv4::Count(count),
        })
        .unwrap();
    sim.sync().unwrap();
    assert_eq!(got.addresses.len(), count as usize);
    got.addresses
}

/// Adds pods until one is refused; returns the pods and the refusal.
fn fill(d: &mut Ipamd, prefix: &str, max: usize) -> (Vec<Pod>, Value) {
    let mut pods = Vec::new();
    for i in 0..max {
        match d.try_add_pod(&format!("{prefix}{i}")) {
            Ok(p) => pods.push(p),
            Err(e) => return (pods, e),
        }
    }
    panic!("{max} pods and none refused\n{}", d.log());
}

/// The value of an unlabelled sample in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Consecutive attempts of one EC2 call: ipamd makes its EC2 calls one at a time (from its loop
/// thread), so a run is a call followed by its retries, which repeat the action after an error.
/// Returns (action, attempts, whether the last one succeeded) per run.
fn runs(calls: &[Call]) -> Vec<(String, usize, bool)> {
    let mut out: Vec<(String, usize, bool)> = Vec::new();
    for c in calls {
        let ok = c.status == 200;
        match out.last_mut() {
            Some((a, n, false)) if *a == c.action && *n < 5 => {
                *n += 1;
                if ok {
                    out.last_mut().unwrap().2 = true;
                }
            }
            _ => out.push((c.action.clone(), 1, ok)),
        }
    }
    out
}

#[test]
fn throttled_ec2_and_a_lagging_imds_neither_stall_pods_nor_multiply_ec2_calls() {
    let mut sim = VpcSim::start("e2mth");
    let n1 = sim.launch_node("m5.large");
    let (x, test_key) = ec2_test_user(&sim);
    // The first CreateNetworkInterface is throttled for sure, 30% of every EC2 call at random;
    // the rest of the mutating calls take 1 s; IMDS shows EC2's changes 2 s late.
    sim.inject_fault(&Fault::error("CreateNetworkInterface", "RequestLimitExceeded", 503).count(1))
        .unwrap();
    sim.inject_fault(&Fault::error("*", "RequestLimitExceeded", 503).probability(0.3))
        .unwrap();
    for a in [
        "AssignPrivateIpAddresses",
        "CreateNetworkInterface",
        "AttachNetworkInterface",
        "ModifyNetworkInterfaceAttribute",
    ] {
        sim.inject_fault(&Fault::latency(a, 1000)).unwrap();
    }
    sim.set_imds_lag(2.0, Some(&n1)).unwrap();
    let began = Instant::now();
    let mut d = Ipamd::start(&n1, &[]);
    // WARM_ENI_TARGET=1 (default) on an m5.large: one ENI's worth (9) of free addresses.
    wait_shape(&x, &d, Duration::from_secs(60), &[(9, 0)]);

    // Five pods inside the warm pool: the first ADD makes ipamd grow the pool by an ENI, which
    // takes several seconds of slow, throttled EC2 calls; the ADDs do not wait for it.
    let mut pods = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let t = Instant::now();
        pods.push(d.add_pod(&format!("t{i}")));
        slowest = slowest.max(t.elapsed());
    }
    let adds_done = epoch_now();
    assert!(
        slowest < Duration::from_millis(1500),
        "an ADD inside the warm pool took {slowest:?}"
    );
    // The pods started while the new ENI was still on its way: ipamd's datastore has one ENI.
    let enis_listed = |d: &Ipamd| {
        d.http_get("http://127.0.0.1:61679/v1/enis", &[]).json()["ENIs"]
            .as_object()
            .map_or(0, |m| m.len())
    };
    assert_eq!(enis_listed(&d), 1, "the ADDs waited for EC2\n{}", d.log());
    // 5 pods + 9 free needs a second ENI of 9.
    wait_shape(&x, &d, Duration::from_secs(60), &[(9, 0), (9, 0)]);
    eventually(
        &d,
        Duration::from_secs(60),
        "the new ENI in the datastore",
        || enis_listed(&d) == 2,
    );
    let attach_done = ipamd_calls(&sim, &test_key)
        .iter()
        .filter(|c| c.action == "ModifyNetworkInterfaceAttribute" && c.status == 200)
        .map(|c| c.time)
        .fold(f64::NAN, f64::max);
    assert!(
        adds_done < attach_done,
        "the five ADDs finished ({adds_done}) before the new ENI was attached ({attach_done}): {}",
        summary(&ipamd_calls(&sim, &test_key))
    );
    // It stays there: nothing more to do for the pool.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(shape(&enis(&x, &n1.instance_id)), vec![(9, 0), (9, 0)]);
    let elapsed = began.elapsed();

    let calls = ipamd_calls(&sim, &test_key);
    let throttled = calls
        .iter()
        .filter(|c| c.error.as_deref() == Some("RequestLimitExceeded"))
        .count();
    let r = runs(&calls);
    let gave_up = r.iter().filter(|(_, _, ok)| !ok).count();
    // The pool actions this needs, one EC2 call each unless noted: the start-up Describe, the
    // primary ENI's 9 addresses (1 Assign), one ENI with its 9 addresses (Create, Attach,
    // Modify), and at most one reconcile Describe per started minute. Each call makes at most 5
    // attempts (RetryPolicy::EC2); an action given up after 5 is planned again (at most 3 calls).
    let logical = 1 + 1 + 3 + (1 + elapsed.as_secs() as usize / 60);
    let bound = 5 * (logical + 3 * gave_up);
    eprintln!(
        "throttling: {} ipamd EC2 calls ({throttled} throttled) in {} runs ({gave_up} given up) over {elapsed:?}; bound {bound}: {}",
        calls.len(),
        r.len(),
        summary(&calls)
    );
    assert!(
        calls.len() <= bound,
        "{} EC2 calls > {bound}: {}",
        calls.len(),
        summary(&calls)
    );
    assert!(
        throttled > 0,
        "the fault throttled nothing: {}",
        summary(&calls)
    );
    let ok = |a: &str| {
        calls
            .iter()
            .filter(|c| c.action == a && c.status == 200)
            .count()
    };
    if gave_up == 0 {
        // Exactly the pool actions, none twice.
        assert_eq!(
            [
                ok("AssignPrivateIpAddresses"),
                ok("CreateNetworkInterface"),
                ok("AttachNetworkInterface"),
                ok("ModifyNetworkInterfaceAttribute"),
            ],
            [1, 1, 1, 1],
            "{}",
            summary(&calls)
        );
        assert!(!calls.iter().any(|c| c.action == "DeleteNetworkInterface"));
    }
    // Every pod holds an address of its node in EC2.
    let all: BTreeSet<Ipv4Addr> = enis(&x, &n1.instance_id)
        .iter()
        .flat_map(addresses)
        .collect();
    for p in &pods {
        assert!(all.contains(&p.ip), "{} ({}) not in EC2", p.name, p.ip);
    }
    sim.clear_faults().unwrap();
    for p in pods {
        d.del_pod(p);
    }
}

/// The host interface in `ns` whose MAC is `mac`.
fn link_by_mac(ns: &str, mac: &str) -> String {
    let links = netns::run("ip", &["-n", ns, "-o", "link", "show"]);
    links
        .lines()
        .find(|l| l.to_lowercase().contains(&mac.to_lowercase()))
        .and_then(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .unwrap_or_else(|| panic!("no link with MAC {mac} in {ns}:\n{links}"))
}

fn ping_from(ns: &str, src: Ipv4Addr, dst: &str) -> bool {
    std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "1", "-W", "3", "-q", "-I",
        ])
        .arg(src.to_string())
        .arg(dst)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn a_no_manage_eni_is_never_touched_and_keeps_carrying_its_traffic() {
    let mut sim = VpcSim::start("e2mnm");
    let n1 = sim.launch_node("m5.large");
    let n2 = sim.launch_node("m5.large");
    let (x, test_key) = ec2_test_user(&sim);
    let ns = n1.namespace.clone().unwrap();
    let eni = attach_new_eni(
        &sim,
        &x,
        &n1,
        1,
        2,
        "storage-appliance",
        vec![Tag::new("node.k8s.amazonaws.com/no_manage", "true")],
    );
    let eni_ip = eni.private_ip_address.unwrap();
    let before = addresses(&eni);
    // The node's own use of it: its address on its link, a route table and a rule of our own.
    let link = link_by_mac(&ns, &eni.mac_address);
    let gw = sim
        .subnets()
        .into_iter()
        .find(|s| s.0 == n1.subnet_id)
        .map(|s| s.2)
        .unwrap();
    let gw: Ipv4Addr = {
        let net: Ipv4Addr = gw.split('/').next().unwrap().parse().unwrap();
        Ipv4Addr::from(u32::from(net) + 1)
    };
    let ip = |args: &[&str]| {
        let mut a = vec!["-n", ns.as_str()];
        a.extend_from_slice(args);
        netns::run("ip", &a);
    };
    ip(&["addr", "add", &format!("{eni_ip}/32"), "dev", &link]);
    ip(&["link", "set", &link, "up"]);
    ip(&[
        "route",
        "add",
        &gw.to_string(),
        "dev",
        &link,
        "scope",
        "link",
        "table",
        "77",
    ]);
    ip(&[
        "route",
        "add",
        "default",
        "via",
        &gw.to_string(),
        "dev",
        &link,
        "table",
        "77",
    ]);
    ip(&[
        "rule",
        "add",
        "from",
        &eni_ip.to_string(),
        "lookup",
        "77",
        "priority",
        "31000",
    ]);
    netns::run(
        "ip",
        &[
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{link}.rp_filter=2"),
        ],
    );
    // The VPC delivers only what an ENI holds: a reply to its address proves the path.
    assert!(
        ping_from(&ns, eni_ip, &n2.primary_ip),
        "no traffic over the no_manage ENI even before ipamd"
    );

    let mut d = Ipamd::start(&n1, &[("IP_COOLDOWN_PERIOD", "0")]);
    assert!(
        ping_from(&ns, eni_ip, &n2.primary_ip),
        "ipamd's start broke the no_manage ENI's traffic\n{}",
        d.log()
    );
    // 12 pods: more than the primary ENI holds, so ipamd adds an ENI of its own (device 2: the
    // no_manage one keeps device 1).
    let mut pods = Vec::new();
    for i in 0..12 {
        let name = format!("n{i}");
        let t = Instant::now();
        loop {
            match d.try_add_pod(&name) {
                Ok(p) => break pods.push(p),
                Err(_) if t.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(300))
                }
                Err(e) => panic!("ADD {name}: {e}\n{}", d.log()),
            }
        }
    }
    for p in &pods {
        assert!(!before.contains(&p.ip), "pod {} got {}", p.name, p.ip);
    }
    let now = enis(&x, &n1.instance_id);
    let devices: Vec<(String, Option<u32>)> = now
        .iter()
        .map(|n| {
            (
                n.id.clone(),
                n.attachment.as_ref().and_then(|a| a.device_index),
            )
        })
        .collect();
    assert_eq!(now.len(), 3, "{devices:?}");
    assert!(devices.contains(&(eni.id.clone(), Some(1))), "{devices:?}");
    // Pods on ipamd's own ENI reach the other node; the no_manage ENI still carries its traffic.
    let on_new: Vec<&Pod> = pods
        .iter()
        .filter(|p| addresses(&now[2]).contains(&p.ip))
        .collect();
    assert!(!on_new.is_empty(), "no pod on ipamd's ENI: {devices:?}");
    assert!(on_new[0].ping(&n2.primary_ip));
    assert!(ping_from(&ns, eni_ip, &n2.primary_ip));
    for p in pods.drain(..) {
        d.del_pod(p);
    }
    // The pool shrinks back: ipamd frees its own ENI (after a minute), never the no_manage one,
    // which holds no pod either.
    wait_shape(&x, &d, Duration::from_secs(150), &[(9, 0), (2, 0)]);
    assert!(
        ping_from(&ns, eni_ip, &n2.primary_ip),
        "the no_manage ENI's traffic stopped after the pods went\n{}",
        d.log()
    );
    let after = enis(&x, &n1.instance_id);
    let kept = after
        .iter()
        .find(|n| n.id == eni.id)
        .expect("the no_manage ENI is still attached");
    assert_eq!(addresses(kept), before, "its addresses are unchanged");
    assert_eq!(
        kept.attachment.as_ref().and_then(|a| a.device_index),
        Some(1)
    );
    // Not one ipamd call named it.
    let calls = ipamd_calls(&sim, &test_key);
    let named: Vec<&Call> = calls
        .iter()
        .filter(|c| c.params.to_string().contains(&eni.id))
        .collect();
    assert!(
        named.is_empty(),
        "ipamd called EC2 on the no_manage ENI: {named:?}"
    );
    for a in ["CreateNetworkInterface", "DeleteNetworkInterface"] {
        assert!(
            calls.iter().any(|c| c.action == a),
            "ipamd grew and shrank the node ({a}): {}",
            summary(&calls)
        );
    }
    eprintln!("no_manage: ipamd's EC2 calls: {}", summary(&calls));
}

#[test]
fn imds_only_mode_makes_no_ec2_call_and_serves_what_was_attached() {
    let mut sim = VpcSim::start("e2mim");
    let n1 = sim.launch_node("m5.large");
    let n2 = sim.launch_node("m5.large");
    let (x, test_key) = ec2_test_user(&sim);
    let pre: BTreeSet<Ipv4Addr> = preassign(&sim, &x, &n1, 4).into_iter().collect();
    let mut d = Ipamd::start(
        &n1,
        &[
            ("ENABLE_IMDS_ONLY_MODE", "true"),
            ("IP_COOLDOWN_PERIOD", "0"),
        ],
    );
    let (pods, refused) = fill(&mut d, "i", 10);
    let got: BTreeSet<Ipv4Addr> = pods.iter().map(|p| p.ip).collect();
    assert_eq!(got, pre, "the pods have exactly the pre-assigned addresses");
    let msg = refused.to_string();
    assert!(msg.contains("no free address"), "{refused}");
    assert!(pods[0].ping(&n2.primary_ip), "a pod reaches the other node");
    // Through pool checks (every 5 s): still nothing asked of EC2, and nothing grew.
    std::thread::sleep(Duration::from_secs(11));
    assert!(d.try_add_pod("late").is_err());
    let calls = ipamd_calls(&sim, &test_key);
    assert!(
        calls.is_empty(),
        "IMDS-only mode called EC2: {}",
        summary(&calls)
    );
    assert_eq!(shape(&enis(&x, &n1.instance_id)), vec![(4, 0)]);
    for p in pods {
        d.del_pod(p);
    }
    let again = d.add_pod("again");
    assert!(pre.contains(&again.ip));
    d.del_pod(again);
    assert!(ipamd_calls(&sim, &test_key).is_empty());
}

#[test]
fn disabled_provisioning_only_describes_and_serves_the_attached_addresses() {
    let mut sim = VpcSim::start("e2mdp");
    let n1 = sim.launch_node("m5.large");
    let n2 = sim.launch_node("m5.large");
    let (x, test_key) = ec2_test_user(&sim);
    let mut pre: BTreeSet<Ipv4Addr> = preassign(&sim, &x, &n1, 3).into_iter().collect();
    // An ENI someone else attached (not ipamd's: no aws-K8S- description): ipamd serves from it.
    let other = attach_new_eni(&sim, &x, &n1, 1, 2, "attached-by-the-operator", vec![]);
    pre.extend(
        other
            .private_ips
            .iter()
            .filter(|p| !p.primary)
            .map(|p| p.address),
    );
    let mut d = Ipamd::start(
        &n1,
        &[
            ("DISABLE_NETWORK_RESOURCE_PROVISIONING", "true"),
            ("WARM_IP_TARGET", "10"),
        ],
    );
    let (pods, refused) = fill(&mut d, "p", 10);
    let got: BTreeSet<Ipv4Addr> = pods.iter().map(|p| p.ip).collect();
    assert_eq!(got, pre, "pods get exactly the attached addresses");
    assert!(refused.to_string().contains("no free address"), "{refused}");
    for p in &pods {
        assert!(
            p.ping(&n2.primary_ip),
            "{} ({}) reaches the other node\n{}",
            p.name,
            p.ip,
            d.log()
        );
    }
    std::thread::sleep(Duration::from_secs(11));
    let calls = ipamd_calls(&sim, &test_key);
    let mutating: Vec<&Call> = calls.iter().filter(|c| !is_read_only(&c.action)).collect();
    assert!(
        mutating.is_empty(),
        "mutating EC2 calls with provisioning disabled: {}",
        summary(&calls)
    );
    assert!(
        calls
            .iter()
            .any(|c| c.action == "DescribeNetworkInterfaces"),
        "ipamd reads EC2's view at start: {}",
        summary(&calls)
    );
    eprintln!(
        "provisioning disabled: ipamd's EC2 calls: {}",
        summary(&calls)
    );
    assert_eq!(shape(&enis(&x, &n1.instance_id)), vec![(3, 0), (2, 0)]);
    for p in pods {
        d.del_pod(p);
    }
}

#[test]
fn introspection_and_metrics_describe_the_running_node() {
    let mut sim = VpcSim::start("e2mis");
    let n1 = sim.launch_node("m5.large");
    let (x, _) = ec2_test_user(&sim);
    let mut d = Ipamd::start(&n1, &[]);
    let ready = d.http_get("http://127.0.0.1:61679/readyz", &[]);
    assert_eq!(ready.status, 200, "{ready:?}");
    let mut pods: Vec<Pod> = (0..3).map(|i| d.add_pod(&format!("m{i}"))).collect();
    // 3 pods leave 6 of 9 free: ipamd adds an ENI; wait until it is there.
    wait_shape(&x, &d, Duration::from_secs(30), &[(9, 0), (9, 0)]);
    let ec2_enis = enis(&x, &n1.instance_id);
    // Let the datastore take the new ENI in.
    eventually(&d, Duration::from_secs(15), "ENI in /v1/enis", || {
        let v = d.http_get("http://127.0.0.1:61679/v1/enis", &[]).json();
        v["ENIs"].as_object().map(|m| m.len()) == Some(ec2_enis.len())
    });

    let v = d.http_get("http://127.0.0.1:61679/v1/enis", &[]).json();
    let listed: BTreeSet<String> = v["ENIs"].as_object().unwrap().keys().cloned().collect();
    let in_ec2: BTreeSet<String> = ec2_enis.iter().map(|n| n.id.clone()).collect();
    assert_eq!(listed, in_ec2, "/v1/enis lists the node's ENIs");
    assert_eq!(v["ENIs"][&n1.primary_eni]["IsPrimary"], Value::Bool(true));
    assert_eq!(v["AssignedIPs"], serde_json::json!(3), "{v}");
    assert_eq!(v["TotalIPs"], serde_json::json!(18), "{v}");
    for p in &pods {
        let found = v["ENIs"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|e| {
                e["AvailableIPv4Cidrs"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            })
            .flat_map(|(_, c)| c["IPAddresses"].as_object().cloned().unwrap_or_default())
            .find(|(ip, _)| *ip == p.ip.to_string())
            .map(|(_, a)| a);
        let a = found.unwrap_or_else(|| panic!("{} not in /v1/enis: {v}", p.ip));
        // As upstream, the container id is scrubbed; the pod's name is in the metadata.
        assert_eq!(
            a["IPAMMetadata"]["k8sPodName"].as_str(),
            Some(p.name.as_str()),
            "{a}"
        );
        assert_eq!(a["IPAMKey"]["containerID"].as_str(), Some(""), "{a}");
    }
    for path in ["/v1/ipamd-env-settings", "/v1/networkutils-env-settings"] {
        let a = d.http_get(&format!("http://127.0.0.1:61679{path}"), &[]);
        assert_eq!(a.status, 200, "{path}: {a:?}");
        assert!(
            a.json().as_object().is_some_and(|m| !m.is_empty()),
            "{path}: {}",
            a.body
        );
    }
    let env = d
        .http_get("http://127.0.0.1:61679/v1/ipamd-env-settings", &[])
        .json();
    assert!(env.get("WARM_ENI_TARGET").is_some(), "{env}");

    let m = d.http_get("http://127.0.0.1:61678/metrics", &[]);
    assert_eq!(m.status, 200);
    assert_eq!(metric(&m.body, "awscni_assigned_ip_addresses"), Some(3.0));
    assert_eq!(
        metric(&m.body, "awscni_eni_allocated"),
        Some(ec2_enis.len() as f64)
    );
    assert_eq!(metric(&m.body, "awscni_total_ip_addresses"), Some(18.0));
    assert_eq!(metric(&m.body, "awscni_add_ip_req_count"), Some(3.0));
    let p = pods.remove(0);
    d.del_pod(p);
    pods.push(d.add_pod("m3"));
    pods.push(d.add_pod("m4"));
    let m = d.http_get("http://127.0.0.1:61678/metrics", &[]).body;
    assert_eq!(metric(&m, "awscni_assigned_ip_addresses"), Some(4.0), "{m}");
    assert_eq!(metric(&m, "awscni_add_ip_req_count"), Some(5.0));
    assert!(m.contains("awscni_ec2api_req_count"), "{m}");
    let ready = d.http_get("http://127.0.0.1:61678/readyz", &[]);
    assert_eq!(ready.status, 200, "{ready:?}");
    for p in pods {
        d.del_pod(p);
    }
}

#[test]
fn introspection_and_metrics_turn_off_and_introspection_serves_on_a_unix_socket() {
    let mut sim = VpcSim::start("e2mio");
    let n1 = sim.launch_node("t3.medium");
    let n2 = sim.launch_node("t3.medium");
    let mut off = Ipamd::start(
        &n1,
        &[
            ("DISABLE_INTROSPECTION", "true"),
            ("DISABLE_METRICS", "true"),
        ],
    );
    let sock_dir = tempdir::TempDir::new("introspect");
    let sock = sock_dir.0.join("introspection.sock");
    let unix = format!("unix:{}", sock.display());
    let mut on_unix = Ipamd::start(&n2, &[("INTROSPECTION_BIND_ADDRESS", unix.as_str())]);

    let p = off.add_pod("o0");
    for url in [
        "http://127.0.0.1:61679/v1/enis",
        "http://127.0.0.1:61678/metrics",
    ] {
        let a = off.http_get(url, &[]);
        assert_eq!(a.status, 0, "{url} answered although disabled: {a:?}");
    }
    off.del_pod(p);

    let q = on_unix.add_pod("u0");
    let sock_arg = sock.display().to_string();
    let a = on_unix.http_get("http://localhost/v1/enis", &["--unix-socket", &sock_arg]);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["AssignedIPs"], serde_json::json!(1), "{}", a.body);
    let a = on_unix.http_get("http://localhost/readyz", &["--unix-socket", &sock_arg]);
    assert_eq!(a.status, 200, "{a:?}");
    let tcp = on_unix.http_get("http://127.0.0.1:61679/v1/enis", &[]);
    assert_eq!(tcp.status, 0, "TCP introspection still on: {tcp:?}");
    let m = on_unix.http_get("http://127.0.0.1:61678/metrics", &[]);
    assert_eq!(m.status, 200, "metrics stay on");
    on_unix.del_pod(q);
}

#[test]
fn cluster_name_and_additional_eni_tags_are_on_every_eni_ipamd_manages() {
    let mut sim = VpcSim::start("e2mtg");
    let n1 = sim.launch_node("m5.large");
    let (x, _) = ec2_test_user(&sim);
    let tags = r#"{"team": "blue", "cost-center": "42", "node.k8s.amazonaws.com/mine": "x"}"#;
    let d = Ipamd::start(
        &n1,
        &[
            ("CLUSTER_NAME", "e2e-cluster"),
            ("ADDITIONAL_ENI_TAGS", tags),
            ("WARM_ENI_TARGET", "2"),
        ],
    );
    // Two ENIs' worth free with no pods: the primary's 9 and one new ENI.
    wait_shape(&x, &d, Duration::from_secs(30), &[(9, 0), (9, 0)]);
    let all = enis(&x, &n1.instance_id);
    let made = &all[1];
    let want = [
        ("cluster.k8s.amazonaws.com/name", "e2e-cluster"),
        ("eks:eni:owner", "amazon-vpc-cni"),
        ("team", "blue"),
        ("cost-center", "42"),
        (
            "node.k8s.amazonaws.com/instance_id",
            n1.instance_id.as_str(),
        ),
    ];
    // The primary ENI gets them at start too, as upstream's TagENI does, but not createdAt.
    for eni in [made, &all[0]] {
        for (k, v) in want {
            assert_eq!(eni.tag(k), Some(v), "tag {k} on {}: {:?}", eni.id, eni.tags);
        }
    }
    assert_eq!(all[0].tag("node.k8s.amazonaws.com/createdAt"), None);
    assert!(made.tag("node.k8s.amazonaws.com/createdAt").is_some());
    assert_eq!(
        made.tag("node.k8s.amazonaws.com/mine"),
        None,
        "a reserved key from ADDITIONAL_ENI_TAGS is dropped"
    );
    // A restart finds every tag in place and writes none.
    let calls = sim.calls(Some("CreateTags")).unwrap().len();
    drop(d);
    let d = Ipamd::start(
        &n1,
        &[
            ("CLUSTER_NAME", "e2e-cluster"),
            ("ADDITIONAL_ENI_TAGS", tags),
            ("WARM_ENI_TARGET", "2"),
        ],
    );
    wait_shape(&x, &d, Duration::from_secs(30), &[(9, 0), (9, 0)]);
    assert_eq!(
        sim.calls(Some("CreateTags")).unwrap().len(),
        calls,
        "tags written again"
    );
}

/// Waits until the node's ENIs in EC2 (read as the test user) have this shape.
fn wait_shape(ec2: &Ec2Client, d: &Ipamd, budget: Duration, want: &[(usize, usize)]) {
    wait_shape_by(d, budget, want, || enis(ec2, &d.node.instance_id))
}
