//! Handover from upstream's daemon: removing the iptables rules upstream's aws-k8s-agent left.
//!
//! Upstream v1.23 programs SNAT and the connmark rules through `iptables`. With iptables-nft (what
//! `iptables --version` reports as `nf_tables`) these are ordinary nftables objects in the tables
//! `ip nat` and `ip mangle`:
//! - `nat`: the chain `AWS-SNAT-CHAIN-0` (per-CIDR `RETURN`s, then the SNAT) and its jump from
//!   `POSTROUTING` (comment `AWS SNAT CHAIN`); with upstream's iptables connmark backend also
//!   `AWS-CONNMARK-CHAIN-0`, its jump from `PREROUTING` (`AWS, outbound connections`) and the
//!   restore rule (`AWS, CONNMARK`); stale `AWS-SNAT-CHAIN-N` / `AWS-CONNMARK-CHAIN-N` of older
//!   releases;
//! - `mangle`: three `PREROUTING` rules commented `AWS, primary ENI` (NodePort connmark, restores).
//!
//! Left in place, upstream's SNAT keeps translating after our table took over, so
//! `AWS_VPC_K8S_CNI_EXTERNALSNAT` or a new excluded CIDR has no effect. [`Nft::remove_upstream_iptables`]
//! deletes, in one transaction, every rule in an `ip` table that jumps to (or goes to) a chain named
//! `AWS-*` or carries one of upstream's comments, then the `AWS-*` chains themselves. Nothing else
//! is touched: kube-proxy's and every other agent's rules and chains stay. Upstream's own nftables
//! connmark table has our table's name (`ip aws-cni`) and is replaced by our apply.
//!
//! With iptables-legacy the rules live in the kernel's x_tables, which netlink does not reach;
//! [`legacy_tables`] reports whether such tables exist so the daemon can warn (docs/compat.md).

use super::{msg_type, nfgenmsg, str_attr, Nft, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END};
use super::{NFNL_SUBSYS_NFTABLES, NFPROTO_IPV4, NFT_MSG_GETCHAIN, NFT_MSG_GETRULE};
use crate::netlink::wire::{self, MsgBuf, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use crate::netlink::{Cause, Error};

const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
/// `NFT_JUMP` and `NFT_GOTO` verdict codes.
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
/// `NFTNL_UDATA_RULE_COMMENT`: the userdata TLV iptables-nft stores `-m comment` in.
const UDATA_RULE_COMMENT: u8 = 0;

/// Tables iptables-nft makes that upstream writes to.
pub const UPSTREAM_TABLES: [&str; 2] = ["nat", "mangle"];
/// Prefix of upstream's chains.
pub const UPSTREAM_CHAIN_PREFIX: &str = "AWS-";
/// The comments of upstream's rules outside its own chains (`-m comment --comment ...`).
pub const UPSTREAM_COMMENTS: [&str; 5] = [
    "AWS SNAT CHAIN",
    "AWS, primary ENI",
    "AWS, outbound connections",
    "AWS, CONNMARK",
    "AWS, SNAT",
];

/// One rule of an `ip` table as the kernel dumps it (only what the handover decides on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub table: String,
    pub chain: String,
    pub handle: u64,
    /// Chains this rule jumps or goes to.
    pub targets: Vec<String>,
    /// The `-m comment` text (an xtables `comment` match, or nft's userdata comment), if any.
    pub comment: Option<String>,
}

/// What to delete, in order: rules (table, chain, handle), then chains (table, chain).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleanup {
    pub rules: Vec<(String, String, u64)>,
    pub chains: Vec<(String, String)>,
}

impl Cleanup {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.chains.is_empty()
    }
}

fn upstream_chain(name: &str) -> bool {
    name.starts_with(UPSTREAM_CHAIN_PREFIX)
}

/// Decides what to delete from `chains` (table, name) and `rules` of the `ip` family. Pure.
/// Upstream's chains go with all their rules; outside them only rules that jump into them or carry
/// one of upstream's comments.
pub fn plan(chains: &[(String, String)], rules: &[RuleInfo]) -> Cleanup {
    let in_scope = |t: &str| UPSTREAM_TABLES.contains(&t);
    let mut out = Cleanup::default();
    // Rules outside upstream's chains first (they hold the references), then those inside.
    for inside in [false, true] {
        for r in rules {
            if !in_scope(&r.table) || upstream_chain(&r.chain) != inside {
                continue;
            }
            let jumps = r.targets.iter().any(|t| upstream_chain(t));
            let commented = r
                .comment
                .as_deref()
                .is_some_and(|c| UPSTREAM_COMMENTS.contains(&c));
            if inside || jumps || commented {
                out.rules.push((r.table.clone(), r.chain.clone(), r.handle));
            }
        }
    }
    for (t, c) in chains {
        if in_scope(t) && upstream_chain(c) {
            out.chains.push((t.clone(), c.clone()));
        }
    }
    out
}

/// The comment in iptables-nft's rule userdata (TLVs: type, length, value).
fn udata_comment(d: &[u8]) -> Option<String> {
    let mut b = d;
    while b.len() >= 2 {
        let (ty, len) = (b[0], usize::from(b[1]));
        let v = b.get(2..2 + len)?;
        if ty == UDATA_RULE_COMMENT {
            return Some(str_attr(v));
        }
        b = &b[2 + len..];
    }
    None
}

/// From a rule's expressions (`NFTA_RULE_EXPRESSIONS`): the chains named in its jump/goto verdicts,
/// and the text of an xtables `comment` match (how iptables-nft 1.8 stores `-m comment`).
fn scan_exprs(exprs: &[u8]) -> (Vec<String>, Option<String>) {
    let (mut targets, mut comment) = (Vec::new(), None);
    for elem in wire::attrs(exprs).flatten() {
        let mut name = String::new();
        let mut data = None;
        for a in elem.nested().flatten() {
            match a.ty {
                1 => name = str_attr(a.data), // NFTA_EXPR_NAME
                2 => data = Some(a),          // NFTA_EXPR_DATA
                _ => {}
            }
        }
        let Some(data) = data else { continue };
        match name.as_str() {
            "match" => {
                // NFTA_MATCH_NAME (1), NFTA_MATCH_INFO (3): struct xt_comment_info { char comment[256]; }.
                let attrs: Vec<_> = data.nested().flatten().collect();
                let is_comment = attrs
                    .iter()
                    .any(|a| a.ty == 1 && str_attr(a.data) == "comment");
                if let Some(info) = attrs.iter().find(|a| a.ty == 3).filter(|_| is_comment) {
                    comment = Some(str_attr(info.data));
                }
            }
            "immediate" => {
                // NFTA_IMMEDIATE_DATA (2) > NFTA_DATA_VERDICT (2) > NFTA_VERDICT_CODE (1), _CHAIN (2).
                for d in data.nested().flatten().filter(|a| a.ty == 2) {
                    for v in d.nested().flatten().filter(|a| a.ty == 2) {
                        let (mut code, mut chain) = (0i32, None);
                        for f in v.nested().flatten() {
                            match f.ty {
                                1 => code = f.be32() as i32,
                                2 => chain = Some(str_attr(f.data)),
                                _ => {}
                            }
                        }
                        if let Some(c) = chain.filter(|_| code == NFT_JUMP || code == NFT_GOTO) {
                            targets.push(c);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (targets, comment)
}

fn parse_rule(msg: &wire::Msg<'_>) -> Result<Option<RuleInfo>, wire::Malformed> {
    if msg.ty != msg_type(NFT_MSG_NEWRULE) || msg.payload.len() < 4 {
        return Ok(None);
    }
    let mut r = RuleInfo {
        table: String::new(),
        chain: String::new(),
        handle: 0,
        targets: vec![],
        comment: None,
    };
    for a in wire::attrs(&msg.payload[4..]) {
        let a = a?;
        match a.ty {
            1 => r.table = str_attr(a.data),
            2 => r.chain = str_attr(a.data),
            3 if a.data.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(a.data);
                r.handle = u64::from_be_bytes(b);
            }
            4 => {
                let (targets, comment) = scan_exprs(a.data);
                r.targets = targets;
                r.comment = comment.or(r.comment.take());
            }
            7 => r.comment = r.comment.take().or_else(|| udata_comment(a.data)),
            _ => {}
        }
    }
    Ok(Some(r))
}

fn parse_chain(msg: &wire::Msg<'_>) -> Result<Option<(String, String)>, wire::Malformed> {
    if msg.ty != msg_type(NFT_MSG_NEWCHAIN) || msg.payload.len() < 4 {
        return Ok(None);
    }
    let (mut table, mut name) = (String::new(), String::new());
    for a in wire::attrs(&msg.payload[4..]) {
        let a = a?;
        match a.ty {
            1 => table = str_attr(a.data),
            3 => name = str_attr(a.data),
            _ => {}
        }
    }
    Ok(Some((table, name)))
}

/// The batch deleting `c`, with a description of each message. Pure.
pub fn encode_cleanup(c: &Cleanup) -> (Vec<u8>, Vec<String>) {
    let mut m = MsgBuf::new();
    let mut what = vec!["begin batch".to_string()];
    m.begin(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0);
    m.put(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
    for (table, chain, handle) in &c.rules {
        m.begin(msg_type(NFT_MSG_DELRULE), NLM_F_REQUEST | NLM_F_ACK, 0);
        m.put(&nfgenmsg(NFPROTO_IPV4, 0));
        m.attr_str(1, table);
        m.attr_str(2, chain);
        m.attr_be64(3, *handle);
        what.push(format!("delete rule ip {table} {chain} handle {handle}"));
    }
    for (table, chain) in &c.chains {
        m.begin(msg_type(NFT_MSG_DELCHAIN), NLM_F_REQUEST | NLM_F_ACK, 0);
        m.put(&nfgenmsg(NFPROTO_IPV4, 0));
        m.attr_str(1, table);
        m.attr_str(3, chain);
        what.push(format!("delete chain ip {table} {chain}"));
    }
    m.begin(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0);
    m.put(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
    what.push("end batch".to_string());
    (m.finish(), what)
}

/// Legacy x_tables tables of this network namespace (`/proc/net/ip_tables_names`): upstream's rules
/// there, if any, are out of netlink's reach.
pub fn legacy_tables() -> Vec<String> {
    std::fs::read_to_string("/proc/net/ip_tables_names")
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

impl Nft {
    /// Deletes upstream's iptables-nft rules and chains (see the module documentation) in one
    /// transaction; returns what was deleted (empty when there was nothing).
    pub fn remove_upstream_iptables(&mut self) -> Result<Cleanup, Error> {
        let op = "remove upstream's iptables rules";
        let mut m = MsgBuf::new();
        m.begin(msg_type(NFT_MSG_GETCHAIN), NLM_F_REQUEST | NLM_F_DUMP, 0);
        m.put(&nfgenmsg(NFPROTO_IPV4, 0));
        let mut req = m.finish();
        let chains = self
            .sock
            .dump(&mut req, parse_chain)
            .map_err(|c| Error::new(op, c))?;
        let mut m = MsgBuf::new();
        m.begin(msg_type(NFT_MSG_GETRULE), NLM_F_REQUEST | NLM_F_DUMP, 0);
        m.put(&nfgenmsg(NFPROTO_IPV4, 0));
        let mut req = m.finish();
        let rules = self
            .sock
            .dump(&mut req, parse_rule)
            .map_err(|c| Error::new(op, c))?;
        let cleanup = plan(&chains, &rules);
        if cleanup.is_empty() {
            return Ok(cleanup);
        }
        let (mut batch, what) = encode_cleanup(&cleanup);
        self.sock
            .batch(&mut batch)
            .map_err(|(i, cause): (usize, Cause)| {
                let step = what.get(i).map(String::as_str).unwrap_or("batch");
                Error::new(format!("{op}: {step}"), cause)
            })?;
        Ok(cleanup)
    }
}

/// Run at ipamd's start in the node's namespace: removes upstream's iptables-nft rules and logs
/// what it did; warns when legacy iptables tables exist. Never fails the start.
pub fn hand_over_from_upstream() {
    match Nft::open().and_then(|mut n| n.remove_upstream_iptables()) {
        Ok(c) if c.is_empty() => log::debug!("no iptables rules of the Go VPC CNI to remove"),
        Ok(c) => log::info!(
            "removed the Go VPC CNI's iptables-nft rules: {} rule(s), chains {:?}",
            c.rules.len(),
            c.chains
                .iter()
                .map(|(t, n)| format!("{t}/{n}"))
                .collect::<Vec<_>>()
        ),
        Err(e) => log::warn!("could not remove the Go VPC CNI's iptables-nft rules: {e}"),
    }
    let legacy = legacy_tables();
    if legacy.iter().any(|t| t == "nat" || t == "mangle") {
        log::warn!(
            "legacy iptables tables {legacy:?} exist: if the Go VPC CNI ran with iptables-legacy, its \
             rules there (AWS-SNAT-CHAIN-0, AWS-CONNMARK-CHAIN-0, mangle \"AWS, primary ENI\") are not \
             removed and its SNAT runs before ours; see docs/compat.md"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(table: &str, chain: &str, handle: u64, to: &[&str], comment: Option<&str>) -> RuleInfo {
        RuleInfo {
            table: table.into(),
            chain: chain.into(),
            handle,
            targets: to.iter().map(|s| (*s).to_string()).collect(),
            comment: comment.map(str::to_owned),
        }
    }

    fn s(a: &str, b: &str) -> (String, String) {
        (a.into(), b.into())
    }

    #[test]
    fn upstream_rules_and_chains_go_and_everything_else_stays() {
        let chains = vec![
            s("nat", "POSTROUTING"),
            s("nat", "AWS-SNAT-CHAIN-0"),
            s("nat", "KUBE-POSTROUTING"),
            s("mangle", "PREROUTING"),
            s("filter", "AWS-OTHER"),
            s("aws-cni", "snat-postrouting"),
        ];
        let rules = vec![
            rule(
                "nat",
                "POSTROUTING",
                1,
                &["KUBE-POSTROUTING"],
                Some("kubernetes"),
            ),
            rule(
                "nat",
                "POSTROUTING",
                2,
                &["AWS-SNAT-CHAIN-0"],
                Some("AWS SNAT CHAIN"),
            ),
            rule("nat", "AWS-SNAT-CHAIN-0", 3, &[], Some("AWS SNAT CHAIN")),
            rule("nat", "AWS-SNAT-CHAIN-0", 4, &[], Some("AWS, SNAT")),
            rule("mangle", "PREROUTING", 5, &[], Some("AWS, primary ENI")),
            rule("mangle", "PREROUTING", 6, &[], Some("AWS, primary ENI")),
            rule("mangle", "PREROUTING", 7, &[], Some("istio")),
            rule("mangle", "PREROUTING", 8, &[], Some("AWS, something else")),
            rule("filter", "FORWARD", 9, &["AWS-OTHER"], None),
            rule("aws-cni", "snat-postrouting", 10, &[], None),
        ];
        let c = plan(&chains, &rules);
        let handles: Vec<u64> = c.rules.iter().map(|r| r.2).collect();
        assert_eq!(handles, vec![2, 5, 6, 3, 4]);
        assert_eq!(c.chains, vec![s("nat", "AWS-SNAT-CHAIN-0")]);
    }

    #[test]
    fn nothing_of_upstream_means_an_empty_cleanup() {
        let chains = vec![s("nat", "POSTROUTING")];
        let rules = vec![rule("nat", "POSTROUTING", 1, &["KUBE-POSTROUTING"], None)];
        assert!(plan(&chains, &rules).is_empty());
    }

    #[test]
    fn userdata_comment_is_read_from_the_tlv() {
        let mut d = vec![UDATA_RULE_COMMENT, 15];
        d.extend_from_slice(b"AWS SNAT CHAIN\0");
        assert_eq!(udata_comment(&d).as_deref(), Some("AWS SNAT CHAIN"));
        assert_eq!(udata_comment(&[1, 1, 0]), None);
        assert_eq!(udata_comment(&[0, 9, b'x']), None);
    }
}
