//! Bytes a peer can send us, taken the way the node takes them. The first
//! byte picks the way in:
//!
//! - 0: a request-response stream (the direct-message codec's length and
//!   bytes), handed to `take_direct` as the driver does;
//! - 1: a gossip message, screened and handed to `take_bytes`;
//! - 2: a response stream (the acknowledgement a sender reads back).
//!
//! The peer then acts on what it took (its actions are drained). A request
//! the codec reads must frame back to the bytes it was read from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modchain_fuzz::{NOW, drain, frame, read_request, read_response, receiver};
use modchain_net::driver::adverts::AdvertEnvelopes;
use modchain_net::driver::messages::{take_bytes, take_direct};
use modchain_protocol::Topic;

fuzz_target!(|data: &[u8]| {
    let Some((&way, rest)) = data.split_first() else {
        return;
    };
    let mut peer = receiver();
    let mut adverts = AdvertEnvelopes::new();
    match way % 3 {
        0 => {
            let Ok(bytes) = read_request(rest) else {
                return;
            };
            let framed = frame(&bytes).expect("a frame the codec read is within its limit");
            assert_eq!(framed, rest[..framed.len()], "the frame changed");
            let _ = take_direct(&mut peer, &mut adverts, NOW, &bytes);
        }
        1 => {
            // Either topic, or one that is not ours: the next byte picks.
            let Some((&t, rest)) = rest.split_first() else {
                return;
            };
            let topic = [Some(Topic::Adverts), Some(Topic::Receipts), None][usize::from(t % 3)];
            let _ = take_bytes(&mut peer, &mut adverts, NOW, topic, rest);
        }
        _ => {
            let _ = read_response(rest);
            return;
        }
    }
    drain(&mut peer);
});
