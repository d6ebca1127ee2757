//! Neighbour (ARP / NDP) entries: permanent entries for the pod's gateway.

use std::net::IpAddr;

use super::error::Result;
use super::types::{ip_bytes, ip_from, Family, AF_UNSPEC};
use super::wire::{
    attrs, Malformed, Msg, MsgBuf, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST,
};
use super::{deleted, Netlink};
use crate::net::MacAddr;

const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// `NUD_PERMANENT`.
pub const NUD_PERMANENT: u16 = 0x80;

/// A neighbour entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Interface index.
    pub index: u32,
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its link-layer address, if known.
    pub mac: Option<MacAddr>,
    /// `NUD_*` state.
    pub state: u16,
}

fn ndmsg(family: u8, index: u32, state: u16) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = family;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..10].copy_from_slice(&state.to_ne_bytes());
    h
}

/// Encodes `RTM_NEWNEIGH` / `RTM_DELNEIGH`.
pub(crate) fn neigh_msg(
    ty: u16,
    flags: u16,
    index: u32,
    ip: IpAddr,
    mac: Option<MacAddr>,
    state: u16,
) -> MsgBuf {
    let mut m = MsgBuf::request(ty, flags);
    m.put(&ndmsg(Family::of(ip).af(), index, state));
    m.attr(NDA_DST, &ip_bytes(&ip));
    if let Some(mac) = mac {
        m.attr(NDA_LLADDR, &mac.0);
    }
    m
}

/// Decodes an `RTM_NEWNEIGH` message (`None` for another type or one without an address).
pub fn parse_neigh(msg: &Msg<'_>) -> Result<Option<Neighbour>, Malformed> {
    let p = msg.payload;
    if msg.ty != RTM_NEWNEIGH || p.len() < 12 {
        return Ok(None);
    }
    let mut ip = None;
    let mut mac = None;
    for a in attrs(&p[12..]) {
        let a = a?;
        match a.ty {
            NDA_DST => ip = ip_from(p[0], a.data),
            NDA_LLADDR if a.data.len() == 6 => {
                let mut b = [0u8; 6];
                b.copy_from_slice(a.data);
                mac = Some(MacAddr(b));
            }
            _ => {}
        }
    }
    Ok(ip.map(|ip| Neighbour {
        index: u32::from_ne_bytes([p[4], p[5], p[6], p[7]]),
        ip,
        mac,
        state: u16::from_ne_bytes([p[8], p[9]]),
    }))
}

impl Netlink {
    /// `ip neigh replace <ip> lladdr <mac> dev <index> nud permanent` (v4 or v6). Idempotent.
    pub fn add_permanent_neighbour(&mut self, index: u32, ip: IpAddr, mac: MacAddr) -> Result<()> {
        let m = neigh_msg(
            RTM_NEWNEIGH,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
            index,
            ip,
            Some(mac),
            NUD_PERMANENT,
        );
        self.ack(m, |s| {
            format!(
                "add neighbour {ip} lladdr {mac} dev {} nud permanent",
                s.dev_name(index)
            )
        })
    }

    /// `ip neigh del <ip> dev <index>`. `Ok(false)` if there was none.
    pub fn delete_neighbour(&mut self, index: u32, ip: IpAddr) -> Result<bool> {
        let m = neigh_msg(RTM_DELNEIGH, NLM_F_REQUEST, index, ip, None, 0);
        deleted(self.ack(m, |s| {
            format!("delete neighbour {ip} dev {}", s.dev_name(index))
        }))
    }

    /// `ip neigh show [dev <index>]` for `family` (both if `None`).
    pub fn neighbours(
        &mut self,
        family: Option<Family>,
        index: Option<u32>,
    ) -> Result<Vec<Neighbour>> {
        let mut m = MsgBuf::request(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP);
        m.put(&ndmsg(family.map_or(AF_UNSPEC, Family::af), 0, 0));
        let all = self.dump(m, || "list neighbours".into(), parse_neigh)?;
        Ok(all
            .into_iter()
            .filter(|n| index.is_none_or(|i| n.index == i))
            .collect())
    }
}
