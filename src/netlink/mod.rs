//! rtnetlink over a synchronous socket: links, addresses, routes, policy rules, neighbours, and
//! network namespaces. No `ip` binary is run; the messages are encoded by [`wire`].
//!
//! Every operation names the `ip` command it equals. Errors name the operation and the object,
//! e.g. `add route 10.0.0.5/32 dev eni1234 table 2: File exists (EEXIST)`.
//!
//! ```no_run
//! use vpc_cni::netlink::{Netlink, Netns, Route};
//! # fn main() -> Result<(), vpc_cni::netlink::Error> {
//! let pod = Netns::open("/var/run/netns/pod1")?;
//! let mut host = Netlink::open()?;
//! let mut inpod = Netlink::open_in(&pod)?; // bound to the pod namespace from now on
//! let lo = inpod.link_by_name("lo")?.expect("lo exists");
//! inpod.set_link_up(lo.index)?;
//! # let _ = &mut host; Ok(()) }
//! ```

mod addr;
mod error;
#[cfg(test)]
mod golden;
mod link;
mod neigh;
mod netns;
mod route;
mod rule;
pub mod socket;
mod types;
pub use vpc_cni_core::netlink::wire;

pub use addr::{parse_addr, Address};
pub use error::{libc_errno, Cause, ErrnoText, Error, Result};
pub use link::{parse_link, Link, VethSpec};
pub use neigh::{parse_neigh, Neighbour};
pub use netns::{Netns, NetnsGuard, NetnsId, NETNS_RUN_DIR};
pub use route::{parse_route, Route, RouteScope, RouteType, RT_TABLE_LOCAL, RT_TABLE_MAIN};
pub use rule::{parse_rule, Rule};
pub use socket::{NlSocket, Protocol};
pub use types::Family;

use wire::{Msg, MsgBuf};

/// A route netlink (`NETLINK_ROUTE`) handle, bound to the network namespace it was opened in.
#[derive(Debug)]
pub struct Netlink {
    sock: NlSocket,
}

impl Netlink {
    /// Opens a handle in the calling thread's current network namespace.
    pub fn open() -> Result<Netlink> {
        let sock = NlSocket::open(Protocol::Route)
            .map_err(|e| Error::new("open route netlink socket", Cause::Io(e)))?;
        Ok(Netlink { sock })
    }

    /// Opens a handle inside `ns` (entering it on this thread only for the moment the socket is
    /// created). The handle keeps working on `ns` from any thread.
    pub fn open_in(ns: &Netns) -> Result<Netlink> {
        ns.run(Netlink::open)?
    }

    fn ack(&mut self, mut req: MsgBuf, op: impl FnOnce(&mut Self) -> String) -> Result<()> {
        req.end();
        let mut bytes = req.finish();
        match self.sock.request_ack(&mut bytes) {
            Ok(()) => Ok(()),
            Err(cause) => Err(Error::new(op(self), cause)),
        }
    }

    fn dump<T>(
        &mut self,
        req: MsgBuf,
        op: impl FnOnce() -> String,
        parse: impl FnMut(&Msg<'_>) -> std::result::Result<Option<T>, wire::Malformed>,
    ) -> Result<Vec<T>> {
        let mut bytes = req.finish();
        self.sock
            .dump(&mut bytes, parse)
            .map_err(|cause| Error::new(op(), cause))
    }

    /// The name of link `index` for error messages (`if<index>` if it cannot be found).
    fn dev_name(&mut self, index: u32) -> String {
        match self.link_by_index(index) {
            Ok(Some(l)) => l.name,
            _ => format!("if{index}"),
        }
    }
}

/// Turns a delete result into `Ok(false)` when the object was not there.
fn deleted(r: Result<()>) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}
