//! ipamd's HTTP side: the blocking server (TCP and unix socket), the introspection and metrics
//! routers over a populated datastore, probes, limits, overload and shutdown. All traffic is on
//! loopback or on a unix socket in a temporary directory.

// Test crate: helpers outside #[test] fns may unwrap too (a panic is a test failure).
#![allow(clippy::unwrap_used)]

#[path = "support/tempdir.rs"]
mod tempdir;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use vpc_cni::aws::stats::ApiStats;
use vpc_cni::config::{BindAddress, Config};
use vpc_cni::ipam::{
    AssignRequest, Datastore, DatastoreConfig, EniSpec, Instant, IpamKey, PodMetadata,
};
use vpc_cni::ipamd::http::{Handler, HttpHandle, HttpServer, Request, Response, ServerOptions};
use vpc_cni::ipamd::introspection::{self, IntrospectionView, ReadinessFlag};
use vpc_cni::ipamd::metrics::{self, MetricCounters, MetricsInput, StartupDuration};

use tempdir::TempDir;

const T0: Instant = Instant::from_secs(100);
const NOW: Instant = Instant::from_secs(110);
const NOW_UNIX_NANOS: i64 = 1_700_000_010_000_000_000;

fn req(c: &str) -> AssignRequest {
    AssignRequest {
        key: IpamKey::new("aws-cni", c, "eth0"),
        metadata: PodMetadata {
            namespace: "default".into(),
            name: format!("pod-{}", c.rsplit('-').next().unwrap()),
            interfaces_count: 1,
        },
        unix_nanos: 1_700_000_000_000_000_000,
    }
}

fn eni(id: &str, dev: u32) -> EniSpec {
    EniSpec {
        id: id.into(),
        device_number: dev,
        is_primary: dev == 0,
        ..EniSpec::default()
    }
}

/// Two ENIs with two secondary addresses each; three pods assigned, one of them released again
/// (cooling down): 4 total, 2 assigned, eni-a holding both (10.0.1.7 and 10.0.1.9).
fn datastore() -> Datastore {
    let mut ds = Datastore::new(DatastoreConfig::default());
    ds.add_eni(eni("eni-a", 0), T0).unwrap();
    ds.add_eni(eni("eni-b", 1), T0).unwrap();
    ds.add_ipv4_addresses(
        "eni-a",
        &["10.0.1.9".parse().unwrap(), "10.0.1.7".parse().unwrap()],
    )
    .unwrap();
    ds.add_ipv4_addresses(
        "eni-b",
        &["10.0.2.4".parse().unwrap(), "10.0.2.5".parse().unwrap()],
    )
    .unwrap();
    for c in ["cid-secret-1", "cid-secret-2", "cid-secret-3"] {
        ds.assign(req(c), T0).unwrap();
    }
    // The third got 10.0.2.4; release it.
    ds.unassign(
        &IpamKey::new("aws-cni", "cid-secret-3", "eth0"),
        T0 + Duration::from_secs(5),
    );
    ds
}

fn config() -> Config {
    Config::from_env(|n| match n {
        "WARM_IP_TARGET" => Some("5".into()),
        "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS" => Some("10.9.0.0/16,192.168.0.0/24".into()),
        "AWS_VPC_K8S_CNI_RANDOMIZESNAT" => Some("none".into()),
        "AWS_VPC_ENI_MTU" => Some("1500".into()),
        _ => None,
    })
    .unwrap()
    .0
}

struct Daemon {
    ds: Arc<Mutex<Datastore>>,
    config: Arc<Config>,
    ready: Arc<ReadinessFlag>,
    counters: Arc<MetricCounters>,
    api: Arc<ApiStats>,
}

fn daemon() -> Daemon {
    let api = ApiStats::new();
    api.record("DescribeInstances", Duration::from_millis(12), 200, None);
    api.record(
        "AssignPrivateIpAddresses",
        Duration::from_millis(30),
        503,
        Some("RequestLimitExceeded"),
    );
    api.record(
        "AssignPrivateIpAddresses",
        Duration::from_millis(10),
        200,
        None,
    );
    let counters = MetricCounters::new();
    for _ in 0..3 {
        counters.add_ip_request();
    }
    counters.del_ip_request("PodDeleted");
    counters.del_ip_request("odd \"reason\" \\ with\nnewline");
    counters.reconcile("eniIPPoolReconcile");
    counters.reconcile("eniIPPoolReconcile");
    Daemon {
        ds: Arc::new(Mutex::new(datastore())),
        config: Arc::new(config()),
        ready: ReadinessFlag::new("starting: ENIs not discovered yet"),
        counters: Arc::new(counters),
        api: Arc::new(api),
    }
}

fn introspection_handler(d: &Daemon) -> Handler {
    let (ds, config, ready) = (d.ds.clone(), d.config.clone(), d.ready.clone());
    Arc::new(move |r: &Request| {
        introspection::route(r, &ready.get(), || IntrospectionView {
            datastore: ds.lock().unwrap().clone(),
            now: NOW,
            now_unix_nanos: NOW_UNIX_NANOS,
            config: config.clone(),
        })
    })
}

fn metrics_handler(d: &Daemon) -> Handler {
    let (ds, ready, counters, api) = (
        d.ds.clone(),
        d.ready.clone(),
        d.counters.clone(),
        d.api.clone(),
    );
    Arc::new(move |r: &Request| {
        introspection::metrics_route(r, &ready.get(), || {
            let mut m = MetricsInput {
                eni_max: 3,
                ip_max: 30,
                aws_api: api.snapshot(),
                startup: Some(StartupDuration {
                    seconds: 3.0,
                    success: true,
                    with_api_server: false,
                    failure_reason: String::new(),
                }),
                ..MetricsInput::default()
            };
            m.set_pool(&ds.lock().unwrap(), NOW);
            counters.fill(&mut m);
            metrics::render(&m)
        })
    })
}

fn local() -> BindAddress {
    BindAddress::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
}

fn quick() -> ServerOptions {
    ServerOptions {
        header_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_secs(2),
        ..ServerOptions::default()
    }
}

fn serve(addr: &BindAddress, opts: ServerOptions, h: Handler) -> HttpHandle {
    HttpServer::bind_with(addr, opts).unwrap().serve(h).unwrap()
}

fn tcp_addr(h: &HttpHandle) -> SocketAddr {
    match h.local_addr() {
        BindAddress::Tcp(a) => *a,
        BindAddress::Unix(p) => panic!("expected TCP, got {}", p.display()),
    }
}

/// A parsed answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), Some("application/json"));
        serde_json::from_str(&self.body).unwrap()
    }
}

fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a complete response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    let a = Answer {
        status,
        headers,
        body: body.to_string(),
    };
    let len: usize = a.header("content-length").unwrap().parse().unwrap();
    assert_eq!(a.header("connection"), Some("close"));
    if len != a.body.len() {
        assert_eq!(a.body.len(), 0, "body shorter than Content-Length");
    }
    a
}

fn exchange<S: Read + Write>(mut s: S, request: &[u8]) -> Answer {
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_answer(&raw)
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    exchange(
        tcp(addr),
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

#[test]
fn introspection_paths_over_tcp() {
    let d = daemon();
    let h = serve(&local(), quick(), introspection_handler(&d));
    let addr = tcp_addr(&h);

    let root = get(addr, "/");
    assert_eq!(root.status, 200);
    assert_eq!(
        root.json(),
        serde_json::json!({"AvailableCommands": [
            "/v1/enis", "/v1/eni-configs", "/v1/networkutils-env-settings", "/v1/ipamd-env-settings"
        ]})
    );

    let enis = get(addr, "/v1/enis");
    assert_eq!(enis.status, 200);
    let v = enis.json();
    assert_eq!(v["TotalIPs"], 4);
    assert_eq!(v["AssignedIPs"], 2);
    let ids: Vec<&String> = v["ENIs"].as_object().unwrap().keys().collect();
    assert_eq!(ids, ["eni-a", "eni-b"]);
    let a = &v["ENIs"]["eni-a"];
    assert_eq!(a["IsPrimary"], true);
    let addr7 = &a["AvailableIPv4Cidrs"]["10.0.1.7/32"]["IPAddresses"]["10.0.1.7"];
    assert_eq!(addr7["IPAMMetadata"]["k8sPodName"], "pod-1");
    assert_eq!(addr7["IPAMKey"]["containerID"], "");
    // The released address is listed with its release time, the pod's container ids nowhere.
    let released =
        &v["ENIs"]["eni-b"]["AvailableIPv4Cidrs"]["10.0.2.4/32"]["IPAddresses"]["10.0.2.4"];
    assert_eq!(released["UnassignedTime"], "2023-11-14T22:13:25Z");
    assert!(!enis.body.contains("cid-secret"), "{}", enis.body);

    let ec = get(addr, "/v1/eni-configs");
    assert_eq!(ec.status, 200);
    assert_eq!(
        ec.json(),
        serde_json::json!({
            "ENI": {}, "MyENI": "default",
            "EniConfigAnnotationDef": "k8s.amazonaws.com/eniConfig",
            "EniConfigLabelDef": "k8s.amazonaws.com/eniConfig"
        })
    );
    // Go's struct field order.
    assert!(ec.body.starts_with("{\"ENI\":{},\"MyENI\":"), "{}", ec.body);

    let nu = get(addr, "/v1/networkutils-env-settings");
    assert_eq!(
        nu.json(),
        serde_json::json!({
            "AWS_VPC_K8S_CNI_CONNMARK": 128,
            "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS": ["10.9.0.0/16", "192.168.0.0/24"],
            "AWS_VPC_K8S_CNI_EXTERNALSNAT": false,
            "AWS_EXTERNAL_SERVICE_CIDRS": null,
            "AWS_VPC_ENI_MTU": 1500,
            "AWS_VPC_K8S_CNI_VETHPREFIX": "eni",
            "AWS_VPC_CNI_NODE_PORT_SUPPORT": true,
            "AWS_VPC_K8S_CNI_RANDOMIZESNAT": 0
        })
    );
    let ipamd = get(addr, "/v1/ipamd-env-settings");
    assert_eq!(
        ipamd.json(),
        serde_json::json!({
            "WARM_IP_TARGET": 5, "WARM_ENI_TARGET": 1, "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG": false
        })
    );

    let unknown = get(addr, "/v1/pods");
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("AvailableCommands"));
    h.shutdown();
}

#[test]
fn probes_follow_readiness_on_both_ports() {
    let d = daemon();
    let intro = serve(&local(), quick(), introspection_handler(&d));
    let met = serve(&local(), quick(), metrics_handler(&d));
    for addr in [tcp_addr(&intro), tcp_addr(&met)] {
        let h = get(addr, "/healthz");
        assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
        let r = get(addr, "/readyz");
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "not ready: starting: ENIs not discovered yet\n");
    }
    d.ready.set_ready();
    for addr in [tcp_addr(&intro), tcp_addr(&met)] {
        let r = get(addr, "/readyz");
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    }
    d.ready.set_not_ready("datastore lost");
    assert_eq!(
        get(tcp_addr(&met), "/readyz").body,
        "not ready: datastore lost\n"
    );
    assert_eq!(get(tcp_addr(&met), "/").status, 404);
    assert_eq!(get(tcp_addr(&met), "/v1/enis").status, 404);
}

#[test]
fn methods_limits_and_malformed_requests() {
    let d = daemon();
    let h = serve(&local(), quick(), introspection_handler(&d));
    let addr = tcp_addr(&h);

    let post = exchange(
        tcp(addr),
        b"POST /v1/enis HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    let head = exchange(tcp(addr), b"HEAD /v1/enis HTTP/1.1\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let full = get(addr, "/v1/enis");
    assert_eq!(
        head.header("content-length").unwrap(),
        full.body.len().to_string()
    );

    assert_eq!(exchange(tcp(addr), b"garbage\r\n\r\n").status, 400);
    assert_eq!(exchange(tcp(addr), b"GET / HTTP/2.0\r\n\r\n").status, 505);

    // A head over 8 KiB: 431, whether it ends or not.
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let mut s = tcp(addr);
    let _ = s.write_all(big.as_bytes());
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => assert_eq!(parse_answer(&raw).status, 431),
        // The server may close before reading everything we sent: a reset is a refusal too.
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
    }
    // A head just under the limit is served.
    let ok = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(8000));
    assert_eq!(exchange(tcp(addr), ok.as_bytes()).status, 200);

    // A handler panic is a 500 and the worker keeps serving.
    let boom: Handler = Arc::new(|r: &Request| {
        if r.path == "/boom" {
            panic!("handler bug");
        }
        Response::text(200, "fine\n")
    });
    let h2 = serve(
        &local(),
        ServerOptions {
            workers: 1,
            ..quick()
        },
        boom,
    );
    assert_eq!(get(tcp_addr(&h2), "/boom").status, 500);
    assert_eq!(get(tcp_addr(&h2), "/").body, "fine\n");
}

fn metric_lines(body: &str) -> Vec<&str> {
    body.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn metrics_show_the_datastore_counters_and_aws_calls() {
    let d = daemon();
    let h = serve(&local(), quick(), metrics_handler(&d));
    let m = get(tcp_addr(&h), "/metrics");
    assert_eq!(m.status, 200);
    assert_eq!(
        m.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let lines = metric_lines(&m.body);
    for want in [
        "awscni_eni_max 3",
        "awscni_ip_max 30",
        "awscni_eni_allocated 2",
        "awscni_total_ip_addresses 4",
        "awscni_assigned_ip_addresses 2",
        "awscni_total_ipv4_prefixes 0",
        "awscni_add_ip_req_count 3",
        "awscni_no_available_ip_addresses 0",
        "awscni_force_removed_enis 0",
        "awscni_force_removed_ips 0",
        r#"awscni_assigned_ip_per_eni{eni="eni-a"} 2"#,
        r#"awscni_assigned_ip_per_eni{eni="eni-b"} 0"#,
        r#"awscni_assigned_ip_per_cidr{cidr="10.0.1.7/32"} 1"#,
        r#"awscni_assigned_ip_per_cidr{cidr="10.0.2.4/32"} 0"#,
        r#"awscni_del_ip_req_count{reason="PodDeleted"} 1"#,
        r#"awscni_del_ip_req_count{reason="odd \"reason\" \\ with\nnewline"} 1"#,
        r#"awscni_reconcile_count{fn="eniIPPoolReconcile"} 2"#,
        r#"awscni_aws_api_latency_ms_sum{api="AssignPrivateIpAddresses",error="false",status="200"} 10"#,
        r#"awscni_aws_api_latency_ms_count{api="AssignPrivateIpAddresses",error="false",status="200"} 1"#,
        r#"awscni_aws_api_latency_ms_sum{api="AssignPrivateIpAddresses",error="true",status="503"} 30"#,
        r#"awscni_aws_api_latency_ms_count{api="AssignPrivateIpAddresses",error="true",status="503"} 1"#,
        r#"awscni_aws_api_error_count{api="AssignPrivateIpAddresses",error="RequestLimitExceeded"} 1"#,
        r#"awscni_ec2api_req_count{fn="AssignPrivateIpAddresses"} 2"#,
        r#"awscni_ec2api_req_count{fn="DescribeInstances"} 1"#,
        r#"awscni_ec2api_error_count{fn="AssignPrivateIpAddresses"} 1"#,
        r#"awscni_ipamd_startup_duration_seconds_bucket{failure_reason="",success="true",with_api_server="false",le="2.5"} 0"#,
        r#"awscni_ipamd_startup_duration_seconds_bucket{failure_reason="",success="true",with_api_server="false",le="5"} 1"#,
        r#"awscni_ipamd_startup_duration_seconds_bucket{failure_reason="",success="true",with_api_server="false",le="+Inf"} 1"#,
        r#"awscni_ipamd_startup_duration_seconds_sum{failure_reason="",success="true",with_api_server="false"} 3"#,
        r#"awscni_ipamd_startup_duration_seconds_count{failure_reason="",success="true",with_api_server="false"} 1"#,
    ] {
        assert!(lines.contains(&want), "missing {want:?} in\n{}", m.body);
    }
    assert!(!lines
        .iter()
        .any(|l| l.starts_with("awscni_ec2api_error_count{fn=\"DescribeInstances\"")));
    // No labelled family without samples, no quantiles.
    assert!(!m.body.contains("awscni_ipamd_error_count"));
    assert!(!m.body.contains("quantile"));
    let build = format!(
        "awscni_build_info{{goversion=\"\",revision=\"{}\",version=\"{}\"}} 1",
        vpc_cni::GIT_REV,
        vpc_cni::VERSION
    );
    assert!(lines.contains(&build.as_str()), "{}", m.body);

    // Format: every family has HELP then TYPE before its samples, families sorted by name, every
    // sample belongs to the family announced last and carries a number.
    let mut current = String::new();
    let mut names = Vec::new();
    let mut pending_help: Option<String> = None;
    for l in m.body.lines() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            pending_help = Some(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap().to_string();
            assert_eq!(pending_help.take().as_deref(), Some(name.as_str()));
            let kind = it.next().unwrap();
            assert!(["counter", "gauge", "summary", "histogram"].contains(&kind));
            names.push(name.clone());
            current = name;
        } else {
            let metric = l.split(['{', ' ']).next().unwrap();
            assert!(
                metric == current
                    || ["_sum", "_count", "_bucket"]
                        .iter()
                        .any(|s| metric == format!("{current}{s}")),
                "{l} outside its family {current}"
            );
            let value = l.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{l}");
        }
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    sorted.dedup();
    assert_eq!(names.len(), sorted.len());

    // A new assignment shows on the next scrape.
    d.ds.lock()
        .unwrap()
        .assign(req("cid-secret-4"), NOW)
        .unwrap();
    let again = get(tcp_addr(&h), "/metrics");
    assert!(metric_lines(&again.body).contains(&"awscni_assigned_ip_addresses 3"));
}

#[test]
fn in_progress_gauge_follows_the_guard() {
    let c = MetricCounters::new();
    let mut m = MetricsInput::default();
    {
        let _g = c.action_begin("increaseIPPool");
        c.fill(&mut m);
        assert_eq!(
            m.ipamd_action_inprogress,
            vec![("increaseIPPool".to_string(), 1)]
        );
    }
    c.fill(&mut m);
    assert_eq!(
        m.ipamd_action_inprogress,
        vec![("increaseIPPool".to_string(), 0)]
    );
    let text = metrics::render(&m);
    assert!(text.contains("awscni_ipamd_action_inprogress{fn=\"increaseIPPool\"} 0\n"));
}

#[test]
fn unix_socket_serves_with_mode_0660_and_is_removed_on_shutdown() {
    let dir = TempDir::new("http-unix");
    let path = dir.0.join("introspection.sock");
    // A stale socket from an earlier run (nobody listening) is replaced.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let d = daemon();
    let addr = BindAddress::Unix(path.clone());
    let h = serve(&addr, quick(), introspection_handler(&d));
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let a = exchange(
        UnixStream::connect(&path).unwrap(),
        b"GET /v1/enis HTTP/1.1\r\nHost: unix\r\n\r\n",
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["TotalIPs"], 4);

    // A second server on a live socket is refused; the first keeps serving.
    let e = HttpServer::bind(&addr).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse);
    assert!(e.to_string().contains("introspection.sock"), "{e}");
    let a = exchange(
        UnixStream::connect(&path).unwrap(),
        b"GET /healthz HTTP/1.1\r\n\r\n",
    );
    assert_eq!(a.status, 200);

    h.shutdown();
    assert!(!path.exists());

    // A regular file at the path is never removed.
    std::fs::write(&path, "not a socket").unwrap();
    let e = HttpServer::bind(&addr).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
}

#[test]
fn a_slow_client_does_not_block_others_and_is_cut_off() {
    let d = daemon();
    let h = serve(
        &local(),
        ServerOptions {
            workers: 2,
            ..quick()
        },
        introspection_handler(&d),
    );
    let addr = tcp_addr(&h);

    // Half a request head, then silence.
    let mut silent = tcp(addr);
    silent
        .write_all(b"GET /v1/enis HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Meanwhile others are served.
    for _ in 0..5 {
        assert_eq!(get(addr, "/healthz").status, 200);
    }
    // The silent one gets 408 once the head deadline passes.
    let mut raw = Vec::new();
    silent.read_to_end(&mut raw).unwrap();
    assert_eq!(parse_answer(&raw).status, 408);

    // One byte at a time, each well within any per-read timeout: the total deadline still ends it.
    let mut trickle = tcp(addr);
    trickle.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").unwrap();
    trickle.set_nonblocking(true).unwrap();
    let mut cut_off = false;
    for _ in 0..250 {
        thread::sleep(Duration::from_millis(20));
        let mut buf = [0u8; 512];
        match trickle.read(&mut buf) {
            Ok(_) => {
                cut_off = true; // an answer (408) or EOF
                break;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => {
                cut_off = true; // reset
                break;
            }
        }
        if trickle.write_all(b"a").is_err() {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "a trickling client kept a worker for 5 s");
    assert_eq!(get(addr, "/healthz").status, 200);
}

/// A handler whose `/block` requests wait until the gate opens; each tells `entered` first.
fn gated_handler(
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
    entered: mpsc::Sender<()>,
) -> Handler {
    let entered = Mutex::new(entered);
    Arc::new(move |r: &Request| {
        if r.path == "/block" {
            let _ = entered.lock().unwrap().send(());
            let (open, cv) = &*gate;
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
        }
        Response::text(200, "done\n")
    })
}

#[test]
fn more_connections_than_workers_are_refused_not_fatal() {
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let (entered_tx, entered) = mpsc::channel();
    let opts = ServerOptions {
        workers: 1,
        queue: 1,
        ..quick()
    };
    let h = serve(&local(), opts, gated_handler(gate.clone(), entered_tx));
    let addr = tcp_addr(&h);
    let send_block = || {
        let mut s = tcp(addr);
        s.write_all(b"GET /block HTTP/1.1\r\n\r\n").unwrap();
        s
    };

    // The worker is stuck in the handler, a second request waits in the queue...
    let busy = send_block();
    entered.recv_timeout(Duration::from_secs(10)).unwrap();
    let queued = send_block();
    // ...so every further connection is answered 503 at once, without waiting for a worker.
    let flood: Vec<TcpStream> = (0..8).map(|_| tcp(addr)).collect();
    for mut s in flood {
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let a = parse_answer(&raw);
        assert_eq!(a.status, 503);
        assert_eq!(a.header("retry-after"), Some("1"));
    }

    // Released, both waiting requests complete.
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for mut s in [busy, queued] {
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        assert_eq!(parse_answer(&raw).body, "done\n");
    }
    assert_eq!(get(addr, "/").status, 200);

    // Many clients at once: each is answered 200 or 503, none hangs, the server survives.
    let clients: Vec<_> = (0..16)
        .map(|_| thread::spawn(move || get(addr, "/").status))
        .collect();
    for c in clients {
        let s = c.join().unwrap();
        assert!(s == 200 || s == 503, "{s}");
    }
    assert_eq!(get(addr, "/").status, 200);
}

#[test]
fn shutdown_releases_the_port_and_waits_for_requests_in_progress() {
    let d = daemon();
    let h = serve(&local(), quick(), introspection_handler(&d));
    let addr = tcp_addr(&h);
    assert_eq!(get(addr, "/healthz").status, 200);
    // A client in the middle of its request head when shutdown starts.
    let mut pending = tcp(addr);
    pending.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    thread::sleep(Duration::from_millis(50));
    h.shutdown();
    // It got an answer or a close, not a hang.
    let mut raw = Vec::new();
    let _ = pending.read_to_end(&mut raw);
    if !raw.is_empty() {
        assert_eq!(parse_answer(&raw).status, 408);
    }
    assert_eq!(
        TcpStream::connect(addr).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    drop(TcpListener::bind(addr).expect("the port is free again"));

    // Dropping the handle stops the server too.
    let h = serve(&local(), quick(), introspection_handler(&d));
    let addr = tcp_addr(&h);
    drop(h);
    drop(TcpListener::bind(addr).expect("the port is free after drop"));
}

#[test]
fn bind_errors_name_the_address() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = BindAddress::Tcp(taken.local_addr().unwrap());
    let e = HttpServer::bind(&addr).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse);
    assert!(e.to_string().contains(&addr.display()), "{e}");
}

#[test]
fn metrics_listen_on_all_interfaces_port_61678_by_default() {
    assert_eq!(metrics::metrics_bind_address().display(), "[::]:61678");
}

/// `:port` (the metrics' `:61678`, an `INTROSPECTION_BIND_ADDRESS` of `:port`) answers on IPv4 and on
/// IPv6, as Go's `:port` does. Whether the socket is dual-stack also when `net.ipv6.bindv6only=1` is
/// checked end to end (tests/e2e_permissions.rs), where a namespace of the test's own can set it.
#[test]
fn a_port_alone_serves_ipv4_and_ipv6() {
    let d = daemon();
    let addr = vpc_cni::config::parse_bind_address(":0").unwrap();
    let h = serve(&addr, quick(), metrics_handler(&d));
    let port = tcp_addr(&h).port();
    assert_eq!(
        get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "/metrics").status,
        200
    );
    // A kernel without IPv6 has no [::1]; the listener is IPv4 alone there, and the line above is all.
    if TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok() {
        assert_eq!(tcp_addr(&h).ip(), Ipv6Addr::UNSPECIFIED);
        assert_eq!(
            get(SocketAddr::from((Ipv6Addr::LOCALHOST, port)), "/metrics").status,
            200
        );
    } else {
        eprintln!("no IPv6 loopback here: checked IPv4 only");
    }
}

const EMFILE_CHILD: &str = "VCNI_HTTP_EMFILE_CHILD";

/// Runs [`emfile_child`] in a child process: it lowers the file-descriptor limit, which would
/// disturb the other tests of this process.
#[test]
fn accept_survives_running_out_of_file_descriptors() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "emfile_child", "--nocapture", "--test-threads=1"])
        .env(EMFILE_CHILD, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("emfile child: served after EMFILE"), "{text}");
}

#[test]
fn emfile_child() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    if std::env::var_os(EMFILE_CHILD).is_none() {
        return; // only meaningful inside accept_survives_running_out_of_file_descriptors
    }
    let d = daemon();
    let opts = ServerOptions {
        workers: 1,
        header_timeout: Duration::from_secs(10),
        ..ServerOptions::default()
    };
    let h = serve(&local(), opts, introspection_handler(&d));
    let addr = tcp_addr(&h);
    let saved = getrlimit(Resource::Nofile);
    // New descriptors take the lowest free numbers, below the limit: allow five more.
    let used: std::collections::BTreeSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    let fifth_free = (0..).filter(|n| !used.contains(n)).nth(4).unwrap();
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(fifth_free + 1),
            maximum: saved.maximum,
        },
    )
    .unwrap();
    // Connect until this process (client and server together) is out of descriptors.
    let mut clients = Vec::new();
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => clients.push(s),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(24), "expected EMFILE, got {e}");
                break;
            }
        }
        assert!(clients.len() < 64, "the descriptor limit did not bite");
    }
    // Let the accept thread hit EMFILE on the last connection(s) and back off.
    thread::sleep(Duration::from_millis(200));
    let mut last = clients.pop().unwrap();
    drop(clients);
    setrlimit(Resource::Nofile, saved).unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let a = exchange(&mut last, b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(a.status, 200);
    assert_eq!(get(addr, "/healthz").status, 200);
    println!("emfile child: served after EMFILE");
    h.shutdown();
}
