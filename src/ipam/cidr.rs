//! IPv4 and IPv6 CIDR blocks: a secondary address is a /32, a delegated prefix a /28 (IPv4) or /80 (IPv6).

#![deny(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

/// Why a CIDR could not be built or parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CidrError {
    /// The prefix length is above 32 (IPv4) or 128 (IPv6).
    PrefixLength { len: u8, max: u8 },
    /// Bits are set after the prefix (e.g. `10.0.0.1/28`); only the network address is allowed.
    HostBits,
    /// The text is not `address/length`.
    Syntax,
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::PrefixLength { len, max } => write!(f, "prefix length {len} is above {max}"),
            CidrError::HostBits => f.write_str(
                "address has bits set after the prefix length (use the network address)",
            ),
            CidrError::Syntax => f.write_str("expected ADDRESS/LENGTH, e.g. 10.0.1.16/28"),
        }
    }
}

/// An IPv4 block with no host bits set. Ordered by address, then length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Cidr {
    /// The block `addr/len`; `addr` must be the network address.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, CidrError> {
        if len > 32 {
            return Err(CidrError::PrefixLength { len, max: 32 });
        }
        if u32::from(addr) & !mask_v4(len) != 0 {
            return Err(CidrError::HostBits);
        }
        Ok(Ipv4Cidr { addr, len })
    }

    /// The /32 holding exactly `addr`.
    pub const fn host(addr: Ipv4Addr) -> Self {
        Ipv4Cidr { addr, len: 32 }
    }

    /// The network address.
    pub const fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub const fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True for a /32 (a secondary address rather than a prefix).
    pub const fn is_host(&self) -> bool {
        self.len == 32
    }

    /// Number of addresses in the block.
    pub const fn size(&self) -> u64 {
        1u64 << (32 - self.len as u32)
    }

    /// Whether `ip` lies in the block.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask_v4(self.len) == u32::from(self.addr)
    }

    /// Whether the two blocks share an address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The `i`-th address of the block (`None` past the end).
    pub fn nth(&self, i: u64) -> Option<Ipv4Addr> {
        if i >= self.size() {
            return None;
        }
        let base = u64::from(u32::from(self.addr));
        u32::try_from(base + i).ok().map(Ipv4Addr::from)
    }

    /// The last address of the block.
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask_v4(self.len))
    }
}

fn mask_v4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (a, l) = s.split_once('/').ok_or(CidrError::Syntax)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| CidrError::Syntax)?;
        let len: u8 = l.parse().map_err(|_| CidrError::Syntax)?;
        Ipv4Cidr::new(addr, len)
    }
}

/// An IPv6 block with no host bits set (an ENI's /80 prefix in IPv6 mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv6Cidr {
    addr: Ipv6Addr,
    len: u8,
}

impl Ipv6Cidr {
    /// The block `addr/len`; `addr` must be the network address.
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Self, CidrError> {
        if len > 128 {
            return Err(CidrError::PrefixLength { len, max: 128 });
        }
        if u128::from(addr) & !mask_v6(len) != 0 {
            return Err(CidrError::HostBits);
        }
        Ok(Ipv6Cidr { addr, len })
    }

    /// The network address.
    pub const fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    /// The prefix length.
    pub const fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Number of addresses, saturating at `u128::MAX` for a /0.
    pub fn size(&self) -> u128 {
        if self.len == 0 {
            u128::MAX
        } else {
            1u128 << (128 - u32::from(self.len))
        }
    }

    /// Whether `ip` lies in the block.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & mask_v6(self.len) == u128::from(self.addr)
    }

    /// Whether the two blocks share an address.
    pub fn overlaps(&self, other: &Ipv6Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The `i`-th address of the block (`None` past the end).
    pub fn nth(&self, i: u128) -> Option<Ipv6Addr> {
        if i >= self.size() {
            return None;
        }
        u128::from(self.addr).checked_add(i).map(Ipv6Addr::from)
    }

    /// The last address of the block.
    pub fn last(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) | !mask_v6(self.len))
    }
}

fn mask_v6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv6Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (a, l) = s.split_once('/').ok_or(CidrError::Syntax)?;
        let addr: Ipv6Addr = a.parse().map_err(|_| CidrError::Syntax)?;
        let len: u8 = l.parse().map_err(|_| CidrError::Syntax)?;
        Ipv6Cidr::new(addr, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_membership_and_bounds() {
        let p: Ipv4Cidr = "10.0.1.16/28".parse().unwrap();
        assert_eq!(p.size(), 16);
        assert!(p.contains(Ipv4Addr::new(10, 0, 1, 31)));
        assert!(!p.contains(Ipv4Addr::new(10, 0, 1, 32)));
        assert_eq!(p.nth(15), Some(Ipv4Addr::new(10, 0, 1, 31)));
        assert_eq!(p.nth(16), None);
        assert_eq!(p.last(), Ipv4Addr::new(10, 0, 1, 31));
        assert!(p.overlaps(&Ipv4Cidr::host(Ipv4Addr::new(10, 0, 1, 20))));
        assert_eq!("10.0.1.17/28".parse::<Ipv4Cidr>(), Err(CidrError::HostBits));
        assert_eq!(
            "10.0.1.16/33".parse::<Ipv4Cidr>(),
            Err(CidrError::PrefixLength { len: 33, max: 32 })
        );
        assert_eq!("10.0.1.16".parse::<Ipv4Cidr>(), Err(CidrError::Syntax));
    }

    #[test]
    fn ipv6_prefix_membership() {
        let p: Ipv6Cidr = "2600:1f14:abcd:1200:7::/80".parse().unwrap();
        assert!(p.contains("2600:1f14:abcd:1200:7:0:0:5".parse().unwrap()));
        assert!(!p.contains("2600:1f14:abcd:1200:8::".parse().unwrap()));
        assert_eq!(p.size(), 1u128 << 48);
        assert_eq!(p.nth(1), Some("2600:1f14:abcd:1200:7::1".parse().unwrap()));
    }
}
