//! The ipamd daemon (`argv[0]` `aws-k8s-agent` or `ipamd`).
//!
//! - [`executor`]: planner actions → EC2 calls → outcomes;
//! - [`reconcile`]: the datastore brought in line with IMDS and EC2 (EC2 wins);
//! - [`manager`]: the plugin's requests over the datastore, with the checkpoint written first.

pub mod daemon;
pub mod executor;
pub mod kernel_node;
pub mod manager;
pub mod notify;
pub mod reconcile;
pub mod serve;
pub mod signals;
pub mod sweep;
pub mod veth_reaper;

pub mod node_apply;
pub mod node_plan;

pub mod http;
pub mod introspection;
pub mod metrics;

use std::process::ExitCode;

use crate::config::Config;

/// Entry point of the daemon role: configuration errors stop it before it touches the node,
/// naming every bad variable.
pub fn daemon_main() -> ExitCode {
    // Before any thread exists, so every thread inherits the mask and only the signal thread
    // ever sees SIGTERM/SIGINT.
    if let Err(e) = signals::block_termination() {
        eprintln!("ipamd: cannot block termination signals: {e}");
        return ExitCode::from(1);
    }
    let (cfg, warnings) = match Config::from_process_env() {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("ipamd: invalid configuration, nothing was changed on the node:");
            for e in &errors {
                eprintln!("  {e}");
            }
            return ExitCode::from(1);
        }
    };
    if let Err(e) = crate::logging::init_daemon(&cfg) {
        eprintln!("ipamd: logging: {e}");
        return ExitCode::from(1);
    }
    for w in &warnings {
        log::warn!("{w}");
    }
    log::info!("ipamd {} ({}) starting", crate::VERSION, crate::GIT_REV);
    crate::nft::handover::hand_over_from_upstream();
    let net = match kernel_node::KernelNode::open(node_plan::NodeSettings::from_config(&cfg)) {
        Ok(n) => n,
        Err(e) => {
            log::error!("netlink: {e}");
            return ExitCode::from(1);
        }
    };
    let code = daemon::main_with(cfg, Box::new(net));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
