//! Netlink, the pure half: the wire format. Sockets, namespaces and the rtnetlink objects are in
//! the main crate (`vpc_cni::netlink`), which re-exports [`wire`].

pub mod wire;
