//! End to end: ipamd as a real process per VPC-in-a-box node, pods through the libcni client with
//! our plugin, EC2 read back through the EC2 API. Root only (namespaces); each test starts its own
//! sim and removes everything it made, also when it fails.

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
use std::time::{Duration, Instant};

use ipamd_node::{add_pods, ec2, enis_of, eventually, shape, wait_shape_by, Ipamd, Pod};
use serde_json::Value;
use vpc_cni::aws::ec2::NetworkInterface;
use vpcsim::VpcSim;

/// Which ENI (device index) holds `ip` in EC2.
fn device_of(enis: &[NetworkInterface], ip: Ipv4Addr) -> Option<u32> {
    enis.iter()
        .find(|n| {
            n.private_ips.iter().any(|p| p.address == ip)
                || n.ipv4_prefixes.iter().any(|c| c.contains(ip))
        })
        .and_then(|n| n.attachment.as_ref().and_then(|a| a.device_index))
}

#[test]
fn two_nodes_forty_pods_reach_each_other_and_the_internet() {
    let mut sim = VpcSim::start("e2ea");
    let n1 = sim.launch_node("m5.large");
    let n2 = sim.launch_node("m5.large");
    let mut a = Ipamd::start(&n1, &[]);
    let mut b = Ipamd::start(&n2, &[]);
    let mut pods_a: Vec<Pod> = (0..20).map(|i| a.add_pod(&format!("a{i}"))).collect();
    let mut pods_b: Vec<Pod> = (0..20).map(|i| b.add_pod(&format!("b{i}"))).collect();

    let all: BTreeSet<Ipv4Addr> = pods_a.iter().chain(&pods_b).map(|p| p.ip).collect();
    assert_eq!(all.len(), 40, "every pod has its own address");

    let client = ec2(&sim);
    let enis_a = enis_of(&client, &n1.instance_id);
    let on_secondary = pods_a
        .iter()
        .filter(|p| device_of(&enis_a, p.ip).unwrap_or(0) > 0)
        .count();
    assert!(
        on_secondary > 0,
        "20 pods on an m5.large need a secondary ENI: {:?}",
        shape(&enis_a)
    );
    let enis_b = enis_of(&client, &n2.instance_id);
    for p in pods_a.iter().chain(&pods_b) {
        let on_node = if p.name.starts_with('a') {
            &enis_a
        } else {
            &enis_b
        };
        assert!(
            device_of(on_node, p.ip).is_some(),
            "{} ({}) holds an address EC2 assigned to its node",
            p.name,
            p.ip
        );
    }

    // Every pod pings a pod on the other node, across primary and secondary ENIs.
    for (i, p) in pods_a.iter().enumerate() {
        let q = &pods_b[(i * 7) % pods_b.len()];
        assert!(
            p.ping(&q.ip.to_string()),
            "{} ({}) → {} ({})",
            p.name,
            p.ip,
            q.name,
            q.ip
        );
        assert!(
            q.ping(&p.ip.to_string()),
            "{} ({}) → {} ({})",
            q.name,
            q.ip,
            p.name,
            p.ip
        );
    }

    // The internet sees the node's primary address (SNAT), from pods on any ENI.
    let inet = sim.internet_ip().unwrap();
    sim_clear_peers(&sim);
    for p in pods_a.iter().take(12) {
        let echo = p
            .tcp_echo(&inet, 7)
            .unwrap_or_else(|e| panic!("{} to the internet: {e}", p.name));
        assert_eq!(echo, format!("hello-{}", p.name));
    }
    let sources = peer_sources(&sim);
    assert!(
        !sources.is_empty() && sources.iter().all(|s| *s == n1.primary_ip),
        "the internet saw {sources:?}, expected only {}",
        n1.primary_ip
    );

    for p in pods_a.drain(..) {
        a.del_pod(p);
    }
    for p in pods_b.drain(..) {
        b.del_pod(p);
    }
    assert!(a.checkpoint_allocations().is_empty());
    assert!(b.checkpoint_allocations().is_empty());
}

fn sim_clear_peers(sim: &VpcSim) {
    let _ = sim.request("DELETE", "/internet/peers", None);
}

fn peer_sources(sim: &VpcSim) -> Vec<String> {
    sim.internet_peers()
        .unwrap()
        .iter()
        .filter_map(|p| {
            // The sim's internet gateway translates the node's primary address to its public one;
            // `private_src` is the address before that translation.
            p.get("private_src")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn a_full_node_refuses_the_next_pod_clearly_and_leaks_nothing() {
    let mut sim = VpcSim::start("e2ef");
    let n1 = sim.launch_node("t3.nano");
    // t3.nano: 2 ENIs x 2 addresses: max pods 2*(2-1)+2 = 4, but only 2 addresses for pods.
    let mut d = Ipamd::start(&n1, &[]);
    let mut pods = Vec::new();
    // A pod outside the warm pool fails until ipamd has grown it (as upstream); retry as the
    // kubelet does, for as long as the node can still grow.
    for i in 0..2 {
        let name = format!("f{i}");
        let began = Instant::now();
        loop {
            match d.try_add_pod(&name) {
                Ok(p) => break pods.push(p),
                Err(e) if began.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("ADD {name} never succeeded: {e}\n{}", d.log()),
            }
        }
    }
    // Both addresses the instance type allows are in use: the next pod is refused, also later.
    std::thread::sleep(Duration::from_secs(6));
    let e = d
        .try_add_pod("f2")
        .expect_err("a node with 2 pod addresses refuses a third pod");
    let msg = e["msg"].as_str().unwrap_or("").to_string() + e["details"].as_str().unwrap_or("");
    assert!(msg.contains("no free address"), "the error says why: {e}");
    // Nothing half-wired: the refused pod left no veth or rule on the node.
    let links = netns::run("ip", &["-n", d.netns(), "-o", "link", "show"]);
    let veths = links.lines().filter(|l| l.contains(": eni")).count();
    assert_eq!(veths, 2, "one host veth per pod:\n{links}");
    assert_eq!(d.checkpoint_allocations().len(), 2);
    for p in pods {
        d.del_pod(p);
    }
    assert!(d.checkpoint_allocations().is_empty());
}

#[test]
fn kill_9_during_adds_and_dels_loses_no_address_and_hands_none_out_twice() {
    let mut sim = VpcSim::start("e2ec");
    let n1 = sim.launch_node("m5.large");
    let mut d = Ipamd::start(&n1, &[("IP_COOLDOWN_PERIOD", "0")]);
    let mut live: Vec<Pod> = Vec::new();
    for round in 0..3 {
        for i in 0..6 {
            live.push(d.add_pod(&format!("k{round}-{i}")));
        }
        // Delete two, then kill ipamd without warning and start it again.
        for _ in 0..2 {
            let p = live.remove(0);
            d.del_pod(p);
        }
        d.kill9();
        d.restart();
        let mut ips: Vec<Ipv4Addr> = live.iter().map(|p| p.ip).collect();
        ips.sort();
        let mut in_checkpoint: Vec<Ipv4Addr> = d
            .checkpoint_allocations()
            .iter()
            .map(|(_, ip)| ip.parse().unwrap())
            .collect();
        in_checkpoint.sort();
        assert_eq!(
            in_checkpoint, ips,
            "round {round}: the checkpoint holds exactly the live pods"
        );
    }
    // New pods after the restarts never get a live pod's address.
    let live_ips: BTreeSet<Ipv4Addr> = live.iter().map(|p| p.ip).collect();
    for i in 0..4 {
        let p = d.add_pod(&format!("after{i}"));
        assert!(!live_ips.contains(&p.ip), "{} handed out twice", p.ip);
        live.push(p);
    }
    // An ADD repeated for a live pod gets its own address back (idempotent across restarts).
    let first = &live[0];
    let again = d.cni("add", &first.container_id, &first.ns.path(), &first.name);
    assert_eq!(again["ok"], Value::Bool(true), "{again}");
    assert!(
        again["result"]["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/", first.ip)),
        "{again}"
    );
    // EC2 holds every live pod's address on this node.
    let enis = enis_of(&ec2(&sim), &n1.instance_id);
    for p in &live {
        assert!(
            device_of(&enis, p.ip).is_some(),
            "{} not on the node in EC2",
            p.ip
        );
    }
    for p in live {
        d.del_pod(p);
    }
}

#[test]
fn sigterm_flushes_the_checkpoint_and_keeps_every_eni() {
    let mut sim = VpcSim::start("e2et");
    let n1 = sim.launch_node("m5.large");
    let mut d = Ipamd::start(&n1, &[]);
    let pods: Vec<Pod> = (0..12).map(|i| d.add_pod(&format!("t{i}"))).collect();
    let client = ec2(&sim);
    let before = enis_of(&client, &n1.instance_id);
    assert_eq!(d.stop(), Some(0), "clean exit on SIGTERM:\n{}", d.log());
    assert_eq!(d.checkpoint_allocations().len(), 12);
    let after = enis_of(&client, &n1.instance_id);
    assert_eq!(
        before.iter().map(|n| &n.id).collect::<Vec<_>>(),
        after.iter().map(|n| &n.id).collect::<Vec<_>>(),
        "no ENI freed at shutdown"
    );
    d.restart();
    for p in pods {
        d.del_pod(p);
    }
    eventually(&d, Duration::from_secs(5), "checkpoint empty", || {
        d.checkpoint_allocations().is_empty()
    });
}

/// One warm mode on an m5.large: the EC2 state with no pods, with `pods` pods, and after they
/// are gone again (ENIs are freed only after a minute, releases at most every 30 s).
fn warm_mode(
    tag: &str,
    settings: &[(&str, &str)],
    pods: usize,
    idle: &[(usize, usize)],
    busy: &[(usize, usize)],
) {
    let mut sim = VpcSim::start(tag);
    let n1 = sim.launch_node("m5.large");
    let mut settings = settings.to_vec();
    settings.push(("IP_COOLDOWN_PERIOD", "0"));
    let mut d = Ipamd::start(&n1, &settings);
    wait_shape(&sim, &d, Duration::from_secs(30), idle);
    let live = add_pods(&mut d, "w", pods);
    wait_shape(&sim, &d, Duration::from_secs(30), busy);
    for p in live {
        d.del_pod(p);
    }
    wait_shape(&sim, &d, Duration::from_secs(150), idle);
    // Each created ENI carries ipamd's tags.
    for n in enis_of(&ec2(&sim), &n1.instance_id).iter().skip(1) {
        assert_eq!(
            n.tag("node.k8s.amazonaws.com/instance_id"),
            Some(n1.instance_id.as_str())
        );
        assert!(n.tag("node.k8s.amazonaws.com/createdAt").is_some());
        assert!(n.description.starts_with("aws-K8S-"), "{}", n.description);
    }
}

#[test]
fn warm_eni_target_default_grows_by_whole_enis_and_frees_them_after_the_pods_go() {
    // m5.large: 9 secondary addresses per ENI; one ENI's worth kept free.
    warm_mode("e2ewe", &[], 10, &[(9, 0)], &[(9, 0), (9, 0), (9, 0)]);
}

#[test]
fn warm_ip_and_minimum_ip_targets_give_exact_counts() {
    // MINIMUM_IP_TARGET=4 with no pods; 5 pods + 2 warm = 7; back to 4.
    warm_mode(
        "e2ewi",
        &[("WARM_IP_TARGET", "2"), ("MINIMUM_IP_TARGET", "4")],
        5,
        &[(4, 0)],
        &[(7, 0)],
    );
}

#[test]
fn prefix_delegation_with_warm_prefix_target_keeps_one_free_prefix() {
    // 20 pods use 2 /28s (12 addresses left in them, below one prefix): a third is added.
    warm_mode(
        "e2ewp",
        &[
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("WARM_PREFIX_TARGET", "1"),
        ],
        20,
        &[(0, 1)],
        &[(0, 3)],
    );
}

#[test]
fn max_eni_caps_the_node_and_the_next_pod_is_refused() {
    let mut sim = VpcSim::start("e2emx");
    let n1 = sim.launch_node("m5.large");
    let mut d = Ipamd::start(&n1, &[("MAX_ENI", "1")]);
    let pods = add_pods(&mut d, "m", 9);
    wait_shape(&sim, &d, Duration::from_secs(10), &[(9, 0)]);
    let e = d
        .try_add_pod("m9")
        .expect_err("MAX_ENI=1 leaves room for 9 pods only");
    assert!(e.to_string().contains("no free address"), "{e}");
    wait_shape(&sim, &d, Duration::from_secs(5), &[(9, 0)]);
    for p in pods {
        d.del_pod(p);
    }
}

#[test]
fn a_corrupt_checkpoint_forgets_no_live_pod() {
    let mut sim = VpcSim::start("e2ecc");
    let n1 = sim.launch_node("m5.large");
    let mut d = Ipamd::start(&n1, &[("IP_COOLDOWN_PERIOD", "0")]);
    let mut live = add_pods(&mut d, "cc", 6);
    d.kill9();
    std::fs::write(
        d.checkpoint(),
        b"{\"version\":\"vpc-cni-ipam/1\",\"allocations\":[{",
    )
    .unwrap();
    d.restart();
    // The bad file is kept beside the new one, and the log says what happened.
    assert!(
        d.checkpoint().with_extension("json.corrupt-1").exists(),
        "the corrupt checkpoint is kept"
    );
    assert!(d.log().contains("rebuilt 6 assignments"), "{}", d.log());
    // A crash loop does not lose them either: the rebuilt assignments were written out.
    d.kill9();
    d.restart();
    let mut in_checkpoint: Vec<String> = d
        .checkpoint_allocations()
        .into_iter()
        .map(|(_, ip)| ip)
        .collect();
    in_checkpoint.sort();
    let mut want: Vec<String> = live.iter().map(|p| p.ip.to_string()).collect();
    want.sort();
    assert_eq!(in_checkpoint, want);
    // New pods never get a live pod's address; a DEL of a live pod frees its address.
    let taken: BTreeSet<Ipv4Addr> = live.iter().map(|p| p.ip).collect();
    let fresh = add_pods(&mut d, "new", 3);
    for p in &fresh {
        assert!(!taken.contains(&p.ip), "{} handed out twice", p.ip);
    }
    let gone = live.remove(0);
    let gone_ip = gone.ip.to_string();
    d.del_pod(gone);
    assert!(
        !d.checkpoint_allocations()
            .iter()
            .any(|(_, ip)| *ip == gone_ip),
        "the DEL released the rebuilt assignment"
    );
    for p in live.into_iter().chain(fresh) {
        d.del_pod(p);
    }
}

/// Waits until the node's ENIs in EC2 have this shape.
fn wait_shape(sim: &VpcSim, d: &Ipamd, budget: Duration, want: &[(usize, usize)]) {
    let client = ec2(sim);
    wait_shape_by(d, budget, want, || enis_of(&client, &d.node.instance_id))
}
