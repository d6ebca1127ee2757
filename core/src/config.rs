//! The configuration's pure value types and Go-compatible scalar parsers, shared by the nftables
//! ruleset builder and the environment reader. The reader itself (`vpc_cni::config::Config`) stays
//! in the main crate: its fields hold `std::path::PathBuf`s and it reads the process environment;
//! it re-exports everything here.

use alloc::format;
use alloc::string::String;
use core::str::FromStr;

/// Default connection mark (upstream's `defaultConnmark`; kube-proxy uses 0xc000, Calico 0xffff0000).
pub const DEFAULT_CONNMARK: u32 = 0x80;

/// SNAT source-port randomisation (AWS_VPC_K8S_CNI_RANDOMIZESNAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomizeSnat {
    /// `prng`: fully random ports (nft `fully-random`, iptables `--random-fully`).
    Prng,
    /// `hashrandom`: hash-based random ports (nft `random`, iptables `--random`).
    HashRandom,
    /// `none`: sequential ports.
    None,
}

impl RandomizeSnat {
    /// Upstream's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RandomizeSnat::Prng => "prng",
            RandomizeSnat::HashRandom => "hashrandom",
            RandomizeSnat::None => "none",
        }
    }
}

impl FromStr for RandomizeSnat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "prng" | "" => Ok(RandomizeSnat::Prng),
            "hashrandom" => Ok(RandomizeSnat::HashRandom),
            "none" => Ok(RandomizeSnat::None),
            other => Err(format!(
                "AWS_VPC_K8S_CNI_RANDOMIZESNAT={other:?} is not valid (allowed: prng, hashrandom, none)"
            )),
        }
    }
}

/// Branch-ENI pod traffic mode (POD_SECURITY_GROUP_ENFORCING_MODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSgEnforcingMode {
    /// All branch-ENI pod traffic through the branch ENI.
    Strict,
    /// Pod-to-pod traffic on the node stays local; SNAT applies.
    Standard,
}

impl PodSgEnforcingMode {
    /// Upstream's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PodSgEnforcingMode::Strict => "strict",
            PodSgEnforcingMode::Standard => "standard",
        }
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)` without digit separators: an optional sign, then `0x`/`0X` hex, `0o`/`0O`
/// or a leading `0` octal, `0b`/`0B` binary, or decimal.
pub fn parse_go_int_any_base(s: &str) -> Option<i64> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = body.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &body[2..]),
        Some("0o") => (8, &body[2..]),
        Some("0b") => (2, &body[2..]),
        _ if body.len() > 1 && body.starts_with('0') => (8, &body[1..]),
        _ => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i64::from_str_radix(digits, radix).ok()?;
    Some(if negative { -v } else { v })
}

/// Go's `strconv.Atoi` for 64-bit: optional sign, decimal digits, nothing else.
pub fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
