//! # modchain-bootstrap
//!
//! The lean, always-on peer that new nodes join through, the bootstrap list
//! format, and the wire settings ([`network`]) that every Modchain peer, node
//! or bootstrap, builds its swarm from.

pub mod list;
pub mod metrics;
pub mod network;
pub mod peer;

pub use list::{BootstrapListError, BootstrapPeer as BootstrapAddr};
pub use peer::{BootstrapConfig, BootstrapPeer};
