//! Installing the plugin on a node: `10-aws.conflist` (written atomically) and the binary linked as `aws-cni`.
//!
//! ipamd calls [`install`] once it is ready to serve ADDs (as upstream writes the conflist only after
//! `waitForIPAM`), so the runtime never schedules a pod onto a node whose ipamd cannot answer. The CLI exposes the
//! same as `vpc-cni install-cni`.
//!
//! The conflist uses cniVersion **0.4.0**, as upstream does, so runtimes with older libcni (which know nothing of
//! 1.x) accept it; the plugin itself speaks 0.3.0 … 1.1.0. Unlike upstream it does not set `disableCheck`: this
//! plugin implements CHECK.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::config::{Config, ConfigError};
use crate::fsutil::{self, FsError};
use crate::net::VethPrefix;

/// The conflist file name.
pub const CONFLIST_NAME: &str = "10-aws.conflist";
/// Network name in the conflist (part of every ipamd assignment key).
pub const NETWORK_NAME: &str = "aws-cni";
/// cniVersion written into the conflist.
pub const CONFLIST_VERSION: &str = "0.4.0";

/// What the conflist and the install depend on. Built from the crate's [`Config`]: the directories default to
/// the container paths `/host/etc/cni/net.d` and `/host/opt/cni/bin` as upstream; a node install (the systemd
/// unit) sets `HOST_CNI_CONFDIR_PATH=/etc/cni/net.d` and `HOST_CNI_BIN_PATH=/opt/cni/bin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallConfig {
    /// `HOST_CNI_CONFDIR_PATH`.
    pub conf_dir: PathBuf,
    /// `HOST_CNI_BIN_PATH`.
    pub bin_dir: PathBuf,
    /// `AWS_VPC_K8S_CNI_VETHPREFIX`.
    pub veth_prefix: VethPrefix,
    /// `POD_MTU`, else `AWS_VPC_ENI_MTU`, else 9001.
    pub mtu: u32,
    /// `AWS_VPC_K8S_PLUGIN_LOG_FILE` (`stderr` or a path).
    pub plugin_log_file: String,
    /// `AWS_VPC_K8S_PLUGIN_LOG_LEVEL`.
    pub plugin_log_level: String,
    /// `POD_SECURITY_GROUP_ENFORCING_MODE`.
    pub pod_sg_enforcing_mode: String,
    /// `ENABLE_BANDWIDTH_PLUGIN`.
    pub enable_bandwidth: bool,
    /// `DISABLE_POD_V6`.
    pub disable_pod_v6: bool,
}

/// Why installing failed.
#[derive(Debug)]
pub enum InstallError {
    /// The environment has invalid values (each names the variable and what is allowed).
    Config(Vec<ConfigError>),
    /// A file operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::Config(errors) => {
                let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
                write!(f, "{}", all.join("; "))
            }
            InstallError::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for InstallError {}

impl InstallConfig {
    /// The install settings of a validated configuration.
    pub fn from_config(c: &Config) -> InstallConfig {
        InstallConfig {
            conf_dir: c.host_cni_confdir_path.clone(),
            bin_dir: c.host_cni_bin_path.clone(),
            veth_prefix: c.veth_prefix.clone(),
            mtu: u32::from(c.pod_mtu),
            plugin_log_file: c.plugin_log_file.display(),
            plugin_log_level: c.plugin_log_level.as_str().to_string(),
            pod_sg_enforcing_mode: c.pod_security_group_enforcing_mode.as_str().to_string(),
            enable_bandwidth: c.enable_bandwidth_plugin,
            disable_pod_v6: c.disable_pod_v6,
        }
    }

    /// Reads and validates the environment through `get` ([`Config::from_env`]).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<InstallConfig, InstallError> {
        let (config, _warnings) = Config::from_env(get).map_err(InstallError::Config)?;
        Ok(InstallConfig::from_config(&config))
    }
}

/// The conflist (pure).
pub fn conflist(cfg: &InstallConfig) -> Value {
    let mut plugins = vec![
        json!({
            "name": NETWORK_NAME,
            "type": "aws-cni",
            "vethPrefix": cfg.veth_prefix.as_str(),
            "mtu": cfg.mtu.to_string(),
            "podSGEnforcingMode": cfg.pod_sg_enforcing_mode,
            "pluginLogFile": cfg.plugin_log_file,
            "pluginLogLevel": cfg.plugin_log_level,
            "capabilities": {"io.kubernetes.cri.pod-annotations": true},
        }),
        json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
        }),
    ];
    if cfg.enable_bandwidth {
        plugins.push(json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}));
    }
    if cfg.disable_pod_v6 {
        plugins.push(json!({
            "type": "tuning",
            "sysctl": {
                "net.ipv6.conf.all.disable_ipv6": "1",
                "net.ipv6.conf.default.disable_ipv6": "1",
                "net.ipv6.conf.lo.disable_ipv6": "1",
            },
        }));
    }
    json!({
        "cniVersion": CONFLIST_VERSION,
        "name": NETWORK_NAME,
        "plugins": plugins,
    })
}

/// Writes `bytes` to `path` atomically ([`fsutil::write_atomically`], mode 0644 so the runtime can
/// read it), creating the directory first.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let dir = fsutil::parent_dir(path);
    std::fs::create_dir_all(dir).map_err(|source| InstallError::Io {
        op: "create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    fsutil::write_atomically(path, bytes, 0o644)
        .map_err(|FsError { op, path, source }| InstallError::Io { op, path, source })
}

/// Links (or copies, across file systems) `exe` as `<bin_dir>/aws-cni`, replacing an older one atomically.
pub fn install_binary(exe: &Path, bin_dir: &Path) -> Result<PathBuf, InstallError> {
    let io = |op, p: &Path, source| InstallError::Io {
        op,
        path: p.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(bin_dir).map_err(|e| io("create directory", bin_dir, e))?;
    let target = bin_dir.join("aws-cni");
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(exe), std::fs::canonicalize(&target)) {
        if a == b {
            return Ok(target); // Running as the installed plugin already.
        }
    }
    let tmp = bin_dir.join(format!(".aws-cni.tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(exe, &tmp).is_err() {
        std::fs::copy(exe, &tmp).map_err(|e| io("copy the binary to", &tmp, e))?;
    }
    std::fs::rename(&tmp, &target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("rename into place", &target, e)
    })?;
    Ok(target)
}

/// Installs the binary (the running executable) and then the conflist, in that order, so the runtime never sees
/// a conflist naming a plugin that is not there yet. Returns the conflist path.
pub fn install(cfg: &InstallConfig) -> Result<PathBuf, InstallError> {
    let exe = std::env::current_exe().map_err(|e| InstallError::Io {
        op: "find the running executable",
        path: PathBuf::from("/proc/self/exe"),
        source: e,
    })?;
    install_binary(&exe, &cfg.bin_dir)?;
    let path = cfg.conf_dir.join(CONFLIST_NAME);
    let mut bytes = serde_json::to_vec_pretty(&conflist(cfg)).map_err(|e| InstallError::Io {
        op: "encode",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    bytes.push(b'\n');
    write_atomically(&path, &bytes)?;
    Ok(path)
}

/// `vpc-cni install-cni`: install from the environment and print where.
pub fn cli_main(args: &[String]) -> ExitCode {
    if let Some(extra) = args.first() {
        eprintln!(
            "vpc-cni install-cni: unexpected argument {extra:?}; it takes none and reads HOST_CNI_CONFDIR_PATH, \
             HOST_CNI_BIN_PATH and the plugin settings from the environment"
        );
        return ExitCode::from(2);
    }
    let result = InstallConfig::from_vars(|k| std::env::var(k).ok())
        .and_then(|cfg| install(&cfg).map(|p| (cfg, p)));
    match result {
        Ok((cfg, path)) => {
            println!(
                "installed {} and {}",
                cfg.bin_dir.join("aws-cni").display(),
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vpc-cni install-cni: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<InstallConfig, InstallError> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        InstallConfig::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_are_upstreams() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.conf_dir, PathBuf::from("/host/etc/cni/net.d"));
        assert_eq!(c.bin_dir, PathBuf::from("/host/opt/cni/bin"));
        let node = cfg(&[
            ("HOST_CNI_CONFDIR_PATH", "/etc/cni/net.d"),
            ("HOST_CNI_BIN_PATH", "/opt/cni/bin"),
        ])
        .unwrap();
        assert_eq!(node.conf_dir, PathBuf::from("/etc/cni/net.d"));
        let j = conflist(&c);
        assert_eq!(j["cniVersion"], "0.4.0");
        assert_eq!(j["name"], "aws-cni");
        let p = j["plugins"].as_array().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0]["type"], "aws-cni");
        assert_eq!(p[0]["vethPrefix"], "eni");
        assert_eq!(p[0]["mtu"], "9001");
        assert_eq!(p[0]["podSGEnforcingMode"], "strict");
        assert_eq!(
            p[0]["capabilities"]["io.kubernetes.cri.pod-annotations"],
            true
        );
        assert_eq!(p[1]["type"], "portmap");
        assert_eq!(p[1]["snat"], true);
        assert_eq!(p[1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn pod_mtu_wins_and_optional_plugins_follow_flags() {
        let c = cfg(&[
            ("POD_MTU", "1500"),
            ("AWS_VPC_ENI_MTU", "9000"),
            ("ENABLE_BANDWIDTH_PLUGIN", "true"),
            ("DISABLE_POD_V6", "true"),
            ("AWS_VPC_K8S_CNI_VETHPREFIX", "pod"),
        ])
        .unwrap();
        let j = conflist(&c);
        let p = j["plugins"].as_array().unwrap();
        assert_eq!(p[0]["mtu"], "1500");
        assert_eq!(p[0]["vethPrefix"], "pod");
        assert_eq!(p[2]["type"], "bandwidth");
        assert_eq!(p[3]["type"], "tuning");
        assert_eq!(p[3]["sysctl"]["net.ipv6.conf.all.disable_ipv6"], "1");
        assert_eq!(cfg(&[("AWS_VPC_ENI_MTU", "1400")]).unwrap().mtu, 1400);
    }

    #[test]
    fn bad_values_name_the_variable_and_what_is_allowed() {
        for (k, v) in [
            ("POD_MTU", "100"),
            ("AWS_VPC_K8S_CNI_VETHPREFIX", "toolong"),
            ("AWS_VPC_K8S_CNI_VETHPREFIX", "eth"),
            ("ENABLE_BANDWIDTH_PLUGIN", "yes please"),
            ("POD_SECURITY_GROUP_ENFORCING_MODE", "loose"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(k) && e.contains("invalid"), "{e}");
        }
    }

    #[test]
    fn conflist_and_binary_are_installed_atomically() {
        let dir = std::env::temp_dir().join(format!("vcni-install-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = InstallConfig {
            conf_dir: dir.join("net.d"),
            bin_dir: dir.join("bin"),
            ..cfg(&[]).unwrap()
        };
        let path = install(&c).unwrap();
        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written, conflist(&c));
        assert!(dir.join("bin/aws-cni").is_file());
        // Again, over the existing files: still one conflist, no temp files left.
        install(&c).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.join("net.d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CONFLIST_NAME)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
