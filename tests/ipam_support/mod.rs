//! Test harness for the IPAM planner: a small in-memory EC2 that executes planner actions and
//! enforces the instance limits, and a `Node` that runs the plan → execute → record loop on a
//! simulated clock.

// Test-only harness: a panic here is a test failure, so unwrap is fine.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use vpc_cni::ipam::{
    Action, ActionKind, AddressMode, AssignRequest, Completed, Datastore, DatastoreConfig, EniSpec,
    Failure, InstanceLimits, Instant, IpamKey, Outcome, PodMetadata, Pool, PoolConfig,
};
use vpc_cni::net::Ipv4Cidr;

/// What the fake EC2 knows of one ENI.
#[derive(Clone, Debug)]
pub struct FakeEni {
    pub device_number: u32,
    pub attached_at: Instant,
    pub cidrs: Vec<Ipv4Cidr>,
}

/// An in-memory EC2: hands out addresses from 10.0.0.0/17 and prefixes from 10.0.128.0/17, never
/// reusing any, and records every limit violation instead of silently accepting it.
#[derive(Clone, Debug)]
pub struct FakeEc2 {
    pub limits: InstanceLimits,
    pub enis: BTreeMap<String, FakeEni>,
    next_addr: u32,
    next_prefix: u32,
    next_eni: u32,
    pub violations: Vec<String>,
    pub calls: usize,
    /// Assign requests EC2 refused with PrivateIpAddressLimitExceeded.
    pub limit_exceeded: usize,
    /// Attaches EC2 refused with AttachmentLimitExceeded.
    pub attach_refused: usize,
}

impl FakeEc2 {
    pub fn new(limits: InstanceLimits, now: Instant) -> Self {
        let mut enis = BTreeMap::new();
        enis.insert(
            "eni-0".to_string(),
            FakeEni {
                device_number: 0,
                attached_at: now,
                cidrs: vec![],
            },
        );
        FakeEc2 {
            limits,
            enis,
            next_addr: u32::from(Ipv4Addr::new(10, 0, 1, 0)),
            next_prefix: u32::from(Ipv4Addr::new(10, 0, 128, 0)),
            next_eni: 1,
            violations: vec![],
            calls: 0,
            limit_exceeded: 0,
            attach_refused: 0,
        }
    }

    pub fn new_address(&mut self) -> Ipv4Addr {
        let a = Ipv4Addr::from(self.next_addr);
        self.next_addr += 1;
        a
    }

    pub fn new_prefix(&mut self) -> Ipv4Cidr {
        let p = Ipv4Cidr::new(Ipv4Addr::from(self.next_prefix), 28).unwrap();
        self.next_prefix += 16;
        p
    }

    fn free_device(&self) -> u32 {
        (0..)
            .find(|d| !self.enis.values().any(|e| e.device_number == *d))
            .unwrap()
    }

    /// Executes one action; `fail` makes it fail the given way without changing EC2.
    pub fn execute(&mut self, action: &Action, now: Instant, fail: Option<Failure>) -> Outcome {
        self.calls += 1;
        let slots = self.limits.secondary_ipv4_per_eni() as usize;
        if let Some(f) = fail {
            return Outcome {
                action: action.id,
                result: Err(f),
            };
        }
        let result = match &action.kind {
            ActionKind::CreateEni {
                addresses,
                prefixes,
            } => {
                if self.enis.len() as u32 >= u32::from(self.limits.enis) {
                    // AttachmentLimitExceeded (the driver deletes the new ENI). Happens after a free
                    // that failed: gone from the datastore, still attached, until reconcile.
                    self.attach_refused += 1;
                    return Outcome {
                        action: action.id,
                        result: Err(Failure::Other),
                    };
                }
                if (*addresses as usize + *prefixes as usize) > slots
                    || (*addresses == 0) == (*prefixes == 0)
                {
                    self.violations.push(format!(
                        "CreateEni asks {addresses} addresses, {prefixes} prefixes"
                    ));
                }
                let id = format!("eni-{}", self.next_eni);
                self.next_eni += 1;
                let device_number = self.free_device();
                let addrs: Vec<Ipv4Addr> = (0..*addresses).map(|_| self.new_address()).collect();
                let pfx: Vec<Ipv4Cidr> = (0..*prefixes).map(|_| self.new_prefix()).collect();
                let mut cidrs: Vec<Ipv4Cidr> = addrs.iter().map(|a| Ipv4Cidr::host(*a)).collect();
                cidrs.extend(pfx.iter().copied());
                self.enis.insert(
                    id.clone(),
                    FakeEni {
                        device_number,
                        attached_at: now,
                        cidrs,
                    },
                );
                Ok(Completed::EniAttached {
                    eni: EniSpec {
                        id,
                        device_number,
                        subnet_id: "subnet-1".into(),
                        ..EniSpec::default()
                    },
                    addresses: addrs,
                    prefixes: pfx,
                })
            }
            ActionKind::AssignAddresses { eni, count }
            | ActionKind::AssignPrefixes { eni, count } => {
                let prefix = matches!(action.kind, ActionKind::AssignPrefixes { .. });
                let have = self.enis.get(eni).map(|e| e.cidrs.len()).unwrap_or(0);
                if !self.enis.contains_key(eni) {
                    self.violations.push(format!("assign to unknown {eni}"));
                    return Outcome {
                        action: action.id,
                        result: Err(Failure::Other),
                    };
                }
                if *count == 0 {
                    self.violations.push(format!("assign 0 to {eni}"));
                }
                if have + *count as usize > slots {
                    // EC2 answers PrivateIpAddressLimitExceeded; the driver then describes the ENI and
                    // reports what EC2 has (upstream's datastore-drift path). Happens after an
                    // unassign that failed: gone from the datastore, still on the ENI.
                    self.limit_exceeded += 1;
                    let cidrs = &self.enis[eni].cidrs;
                    return Outcome {
                        action: action.id,
                        result: Ok(Completed::Assigned {
                            addresses: cidrs
                                .iter()
                                .filter(|c| c.is_host())
                                .map(|c| c.addr())
                                .collect(),
                            prefixes: cidrs.iter().filter(|c| !c.is_host()).copied().collect(),
                        }),
                    };
                }
                let (mut addrs, mut pfx) = (vec![], vec![]);
                for _ in 0..*count {
                    if prefix {
                        pfx.push(self.new_prefix());
                    } else {
                        addrs.push(self.new_address());
                    }
                }
                let e = self.enis.get_mut(eni).unwrap();
                e.cidrs.extend(addrs.iter().map(|a| Ipv4Cidr::host(*a)));
                e.cidrs.extend(pfx.iter().copied());
                Ok(Completed::Assigned {
                    addresses: addrs,
                    prefixes: pfx,
                })
            }
            ActionKind::UnassignAddresses { eni, addresses } => {
                let e = self
                    .enis
                    .get_mut(eni)
                    .expect("unassign from an ENI EC2 knows");
                for a in addresses {
                    let before = e.cidrs.len();
                    e.cidrs.retain(|c| *c != Ipv4Cidr::host(*a));
                    assert_eq!(before, e.cidrs.len() + 1, "unassign of {a} not on {eni}");
                }
                Ok(Completed::Released)
            }
            ActionKind::UnassignPrefixes { eni, prefixes } => {
                let e = self
                    .enis
                    .get_mut(eni)
                    .expect("unassign from an ENI EC2 knows");
                for p in prefixes {
                    let before = e.cidrs.len();
                    e.cidrs.retain(|c| c != p);
                    assert_eq!(before, e.cidrs.len() + 1, "unassign of {p} not on {eni}");
                }
                Ok(Completed::Released)
            }
            ActionKind::FreeEni { eni } => {
                let e = self.enis.remove(eni).expect("free an ENI EC2 knows");
                if e.device_number == 0 {
                    self.violations.push(format!("freed the primary ENI {eni}"));
                }
                Ok(Completed::Released)
            }
        };
        Outcome {
            action: action.id,
            result,
        }
    }
}

/// A simulated node: datastore + planner + fake EC2 + clock.
#[derive(Debug)]
pub struct Node {
    pub ds: Datastore,
    pub pool: Pool,
    pub ec2: FakeEc2,
    pub now: Instant,
    pub limits: InstanceLimits,
    pub ticks: usize,
    pub unix_nanos: i64,
}

/// The key of pod `i`.
pub fn key(i: u32) -> IpamKey {
    IpamKey::new("aws-cni", &format!("container-{i}"), "eth0")
}

pub fn request(i: u32, unix_nanos: i64) -> AssignRequest {
    AssignRequest {
        key: key(i),
        metadata: PodMetadata {
            namespace: "default".into(),
            name: format!("pod-{i}"),
            interfaces_count: 1,
        },
        unix_nanos,
    }
}

impl Node {
    /// A node with only its primary ENI (device 0, no secondary addresses), as at first boot.
    pub fn new(mode: AddressMode, cfg: PoolConfig, limits: InstanceLimits) -> Self {
        let now = Instant::from_secs(1000);
        let mut ds = Datastore::new(DatastoreConfig {
            mode,
            ip_cooldown: Duration::from_secs(30),
        });
        ds.add_eni(
            EniSpec {
                id: "eni-0".into(),
                device_number: 0,
                is_primary: true,
                subnet_id: "subnet-1".into(),
                primary_ipv4: Some(Ipv4Addr::new(10, 0, 0, 10)),
                ..EniSpec::default()
            },
            now,
        )
        .unwrap();
        Node {
            ds,
            pool: Pool::new(cfg, limits),
            ec2: FakeEc2::new(limits, now),
            now,
            limits,
            ticks: 0,
            unix_nanos: 1_700_000_000_000_000_000,
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.unix_nanos += d.as_nanos() as i64;
    }

    /// One planner tick: plan, execute every action (failing them with `fail`), record outcomes,
    /// then 5 s pass (upstream checks the pool every ~5 s). Returns the actions.
    pub fn tick_with(&mut self, fail: Option<Failure>) -> Vec<Action> {
        self.ticks += 1;
        let actions = self.pool.plan(&mut self.ds, self.now);
        for a in &actions {
            let outcome = self.ec2.execute(a, self.now, fail);
            self.pool
                .record_outcome(&mut self.ds, outcome, self.now)
                .unwrap();
        }
        self.advance(Duration::from_secs(5));
        actions
    }

    pub fn tick(&mut self) -> Vec<Action> {
        self.tick_with(None)
    }

    /// Ticks until `quiet` consecutive ticks plan nothing; returns the ticks used, or `None` if that
    /// did not happen within `max_ticks`.
    pub fn settle(&mut self, quiet: usize, max_ticks: usize) -> Option<usize> {
        let mut calm = 0;
        for t in 1..=max_ticks {
            if self.tick().is_empty() {
                calm += 1;
                if calm >= quiet {
                    return Some(t);
                }
            } else {
                calm = 0;
            }
        }
        None
    }

    /// What ipamd's IMDS/EC2 reconcile does: ENIs and blocks EC2 has but the datastore lacks are
    /// added back (ENIs as new, so they are young again), except blocks the planner released less
    /// than 60 s ago (`recently_freed`). Blocks the datastore has but EC2 lacks are force-removed.
    /// Returns whether the datastore changed.
    pub fn reconcile(&mut self) -> bool {
        let mut changed = false;
        let ec2: Vec<(String, FakeEni)> = self
            .ec2
            .enis
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, e) in &ec2 {
            if self.ds.eni(id).is_none() {
                let spec = EniSpec {
                    id: id.clone(),
                    device_number: e.device_number,
                    ..EniSpec::default()
                };
                self.ds.add_eni(spec, self.now).unwrap();
                changed = true;
            }
            let have: Vec<Ipv4Cidr> = self.ds.eni(id).unwrap().ipv4_cidrs().copied().collect();
            for c in &e.cidrs {
                if have.contains(c) || self.pool.recently_freed(c, self.now) {
                    continue;
                }
                if c.is_host() {
                    self.ds.add_ipv4_addresses(id, &[c.addr()]).unwrap();
                } else {
                    self.ds.add_ipv4_prefixes(id, &[*c]).unwrap();
                }
                changed = true;
            }
            for c in have.iter().filter(|c| !e.cidrs.contains(c)) {
                changed |= self.ds.remove_ipv4_cidr(id, *c, true).is_ok();
            }
        }
        changed
    }

    pub fn add_pod(&mut self, i: u32) -> std::net::IpAddr {
        let r = self
            .ds
            .assign(request(i, self.unix_nanos), self.now)
            .expect("assign");
        r.pod.address
    }

    /// (total addresses, ENIs, free addresses) in the serving mode.
    pub fn shape(&self) -> (u32, u32, u32) {
        let s = self.ds.stats(self.now);
        (s.total, s.enis, s.available())
    }
}

/// m4.4xlarge: 8 ENIs × 30 IPv4 addresses (29 secondary per ENI); max pods 8*29+2 = 234.
pub const M4_4XLARGE: InstanceLimits = InstanceLimits::simple("m4.4xlarge", 8, 30);
pub const M4_4XLARGE_MAX_PODS: u32 = 234;
/// m5.large: 3 ENIs × 10 IPv4 addresses (9 secondary or 9 prefixes per ENI).
pub const M5_LARGE: InstanceLimits = InstanceLimits::simple("m5.large", 3, 10);
