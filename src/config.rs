//! Every environment variable, parsed once into a typed [`Config`].
//!
//! Same names, defaults and odd-value handling as the Go VPC CNI, so a user can swap binaries without touching a
//! manifest. Parsing is pure: [`Config::from_env`] takes a lookup function and returns either the configuration plus
//! warnings (odd values that upstream silently adjusts: we adjust them the same way and say so), or *all* the bad
//! variables at once, each with its value and what is allowed.
//!
//! Rules shared by every variable:
//! - unset and empty (`NAME=""`) are the same: the default applies (Kubernetes manifests often carry `value: ""`);
//! - booleans accept what Go's `strconv.ParseBool` accepts, because upstream parses them with it and existing
//!   manifests use those spellings: `1 t T TRUE true True` and `0 f F FALSE false False`; anything else is an error
//!   (upstream logs it and silently uses the default);
//! - integers are decimal with an optional sign, no spaces; where upstream silently replaces a non-integer with the
//!   default we report an error instead, because a typo in a warm target is better caught than ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::net::{IpNet, VethPrefix};
pub use vpc_cni_core::config::{
    parse_go_bool, parse_go_int, parse_go_int_any_base, PodSgEnforcingMode, RandomizeSnat,
    DEFAULT_CONNMARK,
};

// ---------------------------------------------------------------------------------------------------------------
// Variable names. Keep every one in ALL_VARIABLES; a test checks that the README documents each of them.

/// NodePort support on the primary ENI (connmark rules and loose rp_filter). bool, default true.
pub const AWS_VPC_CNI_NODE_PORT_SUPPORT: &str = "AWS_VPC_CNI_NODE_PORT_SUPPORT";
/// Custom networking: pod ENIs from an ENIConfig's subnet and security groups. bool, default false.
pub const AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: &str = "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG";
/// Node annotation key naming the ENIConfig. string.
pub const ENI_CONFIG_ANNOTATION_DEF: &str = "ENI_CONFIG_ANNOTATION_DEF";
/// Node label key naming the ENIConfig. string.
pub const ENI_CONFIG_LABEL_DEF: &str = "ENI_CONFIG_LABEL_DEF";
/// MTU of attached ENIs, 576..=9001. int, default 9001.
pub const AWS_VPC_ENI_MTU: &str = "AWS_VPC_ENI_MTU";
/// No SNAT rule and no off-VPC rule. bool, default false.
pub const AWS_VPC_K8S_CNI_EXTERNALSNAT: &str = "AWS_VPC_K8S_CNI_EXTERNALSNAT";
/// SNAT port randomisation: prng, hashrandom or none. default prng.
pub const AWS_VPC_K8S_CNI_RANDOMIZESNAT: &str = "AWS_VPC_K8S_CNI_RANDOMIZESNAT";
/// Comma-separated IPv4 CIDRs not SNATed (IPv6 entries are skipped, as upstream).
pub const AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS: &str = "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS";
/// The connection mark (value and mask) of NodePort and off-VPC pod traffic. int, default 0x80.
pub const AWS_VPC_K8S_CNI_CONNMARK: &str = "AWS_VPC_K8S_CNI_CONNMARK";
/// Free ENIs to keep. int, default 1.
pub const WARM_ENI_TARGET: &str = "WARM_ENI_TARGET";
/// Free addresses to keep. int, unset when <= 0.
pub const WARM_IP_TARGET: &str = "WARM_IP_TARGET";
/// Floor on allocated addresses. int, unset when <= 0.
pub const MINIMUM_IP_TARGET: &str = "MINIMUM_IP_TARGET";
/// Cap on ENIs. int, unset when <= 0.
pub const MAX_ENI: &str = "MAX_ENI";
/// ipamd log level, DEBUG..FATAL. default DEBUG.
pub const AWS_VPC_K8S_CNI_LOGLEVEL: &str = "AWS_VPC_K8S_CNI_LOGLEVEL";
/// ipamd log destination: a path, `stdout` or `stderr`.
pub const AWS_VPC_K8S_CNI_LOG_FILE: &str = "AWS_VPC_K8S_CNI_LOG_FILE";
/// Plugin log destination: a path or `stderr` (never stdout).
pub const AWS_VPC_K8S_PLUGIN_LOG_FILE: &str = "AWS_VPC_K8S_PLUGIN_LOG_FILE";
/// Plugin log level, DEBUG..FATAL. default DEBUG.
pub const AWS_VPC_K8S_PLUGIN_LOG_LEVEL: &str = "AWS_VPC_K8S_PLUGIN_LOG_LEVEL";
/// Introspection endpoint: `host:port` or `unix:path`.
pub const INTROSPECTION_BIND_ADDRESS: &str = "INTROSPECTION_BIND_ADDRESS";
/// No introspection endpoint. bool, default false.
pub const DISABLE_INTROSPECTION: &str = "DISABLE_INTROSPECTION";
/// No metrics endpoint. bool, default false.
pub const DISABLE_METRICS: &str = "DISABLE_METRICS";
/// Host veth name prefix, at most 4 characters, not eth/vlan/lo. default eni.
pub const AWS_VPC_K8S_CNI_VETHPREFIX: &str = "AWS_VPC_K8S_CNI_VETHPREFIX";
/// Extra ENI tags, a JSON object of strings.
pub const ADDITIONAL_ENI_TAGS: &str = "ADDITIONAL_ENI_TAGS";
/// Whether ipamd sets rp_filter on the primary interface. bool, default true.
pub const AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER: &str = "AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER";
/// Cluster name tagged on created ENIs.
pub const CLUSTER_NAME: &str = "CLUSTER_NAME";
/// Security groups for pods (trunk and branch ENIs). bool, default false.
pub const ENABLE_POD_ENI: &str = "ENABLE_POD_ENI";
/// net.ipv4.tcp_early_demux=0. bool, default false.
pub const DISABLE_TCP_EARLY_DEMUX: &str = "DISABLE_TCP_EARLY_DEMUX";
/// /28 prefixes instead of secondary addresses. bool, default false.
pub const ENABLE_PREFIX_DELEGATION: &str = "ENABLE_PREFIX_DELEGATION";
/// Free /28 prefixes to keep. int, default 0.
pub const WARM_PREFIX_TARGET: &str = "WARM_PREFIX_TARGET";
/// Learn ENIs and addresses from IMDS only. bool, default false.
pub const DISABLE_NETWORK_RESOURCE_PROVISIONING: &str = "DISABLE_NETWORK_RESOURCE_PROVISIONING";
/// Chain the bandwidth plugin. bool, default false.
pub const ENABLE_BANDWIDTH_PLUGIN: &str = "ENABLE_BANDWIDTH_PLUGIN";
/// Annotate pods with vpc.amazonaws.com/pod-ips. bool, default false.
pub const ANNOTATE_POD_IP: &str = "ANNOTATE_POD_IP";
/// Manage ENIs while the node is unschedulable. bool, default false.
pub const AWS_MANAGE_ENIS_NON_SCHEDULABLE: &str = "AWS_MANAGE_ENIS_NON_SCHEDULABLE";
/// Where the plugin binary is installed.
pub const HOST_CNI_BIN_PATH: &str = "HOST_CNI_BIN_PATH";
/// Where 10-aws.conflist is written.
pub const HOST_CNI_CONFDIR_PATH: &str = "HOST_CNI_CONFDIR_PATH";
/// Pod veth MTU. int, default AWS_VPC_ENI_MTU.
pub const POD_MTU: &str = "POD_MTU";
/// API server address without kube-proxy.
pub const CLUSTER_ENDPOINT: &str = "CLUSTER_ENDPOINT";
/// Branch-ENI pod traffic mode: strict or standard.
pub const POD_SECURITY_GROUP_ENFORCING_MODE: &str = "POD_SECURITY_GROUP_ENFORCING_MODE";
/// Subnet discovery for secondary ENIs. bool, default true.
pub const ENABLE_SUBNET_DISCOVERY: &str = "ENABLE_SUBNET_DISCOVERY";
/// IPv4 mode. bool, default true.
pub const ENABLE_IPV4: &str = "ENABLE_IPv4";
/// IPv6 mode. bool, default false.
pub const ENABLE_IPV6: &str = "ENABLE_IPv6";
/// CIDRs routed through the main table (rule priority 1535).
pub const AWS_EXTERNAL_SERVICE_CIDRS: &str = "AWS_EXTERNAL_SERVICE_CIDRS";
/// EC2 endpoint override.
pub const AWS_EC2_ENDPOINT: &str = "AWS_EC2_ENDPOINT";
/// No hourly leaked-ENI sweep. bool, default false.
pub const DISABLE_LEAKED_ENI_CLEANUP: &str = "DISABLE_LEAKED_ENI_CLEANUP";
/// IPv6 egress for IPv4 pods. bool, default false.
pub const ENABLE_V6_EGRESS: &str = "ENABLE_V6_EGRESS";
/// IPv4 egress for IPv6 pods. bool, default true.
pub const ENABLE_V4_EGRESS: &str = "ENABLE_V4_EGRESS";
/// Seconds before a released address is reused. int, default 30.
pub const IP_COOLDOWN_PERIOD: &str = "IP_COOLDOWN_PERIOD";
/// Disable IPv6 inside pods (tuning plugin). bool, default false.
pub const DISABLE_POD_V6: &str = "DISABLE_POD_V6";
/// No EC2 calls at all. bool, default false.
pub const ENABLE_IMDS_ONLY_MODE: &str = "ENABLE_IMDS_ONLY_MODE";
/// Checkpoint file.
pub const AWS_VPC_K8S_CNI_BACKING_STORE: &str = "AWS_VPC_K8S_CNI_BACKING_STORE";
/// Per-request EC2 HTTP timeout, at least 10 s.
pub const HTTP_TIMEOUT: &str = "HTTP_TIMEOUT";
/// Manage network cards other than the default one. bool, default false.
pub const ENABLE_MULTI_NIC: &str = "ENABLE_MULTI_NIC";

/// Every variable this module reads, in the order `vpc-cni config` prints them.
pub const ALL_VARIABLES: &[&str] = &[
    AWS_VPC_CNI_NODE_PORT_SUPPORT,
    AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG,
    ENI_CONFIG_ANNOTATION_DEF,
    ENI_CONFIG_LABEL_DEF,
    AWS_VPC_ENI_MTU,
    AWS_VPC_K8S_CNI_EXTERNALSNAT,
    AWS_VPC_K8S_CNI_RANDOMIZESNAT,
    AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS,
    AWS_VPC_K8S_CNI_CONNMARK,
    WARM_ENI_TARGET,
    WARM_IP_TARGET,
    MINIMUM_IP_TARGET,
    MAX_ENI,
    AWS_VPC_K8S_CNI_LOGLEVEL,
    AWS_VPC_K8S_CNI_LOG_FILE,
    AWS_VPC_K8S_PLUGIN_LOG_FILE,
    AWS_VPC_K8S_PLUGIN_LOG_LEVEL,
    INTROSPECTION_BIND_ADDRESS,
    DISABLE_INTROSPECTION,
    DISABLE_METRICS,
    AWS_VPC_K8S_CNI_VETHPREFIX,
    ADDITIONAL_ENI_TAGS,
    AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER,
    CLUSTER_NAME,
    ENABLE_POD_ENI,
    DISABLE_TCP_EARLY_DEMUX,
    ENABLE_PREFIX_DELEGATION,
    WARM_PREFIX_TARGET,
    DISABLE_NETWORK_RESOURCE_PROVISIONING,
    ENABLE_BANDWIDTH_PLUGIN,
    ANNOTATE_POD_IP,
    AWS_MANAGE_ENIS_NON_SCHEDULABLE,
    HOST_CNI_BIN_PATH,
    HOST_CNI_CONFDIR_PATH,
    POD_MTU,
    CLUSTER_ENDPOINT,
    POD_SECURITY_GROUP_ENFORCING_MODE,
    ENABLE_SUBNET_DISCOVERY,
    ENABLE_IPV4,
    ENABLE_IPV6,
    AWS_EXTERNAL_SERVICE_CIDRS,
    AWS_EC2_ENDPOINT,
    DISABLE_LEAKED_ENI_CLEANUP,
    ENABLE_V6_EGRESS,
    ENABLE_V4_EGRESS,
    IP_COOLDOWN_PERIOD,
    DISABLE_POD_V6,
    ENABLE_IMDS_ONLY_MODE,
    AWS_VPC_K8S_CNI_BACKING_STORE,
    HTTP_TIMEOUT,
    ENABLE_MULTI_NIC,
];

// ---------------------------------------------------------------------------------------------------------------
// Defaults and limits.

/// Default and maximum ENI/pod MTU.
pub const MAX_MTU: u16 = 9001;
/// Smallest MTU in IPv4 mode (RFC 879 assembly size).
pub const MIN_MTU_V4: u16 = 576;
/// Smallest MTU in IPv6 mode (RFC 8200).
pub const MIN_MTU_V6: u16 = 1280;
/// Default ENIConfig annotation and label key.
pub const DEFAULT_ENI_CONFIG_KEY: &str = "k8s.amazonaws.com/eniConfig";
/// Default ipamd log file.
pub const DEFAULT_IPAMD_LOG_FILE: &str = "/host/var/log/aws-routed-eni/ipamd.log";
/// Default plugin log file.
pub const DEFAULT_PLUGIN_LOG_FILE: &str = "/var/log/aws-routed-eni/plugin.log";
/// Default introspection address.
pub const DEFAULT_INTROSPECTION_ADDRESS: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 61679);
/// Default host veth prefix.
pub const DEFAULT_VETH_PREFIX: &str = VethPrefix::DEFAULT;
/// Longest veth prefix: the host veth name is the prefix plus 11 hex characters, and names are at most 15 bytes.
pub const MAX_VETH_PREFIX_LEN: usize = VethPrefix::MAX_LEN;
/// Tag keys containing this are reserved for the CNI's own tags.
pub const RESERVED_TAG_KEY_PART: &str = "k8s.amazonaws.com";
/// Longest EC2 tag key, in characters.
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// Longest EC2 tag value, in characters.
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// Default plugin install directory.
pub const DEFAULT_HOST_CNI_BIN_PATH: &str = "/host/opt/cni/bin";
/// Default conflist directory.
pub const DEFAULT_HOST_CNI_CONFDIR_PATH: &str = "/host/etc/cni/net.d";
/// Default checkpoint file.
pub const DEFAULT_BACKING_STORE: &str = "/var/run/aws-node/ipam.json";
/// Default (and minimum) EC2 HTTP timeout.
pub const MIN_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default IP cooldown.
pub const DEFAULT_IP_COOLDOWN: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------------------------
// Value types.

/// A log level as upstream spells it (case-insensitive on input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// Informational and worse.
    Info,
    /// Warnings and worse.
    Warn,
    /// Errors and fatal errors.
    Error,
    /// Fatal errors only. The `log` crate has no fatal level, so this logs `error!` records only, like Error.
    Fatal,
}

impl LogLevel {
    /// Upstream's spelling, as printed by `vpc-cni config`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
        }
    }

    /// The most verbose `log` level this level lets through.
    pub fn to_level_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Error | LogLevel::Fatal => log::LevelFilter::Error,
        }
    }

    /// Parses DEBUG, INFO, WARN, ERROR or FATAL in any case.
    pub fn parse(s: &str) -> Option<LogLevel> {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            "fatal" => Some(LogLevel::Fatal),
            _ => None,
        }
    }
}

/// Where ipamd logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    /// Standard output (`stdout`, any case).
    Stdout,
    /// Standard error (`stderr`, any case).
    Stderr,
    /// A file, opened in append mode; missing directories are created.
    File(PathBuf),
}

impl LogDestination {
    /// How `vpc-cni config` prints it.
    pub fn display(&self) -> String {
        match self {
            LogDestination::Stdout => "stdout".into(),
            LogDestination::Stderr => "stderr".into(),
            LogDestination::File(p) => p.display().to_string(),
        }
    }
}

/// Where the CNI plugin logs. There is no stdout variant: stdout carries the CNI result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginLogDestination {
    /// Standard error (`stderr`, any case; also where a requested `stdout` goes).
    Stderr,
    /// A file, opened in append mode; missing directories are created.
    File(PathBuf),
}

impl PluginLogDestination {
    /// Interprets a plugin log destination from the environment or the conflist's `pluginLogFile`. `stdout` is
    /// redirected to stderr and the second value says so; an empty value means stderr (upstream's plugin logger).
    pub fn parse(value: &str) -> (PluginLogDestination, Option<String>) {
        if value.is_empty() || value.eq_ignore_ascii_case("stderr") {
            (PluginLogDestination::Stderr, None)
        } else if value.eq_ignore_ascii_case("stdout") {
            (
                PluginLogDestination::Stderr,
                Some(format!(
                    "plugin log destination {value:?} refused: stdout carries the CNI result; logging to stderr instead"
                )),
            )
        } else {
            (PluginLogDestination::File(PathBuf::from(value)), None)
        }
    }

    /// How `vpc-cni config` prints it.
    pub fn display(&self) -> String {
        match self {
            PluginLogDestination::Stderr => "stderr".into(),
            PluginLogDestination::File(p) => p.display().to_string(),
        }
    }
}

/// Where the introspection server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddress {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket path (`unix:/path`).
    Unix(PathBuf),
}

impl BindAddress {
    /// Where a client connects to a server bound here: an unspecified address (`0.0.0.0`, `::`) is
    /// reached on 127.0.0.1, which both serve (`::` is bound dual-stack, or as `0.0.0.0` on a node
    /// without IPv6).
    pub fn connect_target(&self) -> BindAddress {
        match self {
            BindAddress::Tcp(a) if a.ip().is_unspecified() => {
                BindAddress::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), a.port()))
            }
            other => other.clone(),
        }
    }

    /// How `vpc-cni config` prints it.
    pub fn display(&self) -> String {
        match self {
            BindAddress::Tcp(a) => a.to_string(),
            BindAddress::Unix(p) => format!("unix:{}", p.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The configuration.

/// The effective configuration: every variable, parsed and validated, defaults applied. Fields are named after
/// the variable they come from (see each field's doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// AWS_VPC_CNI_NODE_PORT_SUPPORT (default true).
    pub node_port_support: bool,
    /// AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG (default false).
    pub custom_network_cfg: bool,
    /// ENI_CONFIG_ANNOTATION_DEF (default k8s.amazonaws.com/eniConfig).
    pub eni_config_annotation_def: String,
    /// ENI_CONFIG_LABEL_DEF (default k8s.amazonaws.com/eniConfig).
    pub eni_config_label_def: String,
    /// AWS_VPC_ENI_MTU, 576..=9001 (1280..=9001 with IPv6) (default 9001).
    pub eni_mtu: u16,
    /// AWS_VPC_K8S_CNI_EXTERNALSNAT (default false).
    pub external_snat: bool,
    /// AWS_VPC_K8S_CNI_RANDOMIZESNAT (default prng).
    pub randomize_snat: RandomizeSnat,
    /// AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS, IPv4 only: invalid and IPv6 items dropped with a warning (default
    /// empty).
    pub exclude_snat_cidrs: Vec<IpNet>,
    /// AWS_VPC_K8S_CNI_CONNMARK, 1..=0xffffffff: the bits set on marked connections and restored to their
    /// packets, and the fwmark of the rule at priority 1024 (default 0x80).
    pub connmark: u32,
    /// WARM_ENI_TARGET; negative means the default 1.
    pub warm_eni_target: u32,
    /// WARM_IP_TARGET; None when unset or <= 0.
    pub warm_ip_target: Option<u32>,
    /// MINIMUM_IP_TARGET; None when unset or <= 0.
    pub minimum_ip_target: Option<u32>,
    /// MAX_ENI; None when unset or <= 0. Callers still cap it at the instance type's limit.
    pub max_eni: Option<u32>,
    /// AWS_VPC_K8S_CNI_LOGLEVEL (default DEBUG).
    pub log_level: LogLevel,
    /// AWS_VPC_K8S_CNI_LOG_FILE (default /host/var/log/aws-routed-eni/ipamd.log).
    pub log_file: LogDestination,
    /// AWS_VPC_K8S_PLUGIN_LOG_FILE (default /var/log/aws-routed-eni/plugin.log); `stdout` becomes stderr.
    pub plugin_log_file: PluginLogDestination,
    /// AWS_VPC_K8S_PLUGIN_LOG_LEVEL (default DEBUG).
    pub plugin_log_level: LogLevel,
    /// INTROSPECTION_BIND_ADDRESS (default 127.0.0.1:61679).
    pub introspection_bind_address: BindAddress,
    /// DISABLE_INTROSPECTION (default false).
    pub disable_introspection: bool,
    /// DISABLE_METRICS (default false).
    pub disable_metrics: bool,
    /// AWS_VPC_K8S_CNI_VETHPREFIX (default eni).
    pub veth_prefix: VethPrefix,
    /// ADDITIONAL_ENI_TAGS, reserved keys dropped with a warning (default empty).
    pub additional_eni_tags: BTreeMap<String, String>,
    /// AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER (default true).
    pub configure_rpfilter: bool,
    /// CLUSTER_NAME (default empty: no cluster tag).
    pub cluster_name: String,
    /// ENABLE_POD_ENI (default false).
    pub enable_pod_eni: bool,
    /// DISABLE_TCP_EARLY_DEMUX (default false).
    pub disable_tcp_early_demux: bool,
    /// ENABLE_PREFIX_DELEGATION as requested (default false). Non-Nitro instances fall back to secondary
    /// addresses at run time; that decision needs the instance type and is not made here.
    pub enable_prefix_delegation: bool,
    /// WARM_PREFIX_TARGET; negative means 0 (default 0).
    pub warm_prefix_target: u32,
    /// DISABLE_NETWORK_RESOURCE_PROVISIONING, effective: also true in IMDS-only mode.
    pub disable_network_resource_provisioning: bool,
    /// ENABLE_BANDWIDTH_PLUGIN (default false).
    pub enable_bandwidth_plugin: bool,
    /// ANNOTATE_POD_IP (default false).
    pub annotate_pod_ip: bool,
    /// AWS_MANAGE_ENIS_NON_SCHEDULABLE (default false). Accepted, not acted on yet (needs the Kubernetes API).
    pub manage_enis_non_schedulable: bool,
    /// HOST_CNI_BIN_PATH (default /host/opt/cni/bin).
    pub host_cni_bin_path: PathBuf,
    /// HOST_CNI_CONFDIR_PATH (default /host/etc/cni/net.d).
    pub host_cni_confdir_path: PathBuf,
    /// POD_MTU (default: the effective AWS_VPC_ENI_MTU).
    pub pod_mtu: u16,
    /// CLUSTER_ENDPOINT (default none). Accepted, not acted on yet.
    pub cluster_endpoint: Option<String>,
    /// POD_SECURITY_GROUP_ENFORCING_MODE (default strict). Accepted, not acted on yet.
    pub pod_security_group_enforcing_mode: PodSgEnforcingMode,
    /// ENABLE_SUBNET_DISCOVERY (default true).
    pub enable_subnet_discovery: bool,
    /// ENABLE_IPv4 (default true). Exactly one of enable_ipv4 and enable_ipv6 is true.
    pub enable_ipv4: bool,
    /// ENABLE_IPv6 (default false). Accepted and validated; IPv6 mode itself is not built yet.
    pub enable_ipv6: bool,
    /// AWS_EXTERNAL_SERVICE_CIDRS, invalid items dropped with a warning (default empty).
    pub external_service_cidrs: Vec<IpNet>,
    /// AWS_EC2_ENDPOINT (default none: the regional endpoint).
    pub ec2_endpoint: Option<String>,
    /// DISABLE_LEAKED_ENI_CLEANUP, effective: also true with IPv6, without resource provisioning, or IMDS-only.
    pub disable_leaked_eni_cleanup: bool,
    /// ENABLE_V6_EGRESS (default false). Accepted, not acted on yet (egress plugin).
    pub enable_v6_egress: bool,
    /// ENABLE_V4_EGRESS (default true). Accepted, not acted on yet (egress plugin).
    pub enable_v4_egress: bool,
    /// IP_COOLDOWN_PERIOD in whole seconds (default 30 s).
    pub ip_cooldown_period: Duration,
    /// DISABLE_POD_V6 (default false).
    pub disable_pod_v6: bool,
    /// ENABLE_IMDS_ONLY_MODE (default false): no EC2 calls at all.
    pub enable_imds_only_mode: bool,
    /// AWS_VPC_K8S_CNI_BACKING_STORE (default /var/run/aws-node/ipam.json).
    pub backing_store: PathBuf,
    /// HTTP_TIMEOUT, at least 10 s (default 10 s).
    pub http_timeout: Duration,
    /// ENABLE_MULTI_NIC (default false). Accepted, not acted on yet.
    pub enable_multi_nic: bool,
}

/// An odd value that was adjusted the way upstream adjusts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The variable (or variables) concerned.
    pub variable: &'static str,
    /// What was found and what is used instead.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

/// A bad variable: its name, the value found and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable (or, for a conflict, the variables) concerned.
    pub variable: String,
    /// The value found (for a conflict, each variable's value).
    pub value: String,
    /// What is allowed instead.
    pub allowed: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is invalid: {}",
            self.variable, self.value, self.allowed
        )
    }
}

impl std::error::Error for ConfigError {}

/// Collects values, warnings and errors while parsing.
struct Parser<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<Warning>,
    errors: Vec<ConfigError>,
}

impl Parser<'_> {
    /// The raw value, with empty treated as unset.
    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.is_empty())
    }

    fn error(&mut self, name: &str, value: &str, allowed: impl Into<String>) {
        self.errors.push(ConfigError {
            variable: name.to_string(),
            value: value.to_string(),
            allowed: allowed.into(),
        });
    }

    fn warn(&mut self, name: &'static str, message: String) {
        self.warnings.push(Warning {
            variable: name,
            message,
        });
    }

    fn bool(&mut self, name: &str, default: bool) -> bool {
        let Some(v) = self.raw(name) else {
            return default;
        };
        match parse_go_bool(&v) {
            Some(b) => b,
            None => {
                self.error(
                    name,
                    &v,
                    "true or false (also 1, t, T, TRUE, True, 0, f, F, FALSE, False)",
                );
                default
            }
        }
    }

    fn string(&mut self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_string())
    }

    fn path(&mut self, name: &str, default: &str) -> PathBuf {
        PathBuf::from(self.string(name, default))
    }

    /// An integer with its raw text, or None when unset; an error when not an integer.
    fn int(&mut self, name: &str, allowed: &str) -> Option<(i64, String)> {
        let v = self.raw(name)?;
        match parse_go_int(&v) {
            Some(n) => Some((n, v)),
            None => {
                self.error(name, &v, allowed);
                None
            }
        }
    }

    fn log_level(&mut self, name: &str) -> LogLevel {
        let Some(v) = self.raw(name) else {
            return LogLevel::Debug;
        };
        LogLevel::parse(&v).unwrap_or_else(|| {
            self.error(name, &v, "DEBUG, INFO, WARN, ERROR or FATAL (any case)");
            LogLevel::Debug
        })
    }

    fn cidr_list(&mut self, name: &'static str) -> Vec<IpNet> {
        let Some(v) = self.raw(name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match IpNet::parse_network(item) {
                Ok(c) if !out.contains(&c) => out.push(c),
                Ok(_) => {}
                Err(_) => self.warn(
                    name,
                    format!("{item:?} is not a valid CIDR (like 10.0.0.0/8); skipped"),
                ),
            }
        }
        out
    }

    fn url(&mut self, name: &str) -> Option<String> {
        let v = self.raw(name)?;
        let rest = v
            .strip_prefix("https://")
            .or_else(|| v.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Some(v),
            _ => {
                self.error(name, &v, "an http:// or https:// URL with a host, e.g. https://ec2.us-west-2.amazonaws.com");
                None
            }
        }
    }
}

/// A CIDR list of which only the IPv4 entries are used: upstream skips IPv6 entries of the SNAT exclusions
/// (the SNAT table is IPv4 only, and one IPv6 entry there would refuse the whole table).
fn ipv4_only(p: &mut Parser<'_>, name: &'static str) -> Vec<IpNet> {
    let all = p.cidr_list(name);
    let (v4, v6): (Vec<IpNet>, Vec<IpNet>) = all.into_iter().partition(|c| c.addr().is_ipv4());
    for c in v6 {
        p.warn(
            name,
            format!("{c} is an IPv6 CIDR; SNAT is IPv4 only, so it is skipped"),
        );
    }
    v4
}

/// AWS_VPC_K8S_CNI_CONNMARK: an integer in any base Go's `ParseInt(s, 0, 64)` reads, 1..=0xffffffff.
fn parse_connmark(p: &mut Parser<'_>) -> u32 {
    let Some(v) = p.raw(AWS_VPC_K8S_CNI_CONNMARK) else {
        return DEFAULT_CONNMARK;
    };
    match parse_go_int_any_base(&v).and_then(|n| u32::try_from(n).ok()) {
        Some(n) if n > 0 => n,
        _ => {
            p.error(
                AWS_VPC_K8S_CNI_CONNMARK,
                &v,
                "an integer from 1 to 4294967295, decimal or 0x hex (e.g. 128 or 0x80)",
            );
            DEFAULT_CONNMARK
        }
    }
}

impl Config {
    /// Reads every variable through `lookup` (no process environment, no I/O). On success also returns the
    /// warnings for odd values that were adjusted; on failure returns every bad variable.
    pub fn from_env(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(Config, Vec<Warning>), Vec<ConfigError>> {
        let mut p = Parser {
            lookup: &lookup,
            warnings: Vec::new(),
            errors: Vec::new(),
        };
        let p = &mut p;

        let enable_ipv4 = p.bool(ENABLE_IPV4, true);
        let enable_ipv6 = p.bool(ENABLE_IPV6, false);
        let min_mtu = if enable_ipv6 { MIN_MTU_V6 } else { MIN_MTU_V4 };
        let eni_mtu = parse_mtu(p, AWS_VPC_ENI_MTU, min_mtu).unwrap_or(MAX_MTU);
        let pod_mtu = parse_mtu(p, POD_MTU, min_mtu).unwrap_or(eni_mtu);

        let randomize_snat = match p.raw(AWS_VPC_K8S_CNI_RANDOMIZESNAT).as_deref() {
            None | Some("prng") => RandomizeSnat::Prng,
            Some("hashrandom") => RandomizeSnat::HashRandom,
            Some("none") => RandomizeSnat::None,
            Some(other) => {
                p.error(
                    AWS_VPC_K8S_CNI_RANDOMIZESNAT,
                    other,
                    "prng, hashrandom or none (lower case)",
                );
                RandomizeSnat::Prng
            }
        };

        let warm_eni_target = match p.int(WARM_ENI_TARGET, "an integer >= 0") {
            None => 1,
            Some((n, raw)) if n < 0 => {
                p.warn(
                    WARM_ENI_TARGET,
                    format!("{raw} is negative; using the default 1"),
                );
                1
            }
            Some((n, raw)) => to_u32(p, WARM_ENI_TARGET, n, &raw).unwrap_or(1),
        };
        let warm_ip_target = positive_or_unset(p, WARM_IP_TARGET);
        let minimum_ip_target = positive_or_unset(p, MINIMUM_IP_TARGET);
        let max_eni = positive_or_unset(p, MAX_ENI);
        let warm_prefix_target = match p.int(WARM_PREFIX_TARGET, "an integer >= 0") {
            None => 0,
            Some((n, raw)) if n < 0 => {
                p.warn(WARM_PREFIX_TARGET, format!("{raw} is negative; using 0"));
                0
            }
            Some((n, raw)) => to_u32(p, WARM_PREFIX_TARGET, n, &raw).unwrap_or(0),
        };

        let log_level = p.log_level(AWS_VPC_K8S_CNI_LOGLEVEL);
        let plugin_log_level = p.log_level(AWS_VPC_K8S_PLUGIN_LOG_LEVEL);
        let log_file = match p.raw(AWS_VPC_K8S_CNI_LOG_FILE) {
            None => LogDestination::File(PathBuf::from(DEFAULT_IPAMD_LOG_FILE)),
            Some(v) if v.eq_ignore_ascii_case("stdout") => LogDestination::Stdout,
            Some(v) if v.eq_ignore_ascii_case("stderr") => LogDestination::Stderr,
            Some(v) => LogDestination::File(PathBuf::from(v)),
        };
        let plugin_log_file = match p.raw(AWS_VPC_K8S_PLUGIN_LOG_FILE) {
            None => PluginLogDestination::File(PathBuf::from(DEFAULT_PLUGIN_LOG_FILE)),
            Some(v) => {
                let (dest, warning) = PluginLogDestination::parse(&v);
                if let Some(w) = warning {
                    p.warn(AWS_VPC_K8S_PLUGIN_LOG_FILE, w);
                }
                dest
            }
        };

        let introspection_bind_address = match p.raw(INTROSPECTION_BIND_ADDRESS) {
            None => BindAddress::Tcp(DEFAULT_INTROSPECTION_ADDRESS),
            Some(v) => parse_bind_address(&v).unwrap_or_else(|| {
                p.error(
                    INTROSPECTION_BIND_ADDRESS,
                    &v,
                    "IP:port, [IPv6]:port, :port, localhost:port, or unix:/path/to/socket",
                );
                BindAddress::Tcp(DEFAULT_INTROSPECTION_ADDRESS)
            }),
        };

        let veth_prefix = match p.raw(AWS_VPC_K8S_CNI_VETHPREFIX) {
            None => VethPrefix::default(),
            Some(v) => VethPrefix::parse(&v).unwrap_or_else(|_| {
                p.error(AWS_VPC_K8S_CNI_VETHPREFIX, &v, VethPrefix::RULE);
                VethPrefix::default()
            }),
        };

        let additional_eni_tags = parse_tags(p);

        let pod_security_group_enforcing_mode =
            match p.raw(POD_SECURITY_GROUP_ENFORCING_MODE).as_deref() {
                None | Some("strict") => PodSgEnforcingMode::Strict,
                Some("standard") => PodSgEnforcingMode::Standard,
                Some(other) => {
                    p.error(
                        POD_SECURITY_GROUP_ENFORCING_MODE,
                        other,
                        "strict or standard",
                    );
                    PodSgEnforcingMode::Strict
                }
            };

        let ip_cooldown_period = match p.int(IP_COOLDOWN_PERIOD, "a whole number of seconds >= 0") {
            None => DEFAULT_IP_COOLDOWN,
            Some((n, raw)) if n < 0 => {
                p.error(IP_COOLDOWN_PERIOD, &raw, "a whole number of seconds >= 0");
                DEFAULT_IP_COOLDOWN
            }
            Some((n, _)) => Duration::from_secs(n.unsigned_abs()),
        };

        let http_timeout = match p.raw(HTTP_TIMEOUT) {
            None => MIN_HTTP_TIMEOUT,
            Some(v) => match parse_duration(&v) {
                Some(d) if d < MIN_HTTP_TIMEOUT => {
                    p.warn(
                        HTTP_TIMEOUT,
                        format!("{v} is below the 10 s minimum; using 10s"),
                    );
                    MIN_HTTP_TIMEOUT
                }
                Some(d) => d,
                None => {
                    p.error(
                        HTTP_TIMEOUT,
                        &v,
                        "whole seconds (e.g. 30) or a duration like 30s, 2m, 1h; at least 10s",
                    );
                    MIN_HTTP_TIMEOUT
                }
            },
        };

        let enable_prefix_delegation = p.bool(ENABLE_PREFIX_DELEGATION, false);
        let custom_network_cfg = p.bool(AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG, false);
        let enable_imds_only_mode = p.bool(ENABLE_IMDS_ONLY_MODE, false);
        let disable_network_resource_provisioning =
            p.bool(DISABLE_NETWORK_RESOURCE_PROVISIONING, false) || enable_imds_only_mode;
        let disable_leaked_eni_cleanup = p.bool(DISABLE_LEAKED_ENI_CLEANUP, false)
            || enable_ipv6
            || disable_network_resource_provisioning;

        let config = Config {
            node_port_support: p.bool(AWS_VPC_CNI_NODE_PORT_SUPPORT, true),
            custom_network_cfg,
            eni_config_annotation_def: p.string(ENI_CONFIG_ANNOTATION_DEF, DEFAULT_ENI_CONFIG_KEY),
            eni_config_label_def: p.string(ENI_CONFIG_LABEL_DEF, DEFAULT_ENI_CONFIG_KEY),
            eni_mtu,
            external_snat: p.bool(AWS_VPC_K8S_CNI_EXTERNALSNAT, false),
            randomize_snat,
            exclude_snat_cidrs: ipv4_only(p, AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS),
            connmark: parse_connmark(p),
            warm_eni_target,
            warm_ip_target,
            minimum_ip_target,
            max_eni,
            log_level,
            log_file,
            plugin_log_file,
            plugin_log_level,
            introspection_bind_address,
            disable_introspection: p.bool(DISABLE_INTROSPECTION, false),
            disable_metrics: p.bool(DISABLE_METRICS, false),
            veth_prefix,
            additional_eni_tags,
            configure_rpfilter: p.bool(AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER, true),
            cluster_name: p.string(CLUSTER_NAME, ""),
            enable_pod_eni: p.bool(ENABLE_POD_ENI, false),
            disable_tcp_early_demux: p.bool(DISABLE_TCP_EARLY_DEMUX, false),
            enable_prefix_delegation,
            warm_prefix_target,
            disable_network_resource_provisioning,
            enable_bandwidth_plugin: p.bool(ENABLE_BANDWIDTH_PLUGIN, false),
            annotate_pod_ip: p.bool(ANNOTATE_POD_IP, false),
            manage_enis_non_schedulable: p.bool(AWS_MANAGE_ENIS_NON_SCHEDULABLE, false),
            host_cni_bin_path: p.path(HOST_CNI_BIN_PATH, DEFAULT_HOST_CNI_BIN_PATH),
            host_cni_confdir_path: p.path(HOST_CNI_CONFDIR_PATH, DEFAULT_HOST_CNI_CONFDIR_PATH),
            pod_mtu,
            cluster_endpoint: p.url(CLUSTER_ENDPOINT),
            pod_security_group_enforcing_mode,
            enable_subnet_discovery: p.bool(ENABLE_SUBNET_DISCOVERY, true),
            enable_ipv4,
            enable_ipv6,
            external_service_cidrs: p.cidr_list(AWS_EXTERNAL_SERVICE_CIDRS),
            ec2_endpoint: p.url(AWS_EC2_ENDPOINT),
            disable_leaked_eni_cleanup,
            enable_v6_egress: p.bool(ENABLE_V6_EGRESS, false),
            enable_v4_egress: p.bool(ENABLE_V4_EGRESS, true),
            ip_cooldown_period,
            disable_pod_v6: p.bool(DISABLE_POD_V6, false),
            enable_imds_only_mode,
            backing_store: p.path(AWS_VPC_K8S_CNI_BACKING_STORE, DEFAULT_BACKING_STORE),
            http_timeout,
            enable_multi_nic: p.bool(ENABLE_MULTI_NIC, false),
        };

        // Combinations upstream refuses at start-up (cmd/aws-vpc-cni validateEnvVars, ipamd isConfigValid).
        let raw_or_default = |p: &Parser<'_>, name: &str, default: &str| {
            p.raw(name).unwrap_or_else(|| default.into())
        };
        if enable_ipv4 == enable_ipv6 {
            let value = format!(
                "{},{}",
                raw_or_default(p, ENABLE_IPV4, "true"),
                raw_or_default(p, ENABLE_IPV6, "false")
            );
            p.error(
                &format!("{ENABLE_IPV4},{ENABLE_IPV6}"),
                &value,
                "exactly one of them true (dual stack is not supported)",
            );
        }
        if enable_ipv6 && !enable_prefix_delegation {
            let value = format!(
                "true,{}",
                raw_or_default(p, ENABLE_PREFIX_DELEGATION, "false")
            );
            p.error(
                &format!("{ENABLE_IPV6},{ENABLE_PREFIX_DELEGATION}"),
                &value,
                "IPv6 mode needs ENABLE_PREFIX_DELEGATION=true",
            );
        }
        if enable_ipv6 && custom_network_cfg {
            p.error(
                &format!("{ENABLE_IPV6},{AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG}"),
                "true,true",
                "custom networking is not supported in IPv6 mode",
            );
        }
        if enable_prefix_delegation
            && !enable_ipv6
            && !crate::ipam::pool::ip_targets_defined(warm_ip_target, minimum_ip_target)
            && warm_prefix_target == 0
        {
            let value = format!(
                "{},{},{},{}",
                raw_or_default(p, ENABLE_PREFIX_DELEGATION, ""),
                raw_or_default(p, WARM_PREFIX_TARGET, ""),
                raw_or_default(p, WARM_IP_TARGET, ""),
                raw_or_default(p, MINIMUM_IP_TARGET, "")
            );
            p.error(
                &format!("{ENABLE_PREFIX_DELEGATION},{WARM_PREFIX_TARGET},{WARM_IP_TARGET},{MINIMUM_IP_TARGET}"),
                &value,
                "with ENABLE_PREFIX_DELEGATION=true at least one of them must be > 0 (e.g. WARM_PREFIX_TARGET=1)",
            );
        }

        if p.errors.is_empty() {
            Ok((config, std::mem::take(&mut p.warnings)))
        } else {
            Err(std::mem::take(&mut p.errors))
        }
    }

    /// [`Config::from_env`] over the process environment (bytes that are not UTF-8 are read as U+FFFD).
    pub fn from_process_env() -> Result<(Config, Vec<Warning>), Vec<ConfigError>> {
        Config::from_env(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Every variable with its effective value, in [`ALL_VARIABLES`] order (`vpc-cni config` prints this).
    pub fn effective_values(&self) -> Vec<(&'static str, Value)> {
        let cidrs = |v: &[IpNet]| Value::from(v.iter().map(IpNet::to_string).collect::<Vec<_>>());
        let path = |p: &PathBuf| Value::from(p.display().to_string());
        vec![
            (AWS_VPC_CNI_NODE_PORT_SUPPORT, json!(self.node_port_support)),
            (
                AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG,
                json!(self.custom_network_cfg),
            ),
            (
                ENI_CONFIG_ANNOTATION_DEF,
                json!(self.eni_config_annotation_def),
            ),
            (ENI_CONFIG_LABEL_DEF, json!(self.eni_config_label_def)),
            (AWS_VPC_ENI_MTU, json!(self.eni_mtu)),
            (AWS_VPC_K8S_CNI_EXTERNALSNAT, json!(self.external_snat)),
            (
                AWS_VPC_K8S_CNI_RANDOMIZESNAT,
                json!(self.randomize_snat.as_str()),
            ),
            (
                AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS,
                cidrs(&self.exclude_snat_cidrs),
            ),
            (AWS_VPC_K8S_CNI_CONNMARK, json!(self.connmark)),
            (WARM_ENI_TARGET, json!(self.warm_eni_target)),
            (WARM_IP_TARGET, json!(self.warm_ip_target)),
            (MINIMUM_IP_TARGET, json!(self.minimum_ip_target)),
            (MAX_ENI, json!(self.max_eni)),
            (AWS_VPC_K8S_CNI_LOGLEVEL, json!(self.log_level.as_str())),
            (AWS_VPC_K8S_CNI_LOG_FILE, json!(self.log_file.display())),
            (
                AWS_VPC_K8S_PLUGIN_LOG_FILE,
                json!(self.plugin_log_file.display()),
            ),
            (
                AWS_VPC_K8S_PLUGIN_LOG_LEVEL,
                json!(self.plugin_log_level.as_str()),
            ),
            (
                INTROSPECTION_BIND_ADDRESS,
                json!(self.introspection_bind_address.display()),
            ),
            (DISABLE_INTROSPECTION, json!(self.disable_introspection)),
            (DISABLE_METRICS, json!(self.disable_metrics)),
            (AWS_VPC_K8S_CNI_VETHPREFIX, json!(self.veth_prefix.as_str())),
            (ADDITIONAL_ENI_TAGS, json!(self.additional_eni_tags)),
            (
                AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER,
                json!(self.configure_rpfilter),
            ),
            (CLUSTER_NAME, json!(self.cluster_name)),
            (ENABLE_POD_ENI, json!(self.enable_pod_eni)),
            (DISABLE_TCP_EARLY_DEMUX, json!(self.disable_tcp_early_demux)),
            (
                ENABLE_PREFIX_DELEGATION,
                json!(self.enable_prefix_delegation),
            ),
            (WARM_PREFIX_TARGET, json!(self.warm_prefix_target)),
            (
                DISABLE_NETWORK_RESOURCE_PROVISIONING,
                json!(self.disable_network_resource_provisioning),
            ),
            (ENABLE_BANDWIDTH_PLUGIN, json!(self.enable_bandwidth_plugin)),
            (ANNOTATE_POD_IP, json!(self.annotate_pod_ip)),
            (
                AWS_MANAGE_ENIS_NON_SCHEDULABLE,
                json!(self.manage_enis_non_schedulable),
            ),
            (HOST_CNI_BIN_PATH, path(&self.host_cni_bin_path)),
            (HOST_CNI_CONFDIR_PATH, path(&self.host_cni_confdir_path)),
            (POD_MTU, json!(self.pod_mtu)),
            (CLUSTER_ENDPOINT, json!(self.cluster_endpoint)),
            (
                POD_SECURITY_GROUP_ENFORCING_MODE,
                json!(self.pod_security_group_enforcing_mode.as_str()),
            ),
            (ENABLE_SUBNET_DISCOVERY, json!(self.enable_subnet_discovery)),
            (ENABLE_IPV4, json!(self.enable_ipv4)),
            (ENABLE_IPV6, json!(self.enable_ipv6)),
            (
                AWS_EXTERNAL_SERVICE_CIDRS,
                cidrs(&self.external_service_cidrs),
            ),
            (AWS_EC2_ENDPOINT, json!(self.ec2_endpoint)),
            (
                DISABLE_LEAKED_ENI_CLEANUP,
                json!(self.disable_leaked_eni_cleanup),
            ),
            (ENABLE_V6_EGRESS, json!(self.enable_v6_egress)),
            (ENABLE_V4_EGRESS, json!(self.enable_v4_egress)),
            (IP_COOLDOWN_PERIOD, json!(self.ip_cooldown_period.as_secs())),
            (DISABLE_POD_V6, json!(self.disable_pod_v6)),
            (ENABLE_IMDS_ONLY_MODE, json!(self.enable_imds_only_mode)),
            (AWS_VPC_K8S_CNI_BACKING_STORE, path(&self.backing_store)),
            (HTTP_TIMEOUT, json!(self.http_timeout.as_secs())),
            (ENABLE_MULTI_NIC, json!(self.enable_multi_nic)),
        ]
    }

    /// The effective configuration as a pretty JSON object, keys in [`ALL_VARIABLES`] order.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\n");
        let values = self.effective_values();
        for (i, (name, value)) in values.iter().enumerate() {
            let sep = if i + 1 < values.len() { "," } else { "" };
            out.push_str(&format!("  {}: {}{sep}\n", Value::from(*name), value));
        }
        out.push('}');
        out
    }

    /// True when WARM_IP_TARGET or MINIMUM_IP_TARGET is set (upstream's `warmIPTargetsDefined`): the pool then
    /// follows those targets instead of WARM_ENI_TARGET / WARM_PREFIX_TARGET.
    pub fn ip_targets_defined(&self) -> bool {
        crate::ipam::pool::ip_targets_defined(self.warm_ip_target, self.minimum_ip_target)
    }
}

impl Default for Config {
    /// The configuration with no variable set (a unit test checks it equals `from_env` over an empty environment).
    fn default() -> Config {
        defaults()
    }
}

fn defaults() -> Config {
    Config {
        node_port_support: true,
        custom_network_cfg: false,
        eni_config_annotation_def: DEFAULT_ENI_CONFIG_KEY.into(),
        eni_config_label_def: DEFAULT_ENI_CONFIG_KEY.into(),
        eni_mtu: MAX_MTU,
        external_snat: false,
        randomize_snat: RandomizeSnat::Prng,
        exclude_snat_cidrs: Vec::new(),
        connmark: DEFAULT_CONNMARK,
        warm_eni_target: 1,
        warm_ip_target: None,
        minimum_ip_target: None,
        max_eni: None,
        log_level: LogLevel::Debug,
        log_file: LogDestination::File(DEFAULT_IPAMD_LOG_FILE.into()),
        plugin_log_file: PluginLogDestination::File(DEFAULT_PLUGIN_LOG_FILE.into()),
        plugin_log_level: LogLevel::Debug,
        introspection_bind_address: BindAddress::Tcp(DEFAULT_INTROSPECTION_ADDRESS),
        disable_introspection: false,
        disable_metrics: false,
        veth_prefix: VethPrefix::default(),
        additional_eni_tags: BTreeMap::new(),
        configure_rpfilter: true,
        cluster_name: String::new(),
        enable_pod_eni: false,
        disable_tcp_early_demux: false,
        enable_prefix_delegation: false,
        warm_prefix_target: 0,
        disable_network_resource_provisioning: false,
        enable_bandwidth_plugin: false,
        annotate_pod_ip: false,
        manage_enis_non_schedulable: false,
        host_cni_bin_path: DEFAULT_HOST_CNI_BIN_PATH.into(),
        host_cni_confdir_path: DEFAULT_HOST_CNI_CONFDIR_PATH.into(),
        pod_mtu: MAX_MTU,
        cluster_endpoint: None,
        pod_security_group_enforcing_mode: PodSgEnforcingMode::Strict,
        enable_subnet_discovery: true,
        enable_ipv4: true,
        enable_ipv6: false,
        external_service_cidrs: Vec::new(),
        ec2_endpoint: None,
        disable_leaked_eni_cleanup: false,
        enable_v6_egress: false,
        enable_v4_egress: true,
        ip_cooldown_period: DEFAULT_IP_COOLDOWN,
        disable_pod_v6: false,
        enable_imds_only_mode: false,
        backing_store: DEFAULT_BACKING_STORE.into(),
        http_timeout: MIN_HTTP_TIMEOUT,
        enable_multi_nic: false,
    }
}

fn to_u32(p: &mut Parser<'_>, name: &str, n: i64, raw: &str) -> Option<u32> {
    match u32::try_from(n) {
        Ok(v) => Some(v),
        Err(_) => {
            p.error(name, raw, format!("an integer from 0 to {}", u32::MAX));
            None
        }
    }
}

/// WARM_IP_TARGET, MINIMUM_IP_TARGET, MAX_ENI: `<= 0` means unset, as upstream documents.
fn positive_or_unset(p: &mut Parser<'_>, name: &'static str) -> Option<u32> {
    let (n, raw) = p.int(name, "an integer (<= 0 means unset)")?;
    if n <= 0 {
        if n < 0 {
            p.warn(name, format!("{raw} is negative; treated as unset"));
        }
        return None;
    }
    to_u32(p, name, n, &raw)
}

fn parse_mtu(p: &mut Parser<'_>, name: &str, min: u16) -> Option<u16> {
    let allowed = format!("an integer from {min} to {MAX_MTU}");
    let (n, raw) = p.int(name, &allowed)?;
    if n < i64::from(min) || n > i64::from(MAX_MTU) {
        p.error(name, &raw, allowed);
        return None;
    }
    u16::try_from(n).ok()
}

/// `unix:/path`, `IP:port`, `[IPv6]:port`, `:port` or `localhost:port`. `:port` is every address, IPv4
/// and IPv6, as Go's `:port`: `[::]:port`, which the listener binds dual-stack. Host names other than
/// localhost are refused: resolving them would need DNS at start-up.
pub fn parse_bind_address(v: &str) -> Option<BindAddress> {
    if let Some(path) = v.strip_prefix("unix:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        return (!path.is_empty()).then(|| BindAddress::Unix(PathBuf::from(path)));
    }
    if let Some(port) = v.strip_prefix(':') {
        return port.parse::<u16>().ok().map(|port| {
            BindAddress::Tcp(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port))
        });
    }
    if let Some(port) = v.strip_prefix("localhost:") {
        return port
            .parse::<u16>()
            .ok()
            .map(|port| BindAddress::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)));
    }
    v.parse::<SocketAddr>().ok().map(BindAddress::Tcp)
}

/// Whole seconds (`30`, upstream's form) or a number with a unit: `500ms`, `30s`, `2m`, `1h`.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    match unit {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

/// ADDITIONAL_ENI_TAGS: a JSON object of string values. Upstream ignores a malformed value with a warning and
/// never checks lengths (EC2 then rejects the ENI creation); we report both as errors up front. Keys containing
/// k8s.amazonaws.com are dropped with a warning, exactly as upstream does.
fn parse_tags(p: &mut Parser<'_>) -> BTreeMap<String, String> {
    let Some(raw) = p.raw(ADDITIONAL_ENI_TAGS) else {
        return BTreeMap::new();
    };
    let allowed_json = "a JSON object of string values, e.g. {\"team\": \"blue\"}";
    let map: serde_json::Map<String, Value> = match serde_json::from_str(&raw) {
        Ok(Value::Object(m)) => m,
        _ => {
            p.error(ADDITIONAL_ENI_TAGS, &raw, allowed_json);
            return BTreeMap::new();
        }
    };
    let mut tags = BTreeMap::new();
    for (key, value) in map {
        let Value::String(value) = value else {
            p.error(
                ADDITIONAL_ENI_TAGS,
                &raw,
                format!("{allowed_json}; the value of {key:?} is not a string"),
            );
            continue;
        };
        if key.contains(RESERVED_TAG_KEY_PART) {
            p.warn(
                ADDITIONAL_ENI_TAGS,
                format!("tag key {key:?} contains the reserved {RESERVED_TAG_KEY_PART}; ignored"),
            );
            continue;
        }
        if key.is_empty() || key.chars().count() > MAX_TAG_KEY_CHARS || key.starts_with("aws:") {
            p.error(
                ADDITIONAL_ENI_TAGS,
                &raw,
                format!("tag key {key:?}: keys must have 1 to {MAX_TAG_KEY_CHARS} characters and not start with aws:"),
            );
            continue;
        }
        if value.chars().count() > MAX_TAG_VALUE_CHARS {
            p.error(
                ADDITIONAL_ENI_TAGS,
                &raw,
                format!("the value of tag {key:?} is longer than {MAX_TAG_VALUE_CHARS} characters"),
            );
            continue;
        }
        tags.insert(key, value);
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_default_impl() {
        let (c, w) = Config::from_env(|_| None).expect("defaults parse");
        assert!(w.is_empty());
        assert_eq!(c, Config::default());
    }

    #[test]
    fn every_effective_value_is_listed_once_in_order() {
        let names: Vec<&str> = Config::default()
            .effective_values()
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(names, ALL_VARIABLES);
    }
}
