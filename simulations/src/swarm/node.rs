//! One simulated machine of the libp2p engine: a real swarm with the node's
//! own behaviour, and the protocol's `Peer` driven from it the way
//! `node/src/node.rs` drives it (gossip and direct messages into
//! `handle_bytes` with the same accept / ignore / reject verdicts, actions
//! out to gossipsub and request-response, adverts asked of two peers on
//! joining and answered in bundles, DHT capability keys, bootstrap dialling
//! with backoff, a ledger of its own and reputation recomputed from it).
//! Adapters are modelled: an execution lasts a time drawn from the job's
//! class.

use super::link::{self, LinkTable};
use super::{Command, Observation};
use crate::population;
use crate::rng::{Purpose, Stream};
use crate::scenario::{Behaviour, DurationDist};
use libp2p::futures::StreamExt;
use libp2p::gossipsub;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, request_response};
use modchain_bootstrap::behaviour::timings::{REPUTATION_DEBOUNCE, REPUTATION_INTERVAL};
use modchain_bootstrap::behaviour::{NodeBehaviour, NodeBehaviourEvent, capability_keys};
use modchain_bootstrap::driver::{
    self, AdvertEnvelopes, AdvertHandoff, AdvertSyncs, BootstrapPeers, Direct, PendingPublish,
    ProvidedKeys, Sent, SyncAnswer,
};
use modchain_bootstrap::network::{self, NetworkError};
use modchain_protocol::action::{Action, StopReason, Topic};
use modchain_protocol::digest::{Digest, JobId, ReceiptId};
use modchain_protocol::envelope::{Envelope, Kind, Message, Signed};
use modchain_protocol::identity::{Keypair, NodeId};
use modchain_protocol::job::{ExitStatus, JobState};
use modchain_protocol::orchestrator::ReputationTable;
use modchain_protocol::peer::{Peer, PeerConfig};
use modchain_protocol::reputation::{TrustConfig, TrustGraph};
use modchain_protocol::time::Timestamp;
use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// Requests for adverts sent by peers that joined (part of `direct_sent`).
    pub advert_syncs: AtomicU64,
    /// Bundles sent in answer (part of `direct_sent`).
    pub advert_bundles: AtomicU64,
    /// Adverts handed over in those bundles.
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
    /// Peers that handed us adverts by direct message.
    pub advert_senders: usize,
    /// Direct messages that carried adverts to us (bundles, or adverts one
    /// by one).
    pub advert_messages_received: u64,
}

/// What we know of another peer at the transport level.
#[derive(Clone, Debug, Default)]
struct PeerEntry {
    adverts: AdvertHandoff,
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
    bootstrap: BootstrapPeers,
    peers: HashMap<PeerId, PeerEntry>,
    advert_envelopes: AdvertEnvelopes,
    advert_syncs: AdvertSyncs,
    pending_publish: PendingPublish,
    provided: ProvidedKeys,
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
    /// Peers that handed us adverts directly, and in how many messages.
    advert_senders: HashSet<PeerId>,
    advert_messages_received: u64,
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
            bootstrap: BootstrapPeers::default(),
            peers: HashMap::new(),
            advert_envelopes: AdvertEnvelopes::new(),
            advert_syncs: AdvertSyncs::new(),
            pending_publish: PendingPublish::new(),
            provided: ProvidedKeys::new(),
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
            advert_senders: HashSet::new(),
            advert_messages_received: 0,
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
            advert_senders: self.advert_senders.len(),
            advert_messages_received: self.advert_messages_received,
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Join { bootstrap } => {
                let me = *self.swarm.local_peer_id();
                self.bootstrap = BootstrapPeers::new(
                    bootstrap.into_iter().filter(|(p, _)| *p != me),
                    Instant::now(),
                );
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
                        if let Some(ad) = self.advert_envelopes.keep_own(&message, &bytes) {
                            let kad = &mut self.swarm.behaviour_mut().kad;
                            // A key the store refuses is not worth reporting here.
                            self.provided.update(kad, capability_keys(ad));
                        }
                        self.pending_publish.discard(Topic::Adverts);
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
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        self.pending_publish.publish(gossipsub, topic, bytes);
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
        let messages = &mut self.swarm.behaviour_mut().messages;
        if let Ok(Sent::Request) =
            driver::send_direct(&mut self.peer, messages, self.me, now(), to, message)
        {
            self.counters.direct_sent.fetch_add(1, Ordering::Relaxed);
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
        // Up to a quarter more, as the node does, so peers that failed
        // together do not all come back at once.
        let rng = &mut self.backoff_rng;
        self.bootstrap
            .dial_due(&mut self.swarm, Instant::now(), || rng.unit());
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
                // As the node: one DHT walk per (re)join, not per bootstrap
                // peer; a (re)join asks two ready peers for adverts and
                // advertises again soon (a peer not started yet has nothing
                // to repeat).
                if self.bootstrap.connected(&peer_id).first {
                    self.advert_syncs.rejoined();
                    self.peer.rejoined(now());
                    let kad = &mut self.swarm.behaviour_mut().kad;
                    let _ = driver::walk_dht(kad, &self.provided);
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
                if let Some(e) = self.peers.get_mut(&peer_id) {
                    e.adverts.disconnected();
                }
                if self.started
                    && let Ok(node) = NodeId::from_peer_id(&peer_id)
                {
                    self.peer.peer_gone(now(), &node);
                }
                self.bootstrap.disconnected(&peer_id, Instant::now());
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                ..
            } => {
                let rng = &mut self.backoff_rng;
                self.bootstrap
                    .failed(&peer_id, Instant::now(), || rng.unit());
            }
            SwarmEvent::Behaviour(ev) => self.handle_behaviour_event(ev),
            _ => {}
        }
    }

    fn handle_behaviour_event(&mut self, ev: NodeBehaviourEvent) {
        match ev {
            NodeBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let handoff = &mut self.peers.entry(peer_id).or_default().adverts;
                let kad = &mut self.swarm.behaviour_mut().kad;
                if driver::identified(kad, handoff, peer_id, &info) {
                    self.advert_peer_ready(peer_id);
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
                let verdict = self.take_bytes(&message.data);
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                verdict.report(gossipsub, &message_id, &propagation_source);
            }
            NodeBehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic }) => {
                if let Some(t) = network::topic_of(&topic) {
                    let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                    self.pending_publish.retry(gossipsub, t);
                    if t == Topic::Adverts
                        && self.peers.entry(peer_id).or_default().adverts.subscribed()
                    {
                        self.advert_peer_ready(peer_id);
                    }
                }
            }
            NodeBehaviourEvent::Messages(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                // Who hands this peer adverts directly, and how often, for
                // its summary: bundles, or adverts one by one as peers did
                // before bundles.
                if Envelope::decode(&request)
                    .is_ok_and(|e| matches!(e.kind, Kind::Advert | Kind::AdvertBundle))
                {
                    self.advert_senders.insert(peer);
                    self.advert_messages_received += 1;
                }
                self.take_direct(peer, &request);
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
    fn take_bytes(&mut self, bytes: &[u8]) -> driver::Verdict {
        driver::take_bytes(&mut self.peer, &mut self.advert_envelopes, now(), bytes)
    }

    /// A direct message into the peer, as the node takes it: an advert
    /// sync is answered, each advert of a bundle taken as if gossiped.
    fn take_direct(&mut self, from: PeerId, bytes: &[u8]) {
        let t = now();
        let Direct::SyncAsked(sync) =
            driver::take_direct(&mut self.peer, &mut self.advert_envelopes, t, bytes)
        else {
            return;
        };
        let handoff = &mut self.peers.entry(from).or_default().adverts;
        let answer = driver::answer_sync(
            handoff,
            &self.peer,
            &self.advert_envelopes,
            &mut self.swarm.behaviour_mut().messages,
            from,
            t,
            Instant::now(),
            &sync,
        );
        if let SyncAnswer::Sent { bundles, adverts } = answer {
            let c = &self.counters;
            c.direct_sent.fetch_add(bundles, Ordering::Relaxed);
            c.advert_bundles.fetch_add(bundles, Ordering::Relaxed);
            c.adverts_shared.fetch_add(adverts, Ordering::Relaxed);
        }
    }

    /// A peer is ready: ask it for its adverts if it is one of the first
    /// two since we (re)joined, as the node does.
    fn advert_peer_ready(&mut self, to: PeerId) {
        if !self.advert_syncs.should_ask(to) {
            return;
        }
        driver::ask_for_adverts(
            &self.peer,
            &self.advert_envelopes,
            &mut self.swarm.behaviour_mut().messages,
            to,
            now(),
        );
        self.counters.direct_sent.fetch_add(1, Ordering::Relaxed);
        self.counters.advert_syncs.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
