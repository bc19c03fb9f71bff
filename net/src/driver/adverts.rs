//! Adverts for a peer that joins, so it sees the network at once instead of
//! after the next advert round.
//!
//! The joiner pulls: it asks the first [`SYNC_PEERS_PER_JOIN`] peers that
//! are ready ([`AdvertHandoff`]: subscribed to adverts and speaking direct
//! messages) for the adverts they hold ([`AdvertSyncs`]), and each answers
//! with bundles of the signed envelopes it keeps ([`AdvertEnvelopes`],
//! [`answer_sync`]). Pushing every advert to every peer that subscribed
//! instead cost a joiner one request per advert per connection, and every
//! established peer as much again for each peer that joined.
//!
//! Only the signed bytes as they travelled can be handed on (a peer checks
//! the signer's signature), so the newest envelope of each node is kept.

use crate::behaviour::EnvelopeCodec;
use libp2p::{PeerId, request_response};
use modchain_protocol::{
    AdvertBook, AdvertBundle, AdvertSync, CapabilityAdvert, Envelope, KnownAdvert, MAX_SYNC_KNOWN,
    Message, NodeId, Peer, Signed, Timestamp,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// How many peers a peer asks for their adverts each time it (re)joins: one
/// answer is enough when it comes; a second covers a peer that does not
/// answer or that joined moments ago itself.
pub const SYNC_PEERS_PER_JOIN: usize = 2;

/// A peer's sync request is answered at most once in this long while it
/// stays connected, so that one small request cannot be replayed into a
/// stream of bundles. A peer that reconnects (restarted, or rejoining after
/// it lost the network) is answered again at once.
pub const SYNC_ANSWER_INTERVAL: Duration = Duration::from_secs(30);

/// The newest signed advert of each node (ours too), with its sequence.
#[derive(Debug, Default)]
pub struct AdvertEnvelopes {
    /// Ordered by node so that bundles come out the same way every time.
    by_signer: BTreeMap<NodeId, (u64, Vec<u8>)>,
}

impl AdvertEnvelopes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps a message we publish ourselves, as `bytes`, if it is an
    /// advert; returns that advert.
    pub fn keep_own<'m>(
        &mut self,
        message: &'m Signed,
        bytes: &[u8],
    ) -> Option<&'m CapabilityAdvert> {
        let Message::Advert(ad) = message.message() else {
            return None;
        };
        self.by_signer
            .insert(message.signer(), (ad.sequence, bytes.to_vec()));
        Some(ad)
    }

    /// Keeps `signed`, which travelled as `bytes`, if it is an advert newer
    /// than the one kept and the very advert the peer's `table` now holds
    /// for its signer (taken, not stale). Returns whether it was kept.
    pub fn remember(&mut self, signed: &Signed, bytes: &[u8], table: &AdvertBook) -> bool {
        let Message::Advert(ad) = signed.message() else {
            return false;
        };
        let signer = signed.signer();
        let held = table.get(&signer).map(|a| a.sequence);
        if held != Some(ad.sequence)
            || self
                .by_signer
                .get(&signer)
                .is_some_and(|(s, _)| *s >= ad.sequence)
        {
            return false;
        }
        self.by_signer.insert(signer, (ad.sequence, bytes.to_vec()));
        true
    }

    /// The kept envelopes whose advert the table holds unexpired at `now`,
    /// with their signer and sequence.
    fn live<'a>(
        &'a self,
        table: &'a AdvertBook,
        now: Timestamp,
    ) -> impl Iterator<Item = (&'a NodeId, u64, &'a Vec<u8>)> + 'a {
        self.by_signer
            .iter()
            .filter(move |(node, _)| table.get(node).is_some_and(|a| a.expires_at > now))
            .map(|(node, (seq, bytes))| (node, *seq, bytes))
    }

    /// What we hold, for a sync request: at most [`MAX_SYNC_KNOWN`] live
    /// adverts (the rest, if any, may come back and are dropped as old).
    pub fn known(&self, table: &AdvertBook, now: Timestamp) -> Vec<KnownAdvert> {
        self.live(table, now)
            .take(MAX_SYNC_KNOWN)
            .map(|(node, sequence, _)| KnownAdvert {
                node: *node,
                sequence,
            })
            .collect()
    }

    /// The answer to `sync`: the live envelopes, less those the asker holds
    /// at the same or a newer sequence, packed into bundles.
    pub fn bundles(
        &self,
        table: &AdvertBook,
        now: Timestamp,
        sync: &AdvertSync,
    ) -> Vec<AdvertBundle> {
        let known: HashMap<NodeId, u64> = sync.known.iter().map(|k| (k.node, k.sequence)).collect();
        AdvertBundle::pack(
            self.live(table, now)
                .filter(|(node, seq, _)| known.get(node).is_none_or(|k| k < seq))
                .map(|(_, _, bytes)| bytes.clone()),
        )
    }

    pub fn len(&self) -> usize {
        self.by_signer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_signer.is_empty()
    }
}

/// Where we stand with one peer for adverts: whether it can be asked for
/// them (it subscribed to adverts *and* identify said it speaks direct
/// messages, which may come in either order), and when we last answered it.
#[derive(Clone, Debug, Default)]
pub struct AdvertHandoff {
    /// What identify said (`None` until it told us).
    speaks_messages: Option<bool>,
    /// It subscribed before identify told us what it speaks.
    owed: bool,
    /// When we last sent it our adverts, since it last connected.
    answered_at: Option<Instant>,
}

impl AdvertHandoff {
    /// Identify told us whether the peer speaks direct messages. Returns
    /// whether it is ready now (it subscribed earlier).
    pub fn identified(&mut self, speaks_messages: bool) -> bool {
        self.speaks_messages = Some(speaks_messages);
        std::mem::take(&mut self.owed) && speaks_messages
    }

    /// The peer subscribed to adverts. Returns whether it is ready now; if
    /// identify has not answered yet, that waits for it.
    pub fn subscribed(&mut self) -> bool {
        match self.speaks_messages {
            Some(speaks) => speaks,
            None => {
                self.owed = true;
                false
            }
        }
    }

    /// Its last connection closed: when it comes back it is a new join,
    /// answered at once.
    pub fn disconnected(&mut self) {
        self.answered_at = None;
    }

    /// The peer asked for our adverts at `now`: whether to answer, at most
    /// once per [`SYNC_ANSWER_INTERVAL`] while it stays connected.
    pub fn answer_due(&mut self, now: Instant) -> bool {
        if self
            .answered_at
            .is_some_and(|at| now.saturating_duration_since(at) < SYNC_ANSWER_INTERVAL)
        {
            return false;
        }
        self.answered_at = Some(now);
        true
    }
}

/// Which peers we asked for their adverts since we last (re)joined.
#[derive(Clone, Debug, Default)]
pub struct AdvertSyncs {
    asked: Vec<PeerId>,
}

impl AdvertSyncs {
    pub fn new() -> Self {
        Self::default()
    }

    /// We (re)joined the network (the first bootstrap peer answered): the
    /// next peers that are ready are asked again.
    pub fn rejoined(&mut self) {
        self.asked.clear();
    }

    /// `peer` is ready to be asked. Returns whether to ask it: it is one of
    /// the first [`SYNC_PEERS_PER_JOIN`] since we (re)joined, and not asked
    /// yet (a peer that reconnects is not asked twice for one join).
    pub fn should_ask(&mut self, peer: PeerId) -> bool {
        if self.asked.len() >= SYNC_PEERS_PER_JOIN || self.asked.contains(&peer) {
            return false;
        }
        self.asked.push(peer);
        true
    }

    /// The peers asked since we last (re)joined.
    pub fn asked(&self) -> &[PeerId] {
        &self.asked
    }
}

/// Asks `to` for the adverts it holds, telling it which `peer` holds.
/// Returns how many we listed.
pub fn ask_for_adverts(
    peer: &Peer,
    envelopes: &AdvertEnvelopes,
    messages: &mut request_response::Behaviour<EnvelopeCodec>,
    to: PeerId,
    now: Timestamp,
) -> usize {
    let known = envelopes.known(peer.adverts(), now);
    let listed = known.len();
    let request = Envelope::seal(peer.key(), now, Message::AdvertSync(AdvertSync { known }));
    messages.send_request(&to, request.to_bytes());
    listed
}

/// What became of a peer's request for our adverts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncAnswer {
    /// Sent it this many bundles holding this many adverts (none when it
    /// held every advert we hold).
    Sent { bundles: u64, adverts: u64 },
    /// Not answered: it was answered less than [`SYNC_ANSWER_INTERVAL`] ago.
    TooSoon,
}

/// Answers `sync` from `to` with the adverts `peer` holds, each bundle as
/// its own direct message signed by `peer`, unless `to` was answered too
/// recently (`handoff` is where we stand with `to`; `now` seals and expires
/// adverts, `instant` paces the answers).
#[allow(clippy::too_many_arguments)]
pub fn answer_sync(
    handoff: &mut AdvertHandoff,
    peer: &Peer,
    envelopes: &AdvertEnvelopes,
    messages: &mut request_response::Behaviour<EnvelopeCodec>,
    to: PeerId,
    now: Timestamp,
    instant: Instant,
    sync: &AdvertSync,
) -> SyncAnswer {
    if !handoff.answer_due(instant) {
        return SyncAnswer::TooSoon;
    }
    let (mut bundles, mut adverts) = (0, 0);
    for bundle in envelopes.bundles(peer.adverts(), now, sync) {
        adverts += bundle.adverts.len() as u64;
        bundles += 1;
        let sealed = Envelope::seal(peer.key(), now, Message::AdvertBundle(bundle));
        messages.send_request(&to, sealed.to_bytes());
    }
    SyncAnswer::Sent { bundles, adverts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modchain_protocol::Keypair;

    fn advert(key: &Keypair, sequence: u64, now: Timestamp) -> (Signed, CapabilityAdvert) {
        let ad = CapabilityAdvert {
            sequence,
            expires_at: now.plus(60_000),
            ..CapabilityAdvert::default()
        };
        (Envelope::seal(key, now, Message::Advert(ad.clone())), ad)
    }

    fn live(kept: &AdvertEnvelopes, table: &AdvertBook, now: Timestamp) -> Vec<Vec<u8>> {
        kept.live(table, now).map(|(_, _, b)| b.clone()).collect()
    }

    #[test]
    fn keeps_only_the_advert_the_table_holds() {
        let now = Timestamp::from_millis(1_000_000);
        let key = Keypair::from_seed(3);
        let mut table = AdvertBook::new();
        let mut kept = AdvertEnvelopes::new();
        let (old, _) = advert(&key, 1, now);
        let (new, ad) = advert(&key, 2, now);
        assert!(
            !kept.remember(&new, &new.to_bytes(), &table),
            "not in the table"
        );
        table.insert(now, key.node_id(), ad).expect("insert");
        assert!(
            !kept.remember(&old, &old.to_bytes(), &table),
            "not the one held"
        );
        assert!(kept.remember(&new, &new.to_bytes(), &table));
        assert!(
            !kept.remember(&new, &new.to_bytes(), &table),
            "already kept"
        );
        assert_eq!(live(&kept, &table, now), [new.to_bytes()]);
        assert!(live(&kept, &table, now.plus(60_000)).is_empty());
    }

    #[test]
    fn keeps_our_own_adverts_only() {
        let now = Timestamp::from_millis(1_000_000);
        let key = Keypair::from_seed(4);
        let (signed, ad) = advert(&key, 5, now);
        let mut kept = AdvertEnvelopes::new();
        assert_eq!(kept.keep_own(&signed, &signed.to_bytes()), Some(&ad));
        let mut table = AdvertBook::new();
        table.insert(now, key.node_id(), ad).expect("insert");
        assert_eq!(live(&kept, &table, now), [signed.to_bytes()]);
    }

    #[test]
    fn a_sync_is_answered_with_the_adverts_the_asker_lacks() {
        let now = Timestamp::from_millis(1_000_000);
        let mut table = AdvertBook::new();
        let mut kept = AdvertEnvelopes::new();
        let mut all = Vec::new();
        for seed in 10..15 {
            let key = Keypair::from_seed(seed);
            let (signed, ad) = advert(&key, 7, now);
            table.insert(now, key.node_id(), ad).expect("insert");
            assert!(kept.remember(&signed, &signed.to_bytes(), &table));
            all.push((key.node_id(), signed.to_bytes()));
        }
        let everything = kept.bundles(&table, now, &AdvertSync::default());
        assert_eq!(everything.len(), 1, "five adverts fit one bundle");
        assert_eq!(everything[0].adverts.len(), 5);

        // The asker holds one at the same sequence, one newer, one older.
        let known = |i: usize, sequence| KnownAdvert {
            node: all[i].0,
            sequence,
        };
        let sync = AdvertSync {
            known: vec![known(0, 7), known(1, 8), known(2, 6)],
        };
        let answer = kept.bundles(&table, now, &sync);
        let mut sent: Vec<Vec<u8>> = answer.into_iter().flat_map(|b| b.adverts).collect();
        sent.sort();
        let mut expected = vec![all[2].1.clone(), all[3].1.clone(), all[4].1.clone()];
        expected.sort();
        assert_eq!(sent, expected);

        // What we hold is what a request of ours lists.
        let mut listed = kept.known(&table, now);
        listed.sort_by_key(|k| k.node);
        assert_eq!(listed.len(), 5);
        assert!(listed.iter().all(|k| k.sequence == 7));
        // Nothing to send to a peer that holds it all; nothing once expired.
        let full = AdvertSync { known: listed };
        assert!(kept.bundles(&table, now, &full).is_empty());
        assert!(
            kept.bundles(&table, now.plus(60_000), &AdvertSync::default())
                .is_empty()
        );
    }

    #[test]
    fn ready_waits_for_both_subscription_and_identify() {
        let mut early = AdvertHandoff::default();
        assert!(!early.subscribed(), "identify has not answered");
        assert!(early.identified(true), "ready since it subscribed");
        assert!(!early.identified(true), "told once");
        assert!(early.subscribed());

        let mut mute = AdvertHandoff::default();
        assert!(!mute.subscribed());
        assert!(!mute.identified(false));
        assert!(!mute.subscribed());
    }

    #[test]
    fn only_the_first_two_ready_peers_are_asked_per_join() {
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let mut syncs = AdvertSyncs::new();
        assert!(syncs.should_ask(peers[0]));
        assert!(!syncs.should_ask(peers[0]), "not twice in one join");
        assert!(syncs.should_ask(peers[1]));
        assert!(!syncs.should_ask(peers[2]), "two are enough");
        assert_eq!(syncs.asked(), &peers[..2]);
        syncs.rejoined();
        assert!(syncs.should_ask(peers[3]), "a rejoin asks again");
        assert!(syncs.should_ask(peers[0]));
        assert!(!syncs.should_ask(peers[1]));
    }

    #[test]
    fn a_peer_is_answered_at_most_once_per_interval_while_connected() {
        let t0 = Instant::now();
        let mut handoff = AdvertHandoff::default();
        assert!(handoff.answer_due(t0));
        assert!(!handoff.answer_due(t0 + SYNC_ANSWER_INTERVAL / 2));
        assert!(handoff.answer_due(t0 + SYNC_ANSWER_INTERVAL));
        // A peer that restarts within the interval is answered again.
        let t1 = t0 + SYNC_ANSWER_INTERVAL + Duration::from_secs(1);
        assert!(!handoff.answer_due(t1));
        handoff.disconnected();
        assert!(handoff.answer_due(t1));
    }
}
