//! Envelope bytes as they come off gossip or a stream: decode, then verify
//! (version, size, signature, payload) and check the time, as every peer
//! does. What decodes must encode back to an envelope that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modchain_fuzz::NOW;
use modchain_protocol::Envelope;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::decode(data) else {
        return;
    };
    let again = Envelope::decode(&envelope.to_bytes());
    assert_eq!(
        again.as_ref(),
        Ok(&envelope),
        "re-encoding changed the envelope"
    );
    if let Ok(signed) = envelope.verify() {
        let _ = signed.check_time(NOW);
    }
});
