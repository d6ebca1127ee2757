//! Our IMDS client (`vpc_cni::aws::imds::Imds`) against an independent IMDS: amazon-ec2-metadata-mock (built by
//! scripts/build-peers imds-mock), IMDSv2-only, on a free loopback port. What the client reads is compared with
//! the mock's own defaults file (shipped in its module) and with overrides this test gives the mock.
//!
//! Needs the peer cache (scripts/build-peers imds-mock) and `setpriv` (util-linux).

#![allow(clippy::unwrap_used)]

#[path = "support/cni_client.rs"]
mod cni_client;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vpc_cni::aws::imds::Imds;

/// A running mock: killed on drop, and (through the parent-death signal) also if the test process dies.
struct Mock {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Mock {
    /// Starts the mock with `overrides` (its config-file format) on top of one fix every run gets: the mock serves a
    /// MAC's network card index under `network-card-index`, real IMDS (and upstream's client, and ours) under
    /// `network-card`; left alone, the mock answers `network-card` with 200 `network/` (a listing of the longer
    /// key). The path is moved to the real name.
    fn start(tag: &str, mut overrides: Value) -> Mock {
        let mac = s(&defaults()["mac"]).to_string();
        overrides["metadata"]["paths"]["mac-network-interface-card-index"] = json!(format!(
            "/latest/meta-data/network/interfaces/macs/{mac}/network-card"
        ));
        let dir = std::env::temp_dir().join(format!("vcni-aemm-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.json");
        std::fs::write(&config, overrides.to_string()).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .arg(cni_client::peer("imds-mock", "VPC_CNI_PEER_IMDS_MOCK"))
            .args([
                "--hostname",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--imdsv2",
            ])
            .arg("--config-file")
            .arg(&config)
            // The mock may write its state under $HOME: keep that in the test's dir.
            .env("HOME", &dir)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mock = Mock { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the mock did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        mock
    }

    fn client(&self) -> Imds {
        Imds::new(&format!("http://127.0.0.1:{}", self.port)).unwrap()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The mock's built-in values (its aemm-metadata-default-values.json), by key.
fn defaults() -> Value {
    let path = cni_client::peer("imds-mock", "VPC_CNI_PEER_IMDS_MOCK_DEFAULTS");
    let all: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    all["metadata"]["values"].clone()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[test]
fn reads_the_mocks_defaults_through_imdsv2() {
    let mock = Mock::start("defaults", json!({}));
    let d = defaults();
    let imds = mock.client();
    let call = imds.within(Duration::from_secs(10));
    assert_eq!(call.instance_id().unwrap(), s(&d["instance-id"]));
    assert_eq!(call.instance_type().unwrap(), s(&d["instance-type"]));
    assert_eq!(call.region().unwrap(), s(&d["placement-region"]));
    assert_eq!(
        call.availability_zone().unwrap(),
        s(&d["placement-availability-zone"])
    );
    assert_eq!(
        call.local_ipv4().unwrap(),
        s(&d["local-ipv4"]).parse::<Ipv4Addr>().unwrap()
    );
    let mac = call.primary_mac().unwrap();
    assert_eq!(mac.to_string(), s(&d["mac"]));
    assert_eq!(call.macs().unwrap(), vec![mac]);

    let interfaces = call.interfaces().unwrap();
    assert_eq!(interfaces.len(), 1, "{interfaces:?}");
    let eni = &interfaces[0];
    assert_eq!(eni.mac, mac);
    assert_eq!(eni.interface_id, s(&d["mac-network-interface-id"]));
    assert_eq!(eni.device_number.to_string(), s(&d["mac-device-number"]));
    assert_eq!(
        eni.network_card.to_string(),
        s(&d["mac-network-interface-card-index"])
    );
    assert_eq!(eni.subnet_id, s(&d["mac-subnet-id"]));
    assert_eq!(eni.vpc_id, s(&d["mac-vpc-id"]));
    assert_eq!(
        eni.subnet_ipv4_cidr.to_string(),
        s(&d["mac-subnet-ipv4-cidr-block"])
    );
    assert_eq!(
        eni.vpc_ipv4_cidrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![s(&d["mac-vpc-ipv4-cidr-blocks"])]
    );
    assert_eq!(
        eni.security_group_ids,
        vec![s(&d["mac-security-group-ids"]).to_string()]
    );
    assert_eq!(
        eni.local_ipv4s,
        vec![s(&d["mac-local-ipv4s"]).parse::<Ipv4Addr>().unwrap()]
    );
    assert_eq!(
        eni.ipv6s
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![s(&d["mac-ipv6-associations"])]
    );
    // The mock has no ipv4-prefix / ipv6-prefix keys (404): no prefixes, not an error.
    assert!(eni.ipv4_prefixes.is_empty() && eni.ipv6_prefixes.is_empty());
}

#[test]
fn reads_values_the_mock_was_configured_with() {
    let d = defaults();
    let mock = Mock::start(
        "overrides",
        json!({"metadata": {"values": {
            "instance-id": "i-0feed000000000042",
            "instance-type": "c5.large",
            "placement-region": "eu-west-1",
            "placement-availability-zone": "eu-west-1b",
            "mac-local-ipv4s": format!("{}\n172.16.34.50\n172.16.34.51", s(&d["local-ipv4"])),
        }}}),
    );
    let imds = mock.client();
    let call = imds.within(Duration::from_secs(10));
    assert_eq!(call.instance_id().unwrap(), "i-0feed000000000042");
    assert_eq!(call.instance_type().unwrap(), "c5.large");
    assert_eq!(call.region().unwrap(), "eu-west-1");
    assert_eq!(call.availability_zone().unwrap(), "eu-west-1b");
    let mac = call.primary_mac().unwrap();
    let ips: Vec<String> = call
        .local_ipv4s(&mac)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        ips,
        vec![s(&d["local-ipv4"]), "172.16.34.50", "172.16.34.51"],
        "the primary first, then the secondaries, in IMDS order"
    );
}

#[test]
fn a_missing_key_is_none_and_the_session_token_is_reused() {
    let mock = Mock::start("missing", json!({}));
    let imds = mock.client();
    let call = imds.within(Duration::from_secs(10));
    assert_eq!(call.get("no-such-key").unwrap(), None);
    let mac = call.primary_mac().unwrap();
    assert_eq!(call.ipv4_prefixes(&mac).unwrap(), vec![]);
    // A forgotten token is fetched again (the mock is IMDSv2-only: a tokenless GET would be 401).
    imds.forget_token();
    assert_eq!(
        imds.within(Duration::from_secs(10)).instance_id().unwrap(),
        s(&defaults()["instance-id"])
    );
}
