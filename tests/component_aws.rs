//! The AWS adapters against the VPC-in-a-box: moto EC2 with SigV4 verification and seed 001's
//! IAM policy, per-node IMDSv2, fault injection and the sim's call log.

// Test code: a panic is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/clock.rs"]
mod clock;
#[path = "support/vpcsim.rs"]
mod vpcsim;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clock::ManualClock;
use serde_json::Value;
use vpc_cni::aws::credentials::{
    CachedCredentials, CredentialSource, Credentials, DefaultChain, ProvideCredentials,
};
use vpc_cni::aws::ec2::*;
use vpc_cni::aws::error::Ec2ErrorKind;
use vpc_cni::aws::http;
use vpc_cni::aws::imds::{Imds, ImdsError};
use vpc_cni::aws::retry::{RetryEnv, RetryPolicy};
use vpc_cni::net::{Ipv6Cidr, MacAddr};
use vpcsim::{Fault, Node, StartOptions, VpcSim};

fn start(prefix: &str) -> VpcSim {
    VpcSim::start_with(
        prefix,
        StartOptions {
            netns: false,
            ..StartOptions::default()
        },
    )
    .unwrap()
}

fn env_of(pairs: Vec<(String, String)>) -> impl Fn(&str) -> Option<String> {
    move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

/// The EC2 client a node's ipamd would build from its environment, signing with `creds`.
fn ec2_with(sim: &VpcSim, creds: Credentials) -> Ec2Client {
    Ec2Client::from_env(sim.region(), Arc::new(creds), &env_of(sim.env())).unwrap()
}

/// Keys of the sim's `extended` IAM user (seed 001's policy plus DescribeSubnets and IPv6).
fn extended_creds(sim: &VpcSim) -> Credentials {
    let c = sim.state().pointer("/credentials/extended").unwrap();
    Credentials::new_static(
        c["access_key_id"].as_str().unwrap(),
        c["secret_access_key"].as_str().unwrap(),
        None,
    )
}

/// Keys of the seed 001 user (the node's `env`).
fn seed_creds(sim: &VpcSim) -> Credentials {
    Credentials::new_static(sim.access_key_id(), sim.secret_access_key(), None)
}

fn node_imds(node: &Node) -> Imds {
    Imds::new(&node.imds_endpoint).unwrap()
}

#[test]
fn every_ec2_call_ipamd_makes_works_against_the_sim() {
    let mut sim = start("awsall");
    let node = sim.launch_node("m5.large");
    let ec2 = ec2_with(&sim, extended_creds(&sim));
    let imds = node_imds(&node);
    let md = imds.within(Duration::from_secs(10));

    // IMDS agrees with EC2 about the node.
    assert_eq!(md.instance_id().unwrap(), node.instance_id);
    assert_eq!(md.instance_type().unwrap(), "m5.large");
    assert_eq!(md.region().unwrap(), sim.region());
    assert_eq!(md.availability_zone().unwrap(), node.az);
    let mac: MacAddr = node.mac.parse().unwrap();
    assert_eq!(md.primary_mac().unwrap(), mac);
    assert_eq!(md.local_ipv4().unwrap().to_string(), node.primary_ip);
    let primary = md.interface(&mac).unwrap();
    assert_eq!(primary.interface_id, node.primary_eni);
    assert_eq!((primary.device_number, primary.network_card), (0, 0));
    assert_eq!(primary.subnet_id, node.subnet_id);
    assert_eq!(primary.vpc_id, sim.vpc_id());
    assert!(primary.subnet_ipv4_cidr.contains(primary.local_ipv4s[0]));
    assert_eq!(primary.vpc_ipv4_cidrs[0].to_string(), "10.0.0.0/16");
    assert!(!primary.security_group_ids.is_empty());
    assert!(primary.ipv4_prefixes.is_empty());

    // Describe calls.
    let inst = ec2
        .describe_instances(&DescribeInstances {
            ids: vec![node.instance_id.clone()],
            filters: vec![],
        })
        .unwrap();
    assert_eq!(inst.len(), 1);
    assert_eq!(inst[0].instance_type, "m5.large");
    assert_eq!(inst[0].network_interfaces[0].id, node.primary_eni);
    let types = ec2
        .describe_instance_types(&["m5.large".to_string()])
        .unwrap();
    assert_eq!(
        (
            types[0].maximum_network_interfaces,
            types[0].ipv4_addresses_per_interface
        ),
        (3, 10)
    );
    let subnets = ec2
        .describe_subnets(&DescribeSubnets {
            ids: vec![],
            filters: vec![Filter::new("vpc-id", [sim.vpc_id()])],
        })
        .unwrap();
    assert_eq!(subnets.len(), 3);
    let subnet_a = subnets.iter().find(|s| s.id == node.subnet_id).unwrap();
    assert_eq!(subnet_a.cidr_block, Some(primary.subnet_ipv4_cidr));
    assert!(!subnet_a.ipv6_cidr_blocks.is_empty(), "subnet a has IPv6");

    // ENI lifecycle.
    let tags = vec![
        Tag::new("node.k8s.amazonaws.com/instance_id", &node.instance_id),
        Tag::new("node.k8s.amazonaws.com/createdAt", "2026-11-23T16:00:00Z"),
    ];
    let eni = ec2
        .create_network_interface(&CreateNetworkInterface {
            subnet_id: node.subnet_id.clone(),
            security_group_ids: primary.security_group_ids.clone(),
            description: format!("aws-K8S-{}", node.instance_id),
            tags: tags.clone(),
            addresses: Addresses::SecondaryIpv4(2),
        })
        .unwrap();
    assert!(eni.id.starts_with("eni-"));
    assert_eq!(eni.private_ips.len(), 3);
    assert_eq!(eni.description, format!("aws-K8S-{}", node.instance_id));
    let attachment_id = ec2
        .attach_network_interface(&AttachNetworkInterface {
            network_interface_id: eni.id.clone(),
            instance_id: node.instance_id.clone(),
            device_index: 1,
            network_card_index: Some(0),
        })
        .unwrap();
    ec2.modify_network_interface_attribute(&ModifyNetworkInterfaceAttribute::DeleteOnTermination {
        network_interface_id: eni.id.clone(),
        attachment_id: attachment_id.clone(),
        delete_on_termination: true,
    })
    .unwrap();
    let by_tag = ec2
        .describe_network_interfaces(&DescribeNetworkInterfaces {
            ids: vec![],
            filters: vec![
                Filter::new("tag-key", ["node.k8s.amazonaws.com/instance_id"]),
                Filter::new("attachment.instance-id", [node.instance_id.clone()]),
            ],
        })
        .unwrap();
    assert_eq!(by_tag.len(), 1);
    let described = &by_tag[0];
    assert_eq!(described.id, eni.id);
    let att = described.attachment.as_ref().unwrap();
    assert_eq!(
        (att.attachment_id.as_str(), att.device_index),
        (attachment_id.as_str(), Some(1))
    );
    assert!(att.delete_on_termination);
    let mut got_tags = described.tags.clone();
    got_tags.sort();
    let mut want_tags = tags.clone();
    want_tags.sort();
    assert_eq!(got_tags, want_tags);

    // Addresses and prefixes.
    let v4 = ec2
        .assign_private_ip_addresses(&AssignPrivateIpAddresses {
            network_interface_id: eni.id.clone(),
            request: AssignIpv4::Count(2),
        })
        .unwrap();
    assert_eq!(v4.addresses.len(), 2, "only the new addresses");
    let prefixes = ec2
        .assign_private_ip_addresses(&AssignPrivateIpAddresses {
            network_interface_id: eni.id.clone(),
            request: AssignIpv4::PrefixCount(1),
        })
        .unwrap();
    assert_eq!(prefixes.prefixes.len(), 1);
    assert_eq!(prefixes.prefixes[0].prefix_len(), 28);
    let v6 = ec2
        .assign_ipv6_addresses(&AssignIpv6Addresses {
            network_interface_id: eni.id.clone(),
            request: AssignIpv6::Count(1),
        })
        .unwrap();
    assert_eq!(v6.addresses.len(), 1);

    // IMDS shows the new ENI with what EC2 assigned, once the attachment has completed (EC2 answers Attach
    // while the ENI is still `attaching`).
    sim.sync().unwrap();
    let md = imds.within(Duration::from_secs(10));
    let eni_mac: MacAddr = described.mac_address.parse().unwrap();
    let asked = Instant::now();
    while !md.macs().unwrap().contains(&eni_mac) {
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "IMDS never showed the attached ENI"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = md.interface(&eni_mac).unwrap();
    assert_eq!(
        (seen.interface_id.as_str(), seen.device_number),
        (eni.id.as_str(), 1)
    );
    for a in &v4.addresses {
        assert!(
            seen.local_ipv4s.contains(a),
            "{a} missing from IMDS {:?}",
            seen.local_ipv4s
        );
    }
    assert_eq!(seen.ipv4_prefixes, prefixes.prefixes);
    assert_eq!(seen.ipv6s, v6.addresses);

    ec2.unassign_private_ip_addresses(&UnassignPrivateIpAddresses {
        network_interface_id: eni.id.clone(),
        addresses: v4.addresses.clone(),
        prefixes: prefixes.prefixes.clone(),
    })
    .unwrap();
    ec2.unassign_ipv6_addresses(&UnassignIpv6Addresses {
        network_interface_id: eni.id.clone(),
        addresses: v6.addresses.clone(),
        prefixes: vec![],
    })
    .unwrap();
    ec2.create_tags(
        std::slice::from_ref(&eni.id),
        &[Tag::new("cluster.k8s.amazonaws.com/name", "sim")],
    )
    .unwrap();
    let after = ec2
        .describe_network_interfaces(&DescribeNetworkInterfaces {
            ids: vec![eni.id.clone()],
            filters: vec![],
        })
        .unwrap();
    assert_eq!(
        after[0].private_ips.len(),
        3,
        "the two extra addresses are gone"
    );
    assert!(after[0].ipv4_prefixes.is_empty() && after[0].ipv6_addresses.is_empty());
    assert_eq!(after[0].tag("cluster.k8s.amazonaws.com/name"), Some("sim"));

    ec2.detach_network_interface(&DetachNetworkInterface {
        attachment_id,
        force: true,
    })
    .unwrap();
    ec2.delete_network_interface(&eni.id).unwrap();
    let e = ec2.delete_network_interface(&eni.id).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let gone = ec2
        .describe_network_interfaces(&DescribeNetworkInterfaces {
            ids: vec![],
            filters: vec![Filter::new(
                "tag-key",
                ["node.k8s.amazonaws.com/instance_id"],
            )],
        })
        .unwrap();
    assert!(gone.is_empty());

    // Every call above is in the sim's log, signed with the extended user's key, none failed but
    // the deliberate second delete.
    let calls = sim.calls(None).unwrap();
    let failed: Vec<_> = calls
        .iter()
        .filter(|c| c.error.is_some())
        .map(|c| (c.action.clone(), c.error.clone()))
        .collect();
    assert_eq!(
        failed,
        vec![(
            "DeleteNetworkInterface".to_string(),
            Some("InvalidNetworkInterfaceID.NotFound".to_string())
        )]
    );
    let stats = ec2.stats().snapshot();
    assert_eq!(stats["DescribeNetworkInterfaces"].requests, 3);
    assert_eq!(
        stats["DeleteNetworkInterface"].errors_by_code["InvalidNetworkInterfaceID.NotFound"],
        1
    );
}

#[test]
fn seed001_policy_refusals_name_the_missing_iam_action() {
    let mut sim = start("awsiam");
    let node = sim.launch_node("m5.large");
    let ec2 = ec2_with(&sim, seed_creds(&sim));
    // Allowed by the policy: the signature is accepted.
    ec2.describe_instances(&DescribeInstances {
        ids: vec![node.instance_id.clone()],
        filters: vec![],
    })
    .unwrap();
    let e = ec2
        .describe_subnets(&DescribeSubnets::default())
        .unwrap_err();
    assert!(matches!(e.kind, Ec2ErrorKind::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("ec2:DescribeSubnets"), "{e}");
    assert_eq!(e.attempts, 1);
    let e = ec2
        .assign_ipv6_addresses(&AssignIpv6Addresses {
            network_interface_id: node.primary_eni.clone(),
            request: AssignIpv6::Count(1),
        })
        .unwrap_err();
    assert!(e.to_string().contains("ec2:AssignIpv6Addresses"), "{e}");
    assert_eq!(
        sim.call_count("DescribeSubnets").unwrap(),
        1,
        "permission errors are not retried"
    );
}

#[test]
fn a_wrong_secret_is_reported_as_rejected_credentials() {
    let sim = start("awsauth");
    let wrong = Credentials::new_static(sim.access_key_id(), "not-the-secret-at-all", None);
    let ec2 = ec2_with(&sim, wrong);
    let e = ec2
        .describe_instances(&DescribeInstances::default())
        .unwrap_err();
    assert!(matches!(e.kind, Ec2ErrorKind::AuthFailure { .. }), "{e:?}");
    assert!(e.to_string().contains("credentials rejected"), "{e}");
    assert_eq!(e.attempts, 1);
    let calls = sim.calls(Some("DescribeInstances")).unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].error.as_deref(), Some("AuthFailure"));
}

#[test]
fn injected_throttling_is_retried_and_the_attempts_stay_bounded() {
    let mut sim = start("awsthr");
    let node = sim.launch_node("m5.large");
    // The backoffs are recorded, not waited for.
    let clock = Arc::new(ManualClock::new(0.9));
    let ec2 = ec2_with(&sim, seed_creds(&sim)).with_retry_env(clock.clone());
    let assign = AssignPrivateIpAddresses {
        network_interface_id: node.primary_eni.clone(),
        request: AssignIpv4::Count(1),
    };

    // Two throttles, then EC2 answers: the caller sees success.
    sim.inject_fault(
        &Fault::error("AssignPrivateIpAddresses", "RequestLimitExceeded", 503).count(2),
    )
    .unwrap();
    let got = ec2.assign_private_ip_addresses(&assign).unwrap();
    assert_eq!(got.addresses.len(), 1);
    let calls = sim.calls(Some("AssignPrivateIpAddresses")).unwrap();
    let errors: Vec<_> = calls.iter().map(|c| c.error.as_deref()).collect();
    assert_eq!(
        errors,
        vec![
            Some("RequestLimitExceeded"),
            Some("RequestLimitExceeded"),
            None
        ]
    );
    // A backoff before each retry: full jitter (here 0.9) of 250 ms, then of 500 ms.
    assert_eq!(
        clock.slept(),
        vec![
            RetryPolicy::EC2.backoff(1, 0.9),
            RetryPolicy::EC2.backoff(2, 0.9)
        ]
    );
    assert_eq!(clock.slept()[1], Duration::from_millis(450));

    // Throttled for good: exactly max_attempts calls, then a Throttled error.
    sim.clear_calls().unwrap();
    sim.inject_fault(&Fault::error(
        "AssignPrivateIpAddresses",
        "RequestLimitExceeded",
        503,
    ))
    .unwrap();
    let e = ec2.assign_private_ip_addresses(&assign).unwrap_err();
    assert!(matches!(e.kind, Ec2ErrorKind::Throttled { .. }), "{e:?}");
    assert_eq!(sim.call_count("AssignPrivateIpAddresses").unwrap(), 5);
    assert_eq!(e.attempts, 5);
    assert_eq!(
        clock.slept()[2..],
        (1..5)
            .map(|r| RetryPolicy::EC2.backoff(r, 0.9))
            .collect::<Vec<_>>(),
        "a growing backoff before each of the 4 retries"
    );
    sim.clear_faults().unwrap();

    // A dropped connection and a 500 are retried too.
    sim.clear_calls().unwrap();
    sim.inject_fault(&Fault::drop_connection("DescribeInstances").count(1))
        .unwrap();
    sim.inject_fault(&Fault::error("DescribeInstances", "InternalError", 500).count(1))
        .unwrap();
    ec2.describe_instances(&DescribeInstances {
        ids: vec![node.instance_id.clone()],
        filters: vec![],
    })
    .unwrap();
    assert_eq!(sim.call_count("DescribeInstances").unwrap(), 3);

    let stats = ec2.stats().snapshot();
    assert_eq!(
        stats["AssignPrivateIpAddresses"].errors_by_code["RequestLimitExceeded"],
        7
    );
}

#[test]
fn capacity_errors_from_the_sim_are_typed() {
    let mut sim = start("awscap");
    let node = sim.launch_node("m5.large");
    let ec2 = ec2_with(&sim, seed_creds(&sim));
    // m5.large: 10 addresses per ENI, the primary uses one.
    let e = ec2
        .assign_private_ip_addresses(&AssignPrivateIpAddresses {
            network_interface_id: node.primary_eni.clone(),
            request: AssignIpv4::Count(10),
        })
        .unwrap_err();
    assert!(e.is_capacity(), "{e:?}");
    assert_eq!(e.code(), Some("PrivateIpAddressLimitExceeded"));
    assert_eq!(e.attempts, 1);
    // Three ENIs at most: the fourth attach is refused.
    let mut refused = None;
    for index in 1..=3 {
        let eni = ec2
            .create_network_interface(&CreateNetworkInterface {
                subnet_id: node.subnet_id.clone(),
                security_group_ids: vec![],
                description: "aws-K8S-cap".into(),
                tags: vec![],
                addresses: Addresses::None,
            })
            .unwrap();
        let r = ec2.attach_network_interface(&AttachNetworkInterface {
            network_interface_id: eni.id,
            instance_id: node.instance_id.clone(),
            device_index: index,
            network_card_index: None,
        });
        if let Err(e) = r {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("a fourth ENI was attached to an m5.large");
    assert!(
        e.is_capacity() && e.code() == Some("AttachmentLimitExceeded"),
        "{e:?}"
    );
}

#[test]
fn instance_profile_credentials_from_the_sims_imds_sign_ec2_calls() {
    let mut sim = start("awsprof");
    let node = sim.launch_node("m5.large");
    let imds = Arc::new(node_imds(&node));
    let region = imds.within(Duration::from_secs(5)).region().unwrap();
    let chain = DefaultChain::from_env(
        &|_| None,
        Some(&region),
        Some(imds),
        http::local_agent(Duration::from_secs(5)),
    )
    .unwrap();
    let cache = Arc::new(CachedCredentials::new(chain));
    let creds = cache.credentials().unwrap();
    assert_eq!(creds.source, CredentialSource::InstanceProfile);
    assert!(creds.session_token.is_some() && creds.expiration.is_some());
    let provider: Arc<dyn ProvideCredentials> = cache;
    let ec2 = Ec2Client::from_env(&region, provider, &env_of(sim.env())).unwrap();
    let inst = ec2
        .describe_instances(&DescribeInstances {
            ids: vec![node.instance_id.clone()],
            filters: vec![],
        })
        .unwrap();
    assert_eq!(inst[0].id, node.instance_id);
    let calls = sim.calls(Some("DescribeInstances")).unwrap();
    assert_eq!(calls.last().unwrap().status, 200);
}

#[test]
fn environment_credentials_from_the_nodes_env() {
    let mut sim = start("awsenv");
    let node = sim.launch_node("m5.large");
    let env = env_of(node.env.clone());
    let chain = DefaultChain::from_env(&env, None, None, http::local_agent(Duration::from_secs(5)))
        .unwrap();
    let creds = chain.fetch().unwrap();
    assert_eq!(creds.source, CredentialSource::Environment);
    let region = env("AWS_REGION").unwrap();
    let ec2 = Ec2Client::from_env(&region, Arc::new(CachedCredentials::new(chain)), &env).unwrap();
    let enis = ec2
        .describe_network_interfaces(&DescribeNetworkInterfaces {
            ids: vec![],
            filters: vec![Filter::new(
                "attachment.instance-id",
                [node.instance_id.clone()],
            )],
        })
        .unwrap();
    assert_eq!(enis.len(), 1);
    assert_eq!(enis[0].id, node.primary_eni);
}

/// A clock for the IMDS client that runs at a tenth of real speed: the client believes its token
/// is fresh while the sim has already expired it, so the sim answers 401.
struct SlowClock {
    start: Instant,
}
impl RetryEnv for SlowClock {
    fn random_unit(&self) -> f64 {
        0.5
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
    fn now(&self) -> Instant {
        self.start + self.start.elapsed() / 10
    }
}

fn imds_requests(sim: &VpcSim, node: &Node) -> u64 {
    sim.request("GET", "/imds/requests", None).unwrap()[&node.name]
        .as_u64()
        .unwrap()
}

#[test]
fn imds_token_expiry_401_refresh_and_lag_against_the_sim() {
    let mut sim = start("awsimds");
    let node = sim.launch_node("m5.large");

    // Expiry handled ahead of time: a 2 s token is replaced before the sim would refuse it. The
    // client's clock is moved on by hand; the sim's token is still valid.
    let clock = Arc::new(ManualClock::new(0.5));
    let imds = node_imds(&node)
        .with_token_ttl(Duration::from_secs(2))
        .with_retry_env(clock.clone());
    imds.within(Duration::from_secs(5)).instance_id().unwrap();
    clock.advance(Duration::from_millis(1900));
    let before = imds_requests(&sim, &node);
    imds.within(Duration::from_secs(5)).instance_id().unwrap();
    assert_eq!(
        imds_requests(&sim, &node) - before,
        2,
        "one token PUT and one GET, no 401"
    );

    // A token the sim has expired (the client's clock runs slow): 401, new token, answer.
    let slow = node_imds(&node)
        .with_token_ttl(Duration::from_secs(1))
        .with_retry_env(Arc::new(SlowClock {
            start: Instant::now(),
        }));
    slow.within(Duration::from_secs(5)).instance_id().unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    let before = imds_requests(&sim, &node);
    assert_eq!(
        slow.within(Duration::from_secs(5)).instance_id().unwrap(),
        node.instance_id
    );
    assert_eq!(
        imds_requests(&sim, &node) - before,
        3,
        "GET (401), token PUT, GET"
    );

    // Lag: IMDS shows a new ENI only after the lag; the client keeps answering meanwhile.
    sim.set_imds_lag(2.0, Some(&node)).unwrap();
    let ec2 = ec2_with(&sim, seed_creds(&sim));
    let eni = ec2
        .create_network_interface(&CreateNetworkInterface {
            subnet_id: node.subnet_id.clone(),
            security_group_ids: vec![],
            description: "aws-K8S-lag".into(),
            tags: vec![],
            addresses: Addresses::None,
        })
        .unwrap();
    ec2.attach_network_interface(&AttachNetworkInterface {
        network_interface_id: eni.id.clone(),
        instance_id: node.instance_id.clone(),
        device_index: 1,
        network_card_index: None,
    })
    .unwrap();
    let attached = Instant::now();
    let eni_mac: MacAddr = eni.mac_address.parse().unwrap();
    let imds = node_imds(&node);
    let md = imds.within(Duration::from_secs(15));
    assert!(
        !md.macs().unwrap().contains(&eni_mac),
        "IMDS showed the ENI before the lag"
    );
    assert!(matches!(
        md.interface_id(&eni_mac),
        Err(ImdsError::NotFound { .. })
    ));
    let mut seen_after = None;
    while attached.elapsed() < Duration::from_secs(12) {
        if md.macs().unwrap().contains(&eni_mac) {
            seen_after = Some(attached.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen_after = seen_after.expect("IMDS never showed the new ENI");
    assert!(
        seen_after >= Duration::from_millis(1500),
        "shown after {seen_after:?}"
    );
    assert_eq!(md.interface_id(&eni_mac).unwrap(), eni.id);
    assert_eq!(md.device_number(&eni_mac).unwrap(), 1);
    let first: Ipv4Addr = md.local_ipv4s(&eni_mac).unwrap()[0];
    assert_eq!(Some(first), eni.private_ip_address);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Per-call latency against the sim (run by bench/aws-latency; not part of the test tier).
#[test]
#[ignore = "benchmark: run with bench/aws-latency"]
fn bench_ec2_call_latency() {
    const N: usize = 200;
    let mut sim = start("awsbench");
    let node = sim.launch_node("m5.large");
    let ec2 = ec2_with(&sim, seed_creds(&sim));
    let describe = DescribeNetworkInterfaces {
        ids: vec![],
        filters: vec![Filter::new(
            "attachment.instance-id",
            [node.instance_id.clone()],
        )],
    };
    ec2.describe_network_interfaces(&describe).unwrap();
    let mut d = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        ec2.describe_network_interfaces(&describe).unwrap();
        d.push(t.elapsed());
    }
    let mut a = Vec::with_capacity(N);
    let mut u = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        let got = ec2
            .assign_private_ip_addresses(&AssignPrivateIpAddresses {
                network_interface_id: node.primary_eni.clone(),
                request: AssignIpv4::Count(1),
            })
            .unwrap();
        a.push(t.elapsed());
        let t = Instant::now();
        ec2.unassign_private_ip_addresses(&UnassignPrivateIpAddresses {
            network_interface_id: node.primary_eni.clone(),
            addresses: got.addresses,
            prefixes: vec![],
        })
        .unwrap();
        u.push(t.elapsed());
    }
    let imds = node_imds(&node);
    let mut m = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        imds.within(Duration::from_secs(5))
            .local_ipv4s(&node.mac.parse().unwrap())
            .unwrap();
        m.push(t.elapsed());
    }
    // Client-side share: signing one request and parsing one answer, without the network.
    let body = "Action=DescribeNetworkInterfaces&Version=2016-11-15&Filter.1.Name=attachment.instance-id&Filter.1.Value.1=i-0123456789abcdef0&MaxResults=1000";
    let headers = [
        (
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("host", "ec2.us-west-2.amazonaws.com"),
        ("x-amz-date", "20261123T160000Z"),
    ];
    let t = Instant::now();
    for _ in 0..N {
        let req = vpc_cni::aws::sigv4::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            payload: body.as_bytes(),
        };
        std::hint::black_box(vpc_cni::aws::sigv4::authorization(
            "AKID",
            "secret",
            "20261123T160000Z",
            "us-west-2",
            "ec2",
            &req,
        ));
    }
    let sign = t.elapsed() / N as u32;
    let xml = include_str!("data/ec2/describe-network-interfaces.xml");
    let t = Instant::now();
    for _ in 0..N {
        std::hint::black_box(parse_describe_network_interfaces(xml).unwrap());
    }
    let parse = t.elapsed() / N as u32;
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    println!(
        "BENCH client-side SigV4 signing of one call: {:.1} us",
        sign.as_secs_f64() * 1e6
    );
    println!(
        "BENCH client-side parse of a 2-ENI DescribeNetworkInterfaces answer: {:.1} us",
        parse.as_secs_f64() * 1e6
    );
    println!("BENCH calls={N} per API, sim with SigV4 verification, loopback");
    println!(
        "BENCH DescribeNetworkInterfaces median_ms={:.2} max_ms={:.2}",
        ms(median(d.clone())),
        ms(*d.iter().max().unwrap())
    );
    println!(
        "BENCH AssignPrivateIpAddresses median_ms={:.2} max_ms={:.2}",
        ms(median(a.clone())),
        ms(*a.iter().max().unwrap())
    );
    println!(
        "BENCH UnassignPrivateIpAddresses median_ms={:.2} max_ms={:.2}",
        ms(median(u.clone())),
        ms(*u.iter().max().unwrap())
    );
    println!(
        "BENCH IMDS local-ipv4s median_ms={:.2} max_ms={:.2}",
        ms(median(m.clone())),
        ms(*m.iter().max().unwrap())
    );
}

#[test]
fn imds_faults_from_the_sim_are_retried_until_the_deadline() {
    let mut sim = start("awsimdsf");
    let node = sim.launch_node("m5.large");
    let imds = node_imds(&node);
    let mac: MacAddr = node.mac.parse().unwrap();

    // Three 500s on the interface keys, then answers: the read succeeds within its deadline.
    sim.inject_imds_fault(Some(&node), "meta-data/network/", 500, Some(3))
        .unwrap();
    let before = imds_requests(&sim, &node);
    assert_eq!(
        imds.within(Duration::from_secs(10))
            .interface_id(&mac)
            .unwrap(),
        node.primary_eni
    );
    assert!(
        imds_requests(&sim, &node) - before >= 4,
        "three failed GETs and the answer"
    );

    // IMDS down for a key: the caller's short deadline bounds the wait, the error names the key.
    sim.inject_imds_fault(Some(&node), "meta-data/placement/", 503, None)
        .unwrap();
    let started = Instant::now();
    let e = imds
        .within(Duration::from_millis(500))
        .region()
        .unwrap_err();
    assert!(matches!(e, ImdsError::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("placement/region"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    sim.clear_imds_faults().unwrap();

    // IMDS refusing tokens (IMDSv2 disabled or hop limit): a clear error, not a retry loop.
    let fresh = node_imds(&node);
    sim.inject_imds_fault(Some(&node), "api/token", 403, None)
        .unwrap();
    let e = fresh
        .within(Duration::from_secs(5))
        .instance_id()
        .unwrap_err();
    assert!(matches!(e, ImdsError::Refused { status: 403, .. }), "{e:?}");
    assert!(e.to_string().contains("hop limit"), "{e}");
    sim.clear_imds_faults().unwrap();
    assert_eq!(
        fresh.within(Duration::from_secs(5)).instance_id().unwrap(),
        node.instance_id
    );
}

/// The sim's subnet `name` from its state file.
fn sim_subnet(sim: &VpcSim, name: &str) -> Value {
    sim.state()["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("the sim has no subnet {name}"))
        .clone()
}

fn sorted6(v: &[Ipv6Addr]) -> Vec<Ipv6Addr> {
    let mut v = v.to_vec();
    v.sort();
    v
}

#[test]
fn ipv6_addresses_and_a_prefix_assigned_through_ec2_are_read_back_from_imds() {
    let mut sim = start("awsv6");
    let subnet_b = sim_subnet(&sim, "b");
    let node = sim.try_launch_node("m5.large", Some("b")).unwrap();
    assert_eq!(node.subnet_id, subnet_b["id"].as_str().unwrap());
    let subnet_v6: Ipv6Cidr = subnet_b["ipv6_cidr"].as_str().unwrap().parse().unwrap();
    let vpc_v6: Ipv6Cidr = sim
        .state()
        .pointer("/vpc/ipv6_cidr")
        .and_then(Value::as_str)
        .unwrap()
        .parse()
        .unwrap();
    let ec2 = ec2_with(&sim, extended_creds(&sim));
    let mac: MacAddr = node.mac.parse().unwrap();
    let eni = node.primary_eni.clone();

    // EC2's DescribeSubnets agrees with the sim's state file; the subnet's /64 lies in the VPC's block.
    let subnets = ec2
        .describe_subnets(&DescribeSubnets {
            ids: vec![node.subnet_id.clone()],
            filters: vec![],
        })
        .unwrap();
    assert_eq!(subnets.len(), 1);
    assert_eq!(subnets[0].ipv6_cidr_blocks, vec![subnet_v6]);
    assert!(
        vpc_v6.prefix_len() < subnet_v6.prefix_len() && vpc_v6.contains(subnet_v6.addr()),
        "{subnet_v6} not inside {vpc_v6}"
    );

    // Before any assignment IMDS shows the blocks but no addresses or prefixes.
    let imds = node_imds(&node);
    let md = imds.within(Duration::from_secs(10));
    assert_eq!(md.subnet_ipv6_cidrs(&mac).unwrap(), vec![subnet_v6]);
    assert_eq!(md.vpc_ipv6_cidrs(&mac).unwrap(), vec![vpc_v6]);
    assert!(md.ipv6s(&mac).unwrap().is_empty());
    assert!(md.ipv6_prefixes(&mac).unwrap().is_empty());

    // Two addresses by count, then one /80 prefix by count.
    let addrs = ec2
        .assign_ipv6_addresses(&AssignIpv6Addresses {
            network_interface_id: eni.clone(),
            request: AssignIpv6::Count(2),
        })
        .unwrap();
    assert_eq!(addrs.addresses.len(), 2, "{addrs:?}");
    assert!(addrs.prefixes.is_empty(), "{addrs:?}");
    for a in &addrs.addresses {
        assert!(subnet_v6.contains(*a), "{a} outside {subnet_v6}");
    }
    let pfx = ec2
        .assign_ipv6_addresses(&AssignIpv6Addresses {
            network_interface_id: eni.clone(),
            request: AssignIpv6::PrefixCount(1),
        })
        .unwrap();
    assert!(pfx.addresses.is_empty(), "{pfx:?}");
    assert_eq!(pfx.prefixes.len(), 1, "{pfx:?}");
    let prefix = pfx.prefixes[0];
    assert_eq!(prefix.prefix_len(), 80);
    assert!(
        subnet_v6.contains(prefix.addr()),
        "{prefix} outside {subnet_v6}"
    );
    assert!(
        addrs.addresses.iter().all(|a| !prefix.contains(*a)),
        "{prefix} overlaps {:?}",
        addrs.addresses
    );
    // The wire shape: counts, not address lists.
    let calls = sim.calls(Some("AssignIpv6Addresses")).unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].params["Ipv6AddressCount"], "2");
    assert_eq!(calls[1].params["Ipv6PrefixCount"], "1");
    assert!(calls[1].params.get("Ipv6AddressCount").is_none());

    // DescribeNetworkInterfaces shows what the assign calls returned.
    let described = ec2
        .describe_network_interfaces(&DescribeNetworkInterfaces {
            ids: vec![eni.clone()],
            filters: vec![],
        })
        .unwrap();
    assert_eq!(
        sorted6(&described[0].ipv6_addresses),
        sorted6(&addrs.addresses)
    );
    assert_eq!(described[0].ipv6_prefixes, vec![prefix]);

    // IMDS shows the same, through the single readers and the whole-interface read.
    sim.sync().unwrap();
    assert_eq!(sorted6(&md.ipv6s(&mac).unwrap()), sorted6(&addrs.addresses));
    assert_eq!(md.ipv6_prefixes(&mac).unwrap(), vec![prefix]);
    let seen = md.interface(&mac).unwrap();
    assert_eq!(sorted6(&seen.ipv6s), sorted6(&addrs.addresses));
    assert_eq!(seen.ipv6_prefixes, vec![prefix]);
    assert_eq!(seen.subnet_ipv6_cidrs, vec![subnet_v6]);
    assert_eq!(seen.vpc_ipv6_cidrs, vec![vpc_v6]);

    // Releasing the prefix: IMDS drops it, the addresses stay.
    ec2.unassign_ipv6_addresses(&UnassignIpv6Addresses {
        network_interface_id: eni.clone(),
        addresses: vec![],
        prefixes: vec![prefix],
    })
    .unwrap();
    sim.sync().unwrap();
    assert!(md.ipv6_prefixes(&mac).unwrap().is_empty());
    assert_eq!(sorted6(&md.ipv6s(&mac).unwrap()), sorted6(&addrs.addresses));

    // Releasing one address, then the other.
    let (first, second) = (addrs.addresses[0], addrs.addresses[1]);
    ec2.unassign_ipv6_addresses(&UnassignIpv6Addresses {
        network_interface_id: eni.clone(),
        addresses: vec![first],
        prefixes: vec![],
    })
    .unwrap();
    sim.sync().unwrap();
    assert_eq!(md.ipv6s(&mac).unwrap(), vec![second]);
    ec2.unassign_ipv6_addresses(&UnassignIpv6Addresses {
        network_interface_id: eni.clone(),
        addresses: vec![second],
        prefixes: vec![],
    })
    .unwrap();
    sim.sync().unwrap();
    let seen = md.interface(&mac).unwrap();
    assert!(
        seen.ipv6s.is_empty() && seen.ipv6_prefixes.is_empty(),
        "{seen:?}"
    );
    assert_eq!(seen.subnet_ipv6_cidrs, vec![subnet_v6], "the blocks stay");
    let after = ec2
        .describe_network_interfaces(&DescribeNetworkInterfaces {
            ids: vec![eni.clone()],
            filters: vec![],
        })
        .unwrap();
    assert!(after[0].ipv6_addresses.is_empty() && after[0].ipv6_prefixes.is_empty());

    // Releasing a prefix the ENI no longer has is an error EC2 reports, not a silent no-op.
    let e = ec2
        .unassign_ipv6_addresses(&UnassignIpv6Addresses {
            network_interface_id: eni,
            addresses: vec![],
            prefixes: vec![prefix],
        })
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidParameterValue"), "{e}");
}

#[test]
fn api_stats_record_latency_per_api_with_error_and_status_labels() {
    let mut sim = start("awsstat");
    let node = sim.launch_node("m5.large");
    let ec2 = ec2_with(&sim, seed_creds(&sim));
    let by_id = DescribeInstances {
        ids: vec![node.instance_id.clone()],
        filters: vec![],
    };

    // A slow success.
    sim.inject_fault(&Fault::latency("DescribeInstances", 150).count(1))
        .unwrap();
    let t = Instant::now();
    ec2.describe_instances(&by_id).unwrap();
    let slow_ok_wall = t.elapsed();

    // A slow failure that is not retried (injected 400).
    sim.inject_fault(
        &Fault::error("CreateTags", "InvalidParameterValue", 400)
            .with_latency(120)
            .count(1),
    )
    .unwrap();
    let t = Instant::now();
    let e = ec2
        .create_tags(
            std::slice::from_ref(&node.primary_eni),
            &[Tag::new("k", "v")],
        )
        .unwrap_err();
    let slow_err_wall = t.elapsed();
    assert_eq!(e.attempts, 1, "{e}");

    // A real refusal by the seed 001 policy (403).
    ec2.describe_subnets(&DescribeSubnets::default())
        .unwrap_err();

    // Two throttles (503) then success.
    sim.inject_fault(
        &Fault::error("AssignPrivateIpAddresses", "RequestLimitExceeded", 503).count(2),
    )
    .unwrap();
    ec2.assign_private_ip_addresses(&AssignPrivateIpAddresses {
        network_interface_id: node.primary_eni.clone(),
        request: AssignIpv4::Count(1),
    })
    .unwrap();

    // A dropped connection (no HTTP status) then success.
    sim.inject_fault(&Fault::drop_connection("DescribeNetworkInterfaces").count(1))
        .unwrap();
    ec2.describe_network_interfaces(&DescribeNetworkInterfaces {
        ids: vec![node.primary_eni.clone()],
        filters: vec![],
    })
    .unwrap();

    let stats = ec2.stats().snapshot();
    let apis: BTreeSet<&str> = stats.keys().copied().collect();
    assert_eq!(
        apis,
        BTreeSet::from([
            "AssignPrivateIpAddresses",
            "CreateTags",
            "DescribeInstances",
            "DescribeNetworkInterfaces",
            "DescribeSubnets",
        ])
    );
    // One latency observation per HTTP attempt, labelled (failed?, status).
    let labels = |api: &str| -> Vec<((bool, u16), u64)> {
        stats[api]
            .latency
            .iter()
            .map(|(k, l)| (*k, l.count))
            .collect()
    };
    assert_eq!(labels("DescribeInstances"), vec![((false, 200), 1)]);
    assert_eq!(labels("CreateTags"), vec![((true, 400), 1)]);
    assert_eq!(labels("DescribeSubnets"), vec![((true, 403), 1)]);
    assert_eq!(
        labels("AssignPrivateIpAddresses"),
        vec![((false, 200), 1), ((true, 503), 2)]
    );
    assert_eq!(
        labels("DescribeNetworkInterfaces"),
        vec![((false, 200), 1), ((true, 0), 1)]
    );
    for (api, c) in &stats {
        let observed: u64 = c.latency.values().map(|l| l.count).sum();
        assert_eq!(observed, c.requests, "{api}: {c:?}");
        let failed: u64 = c
            .latency
            .iter()
            .filter(|((err, _), _)| *err)
            .map(|(_, l)| l.count)
            .sum();
        assert_eq!(failed, c.errors, "{api}: {c:?}");
    }
    assert_eq!(
        stats["DescribeSubnets"].errors_by_code["UnauthorizedOperation"],
        1
    );
    assert_eq!(
        stats["DescribeNetworkInterfaces"].errors_by_code["transport"],
        1
    );
    assert_eq!(
        stats["CreateTags"].errors_by_code["InvalidParameterValue"],
        1
    );

    // The injected delays show in the recorded latency, bounded by the caller's wall time.
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap();
    let ok = stats["DescribeInstances"].latency[&(false, 200)];
    assert!(
        (150..=ms(slow_ok_wall)).contains(&ok.max_ms) && ok.sum_ms == ok.max_ms,
        "{ok:?} wall {slow_ok_wall:?}"
    );
    let failed = stats["CreateTags"].latency[&(true, 400)];
    assert!(
        (120..=ms(slow_err_wall)).contains(&failed.max_ms) && failed.sum_ms == failed.max_ms,
        "{failed:?} wall {slow_err_wall:?}"
    );
}

/// EC2 ran CreateNetworkInterface but the answer was lost: the client's retry must not make a second ENI
/// (ClientToken makes the retry return the first one), or every lost answer leaks an ENI.
#[test]
fn lost_create_answer_is_retried_without_a_duplicate_eni() {
    let mut sim = start("awslost");
    let node = sim.launch_node("m5.large");
    let ec2 = ec2_with(&sim, seed_creds(&sim));
    let tag = Tag::new("lost-answer", "create-1");
    sim.inject_fault(&Fault::lose_answer("CreateNetworkInterface").count(1))
        .unwrap();
    let eni = ec2
        .create_network_interface(&CreateNetworkInterface {
            subnet_id: node.subnet_id.clone(),
            security_group_ids: vec![],
            description: "aws-K8S-lost".into(),
            tags: vec![tag.clone()],
            addresses: Addresses::SecondaryIpv4(1),
        })
        .unwrap();
    let calls = sim.calls(Some("CreateNetworkInterface")).unwrap();
    assert_eq!(calls.len(), 2, "one lost answer, one retry: {calls:?}");
    assert!(calls[0].lost && !calls[1].lost);
    let tagged = ec2
        .describe_network_interfaces(&DescribeNetworkInterfaces {
            ids: vec![],
            filters: vec![Filter::new("tag:lost-answer", ["create-1"])],
        })
        .unwrap();
    assert_eq!(
        tagged.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec![eni.id.as_str()],
        "the retry created a second ENI"
    );
}
