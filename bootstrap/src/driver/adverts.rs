//! Adverts handed straight to a peer that subscribes to the adverts topic,
//! so it sees the network at once instead of after the next advert round.
//! Only the signed bytes as they travelled can be handed on (a peer checks
//! the signer's signature), so the newest envelope of each node is kept.

use crate::behaviour::EnvelopeCodec;
use libp2p::{PeerId, request_response};
use modchain_protocol::advert::{AdvertBook, CapabilityAdvert};
use modchain_protocol::envelope::{Envelope, Kind, Message, Signed};
use modchain_protocol::identity::NodeId;
use modchain_protocol::time::Timestamp;
use std::collections::HashMap;

/// The newest signed advert of each node (ours too), with its sequence.
#[derive(Debug, Default)]
pub struct AdvertEnvelopes {
    by_signer: HashMap<NodeId, (u64, Vec<u8>)>,
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

    /// Keeps the envelope in `bytes` if it is an advert newer than the one
    /// kept and the very advert the peer's `table` now holds for its signer
    /// (taken, not stale). Returns it verified when kept.
    pub fn remember(&mut self, bytes: &[u8], table: &AdvertBook) -> Option<Signed> {
        let env = Envelope::decode(bytes).ok()?;
        if env.kind != Kind::Advert {
            return None;
        }
        let signer = env.signer;
        let seq = table.get(&signer)?.sequence;
        if self.by_signer.get(&signer).is_some_and(|(s, _)| *s >= seq) {
            return None;
        }
        let signed = env.verify().ok()?;
        match signed.message() {
            Message::Advert(ad) if ad.sequence == seq => {
                self.by_signer.insert(signer, (seq, bytes.to_vec()));
                Some(signed)
            }
            _ => None,
        }
    }

    /// The envelopes whose advert the table holds unexpired at `now`.
    pub fn live(&self, table: &AdvertBook, now: Timestamp) -> Vec<Vec<u8>> {
        self.by_signer
            .iter()
            .filter(|(node, _)| table.get(node).is_some_and(|a| a.expires_at > now))
            .map(|(_, (_, bytes))| bytes.clone())
            .collect()
    }

    /// Sends `to` every live envelope as a direct message; returns how many.
    pub fn share(
        &self,
        messages: &mut request_response::Behaviour<EnvelopeCodec>,
        to: PeerId,
        table: &AdvertBook,
        now: Timestamp,
    ) -> u64 {
        let mut sent = 0;
        for bytes in self.live(table, now) {
            messages.send_request(&to, bytes);
            sent += 1;
        }
        sent
    }

    pub fn len(&self) -> usize {
        self.by_signer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_signer.is_empty()
    }
}

/// Whether a peer gets our adverts: only once it subscribed to adverts
/// *and* identify said it speaks direct messages, which may come in either
/// order.
#[derive(Clone, Debug, Default)]
pub struct AdvertHandoff {
    /// What identify said (`None` until it told us).
    speaks_messages: Option<bool>,
    /// It subscribed before identify told us what it speaks.
    owed: bool,
}

impl AdvertHandoff {
    /// Identify told us whether the peer speaks direct messages. Returns
    /// whether to share adverts with it now (it subscribed earlier).
    pub fn identified(&mut self, speaks_messages: bool) -> bool {
        self.speaks_messages = Some(speaks_messages);
        std::mem::take(&mut self.owed) && speaks_messages
    }

    /// The peer subscribed to adverts. Returns whether to share adverts
    /// with it now; if identify has not answered yet, they are owed.
    pub fn subscribed(&mut self) -> bool {
        match self.speaks_messages {
            Some(speaks) => speaks,
            None => {
                self.owed = true;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modchain_protocol::identity::Keypair;

    fn advert(key: &Keypair, sequence: u64, now: Timestamp) -> (Vec<u8>, CapabilityAdvert) {
        let ad = CapabilityAdvert {
            sequence,
            expires_at: now.plus(60_000),
            ..CapabilityAdvert::default()
        };
        let signed = Envelope::seal(key, now, Message::Advert(ad.clone()));
        (signed.to_bytes(), ad)
    }

    #[test]
    fn keeps_only_the_advert_the_table_holds() {
        let now = Timestamp::from_millis(1_000_000);
        let key = Keypair::from_seed(3);
        let mut table = AdvertBook::new();
        let mut kept = AdvertEnvelopes::new();
        let (old, _) = advert(&key, 1, now);
        let (new, ad) = advert(&key, 2, now);
        assert!(kept.remember(&new, &table).is_none(), "not in the table");
        table.insert(now, key.node_id(), ad).expect("insert");
        assert!(kept.remember(&old, &table).is_none(), "not the one held");
        assert!(kept.remember(&new, &table).is_some());
        assert!(kept.remember(&new, &table).is_none(), "already kept");
        assert!(kept.remember(b"garbage", &table).is_none());
        assert_eq!(kept.live(&table, now), [new]);
        assert!(kept.live(&table, now.plus(60_000)).is_empty());
    }

    #[test]
    fn keeps_our_own_adverts_only() {
        let now = Timestamp::from_millis(1_000_000);
        let key = Keypair::from_seed(4);
        let ad = CapabilityAdvert {
            sequence: 5,
            expires_at: now.plus(60_000),
            ..CapabilityAdvert::default()
        };
        let signed = Envelope::seal(&key, now, Message::Advert(ad.clone()));
        let mut kept = AdvertEnvelopes::new();
        assert_eq!(kept.keep_own(&signed, &signed.to_bytes()), Some(&ad));
        let mut table = AdvertBook::new();
        table.insert(now, key.node_id(), ad).expect("insert");
        assert_eq!(kept.live(&table, now), [signed.to_bytes()]);
    }

    #[test]
    fn handoff_waits_for_both_subscription_and_identify() {
        let mut early = AdvertHandoff::default();
        assert!(!early.subscribed(), "identify has not answered");
        assert!(early.identified(true), "owed since it subscribed");
        assert!(!early.identified(true), "paid once");
        assert!(early.subscribed());

        let mut mute = AdvertHandoff::default();
        assert!(!mute.subscribed());
        assert!(!mute.identified(false));
        assert!(!mute.subscribed());
    }
}
