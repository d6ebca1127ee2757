//! The CNI plugin (`argv[0]` = `aws-cni`).
//!
//! - [`spec`]: the CNI contract (environment, configuration, results, errors, versions) — pure;
//! - [`plan`]: configuration + allocation → ordered kernel steps — pure;
//! - [`apply`]: the [`apply::PodNet`] seam and the run/undo/verify rules;
//! - [`kernel`]: [`apply::PodNet`] on rtnetlink;
//! - [`install`]: writing `10-aws.conflist` and linking the binary as `aws-cni`;
//! - this module: the commands (ADD, DEL, CHECK, STATUS, GC, VERSION) over an [`Ipamd`] and a [`apply::PodNet`].
//!
//! stdout carries only the result or the error JSON; logs go to `pluginLogFile` or stderr.

pub mod apply;
pub mod install;
pub mod kernel;
pub use vpc_cni_core::cni::plan;
pub use vpc_cni_core::cni::spec;

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::process::ExitCode;

use serde_json::Value;

use crate::config::{LogLevel, PluginLogDestination};
use crate::rpc::{self, ClientError, RpcCode};
use apply::PodNet;
use plan::{PodWiring, Teardown, GATEWAY};
use spec::{CniError, CniResult, Command, Env, ErrorCode, Interface, IpConfig, NetConf, Route};

/// What the plugin needs from ipamd; [`rpc::Client`] in production.
pub trait Ipamd {
    /// `AddNetwork`.
    fn add(&self, req: rpc::AddNetworkRequest) -> Result<rpc::AddNetworkReply, ClientError>;
    /// `DelNetwork`.
    fn del(&self, req: rpc::DelNetworkRequest) -> Result<rpc::DelNetworkReply, ClientError>;
    /// `Status`.
    fn status(&self) -> Result<rpc::StatusReply, ClientError>;
    /// `GcNetwork`.
    fn gc(&self, req: rpc::GcRequest) -> Result<rpc::GcReply, ClientError>;
}

impl Ipamd for rpc::Client {
    fn add(&self, req: rpc::AddNetworkRequest) -> Result<rpc::AddNetworkReply, ClientError> {
        self.add_network(req)
    }
    fn del(&self, req: rpc::DelNetworkRequest) -> Result<rpc::DelNetworkReply, ClientError> {
        self.del_network(req)
    }
    fn status(&self) -> Result<rpc::StatusReply, ClientError> {
        rpc::Client::status(self)
    }
    fn gc(&self, req: rpc::GcRequest) -> Result<rpc::GcReply, ClientError> {
        self.gc_network(req)
    }
}

/// Entry point of the CNI plugin role.
pub fn plugin_main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let env = Env::from_vars(|k| std::env::var(k).ok());
    let version = spec::peek_version(&stdin)
        .filter(|v| spec::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| spec::LATEST_VERSION.to_string());
    init_logging(&stdin);
    let outcome = match (read, env) {
        (Err(e), _) => Err(CniError::new(
            ErrorCode::IoFailure,
            "cannot read the network configuration from stdin",
            e.to_string(),
        )),
        (_, Err(e)) => Err(e),
        (Ok(_), Ok(env)) => {
            log::info!(
                "{:?} container={} netns={:?} ifname={} pod={}/{}",
                env.command,
                env.container_id,
                env.netns,
                env.ifname,
                env.args.pod_namespace,
                env.args.pod_name
            );
            match env.command {
                Command::Status | Command::Version => {
                    run(&env, &stdin, &rpc::Client::from_env(), &mut NoKernel)
                }
                _ => match kernel::KernelNet::open() {
                    Ok(mut net) => run(&env, &stdin, &rpc::Client::from_env(), &mut net),
                    Err(e) => Err(CniError::new(
                        ErrorCode::IoFailure,
                        "cannot open route netlink in the host namespace",
                        e.to_string(),
                    )),
                },
            }
        }
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            let _ = writeln!(out, "{}", e.to_json(&version));
            ExitCode::FAILURE
        }
    }
}

/// Installs the plugin logger from the configuration's `pluginLogFile` and `pluginLogLevel` (best effort: a
/// configuration that does not parse still gets warnings on stderr). Never stdout.
fn init_logging(stdin: &[u8]) {
    #[derive(serde::Deserialize)]
    struct LogConf {
        #[serde(rename = "pluginLogFile")]
        file: Option<String>,
        #[serde(rename = "pluginLogLevel")]
        level: Option<String>,
    }
    let conf = serde_json::from_slice::<LogConf>(stdin).ok();
    let (dest, redirected) =
        PluginLogDestination::parse(conf.as_ref().and_then(|c| c.file.as_deref()).unwrap_or(""));
    let level = conf
        .as_ref()
        .and_then(|c| c.level.as_deref())
        .and_then(LogLevel::parse)
        .unwrap_or(match dest {
            PluginLogDestination::Stderr => LogLevel::Warn,
            PluginLogDestination::File(_) => LogLevel::Debug,
        });
    if crate::logging::init_plugin_with(&dest, level).is_ok() {
        if let Some(w) = redirected {
            log::warn!("{w}");
        }
    }
}

/// A [`PodNet`] for commands that never touch the kernel (STATUS, VERSION).
struct NoKernel;

impl NoKernel {
    fn refuse(step: String) -> apply::NetError {
        apply::NetError {
            step,
            cause: "this command does not touch the kernel".into(),
        }
    }
}

impl PodNet for NoKernel {
    fn apply(&mut self, op: &plan::Op) -> Result<(), apply::NetError> {
        Err(Self::refuse(op.to_string()))
    }
    fn verify(&mut self, op: &plan::Op) -> Result<(), apply::NetError> {
        Err(Self::refuse(op.to_string()))
    }
    fn host_mac(&mut self, host_ifname: &str) -> Result<String, apply::NetError> {
        Err(Self::refuse(format!("read MAC of {host_ifname}")))
    }
    fn netns_exists(&mut self, _netns: &str) -> bool {
        false
    }
    fn host_veth_index(&mut self, _netns: &str, _ifname: &str) -> Option<u32> {
        None
    }
}

/// Runs one command. `Ok(Some(json))` is printed on stdout; `Ok(None)` prints nothing.
pub fn run(
    env: &Env,
    stdin: &[u8],
    ipamd: &dyn Ipamd,
    net: &mut dyn PodNet,
) -> Result<Option<Value>, CniError> {
    if env.command == Command::Version {
        let v = spec::peek_version(stdin).unwrap_or_else(|| spec::LATEST_VERSION.to_string());
        return Ok(Some(spec::version_json(&v)));
    }
    let conf = NetConf::parse(stdin, env.command)?;
    match env.command {
        Command::Add => cmd_add(env, &conf, ipamd, net).map(Some),
        Command::Del => cmd_del(env, &conf, ipamd, net).map(|()| None),
        Command::Check => cmd_check(env, &conf, net).map(|()| None),
        Command::Status => cmd_status(ipamd).map(|()| None),
        Command::Gc => cmd_gc(&conf, ipamd, net).map(|()| None),
        Command::Version => Ok(None),
    }
}

/// The host veth name of this pod: from the kubelet's pod name, else (no K8S args) from the container id.
fn host_ifname(env: &Env, conf: &NetConf) -> String {
    if env.args.pod_name.is_empty() && env.args.pod_namespace.is_empty() {
        plan::host_veth_name(conf.veth_prefix.as_str(), &env.container_id, &env.ifname)
    } else {
        plan::host_veth_name(
            conf.veth_prefix.as_str(),
            &env.args.pod_namespace,
            &env.args.pod_name,
        )
    }
}

fn ipamd_error(what: &str, e: ClientError) -> CniError {
    match e {
        ClientError::Unreachable { .. } | ClientError::Io { .. } => CniError::new(
            ErrorCode::TryAgainLater,
            format!("{what}: ipamd is not answering"),
            format!("{e}; is aws-node (ipamd) running on this node?"),
        ),
        ClientError::Remote(r) if r.code == RpcCode::Unavailable => CniError::new(
            ErrorCode::TryAgainLater,
            format!("{what}: ipamd is not ready"),
            r.message,
        ),
        other => CniError::new(ErrorCode::IpamdFailed, what.to_string(), other.to_string()),
    }
}

fn del_request(env: &Env, conf: &NetConf, reason: &str) -> rpc::DelNetworkRequest {
    rpc::DelNetworkRequest {
        k8s_pod_name: env.args.pod_name.clone(),
        k8s_pod_namespace: env.args.pod_namespace.clone(),
        k8s_pod_infra_container_id: env.args.infra_container_id.clone(),
        reason: reason.to_string(),
        container_id: env.container_id.clone(),
        if_name: env.ifname.clone(),
        network_name: conf.name.clone(),
        k8s_pod_uid: env.args.pod_uid.clone(),
        host_veth_index: 0,
    }
}

fn cmd_add(
    env: &Env,
    conf: &NetConf,
    ipamd: &dyn Ipamd,
    net: &mut dyn PodNet,
) -> Result<Value, CniError> {
    let netns = env.netns.clone().unwrap_or_default();
    if !net.netns_exists(&netns) {
        return Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            "CNI_NETNS is not a network namespace",
            format!("{netns:?} does not exist or cannot be entered"),
        ));
    }
    let reply = ipamd
        .add(rpc::AddNetworkRequest {
            k8s_pod_name: env.args.pod_name.clone(),
            k8s_pod_namespace: env.args.pod_namespace.clone(),
            k8s_pod_infra_container_id: env.args.infra_container_id.clone(),
            netns: netns.clone(),
            if_name: env.ifname.clone(),
            network_name: conf.name.clone(),
            container_id: env.container_id.clone(),
            requires_multi_nic_attachment: false,
        })
        .map_err(|e| ipamd_error("failed to assign an IP address to container", e))?;
    let alloc = reply.ip_allocations.first().cloned().unwrap_or_default();
    let ipv4 = match alloc.ipv4_addr.parse::<Ipv4Addr>() {
        Ok(ip) if reply.success => ip,
        _ => {
            release_after_failure(env, conf, ipamd);
            return Err(CniError::new(
                ErrorCode::IpamdFailed,
                "failed to assign an IP address to container",
                format!(
                    "ipamd answered success={} with address {:?}; an IPv4 address is required",
                    reply.success, alloc.ipv4_addr
                ),
            ));
        }
    };
    let wiring = PodWiring {
        netns: netns.clone(),
        pod_ifname: env.ifname.clone(),
        host_ifname: host_ifname(env, conf),
        ipv4,
        mtu: conf.mtu,
        route_table: alloc.route_table_id,
    };
    let ops = plan::add_plan(&wiring);
    let setup = apply::apply_all(net, &ops)
        .map_err(|f| {
            // Links are ours to remove only once CreateVeth succeeded: an interface that was in the way
            // (the reason CreateVeth failed) belongs to someone else.
            let veth_created = ops[..f.index]
                .iter()
                .any(|o| matches!(o, plan::Op::CreateVeth { .. }));
            (veth_created, f.error)
        })
        .and_then(|()| net.host_mac(&wiring.host_ifname).map_err(|e| (true, e)));
    let host_mac = match setup {
        Ok(mac) => mac,
        Err((veth_created, e)) => {
            let undo = plan::teardown_plan(&Teardown {
                netns: veth_created.then_some(netns),
                pod_ifname: env.ifname.clone(),
                host_ifname: veth_created.then(|| wiring.host_ifname.clone()),
                ipv4: Some(ipv4),
                veth_taken: None,
            });
            let leftovers = apply::teardown_all(net, &undo);
            release_after_failure(env, conf, ipamd);
            let mut details = format!("{e}; the wiring was undone and {ipv4} released");
            for l in leftovers {
                details.push_str(&format!("; undo also failed: {l}"));
            }
            return Err(CniError::new(
                ErrorCode::SetupFailed,
                "failed to set up the pod network",
                details,
            ));
        }
    };
    log::info!(
        "added {}/{} {ipv4} via {}",
        env.args.pod_namespace,
        env.args.pod_name,
        wiring.host_ifname
    );
    let result = CniResult {
        interfaces: vec![
            Interface {
                name: wiring.host_ifname.clone(),
                mac: host_mac,
                sandbox: String::new(),
            },
            Interface {
                name: env.ifname.clone(),
                mac: alloc.route_table_id.to_string(),
                sandbox: wiring.netns.clone(),
            },
        ],
        ips: vec![IpConfig {
            address: format!("{ipv4}/32"),
            gateway: Some(GATEWAY.to_string()),
            interface: Some(1),
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".into(),
            gw: Some(GATEWAY.to_string()),
        }],
        dns: Value::Null,
    };
    Ok(result.to_json(&conf.cni_version))
}

fn release_after_failure(env: &Env, conf: &NetConf, ipamd: &dyn Ipamd) {
    match ipamd.del(del_request(env, conf, "SetupNSFailed")) {
        Ok(_) => {}
        Err(ClientError::Remote(e)) if e.code == RpcCode::NotFound => {}
        Err(e) => log::error!("release after a failed ADD of {}: {e}", env.container_id),
    }
}

fn cmd_del(
    env: &Env,
    conf: &NetConf,
    ipamd: &dyn Ipamd,
    net: &mut dyn PodNet,
) -> Result<(), CniError> {
    let prev_ipv4 = conf.prev_result.as_ref().and_then(CniResult::ipv4);
    let netns = env.netns.clone().filter(|n| net.netns_exists(n));
    let host_veth = netns
        .as_deref()
        .and_then(|n| net.host_veth_index(n, &env.ifname));
    // With the address known from prevResult (what runtimes pass), the rules and the host route go before ipamd
    // hears of the DEL: ipamd deletes the veth as soon as it has answered, which holds the kernel's rtnl lock for
    // a while, and these steps would wait behind it (about 0.8 ms of a 1.5 ms DEL, in strace).
    let mut failures = Vec::new();
    let early = prev_ipv4.zip(host_veth);
    if let Some((ip, index)) = early {
        failures.extend(apply::teardown_all(
            net,
            &plan::teardown_plan(&Teardown {
                netns: None,
                pod_ifname: env.ifname.clone(),
                host_ifname: None,
                ipv4: Some(ip),
                veth_taken: Some(index),
            }),
        ));
    }
    let mut veth_taken = None;
    let from_ipamd = match ipamd.del(rpc::DelNetworkRequest {
        host_veth_index: host_veth.unwrap_or(0),
        ..del_request(env, conf, "PodDeleted")
    }) {
        Ok(reply) => {
            if reply.host_veth_taken {
                veth_taken = host_veth;
            }
            reply
                .ip_allocations
                .first()
                .and_then(|a| a.ipv4_addr.parse::<Ipv4Addr>().ok())
        }
        Err(ClientError::Remote(e)) if e.code == RpcCode::NotFound => {
            log::info!(
                "ipamd has no address for {}/{}: {e}",
                env.container_id,
                env.ifname
            );
            None
        }
        Err(e) => {
            // As upstream: no guarantee the runtime retries a DEL, so tear down from prevResult and succeed.
            log::warn!(
                "DEL of {}: {e}; tearing down from prevResult",
                env.container_id
            );
            None
        }
    };
    // What the early steps did not cover: the rules of another address than prevResult's (ipamd's answer wins),
    // and the pair when ipamd did not take it.
    let ipv4 = from_ipamd
        .or(prev_ipv4)
        .filter(|ip| early.map(|(done, _)| done) != Some(*ip));
    // The host veth is never deleted by name here: its name derives from the pod's namespace/name, which a newer
    // sandbox of the same pod shares. ipamd deletes the pair by index after answering (the kernel's unregistration
    // of a link takes tens of milliseconds); if it did not take it, deleting the pod-side end inside this sandbox's
    // namespace removes the pair. A vanished namespace took the pair with it.
    let ops = plan::teardown_plan(&Teardown {
        netns,
        pod_ifname: env.ifname.clone(),
        host_ifname: None,
        ipv4,
        veth_taken,
    });
    failures.extend(apply::teardown_all(net, &ops));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::TeardownFailed,
            "failed to tear down the pod network",
            failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ))
    }
}

fn cmd_check(env: &Env, conf: &NetConf, net: &mut dyn PodNet) -> Result<(), CniError> {
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidNetworkConfig,
            "prevResult is required for CHECK",
            "the runtime must pass the ADD result as prevResult",
        )
    })?;
    let ipv4 = prev.ipv4().ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidNetworkConfig,
            "prevResult has no IPv4 address",
            "CHECK needs the address ADD assigned",
        )
    })?;
    let netns = env.netns.clone().unwrap_or_default();
    if !net.netns_exists(&netns) {
        return Err(CniError::new(
            ErrorCode::CheckFailed,
            "pod network namespace is gone",
            format!("{netns:?} does not exist"),
        ));
    }
    let wiring = PodWiring {
        netns,
        pod_ifname: env.ifname.clone(),
        host_ifname: host_ifname(env, conf),
        ipv4,
        mtu: conf.mtu,
        route_table: prev.route_table(&env.ifname).unwrap_or(0),
    };
    let wrong = apply::verify_all(net, &plan::add_plan(&wiring));
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::CheckFailed,
            format!(
                "pod wiring of {ipv4} is not as set up ({} problem(s))",
                wrong.len()
            ),
            wrong
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ))
    }
}

fn cmd_status(ipamd: &dyn Ipamd) -> Result<(), CniError> {
    match ipamd.status() {
        Ok(s) if s.ready => Ok(()),
        Ok(s) => Err(CniError::new(
            ErrorCode::PluginNotAvailable,
            "plugin not available: ipamd is not ready",
            s.message,
        )),
        Err(e) => Err(CniError::new(
            ErrorCode::PluginNotAvailable,
            "plugin not available: ipamd is not answering",
            e.to_string(),
        )),
    }
}

fn cmd_gc(conf: &NetConf, ipamd: &dyn Ipamd, net: &mut dyn PodNet) -> Result<(), CniError> {
    let valid = conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| rpc::AttachmentKey {
            container_id: a.container_id.clone(),
            if_name: a.ifname.clone(),
        })
        .collect();
    let reply = ipamd
        .gc(rpc::GcRequest {
            network_name: conf.name.clone(),
            valid,
        })
        .map_err(|e| ipamd_error("garbage collection of stale addresses failed", e))?;
    let mut failures = Vec::new();
    for r in &reply.released {
        log::info!(
            "gc released {} of {}/{} (pod {}/{})",
            r.ipv4_addr,
            r.key.container_id,
            r.key.if_name,
            r.k8s_pod_namespace,
            r.k8s_pod_name
        );
        // Only the rules: the released address belonged to the stale attachment until now, while a host veth
        // named after the pod may belong to a newer sandbox of the same pod (its namespace took the old pair).
        let ops = plan::teardown_plan(&Teardown {
            netns: None,
            pod_ifname: r.key.if_name.clone(),
            host_ifname: None,
            ipv4: r.ipv4_addr.parse().ok(),
            veth_taken: None,
        });
        failures.extend(apply::teardown_all(net, &ops));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::TeardownFailed,
            "addresses were released but some wiring could not be removed",
            failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ))
    }
}

#[cfg(test)]
mod tests;
