//! Ruleset builder tests: golden bytecode against `nft --debug=netlink` (tests/golden/nft), and
//! properties of the builder.

use super::*;
use proptest::prelude::*;

fn cfg() -> SnatConfig {
    SnatConfig {
        primary_ip: "10.0.0.10".parse().unwrap(),
        primary_ifname: "eth0".into(),
        vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
        exclude_cidrs: ["172.16.0.0/12", "192.168.5.0/20", "100.64.0.1/32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect(),
        randomize: Randomize::Prng,
        node_port_support: true,
        external_snat: false,
        connmark: CONNMARK,
        veth_prefix: VethPrefix::default(),
    }
}

/// The rule blocks of a `.debug` file (chain-creation lines dropped).
fn golden_rules(debug: &str) -> String {
    debug
        .split("\n\n")
        .map(|b| b.trim_start_matches('\n'))
        .filter_map(|b| {
            let start = b.find("ip aws-cni ")?;
            Some(format!("{}\n", b[start..].trim_end()))
        })
        .collect::<Vec<_>>()
        .join("")
}

/// Our batch's rules rendered like `nft --debug=netlink`.
fn our_rules(rs: &Ruleset) -> String {
    let (batch, _) = encode_batch(Some(rs));
    let mut out = String::new();
    for m in wire::messages(&batch) {
        let m = m.unwrap();
        if let Some((table, chain, exprs)) = parse_rule(&m).unwrap() {
            assert_eq!(table, TABLE);
            out.push_str(&format!("ip {table} {chain}\n{}", tree::render(&exprs)));
        }
    }
    out
}

fn check(c: &SnatConfig, debug: &str) {
    let rs = ruleset(c).unwrap().expect("a table is wanted");
    let golden = golden_rules(debug);
    assert!(
        golden.matches("ip aws-cni ").count() >= 3,
        "golden file has rules: {golden}"
    );
    assert_eq!(our_rules(&rs), golden);
}

#[test]
fn full_table_matches_nft_bytecode() {
    check(&cfg(), include_str!("../../../tests/golden/nft/full.debug"));
}

#[test]
fn hashrandom_snat_matches_nft_bytecode() {
    let mut c = cfg();
    c.randomize = Randomize::HashRandom;
    c.primary_ip = "192.168.1.20".parse().unwrap();
    c.vpc_cidrs = vec!["10.0.0.0/8".parse().unwrap()];
    c.exclude_cidrs = vec![];
    let rs = ruleset(&c).unwrap().unwrap();
    let snat_only = Ruleset {
        chains: vec![rs.chains[0].clone()],
    };
    assert_eq!(
        our_rules(&snat_only),
        golden_rules(include_str!(
            "../../../tests/golden/nft/snat-hashrandom.debug"
        ))
    );
}

#[test]
fn no_randomisation_and_a_zero_prefix_match_nft_bytecode() {
    let mut c = cfg();
    c.randomize = Randomize::None;
    c.primary_ip = "192.168.1.20".parse().unwrap();
    c.vpc_cidrs = vec!["10.0.0.0/8".parse().unwrap()];
    c.exclude_cidrs = vec!["0.0.0.0/0".parse().unwrap()];
    let rs = ruleset(&c).unwrap().unwrap();
    let snat_only = Ruleset {
        chains: vec![rs.chains[0].clone()],
    };
    assert_eq!(
        our_rules(&snat_only),
        golden_rules(include_str!("../../../tests/golden/nft/snat-none.debug"))
    );
}

#[test]
fn external_snat_keeps_only_the_nodeport_chain() {
    let mut c = cfg();
    c.external_snat = true;
    c.primary_ifname = "ens5".into();
    c.veth_prefix = "abc".parse().unwrap();
    let rs = ruleset(&c).unwrap().unwrap();
    assert_eq!(
        rs.chains.iter().map(|c| c.name).collect::<Vec<_>>(),
        vec!["mangle-prerouting"]
    );
    check(
        &c,
        include_str!("../../../tests/golden/nft/external-snat.debug"),
    );
    c.node_port_support = false;
    assert_eq!(
        ruleset(&c).unwrap(),
        None,
        "nothing wanted: the table goes away"
    );
}

#[test]
fn chain_hooks_and_batch_layout() {
    let rs = ruleset(&cfg()).unwrap().unwrap();
    let hooks: Vec<_> = rs
        .chains
        .iter()
        .map(|c| {
            (
                c.name,
                c.hook.map(|h| (h.kind, h.hook, h.priority, h.policy)),
            )
        })
        .collect();
    assert_eq!(
        hooks,
        vec![
            (
                "snat-postrouting",
                Some(("nat", NF_INET_POST_ROUTING, 110, NF_ACCEPT))
            ),
            ("snat-mark", None),
            (
                "nat-prerouting",
                Some(("nat", NF_INET_PRE_ROUTING, -90, NF_ACCEPT))
            ),
            (
                "mangle-prerouting",
                Some(("filter", NF_INET_PRE_ROUTING, -140, NF_ACCEPT))
            ),
        ]
    );
    let (batch, what) = encode_batch(Some(&rs));
    let types: Vec<u16> = wire::messages(&batch).map(|m| m.unwrap().ty).collect();
    assert_eq!(types.len(), what.len());
    assert_eq!(types[0], NFNL_MSG_BATCH_BEGIN);
    assert_eq!(*types.last().unwrap(), NFNL_MSG_BATCH_END);
    // add table, delete table, add table: the replacement happens inside one transaction.
    assert_eq!(
        &types[1..4],
        &[
            msg_type(NFT_MSG_NEWTABLE),
            msg_type(NFT_MSG_DELTABLE),
            msg_type(NFT_MSG_NEWTABLE)
        ]
    );
    assert_eq!(what[2], "delete table ip aws-cni");
    let (removal, _) = encode_batch(None);
    let types: Vec<u16> = wire::messages(&removal).map(|m| m.unwrap().ty).collect();
    assert_eq!(
        types,
        vec![
            NFNL_MSG_BATCH_BEGIN,
            msg_type(NFT_MSG_NEWTABLE),
            msg_type(NFT_MSG_DELTABLE),
            NFNL_MSG_BATCH_END
        ]
    );
}

#[test]
fn bad_input_is_refused_with_what_is_allowed() {
    let mut c = cfg();
    c.exclude_cidrs = vec!["fd00::/8".parse().unwrap()];
    assert_eq!(
        ruleset(&c).unwrap_err(),
        "excluded SNAT CIDR fd00::/8 is IPv6; the SNAT table is IPv4 only"
    );
    let mut c = cfg();
    c.connmark = 0;
    assert!(ruleset(&c).unwrap_err().contains("connmark 0 is not valid"));
    let mut c = cfg();
    c.primary_ifname = "eth*".into();
    assert!(ruleset(&c)
        .unwrap_err()
        .contains("primary interface \"eth*\" is not valid"));
    assert_eq!("hashrandom".parse::<Randomize>(), Ok(Randomize::HashRandom));
    assert_eq!("".parse::<Randomize>(), Ok(Randomize::Prng));
    assert!("fully"
        .parse::<Randomize>()
        .unwrap_err()
        .contains("allowed: prng, hashrandom, none"));
}

proptest! {
    #[test]
    fn one_return_per_cidr_and_encoding_round_trips(
        cidrs in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..8),
        external in any::<bool>(),
        nodeport in any::<bool>(),
    ) {
        let mut c = cfg();
        c.vpc_cidrs = cidrs.iter().map(|(a, l)| IpNet::new(IpAddr::V4((*a).into()), *l).unwrap()).collect();
        c.exclude_cidrs = vec![];
        c.external_snat = external;
        c.node_port_support = nodeport;
        let rs = ruleset(&c).unwrap();
        prop_assert_eq!(rs.is_none(), external && !nodeport);
        if let Some(rs) = rs {
            for ch in &rs.chains {
                if ch.name == "snat-postrouting" || ch.name == "snat-mark" {
                    prop_assert_eq!(ch.rules.len(), cidrs.len() + 1);
                }
            }
            // What we would read back from our own batch equals the snapshot we compare with.
            let (batch, _) = encode_batch(Some(&rs));
            let mut from_batch: Vec<(String, Vec<tree::ExprTree>)> = Vec::new();
            for m in wire::messages(&batch) {
                if let Some((_, chain, e)) = parse_rule(&m.unwrap()).unwrap() {
                    from_batch.push((chain, e));
                }
            }
            let snap = snapshot_of(&rs);
            let total: usize = snap.chains.iter().map(|(_, _, r)| r.len()).sum();
            prop_assert_eq!(total, from_batch.len());
            for (name, _, rules) in &snap.chains {
                let got: Vec<_> = from_batch.iter().filter(|(c, _)| c == name).map(|(_, e)| e.clone()).collect();
                prop_assert_eq!(&got, rules);
            }
        }
    }
}

/// What a packet's marks are after one base chain, evaluating our expressions the way the kernel
/// does (register 1 only; `fib` always answers "not local"; jumps are not followed). Enough for
/// the connmark rules; the kernel test
/// `connmark_restore_keeps_other_mark_bits_and_bit_0x80_follows_the_ct_mark` checks the
/// same on real traffic.
fn run_chain(chain: &Chain, iifname: &str, meta_mark: u32, ct_mark: u32) -> (u32, u32) {
    let (mut meta, mut ct) = (meta_mark, ct_mark);
    let mut name = iifname.as_bytes().to_vec();
    name.resize(16, 0);
    'rules: for rule in &chain.rules {
        let mut reg: Vec<u8> = Vec::new();
        for e in rule {
            match e {
                Expr::MetaLoad(MetaKey::IifName) => reg = name.clone(),
                Expr::MetaLoad(MetaKey::Mark) => reg = meta.to_ne_bytes().to_vec(),
                Expr::CtMarkLoad => reg = ct.to_ne_bytes().to_vec(),
                Expr::FibAddrType(_) => reg = 1u32.to_ne_bytes().to_vec(), // RTN_UNICAST
                Expr::Bitwise { mask, xor } => {
                    reg = (0..mask.len())
                        .map(|i| (reg[i] & mask[i]) ^ xor[i])
                        .collect()
                }
                Expr::Cmp(op, data) => {
                    if (reg[..data.len()] == data[..]) != (*op == CmpOp::Eq) {
                        continue 'rules;
                    }
                }
                Expr::MetaSet(MetaKey::Mark) => {
                    meta = u32::from_ne_bytes(reg[..4].try_into().unwrap())
                }
                Expr::CtMarkSet => ct = u32::from_ne_bytes(reg[..4].try_into().unwrap()),
                Expr::Verdict(Verdict::Return) => break 'rules,
                other => panic!("the evaluator does not model {other:?}"),
            }
        }
    }
    (meta, ct)
}

fn chain<'a>(rs: &'a Ruleset, name: &str) -> &'a Chain {
    rs.chains.iter().find(|c| c.name == name).unwrap()
}

proptest! {
    /// iptables `CONNMARK --restore-mark --mask M`: only the bits of M in the packet mark change,
    /// to the connection mark's; the connection mark itself is untouched. M is the configured
    /// connmark: the default 0x80, another single bit, or several.
    #[test]
    fn mark_restore_changes_only_the_connmark_bits(
        meta in any::<u32>(),
        ct in any::<u32>(),
        iif in prop::sample::select(vec!["eni0a1b2c3d4e5", "vlan.eth.7", "eth0", "eth1", "ens5", "enx"]),
        connmark in prop::sample::select(vec![CONNMARK, 0x4000, 0x3, 0xff00_0001, u32::MAX]),
    ) {
        let mut c = cfg();
        c.connmark = connmark;
        let rs = ruleset(&c).unwrap().unwrap();
        let restored = (meta & !connmark) | (ct & connmark);
        let from_pod = iif.starts_with("eni") || iif.starts_with("vlan");
        let want = if from_pod { restored } else { meta };
        prop_assert_eq!(run_chain(chain(&rs, "mangle-prerouting"), iif, meta, ct), (want, ct));
        if !from_pod {
            // First packet of a connection from elsewhere: the nat chain restores the bit too.
            prop_assert_eq!(run_chain(chain(&rs, "nat-prerouting"), iif, meta, ct), (restored, ct));
        }
    }
}
