//! IMDS answers: sections `--- KEY` (below `/latest/meta-data/`) with the body IMDS sends; an
//! absent key is a 404. Every typed reader runs over them (MACs, CIDRs, addresses, numbers).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_cni::aws::imds::ImdsCall;
use vpc_cni_fuzz::sections;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let answers = sections(&text);
    let answer = |key: &str| answers.get(key).cloned();
    let call = ImdsCall::from_answers(&answer);
    let _ = call.instance_id();
    let _ = call.instance_type();
    let _ = call.region();
    let _ = call.availability_zone();
    let _ = call.primary_mac();
    let _ = call.local_ipv4();
    let _ = call.instance_profile_role();
    if let Ok(list) = call.interfaces() {
        for w in list.windows(2) {
            assert!(
                (w[0].network_card, w[0].device_number) <= (w[1].network_card, w[1].device_number)
            );
        }
    }
    if let Ok(mac) = call.primary_mac() {
        let _ = call.interface(&mac);
    }
});
