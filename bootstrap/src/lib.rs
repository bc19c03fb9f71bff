//! # modchain-bootstrap
//!
//! The lean, always-on peer that new nodes join through, the bootstrap list
//! format, the wire settings ([`network`]) that every Modchain peer, node
//! or bootstrap, builds its swarm from, and the node's own network behaviour
//! ([`behaviour`]), shared by the node and the simulator's libp2p engine,
//! with what both keep beside it to drive it alike ([`driver`]).

pub mod behaviour;
pub mod driver;
pub mod list;
pub mod metrics;
pub mod network;
pub mod peer;

pub use list::{BootstrapListError, BootstrapPeer as BootstrapAddr};
pub use peer::{BootstrapConfig, BootstrapPeer};
