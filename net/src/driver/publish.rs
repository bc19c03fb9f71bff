//! Gossip published while nobody is subscribed to its topic yet (a node
//! that just started, a mesh that is still forming) would be lost: it waits
//! here, a bounded number of messages, until a peer subscribes.

use crate::behaviour::timings::MAX_PENDING_PUBLISH;
use crate::wire;
use libp2p::gossipsub::{self, PublishError};
use modchain_protocol::Topic;
use std::collections::VecDeque;

/// What became of one message handed to gossipsub.
#[derive(Debug)]
pub enum PublishOutcome {
    /// Gossipsub took it.
    Sent,
    /// Nobody to send it to yet: kept for [`PendingPublish::retry`].
    Held,
    /// Gossipsub has already seen these bytes.
    Duplicate,
    /// Refused for good (too large, cannot be signed): retrying cannot help.
    Failed(PublishError),
}

/// One publication and its outcome, for the driver's logs and counters.
#[derive(Debug)]
pub struct Publication {
    pub topic: Topic,
    /// The message's length in bytes.
    pub len: usize,
    pub outcome: PublishOutcome,
}

/// The messages waiting for a subscriber, oldest first, at most
/// [`MAX_PENDING_PUBLISH`]: when full, the oldest one gives way.
#[derive(Debug, Default)]
pub struct PendingPublish {
    queue: VecDeque<(Topic, Vec<u8>)>,
}

impl PendingPublish {
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `bytes` on `topic`, holding them when no peer can take them yet.
    pub fn publish(
        &mut self,
        gossipsub: &mut gossipsub::Behaviour,
        topic: Topic,
        bytes: Vec<u8>,
    ) -> Publication {
        let len = bytes.len();
        let outcome = match gossipsub.publish(wire::topic(topic), bytes.clone()) {
            Ok(_) => PublishOutcome::Sent,
            Err(PublishError::NoPeersSubscribedToTopic) | Err(PublishError::AllQueuesFull(_)) => {
                self.hold(topic, bytes);
                PublishOutcome::Held
            }
            Err(PublishError::Duplicate) => PublishOutcome::Duplicate,
            Err(e) => PublishOutcome::Failed(e),
        };
        Publication {
            topic,
            len,
            outcome,
        }
    }

    /// A peer subscribed to `topic`: publishes again what waited for it, in
    /// order (what still finds nobody is held again).
    pub fn retry(
        &mut self,
        gossipsub: &mut gossipsub::Behaviour,
        topic: Topic,
    ) -> Vec<Publication> {
        self.take(topic)
            .into_iter()
            .map(|bytes| self.publish(gossipsub, topic, bytes))
            .collect()
    }

    /// Drops what waits on `topic`: a newer advert makes the held one worthless.
    pub fn discard(&mut self, topic: Topic) {
        self.queue.retain(|(t, _)| *t != topic);
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn hold(&mut self, topic: Topic, bytes: Vec<u8>) {
        if self.queue.len() >= MAX_PENDING_PUBLISH {
            self.queue.pop_front();
        }
        self.queue.push_back((topic, bytes));
    }

    /// Removes and returns the messages waiting on `topic`, oldest first.
    fn take(&mut self, topic: Topic) -> Vec<Vec<u8>> {
        let (ready, keep): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|(t, _)| *t == topic);
        self.queue = keep.into();
        ready.into_iter().map(|(_, bytes)| bytes).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_the_bound_dropping_the_oldest() {
        let mut pending = PendingPublish::new();
        for i in 0..MAX_PENDING_PUBLISH + 3 {
            pending.hold(Topic::Receipts, i.to_le_bytes().to_vec());
        }
        assert_eq!(pending.len(), MAX_PENDING_PUBLISH);
        let held = pending.take(Topic::Receipts);
        assert_eq!(held.first(), Some(&3usize.to_le_bytes().to_vec()));
        assert!(pending.is_empty());
    }

    #[test]
    fn takes_one_topic_and_keeps_the_others_in_order() {
        let mut pending = PendingPublish::new();
        pending.hold(Topic::Adverts, b"a1".to_vec());
        pending.hold(Topic::Receipts, b"r1".to_vec());
        pending.hold(Topic::Adverts, b"a2".to_vec());
        pending.hold(Topic::Receipts, b"r2".to_vec());
        assert_eq!(
            pending.take(Topic::Adverts),
            [b"a1".to_vec(), b"a2".to_vec()]
        );
        pending.discard(Topic::Adverts);
        assert_eq!(pending.len(), 2);
        pending.discard(Topic::Receipts);
        assert!(pending.is_empty());
    }

    #[test]
    fn publishing_with_no_subscriber_holds_the_message() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let mut gs = wire::gossipsub(&key).expect("gossipsub");
        let mut pending = PendingPublish::new();
        let p = pending.publish(&mut gs, Topic::Adverts, b"advert".to_vec());
        assert!(matches!(p.outcome, PublishOutcome::Held), "{p:?}");
        assert_eq!((p.topic, p.len, pending.len()), (Topic::Adverts, 6, 1));
        let again = pending.retry(&mut gs, Topic::Adverts);
        assert_eq!(again.len(), 1);
        assert_eq!(pending.len(), 1, "still nobody: held again");
    }
}
