//! The binary itself: argv[0] dispatch through symlinks, --version, `vpc-cni max-pods` and `vpc-cni config`.

#[path = "support/tempdir.rs"]
mod tempdir;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempdir::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_vpc-cni");

/// A directory of symlinks to the binary, removed on drop.
struct LinkDir(TempDir);

impl LinkDir {
    fn new(names: &[&str]) -> LinkDir {
        let dir = TempDir::new("cli");
        for name in names {
            std::os::unix::fs::symlink(BIN, dir.0.join(name)).expect("symlink");
        }
        LinkDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0 .0.join(name)
    }
}

/// Runs `program args` with an empty environment plus `env`, stdin closed.
fn run(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the binary")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn argv0_picks_the_role_through_symlinks() {
    let links = LinkDir::new(&[
        "aws-cni",
        "aws-k8s-agent",
        "ipamd",
        "egress-cni",
        "vpc-cni",
        "something-else",
    ]);

    // The CLI: via its own name and via any other name.
    for name in ["vpc-cni", "something-else"] {
        let out = run(&links.path(name), &["--help"], &[]);
        let (stdout, _) = text(&out);
        assert!(out.status.success(), "{name} --help");
        assert!(
            stdout.contains("usage: vpc-cni <command>"),
            "{name}: {stdout}"
        );
    }

    // The daemon role, under both names: not built yet, or (once built) it refuses a bad configuration at once.
    // Either way it exits non-zero without running, and says why.
    for name in ["aws-k8s-agent", "ipamd"] {
        let out = run(
            &links.path(name),
            &[],
            &[("WARM_ENI_TARGET", "not-a-number")],
        );
        let (stdout, stderr) = text(&out);
        let all = format!("{stdout}{stderr}");
        assert!(!out.status.success(), "{name} must not succeed");
        assert!(
            all.contains("ipamd daemon is not implemented yet") || all.contains("WARM_ENI_TARGET"),
            "{name} did not act as ipamd: {all}"
        );
    }

    // The CNI plugin role (built): without CNI_COMMAND it must fail and name the variable (CNI spec). The CLI
    // would print its usage instead.
    let out = run(&links.path("aws-cni"), &[], &[]);
    let (stdout, stderr) = text(&out);
    let all = format!("{stdout}{stderr}");
    assert!(!out.status.success());
    assert!(
        all.contains("CNI_COMMAND") && !all.contains("not implemented"),
        "aws-cni did not act as a CNI plugin: {all}"
    );
    assert!(!all.contains("usage: vpc-cni"), "{all}");

    let out = run(&links.path("egress-cni"), &[], &[]);
    let (stdout, stderr) = text(&out);
    let all = format!("{stdout}{stderr}");
    assert!(!out.status.success());
    assert!(
        all.contains("egress-cni plugin is not implemented yet") || all.contains("CNI_COMMAND"),
        "egress-cni did not act as a CNI plugin: {all}"
    );
}

#[test]
fn version_shows_the_crate_version_and_git_revision() {
    let out = run(Path::new(BIN), &["--version"], &[]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    let line = stdout.trim_end();
    let rest = line
        .strip_prefix(&format!("vpc-cni {} (", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("unexpected version line {line:?}"));
    let rev = rest.strip_suffix(')').expect("revision in parentheses");
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(head) => assert_eq!(rev, head, "the binary was built from HEAD"),
        None => assert_eq!(rev, "unknown"),
    }
    let out = run(Path::new(BIN), &["-V"], &[]);
    assert_eq!(text(&out).0, stdout);
}

#[test]
fn unknown_commands_and_no_command_are_usage_errors() {
    let out = run(Path::new(BIN), &[], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("usage: vpc-cni"));
    let out = run(Path::new(BIN), &["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("unknown command \"frobnicate\""));
}

fn max_pods(args: &[&str]) -> Output {
    let mut all = vec!["max-pods"];
    all.extend_from_slice(args);
    run(Path::new(BIN), &all, &[])
}

fn max_pods_value(args: &[&str]) -> u32 {
    let out = max_pods(args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "max-pods {args:?}: {stderr}");
    stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("max-pods {args:?} printed {stdout:?}"))
}

#[test]
fn max_pods_command() {
    assert_eq!(max_pods_value(&["--instance-type", "m5.large"]), 29);
    assert_eq!(max_pods_value(&["--instance-type=m5.xlarge"]), 58);
    assert_eq!(max_pods_value(&["--instance-type", "t3.micro"]), 4);
    assert_eq!(max_pods_value(&["--instance-type", "m5.24xlarge"]), 250);
    assert_eq!(
        max_pods_value(&["--instance-type", "m5.24xlarge", "--show-max-allowed"]),
        737
    );
    assert_eq!(
        max_pods_value(&[
            "--instance-type",
            "m5.24xlarge",
            "--max-eni",
            "2",
            "--show-max-allowed"
        ]),
        100
    );
    assert_eq!(
        max_pods_value(&["--instance-type", "m5.large", "--custom-networking"]),
        20
    );
    assert_eq!(
        max_pods_value(&["--instance-type", "m5.large", "--prefix-delegation"]),
        110
    );
    assert_eq!(
        max_pods_value(&[
            "--prefix-delegation",
            "--show-max-allowed",
            "--instance-type",
            "m5.large"
        ]),
        434
    );
    assert_eq!(
        max_pods_value(&["--instance-type", "p4d.24xlarge", "--show-max-allowed"]),
        737
    );
    assert_eq!(max_pods_value(&["--instance-type", "trn1.32xlarge"]), 247);

    // Prefix delegation on a Xen type: the secondary-address value, with a note.
    let out = max_pods(&["--instance-type", "m4.large", "--prefix-delegation"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success());
    assert_eq!(stdout.trim(), "20");
    assert!(
        stderr.contains("prefix delegation is not available"),
        "{stderr}"
    );
    assert_eq!(
        max_pods_value(&["--instance-type", "t2.micro", "--prefix-delegation"]),
        4
    );

    // Unknown type: exit 2, a clear message with the known types of that family.
    let out = max_pods(&["--instance-type", "m5.larg"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("unknown instance type \"m5.larg\"") && stderr.contains("m5.large"),
        "{stderr}"
    );
    let out = max_pods(&["--instance-type", "qq9.huge"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--all"), "{}", text(&out).1);

    // Bad arguments: exit 2 naming the problem.
    for (args, needle) in [
        (&[][..], "--instance-type TYPE (or --all) is required"),
        (&["--instance-type"][..], "--instance-type needs a value"),
        (
            &["--instance-type", "m5.large", "--max-eni", "0"][..],
            "--max-eni \"0\"",
        ),
        (
            &["--instance-type", "m5.large", "--max-eni", "two"][..],
            "--max-eni \"two\"",
        ),
        (&["--instance-type", "m5.large", "--all"][..], "not both"),
        (
            &["--instance-type", "m5.large", "--frob"][..],
            "unknown argument \"--frob\"",
        ),
        (
            &["--instance-type", "m5.large", "--prefix-delegation=yes"][..],
            "takes no value",
        ),
    ] {
        let out = max_pods(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out).1.contains(needle), "{args:?}: {}", text(&out).1);
    }
    let out = max_pods(&["--help"]);
    assert!(out.status.success() && text(&out).0.contains("--show-max-allowed"));
}

#[test]
fn max_pods_all_is_an_eni_max_pods_file() {
    let out = max_pods(&["--all"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), vpc_cni::limits::count());
    for want in [
        "m5.large 29",
        "m5.xlarge 58",
        "t3.micro 4",
        "m5.24xlarge 737",
        "p4d.24xlarge 737",
    ] {
        assert!(lines.contains(&want), "missing {want:?}");
    }
    for line in &lines {
        let (t, v) = line.split_once(' ').expect("two fields");
        let l = vpc_cni::limits::lookup(t).expect("known type");
        assert_eq!(
            v.parse::<u32>().expect("number"),
            vpc_cni::limits::eni_max_pods(&l),
            "{line}"
        );
    }
    // With options, still uncapped.
    let out = max_pods(&["--all", "--prefix-delegation"]);
    assert!(text(&out).0.lines().any(|l| l == "m5.24xlarge 11762"));
}

#[test]
fn config_command_prints_effective_json_or_every_error() {
    let out = run(
        Path::new(BIN),
        &["config"],
        &[
            ("WARM_IP_TARGET", "5"),
            ("AWS_VPC_K8S_CNI_VETHPREFIX", "pod"),
            ("WARM_ENI_TARGET", "-2"),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(v["WARM_IP_TARGET"], 5);
    assert_eq!(v["WARM_ENI_TARGET"], 1);
    assert_eq!(v["AWS_VPC_K8S_CNI_VETHPREFIX"], "pod");
    assert_eq!(v["AWS_VPC_ENI_MTU"], 9001);
    assert_eq!(
        v.as_object().expect("object").len(),
        vpc_cni::config::ALL_VARIABLES.len()
    );
    assert!(stderr.contains("warning: WARM_ENI_TARGET"), "{stderr}");

    let out = run(
        Path::new(BIN),
        &["config"],
        &[
            ("AWS_VPC_ENI_MTU", "100"),
            ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "sometimes"),
            ("MAX_ENI", "many"),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("3 invalid environment variables"),
        "{stderr}"
    );
    for needle in [
        "AWS_VPC_ENI_MTU=\"100\"",
        "576 to 9001",
        "AWS_VPC_K8S_CNI_RANDOMIZESNAT=\"sometimes\"",
        "prng, hashrandom or none",
        "MAX_ENI=\"many\"",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in {stderr}");
    }
    let out = run(Path::new(BIN), &["config", "--bogus"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

/// Runs the built plugin (`aws-cni` via its symlink) with `stdin` and the CNI variables `env`.
fn run_plugin(plugin: &Path, env: &[(&str, &str)], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(plugin)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write the network configuration");
    child.wait_with_output().expect("plugin output")
}

/// The veth prefix follows one rule from `vpc-cni config` through `install-cni` to the plugin's ADD: a prefix
/// the configuration accepts is written into the conflist and accepted by the plugin; one it refuses stops
/// `install-cni` before anything is written.
#[test]
fn veth_prefix_follows_one_rule_from_config_to_add() {
    let links = LinkDir::new(&["aws-cni"]);
    let dirs = |d: &TempDir| {
        (
            d.0.join("net.d").display().to_string(),
            d.0.join("bin").display().to_string(),
        )
    };
    for bad in ["a*", "a\\", "a%", "a\"b", "a/b"] {
        let vars = [("AWS_VPC_K8S_CNI_VETHPREFIX", bad)];
        let out = run(Path::new(BIN), &["config"], &vars);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {stderr}");
        assert!(
            stderr.contains(&format!("AWS_VPC_K8S_CNI_VETHPREFIX={bad:?}")),
            "{bad:?}: {stderr}"
        );
        let d = TempDir::new("vethbad");
        let (conf, bin) = dirs(&d);
        let out = run(
            Path::new(BIN),
            &["install-cni"],
            &[
                vars[0],
                ("HOST_CNI_CONFDIR_PATH", &conf),
                ("HOST_CNI_BIN_PATH", &bin),
            ],
        );
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "install-cni accepted {bad:?}");
        assert!(stderr.contains("AWS_VPC_K8S_CNI_VETHPREFIX"), "{stderr}");
        assert!(!d.0.join("net.d/10-aws.conflist").exists(), "{bad:?}");
    }

    for good in ["v.1", "a-_9", "eni"] {
        let vars = [("AWS_VPC_K8S_CNI_VETHPREFIX", good)];
        let out = run(Path::new(BIN), &["config"], &vars);
        assert!(out.status.success(), "{good:?}: {}", text(&out).1);
        let d = TempDir::new("vethgood");
        let (conf, bin) = dirs(&d);
        let out = run(
            Path::new(BIN),
            &["install-cni"],
            &[
                vars[0],
                ("HOST_CNI_CONFDIR_PATH", &conf),
                ("HOST_CNI_BIN_PATH", &bin),
            ],
        );
        assert!(out.status.success(), "{good:?}: {}", text(&out).1);
        let list: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.0.join("net.d/10-aws.conflist")).unwrap())
                .unwrap();
        // What a runtime hands the first plugin: its entry plus the list's name and cniVersion.
        let mut plugin = list["plugins"][0].clone();
        assert_eq!(plugin["vethPrefix"], good);
        plugin["name"] = list["name"].clone();
        plugin["cniVersion"] = list["cniVersion"].clone();
        let missing_netns = d.0.join("no-such-netns").display().to_string();
        let out = run_plugin(
            &links.path("aws-cni"),
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", &missing_netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", &bin),
            ],
            plugin.to_string().as_bytes(),
        );
        let (stdout, stderr) = text(&out);
        // The ADD gets past the configuration and fails later, on the missing namespace.
        assert!(!out.status.success());
        let err: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{good:?}: no CNI error on stdout ({e}): {stdout}{stderr}"));
        assert_ne!(err["code"], 7, "{good:?}: {err}");
        assert!(
            err["msg"].as_str().unwrap_or("").contains("CNI_NETNS"),
            "{err}"
        );
    }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `vpc-cni config | head -c 10`: the reader goes away before the output is written.
    for args in [&["config"][..], &["max-pods", "--all"], &["--help"]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(BIN)
            .args(args)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run the binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked"),
            "vpc-cni {args:?} into a closed pipe: {:?}, stderr {stderr:?}",
            out.status
        );
    }
}
