//! Parsers against EC2 answers in the documented shapes (fixtures under `tests/data/ec2/`).

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/ec2/",
            $name
        ))
    };
}

#[test]
fn describe_network_interfaces_reads_every_field_ipamd_uses() {
    let page =
        parse_describe_network_interfaces(fixture!("describe-network-interfaces.xml")).unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(
        page.next_token.as_deref(),
        Some("eyJ2IjoiMiIsImMiOiJ0b2tlbiJ9")
    );
    assert_eq!(
        page.request_id.as_deref(),
        Some("fc45294c-006b-457b-bab9-012f5b3b0e40")
    );
    let a = &page.items[0];
    assert_eq!(a.id, "eni-0f7db67b");
    assert_eq!(a.mac_address, "02:1a:80:41:52:9c");
    assert_eq!(a.private_ip_address, Some("10.0.0.134".parse().unwrap()));
    assert_eq!(
        a.private_ips,
        vec![
            PrivateIp {
                address: "10.0.0.134".parse().unwrap(),
                primary: true
            },
            PrivateIp {
                address: "10.0.0.36".parse().unwrap(),
                primary: false
            },
        ]
    );
    assert_eq!(a.ipv4_prefixes, vec!["10.0.0.16/28".parse().unwrap()]);
    assert_eq!(
        a.ipv6_addresses,
        vec!["2001:db8:1234:1a00::123"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()]
    );
    let att = a.attachment.as_ref().unwrap();
    assert_eq!(att.attachment_id, "eni-attach-6537fc0c");
    assert_eq!(att.instance_id.as_deref(), Some("i-22197876"));
    assert_eq!(
        (att.device_index, att.network_card_index),
        (Some(0), Some(0))
    );
    assert!(att.delete_on_termination);
    assert_eq!(a.groups[0].id, "sg-1a2b3c4d");
    assert!(a.tags.is_empty());

    let b = &page.items[1];
    assert_eq!(b.description, "aws-K8S-i-22197876 & friends");
    assert_eq!(b.status, "available");
    assert!(b.attachment.is_none());
    assert_eq!(b.groups.len(), 2);
    assert_eq!(
        b.tag("node.k8s.amazonaws.com/instance_id"),
        Some("i-22197876")
    );
    assert_eq!(b.private_ips.len(), 1);
}

#[test]
fn describe_instances_reads_the_attached_enis() {
    let page = parse_describe_instances(fixture!("describe-instances.xml")).unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.next_token.is_none());
    let i = &page.items[0];
    assert_eq!(i.id, "i-1234567890abcdef0");
    assert_eq!(i.instance_type, "m5.large");
    assert_eq!(i.availability_zone, "eu-west-1c");
    assert_eq!(i.state, "running");
    assert_eq!(i.subnet_id, "subnet-56f5f633");
    assert_eq!(i.tags, vec![Tag::new("Name", "node-1")]);
    assert_eq!(i.network_interfaces.len(), 2);
    let second = &i.network_interfaces[1];
    assert_eq!(second.id, "eni-0aa1");
    let att = second.attachment.as_ref().unwrap();
    assert_eq!(
        (att.device_index, att.network_card_index),
        (Some(2), Some(1))
    );
    assert!(!att.delete_on_termination);
}

#[test]
fn describe_instance_types_reads_network_cards() {
    let page = parse_describe_instance_types(fixture!("describe-instance-types.xml")).unwrap();
    let p4 = &page.items[0];
    assert_eq!(p4.instance_type, "p4d.24xlarge");
    assert_eq!(p4.maximum_network_interfaces, 60);
    assert_eq!(p4.ipv4_addresses_per_interface, 50);
    assert_eq!(p4.network_cards.len(), 4);
    assert_eq!(
        p4.network_cards[3],
        NetworkCard {
            index: 3,
            maximum_network_interfaces: 15
        }
    );
    assert!(p4.efa_supported && p4.ipv6_supported);
    let m5 = &page.items[1];
    assert_eq!(
        (
            m5.maximum_network_interfaces,
            m5.ipv4_addresses_per_interface
        ),
        (3, 10)
    );
    assert_eq!(m5.hypervisor, "nitro");
}

#[test]
fn describe_subnets_keeps_only_associated_ipv6_blocks() {
    let page = parse_describe_subnets(fixture!("describe-subnets.xml")).unwrap();
    let s = &page.items[0];
    assert_eq!(s.cidr_block, Some("10.0.1.0/24".parse().unwrap()));
    assert_eq!(
        s.ipv6_cidr_blocks,
        vec!["2001:db8:1234:1a00::/64".parse().unwrap()]
    );
    assert_eq!(s.available_ip_address_count, 251);
    assert_eq!(s.tags, vec![Tag::new("kubernetes.io/role/cni", "1")]);
}

#[test]
fn create_attach_and_assign_answers() {
    let eni = parse_create_network_interface(fixture!("create-network-interface.xml")).unwrap();
    assert_eq!(eni.id, "eni-cfca76a6");
    assert_eq!(eni.private_ips.len(), 2);
    assert_eq!(eni.ipv4_prefixes, vec!["10.0.2.32/28".parse().unwrap()]);
    assert_eq!(
        eni.tag("node.k8s.amazonaws.com/instance_id"),
        Some("i-1234567890abcdef0")
    );

    assert_eq!(
        parse_attach(fixture!("attach-network-interface.xml")).unwrap(),
        "eni-attach-d94b09b0"
    );

    let v4 = parse_assign_private_ips(fixture!("assign-private-ip-addresses.xml")).unwrap();
    assert_eq!(
        v4.addresses,
        vec![
            "10.0.2.160".parse::<std::net::Ipv4Addr>().unwrap(),
            "10.0.2.161".parse().unwrap()
        ]
    );
    assert_eq!(v4.prefixes, vec!["10.0.2.48/28".parse().unwrap()]);

    let v6 = parse_assign_ipv6(fixture!("assign-ipv6-addresses.xml")).unwrap();
    assert_eq!(v6.addresses.len(), 2);
    assert_eq!(
        v6.prefixes,
        vec!["2001:db8:1234:1a00:1::/80".parse().unwrap()]
    );
}

#[test]
fn return_false_is_an_error_and_missing_return_is_accepted() {
    assert!(parse_return("<R><requestId>x</requestId><return>true</return></R>").is_ok());
    assert!(parse_return("<R><requestId>x</requestId></R>").is_ok());
    assert!(parse_return("<R><return>false</return></R>")
        .unwrap_err()
        .contains("false"));
}

#[test]
fn a_bad_value_names_the_element_and_the_value() {
    let body = "<R><networkInterfaceSet><item><networkInterfaceId>eni-1</networkInterfaceId>\
                <privateIpAddress>10.0.0.999</privateIpAddress></item></networkInterfaceSet></R>";
    let e = parse_describe_network_interfaces(body).unwrap_err();
    assert!(
        e.contains("privateIpAddress") && e.contains("10.0.0.999"),
        "{e}"
    );
    assert!(parse_describe_network_interfaces("<R><networkInterfaceSet>").is_err());
    let e = parse_create_network_interface("<R><requestId>x</requestId></R>").unwrap_err();
    assert!(e.contains("networkInterfaceId"), "{e}");
}

#[test]
fn moto_ipv6_association_state_repr_is_understood() {
    let body = "<R><subnetSet><item><subnetId>subnet-1</subnetId><cidrBlock>10.0.0.0/20</cidrBlock>\
                <ipv6CidrBlockAssociationSet><item><ipv6CidrBlock>2400:6500:2fc0:a001::/64</ipv6CidrBlock>\
                <ipv6CidrBlockState><state>{'State': 'associated'}</state></ipv6CidrBlockState></item>\
                <item><ipv6CidrBlock>2400:6500:2fc0:a002::/64</ipv6CidrBlock>\
                <ipv6CidrBlockState><state>{'State': 'disassociated'}</state></ipv6CidrBlockState></item>\
                </ipv6CidrBlockAssociationSet></item></subnetSet></R>";
    let page = parse_describe_subnets(body).unwrap();
    assert_eq!(
        page.items[0].ipv6_cidr_blocks,
        vec!["2400:6500:2fc0:a001::/64".parse().unwrap()]
    );
}
