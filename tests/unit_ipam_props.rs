//! Property tests: random sequences of pod ADD/DEL, time passing and planner ticks whose EC2 calls
//! succeed or fail (and a subnet that at times has no free /28, where prefix mode falls back to
//! /32s), on small random instance limits and warm-pool settings, checked against a
//! reference model kept by the test (which address each pod holds, when each address was released).
//!
//! Properties:
//! - `safety`: no address is ever held by two live assignments; ADD of a known key returns the same
//!   address; "no free address" is only reported when the model agrees; nothing assigned or cooling
//!   is ever released (unassign or ENI free); the primary ENI and ENIs younger than 60 s are never
//!   freed; EC2 never sees a request beyond the instance limits (ENIs, addresses per ENI); the
//!   planner never asks for blocks past max pods (rounded up to a /28 for prefixes); the
//!   datastore never holds a block EC2 does not have on that ENI.
//! - `convergence`: after the random phase, once EC2 succeeds, the pool is stable (no action for
//!   70 s after the last change, reconcile included) within 150 ticks, and the stable state meets
//!   the targets as restated here from upstream's documentation (not by calling the planner), and
//!   holds nothing beyond max pods that could be released (reconcile may have brought some back).
//! - `checkpoint_round_trip`: after random traffic, writing the checkpoint, reading it back and
//!   restoring it into a fresh datastore with the same ENIs gives back every assignment unchanged.

// Test crate: helpers outside #[test] fns may unwrap too (a panic is a test failure).
#![allow(clippy::unwrap_used)]

mod ipam_support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipam_support::{key, request, Node};
use proptest::prelude::*;
use vpc_cni::ipam::checkpoint;
use vpc_cni::ipam::{
    Action, ActionKind, AddressMode, Datastore, DatastoreConfig, DatastoreError, Failure,
    InstanceLimits, Instant, PoolConfig, ReleaseOutcome,
};
use vpc_cni::net::Ipv4Cidr;

const COOLDOWN: Duration = Duration::from_secs(30);
const SAFETY_CASES: u32 = 1000;
const CONVERGENCE_CASES: u32 = 512;
const ROUND_TRIP_CASES: u32 = 256;

/// The case count: `default`, or PROPTEST_CASES when set (a fixed `cases` in the config would
/// otherwise override proptest's own reading of it).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug)]
enum Ec2 {
    Ok,
    Capacity,
    Other,
}

#[derive(Clone, Debug)]
enum Op {
    Add(u32),
    Del(u32),
    Advance(u16),
    Tick(Ec2),
    Reconcile,
    /// The subnet has no free /28 (prefix requests fail with InsufficientCidrBlocks) or has again.
    NoFreePrefix(bool),
}

#[derive(Clone, Debug)]
struct Scenario {
    mode: AddressMode,
    cfg: PoolConfig,
    limits: InstanceLimits,
    leftovers: u32,
    ops: Vec<Op>,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..16).prop_map(Op::Add),
        3 => (0u32..16).prop_map(Op::Del),
        2 => (0u16..45).prop_map(Op::Advance),
        5 => prop_oneof![6 => Just(Ec2::Ok), 1 => Just(Ec2::Capacity), 1 => Just(Ec2::Other)].prop_map(Op::Tick),
        1 => Just(Op::Reconcile),
        1 => any::<bool>().prop_map(Op::NoFreePrefix),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        (0u8..8, 0u32..3, 1u32..12, 1u32..40, 0u32..3),
        (2u32..5, 3u32..9, 4u32..80, any::<bool>(), 0u32..3),
        prop::collection::vec(op(), 1..100),
    )
        .prop_map(
            |(
                (kind, warm_eni, warm_ip, min_ip, warm_prefix),
                (max_enis, per_eni, max_pods, pod_eni, left),
                ops,
            )| {
                let base = PoolConfig {
                    max_pods,
                    pod_eni,
                    ..PoolConfig::default()
                };
                let (mode, cfg) = match kind {
                    0 => (
                        AddressMode::SecondaryIpv4,
                        PoolConfig {
                            warm_eni_target: warm_eni,
                            ..base
                        },
                    ),
                    1 => (
                        AddressMode::SecondaryIpv4,
                        PoolConfig {
                            warm_ip_target: Some(warm_ip),
                            ..base
                        },
                    ),
                    2 => (
                        AddressMode::SecondaryIpv4,
                        PoolConfig {
                            warm_ip_target: Some(warm_ip),
                            minimum_ip_target: Some(min_ip),
                            ..base
                        },
                    ),
                    3 => (
                        AddressMode::SecondaryIpv4,
                        PoolConfig {
                            minimum_ip_target: Some(min_ip),
                            ..base
                        },
                    ),
                    4 => (
                        AddressMode::PrefixIpv4,
                        PoolConfig {
                            warm_prefix_target: warm_prefix,
                            ..base
                        },
                    ),
                    5 => (
                        AddressMode::PrefixIpv4,
                        PoolConfig {
                            warm_ip_target: Some(warm_ip),
                            ..base
                        },
                    ),
                    6 => (
                        AddressMode::PrefixIpv4,
                        PoolConfig {
                            warm_ip_target: Some(warm_ip),
                            minimum_ip_target: Some(min_ip),
                            ..base
                        },
                    ),
                    _ => (
                        AddressMode::PrefixIpv4,
                        PoolConfig {
                            minimum_ip_target: Some(min_ip),
                            ..base
                        },
                    ),
                };
                let limits = InstanceLimits::simple("synthetic", max_enis as u8, per_eni as u16);
                Scenario {
                    mode,
                    cfg,
                    limits,
                    leftovers: left.min(limits.secondary_ipv4_per_eni() - 1),
                    ops,
                }
            },
        )
}

/// What the test believes: which address each pod holds, when each address was last released.
#[derive(Debug, Default)]
struct Model {
    pods: BTreeMap<u32, IpAddr>,
    released: BTreeMap<IpAddr, Instant>,
}

impl Model {
    fn cooling(&self, a: IpAddr, now: Instant) -> bool {
        self.released
            .get(&a)
            .is_some_and(|t| now.saturating_since(*t) <= COOLDOWN)
    }
    fn held(&self, a: IpAddr) -> bool {
        self.pods.values().any(|p| *p == a)
    }
}

fn start(s: &Scenario) -> Node {
    let mut node = Node::new(s.mode, s.cfg.clone(), s.limits);
    // Blocks of the other mode left by an earlier run of the node.
    for _ in 0..s.leftovers {
        let c = if s.mode == AddressMode::PrefixIpv4 {
            Ipv4Cidr::host(node.ec2().new_address())
        } else {
            node.ec2().new_prefix()
        };
        node.ec2().enis.get_mut("eni-0").unwrap().cidrs.push(c);
        if c.is_host() {
            node.ds.add_ipv4_addresses("eni-0", &[c.addr()]).unwrap();
        } else {
            node.ds.add_ipv4_prefixes("eni-0", &[c]).unwrap();
        }
    }
    node
}

fn block_is_releasable(c: &Ipv4Cidr, m: &Model, now: Instant) -> Result<(), String> {
    for i in 0..c.size() {
        let a = IpAddr::V4(c.nth(i).unwrap());
        if m.held(a) {
            return Err(format!("released {c} holding pod address {a}"));
        }
        if m.cooling(a, now) {
            return Err(format!("released {c} with {a} still cooling"));
        }
    }
    Ok(())
}

/// Checks an action before the fake EC2 runs it.
fn check_action(node: &Node, a: &Action, m: &Model) -> Result<(), String> {
    let now = node.now;
    match &a.kind {
        ActionKind::UnassignAddresses { addresses, .. } => addresses
            .iter()
            .try_for_each(|x| block_is_releasable(&Ipv4Cidr::host(*x), m, now)),
        ActionKind::UnassignPrefixes { prefixes, .. } => prefixes
            .iter()
            .try_for_each(|p| block_is_releasable(p, m, now)),
        ActionKind::FreeEni { eni } => {
            let e = node
                .ec2()
                .enis
                .get(eni)
                .cloned()
                .ok_or(format!("free of unknown {eni}"))?;
            if e.device_number == 0 {
                return Err("freed the primary ENI".into());
            }
            if now.saturating_since(e.attached_at) < Duration::from_secs(60) {
                return Err(format!("freed {eni} younger than a minute"));
            }
            e.cidrs
                .iter()
                .try_for_each(|c| block_is_releasable(c, m, now))
        }
        // The planner's own view must respect the limits (EC2 may still refuse after a failed
        // unassign left a block on the ENI that the datastore no longer has).
        ActionKind::AssignAddresses { eni, count } | ActionKind::AssignPrefixes { eni, count } => {
            let have = node
                .ds
                .eni(eni)
                .ok_or(format!("assign to unknown {eni}"))?
                .ipv4_cidr_count();
            let slots = node.limits.secondary_ipv4_per_eni() as usize;
            if have + *count as usize > slots || *count == 0 {
                return Err(format!(
                    "planned {count} more on {eni} holding {have} of {slots}"
                ));
            }
            growth_within_max_pods(
                node,
                *count,
                matches!(a.kind, ActionKind::AssignPrefixes { .. }),
            )
        }
        ActionKind::CreateEni {
            addresses,
            prefixes,
        } => {
            let trunk_slot = u32::from(node.pool.config().pod_eni);
            if node.ds.enis().count() as u32 + trunk_slot >= node.pool.max_enis() {
                return Err("planned an ENI beyond the ENI limit".into());
            }
            if addresses + prefixes > node.limits.secondary_ipv4_per_eni() {
                return Err(format!("planned an ENI with {addresses}+{prefixes} blocks"));
            }
            growth_within_max_pods(node, addresses + prefixes, *prefixes > 0)
        }
    }
}

/// The planner never asks for blocks that would take the pool past max pods (rounded up to a
/// whole /28 in prefix mode). Reconcile may still learn of more from EC2 (a failed unassign or ENI
/// free); the planner must then release that surplus, which `convergence` checks.
fn growth_within_max_pods(node: &Node, blocks: u32, prefixes: bool) -> Result<(), String> {
    let unit = if prefixes { 16 } else { 1 };
    let total = node.ds.stats(node.now).total;
    let max_pods = node.pool.config().max_pods;
    if total + blocks * unit > max_pods.div_ceil(unit) * unit {
        return Err(format!(
            "planned {blocks} blocks of {unit} on a pool of {total}, past max pods {max_pods}"
        ));
    }
    Ok(())
}

fn tick(node: &mut Node, m: &Model, ec2: Ec2) -> Result<usize, String> {
    let fail = match ec2 {
        Ec2::Ok => None,
        Ec2::Capacity => Some(Failure::InsufficientCapacity),
        Ec2::Other => Some(Failure::Other),
    };
    let actions = node.pool.plan(&mut node.ds, node.now);
    for a in &actions {
        check_action(node, a, m)?;
        node.execute(a, fail)?;
    }
    node.advance(Duration::from_secs(5));
    Ok(actions.len())
}

/// Addresses the model says are free for a new pod right now.
fn model_free(node: &Node, m: &Model) -> usize {
    let mut n = 0;
    for e in node.ds.enis().filter(|e| e.serves_pods()) {
        for c in e.ipv4_cidrs().filter(|c| node.ds.in_mode(c)) {
            for i in 0..c.size() {
                let a = IpAddr::V4(c.nth(i).unwrap());
                if !m.held(a) && !m.cooling(a, node.now) {
                    n += 1;
                }
            }
        }
    }
    n
}

fn apply(node: &mut Node, m: &mut Model, op: &Op) -> Result<(), String> {
    match *op {
        Op::Add(k) => {
            let res = node.ds.assign(request(k, node.unix_nanos), node.now);
            match (m.pods.get(&k).copied(), res) {
                (Some(had), Ok(r)) => {
                    if !r.existing || r.pod.address != had {
                        return Err(format!("ADD of known pod {k} gave {r:?}, model has {had}"));
                    }
                }
                (Some(had), Err(e)) => {
                    return Err(format!("ADD of known pod {k} ({had}) failed: {e}"))
                }
                (None, Ok(r)) => {
                    let a = r.pod.address;
                    if r.existing || m.held(a) {
                        return Err(format!("pod {k} got {a} which the model says is held"));
                    }
                    if m.cooling(a, node.now) {
                        return Err(format!("pod {k} got {a} still cooling"));
                    }
                    m.pods.insert(k, a);
                }
                (None, Err(DatastoreError::NoFreeAddress { .. })) => {
                    let free = model_free(node, m);
                    if free != 0 {
                        return Err(format!(
                            "no free address reported for pod {k}, model sees {free}"
                        ));
                    }
                }
                (None, Err(e)) => return Err(format!("ADD of pod {k}: {e}")),
            }
        }
        Op::Del(k) => match (m.pods.remove(&k), node.ds.unassign(&key(k), node.now)) {
            (Some(had), ReleaseOutcome::Released(r)) if r.pod.address == had => {
                m.released.insert(had, node.now);
            }
            (None, ReleaseOutcome::Unknown) => {}
            (had, got) => return Err(format!("DEL of pod {k}: model {had:?}, datastore {got:?}")),
        },
        Op::Advance(s) => node.advance(Duration::from_secs(u64::from(s))),
        Op::Tick(ec2) => {
            tick(node, m, ec2)?;
        }
        Op::Reconcile => {
            node.reconcile();
        }
        Op::NoFreePrefix(on) => node.ec2().no_free_prefix = on,
    }
    invariants(node, m)
}

fn invariants(node: &Node, m: &Model) -> Result<(), String> {
    let live: BTreeMap<String, IpAddr> = node
        .ds
        .allocations()
        .map(|(a, al)| (al.key.container_id.clone(), *a))
        .collect();
    let want: BTreeMap<String, IpAddr> = m
        .pods
        .iter()
        .map(|(k, a)| (key(*k).container_id, *a))
        .collect();
    if live != want {
        return Err(format!(
            "datastore assignments {live:?} differ from model {want:?}"
        ));
    }
    if !node.ec2().violations.is_empty() {
        return Err(format!("EC2 limit violations: {:?}", node.ec2().violations));
    }
    let slots = node.limits.secondary_ipv4_per_eni() as usize;
    if node.ds.enis().count() as u32 > node.pool.max_enis() {
        return Err("more ENIs than allowed".into());
    }
    for e in node.ds.enis() {
        if e.ipv4_cidr_count() > slots {
            return Err(format!(
                "{} holds {} blocks of {slots}",
                e.id(),
                e.ipv4_cidr_count()
            ));
        }
        let in_ec2 = node
            .ec2()
            .enis
            .get(e.id())
            .cloned()
            .ok_or(format!("{} not in EC2", e.id()))?;
        if let Some(c) = e.ipv4_cidrs().find(|c| !in_ec2.cidrs.contains(c)) {
            return Err(format!("datastore has {c} on {} but EC2 does not", e.id()));
        }
    }
    Ok(())
}

/// Upstream's "too low" restated from its documentation, for given counters.
fn ref_too_low(s: &Scenario, t: i64, a: i64) -> bool {
    let c = &s.cfg;
    if t >= i64::from(c.max_pods) {
        return false;
    }
    let (w, min) = (
        i64::from(c.warm_ip_target.unwrap_or(0)),
        i64::from(c.minimum_ip_target.unwrap_or(0)),
    );
    let avail = t - a;
    let pd = s.mode == AddressMode::PrefixIpv4;
    if w != 0 || min != 0 {
        return (w - avail).max(min - t) > 0;
    }
    let (unit, warm) = if pd {
        (16, i64::from(c.warm_prefix_target))
    } else {
        (
            i64::from(s.limits.secondary_ipv4_per_eni()),
            i64::from(c.warm_eni_target),
        )
    };
    avail < unit * warm || (warm == 0 && avail == 0)
}

struct Counts {
    total: i64,
    assigned: i64,
    prefixes: i64,
    free_prefixes: i64,
}

fn counts(node: &Node, m: &Model, skip_eni: Option<&str>, skip_block: Option<&Ipv4Cidr>) -> Counts {
    // Pods on blocks that no longer serve (the prefix fallback's /32s once it ended) do not count,
    // as their blocks do not.
    let serving = |a: &IpAddr| {
        node.ds.enis().filter(|e| e.serves_pods()).any(|e| {
            e.ipv4_cidrs()
                .any(|c| node.ds.in_mode(c) && matches!(a, IpAddr::V4(v) if c.contains(*v)))
        })
    };
    let mut k = Counts {
        total: 0,
        assigned: m.pods.values().filter(|a| serving(a)).count() as i64,
        prefixes: 0,
        free_prefixes: 0,
    };
    for e in node
        .ds
        .enis()
        .filter(|e| e.serves_pods() && Some(e.id()) != skip_eni)
    {
        for c in e.ipv4_cidrs().filter(|c| Some(*c) != skip_block) {
            let held = (0..c.size()).any(|i| m.held(IpAddr::V4(c.nth(i).unwrap())));
            if node.ds.in_mode(c) {
                k.total += c.size() as i64;
            }
            if !c.is_host() {
                k.prefixes += 1;
                if !held {
                    k.free_prefixes += 1;
                }
            }
        }
    }
    k
}

/// The stable state meets the targets (restated from upstream's documentation).
fn converged_state_ok(s: &Scenario, node: &Node, m: &Model) -> Result<(), String> {
    let pd = s.mode == AddressMode::PrefixIpv4;
    let c = &s.cfg;
    let (w, min) = (
        i64::from(c.warm_ip_target.unwrap_or(0)),
        i64::from(c.minimum_ip_target.unwrap_or(0)),
    );
    let targets = w != 0 || min != 0;
    let slots = s.limits.secondary_ipv4_per_eni() as usize;
    let now = counts(node, m, None, None);
    let avail = now.total - now.assigned;
    let trunk_slot = u32::from(c.pod_eni);
    let no_room = node
        .ds
        .enis()
        .filter(|e| e.serves_pods())
        .all(|e| e.ipv4_cidr_count() >= slots)
        && node.ds.enis().count() as u32 + trunk_slot >= node.pool.max_enis();
    let state = format!(
        "total {} assigned {} prefixes {} free prefixes {} ENIs {}",
        now.total,
        now.assigned,
        now.prefixes,
        now.free_prefixes,
        node.ds.enis().count()
    );
    // 1. Not short of the targets, unless the instance has no room left.
    if ref_too_low(s, now.total, now.assigned) && !no_room {
        return Err(format!("stable but too low: {state}"));
    }
    // 2. No other-mode leftovers remain (none is cooling any more; pods keep the prefix
    //    fallback's /32s until they go).
    if let Some(e) = node.ds.enis().find(|e| {
        e.ipv4_cidrs().any(|b| {
            !node.ds.in_mode(b) && !(0..b.size()).any(|i| m.held(IpAddr::V4(b.nth(i).unwrap())))
        })
    }) {
        return Err(format!("leftover of the other mode on {}: {state}", e.id()));
    }
    // 3. Not over: releasing any one free block would not leave the pool short.
    let over = if targets {
        if pd {
            let need = (now.assigned + w).div_euclid(16) + i64::from((now.assigned + w) % 16 != 0);
            let need_min = min.div_euclid(16) + i64::from(min % 16 != 0);
            now.free_prefixes
                .min(now.prefixes - need)
                .min(now.prefixes - need_min)
                > 0
        } else {
            (avail - w).min(now.total - min) > 0
        }
    } else if pd {
        now.free_prefixes > i64::from(c.warm_prefix_target)
    } else {
        false
    };
    if over {
        for e in node.ds.enis().filter(|e| e.serves_pods()) {
            for b in e.ipv4_cidrs() {
                let held = (0..b.size()).any(|i| m.held(IpAddr::V4(b.nth(i).unwrap())));
                if !held {
                    let after = counts(node, m, None, Some(b));
                    if !ref_too_low(s, after.total, after.assigned) {
                        return Err(format!("stable but over target, {b} could go: {state}"));
                    }
                }
            }
        }
    }
    // 4. Nothing beyond max pods stays: no free block could go with the pool still holding at
    //    least max pods addresses (reconcile may have brought back blocks the planner released).
    for e in node.ds.enis().filter(|e| e.serves_pods()) {
        for b in e.ipv4_cidrs().filter(|b| node.ds.in_mode(b)) {
            let held = (0..b.size()).any(|i| m.held(IpAddr::V4(b.nth(i).unwrap())));
            if !held && now.total - b.size() as i64 >= i64::from(c.max_pods) {
                return Err(format!(
                    "stable beyond max pods {}, {b} could go: {state}",
                    c.max_pods
                ));
            }
        }
    }
    // 5. Every non-primary ENI without pods is needed.
    for e in node.ds.enis().filter(|e| !e.spec().is_primary) {
        let has_pods = e
            .ipv4_cidrs()
            .any(|b| (0..b.size()).any(|i| m.held(IpAddr::V4(b.nth(i).unwrap()))));
        if has_pods {
            continue;
        }
        let others = counts(node, m, Some(e.id()), None);
        let round = |x: i64| if pd { (x + 15) / 16 * 16 } else { x };
        let needed = ref_too_low(s, others.total, others.assigned)
            || if targets {
                (w != 0 && others.total - others.assigned < round(w))
                    || (min != 0 && others.total < round(min))
            } else if pd {
                c.warm_prefix_target != 0 && others.free_prefixes < i64::from(c.warm_prefix_target)
            } else {
                avail < (i64::from(c.warm_eni_target) + 1) * slots as i64
            };
        if !needed {
            return Err(format!(
                "stable with an unneeded empty ENI {}: {state}",
                e.id()
            ));
        }
    }
    Ok(())
}

fn run_random_phase(s: &Scenario) -> Result<(Node, Model), String> {
    let mut node = start(s);
    let mut m = Model::default();
    invariants(&node, &m)?;
    for op in &s.ops {
        apply(&mut node, &mut m, op).map_err(|e| format!("{e} (after {op:?})"))?;
    }
    Ok((node, m))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(SAFETY_CASES), failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn safety(s in scenario()) {
        if let Err(e) = run_random_phase(&s) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// The random phase, then 200 s and up to 150 ticks with EC2 succeeding: the pool must become
/// stable and the stable state must meet the targets.
fn run_convergence(s: &Scenario) -> Result<(), String> {
    let (mut node, m) = run_random_phase(s)?;
    // Past every cooldown and pause; from now on EC2 succeeds (and /28s are free).
    node.ec2().no_free_prefix = false;
    node.advance(Duration::from_secs(200));
    let mut calm = 0;
    let mut ticks = 0;
    while calm < 14 && ticks < 150 {
        ticks += 1;
        // ipamd reconciles with IMDS/EC2 about every 60 s. What it brings back (an ENI whose free
        // failed comes back young, blocked from freeing for 60 s) restarts the quiet period, so
        // the state is judged only once the planner has had its chance to act on it.
        if ticks % 12 == 0 && node.reconcile() {
            calm = 0;
        }
        let n = tick(&mut node, &m, Ec2::Ok)?;
        calm = if n == 0 { calm + 1 } else { 0 };
        invariants(&node, &m)?;
    }
    if calm < 14 {
        return Err(format!("not stable after {ticks} ticks"));
    }
    converged_state_ok(s, &node, &m).map_err(|e| format!("{e} ({:?})", s.cfg))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(CONVERGENCE_CASES), failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn convergence(s in scenario()) {
        if let Err(e) = run_convergence(&s) {
            prop_assert!(false, "{}", e);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(ROUND_TRIP_CASES), failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn checkpoint_round_trip(s in scenario()) {
        let (node, m) = run_random_phase(&s).map_err(TestCaseError::fail)?;
        let cp = node.ds.to_checkpoint();
        prop_assert_eq!(cp.allocations.len(), m.pods.len());
        let read = checkpoint::decode(&checkpoint::encode(&cp)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut fresh = Datastore::new(DatastoreConfig { mode: s.mode, ..DatastoreConfig::default() });
        for e in node.ds.enis() {
            fresh.add_eni(e.spec().clone(), node.now).unwrap();
            let blocks: Vec<Ipv4Cidr> = e.ipv4_cidrs().copied().collect();
            let hosts: Vec<_> = blocks.iter().filter(|b| b.is_host()).map(|b| b.addr()).collect();
            let prefixes: Vec<_> = blocks.iter().filter(|b| !b.is_host()).copied().collect();
            fresh.add_ipv4_addresses(e.id(), &hosts).unwrap();
            fresh.add_ipv4_prefixes(e.id(), &prefixes).unwrap();
        }
        let report = fresh.restore(&read).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(report.restored, m.pods.len());
        prop_assert!(report.stale.is_empty());
        prop_assert_eq!(fresh.to_checkpoint(), cp);
        for (k, a) in &m.pods {
            prop_assert_eq!(fresh.lookup(&key(*k)).map(|p| p.address), Some(*a));
        }
    }
}

// Regression cases: minimal inputs the property tests once found, replayed deterministically.

/// Found by `safety`: prefix mode, WARM_IP_TARGET=11, max pods 17, 2 ENIs × 4 slots. A reconcile
/// re-added a prefix the planner had released and that EC2 still held, pushing the pool to 48.
#[test]
fn regression_prefix_reconcile_past_max_pods() {
    use Ec2::{Ok as Good, Other};
    use Op::{Add, Advance, Del, Reconcile, Tick};
    let s = Scenario {
        mode: AddressMode::PrefixIpv4,
        cfg: PoolConfig {
            warm_eni_target: 1,
            warm_ip_target: Some(11),
            minimum_ip_target: Some(0),
            warm_prefix_target: 0,
            max_eni: None,
            max_pods: 17,
            pod_eni: false,
            custom_networking: false,
        },
        limits: InstanceLimits::simple("synthetic", 2, 4),
        leftovers: 0,
        ops: vec![
            Tick(Good),
            Add(1),
            Add(11),
            Add(2),
            Add(3),
            Add(0),
            Add(4),
            Tick(Good),
            Del(0),
            Tick(Other),
            Advance(1),
            Advance(5),
            Add(5),
            Tick(Good),
            Advance(36),
            Advance(8),
            Reconcile,
        ],
    };
    run_random_phase(&s).unwrap();
    run_convergence(&s).unwrap();
}

/// Found by `convergence`: secondary-address mode, all warm targets 0, max pods 8, 3 ENIs × 4
/// slots. The pool settled with an empty secondary ENI that nothing needed.
#[test]
fn regression_unneeded_empty_eni_with_zero_targets() {
    use Ec2::{Capacity, Ok as Good};
    use Op::{Add, Advance, Del, Tick};
    let s = Scenario {
        mode: AddressMode::SecondaryIpv4,
        cfg: PoolConfig {
            warm_eni_target: 0,
            warm_ip_target: Some(0),
            minimum_ip_target: Some(0),
            warm_prefix_target: 0,
            max_eni: None,
            max_pods: 8,
            pod_eni: false,
            custom_networking: false,
        },
        limits: InstanceLimits::simple("synthetic", 3, 4),
        leftovers: 0,
        ops: vec![
            Tick(Good),
            Add(11),
            Add(0),
            Add(1),
            Tick(Good),
            Advance(15),
            Advance(37),
            Del(11),
            Advance(3),
            Tick(Capacity),
        ],
    };
    run_random_phase(&s).unwrap();
    run_convergence(&s).unwrap();
}

/// Found by `convergence`: prefix mode, WARM_IP_TARGET=2, max pods 4, a leftover /32 and no free
/// /28 at first, so the fallback grew with /32s. The pool settled with five /32s, one free,
/// although four reach max pods.
#[test]
fn regression_prefix_fallback_beyond_max_pods() {
    use Ec2::{Ok as Good, Other};
    use Op::{Add, NoFreePrefix, Tick};
    let s = Scenario {
        mode: AddressMode::PrefixIpv4,
        cfg: PoolConfig {
            warm_eni_target: 1,
            warm_ip_target: Some(2),
            minimum_ip_target: None,
            warm_prefix_target: 0,
            max_eni: None,
            max_pods: 4,
            pod_eni: false,
            custom_networking: false,
        },
        limits: InstanceLimits::simple("synthetic", 2, 7),
        leftovers: 1,
        ops: vec![
            Tick(Other),
            NoFreePrefix(true),
            Tick(Good),
            Tick(Good),
            Add(0),
            Add(0),
            Tick(Good),
            Add(1),
            Add(2),
        ],
    };
    run_random_phase(&s).unwrap();
    run_convergence(&s).unwrap();
}
