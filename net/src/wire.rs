//! The wire settings every Modchain peer shares: protocol names, the
//! gossipsub configuration and scoring, Kademlia's configuration, and the
//! transport stack (TCP + noise + yamux, and QUIC). The node and the bootstrap
//! peer both build their swarms here, so the two can never disagree on them.

use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, Swarm, SwarmBuilder, identity, kad, noise, tcp, yamux};
use modchain_protocol::{MAX_GOSSIP_BYTES, Topic};
use std::time::Duration;
use thiserror::Error;

/// Kademlia protocol name: keeps Modchain's DHT apart from every other network's.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/modchain/kad/1.0.0");
/// Identify's protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/modchain/id/1.0.0";
/// Request-response protocol for direct messages (one envelope per request).
pub const MESSAGE_PROTOCOL: StreamProtocol = StreamProtocol::new("/modchain/msg/1.0.0");
/// The gossip topics every peer subscribes to.
pub const TOPICS: [Topic; 2] = [Topic::Adverts, Topic::Receipts];
/// Connections with no open stream are closed after this long.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Most connections a node holds at once unless its config says otherwise
/// (`max_connections`); the simulator's peers hold the same.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;
/// A Kademlia query (a lookup, a provider search, the walk on joining)
/// gives up after this long.
pub const KAD_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// A direct message not acknowledged within this long counts as not delivered.
pub const DIRECT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections one peer may hold to us at once.
pub const CONNECTIONS_PER_PEER: u32 = 4;
/// Gossipsub's `mesh_n_low` (libp2p's default, stated here so that the
/// simulator's "joined" threshold reads the same number): a peer with this
/// many mesh peers on a topic is not short of any.
pub const MESH_N_LOW: usize = 5;

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error("gossipsub configuration rejected: {0}")]
    Gossipsub(String),
    #[error("transport setup failed: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

/// The libp2p topic for a protocol topic.
pub fn topic(t: Topic) -> IdentTopic {
    IdentTopic::new(t.name())
}

/// Which protocol topic a gossipsub topic hash names, if any.
pub fn topic_of(hash: &gossipsub::TopicHash) -> Option<Topic> {
    TOPICS.into_iter().find(|t| topic(*t).hash() == *hash)
}

/// Gossipsub with signed messages, content-addressed message ids (so the same
/// envelope relayed by two peers is one message), application validation and
/// a transmit size of `MAX_GOSSIP_BYTES`: gossip carries only small
/// things (adverts and receipts, which fit), so anything larger is dropped
/// by gossipsub before it is read, and counts against whoever sent it.
pub fn gossipsub_config() -> Result<gossipsub::Config, NetworkError> {
    gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(modchain_protocol::Digest::of(&m.data).0.to_vec())
        })
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .heartbeat_interval(Duration::from_secs(1))
        .mesh_n_low(MESH_N_LOW)
        .build()
        .map_err(|e| NetworkError::Gossipsub(e.to_string()))
}

/// Peer scoring: an invalid message costs its sender heavily (-20 × n² for n
/// of them: a third takes it below the graylist threshold of -80, which two
/// only reach); time in the mesh and first deliveries earn a little. Mesh
/// delivery-rate penalties are off: our topics are quiet by design (an advert
/// a minute per peer), so a low rate says nothing about a peer.
pub fn peer_score() -> (PeerScoreParams, PeerScoreThresholds) {
    let mut params = PeerScoreParams::default();
    for t in TOPICS {
        params.topics.insert(
            topic(t).hash(),
            TopicScoreParams {
                topic_weight: 1.0,
                time_in_mesh_weight: 0.01,
                time_in_mesh_quantum: Duration::from_secs(1),
                time_in_mesh_cap: 100.0,
                first_message_deliveries_weight: 1.0,
                first_message_deliveries_decay: 0.9,
                first_message_deliveries_cap: 20.0,
                mesh_message_deliveries_weight: 0.0,
                mesh_failure_penalty_weight: 0.0,
                invalid_message_deliveries_weight: -20.0,
                invalid_message_deliveries_decay: 0.9,
                ..TopicScoreParams::default()
            },
        );
    }
    (params, PeerScoreThresholds::default())
}

/// A gossipsub behaviour with our configuration and scoring, signing as `key`.
pub fn gossipsub(key: &identity::Keypair) -> Result<gossipsub::Behaviour, NetworkError> {
    let mut gs = gossipsub::Behaviour::new(
        MessageAuthenticity::Signed(key.clone()),
        gossipsub_config()?,
    )
    .map_err(|e| NetworkError::Gossipsub(e.to_string()))?;
    let (params, thresholds) = peer_score();
    gs.with_peer_score(params, thresholds)
        .map_err(NetworkError::Gossipsub)?;
    Ok(gs)
}

/// Kademlia in server mode with the Modchain protocol name.
pub fn kademlia(key: &identity::Keypair) -> kad::Behaviour<kad::store::MemoryStore> {
    let me = key.public().to_peer_id();
    let mut config = kad::Config::new(KAD_PROTOCOL);
    config.set_query_timeout(KAD_QUERY_TIMEOUT);
    let mut k = kad::Behaviour::with_config(me, kad::store::MemoryStore::new(me), config);
    k.set_mode(Some(kad::Mode::Server));
    k
}

/// The identify agent string of `software` (like `modchain/0.1.0+3f2a1bc`):
/// the software, then the wire protocol version it speaks, as
/// `modchain/0.1.0+3f2a1bc protocol/3`. Peers read the protocol version
/// back with [`agent_protocol`], even from a peer whose envelopes they cannot
/// decode, so a node can tell that the network moved on without it.
pub fn agent_string(software: &str) -> String {
    format!(
        "{software} protocol/{}",
        modchain_protocol::PROTOCOL_VERSION
    )
}

/// The wire protocol version an identify agent string names (see
/// [`agent_string`]); `None` for agents that do not say (other libp2p
/// software, or a Modchain release before the agent carried it).
pub fn agent_protocol(agent: &str) -> Option<u16> {
    agent.rsplit_once(" protocol/")?.1.parse().ok()
}

/// Identify with the Modchain protocol version and our agent string.
pub fn identify(key: &identity::Keypair, agent: &str) -> libp2p::identify::Behaviour {
    libp2p::identify::Behaviour::new(
        libp2p::identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
            .with_agent_version(agent.to_string())
            .with_push_listen_addr_updates(true),
    )
}

/// A swarm on TCP (noise, yamux) and QUIC, and through circuit relays
/// (relay v2 client: `behaviour` gets its half), with our behaviour. When
/// `registry` is given, bandwidth per transport is recorded there.
pub fn build_swarm<B: NetworkBehaviour>(
    key: identity::Keypair,
    registry: Option<&mut libp2p::metrics::Registry>,
    behaviour: impl FnOnce(&identity::Keypair, libp2p::relay::client::Behaviour) -> B,
) -> Result<Swarm<B>, NetworkError> {
    let builder = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetworkError::Transport(e.to_string()))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| NetworkError::Transport(e.to_string()))?;
    let config = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT);
    let swarm = match registry {
        Some(registry) => builder
            .with_bandwidth_metrics(registry)
            .with_behaviour(|k, relay| behaviour(k, relay))
            .map_err(|e| NetworkError::Transport(e.to_string()))?
            .with_swarm_config(config)
            .build(),
        None => builder
            .with_behaviour(|k, relay| behaviour(k, relay))
            .map_err(|e| NetworkError::Transport(e.to_string()))?
            .with_swarm_config(config)
            .build(),
    };
    Ok(swarm)
}

/// Explains a listen error in an operator's words.
/// Subscribes to every Modchain topic and starts listening on `listen`:
/// what the bootstrap peer and the node both do once their swarm is built.
pub fn join<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    gossipsub: impl Fn(&mut Swarm<B>) -> &mut libp2p::gossipsub::Behaviour,
    listen: &[libp2p::Multiaddr],
) -> Result<(), NetworkError> {
    for t in TOPICS {
        gossipsub(swarm)
            .subscribe(&topic(t))
            .map_err(|e| NetworkError::Gossipsub(e.to_string()))?;
    }
    for addr in listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| listen_error(addr, e))?;
    }
    Ok(())
}

pub fn listen_error(
    addr: &libp2p::Multiaddr,
    err: impl std::fmt::Display + std::fmt::Debug,
) -> NetworkError {
    let shown = err.to_string();
    let debug = format!("{err:?}");
    let text = if shown.trim().is_empty() {
        debug.clone()
    } else {
        shown
    };
    let reason = if debug.contains("AddrInUse") || text.contains("Address already in use") {
        "the port is in use by another program (another modchain node?); pick another with --listen or stop that program".to_string()
    } else if debug.contains("AddrNotAvailable") || text.contains("Cannot assign requested address")
    {
        "this machine has no such address; use 0.0.0.0 or one of its own addresses".to_string()
    } else if debug.contains("PermissionDenied") {
        "permission denied; ports below 1024 need privileges, pick a higher one".to_string()
    } else {
        text
    };
    NetworkError::Listen {
        addr: addr.to_string(),
        reason,
    }
}
