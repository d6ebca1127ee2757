//! Running a plan against the kernel: the [`PodNet`] seam and the order/undo rules around it.
//!
//! The production implementation of [`PodNet`] is [`super::kernel::KernelNet`] (rtnetlink); unit tests use a
//! recording fake.

use std::fmt;

use super::plan::Op;
use crate::{netlink, sysctl};

/// Why a kernel step failed, kept typed so the errno survives to the caller.
#[derive(Debug)]
pub enum NetCause {
    /// A netlink request failed; [`netlink::Error::errno`] has the kernel's errno.
    Netlink(netlink::Error),
    /// A sysctl could not be read or written.
    Sysctl(sysctl::Error),
    /// The kernel's state is not what the step needs or left behind (a missing link, a route
    /// through another interface); the text says what was found.
    State(String),
}

impl NetCause {
    /// The errno behind the failure, if the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetCause::Netlink(e) => e.errno(),
            NetCause::Sysctl(e) => match &e.cause {
                sysctl::ErrorCause::Io(io) => io.raw_os_error(),
                sysctl::ErrorCause::Invalid(_) => None,
            },
            NetCause::State(_) => None,
        }
    }
}

impl fmt::Display for NetCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetCause::Netlink(e) => write!(f, "{e}"),
            NetCause::Sysctl(e) => write!(f, "{e}"),
            NetCause::State(s) => f.write_str(s),
        }
    }
}

impl From<netlink::Error> for NetCause {
    fn from(e: netlink::Error) -> Self {
        NetCause::Netlink(e)
    }
}

impl From<sysctl::Error> for NetCause {
    fn from(e: sysctl::Error) -> Self {
        NetCause::Sysctl(e)
    }
}

impl From<String> for NetCause {
    fn from(s: String) -> Self {
        NetCause::State(s)
    }
}

impl From<&str> for NetCause {
    fn from(s: &str) -> Self {
        NetCause::State(s.to_string())
    }
}

/// A failed kernel step: which step, and why.
#[derive(Debug)]
pub struct NetError {
    /// The step (its Display form: what and on which object).
    pub step: String,
    /// The cause.
    pub cause: NetCause,
}

impl NetError {
    /// An error for `op` with `cause`.
    pub fn new(op: &Op, cause: impl Into<NetCause>) -> Self {
        NetError {
            step: op.to_string(),
            cause: cause.into(),
        }
    }

    /// The errno behind the failure, if the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        self.cause.errno()
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.cause)
    }
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            NetCause::Netlink(e) => Some(e),
            NetCause::Sysctl(e) => Some(e),
            NetCause::State(_) => None,
        }
    }
}

/// The kernel operations a pod's wiring needs.
pub trait PodNet {
    /// Performs `op`. Deletions succeed when the object (or its namespace) is already gone.
    fn apply(&mut self, op: &Op) -> Result<(), NetError>;
    /// Checks that the state `op` leaves behind is present and as planned.
    fn verify(&mut self, op: &Op) -> Result<(), NetError>;
    /// MAC address of a host link (for the result).
    fn host_mac(&mut self, host_ifname: &str) -> Result<String, NetError>;
    /// Whether the namespace at `netns` exists and can be entered.
    fn netns_exists(&mut self, netns: &str) -> bool;
    /// The host-side index of the veth whose pod end is `ifname` in `netns`, if there is one.
    fn host_veth_index(&mut self, netns: &str, ifname: &str) -> Option<u32>;
}

/// A step of a plan that failed, and where.
#[derive(Debug)]
pub struct StepFailure {
    /// Index of the failed step; the steps before it were applied.
    pub index: usize,
    /// Why it failed.
    pub error: NetError,
}

/// Runs `ops` in order, stopping at the first failure.
pub fn apply_all(net: &mut dyn PodNet, ops: &[Op]) -> Result<(), StepFailure> {
    for (index, op) in ops.iter().enumerate() {
        log::debug!("apply: {op}");
        net.apply(op)
            .map_err(|error| StepFailure { index, error })?;
    }
    Ok(())
}

/// Runs every step of a teardown even when some fail; returns the failures.
pub fn teardown_all(net: &mut dyn PodNet, ops: &[Op]) -> Vec<NetError> {
    let mut failures = Vec::new();
    for op in ops {
        log::debug!("teardown: {op}");
        if let Err(e) = net.apply(op) {
            log::warn!("teardown step failed: {e}");
            failures.push(e);
        }
    }
    failures
}

/// Verifies every state-leaving step of `ops`; returns all mismatches, not just the first.
pub fn verify_all(net: &mut dyn PodNet, ops: &[Op]) -> Vec<NetError> {
    ops.iter()
        .filter(|op| op.leaves_state())
        .filter_map(|op| net.verify(op).err())
        .collect()
}

#[cfg(test)]
pub(crate) mod fake {
    //! A recording [`PodNet`] for unit tests of the driver.
    use super::*;
    use std::collections::BTreeSet;

    /// Records applied steps; fails the step whose Display contains `fail_on`.
    #[derive(Debug, Default)]
    pub struct RecordingNet {
        /// Steps applied, in order.
        pub applied: Vec<Op>,
        /// Fail any step whose text contains this.
        pub fail_on: Option<String>,
        /// Steps that verify() reports missing (by substring).
        pub missing: BTreeSet<String>,
        /// Namespaces reported missing.
        pub gone_netns: BTreeSet<String>,
        /// Host-side index of every pod's veth (None: no veth found).
        pub host_veth: Option<u32>,
    }

    impl PodNet for RecordingNet {
        fn apply(&mut self, op: &Op) -> Result<(), NetError> {
            if let Some(f) = &self.fail_on {
                if op.to_string().contains(f.as_str()) {
                    return Err(NetError::new(op, "injected failure"));
                }
            }
            self.applied.push(op.clone());
            Ok(())
        }
        fn verify(&mut self, op: &Op) -> Result<(), NetError> {
            let text = op.to_string();
            if self.missing.iter().any(|m| text.contains(m.as_str())) {
                Err(NetError::new(op, "missing"))
            } else {
                Ok(())
            }
        }
        fn host_mac(&mut self, _host_ifname: &str) -> Result<String, NetError> {
            Ok("02:00:00:00:00:01".into())
        }
        fn netns_exists(&mut self, netns: &str) -> bool {
            !self.gone_netns.contains(netns)
        }
        fn host_veth_index(&mut self, netns: &str, _ifname: &str) -> Option<u32> {
            self.host_veth.filter(|_| !self.gone_netns.contains(netns))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::RecordingNet;
    use super::*;
    use crate::cni::plan::{add_plan, PodWiring};
    use std::net::Ipv4Addr;

    fn ops() -> Vec<Op> {
        add_plan(&PodWiring {
            netns: "/run/netns/p".into(),
            pod_ifname: "eth0".into(),
            host_ifname: "eni0d7763386da".into(),
            ipv4: Ipv4Addr::new(10, 0, 0, 2),
            mtu: 9001,
            route_table: 2,
        })
    }

    #[test]
    fn apply_stops_at_the_first_failure() {
        let mut net = RecordingNet {
            fail_on: Some("host route".into()),
            ..Default::default()
        };
        let f = apply_all(&mut net, &ops()).unwrap_err();
        assert!(
            f.error.step.contains("host route 10.0.0.2/32"),
            "{}",
            f.error
        );
        assert_eq!(net.applied.len(), f.index);
        assert!(net.applied.iter().all(|o| !matches!(o, Op::AddRule { .. })));
    }

    #[test]
    fn the_errno_of_a_failed_step_survives() {
        let op = &ops()[0];
        let e = NetError::new(
            op,
            netlink::Error::new(
                "add veth",
                netlink::Cause::Errno {
                    errno: 17,
                    ext_msg: None,
                },
            ),
        );
        assert_eq!(e.errno(), Some(17));
        assert!(std::error::Error::source(&e).is_some());
        let e = NetError::new(op, "missing");
        assert_eq!(e.errno(), None);
        assert_eq!(e.to_string(), format!("{op}: missing"));
    }

    #[test]
    fn teardown_continues_past_failures() {
        let mut net = RecordingNet {
            fail_on: Some("delete rules".into()),
            ..Default::default()
        };
        let t = crate::cni::plan::teardown_plan(&crate::cni::plan::Teardown {
            netns: Some("/run/netns/p".into()),
            pod_ifname: "eth0".into(),
            host_ifname: Some("enix".into()),
            ipv4: Some(Ipv4Addr::new(10, 0, 0, 2)),
            veth_taken: None,
        });
        let failures = teardown_all(&mut net, &t);
        assert_eq!(failures.len(), 2);
        assert_eq!(net.applied.len(), 2, "both link deletions still ran");
    }

    #[test]
    fn verify_reports_every_missing_piece() {
        let mut net = RecordingNet::default();
        net.missing.insert("permanent neighbour".into());
        net.missing.insert("rule prio 1536".into());
        let errs = verify_all(&mut net, &ops());
        assert_eq!(errs.len(), 2);
        assert!(errs[0].step.contains("169.254.1.1"));
        assert!(errs[1].step.contains("from 10.0.0.2/32 lookup 2"));
    }
}
