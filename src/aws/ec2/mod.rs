//! The EC2 calls ipamd makes, as typed requests and responses behind the [`Ec2`] trait.
//!
//! [`Ec2Client`] implements it over the EC2 Query API (SigV4-signed form POSTs, XML answers);
//! ipamd drivers can be tested against a recording fake of the trait instead.

mod client;
mod parse;
mod query;

use std::net::{Ipv4Addr, Ipv6Addr};

pub use client::{ec2_endpoint_for_region, Ec2Client, Ec2Config};
pub use parse::{
    parse_assign_ipv6, parse_assign_private_ips, parse_attach, parse_create_network_interface,
    parse_describe_instance_types, parse_describe_instances, parse_describe_network_interfaces,
    parse_describe_subnets, parse_return, Page,
};

use super::error::Ec2Error;
use crate::net::{Ipv4Cidr, Ipv6Cidr};

/// The EC2 API version every request names.
pub const API_VERSION: &str = "2016-11-15";
/// Page size for the paginated describe calls (upstream uses 1000).
pub const PAGE_SIZE: u32 = 1000;

/// A describe filter, e.g. `tag-key` = `[node.k8s.amazonaws.com/instance_id]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Filter name.
    pub name: String,
    /// Accepted values (OR).
    pub values: Vec<String>,
}

impl Filter {
    /// A filter with one or more values.
    pub fn new(
        name: impl Into<String>,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Filter {
            name: name.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }
}

/// A resource tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tag {
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
}

impl Tag {
    /// A tag.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// One private IPv4 address of an ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateIp {
    /// The address.
    pub address: Ipv4Addr,
    /// Whether it is the ENI's primary address.
    pub primary: bool,
}

/// An ENI's attachment to an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachment {
    /// `eni-attach-...`.
    pub attachment_id: String,
    /// The instance it is attached to.
    pub instance_id: Option<String>,
    /// Device index on the instance.
    pub device_index: Option<u32>,
    /// Network card index (multi-card instances).
    pub network_card_index: Option<u32>,
    /// `attaching`, `attached`, `detaching`, `detached`.
    pub status: String,
    /// Whether the ENI is deleted with the instance.
    pub delete_on_termination: bool,
}

/// A security group reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupIdentifier {
    /// `sg-...`.
    pub id: String,
    /// Group name.
    pub name: String,
}

/// An elastic network interface as EC2 describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkInterface {
    /// `eni-...`.
    pub id: String,
    /// Subnet.
    pub subnet_id: String,
    /// VPC.
    pub vpc_id: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Description (ipamd's start with `aws-K8S-`).
    pub description: String,
    /// MAC address as EC2 spells it.
    pub mac_address: String,
    /// `available`, `in-use`, `attaching`, ...
    pub status: String,
    /// `interface`, `efa`, `trunk`, `branch`, ...
    pub interface_type: String,
    /// Primary private IPv4 address.
    pub private_ip_address: Option<Ipv4Addr>,
    /// All private IPv4 addresses, the primary included.
    pub private_ips: Vec<PrivateIp>,
    /// Delegated IPv4 prefixes.
    pub ipv4_prefixes: Vec<Ipv4Cidr>,
    /// IPv6 addresses.
    pub ipv6_addresses: Vec<Ipv6Addr>,
    /// Delegated IPv6 prefixes.
    pub ipv6_prefixes: Vec<Ipv6Cidr>,
    /// Security groups.
    pub groups: Vec<GroupIdentifier>,
    /// The attachment, when attached.
    pub attachment: Option<Attachment>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Managed by an AWS service.
    pub requester_managed: bool,
}

impl NetworkInterface {
    /// The value of tag `key`, if set.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
}

/// An ENI as listed inside DescribeInstances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceNetworkInterface {
    /// `eni-...`.
    pub id: String,
    /// MAC address.
    pub mac_address: String,
    /// Subnet.
    pub subnet_id: String,
    /// Primary private IPv4 address.
    pub private_ip_address: Option<Ipv4Addr>,
    /// The attachment.
    pub attachment: Option<Attachment>,
    /// `interface`, `efa`, `trunk`, ...
    pub interface_type: String,
}

/// An EC2 instance, with the fields ipamd needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instance {
    /// `i-...`.
    pub id: String,
    /// e.g. `m5.large`.
    pub instance_type: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Primary subnet.
    pub subnet_id: String,
    /// VPC.
    pub vpc_id: String,
    /// Primary private IPv4 address.
    pub private_ip_address: Option<Ipv4Addr>,
    /// `running`, `stopped`, ...
    pub state: String,
    /// Attached ENIs.
    pub network_interfaces: Vec<InstanceNetworkInterface>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// One network card of a multi-card instance type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkCard {
    /// Card index.
    pub index: u32,
    /// ENIs on this card.
    pub maximum_network_interfaces: u32,
}

/// Network limits of an instance type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceTypeInfo {
    /// e.g. `m5.large`.
    pub instance_type: String,
    /// `nitro`, `xen`, or empty for bare metal.
    pub hypervisor: String,
    /// Bare-metal type.
    pub bare_metal: bool,
    /// ENIs per instance.
    pub maximum_network_interfaces: u32,
    /// IPv4 addresses per ENI.
    pub ipv4_addresses_per_interface: u32,
    /// IPv6 addresses per ENI.
    pub ipv6_addresses_per_interface: u32,
    /// IPv6 supported.
    pub ipv6_supported: bool,
    /// Default network card.
    pub default_network_card_index: u32,
    /// Cards (one for most types).
    pub network_cards: Vec<NetworkCard>,
    /// EFA supported.
    pub efa_supported: bool,
}

/// A subnet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subnet {
    /// `subnet-...`.
    pub id: String,
    /// VPC.
    pub vpc_id: String,
    /// IPv4 CIDR.
    pub cidr_block: Option<Ipv4Cidr>,
    /// IPv6 CIDRs (associated).
    pub ipv6_cidr_blocks: Vec<Ipv6Cidr>,
    /// Availability zone.
    pub availability_zone: String,
    /// Free IPv4 addresses.
    pub available_ip_address_count: u32,
    /// Tags (`kubernetes.io/role/cni` marks subnets for ENIs).
    pub tags: Vec<Tag>,
}

/// DescribeNetworkInterfaces: by id and/or filters; all pages are fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DescribeNetworkInterfaces {
    /// ENI ids (empty = all that match the filters).
    pub ids: Vec<String>,
    /// Filters.
    pub filters: Vec<Filter>,
}

/// DescribeInstances: by id and/or filters; all pages are fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DescribeInstances {
    /// Instance ids.
    pub ids: Vec<String>,
    /// Filters.
    pub filters: Vec<Filter>,
}

/// DescribeSubnets: by id and/or filters; all pages are fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DescribeSubnets {
    /// Subnet ids.
    pub ids: Vec<String>,
    /// Filters (e.g. `vpc-id`, `tag:kubernetes.io/role/cni`).
    pub filters: Vec<Filter>,
}

/// What to put on a new ENI (or assign to an existing one) besides its primary address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// Nothing besides the primary address.
    None,
    /// This many secondary IPv4 addresses.
    SecondaryIpv4(u32),
    /// This many /28 IPv4 prefixes (prefix delegation).
    Ipv4Prefixes(u32),
    /// This many IPv6 addresses.
    Ipv6Addresses(u32),
    /// This many /80 IPv6 prefixes.
    Ipv6Prefixes(u32),
}

/// CreateNetworkInterface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateNetworkInterface {
    /// Subnet to create it in.
    pub subnet_id: String,
    /// Security groups (empty = the VPC default).
    pub security_group_ids: Vec<String>,
    /// Description (`aws-K8S-<instance id>` upstream).
    pub description: String,
    /// Tags applied at creation (TagSpecifications).
    pub tags: Vec<Tag>,
    /// Extra addresses to allocate with it.
    pub addresses: Addresses,
}

/// AttachNetworkInterface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachNetworkInterface {
    /// ENI.
    pub network_interface_id: String,
    /// Instance.
    pub instance_id: String,
    /// Device index (a free one).
    pub device_index: u32,
    /// Network card (None = default card).
    pub network_card_index: Option<u32>,
}

/// ModifyNetworkInterfaceAttribute: the attributes ipamd changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModifyNetworkInterfaceAttribute {
    /// Set DeleteOnTermination on the attachment.
    DeleteOnTermination {
        /// ENI.
        network_interface_id: String,
        /// `eni-attach-...`.
        attachment_id: String,
        /// New value.
        delete_on_termination: bool,
    },
    /// Replace the security groups.
    SecurityGroups {
        /// ENI.
        network_interface_id: String,
        /// New groups.
        security_group_ids: Vec<String>,
    },
}

/// AssignPrivateIpAddresses: a count of addresses, a count of /28 prefixes, or specific ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignPrivateIpAddresses {
    /// ENI.
    pub network_interface_id: String,
    /// What to assign.
    pub request: AssignIpv4,
}

/// What AssignPrivateIpAddresses asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignIpv4 {
    /// This many secondary addresses, chosen by EC2.
    Count(u32),
    /// This many /28 prefixes, chosen by EC2.
    PrefixCount(u32),
    /// These addresses.
    Addresses(Vec<Ipv4Addr>),
}

/// What AssignPrivateIpAddresses assigned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignedIpv4 {
    /// New addresses.
    pub addresses: Vec<Ipv4Addr>,
    /// New prefixes.
    pub prefixes: Vec<Ipv4Cidr>,
}

/// UnassignPrivateIpAddresses: addresses and/or prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnassignPrivateIpAddresses {
    /// ENI.
    pub network_interface_id: String,
    /// Addresses to release.
    pub addresses: Vec<Ipv4Addr>,
    /// Prefixes to release.
    pub prefixes: Vec<Ipv4Cidr>,
}

/// AssignIpv6Addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignIpv6Addresses {
    /// ENI.
    pub network_interface_id: String,
    /// What to assign.
    pub request: AssignIpv6,
}

/// What AssignIpv6Addresses asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignIpv6 {
    /// This many addresses.
    Count(u32),
    /// This many /80 prefixes.
    PrefixCount(u32),
    /// These addresses.
    Addresses(Vec<Ipv6Addr>),
}

/// What AssignIpv6Addresses assigned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignedIpv6 {
    /// New addresses.
    pub addresses: Vec<Ipv6Addr>,
    /// New prefixes.
    pub prefixes: Vec<Ipv6Cidr>,
}

/// UnassignIpv6Addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnassignIpv6Addresses {
    /// ENI.
    pub network_interface_id: String,
    /// Addresses to release.
    pub addresses: Vec<Ipv6Addr>,
    /// Prefixes to release.
    pub prefixes: Vec<Ipv6Cidr>,
}

/// DetachNetworkInterface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachNetworkInterface {
    /// `eni-attach-...`.
    pub attachment_id: String,
    /// Force the detachment.
    pub force: bool,
}

/// Every EC2 call ipamd makes. Implemented by [`Ec2Client`]; fakes implement it in driver tests.
pub trait Ec2: Send + Sync {
    /// DescribeInstances, all pages.
    fn describe_instances(&self, req: &DescribeInstances) -> Result<Vec<Instance>, Ec2Error>;
    /// DescribeInstanceTypes for these types, all pages.
    fn describe_instance_types(
        &self,
        instance_types: &[String],
    ) -> Result<Vec<InstanceTypeInfo>, Ec2Error>;
    /// DescribeSubnets, all pages.
    fn describe_subnets(&self, req: &DescribeSubnets) -> Result<Vec<Subnet>, Ec2Error>;
    /// DescribeNetworkInterfaces, all pages (MaxResults 1000).
    fn describe_network_interfaces(
        &self,
        req: &DescribeNetworkInterfaces,
    ) -> Result<Vec<NetworkInterface>, Ec2Error>;
    /// CreateNetworkInterface; returns the new ENI.
    fn create_network_interface(
        &self,
        req: &CreateNetworkInterface,
    ) -> Result<NetworkInterface, Ec2Error>;
    /// AttachNetworkInterface; returns the attachment id.
    fn attach_network_interface(&self, req: &AttachNetworkInterface) -> Result<String, Ec2Error>;
    /// ModifyNetworkInterfaceAttribute.
    fn modify_network_interface_attribute(
        &self,
        req: &ModifyNetworkInterfaceAttribute,
    ) -> Result<(), Ec2Error>;
    /// AssignPrivateIpAddresses; returns what was assigned.
    fn assign_private_ip_addresses(
        &self,
        req: &AssignPrivateIpAddresses,
    ) -> Result<AssignedIpv4, Ec2Error>;
    /// UnassignPrivateIpAddresses.
    fn unassign_private_ip_addresses(
        &self,
        req: &UnassignPrivateIpAddresses,
    ) -> Result<(), Ec2Error>;
    /// AssignIpv6Addresses; returns what was assigned.
    fn assign_ipv6_addresses(&self, req: &AssignIpv6Addresses) -> Result<AssignedIpv6, Ec2Error>;
    /// UnassignIpv6Addresses.
    fn unassign_ipv6_addresses(&self, req: &UnassignIpv6Addresses) -> Result<(), Ec2Error>;
    /// DetachNetworkInterface.
    fn detach_network_interface(&self, req: &DetachNetworkInterface) -> Result<(), Ec2Error>;
    /// DeleteNetworkInterface.
    fn delete_network_interface(&self, network_interface_id: &str) -> Result<(), Ec2Error>;
    /// CreateTags on these resources.
    fn create_tags(&self, resource_ids: &[String], tags: &[Tag]) -> Result<(), Ec2Error>;
}
