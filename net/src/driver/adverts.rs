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

/// The newest signed advert of each node (ours too), with its sequence, up
/// to a cap: when it is full, envelopes whose advert the peer's book no
/// longer holds are evicted, and if none is, a new signer's advert is not
/// kept (the book already took it; it is only not handed on).
#[derive(Debug)]
pub struct AdvertEnvelopes {
    /// Ordered by node so that bundles come out the same way every time.
    by_signer: BTreeMap<NodeId, (u64, Vec<u8>)>,
    max: usize,
    evicted: u64,
    refused: u64,
}

impl Default for AdvertEnvelopes {
    fn default() -> Self {
        Self::with_cap(crate::limits::NetLimits::default().max_advert_envelopes)
    }
}

impl AdvertEnvelopes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps at most `max` envelopes (at least one: our own).
    pub fn with_cap(max: usize) -> Self {
        AdvertEnvelopes {
            by_signer: BTreeMap::new(),
            max: max.max(1),
            evicted: 0,
            refused: 0,
        }
    }

    /// Envelopes evicted since start because the book no longer held their advert.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// New signers' envelopes not kept since start because the cap was reached.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Makes room for one more signer: drops the envelopes whose advert
    /// `table` no longer holds. Returns whether there is room now.
    fn make_room(&mut self, table: &AdvertBook) -> bool {
        if self.by_signer.len() < self.max {
            return true;
        }
        let before = self.by_signer.len();
        self.by_signer
            .retain(|node, (seq, _)| table.get(node).is_some_and(|a| a.sequence == *seq));
        self.evicted += (before - self.by_signer.len()) as u64;
        self.by_signer.len() < self.max
    }

    /// Keeps a message we publish ourselves, as `bytes`, if it is an
    /// advert (whatever the cap: it is one entry); returns that advert.
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
        if !self.by_signer.contains_key(&signer) && !self.make_room(table) {
            self.refused += 1;
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

/// Which peers we asked for their adverts since we last (re)joined, when,
/// and how many adverts each answer has brought so far. Only a peer we
/// asked may send us bundles, within the deadline and up to a cap.
#[derive(Clone, Debug)]
pub struct AdvertSyncs {
    asked: Vec<(PeerId, Instant, usize)>,
    deadline: Duration,
    max_adverts: usize,
}

impl Default for AdvertSyncs {
    fn default() -> Self {
        let l = crate::limits::NetLimits::default();
        Self::with_limits(l.bundle_deadline, l.max_adverts_per_sync)
    }
}

/// Whether a bundle that arrived may be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleAdmission {
    /// We asked its sender, in time: take at most this many of its adverts.
    Take(usize),
    /// We never asked its sender, or asked it too long ago.
    Unsolicited,
    /// Its sender's answer already brought the most we take from one answer.
    OverCap,
}

impl AdvertSyncs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bundles are taken from a peer within `deadline` of asking it, at
    /// most `max_adverts` adverts per answer.
    pub fn with_limits(deadline: Duration, max_adverts: usize) -> Self {
        AdvertSyncs {
            asked: Vec::new(),
            deadline,
            max_adverts,
        }
    }

    /// We (re)joined the network (the first bootstrap peer answered): the
    /// next peers that are ready are asked again.
    pub fn rejoined(&mut self) {
        self.asked.clear();
    }

    /// `peer` is ready to be asked at `now`. Returns whether to ask it: it
    /// is one of the first [`SYNC_PEERS_PER_JOIN`] since we (re)joined, and
    /// not asked yet (a peer that reconnects is not asked twice for one join).
    pub fn should_ask(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.asked.len() >= SYNC_PEERS_PER_JOIN || self.asked.iter().any(|a| a.0 == peer) {
            return false;
        }
        self.asked.push((peer, now, 0));
        true
    }

    /// A bundle came from `from` at `now`: whether to open it, and how many
    /// of its adverts it may still bring (report them with [`took`](Self::took)).
    pub fn admit_bundle(&self, from: &PeerId, now: Instant) -> BundleAdmission {
        let Some(entry) = self.asked.iter().find(|a| a.0 == *from) else {
            return BundleAdmission::Unsolicited;
        };
        if now.saturating_duration_since(entry.1) > self.deadline {
            return BundleAdmission::Unsolicited;
        }
        match self.max_adverts.saturating_sub(entry.2) {
            0 => BundleAdmission::OverCap,
            room => BundleAdmission::Take(room),
        }
    }

    /// A bundle admitted from `from` brought `adverts` adverts.
    pub fn took(&mut self, from: &PeerId, adverts: usize) {
        if let Some(entry) = self.asked.iter_mut().find(|a| a.0 == *from) {
            entry.2 = entry.2.saturating_add(adverts);
        }
    }

    /// The peers asked since we last (re)joined.
    pub fn asked(&self) -> Vec<PeerId> {
        self.asked.iter().map(|a| a.0).collect()
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
        let t = Instant::now();
        assert!(syncs.should_ask(peers[0], t));
        assert!(!syncs.should_ask(peers[0], t), "not twice in one join");
        assert!(syncs.should_ask(peers[1], t));
        assert!(!syncs.should_ask(peers[2], t), "two are enough");
        assert_eq!(syncs.asked(), &peers[..2]);
        syncs.rejoined();
        assert!(syncs.should_ask(peers[3], t), "a rejoin asks again");
        assert!(syncs.should_ask(peers[0], t));
        assert!(!syncs.should_ask(peers[1], t));
    }

    #[test]
    fn bundles_are_taken_only_from_peers_asked_in_time_and_up_to_a_cap() {
        let t = Instant::now();
        let (asked, stranger) = (PeerId::random(), PeerId::random());
        let mut syncs = AdvertSyncs::with_limits(Duration::from_secs(30), 100);
        assert!(syncs.should_ask(asked, t));
        assert_eq!(
            syncs.admit_bundle(&stranger, t),
            BundleAdmission::Unsolicited
        );
        assert_eq!(syncs.admit_bundle(&asked, t), BundleAdmission::Take(100));
        syncs.took(&asked, 60);
        assert_eq!(syncs.admit_bundle(&asked, t), BundleAdmission::Take(40));
        syncs.took(&asked, 40);
        assert_eq!(syncs.admit_bundle(&asked, t), BundleAdmission::OverCap);
        let mut late = AdvertSyncs::with_limits(Duration::from_secs(30), 100);
        assert!(late.should_ask(asked, t));
        assert_eq!(
            late.admit_bundle(&asked, t + Duration::from_secs(31)),
            BundleAdmission::Unsolicited
        );
    }

    #[test]
    fn a_full_envelope_cache_evicts_what_the_book_dropped_and_refuses_the_rest() {
        let now = Timestamp::from_millis(1_000_000);
        let mut table = AdvertBook::new();
        let mut kept = AdvertEnvelopes::with_cap(2);
        let keys: Vec<Keypair> = (60..64).map(Keypair::from_seed).collect();
        let signed: Vec<Signed> = keys
            .iter()
            .map(|k| {
                let (s, ad) = advert(k, 1, now);
                table.insert(now, k.node_id(), ad).expect("insert");
                s
            })
            .collect();
        assert!(kept.remember(&signed[0], &signed[0].to_bytes(), &table));
        assert!(kept.remember(&signed[1], &signed[1].to_bytes(), &table));
        assert!(!kept.remember(&signed[2], &signed[2].to_bytes(), &table));
        assert_eq!((kept.len(), kept.refused(), kept.evicted()), (2, 1, 0));
        // The book moves on from the first signer: its envelope goes.
        let (newer, ad) = advert(&keys[0], 2, now);
        table.insert(now, keys[0].node_id(), ad).expect("insert");
        assert!(kept.remember(&signed[3], &signed[3].to_bytes(), &table));
        assert_eq!((kept.len(), kept.evicted()), (2, 1));
        assert!(
            !kept.remember(&newer, &newer.to_bytes(), &table),
            "full again"
        );
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
