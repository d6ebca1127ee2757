//! Instance metadata (IMDSv2): session token, retries inside a caller's deadline, typed keys.
//!
//! - The token comes from `PUT /latest/api/token` (TTL header), is reused until shortly before
//!   it expires, and is fetched again when IMDS answers 401.
//! - 404 means "absent": [`ImdsCall::get`] returns `Ok(None)`; list keys that may legitimately
//!   be missing (`ipv4-prefix`, `ipv6s`, ...) read as empty lists; a required key that is missing
//!   is [`ImdsError::NotFound`] naming the key.
//! - Connection errors, 429 and 5xx are retried with backoff until the deadline the caller
//!   gives ([`Imds::within`]): short on the CNI path, long at daemon start.
//! - The endpoint is `AWS_EC2_METADATA_SERVICE_ENDPOINT` or `http://169.254.169.254`, and the
//!   agent is never proxied.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::credentials::Secret;
use super::http::{self, Endpoint};
use super::retry::{Attempt, RetryEnv, RetryPolicy, SystemRetryEnv};
use crate::net::{Ipv4Cidr, Ipv6Cidr, MacAddr};

/// The default IMDS endpoint.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
/// The environment variable overriding it (as in the AWS SDKs).
pub const ENDPOINT_ENV: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
/// `IPv6` selects the IPv6 endpoint when no endpoint is given (as in the AWS SDKs).
pub const ENDPOINT_MODE_ENV: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE";
/// The IPv6 IMDS endpoint (Nitro instances in IPv6-only subnets).
pub const DEFAULT_ENDPOINT_IPV6: &str = "http://[fd00:ec2::254]";
/// Default session token lifetime: 6 hours, the maximum IMDS allows.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(21_600);
const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Longest wait for one IMDS request; a hung connection is abandoned and retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// An IMDS read that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImdsError {
    /// A required key is absent (HTTP 404).
    NotFound {
        /// The key, e.g. `network/interfaces/macs/0a:..:5f/subnet-id`.
        key: String,
    },
    /// IMDS answered something that is not a valid value for the key.
    Invalid {
        /// The key.
        key: String,
        /// What IMDS answered.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// IMDS did not answer usefully before the deadline or attempts ran out.
    Unavailable {
        /// The key.
        key: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        detail: String,
    },
    /// IMDS refused (403: IMDS disabled or the hop limit is too low; 405: no IMDSv2).
    Refused {
        /// The key or `api/token`.
        key: String,
        /// HTTP status.
        status: u16,
    },
    /// The endpoint setting is not a URL.
    BadEndpoint {
        /// Why.
        detail: String,
    },
}

impl fmt::Display for ImdsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImdsError::NotFound { key } => write!(f, "IMDS key {key} is absent (404)"),
            ImdsError::Invalid { key, value, expected } => {
                write!(f, "IMDS key {key} answered {value:?}, expected {expected}")
            }
            ImdsError::Unavailable { key, attempts, detail } => {
                write!(f, "IMDS key {key}: no answer after {attempts} attempts: {detail}")
            }
            ImdsError::Refused { key, status } => write!(
                f,
                "IMDS refused {key} with HTTP {status} (IMDSv2 must be enabled with a hop limit of at least 2 for pods)"
            ),
            ImdsError::BadEndpoint { detail } => write!(f, "{ENDPOINT_ENV}: {detail}"),
        }
    }
}

impl std::error::Error for ImdsError {}

struct Token {
    value: Secret,
    refresh_at: Instant,
}

/// An IMDSv2 client. Cheap to share (`Arc`); the token is shared by all callers.
pub struct Imds {
    base: String,
    agent: ureq::Agent,
    token_ttl: Duration,
    token: Mutex<Option<Token>>,
    retry_env: Arc<dyn RetryEnv>,
    policy: RetryPolicy,
}

impl fmt::Debug for Imds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imds")
            .field("base", &self.base)
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

impl Imds {
    /// A client for `endpoint` (e.g. `http://169.254.169.254`).
    pub fn new(endpoint: &str) -> Result<Imds, ImdsError> {
        let endpoint =
            Endpoint::parse(endpoint).map_err(|detail| ImdsError::BadEndpoint { detail })?;
        Ok(Imds {
            base: endpoint.base,
            agent: http::local_agent(REQUEST_TIMEOUT),
            token_ttl: DEFAULT_TOKEN_TTL,
            token: Mutex::new(None),
            retry_env: Arc::new(SystemRetryEnv),
            policy: RetryPolicy {
                max_attempts: 1000,
                ..RetryPolicy::IMDS
            },
        })
    }

    /// A client for `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else the default endpoint
    /// (the IPv6 one with `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Imds, ImdsError> {
        if let Some(endpoint) = env(ENDPOINT_ENV).filter(|v| !v.trim().is_empty()) {
            return Imds::new(&endpoint);
        }
        match env(ENDPOINT_MODE_ENV).map(|m| m.trim().to_ascii_lowercase()) {
            None => Imds::new(DEFAULT_ENDPOINT),
            Some(m) if m.is_empty() || m == "ipv4" => Imds::new(DEFAULT_ENDPOINT),
            Some(m) if m == "ipv6" => Imds::new(DEFAULT_ENDPOINT_IPV6),
            Some(m) => Err(ImdsError::BadEndpoint {
                detail: format!("{ENDPOINT_MODE_ENV}={m:?} is not valid: expected IPv4 or IPv6"),
            }),
        }
    }

    /// Sets the session token lifetime (1 s to 6 h; IMDS's limits).
    pub fn with_token_ttl(mut self, ttl: Duration) -> Imds {
        self.token_ttl = ttl.clamp(Duration::from_secs(1), DEFAULT_TOKEN_TTL);
        self
    }

    /// Replaces the source of randomness, sleep and time (tests).
    pub fn with_retry_env(mut self, env: Arc<dyn RetryEnv>) -> Imds {
        self.retry_env = env;
        self
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// Reads within `budget` from now: every read on the returned handle gives up at that
    /// deadline.
    pub fn within(&self, budget: Duration) -> ImdsCall<'_> {
        ImdsCall {
            source: Source::Http {
                imds: self,
                deadline: self.retry_env.now() + budget,
            },
        }
    }

    /// Forgets the session token (the next read fetches a new one).
    pub fn forget_token(&self) {
        if let Ok(mut t) = self.token.lock() {
            *t = None;
        }
    }

    fn current_token(&self) -> Option<String> {
        let now = self.retry_env.now();
        let t = self.token.lock().ok()?;
        t.as_ref()
            .filter(|t| now < t.refresh_at)
            .map(|t| t.value.expose().to_string())
    }

    /// Fetches a token. Err((retryable, detail, status)).
    fn fetch_token(&self, timeout: Duration) -> Result<String, (bool, String, u16)> {
        let ttl = self.token_ttl.as_secs().to_string();
        let url = format!("{}/latest/api/token", self.base);
        let started = self.retry_env.now();
        let answer = http::send(
            &self.agent,
            "PUT",
            &url,
            &[(TOKEN_TTL_HEADER, &ttl)],
            Some(b""),
            Some(timeout),
        )
        .map_err(|e| (true, format!("token request: {e}"), 0))?;
        match answer.status {
            200 => {
                let value = answer.text().trim().to_string();
                if value.is_empty() {
                    return Err((true, "token request: empty token".into(), 200));
                }
                // Refresh a little before expiry: a tenth of the TTL, at most a minute.
                let margin = (self.token_ttl / 10).min(Duration::from_secs(60));
                let refresh_at = started + self.token_ttl.saturating_sub(margin);
                if let Ok(mut t) = self.token.lock() {
                    *t = Some(Token {
                        value: Secret::new(value.clone()),
                        refresh_at,
                    });
                }
                Ok(value)
            }
            s @ (429 | 500..=599) => Err((true, format!("token request: HTTP {s}"), s)),
            s => Err((false, format!("token request: HTTP {s}"), s)),
        }
    }

    fn read(&self, key: &str, deadline: Instant) -> Result<Option<String>, ImdsError> {
        let url = format!("{}/latest/meta-data/{}", self.base, key);
        let env = &*self.retry_env;
        let budget = deadline.saturating_duration_since(env.now());
        let policy = RetryPolicy {
            budget,
            ..self.policy
        };
        let result = policy.run(env, |_attempt| {
            let remaining = deadline
                .saturating_duration_since(env.now())
                .min(REQUEST_TIMEOUT);
            if remaining.is_zero() {
                return Err(Attempt::Fail((0u16, "deadline passed".to_string())));
            }
            let token = match self.current_token() {
                Some(t) => t,
                None => match self.fetch_token(remaining) {
                    Ok(t) => t,
                    Err((true, detail, s)) => return Err(Attempt::Retry((s, detail))),
                    Err((false, detail, s)) => return Err(Attempt::Fail((s, detail))),
                },
            };
            let answer = http::send(
                &self.agent,
                "GET",
                &url,
                &[(TOKEN_HEADER, &token)],
                None,
                Some(remaining),
            )
            .map_err(|e| Attempt::Retry((0, e.to_string())))?;
            match answer.status {
                200 => Ok(Some(answer.text())),
                404 => Ok(None),
                401 => {
                    // Expired or unknown token: fetch a new one on the next attempt.
                    self.forget_token();
                    Err(Attempt::Retry((
                        401,
                        "HTTP 401 (token expired or rejected)".to_string(),
                    )))
                }
                s @ (429 | 500..=599) => Err(Attempt::Retry((s, format!("HTTP {s}")))),
                s => Err(Attempt::Fail((s, format!("HTTP {s}")))),
            }
        });
        result.map_err(|e| {
            let (status, detail) = e.error;
            if !e.gave_up && matches!(status, 403 | 405 | 400) {
                ImdsError::Refused {
                    key: key.to_string(),
                    status,
                }
            } else {
                ImdsError::Unavailable {
                    key: key.to_string(),
                    attempts: e.attempts,
                    detail,
                }
            }
        })
    }
}

/// IMDS reads that share one deadline (from [`Imds::within`]), or reads of canned answers
/// (from [`ImdsCall::from_answers`]).
pub struct ImdsCall<'a> {
    source: Source<'a>,
}

enum Source<'a> {
    Http { imds: &'a Imds, deadline: Instant },
    Answers(&'a dyn Fn(&str) -> Option<String>),
}

impl fmt::Debug for ImdsCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Http { imds, deadline } => f
                .debug_struct("ImdsCall")
                .field("imds", imds)
                .field("deadline", deadline)
                .finish(),
            Source::Answers(_) => f.write_str("ImdsCall(answers)"),
        }
    }
}

/// Everything IMDS says about one attached ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsInterface {
    /// The MAC address (the key of the interface in IMDS).
    pub mac: MacAddr,
    /// `eni-...`.
    pub interface_id: String,
    /// Device number (0 = primary ENI).
    pub device_number: u32,
    /// Network card index (0 when IMDS has no `network-card` key).
    pub network_card: u32,
    /// Subnet.
    pub subnet_id: String,
    /// VPC.
    pub vpc_id: String,
    /// The subnet's IPv4 CIDR.
    pub subnet_ipv4_cidr: Ipv4Cidr,
    /// The subnet's IPv6 CIDRs.
    pub subnet_ipv6_cidrs: Vec<Ipv6Cidr>,
    /// The VPC's IPv4 CIDRs.
    pub vpc_ipv4_cidrs: Vec<Ipv4Cidr>,
    /// The VPC's IPv6 CIDRs.
    pub vpc_ipv6_cidrs: Vec<Ipv6Cidr>,
    /// Security groups.
    pub security_group_ids: Vec<String>,
    /// Private IPv4 addresses, the primary first.
    pub local_ipv4s: Vec<Ipv4Addr>,
    /// Delegated IPv4 prefixes.
    pub ipv4_prefixes: Vec<Ipv4Cidr>,
    /// IPv6 addresses.
    pub ipv6s: Vec<Ipv6Addr>,
    /// Delegated IPv6 prefixes.
    pub ipv6_prefixes: Vec<Ipv6Cidr>,
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .filter(|l| !l.is_empty())
}

impl<'a> ImdsCall<'a> {
    /// The typed readers over canned answers: `answer(key)` is the body IMDS would send for `key`
    /// (below `/latest/meta-data/`), `None` for a 404. No I/O (tests and fuzzing).
    pub fn from_answers(answer: &'a dyn Fn(&str) -> Option<String>) -> ImdsCall<'a> {
        ImdsCall {
            source: Source::Answers(answer),
        }
    }

    /// The raw value of `key` (below `/latest/meta-data/`), or `None` when IMDS says 404.
    pub fn get(&self, key: &str) -> Result<Option<String>, ImdsError> {
        match &self.source {
            Source::Http { imds, deadline } => imds.read(key, *deadline),
            Source::Answers(answer) => Ok(answer(key)),
        }
    }

    fn required(&self, key: &str) -> Result<String, ImdsError> {
        match self.get(key)? {
            Some(v) => Ok(v.trim().to_string()),
            None => Err(ImdsError::NotFound {
                key: key.to_string(),
            }),
        }
    }

    fn typed<T: FromStr>(&self, key: &str, expected: &'static str) -> Result<T, ImdsError> {
        let v = self.required(key)?;
        v.parse().map_err(|_| ImdsError::Invalid {
            key: key.to_string(),
            value: v,
            expected,
        })
    }

    fn list<T: FromStr>(&self, key: &str, expected: &'static str) -> Result<Vec<T>, ImdsError> {
        let Some(text) = self.get(key)? else {
            return Ok(Vec::new());
        };
        lines(&text)
            .map(|l| {
                l.parse().map_err(|_| ImdsError::Invalid {
                    key: key.to_string(),
                    value: l.to_string(),
                    expected,
                })
            })
            .collect()
    }

    fn non_empty(&self, key: &str) -> Result<String, ImdsError> {
        let v = self.required(key)?;
        if v.is_empty() || v.contains(char::is_whitespace) {
            return Err(ImdsError::Invalid {
                key: key.to_string(),
                value: v,
                expected: "a single non-empty word",
            });
        }
        Ok(v)
    }

    /// `instance-id`.
    pub fn instance_id(&self) -> Result<String, ImdsError> {
        self.non_empty("instance-id")
    }
    /// `instance-type`.
    pub fn instance_type(&self) -> Result<String, ImdsError> {
        self.non_empty("instance-type")
    }
    /// `placement/region`.
    pub fn region(&self) -> Result<String, ImdsError> {
        self.non_empty("placement/region")
    }
    /// `placement/availability-zone`.
    pub fn availability_zone(&self) -> Result<String, ImdsError> {
        self.non_empty("placement/availability-zone")
    }
    /// `mac`: the primary ENI's MAC address.
    pub fn primary_mac(&self) -> Result<MacAddr, ImdsError> {
        self.typed("mac", "a MAC address")
    }
    /// `local-ipv4`: the primary private address.
    pub fn local_ipv4(&self) -> Result<Ipv4Addr, ImdsError> {
        self.typed("local-ipv4", "an IPv4 address")
    }
    /// `network/interfaces/macs/`: the MACs of all attached ENIs.
    pub fn macs(&self) -> Result<Vec<MacAddr>, ImdsError> {
        let key = "network/interfaces/macs/";
        let text = self.required(key)?;
        lines(&text)
            .map(|l| {
                l.parse().map_err(|_| ImdsError::Invalid {
                    key: key.to_string(),
                    value: l.to_string(),
                    expected: "a MAC address",
                })
            })
            .collect()
    }

    fn mac_key(mac: &MacAddr, leaf: &str) -> String {
        format!("network/interfaces/macs/{mac}/{leaf}")
    }

    /// `interface-id` of the ENI with `mac`.
    pub fn interface_id(&self, mac: &MacAddr) -> Result<String, ImdsError> {
        self.non_empty(&Self::mac_key(mac, "interface-id"))
    }
    /// `device-number`.
    pub fn device_number(&self, mac: &MacAddr) -> Result<u32, ImdsError> {
        self.typed(&Self::mac_key(mac, "device-number"), "a device number")
    }
    /// `network-card` (0 when absent, as on single-card instances).
    pub fn network_card(&self, mac: &MacAddr) -> Result<u32, ImdsError> {
        let key = Self::mac_key(mac, "network-card");
        match self.get(&key)? {
            None => Ok(0),
            Some(v) => v.trim().parse().map_err(|_| ImdsError::Invalid {
                key,
                value: v.trim().to_string(),
                expected: "a network card index",
            }),
        }
    }
    /// `subnet-id`.
    pub fn subnet_id(&self, mac: &MacAddr) -> Result<String, ImdsError> {
        self.non_empty(&Self::mac_key(mac, "subnet-id"))
    }
    /// `vpc-id`.
    pub fn vpc_id(&self, mac: &MacAddr) -> Result<String, ImdsError> {
        self.non_empty(&Self::mac_key(mac, "vpc-id"))
    }
    /// `subnet-ipv4-cidr-block`.
    pub fn subnet_ipv4_cidr(&self, mac: &MacAddr) -> Result<Ipv4Cidr, ImdsError> {
        self.typed(
            &Self::mac_key(mac, "subnet-ipv4-cidr-block"),
            "an IPv4 CIDR",
        )
    }
    /// `subnet-ipv6-cidr-blocks` (empty when absent).
    pub fn subnet_ipv6_cidrs(&self, mac: &MacAddr) -> Result<Vec<Ipv6Cidr>, ImdsError> {
        self.list(
            &Self::mac_key(mac, "subnet-ipv6-cidr-blocks"),
            "an IPv6 CIDR",
        )
    }
    /// `vpc-ipv4-cidr-blocks`.
    pub fn vpc_ipv4_cidrs(&self, mac: &MacAddr) -> Result<Vec<Ipv4Cidr>, ImdsError> {
        self.list(&Self::mac_key(mac, "vpc-ipv4-cidr-blocks"), "an IPv4 CIDR")
    }
    /// `vpc-ipv6-cidr-blocks` (empty when absent).
    pub fn vpc_ipv6_cidrs(&self, mac: &MacAddr) -> Result<Vec<Ipv6Cidr>, ImdsError> {
        self.list(&Self::mac_key(mac, "vpc-ipv6-cidr-blocks"), "an IPv6 CIDR")
    }
    /// `security-group-ids`.
    pub fn security_group_ids(&self, mac: &MacAddr) -> Result<Vec<String>, ImdsError> {
        let key = Self::mac_key(mac, "security-group-ids");
        Ok(self
            .get(&key)?
            .map(|t| lines(&t).map(str::to_string).collect())
            .unwrap_or_default())
    }
    /// `local-ipv4s` (primary first).
    pub fn local_ipv4s(&self, mac: &MacAddr) -> Result<Vec<Ipv4Addr>, ImdsError> {
        self.list(&Self::mac_key(mac, "local-ipv4s"), "an IPv4 address")
    }
    /// `ipv4-prefix` (empty when absent).
    pub fn ipv4_prefixes(&self, mac: &MacAddr) -> Result<Vec<Ipv4Cidr>, ImdsError> {
        self.list(&Self::mac_key(mac, "ipv4-prefix"), "an IPv4 CIDR")
    }
    /// `ipv6s` (empty when absent).
    pub fn ipv6s(&self, mac: &MacAddr) -> Result<Vec<Ipv6Addr>, ImdsError> {
        self.list(&Self::mac_key(mac, "ipv6s"), "an IPv6 address")
    }
    /// `ipv6-prefix` (empty when absent).
    pub fn ipv6_prefixes(&self, mac: &MacAddr) -> Result<Vec<Ipv6Cidr>, ImdsError> {
        self.list(&Self::mac_key(mac, "ipv6-prefix"), "an IPv6 CIDR")
    }

    /// Every key of the ENI with `mac`.
    pub fn interface(&self, mac: &MacAddr) -> Result<ImdsInterface, ImdsError> {
        Ok(ImdsInterface {
            mac: *mac,
            interface_id: self.interface_id(mac)?,
            device_number: self.device_number(mac)?,
            network_card: self.network_card(mac)?,
            subnet_id: self.subnet_id(mac)?,
            vpc_id: self.vpc_id(mac)?,
            subnet_ipv4_cidr: self.subnet_ipv4_cidr(mac)?,
            subnet_ipv6_cidrs: self.subnet_ipv6_cidrs(mac)?,
            vpc_ipv4_cidrs: self.vpc_ipv4_cidrs(mac)?,
            vpc_ipv6_cidrs: self.vpc_ipv6_cidrs(mac)?,
            security_group_ids: self.security_group_ids(mac)?,
            local_ipv4s: self.local_ipv4s(mac)?,
            ipv4_prefixes: self.ipv4_prefixes(mac)?,
            ipv6s: self.ipv6s(mac)?,
            ipv6_prefixes: self.ipv6_prefixes(mac)?,
        })
    }

    /// Every attached ENI, by network card and device number.
    pub fn interfaces(&self) -> Result<Vec<ImdsInterface>, ImdsError> {
        let mut out = Vec::new();
        for mac in self.macs()? {
            out.push(self.interface(&mac)?);
        }
        out.sort_by_key(|i| (i.network_card, i.device_number));
        Ok(out)
    }

    /// The instance profile's role name (`iam/security-credentials/`), if any.
    pub fn instance_profile_role(&self) -> Result<Option<String>, ImdsError> {
        Ok(self
            .get("iam/security-credentials/")?
            .and_then(|t| lines(&t).next().map(str::to_string)))
    }
}
