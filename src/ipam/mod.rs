//! IP address management: the warm pool of ENIs, addresses and prefixes, and pod assignments.
//!
//! The pure part (datastore, pool, checkpoint codec, introspection views, [`Instant`]) lives in the
//! core crate (`vpc_cni_core::ipam`) and is re-exported here unchanged; see its documentation for how
//! a driver uses it. [`store`] is the std-only helper added here: it reads and atomically writes the
//! checkpoint file.

pub use vpc_cni_core::ipam::*;

pub mod store;
