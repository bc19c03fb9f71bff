//! # modchain-net
//!
//! Modchain's one network layer, where bytes meet sockets. The node, the
//! bootstrap peer and the simulator's libp2p engine all build on it, so a
//! join, advert-sync or connection rule changes in one place:
//!
//! | Module | Owns |
//! |---|---|
//! | [`wire`] | the wire settings every peer shares: protocol ids, gossipsub and Kademlia configuration and scoring, the transport stack, the verdict on gossip |
//! | [`behaviour`] | [`NodeBehaviour`](behaviour::NodeBehaviour): gossipsub, Kademlia, identify, ping, request-response for direct messages, connection limits; the DHT keys a node provides |
//! | [`limits`] | [`NetLimits`](limits::NetLimits): the cap on every table, queue and stream a remote peer can grow; the per-peer token bucket on direct requests |
//! | [`bootstrap_list`] | the bootstrap list format: full multiaddrs ending in `/p2p/<peer id>` |
//! | [`driver`] | the pieces of driver state, each with its rule (held gossip, provided keys, bootstrap backoff, advert hand-off, bytes in and out of the peer) |
//! | [`swarm_driver`] | [`SwarmDriver`]: owns a swarm and a protocol `Peer` and runs one over the other, reporting typed [`DriverEvent`]s |
//! | [`metrics`] | the swarm's metrics registry as OpenMetrics or Prometheus text |
//!
//! It never logs and never counts: what happened comes back as values, and
//! the caller logs (the node) or observes (the simulator). It must never
//! import the node, the bootstrap peer or the simulator, nor an HTTP stack.

pub mod behaviour;
pub mod bootstrap_list;
pub mod driver;
pub mod limits;
pub mod metrics;
pub mod nat;
pub mod swarm_driver;
pub mod wire;

pub use bootstrap_list::{BootstrapAddr, BootstrapListError};
pub use limits::NetLimits;
pub use swarm_driver::{
    DirectOutcome, DriverEvent, PeerInfo, RelayService, SwarmDriver, TableSizes,
};
