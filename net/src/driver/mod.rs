//! What a driver of [`NodeBehaviour`](crate::behaviour::NodeBehaviour) and
//! the protocol's `Peer` keeps beside them: the rules the node and the
//! simulator's libp2p engine must follow alike, so that what the simulator
//! measures is what a node does.
//!
//! Each type here holds one piece of that state and works on the part of the
//! swarm it needs. None of them logs or counts: each call returns what
//! happened, and the driver logs it (the node) or observes it (the engine).
//!
//! | Module | Holds |
//! |---|---|
//! | [`publish`] | [`PendingPublish`]: gossip published before anyone subscribed, retried when someone does |
//! | [`provided`] | [`ProvidedKeys`]: the DHT capability keys we provide, and the DHT walk on joining |
//! | [`dial`] | [`BootstrapPeers`]: dialling the bootstrap peers, with exponential backoff |
//! | [`adverts`] | [`AdvertEnvelopes`], [`AdvertHandoff`], [`AdvertSyncs`]: the adverts a joining peer asks two peers for, and their answer in bundles |
//! | [`identify`] | [`identified`]: what identify tells us of a peer |
//! | [`messages`] | [`screen_gossip`] (the check of gossip every peer makes), [`take_bytes`] and its [`Verdict`], [`take_direct`] and its [`Direct`], [`send_direct`]: bytes in and out of the peer |

pub mod adverts;
pub mod dial;
pub mod identify;
pub mod messages;
pub mod provided;
pub mod publish;

pub use adverts::{
    AdvertEnvelopes, AdvertHandoff, AdvertSyncs, BundleAdmission, SYNC_ANSWER_INTERVAL,
    SYNC_PEERS_PER_JOIN, SyncAnswer, answer_sync, ask_for_adverts,
};
pub use dial::{BootstrapDial, BootstrapPeers, DialFailed, Joined, Retry};
pub use identify::identified;
pub use messages::{
    BundleTaken, Direct, Sent, Verdict, screen_gossip, send_direct, take_bytes, take_direct,
    take_direct_capped,
};
pub use provided::{ProvideUpdate, ProvidedKeys, Rewalks, walk_dht};
pub use publish::{PendingPublish, Publication, PublishOutcome};
