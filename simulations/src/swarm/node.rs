//! One simulated machine of the libp2p engine: a real swarm with the node's
//! own behaviour, and the protocol's `Peer` driven from it the way
//! `node/src/node.rs` drives it (gossip and direct messages into
//! `handle_bytes` with the same accept / ignore / reject verdicts, actions
//! out to gossipsub and request-response, adverts handed to peers that
//! subscribe, DHT capability keys, bootstrap dialling with backoff, a ledger
//! of its own and reputation recomputed from it). Adapters are modelled:
//! an execution lasts a time drawn from the job's class.

use super::link::{self, LinkTable};
use super::{Command, Observation};
use crate::population;
use crate::rng::{Purpose, Stream};
use crate::scenario::{Behaviour, DurationDist};
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance, PublishError};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad, request_response};
use modchain_bootstrap::behaviour::timings::{
    BACKOFF_MAX, BACKOFF_MIN, MAX_PENDING_PUBLISH, REPUTATION_DEBOUNCE, REPUTATION_INTERVAL,
};
use modchain_bootstrap::behaviour::{NodeBehaviour, NodeBehaviourEvent, capability_keys};
use modchain_bootstrap::network::{self, NetworkError};
use modchain_protocol::action::{Action, StopReason, Topic};
use modchain_protocol::advert::CapabilityAdvert;
use modchain_protocol::digest::{Digest, JobId, ReceiptId};
use modchain_protocol::envelope::{Envelope, Kind, Message, Signed};
use modchain_protocol::identity::{Keypair, NodeId};
use modchain_protocol::job::{ExitStatus, JobState};
use modchain_protocol::orchestrator::ReputationTable;
use modchain_protocol::peer::{Peer, PeerConfig};
use modchain_protocol::reputation::{TrustConfig, TrustGraph};
use modchain_protocol::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

const TICK: Duration = Duration::from_millis(500);
/// The node's default `max_connections` (node/src/config.rs).
const MAX_CONNECTIONS: u32 = 256;
/// How long a modelled adapter takes to stop a job once asked (as in the model engine).
const STOP_DELAY: Duration = Duration::from_millis(100);

/// Counters every peer adds to, read by the coordinator for the time series.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Gossip messages handed to the application (first copies only).
    pub gossip_delivered: AtomicU64,
    pub direct_sent: AtomicU64,
    pub direct_failed: AtomicU64,
    pub receipts_published: AtomicU64,
    pub executions: AtomicU64,
    pub withheld: AtomicU64,
    /// Adverts handed directly to peers that subscribed (part of `direct_sent`).
    pub adverts_shared: AtomicU64,
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
}

/// Everything one machine is built from.
#[derive(Debug)]
pub struct NodeSetup {
    pub index: u32,
    pub key: Keypair,
    pub config: PeerConfig,
    /// How this provider misbehaves, if it does (the scenario's `byzantine`).
    pub byzantine: Option<Behaviour>,
    /// Pre-trusted nodes for reputation (the bootstrap peers).
    pub pretrusted: Vec<NodeId>,
    pub seed: u64,
    /// Execution time distribution of each job class.
    pub durations: Arc<Vec<DurationDist>>,
    /// Job → class, written by the client that submitted it.
    pub job_classes: Arc<Mutex<HashMap<JobId, usize>>>,
    pub table: Arc<LinkTable>,
    pub counters: Arc<LiveCounters>,
    /// Mesh peers on the adverts topic at which the peer counts as joined.
    pub mesh_target: usize,
}

/// What a machine reports when it stops.
#[derive(Clone, Debug, Default)]
pub struct NodeSummary {
    pub rejected: BTreeMap<&'static str, u64>,
    pub mesh_degree: usize,
    pub connected: usize,
    pub receipts_stored: u64,
    pub adverts_held: usize,
}

#[derive(Clone, Debug)]
struct BootstrapState {
    peer_id: PeerId,
    addr: Multiaddr,
    connected: bool,
    backoff: Duration,
    next_dial: Option<Instant>,
}

/// What we know of another peer at the transport level.
#[derive(Clone, Debug, Default)]
struct PeerEntry {
    speaks_messages: Option<bool>,
    owes_adverts: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Taken,
    Stale,
    Rejected,
}

/// A modelled execution that ends at its due time.
#[derive(Debug)]
struct Running {
    job: JobId,
    exit: ExitStatus,
    wall_ms: u64,
    garbage: bool,
}

pub struct LiveNode {
    index: u32,
    swarm: Swarm<NodeBehaviour>,
    peer: Peer,
    me: NodeId,
    byzantine: Option<Behaviour>,
    started: bool,
    start_at: Option<Instant>,
    bootstrap: Vec<BootstrapState>,
    peers: HashMap<PeerId, PeerEntry>,
    advert_envelopes: HashMap<NodeId, (u64, Vec<u8>)>,
    pending_publish: VecDeque<(Topic, Vec<u8>)>,
    provided: BTreeSet<String>,
    running: BTreeMap<(Instant, u64), Running>,
    running_seq: u64,
    exec_rng: Stream,
    backoff_rng: Stream,
    durations: Arc<Vec<DurationDist>>,
    job_classes: Arc<Mutex<HashMap<JobId, usize>>>,
    receipts: HashSet<ReceiptId>,
    trust_graph: TrustGraph,
    pretrusted: Vec<NodeId>,
    reputation_due: Option<Instant>,
    last_status: Option<(Vec<NodeId>, usize)>,
    mesh_target: usize,
    mesh_ready: bool,
    dht_settled: bool,
    counters: Arc<LiveCounters>,
    out: mpsc::UnboundedSender<Observation>,
}

impl std::fmt::Debug for LiveNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveNode")
            .field("index", &self.index)
            .field("me", &self.me)
            .finish()
    }
}

fn now() -> Timestamp {
    Timestamp::now_wall()
}

impl LiveNode {
    /// Builds the swarm (memory transport with latency, noise, yamux, the
    /// node's behaviour) and starts listening on a fresh memory port.
    pub fn new(
        setup: NodeSetup,
        out: mpsc::UnboundedSender<Observation>,
    ) -> Result<Self, NetworkError> {
        let NodeSetup {
            index,
            key,
            config,
            byzantine,
            pretrusted,
            seed,
            durations,
            job_classes,
            table,
            counters,
            mesh_target,
        } = setup;
        let lkey = key.to_libp2p();
        let transport = link::transport(index, &lkey, table)
            .map_err(|e| NetworkError::Transport(e.to_string()))?;
        let gs = network::gossipsub(&lkey)?;
        let behaviour = NodeBehaviour::new(&lkey, gs, MAX_CONNECTIONS);
        let mut swarm = Swarm::new(
            transport,
            behaviour,
            lkey.public().to_peer_id(),
            libp2p::swarm::Config::with_tokio_executor()
                .with_idle_connection_timeout(network::IDLE_CONNECTION_TIMEOUT),
        );
        let listen: Multiaddr = "/memory/0"
            .parse()
            .map_err(|e: libp2p::multiaddr::Error| NetworkError::Transport(e.to_string()))?;
        network::join(&mut swarm, |s| &mut s.behaviour_mut().gossipsub, &[listen])?;
        let stream_seed = seed ^ (u64::from(index) << 20);
        Ok(LiveNode {
            index,
            swarm,
            peer: Peer::new(key.clone(), config),
            me: key.node_id(),
            byzantine,
            started: false,
            start_at: None,
            bootstrap: Vec::new(),
            peers: HashMap::new(),
            advert_envelopes: HashMap::new(),
            pending_publish: VecDeque::new(),
            provided: BTreeSet::new(),
            running: BTreeMap::new(),
            running_seq: 0,
            exec_rng: Stream::new(stream_seed, Purpose::Execution),
            backoff_rng: Stream::new(stream_seed, Purpose::Churn),
            durations,
            job_classes,
            receipts: HashSet::new(),
            trust_graph: TrustGraph::new(),
            pretrusted,
            reputation_due: None,
            last_status: None,
            mesh_target,
            mesh_ready: false,
            dht_settled: false,
            counters,
            out,
        })
    }

    fn observe(&self, o: Observation) {
        // The coordinator stops listening only once it told us to stop.
        let _ = self.out.send(o);
    }

    /// Runs until told to stop; returns what the coordinator summarises.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) -> NodeSummary {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reputation_tick = tokio::time::interval(REPUTATION_INTERVAL);
        reputation_tick.tick().await;
        loop {
            let timer = self
                .started
                .then(|| self.peer.poll_timeout())
                .flatten()
                .map(|t| Instant::now() + Duration::from_millis(t.since(now())));
            let next_finish = self.running.keys().next().map(|(at, _)| *at);
            tokio::select! {
                ev = self.swarm.select_next_some() => self.handle_swarm_event(ev),
                _ = sleep_until(timer) => self.peer.handle_timeout(now()),
                _ = sleep_until(next_finish) => self.finish_due(),
                _ = sleep_until(self.start_at) => {
                    self.start_at = None;
                    self.started = true;
                    self.recompute_reputation();
                    self.peer.start(now());
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop) | None => break,
                    Some(c) => self.command(c),
                },
                _ = tick.tick() => self.on_tick(),
                _ = reputation_tick.tick() => {
                    if self.started {
                        self.recompute_reputation();
                    }
                }
            }
            self.drain_actions();
        }
        let topic = network::topic(Topic::Adverts).hash();
        NodeSummary {
            rejected: self.peer.stats().rejected.clone(),
            mesh_degree: self.swarm.behaviour().gossipsub.mesh_peers(&topic).count(),
            connected: self.swarm.connected_peers().count(),
            receipts_stored: self.receipts.len() as u64,
            adverts_held: self.peer.adverts().len(),
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Join { bootstrap } => {
                self.bootstrap = bootstrap
                    .into_iter()
                    .filter(|(p, _)| p != self.swarm.local_peer_id())
                    .map(|(peer_id, addr)| BootstrapState {
                        peer_id,
                        addr,
                        connected: false,
                        backoff: BACKOFF_MIN,
                        next_dial: Some(Instant::now()),
                    })
                    .collect();
                self.dial_bootstrap_peers();
            }
            Command::Start { at } => self.start_at = Some(at),
            Command::Submit { class, spec } => {
                let at = Instant::now();
                let result = self.peer.submit(now(), spec);
                if let Ok(id) = &result
                    && let Ok(mut classes) = self.job_classes.lock()
                {
                    // Before any action is drained, so the provider that
                    // runs it can always find its class.
                    classes.insert(*id, class);
                }
                self.observe(Observation::Submitted {
                    peer: self.index,
                    at,
                    class,
                    result: result.map_err(|e| e.to_string()),
                });
            }
            Command::Stop => {}
        }
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
                        self.pending_publish.retain(|(t, _)| *t != Topic::Adverts);
                        self.observe(Observation::AdvertPublished {
                            peer: self.index,
                            id: Digest::of(&bytes).0,
                            at: Instant::now(),
                        });
                    } else {
                        self.counters
                            .receipts_published
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    self.publish(topic, bytes);
                }
                Action::Send { to, message } => self.send_direct(to, message),
                Action::StoreReceipt(r) => {
                    if self.receipts.insert(r.receipt.id()) {
                        self.trust_graph.add(&r.receipt);
                        if self.reputation_due.is_none() {
                            self.reputation_due = Some(Instant::now() + REPUTATION_DEBOUNCE);
                        }
                        self.observe(Observation::Receipt {
                            receipt: Box::new(r),
                        });
                    }
                }
                Action::Execute(e) => self.execute(e.job_id),
                Action::Stop { job_id, reason } => {
                    let exit = match reason {
                        StopReason::Cancelled => ExitStatus::Cancelled,
                        StopReason::TimedOut => ExitStatus::TimedOut,
                    };
                    self.schedule(
                        STOP_DELAY,
                        Running {
                            job: job_id,
                            exit,
                            wall_ms: 0,
                            garbage: false,
                        },
                    );
                }
                // No output files are simulated.
                Action::ServeOutput { .. } => {}
                Action::Notify(event) => self.observe(Observation::Event {
                    peer: self.index,
                    at: Instant::now(),
                    event,
                }),
            }
        }
    }

    fn publish(&mut self, topic: Topic, bytes: Vec<u8>) {
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(network::topic(topic), bytes.clone())
        {
            Ok(_) | Err(PublishError::Duplicate) => {}
            Err(PublishError::NoPeersSubscribedToTopic) | Err(PublishError::AllQueuesFull(_)) => {
                if self.pending_publish.len() >= MAX_PENDING_PUBLISH {
                    self.pending_publish.pop_front();
                }
                self.pending_publish.push_back((topic, bytes));
            }
            // Anything else (a message too large) has no cure by retrying.
            Err(_) => {}
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
            let _ = kad.start_providing(kad::RecordKey::new(key));
        }
        self.provided = keys;
    }

    fn reprovide(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        for key in &self.provided {
            let _ = kad.start_providing(kad::RecordKey::new(key));
        }
    }

    fn send_direct(&mut self, to: NodeId, message: Signed) {
        if matches!(
            self.byzantine,
            Some(Behaviour::NeverDeliver | Behaviour::Underbid)
        ) {
            // As in the model engine: a provider that walks away from its
            // jobs never reports them running nor sends their result.
            let quiet = match message.message() {
                Message::Result(_) => true,
                Message::Status(s) => s.state == JobState::Running,
                _ => false,
            };
            if quiet {
                self.counters.withheld.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        if to == self.me {
            self.peer.handle_signed(now(), message);
            return;
        }
        if let Ok(peer) = to.to_peer_id() {
            self.counters.direct_sent.fetch_add(1, Ordering::Relaxed);
            self.swarm
                .behaviour_mut()
                .messages
                .send_request(&peer, message.to_bytes());
        }
    }

    fn execute(&mut self, job: JobId) {
        self.counters.executions.fetch_add(1, Ordering::Relaxed);
        let class = self
            .job_classes
            .lock()
            .ok()
            .and_then(|c| c.get(&job).copied())
            .unwrap_or(0);
        let Some(dist) = self.durations.get(class) else {
            return;
        };
        let wall_ms = population::draw(&mut self.exec_rng, dist).max(1);
        let wrong = self.byzantine == Some(Behaviour::WrongResult);
        self.schedule(
            Duration::from_millis(wall_ms),
            Running {
                job,
                exit: ExitStatus::Exited(i32::from(wrong)),
                wall_ms,
                garbage: wrong,
            },
        );
    }

    fn schedule(&mut self, after: Duration, run: Running) {
        self.running_seq += 1;
        self.running
            .insert((Instant::now() + after, self.running_seq), run);
    }

    fn finish_due(&mut self) {
        let instant = Instant::now();
        while let Some(entry) = self.running.first_entry() {
            if entry.key().0 > instant {
                break;
            }
            let run = entry.remove();
            let report = population::execution_report(run.exit, run.wall_ms, run.garbage);
            self.peer.execution_finished(now(), run.job, report);
        }
    }

    fn recompute_reputation(&mut self) {
        self.reputation_due = None;
        let trust = self
            .trust_graph
            .compute(&self.pretrusted, &TrustConfig::default());
        let table: ReputationTable = trust
            .iter()
            .map(|(n, _)| (n, trust.reputation(&n)))
            .collect();
        self.peer.set_reputation(table);
    }

    fn on_tick(&mut self) {
        self.dial_bootstrap_peers();
        let instant = Instant::now();
        if self.started && self.reputation_due.is_some_and(|t| t <= instant) {
            self.recompute_reputation();
        }
        if !self.dht_settled {
            // Joined: the gossip mesh is up. Settled: Kademlia has also
            // finished its bootstrap lookups, which dial most of a small
            // network and load every peer while they last.
            let topic = network::topic(Topic::Adverts).hash();
            let behaviour = self.swarm.behaviour_mut();
            let mesh = behaviour.gossipsub.mesh_peers(&topic).count();
            let lookups = behaviour.kad.iter_queries().count();
            if !self.mesh_ready && mesh >= self.mesh_target {
                self.mesh_ready = true;
                self.observe(Observation::MeshReady { peer: self.index });
            }
            if self.mesh_ready && lookups == 0 {
                self.dht_settled = true;
                self.observe(Observation::DhtSettled { peer: self.index });
            }
        }
        if self.started {
            let elected = self.peer.elected(now());
            let active = self.peer.orchestrator().map_or(0, |o| o.active_jobs());
            let status = (elected, active);
            if self.last_status.as_ref() != Some(&status) {
                self.observe(Observation::Status {
                    peer: self.index,
                    elected: status.0.clone(),
                    active_jobs: status.1,
                });
                self.last_status = Some(status);
            }
        }
    }

    fn dial_bootstrap_peers(&mut self) {
        let instant = Instant::now();
        for i in 0..self.bootstrap.len() {
            let b = &mut self.bootstrap[i];
            if b.connected || b.next_dial.is_none_or(|t| t > instant) {
                continue;
            }
            b.next_dial = None;
            let (peer_id, addr) = (b.peer_id, b.addr.clone());
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer_id, addr.clone());
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer_id)
                .addresses(vec![addr])
                .build();
            if self.swarm.dial(opts).is_err() {
                self.bootstrap_failed(peer_id);
            }
        }
    }

    fn bootstrap_failed(&mut self, peer_id: PeerId) {
        for i in 0..self.bootstrap.len() {
            let b = &self.bootstrap[i];
            if b.peer_id != peer_id || b.connected || b.next_dial.is_some() {
                continue;
            }
            // Up to a quarter more, as the node does, so peers that failed
            // together do not all come back at once.
            let wait = b.backoff.mul_f64(1.0 + self.backoff_rng.unit() / 4.0);
            let b = &mut self.bootstrap[i];
            b.next_dial = Some(Instant::now() + wait);
            b.backoff = (b.backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn handle_swarm_event(&mut self, ev: SwarmEvent<NodeBehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.observe(Observation::Listening {
                    peer: self.index,
                    peer_id: *self.swarm.local_peer_id(),
                    addr: address,
                });
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.counters
                    .connections_opened
                    .fetch_add(1, Ordering::Relaxed);
                self.peers.entry(peer_id).or_default();
                // As the node: one DHT walk per (re)join, not per bootstrap peer.
                let was_joined = self.bootstrap.iter().any(|b| b.connected);
                let mut joined_bootstrap = false;
                for b in self.bootstrap.iter_mut().filter(|b| b.peer_id == peer_id) {
                    joined_bootstrap |= !b.connected;
                    b.connected = true;
                    b.backoff = BACKOFF_MIN;
                    b.next_dial = None;
                }
                if joined_bootstrap && !was_joined {
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    self.reprovide();
                }
            }
            SwarmEvent::ConnectionClosed {
                num_established, ..
            } if num_established > 0 => {
                self.counters
                    .connections_closed
                    .fetch_add(1, Ordering::Relaxed);
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } => {
                self.counters
                    .connections_closed
                    .fetch_add(1, Ordering::Relaxed);
                if self.started
                    && let Ok(node) = NodeId::from_peer_id(&peer_id)
                {
                    self.peer.peer_gone(now(), &node);
                }
                for b in self.bootstrap.iter_mut().filter(|b| b.peer_id == peer_id) {
                    b.connected = false;
                    b.next_dial = Some(Instant::now() + b.backoff);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                ..
            } => self.bootstrap_failed(peer_id),
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
                entry.speaks_messages = Some(speaks);
                let owed = std::mem::take(&mut entry.owes_adverts);
                if serves_kad {
                    for addr in info.listen_addrs {
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
                let at = Instant::now();
                self.counters
                    .gossip_delivered
                    .fetch_add(1, Ordering::Relaxed);
                if network::topic_of(&message.topic) == Some(Topic::Adverts) {
                    self.observe(Observation::AdvertArrived {
                        peer: self.index,
                        id: Digest::of(&message.data).0,
                        at,
                    });
                }
                let verdict = match self.take_bytes(&message.data) {
                    Verdict::Taken => MessageAcceptance::Accept,
                    Verdict::Stale => MessageAcceptance::Ignore,
                    Verdict::Rejected => MessageAcceptance::Reject,
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
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                let _ = self.take_bytes(&request);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .messages
                    .send_response(channel, Vec::new());
            }
            NodeBehaviourEvent::Messages(request_response::Event::OutboundFailure { .. }) => {
                self.counters.direct_failed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Bytes from the network into the peer, with the node's verdict.
    fn take_bytes(&mut self, bytes: &[u8]) -> Verdict {
        let stale_before: u64 = self.peer.stats().adverts_rejected.values().sum();
        match self.peer.handle_bytes(now(), bytes) {
            Ok(()) => {
                let stale_after: u64 = self.peer.stats().adverts_rejected.values().sum();
                if stale_after > stale_before {
                    return Verdict::Stale;
                }
                self.remember_advert(bytes);
                Verdict::Taken
            }
            Err(_) => Verdict::Rejected,
        }
    }

    /// Keeps the envelope of an advert the table took as newest, to hand
    /// to peers that join.
    fn remember_advert(&mut self, bytes: &[u8]) {
        let Ok(env) = Envelope::decode(bytes) else {
            return;
        };
        if env.kind != Kind::Advert {
            return;
        }
        let signer = env.signer;
        let Some(seq) = self.peer.adverts().get(&signer).map(|a| a.sequence) else {
            return;
        };
        if self
            .advert_envelopes
            .get(&signer)
            .is_some_and(|(s, _)| *s >= seq)
        {
            return;
        }
        if let Ok(signed) = env.verify()
            && let Message::Advert(ad) = signed.message()
            && ad.sequence == seq
        {
            self.advert_envelopes.insert(signer, (seq, bytes.to_vec()));
        }
    }

    /// Hands a newly subscribed peer the adverts we hold, as the node does.
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
            self.counters.direct_sent.fetch_add(1, Ordering::Relaxed);
            self.counters.adverts_shared.fetch_add(1, Ordering::Relaxed);
            self.swarm.behaviour_mut().messages.send_request(&to, bytes);
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
