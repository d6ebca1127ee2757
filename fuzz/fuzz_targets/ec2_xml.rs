//! EC2 Query API answers: the raw XML walk, and the response parser the client would run on that
//! answer.
//!
//! The client runs one parser per answer (the one of the action it called), and every parser
//! matches paths below the root element, whatever its name. So the root's name picks the parser
//! (`DescribeNetworkInterfacesResponse` → `parse_describe_network_interfaces`, ...; any other
//! name one of the nine by a hash of it): every parser still meets every body, since a body under
//! another root name reaches the same parser code, and an input costs two walks instead of ten.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_cni::aws::ec2;
use vpc_cni::aws::xml::{walk, Step};

/// The local name of the first element (after a declaration, comments, a doctype).
fn root_name(body: &str) -> &str {
    let mut rest = body;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if rest.starts_with(['?', '!']) {
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..end];
        return name.rsplit(':').next().unwrap_or(name);
    }
    ""
}

fn parser_for(root: &str) -> usize {
    match root {
        "DescribeNetworkInterfacesResponse" => 0,
        "CreateNetworkInterfaceResponse" => 1,
        "DescribeInstancesResponse" => 2,
        "DescribeInstanceTypesResponse" => 3,
        "DescribeSubnetsResponse" => 4,
        "AttachNetworkInterfaceResponse" => 5,
        "AssignPrivateIpAddressesResponse" => 6,
        "AssignIpv6AddressesResponse" => 7,
        "UnassignPrivateIpAddressesResponse"
        | "UnassignIpv6AddressesResponse"
        | "ModifyNetworkInterfaceAttributeResponse"
        | "DetachNetworkInterfaceResponse"
        | "DeleteNetworkInterfaceResponse"
        | "CreateTagsResponse" => 8,
        other => {
            other.bytes().fold(0usize, |h, b| {
                h.wrapping_mul(31).wrapping_add(usize::from(b))
            }) % 9
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The client reads bodies as lossy UTF-8.
    let body = String::from_utf8_lossy(data);
    let body = body.as_ref();
    let _ = walk(body, |step| {
        let (Step::Start(path) | Step::End(path, _)) = step;
        assert!(!path.is_empty());
    });
    match parser_for(root_name(body)) {
        0 => drop(ec2::parse_describe_network_interfaces(body)),
        1 => drop(ec2::parse_create_network_interface(body)),
        2 => drop(ec2::parse_describe_instances(body)),
        3 => drop(ec2::parse_describe_instance_types(body)),
        4 => drop(ec2::parse_describe_subnets(body)),
        5 => drop(ec2::parse_attach(body)),
        6 => drop(ec2::parse_assign_private_ips(body)),
        7 => drop(ec2::parse_assign_ipv6(body)),
        _ => drop(ec2::parse_return(body)),
    }
});
