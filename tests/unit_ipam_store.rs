//! Checkpoint file I/O in throwaway directories: atomic writes, missing files, corrupt files kept aside.

// Test crate: helpers outside #[test] fns may unwrap too (a panic is a test failure).
#![allow(clippy::unwrap_used)]

#[path = "support/tempdir.rs"]
mod tempdir;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use tempdir::TempDir;
use vpc_cni::ipam::checkpoint::CheckpointEntry;
use vpc_cni::ipam::store::{CheckpointStore, StoreError, DEFAULT_BACKING_STORE};
use vpc_cni::ipam::CheckpointData;

fn sample(n: usize) -> CheckpointData {
    CheckpointData {
        version: "vpc-cni-ipam/1".into(),
        allocations: (0..n)
            .map(|i| CheckpointEntry {
                network_name: "aws-cni".into(),
                container_id: format!("c{i}"),
                if_name: "eth0".into(),
                ipv4: Some(format!("10.0.1.{i}")),
                allocation_timestamp: i as i64,
                ..CheckpointEntry::default()
            })
            .collect(),
    }
}

#[test]
fn missing_file_is_a_fresh_node() {
    let d = TempDir::new("ipam-store");
    assert!(CheckpointStore::new(d.0.join("ipam.json"))
        .load()
        .unwrap()
        .is_none());
}

#[test]
fn save_then_load_round_trips_and_leaves_only_the_file() {
    let d = TempDir::new("ipam-store");
    let store = CheckpointStore::new(d.0.join("ipam.json"));
    store.save(&sample(3)).unwrap();
    store.save(&sample(5)).unwrap();
    assert_eq!(store.load().unwrap(), Some(sample(5)));
    assert_eq!(d.names(), vec!["ipam.json"], "no temporary files left");
    let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_corrupt_file_is_kept_aside_not_overwritten() {
    let d = TempDir::new("ipam-store");
    let path = d.0.join("ipam.json");
    let store = CheckpointStore::new(&path);
    fs::write(
        &path,
        b"{\"version\":\"vpc-cni-ipam/1\",\"allocations\":[{\"ipv4\":",
    )
    .unwrap();
    let e = store.load().unwrap_err();
    let StoreError::Corrupt { kept_as, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(kept_as, &d.0.join("ipam.json.corrupt-1"));
    assert!(e.to_string().contains("kept as"), "{e}");
    assert_eq!(
        fs::read(kept_as).unwrap(),
        b"{\"version\":\"vpc-cni-ipam/1\",\"allocations\":[{\"ipv4\":"
    );
    assert!(!path.exists());
    // A second bad file does not replace the first one kept aside.
    fs::write(&path, b"garbage").unwrap();
    let e = store.load().unwrap_err();
    assert!(
        matches!(e, StoreError::Corrupt { ref kept_as, .. } if kept_as.ends_with("ipam.json.corrupt-2"))
    );
    assert_eq!(
        d.names(),
        vec!["ipam.json.corrupt-1", "ipam.json.corrupt-2"]
    );
}

#[test]
fn an_unknown_version_is_an_error_and_kept_aside() {
    let d = TempDir::new("ipam-store");
    let path = d.0.join("ipam.json");
    fs::write(&path, br#"{"version":"vpc-cni-ipam/9","allocations":[]}"#).unwrap();
    let e = CheckpointStore::new(&path).load().unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("\"vpc-cni-ipam/9\" is not supported"), "{msg}");
    assert_eq!(d.names(), vec!["ipam.json.corrupt-1"]);
}

#[test]
fn saving_into_a_missing_directory_names_the_path() {
    let d = TempDir::new("ipam-store");
    let store = CheckpointStore::new(d.0.join("nope").join("ipam.json"));
    let e = store.save(&sample(1)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("create temporary file for checkpoint"),
        "{e}"
    );
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn per_card_paths_follow_upstream() {
    assert_eq!(
        CheckpointStore::for_network_card(DEFAULT_BACKING_STORE, 0)
            .path()
            .to_str(),
        Some("/var/run/aws-node/ipam.json")
    );
    assert_eq!(
        CheckpointStore::for_network_card(DEFAULT_BACKING_STORE, 2)
            .path()
            .to_str(),
        Some("/var/run/aws-node/ipam-nic-2.json")
    );
}
