//! vpc-cni-core: the pure core of vpc-cni — no I/O, no clock, no environment.
//!
//! `#![no_std]` (with `alloc`) makes that a property the compiler checks: a file, socket, thread,
//! clock or environment read needs `std`, which this crate cannot name. Time is an argument
//! ([`ipam::Instant`]), the outside world is the driver's business (the `vpc-cni` crate, which
//! re-exports every module here under its old path, e.g. `vpc_cni::ipam::Datastore`).
//!
//! - [`net`]: CIDR, MAC and veth-prefix value types;
//! - [`timefmt`]: RFC 3339 timestamps from a caller-supplied Unix time;
//! - [`limits`]: the compiled-in instance-type table and the max-pods computation;
//! - [`config`]: the configuration's pure value types and Go-compatible scalar parsers;
//! - [`ipam`]: datastore, warm-pool planner, checkpoint codec, introspection views;
//! - [`cni`]: the CNI contract ([`cni::spec`]) and the pod wiring plan ([`cni::plan`]);
//! - [`nft`]: the nftables ruleset, its batch encoding and the parsers of the kernel's replies;
//! - [`netlink`]: the netlink wire format those use.

#![no_std]
#![deny(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

extern crate alloc;
// The unit tests (their harness and proptest) run on std; they get its macros, the library code
// still only `core` and `alloc`.
#[cfg(test)]
#[macro_use]
extern crate std;

pub mod cni;
pub mod config;
pub mod ipam;
pub mod limits;
pub mod net;
pub mod netlink;
pub mod nft;
pub mod timefmt;
