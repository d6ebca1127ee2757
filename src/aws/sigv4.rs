//! AWS Signature Version 4, written on `ring` (HMAC-SHA256, SHA-256).
//!
//! Why by hand: the `aws-sigv4` crate pulls in 52 crates (tokio, tracing, http, hmac/sha2, four
//! aws-smithy crates) and about 172 KB of binary for what is 150 lines on the `ring` we already
//! link for TLS. Correctness is pinned by AWS's published SigV4 test suite
//! (`tests/unit_sigv4.rs`, vectors under `tests/data/sigv4/`).
//!
//! The functions are pure: the time is an argument, nothing reads a clock.

use std::fmt::Write as _;

use ring::{digest, hmac};

use crate::timefmt::civil_from_days;

/// The signing algorithm name that appears in the string to sign and the `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// One HTTP request as the signer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as written in the request line, not yet percent-encoded (e.g. `/` or `/example space/`).
    pub path: &'a str,
    /// The query string without the leading `?` (may be empty).
    pub query: &'a str,
    /// Every header to sign, as (name, value). Must include `host` and `x-amz-date`.
    pub headers: &'a [(&'a str, &'a str)],
    /// The request body.
    pub payload: &'a [u8],
}

/// The credential scope: date, region and service.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `YYYYMMDD`, the date part of `x-amz-date`.
    pub date: &'a str,
    /// e.g. `us-east-1`.
    pub region: &'a str,
    /// e.g. `ec2`.
    pub service: &'a str,
}

impl Scope<'_> {
    /// `date/region/service/aws4_request`.
    pub fn to_scope_string(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// Percent-encodes everything outside the RFC 3986 unreserved set (`A-Z a-z 0-9 - . _ ~`),
/// upper-case hex, as SigV4 requires. `/` is kept when `keep_slash`.
pub fn uri_encode(input: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes `%XX` escapes (an invalid escape is kept as written).
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|v| v as u8)
}

/// The canonical URI: dot segments removed, repeated slashes collapsed, each segment encoded.
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing_slash = (path.ends_with('/') || path.ends_with("/.") || path.ends_with("/.."))
        && !segments.is_empty();
    let mut out = String::from("/");
    out.push_str(&uri_encode(&segments.join("/"), true));
    if trailing_slash {
        out.push('/');
    }
    out
}

/// The canonical query string: each name and value decoded then strictly encoded, sorted by
/// name and then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    let parts: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join("&")
}

/// Trims a header value and folds runs of spaces into one, as SigV4 canonicalisation requires.
fn canonical_header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Builds the canonical request and the `SignedHeaders` list.
pub fn canonical_request(req: &Request<'_>) -> (String, String) {
    // Header names lower-cased; repeated names joined with commas in the order given; sorted.
    let mut headers: Vec<(String, String)> = Vec::with_capacity(req.headers.len());
    for (name, value) in req.headers {
        let name = name.to_ascii_lowercase();
        let value = canonical_header_value(value);
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let signed_headers: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    let signed_headers = signed_headers.join(";");

    let mut canonical = String::with_capacity(256 + req.payload.len() / 8);
    canonical.push_str(req.method);
    canonical.push('\n');
    canonical.push_str(&canonical_uri(req.path));
    canonical.push('\n');
    canonical.push_str(&canonical_query(req.query));
    canonical.push('\n');
    for (name, value) in &headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers);
    canonical.push('\n');
    canonical.push_str(&sha256_hex(req.payload));
    (canonical, signed_headers)
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &Scope<'_>, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope.to_scope_string(),
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The derived signing key: HMAC chain over date, region, service and `aws4_request`.
pub fn signing_key(secret_access_key: &str, scope: &Scope<'_>) -> [u8; 32] {
    let k_secret = format!("AWS4{secret_access_key}");
    let k_date = hmac_sha256(k_secret.as_bytes(), scope.date.as_bytes());
    let k_region = hmac_sha256(k_date.as_ref(), scope.region.as_bytes());
    let k_service = hmac_sha256(k_region.as_ref(), scope.service.as_bytes());
    let k_signing = hmac_sha256(k_service.as_ref(), b"aws4_request");
    let mut key = [0u8; 32];
    key.copy_from_slice(k_signing.as_ref());
    key
}

/// Signs `req` and returns the value of the `Authorization` header.
///
/// `amz_date` must be the same `YYYYMMDDTHHMMSSZ` value as the request's `x-amz-date` header.
pub fn authorization(
    access_key_id: &str,
    secret_access_key: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    req: &Request<'_>,
) -> String {
    let scope = Scope {
        date: amz_date.get(..8).unwrap_or(amz_date),
        region,
        service,
    };
    let (canonical, signed_headers) = canonical_request(req);
    let to_sign = string_to_sign(amz_date, &scope, &canonical);
    let key = signing_key(secret_access_key, &scope);
    let signature = hex(hmac_sha256(&key, to_sign.as_bytes()).as_ref());
    format!(
        "{ALGORITHM} Credential={access_key_id}/{}, SignedHeaders={signed_headers}, Signature={signature}",
        scope.to_scope_string()
    )
}

/// Formats seconds since the Unix epoch as SigV4's `YYYYMMDDTHHMMSSZ` (UTC).
pub fn amz_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_date_formats_utc_including_leap_days() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(1_709_251_199), "20240229T235959Z");
    }

    #[test]
    fn uri_encode_keeps_only_unreserved() {
        assert_eq!(uri_encode("a b/c~", false), "a%20b%2Fc~");
        assert_eq!(uri_encode("a b/c~", true), "a%20b/c~");
        assert_eq!(uri_encode("ሴ", false), "%E1%88%B4");
    }

    #[test]
    fn query_values_are_decoded_then_encoded_once() {
        assert_eq!(canonical_query("b=2&a=%2F&a=1"), "a=%2F&a=1&b=2");
        assert_eq!(canonical_query("flag"), "flag=");
    }

    #[test]
    fn a_different_secret_gives_a_different_signature() {
        let headers = [
            ("host", "ec2.us-east-1.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ];
        let req = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            payload: b"Action=DescribeInstances",
        };
        let a = authorization(
            "AKID",
            "secret-a",
            "20150830T123600Z",
            "us-east-1",
            "ec2",
            &req,
        );
        let b = authorization(
            "AKID",
            "secret-b",
            "20150830T123600Z",
            "us-east-1",
            "ec2",
            &req,
        );
        assert_ne!(a, b);
        assert!(
            a.starts_with("AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/ec2/aws4_request")
        );
    }
}
