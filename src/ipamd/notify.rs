//! systemd's notify protocol (`sd_notify(3)`): datagrams like `READY=1` to `$NOTIFY_SOCKET`.
//!
//! What ipamd sends, in order: `STATUS=start-up failed: …` if start-up fails; `READY=1` with the
//! pool's `STATUS=` once the pool is filled, the plugin socket is served and the conflist is
//! written; a new `STATUS=` line whenever the pool's counts change; `WATCHDOG=1` every half
//! `WATCHDOG_USEC` when the unit sets `WatchdogSec=` (sent from the main loop, so a loop that hangs
//! stops the pings and systemd restarts the service); `STOPPING=1` on SIGTERM/SIGINT.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::ipam::Datastore;

/// A connection to the service manager, if it asked for notifications.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket); none when unset.
    pub fn from_env(value: Option<String>) -> io::Result<Notifier> {
        let Some(v) = value.filter(|v| !v.is_empty()) else {
            return Ok(Notifier { socket: None });
        };
        let addr = if let Some(name) = v.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?
        } else {
            std::os::unix::net::SocketAddr::from_pathname(&v)?
        };
        Ok(Notifier {
            socket: Some((UnixDatagram::unbound()?, addr)),
        })
    }

    /// No notifications.
    pub fn disabled() -> Notifier {
        Notifier { socket: None }
    }

    /// Whether notifications go anywhere.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `state` (newline-separated `KEY=value` lines); a no-op without a socket.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        match &self.socket {
            Some((s, addr)) => s.send_to_addr(state.as_bytes(), addr).map(|_| ()),
            None => Ok(()),
        }
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as `sd_watchdog_enabled(3)` advises.
/// `None` when the variable is unset, not a positive integer, or when `WATCHDOG_PID` is set and
/// names another process (the watchdog is then not meant for this one).
pub fn watchdog_period(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(p) = pid.filter(|p| !p.is_empty()) {
        if p.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

/// The pool counts shown in `STATUS=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// ENIs in the datastore.
    pub enis: u32,
    /// Addresses that can be handed to pods (a /28 prefix counts 16).
    pub total: u32,
    /// Of those, assigned.
    pub assigned: u32,
    /// Pods (distinct container ids) holding addresses.
    pub pods: u32,
}

impl PoolStatus {
    /// The counts of `ds` at `now` (the pure core's clock).
    pub fn of(ds: &Datastore, now: crate::ipam::Instant) -> PoolStatus {
        let s = ds.stats(now);
        let pods: BTreeSet<&str> = ds
            .allocations()
            .map(|(_, a)| a.key.container_id.as_str())
            .collect();
        PoolStatus {
            enis: s.enis,
            total: s.total,
            assigned: s.assigned,
            pods: u32::try_from(pods.len()).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for PoolStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "serving pod addresses: {} ENIs, {} addresses, {} assigned, {} pods",
            self.enis, self.total, self.assigned, self.pods
        )
    }
}

/// What the daemon's loop tells the service manager: `STATUS=` when the pool changed, `WATCHDOG=1`
/// when due.
#[derive(Debug)]
pub struct LoopNotifier {
    notifier: Notifier,
    period: Option<Duration>,
    next_ping: Option<Instant>,
    last: Option<PoolStatus>,
}

impl LoopNotifier {
    /// Notifications through `notifier`, watchdog pings every `period` (if any).
    pub fn new(notifier: Notifier, period: Option<Duration>) -> LoopNotifier {
        LoopNotifier {
            notifier,
            period,
            next_ping: None,
            last: None,
        }
    }

    /// From the environment systemd gives a `Type=notify` service.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> io::Result<LoopNotifier> {
        let notifier = Notifier::from_env(get("NOTIFY_SOCKET"))?;
        let period = watchdog_period(
            get("WATCHDOG_USEC").as_deref(),
            get("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        Ok(LoopNotifier::new(notifier, period))
    }

    /// The watchdog ping period, if the service manager asked for one.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.period.filter(|_| self.notifier.enabled())
    }

    /// Sends a raw state (start-up failure, `STOPPING=1`).
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.notifier.notify(state)
    }

    /// `READY=1` with the pool's status; the first watchdog ping goes with it.
    pub fn ready(&mut self, now: Instant, status: PoolStatus) -> io::Result<()> {
        let mut msg = format!("READY=1\nSTATUS={status}");
        if let Some(p) = self.watchdog_period() {
            msg.push_str("\nWATCHDOG=1");
            self.next_ping = Some(now + p);
        }
        self.last = Some(status);
        self.notifier.notify(&msg)
    }

    /// How long the loop may wait before the next ping is due (`None`: no watchdog).
    pub fn until_ping(&self, now: Instant) -> Option<Duration> {
        self.watchdog_period()?;
        Some(
            self.next_ping
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(now)),
        )
    }

    /// One turn of the loop: `STATUS=` if the counts changed, `WATCHDOG=1` if due. Both in one
    /// datagram when both are due.
    pub fn beat(&mut self, now: Instant, status: PoolStatus) -> io::Result<()> {
        let mut lines = Vec::new();
        if self.last != Some(status) {
            lines.push(format!("STATUS={status}"));
            self.last = Some(status);
        }
        if let Some(p) = self.watchdog_period() {
            if self.next_ping.is_none_or(|t| now >= t) {
                lines.push("WATCHDOG=1".to_string());
                self.next_ping = Some(now + p);
            }
        }
        if lines.is_empty() {
            return Ok(());
        }
        self.notifier.notify(&lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_period_is_half_the_interval_and_only_for_this_process() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_period(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_period(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_period(Some("30000000"), Some(""), 7), half);
        assert_eq!(watchdog_period(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_period(Some("0"), None, 7), None);
        assert_eq!(watchdog_period(Some("x"), None, 7), None);
        assert_eq!(watchdog_period(None, Some("7"), 7), None);
    }

    fn listener() -> (UnixDatagram, std::path::PathBuf, LoopNotifier) {
        let path = std::env::temp_dir().join(format!(
            "vpc-cni-notify-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_nonblocking(true).unwrap();
        let n = Notifier::from_env(Some(path.display().to_string())).unwrap();
        (
            sock,
            path,
            LoopNotifier::new(n, Some(Duration::from_secs(10))),
        )
    }

    fn drain(sock: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn status_only_on_change_and_pings_when_due() {
        let (sock, path, mut ln) = listener();
        let t0 = Instant::now();
        let s1 = PoolStatus {
            enis: 1,
            total: 9,
            assigned: 0,
            pods: 0,
        };
        ln.ready(t0, s1).unwrap();
        assert_eq!(
            drain(&sock),
            vec!["READY=1\nSTATUS=serving pod addresses: 1 ENIs, 9 addresses, 0 assigned, 0 pods\nWATCHDOG=1"]
        );
        assert_eq!(ln.until_ping(t0), Some(Duration::from_secs(10)));
        ln.beat(t0 + Duration::from_secs(1), s1).unwrap();
        assert!(drain(&sock).is_empty(), "nothing changed, nothing due");
        let s2 = PoolStatus {
            assigned: 1,
            pods: 1,
            ..s1
        };
        ln.beat(t0 + Duration::from_secs(2), s2).unwrap();
        assert_eq!(
            drain(&sock),
            vec!["STATUS=serving pod addresses: 1 ENIs, 9 addresses, 1 assigned, 1 pods"]
        );
        ln.beat(t0 + Duration::from_secs(10), s2).unwrap();
        assert_eq!(drain(&sock), vec!["WATCHDOG=1"]);
        assert_eq!(
            ln.until_ping(t0 + Duration::from_secs(12)),
            Some(Duration::from_secs(8))
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn no_socket_no_watchdog() {
        let ln = LoopNotifier::new(Notifier::disabled(), Some(Duration::from_secs(1)));
        assert_eq!(ln.until_ping(Instant::now()), None);
    }
}
