//! Inputs the fuzz targets (fuzz/, `scripts/fuzz`) found to crash, hang or blow up, each as the
//! plain test that failed before its fix. The input is the one the fuzzer wrote, or its minimised
//! form; the target that found it is named on each test.

// Test crate: a panic is a test failure.
#![allow(clippy::unwrap_used)]

use std::time::UNIX_EPOCH;

use vpc_cni::aws::credentials::{from_json, parse_rfc3339, CredentialSource};

/// credentials_json: a UTC offset with a huge hour count overflowed `hours * 3600` (a panic
/// with overflow checks, a wrong time without). Offsets are two-digit hours and minutes.
#[test]
fn an_expiration_with_an_absurd_utc_offset_is_refused_not_a_crash() {
    let found = "2026-11-23t17:08:39.5-0233333333333333337:08:39.5-02333333333333333333";
    assert_eq!(parse_rfc3339(found), None);
    for bad in [
        "2026-11-23T17:08:39+9223372036854775807:00",
        "2026-11-23T17:08:39-00:9223372036854775807",
        "2026-11-23T17:08:39+24:00",
        "2026-11-23T17:08:39+05:60",
        "2026-11-23T17:08:39+5:30",
        "2026-11-23T17:08:39+05:3",
        "2026-11-23T17:08:39++5:30",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
    let body = format!(r#"{{"AccessKeyId":"A","SecretAccessKey":"S","Expiration":"{found}"}}"#);
    let e = from_json(CredentialSource::Container, body.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("not an RFC 3339 time"), "{e}");
    // Real offsets still count.
    let utc = parse_rfc3339("2026-11-23T17:08:39Z").unwrap();
    assert_eq!(
        parse_rfc3339("2026-11-23T22:38:39+05:30"),
        Some(utc),
        "east of UTC"
    );
    assert_eq!(
        parse_rfc3339("2026-11-23T12:08:39-05:00"),
        Some(utc),
        "west of UTC"
    );
    assert_eq!(utc.duration_since(UNIX_EPOCH).unwrap().as_secs() % 60, 39);
}
