//! Per-API request, error and latency counters, ready for the metrics endpoint.
//!
//! The data behind upstream's `awscni_aws_api_latency_ms{api,error,status}`,
//! `awscni_aws_api_error_count{api,error}`, `awscni_ec2api_req_count{fn}` and
//! `awscni_ec2api_error_count{fn}`. One record per HTTP attempt. No HTTP here.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Counters for every API called so far.
#[derive(Debug, Default)]
pub struct ApiStats {
    by_api: Mutex<BTreeMap<&'static str, ApiCounters>>,
}

/// The counters of one API (e.g. `AssignPrivateIpAddresses`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApiCounters {
    /// Requests sent (each retry counts).
    pub requests: u64,
    /// Failed requests (each retry counts).
    pub errors: u64,
    /// Failed requests by error code (`HTTP <status>` or `transport` when there is no code).
    pub errors_by_code: BTreeMap<String, u64>,
    /// Latency by (failed?, HTTP status; 0 when no answer).
    pub latency: BTreeMap<(bool, u16), Latency>,
}

/// A latency summary: count and sum, as a Prometheus summary without quantiles.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Observations.
    pub count: u64,
    /// Sum of the observations in milliseconds.
    pub sum_ms: u64,
    /// Largest observation in milliseconds.
    pub max_ms: u64,
}

impl ApiStats {
    /// A fresh, empty set of counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one request of `api` that took `elapsed`, answered `status` (0 = no answer) and
    /// failed with `error_code` if it failed.
    pub fn record(
        &self,
        api: &'static str,
        elapsed: Duration,
        status: u16,
        error_code: Option<&str>,
    ) {
        let Ok(mut map) = self.by_api.lock() else {
            return;
        };
        let c = map.entry(api).or_default();
        c.requests += 1;
        if let Some(code) = error_code {
            c.errors += 1;
            *c.errors_by_code.entry(code.to_string()).or_default() += 1;
        }
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let l = c.latency.entry((error_code.is_some(), status)).or_default();
        l.count += 1;
        l.sum_ms = l.sum_ms.saturating_add(ms);
        l.max_ms = l.max_ms.max(ms);
    }

    /// A copy of all counters, by API name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, ApiCounters> {
        self.by_api.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_errors_and_latency_per_api() {
        let s = ApiStats::new();
        s.record("DescribeInstances", Duration::from_millis(12), 200, None);
        s.record(
            "AssignPrivateIpAddresses",
            Duration::from_millis(30),
            503,
            Some("RequestLimitExceeded"),
        );
        s.record(
            "AssignPrivateIpAddresses",
            Duration::from_millis(10),
            200,
            None,
        );
        let snap = s.snapshot();
        let a = &snap["AssignPrivateIpAddresses"];
        assert_eq!((a.requests, a.errors), (2, 1));
        assert_eq!(a.errors_by_code["RequestLimitExceeded"], 1);
        assert_eq!(
            a.latency[&(true, 503)],
            Latency {
                count: 1,
                sum_ms: 30,
                max_ms: 30
            }
        );
        assert_eq!(a.latency[&(false, 200)].sum_ms, 10);
        assert_eq!(snap["DescribeInstances"].errors, 0);
    }
}
