//! Credentials JSON of the container endpoint (EKS Pod Identity, ECS) and of IMDS's
//! `iam/security-credentials/<role>`, and the RFC 3339 expiration times inside them.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use vpc_cni::aws::credentials::{
    format_rfc3339, from_json, parse_rfc3339, CredentialSource, Credentials, Secret,
};

fuzz_target!(|data: &[u8]| {
    for source in [
        CredentialSource::Container,
        CredentialSource::InstanceProfile,
    ] {
        if let Ok(c) = from_json(source, data) {
            // Debug never shows the secrets: whatever of them it shows, it shows without them too.
            let shown = format!("{c:?}");
            let without = format!(
                "{:?}",
                Credentials {
                    secret_access_key: Secret::new(""),
                    session_token: None,
                    ..c.clone()
                }
            );
            let secrets = [Some(&c.secret_access_key), c.session_token.as_ref()];
            for s in secrets.into_iter().flatten().map(Secret::expose) {
                if s.len() >= 8 && shown.contains(s) {
                    assert!(without.contains(s), "a secret shows in {shown}");
                }
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Some(t) = parse_rfc3339(&text) {
        // Whole seconds survive formatting and parsing again.
        let secs = t
            .duration_since(UNIX_EPOCH)
            .expect("not before 1970")
            .as_secs();
        let whole = UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(whole));
    }
});
