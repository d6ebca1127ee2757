//! vpc-cni: pod networking for Kubernetes on AWS in one static binary.
//!
//! Layers (see README, "Architecture"):
//! - pure core, no I/O and no clock: [`net`] value types, [`timefmt`], [`config`], [`ipam`], [`cni`] spec and plan, [`nft`] ruleset;
//! - adapters, one outside system each: [`aws`], [`netlink`], [`nft`] apply, [`sysctl`], [`rpc`];
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
pub mod limits;
pub mod logging;
pub mod net;
pub mod netlink;
pub mod nft;
pub mod rpc;
pub mod sysctl;
pub mod timefmt;

/// The crate version; the plugin and ipamd must carry the same one (upstream's `validateVersion`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git revision the binary was built from, or `unknown` outside a git checkout.
pub const GIT_REV: &str = env!("VPC_CNI_GIT_REV");
