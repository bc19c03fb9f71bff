//! Bytes in and out of the protocol's `Peer`: what a driver tells gossipsub
//! of a message (forward it, drop it quietly, or penalise whoever sent it),
//! direct messages (an advert sync or bundle among them, which the driver
//! handles itself), and direct messages to ourselves, which stay in memory.

use super::adverts::AdvertEnvelopes;
use crate::behaviour::EnvelopeCodec;
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::{PeerId, request_response};
use modchain_protocol::{
    AdvertSync, Envelope, IdentityError, Kind, Message, NodeId, Peer, ReceiptError, Refused,
    Rejection, Signed, Timestamp, Topic, gossip_accepts, rule_for,
};

/// What became of bytes from the network.
#[derive(Debug)]
pub enum Verdict {
    /// Verified and taken by the peer; the advert, if it was one that we
    /// now keep to hand to peers that join.
    Taken(Option<Box<Signed>>),
    /// Verified, but an advert older than the one held (replay or
    /// reordering): authentic but old news.
    Stale,
    /// Failed the protocol's checks: malformed, forged, from the future...
    Rejected(Rejection),
    /// Authentic, but on a channel its kind does not travel by: a kind
    /// other than its topic's came by gossip (a bid, an advert sync), or a
    /// gossip-only kind came as a direct message.
    Misrouted(Kind),
    /// A receipt whose signatures or award do not check out: anyone can
    /// see that from the receipt alone.
    InvalidReceipt(ReceiptError),
    /// Authentic and well-formed, but this peer refused it for what it
    /// knows (an award by an orchestrator it did not see elected, a replay):
    /// another peer's view may differ, so the sender is not penalised.
    Refused(Refused),
}

impl Verdict {
    /// What gossipsub does with the message: old news is neither forwarded
    /// nor held against the peer that sent it; a rejection or a misrouted
    /// message is both, since an honest peer forwards neither.
    pub fn acceptance(&self) -> MessageAcceptance {
        match self {
            Verdict::Taken(_) => MessageAcceptance::Accept,
            Verdict::Stale | Verdict::Refused(_) => MessageAcceptance::Ignore,
            Verdict::Rejected(_) | Verdict::Misrouted(_) | Verdict::InvalidReceipt(_) => {
                MessageAcceptance::Reject
            }
        }
    }

    /// A short name for the verdict of a message that was not taken, for
    /// counters: the rejection's label, or `misrouted`.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Taken(_) => "taken",
            Verdict::Stale => "stale",
            Verdict::Rejected(r) => r.label(),
            Verdict::Misrouted(_) => "misrouted",
            Verdict::InvalidReceipt(_) => "invalid_receipt",
            Verdict::Refused(r) => r.label(),
        }
    }

    /// Tells gossipsub what to do with the message `id` that `source` sent us.
    pub fn report(
        &self,
        gossipsub: &mut gossipsub::Behaviour,
        id: &gossipsub::MessageId,
        source: &PeerId,
    ) {
        gossipsub.report_message_validation_result(id, source, self.acceptance());
    }
}

/// The check every peer makes of gossip before anything else, nodes and
/// bootstrap peers alike: the envelope opened (`opened`: decoded, signed,
/// fresh, of a known version), its kind is one that `topic` carries (each
/// topic only its own, see `modchain_protocol::RULES`; `None` for a topic
/// that is not ours), and a receipt checks out on its own (signatures and
/// award). What passes, a node hands to its peer and a bootstrap peer
/// relays; what fails is rejected by both, so a bootstrap peer never
/// forwards what the nodes it serves would penalise it for.
pub fn screen_gossip(
    topic: Option<Topic>,
    opened: Result<Signed, Rejection>,
) -> Result<Signed, Verdict> {
    let signed = opened.map_err(Verdict::Rejected)?;
    let kind = signed.kind();
    if !topic.is_some_and(|t| gossip_accepts(t, kind)) {
        return Err(Verdict::Misrouted(kind));
    }
    if let Message::Receipt(r) = signed.message()
        && let Err(e) = r.verify()
    {
        return Err(Verdict::InvalidReceipt(e));
    }
    Ok(signed)
}

/// `bytes` gossiped on `topic` into the peer; keeps the envelope of an
/// advert it took.
pub fn take_bytes(
    peer: &mut Peer,
    adverts: &mut AdvertEnvelopes,
    now: Timestamp,
    topic: Option<Topic>,
    bytes: &[u8],
) -> Verdict {
    match screen_gossip(topic, peer.open(now, bytes)) {
        Ok(signed) => take_signed(peer, adverts, now, signed, bytes),
        Err(verdict) => verdict,
    }
}

/// Hands the peer a message opened from `bytes`; keeps it if it is an
/// advert the peer took.
fn take_signed(
    peer: &mut Peer,
    adverts: &mut AdvertEnvelopes,
    now: Timestamp,
    signed: Signed,
    bytes: &[u8],
) -> Verdict {
    let stale = |peer: &Peer| -> u64 { peer.stats().adverts_rejected.values().sum() };
    let refused = |peer: &Peer| peer.stats().refused.clone();
    let stale_before = stale(peer);
    let refused_before = refused(peer);
    let advert = matches!(signed.message(), Message::Advert(_)).then(|| signed.clone());
    peer.handle_signed(now, signed);
    if stale(peer) > stale_before {
        return Verdict::Stale;
    }
    let refused_after = refused(peer);
    if let Some(why) = Refused::ALL
        .into_iter()
        .find(|r| refused_after.get(r.label()) > refused_before.get(r.label()))
    {
        return Verdict::Refused(why);
    }
    Verdict::Taken(
        advert
            .filter(|a| adverts.remember(a, bytes, peer.adverts()))
            .map(Box::new),
    )
}

/// What became of a direct message.
#[derive(Debug)]
pub enum Direct {
    /// Any message but the two below, taken as gossip would be.
    Message(Verdict),
    /// The sender asks for the adverts we hold: see
    /// [`answer_sync`](super::adverts::answer_sync).
    SyncAsked(AdvertSync),
    /// A bundle of adverts, each taken as if it had been gossiped.
    Bundle(BundleTaken),
}

/// What became of the envelopes in an advert bundle.
#[derive(Debug, Default)]
pub struct BundleTaken {
    /// The verdict on each advert, in the bundle's order.
    pub adverts: Vec<Verdict>,
    /// Envelopes that decoded but were no adverts: dropped unopened.
    pub not_adverts: usize,
    /// Adverts past what the driver takes from one sync answer: dropped unopened.
    pub over_cap: usize,
}

impl BundleTaken {
    /// The adverts we now keep: news to us.
    pub fn kept(&self) -> impl Iterator<Item = &Signed> {
        self.adverts.iter().filter_map(|v| match v {
            Verdict::Taken(Some(s)) => Some(s.as_ref()),
            _ => None,
        })
    }

    /// Envelopes dropped: rejected by the protocol's checks, or no adverts.
    pub fn dropped(&self) -> usize {
        self.not_adverts
            + self.over_cap
            + self
                .adverts
                .iter()
                .filter(|v| matches!(v, Verdict::Rejected(_)))
                .count()
    }
}

/// A direct message's `bytes` into the peer. An advert sync comes back for
/// the driver to answer; each envelope of an advert bundle goes through
/// [`take_bytes`], exactly as a gossiped advert does, so one that fails is
/// dropped without the others, and one that is no advert is dropped.
pub fn take_direct(
    peer: &mut Peer,
    adverts: &mut AdvertEnvelopes,
    now: Timestamp,
    bytes: &[u8],
) -> Direct {
    take_direct_capped(peer, adverts, now, bytes, usize::MAX)
}

/// As [`take_direct`], taking at most `max_adverts` adverts from a bundle
/// (the rest count as dropped: the driver caps what one sync answer brings).
pub fn take_direct_capped(
    peer: &mut Peer,
    adverts: &mut AdvertEnvelopes,
    now: Timestamp,
    bytes: &[u8],
    max_adverts: usize,
) -> Direct {
    let signed = match peer.open(now, bytes) {
        Ok(signed) => signed,
        Err(rejection) => return Direct::Message(Verdict::Rejected(rejection)),
    };
    match signed.message() {
        Message::AdvertSync(sync) => {
            let sync = sync.clone();
            peer.handle_signed(now, signed);
            Direct::SyncAsked(sync)
        }
        Message::AdvertBundle(bundle) => {
            let mut taken = BundleTaken::default();
            let over = bundle.adverts.len().saturating_sub(max_adverts);
            taken.over_cap = over;
            for inner in bundle.adverts.iter().take(max_adverts) {
                // Checked before `take_bytes` opens it, so that a bundle
                // never carries anything but adverts into the peer.
                if Envelope::decode(inner).is_ok_and(|e| e.kind != Kind::Advert) {
                    taken.not_adverts += 1;
                    continue;
                }
                // Adverts in a bundle are taken as if gossiped on their topic.
                taken
                    .adverts
                    .push(take_bytes(peer, adverts, now, Some(Topic::Adverts), inner));
            }
            peer.handle_signed(now, signed);
            Direct::Bundle(taken)
        }
        // A gossip-only kind (an advert) sent as a direct message is
        // refused: adverts reach a peer by gossip or in the bundle it asked for.
        _ if !rule_for(signed.kind()).direct => Direct::Message(Verdict::Misrouted(signed.kind())),
        _ => Direct::Message(take_signed(peer, adverts, now, signed, bytes)),
    }
}

/// How a direct message left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// It was for ourselves: handed to the peer in memory.
    ToSelf,
    /// Sent to another peer by request-response, as this request.
    Request(request_response::OutboundRequestId),
}

/// A signed message to one node: in memory when it is `me`, else by
/// request-response. Fails when `to` is no valid peer key.
pub fn send_direct(
    peer: &mut Peer,
    messages: &mut request_response::Behaviour<EnvelopeCodec>,
    me: NodeId,
    now: Timestamp,
    to: NodeId,
    message: Signed,
) -> Result<Sent, IdentityError> {
    if to == me {
        peer.handle_signed(now, message);
        return Ok(Sent::ToSelf);
    }
    let peer_id = to.to_peer_id()?;
    Ok(Sent::Request(
        messages.send_request(&peer_id, message.to_bytes()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use modchain_protocol::{
        AdvertBundle, CapabilityAdvert, FetchOutput, Keypair, KnownAdvert, PeerConfig,
    };
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    fn advert(seed: u64) -> Vec<u8> {
        let ad = CapabilityAdvert {
            sequence: 1,
            expires_at: NOW.plus(60_000),
            ..CapabilityAdvert::default()
        };
        Envelope::seal(&Keypair::from_seed(seed), NOW, Message::Advert(ad)).to_bytes()
    }

    fn bundle(from: u64, adverts: Vec<Vec<u8>>) -> Vec<u8> {
        let message = Message::AdvertBundle(AdvertBundle { adverts });
        Envelope::seal(&Keypair::from_seed(from), NOW, message).to_bytes()
    }

    fn peer() -> Peer {
        Peer::new(Keypair::from_seed(1), PeerConfig::default())
    }

    #[test]
    fn a_bad_envelope_in_a_bundle_drops_only_itself() {
        let mut forged = Envelope::decode(&advert(21)).expect("decodes");
        forged.signature = Keypair::from_seed(99).sign(b"not this advert");
        let fetch = Message::Fetch(FetchOutput {
            job_id: modchain_protocol::Digest::of(b"job"),
            digest: modchain_protocol::Digest::of(b"output"),
            offset: 0,
            length: 16,
        });
        let not_an_advert = Envelope::seal(&Keypair::from_seed(22), NOW, fetch).to_bytes();
        let bytes = bundle(
            2,
            vec![
                advert(20),
                forged.to_bytes(),
                b"garbage".to_vec(),
                not_an_advert,
                advert(23),
                advert(20),
            ],
        );
        let mut peer = peer();
        let mut kept = AdvertEnvelopes::new();
        let Direct::Bundle(taken) = take_direct(&mut peer, &mut kept, NOW, &bytes) else {
            panic!("a bundle is unpacked");
        };
        assert_eq!(taken.kept().count(), 2, "{taken:?}");
        assert_eq!(taken.not_adverts, 1);
        assert_eq!(taken.dropped(), 3, "forged, garbage, not an advert");
        assert!(
            matches!(taken.adverts[4], Verdict::Stale),
            "a repeat is old news"
        );
        assert_eq!(peer.adverts().len(), 2);
        assert_eq!(kept.len(), 2, "kept to be handed on");
        let stats = peer.stats();
        assert_eq!(stats.rejected.get("bad_signature"), Some(&1));
        assert_eq!(stats.rejected.get("malformed"), Some(&1));
        assert_eq!(stats.received.get(&Kind::AdvertBundle), Some(&1));
        assert_eq!(
            stats.received.get(&Kind::Fetch),
            None,
            "never reached the peer"
        );
    }

    #[test]
    fn a_sync_request_comes_back_to_the_driver() {
        let known = vec![KnownAdvert {
            node: Keypair::from_seed(5).node_id(),
            sequence: 9,
        }];
        let sync = AdvertSync { known };
        let bytes = Envelope::seal(
            &Keypair::from_seed(2),
            NOW,
            Message::AdvertSync(sync.clone()),
        )
        .to_bytes();
        let mut kept = AdvertEnvelopes::new();
        match take_direct(&mut peer(), &mut kept, NOW, &bytes) {
            Direct::SyncAsked(asked) => assert_eq!(asked, sync),
            other => panic!("not a sync: {other:?}"),
        }
    }

    #[test]
    fn an_advert_sent_directly_on_its_own_is_misrouted() {
        // Adverts travel by gossip, or in the bundle a peer asked for: one
        // pushed at a peer unasked is refused, not taken.
        let mut kept = AdvertEnvelopes::new();
        let mut peer = peer();
        let verdict = take_direct(&mut peer, &mut kept, NOW, &advert(30));
        assert!(matches!(
            verdict,
            Direct::Message(Verdict::Misrouted(Kind::Advert))
        ));
        assert!(peer.adverts().is_empty());
    }

    #[test]
    fn syncs_and_bundles_are_not_gossip() {
        let mut kept = AdvertEnvelopes::new();
        let mut peer = peer();
        let verdict = take_bytes(
            &mut peer,
            &mut kept,
            NOW,
            Some(Topic::Adverts),
            &bundle(2, vec![advert(40)]),
        );
        assert!(matches!(verdict, Verdict::Misrouted(Kind::AdvertBundle)));
        assert_eq!(verdict.acceptance(), MessageAcceptance::Reject);
        assert!(
            peer.adverts().is_empty(),
            "a gossiped bundle is not unpacked"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever a bundle holds, unpacking it never panics and its valid
        /// adverts are taken.
        #[test]
        fn arbitrary_bytes_in_a_bundle_never_panic(
            junk in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..300), 0..12),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        ) {
            let mut entries = junk;
            // Valid adverts, and copies of one damaged at random places.
            entries.push(advert(50));
            let mut damaged = advert(51);
            for (at, bits) in flips {
                let i = at % damaged.len();
                damaged[i] ^= bits;
            }
            entries.push(damaged);
            entries.push(advert(52));
            let mut peer = peer();
            let mut kept = AdvertEnvelopes::new();
            let Direct::Bundle(taken) =
                take_direct(&mut peer, &mut kept, NOW, &bundle(2, entries)) else {
                panic!("a bundle is unpacked");
            };
            prop_assert!(peer.adverts().get(&Keypair::from_seed(50).node_id()).is_some());
            prop_assert!(peer.adverts().get(&Keypair::from_seed(52).node_id()).is_some());
            prop_assert!(taken.kept().count() >= 2);
        }

        /// Arbitrary bytes as a direct message never panic either.
        #[test]
        fn arbitrary_direct_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut kept = AdvertEnvelopes::new();
            let _ = take_direct(&mut peer(), &mut kept, NOW, &bytes);
        }
    }
}
