//! Instance-type limits (ENIs, addresses per ENI, network cards) and the kubelet max-pods computation.
//!
//! The table is compiled in: build.rs turns data/instance-types.tsv (made by scripts/gen-instance-types from
//! DescribeInstanceTypes data) into a static array sorted by name, searched with a binary search. Everything here
//! is pure; ipamd uses [`lookup`] for its own limits and [`max_pods`] for its pod ceiling, the CLI for
//! `vpc-cni max-pods`.

/// Addresses in one /28 prefix (prefix delegation).
pub const IPS_PER_PREFIX: u32 = 16;
/// max-pods ceiling for instance types with at most [`CAP_VCPU_THRESHOLD`] vCPUs (EKS max-pods calculator).
pub const MAX_PODS_CAP_SMALL: u32 = 110;
/// max-pods ceiling for instance types with more than [`CAP_VCPU_THRESHOLD`] vCPUs.
pub const MAX_PODS_CAP_LARGE: u32 = 250;
/// vCPU count above which the larger ceiling applies.
pub const CAP_VCPU_THRESHOLD: u16 = 30;

/// A compiled table row; see build.rs for the layout.
#[derive(Debug)]
struct Row {
    /// (offset, length) of the name in `NAMES`.
    name: (u32, u8),
    enis: u8,
    ipv4: u16,
    ipv6: u16,
    default_card: u8,
    /// (offset, count) in `CARD_ENIS`.
    cards: (u16, u8),
    vcpus: u16,
    /// bits 0-1: hypervisor (0 Xen, 1 Nitro, 2 none reported); bit 2: bare metal.
    flags: u8,
}

include!(concat!(env!("OUT_DIR"), "/instance_types.rs"));

/// The hypervisor an instance type runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypervisor {
    /// AWS Nitro.
    Nitro,
    /// Xen (older generations).
    Xen,
    /// None reported: bare metal.
    None,
}

/// What EC2 allows for one instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceLimits {
    /// Instance type name, e.g. `m5.large`.
    pub name: &'static str,
    /// Maximum ENIs on the default network card (the only card used for pods unless ENABLE_MULTI_NIC).
    pub enis: u8,
    /// IPv4 addresses per ENI, the ENI's primary address included.
    pub ipv4_per_eni: u16,
    /// IPv6 addresses per ENI (0 when IPv6 is unsupported).
    pub ipv6_per_eni: u16,
    /// Index of the default network card.
    pub default_card: u8,
    /// Maximum ENIs per network card, card 0 first.
    pub card_enis: &'static [u8],
    /// Default vCPU count.
    pub vcpus: u16,
    /// Hypervisor.
    pub hypervisor: Hypervisor,
    /// Bare-metal instance type.
    pub bare_metal: bool,
}

impl InstanceLimits {
    /// Limits not from the table: a Nitro type with one network card of `enis` ENIs and
    /// `ipv4_per_eni` addresses per ENI (the ENI's primary included), `vcpus` 2.
    pub const fn simple(name: &'static str, enis: u8, ipv4_per_eni: u16) -> InstanceLimits {
        InstanceLimits {
            name,
            enis,
            ipv4_per_eni,
            ipv6_per_eni: ipv4_per_eni,
            default_card: 0,
            card_enis: &[],
            vcpus: 2,
            hypervisor: Hypervisor::Nitro,
            bare_metal: false,
        }
    }

    /// Number of network cards.
    pub fn network_cards(&self) -> usize {
        self.card_enis.len()
    }

    /// ENIs over all network cards.
    pub fn total_enis(&self) -> u32 {
        self.card_enis.iter().map(|&n| u32::from(n)).sum()
    }

    /// Whether ipamd can use /28 prefixes here: Nitro or bare metal, as upstream's `IsPrefixDelegationSupported`.
    pub fn supports_prefix_delegation(&self) -> bool {
        self.hypervisor == Hypervisor::Nitro || self.bare_metal
    }

    /// Secondary IPv4 addresses (or, with prefix delegation, prefixes) one ENI can hold: all but the primary.
    pub fn secondary_ipv4_per_eni(&self) -> u32 {
        u32::from(self.ipv4_per_eni).saturating_sub(1)
    }
}

fn row_limits(row: &Row) -> Option<InstanceLimits> {
    let (at, len) = row.name;
    let at = usize::try_from(at).ok()?;
    let name = NAMES.get(at..at + usize::from(len))?;
    let (cat, count) = row.cards;
    let card_enis = CARD_ENIS.get(usize::from(cat)..usize::from(cat) + usize::from(count))?;
    let hypervisor = match row.flags & 3 {
        0 => Hypervisor::Xen,
        1 => Hypervisor::Nitro,
        _ => Hypervisor::None,
    };
    Some(InstanceLimits {
        name,
        enis: row.enis,
        ipv4_per_eni: row.ipv4,
        ipv6_per_eni: row.ipv6,
        default_card: row.default_card,
        card_enis,
        vcpus: row.vcpus,
        hypervisor,
        bare_metal: row.flags & 4 != 0,
    })
}

fn row_name(row: &Row) -> &'static str {
    let (at, len) = row.name;
    usize::try_from(at)
        .ok()
        .and_then(|at| NAMES.get(at..at + usize::from(len)))
        .unwrap_or("")
}

/// The limits of an instance type, or None when the table does not know it (upstream then asks EC2's
/// DescribeInstanceTypes at run time).
pub fn lookup(instance_type: &str) -> Option<InstanceLimits> {
    let i = ROWS
        .binary_search_by(|row| row_name(row).cmp(instance_type))
        .ok()?;
    ROWS.get(i).and_then(row_limits)
}

/// Every instance type in the table, sorted by name.
pub fn all() -> impl Iterator<Item = InstanceLimits> {
    ROWS.iter().filter_map(row_limits)
}

/// Number of instance types in the table.
pub fn count() -> usize {
    ROWS.len()
}

/// Inputs of the max-pods computation (the EKS max-pods calculator's options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaxPodsOptions {
    /// ENABLE_PREFIX_DELEGATION: count /28 prefixes instead of addresses (only where supported).
    pub prefix_delegation: bool,
    /// Custom networking: the primary ENI carries no pod addresses.
    pub custom_networking: bool,
    /// MAX_ENI: use at most this many ENIs (never more than the instance type allows).
    pub max_eni: Option<u32>,
    /// Report the formula's value without the 110/250 ceiling.
    pub show_max_allowed: bool,
}

/// How the pod addresses are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMode {
    /// One secondary IPv4 address per pod: ENIs × (addresses per ENI − 1) + 2.
    SecondaryIp,
    /// /28 prefixes: ENIs × ((addresses per ENI − 1) × 16) + 2.
    Prefix,
}

/// The result of [`max_pods`], with the intermediate figures a user may want to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPods {
    /// The kubelet --max-pods value.
    pub value: u32,
    /// The formula's value before the ceiling.
    pub uncapped: u32,
    /// The ceiling that applied (None with `show_max_allowed`).
    pub cap: Option<u32>,
    /// ENIs counted for pods (after MAX_ENI and custom networking).
    pub enis_for_pods: u32,
    /// The counting mode used.
    pub mode: AddressMode,
    /// Prefix delegation was asked for but the instance type cannot do it, so secondary addresses were counted.
    pub prefix_delegation_unsupported: bool,
}

/// The kubelet --max-pods value for an instance type, as the EKS max-pods calculator computes it:
/// ENIs on the default card (capped by `max_eni`, minus one with custom networking) × (IPv4 per ENI − 1) + 2,
/// or × 16 per address slot with prefix delegation on instance types that support it; then at most 110
/// (≤ 30 vCPUs) or 250 (> 30 vCPUs) unless `show_max_allowed`. The + 2 are the host-network pods (aws-node and
/// kube-proxy) that need no address of their own.
pub fn max_pods(limits: &InstanceLimits, opts: &MaxPodsOptions) -> MaxPods {
    let mut enis = u32::from(limits.enis);
    if let Some(cap) = opts.max_eni {
        enis = enis.min(cap);
    }
    if opts.custom_networking {
        enis = enis.saturating_sub(1);
    }
    let slots = limits.secondary_ipv4_per_eni();
    let pd = opts.prefix_delegation && limits.supports_prefix_delegation();
    let (mode, per_eni) = if pd {
        (AddressMode::Prefix, slots.saturating_mul(IPS_PER_PREFIX))
    } else {
        (AddressMode::SecondaryIp, slots)
    };
    let uncapped = enis.saturating_mul(per_eni).saturating_add(2);
    let ceiling = if limits.vcpus > CAP_VCPU_THRESHOLD {
        MAX_PODS_CAP_LARGE
    } else {
        MAX_PODS_CAP_SMALL
    };
    let cap = (!opts.show_max_allowed).then_some(ceiling);
    MaxPods {
        value: cap.map_or(uncapped, |c| uncapped.min(c)),
        uncapped,
        cap,
        enis_for_pods: enis,
        mode,
        prefix_delegation_unsupported: opts.prefix_delegation && !pd,
    }
}

/// Upstream's eni-max-pods.txt value: ENIs on the default card × (IPv4 per ENI − 1) + 2, no ceiling.
pub fn eni_max_pods(limits: &InstanceLimits) -> u32 {
    u32::from(limits.enis) * limits.secondary_ipv4_per_eni() + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn table_is_sorted_unique_and_every_row_decodes() {
        let names: Vec<&str> = all().map(|l| l.name).collect();
        assert_eq!(names.len(), count());
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        for l in all() {
            assert_eq!(lookup(l.name), Some(l));
            assert_eq!(l.card_enis.get(usize::from(l.default_card)), Some(&l.enis));
        }
    }

    #[test]
    fn unknown_and_near_miss_names_are_not_found() {
        assert_eq!(lookup(""), None);
        assert_eq!(lookup("m5.larg"), None);
        assert_eq!(lookup("m5.large "), None);
        assert_eq!(lookup("M5.LARGE"), None);
        assert_eq!(lookup("zzzz.huge"), None);
    }
}
