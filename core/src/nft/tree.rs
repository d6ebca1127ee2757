//! Decoded rule expressions as attribute trees, used to compare what the kernel holds with what we
//! want (a second apply must change nothing) and, in tests, to print the `nft --debug=netlink` form.

use alloc::string::String;
use alloc::vec::Vec;

use super::expr::NFTA_LIST_ELEM;
use crate::netlink::wire::{NLA_F_NESTED, NLA_F_NET_BYTEORDER};

/// An attribute value: bytes, or nested attributes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    /// A leaf.
    Bytes(Vec<u8>),
    /// A nest (`NLA_F_NESTED`), attributes sorted by type.
    Nest(Vec<(u16, Node)>),
}

/// One expression: its name and its (sorted) attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprTree {
    /// `NFTA_EXPR_NAME`.
    pub name: String,
    /// `NFTA_EXPR_DATA`, sorted by attribute type.
    pub data: Vec<(u16, Node)>,
}

fn raw_attrs(buf: &[u8]) -> Vec<(u16, bool, &[u8])> {
    let mut out = Vec::new();
    let mut b = buf;
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        if len < 4 || len > b.len() {
            break;
        }
        let raw = u16::from_ne_bytes([b[2], b[3]]);
        out.push((
            raw & !(NLA_F_NESTED | NLA_F_NET_BYTEORDER),
            raw & NLA_F_NESTED != 0,
            &b[4..len],
        ));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

fn sorted(mut v: Vec<(u16, Node)>) -> Vec<(u16, Node)> {
    v.sort();
    v
}

fn leaves(buf: &[u8]) -> Vec<(u16, Node)> {
    sorted(
        raw_attrs(buf)
            .into_iter()
            .map(|(ty, _, d)| (ty, Node::Bytes(d.to_vec())))
            .collect(),
    )
}

/// An `NFTA_DATA_*` nest: a value, or a verdict (itself a nest of code and chain).
fn data_nest(buf: &[u8]) -> Node {
    Node::Nest(sorted(
        raw_attrs(buf)
            .into_iter()
            .map(|(ty, _, d)| {
                let n = if ty == 2 {
                    Node::Nest(leaves(d))
                } else {
                    Node::Bytes(d.to_vec())
                };
                (ty, n)
            })
            .collect(),
    ))
}

/// Which expression attributes hold `NFTA_DATA_*` nests. The kernel dumps these nests without
/// `NLA_F_NESTED`, so the schema, not the flag, decides.
fn is_data_attr(expr: &str, ty: u16) -> bool {
    matches!(
        (expr, ty),
        ("cmp", 3) | ("bitwise", 4) | ("bitwise", 5) | ("bitwise", 7) | ("immediate", 2)
    )
}

/// Decodes the content of `NFTA_RULE_EXPRESSIONS` and normalises what the kernel adds on its
/// own, so our request and the kernel's dump of the same rule compare equal.
pub fn decode_exprs(list: &[u8]) -> Vec<ExprTree> {
    let mut out = Vec::new();
    for (ty, _, elem) in raw_attrs(list) {
        if ty != NFTA_LIST_ELEM {
            continue;
        }
        let mut name = String::new();
        let mut raw: &[u8] = &[];
        for (ty, _, v) in raw_attrs(elem) {
            match ty {
                1 => {
                    name = String::from_utf8_lossy(v.split(|&c| c == 0).next().unwrap_or(v))
                        .into_owned()
                }
                2 => raw = v,
                _ => {}
            }
        }
        let mut data = sorted(
            raw_attrs(raw)
                .into_iter()
                .map(|(t, _, d)| {
                    let n = if is_data_attr(&name, t) {
                        data_nest(d)
                    } else {
                        Node::Bytes(d.to_vec())
                    };
                    (t, n)
                })
                .collect(),
        );
        normalise(&name, &mut data);
        out.push(ExprTree { name, data });
    }
    out
}

fn be32(n: &Node) -> Option<u32> {
    match n {
        Node::Bytes(b) if b.len() == 4 => Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        _ => None,
    }
}

fn get(data: &[(u16, Node)], ty: u16) -> Option<&Node> {
    data.iter().find(|(t, _)| *t == ty).map(|(_, n)| n)
}

fn normalise(name: &str, data: &mut Vec<(u16, Node)>) {
    match name {
        // NFTA_BITWISE_OP = NFT_BITWISE_BOOL (0) is the default the kernel reports.
        "bitwise" => data.retain(|(t, n)| !(*t == 6 && be32(n) == Some(0))),
        "nat" => {
            // The kernel fills REG_ADDR_MAX with REG_ADDR_MIN and adds NF_NAT_RANGE_MAP_IPS.
            let min = get(data, 3).cloned();
            data.retain(|(t, n)| !(*t == 4 && Some(n) == min.as_ref()));
            for (t, n) in data.iter_mut() {
                if *t == 7 {
                    if let Some(f) = be32(n) {
                        *n = Node::Bytes((f & !0x01).to_be_bytes().to_vec());
                    }
                }
            }
            data.retain(|(t, n)| !(*t == 7 && be32(n) == Some(0)));
        }
        _ => {}
    }
}

/// Renders expressions the way `nft --debug=netlink` (libnftnl) prints them.
#[cfg(test)]
pub fn render(exprs: &[ExprTree]) -> String {
    let mut s = String::new();
    for e in exprs {
        s.push_str("  [ ");
        s.push_str(&render_one(e));
        s.push_str(" ]\n");
    }
    s
}

#[cfg(test)]
fn render_one(e: &ExprTree) -> String {
    let d = &e.data;
    let u = |ty: u16| get(d, ty).and_then(be32).unwrap_or(0);
    let value = |ty: u16| -> String {
        match get(d, ty) {
            Some(Node::Nest(inner)) => match get(inner, 1) {
                Some(Node::Bytes(b)) => words(b),
                _ => String::new(),
            },
            _ => String::new(),
        }
    };
    let meta_key = |k: u32| match k {
        3 => "mark",
        6 => "iifname",
        7 => "oifname",
        _ => "?",
    };
    match e.name.as_str() {
        "payload" => {
            let base = ["link", "network", "transport"]
                .get(u(2) as usize)
                .copied()
                .unwrap_or("?");
            format!(
                "payload load {}b @ {base} header + {} => reg {}",
                u(4),
                u(3),
                u(1)
            )
        }
        "cmp" => {
            let op = ["eq", "neq", "lt", "lte", "gt", "gte"]
                .get(u(2) as usize)
                .copied()
                .unwrap_or("?");
            format!("cmp {op} reg {} {}", u(1), value(3))
        }
        "bitwise" => format!(
            "bitwise reg {} = ( reg {} & {} ) ^ {}",
            u(2),
            u(1),
            value(4),
            value(5)
        ),
        "meta" if get(d, 1).is_some() => format!("meta load {} => reg {}", meta_key(u(2)), u(1)),
        "meta" => format!("meta set {} with reg {}", meta_key(u(2)), u(3)),
        "ct" if get(d, 1).is_some() => format!(
            "ct load {} => reg {}",
            if u(2) == 3 { "mark" } else { "?" },
            u(1)
        ),
        "ct" => format!(
            "ct set {} with reg {}",
            if u(2) == 3 { "mark" } else { "?" },
            u(4)
        ),
        "fib" => {
            let f = u(3);
            let names: Vec<&str> = [
                (1, "saddr"),
                (2, "daddr"),
                (4, "mark"),
                (8, "iif"),
                (16, "oif"),
            ]
            .iter()
            .filter(|(bit, _)| f & bit != 0)
            .map(|(_, n)| *n)
            .collect();
            let result = if u(2) == 3 { "type" } else { "?" };
            format!("fib {} {result} => reg {}", names.join(" . "), u(1))
        }
        "immediate" => match get(d, 2) {
            Some(Node::Nest(inner)) => match get(inner, 2) {
                Some(Node::Nest(v)) => {
                    let code = get(v, 1).and_then(be32).unwrap_or(0) as i32;
                    match code {
                        -5 => format!("immediate reg {} return", u(1)),
                        -3 => {
                            let chain = match get(v, 2) {
                                Some(Node::Bytes(b)) => String::from_utf8_lossy(
                                    b.split(|&c| c == 0).next().unwrap_or(b),
                                )
                                .into_owned(),
                                _ => String::new(),
                            };
                            format!("immediate reg {} jump -> {chain}", u(1))
                        }
                        c => format!("immediate reg {} verdict {c}", u(1)),
                    }
                }
                _ => format!("immediate reg {} {}", u(1), value(2)),
            },
            _ => "immediate ?".into(),
        },
        "nat" => {
            let ty = if u(1) == 0 { "snat" } else { "dnat" };
            let fam = if u(2) == 2 { "ip" } else { "ip6" };
            let mut s = format!("nat {ty} {fam} addr_min reg {}", u(3));
            if let Some(max) = get(d, 4).and_then(be32) {
                s.push_str(&format!(" addr_max reg {max}"));
            }
            if let Some(f) = get(d, 7).and_then(be32) {
                s.push_str(&format!(" flags 0x{f:x}"));
            }
            s
        }
        other => format!("{other} ?"),
    }
}

/// libnftnl prints data as host-order 32-bit words, the last one zero-padded.
#[cfg(test)]
fn words(b: &[u8]) -> String {
    b.chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            format!("0x{:08x}", u32::from_ne_bytes(w))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
