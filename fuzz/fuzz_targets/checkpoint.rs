//! The IPAM checkpoint file: decoded, re-encoded (decode(encode(x)) == x), and restored into a
//! datastore of each address mode, whose own checkpoint must then decode to itself.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use vpc_cni::ipam::checkpoint::{decode, encode};
use vpc_cni::ipam::{AddressMode, Datastore, DatastoreConfig, EniSpec, Instant};

fn store(mode: AddressMode) -> Datastore {
    let mut ds = Datastore::new(DatastoreConfig {
        mode,
        ..DatastoreConfig::default()
    });
    let t0 = Instant::from_secs(100);
    for (id, dev) in [("eni-a", 0), ("eni-b", 1)] {
        let spec = EniSpec {
            id: id.into(),
            device_number: dev,
            is_primary: dev == 0,
            ..EniSpec::default()
        };
        ds.add_eni(spec, t0).expect("a new ENI");
    }
    let addrs: Vec<Ipv4Addr> = (1..=14).map(|i| Ipv4Addr::new(10, 0, 1, i)).collect();
    ds.add_ipv4_addresses("eni-a", &addrs).expect("addresses");
    let v4 = ["10.0.16.32/28".parse().expect("cidr")];
    ds.add_ipv4_prefixes("eni-b", &v4).expect("prefix");
    let v6 = ["2001:db8:0:1:2::/80".parse().expect("cidr")];
    ds.add_ipv6_prefixes("eni-a", &v6).expect("prefix");
    ds
}

fuzz_target!(|data: &[u8]| {
    let Ok(cp) = decode(data) else { return };
    assert_eq!(decode(&encode(&cp)).expect("our encoding decodes"), cp);
    for mode in [
        AddressMode::SecondaryIpv4,
        AddressMode::PrefixIpv4,
        AddressMode::Ipv6,
    ] {
        let mut ds = store(mode);
        if let Ok(report) = ds.restore(&cp) {
            let mine = ds.to_checkpoint();
            assert_eq!(mine.allocations.len(), report.restored, "{mode:?}");
            assert_eq!(decode(&encode(&mine)).expect("our encoding decodes"), mine);
        }
    }
});
