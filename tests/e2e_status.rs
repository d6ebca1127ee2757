//! End to end: `vpc-cni status` against the real ipamd on a VPC-in-a-box node, with pods added through
//! libcni and our plugin; what it shows is checked against EC2 (read with the sim's test user) and the
//! pods the test made. Root only (namespaces); each test starts its own sim and removes what it made.

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

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use ipamd_node::{add_pods, ec2_test_user, enis_of, eventually, wait_shape_by, Ipamd};
use serde_json::Value;
use vpcsim::VpcSim;

/// Runs `vpc-cni status ARGS` inside the node's namespace with `env`; (exit code, stdout).
fn status(d: &Ipamd, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", d.netns()])
        .arg(env!("CARGO_BIN_EXE_vpc-cni"))
        .arg("status")
        .args(args)
        .env_remove("INTROSPECTION_BIND_ADDRESS")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn status_json(d: &Ipamd, args: &[&str], env: &[(&str, &str)]) -> (i32, Value) {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let (code, out) = status(d, &a, env);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    (code, v)
}

#[test]
fn status_shows_the_enis_addresses_and_pods_ec2_and_the_daemon_have() {
    let mut sim = VpcSim::start("e2sts");
    let n1 = sim.launch_node("m5.large");
    let (x, _) = ec2_test_user(&sim);
    let mut d = Ipamd::start(&n1, &[]);
    let pods = add_pods(&mut d, "s", 3);
    // 3 pods leave 6 of 9 free on the primary ENI: ipamd attaches a second ENI (WARM_ENI_TARGET=1).
    wait_shape_by(&d, Duration::from_secs(30), &[(9, 0), (9, 0)], || {
        enis_of(&x, &n1.instance_id)
    });
    eventually(&d, Duration::from_secs(15), "both ENIs in status", || {
        status_json(&d, &[], &[]).1["enis"].as_array().map(Vec::len) == Some(2)
    });
    let ec2_enis = enis_of(&x, &n1.instance_id);
    let (code, v) = status_json(&d, &[], &[]);
    assert_eq!(code, 0, "ready with free addresses: {v}");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["readiness"], "ready", "{v}");
    assert_eq!(v["endpoint"], "127.0.0.1:61679");

    // ENIs, primary flag, device numbers and secondary addresses as EC2 has them.
    let shown: BTreeMap<String, &Value> = v["enis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e))
        .collect();
    let in_ec2: BTreeSet<String> = ec2_enis.iter().map(|n| n.id.clone()).collect();
    assert_eq!(
        shown.keys().cloned().collect::<BTreeSet<_>>(),
        in_ec2,
        "{v}"
    );
    for n in &ec2_enis {
        let e = shown[&n.id];
        let dev = n.attachment.as_ref().and_then(|a| a.device_index).unwrap();
        assert_eq!(e["device_number"], u64::from(dev), "{e}");
        assert_eq!(e["primary"], n.id == n1.primary_eni, "{e}");
        let ec2_secondary: BTreeSet<String> = n
            .private_ips
            .iter()
            .filter(|p| !p.primary)
            .map(|p| format!("{}/32", p.address))
            .collect();
        let shown_blocks: BTreeSet<String> = e["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["cidr"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(shown_blocks, ec2_secondary, "ENI {}", n.id);
    }
    assert_eq!(v["secondary_ips"], 18);
    assert_eq!(v["prefixes"], 0);
    assert_eq!(
        (&v["total_ips"], &v["assigned_ips"], &v["free_ips"]),
        (&Value::from(18), &Value::from(3), &Value::from(15))
    );
    // The daemon's own document agrees.
    let raw = d.http_get("http://127.0.0.1:61679/v1/enis", &[]).json();
    assert_eq!(raw["AssignedIPs"], v["assigned_ips"]);
    assert_eq!(raw["TotalIPs"], v["total_ips"]);

    // Pods: name, address and the ENI EC2 has the address on.
    let holder = |ip: &str| -> String {
        ec2_enis
            .iter()
            .find(|n| n.private_ips.iter().any(|p| p.address.to_string() == ip))
            .map(|n| n.id.clone())
            .unwrap_or_default()
    };
    let shown_pods: BTreeSet<(String, String, String, String)> = v["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (s("namespace"), s("name"), s("address"), s("eni"))
        })
        .collect();
    let want: BTreeSet<(String, String, String, String)> = pods
        .iter()
        .map(|p| {
            let ip = p.ip.to_string();
            (
                "default".to_string(),
                p.name.clone(),
                ip.clone(),
                holder(&ip),
            )
        })
        .collect();
    assert_eq!(shown_pods, want);

    // The table says the same.
    let (code, table) = status(&d, &[], &[]);
    eprintln!("vpc-cni status:\n{table}");
    assert_eq!(code, 0, "{table}");
    assert!(
        table.starts_with("ipamd at 127.0.0.1:61679: ready\n"),
        "{table}"
    );
    assert!(
        table.contains(
            "2 ENIs, 18 secondary addresses, 0 prefixes; 18 addresses: 3 assigned, 15 free; 3 pods"
        ),
        "{table}"
    );
    for p in &pods {
        let ip = p.ip.to_string();
        let pod = format!("default/{}", p.name);
        let line = table
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(ip.as_str()))
            .unwrap_or_else(|| panic!("no row for {ip}:\n{table}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols,
            vec![
                holder(&ip).as_str(),
                &format!("{ip}/32"),
                &ip,
                "assigned",
                &pod
            ],
            "{table}"
        );
    }
    for n in &ec2_enis {
        let dev = n.attachment.as_ref().and_then(|a| a.device_index).unwrap();
        let row = table
            .lines()
            .find(|l| l.starts_with(&n.id) && l.split_whitespace().nth(1) == Some(&dev.to_string()))
            .unwrap_or_else(|| panic!("no ENI row for {}:\n{table}", n.id));
        let primary = if n.id == n1.primary_eni { "yes" } else { "no" };
        assert_eq!(row.split_whitespace().nth(2), Some(primary), "{row}");
    }

    // Bad usage is 64, whether or not a daemon runs.
    assert_eq!(status(&d, &["--bogus"], &[]).0, 64);
    assert_eq!(status(&d, &["--address", "example.com:80"], &[]).0, 64);

    // The daemon down: 2, and it says so.
    for p in pods {
        d.del_pod(p);
    }
    assert_eq!(d.stop(), Some(0));
    let (code, v) = status_json(&d, &[], &[]);
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["reachable"], false);
    assert_eq!(v["exit_code"], 2);
    let (code, table) = status(&d, &[], &[]);
    assert_eq!(code, 2);
    assert!(
        table.starts_with("ipamd at 127.0.0.1:61679: not reachable: "),
        "{table}"
    );
}

#[test]
fn status_reads_a_unix_socket_and_a_full_node_exits_1() {
    let mut sim = VpcSim::start("e2stu");
    let n1 = sim.launch_node("t3.medium");
    let (x, _) = ec2_test_user(&sim);
    let sock_dir = tempdir::TempDir::new("status-sock");
    let unix = format!("unix:{}", sock_dir.0.join("introspection.sock").display());
    // One ENI of a t3.medium: 5 secondary addresses, so five pods fill the node.
    let mut d = Ipamd::start(
        &n1,
        &[
            ("INTROSPECTION_BIND_ADDRESS", unix.as_str()),
            ("MAX_ENI", "1"),
        ],
    );
    wait_shape_by(&d, Duration::from_secs(30), &[(5, 0)], || {
        enis_of(&x, &n1.instance_id)
    });
    let env = [("INTROSPECTION_BIND_ADDRESS", unix.as_str())];
    eventually(&d, Duration::from_secs(15), "5 addresses in status", || {
        status_json(&d, &[], &env).1["total_ips"] == 5
    });
    let (code, v) = status_json(&d, &[], &env);
    assert_eq!(
        (code, &v["endpoint"]),
        (0, &Value::from(unix.clone())),
        "{v}"
    );
    // Nothing on TCP when introspection is on a unix socket.
    assert_eq!(status(&d, &[], &[]).0, 2);
    let pods = add_pods(&mut d, "f", 5);
    let (code, v) = status_json(&d, &[], &env);
    assert_eq!(code, 1, "no free address: {v}");
    assert_eq!(
        (&v["assigned_ips"], &v["free_ips"], &v["readiness"]),
        (&Value::from(5), &Value::from(0), &Value::from("ready"))
    );
    assert_eq!(v["pods"].as_array().map(Vec::len), Some(5));
    let (code, table) = status(&d, &["--address", &unix], &[]);
    assert_eq!(code, 1);
    assert!(table.contains("no free address"), "{table}");
    for p in pods {
        let ip = p.ip.to_string();
        assert!(
            table
                .lines()
                .any(|l| l.contains(&ip) && l.ends_with(&format!("default/{}", p.name))),
            "{ip}:\n{table}"
        );
        d.del_pod(p);
    }
}

#[test]
fn status_shows_prefixes_and_the_pods_inside_them() {
    let mut sim = VpcSim::start("e2stp");
    let n1 = sim.launch_node("m5.large");
    let (x, _) = ec2_test_user(&sim);
    let mut d = Ipamd::start(
        &n1,
        &[
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("WARM_PREFIX_TARGET", "1"),
        ],
    );
    let pods = add_pods(&mut d, "q", 2);
    let ec2_prefixes = |x: &vpc_cni::aws::ec2::Ec2Client| -> BTreeSet<String> {
        enis_of(x, &n1.instance_id)
            .iter()
            .flat_map(|n| n.ipv4_prefixes.iter().map(|c| format!("{}/{c}", n.id)))
            .collect()
    };
    let shown_prefixes = |v: &Value| -> BTreeSet<String> {
        v["enis"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| {
                e["blocks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|b| b["prefix"] == true)
                    .map(|b| {
                        format!(
                            "{}/{}",
                            e["id"].as_str().unwrap(),
                            b["cidr"].as_str().unwrap()
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    eventually(
        &d,
        Duration::from_secs(30),
        "status shows EC2's prefixes",
        || {
            let v = status_json(&d, &[], &[]).1;
            let want = ec2_prefixes(&x);
            !want.is_empty() && shown_prefixes(&v) == want
        },
    );
    let (code, v) = status_json(&d, &[], &[]);
    assert_eq!(code, 0, "{v}");
    let n = shown_prefixes(&v).len() as u64;
    assert_eq!(v["prefixes"], n);
    assert_eq!(v["total_ips"], 16 * n, "{v}");
    assert_eq!(v["assigned_ips"], 2);
    let (_, table) = status(&d, &[], &[]);
    for p in &pods {
        let ip = p.ip.to_string();
        let row = table
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(ip.as_str()))
            .unwrap_or_else(|| panic!("no row for {ip}:\n{table}"));
        let block = row.split_whitespace().nth(1).unwrap();
        assert!(block.ends_with("/28"), "{row}");
        assert!(row.ends_with(&format!("default/{}", p.name)), "{row}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.contains(" prefix, ") && l.contains(" of 16 assigned")),
        "{table}"
    );
    for p in pods {
        d.del_pod(p);
    }
}
