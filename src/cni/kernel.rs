//! [`PodNet`] on rtnetlink (crate::netlink).

use super::apply::{NetError, PodNet};
use super::plan::Op;

/// Interim: the kernel adapter is not merged yet; every step fails with a clear message.
#[derive(Debug)]
pub struct KernelNet;

impl KernelNet {
    /// Opens route netlink in the host namespace.
    pub fn open() -> Result<KernelNet, String> {
        Ok(KernelNet)
    }
}

impl PodNet for KernelNet {
    fn apply(&mut self, op: &Op) -> Result<(), NetError> {
        Err(NetError::new(op, "kernel adapter not available"))
    }
    fn verify(&mut self, op: &Op) -> Result<(), NetError> {
        Err(NetError::new(op, "kernel adapter not available"))
    }
    fn host_mac(&mut self, host_ifname: &str) -> Result<String, NetError> {
        Err(NetError {
            step: format!("read MAC of {host_ifname}"),
            cause: "kernel adapter not available".into(),
        })
    }
    fn netns_exists(&mut self, netns: &str) -> bool {
        std::path::Path::new(netns).exists()
    }
}
