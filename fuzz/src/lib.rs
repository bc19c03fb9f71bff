//! What the fuzz targets and the seed generator share: one clock reading,
//! the keys that sign, the peer that takes what a target decodes, and the
//! framing of direct messages. The generator makes its seeds with these, so
//! a seed it writes is fresh and valid for the target that reads it, and a
//! change to a wire format shows up as seeds that no longer decode.

use libp2p::futures::executor::block_on;
use libp2p::request_response::Codec;
use modchain_net::behaviour::EnvelopeCodec;
use modchain_net::wire::MESSAGE_PROTOCOL;
use modchain_protocol::testnet::{test_advert, test_provider};
use modchain_protocol::{
    Envelope, Keypair, Message, OrchestratorConfig, Peer, PeerConfig, Signed, Timestamp,
};
use std::io;

/// The clock of every target: messages in the seeds were sealed shortly
/// before it, so direct messages are fresh and nothing is from the future.
pub const NOW: Timestamp = Timestamp(1_764_000_000_000);

/// Where the seed generator's network starts its clock: early enough that
/// everything it sends is sealed before [`NOW`], late enough that none of it
/// is stale at [`NOW`].
pub const SEEDS_START: Timestamp = Timestamp(NOW.0 - 60_000);

/// Key seeds of the generator's network. The peer that takes what a target
/// decodes ([`receiver`]) holds the provider's key, so awards and calls for
/// bids in the seeds are addressed to it.
pub const CLIENT: u64 = 1;
pub const ORCHESTRATOR: u64 = 2;
pub const PROVIDER: u64 = 3;
/// A provider too dear for the jobs: it declines.
pub const DEAR_PROVIDER: u64 = 4;
/// Signs the advert syncs and bundles the targets seal themselves.
pub const BUNDLER: u64 = 5;

/// The peer that takes what a target decodes: a provider (the seed
/// network's) that also stands as orchestrator, so every kind of message
/// reaches a role that acts on it. Fresh for every input, so that an input
/// reproduces alone.
pub fn receiver() -> Peer {
    Peer::new(
        Keypair::from_seed(PROVIDER),
        PeerConfig {
            advert: test_advert(),
            provider: Some(test_provider(100)),
            orchestrator: Some(OrchestratorConfig::default()),
            ..PeerConfig::default()
        },
    )
}

/// Drains what the peer asked for (sends, executions, notifications):
/// acting on a message is part of taking it.
pub fn drain(peer: &mut Peer) {
    while peer.poll_action(NOW).is_some() {}
}

/// `message` sealed by the key of `seed` at `now`.
pub fn seal(seed: u64, now: Timestamp, message: Message) -> Signed {
    Envelope::seal(&Keypair::from_seed(seed), now, message)
}

/// A direct message as it travels on a request-response stream, framed by
/// the node's own codec.
pub fn frame(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = libp2p::futures::io::Cursor::new(Vec::new());
    block_on(EnvelopeCodec.write_request(&MESSAGE_PROTOCOL, &mut out, bytes.to_vec()))?;
    Ok(out.into_inner())
}

/// A request read off a stream that holds `stream`, by the node's own codec.
pub fn read_request(stream: &[u8]) -> io::Result<Vec<u8>> {
    let mut io = libp2p::futures::io::Cursor::new(stream);
    block_on(EnvelopeCodec.read_request(&MESSAGE_PROTOCOL, &mut io))
}

/// A response read off a stream that holds `stream`, by the node's own codec.
pub fn read_response(stream: &[u8]) -> io::Result<Vec<u8>> {
    let mut io = libp2p::futures::io::Cursor::new(stream);
    block_on(EnvelopeCodec.read_response(&MESSAGE_PROTOCOL, &mut io))
}
