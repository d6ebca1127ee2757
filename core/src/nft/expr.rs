//! nftables expressions (the kernel's rule bytecode) and their netlink encoding.
//!
//! Only what the SNAT and connmark rules need. Every expression works on register 1 (verdicts on
//! register 0), exactly as `nft` 1.0.6 compiles the same rules, so `nft --debug=netlink` prints
//! the same bytecode for our rules and for the `nft` spelling of them.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::netlink::wire::MsgBuf;

pub(crate) const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFT_NAT_SNAT: u32 = 0;
const NFPROTO_IPV4: u32 = 2;
/// `RTN_LOCAL`, as the fib expression reports an address type (host byte order).
pub const RTN_LOCAL: u32 = 2;
/// `NFTA_FIB_F_DADDR`: look up the destination address.
pub const FIB_DADDR: u32 = 2;
/// `NFTA_FIB_F_IIF`: restrict the lookup to the input interface (`--limit-iface-in`).
pub const FIB_IIF: u32 = 8;
/// `NF_NAT_RANGE_PROTO_RANDOM`: `random` (iptables `--random`).
pub const NAT_RANDOM: u32 = 0x04;
/// `NF_NAT_RANGE_PROTO_RANDOM_FULLY`: `fully-random` (iptables `--random-fully`).
pub const NAT_RANDOM_FULLY: u32 = 0x10;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`.
    Eq,
    /// `!=`.
    Neq,
}

/// A `meta` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// `meta mark` (`NFT_META_MARK`).
    Mark,
    /// `iifname` (`NFT_META_IIFNAME`).
    IifName,
    /// `oifname` (`NFT_META_OIFNAME`).
    OifName,
}

impl MetaKey {
    fn code(self) -> u32 {
        match self {
            MetaKey::Mark => 3,
            MetaKey::IifName => 6,
            MetaKey::OifName => 7,
        }
    }
}

/// A verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `return` (`NFT_RETURN`).
    Return,
    /// `jump <chain>` (`NFT_JUMP`).
    Jump(String),
}

/// One expression; loads and stores use register 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `payload load <len>b @ network header + <offset> => reg 1`.
    PayloadNetwork {
        /// Byte offset in the IP header.
        offset: u32,
        /// Bytes to load.
        len: u32,
    },
    /// `cmp <op> reg 1 <data>`.
    Cmp(CmpOp, Vec<u8>),
    /// `bitwise reg 1 = ( reg 1 & <mask> ) ^ <xor>`.
    Bitwise {
        /// AND mask.
        mask: Vec<u8>,
        /// XOR value (same length).
        xor: Vec<u8>,
    },
    /// `meta load <key> => reg 1`.
    MetaLoad(MetaKey),
    /// `meta set <key> with reg 1`.
    MetaSet(MetaKey),
    /// `ct load mark => reg 1`.
    CtMarkLoad,
    /// `ct set mark with reg 1`.
    CtMarkSet,
    /// `fib <flags> type => reg 1`.
    FibAddrType(u32),
    /// `immediate reg 0 <verdict>`.
    Verdict(Verdict),
    /// `immediate reg 1 <data>`.
    Immediate(Vec<u8>),
    /// `nat snat ip addr_min reg 1 [flags <flags>]`.
    SnatIpv4 {
        /// `NF_NAT_RANGE_*` randomisation flags (0 for none).
        flags: u32,
    },
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::PayloadNetwork { .. } => "payload",
            Expr::Cmp(..) => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::MetaLoad(_) | Expr::MetaSet(_) => "meta",
            Expr::CtMarkLoad | Expr::CtMarkSet => "ct",
            Expr::FibAddrType(_) => "fib",
            Expr::Verdict(_) | Expr::Immediate(_) => "immediate",
            Expr::SnatIpv4 { .. } => "nat",
        }
    }

    /// Appends this expression as one `NFTA_LIST_ELEM` of a rule's expression list.
    pub(crate) fn encode(&self, m: &mut MsgBuf) {
        let elem = m.nest(NFTA_LIST_ELEM);
        m.attr_str(NFTA_EXPR_NAME, self.name());
        let data = m.nest(NFTA_EXPR_DATA);
        match self {
            Expr::PayloadNetwork { offset, len } => {
                m.attr_be32(1, NFT_REG_1); // NFTA_PAYLOAD_DREG
                m.attr_be32(2, NFT_PAYLOAD_NETWORK_HEADER); // NFTA_PAYLOAD_BASE
                m.attr_be32(3, *offset); // NFTA_PAYLOAD_OFFSET
                m.attr_be32(4, *len); // NFTA_PAYLOAD_LEN
            }
            Expr::Cmp(op, value) => {
                m.attr_be32(1, NFT_REG_1); // NFTA_CMP_SREG
                m.attr_be32(2, if *op == CmpOp::Eq { 0 } else { 1 }); // NFTA_CMP_OP
                data_value(m, 3, value); // NFTA_CMP_DATA
            }
            Expr::Bitwise { mask, xor } => {
                m.attr_be32(1, NFT_REG_1); // NFTA_BITWISE_SREG
                m.attr_be32(2, NFT_REG_1); // NFTA_BITWISE_DREG
                m.attr_be32(3, mask.len() as u32); // NFTA_BITWISE_LEN
                data_value(m, 4, mask); // NFTA_BITWISE_MASK
                data_value(m, 5, xor); // NFTA_BITWISE_XOR
            }
            Expr::MetaLoad(key) => {
                m.attr_be32(2, key.code()); // NFTA_META_KEY
                m.attr_be32(1, NFT_REG_1); // NFTA_META_DREG
            }
            Expr::MetaSet(key) => {
                m.attr_be32(2, key.code()); // NFTA_META_KEY
                m.attr_be32(3, NFT_REG_1); // NFTA_META_SREG
            }
            Expr::CtMarkLoad => {
                m.attr_be32(2, 3); // NFTA_CT_KEY = NFT_CT_MARK
                m.attr_be32(1, NFT_REG_1); // NFTA_CT_DREG
            }
            Expr::CtMarkSet => {
                m.attr_be32(2, 3); // NFTA_CT_KEY = NFT_CT_MARK
                m.attr_be32(4, NFT_REG_1); // NFTA_CT_SREG
            }
            Expr::FibAddrType(flags) => {
                m.attr_be32(1, NFT_REG_1); // NFTA_FIB_DREG
                m.attr_be32(2, NFT_FIB_RESULT_ADDRTYPE); // NFTA_FIB_RESULT
                m.attr_be32(3, *flags); // NFTA_FIB_FLAGS
            }
            Expr::Verdict(v) => {
                m.attr_be32(1, NFT_REG_VERDICT); // NFTA_IMMEDIATE_DREG
                let d = m.nest(2); // NFTA_IMMEDIATE_DATA
                let vn = m.nest(NFTA_DATA_VERDICT);
                match v {
                    Verdict::Return => m.attr_be32(NFTA_VERDICT_CODE, (-5i32) as u32),
                    Verdict::Jump(chain) => {
                        m.attr_be32(NFTA_VERDICT_CODE, (-3i32) as u32);
                        m.attr_str(NFTA_VERDICT_CHAIN, chain);
                    }
                }
                m.end_nest(vn);
                m.end_nest(d);
            }
            Expr::Immediate(value) => {
                m.attr_be32(1, NFT_REG_1); // NFTA_IMMEDIATE_DREG
                data_value(m, 2, value); // NFTA_IMMEDIATE_DATA
            }
            Expr::SnatIpv4 { flags } => {
                m.attr_be32(1, NFT_NAT_SNAT); // NFTA_NAT_TYPE
                m.attr_be32(2, NFPROTO_IPV4); // NFTA_NAT_FAMILY
                m.attr_be32(3, NFT_REG_1); // NFTA_NAT_REG_ADDR_MIN
                if *flags != 0 {
                    m.attr_be32(7, *flags); // NFTA_NAT_FLAGS
                }
            }
        }
        m.end_nest(data);
        m.end_nest(elem);
    }
}

fn data_value(m: &mut MsgBuf, ty: u16, value: &[u8]) {
    let n = m.nest(ty);
    m.attr(NFTA_DATA_VALUE, value);
    m.end_nest(n);
}

/// `ip daddr <prefix>` as nft compiles it: a byte-aligned prefix loads just its bytes; any other
/// loads the whole address, masks it and compares with the (masked) network.
pub fn ip_daddr(net: [u8; 4], len: u8) -> Vec<Expr> {
    let mask_u32 = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    let masked = (u32::from_be_bytes(net) & mask_u32).to_be_bytes();
    if len % 8 == 0 && len > 0 {
        let n = usize::from(len / 8);
        vec![
            Expr::PayloadNetwork {
                offset: 16,
                len: n as u32,
            },
            Expr::Cmp(CmpOp::Eq, masked[..n].to_vec()),
        ]
    } else {
        vec![
            Expr::PayloadNetwork { offset: 16, len: 4 },
            Expr::Bitwise {
                mask: mask_u32.to_be_bytes().to_vec(),
                xor: vec![0; 4],
            },
            Expr::Cmp(CmpOp::Eq, masked.to_vec()),
        ]
    }
}

/// `iifname`/`oifname` match: `"eni*"` compares the prefix bytes only, an exact name compares all
/// 16 bytes (`IFNAMSIZ`, NUL padded).
pub fn ifname(key: MetaKey, op: CmpOp, pattern: &str) -> Vec<Expr> {
    let data = match pattern.strip_suffix('*') {
        Some(prefix) => prefix.as_bytes().to_vec(),
        None => {
            let mut d = pattern.as_bytes().to_vec();
            d.resize(16, 0);
            d
        }
    };
    vec![Expr::MetaLoad(key), Expr::Cmp(op, data)]
}

/// `ct mark` masked with `mask` (host byte order, as the kernel keeps marks).
pub fn ct_mark_and(mask: u32) -> Vec<Expr> {
    vec![
        Expr::CtMarkLoad,
        Expr::Bitwise {
            mask: mask.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
    ]
}

/// `ct mark set ct mark | <bits>`.
pub fn ct_mark_or(bits: u32) -> Vec<Expr> {
    vec![
        Expr::CtMarkLoad,
        Expr::Bitwise {
            mask: (!bits).to_ne_bytes().to_vec(),
            xor: bits.to_ne_bytes().to_vec(),
        },
        Expr::CtMarkSet,
    ]
}

/// `ct mark & <mask> == <value>`: matches when the masked connection mark equals `value`.
pub fn ct_mark_masked_eq(mask: u32, value: u32) -> Vec<Expr> {
    let mut e = ct_mark_and(mask);
    e.push(Expr::Cmp(CmpOp::Eq, value.to_ne_bytes().to_vec()));
    e
}

/// `meta mark set meta mark | <bits>`: sets `bits` in the packet mark, keeping every other bit.
pub fn meta_mark_or(bits: u32) -> Vec<Expr> {
    vec![
        Expr::MetaLoad(MetaKey::Mark),
        Expr::Bitwise {
            mask: (!bits).to_ne_bytes().to_vec(),
            xor: bits.to_ne_bytes().to_vec(),
        },
        Expr::MetaSet(MetaKey::Mark),
    ]
}

/// `meta mark set meta mark & <!bits>`: clears `bits` in the packet mark, keeping every other bit.
pub fn meta_mark_clear(bits: u32) -> Vec<Expr> {
    vec![
        Expr::MetaLoad(MetaKey::Mark),
        Expr::Bitwise {
            mask: (!bits).to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::MetaSet(MetaKey::Mark),
    ]
}

/// iptables `CONNMARK --restore-mark --mask <mask>` after the match `condition`: the packet mark
/// becomes `(meta mark & !mask) | (ct mark & mask)`. The kernels and `nft` versions we target
/// cannot combine two registers in one bitwise expression, so this takes two rules per bit of
/// `mask` (lowest first): `ct mark & bit == bit` sets the bit, `ct mark & bit == 0` clears it.
/// The bits are independent, so every value of the connection mark is covered.
pub fn restore_mark_bits(condition: &[Expr], mask: u32) -> Vec<Vec<Expr>> {
    let rule = |bit: u32, value: u32, action: Vec<Expr>| {
        let mut r = condition.to_vec();
        r.extend(ct_mark_masked_eq(bit, value));
        r.extend(action);
        r
    };
    (0..32)
        .map(|i| 1u32 << i)
        .filter(|bit| mask & bit != 0)
        .flat_map(|bit| {
            [
                rule(bit, bit, meta_mark_or(bit)),
                rule(bit, 0, meta_mark_clear(bit)),
            ]
        })
        .collect()
}
