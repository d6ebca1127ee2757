//! What the fault soak (`tests/e2e_soak.rs`) found, each pinned as a plain test.

#![allow(clippy::unwrap_used)]

#[path = "support/seeded_ipamd.rs"]
mod seeded_ipamd;
#[path = "support/tempdir.rs"]
mod tempdir;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use seeded_ipamd::SeededIpamd;
use tempdir::TempDir;
use vpc_cni::ipam::checkpoint::{CheckpointEntry, CHECKPOINT_VERSION};
use vpc_cni::ipam::store::CheckpointStore;
use vpc_cni::ipam::{CheckpointData, Datastore, DatastoreConfig, EniSpec, Instant};
use vpc_cni::ipamd::daemon::{restore_checkpoint, NodeNet, RECOVERED_PREFIX};
use vpc_cni::net::Ipv4Cidr;
use vpc_cni::rpc::{AddNetworkRequest, AddressManager, DelNetworkRequest};

fn add(name: &str) -> AddNetworkRequest {
    AddNetworkRequest {
        k8s_pod_name: name.into(),
        k8s_pod_namespace: "default".into(),
        container_id: format!("c-{name}"),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        ..Default::default()
    }
}

fn del(name: &str) -> DelNetworkRequest {
    DelNetworkRequest {
        k8s_pod_name: name.into(),
        k8s_pod_namespace: "default".into(),
        container_id: format!("c-{name}"),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        ..Default::default()
    }
}

/// Soak finding 1: a DEL while the checkpoint's disk was full was undone in ipamd and refused,
/// while the plugin tore the pod down anyway: the address stayed assigned to a pod that no longer
/// existed until ipamd restarted.
#[test]
fn a_del_whose_checkpoint_write_fails_still_frees_the_address() {
    let d = TempDir::new("soakreg");
    let dir = d.0.join("ckpt");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ipam.json");
    let ipamd = SeededIpamd::new(&path);
    ipamd.service.add_network(&add("a")).unwrap();
    ipamd.service.add_network(&add("b")).unwrap();
    assert_eq!(ipamd.assigned(), 2);

    // The checkpoint cannot be written any more.
    std::fs::remove_dir_all(&dir).unwrap();
    let r = ipamd.service.del_network(&del("a"));
    assert!(r.is_ok(), "the DEL is answered yes: {r:?}");
    assert_eq!(ipamd.assigned_ids(), vec!["c-b".to_string()]);
    // An ADD is still refused with the reason, and assigns nothing.
    let e = ipamd.service.add_network(&add("c")).unwrap_err();
    assert!(e.message.contains("checkpoint"), "{}", e.message);
    assert_eq!(ipamd.assigned(), 1);

    // Space is back: the next write catches up, and the file lists the live pods only.
    std::fs::create_dir_all(&dir).unwrap();
    ipamd.service.add_network(&add("c")).unwrap();
    let saved = CheckpointStore::new(&path).load().unwrap().unwrap();
    let ids: BTreeSet<String> = saved
        .allocations
        .iter()
        .map(|a| a.container_id.clone())
        .collect();
    assert_eq!(ids, ["c-b", "c-c"].iter().map(|s| s.to_string()).collect());
}

/// A node whose only links are the ones named.
struct Links(Vec<String>, Vec<Ipv4Addr>);

impl NodeNet for Links {
    fn wire_host(&mut self, _: &EniSpec, _: &[Ipv4Cidr]) -> Result<(), String> {
        Ok(())
    }
    fn wire_eni(&mut self, _: &EniSpec) -> Result<(), String> {
        Ok(())
    }
    fn unwire_eni(&mut self, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn link_exists(&mut self, name: &str) -> Result<bool, String> {
        Ok(self.0.iter().any(|l| l == name))
    }
    fn delete_pod_rules(&mut self, ip: Ipv4Addr) -> Result<(), String> {
        self.1.push(ip);
        Ok(())
    }
    fn pod_routes(&mut self, _: &str) -> Result<Vec<(Ipv4Addr, String)>, String> {
        Ok(vec![])
    }
}

/// Soak finding 2: an assignment rebuilt from the node's routes (after a corrupt checkpoint)
/// carries no pod name, so a restart kept it even once its pod's veth was gone: an address held
/// for ever by a pod that no longer existed.
#[test]
fn a_rebuilt_assignment_whose_veth_is_gone_is_released_at_restart() {
    let d = TempDir::new("soakreg");
    let path = d.0.join("ipam.json");
    let store = CheckpointStore::new(&path);
    let entry = |veth: &str, ip: &str| CheckpointEntry {
        network_name: "aws-cni".into(),
        container_id: format!("{RECOVERED_PREFIX}{veth}"),
        if_name: "eth0".into(),
        ipv4: Some(ip.into()),
        ..Default::default()
    };
    store
        .save(&CheckpointData {
            version: CHECKPOINT_VERSION.into(),
            allocations: vec![
                entry("enialive", "10.0.0.21"),
                entry("enigone", "10.0.0.22"),
            ],
        })
        .unwrap();
    let mut ds = Datastore::new(DatastoreConfig::default());
    let now = Instant::from_millis(0);
    ds.add_eni(
        EniSpec {
            id: "eni-primary".into(),
            device_number: 0,
            primary_ipv4: Some(Ipv4Addr::new(10, 0, 0, 10)),
            is_primary: true,
            ..Default::default()
        },
        now,
    )
    .unwrap();
    let addrs: Vec<Ipv4Addr> = (20..30).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
    ds.add_ipv4_addresses("eni-primary", &addrs).unwrap();
    let mut net = Links(vec!["enialive".into()], vec![]);
    restore_checkpoint(&store, &mut ds, &mut net, "eni").unwrap();
    let held: Vec<String> = ds
        .allocations()
        .map(|(_, a)| a.key.container_id.clone())
        .collect();
    assert_eq!(held, vec![format!("{RECOVERED_PREFIX}enialive")]);
    assert_eq!(net.1, vec![Ipv4Addr::new(10, 0, 0, 22)], "its rules go too");
    let saved = store.load().unwrap().unwrap();
    assert_eq!(saved.allocations.len(), 1);
}
