//! Error bodies of EC2 and STS (both `<Response><Errors><Error>` and `<ErrorResponse><Error>`):
//! parsed, classified for every interesting HTTP status, and rendered as the client does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_cni::aws::error::{classify, Ec2Error, Ec2ErrorKind};
use vpc_cni::aws::xml::parse_error;

const STATUSES: [u16; 8] = [0, 200, 400, 401, 403, 429, 500, 503];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_error(&text);
    let code = parsed.as_ref().map(|e| e.code.clone());
    for status in STATUSES {
        let _ = classify(status, code.as_deref());
    }
    let snippet: String = text.chars().take(200).collect();
    let message = parsed
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_else(|| format!("HTTP 400 {}", snippet.trim()));
    let e = Ec2Error {
        action: "AssignPrivateIpAddresses",
        attempts: 1,
        kind: Ec2ErrorKind::Api {
            status: 400,
            code: code.unwrap_or_default(),
            message,
        },
        request_id: parsed.and_then(|e| e.request_id),
    };
    let _ = (
        e.to_string(),
        e.is_not_found(),
        e.is_capacity(),
        e.iam_action(),
    );
});
