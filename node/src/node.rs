//! The running node: drives the protocol's sans-IO [`Peer`] from the libp2p
//! swarm and the clock, keeps the view of the network the API shows, and
//! retries bootstrap peers. Every `SwarmEvent` is translated here, once.

use crate::network::{NodeBehaviour, NodeBehaviourEvent, capability_keys, node_gossipsub};
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance, PublishError};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad, request_response};
use modchain_bootstrap::BootstrapAddr;
use modchain_bootstrap::network::{self, NetworkError, TOPICS};
use modchain_protocol::action::{Action, Topic};
use modchain_protocol::advert::CapabilityAdvert;
use modchain_protocol::envelope::{Envelope, Kind, Message};
use modchain_protocol::orchestrator::OrchestratorConfig;
use modchain_protocol::peer::{Peer, PeerConfig};
use modchain_protocol::{Keypair, NodeId, Timestamp};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What `modchain start` resolved from config and flags.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<BootstrapAddr>,
    pub orchestrator: bool,
    pub max_connections: u32,
    pub advert: CapabilityAdvert,
    pub advert_interval: Duration,
    pub advert_ttl: Duration,
    pub summary_interval: Duration,
}

/// Questions the local API asks the running node.
#[derive(Debug)]
pub enum ApiQuery {
    Stats(oneshot::Sender<Value>),
    Nodes(oneshot::Sender<Value>),
    Metrics(oneshot::Sender<String>),
    /// Who provides a capability key (`cap/docker`, ...), asked of the DHT.
    Providers {
        key: String,
        reply: oneshot::Sender<Value>,
    },
}

/// A DHT provider lookup the API is waiting on.
#[derive(Debug)]
struct ProviderLookup {
    key: String,
    reply: oneshot::Sender<Value>,
    found: BTreeSet<PeerId>,
}

/// What we know of another peer at the transport level.
#[derive(Clone, Debug, Default)]
struct PeerEntry {
    addrs: BTreeSet<Multiaddr>,
    connections: u32,
    agent: Option<String>,
    /// Whether identify said it speaks direct messages (`None` until it told us).
    speaks_messages: Option<bool>,
    /// It subscribed to adverts before identify told us what it speaks.
    owes_adverts: bool,
}

#[derive(Clone, Debug)]
struct BootstrapState {
    peer: BootstrapAddr,
    connected: bool,
    backoff: Duration,
    next_dial: Option<Instant>,
    failures: u32,
}

/// What became of bytes from the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Verified and taken by the peer.
    Taken,
    /// Verified, but an advert older than the one held (replay or reordering).
    Stale,
    /// Failed the protocol's checks: malformed, forged, from the future...
    Rejected,
}

/// Up to a quarter more than `wait`, so peers that lost the same bootstrap
/// peer do not all come back at the same instant.
fn with_jitter(wait: Duration) -> Duration {
    let mut b = [0u8; 2];
    if getrandom::fill(&mut b).is_err() {
        return wait;
    }
    let frac = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 4.0;
    wait.mul_f64(1.0 + frac)
}

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Messages published while nobody was subscribed wait here for a subscriber.
const MAX_PENDING_PUBLISH: usize = 64;

#[derive(Clone, Debug, Default)]
struct GossipCounters {
    published: u64,
    published_bytes: u64,
    received: u64,
    received_bytes: u64,
    rejected: u64,
    direct_sent: u64,
    direct_received: u64,
    direct_failed: u64,
}

pub struct Node {
    swarm: Swarm<NodeBehaviour>,
    peer: Peer,
    me: NodeId,
    registry: libp2p::metrics::Registry,
    started: Instant,
    peers: HashMap<PeerId, PeerEntry>,
    /// The newest signed advert of each node (ours too), as it travelled:
    /// handed to peers that join so they need not wait for the next round.
    advert_envelopes: HashMap<NodeId, (u64, Vec<u8>)>,
    pending_publish: VecDeque<(Topic, Vec<u8>)>,
    bootstrap: Vec<BootstrapState>,
    provided: BTreeSet<String>,
    listen_addrs: Vec<Multiaddr>,
    gossip: GossipCounters,
    options: NodeOptions,
    provider_lookups: HashMap<kad::QueryId, ProviderLookup>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("me", &self.me).finish()
    }
}

fn now() -> Timestamp {
    Timestamp::now_wall()
}

impl Node {
    /// Builds the swarm and starts listening; errors name the address.
    pub fn new(key: &Keypair, options: NodeOptions) -> Result<Self, NetworkError> {
        let mut registry = libp2p::metrics::Registry::default();
        let lkey = key.to_libp2p();
        let gs = node_gossipsub(&lkey, &mut registry)?;
        let max = options.max_connections;
        let mut swarm = network::build_swarm(lkey, Some(&mut registry), |k| {
            NodeBehaviour::new(k, gs, max)
        })?;
        for t in TOPICS {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&network::topic(t))
                .map_err(|e| NetworkError::Gossipsub(e.to_string()))?;
        }
        for addr in &options.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| network::listen_error(addr, e))?;
        }
        let config = PeerConfig {
            orchestrator: options.orchestrator.then(OrchestratorConfig::default),
            provider: None,
            advert: options.advert.clone(),
            advert_ttl_ms: options.advert_ttl.as_millis() as u64,
            advert_interval_ms: options.advert_interval.as_millis() as u64,
            ..PeerConfig::default()
        };
        let bootstrap = options
            .bootstrap
            .iter()
            .map(|p| BootstrapState {
                peer: p.clone(),
                connected: false,
                backoff: BACKOFF_MIN,
                next_dial: Some(Instant::now()),
                failures: 0,
            })
            .collect();
        Ok(Node {
            swarm,
            peer: Peer::new(key.clone(), config),
            me: key.node_id(),
            registry,
            started: Instant::now(),
            peers: HashMap::new(),
            advert_envelopes: HashMap::new(),
            pending_publish: VecDeque::new(),
            bootstrap,
            provided: BTreeSet::new(),
            listen_addrs: Vec::new(),
            gossip: GossipCounters::default(),
            options,
            provider_lookups: HashMap::new(),
        })
    }

    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Waits for the first listen address, so a port in use is reported
    /// before the node claims to be up.
    pub async fn wait_listening(&mut self) -> Result<Vec<Multiaddr>, NetworkError> {
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        let mut settle: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => {
                    match ev {
                        SwarmEvent::ListenerClosed { addresses, reason: Err(e), .. } => {
                            let addr = addresses.first().cloned().unwrap_or_else(Multiaddr::empty);
                            return Err(network::listen_error(&addr, e));
                        }
                        SwarmEvent::ListenerError { error, .. } => {
                            return Err(NetworkError::Transport(error.to_string()));
                        }
                        other => {
                            let was_empty = self.listen_addrs.is_empty();
                            self.handle_swarm_event(other);
                            if was_empty && !self.listen_addrs.is_empty() {
                                settle = Some(Box::pin(tokio::time::sleep(Duration::from_millis(200))));
                            }
                        }
                    }
                }
                _ = async { if let Some(s) = settle.as_mut() { s.await } else { std::future::pending().await } } => {
                    return Ok(self.listen_addrs.clone());
                }
                _ = &mut deadline => {
                    return Err(NetworkError::Transport("no listen address came up within 10 s".into()));
                }
            }
        }
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(
        mut self,
        mut api: mpsc::Receiver<ApiQuery>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        self.peer.start(now());
        self.drain_actions();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut summary = tokio::time::interval(self.options.summary_interval);
        summary.tick().await;
        loop {
            let wait = self
                .peer
                .poll_timeout()
                .map_or(Duration::from_secs(3600), |t| {
                    Duration::from_millis(t.since(now()))
                });
            tokio::select! {
                ev = self.swarm.select_next_some() => self.handle_swarm_event(ev),
                _ = tokio::time::sleep(wait) => {
                    self.peer.handle_timeout(now());
                }
                Some(q) = api.recv() => self.answer(q),
                _ = tick.tick() => self.dial_bootstrap_peers(),
                _ = summary.tick() => self.log_summary(),
                _ = &mut shutdown => break,
            }
            self.drain_actions();
        }
        tracing::info!("node stopped");
    }

    fn drain_actions(&mut self) {
        let t = now();
        while let Some(action) = self.peer.poll_action(t) {
            match action {
                Action::Publish { topic, message } => {
                    let bytes = message.to_bytes();
                    if message.kind() == Kind::Advert {
                        if let Message::Advert(ad) = message.message() {
                            self.advert_envelopes
                                .insert(message.signer(), (ad.sequence, bytes.clone()));
                            self.update_provided(ad.clone());
                        }
                        // Only the newest advert is worth delivering late.
                        self.pending_publish.retain(|(t, _)| *t != Topic::Adverts);
                    }
                    self.publish(topic, bytes);
                }
                Action::Send { to, message } => match to.to_peer_id() {
                    Ok(peer) => {
                        self.gossip.direct_sent += 1;
                        self.swarm
                            .behaviour_mut()
                            .messages
                            .send_request(&peer, message.to_bytes());
                    }
                    Err(e) => {
                        tracing::warn!(to = %to.short(), error = %e, "cannot address a direct message")
                    }
                },
                Action::StoreReceipt(r) => {
                    tracing::info!(receipt = %r.id().to_hex(), "receipt to store (ledger arrives in a later release)");
                }
                Action::Execute(e) => {
                    tracing::info!(job = %e.job_id.to_hex(), "execution requested (adapters arrive in a later release)");
                }
                Action::Stop { job_id, reason } => {
                    tracing::info!(job = %job_id.to_hex(), ?reason, "stop requested");
                }
                Action::ServeOutput { to, request } => {
                    tracing::debug!(to = %to.short(), job = %request.job_id, "output fetch (served once jobs run here)");
                }
                Action::Notify(event) => tracing::info!(?event, "protocol event"),
            }
        }
    }

    fn publish(&mut self, topic: Topic, bytes: Vec<u8>) {
        let len = bytes.len() as u64;
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(network::topic(topic), bytes.clone())
        {
            Ok(_) => {
                self.gossip.published += 1;
                self.gossip.published_bytes += len;
            }
            Err(PublishError::NoPeersSubscribedToTopic) | Err(PublishError::AllQueuesFull(_)) => {
                tracing::debug!(
                    topic = topic.name(),
                    "no subscriber yet; holding the message"
                );
                if self.pending_publish.len() >= MAX_PENDING_PUBLISH {
                    self.pending_publish.pop_front();
                }
                self.pending_publish.push_back((topic, bytes));
            }
            Err(PublishError::Duplicate) => {}
            Err(e) => tracing::warn!(topic = topic.name(), error = %e, "publish failed"),
        }
    }

    fn retry_pending(&mut self, topic: Topic) {
        let (ready, keep): (Vec<_>, Vec<_>) = self
            .pending_publish
            .drain(..)
            .partition(|(t, _)| *t == topic);
        self.pending_publish = keep.into();
        for (t, bytes) in ready {
            self.publish(t, bytes);
        }
    }

    /// Starts providing DHT keys for new capabilities, stops for lost ones.
    fn update_provided(&mut self, advert: CapabilityAdvert) {
        let keys = capability_keys(&advert);
        if keys == self.provided {
            return;
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        for gone in self.provided.difference(&keys) {
            kad.stop_providing(&kad::RecordKey::new(gone));
        }
        for key in &keys {
            if let Err(e) = kad.start_providing(kad::RecordKey::new(key)) {
                tracing::warn!(key, error = %e, "cannot provide capability key");
            }
        }
        tracing::debug!(keys = ?keys, "providing capability keys");
        self.provided = keys;
    }

    /// Re-announces our keys once the DHT has peers to hold them.
    fn reprovide(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        for key in &self.provided {
            let _ = kad.start_providing(kad::RecordKey::new(key));
        }
    }

    fn dial_bootstrap_peers(&mut self) {
        let instant = Instant::now();
        for i in 0..self.bootstrap.len() {
            let due = {
                let b = &self.bootstrap[i];
                !b.connected && b.next_dial.is_some_and(|t| t <= instant)
            };
            if !due {
                continue;
            }
            let (peer_id, addr) = {
                let b = &mut self.bootstrap[i];
                b.next_dial = None;
                (b.peer.peer_id, b.peer.transport_addr())
            };
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer_id, addr.clone());
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer_id)
                .addresses(vec![addr])
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                self.bootstrap_failed(peer_id, &e.to_string());
            }
        }
    }

    fn bootstrap_failed(&mut self, peer_id: PeerId, error: &str) {
        for b in self
            .bootstrap
            .iter_mut()
            .filter(|b| b.peer.peer_id == peer_id)
        {
            if b.connected || b.next_dial.is_some() {
                continue;
            }
            b.failures += 1;
            let wait = with_jitter(b.backoff);
            b.next_dial = Some(Instant::now() + wait);
            b.backoff = (b.backoff * 2).min(BACKOFF_MAX);
            tracing::warn!(
                bootstrap = %b.peer,
                attempt = b.failures,
                retry_in_ms = wait.as_millis() as u64,
                error,
                "bootstrap peer unreachable; retrying with backoff"
            );
        }
    }

    fn handle_swarm_event(&mut self, ev: SwarmEvent<NodeBehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                let full = address.clone().with_p2p(self.peer_id()).unwrap_or(address);
                self.listen_addrs.push(full);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs
                    .retain(|a| !a.to_string().starts_with(&address.to_string()));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                let entry = self.peers.entry(peer_id).or_default();
                entry.connections = num_established.get();
                if endpoint.is_dialer() {
                    entry.addrs.insert(endpoint.get_remote_address().clone());
                }
                let mut joined_bootstrap = false;
                for b in self
                    .bootstrap
                    .iter_mut()
                    .filter(|b| b.peer.peer_id == peer_id)
                {
                    if !b.connected {
                        tracing::info!(bootstrap = %b.peer, "connected to bootstrap peer");
                        joined_bootstrap = true;
                    }
                    b.connected = true;
                    b.backoff = BACKOFF_MIN;
                    b.failures = 0;
                    b.next_dial = None;
                }
                if joined_bootstrap {
                    if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
                        tracing::debug!(error = %e, "kademlia bootstrap not started");
                    }
                    self.reprovide();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                if let Some(e) = self.peers.get_mut(&peer_id) {
                    e.connections = num_established;
                }
                if num_established == 0 {
                    tracing::debug!(%peer_id, ?cause, "peer disconnected");
                    if let Ok(node) = NodeId::from_peer_id(&peer_id) {
                        self.peer.peer_gone(now(), &node);
                    }
                    let mut lost = false;
                    for b in self
                        .bootstrap
                        .iter_mut()
                        .filter(|b| b.peer.peer_id == peer_id)
                    {
                        b.connected = false;
                        b.next_dial = Some(Instant::now() + b.backoff);
                        lost = true;
                    }
                    if lost {
                        tracing::warn!(%peer_id, "lost the bootstrap peer; will redial");
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                error,
                ..
            } => {
                if self.bootstrap.iter().any(|b| b.peer.peer_id == peer_id) {
                    self.bootstrap_failed(peer_id, &error.to_string());
                } else {
                    tracing::debug!(%peer_id, %error, "dial failed");
                }
            }
            SwarmEvent::Behaviour(ev) => self.handle_behaviour_event(ev),
            _ => {}
        }
    }

    fn handle_behaviour_event(&mut self, ev: NodeBehaviourEvent) {
        match ev {
            NodeBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let serves_kad = info.protocols.contains(&network::KAD_PROTOCOL);
                let speaks = info.protocols.contains(&network::MESSAGE_PROTOCOL);
                let entry = self.peers.entry(peer_id).or_default();
                entry.agent = Some(info.agent_version.clone());
                entry.speaks_messages = Some(speaks);
                let owed = std::mem::take(&mut entry.owes_adverts);
                for addr in info.listen_addrs {
                    entry.addrs.insert(addr.clone());
                    if serves_kad {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
                if owed && speaks {
                    self.share_adverts(peer_id);
                }
            }
            NodeBehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                self.gossip.received += 1;
                self.gossip.received_bytes += message.data.len() as u64;
                let verdict = match self.take_bytes(&message.data) {
                    Verdict::Taken => MessageAcceptance::Accept,
                    // Authentic but old news (a replayed or reordered
                    // advert): not forwarded, and nobody is penalised.
                    Verdict::Stale => MessageAcceptance::Ignore,
                    Verdict::Rejected => {
                        self.gossip.rejected += 1;
                        MessageAcceptance::Reject
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
            }
            NodeBehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic }) => {
                if let Some(t) = network::topic_of(&topic) {
                    self.retry_pending(t);
                    if t == Topic::Adverts {
                        let entry = self.peers.entry(peer_id).or_default();
                        match entry.speaks_messages {
                            Some(true) => self.share_adverts(peer_id),
                            Some(false) => {}
                            None => entry.owes_adverts = true,
                        }
                    }
                }
            }
            NodeBehaviourEvent::Messages(request_response::Event::Message {
                peer,
                message,
                ..
            }) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.gossip.direct_received += 1;
                    if self.take_bytes(&request) == Verdict::Rejected {
                        tracing::debug!(%peer, "rejected a direct message");
                    }
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .messages
                        .send_response(channel, Vec::new());
                }
                request_response::Message::Response { .. } => {}
            },
            NodeBehaviourEvent::Messages(request_response::Event::OutboundFailure {
                peer,
                error,
                ..
            }) => {
                self.gossip.direct_failed += 1;
                tracing::debug!(%peer, %error, "direct message not delivered");
            }
            NodeBehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::Bootstrap(Ok(r)),
                ..
            }) if r.num_remaining == 0 => {
                tracing::debug!("kademlia bootstrap finished");
            }
            NodeBehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                ..
            }) => {
                let done = match result {
                    Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                        if let Some(l) = self.provider_lookups.get_mut(&id) {
                            l.found.extend(providers);
                        }
                        step.last
                    }
                    Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => true,
                    Err(e) => {
                        tracing::debug!(error = %e, "provider lookup ended early");
                        true
                    }
                };
                if done && let Some(l) = self.provider_lookups.remove(&id) {
                    let providers: Vec<String> = l.found.iter().map(|p| p.to_string()).collect();
                    let _ = l
                        .reply
                        .send(json!({ "key": l.key, "providers": providers }));
                }
            }
            _ => {}
        }
    }

    /// Bytes from the network into the peer.
    fn take_bytes(&mut self, bytes: &[u8]) -> Verdict {
        let t = now();
        let stale_before: u64 = self.peer.stats().adverts_rejected.values().sum();
        match self.peer.handle_bytes(t, bytes) {
            Ok(()) => {
                let stale_after: u64 = self.peer.stats().adverts_rejected.values().sum();
                if stale_after > stale_before {
                    return Verdict::Stale;
                }
                self.remember_advert(bytes);
                Verdict::Taken
            }
            Err(rejection) => {
                tracing::warn!(reason = rejection.label(), %rejection, "rejected a message");
                Verdict::Rejected
            }
        }
    }

    /// Keeps the envelope of an advert that the table took as newest.
    fn remember_advert(&mut self, bytes: &[u8]) {
        let Ok(env) = Envelope::decode(bytes) else {
            return;
        };
        if env.kind != Kind::Advert {
            return;
        }
        let signer = env.signer;
        let Some(held) = self.peer.adverts().get(&signer) else {
            return;
        };
        let seq = held.sequence;
        if self
            .advert_envelopes
            .get(&signer)
            .is_some_and(|(s, _)| *s >= seq)
        {
            return;
        }
        // Only keep the bytes if they are the advert the table holds.
        if let Ok(signed) = env.verify()
            && let Message::Advert(ad) = signed.message()
            && ad.sequence == seq
        {
            self.advert_envelopes.insert(signer, (seq, bytes.to_vec()));
        }
    }

    /// Hands a newly subscribed peer the adverts we hold, so it sees the
    /// network at once instead of after the next advert round.
    fn share_adverts(&mut self, to: PeerId) {
        let t = now();
        let live: Vec<Vec<u8>> = self
            .advert_envelopes
            .iter()
            .filter(|(node, _)| {
                self.peer
                    .adverts()
                    .get(node)
                    .is_some_and(|a| a.expires_at > t)
            })
            .map(|(_, (_, b))| b.clone())
            .collect();
        for bytes in live {
            self.gossip.direct_sent += 1;
            self.swarm.behaviour_mut().messages.send_request(&to, bytes);
        }
    }

    fn log_summary(&self) {
        let jobs = self.peer.client().jobs().count();
        tracing::info!(
            peers = self.swarm.connected_peers().count(),
            adverts = self.peer.adverts().len(),
            jobs,
            rejected = self.peer.stats().rejected.values().sum::<u64>(),
            gossip_sent_bytes = self.gossip.published_bytes,
            "summary"
        );
    }

    fn answer(&mut self, q: ApiQuery) {
        match q {
            ApiQuery::Stats(tx) => {
                let _ = tx.send(self.stats_json());
            }
            ApiQuery::Nodes(tx) => {
                let _ = tx.send(self.nodes_json());
            }
            ApiQuery::Metrics(tx) => {
                let _ = tx.send(self.metrics_text());
            }
            ApiQuery::Providers { key, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&key));
                self.provider_lookups.insert(
                    id,
                    ProviderLookup {
                        key,
                        reply,
                        found: BTreeSet::new(),
                    },
                );
            }
        }
    }

    fn stats_json(&self) -> Value {
        let stats = self.peer.stats();
        let received: BTreeMap<&str, u64> =
            stats.received.iter().map(|(k, v)| (k.name(), *v)).collect();
        let g = &self.gossip;
        json!({
            "peer_id": self.peer_id().to_string(),
            "node_id": self.me.to_hex(),
            "listen_addrs": self.listen_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "uptime_secs": self.started.elapsed().as_secs(),
            "connected_peers": self.swarm.connected_peers().count(),
            "known_peers": self.peers.len(),
            "adverts": self.peer.adverts().len(),
            "jobs": self.peer.client().jobs().count(),
            "received": received,
            "rejected": stats.rejected,
            "adverts_rejected": stats.adverts_rejected,
            "gossip": {
                "published": g.published,
                "published_bytes": g.published_bytes,
                "received": g.received,
                "received_bytes": g.received_bytes,
                "rejected": g.rejected,
            },
            "direct": {
                "sent": g.direct_sent,
                "received": g.direct_received,
                "failed": g.direct_failed,
            },
            "bootstrap": self.bootstrap.iter().map(|b| json!({
                "addr": b.peer.to_string(),
                "connected": b.connected,
                "failures": b.failures,
            })).collect::<Vec<_>>(),
            "capability_keys": self.provided,
        })
    }

    fn nodes_json(&self) -> Value {
        let me = self.peer_id();
        let mut ids: BTreeSet<PeerId> = self.peers.keys().copied().collect();
        for (node, _) in self.peer.adverts().iter() {
            if let Ok(p) = node.to_peer_id() {
                ids.insert(p);
            }
        }
        ids.insert(me);
        let list: Vec<Value> = ids
            .into_iter()
            .map(|pid| {
                let node = NodeId::from_peer_id(&pid).ok();
                let advert = node.and_then(|n| self.peer.adverts().get(&n));
                let entry = self.peers.get(&pid);
                let addrs: Vec<String> = if pid == me {
                    self.listen_addrs.iter().map(|a| a.to_string()).collect()
                } else {
                    entry.map(|e| e.addrs.iter().map(|a| a.to_string()).collect()).unwrap_or_default()
                };
                json!({
                    "peer_id": pid.to_string(),
                    "node_id": node.map(|n| n.to_hex()),
                    "self": pid == me,
                    "connected": pid == me || entry.is_some_and(|e| e.connections > 0),
                    "agent": entry.and_then(|e| e.agent.clone()),
                    "gossip_score": (pid != me)
                        .then(|| self.swarm.behaviour().gossipsub.peer_score(&pid))
                        .flatten(),
                    "addrs": addrs,
                    "advert": advert,
                    "advert_received_at": node.and_then(|n| self.peer.adverts().received_at(&n)).map(|t| t.as_millis()),
                })
            })
            .collect();
        Value::Array(list)
    }

    fn metrics_text(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        let stats = self.peer.stats();
        out.push_str("# TYPE modchain_rejected_messages counter\n");
        for (reason, n) in &stats.rejected {
            out.push_str(&format!(
                "modchain_rejected_messages_total{{reason=\"{reason}\"}} {n}\n"
            ));
        }
        out.push_str("# TYPE modchain_adverts gauge\n");
        out.push_str(&format!("modchain_adverts {}\n", self.peer.adverts().len()));
        out.push_str("# TYPE modchain_connected_peers gauge\n");
        out.push_str(&format!(
            "modchain_connected_peers {}\n",
            self.swarm.connected_peers().count()
        ));
        out.push_str("# TYPE modchain_gossip_published_bytes counter\n");
        out.push_str(&format!(
            "modchain_gossip_published_bytes_total {}\n",
            self.gossip.published_bytes
        ));
        out.push_str("# EOF\n");
        out
    }
}
