//! `scripts/oci-image`: the OCI image layout it writes is read by Debian's skopeo and unpacked by umoci (which
//! checks every digest and size), holds the binary byte for byte with the entry points the README names, is the
//! same on every run, and a corrupted copy is refused. Needs root (umoci unpack) and the tools of
//! `scripts/setup-packaging` (run here when they are missing).

#![allow(clippy::unwrap_used)]

#[path = "support/tempdir.rs"]
mod tempdir;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempdir::TempDir;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn tools() -> bool {
    let needed = ["skopeo", "umoci"];
    if !needed.iter().all(|t| have(t)) {
        let _ = Command::new(format!("{ROOT}/scripts/setup-packaging")).status();
    }
    let missing: Vec<&&str> = needed.iter().filter(|t| !have(t)).collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED: {missing:?} missing and scripts/setup-packaging could not install them"
        );
        return false;
    }
    true
}

/// The static release binary when scripts/check-release built it (scripts/test does, before cargo test), else
/// this build's (then the unpacked image is not run).
fn binary() -> (PathBuf, bool) {
    let release = Path::new(ROOT).join("target/x86_64-unknown-linux-musl/release/vpc-cni");
    if release.exists() {
        (release, true)
    } else {
        eprintln!(
            "no release binary (scripts/check-release): packing the test build, not running it"
        );
        (PathBuf::from(env!("CARGO_BIN_EXE_vpc-cni")), false)
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn oci_image(out: &Path, args: &[&str]) {
    let (bin, _) = binary();
    run(Command::new(format!("{ROOT}/scripts/oci-image"))
        .arg("--out")
        .arg(out)
        .arg("--binary")
        .arg(bin)
        .args(args));
}

fn skopeo(args: &[&str], layout: &Path, reference: &str) -> Output {
    Command::new("skopeo")
        .arg("inspect")
        .args(args)
        .arg(format!("oci:{}:{reference}", layout.display()))
        .output()
        .unwrap()
}

fn inspect(layout: &Path, reference: &str, config: bool) -> Value {
    let out = skopeo(if config { &["--config"] } else { &[] }, layout, reference);
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn umoci_unpack(layout: &Path, reference: &str, bundle: &Path) -> Output {
    Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{reference}", layout.display()))
        .arg(bundle)
        .output()
        .unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn env_of(config: &Value) -> Vec<String> {
    config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn layout_is_read_by_skopeo_and_unpacked_by_umoci() {
    if !tools() {
        return;
    }
    let dir = TempDir::new("oci");
    let layout = dir.0.join("layout");
    oci_image(&layout, &["--tag", "t1", "--env", "WARM_IP_TARGET=5"]);
    let (bin, static_release) = binary();

    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(refs, ["t1", "t1-install"]);

    for (reference, entrypoint) in [
        ("t1", vec!["/usr/bin/aws-k8s-agent"]),
        ("t1-install", vec!["/usr/bin/vpc-cni", "install-cni"]),
    ] {
        let image = inspect(&layout, reference, false);
        assert_eq!(image["Architecture"], "amd64");
        assert_eq!(image["Os"], "linux");
        let layers = image["Layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "one layer: {image}");
        let config = inspect(&layout, reference, true);
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(entrypoint)
        );
        assert!(env_of(&config).contains(&"WARM_IP_TARGET=5".to_string()));
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);

        // umoci checks each blob's digest and size while it unpacks.
        let bundle = dir.0.join(format!("bundle-{reference}"));
        let out = umoci_unpack(&layout, reference, &bundle);
        assert!(
            out.status.success(),
            "umoci unpack {reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rootfs = bundle.join("rootfs");
        assert_eq!(
            std::fs::read(rootfs.join("usr/bin/vpc-cni")).unwrap(),
            std::fs::read(&bin).unwrap(),
            "the binary, byte for byte"
        );
        for link in ["aws-k8s-agent", "aws-cni"] {
            assert_eq!(
                std::fs::read_link(rootfs.join("usr/bin").join(link)).unwrap(),
                PathBuf::from("vpc-cni")
            );
        }
        let mut names: Vec<String> = walk(&rootfs);
        names.sort();
        assert_eq!(
            names,
            [
                "usr",
                "usr/bin",
                "usr/bin/aws-cni",
                "usr/bin/aws-k8s-agent",
                "usr/bin/vpc-cni"
            ],
            "nothing but the binary and its links"
        );
        let runtime: Value =
            serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(runtime["process"]["args"], serde_json::json!(entrypoint));
        if static_release && reference == "t1" {
            // The static binary runs in the unpacked root, which has nothing else.
            let out = run(Command::new("chroot")
                .arg(&rootfs)
                .args(["/usr/bin/vpc-cni", "--version"]));
            assert!(String::from_utf8_lossy(&out.stdout).starts_with("vpc-cni "));
        }
    }

    // Reproducible: the same input gives the same digests.
    let again = dir.0.join("again");
    oci_image(&again, &["--tag", "t1", "--env", "WARM_IP_TARGET=5"]);
    assert_eq!(
        std::fs::read(layout.join("index.json")).unwrap(),
        std::fs::read(again.join("index.json")).unwrap()
    );
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn a_corrupted_layout_is_refused() {
    if !tools() {
        return;
    }
    let dir = TempDir::new("oci-bad");
    let layout = dir.0.join("layout");
    oci_image(&layout, &["--tag", "t1"]);
    let image = inspect(&layout, "t1", false);
    let layer = blob(&layout, image["Layers"][0].as_str().unwrap());

    // One flipped byte in the layer: umoci's digest check refuses it.
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer, &bytes).unwrap();
    let out = umoci_unpack(&layout, "t1", &dir.0.join("bundle"));
    assert!(!out.status.success(), "umoci unpacked a corrupted layer");

    // A missing config blob: skopeo cannot read the image.
    let config = inspect(&layout, "t1", false);
    let manifest = blob(&layout, config["Digest"].as_str().unwrap());
    let m: Value = serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    std::fs::remove_file(blob(&layout, m["config"]["digest"].as_str().unwrap())).unwrap();
    assert!(!skopeo(&["--config"], &layout, "t1").status.success());
    // And a reference the index does not name.
    assert!(!skopeo(&[], &layout, "t2").status.success());
}

#[test]
fn bottlerocket_images_point_ipamd_at_the_host_paths() {
    if !tools() {
        return;
    }
    let dir = TempDir::new("oci-br");
    let layout = dir.0.join("layout");
    oci_image(&layout, &["--bottlerocket", "--tag", "v1-bottlerocket"]);
    let user_data = std::fs::read_to_string(format!("{ROOT}/bottlerocket/user-data.toml")).unwrap();
    for reference in ["v1-bottlerocket", "v1-bottlerocket-install"] {
        let env = env_of(&inspect(&layout, reference, true));
        for want in [
            "HOST_CNI_BIN_PATH=/.bottlerocket/rootfs/opt/cni/bin",
            "HOST_CNI_CONFDIR_PATH=/.bottlerocket/rootfs/etc/cni/net.d",
            "VPC_CNI_IPAMD_SOCKET=/.bottlerocket/rootfs/run/aws-node/ipamd.sock",
            "AWS_VPC_K8S_CNI_BACKING_STORE=/.bottlerocket/rootfs/run/aws-node/ipam.json",
            "SSL_CERT_FILE=/.bottlerocket/rootfs/etc/pki/tls/certs/ca-bundle.crt",
        ] {
            assert!(
                env.contains(&want.to_string()),
                "{reference}: {want} in {env:?}"
            );
        }
        // The user data names the refs the script writes (REGISTRY/vpc-cni:VERSION-bottlerocket[-install]).
        let suffix = reference.trim_start_matches("v1");
        assert!(
            user_data.contains(&format!("\"REGISTRY/vpc-cni:VERSION{suffix}\"")),
            "user-data.toml names :VERSION{suffix}"
        );
        // Our configuration accepts the baked environment as it is.
        let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
            .arg("config")
            .env_clear()
            .envs(env.iter().filter_map(|kv| kv.split_once('=')))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vpc-cni config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            cfg["HOST_CNI_BIN_PATH"],
            "/.bottlerocket/rootfs/opt/cni/bin"
        );
        assert_eq!(cfg["AWS_VPC_K8S_CNI_LOG_FILE"], "stdout");
    }
    assert!(user_data.contains("superpowered = true"));
}

#[test]
fn bottlerocket_user_data_is_toml_with_bottlerocket_s_setting_names() {
    let path = format!("{ROOT}/bottlerocket/user-data.toml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))",
            &path,
        ])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'tomllib'") => {
            eprintln!("SKIPPED: python3 has no tomllib (3.11+)");
            return;
        }
        other => panic!("parse {path}: {other:?}"),
    };
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = |o: &Value| -> BTreeSet<String> { o.as_object().unwrap().keys().cloned().collect() };
    let host = &v["settings"]["host-containers"]["vpc-cni"];
    // Bottlerocket's keys: host containers take enabled, source, superpowered, user-data; bootstrap containers
    // source, mode (off, once, always), essential, user-data.
    assert_eq!(
        keys(host),
        ["enabled", "source", "superpowered"]
            .map(String::from)
            .into()
    );
    assert_eq!(host["enabled"], true);
    assert_eq!(host["superpowered"], true);
    let boot = &v["settings"]["bootstrap-containers"]["vpc-cni-install"];
    assert_eq!(
        keys(boot),
        ["essential", "mode", "source"].map(String::from).into()
    );
    assert!(["off", "once", "always"].contains(&boot["mode"].as_str().unwrap()));
    assert!(boot["essential"].is_boolean());
    assert_eq!(
        keys(&v["settings"]),
        ["bootstrap-containers", "host-containers"]
            .map(String::from)
            .into()
    );
}
