//! The bootstrap peer: lean and always on. It answers Kademlia queries, tells
//! joiners their observed address (identify), relays the gossip topics (after
//! checking every envelope, so forged messages stop here) and serves circuit
//! relay v2 for peers behind NAT. It runs no protocol roles.

use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::metrics::{Metrics as Libp2pMetrics, Recorder, Registry};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, connection_limits, identify, kad, ping, relay};
use modchain_net::driver::screen_gossip;
use modchain_net::wire::{self, NetworkError};
use modchain_protocol::{Envelope, Keypair, Timestamp};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

#[derive(NetworkBehaviour)]
struct BootstrapBehaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    relay: relay::Behaviour,
    /// Dials joiners' addresses back, so a node learns whether it is
    /// reachable (AutoNAT v2).
    autonat: autonat::v2::server::Behaviour,
}

#[derive(Clone, Debug)]
pub struct BootstrapConfig {
    pub listen: Vec<Multiaddr>,
    pub max_connections: u32,
}

/// What the bootstrap peer has seen, for its summary line.
#[derive(Clone, Debug, Default)]
pub struct BootstrapStats {
    pub relayed: u64,
    pub rejected: BTreeMap<&'static str, u64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// The bootstrap peer's metrics: rust-libp2p's (`libp2p_*`, `gossipsub_*`)
/// and its own (`modchain_bootstrap_*`), in one registry.
struct BootstrapMetrics {
    registry: Arc<Mutex<Registry>>,
    libp2p: Libp2pMetrics,
    relayed: Counter,
    rejected: Family<ReasonLabel, Counter>,
    peers_connected: Gauge,
}

pub struct BootstrapPeer {
    swarm: Swarm<BootstrapBehaviour>,
    stats: BootstrapStats,
    metrics: BootstrapMetrics,
}

impl std::fmt::Debug for BootstrapPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapPeer")
            .field("peer_id", self.swarm.local_peer_id())
            .field("stats", &self.stats)
            .finish()
    }
}

impl BootstrapPeer {
    pub fn new(key: &Keypair, config: &BootstrapConfig) -> Result<Self, NetworkError> {
        let lkey = key.to_libp2p();
        let mut registry = Registry::default();
        let gs = wire::gossipsub(&lkey)?.with_metrics(
            registry.sub_registry_with_prefix("gossipsub"),
            gossipsub::MetricsConfig::default(),
        );
        let max = config.max_connections;
        // The bootstrap peer needs no relay of its own: it is public.
        let mut swarm = wire::build_swarm(lkey, Some(&mut registry), |k, _| BootstrapBehaviour {
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(max))
                    .with_max_established_per_peer(Some(wire::CONNECTIONS_PER_PEER))
                    .with_max_pending_incoming(Some(max / 2 + 1)),
            ),
            identify: wire::identify(
                k,
                &wire::agent_string(concat!("modchain-bootstrap/", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
            kad: wire::kademlia(k),
            gossipsub: gs,
            // Circuits sized to carry a job between two peers that cannot
            // punch a hole (libp2p's defaults stop at 2 minutes, 128 KiB).
            relay: relay::Behaviour::new(
                k.public().to_peer_id(),
                modchain_net::nat::RelayLimits::default().config(),
            ),
            autonat: autonat::v2::server::Behaviour::default(),
        })?;
        wire::join(
            &mut swarm,
            |s| &mut s.behaviour_mut().gossipsub,
            &config.listen,
        )?;
        let libp2p = Libp2pMetrics::new(&mut registry);
        let r = registry.sub_registry_with_prefix("modchain_bootstrap");
        let relayed = Counter::default();
        r.register(
            "relayed_messages",
            "Gossip messages checked and relayed",
            relayed.clone(),
        );
        let rejected = Family::<ReasonLabel, Counter>::default();
        r.register(
            "rejected_messages",
            "Gossip messages refused (forged, stale, malformed), by reason",
            rejected.clone(),
        );
        let peers_connected = Gauge::default();
        r.register(
            "peers_connected",
            "Peers with an open connection",
            peers_connected.clone(),
        );
        Ok(BootstrapPeer {
            swarm,
            stats: BootstrapStats::default(),
            metrics: BootstrapMetrics {
                registry: Arc::new(Mutex::new(registry)),
                libp2p,
                relayed,
                rejected,
                peers_connected,
            },
        })
    }

    /// The registry to serve at `/metrics` (see [`crate::metrics::serve`]).
    pub fn metrics_registry(&self) -> Arc<Mutex<Registry>> {
        self.metrics.registry.clone()
    }

    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Waits until the listeners are up and returns the address to give
    /// joiners: a routable TCP address if there is one, else the first.
    pub async fn announce_address(&mut self) -> Result<Multiaddr, NetworkError> {
        let mut addrs: Vec<Multiaddr> = Vec::new();
        let settle = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(settle);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => {
                    match ev {
                        SwarmEvent::NewListenAddr { address, .. } => {
                            tracing::info!(%address, "listening");
                            // Public by definition: see `handle_event`.
                            self.swarm.add_external_address(address.clone());
                            if addrs.is_empty() {
                                // Give the other interfaces a moment to report.
                                settle.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(200));
                            }
                            addrs.push(address);
                        }
                        SwarmEvent::ListenerError { error, .. } => {
                            return Err(NetworkError::Transport(error.to_string()));
                        }
                        SwarmEvent::ListenerClosed { addresses, reason: Err(e), .. } => {
                            let addr = addresses.first().cloned().unwrap_or_else(Multiaddr::empty);
                            return Err(wire::listen_error(&addr, e));
                        }
                        other => self.handle_event(other),
                    }
                }
                _ = &mut settle => break,
            }
        }
        let best = pick_announce_address(&addrs)
            .ok_or_else(|| NetworkError::Transport("no listen address came up".into()))?;
        Ok(best.with_p2p(self.peer_id()).unwrap_or_else(|a| a))
    }

    /// Runs until `shutdown` fires.
    pub async fn run(mut self, mut shutdown: oneshot::Receiver<()>) {
        let mut summary = tokio::time::interval(Duration::from_secs(60));
        summary.tick().await;
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.handle_event(ev),
                _ = summary.tick() => {
                    tracing::info!(
                        peers = self.swarm.connected_peers().count(),
                        relayed = self.stats.relayed,
                        rejected = ?self.stats.rejected,
                        "summary"
                    );
                }
                _ = &mut shutdown => break,
            }
        }
        tracing::info!("bootstrap peer stopped");
    }

    fn handle_event(&mut self, ev: SwarmEvent<BootstrapBehaviourEvent>) {
        let m = &self.metrics;
        m.libp2p.record(&ev);
        match &ev {
            SwarmEvent::Behaviour(BootstrapBehaviourEvent::Identify(e)) => m.libp2p.record(e),
            SwarmEvent::Behaviour(BootstrapBehaviourEvent::Kad(e)) => m.libp2p.record(e),
            SwarmEvent::Behaviour(BootstrapBehaviourEvent::Ping(e)) => m.libp2p.record(e),
            SwarmEvent::Behaviour(BootstrapBehaviourEvent::Gossipsub(e)) => m.libp2p.record(e),
            SwarmEvent::Behaviour(BootstrapBehaviourEvent::Relay(e)) => m.libp2p.record(e),
            SwarmEvent::ConnectionEstablished { .. } | SwarmEvent::ConnectionClosed { .. } => {
                let n = self.swarm.connected_peers().count();
                m.peers_connected.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            _ => {}
        }
        match ev {
            SwarmEvent::Behaviour(BootstrapBehaviourEvent::Identify(
                identify::Event::Received { peer_id, info, .. },
            )) if info.protocols.contains(&wire::KAD_PROTOCOL) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BootstrapBehaviourEvent::Gossipsub(
                gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                },
            )) => {
                // The same check as every node's: a kind nodes refuse on
                // gossip is refused here too, never relayed to them.
                let opened = Envelope::open(&message.data, Timestamp::now_wall());
                let topic = modchain_net::wire::topic_of(&message.topic);
                let verdict = match screen_gossip(topic, opened) {
                    Ok(_) => {
                        self.stats.relayed += 1;
                        self.metrics.relayed.inc();
                        MessageAcceptance::Accept
                    }
                    Err(verdict) => {
                        let reason = verdict.label();
                        *self.stats.rejected.entry(reason).or_default() += 1;
                        self.metrics
                            .rejected
                            .get_or_create(&ReasonLabel {
                                reason: reason.into(),
                            })
                            .inc();
                        tracing::warn!(from = %propagation_source, reason, "rejected gossip message");
                        verdict.acceptance()
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                tracing::debug!(%peer_id, addr = %endpoint.get_remote_address(), "connected");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::debug!(%peer_id, "disconnected");
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                // A bootstrap peer is public by definition: its listen
                // addresses are where peers reach it. The relay serves
                // reservations only once it has an external address.
                self.swarm.add_external_address(address);
            }
            _ => {}
        }
    }
}

fn is_routable(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => !ip.is_loopback() && !ip.is_unspecified(),
        Protocol::Ip6(ip) => !IpAddr::V6(ip).is_loopback() && !ip.is_unspecified(),
        _ => false,
    })
}

fn is_tcp(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::Tcp(_)))
}

/// The address to print: routable TCP, then any TCP, then anything.
pub fn pick_announce_address(addrs: &[Multiaddr]) -> Option<Multiaddr> {
    addrs
        .iter()
        .find(|a| is_tcp(a) && is_routable(a))
        .or_else(|| addrs.iter().find(|a| is_tcp(a)))
        .or_else(|| addrs.first())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_prefers_routable_tcp() {
        let addrs: Vec<Multiaddr> = [
            "/ip4/127.0.0.1/udp/4001/quic-v1",
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/10.0.0.5/tcp/4001",
        ]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
        assert_eq!(
            pick_announce_address(&addrs)
                .map(|a| a.to_string())
                .as_deref(),
            Some("/ip4/10.0.0.5/tcp/4001")
        );
        assert_eq!(
            pick_announce_address(&addrs[..2])
                .map(|a| a.to_string())
                .as_deref(),
            Some("/ip4/127.0.0.1/tcp/4001")
        );
    }
}
