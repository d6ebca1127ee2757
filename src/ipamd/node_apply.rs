//! [`NodeKernel`]: the node-wiring plan ([`super::node_plan`]) applied through rtnetlink
//! ([`crate::netlink`]), nftables ([`crate::nft`]) and `/proc/sys` ([`crate::sysctl`]).
//!
//! The handle works on one network namespace: the calling thread's ([`NodeKernel::open`]) or a
//! given one ([`NodeKernel::open_in`]; sysctls are then written from inside it, since `net.*` keys
//! belong to the namespace of the thread that opens them). Every step is idempotent: values are
//! set, routes replaced, rules added with "already there" counting as done, and deletions succeed
//! when the object is already gone. Links are found by MAC, waiting a little for a hot-plugged ENI
//! to appear (upstream: 5 attempts, 3 s apart).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::node_plan::{NodeOp, NodeRule};
use crate::net::{IpNet, MacAddr};
use crate::netlink::{self, Family, Link, Netlink, Netns, Route, Rule};
use crate::nft::Nft;
use crate::sysctl::{self, Sysctl};

/// Why a step failed.
#[derive(Debug)]
pub enum NodeWiringCause {
    /// No link has the ENI's MAC address (after `attempts` looks).
    LinkNotFound {
        /// The MAC looked for.
        mac: MacAddr,
        /// How many times the links were listed.
        attempts: u32,
    },
    /// A route-netlink operation (or entering the namespace) failed.
    Netlink(netlink::Error),
    /// The nftables transaction failed.
    Nft(netlink::Error),
    /// Writing a sysctl failed.
    Sysctl(sysctl::Error),
}

impl fmt::Display for NodeWiringCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeWiringCause::LinkNotFound { mac, attempts } => write!(
                f,
                "no link has MAC address {mac} (looked {attempts} time{})",
                if *attempts == 1 { "" } else { "s" }
            ),
            NodeWiringCause::Netlink(e) | NodeWiringCause::Nft(e) => write!(f, "{e}"),
            NodeWiringCause::Sysctl(e) => write!(f, "{e}"),
        }
    }
}

/// A failed step of a node-wiring plan: which step (the ones before it were applied), and why.
#[derive(Debug)]
pub struct NodeWiringError {
    /// Index of the failed step in the plan.
    pub index: usize,
    /// The step.
    pub op: Box<NodeOp>,
    /// Why it failed.
    pub cause: NodeWiringCause,
}

impl NodeWiringError {
    /// The errno the kernel (or a system call) returned, if any.
    pub fn errno(&self) -> Option<i32> {
        match &self.cause {
            NodeWiringCause::LinkNotFound { .. } => None,
            NodeWiringCause::Netlink(e) | NodeWiringCause::Nft(e) => e.errno(),
            NodeWiringCause::Sysctl(e) => match &e.cause {
                sysctl::ErrorCause::Io(io) => io.raw_os_error(),
                sysctl::ErrorCause::Invalid(_) => None,
            },
        }
    }
}

impl fmt::Display for NodeWiringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node wiring step {} ({}): {}",
            self.index + 1,
            self.op,
            self.cause
        )
    }
}

impl std::error::Error for NodeWiringError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            NodeWiringCause::LinkNotFound { .. } => None,
            NodeWiringCause::Netlink(e) | NodeWiringCause::Nft(e) => Some(e),
            NodeWiringCause::Sysctl(e) => Some(e),
        }
    }
}

type Step<T = ()> = Result<T, NodeWiringCause>;

fn nl<T>(r: netlink::Result<T>) -> Step<T> {
    r.map_err(NodeWiringCause::Netlink)
}

/// The node's kernel: one route-netlink socket, an nftables socket opened on first use, and the
/// sysctl tree, all of one network namespace.
#[derive(Debug)]
pub struct NodeKernel {
    ns: Option<Netns>,
    nl: Netlink,
    nft: Option<Nft>,
    sysctl: Sysctl,
    link_attempts: u32,
    link_interval: Duration,
    links: HashMap<MacAddr, Link>,
}

/// Upstream's `maxAttemptsLinkByMac`.
pub const LINK_ATTEMPTS: u32 = 5;
/// Upstream's `retryLinkByMacInterval`.
pub const LINK_INTERVAL: Duration = Duration::from_secs(3);

impl NodeKernel {
    /// Works on the calling thread's network namespace.
    pub fn open() -> Result<NodeKernel, netlink::Error> {
        Ok(NodeKernel {
            ns: None,
            nl: Netlink::open()?,
            nft: None,
            sysctl: Sysctl::new(),
            link_attempts: LINK_ATTEMPTS,
            link_interval: LINK_INTERVAL,
            links: HashMap::new(),
        })
    }

    /// Works on `ns`, from any thread.
    pub fn open_in(ns: Netns) -> Result<NodeKernel, netlink::Error> {
        let nl = Netlink::open_in(&ns)?;
        Ok(NodeKernel {
            ns: Some(ns),
            nl,
            nft: None,
            sysctl: Sysctl::new(),
            link_attempts: LINK_ATTEMPTS,
            link_interval: LINK_INTERVAL,
            links: HashMap::new(),
        })
    }

    /// How often (at least once) and how far apart links are listed when a MAC is not found.
    pub fn with_link_lookup(mut self, attempts: u32, interval: Duration) -> NodeKernel {
        self.link_attempts = attempts.max(1);
        self.link_interval = interval;
        self
    }

    /// Runs `ops` in order, stopping at the first failure.
    pub fn apply(&mut self, ops: &[NodeOp]) -> Result<(), NodeWiringError> {
        self.links.clear();
        for (index, op) in ops.iter().enumerate() {
            log::debug!("node wiring: {op}");
            self.run(op).map_err(|cause| NodeWiringError {
                index,
                op: Box::new(op.clone()),
                cause,
            })?;
        }
        Ok(())
    }

    /// The name of the link with `mac` (e.g. to report the primary interface).
    pub fn link_name(&mut self, mac: MacAddr) -> Result<String, NodeWiringCause> {
        self.links.remove(&mac);
        Ok(self.link(mac)?.name)
    }

    /// The link with `mac`: a real device rather than a VLAN on it, if both carry the MAC.
    fn link(&mut self, mac: MacAddr) -> Step<Link> {
        if let Some(l) = self.links.get(&mac) {
            return Ok(l.clone());
        }
        for attempt in 1..=self.link_attempts {
            if attempt > 1 {
                std::thread::sleep(self.link_interval);
            }
            let links = nl(self.nl.links())?;
            let mut found: Vec<&Link> = links.iter().filter(|l| l.mac == Some(mac)).collect();
            found.sort_by_key(|l| (l.kind.as_deref() == Some("vlan"), l.index));
            if let Some(l) = found.first() {
                let l = (*l).clone();
                self.links.insert(mac, l.clone());
                return Ok(l);
            }
        }
        Err(NodeWiringCause::LinkNotFound {
            mac,
            attempts: self.link_attempts,
        })
    }

    fn with_sysctl<T>(&self, f: impl FnOnce(&Sysctl) -> T) -> Step<T> {
        match &self.ns {
            Some(ns) => nl(ns.run(|| f(&self.sysctl))),
            None => Ok(f(&self.sysctl)),
        }
    }

    fn open_nft(&self) -> Step<Nft> {
        match &self.ns {
            Some(ns) => Nft::open_in(ns),
            None => Nft::open(),
        }
        .map_err(NodeWiringCause::Nft)
    }

    fn run(&mut self, op: &NodeOp) -> Step {
        match op {
            NodeOp::SetMtu { link, mtu } => {
                let l = self.link(link.mac)?;
                if l.mtu == *mtu {
                    return Ok(());
                }
                nl(self.nl.set_link_mtu(l.index, *mtu))
            }
            NodeOp::LinkUp { link } => {
                let l = self.link(link.mac)?;
                nl(self.nl.set_link_up(l.index))
            }
            NodeOp::EniAddress {
                link,
                addr,
                prefix_len,
            } => {
                let l = self.link(link.mac)?;
                let want = nl(IpNet::new(IpAddr::V4(*addr), *prefix_len).map_err(|e| {
                    netlink::Error::new("address", netlink::Cause::Invalid(e.to_string()))
                }))?;
                let mut have = nl(self.nl.addresses(Some(Family::V4), Some(l.index)))?;
                // Others go first: deleting a primary address after adding a second one in the same
                // subnet would take the new (secondary) one with it. For the same reason the list is
                // read again after a deletion (without promote_secondaries the wanted address may
                // have gone with a stale primary).
                let stale: Vec<IpNet> = have
                    .iter()
                    .map(|a| a.prefix)
                    .filter(|p| *p != want && is_global(p.addr()))
                    .collect();
                for p in &stale {
                    nl(self.nl.delete_address(l.index, *p))?;
                }
                if !stale.is_empty() {
                    have = nl(self.nl.addresses(Some(Family::V4), Some(l.index)))?;
                }
                if have.iter().any(|a| a.prefix == want) {
                    return Ok(());
                }
                match self.nl.add_address(l.index, want) {
                    Err(e) if e.is_exists() => Ok(()),
                    r => nl(r),
                }
            }
            NodeOp::GatewayRoute {
                link,
                gateway,
                table,
            } => {
                let l = self.link(link.mac)?;
                let r = Route::link(IpNet::host(IpAddr::V4(*gateway)), l.index).with_table(*table);
                nl(self.nl.replace_route(&r))
            }
            NodeOp::DefaultRoute {
                link,
                gateway,
                table,
            } => {
                let l = self.link(link.mac)?;
                let r = Route::via(IpNet::default_for(false), IpAddr::V4(*gateway), l.index)
                    .with_table(*table);
                nl(self.nl.replace_route(&r))
            }
            NodeOp::DeleteSubnetRoute { link, subnet, src } => {
                let l = self.link(link.mac)?;
                let r = Route::link(IpNet::from(*subnet), l.index).with_src(IpAddr::V4(*src));
                nl(self.nl.delete_route(&r)).map(drop)
            }
            NodeOp::FlushTable { table } => {
                let routes = nl(self.nl.routes(Family::V4, *table))?;
                for r in routes {
                    nl(self.nl.delete_route(&r))?;
                }
                Ok(())
            }
            NodeOp::AddRule {
                priority,
                rule,
                table,
            } => nl(self.nl.add_rule(&kernel_rule(*priority, *rule, *table))),
            NodeOp::DeleteRules { priority, rule } => {
                let rules = nl(self.nl.rules(Family::V4))?;
                for r in rules
                    .iter()
                    .filter(|r| selects(r, *rule) && priority.is_none_or(|p| r.priority == Some(p)))
                {
                    nl(self.nl.delete_rule(r))?;
                }
                Ok(())
            }
            NodeOp::SyncDstRules {
                priority,
                table,
                dsts,
            } => {
                let rules = nl(self.nl.rules(Family::V4))?;
                for r in rules.iter().filter(|r| {
                    r.priority == Some(*priority)
                        && r.table == *table
                        && !dsts
                            .iter()
                            .any(|d| **r == kernel_rule(*priority, NodeRule::To(*d), *table))
                }) {
                    nl(self.nl.delete_rule(r))?;
                }
                for d in dsts {
                    nl(self
                        .nl
                        .add_rule(&kernel_rule(*priority, NodeRule::To(*d), *table)))?;
                }
                Ok(())
            }
            NodeOp::RpFilter { link, mode } => {
                let name = self.link(link.mac)?.name;
                self.with_sysctl(|s| s.set_rp_filter(&name, *mode))?
                    .map_err(NodeWiringCause::Sysctl)
            }
            NodeOp::TcpEarlyDemux { on } => self
                .with_sysctl(|s| match s.get("net/ipv4/tcp_early_demux") {
                    Ok(_) => s.set_tcp_early_demux(*on),
                    // Older kernels have no such key; upstream skips it too.
                    Err(_) => Ok(()),
                })?
                .map_err(NodeWiringCause::Sysctl),
            NodeOp::IpForward => self
                .with_sysctl(|s| s.set_ip_forward(true))?
                .map_err(NodeWiringCause::Sysctl),
            NodeOp::Snat(plan) => {
                let name = self.link(plan.primary.mac)?.name;
                let cfg = plan.config(&name);
                let mut nft = match self.nft.take() {
                    Some(n) => n,
                    None => self.open_nft()?,
                };
                let outcome = nft.apply(&cfg);
                self.nft = Some(nft);
                let outcome = outcome.map_err(NodeWiringCause::Nft)?;
                log::debug!("nftables table ip aws-cni: {outcome:?}");
                Ok(())
            }
        }
    }
}

/// Global unicast in upstream's sense (`net.IP.IsGlobalUnicast`): not link-local, loopback,
/// multicast, broadcast or unspecified.
fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_link_local()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_unspecified())
        }
        IpAddr::V6(_) => false,
    }
}

fn host(ip: Ipv4Addr) -> IpNet {
    IpNet::host(IpAddr::V4(ip))
}

/// The kernel rule for a plan rule.
fn kernel_rule(priority: u32, rule: NodeRule, table: u32) -> Rule {
    match rule {
        NodeRule::FwMark { mark, mask } => Rule {
            priority: Some(priority),
            fwmark: Some(mark),
            fwmask: Some(mask),
            ..Rule::new(Family::V4, table)
        },
        NodeRule::From(ip) => Rule::from_prefix(host(ip), priority, table),
        NodeRule::To(c) => Rule::to_prefix(IpNet::from(c), priority, table),
    }
}

/// Whether kernel rule `r` is one [`NodeOp::DeleteRules`] with `rule` removes: for `From`, any rule
/// from that address (upstream's `DeleteRulesBySrc`); otherwise a rule with just that selector.
fn selects(r: &Rule, rule: NodeRule) -> bool {
    match rule {
        NodeRule::FwMark { mark, mask } => {
            r.fwmark == Some(mark) && r.fwmask == Some(mask) && r.src.is_none() && r.dst.is_none()
        }
        NodeRule::From(ip) => r.src.map(|s| s.addr()) == Some(IpAddr::V4(ip)),
        NodeRule::To(c) => r.dst == Some(IpNet::from(c)) && r.src.is_none() && r.fwmark.is_none(),
    }
}
