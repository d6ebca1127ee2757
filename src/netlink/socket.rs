//! A synchronous netlink socket: sequence numbers, ACKs, multipart dumps, batches, extended ACKs.
//!
//! The socket belongs to the network namespace of the thread that created it, for its whole
//! life: open it inside a pod namespace once and use it from any thread afterwards.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr};

use super::error::{libc_errno, Cause};
use super::wire::{self, Msg, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLM_F_ACK, NLM_F_DUMP_INTR};

const RX_BUF: usize = 64 * 1024;
/// A reply that takes longer than this means the kernel will never answer (e.g. a lost ACK).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
const DUMP_RETRIES: usize = 5;

/// The netlink protocol of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `NETLINK_ROUTE`: links, addresses, routes, rules, neighbours.
    Route,
    /// `NETLINK_NETFILTER`: nftables.
    Netfilter,
}

/// A connected, blocking netlink socket.
#[derive(Debug)]
pub struct NlSocket {
    sock: Socket,
    seq: u32,
    rx: Vec<u8>,
}

impl NlSocket {
    /// Opens a socket of `protocol` in the calling thread's network namespace.
    ///
    /// Extended ACKs (`NETLINK_EXT_ACK`) and capped ACKs (`NETLINK_CAP_ACK`) are switched on.
    pub fn open(protocol: Protocol) -> io::Result<Self> {
        let proto = match protocol {
            Protocol::Route => netlink_sys::protocols::NETLINK_ROUTE,
            Protocol::Netfilter => netlink_sys::protocols::NETLINK_NETFILTER,
        };
        let mut sock = Socket::new(proto)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        sock.set_ext_ack(true)?;
        sock.set_cap_ack(true)?;
        rustix::net::sockopt::set_socket_timeout(
            sock.as_fd(),
            rustix::net::sockopt::Timeout::Recv,
            Some(REPLY_TIMEOUT),
        )?;
        Ok(NlSocket {
            sock,
            seq: 1,
            rx: Vec::with_capacity(RX_BUF),
        })
    }

    fn next_seq(&mut self, count: u32) -> u32 {
        let first = self.seq;
        self.seq = self.seq.wrapping_add(count).max(1);
        first
    }

    fn send(&self, buf: &[u8]) -> Result<(), Cause> {
        let n = self.sock.send(buf, 0).map_err(Cause::Io)?;
        if n != buf.len() {
            return Err(Cause::Malformed("short send"));
        }
        Ok(())
    }

    fn recv(&mut self) -> Result<(), Cause> {
        self.rx.clear();
        let n = loop {
            match self.sock.recv(&mut self.rx, MSG_TRUNC) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Cause::Io(e)),
            }
        };
        if n > self.rx.len() {
            return Err(Cause::Malformed("reply larger than the receive buffer"));
        }
        Ok(())
    }

    /// Sends one request (its `NLM_F_ACK` flag is set here) and waits for the kernel's ACK.
    pub fn request_ack(&mut self, req: &mut [u8]) -> Result<(), Cause> {
        set_flag(req, NLM_F_ACK);
        let seq = self.next_seq(1);
        wire::stamp_seq(req, seq);
        self.send(req)?;
        loop {
            self.recv()?;
            for m in wire::messages(&self.rx) {
                let m = m.map_err(|e| Cause::Malformed(e.0))?;
                if m.seq != seq || m.ty != NLMSG_ERROR {
                    continue;
                }
                let e = wire::parse_error(&m).map_err(|e| Cause::Malformed(e.0))?;
                return errno_result(e);
            }
        }
    }

    /// Sends a get or dump request and returns what `parse` makes of each reply message.
    ///
    /// A single get gets `NLM_F_ACK` so its end is seen; a dump ends with `NLMSG_DONE`. A dump
    /// interrupted by a concurrent change (`NLM_F_DUMP_INTR`) is repeated.
    pub fn dump<T>(
        &mut self,
        req: &mut [u8],
        mut parse: impl FnMut(&Msg<'_>) -> Result<Option<T>, wire::Malformed>,
    ) -> Result<Vec<T>, Cause> {
        for _ in 0..DUMP_RETRIES {
            let mut out = Vec::new();
            let mut interrupted = false;
            set_flag(req, NLM_F_ACK);
            let seq = self.next_seq(1);
            wire::stamp_seq(req, seq);
            self.send(req)?;
            'recv: loop {
                self.recv()?;
                for m in wire::messages(&self.rx) {
                    let m = m.map_err(|e| Cause::Malformed(e.0))?;
                    if m.seq != seq {
                        continue;
                    }
                    interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                    match m.ty {
                        NLMSG_NOOP => {}
                        NLMSG_ERROR => {
                            let e = wire::parse_error(&m).map_err(|e| Cause::Malformed(e.0))?;
                            errno_result(e)?;
                            break 'recv;
                        }
                        NLMSG_DONE => {
                            // A dump that failed half-way carries a negative errno here.
                            if let Some(b) = m.payload.get(..4) {
                                let err = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                                if err < 0 {
                                    return Err(Cause::Errno {
                                        errno: -err,
                                        ext_msg: None,
                                    });
                                }
                            }
                            // The kernel sends no ACK after a dump, even when asked.
                            break 'recv;
                        }
                        _ => {
                            if let Some(v) = parse(&m).map_err(|e| Cause::Malformed(e.0))? {
                                out.push(v);
                            }
                        }
                    }
                }
            }
            if !interrupted {
                return Ok(out);
            }
        }
        Err(Cause::Errno {
            errno: libc_errno::EINTR,
            ext_msg: Some("dump kept being interrupted by concurrent changes".into()),
        })
    }

    /// Sends a batch of messages in one datagram (nftables) and waits for one reply per message
    /// that carries `NLM_F_ACK`. Returns the first error with the index of the failing message.
    pub fn batch(&mut self, buf: &mut [u8]) -> Result<(), (usize, Cause)> {
        let count = wire::messages(buf).count() as u32;
        let first = self.next_seq(count);
        wire::stamp_seq(buf, first);
        let mut pending: Vec<u32> = wire::messages(buf)
            .filter_map(|m| m.ok())
            .filter(|m| m.flags & NLM_F_ACK != 0)
            .map(|m| m.seq)
            .collect();
        self.send(buf).map_err(|e| (0, e))?;
        let mut first_err: Option<(usize, Cause)> = None;
        while !pending.is_empty() {
            self.recv().map_err(|e| (0, e))?;
            for m in wire::messages(&self.rx) {
                let m = m.map_err(|e| (0, Cause::Malformed(e.0)))?;
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                let Some(pos) = pending.iter().position(|&s| s == m.seq) else {
                    continue;
                };
                pending.swap_remove(pos);
                let e = wire::parse_error(&m).map_err(|e| (0, Cause::Malformed(e.0)))?;
                if let Err(cause) = errno_result(e) {
                    let index = m.seq.wrapping_sub(first) as usize;
                    if first_err.as_ref().is_none_or(|(i, _)| index < *i) {
                        first_err = Some((index, cause));
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn errno_result(e: wire::ErrorMsg) -> Result<(), Cause> {
    if e.errno == 0 {
        Ok(())
    } else {
        Err(Cause::Errno {
            errno: e.errno,
            ext_msg: e.ext_msg,
        })
    }
}

fn set_flag(req: &mut [u8], flag: u16) {
    if req.len() >= wire::NLMSG_HDRLEN {
        let f = u16::from_ne_bytes([req[6], req[7]]) | flag;
        req[6..8].copy_from_slice(&f.to_ne_bytes());
    }
}

/// `MSG_TRUNC`: recv returns the real datagram length, so a too-small buffer is detected.
const MSG_TRUNC: i32 = 0x20;
