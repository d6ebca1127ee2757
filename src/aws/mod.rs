//! AWS adapters: instance metadata (IMDSv2), credentials, SigV4 signing and the EC2 Query API.
//!
//! Everything is blocking (ureq + rustls on ring); no async runtime.

pub mod credentials;
pub mod ec2;
pub mod error;
pub mod http;
pub mod imds;
pub mod retry;
pub mod sigv4;
pub mod stats;
pub mod types;
pub mod xml;
