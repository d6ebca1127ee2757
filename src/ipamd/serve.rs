//! The daemon's HTTP endpoints: introspection on INTROSPECTION_BIND_ADDRESS and Prometheus
//! metrics on :61678, each answered from a copy of the node state taken under the lock and
//! rendered outside it.

use std::sync::{Arc, Mutex};

use log::{error, info};

use super::daemon::StartupTimes;
use super::http::{Handler, HttpHandle, HttpServer};
use super::introspection::{self, IntrospectionView, ReadinessFlag};
use super::manager::{self, Clock, NodeState, SystemClock};
use super::metrics::{self, MetricsInput, StartupDuration};
use crate::aws::stats::ApiStats;
use crate::config::Config;

/// The running HTTP servers; dropping it stops them.
#[derive(Debug, Default)]
pub struct HttpServers {
    /// Introspection, unless DISABLE_INTROSPECTION.
    pub introspection: Option<HttpHandle>,
    /// Metrics, unless DISABLE_METRICS.
    pub metrics: Option<HttpHandle>,
}

/// What the endpoints read.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The configuration.
    pub config: Arc<Config>,
    /// The node state.
    pub state: Arc<Mutex<NodeState>>,
    /// Its clock.
    pub clock: Arc<SystemClock>,
    /// EC2 call statistics.
    pub api: Arc<ApiStats>,
    /// Start-up timings (filled once ready).
    pub startup: Arc<Mutex<Option<StartupTimes>>>,
    /// Readiness for /readyz.
    pub ready: Arc<ReadinessFlag>,
}

/// The metrics of the moment.
pub fn metrics_input(src: &Sources) -> MetricsInput {
    let mut m = MetricsInput::default();
    let now = src.clock.now();
    let st = manager::lock(&src.state);
    m.set_pool(&st.ds, now);
    let per_eni = st.pool.max_ips_per_eni(st.ds.mode());
    m.eni_max = u64::from(st.pool.max_enis());
    // Addresses, also in prefix mode (a /28 counts 16), as upstream's `awscni_ip_max`.
    m.ip_max = m.eni_max * u64::from(per_eni);
    let c = &st.counters;
    m.add_ip_req_count = c.add_requests;
    m.del_ip_req_count = c
        .del_requests
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    m.no_available_ip_addresses = c.no_address;
    m.force_removed_enis = c.force_removed_enis;
    m.force_removed_ips = c.force_removed_ips;
    m.reconcile_count = vec![("eniIPPoolReconcile".into(), c.reconciles)];
    m.ipamd_error_count = c
        .action_errors
        .iter()
        .map(|(k, v)| ((*k).to_string(), *v))
        .collect();
    m.ipamd_action_inprogress =
        st.pool
            .in_flight()
            .iter()
            .fold(Vec::<(String, u64)>::new(), |mut acc, a| {
                let name = action_label(&a.kind);
                match acc.iter_mut().find(|(k, _)| k == name) {
                    Some((_, n)) => *n += 1,
                    None => acc.push((name.to_string(), 1)),
                }
                acc
            });
    drop(st);
    m.aws_api = src.api.snapshot();
    if let Ok(s) = src.startup.lock() {
        if let Some(t) = s.as_ref() {
            m.startup = Some(StartupDuration {
                seconds: t.total.as_secs_f64(),
                success: true,
                with_api_server: false,
                failure_reason: String::new(),
            });
            m.node_initialization_seconds = Some(t.total.as_secs_f64());
        }
    }
    m.connmark_backend = Some("nftables".into());
    m
}

fn action_label(k: &crate::ipam::ActionKind) -> &'static str {
    use crate::ipam::ActionKind as K;
    match k {
        K::CreateEni { .. } => "increaseIPPool",
        K::AssignAddresses { .. } | K::AssignPrefixes { .. } => "increaseIPPool",
        K::UnassignAddresses { .. } | K::UnassignPrefixes { .. } => "decreaseIPPool",
        K::FreeEni { .. } => "decreaseIPPool",
    }
}

/// Starts the endpoints the configuration asks for. A port that cannot be bound is logged and
/// left out: pods must not lose their addresses because a scrape port is taken.
pub fn start(src: Sources) -> HttpServers {
    let mut out = HttpServers::default();
    if !src.config.disable_introspection {
        let s = src.clone();
        let handler: Handler = Arc::new(move |req| {
            introspection::route(req, &s.ready.get(), || {
                let st = manager::lock(&s.state);
                IntrospectionView {
                    datastore: st.ds.clone(),
                    now: s.clock.now(),
                    now_unix_nanos: s.clock.unix_nanos(),
                    config: s.config.clone(),
                }
            })
        });
        let addr = &src.config.introspection_bind_address;
        match HttpServer::bind(addr).and_then(|srv| srv.serve(handler)) {
            Ok(h) => {
                info!("introspection on {}", addr.display());
                out.introspection = Some(h);
            }
            Err(e) => error!("introspection on {}: {e}", addr.display()),
        }
    }
    if !src.config.disable_metrics {
        let s = src.clone();
        let handler: Handler = Arc::new(move |req| {
            introspection::metrics_route(req, &s.ready.get(), || {
                metrics::render(&metrics_input(&s))
            })
        });
        let addr = metrics::metrics_bind_address();
        match HttpServer::bind(&addr).and_then(|srv| srv.serve(handler)) {
            Ok(h) => {
                info!("metrics on {}", addr.display());
                out.metrics = Some(h);
            }
            Err(e) => error!("metrics on {}: {e}", addr.display()),
        }
    }
    out
}
