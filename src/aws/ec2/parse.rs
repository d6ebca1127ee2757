//! EC2 response parsers over the streaming XML walk (pure).
//!
//! Paths are matched below the root element, so the root's name and namespace do not matter.
//! Unknown elements are skipped; a value of the wrong shape (an address that is not one) is an
//! error naming the element and the value.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::*;
use crate::aws::xml::{walk, Step};

/// One page of a describe call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// The token for the next page, if there is one.
    pub next_token: Option<String>,
    /// EC2's request id.
    pub request_id: Option<String>,
}

/// Collects the first bad value seen.
#[derive(Default)]
struct Errs(Option<String>);

impl Errs {
    fn parse<T: FromStr>(&mut self, text: &str, element: &str, expected: &str) -> Option<T> {
        match text.trim().parse() {
            Ok(v) => Some(v),
            Err(_) => {
                if self.0.is_none() {
                    self.0 = Some(format!(
                        "<{element}> is {:?}, expected {expected}",
                        text.trim()
                    ));
                }
                None
            }
        }
    }
    fn ipv4(&mut self, text: &str, element: &str) -> Option<Ipv4Addr> {
        self.parse(text, element, "an IPv4 address")
    }
    fn ipv6(&mut self, text: &str, element: &str) -> Option<Ipv6Addr> {
        self.parse(text, element, "an IPv6 address")
    }
    fn u32(&mut self, text: &str, element: &str) -> u32 {
        self.parse(text, element, "a non-negative integer")
            .unwrap_or(0)
    }
    fn done<T>(self, walked: Result<(), crate::aws::xml::XmlError>, v: T) -> Result<T, String> {
        walked.map_err(|e| e.to_string())?;
        match self.0 {
            Some(e) => Err(e),
            None => Ok(v),
        }
    }
}

fn truthy(text: &str) -> bool {
    text.trim().eq_ignore_ascii_case("true")
}

/// Scratch state for list items inside an ENI or instance.
#[derive(Default)]
struct ItemScratch {
    ip: Option<Ipv4Addr>,
    primary: bool,
    group_id: String,
    group_name: String,
    key: String,
    value: String,
}

fn attachment_field(att: &mut Attachment, field: &str, text: &str, errs: &mut Errs) {
    match field {
        "attachmentId" => att.attachment_id = text.trim().to_string(),
        "instanceId" => att.instance_id = Some(text.trim().to_string()),
        "deviceIndex" => att.device_index = Some(errs.u32(text, "deviceIndex")),
        "networkCardIndex" => att.network_card_index = Some(errs.u32(text, "networkCardIndex")),
        "status" => att.status = text.trim().to_string(),
        "deleteOnTermination" => att.delete_on_termination = truthy(text),
        _ => {}
    }
}

fn tag_end(tags: &mut Vec<Tag>, scratch: &mut ItemScratch, rel: &[&str], text: &str) -> bool {
    match rel {
        ["tagSet", "item", "key"] => scratch.key = text.to_string(),
        ["tagSet", "item", "value"] => scratch.value = text.to_string(),
        ["tagSet", "item"] => tags.push(Tag {
            key: std::mem::take(&mut scratch.key),
            value: std::mem::take(&mut scratch.value),
        }),
        _ => return false,
    }
    true
}

/// Applies the end of an element at `rel` (relative to the ENI element) to `eni`.
fn eni_end(
    eni: &mut NetworkInterface,
    s: &mut ItemScratch,
    rel: &[&str],
    text: &str,
    errs: &mut Errs,
) {
    if tag_end(&mut eni.tags, s, rel, text) {
        return;
    }
    let t = text.trim();
    match rel {
        ["networkInterfaceId"] => eni.id = t.to_string(),
        ["subnetId"] => eni.subnet_id = t.to_string(),
        ["vpcId"] => eni.vpc_id = t.to_string(),
        ["availabilityZone"] => eni.availability_zone = t.to_string(),
        ["description"] => eni.description = text.to_string(),
        ["macAddress"] => eni.mac_address = t.to_string(),
        ["status"] => eni.status = t.to_string(),
        ["interfaceType"] => eni.interface_type = t.to_string(),
        ["requesterManaged"] => eni.requester_managed = truthy(t),
        ["privateIpAddress"] => eni.private_ip_address = errs.ipv4(t, "privateIpAddress"),
        ["privateIpAddressesSet", "item", "privateIpAddress"] => {
            s.ip = errs.ipv4(t, "privateIpAddress")
        }
        ["privateIpAddressesSet", "item", "primary"] => s.primary = truthy(t),
        ["privateIpAddressesSet", "item"] => {
            if let Some(address) = s.ip.take() {
                eni.private_ips.push(PrivateIp {
                    address,
                    primary: std::mem::take(&mut s.primary),
                });
            }
        }
        ["ipv6AddressesSet", "item", "ipv6Address"] => {
            eni.ipv6_addresses.extend(errs.ipv6(t, "ipv6Address"))
        }
        ["ipv4PrefixSet", "item", "ipv4Prefix"] => eni
            .ipv4_prefixes
            .extend(errs.parse::<Ipv4Cidr>(t, "ipv4Prefix", "an IPv4 CIDR")),
        ["ipv6PrefixSet", "item", "ipv6Prefix"] => eni
            .ipv6_prefixes
            .extend(errs.parse::<Ipv6Cidr>(t, "ipv6Prefix", "an IPv6 CIDR")),
        ["groupSet", "item", "groupId"] => s.group_id = t.to_string(),
        ["groupSet", "item", "groupName"] => s.group_name = t.to_string(),
        ["groupSet", "item"] => eni.groups.push(GroupIdentifier {
            id: std::mem::take(&mut s.group_id),
            name: std::mem::take(&mut s.group_name),
        }),
        ["attachment", field] => attachment_field(
            eni.attachment.get_or_insert_with(Attachment::default),
            field,
            t,
            errs,
        ),
        _ => {}
    }
}

fn top_level(rel: &[&str], text: &str, next: &mut Option<String>, request_id: &mut Option<String>) {
    match rel {
        ["nextToken"] if !text.trim().is_empty() => *next = Some(text.trim().to_string()),
        ["requestId"] => *request_id = Some(text.trim().to_string()),
        _ => {}
    }
}

/// DescribeNetworkInterfaces.
pub fn parse_describe_network_interfaces(body: &str) -> Result<Page<NetworkInterface>, String> {
    let mut page = Page::default();
    let mut cur: Option<NetworkInterface> = None;
    let mut s = ItemScratch::default();
    let mut errs = Errs::default();
    let walked = walk(body, |step| match step {
        Step::Start(path) => {
            if let [_, "networkInterfaceSet", "item"] = path {
                cur = Some(NetworkInterface::default());
            }
        }
        Step::End(path, text) => match path {
            [_, "networkInterfaceSet", "item"] => page.items.extend(cur.take()),
            [_, "networkInterfaceSet", "item", rel @ ..] => {
                if let Some(eni) = cur.as_mut() {
                    eni_end(eni, &mut s, rel, text, &mut errs);
                }
            }
            [_, rel @ ..] => top_level(rel, text, &mut page.next_token, &mut page.request_id),
            _ => {}
        },
    });
    errs.done(walked, page)
}

/// CreateNetworkInterface: the new ENI.
pub fn parse_create_network_interface(body: &str) -> Result<NetworkInterface, String> {
    let mut eni = NetworkInterface::default();
    let mut s = ItemScratch::default();
    let mut errs = Errs::default();
    let walked = walk(body, |step| {
        if let Step::End([_, "networkInterface", rel @ ..], text) = step {
            eni_end(&mut eni, &mut s, rel, text, &mut errs);
        }
    });
    let eni = errs.done(walked, eni)?;
    if eni.id.is_empty() {
        return Err("no <networkInterface><networkInterfaceId> in the answer".into());
    }
    Ok(eni)
}

fn instance_end(
    inst: &mut Instance,
    nic: &mut Option<InstanceNetworkInterface>,
    s: &mut ItemScratch,
    rel: &[&str],
    text: &str,
    errs: &mut Errs,
) {
    if tag_end(&mut inst.tags, s, rel, text) {
        return;
    }
    let t = text.trim();
    match rel {
        ["instanceId"] => inst.id = t.to_string(),
        ["instanceType"] => inst.instance_type = t.to_string(),
        ["placement", "availabilityZone"] => inst.availability_zone = t.to_string(),
        ["subnetId"] => inst.subnet_id = t.to_string(),
        ["vpcId"] => inst.vpc_id = t.to_string(),
        ["privateIpAddress"] => inst.private_ip_address = errs.ipv4(t, "privateIpAddress"),
        ["instanceState", "name"] => inst.state = t.to_string(),
        ["networkInterfaceSet", "item"] => inst.network_interfaces.extend(nic.take()),
        ["networkInterfaceSet", "item", field @ ..] => {
            let n = nic.get_or_insert_with(InstanceNetworkInterface::default);
            match field {
                ["networkInterfaceId"] => n.id = t.to_string(),
                ["macAddress"] => n.mac_address = t.to_string(),
                ["subnetId"] => n.subnet_id = t.to_string(),
                ["interfaceType"] => n.interface_type = t.to_string(),
                ["privateIpAddress"] => n.private_ip_address = errs.ipv4(t, "privateIpAddress"),
                ["attachment", f] => attachment_field(
                    n.attachment.get_or_insert_with(Attachment::default),
                    f,
                    t,
                    errs,
                ),
                _ => {}
            }
        }
        _ => {}
    }
}

/// DescribeInstances: the instances of all reservations on this page.
pub fn parse_describe_instances(body: &str) -> Result<Page<Instance>, String> {
    let mut page = Page::default();
    let mut cur: Option<Instance> = None;
    let mut nic: Option<InstanceNetworkInterface> = None;
    let mut s = ItemScratch::default();
    let mut errs = Errs::default();
    let walked = walk(body, |step| match step {
        Step::Start([_, "reservationSet", "item", "instancesSet", "item"]) => {
            cur = Some(Instance::default())
        }
        Step::Start(_) => {}
        Step::End(path, text) => match path {
            [_, "reservationSet", "item", "instancesSet", "item"] => page.items.extend(cur.take()),
            [_, "reservationSet", "item", "instancesSet", "item", rel @ ..] => {
                if let Some(inst) = cur.as_mut() {
                    instance_end(inst, &mut nic, &mut s, rel, text, &mut errs);
                }
            }
            [_, rel @ ..] => top_level(rel, text, &mut page.next_token, &mut page.request_id),
            _ => {}
        },
    });
    errs.done(walked, page)
}

/// DescribeInstanceTypes.
pub fn parse_describe_instance_types(body: &str) -> Result<Page<InstanceTypeInfo>, String> {
    let mut page = Page::default();
    let mut cur: Option<InstanceTypeInfo> = None;
    let mut card = NetworkCard::default();
    let mut errs = Errs::default();
    let walked = walk(body, |step| match step {
        Step::Start([_, "instanceTypeSet", "item"]) => cur = Some(InstanceTypeInfo::default()),
        Step::Start(_) => {}
        Step::End(path, text) => match path {
            [_, "instanceTypeSet", "item"] => page.items.extend(cur.take()),
            [_, "instanceTypeSet", "item", rel @ ..] => {
                let Some(it) = cur.as_mut() else { return };
                let t = text.trim();
                match rel {
                    ["instanceType"] => it.instance_type = t.to_string(),
                    ["hypervisor"] => it.hypervisor = t.to_string(),
                    ["bareMetal"] => it.bare_metal = truthy(t),
                    ["networkInfo", "maximumNetworkInterfaces"] => {
                        it.maximum_network_interfaces = errs.u32(t, "maximumNetworkInterfaces")
                    }
                    ["networkInfo", "ipv4AddressesPerInterface"] => {
                        it.ipv4_addresses_per_interface = errs.u32(t, "ipv4AddressesPerInterface")
                    }
                    ["networkInfo", "ipv6AddressesPerInterface"] => {
                        it.ipv6_addresses_per_interface = errs.u32(t, "ipv6AddressesPerInterface")
                    }
                    ["networkInfo", "ipv6Supported"] => it.ipv6_supported = truthy(t),
                    ["networkInfo", "efaSupported"] => it.efa_supported = truthy(t),
                    ["networkInfo", "defaultNetworkCardIndex"] => {
                        it.default_network_card_index = errs.u32(t, "defaultNetworkCardIndex")
                    }
                    ["networkInfo", "networkCards", "item", "networkCardIndex"] => {
                        card.index = errs.u32(t, "networkCardIndex")
                    }
                    ["networkInfo", "networkCards", "item", "maximumNetworkInterfaces"] => {
                        card.maximum_network_interfaces = errs.u32(t, "maximumNetworkInterfaces")
                    }
                    ["networkInfo", "networkCards", "item"] => {
                        it.network_cards.push(std::mem::take(&mut card))
                    }
                    _ => {}
                }
            }
            [_, rel @ ..] => top_level(rel, text, &mut page.next_token, &mut page.request_id),
            _ => {}
        },
    });
    errs.done(walked, page)
}

/// DescribeSubnets.
pub fn parse_describe_subnets(body: &str) -> Result<Page<Subnet>, String> {
    let mut page = Page::default();
    let mut cur: Option<Subnet> = None;
    let mut s = ItemScratch::default();
    let mut ipv6: Option<Ipv6Cidr> = None;
    let mut ipv6_state = String::new();
    let mut errs = Errs::default();
    let walked = walk(body, |step| match step {
        Step::Start([_, "subnetSet", "item"]) => cur = Some(Subnet::default()),
        Step::Start(_) => {}
        Step::End(path, text) => match path {
            [_, "subnetSet", "item"] => page.items.extend(cur.take()),
            [_, "subnetSet", "item", rel @ ..] => {
                let Some(sn) = cur.as_mut() else { return };
                if tag_end(&mut sn.tags, &mut s, rel, text) {
                    return;
                }
                let t = text.trim();
                match rel {
                    ["subnetId"] => sn.id = t.to_string(),
                    ["vpcId"] => sn.vpc_id = t.to_string(),
                    ["cidrBlock"] => sn.cidr_block = errs.parse(t, "cidrBlock", "an IPv4 CIDR"),
                    ["availabilityZone"] => sn.availability_zone = t.to_string(),
                    ["availableIpAddressCount"] => {
                        sn.available_ip_address_count = errs.u32(t, "availableIpAddressCount")
                    }
                    ["ipv6CidrBlockAssociationSet", "item", "ipv6CidrBlock"] => {
                        ipv6 = errs.parse(t, "ipv6CidrBlock", "an IPv6 CIDR")
                    }
                    ["ipv6CidrBlockAssociationSet", "item", "ipv6CidrBlockState", "state"] => {
                        ipv6_state = t.to_string()
                    }
                    ["ipv6CidrBlockAssociationSet", "item"] => {
                        let state = std::mem::take(&mut ipv6_state);
                        if let Some(c) = ipv6.take() {
                            // Real EC2 says `associated`; moto 5.2 writes a dict repr
                            // (`{'State': 'associated'}`), so look for the word.
                            let associated = state
                                .split(|c: char| !c.is_ascii_alphanumeric())
                                .any(|w| w == "associated");
                            if state.is_empty() || associated {
                                sn.ipv6_cidr_blocks.push(c);
                            }
                        }
                    }
                    _ => {}
                }
            }
            [_, rel @ ..] => top_level(rel, text, &mut page.next_token, &mut page.request_id),
            _ => {}
        },
    });
    errs.done(walked, page)
}

/// AttachNetworkInterface: the attachment id.
pub fn parse_attach(body: &str) -> Result<String, String> {
    let mut id = String::new();
    let walked = walk(body, |step| {
        if let Step::End([_, "attachmentId"], text) = step {
            id = text.trim().to_string();
        }
    });
    walked.map_err(|e| e.to_string())?;
    if id.is_empty() {
        return Err("no <attachmentId> in the answer".into());
    }
    Ok(id)
}

/// AssignPrivateIpAddresses: the addresses and prefixes assigned by this call.
pub fn parse_assign_private_ips(body: &str) -> Result<AssignedIpv4, String> {
    let mut out = AssignedIpv4::default();
    let mut errs = Errs::default();
    let walked = walk(body, |step| {
        if let Step::End(path, text) = step {
            match path {
                [_, "assignedPrivateIpAddressesSet", "item", "privateIpAddress"] => {
                    out.addresses.extend(errs.ipv4(text, "privateIpAddress"))
                }
                [_, "assignedIpv4PrefixSet", "item", "ipv4Prefix"] => out
                    .prefixes
                    .extend(errs.parse::<Ipv4Cidr>(text, "ipv4Prefix", "an IPv4 CIDR")),
                _ => {}
            }
        }
    });
    errs.done(walked, out)
}

/// AssignIpv6Addresses: the addresses and prefixes assigned by this call.
pub fn parse_assign_ipv6(body: &str) -> Result<AssignedIpv6, String> {
    let mut out = AssignedIpv6::default();
    let mut errs = Errs::default();
    let walked = walk(body, |step| {
        if let Step::End(path, text) = step {
            match path {
                [_, "assignedIpv6Addresses", "item"] => out
                    .addresses
                    .extend(errs.ipv6(text, "assignedIpv6Addresses")),
                [_, "assignedIpv6PrefixSet", "item"] => out
                    .prefixes
                    .extend(errs.parse::<Ipv6Cidr>(text, "assignedIpv6PrefixSet", "an IPv6 CIDR")),
                _ => {}
            }
        }
    });
    errs.done(walked, out)
}

/// Calls that answer `<return>true</return>`: `false` is an error; a missing `<return>` is
/// accepted (moto leaves it out of some answers).
pub fn parse_return(body: &str) -> Result<(), String> {
    let mut ret: Option<bool> = None;
    let walked = walk(body, |step| {
        if let Step::End([_, "return"], text) = step {
            ret = Some(truthy(text));
        }
    });
    walked.map_err(|e| e.to_string())?;
    match ret {
        Some(false) => Err("EC2 answered <return>false</return>".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
