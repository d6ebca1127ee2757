//! Secrets never reach logs or errors: with a logger capturing every record at trace level
//! (ours and ureq's/rustls's), every credential source is exercised on its success and failure
//! paths and the EC2 client signs calls that succeed, get throttled and get rejected; then no
//! secret key, session token, container token or web identity token may appear in the log or in
//! any error or Debug text.

// Test code: a panic is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/aws_local.rs"]
mod aws_local;
#[path = "support/tempdir.rs"]
mod tempdir;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_local::{FakeImds, LocalServer, Reply};
use vpc_cni::aws::credentials::{CachedCredentials, DefaultChain, ProvideCredentials};
use vpc_cni::aws::ec2::{DescribeNetworkInterfaces, Ec2, Ec2Client, Ec2Config};
use vpc_cni::aws::http::{self, Endpoint};
use vpc_cni::aws::imds::Imds;
use vpc_cni::aws::retry::{RetryEnv, RetryPolicy};

static LOG: Mutex<String> = Mutex::new(String::new());

struct CaptureLogger;

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}\n", record.level(), record.target(), record.args());
        LOG.lock().unwrap().push_str(&line);
    }
    fn flush(&self) {}
}

const ENV_SECRET: &str = "EnvSecretKey/0123456789abcdefSECRET";
const ENV_SESSION: &str = "EnvSessionTokenFQoGZXIvYXdzSESSION";
const CONTAINER_TOKEN: &str = "PodIdentityAuthTokenXYZ987";
const CONTAINER_SECRET: &str = "ContainerSecretKeyQWERTY";
const CONTAINER_SESSION: &str = "ContainerSessionTokenASDFG";
const WEB_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.WebIdentityJWTpayload.sig";
const STS_SECRET: &str = "StsSecretKeyZXCVB";
const STS_SESSION: &str = "StsSessionTokenPOIUY";
const IMDS_SECRET: &str = "ImdsSecretKeyLKJHG";
const IMDS_SESSION: &str = "ImdsSessionTokenMNBVC";

struct NoWait;
impl RetryEnv for NoWait {
    fn random_unit(&self) -> f64 {
        0.0
    }
    fn sleep(&self, _: Duration) {}
    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[test]
fn no_secret_reaches_logs_or_errors() {
    log::set_logger(&CaptureLogger).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let mut texts: Vec<String> = Vec::new();
    let agent = || http::local_agent(Duration::from_secs(2));

    // 1. Environment credentials signing EC2 calls: success, throttled (retried, warned), rejected.
    let ec2_server = LocalServer::start(|r| {
        if r.body.contains("Action=DescribeNetworkInterfaces") {
            Reply::ok("<DescribeNetworkInterfacesResponse><requestId>r</requestId><networkInterfaceSet/></DescribeNetworkInterfacesResponse>")
        } else if r.body.contains("Action=DeleteNetworkInterface") {
            Reply::new(503, "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>slow down</Message></Error></Errors><RequestID>t</RequestID></Response>")
        } else {
            Reply::new(401, "<Response><Errors><Error><Code>AuthFailure</Code><Message>AWS was not able to validate the provided access credentials</Message></Error></Errors><RequestID>a</RequestID></Response>")
        }
    });
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("AKIDENVEXAMPLE".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some(ENV_SECRET.to_string()),
        "AWS_SESSION_TOKEN" => Some(ENV_SESSION.to_string()),
        _ => None,
    };
    let chain = DefaultChain::from_env(&env, None, None, agent()).unwrap();
    texts.push(format!("{chain:?}"));
    let cache = Arc::new(CachedCredentials::new(chain));
    let creds = cache.credentials().unwrap();
    texts.push(format!("{creds:?}"));
    texts.push(format!("{cache:?}"));
    let config = Ec2Config {
        region: "us-west-2".into(),
        endpoint: Endpoint::parse(&ec2_server.url()).unwrap(),
        timeout: Duration::from_secs(5),
        ca_roots: Vec::new(),
        retry: RetryPolicy::EC2,
    };
    let provider: Arc<dyn ProvideCredentials> = cache;
    let ec2 = Ec2Client::new(config, provider).with_retry_env(Arc::new(NoWait));
    texts.push(format!("{ec2:?}"));
    ec2.describe_network_interfaces(&DescribeNetworkInterfaces::default())
        .unwrap();
    let e = ec2.delete_network_interface("eni-1").unwrap_err();
    texts.push(format!("{e} {e:?}"));
    let e = ec2.create_tags(&["eni-1".into()], &[]).unwrap_err();
    texts.push(format!("{e} {e:?}"));
    // The session token did go out, in its header.
    assert!(ec2_server
        .requests()
        .iter()
        .all(|r| r.header("x-amz-security-token") == Some(ENV_SESSION)));

    // 2. Container credentials: success, then a refused token.
    let container = LocalServer::start(|r| {
        if r.header("authorization") == Some(CONTAINER_TOKEN) {
            Reply::ok(format!(
                r#"{{"AccessKeyId":"ASIACONTAINER","SecretAccessKey":"{CONTAINER_SECRET}","Token":"{CONTAINER_SESSION}","Expiration":"2099-01-01T00:00:00Z"}}"#
            ))
        } else {
            Reply::new(403, r#"{"Code":"AccessDenied","Message":"token refused"}"#)
        }
    });
    let uri = format!("{}/v1/credentials", container.url());
    let (_token_file_dir, token_file) =
        tempdir::file("aws-secrets", "container-token", CONTAINER_TOKEN);
    let env = |k: &str| match k {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI" => Some(uri.clone()),
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" => Some(token_file.display().to_string()),
        _ => None,
    };
    let chain = DefaultChain::from_env(&env, None, None, agent()).unwrap();
    texts.push(format!("{chain:?}"));
    texts.push(format!("{:?}", chain.fetch().unwrap()));
    std::fs::write(&token_file, format!("{CONTAINER_TOKEN}-rotated")).unwrap();
    let e = chain.fetch().unwrap_err();
    texts.push(format!("{e} {e:?}"));
    let env = |k: &str| match k {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI" => Some(uri.clone()),
        "AWS_CONTAINER_AUTHORIZATION_TOKEN" => Some(CONTAINER_TOKEN.to_string()),
        _ => None,
    };
    texts.push(format!(
        "{:?}",
        DefaultChain::from_env(&env, None, None, agent()).unwrap()
    ));

    // 3. Web identity: success and an STS refusal.
    let sts = LocalServer::start(|r| {
        if r.body.contains("WebIdentityToken=eyJ") && !r.body.contains("stale") {
            Reply::ok(format!(
                "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
                 <AccessKeyId>ASIASTS</AccessKeyId><SecretAccessKey>{STS_SECRET}</SecretAccessKey>\
                 <SessionToken>{STS_SESSION}</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>\
                 </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
            ))
        } else {
            Reply::new(400, "<ErrorResponse><Error><Code>ExpiredTokenException</Code><Message>Token expired</Message></Error></ErrorResponse>")
        }
    });
    let (_web_token_dir, web_token) = tempdir::file("aws-secrets", "web-token", WEB_TOKEN);
    let sts_url = sts.url();
    let env = |k: &str| match k {
        "AWS_ROLE_ARN" => Some("arn:aws:iam::111122223333:role/aws-node".to_string()),
        "AWS_WEB_IDENTITY_TOKEN_FILE" => Some(web_token.display().to_string()),
        "AWS_ENDPOINT_URL_STS" => Some(sts_url.clone()),
        _ => None,
    };
    let chain = DefaultChain::from_env(&env, Some("us-west-2"), None, agent()).unwrap();
    texts.push(format!("{chain:?}"));
    texts.push(format!("{:?}", chain.fetch().unwrap()));
    std::fs::write(&web_token, format!("{WEB_TOKEN}.stale")).unwrap();
    let e = chain.fetch().unwrap_err();
    texts.push(format!("{e} {e:?}"));

    // 4. Instance profile via IMDS: success, then a malformed document.
    let imds_fake = FakeImds::new(&[
        ("iam/security-credentials/", "node-role"),
        (
            "iam/security-credentials/node-role",
            &format!(
                r#"{{"Code":"Success","AccessKeyId":"ASIAIMDS","SecretAccessKey":"{IMDS_SECRET}","Token":"{IMDS_SESSION}","Expiration":"2099-01-01T00:00:00Z"}}"#
            ),
        ),
    ]);
    let imds_server = imds_fake.serve();
    let imds = Arc::new(Imds::new(&imds_server.url()).unwrap());
    texts.push(format!("{imds:?}"));
    let chain = DefaultChain::from_env(&|_| None, None, Some(imds), agent()).unwrap();
    texts.push(format!("{:?}", chain.fetch().unwrap()));
    imds_fake.set(
        "iam/security-credentials/node-role",
        &format!(r#"{{"Code":"Success","AccessKeyId":7,"SecretAccessKey":"{IMDS_SECRET}","Token":"{IMDS_SESSION}"}}"#),
    );
    let e = chain.fetch().unwrap_err();
    texts.push(format!("{e} {e:?}"));

    let log = LOG.lock().unwrap().clone();
    assert!(
        log.contains("AWS credentials from"),
        "the flows above did log:\n{log}"
    );
    assert!(
        log.contains("retrying"),
        "the throttled call logged its retries:\n{log}"
    );
    let secrets = [
        ENV_SECRET,
        ENV_SESSION,
        CONTAINER_TOKEN,
        CONTAINER_SECRET,
        CONTAINER_SESSION,
        WEB_TOKEN,
        "WebIdentityJWTpayload",
        STS_SECRET,
        STS_SESSION,
        IMDS_SECRET,
        IMDS_SESSION,
    ];
    for s in secrets {
        assert!(!log.contains(s), "secret {s:?} in the log:\n{log}");
        for t in &texts {
            assert!(!t.contains(s), "secret {s:?} in error/debug text: {t}");
        }
    }
}
