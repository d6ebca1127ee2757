//! Side-by-side benchmark (not a test: every function here is `#[ignore]`, run by `bench/side-by-side`): our
//! ipamd + aws-cni against upstream v1.23's aws-k8s-agent + aws-cni (with a real kube-apiserver) and the
//! reference ptp + host-local, on VPC-in-a-box nodes, through libcni. Each part writes its raw figures as JSON to
//! `$BENCH_OUT/<part>.json`; `bench/side_by_side_report.py` turns them into docs/benchmarks.md and
//! docs/benchmarks.json.
//!
//! Knobs (environment): `BENCH_OUT` (directory, required), `BENCH_N` (sequential ADD/DEL per plugin, 200),
//! `BENCH_BURSTS` (`30,100`), `BENCH_PODS` (`100,250`: pod counts of the footprint), `BENCH_CHURN` (pod add/delete
//! inside the warm pool per daemon, 1000), `BENCH_MODE_PODS` (110), `BENCH_QUIET` (seconds without an EC2 change
//! that count as settled after the pods are gone, 70), `BENCH_VETH` (veth teardown runs, 200).
//!
//! Ours runs as the musl release binary when the bench is built with `--target x86_64-unknown-linux-musl`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "peers/cluster.rs"]
mod cluster;
#[path = "support/cni_client.rs"]
mod cni_client;
#[path = "support/ipamd_node.rs"]
mod ipamd_node;
#[path = "support/netns.rs"]
mod netns;
#[path = "peers/node.rs"]
mod node;
#[path = "support/tempdir.rs"]
mod tempdir;
#[path = "peers/upstream.rs"]
mod upstream;
#[path = "support/vpcsim.rs"]
mod vpcsim;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cni_client::peer;
use ipamd_node::{Ipamd, REFERENCE_PLUGINS};
use netns::TestNs;
use serde_json::{json, Value};
use tempdir::TempDir;
use vpc_cni::aws::imds::Imds;
use vpcsim::{Node, VpcSim};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn knob_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn write_part(part: &str, v: &Value) {
    let dir = PathBuf::from(std::env::var("BENCH_OUT").expect("BENCH_OUT: where the figures go"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{part}.json")),
        serde_json::to_string_pretty(v).unwrap(),
    )
    .unwrap();
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// VmRSS, VmHWM (KiB) and Threads of a process.
fn proc_status(pid: u32) -> Value {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mut out = serde_json::Map::new();
    for line in text.lines() {
        let (k, v) = line.split_once(':').unwrap_or(("", ""));
        if matches!(k, "VmRSS" | "VmHWM" | "Threads") {
            let n: u64 = v
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            out.insert(k.to_string(), json!(n));
        }
    }
    Value::Object(out)
}

/// The pid of the process whose argv[0] is `argv0` (our ipamd runs as `<dir>/sbin/aws-k8s-agent`).
fn pid_of_argv0(argv0: &Path) -> Option<u32> {
    let want = argv0.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        (cmdline.split(|b| *b == 0).next()? == want).then_some(pid)
    })
}

/// A libcni client process (tests/cni-client: one JSON request per line, one answer per line).
struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn send(&mut self, op: &str, id: &str, netns: &Path, pod: &str) {
        let req = json!({
            "op": op, "containerID": id, "netns": netns, "ifname": "eth0",
            "args": [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", "bench"], ["K8S_POD_NAME", pod],
                     ["K8S_POD_INFRA_CONTAINER_ID", id]],
        });
        writeln!(self.stdin, "{req}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("client answered {line:?}: {e}"))
    }

    fn call(&mut self, op: &str, id: &str, netns: &Path, pod: &str) -> Value {
        self.send(op, id, netns, pod);
        self.recv()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a client reaches a plugin's node: its network namespace, and for upstream the daemon's mount namespace
/// (its /var/run/aws-node).
#[derive(Clone)]
enum Reach {
    Netns(String, Vec<(String, String)>),
    Mount { netns: String, pid: u32 },
}

/// One of the three plugins on its node: how to run libcni against it.
#[derive(Clone)]
struct Side {
    label: &'static str,
    reach: Reach,
    conflist: PathBuf,
    /// Plugin directories (`:`-separated), after an optional wrapper directory.
    path: String,
    /// The main plugin's type (the file name a wrapper takes).
    plugin: &'static str,
    /// Where the client caches go and wrappers live.
    work: PathBuf,
}

impl Side {
    /// A client process; with `wrap`, the main plugin runs under the wrapper program `wrap` (e.g. GNU time),
    /// whose own argv precede the real plugin path.
    fn client(&self, tag: &str, wrap: Option<&[&str]>) -> Client {
        let mut path = self.path.clone();
        if let Some(wrap) = wrap {
            let dir = self.work.join(format!("wrap-{tag}"));
            std::fs::create_dir_all(&dir).unwrap();
            let real = self
                .path
                .split(':')
                .map(|d| Path::new(d).join(self.plugin))
                .find(|p| p.exists())
                .unwrap();
            let quoted: Vec<String> = wrap.iter().map(|a| format!("'{a}'")).collect();
            let script = format!(
                "#!/bin/sh\nexec {} '{}' \"$@\"\n",
                quoted.join(" "),
                real.display()
            );
            let w = dir.join(self.plugin);
            std::fs::write(&w, script).unwrap();
            let mut perms = std::fs::metadata(&w).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
            std::fs::set_permissions(&w, perms).unwrap();
            path = format!("{}:{path}", dir.display());
        }
        let client = cni_client::go_client();
        let mut cmd = match &self.reach {
            Reach::Netns(ns, env) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&client);
                c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                c
            }
            Reach::Mount { netns, pid } => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--mount=/proc/{pid}/ns/mnt"))
                    .arg(format!("--net=/run/netns/{netns}"))
                    .arg("--")
                    .arg(&client);
                c
            }
        };
        cmd.arg("-conflist")
            .arg(&self.conflist)
            .arg("-path")
            .arg(path)
            .arg("-cache")
            .arg(self.work.join("cni-cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        Client {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }
}

/// A pod: its namespace and container id.
struct Pod {
    ns: TestNs,
    id: String,
    name: String,
}

impl Pod {
    fn new(tag: &str, i: usize) -> Pod {
        let name = format!("{tag}-{}-{i}", std::process::id());
        Pod {
            ns: TestNs::new("bp"),
            id: format!("c{}", name.replace('-', "")),
            name,
        }
    }
}

fn ok(answer: &Value, what: &str) -> u64 {
    assert_eq!(answer["ok"], true, "{what}: {answer}");
    answer["micros"].as_u64().unwrap_or(0)
}

/// ADD, retrying for up to `budget` while the daemon refuses (an empty pool while it grows: kubelet retries).
fn add_retrying(c: &mut Client, pod: &Pod, budget: Duration) -> u64 {
    let began = Instant::now();
    loop {
        let a = c.call("add", &pod.id, &pod.ns.path(), &pod.name);
        if a["ok"] == true {
            return a["micros"].as_u64().unwrap_or(0);
        }
        assert!(began.elapsed() < budget, "ADD {}: {a}", pod.name);
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ------------------------------------------------------------------------------------------------------------
// The nodes.

/// The `extended` IAM user's keys: upstream signs with them, ours with the node user's, so the sim's call log
/// tells the two daemons apart.
fn extended_keys(sim: &VpcSim) -> (String, String) {
    let c = &sim.state()["credentials"]["extended"];
    (
        c["access_key_id"].as_str().unwrap().to_string(),
        c["secret_access_key"].as_str().unwrap().to_string(),
    )
}

/// Upstream's daemon on a node with its own control plane in the node's namespace.
struct Upstream {
    node: Node,
    dir: TempDir,
    cluster: Option<cluster::Cluster>,
    daemon: Option<node::NodeDaemon>,
    key: String,
    node_name: String,
}

impl Upstream {
    /// Control plane, CRDs and Node object (kubelet's pod capacity `max_pods`); the daemon is not started yet.
    fn prepare(sim: &VpcSim, node: &Node, max_pods: u32) -> Upstream {
        let dir = TempDir::new("benchup");
        std::fs::create_dir_all(dir.0.join("bin")).unwrap();
        let ns = node.namespace.clone().unwrap();
        let cluster = cluster::Cluster::start(&format!("bench-{}", node.name), Some(&ns));
        let crds = peer("upstream", "VPC_CNI_PEER_UPSTREAM_CRDS");
        cluster.apply_crds(&crds.join("eniconfigs.yaml"));
        cluster.apply_crds(&crds.join("cninodes.yaml"));
        let node_name = format!(
            "ip-{}.{}.compute.internal",
            node.primary_ip.replace('.', "-"),
            sim.region()
        );
        cluster.create_node(
            &node_name,
            &format!("aws:///{}/{}", node.az, node.instance_id),
            &json!({"kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": node.instance_type,
                    "topology.kubernetes.io/zone": node.az}),
        );
        cluster.set_node_pods(&node_name, max_pods);
        for (name, var) in [
            ("aws-cni", "VPC_CNI_PEER_AWS_CNI"),
            ("egress-cni", "VPC_CNI_PEER_EGRESS_CNI"),
        ] {
            std::os::unix::fs::symlink(peer("upstream", var), dir.0.join("bin").join(name))
                .unwrap();
        }
        std::fs::write(
            dir.0.join("10-aws.conflist"),
            upstream::render_conflist(&node.primary_ip, &dir.0),
        )
        .unwrap();
        let (key, _) = extended_keys(sim);
        Upstream {
            node: node.clone(),
            dir,
            cluster: Some(cluster),
            daemon: None,
            key,
            node_name,
        }
    }

    /// Starts the daemon with `settings`; returns the wall time from spawn to its gRPC health answer.
    fn start(&mut self, sim: &VpcSim, settings: &[(&str, &str)]) -> Duration {
        let cluster = self.cluster.as_ref().unwrap();
        let mut env = upstream::daemon_env(
            &self.node,
            &self.node_name,
            &cluster.kubeconfig,
            &self.dir.0,
        );
        let (key, secret) = extended_keys(sim);
        let mut set = |k: &str, v: &str| {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        };
        set("AWS_ACCESS_KEY_ID", &key);
        set("AWS_SECRET_ACCESS_KEY", &secret);
        set("AWS_VPC_K8S_CNI_LOGLEVEL", "INFO");
        for (k, v) in settings {
            set(k, v);
        }
        let began = Instant::now();
        let mut d = node::NodeDaemon::start(
            self.node.namespace.as_deref().unwrap(),
            &self.dir.0.join("run"),
            &self.dir.0.join("ipamd.log"),
            &peer("upstream", "VPC_CNI_PEER_IPAMD"),
            &[],
            &env,
        );
        upstream::wait_serving(&mut d, Duration::from_secs(180), Duration::from_millis(50));
        let took = began.elapsed();
        self.daemon = Some(d);
        took
    }

    fn pid(&self) -> u32 {
        self.daemon.as_ref().unwrap().pid()
    }

    fn side(&self) -> Side {
        Side {
            label: "upstream",
            reach: Reach::Mount {
                netns: self.node.namespace.clone().unwrap(),
                pid: self.pid(),
            },
            conflist: self.dir.0.join("10-aws.conflist"),
            path: format!("{}:{REFERENCE_PLUGINS}", self.dir.0.join("bin").display()),
            plugin: "aws-cni",
            work: self.dir.0.clone(),
        }
    }

    fn stop(&mut self) {
        self.daemon = None;
    }
}

fn ours_side(d: &Ipamd) -> Side {
    Side {
        label: "ours",
        reach: Reach::Netns(
            d.netns().to_string(),
            vec![(
                vpc_cni::rpc::SOCKET_ENV.to_string(),
                d.socket().display().to_string(),
            )],
        ),
        conflist: d.dir.0.join("net.d/10-aws.conflist"),
        path: format!("{}:{REFERENCE_PLUGINS}", d.dir.0.join("bin").display()),
        plugin: "aws-cni",
        work: d.dir.0.clone(),
    }
}

fn ours_pid(d: &Ipamd) -> u32 {
    pid_of_argv0(&d.dir.0.join("sbin/aws-k8s-agent")).expect("our ipamd's pid")
}

/// ptp + host-local in a namespace of its own (a "node" with nothing else).
fn ptp_side(work: &Path, node: &TestNs) -> Side {
    let conflist = work.join("ptp.conflist");
    std::fs::write(
        &conflist,
        json!({"cniVersion": "1.0.0", "name": "ptp-bench", "plugins": [{"type": "ptp", "mtu": 9001,
               "ipam": {"type": "host-local", "subnet": "10.1.0.0/16",
                        "dataDir": work.join("host-local")}}]})
        .to_string(),
    )
    .unwrap();
    Side {
        label: "ptp",
        reach: Reach::Netns(node.name.clone(), vec![]),
        conflist,
        path: REFERENCE_PLUGINS.to_string(),
        plugin: "ptp",
        work: work.to_path_buf(),
    }
}

/// Secondary addresses and prefixes per attached ENI, by device number, as the node's IMDS shows them (IMDS
/// reads are not EC2 calls, so reading the shape costs the count nothing).
fn imds_shape(node: &Node) -> Vec<(u32, usize, usize)> {
    let imds = Imds::new(&node.imds_endpoint).unwrap();
    let md = imds.within(Duration::from_secs(10));
    md.interfaces()
        .map(|v| {
            v.iter()
                .map(|i| {
                    (
                        i.device_number,
                        i.local_ipv4s.len().saturating_sub(1),
                        i.ipv4_prefixes.len(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the node's shape has not changed for `quiet`, at most `budget`.
fn settle(node: &Node, quiet: Duration, budget: Duration) -> Vec<(u32, usize, usize)> {
    let began = Instant::now();
    let mut last = imds_shape(node);
    let mut since = Instant::now();
    while began.elapsed() < budget {
        std::thread::sleep(Duration::from_secs(1));
        let s = imds_shape(node);
        if s != last {
            last = s;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            break;
        }
    }
    last
}

/// The sim's raw call log entries signed with `key` since `seq` (with `seconds`, each call's duration).
fn calls_of(sim: &VpcSim, key: &str, since: u64) -> Vec<Value> {
    let v = sim
        .request("GET", &format!("/calls?since={since}"), None)
        .unwrap();
    v.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["access_key_id"] == key && c["service"].as_str().unwrap_or("ec2") == "ec2")
        .collect()
}

fn last_seq(sim: &VpcSim) -> u64 {
    let v = sim.request("GET", "/calls", None).unwrap();
    v.as_array()
        .and_then(|a| a.last())
        .and_then(|c| c["seq"].as_u64())
        .unwrap_or(0)
}

fn count_by_action(calls: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for c in calls {
        *m.entry(c["action"].as_str().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    m
}

/// EC2 time of calls between two wall-clock instants (sum of their durations).
fn ec2_seconds_between(calls: &[Value], from: f64, to: f64) -> (usize, f64) {
    let within: Vec<&Value> = calls
        .iter()
        .filter(|c| {
            let t = c["time"].as_f64().unwrap_or(0.0);
            t >= from && t <= to
        })
        .collect();
    (
        within.len(),
        within
            .iter()
            .map(|c| c["seconds"].as_f64().unwrap_or(0.0))
            .sum(),
    )
}

fn sizes() -> Value {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    json!({
        "ours": {"vpc-cni (ipamd + plugin, one binary)": size(Path::new(env!("CARGO_BIN_EXE_vpc-cni")))},
        "upstream": {
            "aws-k8s-agent": size(&peer("upstream", "VPC_CNI_PEER_IPAMD")),
            "aws-cni": size(&peer("upstream", "VPC_CNI_PEER_AWS_CNI")),
            "egress-cni": size(&peer("upstream", "VPC_CNI_PEER_EGRESS_CNI")),
            "aws-vpc-cni (entrypoint)": size(&peer("upstream", "VPC_CNI_PEER_AWS_VPC_CNI")),
        },
        "ptp": {
            "ptp": size(&Path::new(REFERENCE_PLUGINS).join("ptp")),
            "host-local": size(&Path::new(REFERENCE_PLUGINS).join("host-local")),
        },
        "portmap (chained by both aws conflists)": size(&Path::new(REFERENCE_PLUGINS).join("portmap")),
    })
}

/// ru_maxrss (KiB) lines GNU time appended.
fn maxrss_lines(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Concurrent ADDs: `k` clients started first, then one ADD each at once. Returns (wall µs, per-ADD µs, pods).
fn burst(side: &Side, tag: &str, k: usize) -> (u64, Vec<u64>, Vec<Pod>) {
    let pods: Vec<Pod> = (0..k).map(|i| Pod::new(tag, i)).collect();
    let clients: Vec<Client> = (0..k)
        .map(|i| side.client(&format!("{tag}{i}"), None))
        .collect();
    let barrier = Arc::new(Barrier::new(k + 1));
    let jobs: Vec<_> = clients
        .into_iter()
        .zip(
            pods.iter()
                .map(|p| (p.id.clone(), p.ns.path(), p.name.clone())),
        )
        .map(|(mut c, (id, path, name))| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                let a = c.call("add", &id, &path, &name);
                (a, Instant::now())
            })
        })
        .collect();
    barrier.wait();
    let began = Instant::now();
    let mut micros = Vec::new();
    let mut end = began;
    for j in jobs {
        let (a, at) = j.join().unwrap();
        micros.push(ok(&a, &format!("{} burst ADD", side.label)));
        end = end.max(at);
    }
    let wall = u64::try_from(end.duration_since(began).as_micros()).unwrap_or(u64::MAX);
    (wall, micros, pods)
}

fn del_all(c: &mut Client, pods: Vec<Pod>, label: &str) -> Vec<u64> {
    pods.into_iter()
        .map(|p| {
            ok(
                &c.call("del", &p.id, &p.ns.path(), &p.name),
                &format!("{label} DEL"),
            )
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------------------
// Part 1: one node per plugin, large enough for 250 pods: latency, bursts, footprint.

#[test]
#[ignore = "benchmark: bench/side-by-side"]
fn bench_plugins() {
    let n = knob("BENCH_N", 200);
    let bursts = knob_list("BENCH_BURSTS", "30,100");
    let pods_at = knob_list("BENCH_PODS", "100,250");
    let mut sim = VpcSim::start("bsbs");
    // m5.16xlarge: 15 ENIs x 49 secondary addresses, kubelet's max pods 250 (> 30 vCPUs).
    let node_ours = sim.launch_node("m5.16xlarge");
    let node_up = sim.launch_node("m5.16xlarge");
    // A warm pool that holds the largest burst, so no ADD of this part waits for EC2; released addresses are
    // reusable at once, so sequential churn never runs the pool dry.
    let warm = bursts
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(10)
        .to_string();
    let settings = [
        ("WARM_IP_TARGET", warm.as_str()),
        ("IP_COOLDOWN_PERIOD", "0"),
        ("AWS_VPC_K8S_CNI_LOGLEVEL", "INFO"),
    ];
    let ours = Ipamd::start(&node_ours, &settings);
    let mut up = Upstream::prepare(&sim, &node_up, 250);
    up.start(&sim, &settings);
    let work = TempDir::new("benchptp");
    let ptp_node = TestNs::new("bptp");
    let sides = [ours_side(&ours), up.side(), ptp_side(&work.0, &ptp_node)];
    // Both pools full before the first ADD.
    let want_free = warm.parse::<usize>().unwrap();
    for node in [&node_ours, &node_up] {
        let began = Instant::now();
        while imds_shape(node).iter().map(|s| s.1).sum::<usize>() < want_free
            && began.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    settle(&node_ours, Duration::from_secs(5), Duration::from_secs(60));
    settle(&node_up, Duration::from_secs(5), Duration::from_secs(60));
    let idle = json!({"ours": proc_status(ours_pid(&ours)), "upstream": proc_status(up.pid())});
    let mut result = json!({"n": n, "warm_ip_target": want_free, "idle": idle, "sizes": sizes()});

    // Sequential ADD and DEL, interleaved: pod i through ours, then upstream, then ptp.
    let mut clients: Vec<Client> = sides.iter().map(|s| s.client("seq", None)).collect();
    let mut lat: Vec<(Vec<u64>, Vec<u64>)> = vec![(vec![], vec![]); 3];
    for i in 0..n {
        for (k, side) in sides.iter().enumerate() {
            let pod = Pod::new(&format!("s{k}"), i);
            let a = clients[k].call("add", &pod.id, &pod.ns.path(), &pod.name);
            lat[k].0.push(ok(&a, &format!("{} ADD {i}", side.label)));
            let d = clients[k].call("del", &pod.id, &pod.ns.path(), &pod.name);
            lat[k].1.push(ok(&d, &format!("{} DEL {i}", side.label)));
        }
    }
    result["sequential"] = json!(sides
        .iter()
        .zip(&lat)
        .map(|(s, (a, d))| (s.label.to_string(), json!({"add_us": a, "del_us": d})))
        .collect::<BTreeMap<_, _>>());

    // Profile of our ADD: the same sequence with our plugin alone (no chained portmap), then a few ADDs of our
    // plugin under `strace -f -ttt -T` (one trace file per process, read by the report).
    let n_prof = knob("BENCH_PROFILE", 50);
    let alone = {
        let mut s = sides[0].clone();
        let mut conf: Value = serde_json::from_slice(&std::fs::read(&s.conflist).unwrap()).unwrap();
        let plugins = conf["plugins"].as_array().unwrap().clone();
        conf["plugins"] = json!(plugins
            .into_iter()
            .filter(|p| p["type"] == "aws-cni")
            .collect::<Vec<_>>());
        s.conflist = s.work.join("aws-cni-alone.conflist");
        std::fs::write(&s.conflist, conf.to_string()).unwrap();
        s
    };
    let mut alone_client = alone.client("alone", None);
    let mut alone_lat = (vec![], vec![]);
    for i in 0..n_prof {
        let pod = Pod::new("al", i);
        alone_lat.0.push(ok(
            &alone_client.call("add", &pod.id, &pod.ns.path(), &pod.name),
            "ADD",
        ));
        alone_lat.1.push(ok(
            &alone_client.call("del", &pod.id, &pod.ns.path(), &pod.name),
            "DEL",
        ));
    }
    // The floor of any plugin call through libcni: CNI VERSION (exec, read the config, print), ours and ptp (Go).
    let mut version_us = serde_json::Map::new();
    for side in [&alone, &sides[2]] {
        let mut c = side.client("version", None);
        let mut us = vec![];
        for _ in 0..n_prof {
            let req = json!({"op": "version", "plugin": side.plugin});
            writeln!(c.stdin, "{req}").unwrap();
            c.stdin.flush().unwrap();
            us.push(ok(&c.recv(), "VERSION"));
        }
        version_us.insert(side.label.to_string(), json!(us));
    }
    // DEL once the runtime has removed the namespace (the pair went with it): what our DEL costs without the veth.
    let mut gone_del = vec![];
    for i in 0..n_prof {
        let pod = Pod::new("ag", i);
        ok(
            &alone_client.call("add", &pod.id, &pod.ns.path(), &pod.name),
            "ADD",
        );
        let (path, id, name) = (pod.ns.path(), pod.id.clone(), pod.name.clone());
        drop(pod);
        gone_del.push(ok(
            &alone_client.call("del", &id, &path, &name),
            "DEL without netns",
        ));
    }
    drop(alone_client);
    let trace_dir = PathBuf::from(std::env::var("BENCH_OUT").unwrap()).join("strace");
    let _ = std::fs::remove_dir_all(&trace_dir);
    std::fs::create_dir_all(&trace_dir).unwrap();
    let mut traced = Vec::new();
    for (label, side) in [("aws-cni", &alone)] {
        let prefix = trace_dir.join(label).display().to_string();
        let mut c = side.client(
            &format!("strace-{label}"),
            Some(&["strace", "-f", "-ttt", "-T", "-yy", "-ff", "-o", &prefix]),
        );
        let mut us = vec![];
        for i in 0..10 {
            let pod = Pod::new(&format!("st{label}"), i);
            us.push(ok(
                &c.call("add", &pod.id, &pod.ns.path(), &pod.name),
                "traced ADD",
            ));
            ok(
                &c.call("del", &pod.id, &pod.ns.path(), &pod.name),
                "traced DEL",
            );
        }
        traced.push(json!({"conflist": label, "add_us": us}));
    }
    result["profile"] = json!({"alone_add_us": alone_lat.0, "alone_del_us": alone_lat.1,
                               "alone_del_netns_gone_us": gone_del, "version_us": version_us,
                               "traced": traced});

    // Bursts into one node, all three plugins; the largest burst's pods stay for the footprint.
    let mut held: Vec<Vec<Pod>> = vec![vec![], vec![], vec![]];
    let mut burst_out = serde_json::Map::new();
    for (bi, &k) in bursts.iter().enumerate() {
        let mut per = serde_json::Map::new();
        for (si, side) in sides.iter().enumerate() {
            let (wall, micros, pods) = burst(side, &format!("b{bi}{si}"), k);
            per.insert(
                side.label.to_string(),
                json!({"wall_us": wall, "add_us": micros}),
            );
            if bi + 1 == bursts.len() {
                held[si] = pods;
            } else {
                del_all(&mut clients[si], pods, side.label);
            }
        }
        burst_out.insert(k.to_string(), Value::Object(per));
    }
    result["bursts"] = Value::Object(burst_out);

    // Footprint with pods: up to each count, the plugin's ADDs under GNU time (peak RSS per ADD).
    let mut rss_clients: Vec<(Client, PathBuf)> = sides
        .iter()
        .map(|s| {
            let log = s.work.join("maxrss.log");
            let log_s = log.display().to_string();
            (
                s.client(
                    "rss",
                    Some(&["/usr/bin/time", "-a", "-o", &log_s, "-f", "%M"]),
                ),
                log,
            )
        })
        .collect();
    let mut footprint = serde_json::Map::new();
    let mut plugin_rss = serde_json::Map::new();
    for &target in &pods_at {
        for (si, side) in sides.iter().enumerate().take(2) {
            while held[si].len() < target {
                let pod = Pod::new(&format!("f{si}"), held[si].len());
                add_retrying(&mut rss_clients[si].0, &pod, Duration::from_secs(60));
                held[si].push(pod);
            }
            let _ = side;
        }
        std::thread::sleep(Duration::from_secs(3));
        footprint.insert(
            target.to_string(),
            json!({"ours": proc_status(ours_pid(&ours)), "upstream": proc_status(up.pid())}),
        );
    }
    // ptp's plugin RSS over as many ADDs as ours had under the wrapper.
    let wrapped = pods_at
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .saturating_sub(held[2].len());
    for i in 0..wrapped.min(100) {
        let pod = Pod::new("f2", i);
        add_retrying(&mut rss_clients[2].0, &pod, Duration::from_secs(10));
        held[2].push(pod);
    }
    for (side, (_, log)) in sides.iter().zip(&rss_clients) {
        plugin_rss.insert(side.label.to_string(), json!(maxrss_lines(log)));
    }
    result["footprint"] = Value::Object(footprint);
    result["plugin_maxrss_kib"] = Value::Object(plugin_rss);
    result["peak"] =
        json!({"ours": proc_status(ours_pid(&ours)), "upstream": proc_status(up.pid())});
    for (si, side) in sides.iter().enumerate() {
        let pods = std::mem::take(&mut held[si]);
        del_all(&mut clients[si], pods, side.label);
    }
    drop(rss_clients);
    drop(clients);
    write_part("plugins", &result);
    drop(ours);
    up.stop();
    drop(up);
    sim.stop().unwrap();
}

// ------------------------------------------------------------------------------------------------------------
// Part 2: EC2 calls per warm mode, 0 -> N -> 0 pods, and churn inside the warm pool; start-up to ready.

fn mode_settings(mode: &str) -> Vec<(&'static str, &'static str)> {
    let mut s = vec![("IP_COOLDOWN_PERIOD", "0")];
    match mode {
        "warm_ip" => s.extend([("WARM_IP_TARGET", "5"), ("MINIMUM_IP_TARGET", "10")]),
        "pd" => s.extend([
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("WARM_PREFIX_TARGET", "1"),
        ]),
        _ => s.push(("WARM_ENI_TARGET", "1")),
    }
    s
}

fn shape_json(s: &[(u32, usize, usize)]) -> Value {
    json!(s
        .iter()
        .map(|(d, a, p)| json!({"device": d, "addresses": a, "prefixes": p}))
        .collect::<Vec<_>>())
}

/// Seconds from `started` (unix time of the daemon's spawn) to the first pod served: upstream serves its socket
/// before its pool is filled, and ADDs refused meanwhile are retried every 200 ms, as kubelet retries.
fn first_pod(side: &Side, started: f64) -> f64 {
    let mut c = side.client("first", None);
    let pod = Pod::new(&format!("{}first", side.label), 0);
    add_retrying(&mut c, &pod, Duration::from_secs(120));
    let s = unix_now() - started;
    ok(&c.call("del", &pod.id, &pod.ns.path(), &pod.name), "DEL");
    s
}

/// One daemon through one mode: start-up, settle, churn (default mode only), 0 -> pods -> 0, settle.
/// What one mode run does: pods to add, churn before (0: none), how long "settled" is, where the count starts.
#[derive(Clone, Copy)]
struct ModeRun {
    pods: usize,
    churn: usize,
    quiet: Duration,
    seq0: u64,
}

fn run_mode(sim: &VpcSim, node: &Node, side: &Side, key: &str, run: ModeRun) -> Value {
    let ModeRun {
        pods,
        churn,
        quiet,
        seq0,
    } = run;
    let mut c = side.client("mode", None);
    let idle = settle(node, Duration::from_secs(8), Duration::from_secs(90));
    let mut out = json!({});
    if churn > 0 {
        // One pod stays through the churn: with WARM_ENI_TARGET=1 the first pod on an idle node already needs a
        // second ENI (the primary is no longer wholly free), so the pool is settled for it before counting.
        let anchor = Pod::new(&format!("{}anchor", side.label), 0);
        add_retrying(&mut c, &anchor, Duration::from_secs(60));
        let anchored = settle(node, Duration::from_secs(10), Duration::from_secs(120));
        let seq = last_seq(sim);
        let began = Instant::now();
        for i in 0..churn {
            let pod = Pod::new(&format!("{}ch", side.label), i);
            ok(
                &c.call("add", &pod.id, &pod.ns.path(), &pod.name),
                "churn ADD",
            );
            ok(
                &c.call("del", &pod.id, &pod.ns.path(), &pod.name),
                "churn DEL",
            );
        }
        let seconds = began.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(8));
        let calls = calls_of(sim, key, seq);
        out["churn"] = json!({"pods": churn, "seconds": seconds, "calls": count_by_action(&calls),
                              "shape_before": shape_json(&anchored),
                              "shape_after": shape_json(&imds_shape(node))});
        ok(
            &c.call("del", &anchor.id, &anchor.ns.path(), &anchor.name),
            "DEL",
        );
    }
    let mut held = Vec::new();
    for i in 0..pods {
        let pod = Pod::new(&format!("{}m", side.label), i);
        add_retrying(&mut c, &pod, Duration::from_secs(120));
        held.push(pod);
    }
    let busy = settle(node, Duration::from_secs(8), Duration::from_secs(120));
    del_all(&mut c, held, side.label);
    let after = settle(node, quiet, Duration::from_secs(400));
    // The 0 -> pods -> 0 count leaves out the churn's calls (reported on their own).
    let mut calls = count_by_action(&calls_of(sim, key, seq0));
    if let Some(churned) = out["churn"]["calls"].as_object() {
        for (k, v) in churned {
            if let Some(n) = calls.get_mut(k) {
                *n -= usize::try_from(v.as_u64().unwrap_or(0)).unwrap_or(0);
            }
        }
        calls.retain(|_, n| *n > 0);
    }
    out["idle"] = shape_json(&idle);
    out["busy"] = shape_json(&busy);
    out["after"] = shape_json(&after);
    out["calls"] = json!(calls);
    out
}

#[test]
#[ignore = "benchmark: bench/side-by-side"]
fn bench_modes() {
    let pods = knob("BENCH_MODE_PODS", 110);
    let churn = knob("BENCH_CHURN", 1000);
    let quiet = Duration::from_secs(knob("BENCH_QUIET", 70) as u64);
    let mut all = serde_json::Map::new();
    // One sim per mode, the modes one after another (a sim per mode keeps each mode's calls apart; ours and
    // upstream sign with different keys).
    for mode in ["warm_eni", "warm_ip", "pd"] {
        let mut sim = VpcSim::start("bsbm");
        // m5.4xlarge: 8 ENIs x 29 secondary addresses, kubelet's max pods 110.
        let n_ours = sim.launch_node("m5.4xlarge");
        let n_up = sim.launch_node("m5.4xlarge");
        let settings = mode_settings(mode);
        let mut up = Upstream::prepare(&sim, &n_up, 110);
        let key_ours = sim.access_key_id().to_string();
        let key_up = up.key.clone();
        // moto answers its first DescribeNetworkInterfaces slowly (lazy set-up): one call before either daemon
        // starts, so neither pays for it; the counts start after it.
        {
            use vpc_cni::aws::ec2::{DescribeNetworkInterfaces, Ec2};
            let _ = ipamd_node::ec2(&sim)
                .describe_network_interfaces(&DescribeNetworkInterfaces::default());
        }
        let seq0 = last_seq(&sim);
        // Start-up, ours then upstream (one at a time, so each has the machine).
        let mut ours_settings = settings.clone();
        ours_settings.push(("AWS_VPC_K8S_CNI_LOGLEVEL", "INFO"));
        let t_ours = unix_now();
        let began = Instant::now();
        let ours = Ipamd::start(&n_ours, &ours_settings);
        let ours_ready = began.elapsed();
        let ours_first = first_pod(&ours_side(&ours), t_ours);
        let ready_line = ours
            .log()
            .lines()
            .find(|l| l.contains("ready in"))
            .unwrap_or_default()
            .to_string();
        let t_up = unix_now();
        let up_ready = up.start(&sim, &settings);
        let up_ready_at = t_up + up_ready.as_secs_f64();
        let up_first = first_pod(&up.side(), t_up);
        let (n_calls, ec2_s) =
            ec2_seconds_between(&calls_of(&sim, &key_up, seq0), t_up, up_ready_at);
        let (n_calls_ours, ec2_s_ours) = ec2_seconds_between(
            &calls_of(&sim, &key_ours, seq0),
            t_ours,
            t_ours + ours_ready.as_secs_f64(),
        );
        let startup = json!({
            "ours": {"wall_s": ours_ready.as_secs_f64(), "log": ready_line, "ec2_calls": n_calls_ours,
                     "ec2_s": ec2_s_ours, "first_pod_s": ours_first},
            "upstream": {"wall_s": up_ready.as_secs_f64(), "ec2_calls": n_calls, "ec2_s": ec2_s,
                         "first_pod_s": up_first},
        });
        let side_ours = ours_side(&ours);
        let side_up = up.side();
        let churn_here = if mode == "warm_eni" { churn } else { 0 };
        let run = ModeRun {
            pods,
            churn: churn_here,
            quiet,
            seq0,
        };
        let (r_ours, r_up) = std::thread::scope(|s| {
            let sim = &sim;
            let a = s.spawn(|| run_mode(sim, &n_ours, &side_ours, &key_ours, run));
            let b = s.spawn(|| run_mode(sim, &n_up, &side_up, &key_up, run));
            (a.join().unwrap(), b.join().unwrap())
        });
        let log_tail: Vec<String> = ours
            .log()
            .lines()
            .filter(|l| l.contains("ENI") || l.contains("eni-"))
            .map(str::to_string)
            .collect();
        all.insert(
            mode.to_string(),
            json!({"settings": settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                   "pods": pods, "startup": startup, "ours": r_ours, "upstream": r_up,
                   "ours_log_eni_lines": log_tail[log_tail.len().saturating_sub(40)..]}),
        );
        write_part("modes", &Value::Object(all.clone()));
        drop(ours);
        up.stop();
        drop(up);
        sim.stop().unwrap();
    }
}

// ------------------------------------------------------------------------------------------------------------
// Part 3: what a DEL can do with the veth pair, measured on the kernel.

#[test]
#[ignore = "benchmark: bench/side-by-side"]
fn bench_veth_teardown() {
    use vpc_cni::netlink::{Netlink, Netns, VethSpec};
    let runs = knob("BENCH_VETH", 200);
    let host = TestNs::new("bvh");
    let host_ns = Netns::open(host.path()).unwrap();
    let mut host_nl = Netlink::open_in(&host_ns).unwrap();
    let mut out = serde_json::Map::new();
    for choice in ["host_side", "pod_side", "netns_teardown"] {
        let mut call_us = Vec::new();
        let mut gone_us = Vec::new();
        for i in 0..runs {
            let pod = TestNs::new("bvp");
            let pod_ns = Netns::open(pod.path()).unwrap();
            let mut pod_nl = Netlink::open_in(&pod_ns).unwrap();
            let host_name = format!("enib{i}");
            pod_nl
                .add_veth(&VethSpec {
                    name: "eth0",
                    peer_name: &host_name,
                    mtu: Some(9001),
                    mac: None,
                    peer_mac: None,
                    peer_netns: Some(&host_ns),
                    tx_queue_len: Some(0),
                })
                .unwrap();
            let began = Instant::now();
            match choice {
                "host_side" => {
                    host_nl.delete_link_by_name(&host_name).unwrap();
                }
                "pod_side" => {
                    pod_nl.delete_link_by_name("eth0").unwrap();
                }
                _ => {
                    drop(pod_nl);
                    drop(pod_ns);
                    drop(pod);
                    call_us.push(u64::try_from(began.elapsed().as_micros()).unwrap_or(0));
                    while host_nl.link_by_name(&host_name).unwrap().is_some() {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    gone_us.push(u64::try_from(began.elapsed().as_micros()).unwrap_or(0));
                    continue;
                }
            }
            call_us.push(u64::try_from(began.elapsed().as_micros()).unwrap_or(0));
        }
        out.insert(
            choice.to_string(),
            json!({"call_us": call_us, "host_link_gone_us": gone_us}),
        );
    }
    write_part("veth", &Value::Object(out));
}
