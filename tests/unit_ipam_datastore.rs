//! Datastore: assignment keys, cooldown, deterministic choice, modes, undo, checkpoint restore.

// Test crate: helpers outside #[test] fns may unwrap too (a panic is a test failure).
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use vpc_cni::ipam::checkpoint::{CheckpointEntry, CheckpointMetadata};
use vpc_cni::ipam::{
    AddressMode, AssignRequest, CheckpointData, Datastore, DatastoreConfig, DatastoreError,
    EniSpec, Instant, IpamKey, PodMetadata, ReleaseOutcome,
};
use vpc_cni::net::{Ipv4Cidr, Ipv6Cidr};

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn req(c: &str) -> AssignRequest {
    AssignRequest {
        key: IpamKey::new("aws-cni", c, "eth0"),
        metadata: PodMetadata {
            namespace: "ns".into(),
            name: format!("pod-{c}"),
            interfaces_count: 1,
        },
        unix_nanos: 1_700_000_000_000_000_000,
    }
}

fn eni(id: &str, dev: u32) -> EniSpec {
    EniSpec {
        id: id.into(),
        device_number: dev,
        is_primary: dev == 0,
        ..EniSpec::default()
    }
}

const T0: Instant = Instant::from_secs(100);

fn secondary_store() -> Datastore {
    let mut ds = Datastore::new(DatastoreConfig::default());
    // Added out of device order on purpose: the choice must not depend on insertion order.
    ds.add_eni(eni("eni-b", 1), T0).unwrap();
    ds.add_eni(eni("eni-a", 0), T0).unwrap();
    ds.add_ipv4_addresses("eni-b", &[v4("10.0.2.5"), v4("10.0.2.4")])
        .unwrap();
    ds.add_ipv4_addresses("eni-a", &[v4("10.0.1.9"), v4("10.0.1.7")])
        .unwrap();
    ds
}

#[test]
fn lowest_device_then_lowest_address_and_route_table_is_device_plus_one() {
    let mut ds = secondary_store();
    let order: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|c| {
            let r = ds.assign(req(c), T0).unwrap();
            (
                r.pod.address,
                r.pod.eni_id.clone(),
                r.pod.route_table_id,
                r.pod.eni_is_primary,
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            (ip("10.0.1.7"), "eni-a".to_string(), 1, true),
            (ip("10.0.1.9"), "eni-a".to_string(), 1, true),
            (ip("10.0.2.4"), "eni-b".to_string(), 2, false),
            (ip("10.0.2.5"), "eni-b".to_string(), 2, false),
        ]
    );
    let e = ds.assign(req("e"), T0).unwrap_err();
    assert_eq!(e.to_string(), "assign an address to aws-cni/e/eth0: no free address (4 total, 4 assigned, 0 cooling down)");
}

#[test]
fn add_with_a_known_key_returns_the_same_address() {
    let mut ds = secondary_store();
    let first = ds.assign(req("a"), T0).unwrap();
    assert!(!first.existing);
    let again = ds.assign(req("a"), T0 + Duration::from_secs(1)).unwrap();
    assert!(again.existing);
    assert_eq!(again.pod, first.pod);
    assert_eq!(ds.stats(T0).assigned, 1);
}

#[test]
fn del_of_unknown_key_is_reported_not_an_error_and_legacy_key_is_tried() {
    let mut ds = secondary_store();
    assert_eq!(
        ds.unassign(&IpamKey::new("aws-cni", "nope", "eth0"), T0),
        ReleaseOutcome::Unknown
    );
    // An allocation restored from an old checkpoint under upstream's CRI-migration key.
    let data = CheckpointData {
        version: "vpc-cni-ipam/1".into(),
        allocations: vec![CheckpointEntry {
            network_name: "_migrated-from-cri".into(),
            container_id: "legacy".into(),
            if_name: "unknown".into(),
            ipv4: Some("10.0.2.4".into()),
            ..CheckpointEntry::default()
        }],
    };
    assert_eq!(ds.restore(&data).unwrap().restored, 1);
    match ds.unassign(&IpamKey::new("aws-cni", "legacy", "eth0"), T0) {
        ReleaseOutcome::Released(r) => {
            assert!(r.legacy_key);
            assert_eq!(r.pod.address, ip("10.0.2.4"));
            assert_eq!(
                r.interfaces_count, 1,
                "0 in old checkpoints means one interface"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn released_address_cools_down_before_reuse() {
    let mut ds = Datastore::new(DatastoreConfig::default());
    ds.add_eni(eni("eni-a", 0), T0).unwrap();
    ds.add_ipv4_addresses("eni-a", &[v4("10.0.1.7"), v4("10.0.1.9")])
        .unwrap();
    let a = ds.assign(req("a"), T0).unwrap().pod.address;
    assert!(matches!(
        ds.unassign(&IpamKey::new("aws-cni", "a", "eth0"), T0),
        ReleaseOutcome::Released(_)
    ));
    assert!(
        ds.is_cooling(a, T0 + Duration::from_secs(30)),
        "cooling includes the 30th second"
    );
    assert_eq!(ds.stats(T0).cooling, 1);
    // Within the cooldown the other address is used, then nothing is left.
    assert_eq!(
        ds.assign(req("b"), T0 + Duration::from_secs(10))
            .unwrap()
            .pod
            .address,
        ip("10.0.1.9")
    );
    let e = ds
        .assign(req("c"), T0 + Duration::from_secs(30))
        .unwrap_err();
    assert!(
        matches!(e, DatastoreError::NoFreeAddress { cooling: 1, .. }),
        "{e:?}"
    );
    // After it, the cooled address is reused.
    let r = ds
        .assign(req("c"), T0 + Duration::from_millis(30_001))
        .unwrap();
    assert_eq!(r.pod.address, a);
}

#[test]
fn zero_cooldown_reuses_at_once() {
    let mut ds = Datastore::new(DatastoreConfig {
        ip_cooldown: Duration::ZERO,
        ..DatastoreConfig::default()
    });
    ds.add_eni(eni("eni-a", 0), T0).unwrap();
    ds.add_ipv4_addresses("eni-a", &[v4("10.0.1.7")]).unwrap();
    let a = ds.assign(req("a"), T0).unwrap().pod.address;
    let _ = ds.unassign(&IpamKey::new("aws-cni", "a", "eth0"), T0);
    assert_eq!(
        ds.assign(req("b"), T0 + Duration::from_millis(1))
            .unwrap()
            .pod
            .address,
        a
    );
}

#[test]
fn each_mode_serves_only_its_blocks() {
    let p: Ipv4Cidr = "10.0.16.32/28".parse().unwrap();
    for mode in [AddressMode::SecondaryIpv4, AddressMode::PrefixIpv4] {
        let mut ds = Datastore::new(DatastoreConfig {
            mode,
            ..DatastoreConfig::default()
        });
        ds.add_eni(eni("eni-a", 0), T0).unwrap();
        ds.add_ipv4_addresses("eni-a", &[v4("10.0.1.7")]).unwrap();
        ds.add_ipv4_prefixes("eni-a", &[p]).unwrap();
        let got = ds.assign(req("a"), T0).unwrap().pod.address;
        let s = ds.stats(T0);
        match mode {
            AddressMode::SecondaryIpv4 => {
                assert_eq!(got, ip("10.0.1.7"));
                assert_eq!((s.total, s.total_prefixes, s.free_prefixes), (1, 1, 1));
                assert!(
                    ds.assign(req("b"), T0).is_err(),
                    "the prefix is not used in secondary mode"
                );
            }
            _ => {
                assert_eq!(got, ip("10.0.16.32"), "lowest address of the prefix first");
                assert_eq!((s.total, s.total_prefixes, s.free_prefixes), (16, 1, 0));
                assert_eq!(
                    ds.assign(req("b"), T0).unwrap().pod.address,
                    ip("10.0.16.33")
                );
            }
        }
    }
}

#[test]
fn prefix_fallback_serves_32s_after_every_prefix_address_and_counts_them() {
    let mut ds = Datastore::new(DatastoreConfig {
        mode: AddressMode::PrefixIpv4,
        ip_cooldown: Duration::ZERO,
    });
    ds.add_eni(eni("eni-a", 0), T0).unwrap();
    ds.add_eni(eni("eni-b", 1), T0).unwrap();
    // A /32 on the primary ENI (lower device) and a /28 on the secondary one.
    ds.add_ipv4_addresses("eni-a", &[v4("10.0.1.7")]).unwrap();
    let p: Ipv4Cidr = "10.0.16.32/28".parse().unwrap();
    ds.add_ipv4_prefixes("eni-b", &[p]).unwrap();
    assert!(!ds.prefix_fallback());
    assert_eq!(ds.stats(T0).total, 16, "off: the /32 does not serve pods");
    assert!(!ds.in_mode(&Ipv4Cidr::host(v4("10.0.1.7"))));

    ds.set_prefix_fallback(true);
    assert!(ds.prefix_fallback());
    assert!(ds.in_mode(&Ipv4Cidr::host(v4("10.0.1.7"))));
    let s = ds.stats(T0);
    assert_eq!((s.total, s.total_prefixes, s.free_prefixes), (17, 1, 1));
    assert_eq!(ds.stats_as(T0, false).total, 16);
    // Prefix addresses first, even though the /32's ENI comes first in device order.
    for i in 0..16 {
        let a = ds.assign(req(&format!("p{i}")), T0).unwrap().pod.address;
        assert!(
            matches!(a, IpAddr::V4(x) if p.contains(x)),
            "pod {i} got {a}"
        );
    }
    let last = ds.assign(req("last"), T0).unwrap().pod;
    assert_eq!(last.address, ip("10.0.1.7"));
    assert_eq!(last.eni_id, "eni-a");
    assert!(ds.assign(req("none"), T0).is_err());

    // Off again: the pod keeps its /32, which no longer counts and serves no new pod.
    ds.set_prefix_fallback(false);
    assert_eq!(
        ds.lookup(&IpamKey::new("aws-cni", "last", "eth0"))
            .map(|x| x.address),
        Some(ip("10.0.1.7"))
    );
    let s = ds.stats(T0);
    assert_eq!((s.total, s.assigned), (16, 16));
    let _ = ds.unassign(&IpamKey::new("aws-cni", "last", "eth0"), T0);
    assert!(ds.assign(req("again"), T0).is_err());
}

#[test]
fn prefix_fallback_has_no_effect_outside_prefix_mode() {
    let mut ds = secondary_store();
    let p: Ipv4Cidr = "10.0.16.32/28".parse().unwrap();
    ds.add_ipv4_prefixes("eni-a", &[p]).unwrap();
    ds.set_prefix_fallback(true);
    assert!(!ds.prefix_fallback());
    assert!(!ds.in_mode(&p));
    assert_eq!(ds.stats(T0).total, 4);
}

#[test]
fn blocks_on_two_enis_never_overlap_and_prefixes_must_be_28() {
    let mut ds = secondary_store();
    let e = ds
        .add_ipv4_addresses("eni-a", &[v4("10.0.2.5")])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "add 10.0.2.5/32 to ENI eni-a: overlaps an address block already on ENI eni-b"
    );
    assert_eq!(
        ds.add_ipv4_addresses("eni-b", &[v4("10.0.2.5")]).unwrap(),
        0,
        "already there: skipped"
    );
    let e = ds
        .add_ipv4_prefixes("eni-a", &["10.0.2.0/28".parse().unwrap()])
        .unwrap_err();
    assert!(matches!(e, DatastoreError::CidrOnOtherEni { .. }));
    let e = ds
        .add_ipv4_prefixes("eni-a", &["10.0.8.0/24".parse().unwrap()])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "add 10.0.8.0/24: expected an IPv4 /28 prefix"
    );
    assert!(matches!(
        ds.add_eni(eni("eni-a", 3), T0),
        Err(DatastoreError::DuplicateEni(_))
    ));
}

#[test]
fn removing_assigned_blocks_needs_force_and_returns_the_dropped_pods() {
    let mut ds = secondary_store();
    let a = ds.assign(req("a"), T0).unwrap().pod.address;
    let c = Ipv4Cidr::host(v4("10.0.1.7"));
    assert_eq!(a, ip("10.0.1.7"));
    let e = ds.remove_ipv4_cidr("eni-a", c, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "remove 10.0.1.7/32: 1 address(es) still assigned to pods"
    );
    let dropped = ds.remove_ipv4_cidr("eni-a", c, true).unwrap();
    assert_eq!(dropped.len(), 1);
    assert!(ds.lookup(&IpamKey::new("aws-cni", "a", "eth0")).is_none());
    let _ = ds.assign(req("b"), T0).unwrap();
    assert!(ds.remove_eni("eni-a", false).is_err());
    assert_eq!(ds.remove_eni("eni-a", true).unwrap().len(), 1);
    assert!(ds.eni("eni-a").is_none());
}

#[test]
fn undo_reverts_assign_and_unassign_exactly() {
    let mut ds = secondary_store();
    let before = ds.to_checkpoint();
    let r = ds.assign(req("a"), T0).unwrap();
    ds.undo(r.undo);
    assert_eq!(ds.to_checkpoint(), before);
    assert!(
        !ds.is_cooling(ip("10.0.1.7"), T0),
        "an undone assign leaves no cooldown behind"
    );
    let _ = ds.assign(req("a"), T0).unwrap();
    let with_a = ds.to_checkpoint();
    let ReleaseOutcome::Released(rel) = ds.unassign(&IpamKey::new("aws-cni", "a", "eth0"), T0)
    else {
        panic!("release")
    };
    ds.undo(rel.undo);
    assert_eq!(ds.to_checkpoint(), with_a);
    assert!(!ds.is_cooling(ip("10.0.1.7"), T0));
}

fn alloc(c: &str, ipv4: &str, ts: i64) -> CheckpointEntry {
    CheckpointEntry {
        network_name: "aws-cni".into(),
        container_id: c.into(),
        if_name: "eth0".into(),
        ipv4: Some(ipv4.into()),
        ipv6: None,
        allocation_timestamp: ts,
        metadata: CheckpointMetadata {
            k8s_pod_namespace: "ns".into(),
            k8s_pod_name: c.into(),
            interfaces_count: 1,
        },
    }
}

#[test]
fn restore_attaches_by_containing_block_and_drops_stale_entries() {
    let mut ds = Datastore::new(DatastoreConfig {
        mode: AddressMode::PrefixIpv4,
        ..DatastoreConfig::default()
    });
    ds.add_eni(eni("eni-a", 0), T0).unwrap();
    ds.add_eni(eni("eni-b", 1), T0).unwrap();
    ds.add_ipv4_prefixes("eni-b", &["10.0.16.32/28".parse().unwrap()])
        .unwrap();
    ds.add_ipv4_addresses("eni-a", &[v4("10.0.1.7")]).unwrap(); // left from secondary mode
    let data = CheckpointData {
        version: "vpc-cni-ipam/1".into(),
        allocations: vec![
            alloc("p1", "10.0.16.40", 11),
            alloc("p2", "10.0.1.7", 22),
            alloc("gone", "10.0.99.1", 33),
            alloc("junk", "not-an-ip", 44),
        ],
    };
    let report = ds.restore(&data).unwrap();
    assert_eq!(report.restored, 2);
    let stale: Vec<_> = report.stale.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(stale, vec!["10.0.99.1", "not-an-ip"]);
    let p1 = ds.lookup(&IpamKey::new("aws-cni", "p1", "eth0")).unwrap();
    assert_eq!((p1.eni_id.as_str(), p1.device_number), ("eni-b", 1));
    // Written back: ENI device order, timestamps preserved, stale entries gone.
    let out = ds.to_checkpoint();
    let got: Vec<_> = out
        .allocations
        .iter()
        .map(|a| (a.container_id.as_str(), a.allocation_timestamp))
        .collect();
    assert_eq!(got, vec![("p2", 22), ("p1", 11)]);
    // A new pod in prefix mode does not get the restored address.
    let n = ds.assign(req("new"), T0).unwrap().pod.address;
    assert_eq!(n, ip("10.0.16.32"));
}

#[test]
fn restore_refuses_two_claims_on_one_address_and_other_versions() {
    let mut ds = secondary_store();
    let data = CheckpointData {
        version: "vpc-cni-ipam/1".into(),
        allocations: vec![alloc("x", "10.0.1.7", 1), alloc("y", "10.0.1.7", 2)],
    };
    let e = ds.restore(&data).unwrap_err();
    assert_eq!(
        e.to_string(),
        "restore aws-cni/y/eth0: address 10.0.1.7 is already assigned to aws-cni/x/eth0"
    );
    let mut ds = secondary_store();
    let e = ds
        .restore(&CheckpointData {
            version: "v2".into(),
            allocations: vec![],
        })
        .unwrap_err();
    assert!(matches!(e, DatastoreError::CheckpointVersion(_)));
}

#[test]
fn ipv6_mode_assigns_from_the_primary_enis_80() {
    let mut ds = Datastore::new(DatastoreConfig {
        mode: AddressMode::Ipv6,
        ..DatastoreConfig::default()
    });
    ds.add_eni(eni("eni-a", 0), T0).unwrap();
    let p: Ipv6Cidr = "2600:1f14:0:1200:a::/80".parse().unwrap();
    ds.add_ipv6_prefixes("eni-a", &[p]).unwrap();
    let a = ds.assign(req("a"), T0).unwrap();
    assert_eq!(a.pod.address, ip("2600:1f14:0:1200:a::"));
    assert_eq!(
        ds.assign(req("b"), T0).unwrap().pod.address,
        ip("2600:1f14:0:1200:a::1")
    );
    let _ = ds.unassign(&IpamKey::new("aws-cni", "a", "eth0"), T0);
    assert_eq!(
        ds.assign(req("c"), T0).unwrap().pod.address,
        ip("2600:1f14:0:1200:a::2"),
        "first one cools"
    );
    let cp = ds.to_checkpoint();
    assert!(cp
        .allocations
        .iter()
        .all(|e| e.ipv4.is_none() && e.ipv6.is_some()));
    let mut again = Datastore::new(DatastoreConfig {
        mode: AddressMode::Ipv6,
        ..DatastoreConfig::default()
    });
    again.add_eni(eni("eni-a", 0), T0).unwrap();
    again.add_ipv6_prefixes("eni-a", &[p]).unwrap();
    assert_eq!(again.restore(&cp).unwrap().restored, 2);
    assert_eq!(again.to_checkpoint(), cp);
}

#[test]
fn counters_per_eni_and_unmanaged_enis_serve_no_pods() {
    let mut ds = secondary_store();
    ds.add_eni(
        EniSpec {
            id: "eni-x".into(),
            device_number: 2,
            unmanaged: true,
            ..EniSpec::default()
        },
        T0,
    )
    .unwrap();
    ds.add_ipv4_addresses("eni-x", &[v4("10.0.3.1")]).unwrap();
    for c in ["a", "b", "c", "d"] {
        ds.assign(req(c), T0).unwrap();
    }
    assert!(
        ds.assign(req("e"), T0).is_err(),
        "the unmanaged ENI's address is not for pods"
    );
    let _ = ds.unassign(&IpamKey::new("aws-cni", "d", "eth0"), T0);
    let c = ds.eni_counters(T0);
    let got: Vec<_> = c
        .iter()
        .map(|c| (c.eni_id.as_str(), c.total, c.assigned, c.cooling))
        .collect();
    assert_eq!(
        got,
        vec![("eni-a", 2, 2, 0), ("eni-b", 2, 1, 1), ("eni-x", 1, 0, 0)]
    );
    let s = ds.stats(T0);
    assert_eq!((s.total, s.assigned, s.cooling, s.enis), (4, 3, 1, 3));
}

#[test]
fn introspection_json_has_upstreams_eni_infos_shape() {
    let mut ds = Datastore::new(DatastoreConfig::default());
    ds.add_eni(eni("eni-a", 0), T0).unwrap();
    ds.add_ipv4_addresses("eni-a", &[v4("10.0.1.7"), v4("10.0.1.9")])
        .unwrap();
    ds.assign(req("a"), T0).unwrap();
    ds.assign(req("b"), T0).unwrap();
    let _ = ds.unassign(&IpamKey::new("aws-cni", "b", "eth0"), T0);
    let now = T0 + Duration::from_secs(2);
    let infos = vpc_cni::ipam::introspect::eni_infos(&ds, now, 1_700_000_002_000_000_000);
    let json = serde_json::to_string(&infos).unwrap();
    let want = concat!(
        r#"{"TotalIPs":2,"AssignedIPs":1,"ENIs":{"eni-a":{"ID":"eni-a","IsPrimary":true,"IsTrunk":false,"IsEFA":false,"DeviceNumber":0,"#,
        r#""AvailableIPv4Cidrs":{"10.0.1.7/32":{"Cidr":{"IP":"10.0.1.7","Mask":"/////w=="},"IPAddresses":{"10.0.1.7":{"Address":"10.0.1.7","#,
        r#""IPAMKey":{"networkName":"aws-cni","containerID":"","ifName":""},"IPAMMetadata":{"k8sPodNamespace":"ns","k8sPodName":"pod-a","interfacesCount":1},"#,
        r#""AssignedTime":"2023-11-14T22:13:20Z","UnassignedTime":"0001-01-01T00:00:00Z"}},"IsPrefix":false,"AddressFamily":""},"#,
        r#""10.0.1.9/32":{"Cidr":{"IP":"10.0.1.9","Mask":"/////w=="},"IPAddresses":{"10.0.1.9":{"Address":"10.0.1.9","#,
        r#""IPAMKey":{"networkName":"","containerID":"","ifName":""},"IPAMMetadata":{},"#,
        r#""AssignedTime":"0001-01-01T00:00:00Z","UnassignedTime":"2023-11-14T22:13:20Z"}},"IsPrefix":false,"AddressFamily":""}},"IPv6Cidrs":{}}}}"#
    );
    assert_eq!(json, want);
}

#[test]
fn introspection_lists_ipv6_prefixes_with_go_masks() {
    let mut ds = Datastore::new(DatastoreConfig {
        mode: AddressMode::Ipv6,
        ..DatastoreConfig::default()
    });
    ds.add_eni(eni("eni-a", 0), T0).unwrap();
    let p: Ipv6Cidr = "2600:1f14:0:1200:a::/80".parse().unwrap();
    ds.add_ipv6_prefixes("eni-a", &[p]).unwrap();
    ds.assign(req("a"), T0).unwrap();
    let infos = vpc_cni::ipam::introspect::eni_infos(&ds, T0, 1_700_000_002_000_000_000);
    let json = serde_json::to_string(&infos).unwrap();
    // A /80 holds 2^48 addresses; Go marshals the 16 mask bytes (ten 0xff, six 0x00) as base64.
    let want = concat!(
        r#"{"TotalIPs":281474976710656,"AssignedIPs":1,"ENIs":{"eni-a":{"ID":"eni-a","IsPrimary":true,"IsTrunk":false,"IsEFA":false,"DeviceNumber":0,"#,
        r#""AvailableIPv4Cidrs":{},"IPv6Cidrs":{"2600:1f14:0:1200:a::/80":{"Cidr":{"IP":"2600:1f14:0:1200:a::","Mask":"/////////////wAAAAAAAA=="},"#,
        r#""IPAddresses":{"2600:1f14:0:1200:a::":{"Address":"2600:1f14:0:1200:a::","#,
        r#""IPAMKey":{"networkName":"aws-cni","containerID":"","ifName":""},"IPAMMetadata":{"k8sPodNamespace":"ns","k8sPodName":"pod-a","interfacesCount":1},"#,
        r#""AssignedTime":"2023-11-14T22:13:20Z","UnassignedTime":"0001-01-01T00:00:00Z"}},"IsPrefix":true,"AddressFamily":""}}}}}"#
    );
    assert_eq!(json, want);
}
