//! STS `AssumeRoleWithWebIdentity` answers (IRSA) and STS error bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_cni::aws::credentials::parse_sts_answer;
use vpc_cni::aws::xml::parse_error;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(c) = parse_sts_answer(&text) {
        assert!(!c.access_key_id.is_empty() && !c.secret_access_key.expose().is_empty());
        assert!(c.expiration.is_some());
    }
    let _ = parse_error(&text);
});
