//! The CNI plugin (argv[0] `aws-cni`).

use std::process::ExitCode;

/// Entry point of the CNI plugin role.
pub fn plugin_main() -> ExitCode {
    crate::entry::not_implemented("the aws-cni plugin")
}
