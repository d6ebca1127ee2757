//! `vpc-cni plan`: the subnet capacity planner.
//!
//! Given a subnet (its CIDR, or just how many addresses are free in it), the warm-pool settings and a
//! list of instance groups (type, count, pods per instance), it reports how many pods are hosted, how
//! many subnet addresses they consume and how many are left, and per instance the ENIs and the
//! active and warm addresses. Nothing here is a formula: every instance is simulated by running the
//! real planner ([`crate::ipam::Pool`] over a [`crate::ipam::Datastore`]) to its steady state against
//! an in-memory model of the subnet that hands out addresses and aligned /28 prefixes and refuses, as
//! EC2 does, when it has none left (`InsufficientFreeAddressesInSubnet` / `InsufficientCidrBlocks`).
//!
//! [`compute`] is a pure function from [`PlanInput`] to [`Report`]; [`render_table`] and
//! [`render_svg`] turn a report into text; [`main`] is the command-line wrapper. docs/planner.md
//! describes the model and how it differs from the EKS subnet calculator.

use core::fmt;
use core::net::Ipv4Addr;
use core::time::Duration;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use serde::Serialize;

use super::flags::Flags;
use crate::ipam::{
    Action, ActionKind, AddressMode, AssignRequest, Completed, Datastore, DatastoreConfig,
    DatastoreError, EniSpec, Failure, InstanceLimits, Instant, IpamKey, Outcome, PodMetadata, Pool,
    PoolConfig,
};
use crate::limits::{self, MaxPodsOptions, IPS_PER_PREFIX};
use crate::net::Ipv4Cidr;

/// Most instances one plan may simulate (each is run through the planner).
pub const MAX_INSTANCES: u32 = 10_000;
/// Addresses AWS reserves in every subnet: the first four and the last.
pub const AWS_RESERVED: u32 = 5;
/// Pods that run on every node with the host's network and take no pod address (aws-node,
/// kube-proxy): the "+ 2" of the max-pods formula.
pub const HOST_NETWORK_PODS: u32 = 2;
/// Largest subnet AWS allows (/16) minus its reserved addresses: the most `--subnet-free` accepts.
pub const MAX_FREE: u32 = 65_536 - AWS_RESERVED;

/// The planner's tick, as ipamd's pool check (~5 s).
const TICK: Duration = Duration::from_secs(5);
/// Ticks without any change before the node is treated as quiet.
const QUIET_TICKS: u32 = 3;
/// Once quiet, the clock jumps past every planner timer (capacity pause 120 s, ENI minimum
/// lifetime 60 s, decrease interval 30 s); a node still quiet after that is at its steady state.
const TIMER_JUMP: Duration = Duration::from_secs(125);
/// A node that has not settled after this many ticks is a planner bug, reported as such.
const MAX_TICKS: u32 = 5_000;

// ----- inputs ------------------------------------------------------------------------------------

/// The subnet the instances (and their ENIs) draw addresses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubnetInput {
    /// A fresh subnet: all its addresses but AWS's five reserved ones are free; /28 prefixes must
    /// be aligned blocks with no address in use.
    Cidr(Ipv4Cidr),
    /// Only the count of free addresses is known: every 16 of them are assumed to make a free /28
    /// (the best case; a real subnet in use is usually fragmented).
    Free(u32),
}

/// The warm-pool settings (ipamd's environment variables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// WARM_ENI_TARGET (default 1).
    pub warm_eni_target: u32,
    /// WARM_IP_TARGET (0 = unset).
    pub warm_ip_target: u32,
    /// MINIMUM_IP_TARGET (0 = unset).
    pub minimum_ip_target: u32,
    /// ENABLE_PREFIX_DELEGATION.
    pub prefix_delegation: bool,
    /// WARM_PREFIX_TARGET (default 0).
    pub warm_prefix_target: u32,
    /// MAX_ENI (None = unset).
    pub max_eni: Option<u32>,
}

impl Default for Settings {
    /// ipamd's defaults: WARM_ENI_TARGET=1, nothing else set.
    fn default() -> Self {
        Settings {
            warm_eni_target: 1,
            warm_ip_target: 0,
            minimum_ip_target: 0,
            prefix_delegation: false,
            warm_prefix_target: 0,
            max_eni: None,
        }
    }
}

/// `count` instances of one type, each running `pods` pods that need a VPC address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInput {
    /// EC2 instance type, e.g. `m5.large`.
    pub instance_type: String,
    /// How many instances.
    pub count: u32,
    /// Pods per instance that take a pod address (host-network pods such as aws-node and
    /// kube-proxy not counted).
    pub pods: u32,
}

/// Everything the planner needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanInput {
    /// The subnet.
    pub subnet: SubnetInput,
    /// ipamd's settings (the same on every node).
    pub settings: Settings,
    /// The instance groups, launched in this order.
    pub groups: Vec<GroupInput>,
}

// ----- errors ------------------------------------------------------------------------------------

/// Why no plan could be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Bad input: the message names what was wrong and what is allowed.
    Input(String),
    /// The simulation itself failed (a planner or model bug, never the user's input).
    Internal(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Input(m) => f.write_str(m),
            PlanError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for PlanError {}

// ----- the report --------------------------------------------------------------------------------

/// What EC2 refused an instance, as its error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Refusal {
    /// Not enough free addresses in the subnet.
    InsufficientFreeAddressesInSubnet,
    /// No free, aligned /28 block left for a prefix.
    InsufficientCidrBlocks,
}

impl Refusal {
    /// EC2's error code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::InsufficientFreeAddressesInSubnet => "InsufficientFreeAddressesInSubnet",
            Refusal::InsufficientCidrBlocks => "InsufficientCidrBlocks",
        }
    }
}

/// One instance at its steady state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InstanceShape {
    /// The instance got its own primary address (else nothing else happened).
    pub launched: bool,
    /// Pods that got an address.
    pub pods_hosted: u32,
    /// Pods left without one.
    pub pods_not_hosted: u32,
    /// ENIs attached, the primary ENI included.
    pub enis: u32,
    /// ENIs holding at least one pod address.
    pub active_enis: u32,
    /// ENIs holding none.
    pub warm_enis: u32,
    /// Pod addresses on the instance (secondary addresses, or 16 per prefix).
    pub addresses: u32,
    /// Of those, assigned to pods.
    pub active_addresses: u32,
    /// Of those, free (the warm pool).
    pub warm_addresses: u32,
    /// /28 prefixes (prefix delegation).
    pub prefixes: u32,
    /// The ENIs' own primary addresses (the instance's primary address included).
    pub eni_primary_addresses: u32,
    /// Subnet addresses the instance holds: ENI primaries + secondary addresses + 16 per prefix.
    pub subnet_addresses: u32,
    /// The last refusal EC2 gave the instance, if any (pods or warm addresses it could not get).
    pub refused: Option<Refusal>,
}

/// A run of consecutive instances of a group with the same shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceRun {
    /// First instance of the run, counting from 1 within the group.
    pub first: u32,
    /// Last instance of the run.
    pub last: u32,
    /// `last - first + 1`.
    pub instances: u32,
    /// The shape each of them has.
    #[serde(flatten)]
    pub shape: InstanceShape,
}

/// One instance group's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupReport {
    /// Instance type.
    pub instance_type: String,
    /// Instances asked for.
    pub count: u32,
    /// Pods per instance asked for.
    pub pods_per_instance: u32,
    /// The kubelet --max-pods value for the type (EKS max-pods calculator).
    pub max_pods: u32,
    /// Pods per instance the type can host: max pods minus the host-network pods.
    pub max_pods_with_addresses: u32,
    /// `"secondary"` or `"prefix"`.
    pub mode: &'static str,
    /// Prefix delegation was asked for but the type is neither Nitro nor bare metal (ipamd then
    /// uses secondary addresses).
    pub prefix_delegation_unsupported: bool,
    /// What one instance needs with the subnet never running out.
    pub needed_per_instance: InstanceShape,
    /// What the instances got, in order.
    pub runs: Vec<InstanceRun>,
    /// Instances that got their primary address.
    pub instances_launched: u32,
    /// Pods hosted over all instances.
    pub pods_hosted: u32,
    /// Pods asked for over all instances.
    pub pods_requested: u32,
    /// Subnet addresses held over all instances.
    pub subnet_addresses: u32,
    /// /28 prefixes held over all instances.
    pub prefixes: u32,
}

/// The subnet before and after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubnetReport {
    /// The CIDR, when given.
    pub cidr: Option<String>,
    /// Free addresses before any instance (AWS's reserved five excluded).
    pub usable: u32,
    /// Addresses the instances hold.
    pub consumed: u32,
    /// Addresses still free.
    pub left: u32,
    /// Addresses every instance would need with the subnet never running out.
    pub needed: u32,
    /// Free aligned /28 blocks before any instance.
    pub free_blocks_before: u32,
    /// Free aligned /28 blocks after.
    pub free_blocks_left: u32,
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The subnet.
    pub subnet: SubnetReport,
    /// The settings used.
    pub settings: SettingsReport,
    /// One entry per instance group, in input order.
    pub groups: Vec<GroupReport>,
    /// Pods asked for.
    pub pods_requested: u32,
    /// Pods hosted.
    pub pods_hosted: u32,
    /// Pods left without an address.
    pub pods_not_hosted: u32,
    /// Instances asked for.
    pub instances: u32,
    /// Instances that got their primary address.
    pub instances_launched: u32,
    /// /28 blocks needed for every instance with the subnet never running out (prefix delegation).
    pub blocks_needed: u32,
    /// /28 blocks the instances hold.
    pub blocks_placed: u32,
}

impl Report {
    /// Whether every pod got an address.
    pub fn fits(&self) -> bool {
        self.pods_not_hosted == 0
    }
}

/// The settings as reported (the environment variables' names and values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[allow(non_snake_case)]
pub struct SettingsReport {
    /// WARM_ENI_TARGET.
    pub WARM_ENI_TARGET: u32,
    /// WARM_IP_TARGET (0 = unset).
    pub WARM_IP_TARGET: u32,
    /// MINIMUM_IP_TARGET (0 = unset).
    pub MINIMUM_IP_TARGET: u32,
    /// ENABLE_PREFIX_DELEGATION.
    pub ENABLE_PREFIX_DELEGATION: bool,
    /// WARM_PREFIX_TARGET.
    pub WARM_PREFIX_TARGET: u32,
    /// MAX_ENI (None = unset).
    pub MAX_ENI: Option<u32>,
}

impl From<&Settings> for SettingsReport {
    fn from(s: &Settings) -> Self {
        SettingsReport {
            WARM_ENI_TARGET: s.warm_eni_target,
            WARM_IP_TARGET: s.warm_ip_target,
            MINIMUM_IP_TARGET: s.minimum_ip_target,
            ENABLE_PREFIX_DELEGATION: s.prefix_delegation,
            WARM_PREFIX_TARGET: s.warm_prefix_target,
            MAX_ENI: s.max_eni,
        }
    }
}

// ----- the subnet model --------------------------------------------------------------------------

/// An in-memory subnet: which addresses are taken, per /28 block how many, and (for a subnet known
/// only by its free count) how many may still be taken.
#[derive(Clone, Debug)]
struct Subnet {
    base: u32,
    taken: Vec<bool>,
    block_taken: Vec<u8>,
    /// Remaining allowance (free-count subnets); `None` = only the bitmap limits.
    budget: Option<u32>,
    free: u32,
    /// No index below this is free.
    low: usize,
}

impl Subnet {
    fn from_cidr(cidr: Ipv4Cidr) -> Subnet {
        let size = usize::try_from(cidr.size()).unwrap_or(usize::MAX);
        let mut s = Subnet::blank(u32::from(cidr.addr()), size, None);
        for i in [0, 1, 2, 3, size - 1] {
            s.mark(i);
        }
        s
    }

    /// A space where geometry never binds before `budget` does (prefixes and single addresses
    /// each fit), or an unbounded one with `budget = None` for the "needed" runs.
    fn with_free(budget: Option<u32>) -> Subnet {
        let n = budget.unwrap_or(MAX_FREE) as usize;
        let size = (n.div_ceil(16) * 2 + 2) * 16;
        // 10.0.0.0 plus at most ~2^17 addresses: always valid IPv4 addresses.
        Subnet::blank(u32::from(Ipv4Addr::new(10, 0, 0, 0)), size, budget)
    }

    fn blank(base: u32, size: usize, budget: Option<u32>) -> Subnet {
        Subnet {
            base,
            taken: vec![false; size],
            block_taken: vec![0; size.div_ceil(16)],
            budget,
            free: u32::try_from(size).unwrap_or(u32::MAX),
            low: 0,
        }
    }

    fn mark(&mut self, i: usize) {
        if let Some(t) = self.taken.get_mut(i) {
            if !*t {
                *t = true;
                self.free -= 1;
                if let Some(b) = self.block_taken.get_mut(i / 16) {
                    *b += 1;
                }
            }
        }
    }

    fn unmark(&mut self, i: usize) {
        if let Some(t) = self.taken.get_mut(i) {
            if *t {
                *t = false;
                self.free += 1;
                if let Some(b) = self.block_taken.get_mut(i / 16) {
                    *b -= 1;
                }
                self.low = self.low.min(i);
            }
        }
    }

    /// Free addresses.
    fn free(&self) -> u32 {
        self.budget.map_or(self.free, |b| b.min(self.free))
    }

    /// Free aligned /28 blocks.
    fn free_blocks(&self) -> u32 {
        let geometric = self.block_taken.iter().filter(|&&n| n == 0).count() as u32;
        self.budget
            .map_or(geometric, |b| geometric.min(b / IPS_PER_PREFIX))
    }

    fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::from(self.base.wrapping_add(i as u32))
    }

    fn index(&self, a: Ipv4Addr) -> Option<usize> {
        let i = u32::from(a).checked_sub(self.base)? as usize;
        (i < self.taken.len()).then_some(i)
    }

    /// `singles` addresses (lowest free first) and `prefixes` aligned /28s (lowest free block
    /// first), all or nothing, as EC2 answers one call.
    fn take(
        &mut self,
        singles: u32,
        prefixes: u32,
    ) -> Result<(Vec<Ipv4Addr>, Vec<Ipv4Cidr>), Refusal> {
        let cost = singles + prefixes * IPS_PER_PREFIX;
        if let Some(b) = self.budget {
            if singles > b {
                return Err(Refusal::InsufficientFreeAddressesInSubnet);
            }
            if cost > b {
                return Err(Refusal::InsufficientCidrBlocks);
            }
        }
        // Blocks first, so the single addresses cannot take the last free block's addresses.
        let mut blocks = Vec::new();
        let mut b = 0;
        while blocks.len() < prefixes as usize {
            match self.block_taken.get(b) {
                None => break,
                Some(0) if (b + 1) * 16 <= self.taken.len() => {
                    blocks.push(b);
                    for i in b * 16..(b + 1) * 16 {
                        self.mark(i);
                    }
                }
                Some(_) => {}
            }
            b += 1;
        }
        let mut addrs = Vec::new();
        let mut i = self.low;
        while addrs.len() < singles as usize && i < self.taken.len() {
            if !self.taken[i] {
                addrs.push(i);
                self.mark(i);
            }
            i += 1;
        }
        if blocks.len() < prefixes as usize || addrs.len() < singles as usize {
            let refusal = if addrs.len() < singles as usize {
                Refusal::InsufficientFreeAddressesInSubnet
            } else {
                Refusal::InsufficientCidrBlocks
            };
            for a in addrs {
                self.unmark(a);
            }
            for b in blocks {
                for i in b * 16..(b + 1) * 16 {
                    self.unmark(i);
                }
            }
            return Err(refusal);
        }
        while self.low < self.taken.len() && self.taken[self.low] {
            self.low += 1;
        }
        if let Some(b) = self.budget.as_mut() {
            *b -= cost;
        }
        let singles = addrs.into_iter().map(|i| self.addr(i)).collect();
        let mut out = Vec::new();
        for b in blocks {
            let cidr = Ipv4Cidr::new(self.addr(b * 16), 28)
                .map_err(|_| Refusal::InsufficientCidrBlocks)?;
            out.push(cidr);
        }
        Ok((singles, out))
    }

    /// Gives a block (a /32 or a /28) back.
    fn give_back(&mut self, c: Ipv4Cidr) {
        let Some(start) = self.index(c.addr()) else {
            return;
        };
        let n = usize::try_from(c.size()).unwrap_or(1);
        for i in start..start + n {
            self.unmark(i);
        }
        if let Some(b) = self.budget.as_mut() {
            *b += u32::try_from(c.size()).unwrap_or(1);
        }
    }
}

// ----- one simulated node ------------------------------------------------------------------------

/// What "EC2" has attached to one instance.
#[derive(Clone, Debug)]
struct SimEni {
    device: u32,
    primary: Ipv4Addr,
    cidrs: Vec<Ipv4Cidr>,
}

/// One instance type's resolved parameters.
#[derive(Clone, Copy, Debug)]
struct TypeSpec {
    limits: InstanceLimits,
    mode: AddressMode,
    pool: PoolConfigParts,
}

#[derive(Clone, Copy, Debug)]
struct PoolConfigParts {
    settings: Settings,
    max_pods: u32,
}

impl PoolConfigParts {
    fn config(&self) -> PoolConfig {
        PoolConfig {
            warm_eni_target: self.settings.warm_eni_target,
            warm_ip_target: (self.settings.warm_ip_target > 0)
                .then_some(self.settings.warm_ip_target),
            minimum_ip_target: (self.settings.minimum_ip_target > 0)
                .then_some(self.settings.minimum_ip_target),
            warm_prefix_target: self.settings.warm_prefix_target,
            max_eni: self.settings.max_eni,
            max_pods: self.max_pods,
            pod_eni: false,
            custom_networking: false,
        }
    }
}

struct Node<'a> {
    ds: Datastore,
    pool: Pool,
    enis: BTreeMap<String, SimEni>,
    next_eni: u32,
    now: Instant,
    limits: InstanceLimits,
    subnet: &'a mut Subnet,
    refused: Option<Refusal>,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("enis", &self.enis)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

fn internal(what: &str, e: impl fmt::Display) -> PlanError {
    PlanError::Internal(format!("{what}: {e}"))
}

impl Node<'_> {
    fn execute(&mut self, action: &Action) -> Outcome {
        let result = self.run(&action.kind);
        if let Err(r) = &result {
            self.refused = Some(*r);
        }
        Outcome {
            action: action.id,
            result: result.map_err(|_| Failure::InsufficientCapacity),
        }
    }

    /// One EC2 call against the model. Limit violations (which the planner never asks for) are
    /// answered as EC2 would, with an error that is not a capacity error.
    fn run(&mut self, kind: &ActionKind) -> Result<Completed, Refusal> {
        let slots = self.limits.secondary_ipv4_per_eni() as usize;
        match kind {
            ActionKind::CreateEni {
                addresses,
                prefixes,
            } => {
                let (mut singles, prefixes) = self.subnet.take(1 + addresses, *prefixes)?;
                let primary = singles.remove(0);
                let id = format!("eni-{}", self.next_eni);
                self.next_eni += 1;
                let device = (0..)
                    .find(|d| !self.enis.values().any(|e| e.device == *d))
                    .unwrap_or(0);
                let mut cidrs: Vec<Ipv4Cidr> = singles.iter().map(|a| Ipv4Cidr::host(*a)).collect();
                cidrs.extend(prefixes.iter().copied());
                self.enis.insert(
                    id.clone(),
                    SimEni {
                        device,
                        primary,
                        cidrs,
                    },
                );
                Ok(Completed::EniAttached {
                    eni: EniSpec {
                        id,
                        device_number: device,
                        subnet_id: "subnet-plan".into(),
                        primary_ipv4: Some(primary),
                        ..EniSpec::default()
                    },
                    addresses: singles,
                    prefixes,
                })
            }
            ActionKind::AssignAddresses { eni, count }
            | ActionKind::AssignPrefixes { eni, count } => {
                let prefix = matches!(kind, ActionKind::AssignPrefixes { .. });
                let have = self.enis.get(eni).map_or(usize::MAX, |e| e.cidrs.len());
                if have.saturating_add(*count as usize) > slots {
                    // Unknown ENI or PrivateIpAddressLimitExceeded: EC2 still has what the
                    // datastore has, so report nothing new.
                    return Ok(Completed::Assigned {
                        addresses: vec![],
                        prefixes: vec![],
                    });
                }
                let (addresses, prefixes) = if prefix {
                    self.subnet.take(0, *count)?
                } else {
                    self.subnet.take(*count, 0)?
                };
                if let Some(e) = self.enis.get_mut(eni) {
                    e.cidrs.extend(addresses.iter().map(|a| Ipv4Cidr::host(*a)));
                    e.cidrs.extend(prefixes.iter().copied());
                }
                Ok(Completed::Assigned {
                    addresses,
                    prefixes,
                })
            }
            ActionKind::UnassignAddresses { eni, addresses } => {
                let gone: Vec<Ipv4Cidr> = addresses.iter().map(|a| Ipv4Cidr::host(*a)).collect();
                self.release(eni, &gone);
                Ok(Completed::Released)
            }
            ActionKind::UnassignPrefixes { eni, prefixes } => {
                self.release(eni, prefixes);
                Ok(Completed::Released)
            }
            ActionKind::FreeEni { eni } => {
                if let Some(e) = self.enis.remove(eni) {
                    for c in e.cidrs {
                        self.subnet.give_back(c);
                    }
                    self.subnet.give_back(Ipv4Cidr::host(e.primary));
                }
                Ok(Completed::Released)
            }
        }
    }

    fn release(&mut self, eni: &str, gone: &[Ipv4Cidr]) {
        if let Some(e) = self.enis.get_mut(eni) {
            let before = e.cidrs.len();
            e.cidrs.retain(|c| !gone.contains(c));
            if e.cidrs.len() + gone.len() == before {
                for c in gone {
                    self.subnet.give_back(*c);
                }
            }
        }
    }

    /// Ticks until the node is at its steady state: pending pods retry each tick (as the kubelet
    /// retries a failed CNI ADD), the planner's actions run against the subnet model.
    fn settle(&mut self, pods: u32) -> Result<u32, PlanError> {
        let mut hosted = 0u32;
        let mut quiet = 0u32;
        let mut jumped = false;
        for _ in 0..MAX_TICKS {
            let mut changed = false;
            while hosted < pods {
                let req = AssignRequest {
                    key: IpamKey::new("aws-cni", &format!("pod-{hosted}"), "eth0"),
                    metadata: PodMetadata {
                        namespace: "default".into(),
                        name: format!("pod-{hosted}"),
                        interfaces_count: 1,
                    },
                    unix_nanos: 0,
                };
                match self.ds.assign(req, self.now) {
                    Ok(_) => {
                        hosted += 1;
                        changed = true;
                    }
                    Err(DatastoreError::NoFreeAddress { .. }) => break,
                    Err(e) => return Err(internal("pod ADD", e)),
                }
            }
            for a in self.pool.plan(&mut self.ds, self.now) {
                let outcome = self.execute(&a);
                changed |= outcome.result.is_ok();
                self.pool
                    .record_outcome(&mut self.ds, outcome, self.now)
                    .map_err(|e| internal("planner outcome", e))?;
            }
            if changed {
                quiet = 0;
                jumped = false;
                self.now = self.now + TICK;
                continue;
            }
            quiet += 1;
            if quiet < QUIET_TICKS {
                self.now = self.now + TICK;
            } else if jumped {
                return Ok(hosted);
            } else {
                self.now = self.now + TIMER_JUMP;
                jumped = true;
            }
        }
        Err(PlanError::Internal(format!(
            "the planner did not settle within {MAX_TICKS} ticks"
        )))
    }

    fn shape(&self, pods: u32, hosted: u32) -> InstanceShape {
        let stats = self.ds.stats(self.now);
        let active_enis = self
            .ds
            .enis()
            .filter(|e| self.ds.eni_assigned(e) > 0)
            .count() as u32;
        let enis = self.enis.len() as u32;
        let prefixes: u32 = self
            .enis
            .values()
            .flat_map(|e| e.cidrs.iter())
            .filter(|c| !c.is_host())
            .count() as u32;
        let held: u64 = self
            .enis
            .values()
            .map(|e| 1 + e.cidrs.iter().map(|c| c.size()).sum::<u64>())
            .sum();
        InstanceShape {
            launched: true,
            pods_hosted: hosted,
            pods_not_hosted: pods - hosted,
            enis,
            active_enis,
            warm_enis: enis.saturating_sub(active_enis),
            addresses: stats.total,
            active_addresses: stats.assigned,
            warm_addresses: stats.total.saturating_sub(stats.assigned),
            prefixes,
            eni_primary_addresses: enis,
            subnet_addresses: u32::try_from(held).unwrap_or(u32::MAX),
            refused: self.refused,
        }
    }
}

/// Launches one instance into `subnet` and runs it to its steady state with `pods` pods.
fn run_instance(subnet: &mut Subnet, t: &TypeSpec, pods: u32) -> Result<InstanceShape, PlanError> {
    let now = Instant::from_secs(1_000);
    let primary = match subnet.take(1, 0) {
        Ok((mut a, _)) if !a.is_empty() => a.remove(0),
        _ => {
            return Ok(InstanceShape {
                pods_not_hosted: pods,
                refused: Some(Refusal::InsufficientFreeAddressesInSubnet),
                ..InstanceShape::default()
            })
        }
    };
    let mut ds = Datastore::new(DatastoreConfig {
        mode: t.mode,
        ..DatastoreConfig::default()
    });
    ds.add_eni(
        EniSpec {
            id: "eni-0".into(),
            device_number: 0,
            is_primary: true,
            subnet_id: "subnet-plan".into(),
            primary_ipv4: Some(primary),
            ..EniSpec::default()
        },
        now,
    )
    .map_err(|e| internal("primary ENI", e))?;
    let mut enis = BTreeMap::new();
    enis.insert(
        "eni-0".to_string(),
        SimEni {
            device: 0,
            primary,
            cidrs: vec![],
        },
    );
    let mut node = Node {
        ds,
        pool: Pool::new(t.pool.config(), t.limits),
        enis,
        next_eni: 1,
        now,
        limits: t.limits,
        subnet,
        refused: None,
    };
    let hosted = node.settle(pods)?;
    Ok(node.shape(pods, hosted))
}

// ----- the plan ----------------------------------------------------------------------------------

/// Known types of the same family, for an unknown-type message.
fn suggestions(name: &str) -> String {
    let family = name.split('.').next().unwrap_or(name);
    let known: Vec<&str> = limits::all()
        .map(|l| l.name)
        .filter(|n| !family.is_empty() && n.split('.').next() == Some(family))
        .collect();
    if known.is_empty() {
        format!(
            "; the built-in table has {} types (vpc-cni max-pods --all lists them)",
            limits::count()
        )
    } else {
        format!("; known {family} types: {}", known.join(" "))
    }
}

fn check_settings(s: &Settings) -> Result<(), PlanError> {
    if s.prefix_delegation
        && s.warm_prefix_target == 0
        && s.warm_ip_target == 0
        && s.minimum_ip_target == 0
    {
        return Err(PlanError::Input(
            "prefix delegation needs WARM_PREFIX_TARGET, WARM_IP_TARGET or MINIMUM_IP_TARGET above 0 \
             (ipamd refuses to start otherwise); upstream's manifest sets WARM_PREFIX_TARGET=1"
                .into(),
        ));
    }
    if s.max_eni == Some(0) {
        return Err(PlanError::Input("MAX_ENI must be at least 1".into()));
    }
    Ok(())
}

/// Runs the plan: every instance of every group, in order, against one subnet.
pub fn compute(input: &PlanInput) -> Result<Report, PlanError> {
    check_settings(&input.settings)?;
    let mut subnet = match input.subnet {
        SubnetInput::Cidr(c) => {
            if !(16..=28).contains(&c.prefix_len()) {
                return Err(PlanError::Input(format!(
                    "subnet {c}: AWS subnets are /16 to /28"
                )));
            }
            Subnet::from_cidr(c)
        }
        SubnetInput::Free(n) => {
            if n > MAX_FREE {
                return Err(PlanError::Input(format!(
                    "{n} free addresses: at most {MAX_FREE} (a /16, the largest subnet AWS allows, less its 5 reserved addresses)"
                )));
            }
            Subnet::with_free(Some(n))
        }
    };
    if input.groups.is_empty() {
        return Err(PlanError::Input(
            "no instances: give at least one group (TYPE:COUNT:PODS)".into(),
        ));
    }
    let total: u64 = input.groups.iter().map(|g| u64::from(g.count)).sum();
    if total > u64::from(MAX_INSTANCES) {
        return Err(PlanError::Input(format!(
            "{total} instances: at most {MAX_INSTANCES} in one plan"
        )));
    }
    let mut specs = Vec::new();
    for g in &input.groups {
        specs.push(type_spec(g, &input.settings)?);
    }
    let usable = subnet.free();
    let free_blocks_before = subnet.free_blocks();

    let mut groups = Vec::new();
    for (g, (t, max_pods, unsupported)) in input.groups.iter().zip(&specs) {
        let needed = run_instance(&mut Subnet::with_free(None), t, g.pods)?;
        let mut runs: Vec<InstanceRun> = Vec::new();
        for i in 1..=g.count {
            let shape = run_instance(&mut subnet, t, g.pods)?;
            match runs.last_mut() {
                Some(r) if r.shape == shape => {
                    r.last = i;
                    r.instances += 1;
                }
                _ => runs.push(InstanceRun {
                    first: i,
                    last: i,
                    instances: 1,
                    shape,
                }),
            }
        }
        let sum = |f: fn(&InstanceShape) -> u32| -> u32 {
            runs.iter().map(|r| r.instances * f(&r.shape)).sum()
        };
        groups.push(GroupReport {
            instance_type: g.instance_type.clone(),
            count: g.count,
            pods_per_instance: g.pods,
            max_pods: *max_pods,
            max_pods_with_addresses: max_pods.saturating_sub(HOST_NETWORK_PODS),
            mode: if t.mode == AddressMode::PrefixIpv4 {
                "prefix"
            } else {
                "secondary"
            },
            prefix_delegation_unsupported: *unsupported,
            needed_per_instance: needed,
            instances_launched: sum(|s| u32::from(s.launched)),
            pods_hosted: sum(|s| s.pods_hosted),
            pods_requested: g.count * g.pods,
            subnet_addresses: sum(|s| s.subnet_addresses),
            prefixes: sum(|s| s.prefixes),
            runs,
        });
    }
    let pods_requested: u32 = groups.iter().map(|g| g.pods_requested).sum();
    let pods_hosted: u32 = groups.iter().map(|g| g.pods_hosted).sum();
    let consumed: u32 = groups.iter().map(|g| g.subnet_addresses).sum();
    let needed: u32 = groups
        .iter()
        .map(|g| g.count * g.needed_per_instance.subnet_addresses)
        .sum();
    Ok(Report {
        subnet: SubnetReport {
            cidr: match input.subnet {
                SubnetInput::Cidr(c) => Some(c.to_string()),
                SubnetInput::Free(_) => None,
            },
            usable,
            consumed,
            left: subnet.free(),
            needed,
            free_blocks_before,
            free_blocks_left: subnet.free_blocks(),
        },
        settings: SettingsReport::from(&input.settings),
        pods_requested,
        pods_hosted,
        pods_not_hosted: pods_requested - pods_hosted,
        instances: groups.iter().map(|g| g.count).sum(),
        instances_launched: groups.iter().map(|g| g.instances_launched).sum(),
        blocks_needed: groups
            .iter()
            .map(|g| g.count * g.needed_per_instance.prefixes)
            .sum(),
        blocks_placed: groups.iter().map(|g| g.prefixes).sum(),
        groups,
    })
}

/// The type's limits, address mode and pool settings; checks the pod count against max pods.
fn type_spec(g: &GroupInput, s: &Settings) -> Result<(TypeSpec, u32, bool), PlanError> {
    let name = &g.instance_type;
    let l = limits::lookup(name).ok_or_else(|| {
        PlanError::Input(format!(
            "unknown instance type {name:?}{}",
            suggestions(name)
        ))
    })?;
    if g.count == 0 {
        return Err(PlanError::Input(format!(
            "{name}: an instance count of 0; give at least 1"
        )));
    }
    let mp = limits::max_pods(
        &l,
        &MaxPodsOptions {
            prefix_delegation: s.prefix_delegation,
            max_eni: s.max_eni,
            ..MaxPodsOptions::default()
        },
    );
    let allowed = mp.value.saturating_sub(HOST_NETWORK_PODS);
    if g.pods > allowed {
        return Err(PlanError::Input(format!(
            "{name}: {} pods per instance is above what it can host: max pods is {} (kubelet --max-pods{}{}), \
             {HOST_NETWORK_PODS} of them host-network (aws-node, kube-proxy), so at most {allowed} pods with a VPC address",
            g.pods,
            mp.value,
            if mp.cap.is_some_and(|c| c < mp.uncapped) {
                format!(", capped at {} from {}", mp.value, mp.uncapped)
            } else {
                String::new()
            },
            if s.max_eni.is_some() { ", with MAX_ENI" } else { "" },
        )));
    }
    let mode = if s.prefix_delegation && l.supports_prefix_delegation() {
        AddressMode::PrefixIpv4
    } else {
        AddressMode::SecondaryIpv4
    };
    Ok((
        TypeSpec {
            limits: l,
            mode,
            pool: PoolConfigParts {
                settings: *s,
                max_pods: mp.value,
            },
        },
        mp.value,
        mp.prefix_delegation_unsupported,
    ))
}

// ----- rendering ---------------------------------------------------------------------------------

fn settings_line(s: &SettingsReport) -> String {
    let mut parts = Vec::new();
    if s.ENABLE_PREFIX_DELEGATION {
        parts.push("ENABLE_PREFIX_DELEGATION=true".to_string());
        parts.push(format!("WARM_PREFIX_TARGET={}", s.WARM_PREFIX_TARGET));
    } else {
        parts.push(format!("WARM_ENI_TARGET={}", s.WARM_ENI_TARGET));
    }
    if s.WARM_IP_TARGET != 0 {
        parts.push(format!("WARM_IP_TARGET={}", s.WARM_IP_TARGET));
    }
    if s.MINIMUM_IP_TARGET != 0 {
        parts.push(format!("MINIMUM_IP_TARGET={}", s.MINIMUM_IP_TARGET));
    }
    if let Some(m) = s.MAX_ENI {
        parts.push(format!("MAX_ENI={m}"));
    }
    parts.join(" ")
}

fn subnet_name(s: &SubnetReport) -> String {
    match &s.cidr {
        Some(c) => format!("subnet {c}"),
        None => "subnet".into(),
    }
}

/// The report as a plain-text table.
pub fn render_table(r: &Report) -> String {
    let pd = r.settings.ENABLE_PREFIX_DELEGATION;
    let mut out = String::new();
    let reserved = if r.subnet.cidr.is_some() {
        " (AWS reserves 5)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "{}: {} free addresses{reserved}{}",
        subnet_name(&r.subnet),
        r.subnet.usable,
        if pd {
            format!(", {} free /28 blocks", r.subnet.free_blocks_before)
        } else {
            String::new()
        }
    );
    let _ = writeln!(out, "settings: {}", settings_line(&r.settings));
    out.push('\n');
    let mut rows: Vec<Vec<String>> = vec![vec![
        "TYPE".into(),
        "INSTANCES".into(),
        "PODS/INST".into(),
        "MAX PODS".into(),
        "ENIS (ACTIVE+WARM)".into(),
        "ADDRESSES (ACTIVE+WARM)".into(),
        "/28 BLOCKS".into(),
        "SUBNET/INST".into(),
        "SUBNET".into(),
    ]];
    let mut notes = Vec::new();
    for g in &r.groups {
        for run in &g.runs {
            let s = &run.shape;
            let which = if run.first == run.last {
                format!("#{}", run.first)
            } else {
                format!("#{}-{}", run.first, run.last)
            };
            let inst = if g.runs.len() == 1 {
                run.instances.to_string()
            } else {
                format!("{} ({which})", run.instances)
            };
            rows.push(vec![
                g.instance_type.clone(),
                inst,
                format!("{}/{}", s.pods_hosted, g.pods_per_instance),
                g.max_pods.to_string(),
                format!("{} ({}+{})", s.enis, s.active_enis, s.warm_enis),
                format!(
                    "{} ({}+{})",
                    s.addresses, s.active_addresses, s.warm_addresses
                ),
                if g.mode == "prefix" {
                    s.prefixes.to_string()
                } else {
                    "-".into()
                },
                s.subnet_addresses.to_string(),
                (s.subnet_addresses * run.instances).to_string(),
            ]);
            let who = format!("{} {which}", g.instance_type);
            if !s.launched {
                notes.push(format!(
                    "{who}: not launched, no address left for its primary ENI (InsufficientFreeAddressesInSubnet)"
                ));
            } else if let Some(refusal) = s.refused {
                if s.pods_not_hosted > 0 {
                    notes.push(format!(
                        "{who}: {} of {} pods without an address; EC2 refused more: {}",
                        s.pods_not_hosted,
                        g.pods_per_instance,
                        refusal.code()
                    ));
                } else {
                    notes.push(format!(
                        "{who}: warm pool short of its target; EC2 refused more: {}",
                        refusal.code()
                    ));
                }
            }
        }
        if g.prefix_delegation_unsupported {
            notes.push(format!(
                "{}: not a Nitro or bare-metal type, so no prefix delegation: secondary addresses, as ipamd falls back",
                g.instance_type
            ));
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            let _ = writeln!(out, "{n}");
        }
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "pods hosted: {} of {}{}",
        r.pods_hosted,
        r.pods_requested,
        if r.instances_launched < r.instances {
            format!(
                " ({} of {} instances launched)",
                r.instances_launched, r.instances
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "subnet addresses: {} consumed, {} left of {}; {} needed for every pod and warm target",
        r.subnet.consumed, r.subnet.left, r.subnet.usable, r.subnet.needed
    );
    if pd {
        let _ = writeln!(
            out,
            "/28 blocks: {} needed, {} placed, {} free left",
            r.blocks_needed, r.blocks_placed, r.subnet.free_blocks_left
        );
    }
    out
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const LEFT_COLOUR: &str = "#d9d9d9";

/// The report as an SVG chart: the subnet as one bar split into what each instance group consumes
/// and what is left, then one bar per group and one for what is left, to the same scale.
pub fn render_svg(r: &Report) -> String {
    const W: f64 = 760.0;
    const LABEL: f64 = 230.0;
    const BAR: f64 = 420.0;
    const ROW: f64 = 26.0;
    let usable = f64::from(r.subnet.usable.max(1));
    let scale = |n: u32| f64::from(n) / usable * BAR;
    let rows = r.groups.len() + 1;
    let height = 110.0 + ROW * rows as f64 + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="13">"#
    );
    let title = format!(
        "{}: {} consumed, {} left of {} free addresses; {} of {} pods hosted",
        subnet_name(&r.subnet),
        r.subnet.consumed,
        r.subnet.left,
        r.subnet.usable,
        r.pods_hosted,
        r.pods_requested
    );
    let _ = writeln!(s, "<title>{}</title>", xml_escape(&title));
    let _ = writeln!(s, r#"<rect width="{W}" height="{height}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        xml_escape(&title)
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="42">{}</text>"#,
        xml_escape(&settings_line(&r.settings))
    );
    // The whole subnet, stacked.
    let mut x = LABEL;
    let y = 56.0;
    for (i, g) in r.groups.iter().enumerate() {
        let w = scale(g.subnet_addresses);
        let _ = writeln!(
            s,
            r#"<rect x="{x:.2}" y="{y}" width="{w:.2}" height="20" fill="{}"><title>{}</title></rect>"#,
            COLOURS[i % COLOURS.len()],
            xml_escape(&format!(
                "{} x {}: {}",
                g.count, g.instance_type, g.subnet_addresses
            ))
        );
        x += w;
    }
    let _ = writeln!(
        s,
        r#"<rect x="{x:.2}" y="{y}" width="{:.2}" height="20" fill="{LEFT_COLOUR}"><title>left: {}</title></rect>"#,
        scale(r.subnet.left),
        r.subnet.left
    );
    let _ = writeln!(s, r#"<text x="10" y="{}">whole subnet</text>"#, y + 15.0);
    // One bar per group, then what is left.
    for i in 0..rows {
        let y = 100.0 + ROW * i as f64;
        let (label, value, colour, detail) = match r.groups.get(i) {
            Some(g) => (
                format!("{} x {}", g.count, g.instance_type),
                g.subnet_addresses,
                COLOURS[i % COLOURS.len()],
                format!(
                    "{} consumed, {}/{} pods{}",
                    g.subnet_addresses,
                    g.pods_hosted,
                    g.pods_requested,
                    if g.mode == "prefix" {
                        format!(", {} /28s", g.prefixes)
                    } else {
                        String::new()
                    }
                ),
            ),
            None => (
                "left".to_string(),
                r.subnet.left,
                LEFT_COLOUR,
                format!("{} left", r.subnet.left),
            ),
        };
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.2}">{}</text>"#,
            y + 14.0,
            xml_escape(&label)
        );
        let w = scale(value);
        let _ = writeln!(
            s,
            r#"<rect x="{LABEL}" y="{y:.2}" width="{w:.2}" height="18" fill="{colour}"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.2}" y="{:.2}">{}</text>"#,
            LABEL + w + 6.0,
            y + 14.0,
            xml_escape(&detail)
        );
    }
    s.push_str("</svg>\n");
    s
}

// ----- the command line --------------------------------------------------------------------------

const USAGE: &str = "\
usage: vpc-cni plan (--subnet CIDR | --subnet-free N) --instance TYPE:COUNT:PODS [--instance ...]
                    [--warm-eni-target N] [--warm-ip-target N] [--minimum-ip-target N]
                    [--prefix-delegation --warm-prefix-target N] [--max-eni N]
                    [--json] [--svg FILE]

Plans a subnet's addresses for a set of EKS nodes: how many pods are hosted, how many subnet
addresses are consumed and left, and per instance the ENIs and the active and warm addresses
(and with prefix delegation the /28 blocks). Each instance is launched in turn and run through
ipamd's own warm-pool planner to its steady state, against a model of the subnet that refuses
as EC2 does once it runs out; every ENI's own primary address counts, the node's included.

  --subnet CIDR             a fresh subnet, /16 to /28 (AWS keeps 5 addresses of each)
  --subnet-free N           or only the number of free addresses (every 16 of them taken as a
                            free /28: the best case)
  --instance TYPE:COUNT:PODS  COUNT instances of TYPE with PODS pods each that need a VPC address
                            (host-network pods not counted); repeat for more groups
  --warm-eni-target N       WARM_ENI_TARGET (default 1)
  --warm-ip-target N        WARM_IP_TARGET (default unset)
  --minimum-ip-target N     MINIMUM_IP_TARGET (default unset)
  --prefix-delegation       ENABLE_PREFIX_DELEGATION=true (Nitro and bare-metal types)
  --warm-prefix-target N    WARM_PREFIX_TARGET (default 0)
  --max-eni N               MAX_ENI (default unset)
  --json                    print the report as JSON instead of a table
  --svg FILE                also write a chart of consumed and left addresses per group

Example: vpc-cni plan --subnet 10.0.0.0/24 --instance m5.large:3:10

Exit status: 0 when every pod is hosted, 1 when some are not (the report is still printed),
2 for bad arguments or an unwritable --svg file, 3 for an internal error.
";

/// Parsed command line.
#[derive(Debug, Default)]
struct Args {
    subnet: Option<SubnetInput>,
    settings: Settings,
    groups: Vec<GroupInput>,
    json: bool,
    svg: Option<String>,
}

fn parse_group(v: &str) -> Result<GroupInput, String> {
    let bad = || {
        format!(
            "--instance {v:?}: expected TYPE:COUNT:PODS, e.g. m5.large:3:10 (COUNT >= 1, PODS >= 0)"
        )
    };
    let mut parts = v.split(':');
    let (Some(t), Some(c), Some(p), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let count = c.parse::<u32>().map_err(|_| bad())?;
    let pods = p.parse::<u32>().map_err(|_| bad())?;
    if t.is_empty() || count == 0 {
        return Err(bad());
    }
    Ok(GroupInput {
        instance_type: t.to_string(),
        count,
        pods,
    })
}

fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let mut out = Args::default();
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        let name = flag.name.as_str();
        match name {
            "-h" | "--help" => return Ok(None),
            "--subnet" | "--subnet-free" if out.subnet.is_some() => {
                return Err("give one subnet: --subnet CIDR or --subnet-free N".into())
            }
            "--subnet" => {
                let v = flags.value(&flag)?;
                let c: Ipv4Cidr = v.parse().map_err(|e| {
                    format!("--subnet {v:?}: {e}; expected an IPv4 CIDR such as 10.0.0.0/24")
                })?;
                out.subnet = Some(SubnetInput::Cidr(c));
            }
            "--subnet-free" => out.subnet = Some(SubnetInput::Free(flags.whole(&flag, 0)?)),
            "--instance" => out.groups.push(parse_group(&flags.value(&flag)?)?),
            "--warm-eni-target" => out.settings.warm_eni_target = flags.whole(&flag, 0)?,
            "--warm-ip-target" => out.settings.warm_ip_target = flags.whole(&flag, 0)?,
            "--minimum-ip-target" => out.settings.minimum_ip_target = flags.whole(&flag, 0)?,
            "--warm-prefix-target" => out.settings.warm_prefix_target = flags.whole(&flag, 0)?,
            "--max-eni" => out.settings.max_eni = Some(flags.whole(&flag, 1)?),
            "--svg" => out.svg = Some(flags.value(&flag)?),
            "--prefix-delegation" => out.settings.prefix_delegation = flag.switch()?,
            "--json" => out.json = flag.switch()?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if out.subnet.is_none() {
        return Err("a subnet is required: --subnet CIDR or --subnet-free N".into());
    }
    if out.groups.is_empty() {
        return Err("at least one --instance TYPE:COUNT:PODS is required".into());
    }
    Ok(Some(out))
}

/// Runs `vpc-cni plan` with the arguments after the command name.
pub fn main(args: &[String]) -> ExitCode {
    let args = match parse(args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            super::out(USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("vpc-cni plan: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(subnet) = args.subnet else {
        return ExitCode::from(2);
    };
    let input = PlanInput {
        subnet,
        settings: args.settings,
        groups: args.groups,
    };
    let report = match compute(&input) {
        Ok(r) => r,
        Err(e @ PlanError::Input(_)) => {
            eprintln!("vpc-cni plan: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("vpc-cni plan: {e}");
            return ExitCode::from(3);
        }
    };
    if let Some(path) = &args.svg {
        if let Err(e) = std::fs::write(path, render_svg(&report)) {
            eprintln!("vpc-cni plan: cannot write --svg {path:?}: {e}");
            return ExitCode::from(2);
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => super::out(&format!("{j}\n")),
            Err(e) => {
                eprintln!("vpc-cni plan: {}", internal("JSON", e));
                return ExitCode::from(3);
            }
        }
    } else {
        super::out(&render_table(&report));
    }
    if report.fits() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
