//! Interface addresses, IPv4 and IPv6.

use super::error::Result;
use super::types::{ip_bytes, ip_from, Family, AF_INET6, AF_UNSPEC};
use super::wire::{
    attrs, Malformed, Msg, MsgBuf, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use super::{deleted, Netlink};
use crate::net::IpNet;

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
/// `IFA_F_NODAD`: no duplicate address detection for IPv6 (the address is usable at once).
pub const IFA_F_NODAD: u32 = 0x02;

/// An address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// Interface index.
    pub index: u32,
    /// Address and prefix length, e.g. `10.0.0.5/32`.
    pub prefix: IpNet,
    /// `RT_SCOPE_*` (0 = global, 253 = link, 254 = host).
    pub scope: u8,
    /// `IFA_F_*` flags.
    pub flags: u32,
}

fn ifaddrmsg(family: u8, prefix_len: u8, flags: u8, scope: u8, index: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[0] = family;
    h[1] = prefix_len;
    h[2] = flags;
    h[3] = scope;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h
}

/// Encodes `RTM_NEWADDR`/`RTM_DELADDR` for `prefix` on `index`. IPv6 addresses get `nodad`.
pub(crate) fn addr_msg(ty: u16, flags: u16, index: u32, prefix: IpNet) -> MsgBuf {
    let mut m = MsgBuf::request(ty, flags);
    let family = Family::of(prefix.addr()).af();
    let ifa_flags = if family == AF_INET6 {
        IFA_F_NODAD as u8
    } else {
        0
    };
    m.put(&ifaddrmsg(family, prefix.prefix_len(), ifa_flags, 0, index));
    let b = ip_bytes(&prefix.addr());
    m.attr(IFA_LOCAL, &b);
    m.attr(IFA_ADDRESS, &b);
    m
}

/// Decodes an `RTM_NEWADDR` message (`None` for another type or an unusable one).
pub fn parse_addr(msg: &Msg<'_>) -> Result<Option<Address>, Malformed> {
    let p = msg.payload;
    if msg.ty != RTM_NEWADDR || p.len() < 8 {
        return Ok(None);
    }
    let family = p[0];
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(p[2]);
    for a in attrs(&p[8..]) {
        let a = a?;
        match a.ty {
            IFA_LOCAL => local = ip_from(family, a.data),
            IFA_ADDRESS => address = ip_from(family, a.data),
            IFA_FLAGS => flags = a.u32(),
            _ => {}
        }
    }
    // For point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours when present.
    let Some(ip) = local.or(address) else {
        return Ok(None);
    };
    let prefix = IpNet::new(ip, p[1]).map_err(|_| Malformed("address prefix length"))?;
    Ok(Some(Address {
        index: u32::from_ne_bytes([p[4], p[5], p[6], p[7]]),
        prefix,
        scope: p[3],
        flags,
    }))
}

impl Netlink {
    /// `ip addr add <prefix> dev <index>` (IPv6: `... nodad`). Fails with `EEXIST` if present.
    pub fn add_address(&mut self, index: u32, prefix: IpNet) -> Result<()> {
        let m = addr_msg(
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
            index,
            prefix,
        );
        self.ack(m, |s| {
            format!("add address {prefix} dev {}", s.dev_name(index))
        })
    }

    /// `ip addr replace <prefix> dev <index>`: adds, or succeeds if it is already there.
    pub fn replace_address(&mut self, index: u32, prefix: IpNet) -> Result<()> {
        let m = addr_msg(
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
            index,
            prefix,
        );
        self.ack(m, |s| {
            format!("replace address {prefix} dev {}", s.dev_name(index))
        })
    }

    /// `ip addr del <prefix> dev <index>`. `Ok(false)` if it was not there.
    pub fn delete_address(&mut self, index: u32, prefix: IpNet) -> Result<bool> {
        let m = addr_msg(RTM_DELADDR, NLM_F_REQUEST, index, prefix);
        deleted(self.ack(m, |s| {
            format!("delete address {prefix} dev {}", s.dev_name(index))
        }))
    }

    /// `ip [-4|-6] addr show [dev <index>]`: addresses of `family` (both if `None`), of one link
    /// if `index` is given.
    pub fn addresses(
        &mut self,
        family: Option<Family>,
        index: Option<u32>,
    ) -> Result<Vec<Address>> {
        let af = family.map_or(AF_UNSPEC, Family::af);
        let mut m = MsgBuf::request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP);
        m.put(&ifaddrmsg(af, 0, 0, 0, 0));
        let all = self.dump(m, || "list addresses".into(), parse_addr)?;
        Ok(all
            .into_iter()
            .filter(|a| index.is_none_or(|i| a.index == i))
            .collect())
    }
}
