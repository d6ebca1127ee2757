//! The configuration parser over every variable and odd value, without touching the process environment.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use vpc_cni::config::*;
use vpc_cni::net::IpNet;

/// Parses a fixed environment.
fn parse(vars: &[(&str, &str)]) -> Result<(Config, Vec<Warning>), Vec<ConfigError>> {
    let map: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_env(move |name| map.get(name).cloned())
}

fn ok(vars: &[(&str, &str)]) -> (Config, Vec<Warning>) {
    match parse(vars) {
        Ok(r) => r,
        Err(e) => panic!("{vars:?} should parse, got errors: {e:?}"),
    }
}

fn errors(vars: &[(&str, &str)]) -> Vec<ConfigError> {
    match parse(vars) {
        Ok((c, _)) => panic!("{vars:?} should be rejected, got {c:?}"),
        Err(e) => e,
    }
}

/// Exactly one error, for `name`, quoting `value`; returns it.
fn one_error(vars: &[(&str, &str)], name: &str, value: &str) -> ConfigError {
    let errs = errors(vars);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = errs.into_iter().next().expect("one error");
    assert_eq!(e.variable, name);
    assert_eq!(e.value, value);
    assert!(!e.allowed.is_empty());
    let text = e.to_string();
    assert!(
        text.contains(name) && text.contains(&format!("{value:?}")),
        "{text}"
    );
    e
}

fn warned(warnings: &[Warning], name: &str, needle: &str) -> bool {
    warnings
        .iter()
        .any(|w| w.variable == name && w.message.contains(needle))
}

#[test]
fn defaults_follow_the_contract() {
    let (c, w) = ok(&[]);
    assert!(w.is_empty(), "{w:?}");
    assert!(c.node_port_support);
    assert!(!c.custom_network_cfg);
    assert_eq!(c.eni_config_annotation_def, "k8s.amazonaws.com/eniConfig");
    assert_eq!(c.eni_config_label_def, "k8s.amazonaws.com/eniConfig");
    assert_eq!(c.eni_mtu, 9001);
    assert_eq!(c.pod_mtu, 9001);
    assert!(!c.external_snat);
    assert_eq!(c.randomize_snat, RandomizeSnat::Prng);
    assert!(c.exclude_snat_cidrs.is_empty());
    assert_eq!(c.warm_eni_target, 1);
    assert_eq!(c.warm_ip_target, None);
    assert_eq!(c.minimum_ip_target, None);
    assert_eq!(c.max_eni, None);
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(
        c.log_file,
        LogDestination::File("/host/var/log/aws-routed-eni/ipamd.log".into())
    );
    assert_eq!(
        c.plugin_log_file,
        PluginLogDestination::File("/var/log/aws-routed-eni/plugin.log".into())
    );
    assert_eq!(c.plugin_log_level, LogLevel::Debug);
    assert_eq!(
        c.introspection_bind_address,
        BindAddress::Tcp("127.0.0.1:61679".parse::<SocketAddr>().expect("addr"))
    );
    assert!(!c.disable_introspection);
    assert!(!c.disable_metrics);
    assert_eq!(c.veth_prefix, "eni");
    assert!(c.additional_eni_tags.is_empty());
    assert!(c.configure_rpfilter);
    assert_eq!(c.cluster_name, "");
    assert!(!c.enable_pod_eni);
    assert!(!c.disable_tcp_early_demux);
    assert!(!c.enable_prefix_delegation);
    assert_eq!(c.warm_prefix_target, 0);
    assert!(!c.disable_network_resource_provisioning);
    assert!(!c.enable_bandwidth_plugin);
    assert!(!c.annotate_pod_ip);
    assert!(!c.manage_enis_non_schedulable);
    assert_eq!(c.host_cni_bin_path, PathBuf::from("/host/opt/cni/bin"));
    assert_eq!(
        c.host_cni_confdir_path,
        PathBuf::from("/host/etc/cni/net.d")
    );
    assert_eq!(c.cluster_endpoint, None);
    assert_eq!(
        c.pod_security_group_enforcing_mode,
        PodSgEnforcingMode::Strict
    );
    assert!(c.enable_subnet_discovery);
    assert!(c.enable_ipv4);
    assert!(!c.enable_ipv6);
    assert!(c.external_service_cidrs.is_empty());
    assert_eq!(c.ec2_endpoint, None);
    assert!(!c.disable_leaked_eni_cleanup);
    assert!(!c.enable_v6_egress);
    assert!(c.enable_v4_egress);
    assert_eq!(c.ip_cooldown_period, Duration::from_secs(30));
    assert!(!c.disable_pod_v6);
    assert!(!c.enable_imds_only_mode);
    assert_eq!(
        c.backing_store,
        PathBuf::from("/var/run/aws-node/ipam.json")
    );
    assert_eq!(c.http_timeout, Duration::from_secs(10));
    assert!(!c.enable_multi_nic);
    assert!(!c.ip_targets_defined());
}

#[test]
fn empty_values_mean_unset() {
    let vars: Vec<(&str, &str)> = ALL_VARIABLES.iter().map(|n| (*n, "")).collect();
    let (c, w) = ok(&vars);
    assert!(w.is_empty());
    assert_eq!(c, Config::default());
}

/// A boolean variable: its name, its field and its default.
type BoolVar = (&'static str, fn(&Config) -> bool, bool);

/// Every boolean variable whose value does not interact with others.
fn bool_vars() -> Vec<BoolVar> {
    vec![
        (AWS_VPC_CNI_NODE_PORT_SUPPORT, |c| c.node_port_support, true),
        (
            AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG,
            |c| c.custom_network_cfg,
            false,
        ),
        (AWS_VPC_K8S_CNI_EXTERNALSNAT, |c| c.external_snat, false),
        (DISABLE_INTROSPECTION, |c| c.disable_introspection, false),
        (DISABLE_METRICS, |c| c.disable_metrics, false),
        (
            AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER,
            |c| c.configure_rpfilter,
            true,
        ),
        (ENABLE_POD_ENI, |c| c.enable_pod_eni, false),
        (
            DISABLE_TCP_EARLY_DEMUX,
            |c| c.disable_tcp_early_demux,
            false,
        ),
        (
            DISABLE_NETWORK_RESOURCE_PROVISIONING,
            |c| c.disable_network_resource_provisioning,
            false,
        ),
        (
            ENABLE_BANDWIDTH_PLUGIN,
            |c| c.enable_bandwidth_plugin,
            false,
        ),
        (ANNOTATE_POD_IP, |c| c.annotate_pod_ip, false),
        (
            AWS_MANAGE_ENIS_NON_SCHEDULABLE,
            |c| c.manage_enis_non_schedulable,
            false,
        ),
        (ENABLE_SUBNET_DISCOVERY, |c| c.enable_subnet_discovery, true),
        (
            DISABLE_LEAKED_ENI_CLEANUP,
            |c| c.disable_leaked_eni_cleanup,
            false,
        ),
        (ENABLE_V6_EGRESS, |c| c.enable_v6_egress, false),
        (ENABLE_V4_EGRESS, |c| c.enable_v4_egress, true),
        (DISABLE_POD_V6, |c| c.disable_pod_v6, false),
        (ENABLE_IMDS_ONLY_MODE, |c| c.enable_imds_only_mode, false),
        (ENABLE_MULTI_NIC, |c| c.enable_multi_nic, false),
    ]
}

#[test]
fn every_boolean_accepts_go_parsebool_spellings_and_rejects_others() {
    for (name, get, default) in bool_vars() {
        assert_eq!(get(&ok(&[]).0), default, "{name} default");
        for t in ["true", "1", "t", "T", "TRUE", "True"] {
            assert!(get(&ok(&[(name, t)]).0), "{name}={t}");
        }
        for f in ["false", "0", "f", "F", "FALSE", "False"] {
            assert!(!get(&ok(&[(name, f)]).0), "{name}={f}");
        }
        for bad in ["yes", "no", "on", "tRUE", " true", "2"] {
            let e = one_error(&[(name, bad)], name, bad);
            assert!(e.allowed.contains("true or false"), "{e}");
        }
    }
    // The two mode booleans and prefix delegation interact with other variables; checked on their own below.
    assert!(
        ok(&[(ENABLE_PREFIX_DELEGATION, "1"), (WARM_PREFIX_TARGET, "1")])
            .0
            .enable_prefix_delegation
    );
    one_error(
        &[(ENABLE_PREFIX_DELEGATION, "yes")],
        ENABLE_PREFIX_DELEGATION,
        "yes",
    );
    one_error(&[(ENABLE_IPV4, "maybe")], ENABLE_IPV4, "maybe");
}

#[test]
fn warm_eni_target_negative_means_one_and_garbage_is_an_error() {
    assert_eq!(ok(&[(WARM_ENI_TARGET, "3")]).0.warm_eni_target, 3);
    assert_eq!(ok(&[(WARM_ENI_TARGET, "0")]).0.warm_eni_target, 0);
    assert_eq!(ok(&[(WARM_ENI_TARGET, "+2")]).0.warm_eni_target, 2);
    let (c, w) = ok(&[(WARM_ENI_TARGET, "-1")]);
    assert_eq!(c.warm_eni_target, 1);
    assert!(warned(&w, WARM_ENI_TARGET, "negative"), "{w:?}");
    one_error(&[(WARM_ENI_TARGET, "two")], WARM_ENI_TARGET, "two");
    one_error(&[(WARM_ENI_TARGET, "1.5")], WARM_ENI_TARGET, "1.5");
    one_error(
        &[(WARM_ENI_TARGET, "99999999999")],
        WARM_ENI_TARGET,
        "99999999999",
    );
}

#[test]
fn warm_ip_minimum_ip_and_max_eni_non_positive_mean_unset() {
    type Get = fn(&Config) -> Option<u32>;
    let vars: [(&str, Get); 3] = [
        (WARM_IP_TARGET, |c| c.warm_ip_target),
        (MINIMUM_IP_TARGET, |c| c.minimum_ip_target),
        (MAX_ENI, |c| c.max_eni),
    ];
    for (name, get) in vars {
        assert_eq!(get(&ok(&[(name, "5")]).0), Some(5), "{name}");
        let (c, w) = ok(&[(name, "0")]);
        assert_eq!(get(&c), None, "{name}=0");
        assert!(
            w.is_empty(),
            "{name}=0 is documented as unset, no warning: {w:?}"
        );
        let (c, w) = ok(&[(name, "-4")]);
        assert_eq!(get(&c), None, "{name}=-4");
        assert!(warned(&w, name, "-4"), "{w:?}");
        one_error(&[(name, "five")], name, "five");
        one_error(&[(name, "5 ")], name, "5 ");
    }
    assert!(ok(&[(WARM_IP_TARGET, "1")]).0.ip_targets_defined());
    assert!(ok(&[(MINIMUM_IP_TARGET, "1")]).0.ip_targets_defined());
    assert!(!ok(&[(WARM_IP_TARGET, "0"), (MINIMUM_IP_TARGET, "-1")])
        .0
        .ip_targets_defined());
}

#[test]
fn warm_prefix_target_negative_means_zero() {
    assert_eq!(ok(&[(WARM_PREFIX_TARGET, "2")]).0.warm_prefix_target, 2);
    let (c, w) = ok(&[(WARM_PREFIX_TARGET, "-3")]);
    assert_eq!(c.warm_prefix_target, 0);
    assert!(warned(&w, WARM_PREFIX_TARGET, "-3"));
    one_error(&[(WARM_PREFIX_TARGET, "x")], WARM_PREFIX_TARGET, "x");
}

#[test]
fn prefix_delegation_needs_a_positive_target() {
    let errs = errors(&[(ENABLE_PREFIX_DELEGATION, "true")]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    for name in [WARM_PREFIX_TARGET, WARM_IP_TARGET, MINIMUM_IP_TARGET] {
        assert!(errs[0].variable.contains(name), "{}", errs[0]);
    }
    errors(&[
        (ENABLE_PREFIX_DELEGATION, "true"),
        (WARM_PREFIX_TARGET, "0"),
        (WARM_IP_TARGET, "-1"),
    ]);
    for target in [WARM_PREFIX_TARGET, WARM_IP_TARGET, MINIMUM_IP_TARGET] {
        let (c, _) = ok(&[(ENABLE_PREFIX_DELEGATION, "true"), (target, "1")]);
        assert!(c.enable_prefix_delegation);
    }
}

#[test]
fn mtu_range_and_pod_mtu_default() {
    assert_eq!(ok(&[(AWS_VPC_ENI_MTU, "576")]).0.eni_mtu, 576);
    assert_eq!(ok(&[(AWS_VPC_ENI_MTU, "9001")]).0.eni_mtu, 9001);
    for bad in ["575", "9002", "0", "-1500", "jumbo", "1500.0"] {
        let e = one_error(&[(AWS_VPC_ENI_MTU, bad)], AWS_VPC_ENI_MTU, bad);
        assert!(
            e.allowed.contains("576") && e.allowed.contains("9001"),
            "{e}"
        );
    }
    let (c, _) = ok(&[(AWS_VPC_ENI_MTU, "1500")]);
    assert_eq!(
        (c.eni_mtu, c.pod_mtu),
        (1500, 1500),
        "POD_MTU defaults to the ENI MTU"
    );
    let (c, _) = ok(&[(AWS_VPC_ENI_MTU, "1500"), (POD_MTU, "1400")]);
    assert_eq!((c.eni_mtu, c.pod_mtu), (1500, 1400));
    one_error(&[(POD_MTU, "9002")], POD_MTU, "9002");
    one_error(&[(POD_MTU, "100")], POD_MTU, "100");
    // IPv6 raises the floor to 1280.
    let v6 = [
        (ENABLE_IPV4, "false"),
        (ENABLE_IPV6, "true"),
        (ENABLE_PREFIX_DELEGATION, "true"),
    ];
    let e = one_error(&[v6[0], v6[1], v6[2], (POD_MTU, "1279")], POD_MTU, "1279");
    assert!(e.allowed.contains("1280"), "{e}");
    assert_eq!(
        ok(&[v6[0], v6[1], v6[2], (POD_MTU, "1280")]).0.pod_mtu,
        1280
    );
}

#[test]
fn veth_prefix_length_and_reserved_names() {
    assert_eq!(
        ok(&[(AWS_VPC_K8S_CNI_VETHPREFIX, "abcd")]).0.veth_prefix,
        "abcd"
    );
    assert_eq!(ok(&[(AWS_VPC_K8S_CNI_VETHPREFIX, "v")]).0.veth_prefix, "v");
    assert_eq!(
        ok(&[(AWS_VPC_K8S_CNI_VETHPREFIX, "v.1")]).0.veth_prefix,
        "v.1"
    );
    // What the kernel refuses in a name, what nft reads as a wildcard or escape, and quotes.
    for bad in [
        "abcde", "eth", "vlan", "lo", "a/b", "a b", "a:b", "é", "a*", "a\\", "a%", "a\"", "a+",
    ] {
        let e = one_error(
            &[(AWS_VPC_K8S_CNI_VETHPREFIX, bad)],
            AWS_VPC_K8S_CNI_VETHPREFIX,
            bad,
        );
        assert!(e.allowed.contains("eth, vlan or lo"), "{e}");
    }
    // Prefixes that merely start like a reserved name are fine.
    assert_eq!(
        ok(&[(AWS_VPC_K8S_CNI_VETHPREFIX, "eth1")]).0.veth_prefix,
        "eth1"
    );
}

#[test]
fn additional_eni_tags_reserved_keys_dropped_lengths_checked() {
    let (c, w) = ok(&[(
        ADDITIONAL_ENI_TAGS,
        r#"{"team":"blue","cost-center":"42","cluster.k8s.amazonaws.com/name":"x","a.k8s.amazonaws.com":"y"}"#,
    )]);
    let expected: BTreeMap<String, String> = [("team", "blue"), ("cost-center", "42")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(c.additional_eni_tags, expected);
    assert!(
        warned(&w, ADDITIONAL_ENI_TAGS, "cluster.k8s.amazonaws.com/name"),
        "{w:?}"
    );
    assert!(
        warned(&w, ADDITIONAL_ENI_TAGS, "a.k8s.amazonaws.com"),
        "{w:?}"
    );

    // Lengths are counted in characters, as EC2 counts them.
    let key128 = "é".repeat(128);
    let val256 = "v".repeat(256);
    let json = serde_json::json!({ key128.clone(): val256.clone() }).to_string();
    assert_eq!(
        ok(&[(ADDITIONAL_ENI_TAGS, &json)])
            .0
            .additional_eni_tags
            .get(&key128),
        Some(&val256)
    );
    for bad in [
        serde_json::json!({ "k".repeat(129): "v" }).to_string(),
        serde_json::json!({ "k": "v".repeat(257) }).to_string(),
        serde_json::json!({ "": "v" }).to_string(),
        serde_json::json!({ "aws:owner": "v" }).to_string(),
        r#"{"k": 1}"#.to_string(),
        r#"["k","v"]"#.to_string(),
        "{k:v}".to_string(),
        "team=blue".to_string(),
    ] {
        one_error(&[(ADDITIONAL_ENI_TAGS, &bad)], ADDITIONAL_ENI_TAGS, &bad);
    }
    assert!(ok(&[(ADDITIONAL_ENI_TAGS, "{}")])
        .0
        .additional_eni_tags
        .is_empty());
}

#[test]
fn cidr_lists_skip_invalid_items_with_a_warning() {
    for name in [
        AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS,
        AWS_EXTERNAL_SERVICE_CIDRS,
    ] {
        let (c, w) = ok(&[(
            name,
            " 10.0.0.0/8, 192.168.1.7/16,bogus,,10.0.0.0/8,300.1.1.1/8,fd00::/64 ",
        )]);
        let got = if name == AWS_EXTERNAL_SERVICE_CIDRS {
            &c.external_service_cidrs
        } else {
            &c.exclude_snat_cidrs
        };
        let got: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert!(warned(&w, name, "bogus"), "{w:?}");
        assert!(warned(&w, name, "300.1.1.1/8"), "{w:?}");
        if name == AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS {
            // SNAT is IPv4 only: upstream skips IPv6 exclusions, and we say so.
            assert_eq!(got, ["10.0.0.0/8", "192.168.0.0/16"], "{name}");
            assert!(warned(&w, name, "fd00::/64 is an IPv6 CIDR"), "{w:?}");
            assert_eq!(w.len(), 3, "{w:?}");
        } else {
            assert_eq!(got, ["10.0.0.0/8", "192.168.0.0/16", "fd00::/64"], "{name}");
            assert_eq!(w.len(), 2, "{w:?}");
        }
    }
}

/// The SNAT and connmark settings as the nft table builder receives them.
fn snat_config(c: &Config) -> vpc_cni::nft::SnatConfig {
    vpc_cni::nft::SnatConfig {
        primary_ip: "10.0.0.10".parse().expect("an address"),
        primary_ifname: "eth0".into(),
        vpc_cidrs: vec!["10.0.0.0/16".parse().expect("a CIDR")],
        exclude_cidrs: c.exclude_snat_cidrs.clone(),
        randomize: vpc_cni::nft::Randomize::Prng,
        node_port_support: c.node_port_support,
        external_snat: c.external_snat,
        connmark: c.connmark,
        veth_prefix: c.veth_prefix.clone(),
    }
}

#[test]
fn an_ipv6_snat_exclusion_leaves_the_ipv4_table_intact() {
    let (c, _) = ok(&[(AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS, "fd00::/8,172.16.0.0/12")]);
    let rs = vpc_cni::nft::ruleset(&snat_config(&c))
        .expect("an IPv6 exclusion must not cost the node its SNAT table")
        .expect("a table is wanted");
    let snat = rs
        .chains
        .iter()
        .find(|ch| ch.name == "snat-postrouting")
        .unwrap();
    // One return for the VPC, one for 172.16.0.0/12, then the SNAT rule.
    assert_eq!(snat.rules.len(), 3);
}

#[test]
fn connmark_is_read_in_gos_bases_and_reaches_the_nft_rules() {
    assert_eq!(ok(&[]).0.connmark, 0x80);
    for (v, want) in [
        ("128", 0x80),
        ("0x80", 0x80),
        ("0X4000", 0x4000),
        ("0200", 0x80),
        ("0o200", 0x80),
        ("0b10000000", 0x80),
        ("+16", 16),
        ("4294967295", u32::MAX),
    ] {
        assert_eq!(ok(&[(AWS_VPC_K8S_CNI_CONNMARK, v)]).0.connmark, want, "{v}");
    }
    for bad in [
        "0",
        "-128",
        "4294967296",
        "0x",
        "0x1g",
        "09",
        "eighty",
        "0x80 ",
    ] {
        let e = one_error(
            &[(AWS_VPC_K8S_CNI_CONNMARK, bad)],
            AWS_VPC_K8S_CNI_CONNMARK,
            bad,
        );
        assert!(e.allowed.contains("1 to 4294967295"), "{e}");
    }
    // The configured mark is the one the connmark chains set and restore.
    let (c, _) = ok(&[(AWS_VPC_K8S_CNI_CONNMARK, "0x4000")]);
    let rs = vpc_cni::nft::ruleset(&snat_config(&c)).unwrap().unwrap();
    let text = format!("{rs:?}");
    let default = format!(
        "{:?}",
        vpc_cni::nft::ruleset(&snat_config(&ok(&[]).0))
            .unwrap()
            .unwrap()
    );
    let bytes = |m: u32| format!("{:?}", m.to_ne_bytes().to_vec());
    assert!(text.contains(&bytes(0x4000)), "{text}");
    assert!(!text.contains(&bytes(0x80)), "{text}");
    assert!(default.contains(&bytes(0x80)), "{default}");
}

#[test]
fn ip_family_rules() {
    let e = errors(&[(ENABLE_IPV6, "true"), (ENABLE_PREFIX_DELEGATION, "true")]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].variable.contains(ENABLE_IPV4) && e[0].variable.contains(ENABLE_IPV6),
        "{}",
        e[0]
    );
    assert!(e[0].allowed.contains("exactly one"), "{}", e[0]);
    let e = errors(&[(ENABLE_IPV4, "false")]);
    assert_eq!(e.len(), 1, "both off is refused too: {e:?}");
    let e = errors(&[(ENABLE_IPV4, "false"), (ENABLE_IPV6, "true")]);
    assert!(
        e.iter()
            .any(|e| e.variable.contains(ENABLE_PREFIX_DELEGATION)),
        "{e:?}"
    );
    let e = errors(&[
        (ENABLE_IPV4, "false"),
        (ENABLE_IPV6, "true"),
        (ENABLE_PREFIX_DELEGATION, "true"),
        (AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG, "true"),
    ]);
    assert!(
        e.iter()
            .any(|e| e.variable.contains(AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG)),
        "{e:?}"
    );
    let (c, _) = ok(&[
        (ENABLE_IPV4, "false"),
        (ENABLE_IPV6, "true"),
        (ENABLE_PREFIX_DELEGATION, "true"),
    ]);
    assert!(c.enable_ipv6 && !c.enable_ipv4);
    assert!(
        c.disable_leaked_eni_cleanup,
        "IPv6 attaches no ENIs, so nothing leaks"
    );
}

#[test]
fn log_levels_and_destinations() {
    for (raw, level) in [
        ("debug", LogLevel::Debug),
        ("Info", LogLevel::Info),
        ("WARN", LogLevel::Warn),
        ("error", LogLevel::Error),
        ("FaTaL", LogLevel::Fatal),
    ] {
        assert_eq!(ok(&[(AWS_VPC_K8S_CNI_LOGLEVEL, raw)]).0.log_level, level);
        assert_eq!(
            ok(&[(AWS_VPC_K8S_PLUGIN_LOG_LEVEL, raw)])
                .0
                .plugin_log_level,
            level
        );
    }
    for name in [AWS_VPC_K8S_CNI_LOGLEVEL, AWS_VPC_K8S_PLUGIN_LOG_LEVEL] {
        for bad in ["verbose", "WARNING", "trace"] {
            let e = one_error(&[(name, bad)], name, bad);
            assert!(
                e.allowed.contains("DEBUG") && e.allowed.contains("FATAL"),
                "{e}"
            );
        }
    }
    assert_eq!(
        ok(&[(AWS_VPC_K8S_CNI_LOG_FILE, "stdout")]).0.log_file,
        LogDestination::Stdout
    );
    assert_eq!(
        ok(&[(AWS_VPC_K8S_CNI_LOG_FILE, "STDOUT")]).0.log_file,
        LogDestination::Stdout
    );
    assert_eq!(
        ok(&[(AWS_VPC_K8S_CNI_LOG_FILE, "stderr")]).0.log_file,
        LogDestination::Stderr
    );
    assert_eq!(
        ok(&[(AWS_VPC_K8S_CNI_LOG_FILE, "/tmp/x.log")]).0.log_file,
        LogDestination::File("/tmp/x.log".into())
    );
    assert_eq!(
        ok(&[(AWS_VPC_K8S_PLUGIN_LOG_FILE, "StdErr")])
            .0
            .plugin_log_file,
        PluginLogDestination::Stderr
    );
    assert_eq!(
        ok(&[(AWS_VPC_K8S_PLUGIN_LOG_FILE, "/tmp/p.log")])
            .0
            .plugin_log_file,
        PluginLogDestination::File("/tmp/p.log".into())
    );
    // stdout carries the CNI result: the plugin logs to stderr instead and says so.
    for stdout in ["stdout", "Stdout"] {
        let (c, w) = ok(&[(AWS_VPC_K8S_PLUGIN_LOG_FILE, stdout)]);
        assert_eq!(c.plugin_log_file, PluginLogDestination::Stderr);
        assert!(warned(&w, AWS_VPC_K8S_PLUGIN_LOG_FILE, "stderr"), "{w:?}");
    }
    assert_eq!(LogLevel::Fatal.to_level_filter(), log::LevelFilter::Error);
    assert_eq!(LogLevel::Warn.to_level_filter(), log::LevelFilter::Warn);
}

#[test]
fn randomize_snat_values() {
    assert_eq!(
        ok(&[(AWS_VPC_K8S_CNI_RANDOMIZESNAT, "prng")])
            .0
            .randomize_snat,
        RandomizeSnat::Prng
    );
    assert_eq!(
        ok(&[(AWS_VPC_K8S_CNI_RANDOMIZESNAT, "hashrandom")])
            .0
            .randomize_snat,
        RandomizeSnat::HashRandom
    );
    assert_eq!(
        ok(&[(AWS_VPC_K8S_CNI_RANDOMIZESNAT, "none")])
            .0
            .randomize_snat,
        RandomizeSnat::None
    );
    for bad in ["PRNG", "random", "fully-random", "true"] {
        let e = one_error(
            &[(AWS_VPC_K8S_CNI_RANDOMIZESNAT, bad)],
            AWS_VPC_K8S_CNI_RANDOMIZESNAT,
            bad,
        );
        assert!(e.allowed.contains("hashrandom"), "{e}");
    }
}

#[test]
fn http_timeout_has_a_ten_second_floor() {
    assert_eq!(
        ok(&[(HTTP_TIMEOUT, "30")]).0.http_timeout,
        Duration::from_secs(30)
    );
    assert_eq!(
        ok(&[(HTTP_TIMEOUT, "30s")]).0.http_timeout,
        Duration::from_secs(30)
    );
    assert_eq!(
        ok(&[(HTTP_TIMEOUT, "2m")]).0.http_timeout,
        Duration::from_secs(120)
    );
    assert_eq!(
        ok(&[(HTTP_TIMEOUT, "10")]).0.http_timeout,
        Duration::from_secs(10)
    );
    for low in ["5", "9999ms", "0"] {
        let (c, w) = ok(&[(HTTP_TIMEOUT, low)]);
        assert_eq!(c.http_timeout, Duration::from_secs(10), "{low}");
        assert!(warned(&w, HTTP_TIMEOUT, "10"), "{w:?}");
    }
    for bad in ["-5", "ten", "5x", "s"] {
        one_error(&[(HTTP_TIMEOUT, bad)], HTTP_TIMEOUT, bad);
    }
}

#[test]
fn ip_cooldown_period_whole_seconds_zero_allowed() {
    assert_eq!(
        ok(&[(IP_COOLDOWN_PERIOD, "0")]).0.ip_cooldown_period,
        Duration::ZERO
    );
    assert_eq!(
        ok(&[(IP_COOLDOWN_PERIOD, "45")]).0.ip_cooldown_period,
        Duration::from_secs(45)
    );
    one_error(&[(IP_COOLDOWN_PERIOD, "-1")], IP_COOLDOWN_PERIOD, "-1");
    one_error(&[(IP_COOLDOWN_PERIOD, "30s")], IP_COOLDOWN_PERIOD, "30s");
}

#[test]
fn imds_only_mode_implies_no_provisioning_and_no_leak_sweep() {
    let (c, _) = ok(&[(ENABLE_IMDS_ONLY_MODE, "true")]);
    assert!(c.enable_imds_only_mode);
    assert!(c.disable_network_resource_provisioning);
    assert!(c.disable_leaked_eni_cleanup);
    // The explicit false of the implied variables does not win over the mode.
    let (c, _) = ok(&[
        (ENABLE_IMDS_ONLY_MODE, "true"),
        (DISABLE_NETWORK_RESOURCE_PROVISIONING, "false"),
        (DISABLE_LEAKED_ENI_CLEANUP, "false"),
    ]);
    assert!(c.disable_network_resource_provisioning && c.disable_leaked_eni_cleanup);
    // Without provisioning ipamd creates no ENIs, so there are none to sweep.
    let (c, _) = ok(&[(DISABLE_NETWORK_RESOURCE_PROVISIONING, "true")]);
    assert!(c.disable_leaked_eni_cleanup && !c.enable_imds_only_mode);
}

#[test]
fn introspection_bind_address_forms() {
    let tcp = |s: &str| BindAddress::Tcp(s.parse().expect("socket address"));
    for (raw, want) in [
        ("127.0.0.1:1234", tcp("127.0.0.1:1234")),
        (":61679", tcp("[::]:61679")),
        ("[::1]:61679", tcp("[::1]:61679")),
        ("localhost:9", tcp("127.0.0.1:9")),
        (
            "unix:/run/aws-node/introspect.sock",
            BindAddress::Unix("/run/aws-node/introspect.sock".into()),
        ),
        (
            "unix:///run/x.sock",
            BindAddress::Unix("/run/x.sock".into()),
        ),
    ] {
        assert_eq!(
            ok(&[(INTROSPECTION_BIND_ADDRESS, raw)])
                .0
                .introspection_bind_address,
            want,
            "{raw}"
        );
    }
    for bad in [
        "127.0.0.1",
        "example.com:80",
        "unix:",
        "127.0.0.1:99999",
        "tcp://127.0.0.1:1",
    ] {
        one_error(
            &[(INTROSPECTION_BIND_ADDRESS, bad)],
            INTROSPECTION_BIND_ADDRESS,
            bad,
        );
    }
}

#[test]
fn strings_paths_urls_and_modes() {
    let (c, _) = ok(&[
        (ENI_CONFIG_ANNOTATION_DEF, "example.com/eni"),
        (ENI_CONFIG_LABEL_DEF, "topology.kubernetes.io/zone"),
        (CLUSTER_NAME, "prod-1"),
        (HOST_CNI_BIN_PATH, "/opt/cni/bin"),
        (HOST_CNI_CONFDIR_PATH, "/etc/cni/net.d"),
        (AWS_VPC_K8S_CNI_BACKING_STORE, "/tmp/ipam.json"),
        (
            CLUSTER_ENDPOINT,
            "https://ABC.gr7.us-west-2.eks.amazonaws.com",
        ),
        (AWS_EC2_ENDPOINT, "http://127.0.0.1:5000"),
        (POD_SECURITY_GROUP_ENFORCING_MODE, "standard"),
    ]);
    assert_eq!(c.eni_config_annotation_def, "example.com/eni");
    assert_eq!(c.eni_config_label_def, "topology.kubernetes.io/zone");
    assert_eq!(c.cluster_name, "prod-1");
    assert_eq!(c.host_cni_bin_path, PathBuf::from("/opt/cni/bin"));
    assert_eq!(c.host_cni_confdir_path, PathBuf::from("/etc/cni/net.d"));
    assert_eq!(c.backing_store, PathBuf::from("/tmp/ipam.json"));
    assert_eq!(
        c.cluster_endpoint.as_deref(),
        Some("https://ABC.gr7.us-west-2.eks.amazonaws.com")
    );
    assert_eq!(c.ec2_endpoint.as_deref(), Some("http://127.0.0.1:5000"));
    assert_eq!(
        c.pod_security_group_enforcing_mode,
        PodSgEnforcingMode::Standard
    );
    one_error(
        &[(AWS_EC2_ENDPOINT, "ec2.us-west-2.amazonaws.com")],
        AWS_EC2_ENDPOINT,
        "ec2.us-west-2.amazonaws.com",
    );
    one_error(
        &[(CLUSTER_ENDPOINT, "https://")],
        CLUSTER_ENDPOINT,
        "https://",
    );
    one_error(
        &[(POD_SECURITY_GROUP_ENFORCING_MODE, "Strict")],
        POD_SECURITY_GROUP_ENFORCING_MODE,
        "Strict",
    );
}

#[test]
fn all_bad_variables_are_reported_together() {
    let errs = errors(&[
        (AWS_VPC_ENI_MTU, "100000"),
        (WARM_ENI_TARGET, "lots"),
        (AWS_VPC_K8S_CNI_VETHPREFIX, "toolong"),
        (AWS_VPC_K8S_CNI_LOGLEVEL, "loud"),
        (ENABLE_POD_ENI, "yes"),
        (HTTP_TIMEOUT, "soon"),
        (AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS, "bogus"),
    ]);
    let names: HashSet<&str> = errs.iter().map(|e| e.variable.as_str()).collect();
    let want: HashSet<&str> = [
        AWS_VPC_ENI_MTU,
        WARM_ENI_TARGET,
        AWS_VPC_K8S_CNI_VETHPREFIX,
        AWS_VPC_K8S_CNI_LOGLEVEL,
        ENABLE_POD_ENI,
        HTTP_TIMEOUT,
    ]
    .into_iter()
    .collect();
    assert_eq!(names, want, "{errs:?}");
    assert_eq!(errs.len(), 6);
}

#[test]
fn effective_json_has_every_variable() {
    let (c, _) = ok(&[
        (WARM_IP_TARGET, "7"),
        (ADDITIONAL_ENI_TAGS, r#"{"a":"b"}"#),
        (AWS_VPC_K8S_CNI_LOG_FILE, "stdout"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&c.to_json()).expect("valid JSON");
    let obj = v.as_object().expect("object");
    let keys: HashSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, ALL_VARIABLES.iter().copied().collect::<HashSet<_>>());
    assert_eq!(obj[WARM_IP_TARGET], 7);
    assert_eq!(obj[MINIMUM_IP_TARGET], serde_json::Value::Null);
    assert_eq!(obj[ADDITIONAL_ENI_TAGS], serde_json::json!({"a": "b"}));
    assert_eq!(obj[AWS_VPC_K8S_CNI_LOG_FILE], "stdout");
    assert_eq!(obj[HTTP_TIMEOUT], 10);
    assert_eq!(obj[INTROSPECTION_BIND_ADDRESS], "127.0.0.1:61679");
    // Printed in ALL_VARIABLES order.
    let text = c.to_json();
    let positions: Vec<usize> = ALL_VARIABLES
        .iter()
        .map(|n| text.find(&format!("\"{n}\"")).expect("key present"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn all_variables_is_complete_and_unique() {
    let unique: HashSet<&str> = ALL_VARIABLES.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ALL_VARIABLES.len(),
        "duplicate in ALL_VARIABLES"
    );
    // Every `pub const NAME: &str = "NAME";` in config.rs is a variable name and must be listed.
    let source = include_str!("../src/config.rs");
    let mut consts = 0;
    for line in source.lines() {
        let Some(rest) = line.strip_prefix("pub const ") else {
            continue;
        };
        let Some((ident, value)) = rest.split_once(": &str = \"") else {
            continue;
        };
        let value = value.trim_end_matches("\";");
        if ident.eq_ignore_ascii_case(value) {
            consts += 1;
            assert!(
                unique.contains(value),
                "{value} is declared in config.rs but missing from ALL_VARIABLES"
            );
        }
    }
    assert_eq!(
        consts,
        ALL_VARIABLES.len(),
        "ALL_VARIABLES lists a name without a constant"
    );
}

#[test]
fn readme_configuration_reference_documents_every_variable() {
    let readme = include_str!("../README.md");
    let start = readme
        .find("<!-- config-reference -->")
        .expect("start marker in README.md");
    let end = readme
        .find("<!-- /config-reference -->")
        .expect("end marker in README.md");
    let section = &readme[start..end];
    let missing: Vec<&str> = ALL_VARIABLES
        .iter()
        .copied()
        .filter(|n| !section.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's configuration reference lacks: {missing:?}"
    );
}

proptest! {
    #[test]
    fn any_integer_warm_ip_target_is_unset_iff_not_positive(n in -1_000_000i64..1_000_000) {
        let (c, _) = ok(&[(WARM_IP_TARGET, &n.to_string())]);
        prop_assert_eq!(c.warm_ip_target, u32::try_from(n).ok().filter(|&v| v > 0));
    }

    #[test]
    fn any_value_of_any_variable_parses_or_names_that_variable(
        idx in 0..ALL_VARIABLES.len(),
        value in "\\PC{0,40}",
    ) {
        let name = ALL_VARIABLES[idx];
        // Keep the combination rules out of the way: only the variable under test is set.
        match parse(&[(name, &value)]) {
            Ok(_) => {}
            Err(errs) => {
                prop_assert!(!errs.is_empty());
                for e in errs {
                    prop_assert!(e.variable.contains(name), "{} reported for {}={:?}", e, name, value);
                }
            }
        }
    }

    #[test]
    fn ipv4_cidrs_normalise_and_round_trip(a in any::<u32>(), len in 0u8..=32) {
        let text = format!("{}/{len}", std::net::Ipv4Addr::from(a));
        let c = IpNet::parse_network(&text).expect("valid CIDR");
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
        prop_assert_eq!(c.addr(), std::net::IpAddr::V4((a & mask).into()));
        prop_assert_eq!(IpNet::parse_network(&c.to_string()).ok(), Some(c));
    }
}
