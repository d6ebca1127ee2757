//! Policy routing rules (`ip rule`): added idempotently, deleted by match, listed.

use std::fmt::Write as _;

use super::error::Result;
use super::types::{ip_bytes, ip_from, Family};
use super::wire::{
    attr_list, Attr, Malformed, Msg, MsgBuf, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use super::{deleted, Netlink};
use crate::net::IpNet;

const RTM_NEWRULE: u16 = 32;
const RTM_DELRULE: u16 = 33;
const RTM_GETRULE: u16 = 34;
const FRA_DST: u16 = 1;
const FRA_SRC: u16 = 2;
const FRA_IIFNAME: u16 = 3;
const FRA_PRIORITY: u16 = 6;
const FRA_FWMARK: u16 = 10;
const FRA_TABLE: u16 = 15;
const FRA_FWMASK: u16 = 16;
const FRA_OIFNAME: u16 = 17;
const FR_ACT_TO_TBL: u8 = 1;
const FIB_RULE_INVERT: u32 = 0x2;

/// A policy rule `[not] from <src> to <dst> fwmark <mark>/<mask> iif <if> oif <if> priority <p>
/// lookup <table>`. Unset fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Address family.
    pub family: Family,
    /// Priority (`pref`); `None` lets the kernel pick one on add and matches any on delete.
    pub priority: Option<u32>,
    /// `from` prefix.
    pub src: Option<IpNet>,
    /// `to` prefix.
    pub dst: Option<IpNet>,
    /// `fwmark`.
    pub fwmark: Option<u32>,
    /// Mask for `fwmark` (`fwmark 0x80/0x80`).
    pub fwmask: Option<u32>,
    /// `iif`.
    pub iif: Option<String>,
    /// `oif`.
    pub oif: Option<String>,
    /// `not`: invert the selector.
    pub invert: bool,
    /// `lookup` table.
    pub table: u32,
}

impl Rule {
    /// An empty rule of `family` that looks up `table`.
    pub fn new(family: Family, table: u32) -> Rule {
        Rule {
            family,
            priority: None,
            src: None,
            dst: None,
            fwmark: None,
            fwmask: None,
            iif: None,
            oif: None,
            invert: false,
            table,
        }
    }

    /// `from <src> priority <p> lookup <table>` (upstream's from-pod rule, priority 1536).
    pub fn from_prefix(src: IpNet, priority: u32, table: u32) -> Rule {
        Rule {
            src: Some(src),
            priority: Some(priority),
            ..Rule::new(Family::of(src.addr()), table)
        }
    }

    /// `to <dst> priority <p> lookup <table>` (upstream's to-pod rule, priority 512).
    pub fn to_prefix(dst: IpNet, priority: u32, table: u32) -> Rule {
        Rule {
            dst: Some(dst),
            priority: Some(priority),
            ..Rule::new(Family::of(dst.addr()), table)
        }
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        if self.invert {
            s.push_str(" not");
        }
        if let Some(p) = self.priority {
            let _ = write!(s, " priority {p}");
        }
        if let Some(p) = self.src {
            let _ = write!(s, " from {p}");
        }
        if let Some(p) = self.dst {
            let _ = write!(s, " to {p}");
        }
        if let Some(m) = self.fwmark {
            let _ = write!(s, " fwmark {m:#x}");
            if let Some(k) = self.fwmask {
                let _ = write!(s, "/{k:#x}");
            }
        }
        if let Some(i) = &self.iif {
            let _ = write!(s, " iif {i}");
        }
        if let Some(o) = &self.oif {
            let _ = write!(s, " oif {o}");
        }
        let _ = write!(s, " lookup {}", self.table);
        s
    }
}

/// Encodes a rule request the way `ip rule` does (table ids above 255 in `FRA_TABLE`).
pub(crate) fn rule_msg(ty: u16, flags: u16, r: &Rule) -> MsgBuf {
    let mut m = MsgBuf::request(ty, flags);
    let mut h = [0u8; 12];
    h[0] = r.family.af();
    h[1] = r.dst.map_or(0, |p| p.prefix_len());
    h[2] = r.src.map_or(0, |p| p.prefix_len());
    h[4] = if r.table < 256 { r.table as u8 } else { 0 };
    // `ip rule del` leaves the action unspecified (it matches any); add says "lookup table".
    h[7] = if ty == RTM_DELRULE { 0 } else { FR_ACT_TO_TBL };
    let f = if r.invert { FIB_RULE_INVERT } else { 0 };
    h[8..12].copy_from_slice(&f.to_ne_bytes());
    m.put(&h);
    if let Some(p) = r.priority {
        m.attr_u32(FRA_PRIORITY, p);
    }
    if let Some(p) = r.src {
        m.attr(FRA_SRC, &ip_bytes(&p.addr()));
    }
    if let Some(p) = r.dst {
        m.attr(FRA_DST, &ip_bytes(&p.addr()));
    }
    if let Some(v) = r.fwmark {
        m.attr_u32(FRA_FWMARK, v);
    }
    if let Some(v) = r.fwmask {
        m.attr_u32(FRA_FWMASK, v);
    }
    if let Some(i) = &r.iif {
        m.attr_str(FRA_IIFNAME, i);
    }
    if let Some(o) = &r.oif {
        m.attr_str(FRA_OIFNAME, o);
    }
    if r.table >= 256 {
        m.attr_u32(FRA_TABLE, r.table);
    }
    m
}

/// Decodes an `RTM_NEWRULE` message (`None` for another type or a rule that is not a table lookup).
pub fn parse_rule(msg: &Msg<'_>) -> Result<Option<Rule>, Malformed> {
    let p = msg.payload;
    if msg.ty != RTM_NEWRULE || p.len() < 12 || p[7] != FR_ACT_TO_TBL {
        return Ok(None);
    }
    let list = attr_list(&p[12..])?;
    Ok(rule_from(p, &list))
}

/// The rule of a well-formed message; `None` for one we do not represent.
fn rule_from(p: &[u8], list: &[Attr<'_>]) -> Option<Rule> {
    let family = if p[0] == super::types::AF_INET6 {
        Family::V6
    } else {
        Family::V4
    };
    let flags = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
    let mut r = Rule::new(family, u32::from(p[4]));
    r.invert = flags & FIB_RULE_INVERT != 0;
    for a in list {
        match a.ty {
            FRA_PRIORITY => r.priority = Some(a.u32()),
            FRA_SRC => r.src = IpNet::new(ip_from(p[0], a.data)?, p[2]).ok(),
            FRA_DST => r.dst = IpNet::new(ip_from(p[0], a.data)?, p[1]).ok(),
            FRA_FWMARK => r.fwmark = Some(a.u32()),
            FRA_FWMASK => r.fwmask = Some(a.u32()),
            FRA_IIFNAME => r.iif = Some(a.str().to_string()),
            FRA_OIFNAME => r.oif = Some(a.str().to_string()),
            FRA_TABLE => r.table = a.u32(),
            _ => {}
        }
    }
    // The kernel reports the default mask 0xffffffff for a fwmark given without one.
    if r.fwmark.is_none() && r.fwmask == Some(u32::MAX) {
        r.fwmask = None;
    }
    Some(r)
}

impl Netlink {
    /// `ip rule add <rule>`, idempotent: an equal rule already present counts as success.
    ///
    /// Sent with `NLM_F_EXCL`, so the kernel compares the rule with the existing ones and answers
    /// `EEXIST` instead of adding a duplicate.
    pub fn add_rule(&mut self, r: &Rule) -> Result<()> {
        let m = rule_msg(RTM_NEWRULE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, r);
        match self.ack(m, |_| format!("add rule{}", r.describe())) {
            Err(e) if e.is_exists() => Ok(()),
            other => other,
        }
    }

    /// `ip rule del <rule>`: deletes the first rule matching every field that is set.
    /// `Ok(false)` if none matched.
    pub fn delete_rule(&mut self, r: &Rule) -> Result<bool> {
        let m = rule_msg(RTM_DELRULE, NLM_F_REQUEST, r);
        deleted(self.ack(m, |_| format!("delete rule{}", r.describe())))
    }

    /// `ip [-6] rule show`: the rules of `family` that look up a table.
    pub fn rules(&mut self, family: Family) -> Result<Vec<Rule>> {
        let mut m = MsgBuf::request(RTM_GETRULE, NLM_F_REQUEST | NLM_F_DUMP);
        let mut h = [0u8; 12];
        h[0] = family.af();
        m.put(&h);
        self.dump(m, || "list rules".into(), parse_rule)
    }
}
