//! CNI stdin: the network configuration (with `prevResult` and `runtimeConfig`) for every
//! command, then the whole plugin (ADD, DEL, CHECK, GC, STATUS, VERSION) over a fake ipamd and
//! a fake kernel. A prevResult that parses must render and parse back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use vpc_cni::cni::apply::{NetError, PodNet};
use vpc_cni::cni::plan::Op;
use vpc_cni::cni::spec::{CniArgs, CniResult, Command, Env, NetConf, SUPPORTED_VERSIONS};
use vpc_cni::cni::{self, Ipamd};
use vpc_cni::rpc::{self, ClientError};

const COMMANDS: [Command; 6] = [
    Command::Add,
    Command::Del,
    Command::Check,
    Command::Status,
    Command::Gc,
    Command::Version,
];

struct FakeIpamd;

impl Ipamd for FakeIpamd {
    fn add(&self, _: rpc::AddNetworkRequest) -> Result<rpc::AddNetworkReply, ClientError> {
        Ok(rpc::AddNetworkReply {
            success: true,
            ip_allocations: vec![rpc::IpAllocation {
                ipv4_addr: "10.0.1.20".into(),
                route_table_id: 2,
                device_number: 1,
                ..Default::default()
            }],
            ..Default::default()
        })
    }
    fn del(&self, _: rpc::DelNetworkRequest) -> Result<rpc::DelNetworkReply, ClientError> {
        Ok(rpc::DelNetworkReply::default())
    }
    fn status(&self) -> Result<rpc::StatusReply, ClientError> {
        Ok(rpc::StatusReply {
            ready: true,
            ..Default::default()
        })
    }
    fn gc(&self, _: rpc::GcRequest) -> Result<rpc::GcReply, ClientError> {
        Ok(rpc::GcReply::default())
    }
}

struct FakeNet;

impl PodNet for FakeNet {
    fn apply(&mut self, _: &Op) -> Result<(), NetError> {
        Ok(())
    }
    fn verify(&mut self, _: &Op) -> Result<(), NetError> {
        Ok(())
    }
    fn host_mac(&mut self, _: &str) -> Result<String, NetError> {
        Ok("02:00:00:00:00:01".into())
    }
    fn netns_exists(&mut self, _: &str) -> bool {
        true
    }
    fn host_veth_index(&mut self, _: &str, _: &str) -> Option<u32> {
        Some(7)
    }
}

fn env(command: Command) -> Env {
    Env {
        command,
        container_id: "0123456789abcdef".into(),
        netns: Some("/var/run/netns/cni-fuzz".into()),
        ifname: "eth0".into(),
        args: CniArgs {
            pod_name: "pod".into(),
            pod_namespace: "default".into(),
            infra_container_id: "0123456789abcdef".into(),
            pod_uid: String::new(),
        },
        path: String::new(),
    }
}

fn without_dns(mut r: CniResult) -> CniResult {
    r.dns = Value::Null;
    r
}

fuzz_target!(|data: &[u8]| {
    let _ = vpc_cni::cni::spec::peek_version(data);
    for command in COMMANDS {
        if let Ok(conf) = NetConf::parse(data, command) {
            if let Some(prev) = conf.prev_result {
                for v in SUPPORTED_VERSIONS {
                    let again =
                        CniResult::from_json(&prev.to_json(v)).expect("a rendered result parses");
                    assert_eq!(without_dns(again), without_dns(prev.clone()), "version {v}");
                }
                let _ = (prev.ipv4(), prev.host_interface(), prev.route_table("eth0"));
            }
        }
        match cni::run(&env(command), data, &FakeIpamd, &mut FakeNet) {
            Ok(out) => drop(out.map(|v| v.to_string())),
            Err(e) => drop(e.to_json("1.1.0").to_string()),
        }
    }
});
