//! # modchain-bootstrap
//!
//! The lean, always-on peer that new nodes join through: a Kademlia server,
//! identify, a relay, and a gossip relay that checks messages with the same
//! verdict as every node ([`modchain_net::driver::screen_gossip`]), so it
//! never forwards what nodes would hold against it. Its network stack is
//! `modchain-net`'s; its metrics are served over HTTP by [`metrics`]; its
//! command line is [`cli`].

pub mod cli;
pub mod metrics;
pub mod peer;

pub use peer::{BootstrapConfig, BootstrapPeer};
