//! An advert bundle (the answer to a joining peer's advert sync): its
//! payload is decoded within the kind's limit, sealed by a peer and taken
//! the way the driver takes a direct message, so each envelope inside goes
//! through the gossip path. Every envelope is accounted for, a bundle is
//! refused only for its count, and what the peer keeps can be handed on in
//! bundles within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modchain_fuzz::{BUNDLER, NOW, drain, receiver, seal};
use modchain_net::driver::adverts::AdvertEnvelopes;
use modchain_net::driver::messages::{Direct, Verdict, take_direct};
use modchain_protocol::{AdvertBundle, AdvertSync, Kind, Message, decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = decode::<AdvertBundle>(data, Kind::AdvertBundle.max_payload_bytes()) else {
        return;
    };
    let bytes = seal(BUNDLER, NOW, Message::AdvertBundle(bundle.clone())).to_bytes();
    let mut peer = receiver();
    let mut adverts = AdvertEnvelopes::new();
    match take_direct(&mut peer, &mut adverts, NOW, &bytes) {
        Direct::Bundle(taken) => {
            assert!(bundle.within_limits(), "a bundle over its count was taken");
            assert_eq!(
                taken.adverts.len() + taken.not_adverts,
                bundle.adverts.len(),
                "an envelope of the bundle went unaccounted"
            );
        }
        Direct::Message(Verdict::Rejected(_)) => {
            assert!(
                !bundle.within_limits(),
                "a bundle within its limits was refused"
            );
        }
        other => panic!("a bundle came back as {other:?}"),
    }
    drain(&mut peer);
    for out in adverts.bundles(peer.adverts(), NOW, &AdvertSync::default()) {
        assert!(out.within_limits());
        assert!(encode(&out).len() <= Kind::AdvertBundle.max_payload_bytes());
    }
});
