//! The compiled instance-type table, the max-pods computation and the generator script.

#[path = "support/tempdir.rs"]
mod tempdir;

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use tempdir::TempDir;
use vpc_cni::limits::{self, AddressMode, Hypervisor, InstanceLimits, MaxPods, MaxPodsOptions};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn get(name: &str) -> InstanceLimits {
    limits::lookup(name).unwrap_or_else(|| panic!("{name} is in the table"))
}

fn pods(name: &str, opts: MaxPodsOptions) -> MaxPods {
    limits::max_pods(&get(name), &opts)
}

fn uncapped() -> MaxPodsOptions {
    MaxPodsOptions {
        show_max_allowed: true,
        ..MaxPodsOptions::default()
    }
}

#[test]
fn compiled_table_matches_the_data_file_line_for_line() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("data/instance-types.tsv"))
        .expect("data file");
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        let l = get(f[0]);
        let cards: Vec<u8> = f[5]
            .split(',')
            .map(|c| c.parse().expect("card ENIs"))
            .collect();
        assert_eq!(l.enis.to_string(), f[1], "{line}");
        assert_eq!(l.ipv4_per_eni.to_string(), f[2], "{line}");
        assert_eq!(l.ipv6_per_eni.to_string(), f[3], "{line}");
        assert_eq!(l.default_card.to_string(), f[4], "{line}");
        assert_eq!(l.card_enis, cards.as_slice(), "{line}");
        assert_eq!(l.vcpus.to_string(), f[6], "{line}");
        let hv = match f[7] {
            "nitro" => Hypervisor::Nitro,
            "xen" => Hypervisor::Xen,
            _ => Hypervisor::None,
        };
        assert_eq!(l.hypervisor, hv, "{line}");
        assert_eq!(l.bare_metal, f[8] == "1", "{line}");
        n += 1;
    }
    assert_eq!(n, limits::count());
    assert!(n > 1200, "moto ships over 1200 types, the table has {n}");
}

#[test]
fn published_eni_max_pods_values() {
    // Values from upstream's eni-max-pods.txt and the upstream README.
    for (t, v) in [
        ("m5.large", 29),
        ("m5.xlarge", 58),
        ("t3.micro", 4),
        ("m5.24xlarge", 737),
        ("m4.large", 20),
        ("t2.micro", 4),
        ("c5.metal", 737),
        ("p4d.24xlarge", 737),
        ("p5.48xlarge", 100),
        ("c6in.32xlarge", 394),
        ("g6e.48xlarge", 492),
        ("d3.2xlarge", 18),
    ] {
        assert_eq!(limits::eni_max_pods(&get(t)), v, "{t}");
        assert_eq!(
            pods(t, uncapped()).value,
            v,
            "{t}: --show-max-allowed is the file's value"
        );
    }
}

#[test]
fn multi_card_types_count_the_default_card_only() {
    let p4d = get("p4d.24xlarge");
    assert_eq!(
        (p4d.enis, p4d.total_enis(), p4d.network_cards()),
        (15, 60, 4)
    );
    assert_eq!(pods("p4d.24xlarge", uncapped()).uncapped, 15 * 49 + 2);
    assert_eq!(pods("p4d.24xlarge", MaxPodsOptions::default()).value, 250);
    let trn1 = get("trn1.32xlarge");
    assert_eq!(
        (trn1.enis, trn1.total_enis(), trn1.network_cards()),
        (5, 40, 8)
    );
    let r = pods("trn1.32xlarge", MaxPodsOptions::default());
    assert_eq!(
        (r.value, r.uncapped, r.cap),
        (247, 247, Some(250)),
        "below the ceiling: not capped"
    );
    let p5 = get("p5.48xlarge");
    assert_eq!((p5.enis, p5.total_enis(), p5.network_cards()), (2, 64, 32));
}

#[test]
fn prefix_delegation_on_nitro_and_bare_metal_only() {
    let pd = MaxPodsOptions {
        prefix_delegation: true,
        show_max_allowed: true,
        ..MaxPodsOptions::default()
    };
    let r = pods("m5.large", pd);
    assert_eq!(
        (r.value, r.mode, r.prefix_delegation_unsupported),
        (3 * (9 * 16) + 2, AddressMode::Prefix, false)
    );
    assert_eq!(
        pods(
            "m5.large",
            MaxPodsOptions {
                prefix_delegation: true,
                ..Default::default()
            }
        )
        .value,
        110
    );
    for xen in ["m4.large", "t2.micro", "c4.large"] {
        let l = get(xen);
        assert_eq!(l.hypervisor, Hypervisor::Xen, "{xen}");
        let r = pods(xen, pd);
        assert_eq!(r.mode, AddressMode::SecondaryIp, "{xen}");
        assert!(r.prefix_delegation_unsupported, "{xen}");
        assert_eq!(
            r.value,
            limits::eni_max_pods(&l),
            "{xen} falls back to the secondary-address formula"
        );
    }
    let metal = get("c5.metal");
    assert_eq!(
        (metal.hypervisor, metal.bare_metal),
        (Hypervisor::None, true)
    );
    assert!(metal.supports_prefix_delegation());
    assert_eq!(pods("c5.metal", pd).mode, AddressMode::Prefix);
    assert_eq!(pods("c5.metal", pd).value, 15 * 49 * 16 + 2);
}

#[test]
fn max_eni_and_custom_networking() {
    let cap2 = MaxPodsOptions {
        max_eni: Some(2),
        show_max_allowed: true,
        ..MaxPodsOptions::default()
    };
    assert_eq!(pods("m5.24xlarge", cap2).value, 2 * 49 + 2);
    assert_eq!(pods("m5.24xlarge", cap2).enis_for_pods, 2);
    let above = MaxPodsOptions {
        max_eni: Some(100),
        ..cap2
    };
    assert_eq!(
        pods("m5.24xlarge", above).value,
        737,
        "MAX_ENI never raises the instance limit"
    );
    let custom = MaxPodsOptions {
        custom_networking: true,
        show_max_allowed: true,
        ..MaxPodsOptions::default()
    };
    assert_eq!(pods("m5.large", custom).value, 2 * 9 + 2);
    assert_eq!(pods("m5.24xlarge", custom).value, 14 * 49 + 2);
    let both = MaxPodsOptions {
        max_eni: Some(1),
        ..custom
    };
    assert_eq!(
        pods("m5.large", both).value,
        2,
        "no ENI left for pods: only the host-network pods"
    );
    let pd_custom = MaxPodsOptions {
        prefix_delegation: true,
        ..custom
    };
    assert_eq!(pods("m5.xlarge", pd_custom).value, 3 * (14 * 16) + 2);
}

/// A made-up type, to put the vCPU boundary of the ceiling exactly where we want it.
fn synthetic(vcpus: u16) -> InstanceLimits {
    InstanceLimits {
        name: "x1.test",
        enis: 8,
        ipv4_per_eni: 30,
        ipv6_per_eni: 30,
        default_card: 0,
        card_enis: &[8],
        vcpus,
        hypervisor: Hypervisor::Nitro,
        bare_metal: false,
    }
}

#[test]
fn ceiling_is_110_up_to_30_vcpus_and_250_above() {
    let def = MaxPodsOptions::default();
    assert_eq!(limits::max_pods(&synthetic(30), &def).value, 110);
    assert_eq!(limits::max_pods(&synthetic(31), &def).value, 234);
    let pd = MaxPodsOptions {
        prefix_delegation: true,
        ..def
    };
    assert_eq!(limits::max_pods(&synthetic(31), &pd).value, 250);
    assert_eq!(
        limits::max_pods(
            &synthetic(31),
            &MaxPodsOptions {
                show_max_allowed: true,
                ..pd
            }
        )
        .value,
        8 * 29 * 16 + 2
    );
    assert_eq!(pods("m5.4xlarge", def).value, 110, "16 vCPUs, formula 234");
    assert_eq!(pods("m5.16xlarge", def).value, 250, "64 vCPUs, formula 737");
    assert_eq!(pods("t3.micro", def).value, 4, "below the ceiling");
}

proptest! {
    #[test]
    fn max_pods_invariants_over_every_type(
        idx in 0..2000usize,
        pd: bool,
        custom: bool,
        max_eni in proptest::option::of(1u32..20),
        show: bool,
    ) {
        let all: Vec<InstanceLimits> = limits::all().collect();
        let l = all[idx % all.len()];
        let opts = MaxPodsOptions { prefix_delegation: pd, custom_networking: custom, max_eni, show_max_allowed: show };
        let r = limits::max_pods(&l, &opts);
        prop_assert!(r.uncapped >= 2);
        prop_assert!(r.enis_for_pods <= u32::from(l.enis));
        let per_eni = u32::from(l.ipv4_per_eni) - 1;
        let per_eni = if r.mode == AddressMode::Prefix { per_eni * 16 } else { per_eni };
        prop_assert_eq!(r.uncapped, r.enis_for_pods * per_eni + 2);
        prop_assert_eq!(r.mode == AddressMode::Prefix, pd && l.supports_prefix_delegation());
        match r.cap {
            None => prop_assert!(show && r.value == r.uncapped),
            Some(c) => {
                prop_assert!(!show);
                prop_assert_eq!(c, if l.vcpus > 30 { 250 } else { 110 });
                prop_assert_eq!(r.value, r.uncapped.min(c));
            }
        }
        let plain = limits::max_pods(&l, &MaxPodsOptions { show_max_allowed: true, ..Default::default() });
        prop_assert_eq!(plain.value, limits::eni_max_pods(&l));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// scripts/gen-instance-types

fn generator(args: &[&Path], out: &Path) -> std::process::Output {
    Command::new("python3")
        .arg(Path::new(ROOT).join("scripts/gen-instance-types"))
        .args(args)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run python3 scripts/gen-instance-types")
}

fn data_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read TSV")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn generator_reads_describe_instance_types_output_and_moto_tables() {
    let tmp = TempDir::new("limits-gen");
    // The shape of `aws ec2 describe-instance-types --output json`, two regions with one type in common.
    let region_a = serde_json::json!({"InstanceTypes": [
        {"InstanceType": "zz9.big", "Hypervisor": "nitro", "BareMetal": false, "VCpuInfo": {"DefaultVCpus": 96},
         "NetworkInfo": {"MaximumNetworkInterfaces": 60, "Ipv4AddressesPerInterface": 50,
                         "Ipv6AddressesPerInterface": 50, "Ipv6Supported": true, "DefaultNetworkCardIndex": 0,
                         "NetworkCards": [
                            {"NetworkCardIndex": 1, "MaximumNetworkInterfaces": 15},
                            {"NetworkCardIndex": 0, "MaximumNetworkInterfaces": 15},
                            {"NetworkCardIndex": 2, "MaximumNetworkInterfaces": 15},
                            {"NetworkCardIndex": 3, "MaximumNetworkInterfaces": 15}]}},
        {"InstanceType": "aa1.old", "Hypervisor": "xen", "BareMetal": false, "VCpuInfo": {"DefaultVCpus": 2},
         "NetworkInfo": {"MaximumNetworkInterfaces": 3, "Ipv4AddressesPerInterface": 10,
                         "Ipv6Supported": false, "NetworkCards": [
                            {"NetworkCardIndex": 0, "MaximumNetworkInterfaces": 3}]}}
    ]});
    // moto's form: {name: info}; a bare-metal type reports no hypervisor.
    let moto_form = serde_json::json!({
        "mm2.metal": {"InstanceType": "mm2.metal", "BareMetal": true, "VCpuInfo": {"DefaultVCpus": 64},
                      "NetworkInfo": {"MaximumNetworkInterfaces": 15, "Ipv4AddressesPerInterface": 50,
                                      "Ipv6AddressesPerInterface": 50, "Ipv6Supported": true,
                                      "DefaultNetworkCardIndex": 0, "NetworkCards": [
                                         {"NetworkCardIndex": 0, "MaximumNetworkInterfaces": 15}]}},
        "aa1.old": {"InstanceType": "aa1.old", "Hypervisor": "xen", "VCpuInfo": {"DefaultVCpus": 99},
                    "NetworkInfo": {"MaximumNetworkInterfaces": 9, "Ipv4AddressesPerInterface": 9,
                                    "NetworkCards": []}}
    });
    let a = tmp.0.join("region-a.json");
    let b = tmp.0.join("moto.json");
    std::fs::write(&a, region_a.to_string()).expect("write");
    std::fs::write(&b, moto_form.to_string()).expect("write");
    let out = tmp.0.join("types.tsv");
    let run = generator(&[&a, &b], &out);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        data_lines(&out),
        [
            "aa1.old\t3\t10\t0\t0\t3\t2\txen\t0",
            "mm2.metal\t15\t50\t50\t0\t15\t64\t-\t1",
            "zz9.big\t15\t50\t50\t0\t15,15,15,15\t96\tnitro\t0",
        ],
        "sorted, first description of a type wins, cards ordered by index, no IPv6 → 0"
    );

    // Input that is not DescribeInstanceTypes data is refused with a message, and no table is written.
    let bad = tmp.0.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"InstanceTypes": [{"InstanceType": "x.y", "NetworkInfo": {}}]}"#,
    )
    .expect("write");
    let out2 = tmp.0.join("bad.tsv");
    let run = generator(&[&bad], &out2);
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("x.y"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!out2.exists());
}

#[test]
fn committed_data_file_is_what_the_generator_makes_from_moto() {
    let venv_python = Path::new(ROOT).join(".venv/bin/python");
    // Not a silent skip: without the venv this test cannot check what it claims, so it fails
    // (scripts/test runs scripts/setup first).
    assert!(
        venv_python.exists(),
        "no .venv: run scripts/setup, which installs moto, whose instance-type table this test compares with"
    );
    let tmp = TempDir::new("regen");
    let out = tmp.0.join("instance-types.tsv");
    let run = Command::new(&venv_python)
        .arg(Path::new(ROOT).join("scripts/gen-instance-types"))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run the generator");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&out).expect("generated"),
        std::fs::read_to_string(Path::new(ROOT).join("data/instance-types.tsv"))
            .expect("committed"),
        "data/instance-types.tsv is stale: run scripts/gen-instance-types"
    );
}
