//! logging (under construction).
