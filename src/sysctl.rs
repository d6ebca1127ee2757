//! Kernel parameters under `/proc/sys` (an injectable root for tests).
//!
//! `net.*` entries belong to the network namespace of the thread that opens the file: to set one
//! inside a pod namespace, call these methods within `Netns::run`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A failed read or write of one key.
#[derive(Debug)]
pub struct Error {
    /// The key, e.g. `net/ipv4/conf/eth0/rp_filter`.
    pub key: String,
    /// The value we tried to write (`None` for a read).
    pub value: Option<String>,
    /// Why.
    pub cause: ErrorCause,
}

/// Why a sysctl operation failed.
#[derive(Debug)]
pub enum ErrorCause {
    /// The file could not be read or written.
    Io(io::Error),
    /// The key or value is malformed; the text says what is allowed.
    Invalid(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "set sysctl {}={v}: ", self.key)?,
            None => write!(f, "read sysctl {}: ", self.key)?,
        }
        match &self.cause {
            ErrorCause::Io(e) => match e.raw_os_error() {
                Some(n) => write!(f, "{}", crate::netlink::ErrnoText(n)),
                None => write!(f, "{e}"),
            },
            ErrorCause::Invalid(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            ErrorCause::Io(e) => Some(e),
            ErrorCause::Invalid(_) => None,
        }
    }
}

/// Reads and writes sysctls below a root directory (`/proc/sys` by default).
#[derive(Debug, Clone)]
pub struct Sysctl {
    root: PathBuf,
}

impl Default for Sysctl {
    fn default() -> Self {
        Sysctl::new()
    }
}

fn check_ifname(key: &str, ifname: &str) -> Result<(), Error> {
    if ifname.is_empty()
        || ifname.len() > 15
        || ifname.contains('/')
        || ifname == "."
        || ifname == ".."
    {
        return Err(Error {
            key: key.to_string(),
            value: None,
            cause: ErrorCause::Invalid(format!(
                "interface name {ifname:?} is not valid (1 to 15 bytes, no '/'; \"all\" and \"default\" are allowed)"
            )),
        });
    }
    Ok(())
}

impl Sysctl {
    /// Sysctls of the running kernel, `/proc/sys`.
    pub fn new() -> Self {
        Sysctl {
            root: PathBuf::from("/proc/sys"),
        }
    }

    /// Sysctls below `root` (tests point this at a temporary directory).
    pub fn with_root(root: impl AsRef<Path>) -> Self {
        Sysctl {
            root: root.as_ref().to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, ErrorCause> {
        // `net/ipv4/conf/eth0.100/rp_filter`: slashes separate, since interface names may hold dots.
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(ErrorCause::Invalid(format!(
                "key {key:?} is not valid (slash-separated, like net/ipv4/ip_forward)"
            )));
        }
        Ok(self.root.join(key))
    }

    /// Writes `value` to `key` (e.g. `net/ipv4/ip_forward`, `1`): `sysctl -w`.
    pub fn set(&self, key: &str, value: &str) -> Result<(), Error> {
        let err = |cause| Error {
            key: key.to_string(),
            value: Some(value.to_string()),
            cause,
        };
        let path = self.path(key).map_err(err)?;
        std::fs::write(path, value).map_err(|e| err(ErrorCause::Io(e)))
    }

    /// Reads `key`, trimmed.
    pub fn get(&self, key: &str) -> Result<String, Error> {
        let err = |cause| Error {
            key: key.to_string(),
            value: None,
            cause,
        };
        let path = self.path(key).map_err(err)?;
        let s = std::fs::read_to_string(path).map_err(|e| err(ErrorCause::Io(e)))?;
        Ok(s.trim().to_string())
    }

    fn set_if(&self, family: &str, ifname: &str, name: &str, value: &str) -> Result<(), Error> {
        let key = format!("net/{family}/conf/{ifname}/{name}");
        check_ifname(&key, ifname)?;
        self.set(&key, value)
    }

    /// `net.ipv4.conf.<if>.rp_filter` (0 off, 1 strict, 2 loose; upstream sets 2 on the primary ENI).
    pub fn set_rp_filter(&self, ifname: &str, mode: u8) -> Result<(), Error> {
        if mode > 2 {
            return Err(Error {
                key: format!("net/ipv4/conf/{ifname}/rp_filter"),
                value: Some(mode.to_string()),
                cause: ErrorCause::Invalid("rp_filter must be 0, 1 or 2".into()),
            });
        }
        self.set_if("ipv4", ifname, "rp_filter", &mode.to_string())
    }

    /// `net.ipv4.ip_forward`.
    pub fn set_ip_forward(&self, on: bool) -> Result<(), Error> {
        self.set("net/ipv4/ip_forward", bit(on))
    }

    /// `net.ipv4.tcp_early_demux` (upstream turns it off with `DISABLE_TCP_EARLY_DEMUX=true`).
    pub fn set_tcp_early_demux(&self, on: bool) -> Result<(), Error> {
        self.set("net/ipv4/tcp_early_demux", bit(on))
    }

    /// `net.ipv6.conf.<if>.forwarding` (`all` for every interface).
    pub fn set_ipv6_forwarding(&self, ifname: &str, on: bool) -> Result<(), Error> {
        self.set_if("ipv6", ifname, "forwarding", bit(on))
    }

    /// `net.ipv6.conf.<if>.accept_ra` (0 never, 1 if not forwarding, 2 always).
    pub fn set_accept_ra(&self, ifname: &str, value: u8) -> Result<(), Error> {
        if value > 2 {
            return Err(Error {
                key: format!("net/ipv6/conf/{ifname}/accept_ra"),
                value: Some(value.to_string()),
                cause: ErrorCause::Invalid("accept_ra must be 0, 1 or 2".into()),
            });
        }
        self.set_if("ipv6", ifname, "accept_ra", &value.to_string())
    }

    /// `net.ipv6.conf.<if>.accept_redirects`.
    pub fn set_accept_redirects(&self, ifname: &str, on: bool) -> Result<(), Error> {
        self.set_if("ipv6", ifname, "accept_redirects", bit(on))
    }

    /// `net.ipv6.conf.<if>.disable_ipv6`.
    pub fn set_disable_ipv6(&self, ifname: &str, disabled: bool) -> Result<(), Error> {
        self.set_if("ipv6", ifname, "disable_ipv6", bit(disabled))
    }
}

fn bit(on: bool) -> &'static str {
    if on {
        "1"
    } else {
        "0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vcni-sysctl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for p in [
            "net/ipv4/conf/eth0",
            "net/ipv4/conf/eth0.100",
            "net/ipv6/conf/eni1",
            "net/ipv6/conf/all",
        ] {
            std::fs::create_dir_all(d.join(p)).unwrap();
        }
        d
    }

    #[test]
    fn writes_the_documented_files() {
        let d = root("files");
        let s = Sysctl::with_root(&d);
        s.set_rp_filter("eth0", 2).unwrap();
        s.set_rp_filter("eth0.100", 2).unwrap();
        s.set_ip_forward(true).unwrap();
        s.set_tcp_early_demux(false).unwrap();
        s.set_accept_ra("eni1", 0).unwrap();
        s.set_accept_redirects("eni1", true).unwrap();
        s.set_ipv6_forwarding("eni1", false).unwrap();
        s.set_ipv6_forwarding("all", true).unwrap();
        s.set_disable_ipv6("eni1", true).unwrap();
        let read = |k: &str| std::fs::read_to_string(d.join(k)).unwrap();
        assert_eq!(read("net/ipv4/conf/eth0/rp_filter"), "2");
        assert_eq!(read("net/ipv4/conf/eth0.100/rp_filter"), "2");
        assert_eq!(read("net/ipv4/ip_forward"), "1");
        assert_eq!(read("net/ipv4/tcp_early_demux"), "0");
        assert_eq!(read("net/ipv6/conf/eni1/accept_ra"), "0");
        assert_eq!(read("net/ipv6/conf/eni1/accept_redirects"), "1");
        assert_eq!(read("net/ipv6/conf/eni1/forwarding"), "0");
        assert_eq!(read("net/ipv6/conf/all/forwarding"), "1");
        assert_eq!(read("net/ipv6/conf/eni1/disable_ipv6"), "1");
        assert_eq!(s.get("net/ipv4/ip_forward").unwrap(), "1");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn errors_name_key_and_value() {
        let d = root("errors");
        let s = Sysctl::with_root(&d);
        let e = s.set_rp_filter("nosuch0", 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "set sysctl net/ipv4/conf/nosuch0/rp_filter=2: No such file or directory (ENOENT)"
        );
        let e = s.set_rp_filter("eth0", 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "set sysctl net/ipv4/conf/eth0/rp_filter=3: rp_filter must be 0, 1 or 2"
        );
        let e = s.set_accept_ra("../x", 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("interface name \"../x\" is not valid"),
            "{e}"
        );
        let e = s.set("net/../../etc/passwd", "x").unwrap_err();
        assert!(
            e.to_string().contains("is not valid (slash-separated"),
            "{e}"
        );
        let e = s.get("net/ipv4/nothing").unwrap_err();
        assert_eq!(
            e.to_string(),
            "read sysctl net/ipv4/nothing: No such file or directory (ENOENT)"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
