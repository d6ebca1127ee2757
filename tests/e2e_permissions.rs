//! End to end: who may do what on a node running the real ipamd (VPC-in-a-box, root only).
//!
//! What is checked, and how it compares with upstream v1.23:
//! - the plugin socket is mode 0660, owned by root:root (upstream: `os.Chmod(socketPath, 0660)`): a process of
//!   another user cannot connect, one in group root can;
//! - introspection listens on 127.0.0.1:61679 only (upstream's default `INTROSPECTION_BIND_ADDRESS`): a pod
//!   cannot reach it on the node's address; metrics listen on `:61678`, every IPv4 and IPv6 address, as
//!   upstream's (Go's `:port` is a dual-stack socket), so a pod can scrape them, also with the namespace's
//!   `net.ipv6.bindv6only=1`;
//! - the checkpoint is 0600 (upstream's `os.CreateTemp`), ipamd's and the plugin's log files 0600 (upstream's
//!   lumberjack creates 0600);
//! - no credential leaks: with static keys from the environment and with the instance role's temporary keys
//!   from IMDS, and with EC2 calls that fail, no secret key or session token appears in ipamd's log or stderr,
//!   the plugin log, the checkpoint, any introspection answer, the metrics, `vpc-cni status --json` or
//!   `vpc-cni config`.

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

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ipamd_node::{add_pods, eventually, Ipamd};
use serde_json::Value;
use vpc_cni::rpc;
use vpcsim::{Fault, VpcSim};

const NOBODY: u32 = 65534;

/// Connects to the unix socket `path` as `uid`:`gid` (no supplementary groups); the error text if it fails.
fn connect_as(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    let script = "import socket, sys\n\
                  s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
                  try:\n    s.connect(sys.argv[1])\n\
                  except OSError as e:\n    print(e.strerror); sys.exit(1)\n";
    let out = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--clear-groups", "/usr/bin/python3", "-c", script])
        .arg(path)
        .env_clear()
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

/// `ss -ltnH` in the node: the local addresses listening on `port`.
fn listening_on(d: &Ipamd, port: u16) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", d.netns(), "ss", "-ltnH"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .filter(|a| a.rsplit(':').next() == Some(&port.to_string()))
        .collect()
}

#[test]
fn plugin_socket_introspection_metrics_and_files_are_as_documented() {
    let mut sim = VpcSim::start("e2prm");
    let n1 = sim.launch_node("m5.large");
    // An IPv6 wildcard socket is IPv6 alone under bindv6only=1 unless it asks otherwise: ipamd must ask.
    let ns = n1.namespace.clone().unwrap();
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv6.bindv6only=1",
        ])
        .status()
        .unwrap();
    assert!(st.success(), "sysctl in {ns}");
    let mut d = Ipamd::start(&n1, &[]);
    let pods = add_pods(&mut d, "p", 1);

    // The plugin socket: 0660 root:root.
    let sock = d.socket();
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o7777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    // The directory is open to everyone, so only the socket's own mode decides: a socket we make 0666 next to
    // it takes the connection of the same user.
    let probe = d.dir.0.join("probe.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&probe).unwrap();
    std::fs::set_permissions(&probe, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    assert_eq!(connect_as(&probe, NOBODY, NOBODY), Ok(()));
    let refused = connect_as(&sock, NOBODY, NOBODY).expect_err("nobody reached ipamd");
    assert!(refused.contains("Permission denied"), "{refused}");
    // Group root may (0660), as root may.
    assert_eq!(connect_as(&sock, NOBODY, 0), Ok(()));
    let status = rpc::Client::new(&sock, Duration::from_secs(2))
        .status()
        .unwrap();
    assert!(status.ready);

    // Introspection on loopback only, metrics on every address (ss writes a dual-stack wildcard as `*`).
    assert_eq!(listening_on(&d, 61679), vec!["127.0.0.1:61679"]);
    assert_eq!(listening_on(&d, 61678), vec!["*:61678"]);
    assert_eq!(
        d.http_get("http://[::1]:61678/metrics", &["-g"]).status,
        200
    );
    let node_ip = n1.primary_ip.clone();
    let pod = &pods[0];
    let curl = |url: &str| -> (bool, String) {
        pod.ns.try_exec(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "3",
                url,
            ],
        )
    };
    let (ok, code) = curl(&format!("http://{node_ip}:61678/metrics"));
    assert!(ok && code == "200", "a pod scrapes the metrics: {code}");
    let (ok, code) = curl(&format!("http://{node_ip}:61679/v1/enis"));
    assert!(
        !ok && code == "000",
        "a pod must not reach introspection: {code}"
    );
    let a = d.http_get(&format!("http://{node_ip}:61679/v1/enis"), &[]);
    assert_eq!(a.status, 0, "introspection on the node's address: {a:?}");
    assert_eq!(
        d.http_get("http://127.0.0.1:61679/v1/enis", &[]).status,
        200
    );

    // File modes: checkpoint and logs 0600.
    assert_eq!(mode(&d.checkpoint()), 0o600);
    assert_eq!(mode(&d.log_path()), 0o600);
    let plugin_log = d.dir.0.join("plugin.log");
    assert!(
        std::fs::metadata(&plugin_log).unwrap().len() > 0,
        "the plugin logged"
    );
    assert_eq!(mode(&plugin_log), 0o600);
    for p in pods {
        d.del_pod(p);
    }
}

/// Everything a user or a scraper can read from the node's ipamd, concatenated.
fn everything_readable(d: &Ipamd) -> String {
    let mut all = d.log();
    for f in ["plugin.log", "ipam.json"] {
        all.push_str(&std::fs::read_to_string(d.dir.0.join(f)).unwrap_or_default());
    }
    for path in [
        "/",
        "/v1/enis",
        "/v1/eni-configs",
        "/v1/networkutils-env-settings",
        "/v1/ipamd-env-settings",
        "/nope",
        "/readyz",
    ] {
        let a = d.http_get(&format!("http://127.0.0.1:61679{path}"), &[]);
        assert!(a.status != 0, "{path} answered");
        all.push_str(&a.body);
    }
    let m = d.http_get("http://127.0.0.1:61678/metrics", &[]);
    assert_eq!(m.status, 200);
    all.push_str(&m.body);
    let out = Command::new("ip")
        .args(["netns", "exec", d.netns()])
        .arg(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(["status", "--json"])
        .output()
        .unwrap();
    all.push_str(&String::from_utf8_lossy(&out.stdout));
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    // `vpc-cni config` with the daemon's own environment (credentials included).
    let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .arg("config")
        .env_clear()
        .envs(&d.env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    all.push_str(&String::from_utf8_lossy(&out.stdout));
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    all
}

/// The instance role's temporary keys as the node's IMDS hands them out: (key id, secret key, session token).
fn imds_role_credentials(d: &Ipamd, role: &str) -> (String, String, String) {
    let run = |args: &[&str]| -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", d.netns(), "curl", "-s", "--max-time", "5"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let token = run(&[
        "-X",
        "PUT",
        "-H",
        "X-aws-ec2-metadata-token-ttl-seconds: 60",
        "http://169.254.169.254/latest/api/token",
    ]);
    let header = format!("X-aws-ec2-metadata-token: {token}");
    let body = run(&[
        "-H",
        &header,
        &format!("http://169.254.169.254/latest/meta-data/iam/security-credentials/{role}"),
    ]);
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let field = |k: &str| v[k].as_str().unwrap().to_string();
    (
        field("AccessKeyId"),
        field("SecretAccessKey"),
        field("Token"),
    )
}

#[test]
fn no_secret_key_or_session_token_in_logs_errors_introspection_or_metrics() {
    let mut sim = VpcSim::start("e2sec");
    let n1 = sim.launch_node("m5.large");
    let n2 = sim.launch_node("m5.large");
    let role = sim.state()["iam_role"].as_str().unwrap().to_string();
    // WARM_IP_TARGET makes every pod a reason to call EC2, so the faults below are met.
    let warm = ("WARM_IP_TARGET", "2");
    let mut with_keys = Ipamd::start(&n1, &[warm]);
    let mut with_role = Ipamd::start(
        &n2,
        &[
            warm,
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ],
    );
    let (role_key, role_secret, role_token) = imds_role_credentials(&with_role, &role);
    let secrets = [
        (
            "the node user's secret key",
            sim.secret_access_key().to_string(),
        ),
        ("the role's secret key", role_secret),
        ("the role's session token", role_token),
    ];
    for (what, s) in &secrets {
        assert!(s.len() >= 16, "{what} looks real: {s:?}");
    }
    // EC2 saw both identities: the node user's keys and the role's temporary ones.
    let calls = sim.calls(None).unwrap();
    let keys: std::collections::BTreeSet<&str> = calls
        .iter()
        .filter_map(|c| c.access_key_id.as_deref())
        .collect();
    assert!(keys.contains(sim.access_key_id()), "{keys:?}");
    assert!(keys.contains(role_key.as_str()), "{keys:?}");

    // Failing EC2 calls (refused, dropped, throttled), met by each daemon in turn.
    let mut pods = Vec::new();
    for round in 0..2 {
        // Both pools at their target first, so only this round's daemon meets this round's faults.
        for d in [&with_keys, &with_role] {
            eventually(d, Duration::from_secs(30), "WARM_IP_TARGET met", || {
                let v = d.http_get("http://127.0.0.1:61679/v1/enis", &[]).json();
                v["TotalIPs"]
                    .as_u64()
                    .zip(v["AssignedIPs"].as_u64())
                    .map(|(t, a)| t - a)
                    == Some(2)
            });
        }
        let (d, prefix) = if round == 0 {
            (&mut with_keys, "k")
        } else {
            (&mut with_role, "r")
        };
        for f in [
            Fault::error("AssignPrivateIpAddresses", "UnauthorizedOperation", 403).count(2),
            Fault::drop_connection("AssignPrivateIpAddresses").count(1),
            Fault::error("AssignPrivateIpAddresses", "RequestLimitExceeded", 503).count(2),
        ] {
            sim.inject_fault(&f).unwrap();
        }
        pods.extend(add_pods(d, prefix, 4));
        eventually(
            d,
            Duration::from_secs(60),
            "the failed EC2 calls logged",
            || {
                let log = d.log();
                log.contains("UnauthorizedOperation") && log.contains("RequestLimitExceeded")
            },
        );
        if std::env::var_os("E2E_SHOW_LOG").is_some() {
            eprintln!("{}", d.log());
        }
        sim.clear_faults().unwrap();
    }
    for d in [&with_keys, &with_role] {
        let all = everything_readable(d);
        assert!(all.len() > 1000, "read something: {} bytes", all.len());
        for (what, s) in &secrets {
            assert!(
                !all.contains(s.as_str()),
                "{what} is readable on node {}",
                d.node.name
            );
        }
    }
    for p in pods {
        let d = if p.name.starts_with('k') {
            &mut with_keys
        } else {
            &mut with_role
        };
        d.del_pod(p);
    }
}
