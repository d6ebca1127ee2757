//! The CNI environment (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_IFNAME`, `CNI_NETNS`, `CNI_ARGS`,
//! ...) as `KEY=VALUE` lines, and the whole input as `CNI_ARGS`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_cni::cni::spec::{validate_container_id, validate_ifname, CniArgs, Command, Env};
use vpc_cni_fuzz::env_lines;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let vars = env_lines(&text);
    if let Ok(env) = Env::from_vars(|k| vars.get(k).cloned()) {
        if matches!(env.command, Command::Add | Command::Del | Command::Check) {
            assert!(validate_container_id(&env.container_id).is_ok());
            assert!(validate_ifname(&env.ifname).is_ok());
        }
    }
    let _ = CniArgs::parse(&text);
    for line in text.lines() {
        let _ = (
            Command::parse(line),
            validate_ifname(line),
            validate_container_id(line),
        );
    }
});
