//! The plugin's kernel adapter (`cni::kernel::KernelNet`) against the real kernel: the ADD plan applied in a
//! throwaway "node" namespace (entered by the test thread) and a pod namespace, CHECK's verification of every
//! piece, and the precise message for each kind of breakage. Needs root and `ip`.

#![allow(clippy::unwrap_used)]

#[path = "support/netns.rs"]
mod netns;

use std::net::Ipv4Addr;

use netns::TestNs;
use vpc_cni::cni::apply::{apply_all, teardown_all, verify_all, PodNet};
use vpc_cni::cni::kernel::KernelNet;
use vpc_cni::cni::plan::{add_plan, host_veth_name, teardown_plan, Op, PodWiring, Teardown};
use vpc_cni::netlink::Netns;

struct Wired {
    node: TestNs,
    pod: TestNs,
    wiring: PodWiring,
}

fn wired(tag: &str, route_table: u32) -> Wired {
    let node = TestNs::new("kcni");
    let pod = TestNs::new("kcnipod");
    let wiring = PodWiring {
        netns: pod.path().display().to_string(),
        pod_ifname: "eth0".into(),
        host_ifname: host_veth_name("eni", "kernel-test", tag),
        ipv4: Ipv4Addr::new(10, 9, 0, 5),
        mtu: 1400,
        route_table,
    };
    Wired { node, pod, wiring }
}

/// Runs `f` with a KernelNet whose host side is `node` (the test thread enters it for the duration).
fn in_node<T>(node: &TestNs, f: impl FnOnce(&mut KernelNet) -> T) -> T {
    let ns = Netns::open(node.path()).unwrap();
    let guard = ns.enter().unwrap();
    let mut net = KernelNet::open().unwrap();
    let out = f(&mut net);
    drop(net);
    guard.restore();
    out
}

fn problems(w: &Wired) -> Vec<String> {
    in_node(&w.node, |net| {
        verify_all(net, &add_plan(&w.wiring))
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    })
}

#[test]
fn the_add_plan_wires_a_pod_that_check_accepts_and_teardown_removes() {
    let w = wired("wire", 3);
    in_node(&w.node, |net| {
        apply_all(net, &add_plan(&w.wiring)).unwrap();
        assert!(net.netns_exists(&w.wiring.netns));
        let mac = net.host_mac(&w.wiring.host_ifname).unwrap();
        assert_eq!(mac.len(), 17);
    });
    assert_eq!(problems(&w), Vec::<String>::new());
    // The kernel agrees with what CHECK saw.
    let rules = w.node.ip(&["rule", "show"]);
    assert!(
        rules.contains("512:\tfrom all to 10.9.0.5 lookup main"),
        "{rules}"
    );
    assert!(rules.contains("1536:\tfrom 10.9.0.5 lookup 3"), "{rules}");
    let host_route = w.node.ip(&["route", "show", "10.9.0.5"]);
    assert!(
        host_route.contains(&format!("dev {} scope link", w.wiring.host_ifname)),
        "{host_route}"
    );
    let pod_link = w.pod.ip(&["link", "show", "eth0"]);
    assert!(
        pod_link.contains("mtu 1400") && pod_link.contains("state UP"),
        "{pod_link}"
    );
    // Applying the plan again (a retried ADD) converges to the same wiring.
    in_node(&w.node, |net| apply_all(net, &add_plan(&w.wiring)).unwrap());
    assert_eq!(problems(&w), Vec::<String>::new());

    let undo = teardown_plan(&Teardown {
        netns: Some(w.wiring.netns.clone()),
        pod_ifname: "eth0".into(),
        host_ifname: Some(w.wiring.host_ifname.clone()),
        ipv4: Some(w.wiring.ipv4),
        veth_taken: None,
    });
    let failures = in_node(&w.node, |net| teardown_all(net, &undo));
    assert!(failures.is_empty(), "{failures:?}");
    // Twice: everything tolerates "already gone".
    let failures = in_node(&w.node, |net| teardown_all(net, &undo));
    assert!(failures.is_empty(), "{failures:?}");
    let rules = w.node.ip(&["rule", "show"]);
    assert!(!rules.contains("10.9.0.5"), "{rules}");
    assert_eq!(
        w.node.ip(&["-o", "link", "show"]).lines().count(),
        1,
        "only lo left"
    );
    assert_eq!(
        w.pod.ip(&["-o", "link", "show"]).lines().count(),
        1,
        "only lo left"
    );
}

#[test]
fn one_adapter_applying_the_plan_twice_wires_the_recreated_veth() {
    // The second application deletes the stale host veth and creates a new pair (new interface indexes): the
    // links the adapter remembered from the first one must not be used for the second.
    let w = wired("twice", 3);
    let first = in_node(&w.node, |net| {
        apply_all(net, &add_plan(&w.wiring)).unwrap();
        let first = net.host_mac(&w.wiring.host_ifname).unwrap();
        apply_all(net, &add_plan(&w.wiring)).unwrap();
        let second = net.host_mac(&w.wiring.host_ifname).unwrap();
        assert_ne!(first, second, "the pair was recreated (a new random MAC)");
        first
    });
    assert_eq!(problems(&w), Vec::<String>::new());
    let host = w.node.ip(&["link", "show", &w.wiring.host_ifname]);
    assert!(!host.contains(&first), "{host}");
    let neigh = w.pod.ip(&["neigh", "show", "169.254.1.1"]);
    assert!(
        !neigh.contains(&first),
        "the pod's gateway entry has the new MAC: {neigh}"
    );
}

#[test]
fn check_names_each_kind_of_breakage() {
    let w = wired("break", 2);
    in_node(&w.node, |net| apply_all(net, &add_plan(&w.wiring)).unwrap());
    let host = w.wiring.host_ifname.clone();

    // Independent breakages: each is named, nothing else is.
    w.pod.ip(&["link", "set", "eth0", "mtu", "1300"]);
    w.pod.ip(&[
        "neigh",
        "replace",
        "169.254.1.1",
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    w.node
        .ip(&["rule", "del", "prio", "1536", "from", "10.9.0.5"]);
    w.node.ip(&[
        "rule", "add", "prio", "1536", "from", "10.9.0.5", "lookup", "7",
    ]);
    let p = problems(&w);
    let has = |p: &[String], step: &str, cause: &str| {
        p.iter().any(|e| e.contains(step) && e.contains(cause))
    };
    assert!(
        has(&p, "create veth", "has mtu 1300, expected 1400"),
        "{p:#?}"
    );
    assert!(
        has(&p, "permanent neighbour 169.254.1.1", "is not the MAC of"),
        "{p:#?}"
    );
    assert!(
        has(
            &p,
            "rule prio 1536 from 10.9.0.5/32 lookup 2",
            "looks up table 7, expected 2"
        ),
        "{p:#?}"
    );
    assert_eq!(p.len(), 3, "{p:#?}");

    // The host veth goes down: the kernel also drops the host route through it; both are named.
    w.node.ip(&["link", "set", &host, "down"]);
    let p = problems(&w);
    assert!(
        has(&p, &format!("set host link {host} up"), "is down"),
        "{p:#?}"
    );
    assert!(has(&p, "host route 10.9.0.5/32", "missing"), "{p:#?}");

    // The pod loses its address: the kernel flushes the pod's routes and neighbours with its last address.
    w.pod.ip(&["addr", "del", "10.9.0.5/32", "dev", "eth0"]);
    let p = problems(&w);
    assert!(
        has(&p, "address 10.9.0.5/32 on eth0", "missing; eth0 has []"),
        "{p:#?}"
    );
    assert!(
        has(&p, "route default via 169.254.1.1", "missing"),
        "{p:#?}"
    );
    // The to-pod rule is intact throughout and never reported.
    assert!(!p.iter().any(|e| e.contains("rule prio 512")), "{p:#?}");
}

#[test]
fn a_missing_pod_namespace_is_reported_not_panicked() {
    let w = wired("gone", 0);
    let path = w.wiring.netns.clone();
    drop(w.pod);
    in_node(&w.node, |net| {
        assert!(!net.netns_exists(&path));
        let e = apply_all(net, &add_plan(&w.wiring)).unwrap_err();
        assert!(e.error.to_string().contains("create veth"), "{}", e.error);
        assert_eq!(e.error.errno(), Some(2), "ENOENT kept: {}", e.error);
    });
}

#[test]
fn a_kernel_refusal_keeps_its_errno() {
    let w = wired("exists", 0);
    let create = Op::CreateVeth {
        netns: w.wiring.netns.clone(),
        pod_ifname: w.wiring.pod_ifname.clone(),
        host_ifname: w.wiring.host_ifname.clone(),
        mtu: w.wiring.mtu,
    };
    in_node(&w.node, |net| {
        net.apply(&create).unwrap();
        let e = net.apply(&create).unwrap_err();
        assert_eq!(e.errno(), Some(17), "EEXIST kept: {e}");
        assert!(e.to_string().contains("EEXIST"), "{e}");
        // A state problem has no errno.
        let e = net
            .apply(&Op::HostLinkUp {
                host_ifname: "enimissing".into(),
            })
            .unwrap_err();
        assert_eq!(e.errno(), None, "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");
    });
}
