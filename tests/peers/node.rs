//! Runs a node daemon (upstream's aws-k8s-agent now, ours later) inside a VPC-in-a-box node's network namespace and
//! in a private mount namespace whose /run is a directory of the test: the fixed paths the daemon and its plugin
//! use (/var/run/aws-node/ipamd.sock, ipam.json, /run/xtables.lock, ...) land there, never on the machine's /run.
//! The machine's /run/netns is bound in (as a slave, so pod namespaces made later are seen), so `ip netns exec`
//! and CNI_NETNS paths keep working. Clients that must see the same /run (a CNI client running the plugin) are
//! started with [`NodeDaemon::enter`].
//!
//! The daemon runs under `setpriv --pdeathsig KILL`: it dies with the test thread that started it, and drop kills
//! it. Include with `#[path = "peers/node.rs"] mod node;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A daemon running in a node namespace with a private /run.
pub struct NodeDaemon {
    child: Child,
    /// The node's network namespace.
    pub netns: String,
    /// The directory standing in for /run inside the daemon's mount namespace (so /var/run/aws-node is
    /// `run_dir/aws-node`).
    pub run_dir: PathBuf,
    /// stdout + stderr of the daemon.
    pub log: PathBuf,
}

const MOUNT_SCRIPT: &str = r#"set -e
d=$1; shift
mkdir -p "$d/netns" "$d/aws-node"
mount --rbind /run/netns "$d/netns"
mount --rbind "$d" /run
exec "$@""#;

impl NodeDaemon {
    /// Starts `program` with `env` (added to a cleared environment but PATH) in `netns`, /run being `run_dir`.
    pub fn start(
        netns: &str,
        run_dir: &Path,
        log: &Path,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
    ) -> NodeDaemon {
        std::fs::create_dir_all(run_dir).expect("create run dir");
        let log_file = std::fs::File::create(log).expect("create daemon log");
        let err_file = log_file.try_clone().expect("clone log handle");
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "slave",
            "sh",
            "-c",
            MOUNT_SCRIPT,
            "sh",
        ])
        .arg(run_dir)
        .args([
            "ip",
            "netns",
            "exec",
            netns,
            "setpriv",
            "--pdeathsig",
            "KILL",
            "--",
        ])
        .arg(program)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file);
        let child = cmd.spawn().expect("start node daemon");
        NodeDaemon {
            child,
            netns: netns.to_string(),
            run_dir: run_dir.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    /// The daemon's pid (after the wrappers exec'd into it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// A command run in the daemon's mount namespace (its /run) and the node's network namespace.
    pub fn enter(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.child.id()))
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(program);
        cmd
    }

    /// The last `n` lines of the daemon's output.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for NodeDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
