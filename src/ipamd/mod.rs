//! The ipamd daemon (`argv[0]` `aws-k8s-agent` or `ipamd`).

pub mod node_apply;
pub mod node_plan;

use std::process::ExitCode;

/// Entry point of the daemon role.
pub fn daemon_main() -> ExitCode {
    crate::entry::not_implemented("the ipamd daemon")
}
