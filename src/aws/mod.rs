//! AWS adapters: instance metadata (IMDSv2), credentials, SigV4 signing and the EC2 Query API.
//!
//! Everything is blocking (ureq + rustls on ring); no async runtime.

pub mod sigv4;
