//! nftables, the pure half: the SNAT chain and the connmark chains of `table ip aws-cni` as data
//! ([`ruleset`]), the batch that replaces the table atomically ([`encode_batch`]), and the requests
//! and reply parsers that read it back ([`Snapshot`]). The socket side (`vpc_cni::nft::Nft`) reads
//! the table from the kernel first and sends nothing when it already holds exactly the wanted
//! rules, so applying twice changes nothing; otherwise one transaction (`add table; delete table;
//! table {...}`) replaces it, so there is never a moment without rules.
//!
//! The table, in `nft` syntax (defaults: VPC 10.0.0.0/16, primary eth0 10.0.0.10, prefix `eni`,
//! `AWS_VPC_K8S_CNI_CONNMARK` 0x80):
//! ```text
//! table ip aws-cni {
//!   chain snat-postrouting {            # upstream AWS-SNAT-CHAIN-0 (absent with external SNAT)
//!     type nat hook postrouting priority srcnat + 10; policy accept;
//!     ip daddr 10.0.0.0/16 return       # each VPC CIDR, then each AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS entry
//!     oifname != "vlan*" fib daddr type != local snat ip to 10.0.0.10 fully-random
//!   }
//!   chain snat-mark {                   # upstream AWS-CONNMARK-CHAIN-0 (absent with external SNAT)
//!     ip daddr 10.0.0.0/16 return
//!     ct mark set ct mark | 0x80
//!   }
//!   chain nat-prerouting {              # marks new pod connections leaving the VPC
//!     type nat hook prerouting priority dstnat + 10; policy accept;
//!     fib daddr type local return
//!     iifname "eni*" jump snat-mark
//!     ct mark & 0x80 == 0x80 meta mark set meta mark | 0x80        # first packet:
//!     ct mark & 0x80 == 0 meta mark set meta mark & 0xffffff7f     #   restore bit 0x80
//!   }
//!   chain mangle-prerouting {           # NodePort replies and later packets
//!     type filter hook prerouting priority mangle + 10; policy accept;
//!     iifname "eth0" fib daddr . iif type local ct mark set ct mark | 0x80   # only with node port support
//!     iifname "eni*" ct mark & 0x80 == 0x80 meta mark set meta mark | 0x80
//!     iifname "eni*" ct mark & 0x80 == 0 meta mark set meta mark & 0xffffff7f
//!     iifname "vlan*" ct mark & 0x80 == 0x80 meta mark set meta mark | 0x80
//!     iifname "vlan*" ct mark & 0x80 == 0 meta mark set meta mark & 0xffffff7f
//!   }
//! }
//! ```
//! Each pair of `ct mark & 0x80 == …` rules is iptables' `CONNMARK --restore-mark --mask 0x80`
//! (a connmark of several bits takes one pair per bit):
//! bit 0x80 of the packet mark follows the connection mark and every other bit is kept, so marks
//! set by other agents (kube-proxy, network policy engines, service meshes) survive. `nft` 1.0.6
//! refuses `meta mark set meta mark & 0xffffff7f | ct mark & 0x80` (the right side of `|` must be
//! a constant) and older kernels have no bitwise operation on two registers, hence one rule per
//! value of the bit. Upstream's own nftables backend writes the first-packet
//! rule as `meta mark set ct mark & 0x80`, which wipes the other bits; we keep iptables'
//! semantics there too.
//! The connmark as fwmark (`fwmark 0x80/0x80`) sends marked traffic through the main table (rule priority 1024, set by the
//! caller), so replies leave through the primary interface.

pub mod expr;
pub mod tree;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use crate::net::{IpNet, VethPrefix};
use crate::netlink::wire::{
    self, MsgBuf, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST,
};
use expr::{ct_mark_or, ifname, ip_daddr, restore_mark_bits, CmpOp, Expr, MetaKey, Verdict};
use tree::{decode_exprs, ExprTree};

/// Name of our table (family `ip`); the same name as upstream's nftables connmark table, which
/// this one supersedes.
pub const TABLE: &str = "aws-cni";
/// Priority of `snat-postrouting`: srcnat + 10, so it runs after iptables-nft's `nat POSTROUTING`
/// and kube-proxy's `nat-postrouting` (both srcnat, 100). The first NAT chain that translates a
/// connection wins, so kube-proxy's masquerade keeps precedence, as its jump placed first did
/// under iptables; at equal priorities the order would depend on which chain was created last.
pub const SNAT_PRIORITY: i32 = 110;
/// Priority of `nat-prerouting`: dstnat + 10, after kube-proxy's DNAT (dstnat, -100), as upstream's.
pub const NAT_PREROUTING_PRIORITY: i32 = -90;
/// Priority of `mangle-prerouting`: mangle + 10, after iptables-nft's `mangle PREROUTING` (-150).
pub const MANGLE_PRIORITY: i32 = -140;
/// The connmark upstream uses by default (`AWS_VPC_K8S_CNI_CONNMARK`).
pub const CONNMARK: u32 = crate::config::DEFAULT_CONNMARK;

pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
pub const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
pub const NFT_MSG_GETRULE: u16 = 7;
pub const NFPROTO_IPV4: u8 = 2;
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_POST_ROUTING: u32 = 4;
const NF_ACCEPT: u32 = 1;

/// How SNAT picks source ports (`AWS_VPC_K8S_CNI_RANDOMIZESNAT`): the configuration's type.
pub use crate::config::RandomizeSnat as Randomize;

/// What the SNAT and connmark rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatConfig {
    /// The node's primary private IPv4 address: the SNAT source.
    pub primary_ip: Ipv4Addr,
    /// The primary interface (e.g. `eth0`, `ens5`): NodePort traffic arrives here.
    pub primary_ifname: String,
    /// VPC CIDRs: traffic to them is not translated.
    pub vpc_cidrs: Vec<IpNet>,
    /// `AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS`: also not translated.
    pub exclude_cidrs: Vec<IpNet>,
    /// `AWS_VPC_K8S_CNI_RANDOMIZESNAT`.
    pub randomize: Randomize,
    /// `AWS_VPC_CNI_NODE_PORT_SUPPORT`.
    pub node_port_support: bool,
    /// `AWS_VPC_K8S_CNI_EXTERNALSNAT`: no SNAT and no SNAT connmark at all.
    pub external_snat: bool,
    /// `AWS_VPC_K8S_CNI_CONNMARK` (default [`CONNMARK`]): the bits set on marked connections and
    /// restored to their packets (iptables `--set-mark M/M`, `--restore-mark --mask M`); not 0.
    pub connmark: u32,
    /// Host-side veth prefix (`AWS_VPC_K8S_CNI_VETHPREFIX`, default `eni`); its rule keeps the
    /// pattern `<prefix>*` a plain prefix match.
    pub veth_prefix: VethPrefix,
}

/// A base chain's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    /// `nat` or `filter`.
    pub kind: &'static str,
    /// `NF_INET_*` hook number.
    pub hook: u32,
    /// Priority.
    pub priority: i32,
    /// Policy for packets no rule decides (`NF_ACCEPT` = 1).
    pub policy: u32,
}

/// One chain and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Chain name.
    pub name: &'static str,
    /// `Some` for a base chain (policy accept), `None` for a regular chain.
    pub hook: Option<Hook>,
    /// Rules, in order.
    pub rules: Vec<Vec<Expr>>,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// Chains in creation order (a chain is created before any jump to it).
    pub chains: Vec<Chain>,
}

fn v4_prefixes(what: &str, nets: &[IpNet]) -> Result<Vec<([u8; 4], u8)>, String> {
    nets.iter()
        .map(|n| match n.addr() {
            IpAddr::V4(a) => Ok((a.octets(), n.prefix_len())),
            IpAddr::V6(_) => Err(format!("{what} {n} is IPv6; the SNAT table is IPv4 only")),
        })
        .collect()
}

fn valid_ifname(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 || name.contains(['*', '/', ' ', '"']) {
        return Err(format!(
            "{what} {name:?} is not valid (1 to 15 bytes, no '*', '/', '\"' or spaces)"
        ));
    }
    Ok(())
}

/// The wanted table for `cfg`, or `None` when nothing is needed (external SNAT and no NodePort
/// support): then the table is removed. Pure.
pub fn ruleset(cfg: &SnatConfig) -> Result<Option<Ruleset>, String> {
    valid_ifname("primary interface", &cfg.primary_ifname)?;
    let mut skip = v4_prefixes("VPC CIDR", &cfg.vpc_cidrs)?;
    skip.extend(v4_prefixes("excluded SNAT CIDR", &cfg.exclude_cidrs)?);
    let returns = |rules: &mut Vec<Vec<Expr>>| {
        for (net, len) in &skip {
            let mut r = ip_daddr(*net, *len);
            r.push(Expr::Verdict(Verdict::Return));
            rules.push(r);
        }
    };
    let veth = format!("{}*", cfg.veth_prefix);
    if cfg.connmark == 0 {
        return Err("connmark 0 is not valid (AWS_VPC_K8S_CNI_CONNMARK: 1 to 0xffffffff)".into());
    }
    let connmark = cfg.connmark;
    let restore_mark =
        |pattern: &str| restore_mark_bits(&ifname(MetaKey::IifName, CmpOp::Eq, pattern), connmark);
    let mut chains = Vec::new();
    if !cfg.external_snat {
        let mut snat = Vec::new();
        returns(&mut snat);
        let mut r = ifname(MetaKey::OifName, CmpOp::Neq, "vlan*");
        r.push(Expr::FibAddrType(expr::FIB_DADDR));
        r.push(Expr::Cmp(
            CmpOp::Neq,
            expr::RTN_LOCAL.to_ne_bytes().to_vec(),
        ));
        r.push(Expr::Immediate(cfg.primary_ip.octets().to_vec()));
        let flags = match cfg.randomize {
            Randomize::Prng => expr::NAT_RANDOM_FULLY,
            Randomize::HashRandom => expr::NAT_RANDOM,
            Randomize::None => 0,
        };
        r.push(Expr::SnatIpv4 { flags });
        snat.push(r);
        chains.push(Chain {
            name: "snat-postrouting",
            hook: Some(Hook {
                kind: "nat",
                hook: NF_INET_POST_ROUTING,
                priority: SNAT_PRIORITY,
                policy: NF_ACCEPT,
            }),
            rules: snat,
        });

        let mut mark = Vec::new();
        returns(&mut mark);
        mark.push(ct_mark_or(connmark));
        chains.push(Chain {
            name: "snat-mark",
            hook: None,
            rules: mark,
        });

        let mut local_return = vec![
            Expr::FibAddrType(expr::FIB_DADDR),
            Expr::Cmp(CmpOp::Eq, expr::RTN_LOCAL.to_ne_bytes().to_vec()),
        ];
        local_return.push(Expr::Verdict(Verdict::Return));
        let mut jump = ifname(MetaKey::IifName, CmpOp::Eq, &veth);
        jump.push(Expr::Verdict(Verdict::Jump("snat-mark".into())));
        let mut rules = vec![local_return, jump];
        rules.extend(restore_mark_bits(&[], connmark));
        chains.push(Chain {
            name: "nat-prerouting",
            hook: Some(Hook {
                kind: "nat",
                hook: NF_INET_PRE_ROUTING,
                priority: NAT_PREROUTING_PRIORITY,
                policy: NF_ACCEPT,
            }),
            rules,
        });
    }
    if cfg.node_port_support || !cfg.external_snat {
        let mut rules = Vec::new();
        if cfg.node_port_support {
            let mut r = ifname(MetaKey::IifName, CmpOp::Eq, &cfg.primary_ifname);
            r.push(Expr::FibAddrType(expr::FIB_DADDR | expr::FIB_IIF));
            r.push(Expr::Cmp(CmpOp::Eq, expr::RTN_LOCAL.to_ne_bytes().to_vec()));
            r.extend(ct_mark_or(connmark));
            rules.push(r);
        }
        rules.extend(restore_mark(&veth));
        rules.extend(restore_mark("vlan*"));
        chains.push(Chain {
            name: "mangle-prerouting",
            hook: Some(Hook {
                kind: "filter",
                hook: NF_INET_PRE_ROUTING,
                priority: MANGLE_PRIORITY,
                policy: NF_ACCEPT,
            }),
            rules,
        });
    }
    if chains.is_empty() {
        return Ok(None);
    }
    Ok(Some(Ruleset { chains }))
}

/// The nfnetlink header of a message: address family and resource id.
pub fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let r = res_id.to_be_bytes();
    [family, 0, r[0], r[1]]
}

/// An nftables message type in the nfnetlink subsystem numbering.
pub fn msg_type(m: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | m
}

fn begin(m: &mut MsgBuf, ty: u16, flags: u16) {
    m.begin(msg_type(ty), NLM_F_REQUEST | NLM_F_ACK | flags, 0);
    m.put(&nfgenmsg(NFPROTO_IPV4, 0));
}

/// Appends the `NFT_MSG_NEWRULE` for one rule (also used by the golden tests).
pub fn encode_rule(m: &mut MsgBuf, chain: &str, rule: &[Expr]) {
    begin(m, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
    m.attr_str(1, TABLE); // NFTA_RULE_TABLE
    m.attr_str(2, chain); // NFTA_RULE_CHAIN
    let list = m.nest(4); // NFTA_RULE_EXPRESSIONS
    for e in rule {
        e.encode(m);
    }
    m.end_nest(list);
}

/// The batch that makes the kernel's table equal `rs` (or removes it for `None`), with a
/// description of each message for error reports. Pure.
pub fn encode_batch(rs: Option<&Ruleset>) -> (Vec<u8>, Vec<String>) {
    let mut m = MsgBuf::new();
    let mut what = Vec::new();
    m.begin(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0);
    m.put(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
    what.push("begin batch".to_string());
    // "add table" succeeds whether or not it exists, so the delete that follows cannot fail.
    begin(&mut m, NFT_MSG_NEWTABLE, NLM_F_CREATE);
    m.attr_str(1, TABLE);
    what.push(format!("add table ip {TABLE}"));
    begin(&mut m, NFT_MSG_DELTABLE, 0);
    m.attr_str(1, TABLE);
    what.push(format!("delete table ip {TABLE}"));
    if let Some(rs) = rs {
        begin(&mut m, NFT_MSG_NEWTABLE, NLM_F_CREATE);
        m.attr_str(1, TABLE);
        what.push(format!("add table ip {TABLE}"));
        for c in &rs.chains {
            begin(&mut m, NFT_MSG_NEWCHAIN, NLM_F_CREATE);
            m.attr_str(1, TABLE); // NFTA_CHAIN_TABLE
            m.attr_str(3, c.name); // NFTA_CHAIN_NAME
            if let Some(h) = c.hook {
                let n = m.nest(4); // NFTA_CHAIN_HOOK
                m.attr_be32(1, h.hook); // NFTA_HOOK_HOOKNUM
                m.attr_be32(2, h.priority as u32); // NFTA_HOOK_PRIORITY
                m.end_nest(n);
                m.attr_be32(5, h.policy); // NFTA_CHAIN_POLICY
                m.attr_str(7, h.kind); // NFTA_CHAIN_TYPE
            }
            what.push(format!("add chain ip {TABLE} {}", c.name));
            for (i, r) in c.rules.iter().enumerate() {
                encode_rule(&mut m, c.name, r);
                what.push(format!("add rule ip {TABLE} {} (rule {})", c.name, i + 1));
            }
        }
    }
    m.begin(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0);
    m.put(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
    what.push("end batch".to_string());
    (m.finish(), what)
}

/// The table as comparable data: its flags (a `dormant` table does nothing), and its chains
/// (name, hook) sorted by name, each with its rules. What the kernel holds ([`Snapshot::from_dumps`])
/// is compared with what is wanted ([`snapshot_of`]) before anything is sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    flags: u32,
    chains: Vec<(String, Option<Hook>, Vec<Vec<ExprTree>>)>,
}

/// The snapshot a kernel holding exactly `rs` would report.
pub fn snapshot_of(rs: &Ruleset) -> Snapshot {
    let mut out: Vec<_> = rs
        .chains
        .iter()
        .map(|c| {
            let rules = c
                .rules
                .iter()
                .map(|r| {
                    let mut m = MsgBuf::new();
                    let list = m.nest(4);
                    for e in r {
                        e.encode(&mut m);
                    }
                    m.end_nest(list);
                    decode_exprs(&m.as_bytes()[4..])
                })
                .collect();
            (c.name.to_string(), c.hook, rules)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Snapshot {
        flags: 0,
        chains: out,
    }
}

impl Snapshot {
    /// Our table from the three dumps (the `GETTABLE` reply's flags, every chain, the table's rules):
    /// the chains of other tables are dropped, each chain gets its rules in dump order.
    pub fn from_dumps(flags: u32, chains: Vec<ChainInfo>, rules: &[RuleInfo]) -> Snapshot {
        let mut chains: Vec<_> = chains
            .into_iter()
            .filter(|(table, _, _)| table == TABLE)
            .map(|(_, name, hook)| {
                let rs = rules
                    .iter()
                    .filter(|(t, c, _)| t == TABLE && *c == name)
                    .map(|(_, _, e)| e.clone())
                    .collect();
                (name, hook, rs)
            })
            .collect();
        chains.sort_by(|a, b| a.0.cmp(&b.0));
        Snapshot { flags, chains }
    }
}

/// The `NFT_MSG_GETTABLE` request for our table; its reply is read with [`parse_table_flags`] (`ENOENT`: no table).
pub fn get_table_request() -> Vec<u8> {
    let mut m = MsgBuf::new();
    m.begin(msg_type(NFT_MSG_GETTABLE), NLM_F_REQUEST, 0);
    m.put(&nfgenmsg(NFPROTO_IPV4, 0));
    m.attr_str(1, TABLE);
    m.finish()
}

/// The `NFT_MSG_GETCHAIN` dump request for every IPv4 chain; replies are read with [`parse_chain`].
pub fn get_chains_request() -> Vec<u8> {
    let mut m = MsgBuf::new();
    m.begin(msg_type(NFT_MSG_GETCHAIN), NLM_F_REQUEST | NLM_F_DUMP, 0);
    m.put(&nfgenmsg(NFPROTO_IPV4, 0));
    m.finish()
}

/// The `NFT_MSG_GETRULE` dump request for our table's rules; replies are read with [`parse_rule`].
pub fn get_rules_request() -> Vec<u8> {
    let mut m = MsgBuf::new();
    m.begin(msg_type(NFT_MSG_GETRULE), NLM_F_REQUEST | NLM_F_DUMP, 0);
    m.put(&nfgenmsg(NFPROTO_IPV4, 0));
    m.attr_str(1, TABLE);
    m.finish()
}

/// A NUL-terminated string attribute as text.
pub fn str_attr(d: &[u8]) -> String {
    String::from_utf8_lossy(d.split(|&c| c == 0).next().unwrap_or(d)).into_owned()
}

/// The flags of a `NFT_MSG_NEWTABLE` reply (`None` for any other message).
pub fn parse_table_flags(msg: &wire::Msg<'_>) -> Result<Option<u32>, wire::Malformed> {
    if msg.ty != msg_type(NFT_MSG_NEWTABLE) || msg.payload.len() < 4 {
        return Ok(None);
    }
    let list = wire::attr_list(&msg.payload[4..])?;
    let flags = list.iter().find(|a| a.ty == 2); // NFTA_TABLE_FLAGS
    Ok(Some(flags.map_or(0, |a| a.be32())))
}

/// (table, chain name, hook) of one dumped chain.
pub type ChainInfo = (String, String, Option<Hook>);

/// One `NFT_MSG_NEWCHAIN` reply of a chain dump (`None` for any other message).
pub fn parse_chain(msg: &wire::Msg<'_>) -> Result<Option<ChainInfo>, wire::Malformed> {
    if msg.ty != msg_type(NFT_MSG_NEWCHAIN) || msg.payload.len() < 4 {
        return Ok(None);
    }
    let (mut table, mut name, mut kind) = (String::new(), String::new(), String::new());
    let (mut hooknum, mut prio, mut policy) = (None, 0i32, NF_ACCEPT);
    for a in wire::attrs(&msg.payload[4..]) {
        let a = a?;
        match a.ty {
            1 => table = str_attr(a.data),
            3 => name = str_attr(a.data),
            4 => {
                for h in a.nested() {
                    let h = h?;
                    match h.ty {
                        1 => hooknum = Some(h.be32()),
                        2 => prio = h.be32() as i32,
                        _ => {}
                    }
                }
            }
            5 => policy = a.be32(),
            7 => kind = str_attr(a.data),
            _ => {}
        }
    }
    let hook = hooknum.map(|hook| Hook {
        kind: match kind.as_str() {
            "nat" => "nat",
            "filter" => "filter",
            "route" => "route",
            _ => "other",
        },
        hook,
        priority: prio,
        policy,
    });
    Ok(Some((table, name, hook)))
}

/// (table, chain name, expressions) of one dumped rule.
pub type RuleInfo = (String, String, Vec<ExprTree>);

/// One `NFT_MSG_NEWRULE` reply of a rule dump (`None` for any other message).
pub fn parse_rule(msg: &wire::Msg<'_>) -> Result<Option<RuleInfo>, wire::Malformed> {
    if msg.ty != msg_type(NFT_MSG_NEWRULE) || msg.payload.len() < 4 {
        return Ok(None);
    }
    let (mut table, mut chain, mut exprs) = (String::new(), String::new(), Vec::new());
    for a in wire::attrs(&msg.payload[4..]) {
        let a = a?;
        match a.ty {
            1 => table = str_attr(a.data),
            2 => chain = str_attr(a.data),
            4 => exprs = decode_exprs(a.data),
            _ => {}
        }
    }
    Ok(Some((table, chain, exprs)))
}

#[cfg(test)]
mod tests;
