//! rtnetlink replies as one received datagram: every message through the link, address, route,
//! rule and neighbour decoders and the error decoder, attributes walked to any depth.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_cni::netlink::wire::{self, attrs, messages, NLMSG_HDRLEN};
use vpc_cni::netlink::{parse_addr, parse_link, parse_neigh, parse_route, parse_rule};

fn walk(buf: &[u8], depth: u32) -> usize {
    let mut n = 0;
    for a in attrs(buf) {
        // A malformed attribute ends the walk with an error (never silently).
        let Ok(a) = a else { break };
        let _ = (a.u32(), a.be32(), a.u8(), a.str());
        n += 1;
        if depth < 8 {
            n += walk(a.data, depth + 1);
        }
    }
    n
}

fuzz_target!(|data: &[u8]| {
    let mut count = 0usize;
    for m in messages(data) {
        let Ok(m) = m else { break };
        count += 1;
        let _ = parse_link(&m);
        let _ = parse_addr(&m).map(|a| a.map(|a| a.prefix.to_string()));
        let _ = parse_route(&m);
        let _ = parse_rule(&m);
        let _ = parse_neigh(&m);
        let _ = wire::parse_error(&m);
        walk(m.payload, 0);
        for skip in [4, 8, 12, 16] {
            if let Some(rest) = m.payload.get(skip..) {
                walk(rest, 0);
            }
        }
    }
    assert!(count <= data.len() / NLMSG_HDRLEN);
    let mut copy = data.to_vec();
    let _ = wire::stamp_seq(&mut copy, 1);
});
