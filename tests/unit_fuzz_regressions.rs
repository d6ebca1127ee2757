//! Inputs the fuzz targets (fuzz/, `scripts/fuzz`) found to crash, hang or blow up, each as the
//! plain test that failed before its fix. The input is the one the fuzzer wrote, or its minimised
//! form; the target that found it is named on each test.

// Test crate: a panic is a test failure.
#![allow(clippy::unwrap_used)]

use std::time::UNIX_EPOCH;

use vpc_cni::aws::credentials::{from_json, parse_rfc3339, CredentialSource};
use vpc_cni::aws::http::http_timeout;

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

/// config_env: `HTTP_TIMEOUT` in minutes overflowed `60 * minutes` (a panic with overflow checks, a
/// timeout of the wrapped product without). It now reads durations as every other variable does:
/// one that does not fit is refused with the variable's name.
#[test]
fn an_http_timeout_of_absurdly_many_minutes_is_refused_not_a_crash() {
    let found = "000000000000000007751640039368425632m";
    let e = http_timeout(Some(found)).unwrap_err();
    assert!(e.to_string().contains("HTTP_TIMEOUT="), "{e}");
    assert!(http_timeout(Some("307445734561825861m")).is_err());
    assert!(http_timeout(Some("5124095576030432h")).is_err());
    // The largest that fit still count; real values too.
    assert_eq!(
        http_timeout(Some("307445734561825860m")).unwrap(),
        std::time::Duration::from_secs(307445734561825860 * 60)
    );
    assert_eq!(
        http_timeout(Some("2m")).unwrap(),
        std::time::Duration::from_secs(120)
    );
    assert_eq!(
        http_timeout(Some("1500ms")).unwrap(),
        std::time::Duration::from_secs(10)
    );
}
