//! IMDS/EC2 reconcile: bring the datastore in line with what is really attached to the node.
//!
//! Upstream's `nodeIPPoolReconcile`: the attached ENIs and their addresses come from IMDS; where
//! IMDS and the datastore differ, EC2 is asked (one DescribeNetworkInterfaces for the instance)
//! and **EC2 wins**. Blocks ipamd released less than 60 s ago are not re-added (IMDS may still
//! show them). ENIs or blocks the datastore has but EC2 no longer has are force-removed, and the
//! pods on them lose their addresses (counted for `awscni_force_removed_*`).
//!
//! [`imds_differs`] and [`apply`] are pure; the daemon does the IMDS and EC2 reads between them.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use crate::aws::ec2::NetworkInterface;
use crate::aws::imds::ImdsInterface;
use crate::ipam::{Datastore, EniSpec, Instant, Pool};
use crate::net::Ipv4Cidr;

use super::executor::{secondary_addresses, TAG_NO_MANAGE};

/// One ENI as EC2 (or, in IMDS-only mode, IMDS) shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedEni {
    /// How the datastore should know it if it is new.
    pub spec: EniSpec,
    /// Secondary addresses (the ENI's primary excluded).
    pub addresses: Vec<Ipv4Addr>,
    /// /28 prefixes.
    pub prefixes: Vec<Ipv4Cidr>,
}

impl ObservedEni {
    fn cidrs(&self) -> BTreeSet<Ipv4Cidr> {
        self.addresses
            .iter()
            .map(|a| Ipv4Cidr::host(*a))
            .chain(self.prefixes.iter().copied())
            .collect()
    }
}

/// The datastore's view of an ENI from EC2's description, completed with what IMDS says of the
/// same MAC (the subnet CIDR EC2's ENI description does not carry).
pub fn observed_from_ec2(ni: &NetworkInterface, imds: Option<&ImdsInterface>) -> ObservedEni {
    let device = ni
        .attachment
        .as_ref()
        .and_then(|a| a.device_index)
        .or(imds.map(|i| i.device_number))
        .unwrap_or(0);
    let card = ni
        .attachment
        .as_ref()
        .and_then(|a| a.network_card_index)
        .unwrap_or(0);
    ObservedEni {
        spec: EniSpec {
            id: ni.id.clone(),
            device_number: device,
            network_card: card,
            subnet_id: ni.subnet_id.clone(),
            primary_ipv4: ni.private_ip_address,
            is_primary: device == 0 && card == 0,
            is_trunk: ni.interface_type == "trunk",
            is_efa: ni.interface_type == "efa" || ni.interface_type == "efa-only",
            unmanaged: ni.tag(TAG_NO_MANAGE) == Some("true"),
            excluded_for_pods: false,
            mac: ni.mac_address.parse().ok(),
            subnet_ipv4_cidr: imds.map(|i| i.subnet_ipv4_cidr),
        },
        addresses: secondary_addresses(ni),
        prefixes: ni.ipv4_prefixes.clone(),
    }
}

/// The datastore's view of an ENI from IMDS alone (IMDS-only mode: tags cannot be read, so an
/// ENI is managed unless the operator keeps it out by other means).
pub fn observed_from_imds(i: &ImdsInterface) -> ObservedEni {
    ObservedEni {
        spec: EniSpec {
            id: i.interface_id.clone(),
            device_number: i.device_number,
            network_card: i.network_card,
            subnet_id: i.subnet_id.clone(),
            primary_ipv4: i.local_ipv4s.first().copied(),
            is_primary: i.device_number == 0 && i.network_card == 0,
            mac: Some(i.mac),
            subnet_ipv4_cidr: Some(i.subnet_ipv4_cidr),
            ..EniSpec::default()
        },
        addresses: i.local_ipv4s.iter().skip(1).copied().collect(),
        prefixes: i.ipv4_prefixes.clone(),
    }
}

/// Whether IMDS shows something other than the datastore holds (an ENI more or less, or other
/// addresses), ignoring blocks released less than 60 s ago. Only then is EC2 asked.
pub fn imds_differs(ds: &Datastore, pool: &Pool, imds: &[ImdsInterface], now: Instant) -> bool {
    let seen: BTreeSet<&str> = imds.iter().map(|i| i.interface_id.as_str()).collect();
    if ds.enis().any(|e| !seen.contains(e.id())) {
        return true;
    }
    imds.iter().any(|i| {
        let Some(e) = ds.eni(&i.interface_id) else {
            return true;
        };
        let have: BTreeSet<Ipv4Cidr> = e.ipv4_cidrs().copied().collect();
        let shown: BTreeSet<Ipv4Cidr> = observed_from_imds(i)
            .cidrs()
            .into_iter()
            .filter(|c| !pool.recently_freed(c, now))
            .collect();
        let have: BTreeSet<Ipv4Cidr> = have
            .into_iter()
            .filter(|c| !pool.recently_freed(c, now))
            .collect();
        have != shown
    })
}

/// What a reconcile changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// ENIs new to the datastore.
    pub added_enis: Vec<String>,
    /// ENIs the datastore had and EC2 no longer shows attached.
    pub removed_enis: Vec<String>,
    /// Addresses and prefixes added.
    pub added_blocks: Vec<Ipv4Cidr>,
    /// Addresses and prefixes removed.
    pub removed_blocks: Vec<Ipv4Cidr>,
    /// Pod addresses lost with them (the pods' keys were dropped).
    pub lost_pod_addresses: Vec<IpAddr>,
    /// Errors applying single changes (the rest was applied).
    pub errors: Vec<String>,
}

impl ReconcileReport {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        !(self.added_enis.is_empty()
            && self.removed_enis.is_empty()
            && self.added_blocks.is_empty()
            && self.removed_blocks.is_empty())
    }
}

/// Makes the datastore hold exactly what `observed` (EC2's answer) shows, except blocks the
/// planner released less than 60 s ago, which are not re-added.
pub fn apply(
    ds: &mut Datastore,
    pool: &Pool,
    observed: &[ObservedEni],
    now: Instant,
) -> ReconcileReport {
    let mut report = ReconcileReport::default();
    let seen: BTreeSet<&str> = observed.iter().map(|o| o.spec.id.as_str()).collect();
    let gone: Vec<String> = ds
        .enis()
        .filter(|e| !seen.contains(e.id()))
        .map(|e| e.id().to_string())
        .collect();
    for id in gone {
        let lost = pod_addresses_on(ds, &id);
        match ds.remove_eni(&id, true) {
            Ok(_) => {
                report.removed_enis.push(id);
                report.lost_pod_addresses.extend(lost);
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    for o in observed {
        if ds.eni(&o.spec.id).is_none() {
            match ds.add_eni(o.spec.clone(), now) {
                Ok(()) => report.added_enis.push(o.spec.id.clone()),
                Err(e) => {
                    report.errors.push(e.to_string());
                    continue;
                }
            }
        }
        let have: BTreeSet<Ipv4Cidr> = ds
            .eni(&o.spec.id)
            .map(|e| e.ipv4_cidrs().copied().collect())
            .unwrap_or_default();
        let shown = o.cidrs();
        for c in shown.difference(&have) {
            if pool.recently_freed(c, now) {
                continue;
            }
            let r = if c.is_host() {
                ds.add_ipv4_addresses(&o.spec.id, &[c.addr()])
            } else {
                ds.add_ipv4_prefixes(&o.spec.id, &[*c])
            };
            match r {
                Ok(_) => report.added_blocks.push(*c),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        for c in have.difference(&shown) {
            let lost: Vec<IpAddr> = ds
                .allocations()
                .filter(|(ip, _)| match ip {
                    IpAddr::V4(v4) => c.contains(*v4),
                    IpAddr::V6(_) => false,
                })
                .map(|(ip, _)| *ip)
                .collect();
            match ds.remove_ipv4_cidr(&o.spec.id, *c, true) {
                Ok(_) => {
                    report.removed_blocks.push(*c);
                    report.lost_pod_addresses.extend(lost);
                }
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }
    report
}

fn pod_addresses_on(ds: &Datastore, eni: &str) -> Vec<IpAddr> {
    let Some(e) = ds.eni(eni) else {
        return vec![];
    };
    let cidrs: Vec<Ipv4Cidr> = e.ipv4_cidrs().copied().collect();
    ds.allocations()
        .filter(|(ip, _)| match ip {
            IpAddr::V4(v4) => cidrs.iter().any(|c| c.contains(*v4)),
            IpAddr::V6(_) => false,
        })
        .map(|(ip, _)| *ip)
        .collect()
}
