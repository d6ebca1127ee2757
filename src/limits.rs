//! Instance-type limits (under construction).
