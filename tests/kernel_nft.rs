//! Kernel tests of the nftables adapter and the sysctl writer, in namespaces each test creates:
//! a pod-ish source, a node carrying our table, and a peer that records the source address of
//! what it receives.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

#[path = "support/netns.rs"]
mod netns;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use netns::TestNs;
use vpc_cni::net::{IpNet, VethPrefix};
use vpc_cni::netlink::{Netlink, Netns, Route, VethSpec};
use vpc_cni::nft::{Nft, Outcome, Randomize, SnatConfig, CONNMARK};
use vpc_cni::sysctl::Sysctl;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

struct Topology {
    _names: [TestNs; 3],
    pod: Netns,
    node: Netns,
    peer: Netns,
    node_name: String,
}

/// pod (10.0.1.5/32, default via 169.254.1.1) ⇄ node (eni veth; "eth0" 192.0.2.1/24, VPC
/// 10.0.0.0/16) ⇄ peer (192.0.2.2/24, outside the VPC; routes 10.0.0.0/16 back via the node).
/// Wired like the CNI plugin does it: the veth is created from the pod side with its peer made
/// directly in the node namespace.
fn topology() -> Topology {
    let (tp, tn, tq) = (
        TestNs::new("nftpod"),
        TestNs::new("nftnode"),
        TestNs::new("nftpeer"),
    );
    let (pod, node, peer) = (
        Netns::open(tp.path()).unwrap(),
        Netns::open(tn.path()).unwrap(),
        Netns::open(tq.path()).unwrap(),
    );
    let mut np = Netlink::open_in(&pod).unwrap();
    let mut nn = Netlink::open_in(&node).unwrap();
    let mut nq = Netlink::open_in(&peer).unwrap();

    np.add_veth(&VethSpec {
        name: "eth0",
        peer_name: "eni0a1b2c3d4e5",
        mtu: Some(9001),
        mac: None,
        peer_mac: None,
        peer_netns: Some(&node),
        tx_queue_len: None,
    })
    .unwrap();
    let pod_if = np.link_by_name("eth0").unwrap().unwrap();
    let host_veth = nn.link_by_name("eni0a1b2c3d4e5").unwrap().unwrap();
    np.add_address(pod_if.index, net("10.0.1.5/32")).unwrap();
    np.set_link_up(pod_if.index).unwrap();
    np.add_route(&Route::link(net("169.254.1.1/32"), pod_if.index))
        .unwrap();
    np.add_route(&Route::via(
        IpNet::default_for(false),
        ip("169.254.1.1"),
        pod_if.index,
    ))
    .unwrap();
    np.add_permanent_neighbour(pod_if.index, ip("169.254.1.1"), host_veth.mac.unwrap())
        .unwrap();
    nn.set_link_up(host_veth.index).unwrap();
    nn.add_route(&Route::link(net("10.0.1.5/32"), host_veth.index))
        .unwrap();

    nn.add_veth(&VethSpec {
        name: "eth0",
        peer_name: "eth0",
        mtu: None,
        mac: None,
        peer_mac: None,
        peer_netns: Some(&peer),
        tx_queue_len: None,
    })
    .unwrap();
    let node_eth0 = nn.link_by_name("eth0").unwrap().unwrap().index;
    let peer_eth0 = nq.link_by_name("eth0").unwrap().unwrap().index;
    nn.add_address(node_eth0, net("192.0.2.1/24")).unwrap();
    nq.add_address(peer_eth0, net("192.0.2.2/24")).unwrap();
    nn.set_link_up(node_eth0).unwrap();
    nq.set_link_up(peer_eth0).unwrap();
    nq.add_route(&Route::via(net("10.0.0.0/16"), ip("192.0.2.1"), peer_eth0))
        .unwrap();
    node.run(|| Sysctl::new().set_ip_forward(true))
        .unwrap()
        .unwrap();
    let node_name = tn.name.clone();
    Topology {
        _names: [tp, tn, tq],
        pod,
        node,
        peer,
        node_name,
    }
}

fn config() -> SnatConfig {
    SnatConfig {
        primary_ip: "192.0.2.1".parse().unwrap(),
        primary_ifname: "eth0".into(),
        vpc_cidrs: vec![net("10.0.0.0/16")],
        exclude_cidrs: vec![net("203.0.113.0/24")],
        randomize: Randomize::Prng,
        node_port_support: true,
        external_snat: false,
        connmark: CONNMARK,
        veth_prefix: VethPrefix::default(),
    }
}

/// Sends a datagram from the pod to the peer, has the peer answer, and returns the source
/// address the peer saw and whether the answer reached the pod. Datagrams are resent a few times:
/// right after links come up the kernel may still drop the first one (the test is about where
/// traffic goes and how it is translated, not about that start-up loss).
fn exchange(t: &Topology, stage: &str) -> (SocketAddr, bool) {
    let rx = t
        .peer
        .run(|| UdpSocket::bind("192.0.2.2:0"))
        .unwrap()
        .unwrap();
    let tx = t
        .pod
        .run(|| UdpSocket::bind("10.0.1.5:0"))
        .unwrap()
        .unwrap();
    for s in [&rx, &tx] {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    let mut buf = [0u8; 16];
    let seen = (0..10)
        .find_map(|_| {
            tx.send_to(b"ping", rx.local_addr().unwrap()).unwrap();
            rx.recv_from(&mut buf).ok().map(|(_, from)| from)
        })
        .unwrap_or_else(|| panic!("{stage}: the peer got nothing"));
    let answered = (0..10).any(|_| {
        rx.send_to(b"pong", seen).unwrap();
        tx.recv_from(&mut buf).is_ok()
    });
    (seen, answered)
}

fn nft_list(ns: &str) -> String {
    netns::run(
        "ip",
        &[
            "netns", "exec", ns, "nft", "-a", "list", "table", "ip", "aws-cni",
        ],
    )
}

#[test]
fn snat_is_seen_at_the_peer_and_a_second_apply_changes_nothing() {
    let t = topology();
    let (seen, answered) = exchange(&t, "before the table");
    assert_eq!(
        seen.ip(),
        ip("10.0.1.5"),
        "no table yet: the pod address leaves unchanged"
    );
    assert!(answered);

    let mut nft = Nft::open_in(&t.node).unwrap();
    assert_eq!(nft.apply(&config()).unwrap(), Outcome::Replaced);
    let (seen, answered) = exchange(&t, "after apply");
    assert_eq!(seen.ip(), ip("192.0.2.1"), "SNAT to the primary address");
    assert!(answered, "the reply is translated back to the pod");

    let before = nft_list(&t.node_name);
    assert_eq!(nft.apply(&config()).unwrap(), Outcome::Unchanged);
    assert_eq!(
        nft_list(&t.node_name),
        before,
        "same rules, same handles: nothing was replaced"
    );
    assert!(
        before.contains("snat ip to 192.0.2.1 fully-random")
            || before.contains("snat to 192.0.2.1 fully-random"),
        "{before}"
    );

    // Traffic to an excluded CIDR is not translated.
    let mut c = config();
    c.exclude_cidrs.push(net("192.0.2.0/24"));
    assert_eq!(nft.apply(&c).unwrap(), Outcome::Replaced);
    let (seen, answered) = exchange(&t, "with 192.0.2.0/24 excluded");
    assert_eq!(seen.ip(), ip("10.0.1.5"));
    assert!(answered);

    // External SNAT: no translation; the NodePort chain stays.
    let mut c = config();
    c.external_snat = true;
    assert_eq!(nft.apply(&c).unwrap(), Outcome::Replaced);
    let listing = nft_list(&t.node_name);
    assert!(!listing.contains("snat"), "{listing}");
    assert!(listing.contains("chain mangle-prerouting"), "{listing}");
    assert_eq!(exchange(&t, "with external SNAT").0.ip(), ip("10.0.1.5"));

    // External SNAT without NodePort support: the table goes away.
    c.node_port_support = false;
    assert_eq!(nft.apply(&c).unwrap(), Outcome::Removed);
    assert_eq!(nft.apply(&c).unwrap(), Outcome::Unchanged);
    let tables = netns::run(
        "ip",
        &["netns", "exec", &t.node_name, "nft", "list", "tables"],
    );
    assert_eq!(tables.trim(), "");
    assert_eq!(nft.remove().unwrap(), Outcome::Unchanged);
}

#[test]
fn our_table_lists_exactly_like_the_same_table_loaded_by_nft() {
    let (ours, theirs) = (TestNs::new("nftcmp"), TestNs::new("nftcmp"));
    let cfg = SnatConfig {
        primary_ip: "10.0.0.10".parse().unwrap(),
        primary_ifname: "eth0".into(),
        vpc_cidrs: vec![net("10.0.0.0/16")],
        exclude_cidrs: ["172.16.0.0/12", "192.168.5.0/20", "100.64.0.1/32"]
            .iter()
            .map(|s| net(s))
            .collect(),
        randomize: Randomize::Prng,
        node_port_support: true,
        external_snat: false,
        connmark: CONNMARK,
        veth_prefix: VethPrefix::default(),
    };
    let mut nft = Nft::open_in(&Netns::open(ours.path()).unwrap()).unwrap();
    assert_eq!(nft.apply(&cfg).unwrap(), Outcome::Replaced);
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/nft/full.nft");
    theirs.exec("nft", &["-f", golden]);
    let list = |ns: &TestNs| ns.exec("nft", &["list", "table", "ip", "aws-cni"]);
    assert_eq!(list(&ours), list(&theirs));
    // A table someone else changed is put back.
    ours.exec(
        "nft",
        &["flush", "chain", "ip", "aws-cni", "snat-postrouting"],
    );
    assert_eq!(nft.apply(&cfg).unwrap(), Outcome::Replaced);
    assert_eq!(list(&ours), list(&theirs));
    assert_eq!(nft.apply(&cfg).unwrap(), Outcome::Unchanged);
}

#[test]
fn a_configured_connmark_of_several_bits_is_set_and_restored_bit_by_bit() {
    let t = TestNs::new("nftmark");
    let mut cfg = config();
    cfg.connmark = 0x4001;
    let mut nft = Nft::open_in(&Netns::open(t.path()).unwrap()).unwrap();
    assert_eq!(nft.apply(&cfg).unwrap(), Outcome::Replaced);
    assert_eq!(nft.apply(&cfg).unwrap(), Outcome::Unchanged);
    let list = t.exec("nft", &["list", "table", "ip", "aws-cni"]);
    assert!(!list.contains("0x00000080"), "{list}");
    assert!(list.contains("ct mark set ct mark | 0x00004001"), "{list}");
    for bit in ["0x00000001", "0x00004000"] {
        assert!(
            list.contains(&format!(
                "ct mark & {bit} == {bit} meta mark set meta mark | {bit}"
            )),
            "{bit}: {list}"
        );
    }
    // Back to the default: the table is replaced with the 0x80 rules.
    assert_eq!(nft.apply(&config()).unwrap(), Outcome::Replaced);
    let list = t.exec("nft", &["list", "table", "ip", "aws-cni"]);
    assert!(list.contains("ct mark set ct mark | 0x00000080"), "{list}");
}

#[test]
fn bad_config_is_refused_before_touching_the_kernel() {
    let t = TestNs::new("nftbad");
    let mut nft = Nft::open_in(&Netns::open(t.path()).unwrap()).unwrap();
    let mut c = config();
    c.vpc_cidrs.push(net("fd00::/8"));
    let e = nft.apply(&c).unwrap_err().to_string();
    assert_eq!(
        e,
        "apply nftables table ip aws-cni: VPC CIDR fd00::/8 is IPv6; the SNAT table is IPv4 only"
    );
    assert_eq!(t.exec("nft", &["list", "tables"]).trim(), "");
}

#[test]
fn sysctls_are_written_in_the_namespace_of_the_calling_thread() {
    let t = TestNs::new("sysctl");
    let n = Netns::open(t.path()).unwrap();
    let mut nl = Netlink::open_in(&n).unwrap();
    nl.add_veth(&VethSpec {
        name: "sx0",
        peer_name: "sx1",
        mtu: None,
        mac: None,
        peer_mac: None,
        peer_netns: None,
        tx_queue_len: None,
    })
    .unwrap();
    n.run(|| {
        let s = Sysctl::new();
        s.set_rp_filter("sx0", 2)?;
        s.set_accept_ra("sx0", 0)?;
        s.set_accept_redirects("sx0", true)?;
        s.set_ipv6_forwarding("sx0", false)?;
        s.set_disable_ipv6("sx1", true)?;
        s.set_tcp_early_demux(false)
    })
    .unwrap()
    .unwrap();
    let cat = |k: &str| {
        t.exec("cat", &[&format!("/proc/sys/{k}")])
            .trim()
            .to_string()
    };
    assert_eq!(cat("net/ipv4/conf/sx0/rp_filter"), "2");
    assert_eq!(cat("net/ipv6/conf/sx0/accept_ra"), "0");
    assert_eq!(cat("net/ipv6/conf/sx0/accept_redirects"), "1");
    assert_eq!(cat("net/ipv6/conf/sx1/disable_ipv6"), "1");
    assert_eq!(cat("net/ipv4/tcp_early_demux"), "0");
    // The interface exists only in the test namespace; the host's view has no such key.
    let e = Sysctl::new()
        .set_rp_filter("sx0", 2)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "set sysctl net/ipv4/conf/sx0/rp_filter=2: No such file or directory (ENOENT)"
    );
}

#[test]
fn a_refused_batch_leaves_the_previous_table_in_place() {
    use vpc_cni::nft::expr::{Expr, Verdict};
    use vpc_cni::nft::{Chain, Ruleset};
    let t = TestNs::new("nftatomic");
    let mut nft = Nft::open_in(&Netns::open(t.path()).unwrap()).unwrap();
    assert_eq!(nft.apply(&config()).unwrap(), Outcome::Replaced);
    let before = nft_list(&t.name);
    let broken = Ruleset {
        chains: vec![Chain {
            name: "broken",
            hook: None,
            rules: vec![vec![Expr::Verdict(Verdict::Jump("no-such-chain".into()))]],
        }],
    };
    let e = nft.apply_ruleset(Some(&broken)).unwrap_err().to_string();
    assert!(
        e.starts_with("apply nftables table ip aws-cni: add rule ip aws-cni broken (rule 1): No such file or directory (ENOENT)"),
        "{e}"
    );
    assert_eq!(
        nft_list(&t.name),
        before,
        "rolled back: the old table is untouched"
    );
    assert_eq!(nft.apply(&config()).unwrap(), Outcome::Unchanged);
}

/// Runs `nft <command>` (one argument; nft joins its arguments) in the namespace `ns`.
fn nft_cmd(ns: &str, command: &str) -> String {
    netns::run("ip", &["netns", "exec", ns, "nft", command])
}

/// The packet count of the rule carrying `comment "<name>"` in `table ip <table>`.
fn counter(ns: &str, table: &str, name: &str) -> u64 {
    let listing = nft_cmd(ns, &format!("list table ip {table}"));
    let tag = format!("comment \"{name}\"");
    let line = listing
        .lines()
        .find(|l| l.contains(&tag))
        .unwrap_or_else(|| panic!("no rule {tag} in {listing}"));
    let mut words = line.split_whitespace();
    words.find(|w| *w == "packets");
    words
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {line:?}"))
}

/// Sends datagrams from the pod to `to` (one flow, one source port) until the receiver has
/// `want` of them; returns how many arrived. Sends are retried because the first datagrams right
/// after links come up may be dropped.
fn send_flow(t: &Topology, to: &str, want: usize) -> usize {
    let rx = t
        .peer
        .run(|| UdpSocket::bind(format!("{to}:0")))
        .unwrap()
        .unwrap();
    let tx = t
        .pod
        .run(|| UdpSocket::bind("10.0.1.5:0"))
        .unwrap()
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 16];
    let mut got = 0;
    for _ in 0..(want * 5) {
        tx.send_to(b"mark", rx.local_addr().unwrap()).unwrap();
        if rx.recv_from(&mut buf).is_ok() {
            got += 1;
            if got == want {
                break;
            }
        }
    }
    got
}

/// The connmark restore in our `mangle-prerouting` and `nat-prerouting` chains changes only bit
/// 0x80 of the packet mark (iptables `CONNMARK --restore-mark --mask 0x80`): bits that another
/// agent set earlier in the hook survive, and bit 0x80 follows the connection mark both ways.
/// A test table in the node namespace plays the other agent: at priority -200 (before our mangle
/// chain) it sets 0x4 on pod traffic to the peer and 0x84 on pod traffic to an excluded CIDR; at
/// priority 0 (after our mangle and nat chains) it counts the marks the packets carry then.
#[test]
fn connmark_restore_keeps_other_mark_bits_and_bit_0x80_follows_the_ct_mark() {
    let t = topology();
    // A second peer address inside the excluded CIDR 203.0.113.0/24: its connections are not
    // given ct mark 0x80 by snat-mark.
    let mut nq = Netlink::open_in(&t.peer).unwrap();
    let peer_eth0 = nq.link_by_name("eth0").unwrap().unwrap().index;
    nq.add_address(peer_eth0, net("203.0.113.9/32")).unwrap();
    let mut nn = Netlink::open_in(&t.node).unwrap();
    let node_eth0 = nn.link_by_name("eth0").unwrap().unwrap().index;
    nn.add_route(&Route::via(
        net("203.0.113.9/32"),
        ip("192.0.2.2"),
        node_eth0,
    ))
    .unwrap();

    let mut nft = Nft::open_in(&t.node).unwrap();
    assert_eq!(nft.apply(&config()).unwrap(), Outcome::Replaced);
    let ns = t.node_name.as_str();
    for command in [
        "add table ip marktest",
        "add chain ip marktest premark { type filter hook prerouting priority -200; policy accept; }",
        "add rule ip marktest premark iifname \"eni*\" ip daddr 192.0.2.2 meta mark set meta mark | 0x4",
        "add rule ip marktest premark iifname \"eni*\" ip daddr 203.0.113.9 meta mark set meta mark | 0x84",
        "add chain ip marktest observe { type filter hook prerouting priority 0; policy accept; }",
        "add rule ip marktest observe iifname \"eni*\" ip daddr 192.0.2.2 counter comment \"to-peer\"",
        "add rule ip marktest observe iifname \"eni*\" ip daddr 192.0.2.2 meta mark 0x84 counter comment \"to-peer-0x84\"",
        "add rule ip marktest observe iifname \"eni*\" ip daddr 192.0.2.2 ct mark & 0x80 == 0x80 counter comment \"to-peer-ct-0x80\"",
        "add rule ip marktest observe iifname \"eni*\" ip daddr 203.0.113.9 counter comment \"excluded\"",
        "add rule ip marktest observe iifname \"eni*\" ip daddr 203.0.113.9 meta mark 0x4 counter comment \"excluded-0x4\"",
        "add rule ip marktest observe iifname \"eni*\" ip daddr 203.0.113.9 ct mark & 0x80 == 0 counter comment \"excluded-ct-0\"",
    ] {
        nft_cmd(ns, command);
    }

    // Several datagrams of one flow: the first is marked by nat-prerouting (first packet of the
    // connection), the later ones by mangle-prerouting (restore from the existing connection).
    assert_eq!(
        send_flow(&t, "192.0.2.2", 3),
        3,
        "the peer got the datagrams"
    );
    let seen = counter(ns, "marktest", "to-peer");
    assert!(seen >= 3, "{seen} packets to the peer counted");
    assert_eq!(
        counter(ns, "marktest", "to-peer-ct-0x80"),
        seen,
        "snat-mark gave the connection ct mark 0x80"
    );
    assert_eq!(
        counter(ns, "marktest", "to-peer-0x84"),
        seen,
        "ct mark 0x80 is restored into the packet mark and the other agent's 0x4 is kept:\n{}",
        nft_cmd(ns, "list table ip marktest")
    );

    assert_eq!(
        send_flow(&t, "203.0.113.9", 3),
        3,
        "the excluded address got the datagrams"
    );
    let seen = counter(ns, "marktest", "excluded");
    assert!(seen >= 3, "{seen} packets to the excluded CIDR counted");
    assert_eq!(
        counter(ns, "marktest", "excluded-ct-0"),
        seen,
        "excluded traffic gets no ct mark 0x80"
    );
    assert_eq!(
        counter(ns, "marktest", "excluded-0x4"),
        seen,
        "bit 0x80 is cleared to match the ct mark and the other agent's 0x4 is kept:\n{}",
        nft_cmd(ns, "list table ip marktest")
    );
}

/// Runs `iptables-nft <args>` in the namespace `ns` (what upstream v1.23 and kube-proxy's iptables
/// mode run on an iptables-nft node); panics if it fails.
fn iptables_nft(ns: &str, args: &[&str]) -> String {
    let mut a = vec!["netns", "exec", ns, "iptables-nft"];
    a.extend_from_slice(args);
    netns::run("ip", &a)
}

/// Upstream v1.23's iptables-nft rules (as its `buildIptablesSNATRules` writes them, translating to
/// 192.0.2.7 so the test can tell them from ours) and one rule of another agent in each table.
fn upstream_iptables(ns: &str) {
    for args in [
        &["-t", "nat", "-N", "AWS-SNAT-CHAIN-0"][..],
        &["-t", "nat", "-N", "KUBE-POSTROUTING"],
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            "kubernetes postrouting rules",
            "-j",
            "KUBE-POSTROUTING",
        ],
        &[
            "-t",
            "nat",
            "-A",
            "KUBE-POSTROUTING",
            "-m",
            "mark",
            "--mark",
            "0x4000/0x4000",
            "-j",
            "MASQUERADE",
        ],
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            "AWS SNAT CHAIN",
            "-j",
            "AWS-SNAT-CHAIN-0",
        ],
        &[
            "-t",
            "nat",
            "-A",
            "AWS-SNAT-CHAIN-0",
            "-d",
            "10.0.0.0/16",
            "-m",
            "comment",
            "--comment",
            "AWS SNAT CHAIN",
            "-j",
            "RETURN",
        ],
        &[
            "-t",
            "nat",
            "-A",
            "AWS-SNAT-CHAIN-0",
            "!",
            "-o",
            "vlan+",
            "-m",
            "comment",
            "--comment",
            "AWS, SNAT",
            "-m",
            "addrtype",
            "!",
            "--dst-type",
            "LOCAL",
            "-j",
            "SNAT",
            "--to-source",
            "192.0.2.7",
            "--random-fully",
        ],
        &[
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-m",
            "comment",
            "--comment",
            "AWS, primary ENI",
            "-i",
            "eth0",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "--limit-iface-in",
            "-j",
            "CONNMARK",
            "--set-mark",
            "0x80/0x80",
        ],
        &[
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-m",
            "comment",
            "--comment",
            "AWS, primary ENI",
            "-i",
            "eni+",
            "-j",
            "CONNMARK",
            "--restore-mark",
            "--mask",
            "0x80",
        ],
        &[
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-i",
            "eth0",
            "-m",
            "comment",
            "--comment",
            "another agent",
            "-j",
            "MARK",
            "--set-xmark",
            "0x1/0x1",
        ],
    ] {
        iptables_nft(ns, args);
    }
}

/// Upstream's iptables-nft SNAT left on the node wins over our table (first NAT chain wins), so
/// our rules have no effect until the handover removes upstream's rules and chains; kube-proxy's
/// and other agents' rules stay, and a second run finds nothing.
#[test]
fn handover_removes_upstreams_iptables_nft_rules_and_leaves_the_others() {
    let t = topology();
    upstream_iptables(&t.node_name);
    let mut nft = Nft::open_in(&t.node).unwrap();
    assert_eq!(nft.apply(&config()).unwrap(), Outcome::Replaced);
    assert_eq!(
        exchange(&t, "upstream's rules present").0.ip(),
        ip("192.0.2.7"),
        "upstream's SNAT (nat POSTROUTING, priority 100) runs before ours"
    );

    // An excluded CIDR in our table changes nothing while upstream's SNAT runs first.
    let mut excluded = config();
    excluded.exclude_cidrs.push(net("192.0.2.0/24"));
    assert_eq!(nft.apply(&excluded).unwrap(), Outcome::Replaced);
    assert_eq!(
        exchange(&t, "excluded, upstream's rules present").0.ip(),
        ip("192.0.2.7")
    );

    let removed = nft.remove_upstream_iptables().unwrap();
    assert_eq!(
        removed.chains,
        vec![("nat".to_string(), "AWS-SNAT-CHAIN-0".to_string())]
    );
    assert_eq!(removed.rules.len(), 5, "{removed:?}");
    assert_eq!(
        exchange(&t, "excluded, after the handover").0.ip(),
        ip("10.0.1.5"),
        "the exclusion takes effect"
    );
    assert_eq!(nft.apply(&config()).unwrap(), Outcome::Replaced);
    assert_eq!(exchange(&t, "after the handover").0.ip(), ip("192.0.2.1"));
    let nat = iptables_nft(&t.node_name, &["-t", "nat", "-S"]);
    assert!(!nat.contains("AWS"), "{nat}");
    assert!(nat.contains("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"), "{nat}");
    assert!(
        nat.contains("-A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE"),
        "{nat}"
    );
    let mangle = iptables_nft(&t.node_name, &["-t", "mangle", "-S"]);
    assert!(!mangle.contains("AWS"), "{mangle}");
    assert!(mangle.contains("another agent"), "{mangle}");
    assert!(nft.remove_upstream_iptables().unwrap().is_empty());
    assert_eq!(
        nft.apply(&config()).unwrap(),
        Outcome::Unchanged,
        "our table untouched"
    );
}

/// kube-proxy's SNAT (here an iptables-nft `nat POSTROUTING` rule translating pod traffic to
/// 192.0.2.8) wins over ours whichever table was created first: our SNAT chain's priority is
/// srcnat + 10, not srcnat, and the first NAT chain that translates a connection decides.
#[test]
fn kube_proxys_snat_runs_before_ours_whichever_was_created_first() {
    let kube = [
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        "10.0.1.5",
        "-m",
        "comment",
        "--comment",
        "kube-proxy-like",
        "-j",
        "SNAT",
        "--to-source",
        "192.0.2.8",
    ];
    for ours_first in [true, false] {
        let t = topology();
        let mut nft = Nft::open_in(&t.node).unwrap();
        if ours_first {
            nft.apply(&config()).unwrap();
            iptables_nft(&t.node_name, &kube);
        } else {
            iptables_nft(&t.node_name, &kube);
            nft.apply(&config()).unwrap();
        }
        assert_eq!(
            exchange(&t, "both SNATs").0.ip(),
            ip("192.0.2.8"),
            "ours created first: {ours_first}"
        );
        // Traffic kube-proxy leaves alone is ours to translate.
        iptables_nft(&t.node_name, &["-t", "nat", "-F", "POSTROUTING"]);
        assert_eq!(exchange(&t, "ours alone").0.ip(), ip("192.0.2.1"));
    }
}
