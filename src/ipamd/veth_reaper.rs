//! Deletes the veth pairs of deleted pods after their DEL has been answered.
//!
//! Deleting a veth costs the kernel about 20–30 ms (the link's unregistration waits for RCU grace
//! periods), which made our DEL slower than upstream's. Upstream's DEL deletes the pod's rules and
//! host route and leaves the pair to the runtime, whose deletion of the pod's namespace removes it
//! later. Ours removes it as well, only off the DEL's path: the plugin sends the index of the host
//! end with `DelNetwork`, ipamd answers, and this thread deletes the link. A pair therefore never
//! outlives its pod for long, also when a runtime keeps the namespace.
//!
//! A link is deleted only while it is still the one the plugin saw: a veth, named as the pod's
//! host veth (or, for a DEL without a pod name, with the configured prefix). A newer sandbox of
//! the same pod re-creates the same name with a new index (its ADD deletes a leftover of that
//! name first), so an index that has gone stale is simply not found.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

use crate::netlink::{Link, Netlink, Netns};

/// One veth pair to delete: the index of its host end, and what that link must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethRelease {
    /// Interface index of the host end, in ipamd's (the host's) namespace.
    pub index: u32,
    /// The pod's host veth name, when the DEL named the pod.
    pub name: Option<String>,
    /// The configured veth prefix (`AWS_VPC_K8S_CNI_VETHPREFIX`).
    pub prefix: String,
}

/// Why a link is not deleted, or `Ok` when it may be.
pub fn may_delete(link: &Link, release: &VethRelease) -> Result<(), String> {
    if link.kind.as_deref() != Some("veth") {
        return Err(format!(
            "link {} ({}) is not a veth (kind {:?})",
            link.index, link.name, link.kind
        ));
    }
    let named_right = match &release.name {
        Some(n) => link.name == *n,
        None => !release.prefix.is_empty() && link.name.starts_with(&release.prefix),
    };
    if !named_right {
        return Err(format!(
            "link {} is {}, not {}",
            link.index,
            link.name,
            release
                .name
                .clone()
                .unwrap_or_else(|| format!("a {}* veth", release.prefix))
        ));
    }
    Ok(())
}

/// The deleting thread's end of the queue.
#[derive(Debug)]
pub struct VethReaper {
    queue: Mutex<Sender<VethRelease>>,
}

impl VethReaper {
    /// Starts the thread; it deletes links in `ns` (ipamd's own namespace, the host's).
    pub fn spawn(ns: Netns) -> std::io::Result<VethReaper> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("veth-reaper".into())
            .spawn(move || reap(&ns, &rx))?;
        Ok(VethReaper {
            queue: Mutex::new(tx),
        })
    }

    /// Queues a pair; false if the thread has stopped (the plugin then deletes it itself).
    pub fn take(&self, release: VethRelease) -> bool {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .send(release)
            .is_ok()
    }
}

fn reap(ns: &Netns, rx: &Receiver<VethRelease>) {
    let mut nl: Option<Netlink> = None;
    while let Ok(release) = rx.recv() {
        if nl.is_none() {
            match Netlink::open_in(ns) {
                Ok(h) => nl = Some(h),
                Err(e) => {
                    // The pair stays until the runtime deletes the pod's namespace.
                    log::warn!("veth of index {}: netlink: {e}", release.index);
                    continue;
                }
            }
        }
        let Some(h) = nl.as_mut() else { continue };
        if let Err(e) = reap_one(h, &release) {
            log::warn!("veth of index {}: {e}", release.index);
            // A socket in an unknown state (a reply left unread) is replaced.
            nl = None;
        }
    }
}

fn reap_one(nl: &mut Netlink, release: &VethRelease) -> Result<(), String> {
    let Some(link) = nl.link_by_index(release.index).map_err(|e| e.to_string())? else {
        log::debug!("veth of index {} is already gone", release.index);
        return Ok(());
    };
    if let Err(why) = may_delete(&link, release) {
        log::warn!("not deleting: {why}");
        return Ok(());
    }
    nl.delete_link(link.index).map_err(|e| e.to_string())?;
    log::debug!("deleted veth {} ({})", link.name, link.index);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, kind: Option<&str>) -> Link {
        Link {
            index: 7,
            name: name.into(),
            mac: None,
            mtu: 9001,
            flags: 0,
            kind: kind.map(str::to_string),
            link: Some(2),
            master: None,
            operstate: 6,
        }
    }

    fn release(name: Option<&str>) -> VethRelease {
        VethRelease {
            index: 7,
            name: name.map(str::to_string),
            prefix: "eni".into(),
        }
    }

    #[test]
    fn only_the_pods_own_veth_goes() {
        assert!(may_delete(
            &link("eni0d7763386da", Some("veth")),
            &release(Some("eni0d7763386da"))
        )
        .is_ok());
        // Another pod's veth now holds the index, or the name moved on.
        let e = may_delete(
            &link("eni1234567890a", Some("veth")),
            &release(Some("eni0d7763386da")),
        )
        .unwrap_err();
        assert!(
            e.contains("eni1234567890a") && e.contains("eni0d7763386da"),
            "{e}"
        );
        // Never a device that is not a veth, whatever its name.
        assert!(may_delete(&link("eth0", None), &release(None)).is_err());
        assert!(may_delete(
            &link("eni0d7763386da", Some("vlan")),
            &release(Some("eni0d7763386da"))
        )
        .is_err());
    }

    #[test]
    fn without_a_pod_name_the_prefix_must_match() {
        assert!(may_delete(&link("eni0d7763386da", Some("veth")), &release(None)).is_ok());
        assert!(may_delete(&link("cali0d7763386d", Some("veth")), &release(None)).is_err());
        let empty = VethRelease {
            prefix: String::new(),
            ..release(None)
        };
        assert!(may_delete(&link("eni0d7763386da", Some("veth")), &empty).is_err());
    }
}
