//! The real [`Ec2`] implementation: SigV4-signed Query API POSTs over ureq + rustls.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::query::{self, form_body, Params};
use super::*;
use crate::aws::credentials::ProvideCredentials;
use crate::aws::error::{classify, Ec2ErrorKind, ErrorClass};
use crate::aws::http::{self, Endpoint};
use crate::aws::retry::{Attempt, RetryEnv, RetryPolicy, SystemRetryEnv};
use crate::aws::sigv4;
use crate::aws::stats::ApiStats;
use crate::aws::xml::parse_error;

/// A fresh idempotency token (EC2's `ClientToken`: up to 64 ASCII characters, unique per logical request).
fn client_token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No OS randomness: the clock and the process id still make a token unique enough per call.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("vpc-cni-{nanos:x}-{:x}", std::process::id());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("vpc-cni-{hex}")
}

/// The region's standard EC2 endpoint (`amazonaws.com.cn` in China, the ISO partitions' own).
pub fn ec2_endpoint_for_region(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else if region.starts_with("us-isob-") {
        "sc2s.sgov.gov"
    } else if region.starts_with("us-iso-") {
        "c2s.ic.gov"
    } else {
        "amazonaws.com"
    };
    format!("https://ec2.{region}.{suffix}")
}

/// How to reach EC2.
#[derive(Debug, Clone)]
pub struct Ec2Config {
    /// Region, e.g. `us-west-2` (the signing scope).
    pub region: String,
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Per-request timeout (`HTTP_TIMEOUT`).
    pub timeout: Duration,
    /// Trusted roots for TLS.
    pub ca_roots: Vec<ureq::tls::Certificate<'static>>,
    /// Retry policy.
    pub retry: RetryPolicy,
}

/// The EC2 client could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2SetupError {
    /// Why.
    pub detail: String,
}

impl fmt::Display for Ec2SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EC2 client: {}", self.detail)
    }
}

impl std::error::Error for Ec2SetupError {}

impl Ec2Config {
    /// From the environment: endpoint from `AWS_ENDPOINT_URL_EC2`, `AWS_EC2_ENDPOINT` or
    /// `AWS_ENDPOINT_URL`, else the region's standard one; `HTTP_TIMEOUT`; CA bundle from
    /// `SSL_CERT_FILE` or the usual system paths (needed only for https endpoints).
    pub fn from_env(
        region: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Ec2Config, Ec2SetupError> {
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let endpoint = [
            "AWS_ENDPOINT_URL_EC2",
            "AWS_EC2_ENDPOINT",
            "AWS_ENDPOINT_URL",
        ]
        .into_iter()
        .find_map(|k| var(k).map(|v| (k, v)));
        let timeout =
            http::http_timeout(var("HTTP_TIMEOUT").as_deref()).map_err(|e| Ec2SetupError {
                detail: e.to_string(),
            })?;
        Ec2Config::new(
            region,
            endpoint.as_ref().map(|(k, v)| (*k, v.as_str())),
            timeout,
            var("SSL_CERT_FILE").as_deref(),
        )
    }

    /// From parts (e.g. ipamd's parsed configuration): `endpoint` is (setting name, URL) of an
    /// override, None for the region's standard endpoint; `ssl_cert_file` is the CA bundle
    /// (None: the usual system paths), needed only for https endpoints.
    pub fn new(
        region: &str,
        endpoint: Option<(&str, &str)>,
        timeout: std::time::Duration,
        ssl_cert_file: Option<&str>,
    ) -> Result<Ec2Config, Ec2SetupError> {
        let setup = |detail: String| Ec2SetupError { detail };
        if region.trim().is_empty() {
            return Err(setup(
                "no region: set AWS_REGION or run where IMDS answers placement/region".into(),
            ));
        }
        let (from, url) = match endpoint {
            Some((name, url)) => (name, url.to_string()),
            None => ("region", ec2_endpoint_for_region(region.trim())),
        };
        let endpoint = Endpoint::parse(&url).map_err(|e| setup(format!("{from}: {e}")))?;
        let ca_roots = match http::load_ca_bundle(ssl_cert_file) {
            Ok((_, certs)) => certs,
            Err(_) if endpoint.base.starts_with("http://") => Vec::new(),
            Err(e) => return Err(setup(e.to_string())),
        };
        Ok(Ec2Config {
            region: region.trim().to_string(),
            endpoint,
            timeout,
            ca_roots,
            retry: RetryPolicy::EC2,
        })
    }
}

/// The EC2 Query API client.
pub struct Ec2Client {
    agent: ureq::Agent,
    endpoint: Endpoint,
    region: String,
    credentials: Arc<dyn ProvideCredentials>,
    retry: RetryPolicy,
    retry_env: Arc<dyn RetryEnv>,
    stats: Arc<ApiStats>,
}

impl fmt::Debug for Ec2Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ec2Client")
            .field("endpoint", &self.endpoint.base)
            .field("region", &self.region)
            .field("retry", &self.retry)
            .finish()
    }
}

/// One failed attempt.
struct Failure {
    class: ErrorClass,
    status: u16,
    code: Option<String>,
    message: String,
    request_id: Option<String>,
}

impl Ec2Client {
    /// A client for `config`, signing with `credentials`.
    pub fn new(config: Ec2Config, credentials: Arc<dyn ProvideCredentials>) -> Ec2Client {
        Ec2Client {
            agent: http::tls_agent(config.ca_roots, config.timeout),
            endpoint: config.endpoint,
            region: config.region,
            credentials,
            retry: config.retry,
            retry_env: Arc::new(SystemRetryEnv),
            stats: Arc::new(ApiStats::new()),
        }
    }

    /// [`Ec2Config::from_env`] + [`Ec2Client::new`].
    pub fn from_env(
        region: &str,
        credentials: Arc<dyn ProvideCredentials>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Ec2Client, Ec2SetupError> {
        Ok(Ec2Client::new(
            Ec2Config::from_env(region, env)?,
            credentials,
        ))
    }

    /// Replaces the randomness/sleep/clock of the retry loop (tests).
    pub fn with_retry_env(mut self, env: Arc<dyn RetryEnv>) -> Ec2Client {
        self.retry_env = env;
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Ec2Client {
        self.retry = policy;
        self
    }

    /// Shares a counter set (e.g. with the metrics endpoint).
    pub fn with_stats(mut self, stats: Arc<ApiStats>) -> Ec2Client {
        self.stats = stats;
        self
    }

    /// The per-API counters of this client.
    pub fn stats(&self) -> &Arc<ApiStats> {
        &self.stats
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> &str {
        &self.endpoint.base
    }

    fn attempt(&self, action: &'static str, body: &str) -> Result<String, Attempt<Failure>> {
        let creds = self.credentials.credentials().map_err(|e| {
            Attempt::Fail(Failure {
                class: ErrorClass::Client,
                status: 0,
                code: None,
                message: format!("credentials: {e}"),
                request_id: None,
            })
        })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let amz_date = sigv4::amz_date(now);
        let mut headers: Vec<(&str, &str)> = vec![
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("host", &self.endpoint.host),
            ("x-amz-date", &amz_date),
        ];
        if let Some(t) = &creds.session_token {
            headers.push(("x-amz-security-token", t.expose()));
        }
        let request = sigv4::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            payload: body.as_bytes(),
        };
        let authorization = sigv4::authorization(
            &creds.access_key_id,
            creds.secret_access_key.expose(),
            &amz_date,
            &self.region,
            "ec2",
            &request,
        );
        let mut send_headers = headers.clone();
        send_headers.push(("authorization", &authorization));
        let url = format!("{}/", self.endpoint.base);
        let started = self.retry_env.now();
        let result = http::send(
            &self.agent,
            "POST",
            &url,
            &send_headers,
            Some(body.as_bytes()),
            None,
        );
        let elapsed = self.retry_env.now().saturating_duration_since(started);
        let answer = match result {
            Ok(a) => a,
            Err(e) => {
                self.stats.record(action, elapsed, 0, Some("transport"));
                log::debug!("EC2 {action}: transport error after {elapsed:?}: {e}");
                return Err(Attempt::Retry(Failure {
                    class: ErrorClass::Transient,
                    status: 0,
                    code: None,
                    message: e.to_string(),
                    request_id: None,
                }));
            }
        };
        let text = answer.text();
        if answer.status == 200 {
            self.stats.record(action, elapsed, 200, None);
            log::debug!("EC2 {action}: 200 in {elapsed:?}");
            return Ok(text);
        }
        let parsed = parse_error(&text);
        let code = parsed.as_ref().map(|e| e.code.clone());
        let class = classify(answer.status, code.as_deref());
        let status_code = format!("HTTP {}", answer.status);
        self.stats.record(
            action,
            elapsed,
            answer.status,
            Some(code.as_deref().unwrap_or(&status_code)),
        );
        let failure = Failure {
            class,
            status: answer.status,
            message: parsed
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_else(|| {
                    let snippet: String = text.chars().take(200).collect();
                    format!("HTTP {} {}", answer.status, snippet.trim())
                }),
            request_id: parsed.and_then(|e| e.request_id),
            code,
        };
        log::debug!(
            "EC2 {action}: HTTP {} {:?} in {elapsed:?}",
            answer.status,
            failure.code
        );
        match class {
            ErrorClass::Throttling | ErrorClass::Transient => Err(Attempt::Retry(failure)),
            ErrorClass::ExpiredCredentials => {
                self.credentials.invalidate();
                Err(Attempt::Retry(failure))
            }
            _ => Err(Attempt::Fail(failure)),
        }
    }

    /// Sends `action` with `params`, retrying per the policy; returns the answer body.
    fn call(&self, action: &'static str, params: &Params) -> Result<String, Ec2Error> {
        let body = form_body(action, params);
        let result = self.retry.run(&*self.retry_env, |n| {
            let r = self.attempt(action, &body);
            if let Err(Attempt::Retry(f)) = &r {
                if n < self.retry.max_attempts {
                    log::warn!(
                        "EC2 {action}: attempt {n} failed ({}), retrying",
                        f.code.as_deref().unwrap_or(&f.message)
                    );
                }
            }
            r
        });
        result.map_err(|e| {
            let f = e.error;
            let code = f
                .code
                .clone()
                .unwrap_or_else(|| format!("HTTP {}", f.status));
            let kind = match f.class {
                _ if f.status == 0 && f.message.starts_with("credentials: ") => {
                    Ec2ErrorKind::Credentials {
                        detail: f.message.trim_start_matches("credentials: ").to_string(),
                    }
                }
                ErrorClass::Throttling => Ec2ErrorKind::Throttled { code },
                ErrorClass::Transient => Ec2ErrorKind::Unavailable {
                    detail: match &f.code {
                        Some(c) => format!("{c}: {}", f.message),
                        None => f.message,
                    },
                },
                ErrorClass::Capacity => Ec2ErrorKind::Capacity {
                    code,
                    message: f.message,
                },
                ErrorClass::Unauthorized => Ec2ErrorKind::Unauthorized {
                    code,
                    message: f.message,
                },
                ErrorClass::AuthFailure | ErrorClass::ExpiredCredentials => {
                    Ec2ErrorKind::AuthFailure {
                        code,
                        message: f.message,
                    }
                }
                ErrorClass::Client => Ec2ErrorKind::Api {
                    status: f.status,
                    code,
                    message: f.message,
                },
            };
            Ec2Error {
                action,
                attempts: e.attempts,
                kind,
                request_id: f.request_id,
            }
        })
    }

    fn bad(action: &'static str, detail: String) -> Ec2Error {
        Ec2Error {
            action,
            attempts: 1,
            kind: Ec2ErrorKind::BadResponse { detail },
            request_id: None,
        }
    }

    fn paged<T>(
        &self,
        action: &'static str,
        params: impl Fn(Option<&str>) -> Params,
        parse: fn(&str) -> Result<Page<T>, String>,
    ) -> Result<Vec<T>, Ec2Error> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..10_000 {
            let body = self.call(action, &params(token.as_deref()))?;
            let page = parse(&body).map_err(|d| Self::bad(action, d))?;
            items.extend(page.items);
            match page.next_token {
                Some(next) if token.as_deref() != Some(next.as_str()) => token = Some(next),
                _ => return Ok(items),
            }
        }
        Err(Self::bad(action, "more than 10000 pages; giving up".into()))
    }

    fn simple(&self, action: &'static str, params: &Params) -> Result<(), Ec2Error> {
        let body = self.call(action, params)?;
        parse_return(&body).map_err(|d| Self::bad(action, d))
    }
}

impl Ec2 for Ec2Client {
    fn describe_instances(&self, req: &DescribeInstances) -> Result<Vec<Instance>, Ec2Error> {
        self.paged(
            "DescribeInstances",
            |t| query::describe_instances(req, t),
            parse_describe_instances,
        )
    }

    fn describe_instance_types(
        &self,
        instance_types: &[String],
    ) -> Result<Vec<InstanceTypeInfo>, Ec2Error> {
        self.paged(
            "DescribeInstanceTypes",
            |t| query::describe_instance_types(instance_types, t),
            parse_describe_instance_types,
        )
    }

    fn describe_subnets(&self, req: &DescribeSubnets) -> Result<Vec<Subnet>, Ec2Error> {
        self.paged(
            "DescribeSubnets",
            |t| query::describe_subnets(req, t),
            parse_describe_subnets,
        )
    }

    fn describe_network_interfaces(
        &self,
        req: &DescribeNetworkInterfaces,
    ) -> Result<Vec<NetworkInterface>, Ec2Error> {
        self.paged(
            "DescribeNetworkInterfaces",
            |t| query::describe_network_interfaces(req, t),
            parse_describe_network_interfaces,
        )
    }

    fn create_network_interface(
        &self,
        req: &CreateNetworkInterface,
    ) -> Result<NetworkInterface, Ec2Error> {
        const A: &str = "CreateNetworkInterface";
        // One token for every attempt of this call: when an answer is lost after EC2 created the ENI, the
        // retry gets that ENI back instead of creating a second one that nobody knows about.
        let mut params = query::create_network_interface(req);
        params.push(("ClientToken".to_string(), client_token()));
        let body = self.call(A, &params)?;
        parse_create_network_interface(&body).map_err(|d| Self::bad(A, d))
    }

    fn attach_network_interface(&self, req: &AttachNetworkInterface) -> Result<String, Ec2Error> {
        const A: &str = "AttachNetworkInterface";
        let body = self.call(A, &query::attach_network_interface(req))?;
        parse_attach(&body).map_err(|d| Self::bad(A, d))
    }

    fn modify_network_interface_attribute(
        &self,
        req: &ModifyNetworkInterfaceAttribute,
    ) -> Result<(), Ec2Error> {
        self.simple(
            "ModifyNetworkInterfaceAttribute",
            &query::modify_network_interface_attribute(req),
        )
    }

    fn assign_private_ip_addresses(
        &self,
        req: &AssignPrivateIpAddresses,
    ) -> Result<AssignedIpv4, Ec2Error> {
        const A: &str = "AssignPrivateIpAddresses";
        let body = self.call(A, &query::assign_private_ip_addresses(req))?;
        parse_assign_private_ips(&body).map_err(|d| Self::bad(A, d))
    }

    fn unassign_private_ip_addresses(
        &self,
        req: &UnassignPrivateIpAddresses,
    ) -> Result<(), Ec2Error> {
        self.simple(
            "UnassignPrivateIpAddresses",
            &query::unassign_private_ip_addresses(req),
        )
    }

    fn assign_ipv6_addresses(&self, req: &AssignIpv6Addresses) -> Result<AssignedIpv6, Ec2Error> {
        const A: &str = "AssignIpv6Addresses";
        let body = self.call(A, &query::assign_ipv6_addresses(req))?;
        parse_assign_ipv6(&body).map_err(|d| Self::bad(A, d))
    }

    fn unassign_ipv6_addresses(&self, req: &UnassignIpv6Addresses) -> Result<(), Ec2Error> {
        self.simple(
            "UnassignIpv6Addresses",
            &query::unassign_ipv6_addresses(req),
        )
    }

    fn detach_network_interface(&self, req: &DetachNetworkInterface) -> Result<(), Ec2Error> {
        self.simple(
            "DetachNetworkInterface",
            &query::detach_network_interface(req),
        )
    }

    fn delete_network_interface(&self, network_interface_id: &str) -> Result<(), Ec2Error> {
        self.simple(
            "DeleteNetworkInterface",
            &query::delete_network_interface(network_interface_id),
        )
    }

    fn create_tags(&self, resource_ids: &[String], tags: &[Tag]) -> Result<(), Ec2Error> {
        self.simple("CreateTags", &query::create_tags(resource_ids, tags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_endpoints_per_partition() {
        assert_eq!(
            ec2_endpoint_for_region("us-west-2"),
            "https://ec2.us-west-2.amazonaws.com"
        );
        assert_eq!(
            ec2_endpoint_for_region("cn-north-1"),
            "https://ec2.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            ec2_endpoint_for_region("us-iso-east-1"),
            "https://ec2.us-iso-east-1.c2s.ic.gov"
        );
    }

    #[test]
    fn endpoint_overrides_in_sdk_order() {
        let env = |k: &str| match k {
            "AWS_EC2_ENDPOINT" => Some("http://127.0.0.1:1234".to_string()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9999".to_string()),
            _ => None,
        };
        let c = Ec2Config::from_env("us-east-1", &env).unwrap();
        assert_eq!(c.endpoint.host, "127.0.0.1:1234");
        let env2 =
            |k: &str| (k == "AWS_ENDPOINT_URL_EC2").then(|| "http://127.0.0.1:5555/".to_string());
        assert_eq!(
            Ec2Config::from_env("us-east-1", &env2)
                .unwrap()
                .endpoint
                .host,
            "127.0.0.1:5555"
        );
        let bad = |k: &str| (k == "AWS_ENDPOINT_URL_EC2").then(|| "ec2.local".to_string());
        let e = Ec2Config::from_env("us-east-1", &bad).unwrap_err();
        assert!(e.to_string().contains("AWS_ENDPOINT_URL_EC2"), "{e}");
        assert!(Ec2Config::from_env("", &|_| None)
            .unwrap_err()
            .to_string()
            .contains("region"));
    }
}
