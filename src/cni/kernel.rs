//! [`PodNet`] on rtnetlink ([`crate::netlink`]).
//!
//! One route-netlink socket in the host namespace (the plugin's own) and one per pod namespace, opened once by
//! entering the namespace on this thread only for the moment the socket is created. All steps then go through
//! those sockets: no namespace switching per step. While applying a plan, a link looked up once is remembered (its
//! index and MAC do not change while it exists), so the steps after the veth's creation do not ask the kernel for
//! it again; a step that creates or deletes a link forgets them all. Verification always asks the kernel.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::apply::{NetCause, NetError, PodNet};
use super::plan::{Op, RuleSelector, GATEWAY, MAIN_TABLE};
use crate::net::IpNet;
use crate::netlink::{self, Family, Link, Netlink, Netns, Route, RouteScope, Rule};
use crate::sysctl::Sysctl;

/// The kernel, seen from the plugin's (host) namespace.
#[derive(Debug)]
pub struct KernelNet {
    host_ns: Netns,
    host: Netlink,
    pods: HashMap<String, Netlink>,
    /// Links looked up while applying, by (pod namespace or "" for the host, name).
    seen: HashMap<(String, String), Link>,
}

impl KernelNet {
    /// Opens route netlink in the calling thread's namespace (the host side).
    pub fn open() -> Result<KernelNet, netlink::Error> {
        Ok(KernelNet {
            host_ns: Netns::current()?,
            host: Netlink::open()?,
            pods: HashMap::new(),
            seen: HashMap::new(),
        })
    }

    /// The pod namespace's handle, opened on first use.
    fn pod(&mut self, netns: &str) -> Result<&mut Netlink, netlink::Error> {
        if !self.pods.contains_key(netns) {
            let ns = Netns::open(netns)?;
            let handle = Netlink::open_in(&ns)?;
            self.pods.insert(netns.to_string(), handle);
        }
        self.pods
            .get_mut(netns)
            .ok_or_else(|| netlink::Error::new(format!("open {netns}"), netlink::Cause::NotFound))
    }

    fn host_link(&mut self, name: &str) -> Result<Link, NetCause> {
        match self.host.link_by_name(name) {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(format!("host link {name} does not exist").into()),
            Err(e) => Err(e.into()),
        }
    }

    fn pod_link(&mut self, netns: &str, ifname: &str) -> Result<Link, NetCause> {
        match self
            .pod(netns)
            .map_err(NetCause::from)?
            .link_by_name(ifname)
        {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(format!("{ifname} does not exist in {netns}").into()),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Self::host_link`], remembered until a step creates or deletes a link (for applying only).
    fn host_link_seen(&mut self, name: &str) -> Result<Link, NetCause> {
        let key = (String::new(), name.to_string());
        if let Some(l) = self.seen.get(&key) {
            return Ok(l.clone());
        }
        let l = self.host_link(name)?;
        self.seen.insert(key, l.clone());
        Ok(l)
    }

    /// [`Self::pod_link`], remembered until a step creates or deletes a link (for applying only).
    fn pod_link_seen(&mut self, netns: &str, ifname: &str) -> Result<Link, NetCause> {
        let key = (netns.to_string(), ifname.to_string());
        if let Some(l) = self.seen.get(&key) {
            return Ok(l.clone());
        }
        let l = self.pod_link(netns, ifname)?;
        self.seen.insert(key, l.clone());
        Ok(l)
    }

    /// Ok if the pod's main table has a route through `ifname` that `matches` (given the link index).
    fn pod_has_route(
        &mut self,
        netns: &str,
        ifname: &str,
        matches: impl Fn(&Route, u32) -> bool,
    ) -> Result<(), NetCause> {
        let l = self.pod_link(netns, ifname)?;
        let routes = self
            .pod(netns)
            .and_then(|p| p.routes(Family::V4, MAIN_TABLE))
            .map_err(NetCause::from)?;
        routes
            .iter()
            .any(|r| matches(r, l.index))
            .then_some(())
            .ok_or_else(|| "missing".into())
    }

    fn rule_for(priority: u32, selector: RuleSelector, table: u32) -> Rule {
        match selector {
            RuleSelector::To(ip) => Rule::to_prefix(host_net(ip), priority, table),
            RuleSelector::From(ip) => Rule::from_prefix(host_net(ip), priority, table),
        }
    }

    fn run(&mut self, op: &Op) -> Result<(), NetCause> {
        let gw = IpAddr::V4(GATEWAY);
        if matches!(
            op,
            Op::CreateVeth { .. } | Op::DeleteHostLink { .. } | Op::DeletePodLink { .. }
        ) {
            self.seen.clear();
        }
        match op {
            Op::DeleteHostLink { name } => self
                .host
                .delete_link_by_name(name)
                .map(drop)
                .map_err(NetCause::from),
            Op::DeletePodLink { netns, ifname } => {
                if !Path::new(netns).exists() {
                    return Ok(());
                }
                let pod = self.pod(netns).map_err(NetCause::from)?;
                pod.delete_link_by_name(ifname)
                    .map(drop)
                    .map_err(NetCause::from)
            }
            Op::CreateVeth {
                netns,
                pod_ifname,
                host_ifname,
                mtu,
            } => {
                // Borrow dance: the pod handle and the host namespace are both fields of self.
                if !self.pods.contains_key(netns.as_str()) {
                    self.pod(netns).map_err(NetCause::from)?;
                }
                let pod = self
                    .pods
                    .get_mut(netns.as_str())
                    .ok_or("pod namespace handle vanished")?;
                pod.add_veth(&netlink::VethSpec {
                    name: pod_ifname,
                    peer_name: host_ifname,
                    mtu: Some(*mtu),
                    mac: None,
                    peer_mac: None,
                    peer_netns: Some(&self.host_ns),
                    // Upstream's veths have no transmit queue length (0, the zero value of its
                    // netlink library's link attributes). Both ends use noqueue either way; a
                    // queueing qdisc added later without a limit of its own would take it.
                    tx_queue_len: Some(0),
                })
                .map_err(NetCause::from)
            }
            Op::SetHostVethSysctls { host_ifname } => {
                if !Path::new("/proc/sys/net/ipv6/conf")
                    .join(host_ifname)
                    .is_dir()
                {
                    return Ok(()); // IPv6 disabled on this host: nothing to set.
                }
                let sysctl = Sysctl::new();
                sysctl
                    .set_accept_ra(host_ifname, 0)
                    .and_then(|()| sysctl.set_accept_redirects(host_ifname, true))
                    .and_then(|()| sysctl.set_ipv6_forwarding(host_ifname, false))
                    .map_err(NetCause::from)
            }
            Op::HostLinkUp { host_ifname } => {
                let l = self.host_link_seen(host_ifname)?;
                self.host.set_link_up(l.index).map_err(NetCause::from)
            }
            Op::PodLinkUp { netns, ifname } => {
                let l = self.pod_link_seen(netns, ifname)?;
                self.pod(netns)
                    .and_then(|p| p.set_link_up(l.index))
                    .map_err(NetCause::from)
            }
            Op::PodAddress {
                netns,
                ifname,
                addr,
            } => {
                let l = self.pod_link_seen(netns, ifname)?;
                self.pod(netns)
                    .and_then(|p| p.replace_address(l.index, host_net(*addr)))
                    .map_err(NetCause::from)
            }
            Op::PodGatewayRoute { netns, ifname } => {
                let l = self.pod_link_seen(netns, ifname)?;
                self.pod(netns)
                    .and_then(|p| p.replace_route(&Route::link(host_net(GATEWAY), l.index)))
                    .map_err(NetCause::from)
            }
            Op::PodDefaultRoute { netns, ifname } => {
                let l = self.pod_link_seen(netns, ifname)?;
                self.pod(netns)
                    .and_then(|p| {
                        p.replace_route(&Route::via(IpNet::default_for(false), gw, l.index))
                    })
                    .map_err(NetCause::from)
            }
            Op::PodGatewayNeighbour {
                netns,
                ifname,
                host_ifname,
            } => {
                let mac = self.host_link_seen(host_ifname)?.mac.ok_or_else(|| {
                    NetCause::from(format!("host link {host_ifname} has no MAC address"))
                })?;
                let l = self.pod_link_seen(netns, ifname)?;
                self.pod(netns)
                    .and_then(|p| p.add_permanent_neighbour(l.index, gw, mac))
                    .map_err(NetCause::from)
            }
            Op::HostRoute { addr, host_ifname } => {
                let l = self.host_link_seen(host_ifname)?;
                self.host
                    .replace_route(&Route::link(host_net(*addr), l.index))
                    .map_err(NetCause::from)
            }
            Op::DeleteHostRoute { addr, link_index } => self
                .host
                .delete_route(&Route::link(host_net(*addr), *link_index))
                .map(drop)
                .map_err(NetCause::from),
            Op::AddRule {
                priority,
                selector,
                table,
            } => self
                .host
                .add_rule(&Self::rule_for(*priority, *selector, *table))
                .map_err(NetCause::from),
            Op::DeleteRules { priority, selector } => {
                // Table 0 matches any table; repeat until none is left (duplicates from older runs).
                let rule = Self::rule_for(*priority, *selector, 0);
                for _ in 0..64 {
                    match self.host.delete_rule(&rule) {
                        Ok(true) => continue,
                        Ok(false) => return Ok(()),
                        Err(e) => return Err(e.into()),
                    }
                }
                Err("more than 64 matching rules".into())
            }
        }
    }

    fn check(&mut self, op: &Op) -> Result<(), NetCause> {
        let gw = IpAddr::V4(GATEWAY);
        match op {
            Op::CreateVeth {
                netns,
                pod_ifname,
                host_ifname,
                mtu,
            } => {
                let pod = self.pod_link(netns, pod_ifname)?;
                let host = self.host_link(host_ifname)?;
                for l in [&pod, &host] {
                    if l.kind.as_deref() != Some("veth") {
                        return Err(format!("{} is {:?}, not a veth", l.name, l.kind).into());
                    }
                    if l.mtu != *mtu {
                        return Err(format!("{} has mtu {}, expected {mtu}", l.name, l.mtu).into());
                    }
                }
                if pod.link != Some(host.index) {
                    return Err(
                        format!("{pod_ifname} is not the peer of host link {host_ifname}").into(),
                    );
                }
                Ok(())
            }
            Op::HostLinkUp { host_ifname } => {
                let l = self.host_link(host_ifname)?;
                l.is_up()
                    .then_some(())
                    .ok_or_else(|| format!("{host_ifname} is down").into())
            }
            Op::PodLinkUp { netns, ifname } => {
                let l = self.pod_link(netns, ifname)?;
                l.is_up()
                    .then_some(())
                    .ok_or_else(|| format!("{ifname} is down").into())
            }
            Op::PodAddress {
                netns,
                ifname,
                addr,
            } => {
                let l = self.pod_link(netns, ifname)?;
                let addrs = self
                    .pod(netns)
                    .and_then(|p| p.addresses(Some(Family::V4), Some(l.index)))
                    .map_err(NetCause::from)?;
                if addrs.iter().any(|a| a.prefix == host_net(*addr)) {
                    Ok(())
                } else {
                    let have: Vec<String> = addrs.iter().map(|a| a.prefix.to_string()).collect();
                    Err(format!("missing; {ifname} has {have:?}").into())
                }
            }
            Op::PodGatewayRoute { netns, ifname } => self.pod_has_route(netns, ifname, |r, oif| {
                r.dst == host_net(GATEWAY) && r.oif == Some(oif) && r.scope == RouteScope::Link
            }),
            Op::PodDefaultRoute { netns, ifname } => self.pod_has_route(netns, ifname, |r, oif| {
                r.dst.is_default() && r.gateway == Some(gw) && r.oif == Some(oif)
            }),
            Op::PodGatewayNeighbour {
                netns,
                ifname,
                host_ifname,
            } => {
                let mac = self.host_link(host_ifname)?.mac;
                let l = self.pod_link(netns, ifname)?;
                let neigh = self
                    .pod(netns)
                    .and_then(|p| p.neighbours(Some(Family::V4), Some(l.index)))
                    .map_err(NetCause::from)?;
                match neigh.iter().find(|n| n.ip == gw) {
                    None => Err("missing".into()),
                    Some(n) if n.state & NUD_PERMANENT == 0 => {
                        Err(format!("state {:#x} is not permanent", n.state).into())
                    }
                    Some(n) if n.mac != mac => Err(format!(
                        "lladdr {} is not the MAC of {host_ifname}",
                        n.mac.map(|m| m.to_string()).unwrap_or_default()
                    )
                    .into()),
                    Some(_) => Ok(()),
                }
            }
            Op::HostRoute { addr, host_ifname } => {
                let l = self.host_link(host_ifname)?;
                let routes = self
                    .host
                    .routes(Family::V4, MAIN_TABLE)
                    .map_err(NetCause::from)?;
                match routes.iter().find(|r| r.dst == host_net(*addr)) {
                    None => Err("missing".into()),
                    Some(r) if r.oif != Some(l.index) => {
                        Err(format!("goes out of link index {:?}", r.oif).into())
                    }
                    Some(r) if r.scope != RouteScope::Link => {
                        Err(format!("scope {:?}, not link", r.scope).into())
                    }
                    Some(_) => Ok(()),
                }
            }
            Op::AddRule {
                priority,
                selector,
                table,
            } => {
                let want = Self::rule_for(*priority, *selector, *table);
                let rules = self.host.rules(Family::V4).map_err(NetCause::from)?;
                if rules.contains(&want) {
                    return Ok(());
                }
                let same_selector = rules.iter().find(|r| {
                    r.priority == want.priority && r.src == want.src && r.dst == want.dst
                });
                match same_selector {
                    Some(r) => Err(format!("looks up table {}, expected {table}", r.table).into()),
                    None => Err("missing".into()),
                }
            }
            // Steps that leave nothing to verify.
            Op::DeleteHostLink { .. }
            | Op::DeletePodLink { .. }
            | Op::DeleteHostRoute { .. }
            | Op::DeleteRules { .. }
            | Op::SetHostVethSysctls { .. } => Ok(()),
        }
    }
}

/// `NUD_PERMANENT` (the netlink module does not re-export its constant).
const NUD_PERMANENT: u16 = 0x80;

fn host_net(ip: Ipv4Addr) -> IpNet {
    IpNet::host(IpAddr::V4(ip))
}

impl PodNet for KernelNet {
    fn apply(&mut self, op: &Op) -> Result<(), NetError> {
        self.run(op).map_err(|e| NetError::new(op, e))
    }

    fn verify(&mut self, op: &Op) -> Result<(), NetError> {
        self.check(op).map_err(|e| NetError::new(op, e))
    }

    fn host_mac(&mut self, host_ifname: &str) -> Result<String, NetError> {
        let step = || format!("read MAC of {host_ifname}");
        match self.host_link_seen(host_ifname) {
            Ok(Link { mac: Some(mac), .. }) => Ok(mac.to_string()),
            Ok(_) => Err(NetError {
                step: step(),
                cause: "link has no MAC address".into(),
            }),
            Err(cause) => Err(NetError {
                step: step(),
                cause,
            }),
        }
    }

    fn netns_exists(&mut self, netns: &str) -> bool {
        self.pods.contains_key(netns) || Netns::open(netns).is_ok()
    }

    fn host_veth_index(&mut self, netns: &str, ifname: &str) -> Option<u32> {
        let l = self.pod_link(netns, ifname).ok()?;
        if l.kind.as_deref() == Some("veth") {
            l.link
        } else {
            None
        }
    }
}
