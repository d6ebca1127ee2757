//! The ipamd daemon (`argv[0]` `aws-k8s-agent` or `ipamd`).

pub mod http;
pub mod introspection;
pub mod metrics;

use std::process::ExitCode;

/// Entry point of the daemon role.
pub fn daemon_main() -> ExitCode {
    crate::entry::not_implemented("the ipamd daemon")
}
