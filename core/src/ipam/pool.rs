//! The warm-pool planner: (datastore, config, instance limits, now) → EC2 actions.
//!
//! It follows upstream ipamd's `updateIPPoolIfRequired` tick (`pkg/ipamd/ipamd.go`):
//! 1. if the pool is too low, grow it: first add addresses/prefixes to an ENI that has room, else
//!    create and attach an ENI (if a slot is free);
//! 2. otherwise, if it is too high and no decrease happened in the last 30 s, release free
//!    addresses/prefixes;
//! 3. then, if extra ENIs may exist, free one deletable ENI.
//!
//! "Too low"/"too high" use upstream's `datastoreTargetState` formulas (WARM_IP_TARGET /
//! MINIMUM_IP_TARGET take precedence over WARM_ENI_TARGET and WARM_PREFIX_TARGET). The planner never
//! blocks on EC2: [`Pool::plan`] returns [`Action`]s and the driver reports each result with
//! [`Pool::record_outcome`], which updates the datastore. Until every action of a plan has been
//! reported, `plan` returns nothing, which keeps upstream's one-step-at-a-time behaviour.
//!
//! Releases take effect in the datastore when planned (the blocks can no longer be given to pods),
//! as upstream deletes them from its datastore before calling EC2. Deviations from upstream are listed
//! in docs/ipam.md; the main ones: nothing cooling is ever released, growth is clamped so the total
//! does not pass max pods (and a free surplus past it, learned from EC2, is released), and choices
//! are deterministic (lowest device number first when growing, highest first when shrinking), and
//! in prefix mode a subnet without a free /28 (`InsufficientCidrBlocks`) makes the pool grow with
//! single /32s for the pause instead of failing pods (the prefix fallback, see
//! [`Failure::NoFreePrefix`]), and a burst of ADDs makes the steps follow the pods' demand
//! ([`DEMAND_WINDOW`]) instead of the warm target alone.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;
use core::time::Duration;

use super::datastore::{
    AddressMode, Datastore, DatastoreError, Eni, EniSpec, PoolStats, IPS_PER_PREFIX,
};
use super::Instant;
use crate::limits::InstanceLimits;
use crate::net::Ipv4Cidr;

/// At most one pool decrease per this interval (upstream `decreaseIPPoolInterval`).
pub const DECREASE_INTERVAL: Duration = Duration::from_secs(30);
/// No growth for this long after an insufficient-capacity error (upstream `insufficientCidrErrorCooldown`).
pub const CAPACITY_PAUSE: Duration = Duration::from_secs(120);
/// ENIs younger than this are never freed (upstream `minENILifeTime`).
pub const MIN_ENI_LIFETIME: Duration = Duration::from_secs(60);
/// Freed blocks are not re-added from IMDS for this long (upstream `ipReconcileCooldown`).
pub const RECONCILE_COOLDOWN: Duration = Duration::from_secs(60);
/// How far back the planner looks at the pods' demand when it grows: a growth step asks for at
/// least twice as many addresses as pods took in this window (not in upstream, see [`Pool::plan`]).
pub const DEMAND_WINDOW: Duration = Duration::from_secs(10);

/// The change in addresses held within [`DEMAND_WINDOW`] that makes a burst: one pod more or less
/// is the ordinary pace, where upstream's rules alone decide.
const BURST: u32 = 2;

/// Warm-pool settings (the driver maps the environment onto these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// WARM_ENI_TARGET: free ENIs' worth of addresses to keep (default 1; negative/invalid → 1).
    pub warm_eni_target: u32,
    /// WARM_IP_TARGET: free addresses to keep; `None` = unset.
    pub warm_ip_target: Option<u32>,
    /// MINIMUM_IP_TARGET: floor on total addresses; `None` = unset.
    pub minimum_ip_target: Option<u32>,
    /// WARM_PREFIX_TARGET: free /28 prefixes to keep in prefix mode (default 0).
    pub warm_prefix_target: u32,
    /// MAX_ENI: `None` (or 0) = unset; honoured only below the instance limit.
    pub max_eni: Option<u32>,
    /// The node's max pods; the pool does not grow once it holds this many addresses.
    pub max_pods: u32,
    /// ENABLE_POD_ENI: keep one ENI slot for the trunk until it is attached.
    pub pod_eni: bool,
    /// AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: pods never get addresses on the primary ENI.
    pub custom_networking: bool,
}

impl Default for PoolConfig {
    /// Upstream defaults: WARM_ENI_TARGET=1, no IP targets, max pods 110 (upstream's fallback).
    fn default() -> Self {
        PoolConfig {
            warm_eni_target: 1,
            warm_ip_target: None,
            minimum_ip_target: None,
            warm_prefix_target: 0,
            max_eni: None,
            max_pods: 110,
            pod_eni: false,
            custom_networking: false,
        }
    }
}

impl PoolConfig {
    /// Settings upstream forces on network cards > 0: WARM_IP_TARGET=1, MINIMUM_IP_TARGET=1.
    pub fn for_secondary_card(&self) -> Self {
        PoolConfig {
            warm_ip_target: Some(1),
            minimum_ip_target: Some(1),
            pod_eni: false,
            ..self.clone()
        }
    }

    /// Whether WARM_IP_TARGET or MINIMUM_IP_TARGET is set.
    pub fn ip_targets_defined(&self) -> bool {
        ip_targets_defined(self.warm_ip_target, self.minimum_ip_target)
    }

    fn warm_ip(&self) -> u32 {
        self.warm_ip_target.unwrap_or(0)
    }

    fn minimum_ip(&self) -> u32 {
        self.minimum_ip_target.unwrap_or(0)
    }
}

/// Upstream `warmIPTargetsDefined`: WARM_IP_TARGET or MINIMUM_IP_TARGET is set (the one definition,
/// used by the configuration's checks and by the planner).
pub fn ip_targets_defined(warm_ip_target: Option<u32>, minimum_ip_target: Option<u32>) -> bool {
    warm_ip_target.is_some_and(|w| w > 0) || minimum_ip_target.is_some_and(|m| m > 0)
}

/// How long a planned action may stay unreported before the planner forgets it and plans again.
/// A lost outcome (a worker that died, an answer never delivered) must not stop planning for good;
/// what the forgotten action may still have done in EC2 is found by the IMDS/EC2 reconcile.
pub const ACTION_DEADLINE: Duration = Duration::from_secs(180);

/// Identifies an action so its outcome can be reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionId(pub u64);

/// One thing for the driver to do against EC2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// Report the outcome under this id.
    pub id: ActionId,
    /// What to do.
    pub kind: ActionKind,
    /// After this the planner stops waiting for the outcome ([`ACTION_DEADLINE`] after planning).
    pub deadline: Instant,
}

/// The EC2 work of an [`Action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionKind {
    /// CreateNetworkInterface (in the node's or the ENIConfig's subnet) with
    /// `SecondaryPrivateIpAddressCount = addresses` or `Ipv4PrefixCount = prefixes` (one is 0), then
    /// AttachNetworkInterface at a free device index, then wait for it in IMDS.
    /// Report [`Completed::EniAttached`].
    CreateEni {
        /// Secondary addresses to request (secondary-address mode).
        addresses: u32,
        /// /28 prefixes to request (prefix mode).
        prefixes: u32,
    },
    /// AssignPrivateIpAddresses(eni, SecondaryPrivateIpAddressCount = count). Report [`Completed::Assigned`]
    /// with the addresses EC2 returned (on PrivateIpAddressLimitExceeded: with what DescribeNetworkInterfaces shows).
    AssignAddresses {
        /// ENI id.
        eni: String,
        /// How many.
        count: u32,
    },
    /// AssignPrivateIpAddresses(eni, Ipv4PrefixCount = count). Report [`Completed::Assigned`].
    AssignPrefixes {
        /// ENI id.
        eni: String,
        /// How many.
        count: u32,
    },
    /// UnassignPrivateIpAddresses(eni, addresses). Already gone from the datastore. Report
    /// [`Completed::Released`] or a failure (the reconcile loop then finds them again via EC2).
    UnassignAddresses {
        /// ENI id.
        eni: String,
        /// The addresses.
        addresses: Vec<Ipv4Addr>,
    },
    /// UnassignPrivateIpAddresses(eni, Ipv4Prefixes = prefixes). Already gone from the datastore.
    UnassignPrefixes {
        /// ENI id.
        eni: String,
        /// The prefixes.
        prefixes: Vec<Ipv4Cidr>,
    },
    /// DetachNetworkInterface, then DeleteNetworkInterface (and drop the ENI's rules). Already gone
    /// from the datastore.
    FreeEni {
        /// ENI id.
        eni: String,
    },
}

impl ActionKind {
    fn eni(&self) -> Option<&str> {
        match self {
            ActionKind::CreateEni { .. } => None,
            ActionKind::AssignAddresses { eni, .. }
            | ActionKind::AssignPrefixes { eni, .. }
            | ActionKind::UnassignAddresses { eni, .. }
            | ActionKind::UnassignPrefixes { eni, .. }
            | ActionKind::FreeEni { eni } => Some(eni),
        }
    }
}

/// What the driver reports back for one action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The action.
    pub action: ActionId,
    /// What happened.
    pub result: Result<Completed, Failure>,
}

/// A successful action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completed {
    /// The new ENI is attached (and visible in IMDS) with these secondary addresses/prefixes.
    EniAttached {
        /// How the datastore should know it (not primary, not trunk, not EFA).
        eni: EniSpec,
        /// Its secondary addresses (not its primary address).
        addresses: Vec<Ipv4Addr>,
        /// Its prefixes.
        prefixes: Vec<Ipv4Cidr>,
    },
    /// Addresses or prefixes were assigned to the action's ENI.
    Assigned {
        /// Secondary addresses.
        addresses: Vec<Ipv4Addr>,
        /// Prefixes.
        prefixes: Vec<Ipv4Cidr>,
    },
    /// An unassign or free went through.
    Released,
}

/// A failed action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// `InsufficientFreeAddressesInSubnet` (or another capacity error): growth pauses for 120 s.
    InsufficientCapacity,
    /// `InsufficientCidrBlocks`: the subnet has no free aligned /28, though it may still have single
    /// addresses. In prefix mode the pool then grows with /32s for [`CAPACITY_PAUSE`] and tries a
    /// prefix again after it (upstream pauses growth and pods fail); elsewhere as
    /// [`Failure::InsufficientCapacity`].
    NoFreePrefix,
    /// Anything else (throttling, timeouts, …): try again next tick (a multi-address assign asks for 1).
    Other,
}

/// Why an outcome could not be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeError {
    /// No action with that id is waiting for an outcome.
    UnknownAction(ActionId),
    /// The reported success does not fit the action (e.g. `Assigned` for a `FreeEni`).
    Mismatch {
        /// The action.
        action: ActionId,
        /// What was expected.
        expected: &'static str,
    },
    /// Applying it to the datastore failed (the action is still considered done).
    Datastore(DatastoreError),
}

impl fmt::Display for OutcomeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutcomeError::UnknownAction(id) => {
                write!(f, "record outcome: no pending action {}", id.0)
            }
            OutcomeError::Mismatch { action, expected } => {
                write!(
                    f,
                    "record outcome of action {}: expected {expected}",
                    action.0
                )
            }
            OutcomeError::Datastore(e) => write!(f, "record outcome: {e}"),
        }
    }
}

/// The planner's reading of the pool (for logs, metrics and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Assessment {
    /// Datastore counters.
    pub stats: PoolStats,
    /// WARM_IP_TARGET or MINIMUM_IP_TARGET set.
    pub ip_targets: bool,
    /// Shortfall (addresses; prefixes in prefix mode) when IP targets are set.
    pub short: u32,
    /// Excess (addresses; prefixes in prefix mode) when IP targets are set.
    pub over: u32,
    /// Upstream `isDatastorePoolTooLow`.
    pub too_low: bool,
    /// Addresses (prefixes in prefix mode) beyond max pods: what could be released while keeping
    /// at least max pods addresses. The planner never grows past max pods, but reconcile (a failed
    /// unassign or ENI free that EC2 still holds) and the limit-exceeded describe path can bring
    /// blocks back that no pod can ever use. Not in upstream.
    pub beyond_max_pods: u32,
    /// Prefix mode while the fallback counts /32s: free /32s beyond what the targets need or
    /// beyond max pods (they may be released). Not in upstream.
    pub over_addresses: u32,
    /// Upstream `isDatastorePoolTooHigh`, or blocks beyond max pods, or `over_addresses > 0`.
    pub too_high: bool,
    /// Upstream `shouldRemoveExtraENIs`.
    pub remove_extra_enis: bool,
}

/// The planner for one datastore (one network card).
#[derive(Clone, Debug)]
pub struct Pool {
    cfg: PoolConfig,
    limits: InstanceLimits,
    next_id: u64,
    in_flight: Vec<Action>,
    last_decrease: Option<Instant>,
    last_capacity_error: Option<Instant>,
    /// Prefix mode: when the last `InsufficientCidrBlocks` came; `Some` while the fallback lasts.
    no_prefix_since: Option<Instant>,
    last_pool_action: Option<Instant>,
    retry_single: Option<String>,
    recently_freed: BTreeMap<Ipv4Cidr, Instant>,
    eni_changes_allowed: bool,
    /// (when, assigned addresses) at each plan of the last [`DEMAND_WINDOW`], oldest first.
    demand: VecDeque<(Instant, u32)>,
}

impl Pool {
    /// A planner with these settings and limits.
    pub fn new(cfg: PoolConfig, limits: InstanceLimits) -> Self {
        Pool {
            cfg,
            limits,
            next_id: 1,
            in_flight: Vec::new(),
            last_decrease: None,
            last_capacity_error: None,
            no_prefix_since: None,
            last_pool_action: None,
            retry_single: None,
            recently_freed: BTreeMap::new(),
            eni_changes_allowed: true,
            demand: VecDeque::new(),
        }
    }

    /// Records how many addresses pods hold now, forgetting what is older than the window.
    fn note_demand(&mut self, now: Instant, assigned: u32) {
        while self
            .demand
            .front()
            .is_some_and(|(t, _)| now.saturating_since(*t) > DEMAND_WINDOW)
        {
            self.demand.pop_front();
        }
        if self.demand.back().is_some_and(|(_, a)| *a == assigned) {
            return; // Unchanged: the oldest sample with this count already stands for it.
        }
        // Bounded: one sample per distinct count, at most one per plan.
        if self.demand.len() >= 256 {
            self.demand.pop_front();
        }
        self.demand.push_back((now, assigned));
    }

    /// How many more addresses pods hold now than at the lowest point of the window: the rate a
    /// burst of ADDs drains the pool at, per window.
    fn recent_rise(&self, assigned: u32) -> u32 {
        let low = self.demand.iter().map(|(_, a)| *a).min();
        assigned.saturating_sub(low.unwrap_or(assigned))
    }

    /// How many fewer addresses pods hold now than at the highest point of the window.
    fn recent_fall(&self, assigned: u32) -> u32 {
        let high = self.demand.iter().map(|(_, a)| *a).max();
        high.unwrap_or(assigned).saturating_sub(assigned)
    }

    /// The addresses a burst asks for beyond the targets: twice the recent rise, so that the steps
    /// of a continuing burst double (a step ends once pods have taken as many again); 0 without
    /// a burst, where the targets alone decide.
    fn burst_demand(&self, assigned: u32) -> u32 {
        if self.pods_arriving(assigned) {
            self.recent_rise(assigned).saturating_mul(2)
        } else {
            0
        }
    }

    /// Whether pods are arriving in a burst: at least [`BURST`] more addresses held now than at
    /// the lowest point of the window.
    fn pods_arriving(&self, assigned: u32) -> bool {
        self.recent_rise(assigned) >= BURST
    }

    /// Whether pods are leaving in a burst: at least [`BURST`] fewer addresses held now than at
    /// the highest point of the window.
    fn pods_leaving(&self, assigned: u32) -> bool {
        self.recent_fall(assigned) >= BURST
    }

    /// Upstream `isENIAttachmentAllowed`: while ipamd is terminating, or the node is unschedulable
    /// and AWS_MANAGE_ENIS_NON_SCHEDULABLE is false, the pool neither grows nor frees ENIs (it may
    /// still release addresses). The driver sets this from what it knows.
    pub fn set_eni_changes_allowed(&mut self, allowed: bool) {
        self.eni_changes_allowed = allowed;
    }

    /// Its settings.
    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// The ENI cap: MAX_ENI if set and below the instance limit, else the instance limit.
    pub fn max_enis(&self) -> u32 {
        match self.cfg.max_eni {
            Some(m) if m >= 1 && m < u32::from(self.limits.enis) => m,
            _ => u32::from(self.limits.enis),
        }
    }

    /// Addresses one ENI can serve in `mode` (upstream `maxIPsPerENI`).
    pub fn max_ips_per_eni(&self, mode: AddressMode) -> u32 {
        match mode {
            AddressMode::PrefixIpv4 => self.limits.secondary_ipv4_per_eni() * IPS_PER_PREFIX,
            _ => self.limits.secondary_ipv4_per_eni(),
        }
    }

    /// Actions handed out and not yet reported.
    pub fn in_flight(&self) -> &[Action] {
        &self.in_flight
    }

    /// When the pool last grew or shrank (the driver skips IMDS reconcile for 60 s after it).
    pub fn last_pool_action(&self) -> Option<Instant> {
        self.last_pool_action
    }

    /// Whether growth is paused after an insufficient-capacity error.
    pub fn capacity_paused(&self, now: Instant) -> bool {
        self.last_capacity_error
            .is_some_and(|t| now.saturating_since(t) <= CAPACITY_PAUSE)
    }

    /// Prefix mode: whether the fallback to single /32s is on (an `InsufficientCidrBlocks` came and
    /// no prefix has been had since). While it is, /32s serve pods and are not released as
    /// leftovers of the other mode.
    pub fn prefix_fallback(&self) -> bool {
        self.no_prefix_since.is_some()
    }

    /// Whether the fallback grows the pool with /32s now (within [`CAPACITY_PAUSE`] of the last
    /// `InsufficientCidrBlocks`); after that the pool is judged by its prefixes alone, and growing
    /// it tries a prefix again.
    pub fn prefix_fallback_growing(&self, now: Instant) -> bool {
        self.no_prefix_since
            .is_some_and(|t| now.saturating_since(t) <= CAPACITY_PAUSE)
    }

    /// Whether the planner counts /32s as pool addresses now: outside prefix mode always, in prefix
    /// mode only while the fallback grows with them.
    fn counts_addresses(&self, ds: &Datastore, now: Instant) -> bool {
        ds.mode() != AddressMode::PrefixIpv4 || self.prefix_fallback_growing(now)
    }

    /// Pool counters as the planner judges them now.
    fn view_stats(&self, ds: &Datastore, now: Instant) -> PoolStats {
        ds.stats_as(now, self.counts_addresses(ds, now))
    }

    /// Whether a block counts in the planner's current view of the pool.
    fn counted(&self, ds: &Datastore, c: &Ipv4Cidr, now: Instant) -> bool {
        ds.in_mode_as(c, self.counts_addresses(ds, now))
    }

    /// Whether `cidr` was released by us less than 60 s ago (the reconcile loop must not re-add it
    /// from possibly stale IMDS data).
    pub fn recently_freed(&self, cidr: &Ipv4Cidr, now: Instant) -> bool {
        self.recently_freed
            .get(cidr)
            .is_some_and(|t| now.saturating_since(*t) < RECONCILE_COOLDOWN)
    }

    /// Reads the pool the way upstream's tick does.
    pub fn assess(&self, ds: &Datastore, now: Instant) -> Assessment {
        let stats = self.view_stats(ds, now);
        let pd = ds.mode() == AddressMode::PrefixIpv4;
        let ip_targets = self.cfg.ip_targets_defined();
        let (short, over) = if ip_targets {
            self.target_state(&stats, pd)
        } else {
            (0, 0)
        };
        let available = stats.available();
        let per_eni = self.max_ips_per_eni(ds.mode());
        let warm = if pd {
            self.cfg.warm_prefix_target
        } else {
            self.cfg.warm_eni_target
        };
        let too_low = self.too_low(&stats, pd);
        let excess = stats.total.saturating_sub(self.cfg.max_pods);
        let beyond_max_pods = if pd { excess / IPS_PER_PREFIX } else { excess };
        let over_addresses = if pd && self.prefix_fallback_growing(now) {
            let surplus = if ip_targets {
                self.target_state(&stats, false).1
            } else {
                available.saturating_sub(IPS_PER_PREFIX.saturating_mul(self.cfg.warm_prefix_target))
            };
            // Beyond max pods too: the cap on growth counts only what served pods then, and a
            // leftover /32 of the other mode starts serving when the fallback begins.
            let beyond = stats.total.saturating_sub(self.cfg.max_pods);
            surplus
                .max(beyond)
                .min(self.free_fallback_addresses(ds, now, false))
        } else {
            0
        };
        let too_high = beyond_max_pods > 0
            || over_addresses > 0
            || if ip_targets {
                over > 0
            } else if pd {
                stats.free_prefixes > self.cfg.warm_prefix_target
            } else {
                false
            };
        let remove_extra_enis = ip_targets
            || available >= warm.saturating_add(1).saturating_mul(per_eni)
            || (pd && self.freeable_eni_exists(ds));
        Assessment {
            stats,
            ip_targets,
            short,
            over,
            beyond_max_pods,
            over_addresses,
            too_low,
            too_high,
            remove_extra_enis,
        }
    }

    /// Upstream `isDatastorePoolTooLow` for given counters.
    fn too_low(&self, stats: &PoolStats, pd: bool) -> bool {
        if stats.total >= self.cfg.max_pods {
            return false;
        }
        if self.cfg.ip_targets_defined() {
            return self.target_state(stats, pd).0 > 0;
        }
        let available = stats.available();
        let (unit, warm) = if pd {
            (IPS_PER_PREFIX, self.cfg.warm_prefix_target)
        } else {
            (
                self.limits.secondary_ipv4_per_eni(),
                self.cfg.warm_eni_target,
            )
        };
        available < unit.saturating_mul(warm) || (warm == 0 && available == 0)
    }

    /// Whether the pool would be too low after releasing these free blocks. Upstream has no such
    /// check, and with WARM_PREFIX_TARGET=0 it releases the only free prefix and re-allocates it
    /// on the next tick, forever; we never release into a "too low" state.
    fn too_low_without(&self, ds: &Datastore, now: Instant, gone: &[Ipv4Cidr]) -> bool {
        let pd = ds.mode() == AddressMode::PrefixIpv4;
        let mut s = self.view_stats(ds, now);
        for c in gone {
            if self.counted(ds, c, now) {
                s.total = s.total.saturating_sub(c.size() as u32);
            }
            if !c.is_host() {
                s.total_prefixes = s.total_prefixes.saturating_sub(1);
                s.free_prefixes = s.free_prefixes.saturating_sub(1);
            }
        }
        self.too_low(&s, pd)
    }

    /// Upstream `datastoreTargetState`: (short, over) in addresses, or prefixes in prefix mode.
    fn target_state(&self, s: &PoolStats, pd: bool) -> (u32, u32) {
        let warm = i64::from(self.cfg.warm_ip());
        let min = i64::from(self.cfg.minimum_ip());
        let total = i64::from(s.total);
        let assigned = i64::from(s.assigned);
        let available = total - assigned;
        let short = (warm - available).max(0).max(min - total);
        let over = (available - warm).max(0).min(total - min).max(0);
        if !pd {
            return (to_u32(short), to_u32(over));
        }
        let per = i64::from(IPS_PER_PREFIX);
        let short_prefixes = div_ceil(short, per);
        let needed_for_warm = div_ceil(assigned + warm, per);
        let needed_for_min = div_ceil(min, per);
        let total_prefixes = i64::from(s.total_prefixes);
        let over_prefixes = i64::from(s.free_prefixes)
            .min(total_prefixes - needed_for_warm)
            .max(0)
            .min(total_prefixes - needed_for_min)
            .max(0);
        (to_u32(short_prefixes), to_u32(over_prefixes))
    }

    /// One tick: the actions to run now. Returns nothing while earlier actions await their outcome,
    /// and nothing in IPv6 mode (no warm pool there).
    pub fn plan(&mut self, ds: &mut Datastore, now: Instant) -> Vec<Action> {
        self.note_demand(now, ds.stats(now).assigned);
        self.expire(now);
        if !self.in_flight.is_empty() || ds.mode() == AddressMode::Ipv6 {
            return Vec::new();
        }
        self.recently_freed
            .retain(|_, t| now.saturating_since(*t) < RECONCILE_COOLDOWN);
        // After the pause the pool is judged by its prefixes alone: if they meet the targets, the
        // fallback has done its job and ends (its free /32s then go as leftovers, once cool).
        if ds.mode() == AddressMode::PrefixIpv4
            && self.prefix_fallback()
            && !self.prefix_fallback_growing(now)
            && !self.assess(ds, now).too_low
        {
            self.no_prefix_since = None;
        }
        self.sync_fallback(ds);
        let mut kinds = self.release_other_mode(ds, now);
        let a = self.assess(ds, now);
        let mut grew = false;
        if a.too_low {
            if !self.eni_changes_allowed {
                // Upstream returns here without trying to shrink either.
            } else if let Some(k) = self.increase(ds, &a, now) {
                kinds.push(k);
                grew = true;
            } else if self.prefix_fallback()
                && !self.prefix_fallback_growing(now)
                && !self.capacity_paused(now)
            {
                // Past the pause the pool wants a prefix but none fits (no free slot, or max pods
                // reached counting the /32s): free /32s make room for it; if they cannot (pods
                // hold them), the fallback grows with /32s for another pause.
                let room = self.make_room_for_prefix(ds, now);
                if room.is_empty() {
                    self.no_prefix_since = Some(now);
                    self.sync_fallback(ds);
                }
                kinds.extend(room);
            }
        } else if a.too_high
            && !self.decrease_blocked(now)
            && !self.pods_arriving(a.stats.assigned)
            && !self.pods_leaving(a.stats.assigned)
            && !self.eni_goes(ds, &a, now)
        {
            // While pods arrive in a burst, nothing is released: the growth it asked for would go
            // at once, and what is left over goes in one call once the burst is over. While pods
            // leave in a burst, nothing is released yet either: each release would be one
            // Unassign call of a few addresses, and the burst may leave whole ENIs free. While a
            // wholly free ENI goes (one per tick, below), no addresses are released either: they
            // might be that ENI's or the next one's, whose deletion releases them without an
            // Unassign call each. What remains over once no ENI can go is released in one call.
            let released = self.decrease(ds, &a, now);
            // Upstream starts its decrease interval on every decrease tick; one that released
            // nothing (every surplus address still cooling) must not hold the release back 30 s
            // after the cooldown ends.
            if !released.is_empty() {
                self.last_decrease = Some(now);
                self.last_pool_action = Some(now);
            }
            kinds.extend(released);
        }
        // Upstream may grow and free in one tick only in corner cases (an empty ENI with
        // WARM_PREFIX_TARGET=0); we never free in a tick that grows, so the two cannot fight.
        if a.remove_extra_enis && !grew && self.eni_changes_allowed {
            if let Some(eni) = self.deletable_eni(ds, now) {
                // Deleting the ENI releases its blocks; no separate unassign for it.
                kinds.retain(|k| k.eni() != Some(eni.as_str()));
                if let Some(e) = ds.eni(&eni) {
                    for c in e.ipv4_cidrs() {
                        self.recently_freed.insert(*c, now);
                    }
                }
                if ds.remove_eni(&eni, false).is_ok() {
                    kinds.push(ActionKind::FreeEni { eni });
                }
            }
        }
        let actions: Vec<Action> = kinds
            .into_iter()
            .map(|kind| {
                let id = ActionId(self.next_id);
                self.next_id += 1;
                Action {
                    id,
                    kind,
                    deadline: now + ACTION_DEADLINE,
                }
            })
            .collect();
        self.in_flight.extend(actions.iter().cloned());
        actions
    }

    /// Forgets actions whose deadline has passed, as if they had failed: an outcome that never
    /// arrives must not stop planning for good. Returns the forgotten actions (for the log).
    pub fn expire(&mut self, now: Instant) -> Vec<Action> {
        let (gone, kept): (Vec<Action>, Vec<Action>) = core::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|a| now > a.deadline);
        self.in_flight = kept;
        gone
    }

    /// A wholly free secondary ENI too young to be deleted: its addresses are not released one
    /// Unassign at a time; once it is old enough it goes whole, or, if the targets need it after
    /// all, the decrease takes from it then.
    fn awaits_deletion(&self, ds: &Datastore, a: &Assessment, e: &Eni, now: Instant) -> bool {
        a.remove_extra_enis
            && self.eni_changes_allowed
            && now.saturating_since(e.created_at()) < MIN_ENI_LIFETIME
            && self.eni_deletable(ds, e, now, false)
    }

    /// Whether this tick deletes a wholly free ENI (below the decrease in [`Pool::plan`]).
    fn eni_goes(&self, ds: &Datastore, a: &Assessment, now: Instant) -> bool {
        a.remove_extra_enis && self.eni_changes_allowed && self.deletable_eni(ds, now).is_some()
    }

    fn decrease_blocked(&self, now: Instant) -> bool {
        self.last_decrease
            .is_some_and(|t| now.saturating_since(t) <= DECREASE_INTERVAL)
    }

    /// Tells the datastore whether /32s serve pods (prefix mode, while the fallback lasts).
    fn sync_fallback(&self, ds: &mut Datastore) {
        ds.set_prefix_fallback(self.prefix_fallback());
    }

    /// Free /32s on the ENIs the planner grows (in prefix mode: the fallback's and leftovers),
    /// cooling ones only if `cooling_too`.
    fn free_fallback_addresses(&self, ds: &Datastore, now: Instant, cooling_too: bool) -> u32 {
        ds.enis()
            .filter(|e| self.allocatable(e))
            .flat_map(|e| e.ipv4_cidrs())
            .filter(|c| {
                c.is_host()
                    && ds.assigned_in_v4(c) == 0
                    && (cooling_too || ds.cooling_in_v4(c, now) == 0)
            })
            .count() as u32
    }

    /// Up to `n` free, cool /32s, highest device number and address first, by ENI.
    fn free_addresses_to_release(
        &self,
        ds: &Datastore,
        now: Instant,
        mut n: u32,
    ) -> Vec<(String, Vec<Ipv4Cidr>)> {
        let mut plan = Vec::new();
        for e in ds
            .enis()
            .filter(|e| self.allocatable(e))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if n == 0 {
                break;
            }
            let free: Vec<Ipv4Cidr> = e
                .ipv4_cidrs()
                .rev()
                .filter(|c| {
                    c.is_host() && ds.assigned_in_v4(c) == 0 && ds.cooling_in_v4(c, now) == 0
                })
                .take(n as usize)
                .copied()
                .collect();
            if !free.is_empty() {
                n -= free.len() as u32;
                plan.push((e.id().into(), free));
            }
        }
        plan
    }

    /// The fallback is past its pause and the pool wants a prefix, but none can be planned (every
    /// slot holds a block, or max pods is reached counting the /32s): releases the fewest free,
    /// cool /32s after which one fits, or nothing if they are not enough.
    fn make_room_for_prefix(&mut self, ds: &mut Datastore, now: Instant) -> Vec<ActionKind> {
        let slots = self.limits.secondary_ipv4_per_eni() as usize;
        let slot_free = self.has_room_for_eni(ds)
            || ds
                .enis()
                .filter(|e| self.allocatable(e))
                .any(|e| e.ipv4_cidr_count() < slots);
        let ceiling = self.cfg.max_pods.div_ceil(IPS_PER_PREFIX) * IPS_PER_PREFIX;
        let for_pods = ds
            .stats(now)
            .total
            .saturating_sub(ceiling.saturating_sub(IPS_PER_PREFIX));
        let n = for_pods.max(u32::from(!slot_free));
        if n == 0 || n > self.free_fallback_addresses(ds, now, false) {
            return Vec::new();
        }
        let plan = self.free_addresses_to_release(ds, now, n);
        self.release(ds, plan, now)
    }

    /// Free, non-cooling blocks of the other mode (left from before a mode switch) are released.
    /// During the prefix fallback its /32s serve pods (they are in mode) and stay.
    fn release_other_mode(&mut self, ds: &mut Datastore, now: Instant) -> Vec<ActionKind> {
        let mut plan: Vec<(String, Vec<Ipv4Cidr>)> = Vec::new();
        for e in ds.enis().filter(|e| e.serves_pods() && !e.spec().is_trunk) {
            let free: Vec<Ipv4Cidr> = e
                .ipv4_cidrs()
                .filter(|c| {
                    !ds.in_mode(c) && ds.assigned_in_v4(c) == 0 && ds.cooling_in_v4(c, now) == 0
                })
                .copied()
                .collect();
            if !free.is_empty() {
                plan.push((e.id().into(), free));
            }
        }
        self.release(ds, plan, now)
    }

    fn release(
        &mut self,
        ds: &mut Datastore,
        plan: Vec<(String, Vec<Ipv4Cidr>)>,
        now: Instant,
    ) -> Vec<ActionKind> {
        let mut kinds = Vec::new();
        for (eni, cidrs) in plan {
            let mut addresses = Vec::new();
            let mut prefixes = Vec::new();
            for c in cidrs {
                if ds.remove_ipv4_cidr(&eni, c, false).is_ok() {
                    self.recently_freed.insert(c, now);
                    if c.is_host() {
                        addresses.push(c.addr());
                    } else {
                        prefixes.push(c);
                    }
                }
            }
            if !addresses.is_empty() {
                kinds.push(ActionKind::UnassignAddresses {
                    eni: eni.clone(),
                    addresses,
                });
            }
            if !prefixes.is_empty() {
                kinds.push(ActionKind::UnassignPrefixes { eni, prefixes });
            }
        }
        kinds
    }

    fn allocatable(&self, e: &Eni) -> bool {
        e.serves_pods()
            && !e.spec().is_trunk
            && !(self.cfg.custom_networking && e.spec().is_primary)
    }

    /// Upstream `hasRoomForEni`: attached ENIs (unmanaged and excluded included) plus a slot kept for
    /// the trunk stay below the ENI cap.
    pub fn has_room_for_eni(&self, ds: &Datastore) -> bool {
        let trunk_slot = u32::from(self.cfg.pod_eni && ds.trunk_eni().is_none());
        (ds.enis().count() as u32).saturating_add(trunk_slot) < self.max_enis()
    }

    fn increase(&mut self, ds: &Datastore, a: &Assessment, now: Instant) -> Option<ActionKind> {
        if self.capacity_paused(now) {
            return None;
        }
        let pd = ds.mode() == AddressMode::PrefixIpv4;
        // In prefix mode the fallback grows with /32s during its pause.
        let prefixes = pd && !self.prefix_fallback_growing(now);
        let slots = self.limits.secondary_ipv4_per_eni();
        let wanted = if prefixes {
            // Upstream `getPrefixesNeeded`: WARM_IP/MIN_IP shortfall, else WARM_PREFIX shortfall, at least 1.
            let short = if a.ip_targets {
                a.short
            } else {
                self.cfg
                    .warm_prefix_target
                    .saturating_sub(a.stats.free_prefixes)
            };
            short.max(1)
        } else if pd {
            // The fallback: the same targets, met with single addresses. WARM_PREFIX_TARGET asks
            // for that many prefixes' worth of free addresses (16 each).
            if a.ip_targets {
                self.target_state(&a.stats, false).0
            } else {
                IPS_PER_PREFIX
                    .saturating_mul(self.cfg.warm_prefix_target)
                    .saturating_sub(a.stats.available())
                    .max(1)
            }
        } else if a.ip_targets {
            a.short
        } else {
            slots
        };
        if wanted == 0 {
            return None;
        }
        // A burst of ADDs drains the pool faster than one step of the targets refills it, and each
        // step is an EC2 call (several for an ENI): ask for twice what pods took in the last
        // window, so the steps double instead of adding the warm target each time. Without a burst
        // the rise is 0 or 1 and the targets alone decide. WARM_ENI_TARGET steps are whole ENIs
        // already.
        let rise = self.burst_demand(a.stats.assigned);
        let wanted = if prefixes {
            wanted.max(rise.div_ceil(IPS_PER_PREFIX))
        } else if pd || a.ip_targets {
            wanted.max(rise)
        } else {
            wanted
        };
        // Clamp so the pool does not pass max pods (too_low guarantees total < max_pods): whole
        // /28s up to max pods rounded up to a /28, counting every address that serves pods (the
        // fallback's /32s too).
        let serving = ds.stats(now).total;
        let cap_by_pods = if prefixes {
            (self.cfg.max_pods.div_ceil(IPS_PER_PREFIX) * IPS_PER_PREFIX).saturating_sub(serving)
                / IPS_PER_PREFIX
        } else {
            self.cfg.max_pods.saturating_sub(serving)
        };
        for e in ds.enis().filter(|e| self.allocatable(e)) {
            let used = e.ipv4_cidr_count() as u32;
            if used >= slots {
                continue;
            }
            let mut n = (slots - used).min(wanted).min(cap_by_pods);
            if self.retry_single.as_deref() == Some(e.id()) {
                n = n.min(1);
            }
            if n == 0 {
                return None;
            }
            let eni = e.id().into();
            return Some(if prefixes {
                ActionKind::AssignPrefixes { eni, count: n }
            } else {
                ActionKind::AssignAddresses { eni, count: n }
            });
        }
        if !self.has_room_for_eni(ds) {
            return None;
        }
        let n = wanted.min(slots).min(cap_by_pods);
        if n == 0 {
            return None;
        }
        Some(if prefixes {
            ActionKind::CreateEni {
                addresses: 0,
                prefixes: n,
            }
        } else {
            ActionKind::CreateEni {
                addresses: n,
                prefixes: 0,
            }
        })
    }

    fn decrease(&mut self, ds: &mut Datastore, a: &Assessment, now: Instant) -> Vec<ActionKind> {
        let pd = ds.mode() == AddressMode::PrefixIpv4;
        let mut over = if a.ip_targets {
            a.over
        } else if pd {
            a.stats
                .free_prefixes
                .saturating_sub(self.cfg.warm_prefix_target)
        } else {
            0
        }
        .max(a.beyond_max_pods);
        // Cooling addresses are part of `available` and will be free again shortly; releasing the
        // usable ones instead would leave the pool empty until the cooldown ends. So they are kept
        // out of what is released now and released later, once cool, if still over.
        let cooling_units = if pd {
            ds.enis()
                .filter(|e| e.serves_pods())
                .flat_map(|e| e.ipv4_cidrs())
                .filter(|c| {
                    !c.is_host() && ds.assigned_in_v4(c) == 0 && ds.cooling_in_v4(c, now) > 0
                })
                .count() as u32
        } else {
            a.stats.cooling
        };
        over = over.saturating_sub(cooling_units);
        let mut plan: Vec<(String, Vec<Ipv4Cidr>)> = Vec::new();
        // Highest device number first, so pods (placed lowest first) leave the high ENIs emptiable.
        for e in ds
            .enis()
            .filter(|e| e.serves_pods() && !e.spec().is_trunk)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if over == 0 {
                break;
            }
            if self.awaits_deletion(ds, a, e, now) {
                continue;
            }
            // `over` counts prefixes in prefix mode: only prefixes go here (fallback /32s below).
            let free: Vec<Ipv4Cidr> = e
                .ipv4_cidrs()
                .rev()
                .filter(|c| {
                    (if pd { !c.is_host() } else { ds.in_mode(c) })
                        && ds.assigned_in_v4(c) == 0
                        && ds.cooling_in_v4(c, now) == 0
                })
                .take(over as usize)
                .copied()
                .collect();
            if free.is_empty() {
                continue;
            }
            over -= free.len() as u32;
            plan.push((e.id().into(), free));
        }
        // The fallback's free /32s beyond the targets (cooling ones wait, as above).
        if pd && a.over_addresses > 0 {
            let cooling = self.free_fallback_addresses(ds, now, true)
                - self.free_fallback_addresses(ds, now, false);
            let n = a.over_addresses.saturating_sub(cooling);
            plan.extend(self.free_addresses_to_release(ds, now, n));
        }
        // Give back blocks from the end of the plan while releasing all would leave the pool too low.
        loop {
            let all: Vec<Ipv4Cidr> = plan.iter().flat_map(|(_, c)| c.iter().copied()).collect();
            if all.is_empty() || !self.too_low_without(ds, now, &all) {
                break;
            }
            if let Some((_, last)) = plan.last_mut() {
                last.pop();
                if last.is_empty() {
                    plan.pop();
                }
            }
        }
        self.release(ds, plan, now)
    }

    fn freeable_eni_exists(&self, ds: &Datastore) -> bool {
        ds.enis().any(|e| {
            let s = e.spec();
            !s.is_primary && !s.is_trunk && !s.is_efa && e.serves_pods() && ds.eni_assigned(e) == 0
        })
    }

    /// Upstream `getDeletableENI`, highest device number first.
    fn deletable_eni(&self, ds: &Datastore, now: Instant) -> Option<String> {
        ds.enis()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .find(|e| self.eni_deletable(ds, e, now, true))
            .map(|e| e.id().into())
    }

    /// Whether `e` may be deleted now (upstream `getDeletableENI`'s checks), the minimum lifetime
    /// left out unless `check_lifetime`.
    fn eni_deletable(&self, ds: &Datastore, e: &Eni, now: Instant, check_lifetime: bool) -> bool {
        let pd = ds.mode() == AddressMode::PrefixIpv4;
        let round = |n: u32| {
            if pd {
                n.div_ceil(IPS_PER_PREFIX) * IPS_PER_PREFIX
            } else {
                n
            }
        };
        let s = e.spec();
        if s.is_primary || s.is_trunk || s.is_efa || !e.serves_pods() {
            return false;
        }
        if check_lifetime && now.saturating_since(e.created_at()) < MIN_ENI_LIFETIME {
            return false;
        }
        if ds.eni_has_cooling(e, now) || ds.eni_assigned(e) > 0 {
            return false;
        }
        let enis: Vec<&Eni> = ds.enis().collect();
        let others = enis.iter().filter(|o| o.id() != e.id() && o.serves_pods());
        let mut other_free = 0u32;
        let mut other_total = 0u32;
        let mut other_free_prefixes = 0u32;
        for o in others {
            for c in o.ipv4_cidrs() {
                let assigned = ds.assigned_in_v4(c) as u32;
                if self.counted(ds, c, now) {
                    other_total += c.size() as u32;
                    other_free += c.size() as u32 - assigned;
                }
                if !c.is_host() && assigned == 0 {
                    other_free_prefixes += 1;
                }
            }
        }
        let (warm_ip, min_ip) = (self.cfg.warm_ip(), self.cfg.minimum_ip());
        if warm_ip != 0 && other_free < round(warm_ip) {
            return false;
        }
        if min_ip != 0 && other_total < round(min_ip) {
            return false;
        }
        if pd && self.cfg.warm_prefix_target != 0 {
            // During the fallback's growth, WARM_PREFIX_TARGET counts free addresses.
            let short = if self.prefix_fallback_growing(now) {
                other_free < IPS_PER_PREFIX.saturating_mul(self.cfg.warm_prefix_target)
            } else {
                other_free_prefixes < self.cfg.warm_prefix_target
            };
            if short {
                return false;
            }
        }
        let blocks: Vec<Ipv4Cidr> = e.ipv4_cidrs().copied().collect();
        if self.too_low_without(ds, now, &blocks) {
            return false;
        }
        true
    }

    /// Applies an action's outcome: adds what EC2 gave to the datastore, or notes the failure.
    pub fn record_outcome(
        &mut self,
        ds: &mut Datastore,
        outcome: Outcome,
        now: Instant,
    ) -> Result<(), OutcomeError> {
        let pos = self
            .in_flight
            .iter()
            .position(|a| a.id == outcome.action)
            .ok_or(OutcomeError::UnknownAction(outcome.action))?;
        let action = self.in_flight.remove(pos);
        let result = self.apply_outcome(ds, action, outcome.result, now);
        self.sync_fallback(ds);
        result
    }

    fn apply_outcome(
        &mut self,
        ds: &mut Datastore,
        action: Action,
        result: Result<Completed, Failure>,
        now: Instant,
    ) -> Result<(), OutcomeError> {
        let id = action.id;
        let asked_prefixes = matches!(
            action.kind,
            ActionKind::AssignPrefixes { .. } | ActionKind::CreateEni { prefixes: 1.., .. }
        );
        if let Ok(Completed::EniAttached { prefixes, .. } | Completed::Assigned { prefixes, .. }) =
            &result
        {
            if !prefixes.is_empty() {
                // A prefix could be had: the fallback ends.
                self.no_prefix_since = None;
            }
        }
        match (action.kind, result) {
            (_, Err(Failure::NoFreePrefix))
                if asked_prefixes && ds.mode() == AddressMode::PrefixIpv4 =>
            {
                // No /28 free in the subnet: grow with /32s for the pause (no growth pause).
                self.no_prefix_since = Some(now);
                Ok(())
            }
            (_, Err(Failure::InsufficientCapacity | Failure::NoFreePrefix)) => {
                self.last_capacity_error = Some(now);
                Ok(())
            }
            (
                ActionKind::AssignAddresses { eni, count }
                | ActionKind::AssignPrefixes { eni, count },
                Err(Failure::Other),
            ) => {
                // Upstream retries a failed multi-address assign with a single one.
                self.retry_single = if count > 1 { Some(eni) } else { None };
                Ok(())
            }
            (_, Err(Failure::Other)) => Ok(()),
            (
                ActionKind::CreateEni { .. },
                Ok(Completed::EniAttached {
                    eni,
                    addresses,
                    prefixes,
                }),
            ) => {
                let eni_id = eni.id.clone();
                match ds.add_eni(eni, now) {
                    // The reconcile loop may have found the new ENI in IMDS first.
                    Ok(()) | Err(DatastoreError::DuplicateEni(_)) => {}
                    Err(e) => return Err(OutcomeError::Datastore(e)),
                }
                self.last_pool_action = Some(now);
                ds.add_ipv4_addresses(&eni_id, &addresses)
                    .map_err(OutcomeError::Datastore)?;
                ds.add_ipv4_prefixes(&eni_id, &prefixes)
                    .map_err(OutcomeError::Datastore)?;
                Ok(())
            }
            (ActionKind::CreateEni { .. }, Ok(_)) => Err(OutcomeError::Mismatch {
                action: id,
                expected: "EniAttached",
            }),
            (
                ActionKind::AssignAddresses { eni, .. } | ActionKind::AssignPrefixes { eni, .. },
                Ok(Completed::Assigned {
                    addresses,
                    prefixes,
                }),
            ) => {
                self.retry_single = None;
                self.last_pool_action = Some(now);
                ds.add_ipv4_addresses(&eni, &addresses)
                    .map_err(OutcomeError::Datastore)?;
                ds.add_ipv4_prefixes(&eni, &prefixes)
                    .map_err(OutcomeError::Datastore)?;
                Ok(())
            }
            (ActionKind::AssignAddresses { .. } | ActionKind::AssignPrefixes { .. }, Ok(_)) => {
                Err(OutcomeError::Mismatch {
                    action: id,
                    expected: "Assigned",
                })
            }
            (_, Ok(Completed::Released)) => Ok(()),
            (_, Ok(_)) => Err(OutcomeError::Mismatch {
                action: id,
                expected: "Released",
            }),
        }
    }
}

fn div_ceil(x: i64, y: i64) -> i64 {
    (x + y - 1).div_euclid(y)
}

fn to_u32(x: i64) -> u32 {
    u32::try_from(x.max(0)).unwrap_or(u32::MAX)
}
