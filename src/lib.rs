//! vpc-cni: pod networking for Kubernetes on AWS in one static binary.
//!
//! Layers (see README, "Architecture"):
//! - pure core, no I/O and no clock: the `vpc-cni-core` crate (`core/`, `#![no_std]`, so the compiler
//!   checks that), re-exported here under the old paths: [`net`] value types, [`timefmt`], [`limits`],
//!   [`ipam`] (all but [`ipam::store`]), [`cni::spec`] and [`cni::plan`], the [`nft`] ruleset and
//!   [`netlink::wire`], and the pure value types of [`config`];
//! - adapters, one outside system each: [`aws`], [`netlink`], [`nft`] apply, [`sysctl`], [`rpc`],
//!   [`ipam::store`] (the checkpoint file), [`config`] (the process environment);
//! - drivers: [`ipamd`], [`cni`] apply, [`cli`]; [`fsutil`] holds their shared atomic file write;
//! - [`entry`]: `argv[0]` dispatch.

pub mod aws;
pub mod cli;
pub mod cni;
pub mod config;
pub mod entry;
pub mod fsutil;
pub mod ipam;
pub mod ipamd;
pub mod logging;
pub mod netlink;
pub mod nft;
pub mod rpc;
pub mod sysctl;
pub use vpc_cni_core::{limits, net, timefmt};

/// The crate version; the plugin and ipamd must carry the same one (upstream's `validateVersion`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git revision the binary was built from, or `unknown` outside a git checkout.
pub const GIT_REV: &str = env!("VPC_CNI_GIT_REV");
