//! End to end (g): prefix delegation in a fragmented subnet. The node sits in a /24 where every
//! aligned /28 holds an address of another ENI, so EC2 answers `InsufficientCidrBlocks` to every
//! prefix request; ipamd falls back to single /32s and pods still get addresses (upstream fails
//! them). Once the fragmenting addresses are gone, the pool goes back to prefixes after the
//! 120 s pause. Root only (namespaces); the sim and every pod are removed also on failure.

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

use ipamd_node::{add_pods, ec2, enis_of, wait_shape_by, Ipamd};
use serde_json::{json, Value};
use vpc_cni::aws::ec2::{
    Addresses, AssignIpv4, AssignPrivateIpAddresses, CreateNetworkInterface, Ec2, NetworkInterface,
    UnassignPrivateIpAddresses,
};
use vpcsim::{StartOptions, VpcSim};

/// The node's subnet: 16 aligned /28s, of which the first and last hold AWS's reserved addresses.
const SUBNET: &str = "10.0.64.0/24";

/// Whether EC2 holds `ip` as a secondary address (not inside a prefix) of one of the ENIs.
fn is_single_address(enis: &[NetworkInterface], ip: Ipv4Addr) -> bool {
    enis.iter()
        .any(|n| n.private_ips.iter().any(|p| !p.primary && p.address == ip))
}

fn in_prefix(enis: &[NetworkInterface], ip: Ipv4Addr) -> bool {
    enis.iter()
        .any(|n| n.ipv4_prefixes.iter().any(|c| c.contains(ip)))
}

/// The /28 block index of `ip` inside [`SUBNET`].
fn block_of(ip: Ipv4Addr) -> u8 {
    ip.octets()[3] / 16
}

#[test]
fn fragmented_subnet_with_prefix_delegation_pods_still_get_addresses() {
    // Lowest free first, so the node's own /32s stay in the low blocks and freeing the
    // fragmenting addresses really frees /28s (EC2 scatters; the planner does not care).
    let mut sim = VpcSim::start_with(
        "e2epd",
        StartOptions {
            lowest_first: true,
            ..StartOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    sim.request(
        "POST",
        "/subnets",
        Some(&json!({ "cidr": SUBNET, "name": "frag", "ipv6": false })),
    )
    .unwrap();
    let n1 = sim
        .try_launch_node("m5.large", Some("frag"))
        .unwrap_or_else(|e| panic!("{e}"));
    let client = ec2(&sim);

    // Another ENI in the subnet takes one address in every /28 nobody uses yet.
    let frag = client
        .create_network_interface(&CreateNetworkInterface {
            subnet_id: n1.subnet_id.clone(),
            security_group_ids: vec![],
            description: "fragmenter".into(),
            tags: vec![],
            addresses: Addresses::None,
        })
        .unwrap();
    let primary: Ipv4Addr = n1.primary_ip.parse().unwrap();
    let mut taken: BTreeSet<u8> = [0, 15, block_of(primary)].into_iter().collect();
    if let Some(a) = frag.private_ip_address {
        taken.insert(block_of(a));
    }
    let scattered: Vec<Ipv4Addr> = (0u8..16)
        .filter(|b| !taken.contains(b))
        .map(|b| Ipv4Addr::new(10, 0, 64, b * 16 + 8))
        .collect();
    client
        .assign_private_ip_addresses(&AssignPrivateIpAddresses {
            network_interface_id: frag.id.clone(),
            request: AssignIpv4::Addresses(scattered.clone()),
        })
        .unwrap();

    let mut d = Ipamd::start(
        &n1,
        &[
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("WARM_PREFIX_TARGET", "1"),
        ],
    );
    let started = Instant::now();
    // No /28 to be had: 16 single addresses stand for WARM_PREFIX_TARGET=1 (9 + 7 on a new ENI).
    wait_shape(&sim, &d, Duration::from_secs(30), &[(9, 0), (7, 0)]);
    let refused = sim
        .calls(Some("AssignPrivateIpAddresses"))
        .unwrap()
        .iter()
        .filter(|c| c.error.as_deref() == Some("InsufficientCidrBlocks"))
        .count();
    assert!(refused >= 1, "EC2 refused a prefix first:\n{}", d.log());

    let mut pods = add_pods(&mut d, "g", 10);
    let ips: BTreeSet<Ipv4Addr> = pods.iter().map(|p| p.ip).collect();
    assert_eq!(ips.len(), 10, "every pod has its own address");
    wait_shape(&sim, &d, Duration::from_secs(30), &[(9, 0), (9, 0), (8, 0)]);
    let enis = enis_of(&client, &n1.instance_id);
    for p in &pods {
        assert!(
            is_single_address(&enis, p.ip),
            "{} ({}) holds a secondary /32 of its node in EC2",
            p.name,
            p.ip
        );
    }

    // Pods on all three ENIs reach each other and the internet.
    for (i, p) in pods.iter().enumerate() {
        let q = &pods[(i + 3) % pods.len()];
        assert!(
            p.ping(&q.ip.to_string()),
            "{} ({}) → {} ({})",
            p.name,
            p.ip,
            q.name,
            q.ip
        );
    }
    let inet = sim.internet_ip().unwrap();
    let _ = sim.request("DELETE", "/internet/peers", None);
    for p in [&pods[0], &pods[9]] {
        let echo = p
            .tcp_echo(&inet, 7)
            .unwrap_or_else(|e| panic!("{} to the internet: {e}\n{}", p.name, d.log()));
        assert_eq!(echo, format!("hello-{}", p.name));
    }
    let sources: Vec<String> = sim
        .internet_peers()
        .unwrap()
        .iter()
        .filter_map(|p| {
            p.get("private_src")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert!(
        !sources.is_empty() && sources.iter().all(|s| *s == n1.primary_ip),
        "the internet saw {sources:?}, expected only {}",
        n1.primary_ip
    );

    // The fragmenting addresses go: after the pause (120 s from the refusal at start) a prefix
    // is had, the fallback ends and its free /32s go back; the pods keep theirs.
    client
        .unassign_private_ip_addresses(&UnassignPrivateIpAddresses {
            network_interface_id: frag.id.clone(),
            addresses: scattered,
            prefixes: vec![],
        })
        .unwrap();
    let budget = Duration::from_secs(160)
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(30));
    wait_shape(&sim, &d, budget, &[(9, 0), (1, 0), (0, 1)]);
    let enis = enis_of(&client, &n1.instance_id);
    for p in &pods {
        assert!(is_single_address(&enis, p.ip), "{} kept its /32", p.name);
    }
    // The next pod gets an address of the prefix and reaches the others.
    let late = add_pods(&mut d, "late", 1).pop().unwrap();
    let enis = enis_of(&client, &n1.instance_id);
    assert!(in_prefix(&enis, late.ip), "{} is in a /28", late.ip);
    assert!(
        late.ping(&pods[0].ip.to_string()),
        "{} → {}",
        late.ip,
        pods[0].ip
    );
    pods.push(late);

    for p in pods.drain(..) {
        d.del_pod(p);
    }
    assert!(d.checkpoint_allocations().is_empty());
    let _ = client.delete_network_interface(&frag.id);
}

/// Waits until the node's ENIs in EC2 have this shape.
fn wait_shape(sim: &VpcSim, d: &Ipamd, budget: Duration, want: &[(usize, usize)]) {
    let client = ec2(sim);
    wait_shape_by(d, budget, want, || enis_of(&client, &d.node.instance_id))
}
