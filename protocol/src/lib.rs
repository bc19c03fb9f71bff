//! # modchain-protocol
//!
//! The Modchain wire types and the job protocol as pure state machines.
//!
//! Nothing here opens a socket, reads a clock or spawns a task: the
//! [`Client`], [`Provider`] and [`Orchestrator`] (gathered in [`Peer`]) take
//! events and a `now`, and queue [`Action`]s for their driver. The node drives
//! them from libp2p and tokio, the simulator from a seeded event queue, and
//! [`testnet::TestNet`] from a hand-cranked clock, so all three run the same
//! rules.
//!
//! ## Driving a `Peer`
//!
//! A driver owns the clock, the network and the adapters; a [`Peer`]
//! owns the rules. Three kinds of call pass between them, always in this
//! order:
//!
//! 1. **handle**: feed the peer what happened (`start` once, then
//!    `handle_bytes` for every message from the network, `submit` for a
//!    user's job, `execution_finished` when an adapter is done,
//!    `peer_gone` when a connection drops, …);
//! 2. **poll**: after every handle call, drain [`poll_action`] until it
//!    returns `None`, and perform each [`Action`]: send, publish, execute,
//!    store a receipt;
//! 3. **timeout**: ask [`poll_timeout`] when the peer next wants to be woken,
//!    wait until that time or the next input, whichever comes first, and at
//!    that time call [`handle_timeout`] (a call too early or extra is
//!    harmless). Then drain again.
//!
//! The whole loop, with two peers and an in-memory network (a real driver
//! puts libp2p and tokio where the queue and the jumps in time are):
//!
//! ```
//! use modchain_protocol::testnet::test_job;
//! use modchain_protocol::{
//!     Action, JobState, Keypair, NodeId, OrchestratorConfig, Peer, PeerConfig, SECOND, Timestamp,
//! };
//! use std::collections::VecDeque;
//!
//! let client = Peer::new(Keypair::from_seed(1), PeerConfig::default());
//! let orchestrator = Peer::new(
//!     Keypair::from_seed(2),
//!     PeerConfig {
//!         orchestrator: Some(OrchestratorConfig::default()),
//!         ..PeerConfig::default()
//!     },
//! );
//! let mut peers = [client, orchestrator];
//! let ids: Vec<NodeId> = peers.iter().map(Peer::id).collect();
//! let mut now = Timestamp::from_millis(1_764_000_000_000);
//! // Messages in flight: to whom, and the bytes as they travel.
//! let mut wire: VecDeque<(NodeId, Vec<u8>)> = VecDeque::new();
//!
//! // handle: start every peer (each publishes its advert).
//! for peer in &mut peers {
//!     peer.start(now);
//! }
//! let mut job = None;
//! let until = now.plus(30 * SECOND);
//! while now < until {
//!     // poll: drain every peer's actions until none is left.
//!     for peer in &mut peers {
//!         while let Some(action) = peer.poll_action(now) {
//!             match action {
//!                 Action::Send { to, message } => wire.push_back((to, message.to_bytes())),
//!                 Action::Publish { message, .. } => {
//!                     for &to in ids.iter().filter(|&&to| to != peer.id()) {
//!                         wire.push_back((to, message.to_bytes()));
//!                     }
//!                 }
//!                 // A provider would start the job here and report it with
//!                 // `execution_finished`; a node would store receipts, serve
//!                 // outputs, log events.
//!                 _ => {}
//!             }
//!         }
//!     }
//!     // Once the client knows an elected orchestrator, its user submits a job.
//!     if job.is_none() && !peers[0].elected(now).is_empty() {
//!         job = Some(peers[0].submit(now, test_job(now, 1)).expect("a valid job"));
//!         continue;
//!     }
//!     // handle: deliver the next message; or else timeout: jump to the
//!     // earliest time a peer asked to be woken.
//!     if let Some((to, bytes)) = wire.pop_front() {
//!         if let Some(peer) = peers.iter_mut().find(|p| p.id() == to) {
//!             // A message that fails to decode or verify is dropped and
//!             // counted; it never reaches the roles.
//!             let _ = peer.handle_bytes(now, &bytes);
//!         }
//!     } else if let Some(at) = peers.iter().filter_map(Peer::poll_timeout).min() {
//!         now = now.max(at);
//!         for peer in &mut peers {
//!             peer.handle_timeout(now);
//!         }
//!     }
//! }
//! // No provider sells anything here, so the orchestrator keeps the job
//! // waiting and tells the client why.
//! let job = job.expect("submitted");
//! assert_eq!(peers[0].job(&job).map(|j| j.state), Some(JobState::Queued));
//! ```
//!
//! [`poll_action`]: Peer::poll_action
//! [`poll_timeout`]: Peer::poll_timeout
//! [`handle_timeout`]: Peer::handle_timeout
//!
//! Every item is named at the crate root (`modchain_protocol::Peer`,
//! `modchain_protocol::CapabilityAdvert`); the modules are private. By domain:
//! - identity and messages: [`Keypair`], [`NodeId`], [`Digest`], [`Envelope`],
//!   [`Message`], [`Signed`], [`encode`]/[`decode`]
//! - jobs: [`JobSpec`], [`JobState`], [`JobResult`], [`ExitStatus`], [`limits`]
//! - adverts: [`CapabilityAdvert`], [`AdvertBook`], [`AdvertSync`], [`AdvertBundle`]
//! - election and auction: [`Election`], [`Bid`], [`Award`], [`PriceTable`]
//! - receipts, reputation and credit: [`SignedReceipt`], [`TrustGraph`],
//!   [`Balances`], [`Credits`]
//! - the peer and its machines: [`Peer`], [`Action`], [`Event`], [`Client`],
//!   [`Provider`], [`Orchestrator`]
//! - time: [`Timestamp`], [`SECOND`], [`MINUTE`]
//! - testing: the [`testnet`] module

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, unnameable_types)]

// The modules are the file layout, not the interface: everything a driver,
// an adapter or a simulator names is re-exported below, by its own name.
mod action;
mod advert;
mod advert_sync;
mod auction;
mod authority;
mod bytes;
mod client;
mod codec;
mod credit;
mod digest;
mod election;
mod envelope;
mod identity;
mod job;
mod orchestrator;
mod peer;
mod pricing;
mod provider;
mod receipt;
mod replay;
mod reputation;
mod time;
mod timer;
mod vocabulary;

// Identity and messages: keys, ids, the signed envelope, its encoding and limits.
pub use codec::{DecodeError, MAX_DECODE_BYTES, decode, encode};
pub use digest::{BidId, Digest, JobId, ReceiptId};
pub use envelope::{
    CallForBids, Envelope, GOSSIP_FRAMING_BYTES, Kind, MAX_CLOCK_SKEW_MS,
    MAX_DIRECT_MESSAGE_AGE_MS, MAX_GOSSIP_BYTES, Message, PROTOCOL_VERSION, Rejection, Signed,
    max_envelope_bytes,
};
pub use identity::{IdentityError, Keypair, NodeId, Signature};

// Jobs: the spec, its lifecycle, results, logs and outputs; `limits` is the
// namespace of the job messages' size bounds.
pub use job::{
    Cancel, ExitStatus, FetchOutput, JobResult, JobSpec, JobState, JobStatus, LogChunk, LogStream,
    OutputChunk, OutputFile, Refusal, SpecError, Usage, limits, tail_bytes,
};
pub use vocabulary::Requirements;

// Adverts: what a provider offers, matching it against a job, the advert
// table, and the exchange that hands a joining peer the adverts it lacks.
pub use advert::{
    AdapterInfo, AdvertBook, AdvertRejection, CapabilityAdvert, Capacity, ContainerRuntime,
    CpuInfo, DEFAULT_MAX_ADVERTS, GpuInfo, MAX_ADVERT_ITEMS, MAX_ADVERT_TTL_MS, MAX_SOFTWARE_BYTES,
    MemoryInfo, ModelInfo, StorageInfo, StorageKind, Unmet,
};
pub use advert_sync::{
    AdvertBundle, AdvertSync, KNOWN_ADVERT_MAX_BYTES, KnownAdvert, MAX_BUNDLE_ADVERTS,
    MAX_BUNDLE_BYTES, MAX_SYNC_KNOWN,
};
pub use vocabulary::GpuVendor;

// Election and auction: who orchestrates, bids, prices and the winner rule.
pub use auction::{
    Award, AwardCheck, Bid, BidEntry, Decline, DeclineReason, MAX_AWARD_BIDS, bids_digest,
    effective_price, select_winner,
};
// Who may send what, by which channel; the replay cache.
pub use authority::{
    MAX_BID_WINDOW_MS, MAX_START_WINDOW_MS, RULES, Rule, gossip_accepts, rule_for,
};
pub use election::{Election, ElectionConfig, SEATED_EPOCHS_KEPT, elect, epoch_at, rank_for_job};
pub use pricing::{PriceTable, Quote};
pub use replay::{MAX_REPLAY_ENTRIES, ReplayCache};
pub use vocabulary::REPUTATION_SCALE;

// Receipts, reputation and credit: what a finished job leaves, and the
// network-wide views computed from it.
pub use credit::Balances;
pub use receipt::{FailureReason, Outcome, Receipt, ReceiptError, SignedReceipt};
pub use reputation::{Trust, TrustConfig, TrustGraph};
pub use vocabulary::{Credits, MICROS_PER_CREDIT};

// The peer and its machines: what a driver holds, what it is asked to do,
// and the three roles behind it.
pub use action::{Action, Event, Execution, StopReason, Topic};
pub use client::{Client, ClientConfig, ClientJob, SubmitError};
pub use orchestrator::{Orchestrator, OrchestratorConfig, OrchestratorContext, ReputationTable};
pub use peer::{Peer, PeerConfig, PeerStats, REJOIN_ADVERT_DELAY_MS, Refused};
pub use provider::{
    Admission, AdmissionRefusal, ExecutionReport, MAX_OUTPUT_NAME_BYTES, OUTPUT_RETENTION_MS,
    Provider, ProviderConfig,
};

// Time: the protocol's only clock type and its units.
pub use time::{MINUTE, SECOND, Timestamp};

// Testing: `testnet` stays a public module rather than a set of root names.
// It is a harness around the protocol (a virtual clock and an in-memory
// network for this crate's tests, benches and examples), not part of it, and
// its helpers (`TestNet`, `Executor`, `test_job`, …) read right only under
// their module's name.
pub mod testnet;
