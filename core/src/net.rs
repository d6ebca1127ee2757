//! Network value types shared by every layer: address blocks, prefixes and MAC addresses.
//!
//! - [`Ipv4Cidr`] and [`Ipv6Cidr`] are address *blocks* (a subnet, a VPC CIDR, a /28 or /80 delegated
//!   prefix, a secondary address as a /32): the address is the network address, host bits are never set.
//! - [`IpNet`] is a prefix of either family as netlink and the configuration carry it: an interface address
//!   such as `10.0.0.5/24` keeps its host bits; [`IpNet::network`] clears them.
//! - [`MacAddr`] is an Ethernet address, printed in IMDS's lower-case `0a:1b:2c:3d:4e:5f` spelling.
//!
//! Pure (the core crate is `no_std`).

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

/// Why a block, prefix or MAC address was rejected: the value as given, what was expected, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The value as received.
    pub value: String,
    /// What was expected instead, with an example (e.g. "an IPv4 CIDR such as 10.0.0.0/16").
    pub expected: &'static str,
    /// What is wrong with it.
    pub problem: Problem,
}

/// The part of a [`ParseError`] that says what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Not of the expected form at all.
    Syntax,
    /// The prefix length is above 32 (IPv4) or 128 (IPv6).
    PrefixLength {
        /// The length given.
        len: u8,
        /// The longest allowed.
        max: u8,
    },
    /// Bits are set after the prefix length (e.g. `10.0.0.1/28`); a block is named by its network address.
    HostBits,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not {}", self.value, self.expected)?;
        match self.problem {
            Problem::Syntax => Ok(()),
            Problem::PrefixLength { len, max } => {
                write!(f, ": prefix length {len} is too long (at most {max})")
            }
            Problem::HostBits => f.write_str(
                ": bits are set after the prefix length (use the network address, e.g. 10.0.1.16/28)",
            ),
        }
    }
}

impl core::error::Error for ParseError {}

const EXPECTED_V4: &str = "an IPv4 CIDR such as 10.0.0.0/16";
const EXPECTED_V6: &str = "an IPv6 CIDR such as 2600:1f14::/56";
const EXPECTED_NET: &str = "an IP prefix such as 10.0.0.0/16 or fd00::/8";
const EXPECTED_MAC: &str = "a MAC address (six hex bytes such as 0a:1b:2c:3d:4e:5f)";

fn error(value: &str, expected: &'static str, problem: Problem) -> ParseError {
    ParseError {
        value: value.to_string(),
        expected,
        problem,
    }
}

/// The netmask of an IPv4 prefix length (0..=32).
fn mask_v4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The netmask of an IPv6 prefix length (0..=128).
fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// Splits `ADDRESS/LENGTH` (length digits only, as Go's `net.ParseCIDR` wants); `None` when malformed.
fn split_prefix(s: &str) -> Option<(&str, u8)> {
    let (addr, len) = s.split_once('/')?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((addr, len.parse().ok()?))
}

/// An IPv4 block with no host bits set, e.g. a subnet `10.0.1.0/24`, a `/28` delegated prefix or a
/// secondary address as a `/32`. Ordered by address, then length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Cidr {
    /// The block `addr/len`; `addr` must be the network address and `len` at most 32.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, ParseError> {
        let value = || format!("{addr}/{len}");
        if len > 32 {
            return Err(error(
                &value(),
                EXPECTED_V4,
                Problem::PrefixLength { len, max: 32 },
            ));
        }
        if u32::from(addr) & !mask_v4(len) != 0 {
            return Err(error(&value(), EXPECTED_V4, Problem::HostBits));
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

    /// The netmask, e.g. `255.255.255.240` for a /28.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_v4(self.len))
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

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ParseError;
    /// Parses `a.b.c.d/n` with no host bits set.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let syntax = || error(s, EXPECTED_V4, Problem::Syntax);
        let (addr, len) = split_prefix(s).ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        Ipv4Cidr::new(addr, len).map_err(|e| ParseError {
            value: s.to_string(),
            ..e
        })
    }
}

/// An IPv6 block with no host bits set, e.g. a VPC's `2600:1f14::/56` or an ENI's /80 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv6Cidr {
    addr: Ipv6Addr,
    len: u8,
}

impl Ipv6Cidr {
    /// The block `addr/len`; `addr` must be the network address and `len` at most 128.
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Self, ParseError> {
        let value = || format!("{addr}/{len}");
        if len > 128 {
            return Err(error(
                &value(),
                EXPECTED_V6,
                Problem::PrefixLength { len, max: 128 },
            ));
        }
        if u128::from(addr) & !mask_v6(len) != 0 {
            return Err(error(&value(), EXPECTED_V6, Problem::HostBits));
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

    /// The netmask, e.g. `ffff:ffff:ffff:ffff:ffff::` for a /80.
    pub fn mask(&self) -> Ipv6Addr {
        Ipv6Addr::from(mask_v6(self.len))
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

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv6Cidr {
    type Err = ParseError;
    /// Parses `x::y/n` with no host bits set.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let syntax = || error(s, EXPECTED_V6, Problem::Syntax);
        let (addr, len) = split_prefix(s).ok_or_else(syntax)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| syntax())?;
        Ipv6Cidr::new(addr, len).map_err(|e| ParseError {
            value: s.to_string(),
            ..e
        })
    }
}

/// An IP prefix of either family such as `10.0.0.5/32` or `2001:db8::/64`. The address keeps its host
/// bits (an interface address `10.0.0.5/24` is a valid `IpNet`); [`IpNet::network`] clears them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    len: u8,
}

impl IpNet {
    /// A prefix; fails if `len` is longer than the address (32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, ParseError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(error(
                &format!("{addr}/{len}"),
                EXPECTED_NET,
                Problem::PrefixLength { len, max },
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

    /// Parses `ADDRESS/LENGTH` like Go's `net.ParseCIDR`: the length is required and host bits are
    /// cleared (`10.1.2.3/8` → `10.0.0.0/8`).
    pub fn parse_network(s: &str) -> Result<Self, ParseError> {
        if !s.contains('/') {
            return Err(error(s, EXPECTED_NET, Problem::Syntax));
        }
        s.parse::<IpNet>().map(|n| n.network())
    }

    /// The address part.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The netmask, e.g. `255.255.255.0` for an IPv4 /24.
    pub fn mask(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(mask_v4(self.len))),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(mask_v6(self.len))),
        }
    }

    /// True for a `/0` prefix (the destination of a default route).
    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    /// True for IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// True for IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// The same prefix with the host bits cleared (`10.0.0.5/24` → `10.0.0.0/24`).
    pub fn network(&self) -> Self {
        let addr = match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(self.len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(self.len))),
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
    type Err = ParseError;
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a host prefix).
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let syntax = || error(s, EXPECTED_NET, Problem::Syntax);
        if !s.contains('/') {
            return s.parse().map(IpNet::host).map_err(|_| syntax());
        }
        let (addr, len) = split_prefix(s).ok_or_else(syntax)?;
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        IpNet::new(addr, len).map_err(|e| ParseError {
            value: s.to_string(),
            ..e
        })
    }
}

impl From<IpAddr> for IpNet {
    fn from(a: IpAddr) -> Self {
        IpNet::host(a)
    }
}

impl From<Ipv4Cidr> for IpNet {
    fn from(c: Ipv4Cidr) -> Self {
        IpNet {
            addr: IpAddr::V4(c.addr),
            len: c.len,
        }
    }
}

impl From<Ipv6Cidr> for IpNet {
    fn from(c: Ipv6Cidr) -> Self {
        IpNet {
            addr: IpAddr::V6(c.addr),
            len: c.len,
        }
    }
}

/// An Ethernet MAC address, printed lower-case as `0a:1b:2c:3d:4e:5f`.
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
    type Err = ParseError;
    /// Parses `0a:1b:2c:3d:4e:5f` (any case; `-` is also accepted as the separator).
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || error(s, EXPECTED_MAC, Problem::Syntax);
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

/// The host-side veth name prefix (`AWS_VPC_K8S_CNI_VETHPREFIX`, the conflist's `vethPrefix`): one rule
/// for the configuration, the conflist and the nft interface patterns.
///
/// A host veth is named prefix + 11 hex characters, and the nft rules match `<prefix>*`, so the prefix must
/// make a valid Linux interface name with those characters appended and must not change the pattern:
/// 1 to 4 bytes (interface names have at most 15), not `eth`, `vlan` or `lo` (upstream reserves them:
/// their interfaces would be taken for pods), and only ASCII letters, digits, `-`, `_` and `.`. That set
/// leaves out everything the kernel refuses in a name (`/`, `:`, whitespace) or treats specially
/// (`%` makes a name a template), the nft wildcard `*` and its escape `\`, and quotes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VethPrefix(String);

/// Why a veth prefix was refused; its Display names the prefix and states the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPrefixError {
    /// The value as given.
    pub value: String,
}

impl VethPrefix {
    /// The default, `eni`.
    pub const DEFAULT: &'static str = "eni";
    /// The longest prefix: 15-byte interface names minus the 11 hex characters appended.
    pub const MAX_LEN: usize = 4;
    /// The rule, as error messages state it.
    pub const RULE: &'static str =
        "1 to 4 characters from letters, digits, '-', '_' and '.', and not eth, vlan or lo";

    /// Checks `s` against the rule.
    pub fn parse(s: &str) -> Result<VethPrefix, VethPrefixError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && !matches!(s, "eth" | "vlan" | "lo")
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(VethPrefix(s.to_string()))
        } else {
            Err(VethPrefixError {
                value: s.to_string(),
            })
        }
    }

    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for VethPrefix {
    fn default() -> Self {
        VethPrefix(Self::DEFAULT.to_string())
    }
}

impl fmt::Display for VethPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for VethPrefix {
    type Err = VethPrefixError;
    fn from_str(s: &str) -> Result<Self, VethPrefixError> {
        VethPrefix::parse(s)
    }
}

impl AsRef<str> for VethPrefix {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for VethPrefix {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for VethPrefix {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for VethPrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "veth prefix {:?} is not valid: allowed are {}",
            self.value,
            VethPrefix::RULE
        )
    }
}

impl core::error::Error for VethPrefixError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn veth_prefixes_make_interface_names_and_plain_nft_patterns() {
        for good in ["eni", "v.1", "a-_9", "eth1", "LO", "."] {
            assert_eq!(VethPrefix::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "", "abcde", "eth", "vlan", "lo", "a/b", "a:b", "a b", "a\tb", "a*", "a\\", "a%",
            "a\"", "a'", "é",
        ] {
            let e = VethPrefix::parse(bad).unwrap_err();
            assert_eq!(e.value, bad);
            assert!(e.to_string().contains("not eth, vlan or lo"), "{e}");
        }
        assert_eq!(VethPrefix::default(), "eni");
    }

    #[test]
    fn ipv4_block_membership_and_bounds() {
        let p: Ipv4Cidr = "10.0.1.16/28".parse().unwrap();
        assert_eq!(p.to_string(), "10.0.1.16/28");
        assert_eq!(p.size(), 16);
        assert_eq!(p.mask(), Ipv4Addr::new(255, 255, 255, 240));
        assert!(p.contains(Ipv4Addr::new(10, 0, 1, 31)));
        assert!(!p.contains(Ipv4Addr::new(10, 0, 1, 32)));
        assert_eq!(p.nth(15), Some(Ipv4Addr::new(10, 0, 1, 31)));
        assert_eq!(p.nth(16), None);
        assert_eq!(p.last(), Ipv4Addr::new(10, 0, 1, 31));
        assert!(p.overlaps(&Ipv4Cidr::host(Ipv4Addr::new(10, 0, 1, 20))));
        assert!(!p.is_host());
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.168.1.1".parse().unwrap()));
        assert_eq!(all.size(), 1 << 32);
    }

    #[test]
    fn bad_blocks_name_the_value_the_expectation_and_the_problem() {
        let e = "10.0.1.17/28".parse::<Ipv4Cidr>().unwrap_err();
        assert_eq!(e.problem, Problem::HostBits);
        assert_eq!(e.value, "10.0.1.17/28");
        assert!(e.to_string().contains("network address"), "{e}");
        let e = "10.0.1.16/33".parse::<Ipv4Cidr>().unwrap_err();
        assert_eq!(e.problem, Problem::PrefixLength { len: 33, max: 32 });
        assert!(e.to_string().contains("at most 32"), "{e}");
        for s in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "x/8",
            "",
            "10.0.0.0/+8",
        ] {
            let e = s.parse::<Ipv4Cidr>().unwrap_err();
            assert!(e.to_string().contains("IPv4 CIDR"), "{e}");
            assert_eq!(e.value, s);
        }
        assert_eq!(
            "10.0.1.16".parse::<Ipv4Cidr>().unwrap_err().problem,
            Problem::Syntax
        );
        assert_eq!(
            Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 1), 24)
                .unwrap_err()
                .to_string(),
            "\"10.0.0.1/24\" is not an IPv4 CIDR such as 10.0.0.0/16: bits are set after the prefix \
             length (use the network address, e.g. 10.0.1.16/28)"
        );
        let e = "2600::/129".parse::<Ipv6Cidr>().unwrap_err();
        assert_eq!(e.problem, Problem::PrefixLength { len: 129, max: 128 });
        assert!(e.to_string().contains("IPv6 CIDR"), "{e}");
        assert_eq!(
            "2600::1/64".parse::<Ipv6Cidr>().unwrap_err().problem,
            Problem::HostBits
        );
    }

    #[test]
    fn ipv6_block_membership() {
        let p: Ipv6Cidr = "2600:1f14:abcd:1200:7::/80".parse().unwrap();
        assert!(p.contains("2600:1f14:abcd:1200:7:0:0:5".parse().unwrap()));
        assert!(!p.contains("2600:1f14:abcd:1200:8::".parse().unwrap()));
        assert_eq!(p.size(), 1u128 << 48);
        assert_eq!(p.nth(1), Some("2600:1f14:abcd:1200:7::1".parse().unwrap()));
        assert_eq!(
            p.mask(),
            "ffff:ffff:ffff:ffff:ffff::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            "2600:1f14::/56".parse::<Ipv6Cidr>().unwrap().prefix_len(),
            56
        );
    }

    #[test]
    fn parses_and_prints_prefixes() {
        let p: IpNet = "10.0.0.5/24".parse().unwrap();
        assert_eq!(p.to_string(), "10.0.0.5/24");
        assert_eq!(p.network().to_string(), "10.0.0.0/24");
        assert!(p.contains("10.0.0.200".parse().unwrap()));
        assert!(!p.contains("10.0.1.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        assert_eq!(
            "fd00::1".parse::<IpNet>().unwrap().to_string(),
            "fd00::1/128"
        );
        assert!("10.0.0.0/33"
            .parse::<IpNet>()
            .unwrap_err()
            .to_string()
            .contains("at most 32"));
        assert!("ten/8"
            .parse::<IpNet>()
            .unwrap_err()
            .to_string()
            .contains("not an IP prefix"));
        assert_eq!(IpNet::default_for(false).to_string(), "0.0.0.0/0");
        assert!(IpNet::default_for(false).is_default() && !p.is_default());
        assert_eq!(IpNet::default_for(true).to_string(), "::/0");
    }

    #[test]
    fn network_parse_clears_host_bits_and_wants_a_length() {
        let norm = |s: &str| IpNet::parse_network(s).map(|c| c.to_string()).ok();
        assert_eq!(norm("10.1.2.3/8"), Some("10.0.0.0/8".into()));
        assert_eq!(norm("0.0.0.0/0"), Some("0.0.0.0/0".into()));
        assert_eq!(norm("fd00::ac:1/118"), Some("fd00::ac:0/118".into()));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "x/8",
            "::/129",
        ] {
            let e = IpNet::parse_network(bad).unwrap_err();
            assert_eq!(e.value, bad);
            assert!(e.to_string().contains("IP prefix"), "{e}");
        }
    }

    #[test]
    fn blocks_convert_to_prefixes() {
        let v4: IpNet = "10.0.1.0/24".parse::<Ipv4Cidr>().unwrap().into();
        assert_eq!(v4.to_string(), "10.0.1.0/24");
        let v6: IpNet = "2600:1f14::/56".parse::<Ipv6Cidr>().unwrap().into();
        assert_eq!(v6.to_string(), "2600:1f14::/56");
        assert!(v6.is_ipv6() && !v6.is_ipv4());
        assert_eq!(v4.mask(), IpAddr::V4(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(v6.mask().to_string(), "ffff:ffff:ffff:ff00::");
    }

    #[test]
    fn parses_and_prints_macs() {
        let m: MacAddr = "0A:1b:2c:3d:4e:5f".parse().unwrap();
        assert_eq!(m.to_string(), "0a:1b:2c:3d:4e:5f");
        assert_eq!("0a-1b-2c-3d-4e-5f".parse::<MacAddr>().unwrap(), m);
        for s in [
            "0a:1b:2c:3d:4e",
            "0a:1b:2c:3d:4e:5f:60",
            "0a:1b:2c:3d:4e:zz",
            "0a1b2c3d4e5f",
            "",
        ] {
            let e = s.parse::<MacAddr>().unwrap_err();
            assert_eq!(e.value, s);
            assert!(e.to_string().contains("MAC address"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn prefix_round_trips(a in any::<u32>(), len in 0u8..=32) {
            let p = IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), len).unwrap();
            prop_assert_eq!(p.to_string().parse::<IpNet>().unwrap(), p);
            prop_assert!(p.network().contains(p.addr()));
            prop_assert_eq!(IpNet::parse_network(&p.to_string()).unwrap(), p.network());
        }

        #[test]
        fn ipv4_blocks_round_trip_and_hold_their_addresses(a in any::<u32>(), len in 0u8..=32, i in any::<u64>()) {
            let c = Ipv4Cidr::new(Ipv4Addr::from(a & mask_v4(len)), len).unwrap();
            prop_assert_eq!(c.to_string().parse::<Ipv4Cidr>().unwrap(), c);
            prop_assert!(c.contains(c.last()));
            let i = i % c.size();
            prop_assert!(c.contains(c.nth(i).unwrap()));
            prop_assert_eq!(IpNet::from(c).network(), IpNet::from(c));
            if a & !mask_v4(len) != 0 {
                prop_assert_eq!(
                    Ipv4Cidr::new(Ipv4Addr::from(a), len).unwrap_err().problem,
                    Problem::HostBits
                );
            }
        }

        #[test]
        fn ipv6_blocks_round_trip(a in any::<u128>(), len in 0u8..=128) {
            let c = Ipv6Cidr::new(Ipv6Addr::from(a & mask_v6(len)), len).unwrap();
            prop_assert_eq!(c.to_string().parse::<Ipv6Cidr>().unwrap(), c);
            prop_assert!(c.contains(c.last()));
            prop_assert!(c.contains(c.nth(0).unwrap()));
        }

        #[test]
        fn macs_round_trip(b in any::<[u8; 6]>()) {
            let m = MacAddr(b);
            prop_assert_eq!(m.to_string().parse::<MacAddr>().unwrap(), m);
            let upper: Vec<u8> = m.to_string().bytes().map(|c| c.to_ascii_uppercase()).collect();
            prop_assert_eq!(core::str::from_utf8(&upper).unwrap().parse::<MacAddr>().unwrap(), m);
        }
    }
}
