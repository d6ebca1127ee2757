//! EC2 Query API parameters for each request (pure).

use super::*;
use crate::aws::sigv4::uri_encode;

/// Query parameters, in order.
pub(crate) type Params = Vec<(String, String)>;

/// `Action=...&Version=...&k=v...`, form-encoded.
pub(crate) fn form_body(action: &str, params: &Params) -> String {
    let mut body = format!("Action={action}&Version={API_VERSION}");
    for (k, v) in params {
        body.push('&');
        body.push_str(&uri_encode(k, false));
        body.push('=');
        body.push_str(&uri_encode(v, false));
    }
    body
}

fn push(p: &mut Params, k: impl Into<String>, v: impl std::fmt::Display) {
    p.push((k.into(), v.to_string()));
}

fn push_list<T: std::fmt::Display>(p: &mut Params, prefix: &str, items: &[T]) {
    for (i, item) in items.iter().enumerate() {
        push(p, format!("{prefix}.{}", i + 1), item);
    }
}

fn push_filters(p: &mut Params, filters: &[Filter]) {
    for (i, f) in filters.iter().enumerate() {
        push(p, format!("Filter.{}.Name", i + 1), &f.name);
        for (j, v) in f.values.iter().enumerate() {
            push(p, format!("Filter.{}.Value.{}", i + 1, j + 1), v);
        }
    }
}

fn push_page(p: &mut Params, ids_given: bool, page_size: u32, next_token: Option<&str>) {
    // EC2 refuses MaxResults together with explicit ids.
    if !ids_given {
        push(p, "MaxResults", page_size);
    }
    if let Some(t) = next_token {
        push(p, "NextToken", t);
    }
}

pub(crate) fn describe_network_interfaces(
    req: &DescribeNetworkInterfaces,
    next: Option<&str>,
) -> Params {
    let mut p = Params::new();
    push_list(&mut p, "NetworkInterfaceId", &req.ids);
    push_filters(&mut p, &req.filters);
    push_page(&mut p, !req.ids.is_empty(), PAGE_SIZE, next);
    p
}

pub(crate) fn describe_instances(req: &DescribeInstances, next: Option<&str>) -> Params {
    let mut p = Params::new();
    push_list(&mut p, "InstanceId", &req.ids);
    push_filters(&mut p, &req.filters);
    push_page(&mut p, !req.ids.is_empty(), PAGE_SIZE, next);
    p
}

pub(crate) fn describe_instance_types(types: &[String], next: Option<&str>) -> Params {
    let mut p = Params::new();
    push_list(&mut p, "InstanceType", types);
    // DescribeInstanceTypes pages are at most 100.
    push_page(&mut p, !types.is_empty(), 100, next);
    p
}

pub(crate) fn describe_subnets(req: &DescribeSubnets, next: Option<&str>) -> Params {
    let mut p = Params::new();
    push_list(&mut p, "SubnetId", &req.ids);
    push_filters(&mut p, &req.filters);
    push_page(&mut p, !req.ids.is_empty(), PAGE_SIZE, next);
    p
}

pub(crate) fn create_network_interface(req: &CreateNetworkInterface) -> Params {
    let mut p = Params::new();
    push(&mut p, "SubnetId", &req.subnet_id);
    if !req.description.is_empty() {
        push(&mut p, "Description", &req.description);
    }
    push_list(&mut p, "SecurityGroupId", &req.security_group_ids);
    match req.addresses {
        Addresses::None => {}
        Addresses::SecondaryIpv4(n) => push(&mut p, "SecondaryPrivateIpAddressCount", n),
        Addresses::Ipv4Prefixes(n) => push(&mut p, "Ipv4PrefixCount", n),
        Addresses::Ipv6Addresses(n) => push(&mut p, "Ipv6AddressCount", n),
        Addresses::Ipv6Prefixes(n) => push(&mut p, "Ipv6PrefixCount", n),
    }
    if !req.tags.is_empty() {
        push(
            &mut p,
            "TagSpecification.1.ResourceType",
            "network-interface",
        );
        for (i, t) in req.tags.iter().enumerate() {
            push(
                &mut p,
                format!("TagSpecification.1.Tag.{}.Key", i + 1),
                &t.key,
            );
            push(
                &mut p,
                format!("TagSpecification.1.Tag.{}.Value", i + 1),
                &t.value,
            );
        }
    }
    p
}

pub(crate) fn attach_network_interface(req: &AttachNetworkInterface) -> Params {
    let mut p = Params::new();
    push(&mut p, "NetworkInterfaceId", &req.network_interface_id);
    push(&mut p, "InstanceId", &req.instance_id);
    push(&mut p, "DeviceIndex", req.device_index);
    if let Some(card) = req.network_card_index {
        push(&mut p, "NetworkCardIndex", card);
    }
    p
}

pub(crate) fn modify_network_interface_attribute(req: &ModifyNetworkInterfaceAttribute) -> Params {
    let mut p = Params::new();
    match req {
        ModifyNetworkInterfaceAttribute::DeleteOnTermination {
            network_interface_id,
            attachment_id,
            delete_on_termination,
        } => {
            push(&mut p, "NetworkInterfaceId", network_interface_id);
            push(&mut p, "Attachment.AttachmentId", attachment_id);
            push(
                &mut p,
                "Attachment.DeleteOnTermination",
                delete_on_termination,
            );
        }
        ModifyNetworkInterfaceAttribute::SecurityGroups {
            network_interface_id,
            security_group_ids,
        } => {
            push(&mut p, "NetworkInterfaceId", network_interface_id);
            push_list(&mut p, "SecurityGroupId", security_group_ids);
        }
    }
    p
}

pub(crate) fn assign_private_ip_addresses(req: &AssignPrivateIpAddresses) -> Params {
    let mut p = Params::new();
    push(&mut p, "NetworkInterfaceId", &req.network_interface_id);
    match &req.request {
        AssignIpv4::Count(n) => push(&mut p, "SecondaryPrivateIpAddressCount", n),
        AssignIpv4::PrefixCount(n) => push(&mut p, "Ipv4PrefixCount", n),
        AssignIpv4::Addresses(a) => push_list(&mut p, "PrivateIpAddress", a),
    }
    p
}

pub(crate) fn unassign_private_ip_addresses(req: &UnassignPrivateIpAddresses) -> Params {
    let mut p = Params::new();
    push(&mut p, "NetworkInterfaceId", &req.network_interface_id);
    push_list(&mut p, "PrivateIpAddress", &req.addresses);
    push_list(&mut p, "Ipv4Prefix", &req.prefixes);
    p
}

pub(crate) fn assign_ipv6_addresses(req: &AssignIpv6Addresses) -> Params {
    let mut p = Params::new();
    push(&mut p, "NetworkInterfaceId", &req.network_interface_id);
    match &req.request {
        AssignIpv6::Count(n) => push(&mut p, "Ipv6AddressCount", n),
        AssignIpv6::PrefixCount(n) => push(&mut p, "Ipv6PrefixCount", n),
        AssignIpv6::Addresses(a) => push_list(&mut p, "Ipv6Addresses", a),
    }
    p
}

pub(crate) fn unassign_ipv6_addresses(req: &UnassignIpv6Addresses) -> Params {
    let mut p = Params::new();
    push(&mut p, "NetworkInterfaceId", &req.network_interface_id);
    push_list(&mut p, "Ipv6Addresses", &req.addresses);
    push_list(&mut p, "Ipv6Prefix", &req.prefixes);
    p
}

pub(crate) fn detach_network_interface(req: &DetachNetworkInterface) -> Params {
    let mut p = Params::new();
    push(&mut p, "AttachmentId", &req.attachment_id);
    if req.force {
        push(&mut p, "Force", true);
    }
    p
}

pub(crate) fn delete_network_interface(id: &str) -> Params {
    vec![("NetworkInterfaceId".into(), id.into())]
}

pub(crate) fn create_tags(resources: &[String], tags: &[Tag]) -> Params {
    let mut p = Params::new();
    push_list(&mut p, "ResourceId", resources);
    for (i, t) in tags.iter().enumerate() {
        push(&mut p, format!("Tag.{}.Key", i + 1), &t.key);
        push(&mut p, format!("Tag.{}.Value", i + 1), &t.value);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
        p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn describe_enis_pages_only_without_ids() {
        let req = DescribeNetworkInterfaces {
            ids: vec![],
            filters: vec![
                Filter::new("tag-key", ["node.k8s.amazonaws.com/instance_id"]),
                Filter::new("status", ["available", "in-use"]),
            ],
        };
        let p = describe_network_interfaces(&req, Some("tok"));
        assert_eq!(get(&p, "Filter.1.Name"), Some("tag-key"));
        assert_eq!(get(&p, "Filter.2.Value.2"), Some("in-use"));
        assert_eq!(get(&p, "MaxResults"), Some("1000"));
        assert_eq!(get(&p, "NextToken"), Some("tok"));
        let by_id = DescribeNetworkInterfaces {
            ids: vec!["eni-1".into()],
            filters: vec![],
        };
        let p = describe_network_interfaces(&by_id, None);
        assert_eq!(get(&p, "NetworkInterfaceId.1"), Some("eni-1"));
        assert_eq!(get(&p, "MaxResults"), None);
    }

    #[test]
    fn create_eni_carries_tags_groups_and_one_address_kind() {
        let req = CreateNetworkInterface {
            subnet_id: "subnet-1".into(),
            security_group_ids: vec!["sg-1".into(), "sg-2".into()],
            description: "aws-K8S-i-1".into(),
            tags: vec![Tag::new("node.k8s.amazonaws.com/instance_id", "i-1")],
            addresses: Addresses::Ipv4Prefixes(1),
        };
        let p = create_network_interface(&req);
        assert_eq!(get(&p, "SecurityGroupId.2"), Some("sg-2"));
        assert_eq!(get(&p, "Ipv4PrefixCount"), Some("1"));
        assert_eq!(get(&p, "SecondaryPrivateIpAddressCount"), None);
        assert_eq!(
            get(&p, "TagSpecification.1.ResourceType"),
            Some("network-interface")
        );
        assert_eq!(get(&p, "TagSpecification.1.Tag.1.Value"), Some("i-1"));
    }

    #[test]
    fn form_body_encodes_reserved_characters() {
        let p = vec![
            (
                "Tag.1.Key".to_string(),
                "node.k8s.amazonaws.com/createdAt".to_string(),
            ),
            ("Tag.1.Value".to_string(), "a b&c=d".to_string()),
        ];
        assert_eq!(
            form_body("CreateTags", &p),
            "Action=CreateTags&Version=2016-11-15&Tag.1.Key=node.k8s.amazonaws.com%2FcreatedAt&Tag.1.Value=a%20b%26c%3Dd"
        );
    }

    #[test]
    fn unassign_lists_addresses_and_prefixes() {
        let req = UnassignPrivateIpAddresses {
            network_interface_id: "eni-1".into(),
            addresses: vec!["10.0.0.5".parse().unwrap()],
            prefixes: vec!["10.0.0.16/28".parse().unwrap()],
        };
        let p = unassign_private_ip_addresses(&req);
        assert_eq!(get(&p, "PrivateIpAddress.1"), Some("10.0.0.5"));
        assert_eq!(get(&p, "Ipv4Prefix.1"), Some("10.0.0.16/28"));
        let d = detach_network_interface(&DetachNetworkInterface {
            attachment_id: "a".into(),
            force: true,
        });
        assert_eq!(get(&d, "Force"), Some("true"));
        let m = modify_network_interface_attribute(
            &ModifyNetworkInterfaceAttribute::DeleteOnTermination {
                network_interface_id: "eni-1".into(),
                attachment_id: "eni-attach-1".into(),
                delete_on_termination: true,
            },
        );
        assert_eq!(get(&m, "Attachment.AttachmentId"), Some("eni-attach-1"));
        assert_eq!(get(&m, "Attachment.DeleteOnTermination"), Some("true"));
    }
}
