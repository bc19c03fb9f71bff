//! Adverts for a peer that joins: it asks a peer for the adverts it holds
//! ([`AdvertSync`], kind `advert-sync`), and that peer answers with the
//! signed advert envelopes it keeps, as they travelled, in batches
//! ([`AdvertBundle`], kind `advert-bundle`).
//!
//! A bundle's signer vouches only that it sent the bundle; it cannot vouch
//! for the adverts, which are other nodes' statements. So every envelope in
//! a bundle is checked on its own by the receiver, exactly as a gossiped
//! advert is, and one that fails is dropped without the others. Both
//! messages are bounded in count here and in bytes by their kind's payload
//! limit, so a bundle or a request decodes in bounded time and memory.

use crate::identity::NodeId;
use serde::{Deserialize, Serialize};

/// The most adverts a sync request says the asker holds. An asker that
/// holds more lists only this many and may be sent some it holds, which it
/// drops as old news.
pub const MAX_SYNC_KNOWN: usize = 4096;

/// The largest encoding of a [`KnownAdvert`]: the node id (a length byte
/// and 32 bytes) and the sequence (a varint of at most 9 bytes).
pub const KNOWN_ADVERT_MAX_BYTES: usize = 33 + 9;

/// The most envelopes in one bundle.
pub const MAX_BUNDLE_ADVERTS: usize = 1024;

/// The largest bundle payload: room for some 4,000 typical adverts (about
/// 200 bytes each, so the count binds first) or 15 of the largest (64 KiB
/// payloads), and below the largest envelope any peer accepts, so adding
/// bundles does not raise that limit.
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;

/// Room, in a bundle's encoding, for the list's length (a varint of at most
/// 3 bytes for [`MAX_BUNDLE_ADVERTS`]).
const BUNDLE_LIST_PREFIX: usize = 3;
/// Room for one entry's length prefix (a varint of at most 5 bytes).
const BUNDLE_ENTRY_PREFIX: usize = 5;

/// An advert the asker holds: the answer leaves out the adverts of `node`
/// whose sequence is not newer than `sequence`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownAdvert {
    pub node: NodeId,
    pub sequence: u64,
}

/// "Send me the adverts you hold", from a peer that just (re)joined.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertSync {
    /// Adverts the asker already holds, at most [`MAX_SYNC_KNOWN`].
    pub known: Vec<KnownAdvert>,
}

impl AdvertSync {
    pub fn within_limits(&self) -> bool {
        self.known.len() <= MAX_SYNC_KNOWN
    }
}

/// A batch of signed advert envelopes, each the encoded bytes of an
/// [`Envelope`](crate::envelope::Envelope) of kind `advert` as it travelled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertBundle {
    /// At most [`MAX_BUNDLE_ADVERTS`]; their encoding at most [`MAX_BUNDLE_BYTES`].
    pub adverts: Vec<Vec<u8>>,
}

impl AdvertBundle {
    pub fn within_limits(&self) -> bool {
        self.adverts.len() <= MAX_BUNDLE_ADVERTS
    }

    /// Packs `envelopes` into as few bundles as the limits allow, in order:
    /// a sharer that holds more than one bundle's worth sends several. An
    /// envelope too large for a bundle of its own is left out; no advert
    /// envelope is (its payload is at most 64 KiB).
    pub fn pack(envelopes: impl IntoIterator<Item = Vec<u8>>) -> Vec<AdvertBundle> {
        let mut bundles = Vec::new();
        let mut current = AdvertBundle::default();
        let mut bytes = BUNDLE_LIST_PREFIX;
        for envelope in envelopes {
            let size = envelope.len() + BUNDLE_ENTRY_PREFIX;
            if BUNDLE_LIST_PREFIX + size > MAX_BUNDLE_BYTES {
                continue;
            }
            if current.adverts.len() == MAX_BUNDLE_ADVERTS || bytes + size > MAX_BUNDLE_BYTES {
                bundles.push(std::mem::take(&mut current));
                bytes = BUNDLE_LIST_PREFIX;
            }
            bytes += size;
            current.adverts.push(envelope);
        }
        if !current.adverts.is_empty() {
            bundles.push(current);
        }
        bundles
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::envelope::{Envelope, Kind, Message, Rejection};
    use crate::identity::Keypair;
    use crate::time::Timestamp;

    #[test]
    fn packing_keeps_every_bundle_within_its_limits() {
        // Typical adverts: the count binds.
        let small = AdvertBundle::pack((0..2500).map(|i| vec![i as u8; 205]));
        assert_eq!(
            small.iter().map(|b| b.adverts.len()).collect::<Vec<_>>(),
            [
                MAX_BUNDLE_ADVERTS,
                MAX_BUNDLE_ADVERTS,
                2500 - 2 * MAX_BUNDLE_ADVERTS
            ]
        );
        // The largest adverts: the bytes bind.
        let large = AdvertBundle::pack((0..40).map(|_| vec![7u8; 64 * 1024 + 116]));
        assert_eq!(large.iter().map(|b| b.adverts.len()).sum::<usize>(), 40);
        assert!(large.len() >= 3);
        for b in small.iter().chain(&large) {
            assert!(b.within_limits());
            assert!(codec::encode(b).len() <= Kind::AdvertBundle.max_payload_bytes());
        }
        assert!(AdvertBundle::pack(Vec::new()).is_empty());
        assert!(AdvertBundle::pack([vec![0; MAX_BUNDLE_BYTES]]).is_empty());
    }

    #[test]
    fn a_full_sync_request_fits_its_payload_limit() {
        let known = (0..MAX_SYNC_KNOWN as u64)
            .map(|i| KnownAdvert {
                node: Keypair::from_seed(i % 7).node_id(),
                sequence: u64::MAX - i,
            })
            .collect();
        let sync = AdvertSync { known };
        assert!(sync.within_limits());
        assert!(codec::encode(&sync).len() <= Kind::AdvertSync.max_payload_bytes());
    }

    #[test]
    fn new_kinds_come_after_every_older_one_on_the_wire() {
        // A kind travels as its index: the older kinds keep theirs.
        assert_eq!(codec::encode(&Kind::Chunk), [12]);
        assert_eq!(codec::encode(&Kind::AdvertSync), [13]);
        assert_eq!(codec::encode(&Kind::AdvertBundle), [14]);
        assert_eq!(Kind::ALL.last(), Some(&Kind::AdvertBundle));
    }

    #[test]
    fn counts_over_the_limit_are_refused_before_anyone_reads_them() {
        let key = Keypair::from_seed(1);
        let now = Timestamp::from_millis(1_700_000_000_000);
        let over = AdvertBundle {
            adverts: vec![Vec::new(); MAX_BUNDLE_ADVERTS + 1],
        };
        let bytes = Envelope::seal(&key, now, Message::AdvertBundle(over)).to_bytes();
        assert!(matches!(
            Envelope::open(&bytes, now),
            Err(Rejection::MalformedPayload {
                kind: Kind::AdvertBundle,
                ..
            })
        ));
        let known = vec![
            KnownAdvert {
                node: key.node_id(),
                sequence: 1,
            };
            MAX_SYNC_KNOWN + 1
        ];
        let bytes = Envelope::seal(&key, now, Message::AdvertSync(AdvertSync { known })).to_bytes();
        assert!(matches!(
            Envelope::open(&bytes, now),
            Err(Rejection::MalformedPayload {
                kind: Kind::AdvertSync,
                ..
            })
        ));
        // Within the limits, both open; a sync is a direct message and
        // goes stale as one.
        let ok = Envelope::seal(&key, now, Message::AdvertSync(AdvertSync::default())).to_bytes();
        assert!(Envelope::open(&ok, now).is_ok());
        assert!(matches!(
            Envelope::open(&ok, now.plus(11 * 60_000)),
            Err(Rejection::Stale { .. })
        ));
    }
}
