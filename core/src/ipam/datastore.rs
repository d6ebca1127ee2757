//! The node's address datastore: ENIs, their secondary addresses and prefixes, and pod assignments.
//!
//! Mirrors upstream's `DataStore` (one per network card) with these choices:
//! - Assignments are keyed by the CNI triple [`IpamKey`] (network name, container id, ifname); an ADD
//!   with a known key returns the same address, a DEL of an unknown key is reported as
//!   [`ReleaseOutcome::Unknown`], and a DEL also tries upstream's legacy key
//!   (`_migrated-from-cri`, `unknown`).
//! - Address choice is deterministic: ENIs in device-number order, CIDRs in address order, the lowest
//!   address that is neither assigned nor cooling (upstream walks Go maps, i.e. random order).
//! - A released address cools down for `ip_cooldown` (IP_COOLDOWN_PERIOD, default 30 s) before reuse;
//!   "cooling" means `now - released_at <= cooldown`, as upstream.
//! - In secondary-address mode only /32s serve pods, in prefix mode only prefixes; CIDRs of the other
//!   mode stay until the planner releases them (see [`crate::ipam::pool`]). The one exception is the
//!   prefix-mode fallback ([`Datastore::set_prefix_fallback`]): while the subnet has no free /28, the
//!   planner grows with single /32s and they serve pods too, after every prefix address.
//! - Unmanaged ENIs and ENIs excluded for pods are tracked (they occupy ENI slots) but never serve
//!   pods and are not counted in [`PoolStats`].

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::ops::RangeInclusive;
use core::time::Duration;

use super::checkpoint::{CheckpointData, CheckpointEntry, CheckpointMetadata, CHECKPOINT_VERSION};
use super::Instant;
use crate::net::{Ipv4Cidr, Ipv6Cidr};

/// NetworkName upstream stored for allocations migrated from the CRI (ipamd <= 1.7); DEL retries with it.
pub const LEGACY_NETWORK_NAME: &str = "_migrated-from-cri";
/// IfName upstream stored for allocations migrated from the CRI; DEL retries with it.
pub const LEGACY_IF_NAME: &str = "unknown";
/// Upstream's default IP_COOLDOWN_PERIOD.
pub const DEFAULT_IP_COOLDOWN: Duration = Duration::from_secs(30);
/// Addresses in an IPv4 /28 prefix (upstream `GetPrefixDelegationDefaults`).
pub const IPS_PER_PREFIX: u32 = 16;

/// Which kind of address block serves pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressMode {
    /// IPv4 secondary addresses (/32), the default.
    SecondaryIpv4,
    /// IPv4 /28 prefixes (ENABLE_PREFIX_DELEGATION=true).
    PrefixIpv4,
    /// IPv6: addresses from the /80 prefix(es) on the ENI(s); no warm pool.
    Ipv6,
}

/// Settings of a [`Datastore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatastoreConfig {
    /// Which blocks serve pods.
    pub mode: AddressMode,
    /// How long a released address is kept from reuse (IP_COOLDOWN_PERIOD).
    pub ip_cooldown: Duration,
}

impl Default for DatastoreConfig {
    fn default() -> Self {
        DatastoreConfig {
            mode: AddressMode::SecondaryIpv4,
            ip_cooldown: DEFAULT_IP_COOLDOWN,
        }
    }
}

/// The CNI primary key of an assignment.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpamKey {
    /// CNI network name (`aws-cni`).
    pub network_name: String,
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME (`eth0`).
    pub if_name: String,
}

impl IpamKey {
    /// The key from its three parts.
    pub fn new(network_name: &str, container_id: &str, if_name: &str) -> Self {
        IpamKey {
            network_name: network_name.into(),
            container_id: container_id.into(),
            if_name: if_name.into(),
        }
    }

    fn is_zero(&self) -> bool {
        self.network_name.is_empty() && self.container_id.is_empty() && self.if_name.is_empty()
    }
}

impl fmt::Display for IpamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.network_name, self.container_id, self.if_name
        )
    }
}

/// What we know of the pod an address serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMetadata {
    /// Pod namespace (K8S_POD_NAMESPACE).
    pub namespace: String,
    /// Pod name (K8S_POD_NAME).
    pub name: String,
    /// Interfaces the pod has from us (upstream `interfacesCount`; 0 in old checkpoints means 1).
    pub interfaces_count: u32,
}

/// A live assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// Its key.
    pub key: IpamKey,
    /// Its pod.
    pub metadata: PodMetadata,
    /// Wall-clock time of the assignment in Unix nanoseconds (checkpoint `allocationTimestamp`).
    pub allocated_unix_nanos: i64,
}

/// A CNI ADD request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignRequest {
    /// The CNI key.
    pub key: IpamKey,
    /// The pod.
    pub metadata: PodMetadata,
    /// Wall-clock time for the checkpoint's `allocationTimestamp` (Unix nanoseconds).
    pub unix_nanos: i64,
}

/// How an ENI is known to the datastore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EniSpec {
    /// ENI id (`eni-…`).
    pub id: String,
    /// Device index on the instance (0 = primary ENI).
    pub device_number: u32,
    /// Network card index (0 unless ENABLE_MULTI_NIC).
    pub network_card: u32,
    /// Subnet id.
    pub subnet_id: String,
    /// The ENI's own primary private IPv4 address (never given to pods).
    pub primary_ipv4: Option<Ipv4Addr>,
    /// The instance's primary ENI.
    pub is_primary: bool,
    /// A trunk ENI (security groups for pods); never gets addresses from the planner, never freed.
    pub is_trunk: bool,
    /// An EFA ENI; never freed.
    pub is_efa: bool,
    /// Tagged `node.k8s.amazonaws.com/no_manage=true` (or untagged with MANAGE_UNTAGGED_ENI=false).
    pub unmanaged: bool,
    /// Excluded from pod addresses (upstream `IsExcludedForPodIPs`).
    pub excluded_for_pods: bool,
    /// Its MAC address (how the node's kernel knows it), when known.
    pub mac: Option<crate::net::MacAddr>,
    /// Its subnet's IPv4 CIDR (the per-ENI route table's gateway is its base + 1), when known.
    pub subnet_ipv4_cidr: Option<Ipv4Cidr>,
}

/// An ENI in the datastore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eni {
    spec: EniSpec,
    created_at: Instant,
    v4: BTreeSet<Ipv4Cidr>,
    v6: BTreeSet<Ipv6Cidr>,
}

impl Eni {
    /// How it was added.
    pub fn spec(&self) -> &EniSpec {
        &self.spec
    }
    /// ENI id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }
    /// Device number.
    pub fn device_number(&self) -> u32 {
        self.spec.device_number
    }
    /// When it was added to the datastore (for the one-minute minimum lifetime).
    pub fn created_at(&self) -> Instant {
        self.created_at
    }
    /// Policy-routing table of this ENI (card 0: device number + 1).
    pub fn route_table_id(&self) -> u32 {
        route_table_id(self.spec.network_card, self.spec.device_number)
    }
    /// Its IPv4 secondary addresses (/32) and prefixes, in address order.
    pub fn ipv4_cidrs(&self) -> impl DoubleEndedIterator<Item = &Ipv4Cidr> {
        self.v4.iter()
    }
    /// Its IPv6 prefixes.
    pub fn ipv6_prefixes(&self) -> impl Iterator<Item = &Ipv6Cidr> {
        self.v6.iter()
    }
    /// Number of IPv4 CIDRs (secondary addresses + prefixes): what EC2's per-ENI limit counts.
    pub fn ipv4_cidr_count(&self) -> usize {
        self.v4.len()
    }
    /// May serve pods (not unmanaged, not excluded).
    pub fn serves_pods(&self) -> bool {
        !self.spec.unmanaged && !self.spec.excluded_for_pods
    }
}

/// Route table for an ENI: card 0 uses device number + 1; card N>0 uses 10000 + device + 100*N
/// (upstream `CalculateRouteTableId`).
pub fn route_table_id(network_card: u32, device_number: u32) -> u32 {
    if network_card == 0 {
        device_number + 1
    } else {
        10_000 + device_number + 100 * network_card
    }
}

/// What the CNI plugin needs to wire a pod address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodAddress {
    /// The pod's address.
    pub address: IpAddr,
    /// The ENI it lives on.
    pub eni_id: String,
    /// That ENI's device number.
    pub device_number: u32,
    /// That ENI's network card.
    pub network_card: u32,
    /// That ENI's route table (the from-pod rule's table; unused for the primary ENI, which uses main).
    pub route_table_id: u32,
    /// Whether the ENI is the instance's primary ENI (no from-pod rule then).
    pub eni_is_primary: bool,
}

/// Result of [`Datastore::assign`].
#[derive(Debug, PartialEq, Eq)]
pub struct Assigned {
    /// The address and its ENI.
    pub pod: PodAddress,
    /// True when the key was already assigned (idempotent ADD): nothing changed.
    pub existing: bool,
    /// Reverts this assignment if the checkpoint write fails.
    pub undo: Undo,
}

/// A released assignment.
#[derive(Debug, PartialEq, Eq)]
pub struct Released {
    /// The address and its ENI.
    pub pod: PodAddress,
    /// The allocation as it was.
    pub allocation: Allocation,
    /// Interfaces to tear down (at least 1).
    pub interfaces_count: u32,
    /// True when found only under upstream's legacy key.
    pub legacy_key: bool,
    /// Reverts this release if the checkpoint write fails.
    pub undo: Undo,
}

/// Result of [`Datastore::unassign`].
#[derive(Debug, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The address was released and starts cooling down.
    Released(Box<Released>),
    /// Neither the key nor its legacy form is known: nothing to do (upstream `ErrUnknownPod`).
    Unknown,
}

/// A token that reverts one assign or unassign; see [`Datastore::undo`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "keep the undo token until the checkpoint is written"]
pub struct Undo(UndoOp);

#[derive(Debug, PartialEq, Eq)]
enum UndoOp {
    Nothing,
    Unassign {
        address: IpAddr,
        previous_release: Option<Instant>,
    },
    Reassign {
        address: IpAddr,
        allocation: Allocation,
    },
}

/// Pool counters for the serving mode (pod-serving ENIs only). Cooling addresses count as available,
/// as upstream's `AvailableAddresses()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Addresses in CIDRs of the serving mode.
    pub total: u32,
    /// Of those, assigned to pods.
    pub assigned: u32,
    /// Of those, released less than the cooldown ago.
    pub cooling: u32,
    /// IPv4 prefixes (any mode).
    pub total_prefixes: u32,
    /// IPv4 prefixes with no assigned address.
    pub free_prefixes: u32,
    /// ENIs in the datastore (all kinds).
    pub enis: u32,
}

impl PoolStats {
    /// `total - assigned` (cooling included, as upstream).
    pub fn available(&self) -> u32 {
        self.total.saturating_sub(self.assigned)
    }
}

/// Per-ENI counters for metrics and introspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EniCounters {
    /// ENI id.
    pub eni_id: String,
    /// Device number.
    pub device_number: u32,
    /// IPv4 secondary addresses on the ENI.
    pub secondary_addresses: u32,
    /// IPv4 prefixes on the ENI.
    pub prefixes: u32,
    /// Addresses usable in the serving mode.
    pub total: u32,
    /// Assigned addresses.
    pub assigned: u32,
    /// Cooling addresses.
    pub cooling: u32,
}

/// An allocation from the checkpoint that matched no ENI CIDR and was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleAllocation {
    /// The allocation's key.
    pub key: IpamKey,
    /// The address text as found in the file.
    pub address: String,
}

/// Result of [`Datastore::restore`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Allocations attached to an ENI CIDR.
    pub restored: usize,
    /// Allocations whose address is on no ENI (presumed stale, dropped as upstream does).
    pub stale: Vec<StaleAllocation>,
}

/// Datastore errors; each names the operation and the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatastoreError {
    /// add ENI: the id is already present.
    DuplicateEni(String),
    /// The ENI id is not in the datastore.
    UnknownEni { op: &'static str, eni: String },
    /// add address/prefix: it overlaps a CIDR already on another ENI.
    CidrOnOtherEni {
        cidr: String,
        eni: String,
        other_eni: String,
    },
    /// add address/prefix: the block is not of the expected size.
    WrongCidrSize {
        cidr: String,
        expected: &'static str,
    },
    /// remove address/prefix: it is not on that ENI.
    UnknownCidr { eni: String, cidr: String },
    /// remove address/prefix/ENI without force: addresses in it are assigned to pods.
    InUse {
        op: &'static str,
        object: String,
        assigned: usize,
    },
    /// assign: no free address; counters say why.
    NoFreeAddress {
        key: String,
        total: u32,
        assigned: u32,
        cooling: u32,
    },
    /// restore: two allocations (or an allocation and a live one) claim the same address.
    DuplicateAllocation {
        address: IpAddr,
        key: String,
        other: String,
    },
    /// restore: the checkpoint is not `vpc-cni-ipam/1`.
    CheckpointVersion(String),
}

impl fmt::Display for DatastoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatastoreError::DuplicateEni(eni) => write!(f, "add ENI {eni}: already in the datastore"),
            DatastoreError::UnknownEni { op, eni } => write!(f, "{op}: ENI {eni} is not in the datastore"),
            DatastoreError::CidrOnOtherEni { cidr, eni, other_eni } => {
                write!(f, "add {cidr} to ENI {eni}: overlaps an address block already on ENI {other_eni}")
            }
            DatastoreError::WrongCidrSize { cidr, expected } => {
                write!(f, "add {cidr}: expected {expected}")
            }
            DatastoreError::UnknownCidr { eni, cidr } => write!(f, "remove {cidr} from ENI {eni}: not on that ENI"),
            DatastoreError::InUse { op, object, assigned } => {
                write!(f, "{op} {object}: {assigned} address(es) still assigned to pods")
            }
            DatastoreError::NoFreeAddress { key, total, assigned, cooling } => write!(
                f,
                "assign an address to {key}: no free address ({total} total, {assigned} assigned, {cooling} cooling down)"
            ),
            DatastoreError::DuplicateAllocation { address, key, other } => {
                write!(f, "restore {key}: address {address} is already assigned to {other}")
            }
            DatastoreError::CheckpointVersion(v) => {
                write!(f, "restore checkpoint: version {v:?} is not supported (only {CHECKPOINT_VERSION:?})")
            }
        }
    }
}

/// The datastore of one network card.
#[derive(Clone, Debug)]
pub struct Datastore {
    cfg: DatastoreConfig,
    /// Sorted by (device number, id).
    enis: Vec<Eni>,
    assigned: BTreeMap<IpAddr, Allocation>,
    by_key: BTreeMap<IpamKey, IpAddr>,
    /// Release time of unassigned addresses still tracked for cooldown.
    released_at: BTreeMap<IpAddr, Instant>,
    /// Prefix mode: /32s serve pods too (the planner's fallback while no /28 is free).
    prefix_fallback: bool,
}

impl Datastore {
    /// An empty datastore.
    pub fn new(cfg: DatastoreConfig) -> Self {
        Datastore {
            cfg,
            enis: Vec::new(),
            assigned: BTreeMap::new(),
            by_key: BTreeMap::new(),
            released_at: BTreeMap::new(),
            prefix_fallback: false,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &DatastoreConfig {
        &self.cfg
    }

    /// Which blocks serve pods.
    pub fn mode(&self) -> AddressMode {
        self.cfg.mode
    }

    /// Prefix mode only: whether secondary /32s serve pods too, after every address of the prefixes
    /// (the planner turns this on while the subnet has no free /28 and it grows with single
    /// addresses, and off once a prefix could be had again). No effect in the other modes.
    pub fn set_prefix_fallback(&mut self, on: bool) {
        self.prefix_fallback = on;
    }

    /// Whether /32s serve pods in prefix mode (see [`Datastore::set_prefix_fallback`]).
    pub fn prefix_fallback(&self) -> bool {
        self.prefix_fallback && self.cfg.mode == AddressMode::PrefixIpv4
    }

    // ----- ENIs and blocks -------------------------------------------------------------------

    /// Adds an ENI (found in IMDS or just attached). `now` starts its minimum lifetime.
    pub fn add_eni(&mut self, spec: EniSpec, now: Instant) -> Result<(), DatastoreError> {
        if self.eni_index(&spec.id).is_some() {
            return Err(DatastoreError::DuplicateEni(spec.id));
        }
        let pos = self
            .enis
            .iter()
            .position(|e| {
                (e.spec.device_number, e.spec.id.as_str()) > (spec.device_number, spec.id.as_str())
            })
            .unwrap_or(self.enis.len());
        self.enis.insert(
            pos,
            Eni {
                spec,
                created_at: now,
                v4: BTreeSet::new(),
                v6: BTreeSet::new(),
            },
        );
        Ok(())
    }

    /// Adds secondary addresses to an ENI. Addresses already on that ENI are skipped; returns how many
    /// were new. Nothing is added if one overlaps a block on another ENI.
    pub fn add_ipv4_addresses(
        &mut self,
        eni: &str,
        addresses: &[Ipv4Addr],
    ) -> Result<usize, DatastoreError> {
        let cidrs: Vec<Ipv4Cidr> = addresses.iter().map(|a| Ipv4Cidr::host(*a)).collect();
        self.add_v4_cidrs(eni, &cidrs)
    }

    /// Adds /28 prefixes to an ENI. Prefixes already on that ENI are skipped; returns how many were new.
    pub fn add_ipv4_prefixes(
        &mut self,
        eni: &str,
        prefixes: &[Ipv4Cidr],
    ) -> Result<usize, DatastoreError> {
        if let Some(p) = prefixes.iter().find(|p| p.prefix_len() != 28) {
            return Err(DatastoreError::WrongCidrSize {
                cidr: p.to_string(),
                expected: "an IPv4 /28 prefix",
            });
        }
        self.add_v4_cidrs(eni, prefixes)
    }

    fn add_v4_cidrs(&mut self, eni: &str, cidrs: &[Ipv4Cidr]) -> Result<usize, DatastoreError> {
        self.add_blocks(
            eni,
            "add addresses",
            cidrs,
            |e| &e.v4,
            |e| &mut e.v4,
            Ipv4Cidr::overlaps,
        )
    }

    /// Adds IPv6 prefixes (IPv6 mode: the primary ENI's /80).
    pub fn add_ipv6_prefixes(
        &mut self,
        eni: &str,
        prefixes: &[Ipv6Cidr],
    ) -> Result<usize, DatastoreError> {
        self.add_blocks(
            eni,
            "add IPv6 prefixes",
            prefixes,
            |e| &e.v6,
            |e| &mut e.v6,
            Ipv6Cidr::overlaps,
        )
    }

    /// Adds address blocks of one family to an ENI; refuses a block overlapping one held by any ENI
    /// (the same block on the same ENI is a no-op). Returns how many were new.
    fn add_blocks<C: Copy + Ord + core::fmt::Display>(
        &mut self,
        eni: &str,
        op: &'static str,
        blocks: &[C],
        held: fn(&Eni) -> &BTreeSet<C>,
        held_mut: fn(&mut Eni) -> &mut BTreeSet<C>,
        overlaps: fn(&C, &C) -> bool,
    ) -> Result<usize, DatastoreError> {
        let idx = self
            .eni_index(eni)
            .ok_or_else(|| DatastoreError::UnknownEni {
                op,
                eni: eni.into(),
            })?;
        for c in blocks {
            for (i, other) in self.enis.iter().enumerate() {
                if held(other)
                    .iter()
                    .any(|o| overlaps(o, c) && !(i == idx && o == c))
                {
                    return Err(DatastoreError::CidrOnOtherEni {
                        cidr: c.to_string(),
                        eni: eni.into(),
                        other_eni: other.spec.id.clone(),
                    });
                }
            }
        }
        let set = held_mut(&mut self.enis[idx]);
        Ok(blocks.iter().filter(|c| set.insert(**c)).count())
    }

    /// Removes a secondary address or prefix from an ENI. Without `force` it refuses if any address in
    /// it is assigned; with `force` (the ENI lost it in EC2) the pods' allocations are dropped and
    /// returned.
    pub fn remove_ipv4_cidr(
        &mut self,
        eni: &str,
        cidr: Ipv4Cidr,
        force: bool,
    ) -> Result<Vec<Allocation>, DatastoreError> {
        let idx = self
            .eni_index(eni)
            .ok_or_else(|| DatastoreError::UnknownEni {
                op: "remove address",
                eni: eni.into(),
            })?;
        if !self.enis[idx].v4.contains(&cidr) {
            return Err(DatastoreError::UnknownCidr {
                eni: eni.into(),
                cidr: cidr.to_string(),
            });
        }
        let in_use = self.assigned_in_v4(&cidr);
        if in_use > 0 && !force {
            return Err(DatastoreError::InUse {
                op: "remove",
                object: cidr.to_string(),
                assigned: in_use,
            });
        }
        let dropped = self.forget_v4(&cidr);
        self.enis[idx].v4.remove(&cidr);
        Ok(dropped)
    }

    /// Removes an ENI. Without `force` it refuses if pods hold addresses on it; with `force` (the ENI
    /// was detached behind our back) their allocations are dropped and returned.
    pub fn remove_eni(
        &mut self,
        eni: &str,
        force: bool,
    ) -> Result<Vec<Allocation>, DatastoreError> {
        let idx = self
            .eni_index(eni)
            .ok_or_else(|| DatastoreError::UnknownEni {
                op: "remove ENI",
                eni: eni.into(),
            })?;
        let in_use = self.assigned_on_eni(idx);
        if in_use > 0 && !force {
            return Err(DatastoreError::InUse {
                op: "remove ENI",
                object: eni.into(),
                assigned: in_use,
            });
        }
        let e = self.enis.remove(idx);
        let mut dropped = Vec::new();
        for c in &e.v4 {
            dropped.extend(self.forget_v4(c));
        }
        for c in &e.v6 {
            dropped.extend(self.forget_v6(c));
        }
        Ok(dropped)
    }

    fn forget_v4(&mut self, cidr: &Ipv4Cidr) -> Vec<Allocation> {
        self.forget_range(IpAddr::V4(cidr.addr())..=IpAddr::V4(cidr.last()))
    }

    fn forget_v6(&mut self, cidr: &Ipv6Cidr) -> Vec<Allocation> {
        self.forget_range(IpAddr::V6(cidr.addr())..=IpAddr::V6(cidr.last()))
    }

    /// Drops every allocation and cooldown entry in `range`; returns the dropped allocations.
    fn forget_range(&mut self, range: RangeInclusive<IpAddr>) -> Vec<Allocation> {
        let addrs: Vec<IpAddr> = self
            .assigned
            .range(range.clone())
            .map(|(a, _)| *a)
            .collect();
        let mut out = Vec::new();
        for a in addrs {
            if let Some(al) = self.assigned.remove(&a) {
                self.by_key.remove(&al.key);
                out.push(al);
            }
        }
        let cooling: Vec<IpAddr> = self.released_at.range(range).map(|(a, _)| *a).collect();
        for a in cooling {
            self.released_at.remove(&a);
        }
        out
    }

    // ----- pod assignment ----------------------------------------------------------------------

    /// CNI ADD: gives the key an address, or returns the one it already has.
    pub fn assign(&mut self, req: AssignRequest, now: Instant) -> Result<Assigned, DatastoreError> {
        if let Some(addr) = self.by_key.get(&req.key).copied() {
            if let Some(pod) = self.pod_address(addr) {
                return Ok(Assigned {
                    pod,
                    existing: true,
                    undo: Undo(UndoOp::Nothing),
                });
            }
        }
        self.prune_cooldown(now);
        let Some(address) = self.find_free(now) else {
            let s = self.stats(now);
            return Err(DatastoreError::NoFreeAddress {
                key: req.key.to_string(),
                total: s.total,
                assigned: s.assigned,
                cooling: s.cooling,
            });
        };
        let previous_release = self.released_at.remove(&address);
        self.by_key.insert(req.key.clone(), address);
        self.assigned.insert(
            address,
            Allocation {
                key: req.key,
                metadata: req.metadata,
                allocated_unix_nanos: req.unix_nanos,
            },
        );
        let pod = self
            .pod_address(address)
            .ok_or_else(|| DatastoreError::UnknownEni {
                op: "assign",
                eni: String::from("(none holds the chosen address)"),
            })?;
        Ok(Assigned {
            pod,
            existing: false,
            undo: Undo(UndoOp::Unassign {
                address,
                previous_release,
            }),
        })
    }

    /// CNI DEL: releases the key's address (trying upstream's legacy key too); the address then cools down.
    pub fn unassign(&mut self, key: &IpamKey, now: Instant) -> ReleaseOutcome {
        let (address, legacy_key) = match self.by_key.get(key) {
            Some(a) => (*a, false),
            None => {
                let legacy = IpamKey {
                    network_name: LEGACY_NETWORK_NAME.into(),
                    container_id: key.container_id.clone(),
                    if_name: LEGACY_IF_NAME.into(),
                };
                match self.by_key.get(&legacy) {
                    Some(a) => (*a, true),
                    None => return ReleaseOutcome::Unknown,
                }
            }
        };
        let Some(pod) = self.pod_address(address) else {
            return ReleaseOutcome::Unknown;
        };
        let Some(allocation) = self.assigned.remove(&address) else {
            return ReleaseOutcome::Unknown;
        };
        self.by_key.remove(&allocation.key);
        self.prune_cooldown(now);
        self.released_at.insert(address, now);
        let interfaces_count = allocation.metadata.interfaces_count.max(1);
        ReleaseOutcome::Released(Box::new(Released {
            pod,
            interfaces_count,
            legacy_key,
            undo: Undo(UndoOp::Reassign {
                address,
                allocation: allocation.clone(),
            }),
            allocation,
        }))
    }

    /// Reverts the assign or unassign that returned `undo` (call it at once when the checkpoint write
    /// after that change failed, as upstream rolls back).
    pub fn undo(&mut self, undo: Undo) {
        match undo.0 {
            UndoOp::Nothing => {}
            UndoOp::Unassign {
                address,
                previous_release,
            } => {
                if let Some(al) = self.assigned.remove(&address) {
                    self.by_key.remove(&al.key);
                }
                if let Some(t) = previous_release {
                    self.released_at.insert(address, t);
                }
            }
            UndoOp::Reassign {
                address,
                allocation,
            } => {
                self.released_at.remove(&address);
                self.by_key.insert(allocation.key.clone(), address);
                self.assigned.insert(address, allocation);
            }
        }
    }

    /// The address a key holds.
    pub fn lookup(&self, key: &IpamKey) -> Option<PodAddress> {
        self.by_key.get(key).and_then(|a| self.pod_address(*a))
    }

    /// Live allocations in address order.
    pub fn allocations(&self) -> impl Iterator<Item = (&IpAddr, &Allocation)> {
        self.assigned.iter()
    }

    /// Whether `addr` is assigned to a pod.
    pub fn is_assigned(&self, addr: IpAddr) -> bool {
        self.assigned.contains_key(&addr)
    }

    /// Whether `addr` was released less than the cooldown ago.
    pub fn is_cooling(&self, addr: IpAddr, now: Instant) -> bool {
        self.released_at
            .get(&addr)
            .is_some_and(|t| now.saturating_since(*t) <= self.cfg.ip_cooldown)
    }

    /// Addresses released less than the cooldown ago, with their release time.
    pub fn cooling(&self, now: Instant) -> impl Iterator<Item = (IpAddr, Instant)> + '_ {
        let cd = self.cfg.ip_cooldown;
        self.released_at
            .iter()
            .filter(move |(_, t)| now.saturating_since(**t) <= cd)
            .map(|(a, t)| (*a, *t))
    }

    fn prune_cooldown(&mut self, now: Instant) {
        let cd = self.cfg.ip_cooldown;
        self.released_at
            .retain(|_, t| now.saturating_since(*t) <= cd);
    }

    fn free_here(&self, a: IpAddr, now: Instant) -> bool {
        !self.assigned.contains_key(&a) && !self.is_cooling(a, now)
    }

    fn find_free(&self, now: Instant) -> Option<IpAddr> {
        if self.prefix_fallback() {
            // Prefix addresses first, so the fallback /32s drain once prefixes are back.
            return self
                .find_free_v4(now, |c| !c.is_host())
                .or_else(|| self.find_free_v4(now, Ipv4Cidr::is_host));
        }
        for e in self.enis.iter().filter(|e| e.serves_pods()) {
            match self.cfg.mode {
                AddressMode::SecondaryIpv4 | AddressMode::PrefixIpv4 => {
                    if let Some(a) = self.free_in(e, now, |c| self.in_mode(c)) {
                        return Some(a);
                    }
                }
                AddressMode::Ipv6 => {
                    for c in &e.v6 {
                        // Only assigned/cooling addresses are skipped, so this ends within their count + 1.
                        let mut i: u128 = 0;
                        while let Some(a) = c.nth(i) {
                            if self.free_here(IpAddr::V6(a), now) {
                                return Some(IpAddr::V6(a));
                            }
                            i += 1;
                        }
                    }
                }
            }
        }
        None
    }

    /// The lowest free address in the blocks `pick` selects, ENIs in device order.
    fn find_free_v4(&self, now: Instant, pick: impl Fn(&Ipv4Cidr) -> bool) -> Option<IpAddr> {
        self.enis
            .iter()
            .filter(|e| e.serves_pods())
            .find_map(|e| self.free_in(e, now, &pick))
    }

    /// The lowest free address of one ENI's IPv4 blocks that `pick` selects.
    fn free_in(&self, e: &Eni, now: Instant, pick: impl Fn(&Ipv4Cidr) -> bool) -> Option<IpAddr> {
        for c in e.v4.iter().filter(|c| pick(c)) {
            let mut i = 0;
            while let Some(a) = c.nth(i) {
                if self.free_here(IpAddr::V4(a), now) {
                    return Some(IpAddr::V4(a));
                }
                i += 1;
            }
        }
        None
    }

    /// Whether an IPv4 block serves pods in the current mode (in prefix mode with the fallback on,
    /// /32s serve too).
    pub fn in_mode(&self, c: &Ipv4Cidr) -> bool {
        self.in_mode_as(c, self.prefix_fallback)
    }

    /// [`Datastore::in_mode`] as if the prefix-mode fallback were `prefix_fallback` (the planner
    /// judges the pool without the fallback /32s once it may try prefixes again).
    pub fn in_mode_as(&self, c: &Ipv4Cidr, prefix_fallback: bool) -> bool {
        match self.cfg.mode {
            AddressMode::SecondaryIpv4 => c.is_host(),
            AddressMode::PrefixIpv4 => !c.is_host() || prefix_fallback,
            AddressMode::Ipv6 => false,
        }
    }

    fn owner_of(&self, addr: IpAddr) -> Option<&Eni> {
        self.enis.iter().find(|e| match addr {
            IpAddr::V4(a) => e.v4.iter().any(|c| c.contains(a)),
            IpAddr::V6(a) => e.v6.iter().any(|c| c.contains(a)),
        })
    }

    fn pod_address(&self, address: IpAddr) -> Option<PodAddress> {
        self.owner_of(address).map(|e| PodAddress {
            address,
            eni_id: e.spec.id.clone(),
            device_number: e.spec.device_number,
            network_card: e.spec.network_card,
            route_table_id: e.route_table_id(),
            eni_is_primary: e.spec.is_primary,
        })
    }

    // ----- counting -----------------------------------------------------------------------------

    /// Assigned addresses inside an IPv4 block.
    pub fn assigned_in_v4(&self, c: &Ipv4Cidr) -> usize {
        self.assigned
            .range(IpAddr::V4(c.addr())..=IpAddr::V4(c.last()))
            .count()
    }

    /// Cooling addresses inside an IPv4 block.
    pub fn cooling_in_v4(&self, c: &Ipv4Cidr, now: Instant) -> usize {
        let cd = self.cfg.ip_cooldown;
        self.released_at
            .range(IpAddr::V4(c.addr())..=IpAddr::V4(c.last()))
            .filter(|(_, t)| now.saturating_since(**t) <= cd)
            .count()
    }

    fn assigned_on_eni(&self, idx: usize) -> usize {
        let e = &self.enis[idx];
        let v4: usize = e.v4.iter().map(|c| self.assigned_in_v4(c)).sum();
        let v6: usize =
            e.v6.iter()
                .map(|c| {
                    self.assigned
                        .range(IpAddr::V6(c.addr())..=IpAddr::V6(c.last()))
                        .count()
                })
                .sum();
        v4 + v6
    }

    /// Pods with addresses on the ENI.
    pub fn eni_assigned(&self, eni: &Eni) -> usize {
        self.eni_index(&eni.spec.id)
            .map_or(0, |i| self.assigned_on_eni(i))
    }

    /// Whether any IPv4 address on the ENI is cooling (upstream `hasIPInCooling`).
    pub fn eni_has_cooling(&self, eni: &Eni, now: Instant) -> bool {
        eni.v4.iter().any(|c| self.cooling_in_v4(c, now) > 0)
    }

    /// Pool counters in the serving mode.
    pub fn stats(&self, now: Instant) -> PoolStats {
        self.stats_as(now, self.prefix_fallback)
    }

    /// [`Datastore::stats`] as if the prefix-mode fallback were `prefix_fallback`.
    pub fn stats_as(&self, now: Instant, prefix_fallback: bool) -> PoolStats {
        let mut s = PoolStats {
            enis: self.enis.len() as u32,
            ..PoolStats::default()
        };
        for e in self.enis.iter().filter(|e| e.serves_pods()) {
            match self.cfg.mode {
                AddressMode::Ipv6 => {
                    for c in &e.v6 {
                        let range = IpAddr::V6(c.addr())..=IpAddr::V6(c.last());
                        s.total = s
                            .total
                            .saturating_add(u32::try_from(c.size()).unwrap_or(u32::MAX));
                        s.assigned += self.assigned.range(range.clone()).count() as u32;
                        let cd = self.cfg.ip_cooldown;
                        s.cooling += self
                            .released_at
                            .range(range)
                            .filter(|(_, t)| now.saturating_since(**t) <= cd)
                            .count() as u32;
                    }
                }
                _ => {
                    for c in &e.v4 {
                        let assigned = self.assigned_in_v4(c) as u32;
                        if !c.is_host() {
                            s.total_prefixes += 1;
                            if assigned == 0 {
                                s.free_prefixes += 1;
                            }
                        }
                        if self.in_mode_as(c, prefix_fallback) {
                            s.total += c.size() as u32;
                            s.assigned += assigned;
                            s.cooling += self.cooling_in_v4(c, now) as u32;
                        }
                    }
                }
            }
        }
        s
    }

    /// Per-ENI counters (metrics `awscni_assigned_ip_per_eni` and friends), in device order.
    pub fn eni_counters(&self, now: Instant) -> Vec<EniCounters> {
        self.enis
            .iter()
            .map(|e| {
                let mut c = EniCounters {
                    eni_id: e.spec.id.clone(),
                    device_number: e.spec.device_number,
                    secondary_addresses: 0,
                    prefixes: 0,
                    total: 0,
                    assigned: 0,
                    cooling: 0,
                };
                for b in &e.v4 {
                    if b.is_host() {
                        c.secondary_addresses += 1;
                    } else {
                        c.prefixes += 1;
                    }
                    if self.in_mode(b) {
                        c.total += b.size() as u32;
                    }
                    c.assigned += self.assigned_in_v4(b) as u32;
                    c.cooling += self.cooling_in_v4(b, now) as u32;
                }
                c
            })
            .collect()
    }

    /// ENIs in device-number order.
    pub fn enis(&self) -> impl DoubleEndedIterator<Item = &Eni> {
        self.enis.iter()
    }

    /// One ENI by id.
    pub fn eni(&self, id: &str) -> Option<&Eni> {
        self.enis.iter().find(|e| e.spec.id == id)
    }

    fn eni_index(&self, id: &str) -> Option<usize> {
        self.enis.iter().position(|e| e.spec.id == id)
    }

    /// The trunk ENI, if one is attached.
    pub fn trunk_eni(&self) -> Option<&Eni> {
        self.enis.iter().find(|e| e.spec.is_trunk)
    }

    // ----- checkpoint ---------------------------------------------------------------------------

    /// The checkpoint of all live allocations (ENI device order, then address order).
    pub fn to_checkpoint(&self) -> CheckpointData {
        let mut allocations = Vec::with_capacity(self.assigned.len());
        for e in &self.enis {
            for c in &e.v4 {
                for (a, al) in self
                    .assigned
                    .range(IpAddr::V4(c.addr())..=IpAddr::V4(c.last()))
                {
                    allocations.push(entry(al, Some(*a), None));
                }
            }
            for c in &e.v6 {
                for (a, al) in self
                    .assigned
                    .range(IpAddr::V6(c.addr())..=IpAddr::V6(c.last()))
                {
                    allocations.push(entry(al, None, Some(*a)));
                }
            }
        }
        CheckpointData {
            version: CHECKPOINT_VERSION.into(),
            allocations,
        }
    }

    /// Loads a checkpoint the way upstream does after the ENIs are known: each allocation is attached
    /// to whichever ENI block contains its address (any mode, so pods survive a mode switch); addresses
    /// on no ENI are reported as stale and dropped. Two claims on one address are an error.
    pub fn restore(&mut self, data: &CheckpointData) -> Result<RestoreReport, DatastoreError> {
        if data.version != CHECKPOINT_VERSION {
            return Err(DatastoreError::CheckpointVersion(data.version.clone()));
        }
        let mut report = RestoreReport::default();
        for entry in &data.allocations {
            let key = IpamKey {
                network_name: entry.network_name.clone(),
                container_id: entry.container_id.clone(),
                if_name: entry.if_name.clone(),
            };
            let text = if self.cfg.mode == AddressMode::Ipv6 {
                &entry.ipv6
            } else {
                &entry.ipv4
            };
            let text = text.clone().unwrap_or_default();
            let addr: Option<IpAddr> = match self.cfg.mode {
                AddressMode::Ipv6 => text.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
                _ => text.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            };
            let on_eni = addr.filter(|a| self.owner_of(*a).is_some_and(|e| !e.spec.unmanaged));
            let (Some(addr), false) = (on_eni, key.is_zero()) else {
                report.stale.push(StaleAllocation { key, address: text });
                continue;
            };
            if let Some(other) = self.assigned.get(&addr) {
                return Err(DatastoreError::DuplicateAllocation {
                    address: addr,
                    key: key.to_string(),
                    other: other.key.to_string(),
                });
            }
            if let Some(prev) = self.by_key.get(&key) {
                let other = self
                    .assigned
                    .get(prev)
                    .map(|a| a.key.to_string())
                    .unwrap_or_default();
                return Err(DatastoreError::DuplicateAllocation {
                    address: *prev,
                    key: key.to_string(),
                    other,
                });
            }
            self.released_at.remove(&addr);
            self.by_key.insert(key.clone(), addr);
            self.assigned.insert(
                addr,
                Allocation {
                    key,
                    metadata: PodMetadata {
                        namespace: entry.metadata.k8s_pod_namespace.clone(),
                        name: entry.metadata.k8s_pod_name.clone(),
                        interfaces_count: entry.metadata.interfaces_count,
                    },
                    allocated_unix_nanos: entry.allocation_timestamp,
                },
            );
            report.restored += 1;
        }
        Ok(report)
    }
}

fn entry(al: &Allocation, v4: Option<IpAddr>, v6: Option<IpAddr>) -> CheckpointEntry {
    CheckpointEntry {
        network_name: al.key.network_name.clone(),
        container_id: al.key.container_id.clone(),
        if_name: al.key.if_name.clone(),
        ipv4: v4.map(|a| a.to_string()),
        ipv6: v6.map(|a| a.to_string()),
        allocation_timestamp: al.allocated_unix_nanos,
        metadata: CheckpointMetadata {
            k8s_pod_namespace: al.metadata.namespace.clone(),
            k8s_pod_name: al.metadata.name.clone(),
            interfaces_count: al.metadata.interfaces_count,
        },
    }
}

use alloc::string::ToString;
