//! Test harness for the IPAM planner and the daemon's executor and reconcile: a recording
//! in-memory EC2 behind the real [`Ec2`] trait that enforces the instance limits, and a `Node`
//! that runs the daemon's own plan → execute ([`Executor`]) → record loop and its reconcile
//! ([`reconcile::apply`]) on a simulated clock.

// Test-only harness: a panic here is a test failure, so unwrap is fine.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use vpc_cni::aws::ec2::{
    Addresses, AssignIpv4, AssignIpv6Addresses, AssignPrivateIpAddresses, AssignedIpv4,
    AssignedIpv6, AttachNetworkInterface, Attachment, CreateNetworkInterface, DescribeInstances,
    DescribeNetworkInterfaces, DescribeSubnets, DetachNetworkInterface, Ec2, Instance,
    InstanceTypeInfo, ModifyNetworkInterfaceAttribute, NetworkInterface, PrivateIp, Subnet, Tag,
    UnassignIpv6Addresses, UnassignPrivateIpAddresses,
};
use vpc_cni::aws::error::{Ec2Error, Ec2ErrorKind};
use vpc_cni::aws::retry::RetryEnv;
use vpc_cni::ipam::{
    Action, AddressMode, AssignRequest, Datastore, DatastoreConfig, EniSpec, Failure,
    InstanceLimits, Instant, IpamKey, PodMetadata, Pool, PoolConfig,
};
use vpc_cni::ipamd::executor::{AttachProbe, Executor, NodeIdentity, Patience};
use vpc_cni::ipamd::reconcile::{self, ObservedEni};
use vpc_cni::net::{Ipv4Cidr, MacAddr};

/// What the fake EC2 knows of one ENI.
#[derive(Clone, Debug)]
pub struct FakeEni {
    pub device_number: u32,
    pub attached_at: Instant,
    pub cidrs: Vec<Ipv4Cidr>,
    /// False once detached (it stays until deleted).
    pub attached: bool,
}

/// The fake EC2's state.
#[derive(Clone, Debug)]
pub struct FakeState {
    pub limits: InstanceLimits,
    pub enis: BTreeMap<String, FakeEni>,
    pub now: Instant,
    next_addr: u32,
    next_prefix: u32,
    next_eni: u32,
    pub violations: Vec<String>,
    /// Every EC2 call, by action name.
    pub calls: Vec<&'static str>,
    /// Assign requests EC2 refused with PrivateIpAddressLimitExceeded.
    pub limit_exceeded: usize,
    /// Attaches EC2 refused with AttachmentLimitExceeded.
    pub attach_refused: usize,
    /// While set, every call fails this way without changing anything.
    pub fail: Option<Failure>,
    /// While set, requests for /28 prefixes (CreateNetworkInterface, AssignPrivateIpAddresses)
    /// fail with InsufficientCidrBlocks, as in a fragmented subnet; single addresses still work.
    pub no_free_prefix: bool,
    /// Prefix requests refused with InsufficientCidrBlocks.
    pub cidr_blocks_refused: usize,
}

impl FakeState {
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

    fn slots(&self) -> usize {
        self.limits.secondary_ipv4_per_eni() as usize
    }

    fn describe(&self, id: &str) -> Option<NetworkInterface> {
        let e = self.enis.get(id)?;
        Some(NetworkInterface {
            id: id.into(),
            subnet_id: "subnet-1".into(),
            mac_address: mac_of(id).to_string(),
            status: if e.attached { "in-use" } else { "available" }.into(),
            private_ip_address: Some(primary_ip_of(id)),
            private_ips: std::iter::once(PrivateIp {
                address: primary_ip_of(id),
                primary: true,
            })
            .chain(e.cidrs.iter().filter(|c| c.is_host()).map(|c| PrivateIp {
                address: c.addr(),
                primary: false,
            }))
            .collect(),
            ipv4_prefixes: e.cidrs.iter().filter(|c| !c.is_host()).copied().collect(),
            attachment: e.attached.then(|| Attachment {
                attachment_id: format!("attach-{id}"),
                instance_id: Some("i-fake".into()),
                device_index: Some(e.device_number),
                network_card_index: Some(0),
                status: "attached".into(),
                delete_on_termination: true,
            }),
            ..NetworkInterface::default()
        })
    }
}

/// The ENI's number in the fake (`eni-3` → 3).
fn eni_number(id: &str) -> u32 {
    id.trim_start_matches("eni-").parse().unwrap_or(999)
}

fn mac_of(id: &str) -> MacAddr {
    let n = eni_number(id);
    MacAddr([2, 0, 0, 0, (n >> 8) as u8, n as u8])
}

fn primary_ip_of(id: &str) -> Ipv4Addr {
    let n = eni_number(id);
    Ipv4Addr::new(10, 0, 0, 10 + n as u8)
}

/// An in-memory EC2 behind the real trait: hands out addresses from 10.0.1.0 up and prefixes from
/// 10.0.128.0/17, never reusing any, records every call and every limit violation.
#[derive(Debug)]
pub struct FakeEc2 {
    state: Mutex<FakeState>,
}

fn error(action: &'static str, f: Failure) -> Ec2Error {
    Ec2Error {
        action,
        attempts: 1,
        kind: match f {
            Failure::InsufficientCapacity => Ec2ErrorKind::Capacity {
                code: "InsufficientFreeAddressesInSubnet".into(),
                message: "no free addresses".into(),
            },
            Failure::NoFreePrefix => Ec2ErrorKind::Capacity {
                code: "InsufficientCidrBlocks".into(),
                message: "no free /28 in the subnet".into(),
            },
            Failure::Other => Ec2ErrorKind::Throttled {
                code: "RequestLimitExceeded".into(),
            },
        },
        request_id: None,
    }
}

fn api(action: &'static str, code: &str) -> Ec2Error {
    Ec2Error {
        action,
        attempts: 1,
        kind: Ec2ErrorKind::Api {
            status: 400,
            code: code.into(),
            message: code.into(),
        },
        request_id: None,
    }
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
                attached: true,
            },
        );
        FakeEc2 {
            state: Mutex::new(FakeState {
                limits,
                enis,
                now,
                next_addr: u32::from(Ipv4Addr::new(10, 0, 1, 0)),
                next_prefix: u32::from(Ipv4Addr::new(10, 0, 128, 0)),
                next_eni: 1,
                violations: vec![],
                calls: vec![],
                limit_exceeded: 0,
                attach_refused: 0,
                fail: None,
                no_free_prefix: false,
                cidr_blocks_refused: 0,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    /// Records the call; the injected failure, if any.
    fn call(&self, action: &'static str) -> Result<MutexGuard<'_, FakeState>, Ec2Error> {
        let mut s = self.lock();
        s.calls.push(action);
        match s.fail {
            Some(f) => Err(error(action, f)),
            None => Ok(s),
        }
    }
}

impl Ec2 for FakeEc2 {
    fn describe_instances(&self, _: &DescribeInstances) -> Result<Vec<Instance>, Ec2Error> {
        drop(self.call("DescribeInstances")?);
        Ok(vec![])
    }

    fn describe_instance_types(&self, _: &[String]) -> Result<Vec<InstanceTypeInfo>, Ec2Error> {
        drop(self.call("DescribeInstanceTypes")?);
        Ok(vec![])
    }

    fn describe_subnets(&self, _: &DescribeSubnets) -> Result<Vec<Subnet>, Ec2Error> {
        drop(self.call("DescribeSubnets")?);
        Ok(vec![])
    }

    fn describe_network_interfaces(
        &self,
        req: &DescribeNetworkInterfaces,
    ) -> Result<Vec<NetworkInterface>, Ec2Error> {
        let s = self.call("DescribeNetworkInterfaces")?;
        let ids: Vec<String> = if req.ids.is_empty() {
            s.enis
                .iter()
                .filter(|(_, e)| e.attached)
                .map(|(k, _)| k.clone())
                .collect()
        } else {
            req.ids.clone()
        };
        Ok(ids.iter().filter_map(|id| s.describe(id)).collect())
    }

    fn create_network_interface(
        &self,
        req: &CreateNetworkInterface,
    ) -> Result<NetworkInterface, Ec2Error> {
        let mut s = self.call("CreateNetworkInterface")?;
        let (addresses, prefixes) = match req.addresses {
            Addresses::SecondaryIpv4(n) => (n, 0),
            Addresses::Ipv4Prefixes(n) => (0, n),
            Addresses::None => (0, 0),
            other => {
                s.violations
                    .push(format!("CreateNetworkInterface with {other:?}"));
                (0, 0)
            }
        };
        if prefixes > 0 && s.no_free_prefix {
            s.cidr_blocks_refused += 1;
            return Err(error("CreateNetworkInterface", Failure::NoFreePrefix));
        }
        if (addresses as usize + prefixes as usize) > s.slots()
            || (addresses == 0) == (prefixes == 0)
        {
            s.violations.push(format!(
                "CreateEni asks {addresses} addresses, {prefixes} prefixes"
            ));
        }
        if !req
            .tags
            .iter()
            .any(|t| t.key == "node.k8s.amazonaws.com/instance_id")
        {
            s.violations
                .push("CreateEni without the instance_id tag".into());
        }
        let id = format!("eni-{}", s.next_eni);
        s.next_eni += 1;
        let mut cidrs: Vec<Ipv4Cidr> = (0..addresses)
            .map(|_| Ipv4Cidr::host(s.new_address()))
            .collect();
        for _ in 0..prefixes {
            let p = s.new_prefix();
            cidrs.push(p);
        }
        let now = s.now;
        s.enis.insert(
            id.clone(),
            FakeEni {
                device_number: u32::MAX,
                attached_at: now,
                cidrs,
                attached: false,
            },
        );
        Ok(s.describe(&id).unwrap())
    }

    fn attach_network_interface(&self, req: &AttachNetworkInterface) -> Result<String, Ec2Error> {
        let mut s = self.call("AttachNetworkInterface")?;
        let attached = s.enis.values().filter(|e| e.attached).count() as u32;
        if attached >= u32::from(s.limits.enis) {
            // AttachmentLimitExceeded: happens after a free that failed (gone from the datastore,
            // still attached, until reconcile).
            s.attach_refused += 1;
            return Err(api("AttachNetworkInterface", "AttachmentLimitExceeded"));
        }
        if s.enis
            .values()
            .any(|e| e.attached && e.device_number == req.device_index)
        {
            return Err(api("AttachNetworkInterface", "InvalidParameterValue"));
        }
        let now = s.now;
        let Some(e) = s.enis.get_mut(&req.network_interface_id) else {
            return Err(api(
                "AttachNetworkInterface",
                "InvalidNetworkInterfaceID.NotFound",
            ));
        };
        e.attached = true;
        e.device_number = req.device_index;
        e.attached_at = now;
        Ok(format!("attach-{}", req.network_interface_id))
    }

    fn modify_network_interface_attribute(
        &self,
        _: &ModifyNetworkInterfaceAttribute,
    ) -> Result<(), Ec2Error> {
        drop(self.call("ModifyNetworkInterfaceAttribute")?);
        Ok(())
    }

    fn assign_private_ip_addresses(
        &self,
        req: &AssignPrivateIpAddresses,
    ) -> Result<AssignedIpv4, Ec2Error> {
        let mut s = self.call("AssignPrivateIpAddresses")?;
        let eni = &req.network_interface_id;
        let Some(have) = s.enis.get(eni).map(|e| e.cidrs.len()) else {
            s.violations.push(format!("assign to unknown {eni}"));
            return Err(api(
                "AssignPrivateIpAddresses",
                "InvalidNetworkInterfaceID.NotFound",
            ));
        };
        let (count, prefix) = match &req.request {
            AssignIpv4::Count(n) => (*n, false),
            AssignIpv4::PrefixCount(n) => (*n, true),
            AssignIpv4::Addresses(a) => (a.len() as u32, false),
        };
        if count == 0 {
            s.violations.push(format!("assign 0 to {eni}"));
        }
        if prefix && s.no_free_prefix {
            s.cidr_blocks_refused += 1;
            return Err(error("AssignPrivateIpAddresses", Failure::NoFreePrefix));
        }
        if have + count as usize > s.slots() {
            // Happens after an unassign that failed: gone from the datastore, still on the ENI.
            s.limit_exceeded += 1;
            return Err(api(
                "AssignPrivateIpAddresses",
                "PrivateIpAddressLimitExceeded",
            ));
        }
        let mut out = AssignedIpv4::default();
        for _ in 0..count {
            if prefix {
                let p = s.new_prefix();
                out.prefixes.push(p);
            } else {
                let a = s.new_address();
                out.addresses.push(a);
            }
        }
        let e = s.enis.get_mut(eni).unwrap();
        e.cidrs
            .extend(out.addresses.iter().map(|a| Ipv4Cidr::host(*a)));
        e.cidrs.extend(out.prefixes.iter().copied());
        Ok(out)
    }

    fn unassign_private_ip_addresses(
        &self,
        req: &UnassignPrivateIpAddresses,
    ) -> Result<(), Ec2Error> {
        let mut s = self.call("UnassignPrivateIpAddresses")?;
        let eni = req.network_interface_id.clone();
        let e = s
            .enis
            .get_mut(&eni)
            .expect("unassign from an ENI EC2 knows");
        for c in req
            .addresses
            .iter()
            .map(|a| Ipv4Cidr::host(*a))
            .chain(req.prefixes.iter().copied())
        {
            let before = e.cidrs.len();
            e.cidrs.retain(|have| *have != c);
            assert_eq!(before, e.cidrs.len() + 1, "unassign of {c} not on {eni}");
        }
        Ok(())
    }

    fn assign_ipv6_addresses(&self, _: &AssignIpv6Addresses) -> Result<AssignedIpv6, Ec2Error> {
        drop(self.call("AssignIpv6Addresses")?);
        Ok(AssignedIpv6::default())
    }

    fn unassign_ipv6_addresses(&self, _: &UnassignIpv6Addresses) -> Result<(), Ec2Error> {
        drop(self.call("UnassignIpv6Addresses")?);
        Ok(())
    }

    fn detach_network_interface(&self, req: &DetachNetworkInterface) -> Result<(), Ec2Error> {
        let mut s = self.call("DetachNetworkInterface")?;
        let id = req.attachment_id.trim_start_matches("attach-").to_string();
        let Some(e) = s.enis.get_mut(&id) else {
            return Err(api(
                "DetachNetworkInterface",
                "InvalidAttachmentID.NotFound",
            ));
        };
        let primary = e.device_number == 0;
        e.attached = false;
        if primary {
            s.violations.push(format!("detached the primary ENI {id}"));
        }
        Ok(())
    }

    fn delete_network_interface(&self, id: &str) -> Result<(), Ec2Error> {
        let mut s = self.call("DeleteNetworkInterface")?;
        match s.enis.get(id) {
            None => Err(api(
                "DeleteNetworkInterface",
                "InvalidNetworkInterfaceID.NotFound",
            )),
            Some(e) if e.attached => Err(api(
                "DeleteNetworkInterface",
                "InvalidNetworkInterface.InUse",
            )),
            Some(_) => {
                s.enis.remove(id);
                Ok(())
            }
        }
    }

    fn create_tags(&self, _: &[String], _: &[Tag]) -> Result<(), Ec2Error> {
        drop(self.call("CreateTags")?);
        Ok(())
    }
}

/// IMDS of the fake: every attached ENI is visible at once.
#[derive(Debug)]
struct FakeProbe;

impl AttachProbe for FakeProbe {
    fn visible(&self, _: &MacAddr, _: &[Ipv4Cidr]) -> Result<bool, String> {
        Ok(true)
    }
}

/// Waits cost nothing on the simulated clock.
#[derive(Debug)]
struct NoWait;

impl RetryEnv for NoWait {
    fn random_unit(&self) -> f64 {
        0.5
    }
    fn sleep(&self, _: Duration) {}
    fn now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }
}

/// A simulated node: datastore + planner + the daemon's executor over the fake EC2 + clock.
pub struct Node {
    pub ds: Datastore,
    pub pool: Pool,
    pub ec2: Arc<FakeEc2>,
    pub executor: Executor,
    pub now: Instant,
    pub limits: InstanceLimits,
    pub ticks: usize,
    pub unix_nanos: i64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("ds", &self.ds)
            .field("ec2", &self.ec2)
            .finish_non_exhaustive()
    }
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
        Self::with_cooldown(mode, cfg, limits, Duration::from_secs(30))
    }

    /// Like [`new`](Self::new) with IP_COOLDOWN_PERIOD `ip_cooldown`.
    pub fn with_cooldown(
        mode: AddressMode,
        cfg: PoolConfig,
        limits: InstanceLimits,
        ip_cooldown: Duration,
    ) -> Self {
        let now = Instant::from_secs(1000);
        let mut ds = Datastore::new(DatastoreConfig { mode, ip_cooldown });
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
        let ec2 = Arc::new(FakeEc2::new(limits, now));
        let executor = Executor::new(
            ec2.clone(),
            Arc::new(FakeProbe),
            Arc::new(NoWait),
            NodeIdentity {
                instance_id: "i-fake".into(),
                subnet_id: "subnet-1".into(),
                subnet_ipv4_cidr: Some(Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 16).unwrap()),
                security_group_ids: vec!["sg-1".into()],
                cluster_name: None,
                additional_tags: vec![],
                network_card: 0,
            },
            Arc::new(|| "2026-01-01T00:00:00Z".to_string()),
        )
        .with_patience(Patience {
            attach_tries: 1,
            delete_tries: 1,
            ..Patience::default()
        });
        Node {
            ds,
            pool: Pool::new(cfg, limits),
            ec2,
            executor,
            now,
            limits,
            ticks: 0,
            unix_nanos: 1_700_000_000_000_000_000,
        }
    }

    /// The fake EC2's state.
    pub fn ec2(&self) -> MutexGuard<'_, FakeState> {
        self.ec2.lock()
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.unix_nanos += d.as_nanos() as i64;
        self.ec2.lock().now = self.now;
    }

    /// Runs one action through the daemon's executor (failing every EC2 call with `fail`) and
    /// records its outcome.
    pub fn execute(&mut self, a: &Action, fail: Option<Failure>) -> Result<(), String> {
        self.ec2.lock().fail = fail;
        let used: BTreeSet<u32> = self.ds.enis().map(|e| e.device_number()).collect();
        let done = self.executor.execute(a, &used);
        self.ec2.lock().fail = None;
        self.pool
            .record_outcome(&mut self.ds, done.outcome, self.now)
            .map_err(|e| e.to_string())
    }

    /// One planner tick: plan, execute every action (failing them with `fail`), record outcomes,
    /// then 5 s pass (upstream checks the pool every ~5 s). Returns the actions.
    pub fn tick_with(&mut self, fail: Option<Failure>) -> Vec<Action> {
        self.ticks += 1;
        let actions = self.pool.plan(&mut self.ds, self.now);
        for a in &actions {
            self.execute(a, fail).unwrap();
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

    /// The daemon's IMDS/EC2 reconcile ([`reconcile::apply`]) against what the fake EC2 shows
    /// attached. Returns whether the datastore changed.
    pub fn reconcile(&mut self) -> bool {
        let observed: Vec<ObservedEni> = {
            let s = self.ec2.lock();
            s.enis
                .iter()
                .filter(|(_, e)| e.attached)
                .map(|(id, _)| reconcile::observed_from_ec2(&s.describe(id).unwrap(), None))
                .collect()
        };
        reconcile::apply(&mut self.ds, &self.pool, &observed, self.now).changed()
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
