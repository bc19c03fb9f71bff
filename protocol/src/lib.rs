//! # modchain-protocol
//!
//! The Modchain wire types and the job protocol as pure state machines.
//!
//! Nothing here opens a socket, reads a clock or spawns a task: the
//! [`client::Client`], [`provider::Provider`] and
//! [`orchestrator::Orchestrator`] (gathered in [`peer::Peer`]) take events
//! and a `now`, and queue [`Action`]s for their driver. The node drives them
//! from libp2p and tokio, the simulator from a seeded event queue, and
//! [`testnet::TestNet`] from a hand-cranked clock, so all three run the same
//! rules.
//!
//! ## Driving a `Peer`
//!
//! A driver owns the clock, the network and the adapters; a [`peer::Peer`]
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
//! use modchain_protocol::orchestrator::OrchestratorConfig;
//! use modchain_protocol::peer::{Peer, PeerConfig};
//! use modchain_protocol::testnet::test_job;
//! use modchain_protocol::time::SECOND;
//! use modchain_protocol::{Action, JobState, Keypair, NodeId, Timestamp};
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
//! [`poll_action`]: peer::Peer::poll_action
//! [`poll_timeout`]: peer::Peer::poll_timeout
//! [`handle_timeout`]: peer::Peer::handle_timeout
//!
//! Map of the crate:
//! - identity and bytes: [`identity`], [`digest`], [`codec`], [`envelope`]
//! - the shared words: [`vocabulary`], [`time`]
//! - what travels: [`advert`], [`advert_sync`], [`job`], [`auction`], [`receipt`], [`pricing`]
//! - the machines: [`orchestrator`], [`provider`], [`client`], [`peer`]
//! - network-wide views: [`election`], [`reputation`], [`credit`]

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod bytes;

pub mod action;
pub mod advert;
pub mod advert_sync;
pub mod auction;
pub mod client;
pub mod codec;
pub mod credit;
pub mod digest;
pub mod election;
pub mod envelope;
pub mod identity;
pub mod job;
pub mod orchestrator;
pub mod peer;
pub mod pricing;
pub mod provider;
pub mod receipt;
pub mod reputation;
pub mod testnet;
pub mod time;
pub mod timer;
pub mod vocabulary;

pub use action::{Action, Event, Topic};
pub use digest::{Digest, JobId};
pub use envelope::{Envelope, Kind, Message, Signed};
pub use identity::{Keypair, NodeId};
pub use job::JobState;
pub use time::Timestamp;
