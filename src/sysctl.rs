//! sysctl (under construction).
