//! Upstream's `/v1/enis` introspection JSON (`datastore.ENIInfos`), built from a [`Datastore`].
//!
//! Same field names and shapes as the Go output: `net.IPNet` as `{"IP": "...", "Mask": "<base64>"}`,
//! times as RFC 3339 with nanoseconds (`0001-01-01T00:00:00Z` when unset), and, as upstream since
//! v1.23, the container id and interface name scrubbed from each `IPAMKey`. `IPAddresses` lists
//! assigned and cooling addresses (upstream lists whatever its map still holds, which also includes
//! cooled-down entries not yet purged). `AddressFamily` is empty, as upstream's copy leaves it.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::IpAddr;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::checkpoint::CheckpointMetadata;
use super::datastore::Datastore;
use super::Instant;
use crate::net::IpNet;
use crate::timefmt::{self, Fraction};

/// Upstream `ENIInfos`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EniInfos {
    /// Addresses in all blocks.
    #[serde(rename = "TotalIPs")]
    pub total_ips: u64,
    /// Assigned addresses.
    #[serde(rename = "AssignedIPs")]
    pub assigned_ips: u64,
    /// ENIs by id.
    #[serde(rename = "ENIs")]
    pub enis: BTreeMap<String, EniInfo>,
}

/// Upstream `ENI` (exported fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EniInfo {
    /// ENI id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Primary ENI.
    pub is_primary: bool,
    /// Trunk ENI.
    pub is_trunk: bool,
    /// EFA ENI.
    #[serde(rename = "IsEFA")]
    pub is_efa: bool,
    /// Device number.
    pub device_number: u32,
    /// IPv4 blocks by `a.b.c.d/len`.
    #[serde(rename = "AvailableIPv4Cidrs")]
    pub available_ipv4_cidrs: BTreeMap<String, CidrInfo>,
    /// IPv6 blocks.
    #[serde(rename = "IPv6Cidrs")]
    pub ipv6_cidrs: BTreeMap<String, CidrInfo>,
}

/// Upstream `CidrInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CidrInfo {
    /// The block, serialized as Go's `net.IPNet`.
    #[serde(serialize_with = "go_ipnet")]
    pub cidr: IpNet,
    /// Tracked addresses by text.
    #[serde(rename = "IPAddresses")]
    pub ip_addresses: BTreeMap<String, AddressInfo>,
    /// A prefix rather than a /32.
    pub is_prefix: bool,
    /// Empty, as upstream's introspection copy.
    pub address_family: String,
}

/// Go's `net.IPNet` JSON: `{"IP": "<address>", "Mask": "<mask bytes in base64>"}` (Go marshals
/// `[]byte` as base64).
fn go_ipnet<S: Serializer>(net: &IpNet, s: S) -> Result<S::Ok, S::Error> {
    let mask = match net.mask() {
        IpAddr::V4(m) => base64(&m.octets()),
        IpAddr::V6(m) => base64(&m.octets()),
    };
    let mut go = s.serialize_struct("IPNet", 2)?;
    go.serialize_field("IP", &net.addr())?;
    go.serialize_field("Mask", &mask)?;
    go.end()
}

/// Upstream `AddressInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressInfo {
    /// The address.
    pub address: String,
    /// The key, container id and ifname scrubbed.
    #[serde(rename = "IPAMKey")]
    pub ipam_key: ScrubbedKey,
    /// The pod.
    #[serde(rename = "IPAMMetadata")]
    pub ipam_metadata: CheckpointMetadata,
    /// RFC 3339 assignment time.
    pub assigned_time: String,
    /// RFC 3339 release time.
    pub unassigned_time: String,
}

/// Upstream `IPAMKey` with `containerID` and `ifName` blanked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScrubbedKey {
    /// Network name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// Always empty.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Always empty.
    #[serde(rename = "ifName")]
    pub if_name: String,
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Builds the `/v1/enis` document. `now` and `now_unix_nanos` are the same moment on the monotonic
/// and the wall clock, used to show release times (kept on the monotonic clock) as wall time.
pub fn eni_infos(ds: &Datastore, now: Instant, now_unix_nanos: i64) -> EniInfos {
    let mut out = EniInfos {
        total_ips: 0,
        assigned_ips: 0,
        enis: BTreeMap::new(),
    };
    let mut tracked: Vec<(
        IpAddr,
        Option<&super::datastore::Allocation>,
        Option<Instant>,
    )> = Vec::new();
    for (a, al) in ds.allocations() {
        tracked.push((*a, Some(al), None));
    }
    for (a, t) in ds.cooling(now) {
        tracked.push((a, None, Some(t)));
    }
    for e in ds.enis() {
        let mut info = EniInfo {
            id: e.id().into(),
            is_primary: e.spec().is_primary,
            is_trunk: e.spec().is_trunk,
            is_efa: e.spec().is_efa,
            device_number: e.device_number(),
            available_ipv4_cidrs: BTreeMap::new(),
            ipv6_cidrs: BTreeMap::new(),
        };
        // One block of either family: counted into the totals and listed with its addresses.
        let mut block = |net: IpNet, size: u64, is_prefix: bool| {
            out.total_ips = out.total_ips.saturating_add(size);
            let addrs = address_map(&tracked, |a| net.contains(*a), now, now_unix_nanos);
            out.assigned_ips += addrs
                .values()
                .filter(|a| a.unassigned_time == ZERO_TIME)
                .count() as u64;
            CidrInfo {
                cidr: net,
                ip_addresses: addrs,
                is_prefix,
                address_family: String::new(),
            }
        };
        for c in e.ipv4_cidrs() {
            let b = block(IpNet::from(*c), c.size(), !c.is_host());
            info.available_ipv4_cidrs.insert(c.to_string(), b);
        }
        for c in e.ipv6_prefixes() {
            let size = u64::try_from(c.size()).unwrap_or(u64::MAX);
            let b = block(IpNet::from(*c), size, true);
            info.ipv6_cidrs.insert(c.to_string(), b);
        }
        out.enis.insert(info.id.clone(), info);
    }
    out
}

fn address_map(
    tracked: &[(
        IpAddr,
        Option<&super::datastore::Allocation>,
        Option<Instant>,
    )],
    inside: impl Fn(&IpAddr) -> bool,
    now: Instant,
    now_unix_nanos: i64,
) -> BTreeMap<String, AddressInfo> {
    let mut m = BTreeMap::new();
    for (a, al, released) in tracked.iter().filter(|(a, _, _)| inside(a)) {
        let info = AddressInfo {
            address: a.to_string(),
            ipam_key: ScrubbedKey {
                network_name: al.map(|x| x.key.network_name.clone()).unwrap_or_default(),
                container_id: String::new(),
                if_name: String::new(),
            },
            ipam_metadata: al
                .map(|x| CheckpointMetadata {
                    k8s_pod_namespace: x.metadata.namespace.clone(),
                    k8s_pod_name: x.metadata.name.clone(),
                    interfaces_count: x.metadata.interfaces_count,
                })
                .unwrap_or_default(),
            assigned_time: al.map_or_else(
                || ZERO_TIME.into(),
                |x| rfc3339_nanos(x.allocated_unix_nanos),
            ),
            unassigned_time: released.map_or_else(
                || ZERO_TIME.into(),
                |t| {
                    let ago = i64::try_from(now.saturating_since(t).as_nanos()).unwrap_or(i64::MAX);
                    rfc3339_nanos(now_unix_nanos.saturating_sub(ago))
                },
            ),
        };
        m.insert(a.to_string(), info);
    }
    m
}

/// Standard base64 with padding (Go's encoding of `[]byte` in JSON).
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Go's `time.RFC3339Nano` in UTC: trailing zeros of the fraction dropped.
pub fn rfc3339_nanos(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    // In 0..1e9 by construction.
    let nanos = unix_nanos.rem_euclid(1_000_000_000) as u32;
    timefmt::rfc3339(secs, nanos, Fraction::Trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_encodings() {
        assert_eq!(base64(&[255, 255, 255, 255]), "/////w==");
        assert_eq!(base64(&[255, 255, 255, 240]), "////8A==");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nanos(1_700_000_000_123_456_000),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_000),
            "2000-02-29T00:00:00Z"
        );
    }
}
