//! Warm-pool planner: the seed's worked examples and the upstream rules around them, run on a
//! simulated node (planner + datastore + an in-memory EC2 that enforces instance limits).

// Test crate: helpers outside #[test] fns may unwrap too (a panic is a test failure).
#![allow(clippy::unwrap_used)]

mod ipam_support;

use std::time::Duration;

use ipam_support::{key, Node, M4_4XLARGE, M4_4XLARGE_MAX_PODS, M5_LARGE};
use vpc_cni::ipam::{
    ActionKind, AddressMode, EniSpec, Failure, InstanceLimits, PoolConfig, ReleaseOutcome,
};

fn m4(cfg: PoolConfig) -> Node {
    Node::new(
        AddressMode::SecondaryIpv4,
        PoolConfig {
            max_pods: M4_4XLARGE_MAX_PODS,
            ..cfg
        },
        M4_4XLARGE,
    )
}

/// Adds pods 1..=n one by one, settling the pool after each; returns (pods, total, ENIs, free) rows,
/// row 0 being the settled pool before any pod.
fn grow(node: &mut Node, n: u32) -> Vec<(u32, u32, u32, u32)> {
    assert!(node.settle(3, 50).is_some(), "pool did not settle at start");
    let (t, e, f) = node.shape();
    let mut rows = vec![(0, t, e, f)];
    for p in 1..=n {
        node.add_pod(p);
        assert!(
            node.settle(3, 50).is_some(),
            "pool did not settle after pod {p}"
        );
        let (t, e, f) = node.shape();
        rows.push((p, t, e, f));
    }
    assert!(
        node.ec2().violations.is_empty(),
        "{:?}",
        node.ec2().violations
    );
    rows
}

fn print_rows(title: &str, rows: &[(u32, u32, u32, u32)]) {
    println!("{title}");
    for (p, t, e, f) in rows {
        println!("  pods {p:3}: total {t:3}, ENIs {e}, free {f:3}");
    }
}

#[test]
fn warm_eni_target_1_keeps_a_whole_free_eni_on_m4_4xlarge() {
    let mut node = m4(PoolConfig::default());
    let rows = grow(&mut node, 60);
    print_rows("WARM_ENI_TARGET=1, m4.4xlarge", &rows);
    // Upstream: too low iff available < 29 * WARM_ENI_TARGET; each new ENI comes filled (29).
    assert_eq!(
        rows[0],
        (0, 29, 1, 29),
        "no pods: the primary ENI filled, 29 free"
    );
    for &(p, total, enis, free) in &rows[1..] {
        let (want_total, want_enis) = match p {
            1..=29 => (58, 2),
            30..=58 => (87, 3),
            _ => (116, 4),
        };
        assert_eq!((total, enis), (want_total, want_enis), "pods {p}");
        assert_eq!(free, total - p);
        assert!(free >= 29, "pods {p}: fewer than one ENI's worth free");
    }
}

#[test]
fn warm_ip_target_5_keeps_five_free() {
    let mut node = m4(PoolConfig {
        warm_ip_target: Some(5),
        ..PoolConfig::default()
    });
    let rows = grow(&mut node, 64);
    print_rows("WARM_IP_TARGET=5, m4.4xlarge", &rows);
    for &(p, total, enis, free) in &rows {
        assert_eq!(free, 5, "pods {p}");
        assert_eq!(total, p + 5);
        assert_eq!(
            enis,
            (p + 5).div_ceil(29),
            "pods {p}: ENIs fill up before a new one is made"
        );
    }
}

#[test]
fn minimum_ip_target_30_with_warm_ip_2_ends_at_32_after_30_pods() {
    let mut node = m4(PoolConfig {
        warm_ip_target: Some(2),
        minimum_ip_target: Some(30),
        ..PoolConfig::default()
    });
    let rows = grow(&mut node, 30);
    print_rows("MINIMUM_IP_TARGET=30 WARM_IP_TARGET=2, m4.4xlarge", &rows);
    assert_eq!(rows[0].1, 30, "pre-scaled to the minimum before any pod");
    for &(p, total, _, _) in &rows {
        assert_eq!(total, 30.max(p + 2), "pods {p}");
    }
    assert_eq!(rows[30].1, 32, "32 addresses after 30 pods, not 60");
}

#[test]
fn prefix_delegation_warm_ip_16_adds_a_second_prefix_after_one_pod() {
    let mut node = Node::new(
        AddressMode::PrefixIpv4,
        PoolConfig {
            warm_ip_target: Some(16),
            max_pods: 110,
            ..PoolConfig::default()
        },
        M5_LARGE,
    );
    let rows = grow(&mut node, 40);
    print_rows(
        "ENABLE_PREFIX_DELEGATION WARM_IP_TARGET=16, m5.large",
        &rows,
    );
    assert_eq!(rows[0], (0, 16, 1, 16), "one /28 at start");
    assert_eq!(
        rows[1],
        (1, 32, 1, 31),
        "a second /28 once one pod holds an address"
    );
    for &(p, total, _, free) in &rows {
        assert_eq!(total, 16 * (p + 16).div_ceil(16), "pods {p}");
        assert!(free >= 16);
    }
    let s = node.ds.stats(node.now);
    assert_eq!(s.total_prefixes, 4);
}

#[test]
fn prefix_delegation_default_targets_keep_one_partly_free_prefix() {
    // WARM_PREFIX_TARGET=0, WARM_ENI_TARGET ignored in PD: a prefix is added only when none is free.
    let mut node = Node::new(AddressMode::PrefixIpv4, PoolConfig::default(), M5_LARGE);
    let rows = grow(&mut node, 33);
    for &(p, total, _, _) in &rows {
        let want = if p == 0 {
            16
        } else {
            16 * (p + 1).div_ceil(16)
        };
        assert_eq!(total, want, "pods {p}");
    }
}

#[test]
fn warm_ip_target_shrinks_back_once_pods_leave_and_cooldown_ends() {
    let mut node = m4(PoolConfig {
        warm_ip_target: Some(5),
        ..PoolConfig::default()
    });
    grow(&mut node, 20);
    for p in 1..=20 {
        assert!(matches!(
            node.ds.unassign(&key(p), node.now),
            ReleaseOutcome::Released(_)
        ));
    }
    // Nothing is released while the 20 addresses cool down (30 s).
    let mut released_in_cooldown = 0;
    for _ in 0..5 {
        for a in node.tick() {
            if let ActionKind::UnassignAddresses { addresses, .. } = a.kind {
                released_in_cooldown += addresses.len();
            }
        }
    }
    assert_eq!(released_in_cooldown, 0);
    assert!(node.settle(8, 100).is_some());
    assert_eq!(node.shape().0, 5, "back to WARM_IP_TARGET with no pods");
}

#[test]
fn a_decrease_tick_that_released_nothing_does_not_hold_back_the_next_release() {
    // IP_COOLDOWN_PERIOD=5: the surplus is cool 5 s after the last DEL. Ticks before that find
    // only cooling addresses; they must not start the 30 s decrease interval.
    let mut node = Node::with_cooldown(
        AddressMode::SecondaryIpv4,
        PoolConfig {
            warm_ip_target: Some(2),
            max_pods: M4_4XLARGE_MAX_PODS,
            ..PoolConfig::default()
        },
        M4_4XLARGE,
        Duration::from_secs(5),
    );
    grow(&mut node, 12);
    let deleted_at = node.now;
    for p in 1..=12 {
        let _ = node.ds.unassign(&key(p), node.now);
    }
    let mut first_release = None;
    for _ in 0..12 {
        let at = node.now;
        if node
            .tick()
            .iter()
            .any(|a| matches!(a.kind, ActionKind::UnassignAddresses { .. }))
        {
            first_release = Some(at);
            break;
        }
    }
    let after = first_release
        .expect("no release within a minute")
        .saturating_since(deleted_at);
    assert!(
        after <= Duration::from_secs(10),
        "the surplus went {after:?} after the last DEL; cool after 5 s, ticks every 5 s"
    );
}

#[test]
fn at_most_one_decrease_per_30_seconds() {
    let mut node = m4(PoolConfig {
        warm_ip_target: Some(1),
        ..PoolConfig::default()
    });
    grow(&mut node, 10);
    for p in 1..=10 {
        let _ = node.ds.unassign(&key(p), node.now);
    }
    node.advance(Duration::from_secs(31));
    let mut decreases = vec![];
    for _ in 0..40 {
        let at = node.now;
        if node
            .tick()
            .iter()
            .any(|a| matches!(a.kind, ActionKind::UnassignAddresses { .. }))
        {
            decreases.push(at);
        }
    }
    assert!(!decreases.is_empty());
    for w in decreases.windows(2) {
        assert!(
            w[1].saturating_since(w[0]) > Duration::from_secs(30),
            "{w:?}"
        );
    }
}

#[test]
fn warm_eni_frees_empty_enis_only_after_a_minute_and_keeps_the_primary() {
    let mut node = m4(PoolConfig::default());
    grow(&mut node, 30); // 2 ENIs in use, and a third warm one attached just before the release
    assert_eq!(node.shape().1, 3);
    let attached: std::collections::BTreeMap<String, _> = node
        .ec2()
        .enis
        .iter()
        .map(|(id, e)| (id.clone(), e.attached_at))
        .collect();
    let released = node.now;
    for p in 1..=30 {
        let _ = node.ds.unassign(&key(p), node.now);
    }
    // The rule is exercised: at release the newest ENI is younger than a minute.
    let youngest = attached
        .values()
        .map(|a| released.saturating_since(*a))
        .min();
    assert!(
        youngest.is_some_and(|age| age < Duration::from_secs(60)),
        "{youngest:?}"
    );
    let mut freed = vec![];
    for _ in 0..40 {
        let at = node.now;
        for a in node.tick() {
            if let ActionKind::FreeEni { eni } = a.kind {
                freed.push((eni, at));
            }
        }
    }
    assert_eq!(freed.len(), 2, "{freed:?}");
    assert!(freed.iter().all(|(e, _)| e != "eni-0"));
    assert_eq!(node.shape(), (29, 1, 29));
    // Both freed ENIs were at least 60 s old and their addresses out of cooldown by then.
    for (eni, at) in &freed {
        assert!(
            !node.ec2().enis.contains_key(eni),
            "{eni} still attached in EC2"
        );
        let age = at.saturating_since(attached[eni]);
        assert!(age >= Duration::from_secs(60), "{eni} freed at age {age:?}");
        let idle = at.saturating_since(released);
        assert!(
            idle >= Duration::from_secs(30),
            "{eni} freed {idle:?} after release"
        );
    }
}

#[test]
fn insufficient_capacity_pauses_growth_for_120_seconds() {
    let mut node = m4(PoolConfig::default());
    let first = node.tick_with(Some(Failure::InsufficientCapacity));
    assert_eq!(first.len(), 1);
    let failed_at = node.now - Duration::from_secs(5);
    let mut next_try = None;
    for _ in 0..40 {
        let at = node.now;
        if !node.tick().is_empty() {
            next_try = Some(at);
            break;
        }
    }
    let gap = next_try
        .expect("growth resumes")
        .saturating_since(failed_at);
    assert!(
        gap > Duration::from_secs(120) && gap <= Duration::from_secs(130),
        "{gap:?}"
    );
}

#[test]
fn a_failed_multi_address_assign_is_retried_with_one() {
    let mut node = m4(PoolConfig::default());
    let a = node.tick_with(Some(Failure::Other));
    assert!(
        matches!(a[0].kind, ActionKind::AssignAddresses { count: 29, .. }),
        "{a:?}"
    );
    let b = node.tick();
    assert!(
        matches!(b[0].kind, ActionKind::AssignAddresses { count: 1, .. }),
        "{b:?}"
    );
    let c = node.tick();
    assert!(
        matches!(c[0].kind, ActionKind::AssignAddresses { count: 28, .. }),
        "{c:?}"
    );
}

#[test]
fn max_eni_and_the_trunk_slot_cap_enis() {
    let mut node = m4(PoolConfig {
        max_eni: Some(4),
        pod_eni: true,
        ..PoolConfig::default()
    });
    grow(&mut node, 87);
    assert_eq!(
        node.shape(),
        (87, 3, 0),
        "MAX_ENI=4 minus one slot kept for the trunk"
    );
    assert!(node.settle(3, 10).is_some());
    assert_eq!(node.ds.enis().count(), 3);
    // MAX_ENI above the instance limit is ignored.
    let node = m4(PoolConfig {
        max_eni: Some(50),
        ..PoolConfig::default()
    });
    assert_eq!(node.pool.max_enis(), 8);
}

#[test]
fn unmanaged_enis_take_a_slot_but_never_get_addresses_or_get_freed() {
    let limits = InstanceLimits::simple("synthetic", 3, 6);
    let mut node = Node::new(
        AddressMode::SecondaryIpv4,
        PoolConfig {
            max_pods: 100,
            ..PoolConfig::default()
        },
        limits,
    );
    node.ds
        .add_eni(
            EniSpec {
                id: "eni-user".into(),
                device_number: 1,
                unmanaged: true,
                ..EniSpec::default()
            },
            node.now,
        )
        .unwrap();
    node.ec2().enis.insert(
        "eni-user".into(),
        ipam_support::FakeEni {
            device_number: 1,
            attached_at: node.now,
            cidrs: vec![],
            attached: true,
        },
    );
    grow(&mut node, 10);
    assert_eq!(
        node.ds.enis().count(),
        3,
        "primary + unmanaged + one of ours"
    );
    assert_eq!(node.shape().0, 10);
    assert_eq!(node.ds.eni("eni-user").unwrap().ipv4_cidr_count(), 0);
    node.advance(Duration::from_secs(600));
    node.settle(8, 100);
    assert!(node.ds.eni("eni-user").is_some());
}

#[test]
fn growth_stops_at_max_pods() {
    let cfg = PoolConfig {
        max_pods: 40,
        ..PoolConfig::default()
    };
    let mut node = Node::new(AddressMode::SecondaryIpv4, cfg, M4_4XLARGE);
    let rows = grow(&mut node, 40);
    assert!(rows.iter().all(|r| r.1 <= 40), "{rows:?}");
    assert_eq!(rows[40].1, 40);
}

/// Reconcile can bring back blocks the planner never asked for (an unassign or ENI free that
/// failed while EC2 kept the blocks), taking the pool past max pods. Even with only
/// WARM_ENI_TARGET (where upstream never releases single addresses) the planner gives back the
/// free surplus, leaves pods alone and keeps exactly max pods.
#[test]
fn addresses_reconcile_brings_back_past_max_pods_are_released() {
    let limits = InstanceLimits::simple("synthetic", 3, 5);
    let cfg = PoolConfig {
        max_pods: 6,
        ..PoolConfig::default()
    };
    let mut node = Node::new(AddressMode::SecondaryIpv4, cfg, limits);
    assert!(node.settle(3, 50).is_some());
    let pods: Vec<_> = (1..=3).map(|p| node.add_pod(p)).collect();
    assert!(node.settle(3, 50).is_some());
    assert_eq!(node.shape(), (6, 2, 3), "grown to max pods over two ENIs");
    // EC2 holds two more addresses on eni-1 than the datastore knows of.
    for _ in 0..2 {
        let a = node.ec2().new_address();
        node.ec2()
            .enis
            .get_mut("eni-1")
            .unwrap()
            .cidrs
            .push(vic::host(a));
    }
    assert!(node.reconcile());
    assert_eq!(node.shape().0, 8);
    assert!(node.settle(3, 50).is_some());
    assert_eq!(node.shape(), (6, 2, 3), "surplus released");
    let on_ec2: usize = node.ec2().enis.values().map(|e| e.cidrs.len()).sum();
    assert_eq!(on_ec2, 6, "EC2 was told to unassign the surplus");
    for (p, a) in (1..=3).zip(&pods) {
        assert_eq!(node.ds.lookup(&key(p)).map(|x| x.address), Some(*a));
    }
}

/// The same in prefix mode: whole /28s are released while at least max pods addresses remain.
#[test]
fn prefixes_reconcile_brings_back_past_max_pods_are_released() {
    let cfg = PoolConfig {
        max_pods: 20,
        // Three free /28s wanted: the target alone never finds the pool too high below.
        warm_prefix_target: 3,
        ..PoolConfig::default()
    };
    let mut node = Node::new(AddressMode::PrefixIpv4, cfg, M5_LARGE);
    assert!(node.settle(3, 50).is_some());
    node.add_pod(1);
    assert!(node.settle(3, 50).is_some());
    assert_eq!(node.shape().0, 32, "two /28s cover max pods 20");
    for _ in 0..2 {
        let p = node.ec2().new_prefix();
        node.ec2().enis.get_mut("eni-0").unwrap().cidrs.push(p);
    }
    assert!(node.reconcile());
    assert_eq!(node.shape().0, 64);
    assert!(node.settle(3, 50).is_some());
    assert_eq!(node.shape().0, 32, "back to the /28s max pods needs");
    assert!(node.ds.lookup(&key(1)).is_some());
}

#[test]
fn leftovers_of_the_other_mode_are_released_once_free_and_cool() {
    let mut node = Node::new(AddressMode::PrefixIpv4, PoolConfig::default(), M5_LARGE);
    // The node ran in secondary-address mode before: two /32s on the primary ENI, one still used.
    let a1 = node.ec2().new_address();
    let a2 = node.ec2().new_address();
    node.ec2()
        .enis
        .get_mut("eni-0")
        .unwrap()
        .cidrs
        .extend([a1, a2].map(vic::host));
    node.ds.add_ipv4_addresses("eni-0", &[a1, a2]).unwrap();
    let old = vpc_cni::ipam::CheckpointData {
        version: "vpc-cni-ipam/1".into(),
        allocations: vec![vpc_cni::ipam::checkpoint::CheckpointEntry {
            network_name: "aws-cni".into(),
            container_id: "old-pod".into(),
            if_name: "eth0".into(),
            ipv4: Some(a1.to_string()),
            ..Default::default()
        }],
    };
    assert_eq!(node.ds.restore(&old).unwrap().restored, 1);
    let first = node.tick();
    assert!(first.iter().any(|a| matches!(&a.kind, ActionKind::UnassignAddresses { addresses, .. } if addresses == &vec![a2])), "{first:?}");
    // The old pod keeps its /32 until DEL; then it cools down and goes.
    node.settle(3, 20);
    assert!(node.ds.is_assigned(std::net::IpAddr::V4(a1)));
    let _ = node.ds.unassign(
        &vpc_cni::ipam::IpamKey::new("aws-cni", "old-pod", "eth0"),
        node.now,
    );
    assert!(node.settle(8, 40).is_some(), "the pool keeps changing");
    assert!(node
        .ds
        .eni("eni-0")
        .unwrap()
        .ipv4_cidrs()
        .all(|c| !c.is_host()));
}

mod vic {
    pub fn host(a: std::net::Ipv4Addr) -> vpc_cni::net::Ipv4Cidr {
        vpc_cni::net::Ipv4Cidr::host(a)
    }
}

#[test]
fn no_growth_and_no_eni_free_while_eni_changes_are_not_allowed() {
    let mut node = m4(PoolConfig::default());
    node.pool.set_eni_changes_allowed(false);
    assert!(node.settle(3, 10).is_some());
    assert_eq!(
        node.shape(),
        (0, 1, 0),
        "a terminating/unschedulable node does not grow"
    );
    node.pool.set_eni_changes_allowed(true);
    grow(&mut node, 30);
    assert_eq!(node.shape().1, 3);
    for p in 1..=30 {
        let _ = node.ds.unassign(&key(p), node.now);
    }
    node.pool.set_eni_changes_allowed(false);
    node.advance(Duration::from_secs(120));
    node.settle(3, 30);
    assert_eq!(node.shape().1, 3, "no ENI is freed either");
    node.pool.set_eni_changes_allowed(true);
    node.settle(3, 30);
    assert_eq!(node.shape(), (29, 1, 29));
}

// ----- prefix delegation in a fragmented subnet: the /32 fallback -----------------------------

/// Prefix mode, WARM_PREFIX_TARGET=1, on an m5.large (3 ENIs × 9 slots).
fn pd_warm_prefix_1() -> Node {
    Node::new(
        AddressMode::PrefixIpv4,
        PoolConfig {
            warm_prefix_target: 1,
            max_pods: 110,
            ..PoolConfig::default()
        },
        M5_LARGE,
    )
}

/// (secondary /32s, prefixes) per ENI as the fake EC2 holds them, by ENI id.
fn ec2_shape(node: &Node) -> Vec<(usize, usize)> {
    node.ec2()
        .enis
        .values()
        .filter(|e| e.attached)
        .map(|e| {
            let hosts = e.cidrs.iter().filter(|c| c.is_host()).count();
            (hosts, e.cidrs.len() - hosts)
        })
        .collect()
}

/// Ticks until an action asks EC2 for prefixes; returns when it was planned.
fn next_prefix_request(node: &mut Node, max_ticks: usize) -> Option<vpc_cni::ipam::Instant> {
    for _ in 0..max_ticks {
        let at = node.now;
        let asked = node.tick().iter().any(|a| {
            matches!(
                a.kind,
                ActionKind::AssignPrefixes { .. } | ActionKind::CreateEni { prefixes: 1.., .. }
            )
        });
        if asked {
            return Some(at);
        }
    }
    None
}

#[test]
fn no_free_prefix_falls_back_to_single_addresses_until_prefixes_are_free_again() {
    let mut node = pd_warm_prefix_1();
    node.ec2().no_free_prefix = true;
    let first = node.tick();
    assert!(
        matches!(first[0].kind, ActionKind::AssignPrefixes { count: 1, .. }),
        "{first:?}"
    );
    let refused_at = node.now - Duration::from_secs(5);
    assert!(node.pool.prefix_fallback());
    // Upstream would pause growth for 120 s and fail pods; we grow with /32s at once: 16 free
    // addresses stand for WARM_PREFIX_TARGET=1, 9 on the primary ENI and 7 on a new one.
    let grow = node.tick();
    assert!(
        matches!(grow[0].kind, ActionKind::AssignAddresses { count: 9, .. }),
        "{grow:?}"
    );
    let create = node.tick();
    assert!(
        matches!(
            create[0].kind,
            ActionKind::CreateEni {
                addresses: 7,
                prefixes: 0
            }
        ),
        "{create:?}"
    );
    assert!(node.settle(3, 10).is_some());
    assert_eq!(ec2_shape(&node), vec![(9, 0), (7, 0)]);
    assert_eq!(node.shape(), (16, 2, 16));

    // Ten pods get /32s, and the pool keeps 16 free: 26 addresses, the most 3 ENIs hold is 27.
    let pods: Vec<_> = (1..=10).map(|p| node.add_pod(p)).collect();
    assert_eq!(
        pods.iter().collect::<std::collections::BTreeSet<_>>().len(),
        10
    );
    assert!(node.settle(3, 20).is_some());
    assert_eq!(ec2_shape(&node), vec![(9, 0), (9, 0), (8, 0)]);
    assert_eq!(node.shape(), (26, 3, 16));
    assert_eq!(
        node.ec2().cidr_blocks_refused,
        1,
        "no prefix asked in the pause"
    );

    // 120 s after the refusal a prefix is tried again; still none: another 120 s on /32s.
    let retry = next_prefix_request(&mut node, 40).expect("a prefix is tried again");
    let gap = retry.saturating_since(refused_at);
    assert!(
        gap > Duration::from_secs(120) && gap <= Duration::from_secs(130),
        "{gap:?}"
    );
    assert_eq!(node.ec2().cidr_blocks_refused, 2);
    assert!(node.pool.prefix_fallback());
    assert_eq!(node.shape(), (26, 3, 16), "the /32s were kept meanwhile");

    // The subnet has free /28s again: after the next pause a prefix is had and the fallback ends.
    node.ec2().no_free_prefix = false;
    let again = next_prefix_request(&mut node, 40).expect("a prefix is tried again");
    assert!(
        again.saturating_since(retry) > Duration::from_secs(120),
        "{:?}",
        again.saturating_since(retry)
    );
    assert!(!node.pool.prefix_fallback());
    assert!(node.settle(3, 20).is_some());
    // The free /32s went back to EC2; the pods keep theirs (9 on eni-0, 1 on eni-1).
    assert_eq!(ec2_shape(&node), vec![(9, 0), (1, 0), (0, 1)]);
    for (p, a) in (1..=10).zip(&pods) {
        assert_eq!(node.ds.lookup(&key(p)).map(|x| x.address), Some(*a));
    }
    // A new pod gets a prefix address, and the pool adds a /28 to keep one free.
    let eleventh = node.add_pod(11);
    let std::net::IpAddr::V4(v4) = eleventh else {
        panic!("{eleventh}")
    };
    assert!(
        node.ds
            .enis()
            .flat_map(|e| e.ipv4_cidrs())
            .any(|c| !c.is_host() && c.contains(v4)),
        "{eleventh} is not in a prefix"
    );
    assert!(node.settle(3, 20).is_some());
    assert_eq!(node.ds.stats(node.now).free_prefixes, 1);
    assert!(
        node.ec2().violations.is_empty(),
        "{:?}",
        node.ec2().violations
    );
}

#[test]
fn fallback_meets_warm_ip_target_with_addresses_and_gives_back_the_surplus() {
    let mut node = Node::new(
        AddressMode::PrefixIpv4,
        PoolConfig {
            warm_ip_target: Some(5),
            max_pods: 110,
            ..PoolConfig::default()
        },
        M5_LARGE,
    );
    node.ec2().no_free_prefix = true;
    node.tick();
    let grow = node.tick();
    assert!(
        matches!(grow[0].kind, ActionKind::AssignAddresses { count: 5, .. }),
        "WARM_IP_TARGET=5 asks 5 addresses, not a /28: {grow:?}"
    );
    assert!(node.settle(3, 10).is_some());
    assert_eq!(node.shape(), (5, 1, 5));
    for p in 1..=8 {
        node.add_pod(p);
        assert!(node.settle(2, 10).is_some());
    }
    assert_eq!(node.shape(), (13, 2, 5), "8 pods + 5 free over two ENIs");
    // The pods leave; once their addresses are cool the surplus /32s go (the subnet still has no
    // /28, so the fallback still counts /32s).
    for p in 1..=8 {
        let _ = node.ds.unassign(&key(p), node.now);
    }
    node.advance(Duration::from_secs(31));
    let mut released = 0;
    for _ in 0..8 {
        for a in node.tick() {
            if let ActionKind::UnassignAddresses { addresses, .. } = a.kind {
                released += addresses.len();
            }
        }
    }
    assert!(node.pool.prefix_fallback_growing(node.now));
    assert_eq!(released, 8);
    assert_eq!(node.shape().2, 5, "5 free, as WARM_IP_TARGET wants");
    assert!(
        node.ec2().violations.is_empty(),
        "{:?}",
        node.ec2().violations
    );
}

#[test]
fn with_every_slot_holding_a_32_one_free_32_makes_room_for_the_next_prefix_try() {
    // One ENI of 4 secondary slots: the fallback fills them all.
    let limits = InstanceLimits::simple("synthetic", 1, 5);
    let mut node = Node::new(
        AddressMode::PrefixIpv4,
        PoolConfig {
            warm_prefix_target: 1,
            max_pods: 110,
            ..PoolConfig::default()
        },
        limits,
    );
    node.ec2().no_free_prefix = true;
    assert!(node.settle(3, 10).is_some());
    assert_eq!(ec2_shape(&node), vec![(4, 0)]);
    let pod = node.add_pod(1);
    node.ec2().no_free_prefix = false;
    node.advance(Duration::from_secs(120));
    let room = node.tick();
    assert!(
        matches!(&room[..], [a] if matches!(&a.kind, ActionKind::UnassignAddresses { addresses, .. } if addresses.len() == 1)),
        "{room:?}"
    );
    let try_prefix = node.tick();
    assert!(
        matches!(
            try_prefix[0].kind,
            ActionKind::AssignPrefixes { count: 1, .. }
        ),
        "{try_prefix:?}"
    );
    assert!(!node.pool.prefix_fallback());
    assert!(node.settle(3, 20).is_some());
    assert_eq!(
        ec2_shape(&node),
        vec![(1, 1)],
        "the pod's /32 and one /28; the free /32s went"
    );
    assert_eq!(node.ds.lookup(&key(1)).map(|x| x.address), Some(pod));
    assert!(
        node.ec2().violations.is_empty(),
        "{:?}",
        node.ec2().violations
    );
}

#[test]
fn insufficient_cidr_blocks_outside_prefix_mode_pauses_growth_like_any_capacity_error() {
    let mut node = m4(PoolConfig::default());
    let first = node.tick_with(Some(Failure::NoFreePrefix));
    assert_eq!(first.len(), 1);
    assert!(!node.pool.prefix_fallback());
    assert!(node.pool.capacity_paused(node.now));
    for _ in 0..20 {
        assert!(node.tick().is_empty(), "growth is paused");
    }
}

#[test]
fn no_free_addresses_at_all_still_pauses_growth_in_prefix_mode() {
    let mut node = pd_warm_prefix_1();
    node.ec2().no_free_prefix = true;
    node.tick();
    // The subnet is full: the /32 growth fails with InsufficientFreeAddressesInSubnet.
    let a = node.tick_with(Some(Failure::InsufficientCapacity));
    assert!(
        matches!(a[0].kind, ActionKind::AssignAddresses { .. }),
        "{a:?}"
    );
    assert!(node.pool.capacity_paused(node.now));
    for _ in 0..20 {
        assert!(node.tick().is_empty(), "growth is paused");
    }
}

/// The mutating EC2 calls in `calls`, by action.
fn mutating(calls: &[&str]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for c in calls.iter().filter(|c| !c.starts_with("Describe")) {
        *m.entry((*c).to_string()).or_insert(0) += 1;
    }
    m
}

/// One pool check as the daemon runs it after an ADD or DEL: plan, and run every action.
fn check_pool(node: &mut Node) {
    let actions = node.pool.plan(&mut node.ds, node.now);
    for a in &actions {
        node.execute(a, None).unwrap();
    }
}

/// An m4.4xlarge with WARM_IP_TARGET=5, MINIMUM_IP_TARGET=10 and max pods 110 (an m5.4xlarge's),
/// IP_COOLDOWN_PERIOD `ip_cooldown`.
fn warm_ip_5_min_10(ip_cooldown: Duration) -> Node {
    Node::with_cooldown(
        AddressMode::SecondaryIpv4,
        PoolConfig {
            warm_ip_target: Some(5),
            minimum_ip_target: Some(10),
            max_pods: 110,
            ..PoolConfig::default()
        },
        M4_4XLARGE,
        ip_cooldown,
    )
}

/// `n` pods arrive one every 10 ms, as fast as a runtime starts them; an ADD that finds no free
/// address waits for the planner, whose every round of EC2 calls takes 30 ms.
fn burst(node: &mut Node, first: u32, n: u32) {
    for p in first..first + n {
        let mut waited = 0;
        while node
            .ds
            .assign(ipam_support::request(p, 0), node.now)
            .is_err()
        {
            check_pool(node);
            node.advance(Duration::from_millis(30));
            waited += 1;
            assert!(waited < 100, "pod {p} never got an address");
        }
        check_pool(node);
        node.advance(Duration::from_millis(10));
    }
}

/// From the settled start, 110 pods 10 ms apart, then settled again: the mutating EC2 calls of the
/// burst.
fn fill_with_110_pods(node: &mut Node) -> std::collections::BTreeMap<String, usize> {
    assert!(node.settle(3, 50).is_some());
    node.ec2().calls.clear();
    burst(node, 1, 110);
    assert!(node.settle(3, 50).is_some());
    mutating(&node.ec2().calls)
}

#[test]
fn a_burst_of_adds_grows_the_pool_in_doubling_steps() {
    // m5.4xlarge-like: 8 ENIs x 29 secondary addresses, max pods 110.
    let mut node = warm_ip_5_min_10(Duration::from_secs(30));
    let calls = fill_with_110_pods(&mut node);
    println!("0 -> 110 pods: {calls:?}");
    // The fewest calls for the end state (4 ENIs): 1 Assign on the primary, 3 x (Create, Attach,
    // Modify). Growing by the warm target alone took 97 Assign calls here.
    assert_eq!(calls.get("CreateNetworkInterface"), Some(&3), "{calls:?}");
    let assigns = calls.get("AssignPrivateIpAddresses").copied().unwrap_or(0);
    assert!(assigns <= 2, "{assigns} Assign calls: {calls:?}");
    // And what the burst grew is not released while it lasts.
    assert_eq!(calls.get("UnassignPrivateIpAddresses"), None, "{calls:?}");
    let (total, enis, free) = node.shape();
    assert_eq!(enis, 4);
    assert!(total >= 110 && free <= total - 110 + 5, "{total} {free}");
}

#[test]
fn free_enis_go_whole_before_any_address_is_released() {
    let mut node = warm_ip_5_min_10(Duration::from_secs(30));
    fill_with_110_pods(&mut node);
    // Past the ENIs' minimum lifetime, then every pod goes within a second.
    node.advance(Duration::from_secs(60));
    node.ec2().calls.clear();
    for p in 1..=110 {
        let _ = node.ds.unassign(&key(p), node.now);
        node.advance(Duration::from_millis(10));
    }
    // Released addresses cool for 30 s before they may go.
    node.advance(Duration::from_secs(31));
    assert_three_enis_deleted_and_one_unassign(&mut node, "110 -> 0 pods");
}

#[test]
fn a_burst_of_adds_in_prefix_mode_asks_for_prefixes_in_doubling_steps() {
    let mut node = Node::new(
        AddressMode::PrefixIpv4,
        PoolConfig {
            warm_prefix_target: 1,
            max_pods: 110,
            ..PoolConfig::default()
        },
        M4_4XLARGE,
    );
    let calls = fill_with_110_pods(&mut node);
    println!("0 -> 110 pods, prefixes: {calls:?}");
    // 7 prefixes hold 110 pods: one more prefix per call took 6 calls; 1, 2, 4 take 3.
    let assigns = calls.get("AssignPrivateIpAddresses").copied().unwrap_or(0);
    assert!(assigns <= 3, "{calls:?}");
    assert_eq!(calls.get("UnassignPrivateIpAddresses"), None, "{calls:?}");
    assert_eq!(node.shape().1, 1, "all on the primary ENI");
}

#[test]
fn a_burst_of_dels_is_released_once_it_is_over() {
    // IP_COOLDOWN_PERIOD=0: each DEL's address is free at once, and the pool is checked after each
    // DEL as the daemon does.
    let mut node = warm_ip_5_min_10(Duration::ZERO);
    fill_with_110_pods(&mut node);
    node.advance(Duration::from_secs(60));
    node.ec2().calls.clear();
    for p in 1..=110 {
        let _ = node.ds.unassign(&key(p), node.now);
        check_pool(&mut node);
        node.advance(Duration::from_millis(20));
    }
    assert_three_enis_deleted_and_one_unassign(&mut node, "110 -> 0 pods, no cooldown");
}

/// After the 110 pods of `warm_ip_5_min_10` left: three ENIs deleted whole (their addresses go
/// with them) and one Unassign on the primary, which keeps MINIMUM_IP_TARGET's 10.
fn assert_three_enis_deleted_and_one_unassign(node: &mut Node, what: &str) {
    assert!(node.settle(3, 80).is_some());
    let calls = mutating(&node.ec2().calls);
    println!("{what}: {calls:?}");
    assert_eq!(calls.get("DeleteNetworkInterface"), Some(&3), "{calls:?}");
    assert_eq!(
        calls.get("UnassignPrivateIpAddresses"),
        Some(&1),
        "{calls:?}"
    );
    assert_eq!(node.shape(), (10, 1, 10));
}

#[test]
fn the_surplus_of_a_small_burst_goes_in_one_release_once_it_is_over() {
    // m5.large: 9 secondary addresses per ENI. MINIMUM_IP_TARGET=4, WARM_IP_TARGET=2, 5 pods at once.
    let mut node = Node::with_cooldown(
        AddressMode::SecondaryIpv4,
        PoolConfig {
            warm_ip_target: Some(2),
            minimum_ip_target: Some(4),
            max_pods: 29,
            ..PoolConfig::default()
        },
        M5_LARGE,
        Duration::ZERO,
    );
    assert!(node.settle(3, 50).is_some());
    assert_eq!(node.shape().0, 4);
    node.ec2().calls.clear();
    burst(&mut node, 1, 5);
    // Within the burst's window nothing goes back.
    node.advance(Duration::from_secs(5));
    node.tick();
    assert_eq!(
        mutating(&node.ec2().calls).get("UnassignPrivateIpAddresses"),
        None
    );
    assert!(node.settle(3, 50).is_some());
    let calls = mutating(&node.ec2().calls);
    assert_eq!(node.shape(), (7, 1, 2), "5 pods + 2 warm: {calls:?}");
    assert_eq!(
        calls.get("UnassignPrivateIpAddresses"),
        Some(&1),
        "{calls:?}"
    );
}
