//! Times the per-pod wiring the CNI plugin does, through the kernel adapters, against the real
//! kernel in two named namespaces made by the caller (bench/kernel-wiring.sh):
//!
//! setup: veth `eth0` in the pod namespace with its peer `eni…` created directly in the host
//! namespace (MTU 9001 both ends), both up, pod address /32, `169.254.1.1 dev eth0 scope link`,
//! `default via 169.254.1.1 dev eth0`, permanent neighbour 169.254.1.1 → host veth MAC, host
//! route `<ip>/32 dev eni… scope link`, rule 512 `to <ip> lookup main`, rule 1536 `from <ip>
//! lookup 2`. Each run opens both netlink sockets afresh (entering each namespace once), as one
//! CNI ADD does.
//! teardown: delete both rules, delete the host veth (the pod end and its routes go with it).
//!
//! Usage: kernel-wiring <host-netns-name> <pod-netns-name> [runs]
use std::net::IpAddr;
use std::time::{Duration, Instant};

use vpc_cni::net::{IpNet, VethPrefix};
use vpc_cni::netlink::{Netlink, Netns, Route, Rule, VethSpec, RT_TABLE_MAIN};
use vpc_cni::nft::{Nft, Randomize, SnatConfig, CONNMARK};
use vpc_cni::sysctl::Sysctl;

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn setup(host: &Netns, pod: &Netns, pod_ip: IpAddr) -> R<()> {
    let mut h = Netlink::open_in(host)?;
    let mut p = Netlink::open_in(pod)?;
    p.add_veth(&VethSpec {
        name: "eth0",
        peer_name: "eni0123456789a",
        mtu: Some(9001),
        mac: None,
        peer_mac: None,
        peer_netns: Some(host),
        tx_queue_len: None,
    })?;
    let hv = h.link_by_name("eni0123456789a")?.ok_or("host veth missing")?;
    let pv = p.link_by_name("eth0")?.ok_or("pod veth missing")?;
    h.set_link_up(hv.index)?;
    p.set_link_up(pv.index)?;
    p.add_address(pv.index, IpNet::host(pod_ip))?;
    let gw: IpAddr = "169.254.1.1".parse()?;
    p.add_route(&Route::link(IpNet::host(gw), pv.index))?;
    p.add_route(&Route::via(IpNet::default_for(false), gw, pv.index))?;
    p.add_permanent_neighbour(pv.index, gw, hv.mac.ok_or("host veth has no MAC")?)?;
    h.add_route(&Route::link(IpNet::host(pod_ip), hv.index))?;
    h.add_rule(&Rule::to_prefix(IpNet::host(pod_ip), 512, RT_TABLE_MAIN))?;
    h.add_rule(&Rule::from_prefix(IpNet::host(pod_ip), 1536, 2))?;
    Ok(())
}

fn teardown(host: &Netns, pod_ip: IpAddr) -> R<()> {
    let mut h = Netlink::open_in(host)?;
    h.delete_rule(&Rule::to_prefix(IpNet::host(pod_ip), 512, RT_TABLE_MAIN))?;
    h.delete_rule(&Rule::from_prefix(IpNet::host(pod_ip), 1536, 2))?;
    if !h.delete_link_by_name("eni0123456789a")? {
        return Err("host veth was already gone".into());
    }
    Ok(())
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let n = v.len();
    let mean = v.iter().map(|d| us(*d)).sum::<f64>() / n as f64;
    let p = |q: f64| us(v[((n as f64 * q).ceil() as usize).clamp(1, n) - 1]);
    println!(
        "| {name} | {n} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
        p(0.5),
        p(0.99),
        mean,
        us(v[0]),
        us(v[n - 1])
    );
}

fn main() -> R<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: kernel-wiring <host-netns-name> <pod-netns-name> [runs]".into());
    }
    let runs: usize = args.get(3).map_or(Ok(1000), |s| s.parse())?;
    let host = Netns::open_named(&args[1])?;
    let pod_path = Netns::open_named(&args[2])?.path().to_path_buf();
    let pod_ip: IpAddr = "10.0.1.5".parse()?;

    // One-off: the SNAT/connmark table (first apply, then an unchanged one) and a sysctl.
    let mut nft = Nft::open_in(&host)?;
    let cfg = SnatConfig {
        primary_ip: "10.0.0.10".parse()?,
        primary_ifname: "eth0".into(),
        vpc_cidrs: vec!["10.0.0.0/16".parse()?],
        exclude_cidrs: vec![],
        randomize: Randomize::Prng,
        node_port_support: true,
        external_snat: false,
        connmark: CONNMARK,
        veth_prefix: VethPrefix::default(),
    };
    let t = Instant::now();
    let first = nft.apply(&cfg)?;
    let t_first = t.elapsed();
    let t = Instant::now();
    let second = nft.apply(&cfg)?;
    let t_second = t.elapsed();
    host.run(|| Sysctl::new().set_ip_forward(true))??;
    println!("nft apply: {first:?} in {t_first:?}, then {second:?} in {t_second:?}");

    let (mut up, mut down, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        // Open the pod namespace per run, as a CNI ADD gets a path in CNI_NETNS.
        let t0 = Instant::now();
        let pod = Netns::open(&pod_path)?;
        setup(&host, &pod, pod_ip)?;
        let t1 = Instant::now();
        teardown(&host, pod_ip)?;
        let t2 = Instant::now();
        up.push(t1 - t0);
        down.push(t2 - t1);
        total.push(t2 - t0);
    }
    println!("| sequence | runs | median µs | p99 µs | mean µs | min µs | max µs |");
    println!("|---|---|---|---|---|---|---|");
    stats("setup (veth, addr, 2 pod routes, neighbour, host route, 2 rules)", up);
    stats("teardown (2 rules, veth)", down);
    stats("setup + teardown", total);
    Ok(())
}
