//! # modchain-protocol
//!
//! The Modchain wire types and the job protocol as pure state machines.
//!
//! Nothing here opens a socket, reads a clock or spawns a task: the
//! [`client::Client`], [`provider::Provider`] and
//! [`orchestrator::Orchestrator`] (gathered in [`peer::Peer`]) take events
//! and a `now`, and queue [`action::Action`]s for their driver. The node
//! drives them from libp2p and tokio, the simulator from a seeded event
//! queue, and [`testnet::TestNet`] from a hand-cranked clock, so all three
//! run the same rules.
//!
//! Map of the crate:
//! - identity and bytes: [`identity`], [`digest`], [`codec`], [`envelope`]
//! - what travels: [`advert`], [`advert_sync`], [`job`], [`auction`], [`receipt`], [`pricing`]
//! - the machines: [`orchestrator`], [`provider`], [`client`], [`peer`]
//! - network-wide views: [`election`], [`reputation`], [`credit`]

#![forbid(unsafe_code)]

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
pub use time::Timestamp;
