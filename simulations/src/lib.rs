//! # modchain-sim
//!
//! The Modchain simulation harness. The model engine ([`engine`]) runs the
//! protocol crate's own state machines ([`modchain_protocol::Peer`])
//! for thousands of peers on a discrete-event simulated network
//! ([`network`]), in virtual time, deterministic from a seed. Scenarios are
//! data ([`scenario`]); a run writes its figures with [`output`]. The libp2p
//! engine ([`swarm`]) runs the same scenarios on real rust-libp2p swarms with
//! the node's own behaviour, in one process, in wall-clock time.

pub mod engine;
pub mod metrics;
pub mod network;
pub mod output;
pub mod plot;
pub mod population;
pub mod rng;
pub mod scenario;
pub mod swarm;
pub mod units;
