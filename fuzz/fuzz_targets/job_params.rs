//! Job parameters: JSON from the API or a client, parsed the way the node
//! parses them (the submit route's body, and a provider's admission of
//! `JobSpec::params`). What parses is written into a job spec as the API
//! writes it, sealed, opened off the wire, and parsed again on the
//! provider's side: it must arrive unchanged and still parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modchain_fuzz::{CLIENT, NOW, seal};
use modchain_protocol::testnet::test_job;
use modchain_protocol::{Envelope, JobSpec, Message};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let params = serde_json::to_string(&value).expect("a parsed value serialises");
    let spec = JobSpec {
        params,
        ..test_job(NOW, 0)
    };
    if spec.validate().is_err() {
        return;
    }
    let opened = Envelope::open(
        &seal(CLIENT, NOW, Message::Job(spec.clone())).to_bytes(),
        NOW,
    )
    .expect("a valid job spec opens");
    let Message::Job(received) = opened.message() else {
        panic!("a job opened as {:?}", opened.kind());
    };
    assert_eq!(
        received.params, spec.params,
        "the params changed on the wire"
    );
    serde_json::from_str::<Value>(&received.params).expect("the provider cannot parse the params");
});
