//! Where bytes meet sockets: the node's libp2p behaviour (identify, ping,
//! Kademlia, gossipsub, request-response for direct messages, connection
//! limits) and the DHT keys a node provides.
//!
//! They are defined in `modchain_bootstrap::behaviour` (with the direct-message
//! codec), so the simulator's libp2p engine runs the very same behaviour as
//! the node.

pub use modchain_bootstrap::behaviour::{
    NodeBehaviour, NodeBehaviourEvent, capability_keys, node_gossipsub,
};
