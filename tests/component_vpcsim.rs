//! The VPC-in-a-box harness from Rust: start, launch a node, see its namespace, stop, see it gone.

#[path = "support/vpcsim.rs"]
mod vpcsim;

use std::path::Path;

use vpcsim::{Fault, StartOptions, VpcSim};

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

#[test]
fn sim_starts_launches_a_node_and_cleans_up() {
    let mut sim = VpcSim::start("cvs");
    let node = sim.launch_node("m5.large");
    let ns = node.namespace.clone().expect("sim runs with namespaces");
    assert!(netns_exists(&ns), "node namespace {ns} should exist");
    assert!(netns_exists(&format!("{}-vpc", sim.name())));
    assert!(node.imds_endpoint.starts_with("http://127.0.0.1:"));
    assert!(node.primary_ip.starts_with("10.0."));
    assert!(sim.ec2_endpoint().starts_with("http://127.0.0.1:"));
    assert!(sim
        .env()
        .iter()
        .any(|(k, v)| k == "AWS_ENDPOINT_URL_EC2" && v == sim.ec2_endpoint()));
    let state_file = sim.state_file();
    assert!(state_file.exists());
    sim.stop().expect("stop");
    assert!(!netns_exists(&ns), "node namespace {ns} should be gone");
    assert!(!state_file.exists());
}

#[test]
fn faults_and_call_log_from_rust() {
    let sim = VpcSim::start_with(
        "cvsf",
        StartOptions {
            netns: false,
            ..StartOptions::default()
        },
    )
    .expect("start");
    sim.inject_fault(&Fault::error("DescribeInstances", "RequestLimitExceeded", 503).count(1))
        .expect("fault");
    let form = "Action=DescribeInstances&Version=2016-11-15";
    let (status, body) = sim.post_ec2_unsigned(form).expect("first call");
    assert_eq!(status, 503);
    assert!(body.contains("<Code>RequestLimitExceeded</Code>"), "{body}");
    // The fault was for one call only; unsigned requests are then refused like EC2 does.
    let (status, body) = sim.post_ec2_unsigned(form).expect("second call");
    assert_eq!(status, 401);
    assert!(
        body.contains("<Code>MissingAuthenticationToken</Code>"),
        "{body}"
    );
    let calls = sim.calls(Some("DescribeInstances")).expect("call log");
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![503, 401]
    );
    assert_eq!(calls[0].error.as_deref(), Some("RequestLimitExceeded"));
}

#[test]
fn control_api_refuses_a_request_without_the_token() {
    use std::io::{Read, Write};
    let sim = VpcSim::start_with(
        "cvst",
        StartOptions {
            netns: false,
            ..StartOptions::default()
        },
    )
    .expect("start");
    let host = sim
        .ec2_endpoint()
        .strip_prefix("http://")
        .expect("http endpoint")
        .to_owned();
    let mut s = std::net::TcpStream::connect(&host).expect("connect");
    write!(
        s,
        "GET /vpcsim/state HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains(sim.secret_access_key()), "{answer}");
    // The harness sends the token and is answered.
    assert!(sim.request("GET", "/state", None).is_ok());
}
