//! The payload of every message kind: the first byte picks the kind (its
//! index in `Kind::ALL`), the rest is the payload, decoded within the kind's
//! limit. A payload that decodes is sealed and opened again: the path from
//! the wire (`Envelope::open`) must give back the same message, or refuse
//! it only for the bounds it checks after decoding (advert syncs and
//! bundles over their counts).
#![no_main]

use libfuzzer_sys::fuzz_target;
use modchain_fuzz::{NOW, PROVIDER, seal};
use modchain_protocol::{Envelope, Kind, Message, Rejection, decode};

fn decode_as(kind: Kind, payload: &[u8]) -> Option<Message> {
    let limit = kind.max_payload_bytes();
    Some(match kind {
        Kind::Advert => Message::Advert(decode(payload, limit).ok()?),
        Kind::Job => Message::Job(decode(payload, limit).ok()?),
        Kind::CallForBids => Message::CallForBids(decode(payload, limit).ok()?),
        Kind::Bid => Message::Bid(decode(payload, limit).ok()?),
        Kind::Decline => Message::Decline(decode(payload, limit).ok()?),
        Kind::Award => Message::Award(decode(payload, limit).ok()?),
        Kind::Status => Message::Status(decode(payload, limit).ok()?),
        Kind::Result => Message::Result(decode(payload, limit).ok()?),
        Kind::Cancel => Message::Cancel(decode(payload, limit).ok()?),
        Kind::Receipt => Message::Receipt(decode(payload, limit).ok()?),
        Kind::Log => Message::Log(decode(payload, limit).ok()?),
        Kind::Fetch => Message::Fetch(decode(payload, limit).ok()?),
        Kind::Chunk => Message::Chunk(decode(payload, limit).ok()?),
        Kind::AdvertSync => Message::AdvertSync(decode(payload, limit).ok()?),
        Kind::AdvertBundle => Message::AdvertBundle(decode(payload, limit).ok()?),
    })
}

/// Whether the message breaks a bound that is checked after decoding.
fn over_counts(message: &Message) -> bool {
    match message {
        Message::AdvertSync(m) => !m.within_limits(),
        Message::AdvertBundle(m) => !m.within_limits(),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&tag, payload)) = data.split_first() else {
        return;
    };
    let kind = Kind::ALL[usize::from(tag) % Kind::ALL.len()];
    let Some(message) = decode_as(kind, payload) else {
        return;
    };
    let sealed = seal(PROVIDER, NOW, message.clone());
    match Envelope::open(&sealed.to_bytes(), NOW) {
        Ok(opened) => {
            assert!(
                !over_counts(&message),
                "a {kind} over its counts was opened"
            );
            assert_eq!(opened.message(), &message, "the {kind} changed on the wire");
        }
        Err(Rejection::MalformedPayload { .. }) if over_counts(&message) => {}
        Err(e) => panic!("a {kind} that decoded was refused after sealing: {e}"),
    }
});
