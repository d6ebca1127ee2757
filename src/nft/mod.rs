//! nftables over netlink, pure Rust: `table ip aws-cni` (the SNAT chain and the connmark chains),
//! replaced atomically in one batch.
//!
//! The ruleset, its batch encoding and the parsers of the kernel's replies are pure and live in
//! the core crate (`vpc_cni_core::nft`, re-exported here; its documentation shows the table).
//! This module adds the socket: [`Nft::apply`] reads the table back from the kernel first and
//! sends nothing when it already holds exactly the wanted rules.

pub use vpc_cni_core::nft::*;

pub mod handover;

use crate::netlink::socket::{NlSocket, Protocol};
use crate::netlink::{libc_errno, Cause, Error, Netns};

/// What [`Nft::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel already had exactly this table; nothing was sent.
    Unchanged,
    /// The table was created or replaced in one transaction.
    Replaced,
    /// The table was removed (external SNAT and no NodePort support).
    Removed,
}

/// An nftables (`NETLINK_NETFILTER`) handle, bound to the namespace it was opened in.
#[derive(Debug)]
pub struct Nft {
    sock: NlSocket,
}

impl Nft {
    /// Opens a handle in the calling thread's network namespace.
    pub fn open() -> Result<Nft, Error> {
        let sock = NlSocket::open(Protocol::Netfilter)
            .map_err(|e| Error::new("open netfilter netlink socket", Cause::Io(e)))?;
        Ok(Nft { sock })
    }

    /// Opens a handle inside `ns`.
    pub fn open_in(ns: &Netns) -> Result<Nft, Error> {
        ns.run(Nft::open)?
    }

    /// Makes `table ip aws-cni` match `cfg`: nothing is sent if it already does; otherwise one
    /// atomic transaction replaces (or removes) it.
    pub fn apply(&mut self, cfg: &SnatConfig) -> Result<Outcome, Error> {
        let rs = ruleset(cfg).map_err(|e| {
            Error::new(
                format!("apply nftables table ip {TABLE}"),
                Cause::Invalid(e),
            )
        })?;
        self.apply_ruleset(rs.as_ref())
    }

    /// Makes `table ip aws-cni` equal `rs` (or absent for `None`), sending nothing if it already
    /// is. If the kernel refuses any message, the whole transaction is rolled back and the table
    /// stays as it was.
    pub fn apply_ruleset(&mut self, rs: Option<&Ruleset>) -> Result<Outcome, Error> {
        let op = format!("apply nftables table ip {TABLE}");
        let current = self.read()?;
        let wanted = rs.map(snapshot_of);
        if current == wanted {
            return Ok(Outcome::Unchanged);
        }
        let (mut batch, what) = encode_batch(rs);
        self.sock.batch(&mut batch).map_err(|(i, cause)| {
            let step = what.get(i).map(String::as_str).unwrap_or("batch");
            Error::new(format!("{op}: {step}"), cause)
        })?;
        Ok(if rs.is_some() {
            Outcome::Replaced
        } else {
            Outcome::Removed
        })
    }

    /// Removes `table ip aws-cni` if present (`nft delete table ip aws-cni`).
    pub fn remove(&mut self) -> Result<Outcome, Error> {
        if self.read()?.is_none() {
            return Ok(Outcome::Unchanged);
        }
        let (mut batch, _) = encode_batch(None);
        self.sock
            .batch(&mut batch)
            .map_err(|(_, cause)| Error::new(format!("delete nftables table ip {TABLE}"), cause))?;
        Ok(Outcome::Removed)
    }

    /// Reads our table from the kernel: `None` if it does not exist.
    fn read(&mut self) -> Result<Option<Snapshot>, Error> {
        let op = || format!("read nftables table ip {TABLE}");
        let flags = match self.sock.dump(&mut get_table_request(), parse_table_flags) {
            Ok(f) => f.into_iter().next().unwrap_or(0),
            Err(Cause::Errno { errno, .. }) if errno == libc_errno::ENOENT => return Ok(None),
            Err(c) => return Err(Error::new(op(), c)),
        };
        let chains = self
            .sock
            .dump(&mut get_chains_request(), parse_chain)
            .map_err(|c| Error::new(op(), c))?;
        let rules = self
            .sock
            .dump(&mut get_rules_request(), parse_rule)
            .map_err(|c| Error::new(op(), c))?;
        Ok(Some(Snapshot::from_dumps(flags, chains, &rules)))
    }
}
