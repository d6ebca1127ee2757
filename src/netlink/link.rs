//! Links: veth pairs, up/down, MTU, MAC, namespace moves, lookup, delete, list.

use std::os::fd::{AsFd, AsRawFd};

use super::error::{libc_errno, Cause, Error, Result};
use super::netns::Netns;
use super::types::AF_UNSPEC;
use super::wire::{
    attrs, Malformed, Msg, MsgBuf, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use super::{deleted, Netlink};
use crate::net::MacAddr;

pub(crate) const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_TXQLEN: u16 = 13;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IF_OPER_UP: u8 = 6;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
/// `RTEXT_FILTER_SKIP_STATS`: dumps without statistics are smaller and faster.
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;

/// `IFF_UP`.
pub const IFF_UP: u32 = 0x1;

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index (`ifindex`).
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, if the link has an Ethernet one.
    pub mac: Option<MacAddr>,
    /// MTU.
    pub mtu: u32,
    /// `IFF_*` flags.
    pub flags: u32,
    /// `IFLA_INFO_KIND`, e.g. `veth`, `vlan`; `None` for physical devices and loopback.
    pub kind: Option<String>,
    /// `IFLA_LINK`: for a veth, the peer's index (in the peer's namespace).
    pub link: Option<u32>,
    /// `IFLA_MASTER`.
    pub master: Option<u32>,
    /// `IFLA_OPERSTATE` (`IF_OPER_UP` = 6). The kernel sets it, and attaches the real queueing
    /// discipline, a little after the carrier comes up; packets sent before that are dropped.
    pub operstate: u8,
}

impl Link {
    /// True if administratively up (`IFF_UP`).
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    /// True once the link passes traffic (`IF_OPER_UP`).
    pub fn is_oper_up(&self) -> bool {
        self.operstate == IF_OPER_UP
    }
}

/// A veth pair to create: `ip link add <name> [mtu M] [address MAC] type veth peer name <peer_name>
/// [mtu M] [address MAC] [netns <ns>]`.
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    /// Name of the end created in the handle's namespace.
    pub name: &'a str,
    /// Name of the other end.
    pub peer_name: &'a str,
    /// MTU for both ends (the peer does not inherit it, so it is set on both).
    pub mtu: Option<u32>,
    /// MAC of the local end (random if `None`).
    pub mac: Option<MacAddr>,
    /// MAC of the peer end (random if `None`).
    pub peer_mac: Option<MacAddr>,
    /// Create the peer directly in this namespace (`IFLA_NET_NS_FD`), like upstream's
    /// `PeerNamespace`: no move afterwards, no name clash in the handle's namespace.
    pub peer_netns: Option<&'a Netns>,
    /// Transmit queue length of both ends (the kernel's default, 1000, if `None`).
    pub tx_queue_len: Option<u32>,
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = AF_UNSPEC;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty()
        || name.len() > 15
        || name.contains(['/', ' ', '\t', '\n', ':'])
        || name == "."
        || name == ".."
    {
        return Err(format!(
            "interface name {name:?} is not valid (1 to 15 bytes, no '/', ':' or whitespace)"
        ));
    }
    Ok(())
}

/// Encodes the veth `RTM_NEWLINK` request; `peer_ns_fd` is the raw descriptor of the peer's namespace.
pub(crate) fn veth_msg(spec: &VethSpec<'_>, peer_ns_fd: Option<i32>) -> MsgBuf {
    // Attribute order as iproute2 sends it, so the golden bytes match `ip link add` exactly.
    let mut m = MsgBuf::request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL);
    m.put(&ifinfomsg(0, 0, 0));
    if let Some(mtu) = spec.mtu {
        m.attr_u32(IFLA_MTU, mtu);
    }
    if let Some(q) = spec.tx_queue_len {
        m.attr_u32(IFLA_TXQLEN, q);
    }
    if let Some(mac) = spec.mac {
        m.attr(IFLA_ADDRESS, &mac.0);
    }
    m.attr_str(IFLA_IFNAME, spec.name);
    let info = m.nest_flags(IFLA_LINKINFO);
    m.attr(IFLA_INFO_KIND, b"veth");
    let data = m.nest_flags(IFLA_INFO_DATA);
    let peer = m.nest_flags(VETH_INFO_PEER);
    m.put(&ifinfomsg(0, 0, 0));
    if let Some(mtu) = spec.mtu {
        m.attr_u32(IFLA_MTU, mtu);
    }
    if let Some(q) = spec.tx_queue_len {
        m.attr_u32(IFLA_TXQLEN, q);
    }
    if let Some(mac) = spec.peer_mac {
        m.attr(IFLA_ADDRESS, &mac.0);
    }
    if let Some(fd) = peer_ns_fd {
        m.attr_u32(IFLA_NET_NS_FD, fd as u32);
    }
    m.attr_str(IFLA_IFNAME, spec.peer_name);
    m.end_nest(peer);
    m.end_nest(data);
    m.end_nest(info);
    m
}

/// Decodes an `RTM_NEWLINK` message.
pub fn parse_link(msg: &Msg<'_>) -> Result<Option<Link>, Malformed> {
    if msg.ty != RTM_NEWLINK || msg.payload.len() < 16 {
        return Ok(None);
    }
    let p = msg.payload;
    let mut link = Link {
        index: u32::from_ne_bytes([p[4], p[5], p[6], p[7]]),
        name: String::new(),
        mac: None,
        mtu: 0,
        flags: u32::from_ne_bytes([p[8], p[9], p[10], p[11]]),
        kind: None,
        link: None,
        master: None,
        operstate: 0,
    };
    for a in attrs(&p[16..]) {
        let a = a?;
        match a.ty {
            IFLA_IFNAME => link.name = a.str().to_string(),
            IFLA_ADDRESS if a.data.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(a.data);
                link.mac = Some(MacAddr(mac));
            }
            IFLA_MTU => link.mtu = a.u32(),
            IFLA_LINK => link.link = Some(a.u32()),
            IFLA_MASTER => link.master = Some(a.u32()),
            IFLA_OPERSTATE => link.operstate = a.u8(),
            IFLA_LINKINFO => {
                for i in a.nested() {
                    let i = i?;
                    if i.ty == IFLA_INFO_KIND {
                        link.kind = Some(i.str().to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Some(link))
}

impl Netlink {
    /// Creates a veth pair; with [`VethSpec::peer_netns`] the peer is created directly in that
    /// namespace. `ip link add <name> mtu M type veth peer name <peer> mtu M netns <ns>`.
    pub fn add_veth(&mut self, spec: &VethSpec<'_>) -> Result<()> {
        let op = || {
            let mut s = format!("add veth {} peer {}", spec.name, spec.peer_name);
            if let Some(ns) = spec.peer_netns {
                s.push_str(&format!(" netns {}", ns.path().display()));
            }
            s
        };
        for n in [spec.name, spec.peer_name] {
            check_name(n).map_err(|e| Error::new(op(), Cause::Invalid(e)))?;
        }
        let fd = spec.peer_netns.map(|ns| ns.as_fd().as_raw_fd());
        self.ack(veth_msg(spec, fd), |_| op())
    }

    /// Looks a link up by name: `ip link show dev <name>`. `Ok(None)` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let op = || format!("get link {name}");
        check_name(name).map_err(|e| Error::new(op(), Cause::Invalid(e)))?;
        let mut m = MsgBuf::request(RTM_GETLINK, NLM_F_REQUEST);
        m.put(&ifinfomsg(0, 0, 0));
        m.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        m.attr_str(IFLA_IFNAME, name);
        self.get_one(m, op)
    }

    /// The index of link `name`; an error naming the link if there is none.
    pub fn link_index(&mut self, name: &str) -> Result<u32> {
        match self.link_by_name(name)? {
            Some(l) => Ok(l.index),
            None => Err(Error::new(format!("get link {name}"), Cause::NotFound)),
        }
    }

    /// Looks a link up by index. `Ok(None)` if there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let mut m = MsgBuf::request(RTM_GETLINK, NLM_F_REQUEST);
        m.put(&ifinfomsg(index, 0, 0));
        m.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        self.get_one(m, || format!("get link index {index}"))
    }

    /// Looks a link up by MAC address (the first match). `Ok(None)` if there is none.
    pub fn link_by_mac(&mut self, mac: MacAddr) -> Result<Option<Link>> {
        Ok(self.links()?.into_iter().find(|l| l.mac == Some(mac)))
    }

    fn get_one(&mut self, m: MsgBuf, op: impl FnOnce() -> String) -> Result<Option<Link>> {
        match self.dump(m, op, parse_link) {
            Ok(mut v) => Ok(v.pop()),
            Err(e) if e.errno() == Some(libc_errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// All links: `ip link show`.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let mut m = MsgBuf::request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP);
        m.put(&ifinfomsg(0, 0, 0));
        m.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        self.dump(m, || "list links".into(), parse_link)
    }

    fn set_link(
        &mut self,
        index: u32,
        flags: u32,
        change: u32,
        what: &str,
        attrs: impl FnOnce(&mut MsgBuf),
    ) -> Result<()> {
        let mut m = MsgBuf::request(RTM_NEWLINK, NLM_F_REQUEST);
        m.put(&ifinfomsg(index, flags, change));
        attrs(&mut m);
        self.ack(m, |s| format!("set link {} {what}", s.dev_name(index)))
    }

    /// `ip link set dev <index> up`.
    pub fn set_link_up(&mut self, index: u32) -> Result<()> {
        self.set_link(index, IFF_UP, IFF_UP, "up", |_| {})
    }

    /// `ip link set dev <index> down`.
    pub fn set_link_down(&mut self, index: u32) -> Result<()> {
        self.set_link(index, 0, IFF_UP, "down", |_| {})
    }

    /// `ip link set dev <index> mtu <mtu>`.
    pub fn set_link_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set_link(index, 0, 0, &format!("mtu {mtu}"), |m| {
            m.attr_u32(IFLA_MTU, mtu)
        })
    }

    /// `ip link set dev <index> address <mac>`.
    pub fn set_link_mac(&mut self, index: u32, mac: MacAddr) -> Result<()> {
        self.set_link(index, 0, 0, &format!("address {mac}"), |m| {
            m.attr(IFLA_ADDRESS, &mac.0)
        })
    }

    /// `ip link set dev <index> name <name>` (the link must be down).
    pub fn set_link_name(&mut self, index: u32, name: &str) -> Result<()> {
        check_name(name)
            .map_err(|e| Error::new(format!("rename link index {index}"), Cause::Invalid(e)))?;
        self.set_link(index, 0, 0, &format!("name {name}"), |m| {
            m.attr_str(IFLA_IFNAME, name)
        })
    }

    /// `ip link set dev <index> netns <ns>`.
    pub fn set_link_netns(&mut self, index: u32, ns: &Netns) -> Result<()> {
        let fd = ns.as_fd().as_raw_fd() as u32;
        let what = format!("netns {}", ns.path().display());
        self.set_link(index, 0, 0, &what, |m| m.attr_u32(IFLA_NET_NS_FD, fd))
    }

    /// `ip link del dev <index>`. Deleting one end of a veth deletes both. `Ok(false)` if the
    /// link was not there.
    pub fn delete_link(&mut self, index: u32) -> Result<bool> {
        let mut m = MsgBuf::request(RTM_DELLINK, NLM_F_REQUEST);
        m.put(&ifinfomsg(index, 0, 0));
        deleted(self.ack(m, |s| format!("delete link {}", s.dev_name(index))))
    }

    /// `ip link del dev <name>`. `Ok(false)` if there is no such link.
    pub fn delete_link_by_name(&mut self, name: &str) -> Result<bool> {
        let op = || format!("delete link {name}");
        check_name(name).map_err(|e| Error::new(op(), Cause::Invalid(e)))?;
        let mut m = MsgBuf::request(RTM_DELLINK, NLM_F_REQUEST);
        m.put(&ifinfomsg(0, 0, 0));
        m.attr_str(IFLA_IFNAME, name);
        deleted(self.ack(m, |_| op()))
    }
}
