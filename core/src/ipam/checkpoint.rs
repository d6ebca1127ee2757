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
//! Reading follows Go's decoder ([`decode`]): unknown fields ignored, `null` as the zero value,
//! names in any letter case, trailing data after the object ignored.

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
    /// Not JSON at all.
    Json(serde_json::Error),
    /// JSON, but a field of the wrong type (`field` names it, e.g. `allocations[3].ipv4`).
    Field {
        /// Where.
        field: String,
        /// What Go's decoder expects there.
        expected: &'static str,
    },
    /// JSON, but a version other than `vpc-cni-ipam/1`.
    Version(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Json(e) => {
                write!(f, "checkpoint is not valid {CHECKPOINT_VERSION} JSON: {e}")
            }
            CodecError::Field { field, expected } => write!(
                f,
                "checkpoint is not valid {CHECKPOINT_VERSION} JSON: {field} must be {expected}"
            ),
            CodecError::Version(v) => {
                write!(
                    f,
                    "checkpoint version {v:?} is not supported (only {CHECKPOINT_VERSION:?})"
                )
            }
        }
    }
}

type Object = serde_json::Map<String, serde_json::Value>;

/// Go's `encoding/json` field lookup: the exact name, else a case-insensitive match. Among
/// duplicate keys the last one counts (the map keeps the last).
fn lookup<'a>(obj: &'a Object, name: &str) -> Option<&'a serde_json::Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn string_field(obj: &Object, name: &str, at: &str) -> Result<String, CodecError> {
    match lookup(obj, name) {
        None | Some(serde_json::Value::Null) => Ok(String::new()),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(CodecError::Field {
            field: alloc::format!("{at}{name}"),
            expected: "a string",
        }),
    }
}

fn int_field<T: TryFrom<i64>>(obj: &Object, name: &str, at: &str) -> Result<T, CodecError> {
    let bad = || CodecError::Field {
        field: alloc::format!("{at}{name}"),
        expected: "an integer in range",
    };
    match lookup(obj, name) {
        None | Some(serde_json::Value::Null) => T::try_from(0).map_err(|_| bad()),
        Some(serde_json::Value::Number(n)) => {
            n.as_i64().and_then(|v| T::try_from(v).ok()).ok_or_else(bad)
        }
        Some(_) => Err(bad()),
    }
}

fn object_field<'a>(
    obj: &'a Object,
    name: &str,
    at: &str,
) -> Result<Option<&'a Object>, CodecError> {
    match lookup(obj, name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(CodecError::Field {
            field: alloc::format!("{at}{name}"),
            expected: "an object",
        }),
    }
}

fn entry(v: &serde_json::Value, at: &str) -> Result<CheckpointEntry, CodecError> {
    let o = match v {
        serde_json::Value::Object(o) => o,
        // Go decodes `null` into a zero entry.
        serde_json::Value::Null => return Ok(CheckpointEntry::default()),
        _ => {
            return Err(CodecError::Field {
                field: at.trim_end_matches('.').into(),
                expected: "an object",
            })
        }
    };
    let ipv4 = string_field(o, "ipv4", at)?;
    let ipv6 = string_field(o, "ipv6", at)?;
    let metadata = match object_field(o, "metadata", at)? {
        None => CheckpointMetadata::default(),
        Some(m) => {
            let at = alloc::format!("{at}metadata.");
            CheckpointMetadata {
                k8s_pod_namespace: string_field(m, "k8sPodNamespace", &at)?,
                k8s_pod_name: string_field(m, "k8sPodName", &at)?,
                interfaces_count: int_field(m, "interfacesCount", &at)?,
            }
        }
    };
    Ok(CheckpointEntry {
        network_name: string_field(o, "networkName", at)?,
        container_id: string_field(o, "containerID", at)?,
        if_name: string_field(o, "ifName", at)?,
        ipv4: (!ipv4.is_empty()).then_some(ipv4),
        ipv6: (!ipv6.is_empty()).then_some(ipv6),
        allocation_timestamp: int_field(o, "allocationTimestamp", at)?,
        metadata,
    })
}

/// Parses checkpoint bytes the way upstream's Go decoder (`json.NewDecoder(f).Decode`) reads
/// them, so every file upstream can restore, this reads too: the first JSON value counts and what
/// follows it is ignored; field names match case-insensitively; `null` anywhere reads as the zero
/// value; unknown fields are ignored; of duplicate keys the last wins. A field of the wrong type
/// and a version other than `vpc-cni-ipam/1` are errors, as upstream's restore fails on them.
pub fn decode(bytes: &[u8]) -> Result<CheckpointData, CodecError> {
    let first = serde_json::Deserializer::from_slice(bytes)
        .into_iter::<serde_json::Value>()
        .next();
    let value = match first {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(CodecError::Json(e)),
        None => {
            return Err(CodecError::Field {
                field: "the file".into(),
                expected: "one JSON object (it is empty)",
            })
        }
    };
    let root = match &value {
        serde_json::Value::Object(o) => o,
        _ => {
            return Err(CodecError::Field {
                field: "the file".into(),
                expected: "a JSON object",
            })
        }
    };
    let version = string_field(root, "version", "")?;
    if version != CHECKPOINT_VERSION {
        return Err(CodecError::Version(version));
    }
    let allocations = match lookup(root, "allocations") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| entry(v, &alloc::format!("allocations[{i}].")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(CodecError::Field {
                field: "allocations".into(),
                expected: "an array",
            })
        }
    };
    Ok(CheckpointData {
        version,
        allocations,
    })
}

/// Serialises a checkpoint (compact JSON, as upstream's encoder).
pub fn encode(data: &CheckpointData) -> Vec<u8> {
    // Serialising these plain structs into a Vec cannot fail (no maps with non-string keys, no I/O).
    serde_json::to_vec(data).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

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
    fn reads_what_gos_decoder_reads() {
        // null metadata and names, keys in another letter case, trailing data, duplicate keys.
        let text = br#"{"Version":"vpc-cni-ipam/1","ALLOCATIONS":[
            {"networkName":null,"containerid":"c1","IFNAME":"eth0","ipv4":"10.0.1.5","metadata":null},
            {"networkName":"aws-cni","containerID":"c2","ifName":"eth0","ipv4":"10.0.1.6","ipv4":"10.0.1.7",
             "metadata":{"K8SPODNAME":"p","k8sPodNamespace":"ns","interfacesCount":null}},
            null
        ]} trailing garbage {"#;
        let d = decode(text).unwrap();
        assert_eq!(d.allocations.len(), 3);
        let a = &d.allocations[0];
        assert_eq!(
            (
                a.network_name.as_str(),
                a.container_id.as_str(),
                a.if_name.as_str()
            ),
            ("", "c1", "eth0")
        );
        assert_eq!(a.metadata, CheckpointMetadata::default());
        let b = &d.allocations[1];
        assert_eq!(
            b.ipv4.as_deref(),
            Some("10.0.1.7"),
            "the last of duplicate keys wins"
        );
        assert_eq!(b.metadata.k8s_pod_name, "p");
        assert_eq!(d.allocations[2], CheckpointEntry::default());
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let e = decode(br#"{"version":"vpc-cni-ipam/1","allocations":[{"ipv4":5}]}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "checkpoint is not valid vpc-cni-ipam/1 JSON: allocations[0].ipv4 must be a string"
        );
        let e = decode(br#"{"version":"vpc-cni-ipam/1","allocations":{}}"#).unwrap_err();
        assert!(
            e.to_string().contains("allocations must be an array"),
            "{e}"
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
        assert!(matches!(e, CodecError::Json(_)), "{e}");
        assert!(e.to_string().contains("not valid vpc-cni-ipam/1 JSON"));
    }
}
