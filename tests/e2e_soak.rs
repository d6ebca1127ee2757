//! The fault soak: ipamd as a real process on a VPC-in-a-box node under a long run of pod ADDs and
//! DELs through libcni, with faults injected all along, and after every step a check that EC2, the
//! checkpoint and the node's kernel agree. `scripts/soak` runs it (ignored by default: it takes
//! minutes); its knobs are environment variables:
//!
//! - `VPC_CNI_SOAK_OPS` (default 100): pod operations (ADD or DEL, kubelet retries not counted);
//! - `VPC_CNI_SOAK_KILLS` (default 3): SIGKILLs of ipamd, each during an ADD or DEL, each followed
//!   by a restart;
//! - `VPC_CNI_SOAK_PLUGIN_KILLS` (default 2): SIGKILLs of the `aws-cni` process mid-ADD and as many
//!   mid-DEL;
//! - `VPC_CNI_SOAK_SEED`: the seed of the run's choices (default: from the clock; printed);
//! - `VPC_CNI_SOAK_REPORT`: a file the run's figures are written to as JSON.
//!
//! Faults all along: EC2 answers 30% of calls `RequestLimitExceeded` (503) and 5% `InternalError`
//! (500), 20% of calls wait 150 ms more; IMDS shows EC2 changes 1 s late; some restarts meet IMDS
//! 500s. Once each: a full disk under the checkpoint (a tmpfs of its own), a checkpoint overwritten
//! with garbage between a kill and the restart, a secondary ENI without pods and one with pods
//! detached through EC2 behind ipamd's back.
//!
//! What must hold: no two live pods ever share an address; after every operation the checkpoint
//! holds exactly the live pods' addresses, the node has a host route for each and no other, no
//! pod rule for an address that is not live, and EC2 has every live address on an ENI attached
//! to the node; at the end ipamd's datastore knows every address EC2 assigned to the node's ENIs
//! (none leaked) and holds no more free ENIs than its warm target; no log of the run holds a
//! secret key or session token. Root only; the sim and every namespace go also when it fails.

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
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ipamd_node::{ec2_test_user, Ipamd, Pod};
use netns::TestNs;
use serde_json::{json, Value};
use tempdir::TempDir;
use vpc_cni::aws::ec2::{
    DescribeNetworkInterfaces, DetachNetworkInterface, Ec2, Ec2Client, Filter,
};
use vpcsim::{Fault, VpcSim};

/// A small deterministic generator (xorshift64*): the run repeats with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A tmpfs mounted for the checkpoint directory; unmounted on drop.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = TempDir::new("soak-ckpt");
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "soak-ckpt",
            ])
            .arg(&dir.0)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", dir.0.display());
        Tmpfs { dir }
    }
    fn path(&self) -> &Path {
        &self.dir.0
    }
    /// Fills the file system; returns the bytes written.
    fn fill(&self) -> u64 {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.0.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        let mut n = 0;
        while f.write_all(&block).is_ok() {
            n += 4096;
        }
        let _ = f.sync_all();
        n
    }
    fn free(&self) {
        let _ = std::fs::remove_file(self.dir.0.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir.0).status();
    }
}

/// What happens around one pod operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// SIGKILL of ipamd during the operation, then a restart.
    KillIpamd,
    /// Like `KillIpamd`, and garbage is written to the checkpoint before the restart.
    KillCorrupt,
    /// Like `KillIpamd`, and IMDS answers 500 to the next requests of the restart.
    KillImdsFaults,
    /// SIGKILL of the plugin process during this ADD.
    PluginKillAdd,
    /// SIGKILL of the plugin process during this DEL.
    PluginKillDel,
    /// The checkpoint's file system is full for a few operations.
    DiskFull,
    /// A secondary ENI with no pods is detached through EC2.
    DetachIdle,
    /// A secondary ENI with pods is detached through EC2.
    DetachBusy,
}

#[derive(Default, Debug)]
struct Figures {
    ops: u64,
    adds: u64,
    dels: u64,
    add_attempts: u64,
    add_failures: BTreeMap<String, u64>,
    ipamd_kills: u64,
    kill_during: BTreeMap<&'static str, u64>,
    restart_ready_ms: Vec<u64>,
    plugin_kills: BTreeMap<&'static str, u64>,
    plugin_finished_first: u64,
    plugin_kill_stages: Vec<String>,
    corrupt_restarts: u64,
    imds_fault_restarts: u64,
    disk_full_add_errors: Vec<String>,
    disk_full_dels: u64,
    detached: Vec<(String, usize)>,
    detach_noticed_ms: Vec<u64>,
    handed_out_while_detached: u64,
    checks: u64,
    max_live: usize,
    violations: Vec<String>,
}

struct Soak {
    sim: VpcSim,
    d: Ipamd,
    ec2: Ec2Client,
    test_key: String,
    rng: Rng,
    live: BTreeMap<String, Pod>,
    /// Pods whose ENI was detached behind ipamd's back: still running, their address on no
    /// attached ENI (EC2 keeps it on the detached one); removed once ipamd has noticed.
    orphaned: BTreeMap<String, Pod>,
    /// Detached ENIs ipamd has not dropped yet: (id, when detached).
    unnoticed: Vec<(String, Instant)>,
    detached_enis: BTreeSet<String>,
    /// The addresses EC2 keeps on the detached ENIs.
    detached_addrs: BTreeMap<Ipv4Addr, String>,
    shim: PathBuf,
    ckpt: Tmpfs,
    /// An event that could not happen at its place, tried again at the next operation.
    pending: Option<Event>,
    seq: u64,
    f: Figures,
}

const MIN_LIVE: usize = 3;
const MAX_LIVE: usize = 14;

/// One of the test's own EC2 calls, which meet the soak's faults too: the client's retries, then
/// more, as long as EC2 throttles or fails.
fn persist<T, E: std::fmt::Debug>(mut call: impl FnMut() -> Result<T, E>) -> T {
    let mut last = None;
    for _ in 0..20 {
        match call() {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("the test's EC2 call failed 20 times: {last:?}");
}

/// A short class of a CNI error for the figures.
fn error_class(e: &Value) -> String {
    let text = format!(
        "{} {}",
        e["msg"].as_str().unwrap_or(""),
        e["details"].as_str().unwrap_or("")
    );
    for (needle, class) in [
        ("checkpoint", "checkpoint not written"),
        ("not answering", "ipamd not answering"),
        ("not ready", "ipamd not ready"),
        ("no free address", "no free address"),
        ("signal: killed", "plugin killed"),
        ("exit status 137", "plugin killed"),
    ] {
        if text.contains(needle) {
            return class.to_string();
        }
    }
    text.trim().chars().take(120).collect()
}

impl Soak {
    fn live_ips(&self) -> BTreeMap<Ipv4Addr, String> {
        self.live
            .values()
            .chain(self.orphaned.values())
            .map(|p| (p.ip, p.name.clone()))
            .collect()
    }

    fn violation(&mut self, what: String) {
        eprintln!("soak violation: {what}");
        self.f.violations.push(what);
    }

    fn next_name(&mut self) -> String {
        self.seq += 1;
        format!("s{}", self.seq)
    }

    /// One ADD as libcni runs it; a failed ADD is followed by the runtime's DEL of the sandbox.
    fn add_once(&mut self, name: &str, attempt: u32) -> Result<(), String> {
        self.f.add_attempts += 1;
        let cid = format!("c-{name}-{attempt}");
        match self.d.try_add_pod_as(name, &cid) {
            Ok(p) => {
                self.admit(p);
                Ok(())
            }
            Err((ns, e)) => {
                let class = error_class(&e);
                *self.f.add_failures.entry(class.clone()).or_insert(0) += 1;
                self.runtime_del(&cid, &ns, name);
                drop(ns);
                Err(class)
            }
        }
    }

    /// A new live pod: its address must be no other live pod's.
    fn admit(&mut self, p: Pod) {
        if let Some(other) = self.live_ips().get(&p.ip) {
            let msg = format!("{} handed to {} while {other} holds it", p.ip, p.name);
            self.violation(msg);
        }
        self.f.adds += 1;
        if let Some(eni) = self.detached_addrs.get(&p.ip).cloned() {
            // An address of an ENI detached behind ipamd's back: the pod has no network. Only
            // allowed until ipamd has noticed; the pod is then deleted with the other orphans.
            if self.unnoticed.iter().any(|(id, _)| *id == eni) {
                self.f.handed_out_while_detached += 1;
                self.orphaned.insert(p.name.clone(), p);
            } else {
                let msg = format!(
                    "{} of detached {eni} handed to {} after ipamd dropped the ENI",
                    p.ip, p.name
                );
                self.violation(msg);
                self.live.insert(p.name.clone(), p);
            }
            return;
        }
        self.live.insert(p.name.clone(), p);
        self.f.max_live = self.f.max_live.max(self.live.len());
    }

    /// The DEL a runtime sends (and repeats until it succeeds, as the kubelet does).
    fn runtime_del(&mut self, cid: &str, ns: &TestNs, name: &str) {
        for _ in 0..10 {
            let a = self.d.cni("del", cid, &ns.path(), name);
            if a["ok"] == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        self.violation(format!("DEL of {name} ({cid}) never succeeded"));
    }

    /// ADD of a new pod, retried (new sandbox each time) until it succeeds.
    fn add(&mut self) {
        let name = self.next_name();
        let began = Instant::now();
        for attempt in 0.. {
            if self.add_once(&name, attempt).is_ok() {
                return;
            }
            if began.elapsed() > Duration::from_secs(90) {
                let msg = format!("ADD of {name} failed for 90 s");
                self.violation(msg);
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn pick_live(&mut self) -> Option<String> {
        let names: Vec<String> = self.live.keys().cloned().collect();
        if names.is_empty() {
            return None;
        }
        Some(names[self.rng.below(names.len() as u64) as usize].clone())
    }

    fn del(&mut self, name: &str) {
        let Some(p) = self.live.remove(name) else {
            return;
        };
        self.runtime_del(&p.container_id, &p.ns, &p.name);
        self.f.dels += 1;
    }

    /// One operation: ADD when the node is below its range or by chance, else DEL.
    fn choose_add(&mut self) -> bool {
        let n = self.live.len();
        n < MIN_LIVE || (n < MAX_LIVE && self.rng.unit() < 0.55)
    }

    fn op(&mut self, event: Option<Event>) {
        match event {
            Some(Event::KillIpamd | Event::KillCorrupt | Event::KillImdsFaults) => {
                self.kill_during_op(event.unwrap());
            }
            Some(Event::PluginKillAdd) => self.plugin_kill_add(),
            Some(Event::PluginKillDel) => self.plugin_kill_del(),
            Some(Event::DiskFull) => self.disk_full(),
            Some(ev @ (Event::DetachIdle | Event::DetachBusy)) => {
                if !self.detach(ev == Event::DetachBusy) {
                    // Not possible now (no such ENI): at the next operation.
                    self.pending = Some(ev);
                    self.op(None);
                }
            }
            None => {
                if self.choose_add() {
                    self.add();
                } else if let Some(n) = self.pick_live() {
                    self.del(&n);
                }
            }
        }
    }

    fn restart(&mut self) {
        let t = Instant::now();
        self.d.restart();
        self.f.restart_ready_ms.push(t.elapsed().as_millis() as u64);
    }

    /// SIGKILL of ipamd after a random moment of an ADD or DEL; the runtime's DEL of a failed
    /// ADD meets the dead ipamd; then the restart.
    fn kill_during_op(&mut self, ev: Event) {
        let pid = self.d.pid().unwrap();
        let delay = Duration::from_millis(self.rng.below(120));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        });
        let adding = self.choose_add();
        let mut failed_add = None;
        if adding {
            let name = self.next_name();
            if self.add_once(&name, 0).is_err() {
                failed_add = Some(name);
            }
            *self.f.kill_during.entry("ADD").or_insert(0) += 1;
        } else if let Some(n) = self.pick_live() {
            eprintln!(
                "soak: DEL of {n} ({:?}) while ipamd is killed",
                self.live.get(&n).map(|p| p.ip)
            );
            self.del(&n);
            *self.f.kill_during.entry("DEL").or_insert(0) += 1;
        }
        killer.join().unwrap();
        eprintln!(
            "soak: ipamd killed {delay:?} into an {} ({}), failed ADD: {failed_add:?}",
            if adding { "ADD" } else { "DEL" },
            self.seq
        );
        self.d.kill9();
        self.f.ipamd_kills += 1;
        match ev {
            Event::KillCorrupt => {
                std::fs::write(
                    self.d.checkpoint(),
                    b"{\"version\":\"vpc-cni-ipam/1\",\"alloc\x00\xff garbage",
                )
                .unwrap();
                self.f.corrupt_restarts += 1;
            }
            Event::KillImdsFaults => {
                self.sim
                    .inject_imds_fault(Some(&self.d.node), "meta-data/network", 500, Some(3))
                    .unwrap();
                self.sim
                    .inject_imds_fault(Some(&self.d.node), "meta-data/instance-id", 500, Some(2))
                    .unwrap();
                self.f.imds_fault_restarts += 1;
            }
            _ => {}
        }
        self.restart();
        if let Some(name) = failed_add {
            // The kubelet makes a new sandbox for the pod.
            let began = Instant::now();
            for attempt in 1.. {
                if self.add_once(&name, attempt).is_ok()
                    || began.elapsed() > Duration::from_secs(90)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// The wrapper kills the real plugin `ms` milliseconds after it started.
    /// The plugin log's size now (to read what a killed plugin wrote last).
    fn plugin_log_len(&self) -> usize {
        std::fs::read_to_string(self.d.dir.0.join("plugin.log"))
            .map(|t| t.len())
            .unwrap_or(0)
    }

    /// The last thing the plugin logged after `from`: how far a killed plugin got.
    fn plugin_stage(&mut self, op: &str, us: u64, from: usize) {
        let text = std::fs::read_to_string(self.d.dir.0.join("plugin.log")).unwrap_or_default();
        let last = text
            .get(from..)
            .and_then(|t| t.lines().last())
            .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(l).to_string())
            .unwrap_or_else(|| "(nothing logged)".into());
        let mut last: String = last.chars().take(70).collect();
        if last.starts_with("apply: ") || last.starts_with("teardown: ") {
            // The step without its names: "apply: create veth", "apply: host route", ...
            last = last.split(' ').take(3).collect::<Vec<_>>().join(" ");
        }
        self.f
            .plugin_kill_stages
            .push(format!("{op} +{us} µs: {last}"));
    }

    fn arm_shim(&mut self, us: u64) {
        std::fs::write(
            self.shim.join("delay"),
            format!("{}.{:06}\n", us / 1_000_000, us % 1_000_000),
        )
        .unwrap();
        self.d.set_plugin_dir(Some(self.shim.clone()));
    }

    fn disarm_shim(&mut self) {
        self.d.set_plugin_dir(None);
    }

    fn plugin_kill_add(&mut self) {
        let name = self.next_name();
        let us = self.rng.below(4000);
        self.arm_shim(us);
        self.f.add_attempts += 1;
        let cid = format!("c-{name}-0");
        let from = self.plugin_log_len();
        let r = self.d.try_add_pod_as(&name, &cid);
        self.disarm_shim();
        if r.is_err() {
            self.plugin_stage("ADD", us, from);
        }
        *self.f.plugin_kills.entry("ADD").or_insert(0) += 1;
        match r {
            Ok(p) => {
                self.f.plugin_finished_first += 1;
                self.admit(p);
            }
            Err((ns, e)) => {
                *self.f.add_failures.entry(error_class(&e)).or_insert(0) += 1;
                // The runtime's DEL of the failed sandbox, with the real plugin.
                self.runtime_del(&cid, &ns, &name);
                drop(ns);
                self.check(&format!(
                    "after a plugin killed mid-ADD ({us} µs) and its DEL"
                ));
                self.add();
            }
        }
    }

    fn plugin_kill_del(&mut self) {
        let Some(name) = self.pick_live() else {
            return self.add();
        };
        let us = self.rng.below(4000);
        self.arm_shim(us);
        let p = self.live.remove(&name).unwrap();
        let from = self.plugin_log_len();
        let a = self.d.cni("del", &p.container_id, &p.ns.path(), &p.name);
        self.disarm_shim();
        if a["ok"] != json!(true) {
            self.plugin_stage("DEL", us, from);
        }
        *self.f.plugin_kills.entry("DEL").or_insert(0) += 1;
        if a["ok"] == json!(true) {
            self.f.plugin_finished_first += 1;
        }
        // The kubelet repeats the DEL until it succeeds.
        self.runtime_del(&p.container_id, &p.ns, &p.name);
        self.f.dels += 1;
        drop(p);
        self.check(&format!(
            "after a plugin killed mid-DEL ({us} µs) and the retried DEL"
        ));
    }

    /// The checkpoint's file system fills up: ADDs fail cleanly, DELs go through; once space
    /// is back, everything works and agrees again.
    fn disk_full(&mut self) {
        let bytes = self.ckpt.fill();
        eprintln!("soak: checkpoint file system full ({bytes} bytes of filler)");
        for i in 0..2 {
            let name = self.next_name();
            let cid = format!("c-{name}-full{i}");
            self.f.add_attempts += 1;
            match self.d.try_add_pod_as(&name, &cid) {
                Ok(p) => {
                    let msg = format!(
                        "ADD of {} succeeded with the checkpoint's disk full",
                        p.name
                    );
                    self.admit(p);
                    self.violation(msg);
                }
                Err((ns, e)) => {
                    let text = e.to_string();
                    if !text.contains("checkpoint") {
                        self.violation(format!(
                            "ADD on a full disk: the error does not say why: {text}"
                        ));
                    }
                    self.f.disk_full_add_errors.push(text);
                    self.runtime_del(&cid, &ns, &name);
                }
            }
            if let Some(n) = self.pick_live() {
                self.del(&n);
                self.f.disk_full_dels += 1;
            }
        }
        self.ckpt.free();
        self.add();
        self.check("after the checkpoint's disk had space again");
    }

    fn attached_enis(&self) -> Vec<vpc_cni::aws::ec2::NetworkInterface> {
        persist(|| {
            self.ec2
                .describe_network_interfaces(&DescribeNetworkInterfaces {
                    ids: vec![],
                    filters: vec![Filter::new(
                        "attachment.instance-id",
                        [self.d.node.instance_id.as_str()],
                    )],
                })
        })
    }

    /// Detaches a secondary ENI with (busy) or without pods through EC2.
    fn detach(&mut self, busy: bool) -> bool {
        let live: BTreeSet<Ipv4Addr> = self.live.values().map(|p| p.ip).collect();
        let enis = self.attached_enis();
        let pick = enis.iter().find(|n| {
            let dev = n
                .attachment
                .as_ref()
                .and_then(|a| a.device_index)
                .unwrap_or(0);
            let status = n
                .attachment
                .as_ref()
                .map(|a| a.status.as_str())
                .unwrap_or("");
            let pods = n
                .private_ips
                .iter()
                .filter(|p| live.contains(&p.address))
                .count();
            dev > 0 && status == "attached" && ((pods > 0) == busy)
        });
        let Some(eni) = pick.cloned() else {
            return false;
        };
        let att = eni
            .attachment
            .as_ref()
            .map(|a| a.attachment_id.clone())
            .unwrap();
        persist(|| {
            self.ec2.detach_network_interface(&DetachNetworkInterface {
                attachment_id: att.clone(),
                force: true,
            })
        });
        let on_it: Vec<String> = self
            .live
            .values()
            .filter(|p| eni.private_ips.iter().any(|a| a.address == p.ip))
            .map(|p| p.name.clone())
            .collect();
        eprintln!(
            "soak: detached {} with {} pods behind ipamd's back",
            eni.id,
            on_it.len()
        );
        for n in &on_it {
            let p = self.live.remove(n).unwrap();
            self.orphaned.insert(n.clone(), p);
        }
        for a in &eni.private_ips {
            self.detached_addrs.insert(a.address, eni.id.clone());
        }
        self.f.detached.push((eni.id.clone(), on_it.len()));
        self.detached_enis.insert(eni.id.clone());
        self.unnoticed.push((eni.id, Instant::now()));
        true
    }

    /// ipamd's ENIs (introspection).
    fn ipamd_enis(&self) -> Option<Value> {
        let a = self.d.http_get("http://127.0.0.1:61679/v1/enis", &[]);
        (a.status == 200).then(|| a.json())
    }

    /// Detached ENIs ipamd dropped: their orphaned pods are deleted now (the kubelet restarts
    /// them), which ipamd answers with "no address" and the plugin tears down from prevResult.
    fn follow_detaches(&mut self) {
        if self.unnoticed.is_empty() {
            return;
        }
        let Some(v) = self.ipamd_enis() else { return };
        let known: BTreeSet<String> = v["ENIs"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let (gone, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unnoticed)
            .into_iter()
            .partition(|(id, _)| !known.contains(id));
        self.unnoticed = still;
        for (id, at) in gone {
            self.f
                .detach_noticed_ms
                .push(at.elapsed().as_millis() as u64);
            eprintln!("soak: ipamd dropped {id} after {:?}", at.elapsed());
        }
        if self.unnoticed.is_empty() {
            for (_, p) in std::mem::take(&mut self.orphaned) {
                self.runtime_del(&p.container_id, &p.ns, &p.name);
                self.f.dels += 1;
            }
        }
    }

    /// EC2, the checkpoint and the kernel agree with the live pods.
    fn check(&mut self, when: &str) {
        self.f.checks += 1;
        let live = self.live_ips();
        let live_set: BTreeSet<Ipv4Addr> = live.keys().copied().collect();
        // The checkpoint: exactly the live pods' addresses.
        let mut in_ckpt: Vec<Ipv4Addr> = self
            .d
            .checkpoint_allocations()
            .iter()
            .filter_map(|(_, ip)| ip.parse().ok())
            .collect();
        in_ckpt.sort();
        let dup = in_ckpt.windows(2).any(|w| w[0] == w[1]);
        let ckpt_set: BTreeSet<Ipv4Addr> = in_ckpt.iter().copied().collect();
        // Orphaned pods' addresses leave the checkpoint once ipamd drops their ENI.
        let orphan_ips: BTreeSet<Ipv4Addr> = self.orphaned.values().map(|p| p.ip).collect();
        let want: BTreeSet<Ipv4Addr> = self.live.values().map(|p| p.ip).collect();
        let extra: Vec<_> = ckpt_set
            .difference(&want)
            .filter(|ip| !orphan_ips.contains(ip))
            .collect();
        let missing: Vec<_> = want.difference(&ckpt_set).collect();
        if dup || !extra.is_empty() || !missing.is_empty() {
            self.violation(format!(
                "{when}: checkpoint {in_ckpt:?} vs live {want:?} (extra {extra:?}, missing {missing:?})"
            ));
        }
        // The kernel: a host route per live pod and no other; no rule for an address not live.
        let routes = pod_routes(self.d.netns());
        let route_set: BTreeSet<Ipv4Addr> = routes.iter().copied().collect();
        if route_set != live_set || routes.len() != route_set.len() {
            self.violation(format!(
                "{when}: host routes {routes:?} vs live {live_set:?}"
            ));
        }
        let rules = pod_rule_addresses(self.d.netns());
        let stray: Vec<_> = rules.difference(&live_set).collect();
        if !stray.is_empty() {
            let text = netns::run("ip", &["-n", self.d.netns(), "-4", "rule", "show"]);
            self.violation(format!(
                "{when}: pod rules for addresses no pod holds: {stray:?}\n{text}"
            ));
        }
        // EC2: every live address on an ENI attached to this node.
        let enis = self.attached_enis();
        let in_ec2: BTreeSet<Ipv4Addr> = enis
            .iter()
            .filter(|n| {
                n.attachment
                    .as_ref()
                    .is_some_and(|a| a.status == "attached")
            })
            .flat_map(|n| n.private_ips.iter().map(|p| p.address))
            .collect();
        let off: Vec<_> = want.iter().filter(|ip| !in_ec2.contains(ip)).collect();
        if !off.is_empty() {
            self.violation(format!(
                "{when}: live addresses on no attached ENI in EC2: {off:?}"
            ));
        }
    }
}

/// Addresses with a host route to a pod veth (`<ip> dev eni...`) in the node's main table.
fn pod_routes(netns: &str) -> Vec<Ipv4Addr> {
    let out = netns::run("ip", &["-n", netns, "-4", "route", "show", "table", "main"]);
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let dst = w.next()?;
            let rest: Vec<&str> = w.collect();
            let dev = rest
                .iter()
                .position(|t| *t == "dev")
                .and_then(|i| rest.get(i + 1))?;
            if !dev.starts_with("eni") {
                return None;
            }
            dst.trim_end_matches("/32").parse().ok()
        })
        .collect()
}

/// Addresses of the pod rules in the node's policy rules: the to-pod rules (priority 512) and the
/// from-pod rules (1536). ipamd's own rules (1024, 1535, the ENIs' 32765) are not pod rules.
fn pod_rule_addresses(netns: &str) -> BTreeSet<Ipv4Addr> {
    let out = netns::run("ip", &["-n", netns, "-4", "rule", "show"]);
    let mut v = BTreeSet::new();
    for l in out.lines() {
        let t: Vec<&str> = l.split_whitespace().collect();
        if !matches!(t.first().copied(), Some("512:" | "1536:")) {
            continue;
        }
        for w in t.windows(2) {
            if w[0] == "from" || w[0] == "to" {
                if let Ok(ip) = w[1].trim_end_matches("/32").parse::<Ipv4Addr>() {
                    v.insert(ip);
                }
            }
        }
    }
    v
}

/// The node's IMDS role credentials (what ipamd signs with): secret key and session token.
fn role_secrets(d: &Ipamd) -> Vec<String> {
    let script = "t=$(curl -s -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token) && \
                  r=$(curl -s -H \"X-aws-ec2-metadata-token: $t\" http://169.254.169.254/latest/meta-data/iam/security-credentials/) && \
                  curl -s -H \"X-aws-ec2-metadata-token: $t\" http://169.254.169.254/latest/meta-data/iam/security-credentials/$r";
    let out = Command::new("ip")
        .args(["netns", "exec", d.netns(), "bash", "-c", script])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "IMDS role credentials ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    ["SecretAccessKey", "Token"]
        .iter()
        .map(|k| v[k].as_str().unwrap().to_string())
        .collect()
}

/// The plugin wrapper: runs the real `aws-cni` (same stdin, stdout, environment and argv[0]) and
/// SIGKILLs it after the delay in `delay` (seconds, fractions down to microseconds). Perl (in
/// every Debian) because the plugin's whole ADD takes a few milliseconds: a shell's `sleep`
/// alone takes about as long.
fn write_shim(dir: &Path, real: &Path) {
    let script = format!(
        "#!/usr/bin/perl\n\
         # Test wrapper: the real plugin, killed with SIGKILL after the delay in the file delay.\n\
         open(my $f, '<', '{delay}') or die \"delay: $!\";\n\
         my $delay = <$f> + 0;\n\
         close($f);\n\
         my $pid = fork() // die \"fork: $!\";\n\
         if ($pid == 0) {{ exec {{ '{real}' }} 'aws-cni', @ARGV or die \"exec: $!\"; }}\n\
         select(undef, undef, undef, $delay);\n\
         kill('KILL', $pid);\n\
         waitpid($pid, 0);\n\
         exit(($? & 127) ? 128 + ($? & 127) : $? >> 8);\n",
        real = real.display(),
        delay = dir.join("delay").display()
    );
    let p = dir.join("aws-cni");
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn percentile(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    s[((s.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "minutes long: run by scripts/soak"]
fn fault_soak_keeps_ec2_checkpoint_and_kernel_in_agreement() {
    let ops = knob("VPC_CNI_SOAK_OPS", 100);
    let kills = knob("VPC_CNI_SOAK_KILLS", 3);
    let plugin_kills = knob("VPC_CNI_SOAK_PLUGIN_KILLS", 2);
    let seed = knob(
        "VPC_CNI_SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    )
    .max(1);
    eprintln!("soak: {ops} ops, {kills} ipamd kills, {plugin_kills}+{plugin_kills} plugin kills, seed {seed}");

    let mut sim = VpcSim::start("soak");
    let node = sim.launch_node("m5.large");
    let (ec2, test_key) = ec2_test_user(&sim);
    // Faults from the start: ipamd's very first calls meet them too.
    sim.inject_fault(&Fault::error("*", "RequestLimitExceeded", 503).probability(0.3))
        .unwrap();
    sim.inject_fault(&Fault::error("*", "InternalError", 500).probability(0.05))
        .unwrap();
    sim.inject_fault(&Fault::latency("*", 150).probability(0.2))
        .unwrap();
    sim.set_imds_lag(1.0, Some(&node)).unwrap();

    let ckpt = Tmpfs::new("256k");
    let store = ckpt.path().join("ipam.json");
    let d = Ipamd::start(
        &node,
        &[
            ("AWS_VPC_K8S_CNI_BACKING_STORE", store.to_str().unwrap()),
            // ipamd takes the instance role's keys from IMDS (a session token to look for in the logs).
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("IP_COOLDOWN_PERIOD", "0"),
        ],
    );
    let shim = d.dir.0.join("shim");
    std::fs::create_dir_all(&shim).unwrap();
    write_shim(&shim, &d.dir.0.join("bin/aws-cni"));

    // The schedule: kills spread over the run, each event once at its place.
    let mut rng = Rng(seed);
    let mut schedule: BTreeMap<u64, Event> = BTreeMap::new();
    let place = |schedule: &mut BTreeMap<u64, Event>, rng: &mut Rng, at: u64, ev: Event| {
        let mut i = at.min(ops.saturating_sub(1));
        while schedule.contains_key(&i) {
            i = (i + 1 + rng.below(3)) % ops.max(1);
        }
        schedule.insert(i, ev);
    };
    for k in 0..kills {
        let ev = match k {
            1 => Event::KillCorrupt,
            2 => Event::KillImdsFaults,
            _ => Event::KillIpamd,
        };
        let at = (k * ops) / kills.max(1) + rng.below((ops / kills.max(1)).max(1));
        place(&mut schedule, &mut rng, at, ev);
    }
    for k in 0..plugin_kills {
        let at = rng.below(ops);
        place(&mut schedule, &mut rng, at, Event::PluginKillAdd);
        let at = rng.below(ops);
        place(&mut schedule, &mut rng, at, Event::PluginKillDel);
        let _ = k;
    }
    place(&mut schedule, &mut rng, ops * 2 / 5, Event::DiskFull);
    place(&mut schedule, &mut rng, ops / 2, Event::DetachIdle);
    place(&mut schedule, &mut rng, ops * 7 / 10, Event::DetachBusy);

    let mut s = Soak {
        sim,
        d,
        ec2,
        test_key,
        rng,
        live: BTreeMap::new(),
        orphaned: BTreeMap::new(),
        unnoticed: Vec::new(),
        detached_enis: BTreeSet::new(),
        detached_addrs: BTreeMap::new(),
        shim,
        ckpt,
        pending: None,
        seq: 0,
        f: Figures::default(),
    };
    s.sim.clear_calls().unwrap();
    let began = Instant::now();
    for i in 0..ops {
        let ev = schedule.get(&i).copied().or_else(|| s.pending.take());
        s.f.ops += 1;
        s.op(ev);
        s.follow_detaches();
        s.check(&format!("op {i} ({ev:?})"));
        if i % 50 == 49 {
            eprintln!(
                "soak: {} ops, {} live, {} kills, {:.1} s, {} violations",
                i + 1,
                s.live.len(),
                s.f.ipamd_kills,
                began.elapsed().as_secs_f64(),
                s.f.violations.len()
            );
        }
    }
    let run_secs = began.elapsed().as_secs_f64();
    // The run is over: the faults go (their hit counts first), the end is checked without them.
    let faults = s.sim.request("GET", "/faults", None).unwrap_or(Value::Null);
    s.sim.clear_faults().unwrap();
    s.sim.clear_imds_faults().unwrap();
    s.sim.set_imds_lag(0.0, None).unwrap();

    // Detached ENIs are dropped by the reconcile at the latest.
    let wait = Instant::now();
    while !s.unnoticed.is_empty() && wait.elapsed() < Duration::from_secs(150) {
        std::thread::sleep(Duration::from_secs(1));
        s.follow_detaches();
    }
    if !s.unnoticed.is_empty() {
        let msg = format!("ipamd never dropped the detached ENIs {:?}", s.unnoticed);
        s.violation(msg);
    }
    s.check("at the end");

    // No leak: eventually every address EC2 assigned to the node's ENIs is one ipamd's datastore
    // knows, its ENIs are EC2's attached ones, and it holds no more free ENIs than its target
    // (WARM_ENI_TARGET=1; a free ENI goes after a minute).
    let mut last = String::new();
    let settle = Instant::now();
    let mut settled = false;
    while settle.elapsed() < Duration::from_secs(180) {
        let enis = s.attached_enis();
        let live: BTreeSet<Ipv4Addr> = s.live.values().map(|p| p.ip).collect();
        let ec2_ids: BTreeSet<String> = enis
            .iter()
            .filter(|n| {
                n.attachment
                    .as_ref()
                    .is_some_and(|a| a.status == "attached")
            })
            .map(|n| n.id.clone())
            .collect();
        let secondaries: usize = enis
            .iter()
            .map(|n| n.private_ips.iter().filter(|p| !p.primary).count())
            .sum();
        let free_enis = enis
            .iter()
            .filter(|n| {
                n.attachment
                    .as_ref()
                    .and_then(|a| a.device_index)
                    .unwrap_or(0)
                    > 0
            })
            .filter(|n| !n.private_ips.iter().any(|p| live.contains(&p.address)))
            .count();
        if let Some(v) = s.ipamd_enis() {
            let ids: BTreeSet<String> = v["ENIs"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let total = v["TotalIPs"].as_u64().unwrap_or(0) as usize;
            let assigned = v["AssignedIPs"].as_u64().unwrap_or(0) as usize;
            last = format!(
                "EC2: ENIs {ec2_ids:?}, {secondaries} secondary addresses, {free_enis} ENIs without pods; \
                 ipamd: ENIs {ids:?}, {total} addresses, {assigned} assigned; {} live pods",
                live.len()
            );
            if ids == ec2_ids && total == secondaries && assigned == live.len() && free_enis <= 1 {
                settled = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    if !settled {
        s.violation(format!("EC2 and ipamd never agreed: {last}"));
    }
    eprintln!(
        "soak: final state: {last} (after {:.0} s)",
        settle.elapsed().as_secs_f64()
    );

    // No ENI left behind in EC2: every ENI ipamd created for this node is attached to it, or is
    // one the soak detached.
    let stray_enis: Vec<String> = s
        .ec2
        .describe_network_interfaces(&DescribeNetworkInterfaces {
            ids: vec![],
            filters: vec![Filter::new(
                "tag:node.k8s.amazonaws.com/instance_id",
                [s.d.node.instance_id.as_str()],
            )],
        })
        .unwrap()
        .into_iter()
        .filter(|n| n.attachment.is_none() && !s.detached_enis.contains(&n.id))
        .map(|n| n.id)
        .collect();
    if !stray_enis.is_empty() {
        s.violation(format!(
            "ENIs ipamd created and left unattached: {stray_enis:?}"
        ));
    }

    // Calls by action (ipamd's only: the test's own reads are signed with another key).
    let calls = s.sim.calls(None).unwrap();
    let mut by_action: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut faults_hit: BTreeMap<String, u64> = BTreeMap::new();
    for c in calls
        .iter()
        .filter(|c| c.access_key_id.as_deref() != Some(s.test_key.as_str()))
    {
        let e = by_action
            .entry(format!("{}:{}", c.service, c.action))
            .or_insert((0, 0));
        e.0 += 1;
        if let Some(err) = &c.error {
            e.1 += 1;
            *faults_hit.entry(err.clone()).or_insert(0) += 1;
        }
    }
    let imds_requests = s
        .sim
        .request("GET", "/imds/requests", None)
        .ok()
        .and_then(|v| v.get(&s.d.node.name).cloned())
        .unwrap_or(Value::Null);

    // No secret in any log of the run.
    let mut secrets = role_secrets(&s.d);
    secrets.push(s.sim.secret_access_key().to_string());
    let mut logs = s.d.all_logs();
    let mut log_bytes = 0;
    for (p, text) in &mut logs {
        log_bytes += text.len();
        for sec in &secrets {
            if !sec.is_empty() && text.contains(sec.as_str()) {
                let msg = format!("{} holds a secret", p.display());
                s.violation(msg);
            }
        }
    }

    let f = &s.f;
    let report = json!({
        "seed": seed,
        "ops": f.ops,
        "adds": f.adds,
        "dels": f.dels,
        "add_attempts": f.add_attempts,
        "add_failures": f.add_failures,
        "run_seconds": run_secs,
        "ops_per_second": f.ops as f64 / run_secs,
        "ipamd_kills": f.ipamd_kills,
        "kill_during": f.kill_during,
        "restart_to_ready_ms": {
            "count": f.restart_ready_ms.len(),
            "median": percentile(&f.restart_ready_ms, 0.5),
            "p90": percentile(&f.restart_ready_ms, 0.9),
            "max": f.restart_ready_ms.iter().max(),
        },
        "corrupt_checkpoint_restarts": f.corrupt_restarts,
        "imds_fault_restarts": f.imds_fault_restarts,
        "plugin_kills": f.plugin_kills,
        "plugin_finished_before_kill": f.plugin_finished_first,
        "plugin_killed_after": f.plugin_kill_stages,
        "imds_requests": imds_requests,
        "disk_full_add_errors": f.disk_full_add_errors,
        "disk_full_dels": f.disk_full_dels,
        "detached_enis": f.detached,
        "detach_noticed_ms": f.detach_noticed_ms,
        "handed_out_before_noticed": f.handed_out_while_detached,
        "max_live_pods": f.max_live,
        "checks": f.checks,
        "ec2_calls": by_action,
        "ec2_faults_hit": faults_hit,
        "faults": faults,
        "logs_searched": logs.iter().map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect::<Vec<_>>(),
        "log_bytes_searched": log_bytes,
        "secrets_searched": secrets.len(),
        "violations": f.violations,
    });
    eprintln!(
        "soak report: {}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    if let Ok(p) = std::env::var("VPC_CNI_SOAK_REPORT") {
        std::fs::write(p, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
    if let Ok(dir) = std::env::var("VPC_CNI_SOAK_LOGS") {
        let _ = std::fs::create_dir_all(&dir);
        for (p, text) in s.d.all_logs() {
            if let Some(n) = p.file_name() {
                let _ = std::fs::write(Path::new(&dir).join(n), text);
            }
        }
    }
    let violations = s.f.violations.clone();
    assert!(
        violations.is_empty(),
        "{} violations:\n{}\n{}",
        violations.len(),
        violations.join("\n"),
        s.d.log()
            .lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (_, p) in std::mem::take(&mut s.live) {
        s.runtime_del(&p.container_id, &p.ns, &p.name);
    }
}

/// Soak finding 3: an ENI detached behind ipamd's back stayed in the datastore until the next
/// reconcile, which waits for a minute without pool changes (so on a busy node, for ever), and
/// its addresses went to new pods that then had no network. ipamd now reconciles as soon as
/// IMDS stops listing one of its ENIs.
#[test]
fn an_eni_detached_behind_ipamds_back_is_dropped_within_seconds() {
    let mut sim = VpcSim::start("soakdt");
    let node = sim.launch_node("m5.large");
    let mut d = Ipamd::start(&node, &[("IP_COOLDOWN_PERIOD", "0")]);
    let (ec2, _) = ec2_test_user(&sim);
    let listed = |d: &Ipamd| -> BTreeSet<String> {
        let a = d.http_get("http://127.0.0.1:61679/v1/enis", &[]);
        a.json()["ENIs"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    // WARM_ENI_TARGET=1: 3 pods leave 6 of the primary ENI's 9 addresses free, so a warm ENI
    // is attached.
    let first = ipamd_node::add_pods(&mut d, "p", 3);
    ipamd_node::eventually(
        &d,
        Duration::from_secs(30),
        "two ENIs in the datastore",
        || listed(&d).len() == 2,
    );
    let enis = ipamd_node::enis_of(&ec2, &node.instance_id);
    let warm = enis
        .iter()
        .find(|n| n.attachment.as_ref().and_then(|a| a.device_index) == Some(1))
        .unwrap()
        .clone();
    ec2.detach_network_interface(&DetachNetworkInterface {
        attachment_id: warm.attachment.as_ref().unwrap().attachment_id.clone(),
        force: true,
    })
    .unwrap();
    let detached: BTreeSet<Ipv4Addr> = warm.private_ips.iter().map(|p| p.address).collect();
    // The pool acted moments ago (its first fill): the minute-long reconcile gate is closed.
    ipamd_node::eventually(
        &d,
        Duration::from_secs(15),
        "the detached ENI out of the datastore",
        || !listed(&d).contains(&warm.id),
    );
    assert!(d.log().contains("no longer lists ENI"), "{}", d.log());
    // New pods get addresses of attached ENIs only.
    let pods = ipamd_node::add_pods(&mut d, "dt", 10);
    for p in &pods {
        assert!(
            !detached.contains(&p.ip),
            "{} of the detached ENI handed out",
            p.ip
        );
    }
    for p in pods.into_iter().chain(first) {
        d.del_pod(p);
    }
}
