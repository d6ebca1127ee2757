//! Routes: any table (ids above 255 go in `RTA_TABLE`), scope link, on-link gateways, replace,
//! delete, list per table.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::error::Result;
use super::types::{ip_bytes, ip_from, Family};
use super::wire::{
    attr_list, Attr, Malformed, Msg, MsgBuf, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use super::{deleted, Netlink};
use crate::net::IpNet;

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;
/// `RTNH_F_ONLINK`: the gateway is reachable on the link even if no prefix covers it.
const RTNH_F_ONLINK: u32 = 4;
/// `RTM_F_CLONED`: a cached clone, not a configured route.
const RTM_F_CLONED: u32 = 0x200;
const RTPROT_BOOT: u8 = 3;
const RT_TABLE_UNSPEC: u8 = 0;
const RT_SCOPE_NOWHERE: u8 = 255;

/// The main table (254).
pub const RT_TABLE_MAIN: u32 = 254;
/// The local table (255).
pub const RT_TABLE_LOCAL: u32 = 255;

/// `rtm_scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteScope {
    /// `RT_SCOPE_UNIVERSE` (0): via a gateway.
    Universe,
    /// `RT_SCOPE_LINK` (253): directly on the link.
    Link,
    /// `RT_SCOPE_HOST` (254): local addresses.
    Host,
    /// Any other value.
    Other(u8),
}

impl RouteScope {
    fn code(self) -> u8 {
        match self {
            RouteScope::Universe => 0,
            RouteScope::Link => 253,
            RouteScope::Host => 254,
            RouteScope::Other(c) => c,
        }
    }
    fn from_code(c: u8) -> Self {
        match c {
            0 => RouteScope::Universe,
            253 => RouteScope::Link,
            254 => RouteScope::Host,
            c => RouteScope::Other(c),
        }
    }
}

/// `rtm_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteType {
    /// `RTN_UNICAST`.
    Unicast,
    /// `RTN_LOCAL`.
    Local,
    /// `RTN_BROADCAST`.
    Broadcast,
    /// `RTN_BLACKHOLE`.
    Blackhole,
    /// `RTN_UNREACHABLE`.
    Unreachable,
    /// Any other value.
    Other(u8),
}

impl RouteType {
    fn code(self) -> u8 {
        match self {
            RouteType::Unicast => 1,
            RouteType::Local => 2,
            RouteType::Broadcast => 3,
            RouteType::Blackhole => 6,
            RouteType::Unreachable => 7,
            RouteType::Other(c) => c,
        }
    }
    fn from_code(c: u8) -> Self {
        match c {
            1 => RouteType::Unicast,
            2 => RouteType::Local,
            3 => RouteType::Broadcast,
            6 => RouteType::Blackhole,
            7 => RouteType::Unreachable,
            c => RouteType::Other(c),
        }
    }
}

/// A route. Build one with [`Route::link`] or [`Route::via`] and the `with_*` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix (`0.0.0.0/0` for the default route).
    pub dst: IpNet,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Routing table (254 = main).
    pub table: u32,
    /// Scope.
    pub scope: RouteScope,
    /// Route type.
    pub kind: RouteType,
    /// `onlink`: use the gateway even if no prefix on the link covers it.
    pub onlink: bool,
    /// Preferred source address (`src`).
    pub src: Option<IpAddr>,
    /// `metric` (`RTA_PRIORITY`).
    pub metric: Option<u32>,
    /// `rtm_protocol` (3 = boot, what `ip route add` uses; 2 = kernel).
    pub protocol: u8,
}

impl Route {
    /// A route straight out of a link: `ip route add <dst> dev <oif> scope link` (what `ip`
    /// chooses when no gateway is given), in the main table.
    pub fn link(dst: IpNet, oif: u32) -> Route {
        Route {
            dst,
            gateway: None,
            oif: Some(oif),
            table: RT_TABLE_MAIN,
            scope: RouteScope::Link,
            kind: RouteType::Unicast,
            onlink: false,
            src: None,
            metric: None,
            protocol: RTPROT_BOOT,
        }
    }

    /// A route through a gateway: `ip route add <dst> via <gw> dev <oif>`, in the main table.
    pub fn via(dst: IpNet, gateway: IpAddr, oif: u32) -> Route {
        Route {
            gateway: Some(gateway),
            scope: RouteScope::Universe,
            ..Route::link(dst, oif)
        }
    }

    /// The same route in `table`.
    pub fn with_table(self, table: u32) -> Route {
        Route { table, ..self }
    }

    /// The same route marked `onlink`.
    pub fn with_onlink(self) -> Route {
        Route {
            onlink: true,
            ..self
        }
    }

    /// The same route with a metric.
    pub fn with_metric(self, metric: u32) -> Route {
        Route {
            metric: Some(metric),
            ..self
        }
    }

    /// The same route with a preferred source address.
    pub fn with_src(self, src: IpAddr) -> Route {
        Route {
            src: Some(src),
            ..self
        }
    }

    /// The family of the destination.
    pub fn family(&self) -> Family {
        Family::of(self.dst.addr())
    }

    fn describe(&self, dev: Option<String>) -> String {
        let mut s = if self.dst.is_default() {
            "default".to_string()
        } else {
            self.dst.to_string()
        };
        if let Some(gw) = self.gateway {
            let _ = write!(s, " via {gw}");
        }
        if let Some(d) = dev {
            let _ = write!(s, " dev {d}");
        }
        if self.onlink {
            s.push_str(" onlink");
        }
        if self.table != RT_TABLE_MAIN {
            let _ = write!(s, " table {}", self.table);
        }
        s
    }
}

fn rtmsg(r: &Route, delete: bool) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = r.family().af();
    h[1] = r.dst.prefix_len();
    h[4] = if r.table < 256 {
        r.table as u8
    } else {
        RT_TABLE_UNSPEC
    };
    if delete {
        // Like `ip route del`: protocol, type 0 and scope nowhere are wildcards for the kernel.
        h[7] = 0;
        h[6] = RT_SCOPE_NOWHERE;
    } else {
        h[5] = r.protocol;
        h[6] = r.scope.code();
        h[7] = r.kind.code();
    }
    let flags = if r.onlink { RTNH_F_ONLINK } else { 0 };
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h
}

/// Encodes a route request the way iproute2 does: `RTA_TABLE` only for ids above 255, no
/// `RTA_DST` for a default route.
pub(crate) fn route_msg(ty: u16, flags: u16, r: &Route) -> MsgBuf {
    let mut m = MsgBuf::request(ty, flags);
    m.put(&rtmsg(r, ty == RTM_DELROUTE));
    if r.table >= 256 {
        m.attr_u32(RTA_TABLE, r.table);
    }
    if !r.dst.is_default() {
        m.attr(RTA_DST, &ip_bytes(&r.dst.addr()));
    }
    if let Some(gw) = r.gateway {
        m.attr(RTA_GATEWAY, &ip_bytes(&gw));
    }
    if let Some(src) = r.src {
        m.attr(RTA_PREFSRC, &ip_bytes(&src));
    }
    if let Some(metric) = r.metric {
        m.attr_u32(RTA_PRIORITY, metric);
    }
    if let Some(oif) = r.oif {
        m.attr_u32(RTA_OIF, oif);
    }
    m
}

/// Decodes an `RTM_NEWROUTE` message (`None` for another type, a cached clone or an unusable one).
pub fn parse_route(msg: &Msg<'_>) -> Result<Option<Route>, Malformed> {
    let p = msg.payload;
    if msg.ty != RTM_NEWROUTE || p.len() < 12 {
        return Ok(None);
    }
    let list = attr_list(&p[12..])?;
    Ok(route_from(p, &list))
}

/// The route of a well-formed message; `None` for a cached clone or one we do not represent.
fn route_from(p: &[u8], list: &[Attr<'_>]) -> Option<Route> {
    let family = p[0];
    let flags = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
    if flags & RTM_F_CLONED != 0 {
        return None;
    }
    let mut r = Route {
        dst: IpNet::default_for(family == super::types::AF_INET6),
        gateway: None,
        oif: None,
        table: u32::from(p[4]),
        scope: RouteScope::from_code(p[6]),
        kind: RouteType::from_code(p[7]),
        onlink: flags & RTNH_F_ONLINK != 0,
        src: None,
        metric: None,
        protocol: p[5],
    };
    for a in list {
        match a.ty {
            RTA_DST => r.dst = IpNet::new(ip_from(family, a.data)?, p[1]).ok()?,
            RTA_GATEWAY => r.gateway = ip_from(family, a.data),
            RTA_PREFSRC => r.src = ip_from(family, a.data),
            RTA_OIF => r.oif = Some(a.u32()),
            RTA_PRIORITY => r.metric = Some(a.u32()),
            RTA_TABLE => r.table = a.u32(),
            _ => {}
        }
    }
    Some(r)
}

impl Netlink {
    fn route_op(&mut self, ty: u16, flags: u16, verb: &str, r: &Route) -> Result<()> {
        let m = route_msg(ty, flags, r);
        self.ack(m, |s| {
            let dev = r.oif.map(|i| s.dev_name(i));
            format!("{verb} route {}", r.describe(dev))
        })
    }

    /// `ip route add <dst> [via <gw>] dev <oif> [onlink] [table <t>]`; `EEXIST` if present.
    pub fn add_route(&mut self, r: &Route) -> Result<()> {
        self.route_op(
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
            "add",
            r,
        )
    }

    /// `ip route replace ...`: adds the route or replaces the one with the same destination.
    pub fn replace_route(&mut self, r: &Route) -> Result<()> {
        self.route_op(
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
            "replace",
            r,
        )
    }

    /// `ip route del <dst> [via <gw>] [dev <oif>] [table <t>]`. `Ok(false)` if there was none.
    pub fn delete_route(&mut self, r: &Route) -> Result<bool> {
        deleted(self.route_op(RTM_DELROUTE, NLM_F_REQUEST, "delete", r))
    }

    /// `ip [-6] route show table <table>`: the routes of one table (cached clones left out).
    pub fn routes(&mut self, family: Family, table: u32) -> Result<Vec<Route>> {
        let mut m = MsgBuf::request(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP);
        let mut h = [0u8; 12];
        h[0] = family.af();
        m.put(&h);
        let all = self.dump(m, || format!("list routes table {table}"), parse_route)?;
        Ok(all.into_iter().filter(|r| r.table == table).collect())
    }
}
