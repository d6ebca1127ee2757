//! Workload-identity credentials against the VPC-in-a-box, built the way ipamd builds them
//! (`DefaultChain::from_env` + `CachedCredentials`, STS over the TLS agent) and used to sign EC2
//! calls that moto checks with SigV4 and seed 001's policy:
//! - IRSA: `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE` → the sim's STS
//!   (AssumeRoleWithWebIdentity, checked like STS checks it, answered by moto's STS);
//! - EKS Pod Identity: `AWS_CONTAINER_CREDENTIALS_FULL_URI` +
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` → the sim's Pod Identity agent endpoint.
//!
//! The tokens are service-account JWTs minted by the sim's OIDC issuer.

// Test code: a panic is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/tempdir.rs"]
mod tempdir;
#[path = "support/vpcsim.rs"]
mod vpcsim;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use vpc_cni::aws::credentials::{
    CachedCredentials, CredentialSource, Credentials, DefaultChain, ProvideCredentials,
};
use vpc_cni::aws::ec2::*;
use vpc_cni::aws::error::Ec2ErrorKind;
use vpc_cni::aws::http;
use vpc_cni::aws::imds::Imds;
use vpcsim::{Fault, Node, StartOptions, VpcSim};

const STS_AUDIENCE: &str = "sts.amazonaws.com";
const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";

fn start(prefix: &str) -> (VpcSim, Node) {
    let mut sim = VpcSim::start_with(
        prefix,
        StartOptions {
            netns: false,
            ..StartOptions::default()
        },
    )
    .unwrap();
    let node = sim.launch_node("m5.large");
    (sim, node)
}

fn env_of(pairs: Vec<(String, String)>) -> impl Fn(&str) -> Option<String> {
    move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

/// What a pod of aws-node sees besides its identity variables: region, the sim's EC2 and the
/// node's IMDS (so the chain could fall back to the instance profile, and must not).
fn base_env(sim: &VpcSim, node: &Node) -> Vec<(String, String)> {
    vec![
        ("AWS_REGION".into(), sim.region().into()),
        ("AWS_ENDPOINT_URL_EC2".into(), sim.ec2_endpoint().into()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
            node.imds_endpoint.clone(),
        ),
    ]
}

/// The chain as ipamd builds it: STS over the TLS agent with the system CA bundle, IMDS present.
fn chain(env: &dyn Fn(&str) -> Option<String>, node: &Node) -> DefaultChain {
    let (_, roots) = http::load_ca_bundle(None).unwrap();
    let sts_agent = http::tls_agent(roots, http::DEFAULT_HTTP_TIMEOUT);
    let imds = Arc::new(Imds::new(&node.imds_endpoint).unwrap());
    let region = env("AWS_REGION");
    DefaultChain::from_env(env, region.as_deref(), Some(imds), sts_agent).unwrap()
}

fn ec2_signed_by(env: &dyn Fn(&str) -> Option<String>, creds: Arc<CachedCredentials>) -> Ec2Client {
    let region = env("AWS_REGION").unwrap();
    let provider: Arc<dyn ProvideCredentials> = creds;
    Ec2Client::from_env(&region, provider, env).unwrap()
}

fn enis_of(node: &Node) -> DescribeNetworkInterfaces {
    DescribeNetworkInterfaces {
        ids: vec![],
        filters: vec![Filter::new(
            "attachment.instance-id",
            [node.instance_id.clone()],
        )],
    }
}

/// Temporary keys as STS and the Pod Identity agent hand them out.
fn assert_temporary(creds: &Credentials, source: CredentialSource, max_life: Duration) {
    assert_eq!(creds.source, source);
    assert!(
        creds.access_key_id.starts_with("ASIA"),
        "{}",
        creds.access_key_id
    );
    assert!(creds.session_token.is_some());
    let left = creds
        .expiration
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        left > Duration::from_secs(600) && left <= max_life,
        "expires in {left:?}"
    );
}

fn write_token(dir: &Path, name: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    // The kubelet writes the projected token without a newline; the SDKs trim either way.
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

#[test]
fn irsa_web_identity_keys_from_the_sims_sts_sign_ec2_calls() {
    let (sim, node) = start("stsirsa");
    let token = sim.service_account_token(STS_AUDIENCE, None).unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let dir = tempdir::TempDir::new("sts-irsa");
    let token_file = write_token(&dir.0, "token", &token);
    let mut pairs = base_env(&sim, &node);
    pairs.extend([
        ("AWS_ROLE_ARN".to_string(), sim.role_arn().to_string()),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE".to_string(),
            token_file.display().to_string(),
        ),
        (
            "AWS_ENDPOINT_URL_STS".to_string(),
            sim.sts_endpoint().to_string(),
        ),
    ]);
    let env = env_of(pairs);
    let cache = Arc::new(CachedCredentials::new(chain(&env, &node)));
    let creds = cache.credentials().unwrap();
    assert_temporary(
        &creds,
        CredentialSource::WebIdentity,
        Duration::from_secs(3600),
    );
    let ec2 = ec2_signed_by(&env, cache.clone());

    // Allowed by seed 001's policy: the node's primary ENI.
    let enis = ec2.describe_network_interfaces(&enis_of(&node)).unwrap();
    assert_eq!(
        enis.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec![node.primary_eni.as_str()]
    );
    let inst = ec2
        .describe_instances(&DescribeInstances {
            ids: vec![node.instance_id.clone()],
            filters: vec![],
        })
        .unwrap();
    assert_eq!(inst[0].id, node.instance_id);
    // Outside the policy: refused, naming the IAM action, not retried.
    let e = ec2
        .describe_subnets(&DescribeSubnets::default())
        .unwrap_err();
    assert!(matches!(e.kind, Ec2ErrorKind::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("ec2:DescribeSubnets"), "{e}");
    assert_eq!(e.attempts, 1);

    // The sim saw one STS call (the keys are cached) and every EC2 call signed with its keys.
    let sts = sim.calls(Some("AssumeRoleWithWebIdentity")).unwrap();
    assert_eq!(sts.len(), 1, "{sts:?}");
    assert_eq!((sts[0].service.as_str(), sts[0].status), ("sts", 200));
    assert_eq!(
        sts[0].access_key_id, None,
        "AssumeRoleWithWebIdentity is unsigned"
    );
    assert_eq!(
        sts[0].issued_access_key_id.as_deref(),
        Some(creds.access_key_id.as_str())
    );
    assert_eq!(sts[0].params["RoleArn"], sim.role_arn());
    let session = sts[0].params["RoleSessionName"].as_str().unwrap();
    assert!(session.starts_with("vpc-cni-"), "{session}");
    assert!(
        sts[0].params.get("WebIdentityToken").is_none(),
        "the sim never logs the token"
    );
    let ec2_calls: Vec<_> = sim
        .calls(None)
        .unwrap()
        .into_iter()
        .filter(|c| c.service == "ec2")
        .collect();
    assert_eq!(
        ec2_calls
            .iter()
            .map(|c| (c.action.as_str(), c.status, c.access_key_id.as_deref()))
            .collect::<Vec<_>>(),
        vec![
            (
                "DescribeNetworkInterfaces",
                200,
                Some(creds.access_key_id.as_str())
            ),
            ("DescribeInstances", 200, Some(creds.access_key_id.as_str())),
            ("DescribeSubnets", 403, Some(creds.access_key_id.as_str())),
        ]
    );
    assert_eq!(ec2_calls[2].error.as_deref(), Some("UnauthorizedOperation"));
    // Web identity comes before the instance profile: the node's IMDS was never asked.
    let imds = sim.request("GET", "/imds/requests", None).unwrap();
    assert_eq!(imds[&node.name], 0, "{imds}");
}

#[test]
fn irsa_refusals_name_the_role_and_never_the_token() {
    let (sim, node) = start("stsirsaerr");
    let dir = tempdir::TempDir::new("sts-irsa-err");
    // A token of another service account: the role's trust policy names aws-node's only.
    let other = sim
        .service_account_token(STS_AUDIENCE, Some("system:serviceaccount:default:app"))
        .unwrap();
    // A token for the Pod Identity audience: not for STS.
    let pods = sim
        .service_account_token(POD_IDENTITY_AUDIENCE, None)
        .unwrap();
    // aws-node's token with its signature replaced.
    let good = sim.service_account_token(STS_AUDIENCE, None).unwrap();
    let forged = format!("{}.{}", good.rsplit_once('.').unwrap().0, "A".repeat(43));
    for (name, token, code) in [
        ("other", &other, "AccessDenied"),
        ("pods", &pods, "InvalidIdentityToken"),
        ("forged", &forged, "InvalidIdentityToken"),
    ] {
        let token_file = write_token(&dir.0, name, token);
        let mut pairs = base_env(&sim, &node);
        pairs.extend([
            ("AWS_ROLE_ARN".to_string(), sim.role_arn().to_string()),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE".to_string(),
                token_file.display().to_string(),
            ),
            (
                "AWS_ENDPOINT_URL_STS".to_string(),
                sim.sts_endpoint().to_string(),
            ),
            ("AWS_ROLE_SESSION_NAME".to_string(), format!("case-{name}")),
        ]);
        let env = env_of(pairs);
        let e = chain(&env, &node).fetch().unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.source, Some(CredentialSource::WebIdentity), "{msg}");
        assert!(msg.contains(code), "{name}: {msg}");
        assert!(msg.contains(sim.role_arn()), "{name}: {msg}");
        assert!(!msg.contains(token.as_str()), "{name}: token leaked: {msg}");
        let calls: Vec<_> = sim
            .calls(Some("AssumeRoleWithWebIdentity"))
            .unwrap()
            .into_iter()
            .filter(|c| c.params["RoleSessionName"] == format!("case-{name}"))
            .collect();
        assert_eq!(calls.len(), 1, "{name}: refusals are not retried");
        assert_eq!(calls[0].error.as_deref(), Some(code));
    }
}

#[test]
fn irsa_sts_throttling_is_retried() {
    let (sim, node) = start("ststhr");
    sim.inject_fault(&Fault::error("AssumeRoleWithWebIdentity", "Throttling", 400).count(1))
        .unwrap();
    let token = sim.service_account_token(STS_AUDIENCE, None).unwrap();
    let (_dir, token_file) = tempdir::file("sts-thr", "token", &token);
    let mut pairs = base_env(&sim, &node);
    pairs.extend([
        ("AWS_ROLE_ARN".to_string(), sim.role_arn().to_string()),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE".to_string(),
            token_file.display().to_string(),
        ),
        (
            "AWS_ENDPOINT_URL_STS".to_string(),
            sim.sts_endpoint().to_string(),
        ),
    ]);
    let env = env_of(pairs);
    let creds = chain(&env, &node).fetch().unwrap();
    assert_eq!(creds.source, CredentialSource::WebIdentity);
    let calls = sim.calls(Some("AssumeRoleWithWebIdentity")).unwrap();
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.status, c.error.as_deref()))
            .collect::<Vec<_>>(),
        vec![(400, Some("Throttling")), (200, None)]
    );
    assert_eq!(
        calls[1].issued_access_key_id.as_deref(),
        Some(creds.access_key_id.as_str())
    );
}

fn pod_identity_env(sim: &VpcSim, node: &Node, token_file: &Path) -> Vec<(String, String)> {
    let mut pairs = base_env(sim, node);
    pairs.extend([
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_string(),
            sim.pod_identity_endpoint().to_string(),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".to_string(),
            token_file.display().to_string(),
        ),
    ]);
    pairs
}

#[test]
fn pod_identity_container_credentials_sign_ec2_calls() {
    let (sim, node) = start("stspod");
    let token = sim
        .service_account_token(POD_IDENTITY_AUDIENCE, None)
        .unwrap();
    let (_dir, token_file) = tempdir::file("sts-pod", "eks-pod-identity-token", &token);
    let env = env_of(pod_identity_env(&sim, &node, &token_file));
    let cache = Arc::new(CachedCredentials::new(chain(&env, &node)));
    let creds = cache.credentials().unwrap();
    assert_temporary(
        &creds,
        CredentialSource::Container,
        Duration::from_secs(6 * 3600),
    );
    let ec2 = ec2_signed_by(&env, cache.clone());
    let enis = ec2.describe_network_interfaces(&enis_of(&node)).unwrap();
    assert_eq!(enis.len(), 1);
    assert_eq!(enis[0].id, node.primary_eni);
    let e = ec2
        .assign_ipv6_addresses(&AssignIpv6Addresses {
            network_interface_id: node.primary_eni.clone(),
            request: AssignIpv6::Count(1),
        })
        .unwrap_err();
    assert!(matches!(e.kind, Ec2ErrorKind::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("ec2:AssignIpv6Addresses"), "{e}");

    let agent = sim.calls(Some("AssumeRoleForPodIdentity")).unwrap();
    assert_eq!(agent.len(), 1, "cached: {agent:?}");
    assert_eq!(
        (agent[0].service.as_str(), agent[0].status),
        ("eks-auth", 200)
    );
    assert_eq!(
        agent[0].issued_access_key_id.as_deref(),
        Some(creds.access_key_id.as_str())
    );
    assert_eq!(
        agent[0].params["subject"],
        "system:serviceaccount:kube-system:aws-node"
    );
    let described = sim.calls(Some("DescribeNetworkInterfaces")).unwrap();
    assert_eq!(described.len(), 1);
    assert_eq!(
        (described[0].status, described[0].access_key_id.as_deref()),
        (200, Some(creds.access_key_id.as_str()))
    );
    let refused = sim.calls(Some("AssignIpv6Addresses")).unwrap();
    assert_eq!(
        refused[0].access_key_id.as_deref(),
        Some(creds.access_key_id.as_str())
    );

    // The token file is read at every fetch (the kubelet rotates it): a new token, new keys.
    let rotated = sim
        .service_account_token(POD_IDENTITY_AUDIENCE, None)
        .unwrap();
    assert_ne!(rotated, token);
    std::fs::write(&token_file, &rotated).unwrap();
    cache.invalidate();
    let again = cache.credentials().unwrap();
    assert_ne!(again.access_key_id, creds.access_key_id);
    ec2.describe_network_interfaces(&enis_of(&node)).unwrap();
    assert_eq!(sim.call_count("AssumeRoleForPodIdentity").unwrap(), 2);
    let last = sim.calls(Some("DescribeNetworkInterfaces")).unwrap();
    assert_eq!(
        last.last().unwrap().access_key_id.as_deref(),
        Some(again.access_key_id.as_str())
    );
}

#[test]
fn pod_identity_wrong_token_fails_clearly_without_echoing_it() {
    let (sim, node) = start("stspoderr");
    // An IRSA token (audience sts.amazonaws.com) is not a Pod Identity token; garbage is not a token.
    let irsa = sim.service_account_token(STS_AUDIENCE, None).unwrap();
    let dir = tempdir::TempDir::new("sts-pod-err");
    for (name, token) in [
        ("irsa", irsa.as_str()),
        ("garbage", "not-a-service-account-token"),
    ] {
        let token_file = write_token(&dir.0, name, token);
        let env = env_of(pod_identity_env(&sim, &node, &token_file));
        let cache = Arc::new(CachedCredentials::new(chain(&env, &node)));
        let e = cache.credentials().unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.source, Some(CredentialSource::Container), "{msg}");
        assert!(
            msg.contains("HTTP 401") && msg.contains("InvalidTokenException"),
            "{name}: {msg}"
        );
        assert!(msg.contains(sim.pod_identity_endpoint()), "{name}: {msg}");
        assert!(!msg.contains(token), "{name}: token leaked: {msg}");

        // Through the EC2 client: the call fails before anything reaches EC2, saying why.
        let ec2 = ec2_signed_by(&env, cache);
        let e = ec2
            .describe_network_interfaces(&enis_of(&node))
            .unwrap_err();
        assert!(matches!(e.kind, Ec2ErrorKind::Credentials { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("container credentials endpoint"), "{msg}");
        assert!(msg.contains("HTTP 401"), "{msg}");
        assert!(!msg.contains(token), "{name}: token leaked: {msg}");
    }
    assert_eq!(sim.call_count("DescribeNetworkInterfaces").unwrap(), 0);
    let agent = sim.calls(Some("AssumeRoleForPodIdentity")).unwrap();
    assert!(agent
        .iter()
        .all(|c| c.status == 401 && c.issued_access_key_id.is_none()));
    // 401 is not retried: one call per fetch, two fetches per token.
    assert_eq!(agent.len(), 4, "{agent:?}");

    // The same with the token given directly (AWS_CONTAINER_AUTHORIZATION_TOKEN).
    let pairs = vec![
        ("AWS_REGION".to_string(), sim.region().to_string()),
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_string(),
            sim.pod_identity_endpoint().to_string(),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN".to_string(),
            irsa.clone(),
        ),
    ];
    let env = env_of(pairs);
    let e = chain(&env, &node).fetch().unwrap_err().to_string();
    assert!(e.contains("HTTP 401"), "{e}");
    assert!(!e.contains(&irsa), "token leaked: {e}");
}
