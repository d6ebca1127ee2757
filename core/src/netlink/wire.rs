//! Netlink wire format: `nlmsghdr` + `nlattr` encoding and decoding, with no I/O.
//!
//! Everything is host byte order except where a protocol says otherwise (nftables values are
//! big-endian and are passed in already converted). Messages and attributes are padded to 4 bytes.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// `NLM_F_REQUEST`: every message we send is a request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`: part of a multipart reply, ended by `NLMSG_DONE`.
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`: ask for an `NLMSG_ERROR` with error 0 on success.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP_INTR`: the dump was interrupted by a concurrent change; its content is inconsistent.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_REPLACE`: replace an existing object.
pub const NLM_F_REPLACE: u16 = 0x100;
/// `NLM_F_EXCL`: fail with `EEXIST` if the object exists.
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE`: create the object if it does not exist.
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_APPEND`: add at the end of the list.
pub const NLM_F_APPEND: u16 = 0x800;
/// In an `NLMSG_ERROR` reply: the echoed request was cut to its header (`NETLINK_CAP_ACK`).
pub const NLM_F_CAPPED: u16 = 0x100;
/// In an `NLMSG_ERROR` reply: extended-ack attributes follow (`NETLINK_EXT_ACK`).
pub const NLM_F_ACK_TLVS: u16 = 0x200;

/// `NLMSG_NOOP`.
pub const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR`: an error or (error 0) an acknowledgement.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: end of a multipart dump.
pub const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`.
pub const NLMSG_OVERRUN: u16 = 4;

/// `NLMSGERR_ATTR_MSG`: extended-ack text from the kernel.
pub const NLMSGERR_ATTR_MSG: u16 = 1;

/// `NLA_F_NESTED`.
pub const NLA_F_NESTED: u16 = 0x8000;
/// `NLA_F_NET_BYTEORDER`.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
const NLA_HDRLEN: usize = 4;

/// Rounds up to the 4-byte netlink alignment.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// A buffer of one or more netlink messages under construction.
///
/// `begin` writes a header, payload and attributes follow, `end` fixes the length. Nested
/// attributes are opened with [`MsgBuf::nest`] and closed with [`MsgBuf::end_nest`].
#[derive(Debug, Default, Clone)]
pub struct MsgBuf {
    buf: Vec<u8>,
    start: usize,
}

impl MsgBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer holding one message header of type `ty` with `flags`, sequence number 0 (the
    /// socket stamps its own).
    pub fn request(ty: u16, flags: u16) -> Self {
        let mut m = Self::new();
        m.begin(ty, flags, 0);
        m
    }

    /// Starts a new message; the previous one must have been ended (or is ended now).
    pub fn begin(&mut self, ty: u16, flags: u16, seq: u32) {
        if self.start < self.buf.len() {
            self.end();
        }
        self.start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
    }

    /// Writes the current message's length into its header.
    pub fn end(&mut self) {
        let len = (self.buf.len() - self.start) as u32;
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
        self.start = self.buf.len();
    }

    /// Appends a fixed family header (`ifinfomsg`, `rtmsg`, ...), padded to 4 bytes.
    pub fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.pad();
    }

    fn pad(&mut self) {
        let n = align(self.buf.len()) - self.buf.len();
        self.buf.extend(core::iter::repeat_n(0u8, n));
    }

    /// Appends an attribute with raw payload.
    pub fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = (NLA_HDRLEN + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// Appends a host-order u32 attribute.
    pub fn attr_u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_ne_bytes());
    }

    /// Appends a big-endian u32 attribute (nftables).
    pub fn attr_be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    /// Appends a big-endian u64 attribute (nftables handles).
    pub fn attr_be64(&mut self, ty: u16, v: u64) {
        self.attr(ty, &v.to_be_bytes());
    }

    /// Appends a host-order u16 attribute.
    pub fn attr_u16(&mut self, ty: u16, v: u16) {
        self.attr(ty, &v.to_ne_bytes());
    }

    /// Appends a u8 attribute.
    pub fn attr_u8(&mut self, ty: u16, v: u8) {
        self.attr(ty, &[v]);
    }

    /// Appends a NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) {
        let len = (NLA_HDRLEN + s.len() + 1) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    /// Opens a nested attribute (`NLA_F_NESTED` is set); returns the token for [`MsgBuf::end_nest`].
    pub fn nest(&mut self, ty: u16) -> usize {
        self.nest_flags(ty | NLA_F_NESTED)
    }

    /// Opens a nested attribute with the type exactly as given (some rtnetlink nests, such as
    /// `IFLA_LINKINFO`, are sent without `NLA_F_NESTED` by iproute2).
    pub fn nest_flags(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        at
    }

    /// Closes the nested attribute opened at `at`.
    pub fn end_nest(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// The encoded bytes (call [`MsgBuf::end`] first for the last message).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Ends the last message and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        if self.start < self.buf.len() {
            self.end();
        }
        self.buf
    }
}

/// Stamps `seq` into every message of an encoded buffer, counting up from `first`; returns the
/// next free sequence number.
pub fn stamp_seq(buf: &mut [u8], first: u32) -> u32 {
    let mut seq = first;
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        buf[off + 8..off + 12].copy_from_slice(&seq.to_ne_bytes());
        seq = seq.wrapping_add(1);
        if len < NLMSG_HDRLEN {
            break;
        }
        off += align(len);
    }
    seq
}

/// One received netlink message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub pid: u32,
    /// Everything after the header.
    pub payload: &'a [u8],
}

/// A malformed message from the kernel (should not happen; reported, never ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl core::fmt::Display for Malformed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "malformed netlink message: {}", self.0)
    }
}

/// Iterates over the messages in one datagram.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { buf }
}

/// Iterator returned by [`messages`].
#[derive(Debug)]
pub struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Msg<'a>, Malformed>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        if self.buf.len() < NLMSG_HDRLEN {
            self.buf = &[];
            return Some(Err(Malformed("truncated header")));
        }
        let b = self.buf;
        let len = u32_at(b, 0) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            self.buf = &[];
            return Some(Err(Malformed("bad message length")));
        }
        let msg = Msg {
            ty: u16::from_ne_bytes([b[4], b[5]]),
            flags: u16::from_ne_bytes([b[6], b[7]]),
            seq: u32_at(b, 8),
            pid: u32_at(b, 12),
            payload: &b[NLMSG_HDRLEN..len],
        };
        self.buf = &b[align(len).min(b.len())..];
        Some(Ok(msg))
    }
}

/// The content of an `NLMSG_ERROR` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    /// 0 for an acknowledgement, otherwise a positive errno.
    pub errno: i32,
    /// Extended-ack text (`NLMSGERR_ATTR_MSG`), if the kernel sent one.
    pub ext_msg: Option<String>,
}

/// Decodes the payload of an `NLMSG_ERROR` message with its header flags.
pub fn parse_error(msg: &Msg<'_>) -> Result<ErrorMsg, Malformed> {
    let p = msg.payload;
    if p.len() < 4 + NLMSG_HDRLEN {
        return Err(Malformed("short NLMSG_ERROR"));
    }
    let err = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
    let mut ext_msg = None;
    if msg.flags & NLM_F_ACK_TLVS != 0 {
        // With NLM_F_CAPPED only the echoed header is present, otherwise the whole request.
        let echoed = if msg.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            align(u32_at(p, 4) as usize)
        };
        if let Some(tlvs) = p.get(4 + echoed..) {
            for a in attrs(tlvs) {
                let a = a?;
                if a.ty == NLMSGERR_ATTR_MSG {
                    ext_msg = Some(a.str().to_string());
                }
            }
        }
    }
    Ok(ErrorMsg {
        errno: err.unsigned_abs() as i32,
        ext_msg,
    })
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// One attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// Type without the `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER` bits.
    pub ty: u16,
    /// The payload.
    pub data: &'a [u8],
}

impl<'a> Attr<'a> {
    /// A host-order u32, or 0 if the payload is too short.
    pub fn u32(&self) -> u32 {
        self.data.get(..4).map_or(0, |b| u32_at(b, 0))
    }
    /// A big-endian u32, or 0 if the payload is too short.
    pub fn be32(&self) -> u32 {
        self.data
            .get(..4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A u8, or 0.
    pub fn u8(&self) -> u8 {
        self.data.first().copied().unwrap_or(0)
    }
    /// A string up to the first NUL (lossy for invalid UTF-8).
    pub fn str(&self) -> &'a str {
        let end = self
            .data
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(self.data.len());
        core::str::from_utf8(&self.data[..end]).unwrap_or("")
    }
    /// The nested attributes.
    pub fn nested(&self) -> Attrs<'a> {
        attrs(self.data)
    }
}

/// Iterates over the attributes in `buf`. A malformed attribute (a length shorter than its header
/// or running past the buffer, or a few bytes too short for a header) is reported as one
/// [`Malformed`] item, after which the iteration ends.
pub fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs { buf }
}

/// All attributes in `buf`, or the error for the first malformed one.
pub fn attr_list(buf: &[u8]) -> Result<Vec<Attr<'_>>, Malformed> {
    attrs(buf).collect()
}

/// Iterator returned by [`attrs`].
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, Malformed>;
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.buf;
        if b.is_empty() {
            return None;
        }
        // Whatever happens below, a malformed attribute ends the iteration.
        self.buf = &[];
        if b.len() < NLA_HDRLEN {
            return Some(Err(Malformed("truncated attribute header")));
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        if len < NLA_HDRLEN || len > b.len() {
            return Some(Err(Malformed("bad attribute length")));
        }
        let ty = u16::from_ne_bytes([b[2], b[3]]) & !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
        self.buf = &b[align(len).min(b.len())..];
        Some(Ok(Attr {
            ty,
            data: &b[NLA_HDRLEN..len],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_header_attrs_padding_and_nests() {
        let mut m = MsgBuf::request(16, NLM_F_REQUEST | NLM_F_ACK);
        m.put(&[1, 2, 3]);
        m.attr_str(3, "ab");
        let n = m.nest(18);
        m.attr_u32(4, 9001);
        m.end_nest(n);
        let b = m.finish();
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &(40u32).to_ne_bytes()[..], &16u16.to_ne_bytes(), &5u16.to_ne_bytes(), &[0; 8],
            &[1, 2, 3, 0],
            &7u16.to_ne_bytes(), &3u16.to_ne_bytes(), b"ab\0", &[0],
            &12u16.to_ne_bytes(), &(18u16 | NLA_F_NESTED).to_ne_bytes(),
            &8u16.to_ne_bytes(), &4u16.to_ne_bytes(), &9001u32.to_ne_bytes(),
        ].concat();
        assert_eq!(b, want);
        let msgs: Vec<_> = messages(&b).collect();
        assert_eq!(msgs.len(), 1);
        let msg = msgs[0].unwrap();
        assert_eq!((msg.ty, msg.flags), (16, 5));
        let a = attr_list(&msg.payload[4..]).unwrap();
        assert_eq!(a[0].str(), "ab");
        assert_eq!(a[1].ty, 18);
        assert_eq!(a[1].nested().next().unwrap().unwrap().u32(), 9001);
    }

    #[test]
    fn stamps_consecutive_sequence_numbers() {
        let mut m = MsgBuf::new();
        m.begin(1, 0, 0);
        m.attr_u8(1, 7);
        m.begin(2, 0, 0);
        let mut b = m.finish();
        assert_eq!(stamp_seq(&mut b, 41), 43);
        let seqs: Vec<u32> = messages(&b).map(|m| m.unwrap().seq).collect();
        assert_eq!(seqs, vec![41, 42]);
    }

    #[test]
    fn decodes_error_with_extended_ack_text() {
        // NLMSG_ERROR with NLM_F_CAPPED | NLM_F_ACK_TLVS: errno -17, echoed header, MSG attribute.
        let mut m = MsgBuf::request(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS);
        let mut p = (-17i32).to_ne_bytes().to_vec();
        p.extend_from_slice(&[0u8; 16]);
        m.put(&p);
        m.attr_str(NLMSGERR_ATTR_MSG, "Route exists");
        let b = m.finish();
        let msg = messages(&b).next().unwrap().unwrap();
        let e = parse_error(&msg).unwrap();
        assert_eq!(e.errno, 17);
        assert_eq!(e.ext_msg.as_deref(), Some("Route exists"));
    }

    #[test]
    fn rejects_truncated_messages() {
        let mut m = MsgBuf::request(1, 0);
        m.attr_u32(1, 1);
        let b = m.finish();
        let r: Vec<_> = messages(&b[..b.len() - 2]).collect();
        assert_eq!(r, vec![Err(Malformed("bad message length"))]);
    }

    #[test]
    fn malformed_attributes_are_reported_not_skipped() {
        let mut m = MsgBuf::request(1, 0);
        m.attr_u32(1, 7);
        m.attr_u32(2, 8);
        let b = m.finish();
        let payload = messages(&b).next().unwrap().unwrap().payload;
        assert_eq!(attr_list(payload).unwrap().len(), 2);
        // The second attribute claims more bytes than there are.
        let mut bad = payload.to_vec();
        bad[8..10].copy_from_slice(&64u16.to_ne_bytes());
        let items: Vec<_> = attrs(&bad).collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].unwrap().u32(), 7);
        assert_eq!(items[1], Err(Malformed("bad attribute length")));
        assert_eq!(attr_list(&bad), Err(Malformed("bad attribute length")));
        // A length below the header, and bytes too few for a header.
        bad[8..10].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(attr_list(&bad), Err(Malformed("bad attribute length")));
        assert_eq!(
            attr_list(&payload[..10]),
            Err(Malformed("truncated attribute header"))
        );
    }

    proptest::proptest! {
        #[test]
        fn attrs_round_trip(values in proptest::collection::vec((1u16..0x3fff, proptest::collection::vec(0u8..=255, 0..40)), 0..10)) {
            let mut m = MsgBuf::request(1, 0);
            for (ty, data) in &values {
                m.attr(*ty, data);
            }
            let b = m.finish();
            let msg = messages(&b).next().unwrap().unwrap();
            let got: Vec<(u16, Vec<u8>)> = attr_list(msg.payload).unwrap().iter().map(|a| (a.ty, a.data.to_vec())).collect();
            proptest::prop_assert_eq!(got, values);
        }
    }
}
