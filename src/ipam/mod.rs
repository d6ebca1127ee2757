//! ipam (under construction).
