//! netlink (under construction).
