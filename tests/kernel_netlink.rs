#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
//! Kernel tests of the rtnetlink adapter and the namespace guard, run as root inside namespaces
//! each test creates and deletes. Results are checked with our own dumps, `ip -n` output and
//! real traffic (UDP over std sockets opened inside the namespaces).

#[path = "support/netns.rs"]
mod netns;

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use netns::TestNs;
use vpc_cni::net::{IpNet, MacAddr};
use vpc_cni::netlink::{Family, Netlink, Netns, Route, RouteScope, Rule, VethSpec, RT_TABLE_MAIN};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A veth `name` in `a`'s namespace with its peer `peer` created directly in `b`, both up with
/// the given addresses. Returns (handle in a, handle in b, index in a, index in b).
fn wire_pair(
    a: &Netns,
    b: &Netns,
    name: &str,
    peer: &str,
    a_addr: &str,
    b_addr: &str,
) -> (Netlink, Netlink, u32, u32) {
    let mut na = Netlink::open_in(a).unwrap();
    let mut nb = Netlink::open_in(b).unwrap();
    na.add_veth(&VethSpec {
        name,
        peer_name: peer,
        mtu: Some(1400),
        mac: None,
        peer_mac: None,
        peer_netns: Some(b),
        tx_queue_len: None,
    })
    .unwrap();
    let ia = na
        .link_by_name(name)
        .unwrap()
        .expect("local end exists")
        .index;
    let ib = nb
        .link_by_name(peer)
        .unwrap()
        .expect("peer exists in the other namespace")
        .index;
    na.add_address(ia, net(a_addr)).unwrap();
    nb.add_address(ib, net(b_addr)).unwrap();
    na.set_link_up(ia).unwrap();
    nb.set_link_up(ib).unwrap();
    netns::wait_oper_up(&mut na, ia);
    netns::wait_oper_up(&mut nb, ib);
    (na, nb, ia, ib)
}

fn udp_in(ns: &Netns, addr: &str) -> UdpSocket {
    let s = ns.run(|| UdpSocket::bind(addr)).unwrap().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

#[test]
fn veth_with_peer_in_other_namespace_passes_udp() {
    let (ta, tb) = (TestNs::new("veth"), TestNs::new("veth"));
    let (a, b) = (
        Netns::open(ta.path()).unwrap(),
        Netns::open(tb.path()).unwrap(),
    );
    let (mut na, mut nb, ia, ib) = wire_pair(&a, &b, "vh0", "vp0", "10.99.0.1/24", "10.99.0.2/24");

    // Both ends exist in their own namespace only, with the MTU on both ends.
    let la = na.link_by_index(ia).unwrap().unwrap();
    let lb = nb.link_by_index(ib).unwrap().unwrap();
    assert_eq!((la.mtu, lb.mtu), (1400, 1400));
    assert_eq!(la.kind.as_deref(), Some("veth"));
    assert!(la.is_up() && lb.is_up());
    assert!(na.link_by_name("vp0").unwrap().is_none());
    assert!(nb.link_by_name("vh0").unwrap().is_none());
    assert!(ta.ip(&["link", "show", "vh0"]).contains("mtu 1400"));
    // Lookup by MAC finds the same link.
    assert_eq!(na.link_by_mac(la.mac.unwrap()).unwrap().unwrap().index, ia);

    let rx = udp_in(&b, "10.99.0.2:0");
    let tx = udp_in(&a, "10.99.0.1:0");
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    // Resent a few times: the first packets right after link-up may be dropped by the kernel.
    let (n, from) = (0..10)
        .find_map(|_| {
            tx.send_to(b"hello pod", rx.local_addr().unwrap()).unwrap();
            rx.recv_from(&mut buf).ok()
        })
        .expect("the datagram crosses the veth");
    assert_eq!(&buf[..n], b"hello pod");
    assert_eq!(from.ip(), ip("10.99.0.1"));

    // Deleting one end removes both.
    assert!(na.delete_link(ia).unwrap());
    assert!(nb.link_by_name("vp0").unwrap().is_none());
    assert!(
        !na.delete_link(ia).unwrap(),
        "second delete reports absence"
    );
}

#[test]
fn link_attributes_change_and_errors_name_the_object() {
    let t = TestNs::new("link");
    let n = Netns::open(t.path()).unwrap();
    let mut nl = Netlink::open_in(&n).unwrap();
    let spec = VethSpec {
        name: "va",
        peer_name: "vb",
        mtu: None,
        mac: Some("02:00:00:00:00:0a".parse().unwrap()),
        peer_mac: Some("02:00:00:00:00:0b".parse().unwrap()),
        peer_netns: None,
        tx_queue_len: None,
    };
    nl.add_veth(&spec).unwrap();
    let a = nl.link_by_name("va").unwrap().unwrap();
    assert_eq!(a.mac, Some("02:00:00:00:00:0a".parse().unwrap()));
    let b = nl
        .link_by_mac("02:00:00:00:00:0b".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(b.name, "vb");
    assert_eq!(a.link, Some(b.index), "IFLA_LINK names the peer");

    let err = nl.add_veth(&spec).unwrap_err();
    assert!(err.is_exists());
    assert_eq!(err.to_string(), "add veth va peer vb: File exists (EEXIST)");

    nl.set_link_mtu(a.index, 9001).unwrap();
    let mac: MacAddr = "02:aa:bb:cc:dd:ee".parse().unwrap();
    nl.set_link_mac(a.index, mac).unwrap();
    nl.set_link_name(a.index, "renamed").unwrap();
    nl.set_link_up(a.index).unwrap();
    let a2 = nl.link_by_index(a.index).unwrap().unwrap();
    assert_eq!(
        (a2.name.as_str(), a2.mtu, a2.mac, a2.is_up()),
        ("renamed", 9001, Some(mac), true)
    );
    assert!(t
        .ip(&["link", "show", "renamed"])
        .contains("02:aa:bb:cc:dd:ee"));
    nl.set_link_down(a.index).unwrap();
    assert!(!nl.link_by_index(a.index).unwrap().unwrap().is_up());

    let err = nl.set_link_mtu(a.index, 10).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("set link renamed mtu 10: Invalid argument (EINVAL)"),
        "{err}"
    );
    let err = nl.link_by_name("bad name").unwrap_err();
    assert!(err.to_string().contains("not valid"), "{err}");
    assert!(nl.link_by_name("nosuch0").unwrap().is_none());
    let err = nl.link_index("nosuch0").unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "get link nosuch0: not found");
    assert_eq!(nl.link_index("vb").unwrap(), b.index);
    assert!(!nl.delete_link_by_name("nosuch0").unwrap());
    assert!(nl.delete_link_by_name("vb").unwrap());
    let names: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, vec!["lo".to_string()]);
}

#[test]
fn addresses_v4_and_v6_add_list_delete() {
    let t = TestNs::new("addr");
    let n = Netns::open(t.path()).unwrap();
    let mut nl = Netlink::open_in(&n).unwrap();
    let spec = VethSpec {
        name: "a0",
        peer_name: "a1",
        mtu: None,
        mac: None,
        peer_mac: None,
        peer_netns: None,
        tx_queue_len: None,
    };
    nl.add_veth(&spec).unwrap();
    let i = nl.link_by_name("a0").unwrap().unwrap().index;
    nl.add_address(i, net("10.7.0.5/32")).unwrap();
    nl.add_address(i, net("2001:db8::5/128")).unwrap();
    let err = nl.add_address(i, net("10.7.0.5/32")).unwrap_err();
    // The kernel's extended ACK text follows the errno.
    assert_eq!(
        err.to_string(),
        "add address 10.7.0.5/32 dev a0: File exists (EEXIST): ipv4: Address already assigned"
    );
    nl.replace_address(i, net("10.7.0.5/32")).unwrap();

    let v4 = nl.addresses(Some(Family::V4), Some(i)).unwrap();
    assert_eq!(
        v4.iter().map(|a| a.prefix).collect::<Vec<_>>(),
        vec![net("10.7.0.5/32")]
    );
    let v6: Vec<IpNet> = nl
        .addresses(Some(Family::V6), Some(i))
        .unwrap()
        .iter()
        .map(|a| a.prefix)
        .collect();
    assert!(v6.contains(&net("2001:db8::5/128")), "{v6:?}");
    assert!(t
        .ip(&["-6", "addr", "show", "dev", "a0"])
        .contains("2001:db8::5/128"));

    assert!(nl.delete_address(i, net("10.7.0.5/32")).unwrap());
    assert!(!nl.delete_address(i, net("10.7.0.5/32")).unwrap());
    assert!(nl.delete_address(i, net("2001:db8::5/128")).unwrap());
    assert!(nl.addresses(Some(Family::V4), Some(i)).unwrap().is_empty());
}

#[test]
fn rules_and_table_routes_steer_a_packet_out_of_the_right_link() {
    let (tn, t1, t2) = (
        TestNs::new("steer"),
        TestNs::new("steer"),
        TestNs::new("steer"),
    );
    let (n, p1, p2) = (
        Netns::open(tn.path()).unwrap(),
        Netns::open(t1.path()).unwrap(),
        Netns::open(t2.path()).unwrap(),
    );
    let (mut nn, _, i1, _) = wire_pair(&n, &p1, "n1", "p1", "10.1.1.1/24", "10.1.1.2/24");
    let (_, _, i2, _) = wire_pair(&n, &p2, "n2", "p2", "10.1.2.1/24", "10.1.2.2/24");
    // Both peers accept the same far address; which one gets the datagram shows the path taken.
    t1.ip(&["addr", "add", "198.51.100.7/32", "dev", "lo"]);
    t2.ip(&["addr", "add", "198.51.100.7/32", "dev", "lo"]);
    let lo = nn.link_by_name("lo").unwrap().unwrap().index;
    nn.add_address(lo, net("10.50.0.9/32")).unwrap();

    let main_default = Route::via(IpNet::default_for(false), ip("10.1.1.2"), i1);
    nn.add_route(&main_default).unwrap();
    // Table 1000 (> 255, so RTA_TABLE) holds an on-link gateway route out of n2.
    let t_gw = Route::link(net("10.1.2.2/32"), i2).with_table(1000);
    let t_default = Route::via(IpNet::default_for(false), ip("10.1.2.2"), i2)
        .with_table(1000)
        .with_onlink();
    nn.add_route(&t_gw).unwrap();
    nn.add_route(&t_default).unwrap();
    let err = nn.add_route(&t_gw).unwrap_err();
    assert_eq!(
        err.to_string(),
        "add route 10.1.2.2/32 dev n2 table 1000: File exists (EEXIST)"
    );
    nn.replace_route(&t_gw).unwrap();
    let table: Vec<Route> = nn.routes(Family::V4, 1000).unwrap();
    assert_eq!(table.len(), 2, "{table:?}");
    assert!(table
        .iter()
        .any(|r| r.dst == net("10.1.2.2/32") && r.scope == RouteScope::Link && r.oif == Some(i2)));
    assert!(table
        .iter()
        .any(|r| r.dst.is_default() && r.gateway == Some(ip("10.1.2.2")) && r.onlink));
    assert!(tn
        .ip(&["route", "show", "table", "1000"])
        .contains("default via 10.1.2.2 dev n2 onlink"));

    // Which peer receives a datagram from `src`; resent a few times, since the kernel may drop
    // the very first packets right after the links come up.
    // (Fresh ports each time: a socket just closed may live on for a moment in a child that
    // another test thread is forking to run `ip`.)
    let send = |src: &str| -> (bool, bool) {
        let rx1 = udp_in(&p1, "198.51.100.7:0");
        let port = rx1.local_addr().unwrap().port();
        let rx2 = udp_in(&p2, &format!("198.51.100.7:{port}"));
        rx1.set_read_timeout(Some(Duration::from_millis(150)))
            .unwrap();
        rx2.set_read_timeout(Some(Duration::from_millis(150)))
            .unwrap();
        let tx = udp_in(&n, &format!("{src}:0"));
        let mut b = [0u8; 8];
        for _ in 0..10 {
            tx.send_to(b"x", ("198.51.100.7", port)).unwrap();
            let got = (rx1.recv_from(&mut b).is_ok(), rx2.recv_from(&mut b).is_ok());
            if got != (false, false) {
                return got;
            }
        }
        (false, false)
    };
    assert_eq!(
        send("10.50.0.9"),
        (true, false),
        "without a rule the main table sends it out of n1"
    );

    let from_pod = Rule::from_prefix(net("10.50.0.9/32"), 1536, 1000);
    nn.add_rule(&from_pod).unwrap();
    nn.add_rule(&from_pod).unwrap(); // idempotent
    let rules = nn.rules(Family::V4).unwrap();
    assert_eq!(
        rules.iter().filter(|r| **r == from_pod).count(),
        1,
        "{rules:?}"
    );
    assert!(tn
        .ip(&["rule", "show"])
        .contains("1536:\tfrom 10.50.0.9 lookup 1000"));
    assert_eq!(
        send("10.50.0.9"),
        (false, true),
        "the from-rule sends it through table 1000, out of n2"
    );
    assert_eq!(
        send("10.1.1.1"),
        (true, false),
        "other sources still use main"
    );

    // A to-rule and a fwmark rule are added and deleted by match, too.
    let to_pod = Rule::to_prefix(net("10.50.0.9/32"), 512, RT_TABLE_MAIN);
    nn.add_rule(&to_pod).unwrap();
    let mut mark = Rule::new(Family::V4, RT_TABLE_MAIN);
    mark.priority = Some(1024);
    mark.fwmark = Some(0x80);
    mark.fwmask = Some(0x80);
    nn.add_rule(&mark).unwrap();
    nn.add_rule(&mark).unwrap();
    let rules = nn.rules(Family::V4).unwrap();
    assert!(
        rules.contains(&to_pod) && rules.contains(&mark),
        "{rules:?}"
    );
    assert!(tn
        .ip(&["rule", "show"])
        .contains("1024:\tfrom all fwmark 0x80/0x80 lookup main"));
    assert!(nn.delete_rule(&mark).unwrap());
    assert!(nn.delete_rule(&from_pod).unwrap());
    assert!(!nn.delete_rule(&from_pod).unwrap());
    assert_eq!(send("10.50.0.9"), (true, false), "rule gone: back to main");

    assert!(nn.delete_route(&t_default).unwrap());
    assert!(!nn.delete_route(&t_default).unwrap());
    assert_eq!(nn.routes(Family::V4, 1000).unwrap().len(), 1);
}

#[test]
fn permanent_neighbours_v4_and_v6() {
    let t = TestNs::new("neigh");
    let n = Netns::open(t.path()).unwrap();
    let mut nl = Netlink::open_in(&n).unwrap();
    let spec = VethSpec {
        name: "n0",
        peer_name: "n1",
        mtu: None,
        mac: None,
        peer_mac: None,
        peer_netns: None,
        tx_queue_len: None,
    };
    nl.add_veth(&spec).unwrap();
    let i = nl.link_by_name("n0").unwrap().unwrap().index;
    nl.set_link_up(i).unwrap();
    let mac: MacAddr = "02:11:22:33:44:55".parse().unwrap();
    nl.add_permanent_neighbour(i, ip("169.254.1.1"), mac)
        .unwrap();
    nl.add_permanent_neighbour(i, ip("169.254.1.1"), mac)
        .unwrap(); // replace: idempotent
    nl.add_permanent_neighbour(i, ip("fe80::1"), mac).unwrap();
    let all = nl.neighbours(None, Some(i)).unwrap();
    for want in [ip("169.254.1.1"), ip("fe80::1")] {
        let e = all
            .iter()
            .find(|e| e.ip == want)
            .unwrap_or_else(|| panic!("{want} in {all:?}"));
        assert_eq!((e.mac, e.state), (Some(mac), 0x80));
    }
    assert!(t
        .ip(&["neigh", "show", "dev", "n0"])
        .contains("169.254.1.1 lladdr 02:11:22:33:44:55 PERMANENT"));
    assert!(nl.delete_neighbour(i, ip("169.254.1.1")).unwrap());
    assert!(!nl.delete_neighbour(i, ip("169.254.1.1")).unwrap());
    assert_eq!(nl.neighbours(Some(Family::V4), Some(i)).unwrap().len(), 0);
}

#[test]
fn socket_opened_in_a_namespace_stays_bound_to_it_from_another_thread() {
    let t = TestNs::new("bound");
    let n = Netns::open(t.path()).unwrap();
    let host_id = Netns::current().unwrap().id().unwrap();
    let mut nl = Netlink::open_in(&n).unwrap();
    assert_eq!(
        Netns::current().unwrap().id().unwrap(),
        host_id,
        "open_in switched back"
    );
    let spec = VethSpec {
        name: "b0",
        peer_name: "b1",
        mtu: None,
        mac: None,
        peer_mac: None,
        peer_netns: None,
        tx_queue_len: None,
    };
    let names = std::thread::spawn(move || {
        nl.add_veth(&spec).unwrap();
        let mut names: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
        names.sort();
        names
    })
    .join()
    .unwrap();
    assert_eq!(names, vec!["b0", "b1", "lo"]);
    assert!(t.ip(&["link", "show", "b0"]).contains("b0@b1"));
}

#[test]
fn namespace_guard_restores_after_error_and_after_panic() {
    let t = TestNs::new("guard");
    let n = Netns::open(t.path()).unwrap();
    let home = Netns::current().unwrap().id().unwrap();
    assert_ne!(n.id().unwrap(), home);
    assert_eq!(
        Netns::open_named(&t.name).unwrap().id().unwrap(),
        n.id().unwrap()
    );

    // Early return with `?` from inside the namespace.
    let inner = || -> Result<(), String> {
        let _g = n.enter().map_err(|e| e.to_string())?;
        assert_eq!(Netns::current().unwrap().id().unwrap(), n.id().unwrap());
        Err("failed inside".to_string())?;
        Ok(())
    };
    assert!(inner().is_err());
    assert_eq!(Netns::current().unwrap().id().unwrap(), home);

    // A panic inside `run`.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        n.run(|| panic!("boom inside the namespace")).unwrap();
    }));
    assert!(r.is_err());
    assert_eq!(Netns::current().unwrap().id().unwrap(), home);

    // Bad paths are refused with a clear message.
    let e = Netns::open("/etc/hostname").unwrap_err().to_string();
    assert!(e.contains("not a namespace file"), "{e}");
    assert!(Netns::open_named("../etc").is_err());
    let e = Netns::open_named("vcni-does-not-exist")
        .unwrap_err()
        .to_string();
    assert!(e.contains("No such file or directory (ENOENT)"), "{e}");
}

/// Set by [`a_failed_switch_back_stops_the_process`] for the child it starts: the namespace to enter.
const SWITCH_BACK_CHILD: &str = "VCNI_TEST_SWITCH_BACK_NETNS";

/// The child half of [`a_failed_switch_back_stops_the_process`]; does nothing in a normal run.
/// It enters the namespace, drops CAP_SYS_ADMIN from its own thread so that switching back
/// fails, asks the guard to switch back, and reports if it is still running afterwards.
#[test]
fn switch_back_child() {
    let Ok(path) = std::env::var(SWITCH_BACK_CHILD) else {
        return;
    };
    let n = Netns::open(&path).unwrap();
    let guard = n.enter().unwrap();
    let mut caps = rustix::thread::capabilities(None).unwrap();
    caps.effective
        .remove(rustix::thread::CapabilitySet::SYS_ADMIN);
    rustix::thread::set_capabilities(None, caps).unwrap();
    #[allow(clippy::let_unit_value, clippy::ignored_unit_patterns)]
    let _ = guard.restore();
    let now = Netns::current().unwrap().id().unwrap();
    println!(
        "STILL RUNNING in the pod namespace: {}",
        now == n.id().unwrap()
    );
}

#[test]
fn a_failed_switch_back_stops_the_process() {
    use std::os::unix::process::ExitStatusExt;
    let t = TestNs::new("stuck");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "switch_back_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SWITCH_BACK_CHILD, t.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("STILL RUNNING"),
        "the thread ran on after a failed switch back: {stdout}"
    );
    assert_eq!(
        out.status.signal(),
        Some(6),
        "expected SIGABRT: {}\n{stdout}{stderr}",
        out.status
    );
}

#[test]
fn ipv6_pod_routes_rules_and_multipart_dumps() {
    let t = TestNs::new("v6");
    let n = Netns::open(t.path()).unwrap();
    let mut nl = Netlink::open_in(&n).unwrap();
    let spec = VethSpec {
        name: "v6a",
        peer_name: "v6b",
        mtu: None,
        mac: None,
        peer_mac: None,
        peer_netns: None,
        tx_queue_len: None,
    };
    nl.add_veth(&spec).unwrap();
    let i = nl.link_by_name("v6a").unwrap().unwrap().index;
    nl.set_link_up(i).unwrap();
    nl.add_address(i, net("2001:db8::5/128")).unwrap();
    // The IPv6 pod wiring: `fe80::1 dev eth0` and `default via fe80::1 dev eth0`, here in table 300.
    let gw = Route::link(net("fe80::1/128"), i).with_table(300);
    let default = Route::via(IpNet::default_for(true), ip("fe80::1"), i).with_table(300);
    nl.add_route(&gw).unwrap();
    nl.add_route(&default).unwrap();
    let routes = nl.routes(Family::V6, 300).unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r.dst == net("fe80::1/128") && r.oif == Some(i)),
        "{routes:?}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r.dst.is_default() && r.gateway == Some(ip("fe80::1"))),
        "{routes:?}"
    );
    assert!(t
        .ip(&["-6", "route", "show", "table", "300"])
        .contains("default via fe80::1 dev v6a"));
    // replace swaps the gateway of the same destination.
    let other = Route::via(IpNet::default_for(true), ip("fe80::2"), i).with_table(300);
    nl.replace_route(&other).unwrap();
    let defaults: Vec<_> = nl
        .routes(Family::V6, 300)
        .unwrap()
        .into_iter()
        .filter(|r| r.dst.is_default())
        .collect();
    assert_eq!(defaults.len(), 1);
    assert_eq!(defaults[0].gateway, Some(ip("fe80::2")));

    let rule = Rule::from_prefix(net("2001:db8::5/128"), 1536, 300);
    nl.add_rule(&rule).unwrap();
    nl.add_rule(&rule).unwrap();
    let rules = nl.rules(Family::V6).unwrap();
    assert_eq!(rules.iter().filter(|r| **r == rule).count(), 1, "{rules:?}");
    assert!(nl
        .rules(Family::V4)
        .unwrap()
        .iter()
        .all(|r| r.src != rule.src));
    assert!(nl.delete_rule(&rule).unwrap());

    // 600 routes do not fit in one datagram: the dump spans several, all are read.
    let v4 = nl.link_by_name("v6b").unwrap().unwrap().index;
    nl.set_link_up(v4).unwrap();
    for k in 0..600u32 {
        let dst = IpNet::host(IpAddr::V4((0x0a40_0000 + k).into()));
        nl.add_route(&Route::link(dst, v4).with_table(2000))
            .unwrap();
    }
    let many = nl.routes(Family::V4, 2000).unwrap();
    assert_eq!(many.len(), 600);
    let shown = t.ip(&["route", "show", "table", "2000"]);
    assert_eq!(shown.lines().count(), 600);
}
