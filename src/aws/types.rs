//! Small value types shared by IMDS and EC2: CIDR blocks and MAC addresses.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a CIDR or MAC string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseValueError {
    /// The value as received.
    pub value: String,
    /// What was expected instead.
    pub expected: &'static str,
}

impl fmt::Display for ParseValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not {}", self.value, self.expected)
    }
}

impl std::error::Error for ParseValueError {}

fn bad(value: &str, expected: &'static str) -> ParseValueError {
    ParseValueError {
        value: value.to_string(),
        expected,
    }
}

/// An IPv4 network in CIDR notation, e.g. `10.0.1.0/24` or a `/28` delegated prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// A CIDR from an address and prefix length (0..=32); host bits are kept as given.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, ParseValueError> {
        if prefix_len > 32 {
            return Err(bad(
                &format!("{addr}/{prefix_len}"),
                "an IPv4 CIDR with a prefix length of 0..=32",
            ));
        }
        Ok(Self { addr, prefix_len })
    }
    /// The address part as written.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    fn mask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }
    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ParseValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "an IPv4 CIDR such as 10.0.0.0/16";
        let (addr, len) = s.trim().split_once('/').ok_or_else(|| bad(s, EXPECTED))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad(s, EXPECTED))?;
        let len: u8 = len.parse().map_err(|_| bad(s, EXPECTED))?;
        if len > 32 {
            return Err(bad(s, EXPECTED));
        }
        Ok(Self {
            addr,
            prefix_len: len,
        })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// An IPv6 network in CIDR notation, e.g. `2600:1f14::/56` or a `/80` delegated prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6Cidr {
    addr: Ipv6Addr,
    prefix_len: u8,
}

impl Ipv6Cidr {
    /// The address part as written.
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }
    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

impl FromStr for Ipv6Cidr {
    type Err = ParseValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "an IPv6 CIDR such as 2600:1f14::/56";
        let (addr, len) = s.trim().split_once('/').ok_or_else(|| bad(s, EXPECTED))?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| bad(s, EXPECTED))?;
        let len: u8 = len.parse().map_err(|_| bad(s, EXPECTED))?;
        if len > 128 {
            return Err(bad(s, EXPECTED));
        }
        Ok(Self {
            addr,
            prefix_len: len,
        })
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// An Ethernet MAC address, kept in IMDS's lower-case `0a:1b:2c:3d:4e:5f` spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = ParseValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "a MAC address such as 0a:1b:2c:3d:4e:5f";
        let mut out = [0u8; 6];
        let mut parts = s.trim().trim_end_matches('/').split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| bad(s, EXPECTED))?;
            if part.len() != 2 {
                return Err(bad(s, EXPECTED));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad(s, EXPECTED))?;
        }
        if parts.next().is_some() {
            return Err(bad(s, EXPECTED));
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl From<Ipv4Cidr> for crate::config::Cidr {
    /// The configuration's mixed IPv4/IPv6 CIDR (host bits cleared).
    fn from(c: Ipv4Cidr) -> Self {
        crate::config::Cidr {
            addr: c.network().into(),
            prefix_len: c.prefix_len,
        }
    }
}

impl From<Ipv6Cidr> for crate::config::Cidr {
    /// The configuration's mixed IPv4/IPv6 CIDR (host bits cleared).
    fn from(c: Ipv6Cidr) -> Self {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(c.prefix_len))
            .unwrap_or(0);
        crate::config::Cidr {
            addr: Ipv6Addr::from(u128::from(c.addr) & mask).into(),
            prefix_len: c.prefix_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_cidr_parses_and_checks_membership() {
        let c: Ipv4Cidr = "10.0.1.0/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.1.0/24");
        assert!(c.contains("10.0.1.77".parse().unwrap()));
        assert!(!c.contains("10.0.2.1".parse().unwrap()));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn bad_cidrs_name_the_value_and_the_expectation() {
        for s in ["10.0.0.0", "10.0.0.0/33", "10.0.0/8", "x/8", ""] {
            let e = s.parse::<Ipv4Cidr>().unwrap_err();
            assert!(e.to_string().contains("IPv4 CIDR"), "{e}");
            assert_eq!(e.value, s);
        }
        assert!("2600::/129".parse::<Ipv6Cidr>().is_err());
        assert_eq!(
            "2600:1f14::/56".parse::<Ipv6Cidr>().unwrap().prefix_len(),
            56
        );
    }

    #[test]
    fn converts_to_the_configuration_cidr() {
        let v4: crate::config::Cidr = "10.0.1.77/24".parse::<Ipv4Cidr>().unwrap().into();
        assert_eq!(v4.to_string(), "10.0.1.0/24");
        let v6: crate::config::Cidr = "2600:1f14::5/56".parse::<Ipv6Cidr>().unwrap().into();
        assert_eq!(v6.to_string(), "2600:1f14::/56");
    }

    #[test]
    fn mac_round_trips_and_rejects_garbage() {
        let m: MacAddr = "0A:1b:2c:3d:4e:5f".parse().unwrap();
        assert_eq!(m.to_string(), "0a:1b:2c:3d:4e:5f");
        assert_eq!("0a:1b:2c:3d:4e:5f/".parse::<MacAddr>().unwrap(), m);
        for s in [
            "0a:1b:2c:3d:4e",
            "0a:1b:2c:3d:4e:5f:60",
            "zz:1b:2c:3d:4e:5f",
            "0a1b2c3d4e5f",
        ] {
            assert!(s.parse::<MacAddr>().is_err(), "{s}");
        }
    }
}
