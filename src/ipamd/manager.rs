//! The plugin's side of ipamd: [`rpc::AddressManager`] over the node's datastore.
//!
//! Every assign and unassign is written to the checkpoint before the plugin hears "yes". If an
//! assign's write fails, the assign is undone and the plugin gets an error (upstream does the
//! same): the file never lacks an address a pod holds. If a release's write fails (a full disk),
//! the release stands and the plugin hears "yes" all the same: the plugin tears the pod down
//! whatever ipamd answers, so undoing it would hold the address until a restart. The file then
//! lists an address no pod holds, which is safe (a restart drops an entry whose pod veth is
//! gone), and the next write that succeeds catches up.
//!
//! Calls arrive on the RPC server's connection threads; the node state is one mutex shared with
//! the daemon's loop, which holds it only for pure work (a plan, an outcome, a reconcile), never
//! across an EC2 or IMDS call, so an ADD inside the warm pool never waits for EC2.

use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::ipam::store::CheckpointStore;
use crate::ipam::{
    AssignRequest, CheckpointData, Datastore, Instant, IpamKey, PodAddress, PodMetadata, Pool,
    ReleaseOutcome,
};
use crate::ipamd::veth_reaper::{VethReaper, VethRelease};
use crate::rpc::{self, AddressManager, RpcCode, RpcError};

/// Why the loop is woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// An assignment changed: check the pool once the burst is over.
    Changed,
    /// An ADD found no free address: check the pool now.
    Starved,
}

/// How long an ADD waits for a growing pool before it is refused.
pub const ADD_WAIT_FOR_GROWTH: Duration = Duration::from_secs(3);

/// The node's address state: the datastore and its planner, owned together.
#[derive(Debug)]
pub struct NodeState {
    /// Addresses, ENIs and assignments.
    pub ds: Datastore,
    /// The warm-pool planner.
    pub pool: Pool,
    /// Start-up has finished (the pool was filled once and the node wired).
    pub ready: bool,
    /// Counters for metrics.
    pub counters: Counters,
    /// How many EC2 outcomes the planner has recorded; with `outcome_landed`, what an ADD waiting for the
    /// pool to grow waits on.
    outcomes: u64,
    outcome_landed: Arc<Condvar>,
}

impl NodeState {
    /// Fresh state: not ready, counters at zero.
    pub fn new(ds: Datastore, pool: Pool) -> NodeState {
        NodeState {
            ds,
            pool,
            ready: false,
            counters: Counters::default(),
            outcomes: 0,
            outcome_landed: Arc::new(Condvar::new()),
        }
    }

    /// Says that an EC2 outcome was recorded in `pool`: ADDs waiting for addresses look again at once.
    pub fn outcome_recorded(&mut self) {
        self.outcomes += 1;
        self.outcome_landed.notify_all();
    }
}

/// Waits, with `st` unlocked, until an outcome beyond the first `seen` is recorded or `at_most` passes.
fn wait_for_outcome(
    st: MutexGuard<'_, NodeState>,
    seen: u64,
    at_most: Duration,
) -> MutexGuard<'_, NodeState> {
    if st.outcomes != seen {
        return st;
    }
    let landed = Arc::clone(&st.outcome_landed);
    match landed.wait_timeout_while(st, at_most, |st| st.outcomes == seen) {
        Ok((st, _)) => st,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

/// Request counters (upstream `awscni_add_ip_req_count`, `awscni_del_ip_req_count{reason}`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// ADD requests.
    pub add_requests: u64,
    /// DEL requests by reason (the plugin's `Reason`, e.g. `PodDeleted`, `SetupNSFailed`).
    pub del_requests: std::collections::BTreeMap<String, u64>,
    /// ADDs refused because no address was free.
    pub no_address: u64,
    /// Checkpoint writes that failed (an assign's was undone, a release's stood).
    pub checkpoint_failures: u64,
    /// ENIs removed by reconcile while pods used them.
    pub force_removed_enis: u64,
    /// Pod addresses lost by reconcile.
    pub force_removed_ips: u64,
    /// Reconcile runs.
    pub reconciles: u64,
    /// EC2 actions that failed, by action kind.
    pub action_errors: std::collections::BTreeMap<&'static str, u64>,
}

/// Where the node's time comes from.
pub trait Clock: Send + Sync {
    /// Monotonic time for the pure core.
    fn now(&self) -> Instant;
    /// Wall-clock time, Unix nanoseconds (the checkpoint's `allocationTimestamp`).
    fn unix_nanos(&self) -> i64;
}

/// The system clocks; `now` counts from when this was made.
#[derive(Debug)]
pub struct SystemClock {
    epoch: std::time::Instant,
}

impl SystemClock {
    /// A clock starting now.
    pub fn new() -> SystemClock {
        SystemClock {
            epoch: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn unix_nanos(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Where assignments are persisted.
pub trait CheckpointSink: Send + Sync {
    /// Writes the whole checkpoint atomically.
    fn save(&self, data: &CheckpointData) -> Result<(), String>;
}

impl CheckpointSink for CheckpointStore {
    fn save(&self, data: &CheckpointData) -> Result<(), String> {
        CheckpointStore::save(self, data).map_err(|e| e.to_string())
    }
}

/// What every ADD reply carries besides the address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyTemplate {
    /// AWS_VPC_K8S_CNI_EXTERNALSNAT.
    pub use_external_snat: bool,
    /// The VPC's IPv4 CIDRs.
    pub vpc_v4_cidrs: Vec<String>,
    /// AWS_VPC_K8S_CNI_VETHPREFIX: a DEL's pod names its host veth, which names an assignment
    /// rebuilt from the node's routes.
    pub veth_prefix: String,
}

/// The key under which an assignment rebuilt from the node's routes is held for this pod.
fn recovered_key(network: &str, veth_prefix: &str, namespace: &str, name: &str) -> IpamKey {
    let veth = crate::cni::plan::host_veth_name(veth_prefix, namespace, name);
    IpamKey::new(
        network,
        &format!("{}{veth}", super::daemon::RECOVERED_PREFIX),
        "eth0",
    )
}

/// [`rpc::AddressManager`] over the shared [`NodeState`].
pub struct AddressService {
    state: Arc<Mutex<NodeState>>,
    checkpoint: Arc<dyn CheckpointSink>,
    clock: Arc<dyn Clock>,
    reply: ReplyTemplate,
    wake: Arc<dyn Fn(Urgency) + Send + Sync>,
    veth_reaper: Option<Arc<VethReaper>>,
}

impl std::fmt::Debug for AddressService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressService")
            .field("reply", &self.reply)
            .finish_non_exhaustive()
    }
}

/// Locks the node state; a panic elsewhere while holding it does not make the state unusable
/// (every change to it is a single datastore call that leaves it consistent).
pub fn lock(state: &Mutex<NodeState>) -> MutexGuard<'_, NodeState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AddressService {
    /// A service over `state`; `wake` is called after an assignment changed or when an ADD found
    /// no free address (the loop then checks
    /// the pool at once instead of at its next tick).
    pub fn new(
        state: Arc<Mutex<NodeState>>,
        checkpoint: Arc<dyn CheckpointSink>,
        clock: Arc<dyn Clock>,
        reply: ReplyTemplate,
        wake: Arc<dyn Fn(Urgency) + Send + Sync>,
    ) -> AddressService {
        AddressService {
            state,
            checkpoint,
            clock,
            reply,
            wake,
            veth_reaper: None,
        }
    }

    /// Deletes the veth pair of each released pod after answering its DEL (the plugin deletes it
    /// itself otherwise).
    pub fn with_veth_reaper(mut self, reaper: Arc<VethReaper>) -> AddressService {
        self.veth_reaper = Some(reaper);
        self
    }

    /// Hands the DEL's veth to the reaper; whether it took it.
    fn take_veth(&self, req: &rpc::DelNetworkRequest) -> bool {
        let Some(reaper) = &self.veth_reaper else {
            return false;
        };
        if req.host_veth_index == 0 {
            return false;
        }
        let name = (!req.k8s_pod_namespace.is_empty() && !req.k8s_pod_name.is_empty()).then(|| {
            crate::cni::plan::host_veth_name(
                &self.reply.veth_prefix,
                &req.k8s_pod_namespace,
                &req.k8s_pod_name,
            )
        });
        reaper.take(VethRelease {
            index: req.host_veth_index,
            name,
            prefix: self.reply.veth_prefix.clone(),
        })
    }

    fn allocation(pod: &PodAddress) -> rpc::IpAllocation {
        let (ipv4_addr, ipv6_addr) = match pod.address {
            IpAddr::V4(a) => (a.to_string(), String::new()),
            IpAddr::V6(a) => (String::new(), a.to_string()),
        };
        rpc::IpAllocation {
            ipv4_addr,
            ipv6_addr,
            device_number: pod.device_number,
            // The protocol's 0 = the primary ENI: the plugin adds no from-pod rule then.
            route_table_id: if pod.eni_is_primary {
                0
            } else {
                pod.route_table_id
            },
        }
    }

    fn persist(&self, st: &mut NodeState) -> Result<(), String> {
        let data = st.ds.to_checkpoint();
        self.checkpoint.save(&data).inspect_err(|_| {
            st.counters.checkpoint_failures += 1;
        })
    }
}

impl AddressManager for AddressService {
    fn add_network(&self, req: &rpc::AddNetworkRequest) -> Result<rpc::AddNetworkReply, RpcError> {
        let mut st = lock(&self.state);
        st.counters.add_requests += 1;
        let request = AssignRequest {
            key: IpamKey::new(&req.network_name, &req.container_id, &req.if_name),
            metadata: PodMetadata {
                namespace: req.k8s_pod_namespace.clone(),
                name: req.k8s_pod_name.clone(),
                interfaces_count: 1,
            },
            unix_nanos: self.clock.unix_nanos(),
        };
        let waited_since = std::time::Instant::now();
        let assigned = loop {
            let now = self.clock.now();
            let e = match st.ds.assign(request.clone(), now) {
                Ok(a) => break a,
                Err(e) => e,
            };
            // The pool is growing (an ENI attaching, addresses being assigned): wait for it a
            // little instead of failing the pod at once; the plugin's deadline is 5 s.
            // A pool that is too low but has nothing in flight gets a moment for the loop to plan.
            let waited = waited_since.elapsed();
            let growing = !st.pool.in_flight().is_empty()
                || (waited < Duration::from_millis(300) && st.pool.assess(&st.ds, now).too_low);
            if growing && waited < ADD_WAIT_FOR_GROWTH {
                let seen = st.outcomes;
                drop(st);
                (self.wake)(Urgency::Starved);
                // Woken by the outcome that brings addresses (also one that landed while the lock
                // was free); 50 ms at most, to nudge the loop again if it has not planned yet.
                st = wait_for_outcome(lock(&self.state), seen, Duration::from_millis(50));
                continue;
            }
            st.counters.no_address += 1;
            let s = st.ds.stats(now);
            drop(st);
            (self.wake)(Urgency::Starved);
            return Err(RpcError::new(
                RpcCode::ResourceExhausted,
                format!(
                    "no free address for pod {}/{}: {e} ({} of {} addresses assigned, {} cooling down); \
                     ipamd is asking EC2 for more, or the node is at its limit",
                    req.k8s_pod_namespace, req.k8s_pod_name, s.assigned, s.total, s.cooling
                ),
            ));
        };
        if !assigned.existing {
            if let Err(e) = self.persist(&mut st) {
                st.ds.undo(assigned.undo);
                return Err(RpcError::new(
                    RpcCode::Internal,
                    format!("address not assigned: the checkpoint could not be written: {e}"),
                ));
            }
        }
        drop(st);
        if !assigned.existing {
            (self.wake)(Urgency::Changed);
        }
        Ok(rpc::AddNetworkReply {
            success: true,
            ip_allocations: vec![AddressService::allocation(&assigned.pod)],
            use_external_snat: self.reply.use_external_snat,
            vpc_v4_cidrs: self.reply.vpc_v4_cidrs.clone(),
            ..Default::default()
        })
    }

    fn del_network(&self, req: &rpc::DelNetworkRequest) -> Result<rpc::DelNetworkReply, RpcError> {
        let now = self.clock.now();
        let key = IpamKey::new(&req.network_name, &req.container_id, &req.if_name);
        let mut st = lock(&self.state);
        let reason = if req.reason.is_empty() {
            "PodDeleted".to_string()
        } else {
            req.reason.clone()
        };
        *st.counters.del_requests.entry(reason).or_insert(0) += 1;
        let mut outcome = st.ds.unassign(&key, now);
        if matches!(outcome, ReleaseOutcome::Unknown)
            && !req.k8s_pod_namespace.is_empty()
            && !req.k8s_pod_name.is_empty()
        {
            let recovered = recovered_key(
                &req.network_name,
                &self.reply.veth_prefix,
                &req.k8s_pod_namespace,
                &req.k8s_pod_name,
            );
            outcome = st.ds.unassign(&recovered, now);
        }
        match outcome {
            ReleaseOutcome::Released(r) => {
                let r = *r;
                if let Err(e) = self.persist(&mut st) {
                    log::error!(
                        "released {} of {key}, but the checkpoint could not be written: {e}; \
                         the next write catches up",
                        r.pod.address
                    );
                }
                drop(st);
                (self.wake)(Urgency::Changed);
                Ok(rpc::DelNetworkReply {
                    success: true,
                    ip_allocations: vec![AddressService::allocation(&r.pod)],
                    host_veth_taken: self.take_veth(req),
                    ..Default::default()
                })
            }
            ReleaseOutcome::Unknown => Err(RpcError::new(
                RpcCode::NotFound,
                format!("no address is assigned to {key}"),
            )),
        }
    }

    fn status(&self) -> rpc::StatusReply {
        let now = self.clock.now();
        let st = lock(&self.state);
        let s = st.ds.stats(now);
        if !st.ready {
            return rpc::StatusReply {
                ready: false,
                message: "ipamd is starting".into(),
            };
        }
        // Cooling addresses count as available (upstream's `AvailableAddresses`): they are free
        // again within the cooldown, and a node should not flap to NetworkNotReady for that.
        let available = s.available();
        rpc::StatusReply {
            ready: available > 0,
            message: format!(
                "{available} of {} addresses available ({} assigned, {} of the free ones cooling down)",
                s.total, s.assigned, s.cooling
            ),
        }
    }

    fn gc_network(&self, req: &rpc::GcRequest) -> Result<rpc::GcReply, RpcError> {
        let now = self.clock.now();
        let mut st = lock(&self.state);
        let stale: Vec<IpamKey> = st
            .ds
            .allocations()
            .map(|(_, a)| a.key.clone())
            .filter(|k| {
                // Rebuilt assignments carry no container id the runtime knows: never collected.
                k.network_name == req.network_name
                    && !k.container_id.starts_with(super::daemon::RECOVERED_PREFIX)
                    && !req
                        .valid
                        .iter()
                        .any(|v| v.container_id == k.container_id && v.if_name == k.if_name)
            })
            .collect();
        let mut released = Vec::new();
        for key in stale {
            if let ReleaseOutcome::Released(r) = st.ds.unassign(&key, now) {
                let r = *r;
                released.push(rpc::Released {
                    key: rpc::AttachmentKey {
                        container_id: key.container_id.clone(),
                        if_name: key.if_name.clone(),
                    },
                    ipv4_addr: r.pod.address.to_string(),
                    k8s_pod_namespace: r.allocation.metadata.namespace.clone(),
                    k8s_pod_name: r.allocation.metadata.name.clone(),
                });
            }
        }
        if !released.is_empty() {
            if let Err(e) = self.persist(&mut st) {
                log::error!(
                    "GC released {} addresses, but the checkpoint could not be written: {e}; \
                     the next write catches up",
                    released.len()
                );
            }
            drop(st);
            (self.wake)(Urgency::Changed);
        }
        Ok(rpc::GcReply { released })
    }
}

impl AddressService {
    /// The shared state (the loop and the HTTP side read it).
    pub fn state(&self) -> &Arc<Mutex<NodeState>> {
        &self.state
    }
}

/// Convenience for callers that want one of these over a fresh state.
pub fn shared(ds: Datastore, pool: Pool) -> Arc<Mutex<NodeState>> {
    Arc::new(Mutex::new(NodeState::new(ds, pool)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::{DatastoreConfig, PoolConfig};

    fn state() -> Arc<Mutex<NodeState>> {
        let limits = crate::limits::lookup("m5.large").expect("m5.large in the table");
        shared(
            Datastore::new(DatastoreConfig::default()),
            Pool::new(PoolConfig::default(), limits),
        )
    }

    /// An ADD waiting for growth is woken by the outcome itself: with an hour to wait, it returns once
    /// the loop records one.
    #[test]
    fn a_waiting_add_wakes_when_an_outcome_is_recorded() {
        let st = state();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let st = Arc::clone(&st);
            std::thread::spawn(move || {
                let g = lock(&st);
                let seen = g.outcomes;
                tx.send(()).unwrap();
                let g = wait_for_outcome(g, seen, Duration::from_secs(3600));
                tx.send(()).unwrap();
                g.outcomes
            })
        };
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        lock(&st).outcome_recorded();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the waiter woke on the outcome");
        assert_eq!(waiter.join().unwrap(), 1);
    }

    /// An outcome that landed while the ADD had the lock free (it woke the loop) is not waited for.
    #[test]
    fn an_outcome_that_landed_before_the_wait_is_not_waited_for() {
        let st = state();
        let seen = lock(&st).outcomes;
        lock(&st).outcome_recorded();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let outcomes = wait_for_outcome(lock(&st), seen, Duration::from_secs(3600)).outcomes;
            tx.send(outcomes).unwrap();
        });
        let outcomes = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no wait for an outcome already recorded");
        assert_eq!(outcomes, seen + 1);
        waiter.join().unwrap();
    }
}
