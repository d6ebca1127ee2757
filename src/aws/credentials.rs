//! AWS credentials in the SDKs' default order, cached and refreshed before they expire.
//!
//! Order (the first source that is configured is used; a configured source that fails is an
//! error, as in the SDKs):
//! 1. environment: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
//! 2. web identity (IRSA): `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE` → STS
//!    `AssumeRoleWithWebIdentity`, an unsigned POST to `AWS_ENDPOINT_URL_STS` or
//!    `https://sts.<region>.amazonaws.com`;
//! 3. container credentials (EKS Pod Identity, ECS): `AWS_CONTAINER_CREDENTIALS_FULL_URI` (or
//!    `_RELATIVE_URI`) with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` / `_TOKEN`;
//! 4. the instance profile from IMDS (`iam/security-credentials/<role>`).
//!
//! Secrets are wrapped in [`Secret`], whose `Debug` and `Display` print `<redacted>`; no error
//! or log line carries a secret, a session token or a web identity token.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::error::{classify, ErrorClass};
use super::http::{self, Endpoint};
use super::imds::Imds;
use super::retry::{Attempt, RetryPolicy, SystemRetryEnv};
use super::sigv4::uri_encode;
use super::xml::{parse_error, walk, Step};
use crate::timefmt::{self, days_from_civil, Fraction};

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself, for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where credentials came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `AWS_ACCESS_KEY_ID` and friends.
    Environment,
    /// STS AssumeRoleWithWebIdentity (IRSA).
    WebIdentity,
    /// A container credentials endpoint (EKS Pod Identity, ECS).
    Container,
    /// The EC2 instance profile (IMDS).
    InstanceProfile,
    /// Given directly (tests, tools).
    Static,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialSource::Environment => "environment",
            CredentialSource::WebIdentity => "web identity (STS AssumeRoleWithWebIdentity)",
            CredentialSource::Container => "container credentials endpoint",
            CredentialSource::InstanceProfile => "instance profile (IMDS)",
            CredentialSource::Static => "static",
        })
    }
}

/// A set of AWS credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id (not secret).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token of temporary credentials.
    pub session_token: Option<Secret>,
    /// When they expire (None: long-lived).
    pub expiration: Option<SystemTime>,
    /// Where they came from.
    pub source: CredentialSource,
}

impl Credentials {
    /// Long-lived credentials given directly.
    pub fn new_static(
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
    ) -> Credentials {
        Credentials {
            access_key_id: access_key_id.to_string(),
            secret_access_key: Secret::new(secret_access_key),
            session_token: session_token.map(Secret::new),
            expiration: None,
            source: CredentialSource::Static,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expiration", &self.expiration)
            .field("source", &self.source)
            .finish()
    }
}

/// Credentials could not be obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsError {
    /// The source that failed (None: nothing configured and no instance profile).
    pub source: Option<CredentialSource>,
    /// Why; never contains a secret.
    pub detail: String,
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            Some(s) => write!(f, "AWS credentials from {s}: {}", self.detail),
            None => write!(f, "no AWS credentials: {}", self.detail),
        }
    }
}

impl std::error::Error for CredentialsError {}

fn cred_err(source: CredentialSource, detail: impl Into<String>) -> CredentialsError {
    CredentialsError {
        source: Some(source),
        detail: detail.into(),
    }
}

/// Something that hands out credentials for signing.
pub trait ProvideCredentials: Send + Sync {
    /// Current credentials.
    fn credentials(&self) -> Result<Credentials, CredentialsError>;
    /// Drops cached credentials (after the service rejected them as expired).
    fn invalidate(&self) {}
}

impl ProvideCredentials for Credentials {
    fn credentials(&self) -> Result<Credentials, CredentialsError> {
        Ok(self.clone())
    }
}

/// How the container credentials request is authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerAuth {
    /// No Authorization header.
    None,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    Token(Secret),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, read at every fetch (it is rotated).
    TokenFile(PathBuf),
}

/// The one source the default chain chose from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainSource {
    /// Environment keys.
    Environment(Credentials),
    /// IRSA.
    WebIdentity {
        /// `AWS_ROLE_ARN`.
        role_arn: String,
        /// `AWS_WEB_IDENTITY_TOKEN_FILE`.
        token_file: PathBuf,
        /// `AWS_ROLE_SESSION_NAME` or a generated one.
        session_name: String,
        /// STS endpoint.
        sts: Endpoint,
    },
    /// Container endpoint.
    Container {
        /// Full URI.
        uri: String,
        /// Authorization.
        auth: ContainerAuth,
    },
    /// IMDS instance profile.
    InstanceProfile,
}

/// The SDKs' default credential chain, resolved once from the environment.
pub struct DefaultChain {
    source: ChainSource,
    imds: Option<Arc<Imds>>,
    sts_agent: ureq::Agent,
    local_agent: ureq::Agent,
}

impl fmt::Debug for DefaultChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultChain")
            .field("source", &self.source)
            .finish()
    }
}

/// The STS endpoint: `AWS_ENDPOINT_URL_STS`, else regional `https://sts.<region>.amazonaws.com`
/// (`.amazonaws.com.cn` in China), else the global endpoint.
pub fn sts_endpoint(
    env: &dyn Fn(&str) -> Option<String>,
    region: Option<&str>,
) -> Result<Endpoint, String> {
    if let Some(url) = env("AWS_ENDPOINT_URL_STS")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .filter(|v| !v.trim().is_empty())
    {
        return Endpoint::parse(&url).map_err(|e| format!("AWS_ENDPOINT_URL_STS: {e}"));
    }
    match region.filter(|r| !r.is_empty()) {
        Some(r) if r.starts_with("cn-") => {
            Endpoint::parse(&format!("https://sts.{r}.amazonaws.com.cn"))
        }
        Some(r) => Endpoint::parse(&format!("https://sts.{r}.amazonaws.com")),
        None => Endpoint::parse("https://sts.amazonaws.com"),
    }
}

/// Whether a container credentials URI may be used: https anywhere, http only to loopback or
/// the ECS/EKS Pod Identity agent addresses (as the SDKs require).
fn container_uri_allowed(uri: &str) -> Result<(), String> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| format!("{uri:?} is not a URL: expected http(s)://host[:port]/path"))?;
    match scheme {
        "https" => return Ok(()),
        "http" => {}
        _ => return Err(format!("{uri:?}: scheme must be http or https")),
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    let allowed = match host.parse::<IpAddr>() {
        Ok(ip) => {
            ip.is_loopback()
                || ip == IpAddr::from([169, 254, 170, 2])
                || ip == IpAddr::from([169, 254, 170, 23])
                || host.eq_ignore_ascii_case("fd00:ec2::23")
        }
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "{uri:?} is not allowed: plain http is only accepted to loopback, 169.254.170.2, 169.254.170.23 or fd00:ec2::23; use https otherwise"
        ))
    }
}

impl DefaultChain {
    /// Picks the source from the environment. `region` is used for the regional STS endpoint;
    /// `imds` serves the instance profile (None: IMDS credentials are not used);
    /// `sts_agent` is a TLS agent ([`http::tls_agent`]).
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        region: Option<&str>,
        imds: Option<Arc<Imds>>,
        sts_agent: ureq::Agent,
    ) -> Result<DefaultChain, CredentialsError> {
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let source = if let (Some(id), Some(secret)) =
            (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        {
            let mut c = Credentials::new_static(id.trim(), secret.trim(), None);
            c.session_token = var("AWS_SESSION_TOKEN").map(|t| Secret::new(t.trim()));
            c.source = CredentialSource::Environment;
            ChainSource::Environment(c)
        } else if let (Some(role_arn), Some(token_file)) =
            (var("AWS_ROLE_ARN"), var("AWS_WEB_IDENTITY_TOKEN_FILE"))
        {
            let region = var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .or(region.map(str::to_string));
            let sts = sts_endpoint(env, region.as_deref())
                .map_err(|d| cred_err(CredentialSource::WebIdentity, d))?;
            let session_name = var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                format!("vpc-cni-{now}")
            });
            ChainSource::WebIdentity {
                role_arn,
                token_file: PathBuf::from(token_file),
                session_name,
                sts,
            }
        } else if let Some(uri) = var("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
            var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                .map(|rel| format!("http://169.254.170.2{rel}"))
        }) {
            container_uri_allowed(&uri).map_err(|d| cred_err(CredentialSource::Container, d))?;
            let auth = match (
                var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
                var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            ) {
                (Some(f), _) => ContainerAuth::TokenFile(PathBuf::from(f)),
                (None, Some(t)) => ContainerAuth::Token(Secret::new(t.trim())),
                (None, None) => ContainerAuth::None,
            };
            ChainSource::Container { uri, auth }
        } else if imds.is_some()
            && !var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            ChainSource::InstanceProfile
        } else {
            return Err(CredentialsError {
                source: None,
                detail: "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_ROLE_ARN/AWS_WEB_IDENTITY_TOKEN_FILE, \
                         AWS_CONTAINER_CREDENTIALS_FULL_URI, or run with an instance profile"
                    .into(),
            });
        };
        Ok(DefaultChain {
            source,
            imds,
            sts_agent,
            local_agent: http::local_agent(Duration::from_secs(5)),
        })
    }

    /// The source in use.
    pub fn source(&self) -> &ChainSource {
        &self.source
    }

    /// Fetches credentials from the chosen source (no caching; see [`CachedCredentials`]).
    pub fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let creds = match &self.source {
            ChainSource::Environment(c) => return Ok(c.clone()),
            ChainSource::WebIdentity {
                role_arn,
                token_file,
                session_name,
                sts,
            } => assume_role_with_web_identity(
                &self.sts_agent,
                sts,
                role_arn,
                token_file,
                session_name,
            )?,
            ChainSource::Container { uri, auth } => {
                container_credentials(&self.local_agent, uri, auth)?
            }
            ChainSource::InstanceProfile => match &self.imds {
                Some(imds) => instance_profile_credentials(imds)?,
                None => {
                    return Err(cred_err(
                        CredentialSource::InstanceProfile,
                        "no IMDS client",
                    ))
                }
            },
        };
        log::info!(
            "AWS credentials from {}, expiring {}",
            creds.source,
            creds.expiration.map_or("never".to_string(), format_rfc3339)
        );
        Ok(creds)
    }
}

/// Credentials cached until `refresh_before` ahead of their expiry.
pub struct CachedCredentials {
    fetch: Box<dyn Fn() -> Result<Credentials, CredentialsError> + Send + Sync>,
    refresh_before: Duration,
    cached: Mutex<Option<Credentials>>,
}

impl fmt::Debug for CachedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedCredentials")
            .field("refresh_before", &self.refresh_before)
            .finish()
    }
}

/// Refresh temporary credentials this long before they expire.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

impl CachedCredentials {
    /// Caches the default chain.
    pub fn new(chain: DefaultChain) -> CachedCredentials {
        CachedCredentials::from_fn(move || chain.fetch())
    }

    /// Caches any fetch function (tests, other sources).
    pub fn from_fn(
        fetch: impl Fn() -> Result<Credentials, CredentialsError> + Send + Sync + 'static,
    ) -> CachedCredentials {
        CachedCredentials {
            fetch: Box::new(fetch),
            refresh_before: REFRESH_BEFORE_EXPIRY,
            cached: Mutex::new(None),
        }
    }

    /// Changes the refresh margin.
    pub fn with_refresh_before(mut self, d: Duration) -> CachedCredentials {
        self.refresh_before = d;
        self
    }

    /// Credentials valid at `now`: cached ones while more than the margin is left, else
    /// fetched. If a refresh fails while the cached ones have not yet expired, those are used.
    pub fn credentials_at(&self, now: SystemTime) -> Result<Credentials, CredentialsError> {
        let mut cached = self.cached.lock().map_err(|_| CredentialsError {
            source: None,
            detail: "credential cache lock poisoned".into(),
        })?;
        if let Some(c) = cached.as_ref() {
            match c.expiration {
                None => return Ok(c.clone()),
                Some(exp) if now + self.refresh_before < exp => return Ok(c.clone()),
                _ => {}
            }
        }
        match (self.fetch)() {
            Ok(fresh) => {
                *cached = Some(fresh.clone());
                Ok(fresh)
            }
            Err(e) => match cached.as_ref() {
                Some(c) if c.expiration.is_some_and(|exp| now < exp) => {
                    log::warn!("{e}; using the cached credentials until they expire");
                    Ok(c.clone())
                }
                _ => Err(e),
            },
        }
    }
}

impl ProvideCredentials for CachedCredentials {
    fn credentials(&self) -> Result<Credentials, CredentialsError> {
        self.credentials_at(SystemTime::now())
    }
    fn invalidate(&self) {
        if let Ok(mut c) = self.cached.lock() {
            *c = None;
        }
    }
}

/// The JSON of container and IMDS credentials. Every field is a string so that a wrong type
/// never makes serde echo a value into an error.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonCredentials {
    code: Option<String>,
    message: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    token: Option<String>,
    expiration: Option<String>,
}

/// Reads the credentials JSON of the container endpoint (Pod Identity) or of IMDS's
/// `iam/security-credentials/<role>` as coming from `source`.
pub fn from_json(source: CredentialSource, body: &[u8]) -> Result<Credentials, CredentialsError> {
    let j: JsonCredentials = serde_json::from_slice(body).map_err(|e| {
        cred_err(
            source,
            format!(
                "answer is not the expected JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    if let Some(code) = j.code.as_deref().filter(|c| *c != "Success") {
        return Err(cred_err(
            source,
            format!(
                "endpoint answered Code {code:?}: {}",
                j.message.unwrap_or_default()
            ),
        ));
    }
    let (Some(id), Some(secret)) = (j.access_key_id, j.secret_access_key) else {
        return Err(cred_err(
            source,
            "answer lacks AccessKeyId or SecretAccessKey",
        ));
    };
    let expiration = match j.expiration {
        Some(e) => Some(parse_rfc3339(&e).ok_or_else(|| {
            cred_err(source, format!("Expiration {e:?} is not an RFC 3339 time"))
        })?),
        None => None,
    };
    Ok(Credentials {
        access_key_id: id,
        secret_access_key: Secret::new(secret),
        session_token: j.token.map(Secret::new),
        expiration,
        source,
    })
}

fn container_credentials(
    agent: &ureq::Agent,
    uri: &str,
    auth: &ContainerAuth,
) -> Result<Credentials, CredentialsError> {
    let src = CredentialSource::Container;
    let token = match auth {
        ContainerAuth::None => None,
        ContainerAuth::Token(t) => Some(t.expose().to_string()),
        ContainerAuth::TokenFile(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| {
                    cred_err(
                        src,
                        format!("authorization token file {}: {e}", path.display()),
                    )
                })?
                .trim()
                .to_string(),
        ),
    };
    let mut headers: Vec<(&str, &str)> = vec![("accept", "application/json")];
    if let Some(t) = token.as_deref() {
        headers.push(("authorization", t));
    }
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(100),
        ..RetryPolicy::EC2
    };
    let answer = policy
        .run(&SystemRetryEnv, |_| {
            match http::send(agent, "GET", uri, &headers, None, None) {
                Ok(a) if a.status >= 500 || a.status == 429 => {
                    Err(Attempt::Retry(format!("HTTP {}", a.status)))
                }
                Ok(a) => Ok(a),
                Err(e) => Err(Attempt::Retry(e.to_string())),
            }
        })
        .map_err(|e| {
            cred_err(
                src,
                format!("GET {uri}: {} (after {} attempts)", e.error, e.attempts),
            )
        })?;
    if answer.status != 200 {
        // The error JSON carries Code/Message, never a secret; the body itself is not echoed.
        let why = serde_json::from_slice::<JsonCredentials>(&answer.body)
            .ok()
            .map(|j| {
                format!(
                    "{} {}",
                    j.code.unwrap_or_default(),
                    j.message.unwrap_or_default()
                )
            })
            .unwrap_or_default();
        return Err(cred_err(
            src,
            format!("GET {uri}: HTTP {} {}", answer.status, why.trim()),
        ));
    }
    from_json(src, &answer.body)
}

fn instance_profile_credentials(imds: &Imds) -> Result<Credentials, CredentialsError> {
    let src = CredentialSource::InstanceProfile;
    let call = imds.within(Duration::from_secs(10));
    let role = call
        .instance_profile_role()
        .map_err(|e| cred_err(src, e.to_string()))?
        .ok_or_else(|| {
            cred_err(
                src,
                "the instance has no instance profile (iam/security-credentials/ is absent)",
            )
        })?;
    let key = format!("iam/security-credentials/{role}");
    let body = call
        .get(&key)
        .map_err(|e| cred_err(src, e.to_string()))?
        .ok_or_else(|| cred_err(src, format!("IMDS key {key} is absent")))?;
    from_json(src, body.as_bytes())
}

fn assume_role_with_web_identity(
    agent: &ureq::Agent,
    sts: &Endpoint,
    role_arn: &str,
    token_file: &std::path::Path,
    session_name: &str,
) -> Result<Credentials, CredentialsError> {
    let src = CredentialSource::WebIdentity;
    let token = std::fs::read_to_string(token_file).map_err(|e| {
        cred_err(
            src,
            format!("web identity token file {}: {e}", token_file.display()),
        )
    })?;
    let token = Secret::new(token.trim());
    let body = format!(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
        uri_encode(role_arn, false),
        uri_encode(session_name, false),
        uri_encode(token.expose(), false)
    );
    let url = format!("{}/", sts.base);
    let headers = [
        (
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("accept", "text/xml"),
    ];
    let policy = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::EC2
    };
    let answer = policy
        .run(&SystemRetryEnv, |_| {
            match http::send(agent, "POST", &url, &headers, Some(body.as_bytes()), None) {
                Ok(a) => {
                    let code = parse_error(&a.text()).map(|e| e.code);
                    if a.status != 200
                        && matches!(
                            classify(a.status, code.as_deref()),
                            ErrorClass::Throttling | ErrorClass::Transient
                        )
                        || code.as_deref() == Some("IDPCommunicationError")
                    {
                        Err(Attempt::Retry(format!(
                            "HTTP {} {}",
                            a.status,
                            code.unwrap_or_default()
                        )))
                    } else {
                        Ok(a)
                    }
                }
                Err(e) => Err(Attempt::Retry(e.to_string())),
            }
        })
        .map_err(|e| {
            cred_err(
                src,
                format!(
                    "STS {}: {} (after {} attempts)",
                    sts.base, e.error, e.attempts
                ),
            )
        })?;
    let text = answer.text();
    if answer.status != 200 {
        let detail = match parse_error(&text) {
            Some(e) => format!("{}: {}", e.code, e.message),
            None => format!("HTTP {}", answer.status),
        };
        return Err(cred_err(
            src,
            format!(
                "AssumeRoleWithWebIdentity for {role_arn} at {}: {detail}",
                sts.base
            ),
        ));
    }
    parse_sts_answer(&text)
}

/// Reads the credentials of a successful `AssumeRoleWithWebIdentity` answer (STS XML).
pub fn parse_sts_answer(text: &str) -> Result<Credentials, CredentialsError> {
    let src = CredentialSource::WebIdentity;
    let (mut id, mut secret, mut session, mut exp) =
        (String::new(), String::new(), String::new(), String::new());
    walk(text, |step| {
        if let Step::End([.., "Credentials", field], t) = step {
            match *field {
                "AccessKeyId" => id = t.trim().to_string(),
                "SecretAccessKey" => secret = t.trim().to_string(),
                "SessionToken" => session = t.trim().to_string(),
                "Expiration" => exp = t.trim().to_string(),
                _ => {}
            }
        }
    })
    .map_err(|e| cred_err(src, format!("STS answer: {e}")))?;
    if id.is_empty() || secret.is_empty() {
        return Err(cred_err(
            src,
            "STS answer lacks Credentials/AccessKeyId or SecretAccessKey",
        ));
    }
    let expiration = parse_rfc3339(&exp).ok_or_else(|| {
        cred_err(
            src,
            format!("STS Expiration {exp:?} is not an RFC 3339 time"),
        )
    })?;
    Ok(Credentials {
        access_key_id: id,
        secret_access_key: Secret::new(secret),
        session_token: (!session.is_empty()).then(|| Secret::new(session)),
        expiration: Some(expiration),
        source: src,
    })
}

/// Parses `2026-11-23T17:08:39Z`, with optional fractional seconds and a `Z` or `±hh:mm` offset.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<9}", &frac[..digits.min(9)]);
        nanos = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            // RFC 3339 `time-numoffset`: exactly HH:MM, so the arithmetic below cannot overflow.
            let (oh, om) = rest[1..].split_once(':')?;
            let two_digits = |p: &str| {
                (p.len() == 2 && p.bytes().all(|c| c.is_ascii_digit()))
                    .then(|| p.parse::<i64>().ok())?
            };
            let (oh, om) = (two_digits(oh)?, two_digits(om)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    timefmt::rfc3339(i64::try_from(secs).unwrap_or(i64::MAX), 0, Fraction::None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn agent() -> ureq::Agent {
        http::local_agent(Duration::from_secs(1))
    }

    #[test]
    fn rfc3339_times_parse_with_fractions_and_offsets() {
        let t = parse_rfc3339("2015-08-30T12:36:00Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_440_938_160
        );
        let t = parse_rfc3339("2015-08-30T14:36:00.250+02:00").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_millis(),
            1_440_938_160_250
        );
        assert_eq!(
            format_rfc3339(UNIX_EPOCH + Duration::from_secs(1_440_938_160)),
            "2015-08-30T12:36:00Z"
        );
        for bad in [
            "",
            "2015-08-30",
            "2015-13-01T00:00:00Z",
            "2015-08-30T12:36:00",
            "yesterday",
            "2015-08-30T12:36:00.Z",
            // Offsets beyond HH:MM: once an overflow in the offset arithmetic.
            "2015-08-30T12:36:00+9999999999999999:00",
            "2015-08-30T12:36:00-00:9999999999999999",
            "2015-08-30T12:36:00+24:00",
            "2015-08-30T12:36:00++1:00",
            "2015-08-30T12:36:00+1:00",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let c = Credentials::new_static(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG",
            Some("SESSIONTOKEN123"),
        );
        let dbg = format!("{c:?}");
        assert!(dbg.contains("AKIDEXAMPLE"));
        assert!(
            !dbg.contains("wJalrXUtnFEMI") && !dbg.contains("SESSIONTOKEN123"),
            "{dbg}"
        );
        assert_eq!(format!("{}", c.secret_access_key), "<redacted>");
    }

    #[test]
    fn chain_order_is_env_then_web_identity_then_container_then_imds() {
        let imds = Some(Arc::new(Imds::new("http://127.0.0.1:9").unwrap()));
        let all = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "S"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://127.0.0.1:1/creds",
            ),
        ]);
        let c = DefaultChain::from_env(&all, None, imds.clone(), agent()).unwrap();
        assert!(matches!(c.source(), ChainSource::Environment(_)));
        let wi = env_of(&[
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://127.0.0.1:1/creds",
            ),
        ]);
        let c = DefaultChain::from_env(&wi, Some("eu-west-1"), imds.clone(), agent()).unwrap();
        match c.source() {
            ChainSource::WebIdentity { sts, .. } => {
                assert_eq!(sts.base, "https://sts.eu-west-1.amazonaws.com")
            }
            s => panic!("{s:?}"),
        }
        let ct = env_of(&[(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://169.254.170.23/v1/credentials",
        )]);
        let c = DefaultChain::from_env(&ct, None, imds.clone(), agent()).unwrap();
        assert!(matches!(c.source(), ChainSource::Container { .. }));
        let none = env_of(&[]);
        let c = DefaultChain::from_env(&none, None, imds, agent()).unwrap();
        assert!(matches!(c.source(), ChainSource::InstanceProfile));
        let e = DefaultChain::from_env(&none, None, None, agent()).unwrap_err();
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
    }

    #[test]
    fn sts_endpoint_override_and_china_partition() {
        let ov = env_of(&[("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:4566")]);
        assert_eq!(
            sts_endpoint(&ov, Some("us-east-1")).unwrap().host,
            "127.0.0.1:4566"
        );
        let none = env_of(&[]);
        assert_eq!(
            sts_endpoint(&none, Some("cn-north-1")).unwrap().base,
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            sts_endpoint(&none, None).unwrap().base,
            "https://sts.amazonaws.com"
        );
    }

    #[test]
    fn container_uris_over_plain_http_must_be_local() {
        assert!(container_uri_allowed("http://127.0.0.1:8080/creds").is_ok());
        assert!(container_uri_allowed("http://169.254.170.23/v1/credentials").is_ok());
        assert!(container_uri_allowed("http://[fd00:ec2::23]/v1/credentials").is_ok());
        assert!(container_uri_allowed("http://localhost/creds").is_ok());
        assert!(container_uri_allowed("https://creds.example.com/x").is_ok());
        let e = container_uri_allowed("http://10.1.2.3/creds").unwrap_err();
        assert!(e.contains("only accepted to loopback"), "{e}");
    }

    #[test]
    fn cache_refreshes_before_expiry_and_falls_back_to_unexpired() {
        let calls = Arc::new(AtomicU32::new(0));
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let c2 = calls.clone();
        let cache = CachedCredentials::from_fn(move || {
            let n = c2.fetch_add(1, Ordering::SeqCst);
            if n == 2 {
                return Err(cred_err(CredentialSource::Container, "endpoint down"));
            }
            let mut c = Credentials::new_static(&format!("AKID{n}"), "s", Some("t"));
            c.expiration = Some(t0 + Duration::from_secs(3600 * (n as u64 + 1)));
            Ok(c)
        });
        assert_eq!(cache.credentials_at(t0).unwrap().access_key_id, "AKID0");
        // 54 min later: 6 min left, still cached.
        assert_eq!(
            cache
                .credentials_at(t0 + Duration::from_secs(54 * 60))
                .unwrap()
                .access_key_id,
            "AKID0"
        );
        // 56 min later: under 5 min left, refreshed.
        assert_eq!(
            cache
                .credentials_at(t0 + Duration::from_secs(56 * 60))
                .unwrap()
                .access_key_id,
            "AKID1"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // AKID1 expires at t0+2h; at t0+1h58m the refresh fails but AKID1 is still valid.
        let at = t0 + Duration::from_secs(118 * 60);
        assert_eq!(cache.credentials_at(at).unwrap().access_key_id, "AKID1");
        // After expiry a failure is an error... unless the next fetch works (n == 3).
        assert_eq!(
            cache
                .credentials_at(t0 + Duration::from_secs(3 * 3600))
                .unwrap()
                .access_key_id,
            "AKID3"
        );
        cache.invalidate();
        assert_eq!(cache.credentials_at(t0).unwrap().access_key_id, "AKID4");
    }

    #[test]
    fn json_credentials_errors_do_not_echo_values() {
        let e = from_json(
            CredentialSource::Container,
            br#"{"AccessKeyId": 5, "SecretAccessKey": "TOPSECRET"}"#,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("TOPSECRET"), "{e}");
        let e = from_json(
            CredentialSource::InstanceProfile,
            br#"{"Code":"Failed","Message":"no role"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("Failed"), "{e}");
        let ok = from_json(
            CredentialSource::InstanceProfile,
            br#"{"Code":"Success","AccessKeyId":"ASIA1","SecretAccessKey":"x","Token":"y","Expiration":"2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(ok.access_key_id, "ASIA1");
        assert!(ok.expiration.is_some());
    }
}
