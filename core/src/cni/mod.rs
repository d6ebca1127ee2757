//! The CNI plugin, the pure half: [`spec`] (the CNI contract: environment, configuration, results,
//! errors, versions) and [`plan`] (configuration + allocation → ordered kernel steps). The commands
//! and the kernel side are in the main crate (`vpc_cni::cni`), which re-exports both.

pub mod plan;
mod sha1;
pub mod spec;
