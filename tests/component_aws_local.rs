//! AWS adapters against small local servers: an IMDSv2 stand-in, container credentials, an STS
//! stand-in and a scripted EC2 (pagination, error shapes, retries), plus EC2 over real TLS with
//! a private CA. The VPC-in-a-box tests (`component_aws.rs`) cover real moto EC2 with SigV4.

// Test helpers too: a panic is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/aws_local.rs"]
mod aws_local;
#[path = "support/clock.rs"]
mod clock;
#[path = "support/tempdir.rs"]
mod tempdir;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_local::{FakeImds, LocalServer, Reply};
use clock::ManualClock;
use vpc_cni::aws::credentials::{
    CachedCredentials, ChainSource, CredentialSource, Credentials, DefaultChain, ProvideCredentials,
};
use vpc_cni::aws::ec2::{
    AssignIpv4, AssignPrivateIpAddresses, DescribeNetworkInterfaces, Ec2, Ec2Client, Ec2Config,
    Filter,
};
use vpc_cni::aws::error::Ec2ErrorKind;
use vpc_cni::aws::http::{self, Endpoint};
use vpc_cni::aws::imds::{Imds, ImdsError};
use vpc_cni::aws::retry::{RetryEnv, RetryPolicy};
use vpc_cni::net::MacAddr;

const MAC: &str = "0a:1b:2c:3d:4e:5f";

fn imds_tree() -> Vec<(String, String)> {
    let m = |leaf: &str| format!("network/interfaces/macs/{MAC}/{leaf}");
    vec![
        ("instance-id".into(), "i-0123456789abcdef0".into()),
        ("instance-type".into(), "m5.large".into()),
        ("placement/region".into(), "us-west-2".into()),
        ("placement/availability-zone".into(), "us-west-2a".into()),
        ("mac".into(), MAC.into()),
        ("local-ipv4".into(), "10.0.1.10".into()),
        (
            "network/interfaces/macs/".into(),
            format!("{MAC}/\n0a:1b:2c:3d:4e:60/"),
        ),
        (m("interface-id"), "eni-0aaa".into()),
        (m("device-number"), "0".into()),
        (m("network-card"), "0".into()),
        (m("subnet-id"), "subnet-0a".into()),
        (m("vpc-id"), "vpc-01".into()),
        (m("subnet-ipv4-cidr-block"), "10.0.1.0/24".into()),
        (
            m("vpc-ipv4-cidr-blocks"),
            "10.0.0.0/16\n100.64.0.0/16".into(),
        ),
        (m("security-group-ids"), "sg-1\nsg-2".into()),
        (m("local-ipv4s"), "10.0.1.10\n10.0.1.11".into()),
        (m("ipv4-prefix"), "10.0.1.32/28".into()),
        (m("ipv6s"), "2600:1f14::5".into()),
    ]
}

fn fake_imds() -> Arc<FakeImds> {
    let tree = imds_tree();
    let pairs: Vec<(&str, &str)> = tree.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    FakeImds::new(&pairs)
}

fn count(server: &LocalServer, method: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == method)
        .count()
}

#[test]
fn imds_reads_every_typed_key_with_one_session_token() {
    let fake = fake_imds();
    let server = fake.serve();
    let imds = Imds::new(&server.url()).unwrap();
    let md = imds.within(Duration::from_secs(5));
    assert_eq!(md.instance_id().unwrap(), "i-0123456789abcdef0");
    assert_eq!(md.instance_type().unwrap(), "m5.large");
    assert_eq!(md.region().unwrap(), "us-west-2");
    assert_eq!(md.availability_zone().unwrap(), "us-west-2a");
    let mac: MacAddr = MAC.parse().unwrap();
    assert_eq!(md.primary_mac().unwrap(), mac);
    assert_eq!(
        md.local_ipv4().unwrap(),
        "10.0.1.10".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert_eq!(md.macs().unwrap().len(), 2);
    let eni = md.interface(&mac).unwrap();
    assert_eq!(eni.interface_id, "eni-0aaa");
    assert_eq!((eni.device_number, eni.network_card), (0, 0));
    assert_eq!(eni.subnet_ipv4_cidr.to_string(), "10.0.1.0/24");
    assert_eq!(eni.vpc_ipv4_cidrs.len(), 2);
    assert_eq!(eni.security_group_ids, vec!["sg-1", "sg-2"]);
    assert_eq!(eni.local_ipv4s.len(), 2);
    assert_eq!(eni.ipv4_prefixes[0].to_string(), "10.0.1.32/28");
    assert_eq!(eni.ipv6s.len(), 1);
    // Absent optional lists read as empty, not as errors.
    assert!(eni.ipv6_prefixes.is_empty() && eni.vpc_ipv6_cidrs.is_empty());
    assert_eq!(count(&server, "PUT"), 1, "one token for all reads");
    let put = server
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    assert_eq!(
        put.header("x-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600")
    );
    assert!(server
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .all(|r| r.header("x-aws-ec2-metadata-token") == Some("token-1")));
}

#[test]
fn imds_absent_keys_and_garbage_are_named() {
    let fake = fake_imds();
    fake.set("local-ipv4", "10.0.1.999");
    fake.set(
        &format!("network/interfaces/macs/{MAC}/subnet-ipv4-cidr-block"),
        "10.0.1.0",
    );
    let server = fake.serve();
    let imds = Imds::new(&server.url()).unwrap();
    let md = imds.within(Duration::from_secs(5));
    assert_eq!(md.get("no/such/key").unwrap(), None);
    let mac: MacAddr = "0a:1b:2c:3d:4e:60".parse().unwrap();
    match md.interface_id(&mac) {
        Err(ImdsError::NotFound { key }) => {
            assert!(key.contains("0a:1b:2c:3d:4e:60/interface-id"), "{key}")
        }
        other => panic!("{other:?}"),
    }
    let e = md.local_ipv4().unwrap_err();
    assert!(
        e.to_string().contains("local-ipv4") && e.to_string().contains("10.0.1.999"),
        "{e}"
    );
    let e = md.subnet_ipv4_cidr(&MAC.parse().unwrap()).unwrap_err();
    assert!(
        e.to_string().contains("subnet-ipv4-cidr-block") && e.to_string().contains("IPv4 CIDR"),
        "{e}"
    );
}

#[test]
fn imds_fetches_a_new_token_after_401() {
    let fake = fake_imds();
    let server = fake.serve();
    let imds = Imds::new(&server.url()).unwrap();
    assert_eq!(
        imds.within(Duration::from_secs(5)).instance_id().unwrap(),
        "i-0123456789abcdef0"
    );
    fake.revoke_tokens();
    assert_eq!(
        imds.within(Duration::from_secs(5)).instance_type().unwrap(),
        "m5.large"
    );
    assert_eq!(count(&server, "PUT"), 2);
    // The GET with the revoked token got 401; the retry used the new one.
    let gets: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 3);
    assert_eq!(gets[2].header("x-aws-ec2-metadata-token"), Some("token-2"));
}

#[test]
fn imds_refreshes_the_token_before_it_expires() {
    let fake = fake_imds();
    let server = fake.serve();
    let clock = Arc::new(ManualClock::new(0.5));
    let imds = Imds::new(&server.url())
        .unwrap()
        .with_token_ttl(Duration::from_secs(2))
        .with_retry_env(clock.clone());
    imds.within(Duration::from_secs(5)).instance_id().unwrap();
    // 2 s TTL: still fresh at 1.7 s, refreshed after 1.8 s, so at 1.9 s a new token is fetched
    // before any 401.
    clock.advance(Duration::from_millis(1700));
    imds.within(Duration::from_secs(5)).instance_id().unwrap();
    assert_eq!(count(&server, "PUT"), 1, "the token is reused while fresh");
    clock.advance(Duration::from_millis(200));
    imds.within(Duration::from_secs(5)).instance_id().unwrap();
    assert_eq!(count(&server, "PUT"), 2);
    assert_eq!(count(&server, "GET"), 3, "no GET was rejected and retried");
}

#[test]
fn imds_retries_server_errors_inside_the_deadline() {
    let fake = fake_imds();
    *fake.fail_next.lock().unwrap() = 3;
    let server = fake.serve();
    let imds = Imds::new(&server.url()).unwrap();
    assert_eq!(
        imds.within(Duration::from_secs(10)).region().unwrap(),
        "us-west-2"
    );
    assert_eq!(count(&server, "GET"), 4);

    *fake.fail_next.lock().unwrap() = 1_000_000;
    let started = Instant::now();
    let e = imds
        .within(Duration::from_millis(400))
        .region()
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, ImdsError::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("placement/region"), "{e}");
    assert!(took < Duration::from_millis(1500), "gave up after {took:?}");
}

#[test]
fn imds_unreachable_gives_up_at_the_deadline() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let imds = Imds::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let started = Instant::now();
    let e = imds
        .within(Duration::from_millis(300))
        .instance_id()
        .unwrap_err();
    assert!(matches!(e, ImdsError::Unavailable { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[test]
fn imds_endpoint_comes_from_the_sdk_variable() {
    let env = |k: &str| {
        (k == "AWS_EC2_METADATA_SERVICE_ENDPOINT").then(|| "http://127.0.0.1:8111/".to_string())
    };
    assert_eq!(
        Imds::from_env(&env).unwrap().endpoint(),
        "http://127.0.0.1:8111"
    );
    assert_eq!(
        Imds::from_env(&|_| None).unwrap().endpoint(),
        "http://169.254.169.254"
    );
    let v6 = |k: &str| (k == "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE").then(|| "IPv6".to_string());
    assert_eq!(
        Imds::from_env(&v6).unwrap().endpoint(),
        "http://[fd00:ec2::254]"
    );
    let mode = |k: &str| (k == "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE").then(|| "v7".to_string());
    assert!(Imds::from_env(&mode)
        .unwrap_err()
        .to_string()
        .contains("expected IPv4 or IPv6"));
    let bad =
        |k: &str| (k == "AWS_EC2_METADATA_SERVICE_ENDPOINT").then(|| "169.254.169.254".to_string());
    let e = Imds::from_env(&bad).unwrap_err();
    assert!(
        e.to_string().contains("AWS_EC2_METADATA_SERVICE_ENDPOINT"),
        "{e}"
    );
}

fn env_from(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
}

fn creds_json(id: &str) -> String {
    format!(
        r#"{{"AccessKeyId":"{id}","SecretAccessKey":"container-secret","Token":"container-session","Expiration":"2099-01-01T00:00:00Z"}}"#
    )
}

#[test]
fn container_credentials_with_a_rotated_token_file() {
    let server = LocalServer::start(|r| match r.header("authorization") {
        Some("pod-identity-token") => Reply::ok(creds_json("ASIAPODIDENTITY")),
        _ => Reply::new(401, r#"{"Code":"AccessDenied","Message":"bad token"}"#),
    });
    let (_token_dir, token_file) = tempdir::file("aws", "pod-token", "pod-identity-token\n");
    let env = env_from(vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/v1/credentials", server.url()),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.display().to_string(),
        ),
    ]);
    let chain = DefaultChain::from_env(&env, None, None, http::local_agent(Duration::from_secs(2)))
        .unwrap();
    assert!(matches!(chain.source(), ChainSource::Container { .. }));
    let c = chain.fetch().unwrap();
    assert_eq!(c.access_key_id, "ASIAPODIDENTITY");
    assert_eq!(c.source, CredentialSource::Container);
    assert_eq!(
        c.session_token.as_ref().map(|s| s.expose()),
        Some("container-session")
    );
    assert!(c.expiration.is_some());
    // The file is read at every fetch: a rotated, wrong token is refused, and the error names
    // the endpoint and status but not the token.
    std::fs::write(&token_file, "stale-token").unwrap();
    let e = chain.fetch().unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("401") && s.contains("/v1/credentials") && s.contains("AccessDenied"),
        "{s}"
    );
    assert!(!s.contains("stale-token"), "{s}");
    // Inline token variant.
    let env = env_from(vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/v1/credentials", server.url()),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "pod-identity-token".to_string(),
        ),
    ]);
    let chain = DefaultChain::from_env(&env, None, None, http::local_agent(Duration::from_secs(2)))
        .unwrap();
    assert_eq!(chain.fetch().unwrap().access_key_id, "ASIAPODIDENTITY");
}

fn sts_answer() -> String {
    r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:kube-system:aws-node</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>irsa-session-token</SessionToken>
      <SecretAccessKey>irsa-secret-key</SecretAccessKey>
      <Expiration>2099-11-23T18:00:00Z</Expiration>
      <AccessKeyId>ASIAIRSA</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#
        .to_string()
}

#[test]
fn web_identity_calls_sts_unsigned_with_the_token_file() {
    let server = LocalServer::start(|r| {
        if r.body
            .contains("WebIdentityToken=eyJhbGciOiJSUzI1NiJ9.irsa")
        {
            Reply::ok(sts_answer())
        } else {
            Reply::new(
                400,
                "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>\
                 <Message>Couldn't retrieve verification key from your identity provider</Message></Error>\
                 <RequestId>r-1</RequestId></ErrorResponse>",
            )
        }
    });
    let (_token_dir, token_file) =
        tempdir::file("aws", "irsa-token", "eyJhbGciOiJSUzI1NiJ9.irsa\n");
    let env = env_from(vec![
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::111122223333:role/aws-node".to_string(),
        ),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AWS_ROLE_SESSION_NAME", "ipamd-test".to_string()),
        ("AWS_ENDPOINT_URL_STS", server.url()),
    ]);
    let chain = DefaultChain::from_env(
        &env,
        Some("us-west-2"),
        None,
        http::local_agent(Duration::from_secs(2)),
    )
    .unwrap();
    let c = chain.fetch().unwrap();
    assert_eq!(c.access_key_id, "ASIAIRSA");
    assert_eq!(c.secret_access_key.expose(), "irsa-secret-key");
    assert_eq!(c.source, CredentialSource::WebIdentity);
    let req = &server.requests()[0];
    assert_eq!(req.method, "POST");
    assert!(
        req.header("authorization").is_none(),
        "AssumeRoleWithWebIdentity is unsigned"
    );
    assert!(
        req.body
            .starts_with("Action=AssumeRoleWithWebIdentity&Version=2011-06-15"),
        "{}",
        req.body
    );
    assert!(
        req.body
            .contains("RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Faws-node"),
        "{}",
        req.body
    );
    assert!(req.body.contains("RoleSessionName=ipamd-test"));

    std::fs::write(&token_file, "expired.jwt").unwrap();
    let e = chain.fetch().unwrap_err().to_string();
    assert!(
        e.contains("InvalidIdentityToken") && e.contains("arn:aws:iam::111122223333:role/aws-node"),
        "{e}"
    );
    assert!(!e.contains("expired.jwt"), "{e}");
}

#[test]
fn instance_profile_credentials_from_imds() {
    let fake = fake_imds();
    fake.set("iam/security-credentials/", "node-role");
    fake.set(
        "iam/security-credentials/node-role",
        r#"{"Code":"Success","LastUpdated":"2026-11-23T16:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDS","SecretAccessKey":"imds-secret","Token":"imds-token","Expiration":"2099-01-01T00:00:00Z"}"#,
    );
    let server = fake.serve();
    let imds = Arc::new(Imds::new(&server.url()).unwrap());
    let chain = DefaultChain::from_env(
        &|_| None,
        None,
        Some(imds),
        http::local_agent(Duration::from_secs(2)),
    )
    .unwrap();
    assert!(matches!(chain.source(), ChainSource::InstanceProfile));
    let c = chain.fetch().unwrap();
    assert_eq!(
        (c.access_key_id.as_str(), c.source),
        ("ASIAIMDS", CredentialSource::InstanceProfile)
    );

    let bare = fake_imds();
    let server = bare.serve();
    let imds = Arc::new(Imds::new(&server.url()).unwrap());
    let chain = DefaultChain::from_env(
        &|_| None,
        None,
        Some(imds),
        http::local_agent(Duration::from_secs(2)),
    )
    .unwrap();
    let e = chain.fetch().unwrap_err().to_string();
    assert!(e.contains("no instance profile"), "{e}");
}

/// Retries without waiting (the backoff arithmetic has its own unit tests).
struct NoWait;
impl RetryEnv for NoWait {
    fn random_unit(&self) -> f64 {
        0.5
    }
    fn sleep(&self, _: Duration) {}
    fn now(&self) -> Instant {
        Instant::now()
    }
}

fn ec2_for(server: &LocalServer, creds: Credentials) -> Ec2Client {
    let config = Ec2Config {
        region: "us-west-2".into(),
        endpoint: Endpoint::parse(&server.url()).unwrap(),
        timeout: Duration::from_secs(5),
        ca_roots: Vec::new(),
        retry: RetryPolicy::EC2,
    };
    Ec2Client::new(config, Arc::new(creds)).with_retry_env(Arc::new(NoWait))
}

fn static_creds() -> Credentials {
    Credentials::new_static("AKIDLOCAL", "local-secret", Some("local-session"))
}

fn eni_page(ids: &[&str], next: Option<&str>) -> String {
    let items: String = ids
        .iter()
        .map(|id| format!("<item><networkInterfaceId>{id}</networkInterfaceId><status>available</status></item>"))
        .collect();
    let next = next
        .map(|t| format!("<nextToken>{t}</nextToken>"))
        .unwrap_or_default();
    format!(
        "<DescribeNetworkInterfacesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>r</requestId><networkInterfaceSet>{items}</networkInterfaceSet>{next}</DescribeNetworkInterfacesResponse>"
    )
}

#[test]
fn describe_network_interfaces_follows_every_page() {
    let server = LocalServer::start(|r| {
        if r.body.contains("NextToken=page3") {
            Reply::ok(eni_page(&["eni-5"], None))
        } else if r.body.contains("NextToken=page2") {
            Reply::ok(eni_page(&["eni-3", "eni-4"], Some("page3")))
        } else {
            Reply::ok(eni_page(&["eni-1", "eni-2"], Some("page2")))
        }
    });
    let ec2 = ec2_for(&server, static_creds());
    let req = DescribeNetworkInterfaces {
        ids: vec![],
        filters: vec![Filter::new("status", ["available"])],
    };
    let enis = ec2.describe_network_interfaces(&req).unwrap();
    let ids: Vec<&str> = enis.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["eni-1", "eni-2", "eni-3", "eni-4", "eni-5"]);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert!(r.body.contains("MaxResults=1000"), "{}", r.body);
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded; charset=utf-8")
        );
        assert_eq!(r.header("x-amz-security-token"), Some("local-session"));
        let auth = r.header("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDLOCAL/"),
            "{auth}"
        );
        assert!(auth.contains("/us-west-2/ec2/aws4_request"), "{auth}");
        assert!(r.header("user-agent").unwrap().contains(vpc_cni::VERSION));
    }
}

fn ec2_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors><RequestID>req-{code}</RequestID></Response>"
    )
}

fn assign_one() -> AssignPrivateIpAddresses {
    AssignPrivateIpAddresses {
        network_interface_id: "eni-1".into(),
        request: AssignIpv4::Count(1),
    }
}

#[test]
fn throttling_is_retried_within_the_attempt_budget() {
    let server = LocalServer::start(|_| {
        Reply::new(
            503,
            ec2_error("RequestLimitExceeded", "Request limit exceeded."),
        )
    });
    let ec2 = ec2_for(&server, static_creds());
    let e = ec2.assign_private_ip_addresses(&assign_one()).unwrap_err();
    assert!(matches!(e.kind, Ec2ErrorKind::Throttled { .. }), "{e:?}");
    assert_eq!(e.attempts, RetryPolicy::EC2.max_attempts);
    assert_eq!(
        server.requests().len(),
        RetryPolicy::EC2.max_attempts as usize
    );
    assert_eq!(e.request_id.as_deref(), Some("req-RequestLimitExceeded"));
    let stats = ec2.stats().snapshot();
    let s = &stats["AssignPrivateIpAddresses"];
    assert_eq!((s.requests, s.errors), (5, 5));
    assert_eq!(s.errors_by_code["RequestLimitExceeded"], 5);
}

#[test]
fn throttling_then_success_returns_the_answer() {
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    let server = LocalServer::start(move |_| {
        if n2.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::new(400, ec2_error("Throttling", "Rate exceeded"))
        } else {
            Reply::ok(
                "<AssignPrivateIpAddressesResponse><requestId>x</requestId><networkInterfaceId>eni-1</networkInterfaceId>\
                 <assignedPrivateIpAddressesSet><item><privateIpAddress>10.0.0.7</privateIpAddress></item>\
                 </assignedPrivateIpAddressesSet><return>true</return></AssignPrivateIpAddressesResponse>",
            )
        }
    });
    let ec2 = ec2_for(&server, static_creds());
    let got = ec2.assign_private_ip_addresses(&assign_one()).unwrap();
    assert_eq!(
        got.addresses,
        vec!["10.0.0.7".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(n.load(Ordering::SeqCst), 3);
}

#[test]
fn capacity_permissions_and_html_errors_are_classified() {
    let server = LocalServer::start(|r| {
        if r.body.contains("Action=AssignPrivateIpAddresses") {
            Reply::new(
                400,
                ec2_error(
                    "InsufficientFreeAddressesInSubnet",
                    "The specified subnet does not have enough free addresses",
                ),
            )
        } else if r.body.contains("Action=AssignIpv6Addresses") {
            Reply::new(
                403,
                "<ErrorResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15\"><Errors><Error><Code>UnauthorizedOperation</Code>\
                 <Message>You are not authorized to perform this operation.</Message></Error></Errors></ErrorResponse>",
            )
        } else if r.body.contains("Action=DeleteNetworkInterface") {
            Reply::new(500, "<html><body>Internal Server Error</body></html>")
        } else {
            Reply::dropped()
        }
    });
    let ec2 = ec2_for(&server, static_creds());
    let e = ec2.assign_private_ip_addresses(&assign_one()).unwrap_err();
    assert!(e.is_capacity(), "{e:?}");
    assert_eq!(
        e.attempts, 1,
        "capacity errors are the planner's to back off, not retried here"
    );

    let e = ec2
        .assign_ipv6_addresses(&vpc_cni::aws::ec2::AssignIpv6Addresses {
            network_interface_id: "eni-1".into(),
            request: vpc_cni::aws::ec2::AssignIpv6::Count(1),
        })
        .unwrap_err();
    assert!(matches!(e.kind, Ec2ErrorKind::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("ec2:AssignIpv6Addresses"), "{e}");

    let e = ec2.delete_network_interface("eni-1").unwrap_err();
    assert!(matches!(e.kind, Ec2ErrorKind::Unavailable { .. }), "{e:?}");
    assert_eq!(e.attempts, 5);

    let e = ec2.create_tags(&["eni-1".into()], &[]).unwrap_err();
    assert!(
        matches!(e.kind, Ec2ErrorKind::Unavailable { .. }),
        "dropped connections are retried: {e:?}"
    );
    assert_eq!(e.attempts, 5);
}

#[test]
fn rejected_credentials_are_not_retried() {
    let server = LocalServer::start(|_| {
        Reply::new(
            401,
            ec2_error(
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
            ),
        )
    });
    let ec2 = ec2_for(&server, static_creds());
    let e = ec2
        .describe_network_interfaces(&DescribeNetworkInterfaces::default())
        .unwrap_err();
    assert!(matches!(e.kind, Ec2ErrorKind::AuthFailure { .. }), "{e:?}");
    assert!(e.to_string().contains("credentials rejected"), "{e}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn expired_credentials_are_refreshed_once_and_retried() {
    let server = LocalServer::start(|r| {
        if r.header("authorization")
            .is_some_and(|a| a.contains("Credential=AKIDOLD/"))
        {
            Reply::new(400, ec2_error("RequestExpired", "Request has expired."))
        } else {
            Reply::ok("<DeleteNetworkInterfaceResponse><requestId>r</requestId><return>true</return></DeleteNetworkInterfaceResponse>")
        }
    });
    let fetches = Arc::new(AtomicU32::new(0));
    let f2 = fetches.clone();
    let cache = CachedCredentials::from_fn(move || {
        let id = if f2.fetch_add(1, Ordering::SeqCst) == 0 {
            "AKIDOLD"
        } else {
            "AKIDNEW"
        };
        Ok(Credentials::new_static(id, "s", None))
    });
    let config = Ec2Config {
        region: "us-west-2".into(),
        endpoint: Endpoint::parse(&server.url()).unwrap(),
        timeout: Duration::from_secs(5),
        ca_roots: Vec::new(),
        retry: RetryPolicy::EC2,
    };
    let cache: Arc<dyn ProvideCredentials> = Arc::new(cache);
    let ec2 = Ec2Client::new(config, cache).with_retry_env(Arc::new(NoWait));
    ec2.delete_network_interface("eni-1").unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(server.requests().len(), 2);
}

/// EC2 over TLS with a private CA given by SSL_CERT_FILE: the ring provider is set, the node's
/// bundle is what is trusted, and a server the bundle does not vouch for is refused.
#[test]
fn ec2_over_tls_trusts_exactly_the_configured_bundle() {
    let tls_dir = tempdir::TempDir::new("aws-tls");
    let dir = tls_dir.0.clone();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=vpc-cni test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other.pem",
        "-days",
        "2",
        "-subj",
        "/CN=another CA",
    ]);

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                if aws_local::read_request(&mut tls).is_some() {
                    aws_local::write_reply(
                        &mut tls,
                        &Reply::ok("<DescribeInstancesResponse><requestId>tls</requestId><reservationSet/></DescribeInstancesResponse>"),
                    );
                    tls.conn.send_close_notify();
                    let _ = std::io::Write::flush(&mut tls);
                }
            });
        }
    });

    let endpoint = format!("https://127.0.0.1:{port}");
    let ca = dir.join("ca.pem").display().to_string();
    let env = env_from(vec![
        ("AWS_ENDPOINT_URL_EC2", endpoint.clone()),
        ("SSL_CERT_FILE", ca),
    ]);
    let ec2 = Ec2Client::from_env("us-west-2", Arc::new(static_creds()), &env)
        .unwrap()
        .with_retry_env(Arc::new(NoWait));
    let instances = ec2.describe_instances(&Default::default()).unwrap();
    assert!(instances.is_empty());

    let other = dir.join("other.pem").display().to_string();
    let env = env_from(vec![
        ("AWS_ENDPOINT_URL_EC2", endpoint),
        ("SSL_CERT_FILE", other),
    ]);
    let ec2 = Ec2Client::from_env("us-west-2", Arc::new(static_creds()), &env)
        .unwrap()
        .with_retry_env(Arc::new(NoWait))
        .with_retry_policy(RetryPolicy::NONE);
    let e = ec2.describe_instances(&Default::default()).unwrap_err();
    assert!(matches!(e.kind, Ec2ErrorKind::Unavailable { .. }), "{e:?}");
    assert!(
        e.to_string().to_lowercase().contains("issuer") || e.to_string().contains("certificate"),
        "{e}"
    );
}
