//! aws (under construction).
