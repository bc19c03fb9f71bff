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
    /// The node whose advert the asker holds.
    pub node: NodeId,
    /// The sequence number of the advert it holds.
    pub sequence: u64,
}

/// "Send me the adverts you hold", from a peer that just (re)joined.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertSync {
    /// Adverts the asker already holds, at most [`MAX_SYNC_KNOWN`].
    pub known: Vec<KnownAdvert>,
}

impl AdvertSync {
    /// Whether the request is within [`MAX_SYNC_KNOWN`].
    pub fn within_limits(&self) -> bool {
        self.known.len() <= MAX_SYNC_KNOWN
    }
}

/// A batch of signed advert envelopes, each the encoded bytes of an
/// [`Envelope`](crate::Envelope) of kind `advert` as it travelled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertBundle {
    /// At most [`MAX_BUNDLE_ADVERTS`]; their encoding at most [`MAX_BUNDLE_BYTES`].
    pub adverts: Vec<Vec<u8>>,
}

impl AdvertBundle {
    /// Whether the bundle holds at most [`MAX_BUNDLE_ADVERTS`] adverts.
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
