//! Small value types shared by the netlink operations: IP prefixes and MAC addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP prefix such as `10.0.0.5/32` or `2001:db8::/64`. The address keeps its host bits (an
/// interface address `10.0.0.5/24` is a valid `IpNet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    len: u8,
}

impl IpNet {
    /// A prefix; fails if `len` is longer than the address (32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!(
                "prefix length {len} is too long for {addr} (at most {max})"
            ));
        }
        Ok(IpNet { addr, len })
    }

    /// A host prefix: `/32` for IPv4, `/128` for IPv6.
    pub fn host(addr: IpAddr) -> Self {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        IpNet { addr, len }
    }

    /// The default route of a family: `0.0.0.0/0` or `::/0`.
    pub fn default_for(v6: bool) -> Self {
        let addr = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        IpNet { addr, len: 0 }
    }

    /// The address part.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for a `/0` prefix.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True for IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// The same prefix with the host bits cleared (`10.0.0.5/24` → `10.0.0.0/24`).
    pub fn network(&self) -> Self {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        IpNet {
            addr,
            len: self.len,
        }
    }

    /// True if `ip` lies inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && IpNet {
                addr: ip,
                len: self.len,
            }
            .network()
            .addr
                == self.network().addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for IpNet {
    type Err = String;
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a host prefix).
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| {
            format!("{s:?} is not an IP prefix (expected e.g. 10.0.0.0/16 or fd00::/8)")
        })?;
        match l {
            None => Ok(IpNet::host(addr)),
            Some(l) => {
                let len: u8 = l
                    .parse()
                    .map_err(|_| format!("{s:?}: prefix length {l:?} is not a number"))?;
                IpNet::new(addr, len).map_err(|e| format!("{s:?}: {e}"))
            }
        }
    }
}

impl From<IpAddr> for IpNet {
    fn from(a: IpAddr) -> Self {
        IpNet::host(a)
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;
    /// Parses `0a:1b:2c:3d:4e:5f` (case-insensitive; `-` also accepted as separator).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?} is not a MAC address (expected six hex bytes like 0a:1b:2c:3d:4e:5f)")
        };
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// Address family of rules, routes and dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `AF_INET`.
    V4,
    /// `AF_INET6`.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
    pub(crate) fn af(self) -> u8 {
        match self {
            Family::V4 => AF_INET,
            Family::V6 => AF_INET6,
        }
    }
}

pub(crate) const AF_UNSPEC: u8 = 0;
pub(crate) const AF_INET: u8 = 2;
pub(crate) const AF_INET6: u8 = 10;

/// The bytes of an address as netlink carries it (network order).
pub(crate) fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Decodes an address attribute of `family`.
pub(crate) fn ip_from(family: u8, b: &[u8]) -> Option<IpAddr> {
    match (family, b.len()) {
        (AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        (AF_INET6, 16) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(b);
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_prefixes() {
        let p: IpNet = "10.0.0.5/24".parse().unwrap();
        assert_eq!(p.to_string(), "10.0.0.5/24");
        assert_eq!(p.network().to_string(), "10.0.0.0/24");
        assert!(p.contains("10.0.0.200".parse().unwrap()));
        assert!(!p.contains("10.0.1.1".parse().unwrap()));
        assert_eq!(
            "fd00::1".parse::<IpNet>().unwrap().to_string(),
            "fd00::1/128"
        );
        assert!("10.0.0.0/33"
            .parse::<IpNet>()
            .unwrap_err()
            .contains("at most 32"));
        assert!("ten/8"
            .parse::<IpNet>()
            .unwrap_err()
            .contains("not an IP prefix"));
        assert_eq!(IpNet::default_for(false).to_string(), "0.0.0.0/0");
    }

    #[test]
    fn parses_and_prints_macs() {
        let m: MacAddr = "0A:1b:2c:3d:4e:5f".parse().unwrap();
        assert_eq!(m.to_string(), "0a:1b:2c:3d:4e:5f");
        assert!("0a:1b:2c:3d:4e".parse::<MacAddr>().is_err());
        assert!("0a:1b:2c:3d:4e:5f:00".parse::<MacAddr>().is_err());
        assert!("0a:1b:2c:3d:4e:zz".parse::<MacAddr>().is_err());
    }

    proptest! {
        #[test]
        fn prefix_round_trips(a in any::<u32>(), len in 0u8..=32) {
            let p = IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), len).unwrap();
            prop_assert_eq!(p.to_string().parse::<IpNet>().unwrap(), p);
            prop_assert!(p.network().contains(p.addr()));
        }
    }
}
