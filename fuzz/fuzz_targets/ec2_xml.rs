//! EC2 Query API answers: every response parser over the same body, and the raw XML walk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_cni::aws::ec2;
use vpc_cni::aws::xml::{walk, Step};

fuzz_target!(|data: &[u8]| {
    // The client reads bodies as lossy UTF-8.
    let body = String::from_utf8_lossy(data);
    let body = body.as_ref();
    let _ = walk(body, |step| {
        let (Step::Start(path) | Step::End(path, _)) = step;
        assert!(!path.is_empty());
    });
    let _ = ec2::parse_describe_network_interfaces(body);
    let _ = ec2::parse_create_network_interface(body);
    let _ = ec2::parse_describe_instances(body);
    let _ = ec2::parse_describe_instance_types(body);
    let _ = ec2::parse_describe_subnets(body);
    let _ = ec2::parse_attach(body);
    let _ = ec2::parse_assign_private_ips(body);
    let _ = ec2::parse_assign_ipv6(body);
    let _ = ec2::parse_return(body);
});
