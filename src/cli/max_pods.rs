//! `vpc-cni max-pods` (being written).

use std::process::ExitCode;

/// Runs `vpc-cni max-pods`.
pub fn main(_args: &[String]) -> ExitCode {
    crate::entry::not_implemented("max-pods")
}
