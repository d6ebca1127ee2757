//! ipamd's environment configuration as `KEY=VALUE` lines: the whole configuration, the IMDS
//! endpoint choice, the credential chain's choice and the STS endpoint, and each value through
//! the small value parsers.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vpc_cni::aws::credentials::{sts_endpoint, DefaultChain};
use vpc_cni::aws::http::{self, Endpoint};
use vpc_cni::aws::imds::Imds;
use vpc_cni::config::{
    parse_bind_address, parse_duration, parse_go_bool, parse_go_int, Config, LogLevel,
    PluginLogDestination,
};
use vpc_cni_fuzz::env_lines;

fn agent() -> ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT
        .get_or_init(|| http::local_agent(Duration::from_secs(1)))
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let vars = env_lines(&text);
    let lookup = |k: &str| vars.get(k).cloned();
    if let Ok((config, _warnings)) = Config::from_env(lookup) {
        let json = config.to_json();
        serde_json::from_str::<serde_json::Value>(&json).expect("the configuration JSON parses");
        let _ = (config.effective_values(), config.ip_targets_defined());
    }
    // Both build HTTP agents (slow): only when the input sets one of their variables.
    if vars.keys().any(|k| k.starts_with("AWS_EC2_METADATA")) {
        let _ = Imds::from_env(&lookup);
    }
    let region = vars.get("AWS_REGION").map(String::as_str);
    let _ = sts_endpoint(&lookup, region);
    if vars
        .keys()
        .any(|k| k.starts_with("AWS_") && !k.starts_with("AWS_VPC"))
    {
        let _ = DefaultChain::from_env(&lookup, region, None, agent()).map(|c| format!("{c:?}"));
    }
    for v in vars.values() {
        let _ = (
            parse_go_bool(v),
            parse_go_int(v),
            parse_duration(v),
            parse_bind_address(v),
        );
        let _ = (
            LogLevel::parse(v),
            PluginLogDestination::parse(v),
            Endpoint::parse(v),
        );
        let _ = http::http_timeout(Some(v));
    }
});
