//! Throwaway named network namespaces for kernel tests (include with
//! `#[path = "support/netns.rs"] mod netns;`).
//!
//! Each [`TestNs`] is `/var/run/netns/vcni-<area>-<pid>-<n>`, made with `ip netns add` and deleted
//! with `ip netns del` when dropped, so cleanup also happens when a test fails or panics. Its
//! loopback is up. Nothing in the machine's own namespace is touched.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace that is deleted on drop.
#[derive(Debug)]
pub struct TestNs {
    /// The namespace name (under /var/run/netns).
    pub name: String,
}

impl TestNs {
    /// Creates `vcni-<area>-<pid>-<n>` with `lo` up. Panics with the `ip` error if that fails.
    pub fn new(area: &str) -> TestNs {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("vcni-{area}-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = TestNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `/var/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Runs `ip -n <name> <args>` and returns its stdout; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Runs `ip netns exec <name> <cmd> <args>` and returns its stdout; panics on failure.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> String {
        let mut a = vec!["netns", "exec", self.name.as_str(), cmd];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Like [`TestNs::exec`] but returns (success, stdout + stderr) instead of panicking.
    pub fn try_exec(&self, cmd: &str, args: &[&str]) -> (bool, String) {
        let mut a = vec!["netns", "exec", self.name.as_str(), cmd];
        a.extend_from_slice(args);
        let out = Command::new("ip")
            .args(&a)
            .output()
            .expect("run ip netns exec");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a command, returns stdout, panics with stderr on failure.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (up to 5 s) until link `index` seen through `nl` is operationally up: the kernel attaches
/// the queueing discipline only then, and drops what is sent before.
pub fn wait_oper_up(nl: &mut vpc_cni::netlink::Netlink, index: u32) {
    for _ in 0..500 {
        if nl
            .link_by_index(index)
            .unwrap()
            .is_some_and(|l| l.is_oper_up())
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("link {index} did not come up");
}
