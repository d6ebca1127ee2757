//! Golden bytes: each request we encode equals, byte for byte, what iproute2 6.1 sends for the
//! `ip` command written beside it.
//!
//! Captured in a throwaway namespace with
//! `ip netns exec <ns> strace -qq -e trace=sendmsg -e write=all -s 4096 ip <command>`
//! (the last `sendmsg`; earlier ones are iproute2's own name lookups). The link `va` had index 5;
//! the peer namespace's descriptor in `ip` was 4. The sequence number (bytes 8..12) is zeroed on
//! both sides, since each socket stamps its own, and `NLM_F_ACK` is set by our socket at send time.

use std::net::IpAddr;

use super::addr::addr_msg;
use super::link::{veth_msg, VethSpec};
use super::neigh::{neigh_msg, NUD_PERMANENT};
use super::route::{route_msg, Route, RT_TABLE_MAIN};
use super::rule::{rule_msg, Rule};
use super::types::Family;
use super::wire::{MsgBuf, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST};
use crate::net::IpNet;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn ours(m: MsgBuf) -> Vec<u8> {
    let mut b = m.finish();
    let flags = u16::from_ne_bytes([b[6], b[7]]) | NLM_F_ACK;
    b[6..8].copy_from_slice(&flags.to_ne_bytes());
    b
}

fn golden(captured: &str) -> Vec<u8> {
    let mut b = hex(captured);
    b[8..12].copy_from_slice(&[0; 4]);
    b
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

const NEW: u16 = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;

#[test]
fn veth_with_peer_in_namespace() {
    // ip link add va mtu 1400 address 02:00:00:00:00:0a type veth peer name vb mtu 1400 address 02:00:00:00:00:0b netns gold-b
    let captured = "8400000010000506d466046b000000000000000000000000000000000000000008000400780500000a00010002000000000a000007000300766100004800120008000100766574683c000200380001000000000000000000000000000000000008000400780500000a00010002000000000b000008001c00040000000700030076620000";
    let spec = VethSpec {
        name: "va",
        peer_name: "vb",
        mtu: Some(1400),
        mac: Some("02:00:00:00:00:0a".parse().unwrap()),
        peer_mac: Some("02:00:00:00:00:0b".parse().unwrap()),
        peer_netns: None,
        tx_queue_len: None,
    };
    assert_eq!(ours(veth_msg(&spec, Some(4))), golden(captured));
}

#[test]
fn veth_with_no_transmit_queue() {
    // ip link add va mtu 1400 txqueuelen 0 address 02:00:00:00:00:0a type veth peer name vb mtu 1400 txqueuelen 0 address 02:00:00:00:00:0b netns gold-b
    let captured = "940000001000050674c60e6b0000000000000000000000000000000000000000080004007805000008000d00000000000a00010002000000000a00000700030076610000500012000800010076657468440002004000010000000000000000000000000000000000080004007805000008000d00000000000a00010002000000000b000008001c00040000000700030076620000";
    let spec = VethSpec {
        name: "va",
        peer_name: "vb",
        mtu: Some(1400),
        mac: Some("02:00:00:00:00:0a".parse().unwrap()),
        peer_mac: Some("02:00:00:00:00:0b".parse().unwrap()),
        peer_netns: None,
        tx_queue_len: Some(0),
    };
    assert_eq!(ours(veth_msg(&spec, Some(4))), golden(captured));
}

#[test]
fn addresses() {
    // ip addr add 10.0.0.5/32 dev va
    let v4 = "2800000014000506d466046b000000000220000005000000080002000a000005080001000a000005";
    assert_eq!(ours(addr_msg(20, NEW, 5, net("10.0.0.5/32"))), golden(v4));
    // ip addr add 2001:db8::5/128 dev va nodad
    let v6 = "4000000014000506d466046b000000000a800200050000001400020020010db80000000000000000000000051400010020010db8000000000000000000000005";
    assert_eq!(
        ours(addr_msg(20, NEW, 5, net("2001:db8::5/128"))),
        golden(v6)
    );
}

#[test]
fn routes() {
    // ip route add table 1000 10.0.0.5/32 dev va
    let link = "3400000018000506d466046b00000000022000000003fd010000000008000f00e8030000080001000a0000050800040005000000";
    let r = Route::link(net("10.0.0.5/32"), 5).with_table(1000);
    assert_eq!(ours(route_msg(24, NEW, &r)), golden(link));
    // ip route add table 1000 default via 169.254.1.1 dev va onlink
    let onlink = "3400000018000506d466046b0000000002000000000300010400000008000f00e803000008000500a9fe01010800040005000000";
    let r = Route::via(IpNet::default_for(false), ip("169.254.1.1"), 5)
        .with_table(1000)
        .with_onlink();
    assert_eq!(ours(route_msg(24, NEW, &r)), golden(onlink));
    // ip route add 10.0.0.6/32 dev va
    let main =
        "2c00000018000506d466046b0000000002200000fe03fd0100000000080001000a0000060800040005000000";
    let r = Route::link(net("10.0.0.6/32"), 5);
    assert_eq!(r.table, RT_TABLE_MAIN);
    assert_eq!(ours(route_msg(24, NEW, &r)), golden(main));
    // ip route del table 1000 10.0.0.5/32 dev va
    let del = "3400000019000500d466046b00000000022000000000ff000000000008000f00e8030000080001000a0000050800040005000000";
    let r = Route::link(net("10.0.0.5/32"), 5).with_table(1000);
    assert_eq!(ours(route_msg(25, NLM_F_REQUEST, &r)), golden(del));
}

#[test]
fn rules() {
    // ip rule add priority 1536 from 10.0.0.5/32 table 1000
    let from = "3400000020000506d466046b000000000200200000000001000000000800060000060000080002000a00000508000f00e8030000";
    let r = Rule::from_prefix(net("10.0.0.5/32"), 1536, 1000);
    assert_eq!(ours(rule_msg(32, NEW, &r)), golden(from));
    // ip rule del priority 1536 from 10.0.0.5/32 table 1000
    let del = "3400000021000500d466046b000000000200200000000000000000000800060000060000080002000a00000508000f00e8030000";
    assert_eq!(ours(rule_msg(33, NLM_F_REQUEST, &r)), golden(del));
    // ip rule add priority 1024 fwmark 0x80/0x80 table main
    let mark = "3400000020000506d466046b0000000002000000fe00000100000000080006000004000008000a00800000000800100080000000";
    let mut r = Rule::new(Family::V4, RT_TABLE_MAIN);
    r.priority = Some(1024);
    r.fwmark = Some(0x80);
    r.fwmask = Some(0x80);
    assert_eq!(ours(rule_msg(32, NEW, &r)), golden(mark));
    // ip rule add priority 512 to 10.0.0.5/32 table main
    let to =
        "2c00000020000506d466046b0000000002200000fe000001000000000800060000020000080001000a000005";
    let r = Rule::to_prefix(net("10.0.0.5/32"), 512, RT_TABLE_MAIN);
    assert_eq!(ours(rule_msg(32, NEW, &r)), golden(to));
}

#[test]
fn permanent_neighbour() {
    // ip neigh replace 169.254.1.1 lladdr 02:11:22:33:44:55 dev va nud permanent
    let captured = "300000001c000505d566046b0000000002000000050000008000000008000100a9fe01010a0002000211223344550000";
    let m = neigh_msg(
        28,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
        5,
        ip("169.254.1.1"),
        Some("02:11:22:33:44:55".parse().unwrap()),
        NUD_PERMANENT,
    );
    assert_eq!(ours(m), golden(captured));
}

/// Decoding what we encode gives back the same object (the kernel's replies use the same
/// layout as our requests for these fields).
#[test]
fn requests_decode_back_to_the_same_objects() {
    use super::addr::parse_addr;
    use super::neigh::parse_neigh;
    use super::route::parse_route;
    use super::rule::parse_rule;
    use super::wire::messages;
    let decode = |m: MsgBuf| m.finish();
    let r = Route::via(IpNet::default_for(false), ip("169.254.1.1"), 5)
        .with_table(1000)
        .with_onlink()
        .with_metric(7)
        .with_src(ip("10.0.0.5"));
    let b = decode(route_msg(24, NEW, &r));
    assert_eq!(
        parse_route(&messages(&b).next().unwrap().unwrap()),
        Ok(Some(r))
    );
    // A reply whose last attribute runs past the message is an error, not a shorter route.
    let mut cut = b.clone();
    let at = cut.len() - 8;
    cut[at..at + 2].copy_from_slice(&64u16.to_ne_bytes());
    assert_eq!(
        parse_route(&messages(&cut).next().unwrap().unwrap()),
        Err(super::wire::Malformed("bad attribute length"))
    );
    let mut rule = Rule::from_prefix(net("10.0.0.0/16"), 1536, 1000);
    rule.dst = Some(net("192.168.0.0/24"));
    rule.fwmark = Some(0x80);
    rule.fwmask = Some(0x80);
    rule.iif = Some("eth0".into());
    rule.invert = true;
    let b = decode(rule_msg(32, NEW, &rule));
    assert_eq!(
        parse_rule(&messages(&b).next().unwrap().unwrap()),
        Ok(Some(rule))
    );
    let b = decode(addr_msg(20, NEW, 9, net("2001:db8::5/64")));
    let a = parse_addr(&messages(&b).next().unwrap().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!((a.index, a.prefix), (9, net("2001:db8::5/64")));
    let mac = "02:11:22:33:44:55".parse().unwrap();
    let b = decode(neigh_msg(
        28,
        NEW,
        3,
        ip("fe80::1"),
        Some(mac),
        NUD_PERMANENT,
    ));
    let n = parse_neigh(&messages(&b).next().unwrap().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        (n.index, n.ip, n.mac, n.state),
        (3, ip("fe80::1"), Some(mac), NUD_PERMANENT)
    );
}

proptest::proptest! {
    /// Replies from the kernel are trusted for content but never for shape: no input panics.
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(0u8..=255, 0..200), ty in 16u16..40) {
        use super::wire::{messages, parse_error, Msg};
        for m in messages(&bytes).flatten() {
            let _ = parse_error(&m);
        }
        let msg = Msg { ty, flags: 0, seq: 0, pid: 0, payload: &bytes };
        let _ = super::link::parse_link(&msg);
        let _ = super::addr::parse_addr(&msg);
        let _ = super::route::parse_route(&msg);
        let _ = super::rule::parse_rule(&msg);
        let _ = super::neigh::parse_neigh(&msg);
        let _ = crate::nft::tree::decode_exprs(&bytes);
    }
}
