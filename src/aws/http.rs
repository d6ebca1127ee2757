//! Blocking HTTP for the AWS adapters: ureq over rustls with the ring provider set explicitly.
//!
//! Two kinds of agents: [`tls_agent`] for EC2 and STS (node CA bundle, proxies from the
//! environment as Go does) and [`local_agent`] for IMDS and container credentials, which is
//! never proxied (a proxy cannot reach the link-local metadata address of *this* node).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
use ureq::Agent;

/// Default per-request timeout (`HTTP_TIMEOUT`, upstream default and minimum 10 s).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer body read (a DescribeNetworkInterfaces page of 1000 ENIs is a few MB).
const MAX_BODY: u64 = 64 << 20;

/// CA bundle paths tried after `SSL_CERT_FILE`, in order (Debian/Ubuntu/Alpine, RHEL/AL2 and
/// Bottlerocket, SUSE, old RHEL).
pub const CA_BUNDLE_PATHS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The user agent sent on every request.
pub fn user_agent() -> String {
    format!("vpc-cni/{} (amazon-vpc-cni-k8s compatible)", crate::VERSION)
}

/// Building an HTTP agent failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpSetupError {
    /// No CA bundle at `SSL_CERT_FILE` nor at any usual path.
    NoCaBundle {
        /// Paths tried.
        tried: Vec<String>,
    },
    /// The CA bundle could not be read or holds no certificate.
    BadCaBundle {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// `HTTP_TIMEOUT` is not a number of seconds.
    BadTimeout {
        /// The value.
        value: String,
    },
}

impl fmt::Display for HttpSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpSetupError::NoCaBundle { tried } => write!(
                f,
                "no CA bundle found for TLS: set SSL_CERT_FILE or mount one of {}",
                tried.join(", ")
            ),
            HttpSetupError::BadCaBundle { path, detail } => write!(f, "CA bundle {path}: {detail}"),
            HttpSetupError::BadTimeout { value } => write!(
                f,
                "HTTP_TIMEOUT={value:?} is not valid: expected whole seconds or a duration like 15s, 500ms, 2m or 1h (under 10 s counts as 10 s)"
            ),
        }
    }
}

impl std::error::Error for HttpSetupError {}

/// Parses `HTTP_TIMEOUT` (seconds, or a duration with a unit as every duration variable takes:
/// [`crate::config::parse_duration`]); values under 10 s are raised to 10 s as upstream does.
pub fn http_timeout(value: Option<&str>) -> Result<Duration, HttpSetupError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_HTTP_TIMEOUT);
    };
    let d = crate::config::parse_duration(v).ok_or_else(|| HttpSetupError::BadTimeout {
        value: v.to_string(),
    })?;
    Ok(d.max(DEFAULT_HTTP_TIMEOUT))
}

/// Reads the CA bundle: `SSL_CERT_FILE` if set, else the first of [`CA_BUNDLE_PATHS`] present.
pub fn load_ca_bundle(
    ssl_cert_file: Option<&str>,
) -> Result<(PathBuf, Vec<Certificate<'static>>), HttpSetupError> {
    let candidates: Vec<String> = match ssl_cert_file.filter(|p| !p.is_empty()) {
        Some(p) => vec![p.to_string()],
        None => CA_BUNDLE_PATHS.iter().map(|p| p.to_string()).collect(),
    };
    for path in &candidates {
        let p = Path::new(path);
        let pem = match std::fs::read(p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && ssl_cert_file.is_none() => {
                continue
            }
            Err(e) => {
                return Err(HttpSetupError::BadCaBundle {
                    path: path.clone(),
                    detail: e.to_string(),
                })
            }
        };
        let certs = parse_certificates(&pem).map_err(|detail| HttpSetupError::BadCaBundle {
            path: path.clone(),
            detail,
        })?;
        return Ok((p.to_path_buf(), certs));
    }
    Err(HttpSetupError::NoCaBundle { tried: candidates })
}

/// The certificates in a PEM bundle (other PEM items are skipped).
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("not valid PEM: {e}")),
        }
    }
    if certs.is_empty() {
        return Err("holds no certificate".into());
    }
    Ok(certs)
}

fn tls_config(roots: Vec<Certificate<'static>>) -> TlsConfig {
    TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        // With `rustls-no-provider` a missing provider is a panic at the first TLS handshake.
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(RootCerts::new_with_certs(&roots))
        .build()
}

/// An agent for EC2/STS: TLS with `roots`, proxies from the environment, answers of every
/// status returned (EC2 puts the error in the body), `timeout` per request.
pub fn tls_agent(roots: Vec<Certificate<'static>>, timeout: Duration) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls_config(roots))
        .timeout_global(Some(timeout))
        .user_agent(user_agent())
        .max_redirects(0)
        .build()
        .new_agent()
}

/// An agent for IMDS and local credential endpoints: plain HTTP, never proxied.
pub fn local_agent(timeout: Duration) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(timeout))
        .user_agent(user_agent())
        .max_redirects(0)
        .build()
        .new_agent()
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request. `timeout` overrides the agent's for this request when given.
pub fn send(
    agent: &Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Option<Duration>,
) -> Result<Answer, ureq::Error> {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = match body {
        Some(b) => run(
            agent,
            builder.body(b.to_vec()).map_err(ureq::Error::from)?,
            timeout,
        )?,
        None => run(agent, builder.body(()).map_err(ureq::Error::from)?, timeout)?,
    };
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let body = body.with_config().limit(MAX_BODY).read_to_vec()?;
    Ok(Answer { status, body })
}

fn run<S: ureq::AsSendBody>(
    agent: &Agent,
    request: ureq::http::Request<S>,
    timeout: Option<Duration>,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    match timeout {
        Some(t) => agent.run(
            agent
                .configure_request(request)
                .timeout_global(Some(t))
                .build(),
        ),
        None => agent.run(request),
    }
}

/// The parts of an endpoint URL the signer and the client need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://authority` without a trailing slash, e.g. `https://ec2.us-east-1.amazonaws.com`.
    pub base: String,
    /// The `Host` header value: host, plus `:port` when not the scheme's default.
    pub host: String,
}

impl Endpoint {
    /// Parses `http(s)://host[:port][/]`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!(
                "endpoint {url:?} is not a URL: expected http://host[:port] or https://host[:port]"
            )
        })?;
        let default_port = match scheme {
            "http" => ":80",
            "https" => ":443",
            _ => return Err(format!("endpoint {url:?}: scheme must be http or https")),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || rest.trim_end_matches('/') != authority {
            return Err(format!(
                "endpoint {url:?}: expected only scheme and host[:port], without a path"
            ));
        }
        let host = authority.strip_suffix(default_port).unwrap_or(authority);
        Ok(Endpoint {
            base: format!("{scheme}://{host}"),
            host: host.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_drop_default_ports_and_reject_paths() {
        let e = Endpoint::parse("https://ec2.us-east-1.amazonaws.com:443/").unwrap();
        assert_eq!(e.host, "ec2.us-east-1.amazonaws.com");
        assert_eq!(e.base, "https://ec2.us-east-1.amazonaws.com");
        let e = Endpoint::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!(e.host, "127.0.0.1:5000");
        assert!(Endpoint::parse("ec2.amazonaws.com")
            .unwrap_err()
            .contains("not a URL"));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://x/path").is_err());
    }

    #[test]
    fn http_timeout_has_a_floor_of_ten_seconds() {
        assert_eq!(http_timeout(None).unwrap(), Duration::from_secs(10));
        assert_eq!(http_timeout(Some("30")).unwrap(), Duration::from_secs(30));
        assert_eq!(http_timeout(Some("45s")).unwrap(), Duration::from_secs(45));
        assert_eq!(http_timeout(Some("2")).unwrap(), Duration::from_secs(10));
        let e = http_timeout(Some("ten")).unwrap_err();
        assert!(e.to_string().contains("HTTP_TIMEOUT=\"ten\""), "{e}");
    }

    #[test]
    fn ca_bundle_errors_name_the_file() {
        let e = load_ca_bundle(Some("/nonexistent/ca.pem")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let dir = std::env::temp_dir().join(format!("vcni-aws-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.pem");
        std::fs::write(&f, "no certificates here\n").unwrap();
        let e = load_ca_bundle(f.to_str()).unwrap_err();
        assert!(e.to_string().contains("holds no certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
