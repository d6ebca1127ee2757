//! The hand-written SigV4 signer against AWS's published Signature Version 4 test suite.
//!
//! Each directory under `tests/data/sigv4/` is one case of the suite: the raw request
//! (`request.txt`), and AWS's expected canonical request, string to sign and `Authorization`
//! header. Credentials, date, region and service are the suite's fixed ones.

use std::fs;
use std::path::{Path, PathBuf};

use vpc_cni::aws::sigv4;

const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const AMZ_DATE: &str = "20150830T123600Z";
const REGION: &str = "us-east-1";
const SERVICE: &str = "service";

struct SuiteRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads the suite's `.req` format: request line, `Name:value` header lines, a blank line, body.
fn parse_request(text: &str) -> SuiteRequest {
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, b),
        None => (text.trim_end_matches('\n'), ""),
    };
    let mut lines = head.lines();
    let request_line = lines.next().expect("request line");
    let (method, rest) = request_line.split_once(' ').expect("method");
    let (target, _version) = rest.rsplit_once(' ').expect("version");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.to_string(), v.to_string())
        })
        .collect();
    SuiteRequest {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigv4");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .expect("vector directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

#[test]
fn every_suite_case_signs_byte_for_byte() {
    let cases = cases();
    assert!(
        cases.len() >= 25,
        "expected the whole vector set, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for dir in &cases {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let req = parse_request(&read(dir, "request.txt"));
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let request = sigv4::Request {
            method: &req.method,
            path: &req.path,
            query: &req.query,
            headers: &headers,
            payload: &req.body,
        };
        let (canonical, _) = sigv4::canonical_request(&request);
        if canonical != read(dir, "canonical-request.txt") {
            failures.push(format!("{name}: canonical request\n{canonical}"));
            continue;
        }
        let scope = sigv4::Scope {
            date: &AMZ_DATE[..8],
            region: REGION,
            service: SERVICE,
        };
        if sigv4::string_to_sign(AMZ_DATE, &scope, &canonical) != read(dir, "string-to-sign.txt") {
            failures.push(format!("{name}: string to sign"));
            continue;
        }
        let authz = sigv4::authorization(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            AMZ_DATE,
            REGION,
            SERVICE,
            &request,
        );
        if authz != read(dir, "authorization.txt") {
            failures.push(format!("{name}: authorization {authz}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// AWS's documented IAM `ListUsers` example (general reference, "Create a signed AWS API
/// request"): a GET Query API call with a form content type, the shape EC2 calls have.
#[test]
fn iam_list_users_documentation_example() {
    let headers = [
        (
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("Host", "iam.amazonaws.com"),
        ("X-Amz-Date", AMZ_DATE),
    ];
    let request = sigv4::Request {
        method: "GET",
        path: "/",
        query: "Action=ListUsers&Version=2010-05-08",
        headers: &headers,
        payload: b"",
    };
    let authz = sigv4::authorization(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        AMZ_DATE,
        REGION,
        "iam",
        &request,
    );
    assert_eq!(
        authz,
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, \
         Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    );
}

/// The suite's timestamp is what `amz_date` makes of 2015-08-30T12:36:00Z.
#[test]
fn suite_timestamp_from_unix_seconds() {
    assert_eq!(sigv4::amz_date(1_440_938_160), AMZ_DATE);
}
