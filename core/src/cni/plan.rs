//! The pure pod-wiring plan: (configuration, allocation) → ordered kernel operations.
//!
//! ADD runs [`add_plan`] in order; a failure part-way runs [`teardown_plan`] (every step of which tolerates
//! "already gone") over what was created, so a pod is never left half wired. CHECK verifies the steps of
//! [`add_plan`] that leave state behind ([`Op::leaves_state`]). DEL runs [`teardown_plan`]. No I/O here, and
//! only `core`/`alloc` paths (the crate is `no_std`).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use core::fmt;
use core::net::Ipv4Addr;

use super::sha1;

/// The pod's next hop: a link-local address answered by a static neighbour entry (never ARPed).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Priority of the to-pod rule (`to IP lookup main`).
pub const TO_POD_RULE_PRIORITY: u32 = 512;
/// Priority of the from-pod rule (`from IP lookup <ENI table>`).
pub const FROM_POD_RULE_PRIORITY: u32 = 1536;
/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// Host veth name: `prefix` + the first 11 hex digits of `sha1("<namespace>.<pod name>")`, as upstream.
pub fn host_veth_name(prefix: &str, pod_namespace: &str, pod_name: &str) -> String {
    let digest = sha1::digest(format!("{pod_namespace}.{pod_name}").as_bytes());
    let mut name = String::with_capacity(prefix.len() + 11);
    name.push_str(prefix);
    for b in &digest {
        name.push_str(&format!("{b:02x}"));
    }
    name.truncate(prefix.len() + 11);
    name
}

/// Everything the wiring of one pod depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodWiring {
    /// Pod netns path (`CNI_NETNS`).
    pub netns: String,
    /// Pod interface name (`CNI_IFNAME`).
    pub pod_ifname: String,
    /// Host veth name ([`host_veth_name`]).
    pub host_ifname: String,
    /// The pod's address.
    pub ipv4: Ipv4Addr,
    /// Pod MTU (both veth ends).
    pub mtu: u32,
    /// Route table of the pod's ENI; 0 = primary ENI (no from-pod rule).
    pub route_table: u32,
}

/// Which side of a rule's selector matches the pod address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSelector {
    /// `to IP/32`.
    To(Ipv4Addr),
    /// `from IP/32`.
    From(Ipv4Addr),
}

/// One kernel operation. Names refer to links; the executor resolves indexes and MACs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `ip link del <name>` in the host netns, if it exists (a leftover of an earlier pod with the same name).
    DeleteHostLink {
        /// Host link name.
        name: String,
    },
    /// `ip -n <netns> link del <ifname>`, if the netns and the link exist.
    DeletePodLink {
        /// Pod netns path.
        netns: String,
        /// Pod interface name.
        ifname: String,
    },
    /// Create the veth inside the pod netns with its peer created directly in the host netns.
    CreateVeth {
        /// Pod netns path.
        netns: String,
        /// Pod-side name.
        pod_ifname: String,
        /// Host-side name.
        host_ifname: String,
        /// MTU of both ends.
        mtu: u32,
    },
    /// Host veth IPv6 sysctls before it goes up: `accept_ra=0`, `accept_redirects=1`, `forwarding=0` (if IPv6 exists).
    SetHostVethSysctls {
        /// Host link name.
        host_ifname: String,
    },
    /// `ip link set <host_ifname> up`.
    HostLinkUp {
        /// Host link name.
        host_ifname: String,
    },
    /// `ip -n <netns> link set <ifname> up`.
    PodLinkUp {
        /// Pod netns path.
        netns: String,
        /// Pod interface name.
        ifname: String,
    },
    /// `ip -n <netns> addr add <addr>/32 dev <ifname>`.
    PodAddress {
        /// Pod netns path.
        netns: String,
        /// Pod interface name.
        ifname: String,
        /// The address.
        addr: Ipv4Addr,
    },
    /// `ip -n <netns> route add 169.254.1.1/32 dev <ifname> scope link`.
    PodGatewayRoute {
        /// Pod netns path.
        netns: String,
        /// Pod interface name.
        ifname: String,
    },
    /// `ip -n <netns> route add default via 169.254.1.1 dev <ifname>`.
    PodDefaultRoute {
        /// Pod netns path.
        netns: String,
        /// Pod interface name.
        ifname: String,
    },
    /// `ip -n <netns> neigh add 169.254.1.1 lladdr <host veth MAC> dev <ifname> nud permanent`.
    PodGatewayNeighbour {
        /// Pod netns path.
        netns: String,
        /// Pod interface name.
        ifname: String,
        /// Host link whose MAC answers for the gateway.
        host_ifname: String,
    },
    /// `ip route add <addr>/32 dev <host_ifname> scope link` (main table).
    HostRoute {
        /// The pod address.
        addr: Ipv4Addr,
        /// Host link name.
        host_ifname: String,
    },
    /// `ip rule add prio <priority> {to|from} <addr>/32 lookup <table>`.
    AddRule {
        /// Priority.
        priority: u32,
        /// Selector.
        selector: RuleSelector,
        /// Table.
        table: u32,
    },
    /// `ip route del <addr>/32 dev <index> table main`, if present: the route to a pod whose veth
    /// ipamd deletes after the DEL (by index: the name may already belong to a newer sandbox).
    DeleteHostRoute {
        /// The pod address.
        addr: Ipv4Addr,
        /// Interface index of the host veth.
        link_index: u32,
    },
    /// Delete every rule with this priority and selector (any table).
    DeleteRules {
        /// Priority.
        priority: u32,
        /// Selector.
        selector: RuleSelector,
    },
}

impl Op {
    /// Whether the step leaves state that CHECK can verify.
    pub fn leaves_state(&self) -> bool {
        !matches!(
            self,
            Op::DeleteHostLink { .. }
                | Op::DeletePodLink { .. }
                | Op::DeleteHostRoute { .. }
                | Op::DeleteRules { .. }
                | Op::SetHostVethSysctls { .. }
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::DeleteHostLink { name } => write!(f, "delete host link {name}"),
            Op::DeletePodLink { netns, ifname } => write!(f, "delete link {ifname} in {netns}"),
            Op::DeleteHostRoute { addr, link_index } => {
                write!(f, "delete host route {addr}/32 dev {link_index}")
            }
            Op::CreateVeth {
                netns,
                pod_ifname,
                host_ifname,
                mtu,
            } => write!(
                f,
                "create veth {pod_ifname} (in {netns}) / {host_ifname} (host), mtu {mtu}"
            ),
            Op::SetHostVethSysctls { host_ifname } => {
                write!(f, "set IPv6 sysctls of {host_ifname}")
            }
            Op::HostLinkUp { host_ifname } => write!(f, "set host link {host_ifname} up"),
            Op::PodLinkUp { netns, ifname } => write!(f, "set {ifname} up in {netns}"),
            Op::PodAddress {
                netns,
                ifname,
                addr,
            } => write!(f, "address {addr}/32 on {ifname} in {netns}"),
            Op::PodGatewayRoute { netns, ifname } => {
                write!(f, "route {GATEWAY}/32 dev {ifname} scope link in {netns}")
            }
            Op::PodDefaultRoute { netns, ifname } => {
                write!(f, "route default via {GATEWAY} dev {ifname} in {netns}")
            }
            Op::PodGatewayNeighbour {
                netns,
                ifname,
                host_ifname,
            } => write!(
                f,
                "permanent neighbour {GATEWAY} -> MAC of {host_ifname} on {ifname} in {netns}"
            ),
            Op::HostRoute { addr, host_ifname } => {
                write!(f, "host route {addr}/32 dev {host_ifname} scope link")
            }
            Op::AddRule {
                priority,
                selector,
                table,
            } => write!(f, "rule prio {priority} {selector} lookup {table}"),
            Op::DeleteRules { priority, selector } => {
                write!(f, "delete rules prio {priority} {selector}")
            }
        }
    }
}

impl fmt::Display for RuleSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleSelector::To(a) => write!(f, "to {a}/32"),
            RuleSelector::From(a) => write!(f, "from {a}/32"),
        }
    }
}

/// The ordered steps that wire a pod. Pod-side configuration precedes the host route and rules, so the host
/// starts sending to the pod only once the pod can answer.
pub fn add_plan(w: &PodWiring) -> Vec<Op> {
    let netns = w.netns.clone();
    let ifname = w.pod_ifname.clone();
    let host = w.host_ifname.clone();
    let mut ops = vec![
        Op::DeleteHostLink { name: host.clone() },
        Op::CreateVeth {
            netns: netns.clone(),
            pod_ifname: ifname.clone(),
            host_ifname: host.clone(),
            mtu: w.mtu,
        },
        Op::SetHostVethSysctls {
            host_ifname: host.clone(),
        },
        Op::HostLinkUp {
            host_ifname: host.clone(),
        },
        Op::PodLinkUp {
            netns: netns.clone(),
            ifname: ifname.clone(),
        },
        Op::PodAddress {
            netns: netns.clone(),
            ifname: ifname.clone(),
            addr: w.ipv4,
        },
        Op::PodGatewayRoute {
            netns: netns.clone(),
            ifname: ifname.clone(),
        },
        Op::PodDefaultRoute {
            netns: netns.clone(),
            ifname: ifname.clone(),
        },
        Op::PodGatewayNeighbour {
            netns,
            ifname,
            host_ifname: host.clone(),
        },
        Op::HostRoute {
            addr: w.ipv4,
            host_ifname: host,
        },
        Op::AddRule {
            priority: TO_POD_RULE_PRIORITY,
            selector: RuleSelector::To(w.ipv4),
            table: MAIN_TABLE,
        },
    ];
    if w.route_table != 0 {
        ops.push(Op::AddRule {
            priority: FROM_POD_RULE_PRIORITY,
            selector: RuleSelector::From(w.ipv4),
            table: w.route_table,
        });
    }
    ops
}

/// What is known about a pod at teardown time; any part may be missing (namespace gone, ipamd down, no prevResult).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Teardown {
    /// Pod netns path, if the runtime still has one.
    pub netns: Option<String>,
    /// Pod interface name.
    pub pod_ifname: String,
    /// Host veth name: set only when undoing our own ADD. DEL and GC leave it out, because the name derives
    /// from the pod's namespace and name, which a newer sandbox of the same pod shares.
    pub host_ifname: Option<String>,
    /// The pod address, if known.
    pub ipv4: Option<Ipv4Addr>,
    /// Index of the host end of the pod's veth when ipamd took the pair and deletes it after the
    /// DEL; the plan then removes only the host route and leaves the pair alone.
    pub veth_taken: Option<u32>,
}

/// The steps that remove a pod's wiring. Every step tolerates "already gone"; the host route goes with the link,
/// or on its own when ipamd deletes the link later. Rules go first so that no traffic is steered to a vanishing
/// link.
pub fn teardown_plan(t: &Teardown) -> Vec<Op> {
    let mut ops = Vec::new();
    if let Some(ip) = t.ipv4 {
        ops.push(Op::DeleteRules {
            priority: TO_POD_RULE_PRIORITY,
            selector: RuleSelector::To(ip),
        });
        ops.push(Op::DeleteRules {
            priority: FROM_POD_RULE_PRIORITY,
            selector: RuleSelector::From(ip),
        });
    }
    if let Some(host) = &t.host_ifname {
        ops.push(Op::DeleteHostLink { name: host.clone() });
    }
    match (t.veth_taken, &t.netns) {
        (Some(link_index), _) => {
            if let Some(addr) = t.ipv4 {
                ops.push(Op::DeleteHostRoute { addr, link_index });
            }
        }
        (None, Some(netns)) => ops.push(Op::DeletePodLink {
            netns: netns.clone(),
            ifname: t.pod_ifname.clone(),
        }),
        (None, None) => {}
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wiring(route_table: u32) -> PodWiring {
        PodWiring {
            netns: "/var/run/netns/p1".into(),
            pod_ifname: "eth0".into(),
            host_ifname: host_veth_name("eni", "default", "web-0"),
            ipv4: Ipv4Addr::new(10, 0, 1, 7),
            mtu: 9001,
            route_table,
        }
    }

    #[test]
    fn veth_names_follow_upstream() {
        // Vectors computed independently (Python hashlib): sha1("<ns>.<pod>") hex, first 11 digits.
        let n = host_veth_name("eni", "default", "web-0");
        assert_eq!(n, "eni0d7763386da");
        assert_eq!(
            host_veth_name("abcd", "kube-system", "coredns-abc"),
            "abcd3d5d6ab04b5"
        );
        assert_ne!(host_veth_name("eni", "default", "web-1"), n);
    }

    #[test]
    fn primary_eni_pods_get_no_from_rule() {
        let ops = add_plan(&wiring(0));
        assert!(ops.iter().all(|o| !matches!(
            o,
            Op::AddRule {
                priority: FROM_POD_RULE_PRIORITY,
                ..
            }
        )));
        let ops = add_plan(&wiring(3));
        assert_eq!(
            ops.last(),
            Some(&Op::AddRule {
                priority: FROM_POD_RULE_PRIORITY,
                selector: RuleSelector::From(Ipv4Addr::new(10, 0, 1, 7)),
                table: 3
            })
        );
    }

    fn pos(ops: &[Op], f: impl Fn(&Op) -> bool) -> usize {
        ops.iter().position(f).expect("step present")
    }

    proptest! {
        #[test]
        fn add_plan_orders_dependencies(a in any::<u32>(), table in 0u32..300, mtu in 576u32..=9001) {
            let w = PodWiring { ipv4: Ipv4Addr::from(a), route_table: table, mtu, ..wiring(0) };
            let ops = add_plan(&w);
            let create = pos(&ops, |o| matches!(o, Op::CreateVeth { .. }));
            let stale = pos(&ops, |o| matches!(o, Op::DeleteHostLink { .. }));
            let sysctl = pos(&ops, |o| matches!(o, Op::SetHostVethSysctls { .. }));
            let up = pos(&ops, |o| matches!(o, Op::HostLinkUp { .. }));
            let pod_up = pos(&ops, |o| matches!(o, Op::PodLinkUp { .. }));
            let gw = pos(&ops, |o| matches!(o, Op::PodGatewayRoute { .. }));
            let dflt = pos(&ops, |o| matches!(o, Op::PodDefaultRoute { .. }));
            let neigh = pos(&ops, |o| matches!(o, Op::PodGatewayNeighbour { .. }));
            let host_route = pos(&ops, |o| matches!(o, Op::HostRoute { .. }));
            let to_rule = pos(&ops, |o| matches!(o, Op::AddRule { priority: TO_POD_RULE_PRIORITY, .. }));
            prop_assert!(stale < create && create < sysctl && sysctl < up);
            prop_assert!(create < pod_up && pod_up < gw && gw < dflt && create < neigh);
            prop_assert!(neigh < host_route && dflt < host_route && up < host_route && host_route < to_rule);
            // Every step after CreateVeth names the pod's links or address, never another.
            for op in &ops {
                match op {
                    Op::PodAddress { addr, .. } | Op::HostRoute { addr, .. } => prop_assert_eq!(*addr, w.ipv4),
                    Op::AddRule { selector: RuleSelector::To(x) | RuleSelector::From(x), .. } => prop_assert_eq!(*x, w.ipv4),
                    Op::CreateVeth { mtu: m, .. } => prop_assert_eq!(*m, mtu),
                    _ => {}
                }
            }
            prop_assert_eq!(ops.iter().any(|o| matches!(o, Op::AddRule { priority: FROM_POD_RULE_PRIORITY, .. })), table != 0);
        }

        #[test]
        fn teardown_removes_what_add_created(a in any::<u32>(), table in 0u32..300) {
            let w = PodWiring { ipv4: Ipv4Addr::from(a), route_table: table, ..wiring(0) };
            let t = teardown_plan(&Teardown {
                netns: Some(w.netns.clone()),
                pod_ifname: w.pod_ifname.clone(),
                host_ifname: Some(w.host_ifname.clone()),
                ipv4: Some(w.ipv4),
                veth_taken: None,
            });
            for op in add_plan(&w) {
                let undone = match &op {
                    Op::AddRule { priority, selector, .. } => t.contains(&Op::DeleteRules { priority: *priority, selector: *selector }),
                    Op::CreateVeth { host_ifname, .. } | Op::HostRoute { host_ifname, .. } => t.contains(&Op::DeleteHostLink { name: host_ifname.clone() }),
                    Op::PodAddress { .. } | Op::PodGatewayRoute { .. } | Op::PodDefaultRoute { .. } | Op::PodGatewayNeighbour { .. } | Op::PodLinkUp { .. } =>
                        t.contains(&Op::DeleteHostLink { name: w.host_ifname.clone() }),
                    _ => true,
                };
                prop_assert!(undone, "{} is not undone by {:?}", op, t);
            }
        }
    }

    #[test]
    fn teardown_with_nothing_known_does_nothing() {
        assert!(teardown_plan(&Teardown::default()).is_empty());
    }
}
