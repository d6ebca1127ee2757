//! The node's own wiring (`ipamd::node_plan` applied by `ipamd::node_apply::NodeKernel`) against the real
//! kernel, in a throwaway namespace standing in for a node: ENIs are veth links born with the ENI's MAC, like
//! the VPC-in-a-box plugs them (the primary addressed and routed as by the instance's DHCP, the secondaries
//! bare, as hot-plugged). Everything is read back with `ip`, `nft` and `/proc/sys` inside the namespace, not
//! with the adapter's own code. Needs root, `ip` and `nft`.

#![allow(clippy::unwrap_used)]

#[path = "support/netns.rs"]
mod netns;

use std::net::Ipv4Addr;
use std::time::Duration;

use netns::TestNs;
use serde_json::Value;
use vpc_cni::ipamd::node_apply::{NodeKernel, NodeWiringCause};
use vpc_cni::ipamd::node_plan::{
    eni_plan, node_plan, remove_eni_plan, route_table_id, EniWiring, NodeOp, NodeSettings, NodeSpec,
};
use vpc_cni::net::{Ipv4Cidr, MacAddr};
use vpc_cni::netlink::Netns;

fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}

fn cidr(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

fn eni(d: u32, ip: [u8; 4], subnet: &str) -> EniWiring {
    EniWiring {
        device_number: d,
        mac: mac(0x10 + d as u8),
        primary_ip: Ipv4Addr::from(ip),
        subnet: cidr(subnet),
        route_table: route_table_id(0, d),
    }
}

/// Primary eth0 10.0.0.10/24; eth1 in 10.0.1.0/24 (table 2); eth2 in the primary's own subnet (table 3), so
/// the main table holds the primary's 10.0.0.0/24 route and the plan must delete only eth2's.
fn spec() -> NodeSpec {
    NodeSpec {
        primary: eni(0, [10, 0, 0, 10], "10.0.0.0/24"),
        secondaries: vec![
            eni(1, [10, 0, 1, 5], "10.0.1.0/24"),
            eni(2, [10, 0, 0, 20], "10.0.0.0/24"),
        ],
        vpc_cidrs: vec![cidr("10.0.0.0/16")],
        settings: NodeSettings {
            exclude_snat_cidrs: vec![cidr("203.0.113.0/24")],
            external_service_cidrs: vec![cidr("198.51.100.0/24")],
            ..NodeSettings::default()
        },
    }
}

/// A node namespace with eth0..eth<n-1> (veth, peers v0.. up so the ENIs have carrier), the primary
/// configured, and leftovers the plan must clean up: a foreign address on eth1 and a stale external-service
/// rule.
fn node(enis: u8) -> TestNs {
    let t = TestNs::new("knode");
    for d in 0..enis {
        let (dev, peer, m) = (
            format!("eth{d}"),
            format!("v{d}"),
            mac(0x10 + d).to_string(),
        );
        t.ip(&[
            "link", "add", &dev, "address", &m, "type", "veth", "peer", "name", &peer,
        ]);
        t.ip(&["link", "set", &peer, "up"]);
    }
    t.ip(&["link", "set", "eth0", "up"]);
    t.ip(&["addr", "add", "10.0.0.10/24", "dev", "eth0"]);
    t.ip(&["route", "add", "default", "via", "10.0.0.1", "dev", "eth0"]);
    if enis > 1 {
        t.ip(&["addr", "add", "10.0.1.99/24", "dev", "eth1"]);
    }
    t.ip(&[
        "rule",
        "add",
        "prio",
        "1535",
        "to",
        "192.0.2.0/24",
        "lookup",
        "main",
    ]);
    t
}

fn kernel(t: &TestNs) -> NodeKernel {
    NodeKernel::open_in(Netns::open(t.path()).unwrap())
        .unwrap()
        .with_link_lookup(1, Duration::ZERO)
}

fn json(t: &TestNs, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    let out = t.ip(&a);
    if out.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn link(t: &TestNs, dev: &str) -> Value {
    json(t, &["link", "show", "dev", dev]).remove(0)
}

fn is_up(l: &Value) -> bool {
    l["flags"].as_array().unwrap().iter().any(|f| f == "UP")
}

fn addrs(t: &TestNs, dev: &str) -> Vec<String> {
    json(t, &["-4", "addr", "show", "dev", dev])
        .iter()
        .flat_map(|l| l["addr_info"].as_array().unwrap().clone())
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

/// Routes of a table as `ip route` would print their essentials: "dst [via gw] dev D [scope S] [src P]".
fn routes(t: &TestNs, table: &str) -> Vec<String> {
    json(t, &["-4", "route", "show", "table", table])
        .iter()
        .map(|r| {
            let mut s = r["dst"].as_str().unwrap().to_string();
            if let Some(g) = r["gateway"].as_str() {
                s.push_str(&format!(" via {g}"));
            }
            s.push_str(&format!(" dev {}", r["dev"].as_str().unwrap()));
            if let Some(sc) = r["scope"].as_str() {
                s.push_str(&format!(" scope {sc}"));
            }
            if let Some(p) = r["prefsrc"].as_str() {
                s.push_str(&format!(" src {p}"));
            }
            s
        })
        .collect()
}

/// Rules as "prio P <selector> lookup T", sorted (the kernel lists rules of one priority in the order they
/// were added, which is not part of the wiring); duplicates are kept.
fn rules(t: &TestNs) -> Vec<String> {
    let mut sorted: Vec<(u64, String)> = json(t, &["-4", "rule", "show"])
        .iter()
        .map(|r| {
            let mut s = format!("prio {}", r["priority"]);
            if let Some(src) = r["src"].as_str() {
                s.push_str(&format!(" from {src}"));
                if let Some(l) = r["srclen"].as_u64() {
                    s.push_str(&format!("/{l}"));
                }
            }
            if let Some(dst) = r["dst"].as_str() {
                s.push_str(&format!(" to {dst}"));
                if let Some(l) = r["dstlen"].as_u64() {
                    s.push_str(&format!("/{l}"));
                }
            }
            if let Some(m) = r["fwmark"].as_str() {
                s.push_str(&format!(" fwmark {m}"));
                if let Some(k) = r["fwmask"].as_str() {
                    s.push_str(&format!("/{k}"));
                }
            }
            s.push_str(&format!(" lookup {}", r["table"].as_str().unwrap()));
            (r["priority"].as_u64().unwrap(), s)
        })
        .collect::<Vec<_>>();
    sorted.sort();
    sorted.into_iter().map(|(_, s)| s).collect()
}

fn sysctl(t: &TestNs, key: &str) -> String {
    t.exec("cat", &[&format!("/proc/sys/{key}")])
        .trim()
        .to_string()
}

/// `nft -j list table ip aws-cni`, as (chain, rule JSON text) pairs; empty if there is no table.
fn nft_rules(t: &TestNs) -> Vec<(String, String)> {
    let (ok, out) = t.try_exec("nft", &["-j", "list", "table", "ip", "aws-cni"]);
    if !ok {
        assert!(out.contains("No such file or directory"), "nft: {out}");
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .map(|r| {
            (
                r["chain"].as_str().unwrap().to_string(),
                r["expr"].to_string(),
            )
        })
        .collect()
}

/// Everything the wiring touches, for before/after comparisons.
fn state(t: &TestNs) -> String {
    let mut s = String::new();
    for dev in ["eth0", "eth1", "eth2"] {
        let l = link(t, dev);
        s.push_str(&format!(
            "{dev} mtu {} up {} {:?}\n",
            l["mtu"],
            is_up(&l),
            addrs(t, dev)
        ));
    }
    for table in ["main", "2", "3"] {
        s.push_str(&format!("table {table}: {:?}\n", routes(t, table)));
    }
    s.push_str(&format!("rules: {:?}\n", rules(t)));
    s.push_str(&format!("nft: {:?}\n", nft_rules(t)));
    s
}

#[test]
fn the_node_plan_wires_the_node_idempotently_and_removal_unwires_one_eni() {
    let t = node(3);
    let s = spec();
    let plan = node_plan(&s).unwrap();
    let mut k = kernel(&t);
    k.apply(&plan).unwrap();

    // Links: every ENI at AWS_VPC_ENI_MTU; the secondaries up with their primary address only.
    for dev in ["eth0", "eth1", "eth2"] {
        let l = link(&t, dev);
        assert_eq!(l["mtu"], 9001, "{dev}: {l}");
        assert!(is_up(&l), "{dev} is down: {l}");
    }
    assert_eq!(addrs(&t, "eth0"), ["10.0.0.10/24"]);
    assert_eq!(
        addrs(&t, "eth1"),
        ["10.0.1.5/24"],
        "the stray address is gone"
    );
    assert_eq!(addrs(&t, "eth2"), ["10.0.0.20/24"]);

    // Per-ENI tables; main keeps the primary's routes and loses the secondaries' subnet routes.
    assert_eq!(
        routes(&t, "2"),
        [
            "default via 10.0.1.1 dev eth1",
            "10.0.1.1 dev eth1 scope link"
        ]
    );
    assert_eq!(
        routes(&t, "3"),
        [
            "default via 10.0.0.1 dev eth2",
            "10.0.0.1 dev eth2 scope link"
        ]
    );
    assert_eq!(
        routes(&t, "main"),
        [
            "default via 10.0.0.1 dev eth0",
            "10.0.0.0/24 dev eth0 scope link src 10.0.0.10"
        ]
    );

    // Rules: the mark rule, exactly the configured external-service CIDRs, one rule per ENI primary IP.
    assert_eq!(
        rules(&t),
        [
            "prio 0 from all lookup local",
            "prio 1024 from all fwmark 0x80/0x80 lookup main",
            "prio 1535 from all to 198.51.100.0/24 lookup main",
            "prio 32765 from 10.0.0.20 lookup 3",
            "prio 32765 from 10.0.1.5 lookup 2",
            "prio 32766 from all lookup main",
            "prio 32767 from all lookup default",
        ]
    );

    // sysctls.
    assert_eq!(sysctl(&t, "net/ipv4/conf/eth0/rp_filter"), "2");
    assert_eq!(sysctl(&t, "net/ipv4/ip_forward"), "1");
    assert_eq!(sysctl(&t, "net/ipv4/tcp_early_demux"), "1");

    // The nftables table: SNAT to the primary IP except for the VPC and excluded CIDRs, NodePort marking on
    // the primary interface found by its MAC.
    let nft = nft_rules(&t);
    let chains: std::collections::BTreeSet<&str> = nft.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        chains.into_iter().collect::<Vec<_>>(),
        [
            "mangle-prerouting",
            "nat-prerouting",
            "snat-mark",
            "snat-postrouting"
        ]
    );
    let in_chain =
        |chain: &str, needle: &str| nft.iter().any(|(c, r)| c == chain && r.contains(needle));
    assert!(
        in_chain("snat-postrouting", r#""addr":"10.0.0.10""#),
        "{nft:?}"
    );
    assert!(
        in_chain("snat-postrouting", r#""addr":"10.0.0.0","len":16"#),
        "{nft:?}"
    );
    assert!(
        in_chain("snat-postrouting", r#""addr":"203.0.113.0","len":24"#),
        "{nft:?}"
    );
    assert!(
        in_chain("mangle-prerouting", r#""right":"eth0""#),
        "{nft:?}"
    );

    // Applying again changes nothing and succeeds (EEXIST and friends count as done).
    let before = state(&t);
    k.apply(&plan).unwrap();
    let mut fresh = kernel(&t);
    fresh.apply(&plan).unwrap();
    assert_eq!(state(&t), before);

    // Freeing eth1's ENI removes its rule and table, and nothing of eth2's or the host's.
    let remove = remove_eni_plan(&s.secondaries[0]).unwrap();
    k.apply(&remove).unwrap();
    assert!(routes(&t, "2").is_empty(), "{:?}", routes(&t, "2"));
    assert_eq!(routes(&t, "3").len(), 2);
    let r = rules(&t);
    assert!(!r.iter().any(|x| x.contains("10.0.1.5")), "{r:?}");
    assert!(
        r.contains(&"prio 32765 from 10.0.0.20 lookup 3".to_string()),
        "{r:?}"
    );
    assert!(r.contains(&"prio 1024 from all fwmark 0x80/0x80 lookup main".to_string()));
    // Removing twice is fine too.
    k.apply(&remove).unwrap();

    // Wiring it again restores exactly the earlier state.
    k.apply(&eni_plan(&s.secondaries[0], &s.settings).unwrap())
        .unwrap();
    assert_eq!(state(&t), before);
}

#[test]
fn external_snat_without_node_ports_removes_the_mark_rule_and_the_table() {
    let t = node(1);
    let mut s = spec();
    s.secondaries.clear();
    let mut k = kernel(&t);
    k.apply(&node_plan(&s).unwrap()).unwrap();
    assert!(rules(&t).iter().any(|r| r.starts_with("prio 1024 ")));
    assert!(!nft_rules(&t).is_empty());

    s.settings.external_snat = true;
    s.settings.node_port_support = false;
    s.settings.external_service_cidrs.clear();
    s.settings.configure_rp_filter = false;
    s.settings.disable_tcp_early_demux = true;
    k.apply(&node_plan(&s).unwrap()).unwrap();
    let r = rules(&t);
    assert_eq!(
        r,
        [
            "prio 0 from all lookup local",
            "prio 32766 from all lookup main",
            "prio 32767 from all lookup default",
        ],
        "the mark rule and every external-service rule are gone"
    );
    assert!(nft_rules(&t).is_empty(), "{:?}", nft_rules(&t));
    assert_eq!(sysctl(&t, "net/ipv4/tcp_early_demux"), "0");
}

#[test]
fn a_missing_link_and_a_refused_mtu_are_reported_with_step_and_errno() {
    let t = node(2);
    let s = spec();
    // eth2's MAC is not on this node.
    let plan = eni_plan(&s.secondaries[1], &s.settings).unwrap();
    let err = kernel(&t).apply(&plan).unwrap_err();
    assert_eq!(err.index, 0);
    assert!(
        matches!(err.cause, NodeWiringCause::LinkNotFound { mac: m, attempts: 1 } if m == mac(0x12)),
        "{err:?}"
    );
    assert_eq!(err.errno(), None);
    assert_eq!(
        err.to_string(),
        "node wiring step 1 (set mtu 9001 on ENI device 2 (02:00:00:00:00:12)): \
         no link has MAC address 02:00:00:00:00:12 (looked 1 time)"
    );

    // A veth takes at most 65535.
    let mut big = s.settings.clone();
    big.eni_mtu = 70000;
    let plan = eni_plan(&s.secondaries[0], &big).unwrap();
    let err = kernel(&t).apply(&plan).unwrap_err();
    assert_eq!(err.index, 0);
    assert!(matches!(*err.op, NodeOp::SetMtu { mtu: 70000, .. }));
    assert_eq!(err.errno(), Some(22));
    assert!(
        err.to_string().contains("Invalid argument (EINVAL)"),
        "{err}"
    );
    assert_eq!(link(&t, "eth1")["mtu"], 1500, "nothing was changed");
}

#[test]
fn a_stale_primary_address_does_not_take_the_eni_address_with_it() {
    let t = node(2);
    let s = spec();
    // eth1 holds a stale primary address and, as its secondary, the wanted one: deleting the stale one
    // deletes the wanted one too (no promote_secondaries), so the step must notice and add it back.
    t.exec(
        "sysctl",
        &["-qw", "net.ipv4.conf.eth1.promote_secondaries=0"],
    );
    t.ip(&["addr", "add", "10.0.1.5/24", "dev", "eth1"]);
    assert_eq!(addrs(&t, "eth1"), ["10.0.1.99/24", "10.0.1.5/24"]);
    kernel(&t)
        .apply(&eni_plan(&s.secondaries[0], &s.settings).unwrap())
        .unwrap();
    assert_eq!(addrs(&t, "eth1"), ["10.0.1.5/24"]);
    assert_eq!(routes(&t, "2").len(), 2);
    assert!(
        !routes(&t, "main").iter().any(|r| r.contains("eth1")),
        "{:?}",
        routes(&t, "main")
    );
}
