//! Driver tests: the commands over a scripted ipamd and a recording kernel.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use super::apply::fake::RecordingNet;
use super::plan::Op;
use super::*;
use crate::rpc::{AddNetworkReply, DelNetworkReply, IpAllocation, RpcError};

#[derive(Default)]
struct ScriptedIpamd {
    down: bool,
    add_error: Option<RpcError>,
    del_unknown: bool,
    route_table: u32,
    /// Takes the veth a DEL names, as ipamd with its reaper does.
    takes_veth: bool,
    calls: RefCell<Vec<String>>,
    gc_released: Vec<rpc::Released>,
}

fn unreachable() -> ClientError {
    ClientError::Unreachable {
        path: PathBuf::from("/run/test.sock"),
        source: io::Error::from(io::ErrorKind::ConnectionRefused),
    }
}

impl Ipamd for ScriptedIpamd {
    fn add(&self, req: rpc::AddNetworkRequest) -> Result<AddNetworkReply, ClientError> {
        self.calls.borrow_mut().push(format!(
            "add {} {} {}",
            req.network_name, req.container_id, req.if_name
        ));
        if self.down {
            return Err(unreachable());
        }
        if let Some(e) = &self.add_error {
            return Err(ClientError::Remote(e.clone()));
        }
        Ok(AddNetworkReply {
            success: true,
            ip_allocations: vec![IpAllocation {
                ipv4_addr: "10.0.1.20".into(),
                route_table_id: self.route_table,
                device_number: self.route_table.saturating_sub(1),
                ..Default::default()
            }],
            ..Default::default()
        })
    }
    fn del(&self, req: rpc::DelNetworkRequest) -> Result<DelNetworkReply, ClientError> {
        self.calls.borrow_mut().push(format!(
            "del {} {} veth {}",
            req.container_id, req.reason, req.host_veth_index
        ));
        if self.down {
            return Err(unreachable());
        }
        if self.del_unknown {
            return Err(ClientError::Remote(RpcError::new(
                RpcCode::NotFound,
                "unknown pod",
            )));
        }
        Ok(DelNetworkReply {
            success: true,
            ip_allocations: vec![IpAllocation {
                ipv4_addr: "10.0.1.20".into(),
                ..Default::default()
            }],
            host_veth_taken: self.takes_veth && req.host_veth_index != 0,
            ..Default::default()
        })
    }
    fn status(&self) -> Result<rpc::StatusReply, ClientError> {
        if self.down {
            return Err(unreachable());
        }
        Ok(rpc::StatusReply {
            ready: true,
            message: String::new(),
        })
    }
    fn gc(&self, req: rpc::GcRequest) -> Result<rpc::GcReply, ClientError> {
        self.calls
            .borrow_mut()
            .push(format!("gc {} keep {}", req.network_name, req.valid.len()));
        Ok(rpc::GcReply {
            released: self.gc_released.clone(),
        })
    }
}

fn env(command: &str) -> Env {
    let m: BTreeMap<&str, &str> = [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", "/run/netns/pod"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
        ),
    ]
    .into_iter()
    .collect();
    Env::from_vars(|k| m.get(k).map(|v| v.to_string())).unwrap()
}

const CONF: &[u8] = br#"{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni","mtu":"9001"}"#;

#[test]
fn add_wires_the_pod_and_reports_the_result() {
    let ipamd = ScriptedIpamd {
        route_table: 3,
        ..Default::default()
    };
    let mut net = RecordingNet::default();
    let out = run(&env("ADD"), CONF, &ipamd, &mut net).unwrap().unwrap();
    assert_eq!(out["cniVersion"], "1.0.0");
    assert_eq!(out["ips"][0]["address"], "10.0.1.20/32");
    assert_eq!(out["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(out["interfaces"][0]["name"], "eni0d7763386da");
    assert_eq!(out["interfaces"][0]["mac"], "02:00:00:00:00:01");
    assert_eq!(out["interfaces"][1]["sandbox"], "/run/netns/pod");
    assert_eq!(
        out["interfaces"][1]["mac"], "3",
        "route table carried as upstream does"
    );
    assert_eq!(
        *ipamd.calls.borrow(),
        vec!["add aws-cni c0ffee eth0".to_string()]
    );
    assert!(net.applied.contains(&Op::AddRule {
        priority: plan::FROM_POD_RULE_PRIORITY,
        selector: plan::RuleSelector::From("10.0.1.20".parse().unwrap()),
        table: 3
    }));
}

#[test]
fn a_failed_step_undoes_the_wiring_and_releases_the_address() {
    let ipamd = ScriptedIpamd::default();
    let mut net = RecordingNet {
        fail_on: Some("permanent neighbour".into()),
        ..Default::default()
    };
    let e = run(&env("ADD"), CONF, &ipamd, &mut net).unwrap_err();
    assert_eq!(e.code, ErrorCode::SetupFailed);
    assert!(
        e.details.contains("169.254.1.1") && e.details.contains("released"),
        "{e}"
    );
    assert_eq!(ipamd.calls.borrow()[1], "del c0ffee SetupNSFailed veth 0");
    // The undo ran after the partial setup: rules, host link and pod link deleted.
    let tail: Vec<_> = net.applied.iter().rev().take(4).collect();
    assert!(tail
        .iter()
        .any(|o| matches!(o, Op::DeleteHostLink { name } if name == "eni0d7763386da")));
    assert!(tail.iter().any(|o| matches!(o, Op::DeletePodLink { .. })));
    assert!(tail.iter().any(|o| matches!(o, Op::DeleteRules { .. })));
}

#[test]
fn a_failed_veth_creation_leaves_the_interfaces_in_the_way_alone() {
    let ipamd = ScriptedIpamd::default();
    let mut net = RecordingNet {
        fail_on: Some("create veth".into()),
        ..Default::default()
    };
    let e = run(&env("ADD"), CONF, &ipamd, &mut net).unwrap_err();
    assert_eq!(e.code, ErrorCode::SetupFailed);
    assert_eq!(ipamd.calls.borrow()[1], "del c0ffee SetupNSFailed veth 0");
    // Only the stale-leftover removal ran before; the undo removes rules only, no links.
    let after_create: Vec<_> = net.applied.iter().skip(1).collect();
    assert!(!after_create.is_empty());
    assert!(
        after_create
            .iter()
            .all(|o| matches!(o, Op::DeleteRules { .. })),
        "{after_create:?}"
    );
}

#[test]
fn add_with_ipamd_down_is_try_again_later_and_touches_nothing() {
    let ipamd = ScriptedIpamd {
        down: true,
        ..Default::default()
    };
    let mut net = RecordingNet::default();
    let e = run(&env("ADD"), CONF, &ipamd, &mut net).unwrap_err();
    assert_eq!(e.code, ErrorCode::TryAgainLater);
    assert!(net.applied.is_empty());
}

#[test]
fn add_with_no_address_left_is_a_plugin_error_naming_ipamds_reason() {
    let ipamd = ScriptedIpamd {
        add_error: Some(RpcError::new(
            RpcCode::ResourceExhausted,
            "no available IP addresses on the node",
        )),
        ..Default::default()
    };
    let e = run(&env("ADD"), CONF, &ipamd, &mut RecordingNet::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::IpamdFailed);
    assert!(e.details.contains("no available IP"), "{e}");
}

#[test]
fn add_into_a_missing_namespace_asks_ipamd_nothing() {
    let ipamd = ScriptedIpamd::default();
    let mut net = RecordingNet::default();
    net.gone_netns.insert("/run/netns/pod".into());
    let e = run(&env("ADD"), CONF, &ipamd, &mut net).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidEnvironment);
    assert!(ipamd.calls.borrow().is_empty());
}

fn with_prev(conf: &[u8], ip: &str, table: u32) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(conf).unwrap();
    v["prevResult"] = serde_json::json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eni0d7763386da", "mac": "02:00:00:00:00:01"},
                       {"name": "eth0", "mac": table.to_string(), "sandbox": "/run/netns/pod"}],
        "ips": [{"address": format!("{ip}/32"), "gateway": "169.254.1.1", "interface": 1}],
    });
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn del_with_ipamd_down_tears_down_from_prev_result_and_succeeds() {
    let ipamd = ScriptedIpamd {
        down: true,
        ..Default::default()
    };
    let mut net = RecordingNet::default();
    let conf = with_prev(CONF, "10.0.1.99", 2);
    assert_eq!(run(&env("DEL"), &conf, &ipamd, &mut net), Ok(None));
    let ip: Ipv4Addr = "10.0.1.99".parse().unwrap();
    assert!(net.applied.contains(&Op::DeleteRules {
        priority: plan::TO_POD_RULE_PRIORITY,
        selector: plan::RuleSelector::To(ip)
    }));
    assert!(net.applied.contains(&Op::DeleteRules {
        priority: plan::FROM_POD_RULE_PRIORITY,
        selector: plan::RuleSelector::From(ip)
    }));
    assert!(net.applied.contains(&Op::DeletePodLink {
        netns: "/run/netns/pod".into(),
        ifname: "eth0".into()
    }));
    // Never by the pod-derived host name: a newer sandbox of the same pod owns that name.
    assert!(net
        .applied
        .iter()
        .all(|o| !matches!(o, Op::DeleteHostLink { .. })));
}

/// A pod whose eth0's peer is host link 41.
fn net_with_host_veth_41() -> RecordingNet {
    RecordingNet {
        host_veth: Some(41),
        ..Default::default()
    }
}

/// An ipamd whose reaper takes the veth of every pod it releases.
fn ipamd_taking_veths() -> ScriptedIpamd {
    ScriptedIpamd {
        takes_veth: true,
        ..Default::default()
    }
}

/// What a DEL whose veth ipamd takes does to the kernel: the pod's rules and host route.
fn handover_steps(ip: Ipv4Addr, link_index: u32) -> Vec<Op> {
    vec![
        Op::DeleteRules {
            priority: plan::TO_POD_RULE_PRIORITY,
            selector: plan::RuleSelector::To(ip),
        },
        Op::DeleteRules {
            priority: plan::FROM_POD_RULE_PRIORITY,
            selector: plan::RuleSelector::From(ip),
        },
        Op::DeleteHostRoute {
            addr: ip,
            link_index,
        },
    ]
}

#[test]
fn del_hands_the_veth_to_ipamd_and_removes_only_rules_and_route() {
    let ipamd = ipamd_taking_veths();
    let mut net = net_with_host_veth_41();
    assert_eq!(run(&env("DEL"), CONF, &ipamd, &mut net), Ok(None));
    assert_eq!(ipamd.calls.borrow()[0], "del c0ffee PodDeleted veth 41");
    let ip: Ipv4Addr = "10.0.1.20".parse().unwrap();
    assert_eq!(net.applied, handover_steps(ip, 41));
}

#[test]
fn del_with_prev_result_removes_rules_and_route_once_before_asking_ipamd() {
    let ipamd = ipamd_taking_veths();
    let mut net = net_with_host_veth_41();
    let conf = with_prev(CONF, "10.0.1.20", 2);
    assert_eq!(run(&env("DEL"), &conf, &ipamd, &mut net), Ok(None));
    let ip: Ipv4Addr = "10.0.1.20".parse().unwrap();
    // The same three steps as without prevResult, not repeated once ipamd names the same address.
    assert_eq!(net.applied, handover_steps(ip, 41));
    // ipamd answering another address than prevResult's: that one's rules and route go too.
    let mut net = net_with_host_veth_41();
    let conf = with_prev(CONF, "10.0.1.99", 2);
    assert_eq!(run(&env("DEL"), &conf, &ipamd, &mut net), Ok(None));
    assert_eq!(net.applied.len(), 6, "{:?}", net.applied);
    assert!(net.applied.contains(&Op::DeleteHostRoute {
        addr: "10.0.1.99".parse().unwrap(),
        link_index: 41
    }));
    assert!(net.applied.contains(&Op::DeleteHostRoute {
        addr: ip,
        link_index: 41
    }));
}

#[test]
fn del_deletes_the_veth_itself_when_ipamd_does_not_take_it() {
    // An ipamd without the reaper, and one that does not know the pod.
    for ipamd in [
        ScriptedIpamd::default(),
        ScriptedIpamd {
            takes_veth: true,
            del_unknown: true,
            ..Default::default()
        },
    ] {
        let mut net = net_with_host_veth_41();
        assert_eq!(run(&env("DEL"), CONF, &ipamd, &mut net), Ok(None));
        assert!(net.applied.contains(&Op::DeletePodLink {
            netns: "/run/netns/pod".into(),
            ifname: "eth0".into()
        }));
        assert!(net
            .applied
            .iter()
            .all(|o| !matches!(o, Op::DeleteHostRoute { .. })));
    }
}

#[test]
fn del_is_idempotent_and_tolerates_a_vanished_namespace() {
    let ipamd = ScriptedIpamd {
        del_unknown: true,
        ..Default::default()
    };
    let mut net = RecordingNet::default();
    net.gone_netns.insert("/run/netns/pod".into());
    assert_eq!(run(&env("DEL"), CONF, &ipamd, &mut net), Ok(None));
    assert!(net
        .applied
        .iter()
        .all(|o| !matches!(o, Op::DeletePodLink { .. })));
    assert_eq!(run(&env("DEL"), CONF, &ipamd, &mut net), Ok(None));
}

#[test]
fn check_names_every_wrong_piece() {
    let mut net = RecordingNet::default();
    net.missing.insert("host route".into());
    net.missing.insert("rule prio 512".into());
    let conf = with_prev(CONF, "10.0.1.20", 0);
    let e = run(&env("CHECK"), &conf, &ScriptedIpamd::default(), &mut net).unwrap_err();
    assert_eq!(e.code, ErrorCode::CheckFailed);
    assert!(e.msg.contains("2 problem"), "{e}");
    assert!(
        e.details
            .contains("host route 10.0.1.20/32 dev eni0d7763386da"),
        "{e}"
    );
    assert!(e.details.contains("to 10.0.1.20/32 lookup 254"), "{e}");
    // Nothing missing: success.
    let mut ok = RecordingNet::default();
    assert_eq!(
        run(&env("CHECK"), &conf, &ScriptedIpamd::default(), &mut ok),
        Ok(None)
    );
    // No prevResult: invalid configuration.
    let e = run(&env("CHECK"), CONF, &ScriptedIpamd::default(), &mut ok).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidNetworkConfig);
}

#[test]
fn status_maps_ipamd_down_to_50() {
    let conf = br#"{"cniVersion":"1.1.0","name":"aws-cni","type":"aws-cni"}"#;
    let down = ScriptedIpamd {
        down: true,
        ..Default::default()
    };
    let e = run(&env("STATUS"), conf, &down, &mut RecordingNet::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::PluginNotAvailable);
    assert_eq!(
        run(
            &env("STATUS"),
            conf,
            &ScriptedIpamd::default(),
            &mut RecordingNet::default()
        ),
        Ok(None)
    );
    // STATUS is a 1.1 verb.
    let e = run(
        &env("STATUS"),
        CONF,
        &ScriptedIpamd::default(),
        &mut RecordingNet::default(),
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::IncompatibleVersion);
}

#[test]
fn gc_passes_valid_attachments_and_removes_only_rules_of_released_addresses() {
    let conf = br#"{"cniVersion":"1.1.0","name":"aws-cni","type":"aws-cni",
        "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"eth0"}]}"#;
    let ipamd = ScriptedIpamd {
        gc_released: vec![rpc::Released {
            key: rpc::AttachmentKey {
                container_id: "old".into(),
                if_name: "eth0".into(),
            },
            ipv4_addr: "10.0.1.50".into(),
            k8s_pod_namespace: "default".into(),
            k8s_pod_name: "web-0".into(),
        }],
        ..Default::default()
    };
    let mut net = RecordingNet::default();
    assert_eq!(run(&env("GC"), conf, &ipamd, &mut net), Ok(None));
    assert_eq!(*ipamd.calls.borrow(), vec!["gc aws-cni keep 2".to_string()]);
    assert!(net.applied.contains(&Op::DeleteRules {
        priority: plan::TO_POD_RULE_PRIORITY,
        selector: plan::RuleSelector::To("10.0.1.50".parse().unwrap())
    }));
    assert!(net
        .applied
        .iter()
        .all(|o| !matches!(o, Op::DeleteHostLink { .. })));
}

#[test]
fn version_lists_what_we_speak() {
    let out = run(
        &env("VERSION"),
        br#"{"cniVersion":"0.4.0"}"#,
        &ScriptedIpamd::default(),
        &mut RecordingNet::default(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(out["cniVersion"], "0.4.0");
    assert_eq!(
        out["supportedVersions"],
        serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}
