//! Bytes in and out of the protocol's `Peer`: what a driver tells gossipsub
//! of a message (forward it, drop it quietly, or penalise whoever sent it),
//! and direct messages, which go to ourselves in memory.

use super::adverts::AdvertEnvelopes;
use crate::behaviour::EnvelopeCodec;
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::{PeerId, request_response};
use modchain_protocol::envelope::{Rejection, Signed};
use modchain_protocol::identity::{IdentityError, NodeId};
use modchain_protocol::peer::Peer;
use modchain_protocol::time::Timestamp;

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
}

impl Verdict {
    /// What gossipsub does with the message: old news is neither forwarded
    /// nor held against the peer that sent it; only a rejection is.
    pub fn acceptance(&self) -> MessageAcceptance {
        match self {
            Verdict::Taken(_) => MessageAcceptance::Accept,
            Verdict::Stale => MessageAcceptance::Ignore,
            Verdict::Rejected(_) => MessageAcceptance::Reject,
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

/// Hands `bytes` to the peer and keeps the envelope of an advert it took.
pub fn take_bytes(
    peer: &mut Peer,
    adverts: &mut AdvertEnvelopes,
    now: Timestamp,
    bytes: &[u8],
) -> Verdict {
    let stale_before: u64 = peer.stats().adverts_rejected.values().sum();
    match peer.handle_bytes(now, bytes) {
        Ok(()) => {
            let stale_after: u64 = peer.stats().adverts_rejected.values().sum();
            if stale_after > stale_before {
                return Verdict::Stale;
            }
            Verdict::Taken(adverts.remember(bytes, peer.adverts()).map(Box::new))
        }
        Err(rejection) => Verdict::Rejected(rejection),
    }
}

/// How a direct message left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// It was for ourselves: handed to the peer in memory.
    ToSelf,
    /// Sent to another peer by request-response.
    Request,
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
    messages.send_request(&peer_id, message.to_bytes());
    Ok(Sent::Request)
}
