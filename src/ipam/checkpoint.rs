//! The checkpoint format upstream ipamd writes (`vpc-cni-ipam/1`), so a node switching from the Go
//! aws-node keeps every pod's address.
//!
//! ```json
//! {"version":"vpc-cni-ipam/1",
//!  "allocations":[{"networkName":"aws-cni","containerID":"…","ifName":"eth0","ipv4":"10.0.1.23",
//!                  "allocationTimestamp":1700000000000000000,
//!                  "metadata":{"k8sPodNamespace":"ns","k8sPodName":"pod","interfacesCount":1}}]}
//! ```
//! `ipv4`/`ipv6` and the three metadata fields are omitted when empty/zero, as Go's `omitempty` does.
//! Unknown fields are ignored and `"allocations": null` reads as empty, as Go's decoder does.

#![deny(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The only checkpoint version upstream (and we) read and write.
pub const CHECKPOINT_VERSION: &str = "vpc-cni-ipam/1";

/// The whole checkpoint file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointData {
    /// Format version; must be [`CHECKPOINT_VERSION`].
    pub version: String,
    /// One entry per live assignment.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub allocations: Vec<CheckpointEntry>,
}

/// One assignment; the IPAM key fields are flattened in, as upstream embeds `IPAMKey`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    /// CNI network name.
    #[serde(rename = "networkName", default)]
    pub network_name: String,
    /// CNI container id.
    #[serde(rename = "containerID", default)]
    pub container_id: String,
    /// CNI interface name.
    #[serde(rename = "ifName", default)]
    pub if_name: String,
    /// IPv4 address (IPv4 modes).
    #[serde(
        default,
        skip_serializing_if = "is_none_or_empty",
        deserialize_with = "empty_as_none"
    )]
    pub ipv4: Option<String>,
    /// IPv6 address (IPv6 mode).
    #[serde(
        default,
        skip_serializing_if = "is_none_or_empty",
        deserialize_with = "empty_as_none"
    )]
    pub ipv6: Option<String>,
    /// Assignment time, Unix nanoseconds.
    #[serde(rename = "allocationTimestamp", default)]
    pub allocation_timestamp: i64,
    /// The pod.
    #[serde(default)]
    pub metadata: CheckpointMetadata,
}

/// Upstream `IPAMMetadata`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// Pod namespace.
    #[serde(
        rename = "k8sPodNamespace",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub k8s_pod_namespace: String,
    /// Pod name.
    #[serde(
        rename = "k8sPodName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub k8s_pod_name: String,
    /// Interfaces of the pod (0 = not recorded, meaning 1).
    #[serde(rename = "interfacesCount", default, skip_serializing_if = "is_zero")]
    pub interfaces_count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_none_or_empty(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<CheckpointEntry>, D::Error> {
    Ok(Option::<Vec<CheckpointEntry>>::deserialize(d)?.unwrap_or_default())
}

fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// Why checkpoint bytes could not be read.
#[derive(Debug)]
pub enum CodecError {
    /// Not JSON of the checkpoint's shape.
    Json(serde_json::Error),
    /// JSON, but a version other than `vpc-cni-ipam/1`.
    Version(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Json(e) => {
                write!(f, "checkpoint is not valid {CHECKPOINT_VERSION} JSON: {e}")
            }
            CodecError::Version(v) => {
                write!(
                    f,
                    "checkpoint version {v:?} is not supported (only {CHECKPOINT_VERSION:?})"
                )
            }
        }
    }
}

/// Parses checkpoint bytes; a wrong version is an error.
pub fn decode(bytes: &[u8]) -> Result<CheckpointData, CodecError> {
    let data: CheckpointData = serde_json::from_slice(bytes).map_err(CodecError::Json)?;
    if data.version != CHECKPOINT_VERSION {
        return Err(CodecError::Version(data.version));
    }
    Ok(data)
}

/// Serialises a checkpoint (compact JSON, as upstream's encoder).
pub fn encode(data: &CheckpointData) -> Vec<u8> {
    // Serialising these plain structs into a Vec cannot fail (no maps with non-string keys, no I/O).
    serde_json::to_vec(data).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint as the Go aws-node writes it (field order and omitempty included).
    const GO_WRITTEN: &str = r#"{"version":"vpc-cni-ipam/1","allocations":[{"networkName":"aws-cni","containerID":"2f5c1a","ifName":"eth0","ipv4":"10.0.1.23","allocationTimestamp":1700000000123456789,"metadata":{"k8sPodNamespace":"default","k8sPodName":"web-0","interfacesCount":1}},{"networkName":"_migrated-from-cri","containerID":"old","ifName":"unknown","ipv4":"10.0.1.24","allocationTimestamp":0,"metadata":{}}]}"#;

    #[test]
    fn reads_and_rewrites_go_checkpoint_byte_for_byte() {
        let data = decode(GO_WRITTEN.as_bytes()).unwrap();
        assert_eq!(data.allocations.len(), 2);
        assert_eq!(data.allocations[0].ipv4.as_deref(), Some("10.0.1.23"));
        assert_eq!(
            data.allocations[0].allocation_timestamp,
            1_700_000_000_123_456_789
        );
        assert_eq!(data.allocations[0].metadata.k8s_pod_name, "web-0");
        assert_eq!(data.allocations[1].metadata, CheckpointMetadata::default());
        assert_eq!(encode(&data), GO_WRITTEN.as_bytes());
    }

    #[test]
    fn null_allocations_and_unknown_fields_are_accepted() {
        let data = decode(br#"{"version":"vpc-cni-ipam/1","allocations":null,"extra":1}"#).unwrap();
        assert!(data.allocations.is_empty());
        assert_eq!(
            encode(&data),
            br#"{"version":"vpc-cni-ipam/1","allocations":[]}"#
        );
    }

    #[test]
    fn wrong_version_and_garbage_are_errors() {
        let e = decode(br#"{"version":"vpc-cni-ipam/2","allocations":[]}"#).unwrap_err();
        assert!(
            matches!(e, CodecError::Version(ref v) if v == "vpc-cni-ipam/2"),
            "{e}"
        );
        let e = decode(b"{\"version\":\"vpc-cni-ipam/1\",\"allocations\":[{").unwrap_err();
        assert!(matches!(e, CodecError::Json(_)));
        assert!(e.to_string().contains("not valid vpc-cni-ipam/1 JSON"));
    }
}
