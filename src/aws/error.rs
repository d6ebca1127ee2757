//! EC2 errors, classified once: what is retried, what the planner backs off on, what names a
//! missing IAM permission.

use std::fmt;

/// What an EC2 error means for the caller. Decided by [`classify`] from the HTTP status and the
/// error code in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttled (RequestLimitExceeded, Throttling, 503, ...): retried with backoff.
    Throttling,
    /// A server-side or transport failure (5xx, InternalError, connection reset): retried.
    Transient,
    /// The credentials expired between fetching and use: refreshed and retried once.
    ExpiredCredentials,
    /// The subnet or instance is out of room (addresses, attachments): not retried here,
    /// the planner backs off.
    Capacity,
    /// The caller lacks the IAM permission `ec2:<Action>`.
    Unauthorized,
    /// The credentials were rejected (AuthFailure, bad signature, unknown key).
    AuthFailure,
    /// Anything else (bad parameter, not found): returned as is.
    Client,
}

const THROTTLING_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "EC2ThrottledException",
    "PriorRequestNotComplete",
    "BandwidthLimitExceeded",
];

const TRANSIENT_CODES: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Capacity errors ipamd must react to by backing off allocation (upstream blocks allocation for
/// a while after these).
pub const CAPACITY_CODES: &[&str] = &[
    "InsufficientCidrBlocks",
    "InsufficientFreeAddressesInSubnet",
    "AttachmentLimitExceeded",
    "PrivateIpAddressLimitExceeded",
    "InsufficientAddressCapacity",
    "NetworkInterfaceLimitExceeded",
];

const UNAUTHORIZED_CODES: &[&str] = &[
    "UnauthorizedOperation",
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedAccess",
];

const AUTH_FAILURE_CODES: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidAccessKeyId",
    "UnrecognizedClientException",
];

const EXPIRED_CODES: &[&str] = &["ExpiredToken", "ExpiredTokenException", "RequestExpired"];

/// Classifies an EC2 answer by HTTP status and error code (the code wins when known).
pub fn classify(status: u16, code: Option<&str>) -> ErrorClass {
    if let Some(code) = code {
        let is = |set: &[&str]| set.contains(&code);
        if is(THROTTLING_CODES) {
            return ErrorClass::Throttling;
        }
        if is(CAPACITY_CODES) {
            return ErrorClass::Capacity;
        }
        if is(UNAUTHORIZED_CODES) {
            return ErrorClass::Unauthorized;
        }
        if is(AUTH_FAILURE_CODES) {
            return ErrorClass::AuthFailure;
        }
        if is(EXPIRED_CODES) {
            return ErrorClass::ExpiredCredentials;
        }
        if is(TRANSIENT_CODES) {
            return ErrorClass::Transient;
        }
    }
    match status {
        429 | 503 => ErrorClass::Throttling,
        500..=599 => ErrorClass::Transient,
        401 => ErrorClass::AuthFailure,
        403 if code.is_none() => ErrorClass::Unauthorized,
        _ => ErrorClass::Client,
    }
}

/// An EC2 call that failed, after retries where they apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Error {
    /// The EC2 action, e.g. `AssignPrivateIpAddresses`.
    pub action: &'static str,
    /// Attempts made (1 when not retried).
    pub attempts: u32,
    /// What went wrong.
    pub kind: Ec2ErrorKind,
    /// EC2's request id of the last attempt, when it answered.
    pub request_id: Option<String>,
}

/// The kinds of [`Ec2Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ec2ErrorKind {
    /// Still throttled when the retry budget ran out.
    Throttled {
        /// The throttling code (or `HTTP 503`).
        code: String,
    },
    /// A server error or transport failure outlasted the retry budget.
    Unavailable {
        /// The last failure.
        detail: String,
    },
    /// Out of capacity: the planner should back off (code in [`CAPACITY_CODES`]).
    Capacity {
        /// e.g. `InsufficientFreeAddressesInSubnet`.
        code: String,
        /// EC2's message.
        message: String,
    },
    /// The IAM policy does not allow `ec2:<action>`.
    Unauthorized {
        /// `UnauthorizedOperation` or `AccessDenied`.
        code: String,
        /// EC2's message (may be an encoded authorization message).
        message: String,
    },
    /// The credentials were rejected.
    AuthFailure {
        /// e.g. `AuthFailure`.
        code: String,
        /// EC2's message.
        message: String,
    },
    /// Any other EC2 error (InvalidParameterValue, InvalidNetworkInterfaceID.NotFound, ...).
    Api {
        /// HTTP status.
        status: u16,
        /// EC2's error code.
        code: String,
        /// EC2's message.
        message: String,
    },
    /// The answer could not be read.
    BadResponse {
        /// What was wrong with it.
        detail: String,
    },
    /// No credentials to sign with.
    Credentials {
        /// Why (never contains a secret).
        detail: String,
    },
}

impl Ec2Error {
    /// The EC2 error code, when EC2 sent one.
    pub fn code(&self) -> Option<&str> {
        match &self.kind {
            Ec2ErrorKind::Throttled { code }
            | Ec2ErrorKind::Capacity { code, .. }
            | Ec2ErrorKind::Unauthorized { code, .. }
            | Ec2ErrorKind::AuthFailure { code, .. }
            | Ec2ErrorKind::Api { code, .. } => Some(code),
            _ => None,
        }
    }
    /// Whether this is a capacity error the planner should back off on.
    pub fn is_capacity(&self) -> bool {
        matches!(self.kind, Ec2ErrorKind::Capacity { .. })
    }
    /// Whether EC2 said the object does not exist (`*.NotFound`).
    pub fn is_not_found(&self) -> bool {
        self.code().is_some_and(|c| c.ends_with(".NotFound"))
    }
    /// The IAM action this call needs, e.g. `ec2:AssignPrivateIpAddresses`.
    pub fn iam_action(&self) -> String {
        format!("ec2:{}", self.action)
    }
}

impl fmt::Display for Ec2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.action;
        match &self.kind {
            Ec2ErrorKind::Throttled { code } => write!(
                f,
                "EC2 {a}: still throttled ({code}) after {} attempts; retry later",
                self.attempts
            )?,
            Ec2ErrorKind::Unavailable { detail } => {
                write!(f, "EC2 {a}: unavailable after {} attempts: {detail}", self.attempts)?
            }
            Ec2ErrorKind::Capacity { code, message } => {
                write!(f, "EC2 {a}: out of capacity ({code}): {message}")?
            }
            Ec2ErrorKind::Unauthorized { code, message } => write!(
                f,
                "EC2 {a}: not authorized ({code}); the node's IAM role needs the permission ec2:{a}: {message}"
            )?,
            Ec2ErrorKind::AuthFailure { code, message } => write!(
                f,
                "EC2 {a}: credentials rejected ({code}): check the access key, secret and clock: {message}"
            )?,
            Ec2ErrorKind::Api { status, code, message } => {
                write!(f, "EC2 {a}: {code} (HTTP {status}): {message}")?
            }
            Ec2ErrorKind::BadResponse { detail } => write!(f, "EC2 {a}: unreadable answer: {detail}")?,
            Ec2ErrorKind::Credentials { detail } => {
                write!(f, "EC2 {a}: no credentials to sign with: {detail}")?
            }
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Ec2Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_decide_before_status() {
        assert_eq!(
            classify(503, Some("RequestLimitExceeded")),
            ErrorClass::Throttling
        );
        assert_eq!(
            classify(400, Some("RequestLimitExceeded")),
            ErrorClass::Throttling
        );
        assert_eq!(classify(503, None), ErrorClass::Throttling);
        assert_eq!(classify(503, Some("SlowDown")), ErrorClass::Throttling);
        assert_eq!(classify(500, Some("InternalError")), ErrorClass::Transient);
        assert_eq!(classify(502, None), ErrorClass::Transient);
        assert_eq!(
            classify(400, Some("InsufficientFreeAddressesInSubnet")),
            ErrorClass::Capacity
        );
        assert_eq!(
            classify(400, Some("AttachmentLimitExceeded")),
            ErrorClass::Capacity
        );
        assert_eq!(
            classify(400, Some("PrivateIpAddressLimitExceeded")),
            ErrorClass::Capacity
        );
        assert_eq!(
            classify(400, Some("InsufficientCidrBlocks")),
            ErrorClass::Capacity
        );
        assert_eq!(
            classify(403, Some("UnauthorizedOperation")),
            ErrorClass::Unauthorized
        );
        assert_eq!(
            classify(403, Some("AccessDenied")),
            ErrorClass::Unauthorized
        );
        assert_eq!(classify(401, Some("AuthFailure")), ErrorClass::AuthFailure);
        assert_eq!(
            classify(403, Some("SignatureDoesNotMatch")),
            ErrorClass::AuthFailure
        );
        assert_eq!(
            classify(400, Some("ExpiredToken")),
            ErrorClass::ExpiredCredentials
        );
        assert_eq!(
            classify(400, Some("InvalidParameterValue")),
            ErrorClass::Client
        );
        assert_eq!(classify(404, None), ErrorClass::Client);
    }

    #[test]
    fn unauthorized_names_the_iam_action() {
        let e = Ec2Error {
            action: "AssignIpv6Addresses",
            attempts: 1,
            kind: Ec2ErrorKind::Unauthorized {
                code: "AccessDenied".into(),
                message: "no".into(),
            },
            request_id: Some("r-1".into()),
        };
        let s = e.to_string();
        assert!(s.contains("ec2:AssignIpv6Addresses"), "{s}");
        assert!(s.contains("r-1"), "{s}");
        assert_eq!(e.iam_action(), "ec2:AssignIpv6Addresses");
    }

    #[test]
    fn not_found_is_recognised_by_code_suffix() {
        let e = Ec2Error {
            action: "DeleteNetworkInterface",
            attempts: 1,
            kind: Ec2ErrorKind::Api {
                status: 400,
                code: "InvalidNetworkInterfaceID.NotFound".into(),
                message: "gone".into(),
            },
            request_id: None,
        };
        assert!(e.is_not_found());
        assert!(!e.is_capacity());
    }
}
