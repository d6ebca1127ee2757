//! ipamd's plugin side as the daemon runs it ([`AddressService`] over the datastore, the checkpoint
//! written before every answer), seeded with two ENIs instead of from EC2, for tests of the plugin
//! under a CNI client (include with `#[path = "support/seeded_ipamd.rs"] mod seeded_ipamd;`).

#![allow(dead_code, clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use vpc_cni::ipam::store::CheckpointStore;
use vpc_cni::ipam::{
    Datastore, DatastoreConfig, EniSpec, InstanceLimits, Instant, Pool, PoolConfig,
};
use vpc_cni::ipamd::manager::{self, AddressService, NodeState, ReplyTemplate, SystemClock};
use vpc_cni::ipamd::veth_reaper::VethReaper;
use vpc_cni::netlink::Netns;

/// The product address service over a seeded datastore.
pub struct SeededIpamd {
    pub service: Arc<AddressService>,
    pub state: Arc<Mutex<NodeState>>,
}

impl SeededIpamd {
    /// The primary ENI (device 0) with 10.0.0.20–35 and a secondary ENI (device 1, route table 2)
    /// with 10.0.1.20–35; the checkpoint is written to `checkpoint`.
    pub fn new(checkpoint: &Path) -> SeededIpamd {
        let mut ds = Datastore::new(DatastoreConfig::default());
        let now = Instant::from_millis(0);
        let enis = [
            ("eni-primary", 0, [10, 0, 0], Ipv4Addr::new(10, 0, 0, 10)),
            ("eni-second", 1, [10, 0, 1], Ipv4Addr::new(10, 0, 1, 10)),
        ];
        for (id, device, [a, b, c], primary_ip) in enis {
            ds.add_eni(
                EniSpec {
                    id: id.into(),
                    device_number: device,
                    primary_ipv4: Some(primary_ip),
                    is_primary: device == 0,
                    ..Default::default()
                },
                now,
            )
            .unwrap();
            let addrs: Vec<Ipv4Addr> = (20..36).map(|d| Ipv4Addr::new(a, b, c, d)).collect();
            ds.add_ipv4_addresses(id, &addrs).unwrap();
        }
        let pool = Pool::new(
            PoolConfig::default(),
            InstanceLimits::simple("seeded", 2, 17),
        );
        let state = manager::shared(ds, pool);
        manager::lock(&state).ready = true;
        let service = Arc::new(AddressService::new(
            state.clone(),
            Arc::new(CheckpointStore::new(checkpoint)),
            Arc::new(SystemClock::new()),
            ReplyTemplate {
                veth_prefix: "eni".into(),
                ..ReplyTemplate::default()
            },
            Arc::new(|_| {}),
        ));
        SeededIpamd { service, state }
    }

    /// [`SeededIpamd::new`], deleting the veths of DELs in the node namespace `netns` after
    /// answering, as the daemon does in its own.
    pub fn with_veth_reaper(checkpoint: &Path, netns: &Path) -> SeededIpamd {
        let s = SeededIpamd::new(checkpoint);
        let reaper = VethReaper::spawn(Netns::open(netns).unwrap()).unwrap();
        let service = Arc::new(
            Arc::try_unwrap(s.service)
                .unwrap()
                .with_veth_reaper(Arc::new(reaper)),
        );
        SeededIpamd {
            service,
            state: s.state,
        }
    }
}

impl SeededIpamd {
    /// How many addresses are assigned.
    pub fn assigned(&self) -> usize {
        manager::lock(&self.state).ds.allocations().count()
    }

    /// The container ids holding addresses, sorted.
    pub fn assigned_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = manager::lock(&self.state)
            .ds
            .allocations()
            .map(|(_, a)| a.key.container_id.clone())
            .collect();
        v.sort();
        v
    }
}
