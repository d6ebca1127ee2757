//! rpc (under construction).
