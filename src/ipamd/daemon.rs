//! ipamd: start-up, the node loop and shutdown.
//!
//! Start-up is a sequence, each step timed and logged: configuration → IMDS discovery → limits →
//! EC2's view of the attached ENIs (tags: no_manage, trunk, EFA) → datastore → checkpoint restore
//! (allocations whose pod veth is gone are released with their rules) → node wiring → first
//! warm-pool fill → plugin socket served → conflist and plugin installed → ready (sd_notify).
//!
//! Threads: this one runs the loop (pool checks about every 5 s and right after an ADD or DEL
//! that changed an assignment; reconcile at most every 60 s; the leaked-ENI sweep hourly); the RPC
//! server's accept and connection threads; one that waits for SIGTERM/SIGINT; and the HTTP
//! servers'. EC2 and IMDS calls run on this thread without the state lock held, so the plugin's
//! requests are answered from the datastore while EC2 is slow.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use log::{debug, error, info, warn};

use crate::aws::credentials::{CachedCredentials, DefaultChain, ProvideCredentials};
use crate::aws::ec2::{DescribeNetworkInterfaces, Ec2, Ec2Client, Filter, InstanceTypeInfo};
use crate::aws::imds::{Imds, ImdsInterface};
use crate::aws::retry::{RetryEnv, SystemRetryEnv};
use crate::aws::stats::ApiStats;
use crate::aws::{ec2, http};
use crate::config::Config;
use crate::ipam::store::{CheckpointStore, StoreError};
use crate::ipam::{
    AddressMode, CheckpointData, Completed, Datastore, DatastoreConfig, EniSpec, InstanceLimits,
    Pool, PoolConfig,
};
use crate::limits::{self, Hypervisor, MaxPodsOptions};
use crate::net::{Ipv4Cidr, MacAddr};

use super::executor::{AttachProbe, Executor, NodeIdentity};
use super::manager::{self, AddressService, Clock, NodeState, ReplyTemplate, SystemClock, Urgency};
use super::notify::{LoopNotifier, PoolStatus};
use super::reconcile;

/// How often the pool is checked without a reason (upstream: 2.5 s + 2.5 s).
pub const POOL_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Reconcile at most this often, and not within this long after a pool change (upstream).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// Leaked-ENI sweep interval (upstream hourly after a random 0-300 s delay).
pub const LEAKED_ENI_INTERVAL: Duration = Duration::from_secs(3600);
/// Longest the first warm-pool fill may take before ipamd declares itself ready anyway (pods in
/// the pool's addresses can start; the loop keeps filling).
pub const FIRST_FILL_BUDGET: Duration = Duration::from_secs(60);
/// After an ADD or DEL, the pool is checked once the plugin has been quiet this long...
pub const WAKE_COALESCE_QUIET: Duration = Duration::from_millis(200);
/// ...or this long after the first of a burst of requests, whichever comes first.
pub const WAKE_COALESCE_MAX: Duration = Duration::from_secs(1);
/// Per-request deadline of the plugin socket.
pub const RPC_DEADLINE: Duration = Duration::from_secs(10);

/// What ipamd does to the node's kernel (the real one: [`super::kernel_node::KernelNode`]).
pub trait NodeNet: Send {
    /// Host-wide wiring: the primary interface, SNAT/connmark table, rules, sysctls.
    fn wire_host(&mut self, primary: &EniSpec, vpc_cidrs: &[Ipv4Cidr]) -> Result<(), String>;
    /// A secondary ENI's link, MTU, route table and rule.
    fn wire_eni(&mut self, eni: &EniSpec) -> Result<(), String>;
    /// Removes what [`wire_eni`](Self::wire_eni) made for this ENI.
    fn unwire_eni(&mut self, eni_id: &str) -> Result<(), String>;
    /// Whether the host-side veth of a pod exists.
    fn link_exists(&mut self, name: &str) -> Result<bool, String>;
    /// Deletes the to-pod (512) and from-pod (1536) rules of a pod address.
    fn delete_pod_rules(&mut self, ip: Ipv4Addr) -> Result<(), String>;
    /// The pods the node shows: host routes `<ip>/32 dev <veth>` in the main table through links
    /// named with `veth_prefix`, as (pod address, host veth name).
    fn pod_routes(&mut self, veth_prefix: &str) -> Result<Vec<(Ipv4Addr, String)>, String>;
}

/// Container id prefix of assignments rebuilt from the node's pod routes when no readable
/// checkpoint exists; the rest is the pod's host veth name. A DEL for the pod whose veth that is
/// releases it (the DEL carries the pod's namespace and name, which give the veth name).
pub const RECOVERED_PREFIX: &str = "recovered-";

/// Why ipamd could not start.
#[derive(Debug)]
pub struct StartError {
    /// The step.
    pub step: &'static str,
    /// What went wrong.
    pub detail: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "start-up step {:?} failed: {}", self.step, self.detail)
    }
}

fn fail(step: &'static str) -> impl Fn(String) -> StartError {
    move |detail| StartError { step, detail }
}

/// Start-up timings: own work vs. waiting on IMDS and EC2.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartupTimes {
    /// Wall time from process start to ready.
    pub total: Duration,
    /// Of which waiting for IMDS answers.
    pub imds: Duration,
    /// Of which waiting for EC2 answers.
    pub ec2: Duration,
    /// Per step: (name, wall time).
    pub steps: Vec<(&'static str, Duration)>,
}

impl StartupTimes {
    /// Time spent on our own work (total minus waiting).
    pub fn own(&self) -> Duration {
        self.total.saturating_sub(self.imds + self.ec2)
    }
}

/// Events for the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An assignment changed, or an ADD is waiting for an address.
    Wake(Urgency),
    /// Stop (a signal arrived).
    Stop(i32),
}

/// IMDS as the executor's attach probe.
struct ImdsProbe {
    imds: Arc<Imds>,
}

impl AttachProbe for ImdsProbe {
    fn visible(&self, mac: &MacAddr, expected: &[Ipv4Cidr]) -> Result<bool, String> {
        let call = self.imds.within(Duration::from_secs(5));
        let macs = call.macs().map_err(|e| e.to_string())?;
        if !macs.contains(mac) {
            return Ok(false);
        }
        let i = call.interface(mac).map_err(|e| e.to_string())?;
        let shown: BTreeSet<Ipv4Cidr> = i
            .local_ipv4s
            .iter()
            .map(|a| Ipv4Cidr::host(*a))
            .chain(i.ipv4_prefixes.iter().copied())
            .collect();
        Ok(expected.iter().all(|c| shown.contains(c)))
    }
}

/// The running daemon.
pub struct Daemon {
    cfg: Config,
    imds: Arc<Imds>,
    ec2: Option<Arc<dyn Ec2>>,
    executor: Option<Executor>,
    /// The node's address state, shared with the RPC side.
    pub state: Arc<Mutex<NodeState>>,
    store: Arc<CheckpointStore>,
    clock: Arc<SystemClock>,
    net: Box<dyn NodeNet>,
    /// EC2 call statistics (metrics).
    pub api_stats: Arc<ApiStats>,
    /// The instance.
    pub instance_id: String,
    /// Its type's limits.
    pub limits: InstanceLimits,
    vpc_id: String,
    vpc_cidrs: Vec<Ipv4Cidr>,
    /// Start-up timings.
    pub startup: StartupTimes,
    imds_wait: Duration,
    ec2_wait: Duration,
    last_reconcile: Option<StdInstant>,
    next_sweep: StdInstant,
    /// ENIs whose wiring failed; retried every tick.
    unwired: Vec<EniSpec>,
    retry_env: Arc<dyn RetryEnv>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("instance_id", &self.instance_id)
            .field("limits", &self.limits.name)
            .finish_non_exhaustive()
    }
}

fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Limits of a type EC2 described (types missing from the built-in table). The name is kept for
/// the life of the process, as table names are.
pub fn limits_from_ec2(info: &InstanceTypeInfo) -> InstanceLimits {
    let name: &'static str = Box::leak(info.instance_type.clone().into_boxed_str());
    let cards: Vec<u8> = info
        .network_cards
        .iter()
        .map(|c| u8::try_from(c.maximum_network_interfaces).unwrap_or(u8::MAX))
        .collect();
    let card_enis: &'static [u8] = Box::leak(cards.into_boxed_slice());
    let default_enis = info
        .network_cards
        .iter()
        .find(|c| c.index == info.default_network_card_index)
        .map(|c| c.maximum_network_interfaces)
        .unwrap_or(info.maximum_network_interfaces);
    InstanceLimits {
        name,
        enis: u8::try_from(default_enis).unwrap_or(u8::MAX),
        ipv4_per_eni: u16::try_from(info.ipv4_addresses_per_interface).unwrap_or(u16::MAX),
        ipv6_per_eni: u16::try_from(info.ipv6_addresses_per_interface).unwrap_or(u16::MAX),
        default_card: u8::try_from(info.default_network_card_index).unwrap_or(0),
        card_enis,
        vcpus: 0,
        hypervisor: match info.hypervisor.as_str() {
            "nitro" => Hypervisor::Nitro,
            "xen" => Hypervisor::Xen,
            _ => Hypervisor::None,
        },
        bare_metal: info.bare_metal,
    }
}

/// The warm-pool settings of a configuration on an instance type: the one place where the
/// environment becomes planner settings.
pub fn pool_config(cfg: &Config, limits: &InstanceLimits, mode: AddressMode) -> PoolConfig {
    PoolConfig {
        warm_eni_target: cfg.warm_eni_target,
        warm_ip_target: cfg.warm_ip_target,
        minimum_ip_target: cfg.minimum_ip_target,
        warm_prefix_target: cfg.warm_prefix_target,
        max_eni: cfg.max_eni,
        max_pods: max_pods(cfg, limits, mode),
        pod_eni: cfg.enable_pod_eni,
        custom_networking: cfg.custom_network_cfg,
    }
}

/// The node's pod ceiling without the API server: the EKS max-pods calculator's value for the
/// type and mode (what the kubelet is given on EKS images). Upstream reads its eni-max-pods
/// table, which ignores prefix delegation and would stop a PD pool at 2 prefixes on an m5.large.
pub fn max_pods(cfg: &Config, limits: &InstanceLimits, mode: AddressMode) -> u32 {
    limits::max_pods(
        limits,
        &MaxPodsOptions {
            prefix_delegation: mode == AddressMode::PrefixIpv4,
            custom_networking: cfg.custom_network_cfg,
            max_eni: cfg.max_eni,
            show_max_allowed: false,
        },
    )
    .value
}

/// The datastore settings of a configuration.
pub fn datastore_config(cfg: &Config, mode: AddressMode) -> DatastoreConfig {
    DatastoreConfig {
        mode,
        ip_cooldown: cfg.ip_cooldown_period,
    }
}

/// The address mode: prefixes when asked for and the instance type supports them.
pub fn address_mode(cfg: &Config, limits: &InstanceLimits) -> AddressMode {
    if cfg.enable_prefix_delegation && limits.supports_prefix_delegation() {
        AddressMode::PrefixIpv4
    } else {
        AddressMode::SecondaryIpv4
    }
}

impl Daemon {
    /// Runs start-up up to (not including) serving the socket. `net` is the node's kernel.
    pub fn start(cfg: Config, net: Box<dyn NodeNet>) -> Result<Daemon, StartError> {
        let began = StdInstant::now();
        let mut steps = Vec::new();
        let mut imds_wait = Duration::ZERO;
        let mut ec2_wait = Duration::ZERO;

        // IMDS discovery.
        let t = StdInstant::now();
        let imds = Arc::new(Imds::from_env(&env_var).map_err(|e| fail("imds")(e.to_string()))?);
        let call = imds.within(Duration::from_secs(30));
        let instance_id = call
            .instance_id()
            .map_err(|e| fail("imds")(e.to_string()))?;
        let instance_type = call
            .instance_type()
            .map_err(|e| fail("imds")(e.to_string()))?;
        let region = match env_var("AWS_REGION").filter(|r| !r.is_empty()) {
            Some(r) => r,
            None => call.region().map_err(|e| fail("imds")(e.to_string()))?,
        };
        let primary_mac = call
            .primary_mac()
            .map_err(|e| fail("imds")(e.to_string()))?;
        let interfaces = call.interfaces().map_err(|e| fail("imds")(e.to_string()))?;
        imds_wait += t.elapsed();
        steps.push(("imds discovery", t.elapsed()));
        let primary = interfaces
            .iter()
            .find(|i| i.mac == primary_mac)
            .cloned()
            .ok_or_else(|| {
                fail("imds")(format!(
                    "IMDS lists no interface for the primary MAC {primary_mac}"
                ))
            })?;
        info!(
            "instance {instance_id} ({instance_type}) in {region}, primary ENI {} {primary_mac}, {} ENIs attached",
            primary.interface_id,
            interfaces.len()
        );

        // EC2 client (none at all in IMDS-only mode).
        let api_stats = Arc::new(ApiStats::new());
        let retry_env: Arc<dyn RetryEnv> = Arc::new(SystemRetryEnv);
        let ec2: Option<Arc<dyn Ec2>> = if cfg.enable_imds_only_mode {
            info!("ENABLE_IMDS_ONLY_MODE: no EC2 calls at all");
            None
        } else {
            let chain = DefaultChain::from_env(
                &env_var,
                Some(&region),
                Some(imds.clone()),
                http::local_agent(Duration::from_secs(10)),
            )
            .map_err(|e| fail("credentials")(e.to_string()))?;
            let creds: Arc<dyn ProvideCredentials> = Arc::new(CachedCredentials::new(chain));
            let client = Ec2Client::from_env(&region, creds, &env_var)
                .map_err(|e| fail("ec2 client")(e.to_string()))?
                .with_stats(api_stats.clone());
            info!("EC2 endpoint {}", client.endpoint());
            Some(Arc::new(client))
        };

        // Limits.
        let t = StdInstant::now();
        let limits = match limits::lookup(&instance_type) {
            Some(l) => l,
            None => {
                let ec2 = ec2.as_ref().ok_or_else(|| {
                    fail("limits")(format!(
                        "instance type {instance_type} is not in the built-in table and IMDS-only mode forbids DescribeInstanceTypes"
                    ))
                })?;
                let w = StdInstant::now();
                let found = ec2
                    .describe_instance_types(std::slice::from_ref(&instance_type))
                    .map_err(|e| fail("limits")(e.to_string()))?;
                ec2_wait += w.elapsed();
                let info = found.first().ok_or_else(|| {
                    fail("limits")(format!(
                        "DescribeInstanceTypes does not know {instance_type}"
                    ))
                })?;
                info!("instance type {instance_type} not in the built-in table; limits from DescribeInstanceTypes");
                limits_from_ec2(info)
            }
        };
        steps.push(("limits", t.elapsed()));
        let mode = address_mode(&cfg, &limits);
        if cfg.enable_prefix_delegation && mode != AddressMode::PrefixIpv4 {
            warn!(
                "ENABLE_PREFIX_DELEGATION=true, but {} is not a Nitro instance type: using secondary addresses",
                limits.name
            );
        }
        let pool_cfg = pool_config(&cfg, &limits, mode);
        info!(
            "limits of {}: {} ENIs x {} IPv4 addresses; mode {:?}; max pods {}",
            limits.name, limits.enis, limits.ipv4_per_eni, mode, pool_cfg.max_pods
        );

        // EC2's view of the attached ENIs (EC2 wins over IMDS).
        let t = StdInstant::now();
        // Each attached ENI's tags, as EC2 describes them.
        let mut attached_tags: Vec<(String, Vec<ec2::Tag>)> = Vec::new();
        let observed: Vec<reconcile::ObservedEni> = match &ec2 {
            Some(ec2) => {
                let w = StdInstant::now();
                let attached = ec2
                    .describe_network_interfaces(&DescribeNetworkInterfaces {
                        ids: vec![],
                        filters: vec![Filter::new("attachment.instance-id", [instance_id.clone()])],
                    })
                    .map_err(|e| fail("describe ENIs")(e.to_string()))?;
                ec2_wait += w.elapsed();
                attached_tags = attached
                    .iter()
                    .map(|ni| (ni.id.clone(), ni.tags.clone()))
                    .collect();
                observe_attached(&attached, &interfaces, &primary)
            }
            None => interfaces
                .iter()
                .map(reconcile::observed_from_imds)
                .collect(),
        };
        steps.push(("describe ENIs", t.elapsed()));
        for o in &observed {
            let s = &o.spec;
            info!(
                "ENI {} device {}{}{}{}{}: {} addresses, {} prefixes",
                s.id,
                s.device_number,
                if s.is_primary { " primary" } else { "" },
                if s.unmanaged { " no_manage" } else { "" },
                if s.is_trunk { " trunk" } else { "" },
                if s.is_efa { " efa" } else { "" },
                o.addresses.len(),
                o.prefixes.len()
            );
        }

        // Datastore.
        let clock = Arc::new(SystemClock::new());
        let now = clock.now();
        let mut ds = Datastore::new(datastore_config(&cfg, mode));
        let pool = Pool::new(pool_cfg, limits);
        let report = reconcile::apply(&mut ds, &pool, &observed, now);
        for e in &report.errors {
            warn!("datastore: {e}");
        }
        let vpc_cidrs = primary.vpc_ipv4_cidrs.clone();
        let vpc_id = primary.vpc_id.clone();

        let mut net = net;
        // Checkpoint restore.
        let t = StdInstant::now();
        let store = Arc::new(CheckpointStore::new(&cfg.backing_store));
        restore_checkpoint(&store, &mut ds, net.as_mut(), cfg.veth_prefix.as_str())
            .map_err(fail("checkpoint"))?;
        steps.push(("checkpoint restore", t.elapsed()));

        // Node wiring.
        let t = StdInstant::now();
        let primary_spec = ds
            .enis()
            .find(|e| e.spec().is_primary)
            .map(|e| e.spec().clone())
            .ok_or_else(|| fail("node wiring")("no primary ENI among the attached ENIs".into()))?;
        net.wire_host(&primary_spec, &vpc_cidrs)
            .map_err(fail("node wiring"))?;
        let secondaries: Vec<EniSpec> = ds
            .enis()
            .filter(|e| !e.spec().is_primary && !e.spec().unmanaged)
            .map(|e| e.spec().clone())
            .collect();
        let mut unwired = Vec::new();
        for e in &secondaries {
            if let Err(err) = net.wire_eni(e) {
                // Its pods cannot leave the node until it is wired; the loop tries again.
                error!("wiring ENI {}: {err}", e.id);
                unwired.push(e.clone());
            }
        }
        steps.push(("node wiring", t.elapsed()));

        let executor = ec2
            .as_ref()
            .filter(|_| !cfg.disable_network_resource_provisioning)
            .map(|ec2| {
                let tags: Vec<ec2::Tag> = cfg
                    .additional_eni_tags
                    .iter()
                    .map(|(k, v)| ec2::Tag::new(k, v))
                    .collect();
                Executor::new(
                    ec2.clone(),
                    Arc::new(ImdsProbe { imds: imds.clone() }),
                    retry_env.clone(),
                    NodeIdentity {
                        instance_id: instance_id.clone(),
                        subnet_id: primary.subnet_id.clone(),
                        subnet_ipv4_cidr: Some(primary.subnet_ipv4_cidr),
                        security_group_ids: primary.security_group_ids.clone(),
                        cluster_name: (!cfg.cluster_name.is_empty())
                            .then(|| cfg.cluster_name.clone()),
                        additional_tags: tags,
                        network_card: 0,
                    },
                    Arc::new(now_rfc3339),
                )
            });
        if cfg.disable_network_resource_provisioning {
            info!("DISABLE_NETWORK_RESOURCE_PROVISIONING: no mutating EC2 call; the pool is what is attached");
        }
        // ENIs an earlier run created and never attached (killed between the two calls).
        if let (Some(ec2), Some(_)) = (&ec2, &executor) {
            let t = StdInstant::now();
            if let Err(e) = super::sweep::delete_own_unattached_enis(ec2.as_ref(), &instance_id) {
                warn!("looking for ENIs an earlier run left unattached: {e}");
            }
            ec2_wait += t.elapsed();
        }
        // Upstream tags every managed ENI (trunk and no_manage ones aside) with the node's ENI tags
        // at start, the primary included, so tooling that finds a node's ENIs by tag sees them all.
        // A failure is logged, not fatal: the tags matter to people, not to the pool.
        if let Some(ex) = &executor {
            let t = StdInstant::now();
            for o in observed
                .iter()
                .filter(|o| !o.spec.unmanaged && !o.spec.is_trunk)
            {
                let current = attached_tags
                    .iter()
                    .find(|(id, _)| *id == o.spec.id)
                    .map(|(_, tags)| tags.as_slice())
                    .unwrap_or_default();
                match ex.tag_managed_eni(&o.spec.id, current) {
                    Ok(added) if !added.is_empty() => {
                        let keys: Vec<&str> = added.iter().map(|t| t.key.as_str()).collect();
                        info!("tagged ENI {} with {}", o.spec.id, keys.join(", "));
                    }
                    Ok(_) => {}
                    Err(e) => warn!("CreateTags for ENI {}: {e}", o.spec.id),
                }
            }
            ec2_wait += t.elapsed();
        }

        let state = manager::shared(ds, pool);
        let sweep_delay = Duration::from_secs((retry_env.random_unit() * 300.0) as u64);
        let mut d = Daemon {
            cfg,
            imds,
            ec2,
            executor,
            state,
            store,
            clock,
            net,
            api_stats,
            instance_id,
            limits,
            vpc_id,
            vpc_cidrs,
            startup: StartupTimes::default(),
            imds_wait,
            ec2_wait,
            last_reconcile: None,
            next_sweep: StdInstant::now() + sweep_delay,
            unwired,
            retry_env,
        };

        // First warm-pool fill.
        let t = StdInstant::now();
        d.first_fill();
        steps.push(("first warm-pool fill", t.elapsed()));
        d.startup = StartupTimes {
            total: began.elapsed(),
            imds: d.imds_wait,
            ec2: d.ec2_wait,
            steps,
        };
        Ok(d)
    }

    /// The RPC side over this daemon's state.
    pub fn address_service(&self, wake: Arc<dyn Fn(Urgency) + Send + Sync>) -> AddressService {
        AddressService::new(
            self.state.clone(),
            self.store.clone(),
            self.clock.clone(),
            ReplyTemplate {
                use_external_snat: self.cfg.external_snat,
                vpc_v4_cidrs: self.vpc_cidrs.iter().map(|c| c.to_string()).collect(),
                veth_prefix: self.cfg.veth_prefix.as_str().to_string(),
            },
            wake,
        )
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The clock of the pure core.
    pub fn clock(&self) -> &Arc<SystemClock> {
        &self.clock
    }

    /// Marks start-up done (the RPC socket answers STATUS ready from now on).
    pub fn set_ready(&self) {
        manager::lock(&self.state).ready = true;
    }

    fn first_fill(&mut self) {
        let began = StdInstant::now();
        while began.elapsed() < FIRST_FILL_BUDGET {
            let (did, too_low) = self.pool_tick();
            if !too_low {
                break;
            }
            if !did {
                // Nothing to do now (paused after an error, limits reached): the loop goes on.
                break;
            }
        }
    }

    /// One pool check: plan, execute, record. Returns (whether anything was planned, whether the
    /// pool is still too low afterwards).
    pub fn pool_tick(&mut self) -> (bool, bool) {
        let Some(executor) = &self.executor else {
            return (false, false);
        };
        let (actions, used) = {
            let mut st = manager::lock(&self.state);
            let now = self.clock.now();
            let NodeState { ds, pool, .. } = &mut *st;
            for gone in pool.expire(now) {
                warn!(
                    "EC2 action {:?} had no outcome in time; planning again",
                    gone.kind
                );
            }
            let actions = pool.plan(ds, now);
            let used: BTreeSet<u32> = ds.enis().map(|e| e.device_number()).collect();
            (actions, used)
        };
        if actions.is_empty() {
            let st = manager::lock(&self.state);
            let too_low = st.pool.assess(&st.ds, self.clock.now()).too_low;
            return (false, too_low);
        }
        let mut removed_enis = Vec::new();
        for a in &actions {
            debug!("EC2 action {}: {:?}", a.id.0, a.kind);
            let t = StdInstant::now();
            let done = executor.execute(a, &used);
            self.ec2_wait += t.elapsed();
            if let Some(e) = &done.error {
                warn!("EC2 action {:?} failed: {e}", a.kind);
            }
            if let Some(eni) = &done.leaked_eni {
                error!("ENI {eni} was created but neither attached nor deleted; the leaked-ENI sweep removes it");
            }
            if let crate::ipam::ActionKind::FreeEni { eni } = &a.kind {
                removed_enis.push(eni.clone());
            }
            if let Ok(Completed::EniAttached { eni, .. }) = &done.outcome.result {
                if let Err(e) = self.net.wire_eni(eni) {
                    error!("wiring new ENI {}: {e}", eni.id);
                    self.unwired.push(eni.clone());
                }
                info!("ENI {} attached as device {}", eni.id, eni.device_number);
            }
            let mut st = manager::lock(&self.state);
            let now = self.clock.now();
            let failed = done.outcome.result.is_err();
            let NodeState {
                ds, pool, counters, ..
            } = &mut *st;
            if failed {
                *counters
                    .action_errors
                    .entry(action_name(&a.kind))
                    .or_insert(0) += 1;
            }
            let fallback_before = pool.prefix_fallback();
            if let Err(e) = pool.record_outcome(ds, done.outcome, now) {
                warn!("{e}");
            }
            match (fallback_before, pool.prefix_fallback()) {
                (false, true) => warn!(
                    "no free /28 in the subnet (InsufficientCidrBlocks): growing with single addresses until prefixes are free again"
                ),
                (true, false) => info!("a /28 prefix was assigned again: single-address fallback ended"),
                _ => {}
            }
            st.outcome_recorded();
        }
        for eni in removed_enis {
            if let Err(e) = self.net.unwire_eni(&eni) {
                warn!("unwiring ENI {eni}: {e}");
            }
        }
        let st = manager::lock(&self.state);
        let too_low = st.pool.assess(&st.ds, self.clock.now()).too_low;
        (true, too_low)
    }

    /// IMDS vs EC2 reconcile (at most every 60 s, never within 60 s of a pool change), and at
    /// once when IMDS no longer lists an ENI the datastore holds.
    pub fn maybe_reconcile(&mut self) {
        let due = self
            .last_reconcile
            .is_none_or(|t| t.elapsed() >= RECONCILE_INTERVAL)
            && {
                let st = manager::lock(&self.state);
                let now = self.clock.now();
                st.pool
                    .last_pool_action()
                    .is_none_or(|t| now.saturating_since(t) >= RECONCILE_INTERVAL)
            };
        if !due && !self.eni_vanished() {
            return;
        }
        self.last_reconcile = Some(StdInstant::now());
        if let Err(e) = self.reconcile() {
            warn!("reconcile: {e}");
        }
    }

    /// Whether IMDS no longer lists the MAC of an ENI in the datastore: one detached behind
    /// ipamd's back, whose addresses must not go to pods a moment longer than needed (an ENI
    /// ipamd frees leaves the datastore first; one it attaches enters it once IMDS shows it).
    /// One IMDS read; an IMDS error says no.
    fn eni_vanished(&self) -> bool {
        let Ok(macs) = self.imds.within(Duration::from_secs(2)).macs() else {
            return false;
        };
        let st = manager::lock(&self.state);
        let gone = st
            .ds
            .enis()
            .filter(|e| e.spec().mac.is_some_and(|m| !macs.contains(&m)))
            .map(|e| e.id().to_string())
            .collect::<Vec<_>>();
        if !gone.is_empty() {
            warn!("IMDS no longer lists ENI {gone:?}: reconciling with EC2 now");
        }
        !gone.is_empty()
    }

    /// One reconcile now.
    pub fn reconcile(&mut self) -> Result<reconcile::ReconcileReport, String> {
        let interfaces: Vec<ImdsInterface> = self
            .imds
            .within(Duration::from_secs(10))
            .interfaces()
            .map_err(|e| format!("IMDS: {e}"))?;
        let differs = {
            let mut st = manager::lock(&self.state);
            st.counters.reconciles += 1;
            reconcile::imds_differs(&st.ds, &st.pool, &interfaces, self.clock.now())
        };
        if !differs {
            return Ok(reconcile::ReconcileReport::default());
        }
        let observed: Vec<reconcile::ObservedEni> = match &self.ec2 {
            Some(ec2) => ec2
                .describe_network_interfaces(&DescribeNetworkInterfaces {
                    ids: vec![],
                    filters: vec![Filter::new(
                        "attachment.instance-id",
                        [self.instance_id.clone()],
                    )],
                })
                .map_err(|e| format!("EC2: {e}"))
                .map(|attached| {
                    let primary = interfaces.iter().find(|i| i.device_number == 0).cloned();
                    match primary {
                        Some(p) => observe_attached(&attached, &interfaces, &p),
                        None => vec![],
                    }
                })?,
            None => interfaces
                .iter()
                .map(reconcile::observed_from_imds)
                .collect(),
        };
        let (report, new_specs) = {
            let mut st = manager::lock(&self.state);
            let now = self.clock.now();
            let NodeState {
                ds, pool, counters, ..
            } = &mut *st;
            let report = reconcile::apply(ds, pool, &observed, now);
            counters.force_removed_enis += report.removed_enis.len() as u64;
            counters.force_removed_ips += report.lost_pod_addresses.len() as u64;
            if !report.lost_pod_addresses.is_empty() {
                if let Err(e) = self.store.save(&ds.to_checkpoint()) {
                    error!("checkpoint after reconcile: {e}");
                }
            }
            let specs: Vec<EniSpec> = report
                .added_enis
                .iter()
                .filter_map(|id| ds.eni(id).map(|e| e.spec().clone()))
                .filter(|s| !s.is_primary && !s.unmanaged)
                .collect();
            (report, specs)
        };
        for s in &new_specs {
            if let Err(e) = self.net.wire_eni(s) {
                warn!("wiring ENI {} found by reconcile: {e}", s.id);
                self.unwired.push(s.clone());
            }
        }
        if report.changed() {
            info!(
                "reconcile: ENIs +{:?} -{:?}, blocks +{} -{}, pod addresses lost {}",
                report.added_enis,
                report.removed_enis,
                report.added_blocks.len(),
                report.removed_blocks.len(),
                report.lost_pod_addresses.len()
            );
        }
        Ok(report)
    }

    /// The hourly leaked-ENI sweep (upstream `cleanUpLeakedENIs`).
    pub fn maybe_sweep_leaked_enis(&mut self) {
        if self.cfg.disable_leaked_eni_cleanup
            || self.executor.is_none()
            || StdInstant::now() < self.next_sweep
        {
            return;
        }
        self.next_sweep = StdInstant::now() + LEAKED_ENI_INTERVAL;
        match self.sweep_leaked_enis() {
            Ok(0) => debug!("leaked-ENI sweep: nothing to delete"),
            Ok(n) => info!("leaked-ENI sweep: deleted {n} ENIs"),
            Err(e) => warn!("leaked-ENI sweep: {e}"),
        }
    }

    /// The leaked-ENI sweep now ([`super::sweep::sweep_leaked_enis`]).
    pub fn sweep_leaked_enis(&mut self) -> Result<usize, String> {
        let Some(ec2) = &self.ec2 else {
            return Ok(0);
        };
        super::sweep::sweep_leaked_enis(
            ec2.as_ref(),
            &self.vpc_id,
            &self.cfg.cluster_name,
            std::time::SystemTime::now(),
        )
    }

    /// The loop: runs until [`Event::Stop`]. Every turn tells `notify` the pool's counts (it
    /// sends `STATUS=` on a change and the watchdog ping when due).
    pub fn run(&mut self, events: &Receiver<Event>, notify: &mut LoopNotifier) -> i32 {
        let mut next_tick = StdInstant::now() + POOL_CHECK_INTERVAL;
        loop {
            self.beat(notify);
            let now = StdInstant::now();
            let mut wait = next_tick.saturating_duration_since(now);
            if let Some(ping) = notify.until_ping(now) {
                wait = wait.min(ping);
            }
            match events.recv_timeout(wait) {
                Ok(Event::Stop(sig)) => return sig,
                Ok(Event::Wake(urgency)) => {
                    // A burst of ADDs (a deployment scaling up) becomes one check: wait until
                    // the plugin has been quiet for a moment, at most WAKE_COALESCE_MAX, unless
                    // an ADD is waiting for an address.
                    let first = StdInstant::now();
                    let mut urgent = urgency == Urgency::Starved;
                    while !urgent {
                        let left = WAKE_COALESCE_MAX.saturating_sub(first.elapsed());
                        match events.recv_timeout(WAKE_COALESCE_QUIET.min(left)) {
                            Ok(Event::Stop(sig)) => return sig,
                            Ok(Event::Wake(Urgency::Starved)) => urgent = true,
                            Ok(Event::Wake(_)) if !left.is_zero() => continue,
                            Ok(Event::Wake(_)) | Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return 0,
                        }
                    }
                    self.pool_tick();
                }
                Err(RecvTimeoutError::Timeout) if StdInstant::now() < next_tick => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.rewire();
                    self.pool_tick();
                    self.maybe_reconcile();
                    self.maybe_sweep_leaked_enis();
                    next_tick = StdInstant::now() + POOL_CHECK_INTERVAL;
                }
                Err(RecvTimeoutError::Disconnected) => return 0,
            }
        }
    }

    /// The pool's counts for `STATUS=`.
    pub fn pool_status(&self) -> PoolStatus {
        PoolStatus::of(&manager::lock(&self.state).ds, self.clock.now())
    }

    fn beat(&self, notify: &mut LoopNotifier) {
        if let Err(e) = notify.beat(StdInstant::now(), self.pool_status()) {
            debug!("sd_notify: {e}");
        }
    }

    /// Tries again to wire ENIs whose wiring failed (those still in the datastore).
    pub fn rewire(&mut self) {
        if self.unwired.is_empty() {
            return;
        }
        let still: Vec<EniSpec> = {
            let st = manager::lock(&self.state);
            std::mem::take(&mut self.unwired)
                .into_iter()
                .filter(|e| st.ds.eni(&e.id).is_some())
                .collect()
        };
        for e in still {
            match self.net.wire_eni(&e) {
                Ok(()) => info!("ENI {} wired", e.id),
                Err(err) => {
                    warn!("wiring ENI {}: {err}", e.id);
                    self.unwired.push(e);
                }
            }
        }
    }

    /// Writes the checkpoint once more (shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        let st = manager::lock(&self.state);
        self.store.save(&st.ds.to_checkpoint())
    }

    /// The retry environment (randomness, sleeps).
    pub fn retry_env(&self) -> &Arc<dyn RetryEnv> {
        &self.retry_env
    }
}

/// The datastore's view of the ENIs EC2 shows attached: only those whose attachment finished
/// and that IMDS lists already (a still-attaching ENI is adopted by a later reconcile, once the
/// node can see and wire it). The subnet CIDR comes from IMDS.
pub fn observe_attached(
    attached: &[ec2::NetworkInterface],
    interfaces: &[ImdsInterface],
    primary: &ImdsInterface,
) -> Vec<reconcile::ObservedEni> {
    attached
        .iter()
        .filter(|ni| {
            ni.attachment
                .as_ref()
                .is_some_and(|a| a.status == "attached" || a.status.is_empty())
        })
        .filter_map(|ni| {
            let mac = ni.mac_address.parse::<MacAddr>().ok()?;
            let by_mac = interfaces.iter().find(|i| i.mac == mac);
            if by_mac.is_none() && ni.id != primary.interface_id {
                debug!("ENI {} is attached in EC2 but not in IMDS yet", ni.id);
                return None;
            }
            Some(reconcile::observed_from_ec2(ni, by_mac.or(Some(primary))))
        })
        .collect()
}

fn action_name(k: &crate::ipam::ActionKind) -> &'static str {
    use crate::ipam::ActionKind as K;
    match k {
        K::CreateEni { .. } => "allocateENI",
        K::AssignAddresses { .. } => "assignIPs",
        K::AssignPrefixes { .. } => "assignPrefixes",
        K::UnassignAddresses { .. } => "unassignIPs",
        K::UnassignPrefixes { .. } => "unassignPrefixes",
        K::FreeEni { .. } => "freeENI",
    }
}

/// Loads the checkpoint into the datastore: allocations whose pod's host veth is gone are
/// dropped with their rules (upstream `normalizeCheckpointDataByPodVethExistence`), the rest are
/// attached to their ENI blocks, and the file is rewritten.
pub fn restore_checkpoint(
    store: &CheckpointStore,
    ds: &mut Datastore,
    net: &mut dyn NodeNet,
    veth_prefix: &str,
) -> Result<(), String> {
    let data = match store.load() {
        Ok(Some(d)) => d,
        Ok(None) => {
            info!("no checkpoint at {}", store.path().display());
            return recover_from_node(store, ds, net, veth_prefix);
        }
        Err(e @ StoreError::Corrupt { .. }) => {
            error!(
                "{e}. The assignments of the pods running on this node are rebuilt from their routes; \
                 pods whose address cannot be found that way may have to be restarted"
            );
            return recover_from_node(store, ds, net, veth_prefix);
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut kept = Vec::new();
    for entry in &data.allocations {
        let m = &entry.metadata;
        // An assignment rebuilt from the node's routes names its veth in its key.
        let veth = if let Some(v) = entry.container_id.strip_prefix(RECOVERED_PREFIX) {
            v.to_string()
        } else if m.k8s_pod_namespace.is_empty() || m.k8s_pod_name.is_empty() {
            kept.push(entry.clone());
            continue;
        } else {
            crate::cni::plan::host_veth_name(veth_prefix, &m.k8s_pod_namespace, &m.k8s_pod_name)
        };
        match net.link_exists(&veth) {
            Ok(true) => kept.push(entry.clone()),
            Ok(false) => {
                info!(
                    "checkpoint: pod {}/{} ({}) has no veth {veth} any more; releasing its address",
                    m.k8s_pod_namespace,
                    m.k8s_pod_name,
                    entry.ipv4.as_deref().unwrap_or("-")
                );
                if let Some(ip) = entry
                    .ipv4
                    .as_deref()
                    .and_then(|s| s.parse::<Ipv4Addr>().ok())
                {
                    if let Err(e) = net.delete_pod_rules(ip) {
                        warn!("deleting rules of {ip}: {e}");
                    }
                }
            }
            Err(e) => {
                warn!("checking veth {veth}: {e}; keeping the allocation");
                kept.push(entry.clone());
            }
        }
    }
    let filtered = CheckpointData {
        version: data.version.clone(),
        allocations: kept,
    };
    let report = ds.restore(&filtered).map_err(|e| e.to_string())?;
    for s in &report.stale {
        warn!("checkpoint: {s:?} is on no attached ENI; dropped");
    }
    info!("checkpoint: {} assignments restored", report.restored);
    store.save(&ds.to_checkpoint()).map_err(|e| e.to_string())
}

/// No readable checkpoint: a start must still never hand out the address of a pod that is
/// running. Every pod route the node shows (`<ip>/32 dev <veth>`) whose address lies on one of
/// the node's ENIs becomes an assignment under a [`RECOVERED_PREFIX`] key; on a fresh node there
/// are none. The result is written as the new checkpoint.
pub fn recover_from_node(
    store: &CheckpointStore,
    ds: &mut Datastore,
    net: &mut dyn NodeNet,
    veth_prefix: &str,
) -> Result<(), String> {
    let routes = net.pod_routes(veth_prefix)?;
    if routes.is_empty() {
        return Ok(());
    }
    let entries: Vec<crate::ipam::checkpoint::CheckpointEntry> = routes
        .iter()
        .map(|(ip, veth)| crate::ipam::checkpoint::CheckpointEntry {
            network_name: crate::cni::install::NETWORK_NAME.into(),
            container_id: format!("{RECOVERED_PREFIX}{veth}"),
            if_name: "eth0".into(),
            ipv4: Some(ip.to_string()),
            ..Default::default()
        })
        .collect();
    let report = ds
        .restore(&CheckpointData {
            version: crate::ipam::checkpoint::CHECKPOINT_VERSION.into(),
            allocations: entries,
        })
        .map_err(|e| e.to_string())?;
    warn!(
        "rebuilt {} assignments from the node's pod routes ({} routes to addresses on no ENI ignored)",
        report.restored,
        report.stale.len()
    );
    store.save(&ds.to_checkpoint()).map_err(|e| e.to_string())
}

/// Everything the process does as ipamd, from configuration to exit code.
pub fn main_with(cfg: Config, net: Box<dyn NodeNet>) -> i32 {
    let started = StdInstant::now();
    let (tx, rx): (Sender<Event>, Receiver<Event>) = mpsc::channel();
    let sig_tx = tx.clone();
    if let Err(e) = std::thread::Builder::new()
        .name("ipamd-signals".into())
        .spawn(move || {
            if let Ok(sig) = super::signals::wait_termination() {
                let _ = sig_tx.send(Event::Stop(sig));
            }
        })
    {
        error!("cannot start the signal thread: {e}");
        return 1;
    }
    let mut notifier = LoopNotifier::from_env(env_var).unwrap_or_else(|e| {
        warn!("NOTIFY_SOCKET: {e}; not notifying systemd");
        LoopNotifier::new(super::notify::Notifier::disabled(), None)
    });
    let mut daemon = match Daemon::start(cfg, net) {
        Ok(d) => d,
        Err(e) => {
            error!("{e}");
            let _ = notifier.notify(&format!("STATUS=start-up failed: {e}"));
            return 1;
        }
    };
    let wake_tx = Mutex::new(tx.clone());
    let wake: Arc<dyn Fn(Urgency) + Send + Sync> = Arc::new(move |u| {
        if let Ok(t) = wake_tx.lock() {
            let _ = t.send(Event::Wake(u));
        }
    });
    let mut service = daemon.address_service(wake);
    let reaper = crate::netlink::Netns::current()
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(super::veth_reaper::VethReaper::spawn);
    match reaper {
        Ok(r) => service = service.with_veth_reaper(Arc::new(r)),
        // The plugin then deletes each pair itself, as part of the DEL.
        Err(e) => warn!("veth reaper thread: {e}; the plugin deletes pod veths itself"),
    }
    let service = Arc::new(service);
    let ready = super::introspection::ReadinessFlag::new("ipamd is starting");
    let startup = Arc::new(Mutex::new(None));
    let http = super::serve::start(super::serve::Sources {
        config: Arc::new(daemon.config().clone()),
        state: daemon.state.clone(),
        clock: daemon.clock().clone(),
        api: daemon.api_stats.clone(),
        startup: startup.clone(),
        ready: ready.clone(),
    });
    let socket = crate::rpc::socket_path_from_env();
    let server =
        match crate::rpc::Server::bind(&socket).and_then(|s| s.spawn(service, RPC_DEADLINE)) {
            Ok(h) => h,
            Err(e) => {
                error!("plugin socket {}: {e}", socket.display());
                return 1;
            }
        };
    match crate::cni::install::install(&crate::cni::install::InstallConfig::from_config(
        daemon.config(),
    )) {
        Ok(path) => info!("wrote {} and installed the aws-cni plugin", path.display()),
        Err(e) => {
            error!("installing the plugin and conflist: {e}");
            server.shutdown();
            return 1;
        }
    }
    daemon.set_ready();
    daemon.startup.total = started.elapsed();
    ready.set_ready();
    if let Ok(mut s) = startup.lock() {
        *s = Some(daemon.startup.clone());
    }
    let s = &daemon.startup;
    info!(
        "ready in {} ms: {} ms own work, {} ms waiting on IMDS, {} ms on EC2; steps: {}",
        s.total.as_millis(),
        s.own().as_millis(),
        s.imds.as_millis(),
        s.ec2.as_millis(),
        s.steps
            .iter()
            .map(|(n, d)| format!("{n} {} ms", d.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Err(e) = notifier.ready(StdInstant::now(), daemon.pool_status()) {
        warn!("sd_notify: {e}");
    }
    let sig = daemon.run(&rx, &mut notifier);
    info!("{} received: stopping", super::signals::name(sig));
    let _ = notifier.notify("STOPPING=1");
    server.shutdown();
    drop(http);
    match daemon.flush() {
        Ok(()) => {
            info!("checkpoint flushed; bye");
            0
        }
        Err(e) => {
            error!("final checkpoint write: {e}");
            1
        }
    }
}

/// The wall-clock time as RFC 3339 with whole seconds (the createdAt tag).
pub fn now_rfc3339() -> String {
    rfc3339_of(std::time::SystemTime::now())
}

/// `t` as RFC 3339 with whole seconds.
pub fn rfc3339_of(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    crate::timefmt::rfc3339(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        0,
        crate::timefmt::Fraction::None,
    )
}
