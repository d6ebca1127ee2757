//! Proxies: EC2 traffic honours HTTP(S)_PROXY as the Go SDK does, IMDS and container credential
//! traffic never goes through a proxy (a proxy cannot reach this node's link-local metadata).
//!
//! This binary holds one test because it sets process-wide proxy variables.

// Test code: a panic is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/aws_local.rs"]
mod aws_local;

use std::sync::Arc;
use std::time::Duration;

use aws_local::{FakeImds, LocalServer, Reply};
use vpc_cni::aws::credentials::Credentials;
use vpc_cni::aws::ec2::{Ec2, Ec2Client};
use vpc_cni::aws::imds::Imds;
use vpc_cni::aws::retry::RetryPolicy;

#[test]
fn imds_bypasses_the_proxy_that_ec2_uses() {
    let proxy = LocalServer::start(|_| Reply::new(502, "proxy says no"));
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ] {
        std::env::set_var(var, proxy.url());
    }
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");

    let fake = FakeImds::new(&[("instance-id", "i-0proxytest")]);
    let imds_server = fake.serve();
    let imds = Imds::new(&imds_server.url()).unwrap();
    assert_eq!(
        imds.within(Duration::from_secs(5)).instance_id().unwrap(),
        "i-0proxytest"
    );
    assert_eq!(
        imds_server.requests().len(),
        2,
        "token PUT and GET went straight to IMDS"
    );
    assert!(
        proxy.requests().is_empty(),
        "IMDS went through the proxy: {:?}",
        proxy.requests()
    );

    let ec2_server = LocalServer::start(|_| {
        Reply::ok("<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>")
    });
    let env = |k: &str| (k == "AWS_ENDPOINT_URL_EC2").then(|| ec2_server.url());
    let ec2 = Ec2Client::from_env(
        "us-west-2",
        Arc::new(Credentials::new_static("AKID", "s", None)),
        &env,
    )
    .unwrap()
    .with_retry_policy(RetryPolicy::NONE);
    let _ = ec2.describe_instances(&Default::default());
    assert!(
        !proxy.requests().is_empty(),
        "EC2 did not use the configured proxy"
    );
    assert!(ec2_server.requests().is_empty(), "EC2 bypassed the proxy");
}
