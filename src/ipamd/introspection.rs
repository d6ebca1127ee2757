//! Routers of the introspection endpoint (`INTROSPECTION_BIND_ADDRESS`, default `127.0.0.1:61679`)
//! and of the metrics endpoint (`:61678`), plus the `/healthz` and `/readyz` probes both serve.
//!
//! Introspection paths are upstream's (`pkg/ipamd/introspect.go`):
//! - `/` lists them as `{"AvailableCommands": [...]}`;
//! - `/v1/enis`: the datastore as upstream's `ENIInfos` ([`crate::ipam::introspect`]);
//! - `/v1/eni-configs`: upstream's `ENIConfigInfo` shape. No ENIConfig is read from the Kubernetes
//!   API yet, so `ENI` is empty and `MyENI` is `default`, what upstream shows when it knows none;
//! - `/v1/networkutils-env-settings` and `/v1/ipamd-env-settings`: the variables upstream's
//!   `GetConfigForDebug` functions report, with their effective values and upstream's JSON types
//!   (`AWS_VPC_K8S_CNI_RANDOMIZESNAT` is upstream's enum number: 0 none, 1 hashrandom, 2 prng;
//!   an empty CIDR list is `null`; `WARM_IP_TARGET` is 0 when unset).
//!
//! Unlike upstream, whose `/` handler answers every unknown path with the list, unknown paths get
//! `404` (with the list in the body), and JSON is served as `application/json`.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::http::{Request, Response};
use super::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use crate::config::{self, Config, RandomizeSnat};
use crate::ipam::introspect::eni_infos;
use crate::ipam::{Datastore, Instant};
use crate::net::IpNet;

/// The introspection paths, as listed by `/`.
pub const INTROSPECTION_PATHS: [&str; 4] = [
    "/v1/enis",
    "/v1/eni-configs",
    "/v1/networkutils-env-settings",
    "/v1/ipamd-env-settings",
];

/// Liveness probe path: `200 ok` while the daemon serves HTTP at all.
pub const HEALTHZ: &str = "/healthz";
/// Readiness probe path: `200 ok` once ready, `503` with the reason before.
pub const READYZ: &str = "/readyz";
/// Metrics path.
pub const METRICS: &str = "/metrics";

/// Whether the daemon is ready and, if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Ready to serve CNI requests.
    pub ready: bool,
    /// Why not (shown by `/readyz`); empty when ready.
    pub reason: String,
}

impl Readiness {
    /// Ready.
    pub fn ready() -> Readiness {
        Readiness {
            ready: true,
            reason: String::new(),
        }
    }

    /// Not ready because of `reason`.
    pub fn not_ready(reason: &str) -> Readiness {
        Readiness {
            ready: false,
            reason: reason.to_string(),
        }
    }
}

/// A shared, thread-safe [`Readiness`] the daemon updates and the handlers read.
#[derive(Debug)]
pub struct ReadinessFlag(Mutex<Readiness>);

impl ReadinessFlag {
    /// Not ready yet, because of `reason` (e.g. "starting").
    pub fn new(reason: &str) -> Arc<ReadinessFlag> {
        Arc::new(ReadinessFlag(Mutex::new(Readiness::not_ready(reason))))
    }

    /// Marks ready.
    pub fn set_ready(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Readiness::ready();
    }

    /// Marks not ready because of `reason`.
    pub fn set_not_ready(&self, reason: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Readiness::not_ready(reason);
    }

    /// The current state.
    pub fn get(&self) -> Readiness {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the introspection paths show: a snapshot taken for one request.
#[derive(Debug, Clone)]
pub struct IntrospectionView {
    /// A copy of the datastore (taken under the daemon's lock, rendered outside it).
    pub datastore: Datastore,
    /// The monotonic time of the snapshot.
    pub now: Instant,
    /// The same moment on the wall clock, in nanoseconds since the Unix epoch.
    pub now_unix_nanos: i64,
    /// The effective configuration.
    pub config: Arc<Config>,
}

fn json_response<T: Serialize>(status: u16, v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(s) => Response::json(status, s),
        Err(e) => {
            log::error!("introspection: cannot serialize the answer: {e}");
            Response::text(500, "Internal Server Error\n")
        }
    }
}

/// `/healthz` and `/readyz`; `None` for other paths.
pub fn health_route(req: &Request, readiness: &Readiness) -> Option<Response> {
    match req.path.as_str() {
        HEALTHZ => Some(Response::text(200, "ok\n")),
        READYZ if readiness.ready => Some(Response::text(200, "ok\n")),
        READYZ => Some(Response::text(
            503,
            format!("not ready: {}\n", readiness.reason),
        )),
        _ => None,
    }
}

fn commands() -> Value {
    json!({ "AvailableCommands": INTROSPECTION_PATHS })
}

/// The introspection router. `view` is called only for the `/v1/...` paths, so the probes never
/// wait for the daemon's state lock.
pub fn route(
    req: &Request,
    readiness: &Readiness,
    view: impl FnOnce() -> IntrospectionView,
) -> Response {
    if let Some(r) = health_route(req, readiness) {
        return r;
    }
    match req.path.as_str() {
        "/" => json_response(200, &commands()),
        "/v1/enis" => {
            let v = view();
            json_response(200, &eni_infos(&v.datastore, v.now, v.now_unix_nanos))
        }
        "/v1/eni-configs" => json_response(200, &eni_configs(&view().config)),
        "/v1/networkutils-env-settings" => {
            json_response(200, &networkutils_env_settings(&view().config))
        }
        "/v1/ipamd-env-settings" => json_response(200, &ipamd_env_settings(&view().config)),
        _ => json_response(404, &commands()),
    }
}

/// The metrics router: `/metrics` (body from `render`, called only for that path), `/healthz`,
/// `/readyz`; anything else `404`.
pub fn metrics_route(
    req: &Request,
    readiness: &Readiness,
    render: impl FnOnce() -> String,
) -> Response {
    if let Some(r) = health_route(req, readiness) {
        return r;
    }
    match req.path.as_str() {
        METRICS => Response::new(200, METRICS_CONTENT_TYPE, render()),
        _ => Response::text(404, "404 page not found\n"),
    }
}

/// Upstream's `ENIConfigInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EniConfigInfo {
    /// Known ENIConfigs by name (always empty: no Kubernetes API client yet).
    #[serde(rename = "ENI")]
    pub eni: Map<String, Value>,
    /// The ENIConfig name of this node.
    #[serde(rename = "MyENI")]
    pub my_eni: String,
    /// ENI_CONFIG_ANNOTATION_DEF.
    #[serde(rename = "EniConfigAnnotationDef")]
    pub eni_config_annotation_def: String,
    /// ENI_CONFIG_LABEL_DEF.
    #[serde(rename = "EniConfigLabelDef")]
    pub eni_config_label_def: String,
}

/// The `/v1/eni-configs` document.
pub fn eni_configs(cfg: &Config) -> EniConfigInfo {
    EniConfigInfo {
        eni: Map::new(),
        my_eni: "default".to_string(),
        eni_config_annotation_def: cfg.eni_config_annotation_def.clone(),
        eni_config_label_def: cfg.eni_config_label_def.clone(),
    }
}

fn cidr_list(v: &[IpNet]) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        Value::from(v.iter().map(IpNet::to_string).collect::<Vec<_>>())
    }
}

fn snat_type(r: RandomizeSnat) -> u32 {
    match r {
        RandomizeSnat::None => 0,
        RandomizeSnat::HashRandom => 1,
        RandomizeSnat::Prng => 2,
    }
}

/// The `/v1/networkutils-env-settings` document (keys sorted, as Go marshals a map).
pub fn networkutils_env_settings(cfg: &Config) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("AWS_VPC_K8S_CNI_CONNMARK".into(), json!(cfg.connmark));
    m.insert(
        config::AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS.into(),
        cidr_list(&cfg.exclude_snat_cidrs),
    );
    m.insert(
        config::AWS_VPC_K8S_CNI_EXTERNALSNAT.into(),
        json!(cfg.external_snat),
    );
    m.insert(
        config::AWS_EXTERNAL_SERVICE_CIDRS.into(),
        cidr_list(&cfg.external_service_cidrs),
    );
    m.insert(config::AWS_VPC_ENI_MTU.into(), json!(cfg.eni_mtu));
    m.insert(
        config::AWS_VPC_K8S_CNI_VETHPREFIX.into(),
        json!(cfg.veth_prefix.as_str()),
    );
    m.insert(
        config::AWS_VPC_CNI_NODE_PORT_SUPPORT.into(),
        json!(cfg.node_port_support),
    );
    m.insert(
        config::AWS_VPC_K8S_CNI_RANDOMIZESNAT.into(),
        json!(snat_type(cfg.randomize_snat)),
    );
    m
}

/// The `/v1/ipamd-env-settings` document.
pub fn ipamd_env_settings(cfg: &Config) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        config::WARM_IP_TARGET.into(),
        json!(cfg.warm_ip_target.unwrap_or(0)),
    );
    m.insert(config::WARM_ENI_TARGET.into(), json!(cfg.warm_eni_target));
    m.insert(
        config::AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG.into(),
        json!(cfg.custom_network_cfg),
    );
    m
}
