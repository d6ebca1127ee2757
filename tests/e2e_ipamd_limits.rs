//! End to end, where ipamd's instance limits come from: a node whose type is in the built-in table
//! (data/instance-types.tsv) uses the table and never calls DescribeInstanceTypes; a node of a type
//! the table lacks asks EC2 with DescribeInstanceTypes, and the pool, max pods and metrics follow
//! the limits EC2 gave. Root only; the test starts its own VPC-in-a-box and removes everything it
//! made, also when it fails.
//!
//! The built-in table holds every type moto knows, so the test adds one: the sim's Python starts
//! with a `sitecustomize` module (on `PYTHONPATH`, in a directory of the test's own) that registers
//! `m5test.large` in moto's instance-type catalogue, with limits no real type has (4 ENIs of 7
//! addresses each). moto's DescribeInstanceTypes, RunInstances and the sim's per-type checks all
//! read that catalogue.

#![allow(clippy::unwrap_used)]

#[path = "support/cni_client.rs"]
mod cni_client;
#[path = "support/ipamd_node.rs"]
mod ipamd_node;
#[path = "support/netns.rs"]
mod netns;
#[path = "support/tempdir.rs"]
mod tempdir;
#[path = "support/vpcsim.rs"]
mod vpcsim;

use std::time::Duration;

use ipamd_node::{ec2_test_user, enis_of, eventually, wait_shape_by, Ipamd};
use serde_json::Value;
use tempdir::TempDir;
use vpcsim::VpcSim;

/// The type the test adds to the sim; it must not be in our table.
const EXTRA_TYPE: &str = "m5test.large";
/// Its limits: ENIs, IPv4 addresses per ENI.
const EXTRA_ENIS: u32 = 4;
const EXTRA_IPV4: u32 = 7;

/// A `sitecustomize` that registers [`EXTRA_TYPE`] (a copy of m5.large with other network limits)
/// in moto's catalogue when the sim's interpreter starts.
fn sitecustomize() -> String {
    format!(
        r#"# Written by tests/e2e_ipamd_limits.rs: an instance type moto (and vpc-cni's table) lacks.
import copy
from moto.ec2.models import instance_types as it
spec = copy.deepcopy(it.INSTANCE_TYPES["m5.large"])
spec["InstanceType"] = "{EXTRA_TYPE}"
net = spec["NetworkInfo"]
net["MaximumNetworkInterfaces"] = {EXTRA_ENIS}
net["Ipv4AddressesPerInterface"] = {EXTRA_IPV4}
net["Ipv6AddressesPerInterface"] = {EXTRA_IPV4}
for card in net.get("NetworkCards", []):
    card["MaximumNetworkInterfaces"] = {EXTRA_ENIS}
it.INSTANCE_TYPES["{EXTRA_TYPE}"] = spec
it.InstanceTypeBackend.instance_types.append(it.InstanceType("{EXTRA_TYPE}"))
"#
    )
}

/// The value of an unlabelled metric in a Prometheus text body.
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The instance types the sim's DescribeInstanceTypes calls asked for (`InstanceType.N`).
fn described_types(sim: &VpcSim) -> Vec<String> {
    sim.calls(Some("DescribeInstanceTypes"))
        .unwrap()
        .into_iter()
        .filter(|c| c.status == 200)
        .flat_map(|c| match c.params {
            Value::Object(m) => m
                .into_iter()
                .filter(|(k, _)| k.starts_with("InstanceType"))
                .filter_map(|(_, v)| v.as_str().map(str::to_owned))
                .collect::<Vec<_>>(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn a_type_missing_from_the_table_takes_its_limits_from_describe_instance_types() {
    assert!(
        vpc_cni::limits::lookup(EXTRA_TYPE).is_none(),
        "{EXTRA_TYPE} is in the built-in table; pick another name"
    );
    assert!(vpc_cni::limits::lookup("m5.large").is_some());
    let py = TempDir::new("sitecustomize");
    std::fs::write(py.0.join("sitecustomize.py"), sitecustomize()).unwrap();
    // Only the sim's Python reads it (this test binary starts no other Python).
    std::env::set_var("PYTHONPATH", &py.0);
    let mut sim = VpcSim::start("e2lim");
    let known = sim.launch_node("m5.large");
    let extra = sim.launch_node(EXTRA_TYPE);
    let (x, _) = ec2_test_user(&sim);

    // The table's type: ready without asking EC2 for its limits.
    let d_known = Ipamd::start(&known, &[]);
    assert_eq!(
        described_types(&sim),
        Vec::<String>::new(),
        "m5.large is in the table: no DescribeInstanceTypes\n{}",
        d_known.log()
    );

    // The missing type: ready, after one DescribeInstanceTypes for exactly that type.
    let mut d = Ipamd::start(&extra, &[]);
    assert_eq!(
        described_types(&sim),
        vec![EXTRA_TYPE.to_string()],
        "{}",
        d.log()
    );
    let log = d.log();
    assert!(
        log.contains(&format!(
            "instance type {EXTRA_TYPE} not in the built-in table; limits from DescribeInstanceTypes"
        )),
        "{log}"
    );
    // Max pods as the EKS calculator computes it from those limits: ENIs x (addresses - 1) + 2.
    let max_pods = EXTRA_ENIS * (EXTRA_IPV4 - 1) + 2;
    assert!(
        log.contains(&format!(
            "limits of {EXTRA_TYPE}: {EXTRA_ENIS} ENIs x {EXTRA_IPV4} IPv4 addresses"
        )) && log.contains(&format!("max pods {max_pods}")),
        "{log}"
    );

    // The warm pool is filled to EC2's limit per ENI: 6 secondaries beside the primary address
    // (WARM_ENI_TARGET=1: one ENI's worth free). One pod makes that 5 free, so a second ENI of 6
    // comes.
    let per_eni = (EXTRA_IPV4 - 1) as usize;
    let read = || enis_of(&x, &extra.instance_id);
    wait_shape_by(&d, Duration::from_secs(30), &[(per_eni, 0)], read);
    let pod = d.add_pod("p0");
    wait_shape_by(&d, Duration::from_secs(30), &[(per_eni, 0); 2], read);
    // Metrics report the same limits: ENIs the type can attach, and their addresses.
    eventually(
        &d,
        Duration::from_secs(15),
        "awscni_eni_max from EC2",
        || {
            let m = d.http_get("http://127.0.0.1:61678/metrics", &[]).body;
            metric(&m, "awscni_eni_max") == Some(f64::from(EXTRA_ENIS))
                && metric(&m, "awscni_ip_max") == Some(f64::from(EXTRA_ENIS * (EXTRA_IPV4 - 1)))
        },
    );
    d.del_pod(pod);
    drop(d);
    drop(d_known);
}
