//! The CNI contract (spec 0.3.0 … 1.1.0): environment, network configuration, results and errors.
//!
//! Pure: parses what the runtime hands the plugin and renders what the plugin hands back. No I/O.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use core::fmt;
use core::net::Ipv4Addr;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::net::VethPrefix;

/// Spec versions this plugin speaks, oldest first. 0.1.0 and 0.2.0 (no `interfaces`, no `prevResult`)
/// are refused with error 1.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version we speak, reported when the input's own version is unusable.
pub const LATEST_VERSION: &str = "1.1.0";

/// Default host veth prefix (`AWS_VPC_K8S_CNI_VETHPREFIX`).
pub const DEFAULT_VETH_PREFIX: &str = VethPrefix::DEFAULT;
/// Default pod MTU when the configuration names none.
pub const DEFAULT_MTU: u32 = 9001;
/// Smallest pod MTU accepted (as upstream).
pub const MIN_MTU: u32 = 576;
/// Largest pod MTU accepted (as upstream).
pub const MAX_MTU: u32 = 9001;

/// Error codes of the CNI spec, plus ours (100 and up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// 1: the requested cniVersion is not one we speak.
    IncompatibleVersion = 1,
    /// 2: a field of the network configuration is not supported.
    UnsupportedField = 2,
    /// 3: the container is unknown or does not exist.
    UnknownContainer = 3,
    /// 4: an environment variable (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS) is missing or invalid.
    InvalidEnvironment = 4,
    /// 5: an I/O failure.
    IoFailure = 5,
    /// 6: stdin could not be decoded.
    DecodeFailure = 6,
    /// 7: the network configuration is invalid.
    InvalidNetworkConfig = 7,
    /// 11: transient; the runtime should try again later (ipamd not reachable on ADD).
    TryAgainLater = 11,
    /// 50: STATUS: the plugin cannot serve ADDs now (ipamd not answering or not ready).
    PluginNotAvailable = 50,
    /// 100: ipamd refused or failed the request.
    IpamdFailed = 100,
    /// 101: wiring the pod (veth, address, routes, neighbour, rules) failed.
    SetupFailed = 101,
    /// 102: CHECK found wiring that is missing or wrong.
    CheckFailed = 102,
    /// 103: tearing the pod down failed.
    TeardownFailed = 103,
}

/// An error in the spec's shape: `{cniVersion, code, msg, details}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// Which spec code.
    pub code: ErrorCode,
    /// Short message: what failed.
    pub msg: String,
    /// Longer detail: on which object, and what is allowed.
    pub details: String,
}

impl CniError {
    /// An error with a code, a short message and details.
    pub fn new(code: ErrorCode, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The JSON object printed on stdout, tagged with `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> Value {
        json!({
            "cniVersion": cni_version,
            "code": self.code as u32,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code as u32)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl core::error::Error for CniError {}

/// The CNI verb (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container.
    Del,
    /// Verify an attachment.
    Check,
    /// Report whether the plugin is ready (1.1).
    Status,
    /// Release resources of attachments no longer valid (1.1).
    Gc,
    /// Report supported versions.
    Version,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Result<Command, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::new(
                    ErrorCode::InvalidEnvironment,
                    "unknown CNI_COMMAND",
                    format!("CNI_COMMAND={other:?}; allowed: ADD, DEL, CHECK, STATUS, GC, VERSION"),
                ))
            }
        })
    }

    /// The first spec version that defines this verb.
    fn since(self) -> &'static str {
        match self {
            Command::Check => "0.4.0",
            Command::Status | Command::Gc => "1.1.0",
            _ => "0.1.0",
        }
    }
}

/// `CNI_ARGS` (`K=V;K=V`), the keys the kubelet sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `K8S_POD_NAME`.
    pub pod_name: String,
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: String,
    /// `K8S_POD_INFRA_CONTAINER_ID`.
    pub infra_container_id: String,
    /// `K8S_POD_UID`.
    pub pod_uid: String,
}

impl CniArgs {
    /// Parses `CNI_ARGS`. Unknown keys are an error unless `IgnoreUnknown` is `1` or `true`, as in libcni.
    pub fn parse(s: &str) -> Result<CniArgs, CniError> {
        let mut out = CniArgs::default();
        let mut unknown = Vec::new();
        let mut ignore_unknown = false;
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(CniError::new(
                    ErrorCode::InvalidEnvironment,
                    "invalid CNI_ARGS",
                    format!(
                        "{pair:?} is not KEY=VALUE; CNI_ARGS is KEY=VALUE pairs separated by ';'"
                    ),
                ));
            };
            match k {
                "K8S_POD_NAME" => out.pod_name = v.to_string(),
                "K8S_POD_NAMESPACE" => out.pod_namespace = v.to_string(),
                "K8S_POD_INFRA_CONTAINER_ID" => out.infra_container_id = v.to_string(),
                "K8S_POD_UID" => out.pod_uid = v.to_string(),
                "IgnoreUnknown" => ignore_unknown = matches!(v, "1" | "true" | "True" | "TRUE"),
                other => unknown.push(other.to_string()),
            }
        }
        if !unknown.is_empty() && !ignore_unknown {
            return Err(CniError::new(
                ErrorCode::InvalidEnvironment,
                "invalid CNI_ARGS",
                format!(
                    "unknown keys {unknown:?}; known: K8S_POD_NAME, K8S_POD_NAMESPACE, \
                     K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID (add IgnoreUnknown=1 to ignore others)"
                ),
            ));
        }
        Ok(out)
    }
}

/// The CNI environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for VERSION, STATUS, GC).
    pub container_id: String,
    /// `CNI_NETNS` (ADD and CHECK require it; DEL may lack it when the namespace is gone).
    pub netns: Option<String>,
    /// `CNI_IFNAME` (empty for VERSION, STATUS, GC).
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: CniArgs,
    /// `CNI_PATH` (unused by this plugin: it delegates to nothing).
    pub path: String,
}

impl Env {
    /// Reads the environment through `get` (the process environment in production).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let missing = |name: &str| {
            CniError::new(
                ErrorCode::InvalidEnvironment,
                format!("{name} is not set"),
                format!("the runtime must set {name} for this command"),
            )
        };
        let non_empty = |name: &str| get(name).filter(|v| !v.is_empty());
        let command =
            Command::parse(&non_empty("CNI_COMMAND").ok_or_else(|| missing("CNI_COMMAND"))?)?;
        let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let container_id = non_empty("CNI_CONTAINERID").unwrap_or_default();
        let ifname = non_empty("CNI_IFNAME").unwrap_or_default();
        let netns = non_empty("CNI_NETNS");
        if per_container {
            if container_id.is_empty() {
                return Err(missing("CNI_CONTAINERID"));
            }
            validate_container_id(&container_id)?;
            if ifname.is_empty() {
                return Err(missing("CNI_IFNAME"));
            }
            validate_ifname(&ifname)?;
            if netns.is_none() && command != Command::Del {
                return Err(missing("CNI_NETNS"));
            }
        }
        let args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
            args,
            path: get("CNI_PATH").unwrap_or_default(),
        })
    }
}

/// The spec's container id rule: non-empty, alphanumerics plus `_ . -`.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let ok = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok && !id.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            "invalid CNI_CONTAINERID",
            format!("{id:?}: allowed are letters, digits, '_', '.' and '-'"),
        ))
    }
}

/// The kernel's interface-name rule: 1–15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            "invalid CNI_IFNAME",
            format!(
                "{name:?}: an interface name is 1 to 15 bytes, not '.' or '..', without '/', ':' or whitespace"
            ),
        ))
    } else {
        Ok(())
    }
}

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Attachment {
    /// The container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The interface name.
    pub ifname: String,
}

/// The plugin's network configuration, as the runtime passes it on stdin.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`, one of [`SUPPORTED_VERSIONS`].
    pub cni_version: String,
    /// Network `name` (part of the ipamd assignment key).
    pub name: String,
    /// Plugin `type`.
    pub plugin_type: String,
    /// Pod MTU (`mtu`, a number or a numeric string; default 9001, range 576–9001).
    pub mtu: u32,
    /// Host veth prefix (`vethPrefix`, default `eni`).
    pub veth_prefix: VethPrefix,
    /// `pluginLogFile`.
    pub plugin_log_file: Option<String>,
    /// `pluginLogLevel`.
    pub plugin_log_level: Option<String>,
    /// `podSGEnforcingMode` (`strict` or `standard`); carried, security groups per pod are not wired here.
    pub pod_sg_enforcing_mode: Option<String>,
    /// `runtimeConfig` as given (capability arguments such as pod annotations).
    pub runtime_config: Option<Value>,
    /// `prevResult`, parsed (DEL and CHECK; a chained ADD ignores it).
    pub prev_result: Option<CniResult>,
    /// `cni.dev/valid-attachments` (GC).
    pub valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Deserialize)]
struct NetConfWire {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    mtu: Option<Value>,
    #[serde(rename = "vethPrefix")]
    veth_prefix: Option<String>,
    #[serde(rename = "pluginLogFile")]
    plugin_log_file: Option<String>,
    #[serde(rename = "pluginLogLevel")]
    plugin_log_level: Option<String>,
    #[serde(rename = "podSGEnforcingMode")]
    pod_sg_enforcing_mode: Option<String>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: Option<Value>,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
}

/// Reads just `cniVersion` from stdin, for error reporting before the full parse succeeds.
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct V {
        #[serde(rename = "cniVersion")]
        v: Option<String>,
    }
    serde_json::from_slice::<V>(stdin).ok().and_then(|v| v.v)
}

/// Checks that `version` is one we speak and that it defines `command`.
pub fn negotiate(version: &str, command: Command) -> Result<(), CniError> {
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            "incompatible CNI version",
            format!(
                "cniVersion {version:?} is not supported; supported: {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    if version_lt(version, command.since()) {
        return Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            "incompatible CNI version",
            format!(
                "{command:?} needs cniVersion {} or later, the configuration has {version}",
                command.since()
            ),
        ));
    }
    Ok(())
}

fn version_tuple(v: &str) -> (u32, u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

fn version_lt(a: &str, b: &str) -> bool {
    version_tuple(a) < version_tuple(b)
}

impl NetConf {
    /// Parses and validates the configuration for `command`.
    pub fn parse(stdin: &[u8], command: Command) -> Result<NetConf, CniError> {
        let wire: NetConfWire = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                ErrorCode::DecodeFailure,
                "cannot decode the network configuration on stdin",
                format!("{e}; expected a JSON object with cniVersion, name and type"),
            )
        })?;
        let invalid = |what: &str, details: String| {
            CniError::new(ErrorCode::InvalidNetworkConfig, what.to_string(), details)
        };
        let cni_version = wire.cni_version.ok_or_else(|| {
            invalid(
                "cniVersion is missing",
                format!("supported: {}", SUPPORTED_VERSIONS.join(", ")),
            )
        })?;
        negotiate(&cni_version, command)?;
        let name = wire.name.filter(|n| !n.is_empty()).ok_or_else(|| {
            invalid(
                "name is missing",
                "the network configuration must name the network".into(),
            )
        })?;
        let plugin_type = wire.plugin_type.unwrap_or_default();
        let mtu = match wire.mtu {
            None | Some(Value::Null) => DEFAULT_MTU,
            Some(Value::String(s)) if s.is_empty() => DEFAULT_MTU,
            Some(v) => {
                let n = match &v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                match n {
                    Some(n) if (MIN_MTU as u64..=MAX_MTU as u64).contains(&n) => n as u32,
                    _ => {
                        return Err(invalid(
                            "invalid mtu",
                            format!("mtu {v}: allowed is a number from {MIN_MTU} to {MAX_MTU}"),
                        ))
                    }
                }
            }
        };
        let veth_prefix = match wire.veth_prefix.as_deref() {
            None | Some("") => VethPrefix::default(),
            Some(p) => {
                VethPrefix::parse(p).map_err(|e| invalid("invalid vethPrefix", e.to_string()))?
            }
        };
        if let Some(mode) = &wire.pod_sg_enforcing_mode {
            if !matches!(mode.as_str(), "" | "strict" | "standard") {
                return Err(invalid(
                    "invalid podSGEnforcingMode",
                    format!("podSGEnforcingMode {mode:?}: allowed are \"strict\" and \"standard\""),
                ));
            }
        }
        let prev_result = match wire.prev_result {
            None | Some(Value::Null) => None,
            Some(v) => {
                Some(CniResult::from_json(&v).map_err(|e| invalid("invalid prevResult", e))?)
            }
        };
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            mtu,
            veth_prefix,
            plugin_log_file: wire.plugin_log_file,
            plugin_log_level: wire.plugin_log_level,
            pod_sg_enforcing_mode: wire.pod_sg_enforcing_mode,
            runtime_config: wire.runtime_config,
            prev_result,
            valid_attachments: wire.valid_attachments,
        })
    }
}

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address; on the pod interface it carries the route table id instead (see [`CniResult`]).
    pub mac: String,
    /// Netns path, or empty for the host side.
    pub sandbox: String,
}

/// One IP configuration of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address in CIDR form (`10.0.0.5/32`).
    pub address: String,
    /// Gateway.
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

/// One route of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination CIDR.
    pub dst: String,
    /// Next hop.
    pub gw: Option<String>,
}

/// A CNI result (0.3.0 and later shape).
///
/// As upstream does, the pod-side interface's `mac` field carries the pod's route table id (decimal, `0` for the
/// primary ENI), so that DEL and CHECK know the from-pod rule without asking ipamd.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniResult {
    /// Interfaces: host veth first, then the pod interface.
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes inside the pod.
    pub routes: Vec<Route>,
    /// DNS (passed through untouched).
    pub dns: Value,
}

impl CniResult {
    /// Parses a result of any version from 0.3.0 on (IP entries with or without `version`).
    pub fn from_json(v: &Value) -> Result<CniResult, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "prevResult must be a JSON object".to_string())?;
        let str_of = |o: &Map<String, Value>, k: &str| {
            o.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut out = CniResult {
            dns: obj.get("dns").cloned().unwrap_or(Value::Null),
            ..CniResult::default()
        };
        for i in obj
            .get("interfaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let o = i
                .as_object()
                .ok_or("interfaces[] entries must be objects")?;
            out.interfaces.push(Interface {
                name: str_of(o, "name"),
                mac: str_of(o, "mac"),
                sandbox: str_of(o, "sandbox"),
            });
        }
        for ip in obj
            .get("ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let o = ip.as_object().ok_or("ips[] entries must be objects")?;
            let address = str_of(o, "address");
            if address.is_empty() {
                return Err("ips[] entry without address".into());
            }
            out.ips.push(IpConfig {
                address,
                gateway: o.get("gateway").and_then(Value::as_str).map(str::to_string),
                interface: o
                    .get("interface")
                    .and_then(Value::as_u64)
                    .map(|n| n as usize),
            });
        }
        for r in obj
            .get("routes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let o = r.as_object().ok_or("routes[] entries must be objects")?;
            out.routes.push(Route {
                dst: str_of(o, "dst"),
                gw: o.get("gw").and_then(Value::as_str).map(str::to_string),
            });
        }
        Ok(out)
    }

    /// Renders the result for `cni_version` (0.3.x/0.4.0 tag IPs with `"version"`, 1.x do not).
    pub fn to_json(&self, cni_version: &str) -> Value {
        let tagged = version_lt(cni_version, "1.0.0");
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut o = Map::new();
                o.insert("name".into(), json!(i.name));
                if !i.mac.is_empty() {
                    o.insert("mac".into(), json!(i.mac));
                }
                if !i.sandbox.is_empty() {
                    o.insert("sandbox".into(), json!(i.sandbox));
                }
                Value::Object(o)
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut o = Map::new();
                if tagged {
                    let v = if ip.address.contains(':') { "6" } else { "4" };
                    o.insert("version".into(), json!(v));
                }
                o.insert("address".into(), json!(ip.address));
                if let Some(g) = &ip.gateway {
                    o.insert("gateway".into(), json!(g));
                }
                if let Some(i) = ip.interface {
                    o.insert("interface".into(), json!(i));
                }
                Value::Object(o)
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut o = Map::new();
                o.insert("dst".into(), json!(r.dst));
                if let Some(g) = &r.gw {
                    o.insert("gw".into(), json!(g));
                }
                Value::Object(o)
            })
            .collect();
        let dns = if self.dns.is_object() {
            self.dns.clone()
        } else {
            json!({})
        };
        json!({
            "cniVersion": cni_version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
            "dns": dns,
        })
    }

    /// The first IPv4 address (without prefix length).
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.ips
            .iter()
            .filter_map(|ip| ip.address.split('/').next()?.parse::<Ipv4Addr>().ok())
            .next()
    }

    /// The host-side interface (no sandbox).
    pub fn host_interface(&self) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.sandbox.is_empty())
    }

    /// The pod-side interface named `ifname`.
    pub fn pod_interface(&self, ifname: &str) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|i| !i.sandbox.is_empty() && i.name == ifname)
    }

    /// The route table id carried in the pod interface's `mac` field (upstream's convention).
    pub fn route_table(&self, ifname: &str) -> Option<u32> {
        self.pod_interface(ifname)?.mac.parse().ok()
    }
}

/// The VERSION answer.
pub fn version_json(cni_version: &str) -> Value {
    json!({"cniVersion": cni_version, "supportedVersions": SUPPORTED_VERSIONS})
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    fn env_from(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_vars(|k| map.get(k).cloned())
    }

    const ADD_ENV: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;FOO=bar"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    #[test]
    fn add_environment_is_read_with_kubelet_args() {
        let env = env_from(ADD_ENV).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.args.pod_name, "web-0");
        assert_eq!(env.args.pod_namespace, "default");
        assert_eq!(env.args.infra_container_id, "abc123");
        assert_eq!(env.netns.as_deref(), Some("/var/run/netns/x"));
    }

    #[test]
    fn missing_netns_on_add_is_error_4_naming_the_variable() {
        let pairs: Vec<_> = ADD_ENV
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        let e = env_from(&pairs).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        assert!(e.msg.contains("CNI_NETNS"), "{e}");
        // DEL tolerates a vanished namespace.
        let mut del = pairs.clone();
        del[0] = ("CNI_COMMAND", "DEL");
        assert_eq!(env_from(&del).unwrap().netns, None);
    }

    #[test]
    fn bad_ifnames_are_refused() {
        for bad in ["", "a/b", "way-too-long-name0", "..", "a b", "x:1"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["eth0", "mNicIf1", "a", "123456789012345"] {
            assert!(validate_ifname(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn unknown_cni_args_need_ignore_unknown() {
        assert!(CniArgs::parse("K8S_POD_NAME=a;FOO=1").is_err());
        assert!(CniArgs::parse("K8S_POD_NAME=a;FOO=1;IgnoreUnknown=true").is_ok());
        assert!(CniArgs::parse("novalue").is_err());
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }

    #[test]
    fn versions_are_negotiated() {
        for v in SUPPORTED_VERSIONS {
            assert!(negotiate(v, Command::Add).is_ok());
        }
        let e = negotiate("0.2.0", Command::Add).unwrap_err();
        assert_eq!(e.code, ErrorCode::IncompatibleVersion);
        assert!(e.details.contains("1.1.0"));
        assert_eq!(
            negotiate("9.9.9", Command::Add).unwrap_err().code,
            ErrorCode::IncompatibleVersion
        );
        assert!(negotiate("0.3.1", Command::Check).is_err());
        assert!(negotiate("1.0.0", Command::Status).is_err());
        assert!(negotiate("1.1.0", Command::Gc).is_ok());
    }

    #[test]
    fn upstream_conflist_entry_parses_with_string_mtu() {
        let conf = br#"{"cniVersion":"0.4.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni",
            "mtu":"9001","podSGEnforcingMode":"strict","pluginLogFile":"/var/log/aws-routed-eni/plugin.log",
            "pluginLogLevel":"DEBUG","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{}}}"#;
        let c = NetConf::parse(conf, Command::Add).unwrap();
        assert_eq!(c.mtu, 9001);
        assert_eq!(c.veth_prefix, "eni");
        assert_eq!(c.pod_sg_enforcing_mode.as_deref(), Some("strict"));
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"aws-cni","mtu":1500}"#,
            Command::Add,
        )
        .unwrap();
        assert_eq!(c.mtu, 1500);
    }

    #[test]
    fn invalid_configuration_names_the_field_and_allowed_values() {
        let cases: &[(&[u8], ErrorCode, &str)] = &[
            (b"{not json", ErrorCode::DecodeFailure, "decode"),
            (
                br#"{"name":"n","type":"t"}"#,
                ErrorCode::InvalidNetworkConfig,
                "cniVersion",
            ),
            (
                br#"{"cniVersion":"0.4.0","type":"t"}"#,
                ErrorCode::InvalidNetworkConfig,
                "name",
            ),
            (
                br#"{"cniVersion":"0.4.0","name":"n","mtu":100}"#,
                ErrorCode::InvalidNetworkConfig,
                "mtu",
            ),
            (
                br#"{"cniVersion":"0.4.0","name":"n","mtu":"big"}"#,
                ErrorCode::InvalidNetworkConfig,
                "mtu",
            ),
            (
                br#"{"cniVersion":"0.4.0","name":"n","vethPrefix":"toolong"}"#,
                ErrorCode::InvalidNetworkConfig,
                "vethPrefix",
            ),
            (
                br#"{"cniVersion":"7.0.0","name":"n"}"#,
                ErrorCode::IncompatibleVersion,
                "incompatible",
            ),
        ];
        for (input, code, word) in cases {
            let e = NetConf::parse(input, Command::Add).unwrap_err();
            assert_eq!(e.code, *code, "{e}");
            assert!(e.to_string().contains(word), "{e} lacks {word}");
        }
    }

    fn sample_result() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "eni0123456789a".into(),
                    mac: "aa:bb:cc:dd:ee:ff".into(),
                    sandbox: String::new(),
                },
                Interface {
                    name: "eth0".into(),
                    mac: "2".into(),
                    sandbox: "/var/run/netns/p".into(),
                },
            ],
            ips: vec![IpConfig {
                address: "10.0.1.5/32".into(),
                gateway: Some("169.254.1.1".into()),
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("169.254.1.1".into()),
            }],
            dns: json!({}),
        }
    }

    #[test]
    fn results_render_per_version_and_round_trip() {
        let r = sample_result();
        let old = r.to_json("0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
        let new = r.to_json("1.0.0");
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["ips"][0]["interface"], 1);
        assert_eq!(new["interfaces"][0].get("sandbox"), None);
        for v in [old, new] {
            let back = CniResult::from_json(&v).unwrap();
            assert_eq!(back, r);
            assert_eq!(back.ipv4(), Some(Ipv4Addr::new(10, 0, 1, 5)));
            assert_eq!(back.route_table("eth0"), Some(2));
            assert_eq!(back.host_interface().unwrap().name, "eni0123456789a");
        }
    }

    proptest::proptest! {
        #[test]
        fn results_round_trip_in_every_version(a in proptest::prelude::any::<u32>(), table in 0u32..20_000,
                                               v in 0usize..SUPPORTED_VERSIONS.len()) {
            let ip = Ipv4Addr::from(a);
            let mut r = sample_result();
            r.ips[0].address = format!("{ip}/32");
            r.interfaces[1].mac = table.to_string();
            let back = CniResult::from_json(&r.to_json(SUPPORTED_VERSIONS[v])).unwrap();
            proptest::prop_assert_eq!(back.ipv4(), Some(ip));
            proptest::prop_assert_eq!(back.route_table("eth0"), Some(table));
            proptest::prop_assert_eq!(back, r);
        }

        #[test]
        fn cni_args_parsing_never_panics(s in ".{0,64}") {
            let _ = CniArgs::parse(&s);
        }
    }

    #[test]
    fn errors_have_the_spec_shape() {
        let e = CniError::new(
            ErrorCode::TryAgainLater,
            "ipamd is not reachable",
            "connect: refused",
        );
        let j = e.to_json("1.0.0");
        assert_eq!(
            j,
            json!({"cniVersion":"1.0.0","code":11,"msg":"ipamd is not reachable","details":"connect: refused"})
        );
    }
}
