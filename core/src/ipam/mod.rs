//! IP address management: the warm pool of ENIs, addresses and prefixes, and pod assignments.
//!
//! The pure core ([`datastore`], [`pool`], [`checkpoint`], [`Instant`]; its blocks are
//! [`crate::net::Ipv4Cidr`] and [`crate::net::Ipv6Cidr`]) does no I/O and reads no clock: time is an
//! argument. The crate is `#![no_std]`, so the compiler holds it to that. The one std-only helper,
//! `vpc_cni::ipam::store`, lives in the main crate: it reads and atomically writes the checkpoint
//! file.
//!
//! How a driver uses it (see docs/ipam.md for the decision table):
//! 1. build a [`Datastore`] for the node's mode, add the ENIs and addresses found in IMDS/EC2
//!    ([`Datastore::add_eni`], [`Datastore::add_ipv4_addresses`], [`Datastore::add_ipv4_prefixes`]);
//! 2. load the checkpoint with `vpc_cni::ipam::store::CheckpointStore::load` and [`Datastore::restore`];
//! 3. serve CNI ADD/DEL with [`Datastore::assign`] / [`Datastore::unassign`], writing
//!    [`Datastore::to_checkpoint`] after each and calling [`Datastore::undo`] if that write fails;
//! 4. every few seconds call [`Pool::plan`], execute the [`Action`]s against EC2 and report each
//!    result with [`Pool::record_outcome`].

pub mod checkpoint;
pub mod datastore;
pub mod introspect;
pub mod pool;

pub use crate::limits::InstanceLimits;
pub use checkpoint::CheckpointData;
pub use datastore::{
    AddressMode, AssignRequest, Assigned, Datastore, DatastoreConfig, DatastoreError, Eni,
    EniCounters, EniSpec, IpamKey, PodAddress, PodMetadata, PoolStats, ReleaseOutcome, Released,
    RestoreReport, StaleAllocation, Undo,
};
pub use pool::{
    Action, ActionId, ActionKind, Assessment, Completed, Failure, Outcome, OutcomeError, Pool,
    PoolConfig,
};

use core::time::Duration;

/// A point on the caller's monotonic clock, in milliseconds since an arbitrary epoch.
///
/// The pure core never reads a clock; the driver passes `now` in. Only differences between two
/// `Instant`s mean anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The instant `ms` milliseconds after the caller's epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    /// The instant `s` seconds after the caller's epoch.
    pub const fn from_secs(s: u64) -> Self {
        Instant(s.saturating_mul(1000))
    }

    /// Milliseconds since the caller's epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// `self` moved forward by `d` (saturating at the end of time).
    pub fn saturating_add(self, d: Duration) -> Instant {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(ms))
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl core::ops::Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_sub(ms))
    }
}
