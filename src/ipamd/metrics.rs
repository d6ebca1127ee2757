//! Upstream's `awscni_*` Prometheus metrics in the text exposition format (version 0.0.4).
//!
//! [`render`] is pure: it formats a [`MetricsInput`] the daemon assembles from its datastore
//! ([`MetricsInput::set_pool`]), its event counters ([`MetricCounters::fill`]) and the EC2 client's
//! [`ApiStats`](crate::aws::stats::ApiStats) snapshot. Names, types, label names and HELP texts are
//! upstream's (`utils/prometheusmetrics/prometheusmetrics.go`, `pkg/version/info.go`), so existing
//! dashboards, alerts and the cni-metrics-helper keep working. As upstream's Go client does,
//! families come sorted by name, samples by label values, labelled families without samples are
//! left out and unlabelled counters and gauges are always present. `awscni_aws_api_latency_ms` is
//! a summary without quantiles (`_sum` and `_count` only), as upstream emits it.
//!
//! The HELP texts of the startup and connmark families are ours: upstream's were not available.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard};

use crate::aws::stats::ApiCounters;
use crate::config::BindAddress;
use crate::ipam::{Datastore, Instant};
use crate::net::IpNet;

/// Upstream's metrics port.
pub const METRICS_PORT: u16 = 61678;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where the metrics endpoint listens: `:61678`, every IPv4 and IPv6 address, as upstream (Go's `:port`
/// is dual-stack; an IPv6 cluster's Prometheus scrapes the node's IPv6 address).
pub fn metrics_bind_address() -> BindAddress {
    BindAddress::Tcp(SocketAddr::new(
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        METRICS_PORT,
    ))
}

/// Buckets of the duration histograms (the Prometheus client default, in seconds).
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `awscni_build_info` labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// `version`.
    pub version: String,
    /// `revision` (git).
    pub revision: String,
    /// `goversion`: empty, there is no Go toolchain in this build (kept so queries on it still parse).
    pub goversion: String,
}

impl Default for BuildInfo {
    /// This binary's version and git revision.
    fn default() -> Self {
        BuildInfo {
            version: crate::VERSION.to_string(),
            revision: crate::GIT_REV.to_string(),
            goversion: String::new(),
        }
    }
}

/// One ipamd start, for `awscni_ipamd_startup_duration_seconds`.
#[derive(Debug, Clone, PartialEq)]
pub struct StartupDuration {
    /// From process start to ready (or to giving up).
    pub seconds: f64,
    /// Label `success`.
    pub success: bool,
    /// Label `with_api_server`: the Kubernetes API server was reachable.
    pub with_api_server: bool,
    /// Label `failure_reason`; empty on success.
    pub failure_reason: String,
}

/// Everything `/metrics` shows. Labelled values are `(label value, value)` pairs in any order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsInput {
    /// `awscni_eni_max`: ENIs the instance can attach, minus unmanaged ones.
    pub eni_max: u64,
    /// `awscni_ip_max`: addresses the instance can hold.
    pub ip_max: u64,
    /// `awscni_eni_allocated`: ENIs in the datastore.
    pub eni_allocated: u64,
    /// `awscni_total_ip_addresses`.
    pub total_ip_addresses: u64,
    /// `awscni_assigned_ip_addresses`.
    pub assigned_ip_addresses: u64,
    /// `awscni_total_ipv4_prefixes`.
    pub total_ipv4_prefixes: u64,
    /// `awscni_assigned_ip_per_cidr{cidr}`.
    pub assigned_ip_per_cidr: Vec<(String, u64)>,
    /// `awscni_assigned_ip_per_eni{eni}`.
    pub assigned_ip_per_eni: Vec<(String, u64)>,
    /// `awscni_add_ip_req_count`.
    pub add_ip_req_count: u64,
    /// `awscni_del_ip_req_count{reason}`.
    pub del_ip_req_count: Vec<(String, u64)>,
    /// `awscni_no_available_ip_addresses`.
    pub no_available_ip_addresses: u64,
    /// `awscni_force_removed_enis`.
    pub force_removed_enis: u64,
    /// `awscni_force_removed_ips`.
    pub force_removed_ips: u64,
    /// `awscni_ipamd_error_count{fn}`.
    pub ipamd_error_count: Vec<(String, u64)>,
    /// `awscni_ipamd_action_inprogress{fn}`.
    pub ipamd_action_inprogress: Vec<(String, u64)>,
    /// `awscni_reconcile_count{fn}`.
    pub reconcile_count: Vec<(String, u64)>,
    /// `awscni_pod_eni_error_count{fn}`.
    pub pod_eni_error_count: Vec<(String, u64)>,
    /// `awscni_aws_utils_error_count{fn,error}` as `(fn, error, count)`.
    pub aws_utils_error_count: Vec<(String, String, u64)>,
    /// The EC2 client's counters ([`ApiStats::snapshot`](crate::aws::stats::ApiStats::snapshot)):
    /// `awscni_aws_api_latency_ms`, `awscni_aws_api_error_count`, `awscni_ec2api_req_count` and
    /// `awscni_ec2api_error_count`.
    pub aws_api: BTreeMap<&'static str, ApiCounters>,
    /// `awscni_ipamd_startup_duration_seconds`, once startup has ended.
    pub startup: Option<StartupDuration>,
    /// `awscni_ipamd_node_initialization_duration_seconds`, once the node is initialised.
    pub node_initialization_seconds: Option<f64>,
    /// `awscni_connmark_backend{backend}` = 1 for the backend in use (`nftables` or `iptables`).
    pub connmark_backend: Option<String>,
    /// `awscni_connmark_reconcile_total{result}`.
    pub connmark_reconcile_total: Vec<(String, u64)>,
    /// `awscni_build_info`.
    pub build: BuildInfo,
}

impl MetricsInput {
    /// Sets the pool gauges from the datastore: ENIs, addresses, prefixes and the per-CIDR and
    /// per-ENI assigned counts.
    pub fn set_pool(&mut self, ds: &Datastore, now: Instant) {
        let s = ds.stats(now);
        self.eni_allocated = u64::from(s.enis);
        self.total_ip_addresses = u64::from(s.total);
        self.assigned_ip_addresses = u64::from(s.assigned);
        self.total_ipv4_prefixes = u64::from(s.total_prefixes);
        self.assigned_ip_per_eni = ds
            .enis()
            .map(|e| (e.id().to_string(), ds.eni_assigned(e) as u64))
            .collect();
        let mut per_cidr = Vec::new();
        for e in ds.enis() {
            for c in e.ipv4_cidrs() {
                per_cidr.push((c.to_string(), ds.assigned_in_v4(c) as u64));
            }
            for c in e.ipv6_prefixes() {
                let net = IpNet::from(*c);
                let n = ds.allocations().filter(|(a, _)| net.contains(**a)).count();
                per_cidr.push((c.to_string(), n as u64));
            }
        }
        self.assigned_ip_per_cidr = per_cidr;
    }
}

/// The event counters the daemon bumps from any thread; [`MetricCounters::fill`] copies them into
/// a [`MetricsInput`].
#[derive(Debug, Default)]
pub struct MetricCounters {
    inner: Mutex<CounterState>,
}

#[derive(Debug, Default, Clone)]
struct CounterState {
    add_ip: u64,
    del_ip: BTreeMap<String, u64>,
    no_available: u64,
    force_removed_enis: u64,
    force_removed_ips: u64,
    ipamd_errors: BTreeMap<String, u64>,
    in_progress: BTreeMap<String, u64>,
    reconcile: BTreeMap<String, u64>,
    pod_eni_errors: BTreeMap<String, u64>,
    aws_utils_errors: BTreeMap<(String, String), u64>,
    connmark_reconcile: BTreeMap<String, u64>,
}

fn bump(m: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    let v = m.entry(key.to_string()).or_default();
    *v = v.saturating_add(n);
}

fn pairs(m: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    m.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

impl MetricCounters {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, CounterState> {
        // Counters stay usable after a panic elsewhere: the data is plain numbers.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One CNI ADD request (`awscni_add_ip_req_count`).
    pub fn add_ip_request(&self) {
        let mut s = self.state();
        s.add_ip = s.add_ip.saturating_add(1);
    }

    /// One CNI DEL request with its reason (`awscni_del_ip_req_count{reason}`).
    pub fn del_ip_request(&self, reason: &str) {
        bump(&mut self.state().del_ip, reason, 1);
    }

    /// One ADD that failed for want of a free address (`awscni_no_available_ip_addresses`).
    pub fn no_available_ip(&self) {
        let mut s = self.state();
        s.no_available = s.no_available.saturating_add(1);
    }

    /// One ENI removed while it still had pods (`awscni_force_removed_enis`).
    pub fn force_removed_eni(&self) {
        let mut s = self.state();
        s.force_removed_enis = s.force_removed_enis.saturating_add(1);
    }

    /// `n` addresses removed while assigned to pods (`awscni_force_removed_ips`).
    pub fn force_removed_ips(&self, n: u64) {
        let mut s = self.state();
        s.force_removed_ips = s.force_removed_ips.saturating_add(n);
    }

    /// One error in ipamd function `func` (`awscni_ipamd_error_count{fn}`).
    pub fn ipamd_error(&self, func: &str) {
        bump(&mut self.state().ipamd_errors, func, 1);
    }

    /// One reconcile run of `func` (`awscni_reconcile_count{fn}`).
    pub fn reconcile(&self, func: &str) {
        bump(&mut self.state().reconcile, func, 1);
    }

    /// One pod-ENI error in `func` (`awscni_pod_eni_error_count{fn}`).
    pub fn pod_eni_error(&self, func: &str) {
        bump(&mut self.state().pod_eni_errors, func, 1);
    }

    /// One unhandled AWS helper error (`awscni_aws_utils_error_count{fn,error}`).
    pub fn aws_utils_error(&self, func: &str, error: &str) {
        let mut s = self.state();
        let v = s
            .aws_utils_errors
            .entry((func.to_string(), error.to_string()))
            .or_default();
        *v = v.saturating_add(1);
    }

    /// One connmark rule reconcile with its result (`awscni_connmark_reconcile_total{result}`).
    pub fn connmark_reconcile(&self, result: &str) {
        bump(&mut self.state().connmark_reconcile, result, 1);
    }

    /// Marks `func` in progress (`awscni_ipamd_action_inprogress{fn}`) until the guard drops.
    pub fn action_begin(&self, func: &str) -> InProgress<'_> {
        bump(&mut self.state().in_progress, func, 1);
        InProgress {
            counters: self,
            func: func.to_string(),
        }
    }

    /// Copies every counter into `input`.
    pub fn fill(&self, input: &mut MetricsInput) {
        let s = self.state().clone();
        input.add_ip_req_count = s.add_ip;
        input.del_ip_req_count = pairs(&s.del_ip);
        input.no_available_ip_addresses = s.no_available;
        input.force_removed_enis = s.force_removed_enis;
        input.force_removed_ips = s.force_removed_ips;
        input.ipamd_error_count = pairs(&s.ipamd_errors);
        input.ipamd_action_inprogress = pairs(&s.in_progress);
        input.reconcile_count = pairs(&s.reconcile);
        input.pod_eni_error_count = pairs(&s.pod_eni_errors);
        input.aws_utils_error_count = s
            .aws_utils_errors
            .iter()
            .map(|((f, e), v)| (f.clone(), e.clone(), *v))
            .collect();
        input.connmark_reconcile_total = pairs(&s.connmark_reconcile);
    }
}

/// Guard of [`MetricCounters::action_begin`].
#[derive(Debug)]
pub struct InProgress<'a> {
    counters: &'a MetricCounters,
    func: String,
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        if let Some(v) = self.counters.state().in_progress.get_mut(&self.func) {
            *v = v.saturating_sub(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering.

/// A sample value.
#[derive(Clone, Copy)]
enum Num {
    U(u64),
    F(f64),
}

impl Num {
    fn write(self, out: &mut String) {
        match self {
            Num::U(v) => {
                let _ = write!(out, "{v}");
            }
            Num::F(v) if v.is_nan() => out.push_str("NaN"),
            Num::F(v) if v.is_infinite() => out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" }),
            Num::F(v) => {
                let _ = write!(out, "{v}");
            }
        }
    }
}

/// A metric family being built.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    /// Label set (sorted by name) → lines of that metric (a summary or histogram has several).
    metrics: Vec<(Vec<(String, String)>, String)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            metrics: Vec::new(),
        }
    }

    /// Adds a metric whose only sample is `name{labels} value`.
    fn sample(&mut self, labels: &[(&str, &str)], v: Num) {
        let labels = sorted_labels(labels);
        let mut line = String::new();
        write_sample(&mut line, self.name, "", &labels, None, v);
        self.metrics.push((labels, line));
    }

    fn samples(&mut self, label: &str, values: &[(String, u64)]) {
        for (l, v) in values {
            self.sample(&[(label, l)], Num::U(*v));
        }
    }

    /// A summary without quantiles: `_sum` then `_count`.
    fn summary(&mut self, labels: &[(&str, &str)], sum: Num, count: u64) {
        let labels = sorted_labels(labels);
        let mut lines = String::new();
        write_sample(&mut lines, self.name, "_sum", &labels, None, sum);
        write_sample(
            &mut lines,
            self.name,
            "_count",
            &labels,
            None,
            Num::U(count),
        );
        self.metrics.push((labels, lines));
    }

    /// A histogram of one observation.
    fn histogram_once(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels = sorted_labels(labels);
        let mut lines = String::new();
        for le in DURATION_BUCKETS {
            let mut le_text = String::new();
            Num::F(le).write(&mut le_text);
            let n = u64::from(value <= le);
            write_sample(
                &mut lines,
                self.name,
                "_bucket",
                &labels,
                Some(&le_text),
                Num::U(n),
            );
        }
        write_sample(
            &mut lines,
            self.name,
            "_bucket",
            &labels,
            Some("+Inf"),
            Num::U(1),
        );
        write_sample(&mut lines, self.name, "_sum", &labels, None, Num::F(value));
        write_sample(&mut lines, self.name, "_count", &labels, None, Num::U(1));
        self.metrics.push((labels, lines));
    }
}

fn sorted_labels(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = labels
        .iter()
        .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
        .collect();
    v.sort();
    v
}

/// A label value escaped for the text format: backslash, double quote and line feed.
pub fn escape_label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(String, String)],
    le: Option<&str>,
    v: Num,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let le_pair = le.map(|l| ("le".to_string(), l.to_string()));
        for (n, val) in labels.iter().chain(le_pair.iter()) {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{n}=\"{}\"", escape_label_value(val));
        }
        out.push('}');
    }
    out.push(' ');
    v.write(out);
    out.push('\n');
}

fn flag(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// The `/metrics` body.
pub fn render(m: &MetricsInput) -> String {
    let mut fams: Vec<Family> = Vec::new();
    let scalar = |name, kind, help, v: u64| {
        let mut f = Family::new(name, kind, help);
        f.sample(&[], Num::U(v));
        f
    };
    fams.push(scalar(
        "awscni_add_ip_req_count",
        "counter",
        "The number of add IP address requests",
        m.add_ip_req_count,
    ));
    fams.push(scalar(
        "awscni_assigned_ip_addresses",
        "gauge",
        "The number of IP addresses assigned to pods",
        m.assigned_ip_addresses,
    ));
    fams.push(scalar(
        "awscni_eni_allocated",
        "gauge",
        "The number of ENIs allocated",
        m.eni_allocated,
    ));
    fams.push(scalar(
        "awscni_eni_max",
        "gauge",
        "The maximum number of ENIs that can be attached to the instance, accounting for unmanaged ENIs",
        m.eni_max,
    ));
    fams.push(scalar(
        "awscni_force_removed_enis",
        "counter",
        "The number of ENIs force removed while they had assigned pods",
        m.force_removed_enis,
    ));
    fams.push(scalar(
        "awscni_force_removed_ips",
        "counter",
        "The number of IPs force removed while they had assigned pods",
        m.force_removed_ips,
    ));
    fams.push(scalar(
        "awscni_ip_max",
        "gauge",
        "The maximum number of IP addresses that can be allocated to the instance",
        m.ip_max,
    ));
    fams.push(scalar(
        "awscni_no_available_ip_addresses",
        "counter",
        "The number of pod IP assignments that fail due to no available IP addresses",
        m.no_available_ip_addresses,
    ));
    fams.push(scalar(
        "awscni_total_ip_addresses",
        "gauge",
        "The total number of IP addresses",
        m.total_ip_addresses,
    ));
    fams.push(scalar(
        "awscni_total_ipv4_prefixes",
        "gauge",
        "The total number of IPv4 prefixes",
        m.total_ipv4_prefixes,
    ));

    let labelled = |name, kind, help, label, values: &[(String, u64)]| {
        let mut f = Family::new(name, kind, help);
        f.samples(label, values);
        f
    };
    fams.push(labelled(
        "awscni_assigned_ip_per_cidr",
        "gauge",
        "The total number of IP addresses assigned per cidr",
        "cidr",
        &m.assigned_ip_per_cidr,
    ));
    fams.push(labelled(
        "awscni_assigned_ip_per_eni",
        "gauge",
        "The number of allocated ips partitioned by eni",
        "eni",
        &m.assigned_ip_per_eni,
    ));
    fams.push(labelled(
        "awscni_del_ip_req_count",
        "counter",
        "The number of delete IP address requests",
        "reason",
        &m.del_ip_req_count,
    ));
    fams.push(labelled(
        "awscni_ipamd_error_count",
        "counter",
        "The number of errors encountered in ipamd",
        "fn",
        &m.ipamd_error_count,
    ));
    fams.push(labelled(
        "awscni_ipamd_action_inprogress",
        "gauge",
        "The number of ipamd actions in progress",
        "fn",
        &m.ipamd_action_inprogress,
    ));
    fams.push(labelled(
        "awscni_reconcile_count",
        "counter",
        "The number of times ipamd reconciles on ENIs and IP/Prefix addresses",
        "fn",
        &m.reconcile_count,
    ));
    fams.push(labelled(
        "awscni_pod_eni_error_count",
        "counter",
        "The number of errors encountered for pod ENIs",
        "fn",
        &m.pod_eni_error_count,
    ));
    fams.push(labelled(
        "awscni_connmark_reconcile_total",
        "counter",
        "The number of connmark rule reconciliations by result",
        "result",
        &m.connmark_reconcile_total,
    ));

    let mut utils = Family::new(
        "awscni_aws_utils_error_count",
        "counter",
        "The number of errors not handled in awsutils library",
    );
    for (f, e, v) in &m.aws_utils_error_count {
        utils.sample(&[("fn", f), ("error", e)], Num::U(*v));
    }
    fams.push(utils);

    let mut latency = Family::new(
        "awscni_aws_api_latency_ms",
        "summary",
        "AWS API call latency in ms",
    );
    let mut api_err = Family::new(
        "awscni_aws_api_error_count",
        "counter",
        "The number of times AWS API returns an error",
    );
    let mut ec2_req = Family::new(
        "awscni_ec2api_req_count",
        "counter",
        "The number of requests made to EC2 APIs by CNI",
    );
    let mut ec2_err = Family::new(
        "awscni_ec2api_error_count",
        "counter",
        "The number of failed EC2 APIs requests",
    );
    for (api, c) in &m.aws_api {
        for ((failed, status), l) in &c.latency {
            let status = status.to_string();
            latency.summary(
                &[("api", api), ("error", flag(*failed)), ("status", &status)],
                Num::U(l.sum_ms),
                l.count,
            );
        }
        for (code, n) in &c.errors_by_code {
            api_err.sample(&[("api", api), ("error", code)], Num::U(*n));
        }
        ec2_req.sample(&[("fn", api)], Num::U(c.requests));
        if c.errors > 0 {
            ec2_err.sample(&[("fn", api)], Num::U(c.errors));
        }
    }
    fams.extend([latency, api_err, ec2_req, ec2_err]);

    let mut startup = Family::new(
        "awscni_ipamd_startup_duration_seconds",
        "histogram",
        "The duration of IPAMD startup, from process start until ready",
    );
    if let Some(s) = &m.startup {
        startup.histogram_once(
            &[
                ("success", flag(s.success)),
                ("with_api_server", flag(s.with_api_server)),
                ("failure_reason", &s.failure_reason),
            ],
            s.seconds,
        );
    }
    fams.push(startup);
    let mut node_init = Family::new(
        "awscni_ipamd_node_initialization_duration_seconds",
        "histogram",
        "The duration of the node initialization done by IPAMD",
    );
    if let Some(s) = m.node_initialization_seconds {
        node_init.histogram_once(&[], s);
    }
    fams.push(node_init);

    let mut connmark = Family::new(
        "awscni_connmark_backend",
        "gauge",
        "The connmark backend in use (value 1), nftables or iptables",
    );
    if let Some(b) = &m.connmark_backend {
        connmark.sample(&[("backend", b)], Num::U(1));
    }
    fams.push(connmark);

    let mut build = Family::new(
        "awscni_build_info",
        "gauge",
        "A metric with a constant '1' value labeled by version, revision, and goversion from which amazon-vpc-cni-k8s was built.",
    );
    build.sample(
        &[
            ("version", &m.build.version),
            ("revision", &m.build.revision),
            ("goversion", &m.build.goversion),
        ],
        Num::U(1),
    );
    fams.push(build);

    fams.sort_by(|a, b| a.name.cmp(b.name));
    let mut out = String::new();
    for mut f in fams {
        if f.metrics.is_empty() {
            continue;
        }
        // Go's client orders metrics by their label values; a repeated label set keeps the last.
        f.metrics.sort_by(|a, b| a.0.cmp(&b.0));
        f.metrics.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                std::mem::swap(later, earlier);
            }
            same
        });
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (_, lines) in f.metrics {
            out.push_str(&lines);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("x\ny"), "x\\ny");
    }

    #[test]
    fn formats_special_floats() {
        let mut s = String::new();
        Num::F(f64::INFINITY).write(&mut s);
        s.push(' ');
        Num::F(0.25).write(&mut s);
        s.push(' ');
        Num::F(10.0).write(&mut s);
        assert_eq!(s, "+Inf 0.25 10");
    }
}
