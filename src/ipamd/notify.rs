//! systemd's notify protocol (`sd_notify`): datagrams like `READY=1` to `$NOTIFY_SOCKET`.

use std::io;
use std::os::unix::net::UnixDatagram;

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
