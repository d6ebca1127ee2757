//! The systemd unit (`systemd/aws-k8s-agent.service`) and the daemon's side of it.
//!
//! - The unit passes `systemd-analyze verify` (a broken copy does not) and its `systemd-analyze
//!   security` exposure stays at or below the figure the README states.
//! - ipamd as a real process on a VPC-in-a-box node, with the unit's capability bounding set
//!   (CAP_NET_ADMIN only) and no_new_privs, speaks the notify protocol to a datagram socket this
//!   test listens on: READY=1 only once the plugin socket and the conflist exist, STATUS= lines
//!   that follow the pool, WATCHDOG=1 pings while WATCHDOG_USEC is set, STOPPING=1 on SIGTERM.
//!   Under strace, every syscall it makes is one the unit's SystemCallFilter= allows, every socket
//!   it opens is of a family RestrictAddressFamilies= allows, and every path it writes is one the
//!   unit makes writable (ProtectSystem=strict).
//! - The unit boots under a real systemd: systemd-nspawn runs a throwaway container (the host's /usr, an empty
//!   /etc and /var) in a VPC-in-a-box node's network namespace with the unit enabled; systemd reports it running
//!   with our STATUS=, keeps receiving watchdog pings, shows the pool change after an ADD on the plugin socket, and
//!   stops it cleanly; ipamd runs with CAP_NET_ADMIN only, no_new_privs and a seccomp filter.
//!
//! Needs root and the tools of `scripts/setup-packaging` (run here when one is missing; a test whose tool
//! cannot be installed prints SKIPPED and the reason, as does the boot test when nspawn cannot boot here).

#![allow(clippy::unwrap_used)]

#[path = "support/tempdir.rs"]
mod tempdir;
#[path = "support/vpcsim.rs"]
mod vpcsim;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempdir::TempDir;
use vpc_cni::rpc;
use vpcsim::VpcSim;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/aws-k8s-agent.service");

/// The exposure `systemd-analyze security` gives the unit, as the README states it.
const README_EXPOSURE: f64 = 2.0;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Makes sure `tools` are there (runs scripts/setup-packaging once if not); false with a printed
/// reason when they cannot be installed.
fn tools(tools: &[&str]) -> bool {
    if tools.iter().all(|t| have(t)) {
        return true;
    }
    let setup = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/setup-packaging");
    let ok = Command::new(setup)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let missing: Vec<&&str> = tools.iter().filter(|t| !have(t)).collect();
    if !missing.is_empty() {
        eprintln!("SKIPPED: {missing:?} missing and scripts/setup-packaging could not install them (ok: {ok})");
        return false;
    }
    true
}

/// The unit with its ExecStart= pointing at this build's binary (verify checks that the program
/// exists); every other line is the file's.
fn unit_copy(dir: &Path, text: &str) -> PathBuf {
    let agent = dir.join("aws-k8s-agent");
    if !agent.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vpc-cni"), &agent).unwrap();
    }
    let path = dir.join("aws-k8s-agent.service");
    std::fs::write(
        &path,
        text.replace("/usr/bin/aws-k8s-agent", &agent.display().to_string()),
    )
    .unwrap();
    path
}

fn verify(unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn unit_passes_systemd_analyze_verify_and_a_broken_copy_does_not() {
    if !tools(&["systemd-analyze"]) {
        return;
    }
    let text = std::fs::read_to_string(UNIT).unwrap();
    let dir = TempDir::new("unit");
    let (ok, out) = verify(&unit_copy(&dir.0, &text));
    assert!(ok && out.trim().is_empty(), "verify: {out}");

    // A misspelt directive is only a warning: the test counts warnings too.
    let broken = TempDir::new("unit-broken");
    let (_, out) = verify(&unit_copy(
        &broken.0,
        &text.replace("ProtectSystem=strict", "ProtectSystem=strictly"),
    ));
    assert!(
        out.contains("strictly"),
        "a bad value must be reported: {out:?}"
    );
    let (ok, out) = verify(&unit_copy(
        &broken.0,
        &text.replace(
            "ExecStart=/usr/bin/aws-k8s-agent",
            "ExecStart=/nonexistent/ipamd",
        ),
    ));
    assert!(!ok, "a missing program must fail verify: {out}");
}

#[test]
fn unit_exposure_is_what_the_readme_says() {
    if !tools(&["systemd-analyze"]) {
        return;
    }
    let text = std::fs::read_to_string(UNIT).unwrap();
    let dir = TempDir::new("unit-sec");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit_copy(&dir.0, &text))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure in {text}"));
    assert!(
        score <= README_EXPOSURE,
        "exposure {score} is above the README's {README_EXPOSURE}:\n{text}"
    );
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&format!("exposure level {score:.1}")),
        "README does not state exposure level {score:.1}"
    );
}

/// Values of `key=` lines of the unit (all of them, in order).
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

/// The syscalls of a `systemd-analyze syscall-filter` group, nested groups expanded.
fn syscalls_of(group: &str, seen: &mut BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if !seen.insert(group.to_string()) {
        return out;
    }
    let text = Command::new("systemd-analyze")
        .args(["syscall-filter", "--no-pager", group])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&text.stdout).lines().skip(1) {
        let w = line.trim();
        if w.is_empty() || w.starts_with('#') {
            continue;
        }
        if w.starts_with('@') {
            out.extend(syscalls_of(w, seen));
        } else {
            out.insert(w.to_string());
        }
    }
    out
}

/// What the unit's SystemCallFilter= lines allow: the allow list minus the `~` deny lists.
fn allowed_syscalls(unit: &str) -> BTreeSet<String> {
    let mut allowed = BTreeSet::new();
    let mut denied = BTreeSet::new();
    for v in unit_values(unit, "SystemCallFilter") {
        let (deny, list) = match v.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, v.as_str()),
        };
        for item in list.split_whitespace() {
            let set = if item.starts_with('@') {
                syscalls_of(item, &mut BTreeSet::new())
            } else {
                BTreeSet::from([item.to_string()])
            };
            if deny {
                denied.extend(set);
            } else {
                allowed.extend(set);
            }
        }
    }
    assert!(!allowed.is_empty(), "no SystemCallFilter= allow list");
    // systemd itself always allows these (execve of the service, and the calls that end it).
    allowed.extend(["execve", "exit", "exit_group", "rt_sigreturn"].map(String::from));
    &allowed - &denied
}

/// One notification as the test's listener saw it.
#[derive(Clone, Debug)]
struct Note {
    at: Instant,
    text: String,
    /// Whether the plugin socket answered STATUS ready and the conflist existed when it arrived.
    socket_ready: bool,
    conflist: bool,
}

struct Listener {
    notes: Arc<Mutex<Vec<Note>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn start(path: &Path, plugin_socket: PathBuf, conflist: PathBuf) -> Listener {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let notes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s) = (notes.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let client = rpc::Client::new(&plugin_socket, Duration::from_secs(2));
            while !s.load(Ordering::Relaxed) {
                let Ok(len) = sock.recv(&mut buf) else {
                    continue;
                };
                let at = Instant::now();
                let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                let (socket_ready, conflist) = if text.contains("READY=1") {
                    (
                        client.status().map(|r| r.ready).unwrap_or(false),
                        conflist.exists(),
                    )
                } else {
                    (false, false)
                };
                n.lock().unwrap().push(Note {
                    at,
                    text,
                    socket_ready,
                    conflist,
                });
            }
        });
        Listener {
            notes,
            stop,
            thread: Some(thread),
        }
    }

    fn notes(&self) -> Vec<Note> {
        self.notes.lock().unwrap().clone()
    }

    /// Waits until a notification satisfies `f`; returns its index.
    fn wait_for(
        &self,
        budget: Duration,
        what: &str,
        f: impl Fn(&Note) -> bool,
        log: &dyn Fn() -> String,
    ) -> usize {
        let began = Instant::now();
        while began.elapsed() < budget {
            if let Some(i) = self.notes().iter().position(&f) {
                return i;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no notification {what} within {budget:?}: {:?}\n{}",
            self.notes(),
            log()
        );
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// ipamd run as `ip netns exec NODE setpriv (unit's privileges) strace -f … aws-k8s-agent`.
struct Traced {
    child: Option<Child>,
}

impl Traced {
    /// ipamd's own pid: the child of strace.
    fn daemon_pid(&self) -> Option<i32> {
        let strace = self.child.as_ref()?.id();
        let tasks = std::fs::read_dir(format!("/proc/{strace}/task")).ok()?;
        for t in tasks.flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            if let Some(p) = kids.split_whitespace().next() {
                return p.parse().ok();
            }
        }
        None
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Some(pid) = self.daemon_pid() {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn cap_bounding_set(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let v = s.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(v.trim(), 16).ok()
}

fn no_new_privs(pid: i32) -> Option<bool> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let v = s.lines().find_map(|l| l.strip_prefix("NoNewPrivs:"))?;
    Some(v.trim() == "1")
}

/// Syscall names, socket families and written paths in strace `-f` output.
#[derive(Debug, Default)]
struct Trace {
    syscalls: BTreeSet<String>,
    families: BTreeSet<String>,
    written: BTreeSet<String>,
}

/// strace `-f` lines with each `<unfinished ...>` call joined to its `<... resumed>` rest.
fn whole_calls(text: &str) -> Vec<String> {
    let mut pending: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid.to_string(), head.to_string());
        } else if rest.starts_with("<... ") {
            let tail = rest.split_once("resumed>").map_or("", |(_, t)| t);
            if let Some(head) = pending.remove(pid) {
                out.push(format!("{head}{tail}"));
            }
        } else {
            out.push(rest.to_string());
        }
    }
    out
}

/// The quoted strings of a call's arguments.
fn quoted(args: &str) -> Vec<&str> {
    args.split('"').skip(1).step_by(2).collect()
}

fn parse_trace(text: &str) -> Trace {
    let mut t = Trace::default();
    for call in whole_calls(text) {
        // "name(args) = result"; also "--- SIGTERM {...} ---" and "+++ exited with 0 +++".
        let Some(open) = call.find('(') else { continue };
        let name = &call[..open];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        t.syscalls.insert(name.to_string());
        // strace pads before " = result".
        let body = &call[open + 1..];
        let (args, result) = match body.rsplit_once(" = ") {
            Some((a, r)) => (a.trim_end().strip_suffix(')').unwrap_or(a), r),
            None => (body, "?"),
        };
        if result.starts_with("-1") || result.starts_with('?') {
            continue; // failed: nothing was written
        }
        let paths = quoted(args);
        let written: Vec<&str> = match name {
            "socket" | "socketpair" => {
                if let Some(f) = args.split([',', ')']).next() {
                    t.families.insert(f.trim().to_string());
                }
                vec![]
            }
            "openat" | "open" => {
                let flags = args
                    .split(", ")
                    .nth(if name == "openat" { 2 } else { 1 })
                    .unwrap_or("");
                let writes = ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"]
                    .iter()
                    .any(|f| flags.contains(f));
                if writes {
                    paths.into_iter().take(1).collect()
                } else {
                    vec![]
                }
            }
            // Only the new name is written.
            "link" | "linkat" | "symlink" | "symlinkat" => {
                paths.into_iter().last().into_iter().collect()
            }
            // Every path named is created, replaced or removed.
            "creat" | "mkdir" | "mkdirat" | "rename" | "renameat" | "renameat2" | "unlink"
            | "unlinkat" | "rmdir" | "chmod" | "fchmodat" | "bind" | "truncate" | "mknod"
            | "mknodat" => paths,
            _ => vec![],
        };
        t.written.extend(
            written
                .into_iter()
                .filter(|p| p.starts_with('/'))
                .map(str::to_string),
        );
    }
    t
}

#[test]
fn daemon_speaks_the_notify_protocol_with_the_units_privileges() {
    if !tools(&["strace", "setpriv", "systemd-analyze"]) {
        return;
    }
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert_eq!(
        unit_values(&unit, "CapabilityBoundingSet"),
        ["CAP_NET_ADMIN"],
        "the test runs ipamd with CAP_NET_ADMIN only, as the unit does"
    );
    // The directories the test maps into its own are the ones the unit configures and opens.
    let envs = unit_values(&unit, "Environment");
    let rw = unit_values(&unit, "ReadWritePaths").join(" ");
    for (var, path) in [
        ("HOST_CNI_BIN_PATH", "/opt/cni/bin"),
        ("HOST_CNI_CONFDIR_PATH", "/etc/cni/net.d"),
    ] {
        assert!(
            envs.contains(&format!("{var}={path}")),
            "unit sets {var}={path}"
        );
        assert!(
            rw.split_whitespace()
                .any(|p| p.trim_start_matches('-') == path),
            "{path} in ReadWritePaths="
        );
    }
    assert_eq!(unit_values(&unit, "RuntimeDirectory"), ["aws-node"]);
    assert_eq!(unit_values(&unit, "ProtectSystem"), ["strict"]);
    let mut sim = VpcSim::start("pkgsd");
    let node = sim.launch_node("m5.large");
    let dir = TempDir::new("sd");
    let d = &dir.0;
    let mut env: BTreeMap<String, String> = node.netns_env.iter().cloned().collect();
    for (k, v) in [
        ("AWS_VPC_K8S_CNI_BACKING_STORE", d.join("run/ipam.json")),
        ("HOST_CNI_BIN_PATH", d.join("bin")),
        ("HOST_CNI_CONFDIR_PATH", d.join("net.d")),
        ("AWS_VPC_K8S_CNI_LOG_FILE", d.join("log/ipamd.log")),
        ("AWS_VPC_K8S_PLUGIN_LOG_FILE", d.join("log/plugin.log")),
        (rpc::SOCKET_ENV, d.join("run/ipamd.sock")),
        ("NOTIFY_SOCKET", d.join("notify.sock")),
    ] {
        env.insert(k.to_string(), v.display().to_string());
    }
    // 1 s: a ping every 0.5 s.
    env.insert("WATCHDOG_USEC".into(), "1000000".into());
    env.insert("AWS_VPC_K8S_CNI_LOGLEVEL".into(), "DEBUG".into());
    std::fs::create_dir_all(d.join("sbin")).unwrap();
    let agent = d.join("sbin/aws-k8s-agent");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vpc-cni"), &agent).unwrap();

    let listener = Listener::start(
        &d.join("notify.sock"),
        d.join("run/ipamd.sock"),
        d.join("net.d/10-aws.conflist"),
    );
    let log = || {
        std::fs::read_to_string(d.join("log/ipamd.log")).unwrap_or_default()
            + &std::fs::read_to_string(d.join("stderr")).unwrap_or_default()
    };
    let child = Command::new("ip")
        .args(["netns", "exec", node.namespace.as_deref().unwrap()])
        .args([
            "setpriv",
            "--bounding-set",
            "-all,+net_admin",
            "--no-new-privs",
            "--",
        ])
        .args(["strace", "-f", "-qq", "-s", "256", "-o"])
        .arg(d.join("strace.txt"))
        .arg("--")
        .arg(&agent)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut traced = Traced { child: Some(child) };

    // READY=1, only once the plugin socket answers ready and the conflist is there.
    let ready = listener.wait_for(
        Duration::from_secs(90),
        "READY=1",
        |n| n.text.contains("READY=1"),
        &log,
    );
    let notes = listener.notes();
    let r = &notes[ready];
    assert!(
        r.socket_ready,
        "READY=1 before the plugin socket answered ready: {notes:?}"
    );
    assert!(
        r.conflist,
        "READY=1 before the conflist was written: {notes:?}"
    );
    assert!(
        r.text.contains("STATUS=serving pod addresses: ") && r.text.contains(" ENIs, "),
        "READY=1 carries the pool's STATUS=: {:?}",
        r.text
    );
    assert!(
        notes[..ready]
            .iter()
            .all(|n| !n.text.contains("WATCHDOG=1")),
        "no pings before READY=1: {notes:?}"
    );

    let pid = traced.daemon_pid().expect("ipamd's pid");
    assert_eq!(
        cap_bounding_set(pid),
        Some(1 << 12),
        "CapBnd of ipamd: CAP_NET_ADMIN only"
    );
    assert_eq!(no_new_privs(pid), Some(true));

    // Watchdog pings keep coming from the loop.
    listener.wait_for(
        Duration::from_secs(10),
        "three WATCHDOG=1 after READY=1",
        |_| {
            listener.notes()[ready + 1..]
                .iter()
                .filter(|n| n.text.split('\n').any(|l| l == "WATCHDOG=1"))
                .count()
                >= 3
        },
        &log,
    );

    // A pod's address shows in STATUS=, and its release too.
    let client = rpc::Client::new(d.join("run/ipamd.sock"), Duration::from_secs(10));
    let add = client
        .add_network(rpc::AddNetworkRequest {
            k8s_pod_name: "p1".into(),
            k8s_pod_namespace: "default".into(),
            k8s_pod_infra_container_id: "c-p1".into(),
            netns: "/var/run/netns/none".into(),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            container_id: "c-p1".into(),
            requires_multi_nic_attachment: false,
        })
        .unwrap();
    assert!(add.success, "ADD: {add:?}\n{}", log());
    let assigned = listener.wait_for(
        Duration::from_secs(15),
        "STATUS= with the pod",
        |n| n.text.contains("STATUS=") && n.text.contains(", 1 assigned, 1 pods"),
        &log,
    );
    let del = client
        .del_network(rpc::DelNetworkRequest {
            k8s_pod_name: "p1".into(),
            k8s_pod_namespace: "default".into(),
            k8s_pod_infra_container_id: "c-p1".into(),
            reason: "PodDeleted".into(),
            container_id: "c-p1".into(),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            ..Default::default()
        })
        .unwrap();
    assert!(del.success, "DEL: {del:?}");
    let released = listener.wait_for(
        Duration::from_secs(15),
        "STATUS= without the pod, after it",
        |n| {
            n.text.contains("STATUS=")
                && n.text.contains(", 0 assigned, 0 pods")
                && n.at > listener.notes()[assigned].at
        },
        &log,
    );
    let notes = listener.notes();
    let statuses: Vec<&str> = notes[..=released]
        .iter()
        .flat_map(|n| n.text.lines())
        .filter(|l| l.starts_with("STATUS="))
        .collect();
    assert!(
        statuses.windows(2).all(|w| w[0] != w[1]),
        "STATUS= only when it changes: {statuses:?}"
    );

    // SIGTERM: STOPPING=1, exit 0.
    let p = rustix::process::Pid::from_raw(pid).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::TERM).unwrap();
    let mut child = traced.child.take().unwrap();
    let began = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if began.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("ipamd did not stop within 30 s of SIGTERM\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "exit after SIGTERM\n{}", log());
    let stopping = listener.wait_for(
        Duration::from_secs(5),
        "STOPPING=1",
        |n| n.text == "STOPPING=1",
        &log,
    );
    assert!(stopping > released);
    drop(listener);

    // What it did, against what the unit allows.
    let trace = parse_trace(&std::fs::read_to_string(d.join("strace.txt")).unwrap());
    eprintln!(
        "ipamd made {} distinct syscalls: {:?}; socket families {:?}; wrote {:?}",
        trace.syscalls.len(),
        trace.syscalls,
        trace.families,
        trace.written
    );
    assert!(
        trace.syscalls.contains("sendto") || trace.syscalls.contains("sendmsg"),
        "{trace:?}"
    );
    let allowed = allowed_syscalls(&unit);
    let refused: Vec<&String> = trace.syscalls.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "syscalls the unit's SystemCallFilter= refuses: {refused:?} (all: {:?})",
        trace.syscalls
    );
    let families: BTreeSet<String> = unit_values(&unit, "RestrictAddressFamilies")
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert!(trace.families.contains("AF_NETLINK"), "{trace:?}");
    let other: Vec<&String> = trace.families.difference(&families).collect();
    assert!(
        other.is_empty(),
        "socket families outside RestrictAddressFamilies=: {other:?}"
    );
    // The test maps the unit's writable paths into its directory (net.d = /etc/cni/net.d, bin =
    // /opt/cni/bin, run = /run/aws-node, log = /var/log/aws-routed-eni); the rest is read-only
    // under ProtectSystem=strict, except the net sysctls (ProtectKernelTunables=no).
    let d_str = d.display().to_string();
    let outside: Vec<&String> = trace
        .written
        .iter()
        .filter(|p| {
            !(p.starts_with(&format!("{d_str}/net.d/"))
                || p.starts_with(&format!("{d_str}/bin/"))
                || p.starts_with(&format!("{d_str}/run/"))
                || p.starts_with(&format!("{d_str}/log/"))
                || p.starts_with("/proc/sys/net/")
                || p.as_str() == format!("{d_str}/net.d")
                || p.as_str() == format!("{d_str}/bin")
                || p.as_str() == format!("{d_str}/run")
                || p.as_str() == format!("{d_str}/log"))
        })
        .collect();
    assert!(
        outside.is_empty(),
        "written outside the unit's writable paths: {outside:?}"
    );
    assert!(
        trace
            .written
            .iter()
            .any(|p| p.starts_with("/proc/sys/net/")),
        "ipamd writes net sysctls (why ProtectKernelTunables= stays off): {:?}",
        trace.written
    );
}

/// A throwaway container booted by systemd-nspawn: the host's /usr, an empty /etc and /var (`--volatile=yes`),
/// the network namespace of a VPC-in-a-box node, and the unit installed under /etc/systemd/system.
struct Container {
    nspawn: Option<Child>,
    console: PathBuf,
}

impl Container {
    /// PID (in this PID namespace) of the container's systemd.
    fn init_pid(&self) -> Option<u32> {
        let pid = self.nspawn.as_ref()?.id();
        let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        kids.split_whitespace().next()?.parse().ok()
    }

    /// Runs `args` inside the container (all its namespaces); stdout, or None when it failed.
    fn exec(&self, args: &[&str]) -> Option<String> {
        let init = self.init_pid()?.to_string();
        let out = Command::new("nsenter")
            .args(["-t", &init, "-a", "--"])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `systemctl show` properties of the unit.
    fn show(&self, props: &str) -> BTreeMap<String, String> {
        self.exec(&["systemctl", "show", "aws-k8s-agent.service", "-p", props])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn journal(&self) -> String {
        self.exec(&[
            "journalctl",
            "-u",
            "aws-k8s-agent.service",
            "--no-pager",
            "-o",
            "cat",
        ])
        .unwrap_or_default()
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// The container's root, seen from here.
    fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.init_pid().unwrap_or(0)))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(mut c) = self.nspawn.take() {
            // SIGTERM: nspawn asks the container to halt; SIGKILL if it takes too long.
            if let Some(p) = rustix::process::Pid::from_raw(c.id() as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            }
            let began = Instant::now();
            while began.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn eventually_show(
    c: &Container,
    budget: Duration,
    what: &str,
    props: &str,
    f: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let began = Instant::now();
    let mut last = BTreeMap::new();
    while began.elapsed() < budget {
        last = c.show(props);
        if f(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "{what}: not within {budget:?}; last {last:?}\n--- journal\n{}\n--- console\n{}",
        c.journal(),
        c.console()
    );
}

#[test]
fn unit_boots_under_systemd_in_a_container() {
    if !tools(&["systemd-nspawn", "nsenter", "unshare"]) {
        return;
    }
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let mut sim = VpcSim::start("pkgns");
    let node = sim.launch_node("m5.large");
    let dir = TempDir::new("nspawn");
    let d = &dir.0;
    // /etc/systemd/system of the container: the unit as it is, enabled, with a drop-in that only points
    // ExecStart= at this build and shortens the watchdog so a missing ping shows within the test.
    let system = d.join("system");
    std::fs::create_dir_all(system.join("aws-k8s-agent.service.d")).unwrap();
    std::fs::create_dir_all(system.join("multi-user.target.wants")).unwrap();
    std::fs::write(system.join("aws-k8s-agent.service"), &unit).unwrap();
    std::fs::write(
        system.join("aws-k8s-agent.service.d/test.conf"),
        "[Service]\nExecStart=\nExecStart=/opt/vpc-cni/aws-k8s-agent\nWatchdogSec=4s\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../aws-k8s-agent.service",
        system.join("multi-user.target.wants/aws-k8s-agent.service"),
    )
    .unwrap();
    // No first-boot questions on the console.
    std::os::unix::fs::symlink("/dev/null", system.join("systemd-firstboot.service")).unwrap();
    // The unit's EnvironmentFile=: the node's EC2 and IMDS endpoints and keys.
    std::fs::create_dir_all(d.join("etc-vpc-cni")).unwrap();
    let env: String = node
        .netns_env
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(d.join("etc-vpc-cni/env"), env).unwrap();
    std::fs::create_dir_all(d.join("bin")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_vpc-cni"), d.join("bin/vpc-cni")).unwrap();
    std::os::unix::fs::symlink("vpc-cni", d.join("bin/aws-k8s-agent")).unwrap();

    let machine = format!("vpccni-{}", std::process::id());
    let netns = format!("/run/netns/{}", node.namespace.as_deref().unwrap());
    // nspawn keeps state under /run/systemd/nspawn and refuses to clean it up unless it is a tmpfs: give it a
    // private one (this mount namespace only).
    let script = format!(
        "mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn && exec systemd-nspawn \
         --keep-unit --register=no --directory=/ --volatile=yes --boot --machine={machine} \
         --network-namespace-path={netns} --capability=CAP_NET_ADMIN \
         --bind-ro={}:/etc/systemd/system --bind-ro={}:/etc/vpc-cni --bind-ro={}:/opt/vpc-cni \
         --console=read-only",
        system.display(),
        d.join("etc-vpc-cni").display(),
        d.join("bin").display()
    );
    let console = d.join("console.log");
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&console).unwrap())
        .stderr(std::fs::File::create(d.join("nspawn.err")).unwrap())
        .spawn()
        .unwrap();
    let c = Container {
        nspawn: Some(child),
        console,
    };

    // The container's systemd up (else this machine cannot run nspawn: say so and stop).
    let began = Instant::now();
    while !c.console().contains("Welcome to") {
        if began.elapsed() > Duration::from_secs(60)
            || c.init_pid().is_none() && began.elapsed() > Duration::from_secs(10)
        {
            eprintln!(
                "SKIPPED: systemd-nspawn did not boot a container here:\n{}\n{}",
                c.console(),
                std::fs::read_to_string(d.join("nspawn.err")).unwrap_or_default()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Started: READY=1 reached systemd, which shows our STATUS=.
    let props =
        "ActiveState,SubState,StatusText,NRestarts,MainPID,Result,WatchdogTimestampMonotonic";
    let st = eventually_show(
        &c,
        Duration::from_secs(90),
        "aws-k8s-agent active (running)",
        props,
        |p| p.get("SubState").map(String::as_str) == Some("running"),
    );
    let status = &st["StatusText"];
    assert!(
        status.starts_with("serving pod addresses: ") && status.contains(" ENIs, "),
        "StatusText {status:?}"
    );
    assert_eq!(st["NRestarts"], "0", "{}", c.journal());
    // The sandbox holds ipamd as the unit says.
    let main = st["MainPID"].clone();
    let proc_status = c.exec(&["cat", &format!("/proc/{main}/status")]).unwrap();
    let field = |k: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("CapBnd:"), "0000000000001000", "CAP_NET_ADMIN only");
    assert_eq!(field("CapEff:"), "0000000000001000");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(
        field("Seccomp:"),
        "2",
        "a seccomp filter (SystemCallFilter=)"
    );
    let root = c.root();
    assert!(root.join("etc/cni/net.d/10-aws.conflist").exists());
    assert!(root.join("opt/cni/bin/aws-cni").exists());

    // Watchdog pings arrive (WatchdogSec=4s would have restarted it by now otherwise).
    let first = st["WatchdogTimestampMonotonic"].clone();
    let later = eventually_show(
        &c,
        Duration::from_secs(10),
        "a later watchdog ping",
        props,
        |p| {
            p.get("WatchdogTimestampMonotonic")
                .is_some_and(|t| *t != first)
        },
    );
    assert_eq!(later["NRestarts"], "0");

    // A pod through the plugin socket: systemd shows the new STATUS=.
    let client = rpc::Client::new(
        root.join("run/aws-node/ipamd.sock"),
        Duration::from_secs(10),
    );
    let add = client
        .add_network(rpc::AddNetworkRequest {
            k8s_pod_name: "p1".into(),
            k8s_pod_namespace: "default".into(),
            k8s_pod_infra_container_id: "c-p1".into(),
            netns: "/var/run/netns/none".into(),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            container_id: "c-p1".into(),
            requires_multi_nic_attachment: false,
        })
        .unwrap();
    assert!(add.success, "ADD: {add:?}\n{}", c.journal());
    eventually_show(
        &c,
        Duration::from_secs(15),
        "StatusText with the pod",
        props,
        |p| {
            p.get("StatusText")
                .is_some_and(|s| s.contains(", 1 assigned, 1 pods"))
        },
    );

    // systemctl stop: SIGTERM, STOPPING=1, a clean exit.
    c.exec(&["systemctl", "stop", "aws-k8s-agent.service"])
        .expect("systemctl stop");
    let st = eventually_show(
        &c,
        Duration::from_secs(30),
        "stopped",
        "ActiveState,Result,ExecMainStatus",
        |p| p.get("ActiveState").map(String::as_str) == Some("inactive"),
    );
    assert_eq!(st["Result"], "success", "{}", c.journal());
    assert_eq!(st["ExecMainStatus"], "0");
    let journal = c.journal();
    assert!(journal.contains("checkpoint flushed"), "{journal}");
    assert!(!journal.contains("Failed"), "{journal}");
}
