//! AWS adapters: instance metadata (IMDSv2), credentials, SigV4 signing and the EC2 Query API.
//!
//! Everything is blocking (ureq + rustls with the ring provider set explicitly); no async runtime.
//! How ipamd uses it:
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use vpc_cni::aws::{credentials::{CachedCredentials, DefaultChain}, ec2::{self, Ec2, Ec2Client}, http, imds::Imds};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let env = |k: &str| std::env::var(k).ok();
//! // IMDS: AWS_EC2_METADATA_SERVICE_ENDPOINT or 169.254.169.254, never proxied.
//! let imds = Arc::new(Imds::from_env(&env)?);
//! let md = imds.within(Duration::from_secs(60)); // daemon start: long deadline
//! let region = md.region()?;
//! let instance_id = md.instance_id()?;
//! let enis = md.interfaces()?; // every attached ENI with its addresses, prefixes, CIDRs
//!
//! // Credentials: env, web identity (IRSA), container (Pod Identity), instance profile.
//! let (_, roots) = http::load_ca_bundle(env("SSL_CERT_FILE").as_deref())?;
//! let sts_agent = http::tls_agent(roots, http::DEFAULT_HTTP_TIMEOUT);
//! let chain = DefaultChain::from_env(&env, Some(&region), Some(imds.clone()), sts_agent)?;
//! let credentials = Arc::new(CachedCredentials::new(chain)); // refreshed 5 min before expiry
//!
//! // EC2: AWS_ENDPOINT_URL_EC2 / AWS_EC2_ENDPOINT or the regional endpoint; HTTP_TIMEOUT.
//! let ec2: Arc<dyn Ec2> = Arc::new(Ec2Client::from_env(&region, credentials, &env)?);
//! let mine = ec2.describe_network_interfaces(&ec2::DescribeNetworkInterfaces {
//!     ids: vec![],
//!     filters: vec![ec2::Filter::new("attachment.instance-id", [instance_id])],
//! })?;
//! # let _ = (enis, mine);
//! # Ok(())
//! # }
//! ```
//!
//! Errors from EC2 are classified once ([`error::classify`]): throttling and 5xx/transport
//! failures are retried inside [`retry::RetryPolicy::EC2`]; capacity errors come back as
//! [`error::Ec2ErrorKind::Capacity`] for the planner to back off; permission errors name the IAM
//! action (`ec2:<Action>`); rejected credentials say so. [`stats::ApiStats`] counts requests,
//! errors by code and latency per API for the metrics endpoint.

pub mod credentials;
pub mod ec2;
pub mod error;
pub mod http;
pub mod imds;
pub mod retry;
pub mod sigv4;
pub mod stats;
pub mod xml;
