//! The pure node-wiring plan: (node description, settings) → ordered kernel operations, applied by
//! [`super::node_apply::NodeKernel`].
//!
//! Three plans, each safe to apply again and again (every step either sets a value, replaces an
//! object, or reconciles a set of objects with the wanted one):
//! - [`host_plan`]: once per start and on every reconcile. The primary ENI's MTU, loose `rp_filter`
//!   on the primary interface, `tcp_early_demux`, `ip_forward`, the `fwmark 0x80/0x80 lookup main`
//!   rule (priority 1024), the `AWS_EXTERNAL_SERVICE_CIDRS` rules (priority 1535) and the nftables
//!   SNAT/connmark table.
//! - [`eni_plan`]: per secondary ENI. MTU, link up, the ENI's primary address as the link's only
//!   global IPv4 address, its route table (`<gw>/32 scope link`, `default via <gw>`), the kernel's
//!   subnet route removed from main, and `from <ENI primary IP> lookup <table>` (priority 32765).
//! - [`remove_eni_plan`]: when an ENI is freed. Its rules and the routes of its table.
//!
//! Links are named by MAC address (interface names of hot-plugged ENIs are not predictable);
//! the executor resolves them. No I/O here, and only `core`/`alloc` paths (the lints below keep it so).
//!
//! Upstream parity (`pkg/networkutils/network.go`, `cmd/aws-vpc-cni-init/main.go`):
//! - `SetupHostNetwork` sets the primary MTU and adds the 1024 rule when node-port support is on or
//!   SNAT is not external (and deletes it otherwise); it does not set the primary link up.
//! - `rp_filter=2` and `tcp_early_demux` are the init container's job upstream (rp_filter
//!   unconditionally, tcp_early_demux 0 or 1 by `DISABLE_TCP_EARLY_DEMUX`). One binary has no init
//!   container, so the host plan does it; `AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER=false` (deprecated
//!   upstream, default true) skips rp_filter, as older ipamd versions did.
//! - `ip_forward=1` is not set by upstream (the EKS AMI sets it); nothing else does on a bare node,
//!   and pods cannot leave the node without it, so the host plan sets it unless told not to.
//! - `setupENINetwork` deletes every global IPv4 address of the ENI and adds `<primary IP>/<subnet
//!   length>` itself: ipamd, not the OS, configures hot-plugged ENIs. The plan keeps the address when it
//!   is already right (no flap on re-apply) and removes any other.
//! - `DeleteRulesBySrc` removes every rule whose source is the ENI's primary IP; the table's routes
//!   go with the detached link upstream, here [`remove_eni_plan`] flushes them explicitly.

#![deny(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr};

use crate::config::Config;
pub use crate::ipam::datastore::route_table_id;
use crate::net::VethPrefix;
use crate::net::{IpNet, Ipv4Cidr, MacAddr};
use crate::nft::{Randomize, SnatConfig};

/// Priority of `fwmark 0x80/0x80 lookup main` (upstream `hostRulePriority`).
pub const HOST_RULE_PRIORITY: u32 = 1024;
/// Priority of the `to <AWS_EXTERNAL_SERVICE_CIDRS entry> lookup main` rules.
pub const EXTERNAL_SERVICE_RULE_PRIORITY: u32 = 1535;
/// Priority of `from <ENI primary IP> lookup <ENI table>` (upstream `FromPrimaryIPofENIRulePriority`).
pub const ENI_PRIMARY_IP_RULE_PRIORITY: u32 = 32765;
/// The main routing table.
pub const MAIN_TABLE: u32 = 254;
/// `rp_filter` loose mode.
pub const RP_FILTER_LOOSE: u8 = 2;

/// The VPC router of a subnet: its base address + 1.
pub fn ipv4_gateway(subnet: Ipv4Cidr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.addr()).wrapping_add(1))
}

/// One ENI as the node wiring sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniWiring {
    /// EC2 device index (0 = primary ENI).
    pub device_number: u32,
    /// MAC address: how the link is found.
    pub mac: MacAddr,
    /// The ENI's primary private IPv4 address.
    pub primary_ip: Ipv4Addr,
    /// The ENI's subnet.
    pub subnet: Ipv4Cidr,
    /// Its route table ([`route_table_id`]); unused for the primary ENI (which uses main).
    pub route_table: u32,
}

impl EniWiring {
    /// The link reference the plan's steps use.
    pub fn link(&self) -> EniLink {
        EniLink {
            device_number: self.device_number,
            mac: self.mac,
        }
    }
}

/// A link named by its MAC; the device number is for messages only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EniLink {
    /// EC2 device index.
    pub device_number: u32,
    /// MAC address.
    pub mac: MacAddr,
}

impl fmt::Display for EniLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ENI device {} ({})", self.device_number, self.mac)
    }
}

/// The settings the node wiring depends on (from [`Config`] by [`NodeSettings::from_config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// `AWS_VPC_ENI_MTU`, for every ENI including the primary.
    pub eni_mtu: u32,
    /// `AWS_VPC_CNI_NODE_PORT_SUPPORT`.
    pub node_port_support: bool,
    /// `AWS_VPC_K8S_CNI_EXTERNALSNAT`.
    pub external_snat: bool,
    /// `AWS_VPC_K8S_CNI_RANDOMIZESNAT`.
    pub randomize_snat: Randomize,
    /// `AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS` (IPv4 entries).
    pub exclude_snat_cidrs: Vec<Ipv4Cidr>,
    /// `AWS_EXTERNAL_SERVICE_CIDRS` (IPv4 entries).
    pub external_service_cidrs: Vec<Ipv4Cidr>,
    /// `AWS_VPC_K8S_CNI_VETHPREFIX`.
    pub veth_prefix: VethPrefix,
    /// `AWS_VPC_K8S_CNI_CONNMARK`: the connection mark and the fwmark of the priority-1024 rule.
    pub connmark: u32,
    /// `AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER`: set `rp_filter=2` on the primary interface.
    pub configure_rp_filter: bool,
    /// `DISABLE_TCP_EARLY_DEMUX`.
    pub disable_tcp_early_demux: bool,
    /// Set `net.ipv4.ip_forward=1` (always true from the configuration; false leaves it to the host).
    pub ip_forward: bool,
}

fn v4_only(nets: &[IpNet]) -> Vec<Ipv4Cidr> {
    let mut out = Vec::new();
    for n in nets {
        if let IpAddr::V4(a) = n.network().addr() {
            if let Ok(c) = Ipv4Cidr::new(a, n.prefix_len()) {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
    }
    out
}

impl NodeSettings {
    /// The node-wiring part of the configuration. IPv6 entries of the CIDR lists are left out, as
    /// upstream's `parseCIDRString` does.
    pub fn from_config(c: &Config) -> Self {
        NodeSettings {
            eni_mtu: u32::from(c.eni_mtu),
            node_port_support: c.node_port_support,
            external_snat: c.external_snat,
            randomize_snat: c.randomize_snat,
            exclude_snat_cidrs: v4_only(&c.exclude_snat_cidrs),
            external_service_cidrs: v4_only(&c.external_service_cidrs),
            veth_prefix: c.veth_prefix.clone(),
            connmark: c.connmark,
            configure_rp_filter: c.configure_rpfilter,
            disable_tcp_early_demux: c.disable_tcp_early_demux,
            ip_forward: true,
        }
    }
}

impl Default for NodeSettings {
    /// The settings of the default configuration.
    fn default() -> Self {
        NodeSettings::from_config(&Config::default())
    }
}

/// The whole node: its ENIs, the VPC's CIDRs and the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// The primary ENI (device 0): its MAC finds the primary interface, its IP is the SNAT source.
    pub primary: EniWiring,
    /// Attached secondary ENIs.
    pub secondaries: Vec<EniWiring>,
    /// The VPC's IPv4 CIDRs (IMDS `vpc-ipv4-cidr-blocks`): never translated.
    pub vpc_cidrs: Vec<Ipv4Cidr>,
    /// Settings.
    pub settings: NodeSettings,
}

/// What the nftables table depends on, minus the primary interface's name (resolved from its MAC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatPlan {
    /// The primary ENI: NodePort traffic arrives on its link.
    pub primary: EniLink,
    /// The SNAT source.
    pub primary_ip: Ipv4Addr,
    /// VPC CIDRs.
    pub vpc_cidrs: Vec<Ipv4Cidr>,
    /// Excluded CIDRs.
    pub exclude_cidrs: Vec<Ipv4Cidr>,
    /// Port randomisation.
    pub randomize: Randomize,
    /// NodePort support.
    pub node_port_support: bool,
    /// External SNAT.
    pub external_snat: bool,
    /// Host veth prefix.
    pub veth_prefix: VethPrefix,
    /// Connection mark.
    pub connmark: u32,
}

impl SnatPlan {
    /// The nft configuration once the primary interface is known to be `primary_ifname`.
    pub fn config(&self, primary_ifname: &str) -> SnatConfig {
        SnatConfig {
            primary_ip: self.primary_ip,
            primary_ifname: primary_ifname.into(),
            vpc_cidrs: self.vpc_cidrs.iter().map(|&c| IpNet::from(c)).collect(),
            exclude_cidrs: self.exclude_cidrs.iter().map(|&c| IpNet::from(c)).collect(),
            randomize: self.randomize,
            node_port_support: self.node_port_support,
            external_snat: self.external_snat,
            veth_prefix: self.veth_prefix.clone(),
            connmark: self.connmark,
        }
    }
}

/// A policy rule's selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRule {
    /// `fwmark <mark>/<mask>`.
    FwMark {
        /// Mark.
        mark: u32,
        /// Mask.
        mask: u32,
    },
    /// `from <ip>/32`.
    From(Ipv4Addr),
    /// `to <cidr>`.
    To(Ipv4Cidr),
}

impl fmt::Display for NodeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRule::FwMark { mark, mask } => write!(f, "fwmark {mark:#x}/{mask:#x}"),
            NodeRule::From(ip) => write!(f, "from {ip}/32"),
            NodeRule::To(c) => write!(f, "to {c}"),
        }
    }
}

/// One step of the node wiring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOp {
    /// `ip link set <link> mtu <mtu>`.
    SetMtu {
        /// The link.
        link: EniLink,
        /// MTU.
        mtu: u32,
    },
    /// `ip link set <link> up`.
    LinkUp {
        /// The link.
        link: EniLink,
    },
    /// Make `<addr>/<prefix_len>` the link's only global IPv4 address: other global IPv4 addresses
    /// are deleted first, then it is added if missing.
    EniAddress {
        /// The link.
        link: EniLink,
        /// The ENI's primary IP.
        addr: Ipv4Addr,
        /// The subnet's prefix length.
        prefix_len: u8,
    },
    /// `ip route replace <gateway>/32 dev <link> scope link table <table>`.
    GatewayRoute {
        /// The link.
        link: EniLink,
        /// The subnet's router.
        gateway: Ipv4Addr,
        /// The ENI's table.
        table: u32,
    },
    /// `ip route replace default via <gateway> dev <link> table <table>`.
    DefaultRoute {
        /// The link.
        link: EniLink,
        /// The subnet's router.
        gateway: Ipv4Addr,
        /// The ENI's table.
        table: u32,
    },
    /// `ip route del <subnet> dev <link> src <src> table main`, if present (the route the kernel adds
    /// with the address).
    DeleteSubnetRoute {
        /// The link.
        link: EniLink,
        /// The ENI's subnet.
        subnet: Ipv4Cidr,
        /// The ENI's primary IP (the route's preferred source).
        src: Ipv4Addr,
    },
    /// Delete every IPv4 route of `table` (`ip route flush table <table>`).
    FlushTable {
        /// The ENI's table (never main, local or default).
        table: u32,
    },
    /// `ip rule add prio <priority> <rule> lookup <table>`; an equal rule counts as done.
    AddRule {
        /// Priority.
        priority: u32,
        /// Selector.
        rule: NodeRule,
        /// Table.
        table: u32,
    },
    /// Delete every IPv4 rule with this selector (and this priority, if given), whatever its table.
    DeleteRules {
        /// Priority, or any.
        priority: Option<u32>,
        /// Selector.
        rule: NodeRule,
    },
    /// Make the `to <cidr>` rules of `priority` looking up `table` exactly `dsts`: others deleted,
    /// missing ones added.
    SyncDstRules {
        /// Priority.
        priority: u32,
        /// Table.
        table: u32,
        /// The wanted destinations.
        dsts: Vec<Ipv4Cidr>,
    },
    /// `net.ipv4.conf.<link>.rp_filter=<mode>`.
    RpFilter {
        /// The link.
        link: EniLink,
        /// 0, 1 or 2.
        mode: u8,
    },
    /// `net.ipv4.tcp_early_demux=<on>`, skipped on kernels without the key.
    TcpEarlyDemux {
        /// Value.
        on: bool,
    },
    /// `net.ipv4.ip_forward=1`.
    IpForward,
    /// Make `table ip aws-cni` match (or remove it when nothing is needed).
    Snat(SnatPlan),
}

fn join(cidrs: &[Ipv4Cidr]) -> String {
    if cidrs.is_empty() {
        return "none".into();
    }
    let mut s = String::new();
    for (i, c) in cidrs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{c}"));
    }
    s
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

impl fmt::Display for NodeOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeOp::SetMtu { link, mtu } => write!(f, "set mtu {mtu} on {link}"),
            NodeOp::LinkUp { link } => write!(f, "set {link} up"),
            NodeOp::EniAddress {
                link,
                addr,
                prefix_len,
            } => write!(f, "address {addr}/{prefix_len} as the only one on {link}"),
            NodeOp::GatewayRoute {
                link,
                gateway,
                table,
            } => write!(f, "route {gateway}/32 dev {link} scope link table {table}"),
            NodeOp::DefaultRoute {
                link,
                gateway,
                table,
            } => write!(f, "route default via {gateway} dev {link} table {table}"),
            NodeOp::DeleteSubnetRoute { link, subnet, src } => {
                write!(f, "delete route {subnet} dev {link} src {src} table main")
            }
            NodeOp::FlushTable { table } => write!(f, "flush route table {table}"),
            NodeOp::AddRule {
                priority,
                rule,
                table,
            } => write!(f, "rule prio {priority} {rule} lookup {table}"),
            NodeOp::DeleteRules {
                priority: Some(p),
                rule,
            } => write!(f, "delete rules prio {p} {rule}"),
            NodeOp::DeleteRules {
                priority: None,
                rule,
            } => write!(f, "delete rules {rule}"),
            NodeOp::SyncDstRules {
                priority,
                table,
                dsts,
            } => write!(
                f,
                "rules prio {priority} to [{}] lookup {table}, no others",
                join(dsts)
            ),
            NodeOp::RpFilter { link, mode } => write!(f, "rp_filter={mode} on {link}"),
            NodeOp::TcpEarlyDemux { on } => {
                write!(f, "net.ipv4.tcp_early_demux={}", u8::from(*on))
            }
            NodeOp::IpForward => write!(f, "net.ipv4.ip_forward=1"),
            NodeOp::Snat(s) => write!(
                f,
                "nftables table ip aws-cni: SNAT to {} via {}, VPC [{}], excluded [{}], \
                 node port support {}, external SNAT {}, veth prefix {:?}",
                s.primary_ip,
                s.primary,
                join(&s.vpc_cidrs),
                join(&s.exclude_cidrs),
                on_off(s.node_port_support),
                on_off(s.external_snat),
                s.veth_prefix
            ),
        }
    }
}

/// An ENI the plan refuses to wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The ENI.
    pub link: EniLink,
    /// Why.
    pub reason: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot wire {}: {}", self.link, self.reason)
    }
}

impl core::error::Error for PlanError {}

/// Tables an ENI must never use: unspecified, default, main, local.
fn reserved_table(t: u32) -> bool {
    matches!(t, 0 | 253..=255)
}

fn check_secondary(eni: &EniWiring) -> Result<(), PlanError> {
    let err = |reason: String| PlanError {
        link: eni.link(),
        reason,
    };
    if eni.device_number == 0 {
        return Err(err(
            "device 0 is the primary ENI; it has no table of its own".into(),
        ));
    }
    if reserved_table(eni.route_table) {
        return Err(err(format!(
            "route table {} is reserved (0, 253 default, 254 main, 255 local)",
            eni.route_table
        )));
    }
    if eni.subnet.prefix_len() > 30 {
        return Err(err(format!(
            "subnet {} is too small for a router address",
            eni.subnet
        )));
    }
    if !eni.subnet.contains(eni.primary_ip) {
        return Err(err(format!(
            "primary IP {} is outside subnet {}",
            eni.primary_ip, eni.subnet
        )));
    }
    Ok(())
}

/// The host-wide steps. Infallible: everything it touches exists on any node.
pub fn host_plan(spec: &NodeSpec) -> Vec<NodeOp> {
    let s = &spec.settings;
    let primary = spec.primary.link();
    let mut ops = vec![NodeOp::SetMtu {
        link: primary,
        mtu: s.eni_mtu,
    }];
    if s.configure_rp_filter {
        ops.push(NodeOp::RpFilter {
            link: primary,
            mode: RP_FILTER_LOOSE,
        });
    }
    ops.push(NodeOp::TcpEarlyDemux {
        on: !s.disable_tcp_early_demux,
    });
    if s.ip_forward {
        ops.push(NodeOp::IpForward);
    }
    let mark = NodeRule::FwMark {
        mark: s.connmark,
        mask: s.connmark,
    };
    if s.node_port_support || !s.external_snat {
        ops.push(NodeOp::AddRule {
            priority: HOST_RULE_PRIORITY,
            rule: mark,
            table: MAIN_TABLE,
        });
    } else {
        ops.push(NodeOp::DeleteRules {
            priority: Some(HOST_RULE_PRIORITY),
            rule: mark,
        });
    }
    ops.push(NodeOp::SyncDstRules {
        priority: EXTERNAL_SERVICE_RULE_PRIORITY,
        table: MAIN_TABLE,
        dsts: s.external_service_cidrs.clone(),
    });
    ops.push(NodeOp::Snat(SnatPlan {
        primary,
        primary_ip: spec.primary.primary_ip,
        vpc_cidrs: spec.vpc_cidrs.clone(),
        exclude_cidrs: s.exclude_snat_cidrs.clone(),
        randomize: s.randomize_snat,
        node_port_support: s.node_port_support,
        external_snat: s.external_snat,
        veth_prefix: s.veth_prefix.clone(),
        connmark: s.connmark,
    }));
    ops
}

/// The steps that wire one secondary ENI, in upstream's order: the link is up and addressed before
/// its table is filled, the table is filled before the main-table route goes, and the rule that
/// steers traffic into the table comes last.
pub fn eni_plan(eni: &EniWiring, settings: &NodeSettings) -> Result<Vec<NodeOp>, PlanError> {
    check_secondary(eni)?;
    let link = eni.link();
    let gateway = ipv4_gateway(eni.subnet);
    Ok(vec![
        NodeOp::SetMtu {
            link,
            mtu: settings.eni_mtu,
        },
        NodeOp::LinkUp { link },
        NodeOp::EniAddress {
            link,
            addr: eni.primary_ip,
            prefix_len: eni.subnet.prefix_len(),
        },
        NodeOp::GatewayRoute {
            link,
            gateway,
            table: eni.route_table,
        },
        NodeOp::DefaultRoute {
            link,
            gateway,
            table: eni.route_table,
        },
        NodeOp::DeleteSubnetRoute {
            link,
            subnet: eni.subnet,
            src: eni.primary_ip,
        },
        NodeOp::AddRule {
            priority: ENI_PRIMARY_IP_RULE_PRIORITY,
            rule: NodeRule::From(eni.primary_ip),
            table: eni.route_table,
        },
    ])
}

/// The steps that remove a freed ENI's wiring: first the rules (so nothing is steered to the table
/// any more), then the table's routes. Link settings and the address go with the detached link.
pub fn remove_eni_plan(eni: &EniWiring) -> Result<Vec<NodeOp>, PlanError> {
    check_secondary(eni)?;
    Ok(vec![
        NodeOp::DeleteRules {
            priority: None,
            rule: NodeRule::From(eni.primary_ip),
        },
        NodeOp::FlushTable {
            table: eni.route_table,
        },
    ])
}

/// The whole node: [`host_plan`], then [`eni_plan`] for each secondary ENI. Fails, before anything
/// is applied, if any secondary ENI cannot be wired, or if two share a route table or a MAC.
pub fn node_plan(spec: &NodeSpec) -> Result<Vec<NodeOp>, PlanError> {
    for (i, a) in spec.secondaries.iter().enumerate() {
        let clash = |reason: String| PlanError {
            link: a.link(),
            reason,
        };
        if a.mac == spec.primary.mac {
            return Err(clash("its MAC is the primary ENI's".into()));
        }
        for b in &spec.secondaries[..i] {
            if a.route_table == b.route_table {
                return Err(clash(format!(
                    "route table {} is also {}'s",
                    a.route_table,
                    b.link()
                )));
            }
            if a.mac == b.mac {
                return Err(clash(format!("its MAC is also {}'s", b.link())));
            }
        }
    }
    let mut ops = host_plan(spec);
    for eni in &spec.secondaries {
        ops.extend(eni_plan(eni, &spec.settings)?);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use proptest::prelude::*;

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, last])
    }

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    fn eni(d: u32, ip: [u8; 4], subnet: &str) -> EniWiring {
        EniWiring {
            device_number: d,
            mac: mac(d as u8 + 0x10),
            primary_ip: Ipv4Addr::from(ip),
            subnet: cidr(subnet),
            route_table: route_table_id(0, d),
        }
    }

    fn spec(settings: NodeSettings) -> NodeSpec {
        NodeSpec {
            primary: eni(0, [10, 0, 0, 10], "10.0.0.0/24"),
            secondaries: vec![
                eni(1, [10, 0, 1, 5], "10.0.1.0/24"),
                eni(2, [10, 0, 0, 20], "10.0.0.0/24"),
            ],
            vpc_cidrs: vec![cidr("10.0.0.0/16")],
            settings,
        }
    }

    fn has(ops: &[NodeOp], f: impl Fn(&NodeOp) -> bool) -> bool {
        ops.iter().any(f)
    }

    #[test]
    fn tables_follow_device_and_card() {
        assert_eq!(route_table_id(0, 1), 2);
        assert_eq!(route_table_id(0, 7), 8);
        assert_eq!(route_table_id(1, 0), 10100);
        assert_eq!(route_table_id(3, 2), 10302);
    }

    #[test]
    fn gateway_is_subnet_base_plus_one() {
        assert_eq!(
            ipv4_gateway(cidr("10.0.1.0/24")),
            Ipv4Addr::new(10, 0, 1, 1)
        );
        assert_eq!(
            ipv4_gateway(cidr("172.31.16.0/20")),
            Ipv4Addr::new(172, 31, 16, 1)
        );
        assert_eq!(
            ipv4_gateway(cidr("10.0.0.240/28")),
            Ipv4Addr::new(10, 0, 0, 241)
        );
    }

    #[test]
    fn a_secondary_eni_gets_its_table_rule_and_gateway() {
        let e = eni(1, [10, 0, 1, 5], "10.0.1.0/24");
        let ops = eni_plan(&e, &NodeSettings::default()).unwrap();
        let link = e.link();
        let gw = Ipv4Addr::new(10, 0, 1, 1);
        assert_eq!(
            ops,
            vec![
                NodeOp::SetMtu { link, mtu: 9001 },
                NodeOp::LinkUp { link },
                NodeOp::EniAddress {
                    link,
                    addr: e.primary_ip,
                    prefix_len: 24
                },
                NodeOp::GatewayRoute {
                    link,
                    gateway: gw,
                    table: 2
                },
                NodeOp::DefaultRoute {
                    link,
                    gateway: gw,
                    table: 2
                },
                NodeOp::DeleteSubnetRoute {
                    link,
                    subnet: e.subnet,
                    src: e.primary_ip
                },
                NodeOp::AddRule {
                    priority: 32765,
                    rule: NodeRule::From(e.primary_ip),
                    table: 2
                },
            ]
        );
        assert_eq!(
            ops[6].to_string(),
            "rule prio 32765 from 10.0.1.5/32 lookup 2"
        );
        assert_eq!(
            ops[3].to_string(),
            "route 10.0.1.1/32 dev ENI device 1 (02:00:00:00:00:11) scope link table 2"
        );
    }

    #[test]
    fn defaults_give_the_upstream_host_wiring() {
        let s = spec(NodeSettings::default());
        let ops = host_plan(&s);
        let primary = s.primary.link();
        assert_eq!(
            ops[..5],
            [
                NodeOp::SetMtu {
                    link: primary,
                    mtu: 9001
                },
                NodeOp::RpFilter {
                    link: primary,
                    mode: 2
                },
                NodeOp::TcpEarlyDemux { on: true },
                NodeOp::IpForward,
                NodeOp::AddRule {
                    priority: 1024,
                    rule: NodeRule::FwMark {
                        mark: 0x80,
                        mask: 0x80
                    },
                    table: 254
                },
            ]
        );
        assert_eq!(
            ops[4].to_string(),
            "rule prio 1024 fwmark 0x80/0x80 lookup 254"
        );
        let NodeOp::Snat(snat) = ops.last().unwrap() else {
            panic!("the nft table comes last: {ops:?}");
        };
        let cfg = snat.config("ens5");
        assert_eq!(cfg.primary_ifname, "ens5");
        assert_eq!(cfg.primary_ip, Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(cfg.vpc_cidrs, vec!["10.0.0.0/16".parse::<IpNet>().unwrap()]);
        assert_eq!(cfg.randomize, Randomize::Prng);
        assert!(cfg.node_port_support && !cfg.external_snat);
        assert_eq!(cfg.veth_prefix, "eni");
        // The primary ENI gets no table, address or up: only its MTU.
        assert!(!has(&ops, |o| matches!(
            o,
            NodeOp::LinkUp { .. } | NodeOp::EniAddress { .. }
        )));
    }

    #[test]
    fn external_snat_keeps_the_mark_rule_only_with_node_ports() {
        let with_ports = NodeSettings {
            external_snat: true,
            ..NodeSettings::default()
        };
        let ops = host_plan(&spec(with_ports.clone()));
        assert!(has(&ops, |o| matches!(
            o,
            NodeOp::AddRule {
                priority: HOST_RULE_PRIORITY,
                ..
            }
        )));
        let NodeOp::Snat(snat) = ops.last().unwrap() else {
            panic!("no nft step");
        };
        assert!(snat.external_snat);
        // The ruleset for this is the mangle chain only (NodePort marks), no SNAT.
        let rs = crate::nft::ruleset(&snat.config("eth0")).unwrap().unwrap();
        let names: Vec<_> = rs.chains.iter().map(|c| c.name).collect();
        assert_eq!(names, ["mangle-prerouting"]);

        let neither = NodeSettings {
            external_snat: true,
            node_port_support: false,
            ..NodeSettings::default()
        };
        let ops = host_plan(&spec(neither));
        assert!(has(&ops, |o| *o
            == NodeOp::DeleteRules {
                priority: Some(1024),
                rule: NodeRule::FwMark {
                    mark: 0x80,
                    mask: 0x80
                }
            }));
        assert!(!has(&ops, |o| matches!(o, NodeOp::AddRule { .. })));
        let NodeOp::Snat(snat) = ops.last().unwrap() else {
            panic!("no nft step");
        };
        assert_eq!(crate::nft::ruleset(&snat.config("eth0")).unwrap(), None);
    }

    #[test]
    fn node_port_off_with_on_node_snat_keeps_the_mark_rule() {
        let s = NodeSettings {
            node_port_support: false,
            ..NodeSettings::default()
        };
        let ops = host_plan(&spec(s));
        assert!(has(&ops, |o| matches!(
            o,
            NodeOp::AddRule {
                priority: HOST_RULE_PRIORITY,
                table: MAIN_TABLE,
                ..
            }
        )));
        let NodeOp::Snat(snat) = ops.last().unwrap() else {
            panic!("no nft step");
        };
        assert!(!snat.node_port_support);
    }

    #[test]
    fn rp_filter_demux_and_forwarding_follow_the_settings() {
        let s = NodeSettings {
            configure_rp_filter: false,
            disable_tcp_early_demux: true,
            ip_forward: false,
            ..NodeSettings::default()
        };
        let ops = host_plan(&spec(s));
        assert!(!has(&ops, |o| matches!(o, NodeOp::RpFilter { .. })));
        assert!(!has(&ops, |o| *o == NodeOp::IpForward));
        assert!(has(&ops, |o| *o == NodeOp::TcpEarlyDemux { on: false }));
    }

    #[test]
    fn external_service_cidrs_are_synced_even_when_empty() {
        let ops = host_plan(&spec(NodeSettings::default()));
        assert!(has(&ops, |o| *o
            == NodeOp::SyncDstRules {
                priority: 1535,
                table: 254,
                dsts: vec![]
            }));
        let s = NodeSettings {
            external_service_cidrs: vec![cidr("198.51.100.0/24")],
            ..NodeSettings::default()
        };
        let ops = host_plan(&spec(s));
        let sync = ops
            .iter()
            .find(|o| matches!(o, NodeOp::SyncDstRules { .. }))
            .unwrap();
        assert_eq!(
            sync.to_string(),
            "rules prio 1535 to [198.51.100.0/24] lookup 254, no others"
        );
    }

    #[test]
    fn settings_come_from_the_configuration() {
        let env = |k: &str| -> Option<String> {
            match k {
                "AWS_VPC_ENI_MTU" => Some("1500".into()),
                "AWS_VPC_K8S_CNI_EXTERNALSNAT" => Some("true".into()),
                "AWS_VPC_K8S_CNI_RANDOMIZESNAT" => Some("hashrandom".into()),
                "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS" => Some("203.0.113.0/24,2001:db8::/32".into()),
                "AWS_EXTERNAL_SERVICE_CIDRS" => Some("198.51.100.7/24".into()),
                "AWS_VPC_K8S_CNI_VETHPREFIX" => Some("abc".into()),
                "AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER" => Some("false".into()),
                "DISABLE_TCP_EARLY_DEMUX" => Some("true".into()),
                _ => None,
            }
        };
        let (c, _) = Config::from_env(env).unwrap();
        let s = NodeSettings::from_config(&c);
        assert_eq!(s.eni_mtu, 1500);
        assert!(s.external_snat && s.node_port_support);
        assert_eq!(s.randomize_snat, Randomize::HashRandom);
        assert_eq!(s.exclude_snat_cidrs, vec![cidr("203.0.113.0/24")]);
        assert_eq!(s.external_service_cidrs, vec![cidr("198.51.100.0/24")]);
        assert_eq!(s.veth_prefix, "abc");
        assert!(!s.configure_rp_filter && s.disable_tcp_early_demux && s.ip_forward);
    }

    #[test]
    fn unwirable_enis_are_refused() {
        let s = NodeSettings::default();
        let mut e = eni(1, [10, 0, 1, 5], "10.0.1.0/24");
        e.route_table = 254;
        let err = eni_plan(&e, &s).unwrap_err();
        assert!(
            err.to_string().contains("route table 254 is reserved"),
            "{err}"
        );
        assert!(remove_eni_plan(&e).is_err(), "never flush main");
        let e = eni(0, [10, 0, 0, 10], "10.0.0.0/24");
        assert!(eni_plan(&e, &s).is_err());
        let e = eni(1, [10, 0, 2, 5], "10.0.1.0/24");
        assert_eq!(
            eni_plan(&e, &s).unwrap_err().to_string(),
            "cannot wire ENI device 1 (02:00:00:00:00:11): primary IP 10.0.2.5 is outside subnet 10.0.1.0/24"
        );
        let mut twice = spec(s);
        twice.secondaries[1].route_table = 2;
        let err = node_plan(&twice).unwrap_err();
        assert!(err.to_string().contains("route table 2 is also"), "{err}");
    }

    fn arb_secondaries() -> impl Strategy<Value = Vec<EniWiring>> {
        // Distinct device numbers 1..15, each with an address in its own /24 (or /20) subnet.
        proptest::collection::btree_map(1u32..15, (any::<u8>(), prop::bool::ANY, 1u32..4), 0..8)
            .prop_map(|m| {
                m.into_iter()
                    .map(|(d, (host, wide, card))| {
                        let (subnet, ip) = if wide {
                            (
                                Ipv4Cidr::new(Ipv4Addr::new(10, 1, (d as u8) << 4, 0), 20).unwrap(),
                                Ipv4Addr::new(10, 1, (d as u8) << 4, host.max(2)),
                            )
                        } else {
                            (
                                Ipv4Cidr::new(Ipv4Addr::new(10, 2, d as u8, 0), 24).unwrap(),
                                Ipv4Addr::new(10, 2, d as u8, host.max(2)),
                            )
                        };
                        EniWiring {
                            device_number: d,
                            mac: MacAddr([2, 0, 0, 0, card as u8, d as u8]),
                            primary_ip: ip,
                            subnet,
                            route_table: route_table_id(if card == 1 { 0 } else { card }, d),
                        }
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn every_secondary_eni_gets_exactly_its_table_and_rule(secondaries in arb_secondaries()) {
            let s = NodeSpec { secondaries: secondaries.clone(), ..spec(NodeSettings::default()) };
            let ops = node_plan(&s).unwrap();
            for e in &secondaries {
                let gw = ipv4_gateway(e.subnet);
                let mine: Vec<&NodeOp> = ops.iter().filter(|o| match o {
                    NodeOp::SetMtu { link, .. } | NodeOp::LinkUp { link } | NodeOp::EniAddress { link, .. }
                    | NodeOp::GatewayRoute { link, .. } | NodeOp::DefaultRoute { link, .. }
                    | NodeOp::DeleteSubnetRoute { link, .. } | NodeOp::RpFilter { link, .. } => *link == e.link(),
                    NodeOp::AddRule { rule: NodeRule::From(ip), .. } => *ip == e.primary_ip,
                    _ => false,
                }).collect();
                prop_assert_eq!(mine.len(), 7);
                for o in &mine {
                    match o {
                        NodeOp::GatewayRoute { gateway, table, .. } | NodeOp::DefaultRoute { gateway, table, .. } => {
                            prop_assert_eq!(*table, e.route_table);
                            prop_assert_eq!(*gateway, gw);
                            prop_assert!(e.subnet.contains(*gateway) && *gateway != e.primary_ip);
                        }
                        NodeOp::AddRule { priority, table, .. } => {
                            prop_assert_eq!(*priority, ENI_PRIMARY_IP_RULE_PRIORITY);
                            prop_assert_eq!(*table, e.route_table);
                        }
                        NodeOp::EniAddress { addr, prefix_len, .. } => {
                            prop_assert_eq!(*addr, e.primary_ip);
                            prop_assert_eq!(*prefix_len, e.subnet.prefix_len());
                        }
                        NodeOp::DeleteSubnetRoute { subnet, src, .. } => {
                            prop_assert_eq!(*subnet, e.subnet);
                            prop_assert_eq!(*src, e.primary_ip);
                        }
                        _ => {}
                    }
                }
            }
            // No step names a table that is not some ENI's, and no ENI step touches main.
            let tables: Vec<u32> = secondaries.iter().map(|e| e.route_table).collect();
            for o in &ops {
                if let NodeOp::GatewayRoute { table, .. } | NodeOp::DefaultRoute { table, .. } = o {
                    prop_assert!(tables.contains(table));
                }
                if let NodeOp::AddRule { priority: ENI_PRIMARY_IP_RULE_PRIORITY, table, .. } = o {
                    prop_assert!(tables.contains(table));
                }
            }
        }

        #[test]
        fn removal_undoes_what_the_eni_plan_added(secondaries in arb_secondaries()) {
            for e in &secondaries {
                let add = eni_plan(e, &NodeSettings::default()).unwrap();
                let remove = remove_eni_plan(e).unwrap();
                for op in &add {
                    let undone = match op {
                        NodeOp::AddRule { priority, rule, .. } => remove.iter().any(|r| match r {
                            NodeOp::DeleteRules { priority: p, rule: sel } => sel == rule && p.is_none_or(|p| p == *priority),
                            _ => false,
                        }),
                        NodeOp::GatewayRoute { table, .. } | NodeOp::DefaultRoute { table, .. } =>
                            remove.contains(&NodeOp::FlushTable { table: *table }),
                        // Link state and the address belong to the link, which goes with the ENI.
                        _ => true,
                    };
                    prop_assert!(undone, "{} is not undone by {:?}", op, remove);
                }
                // Removal touches nothing of another ENI.
                for other in secondaries.iter().filter(|o| o.device_number != e.device_number) {
                    let flushes_other = remove.contains(&NodeOp::FlushTable { table: other.route_table });
                    let drops_other = remove.iter().any(|r| matches!(r, NodeOp::DeleteRules { rule: NodeRule::From(ip), .. } if *ip == other.primary_ip));
                    prop_assert!(!flushes_other && !drops_other, "removing {} touches {}", e.link(), other.link());
                }
            }
        }
    }
}
