//! One simulated machine of the libp2p engine: a real swarm with the node's
//! own behaviour and the protocol's `Peer`, run by the node's own
//! `SwarmDriver` (gossip and direct messages in with the same verdicts,
//! actions out to gossipsub and request-response, adverts asked of two peers
//! on joining and answered in bundles, DHT capability keys, bootstrap
//! dialling with backoff). Around it, what only the simulator has: modelled
//! adapters (an execution lasts a time drawn from the job's class), the
//! scenario's Byzantine behaviours (a send filter on the driver), a ledger
//! of its own with reputation recomputed from it, and the coordinator's
//! counters and observations, fed from the driver's events.

use super::link::{self, LinkTable};
use super::{Command, Observation};
use crate::population;
use crate::rng::{Purpose, Stream};
use crate::scenario::{Behaviour, DurationDist};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use modchain_net::behaviour::timings::{REPUTATION_DEBOUNCE, REPUTATION_INTERVAL};
use modchain_net::behaviour::{NodeBehaviour, NodeBehaviourEvent};
use modchain_net::driver::{BootstrapPeers, Sent, SyncAnswer};
use modchain_net::wire::{self, NetworkError};
use modchain_net::{DirectOutcome, DriverEvent, SwarmDriver};
use modchain_protocol::{
    Action, ExitStatus, JobId, JobState, Keypair, Kind, Message, NodeId, Peer, PeerConfig,
    ReceiptId, ReputationTable, Signed, StopReason, Timestamp, Topic, TrustConfig, TrustGraph,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

const TICK: Duration = Duration::from_millis(500);
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
    /// The swarm and the protocol peer, driven exactly as a node drives them.
    net: SwarmDriver,
    me: NodeId,
    byzantine: Option<Behaviour>,
    started: bool,
    start_at: Option<Instant>,
    running: BTreeMap<(Instant, u64), Running>,
    running_seq: u64,
    exec_rng: Stream,
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
        let gs = wire::gossipsub(&lkey)?;
        let behaviour = NodeBehaviour::new(
            &lkey,
            &wire::agent_string(concat!("modchain-sim/", env!("CARGO_PKG_VERSION"))),
            gs,
            wire::DEFAULT_MAX_CONNECTIONS,
        );
        let mut swarm = Swarm::new(
            transport,
            behaviour,
            lkey.public().to_peer_id(),
            libp2p::swarm::Config::with_tokio_executor()
                .with_idle_connection_timeout(wire::IDLE_CONNECTION_TIMEOUT),
        );
        let listen: Multiaddr = "/memory/0"
            .parse()
            .map_err(|e: libp2p::multiaddr::Error| NetworkError::Transport(e.to_string()))?;
        wire::join(&mut swarm, |s| &mut s.behaviour_mut().gossipsub, &[listen])?;
        let stream_seed = seed ^ (u64::from(index) << 20);
        // Up to a quarter more on each backoff, as the node does, so peers
        // that failed together do not all come back at once; drawn from the
        // run's seed.
        let mut backoff_rng = Stream::new(stream_seed, Purpose::Churn);
        let mut net = SwarmDriver::new(
            swarm,
            Peer::new(key.clone(), config),
            BootstrapPeers::default(),
            Box::new(move || backoff_rng.unit()),
        );
        if matches!(
            byzantine,
            Some(Behaviour::NeverDeliver | Behaviour::Underbid)
        ) {
            net.set_send_filter(Box::new(|_, message| !walks_away_from(message)));
        }
        Ok(LiveNode {
            index,
            net,
            me: key.node_id(),
            byzantine,
            started: false,
            start_at: None,
            running: BTreeMap::new(),
            running_seq: 0,
            exec_rng: Stream::new(stream_seed, Purpose::Execution),
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
                .then(|| self.net.peer().poll_timeout())
                .flatten()
                .map(|t| Instant::now() + Duration::from_millis(t.since(now())));
            let next_finish = self.running.keys().next().map(|(at, _)| *at);
            tokio::select! {
                ev = self.net.next_swarm_event() => self.handle_swarm_event(ev),
                _ = sleep_until(timer) => self.net.peer_mut().handle_timeout(now()),
                _ = sleep_until(next_finish) => self.finish_due(),
                _ = sleep_until(self.start_at) => {
                    self.start_at = None;
                    self.started = true;
                    self.recompute_reputation();
                    self.net.peer_mut().start(now());
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
        let topic = wire::topic(Topic::Adverts).hash();
        let swarm = self.net.swarm();
        NodeSummary {
            rejected: self.net.peer().stats().rejected.clone(),
            mesh_degree: swarm.behaviour().gossipsub.mesh_peers(&topic).count(),
            connected: swarm.connected_peers().count(),
            receipts_stored: self.receipts.len() as u64,
            adverts_held: self.net.peer().adverts().len(),
            advert_senders: self.advert_senders.len(),
            advert_messages_received: self.advert_messages_received,
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Join { bootstrap } => {
                let me = self.net.local_peer_id();
                self.net.set_bootstrap(BootstrapPeers::new(
                    bootstrap.into_iter().filter(|(p, _)| *p != me),
                    Instant::now(),
                ));
                self.net.dial_due();
            }
            Command::Start { at } => self.start_at = Some(at),
            Command::Submit { class, spec } => {
                let at = Instant::now();
                let result = self.net.peer_mut().submit(now(), spec);
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

    /// Carries out what the peer asked for, as the node does; publications
    /// and direct messages are the driver's.
    fn drain_actions(&mut self) {
        let t = now();
        while let Some(action) = self.net.poll_action(t) {
            match action {
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
                // Carried out by the driver, which never returns them.
                Action::Publish { .. } | Action::Send { .. } => {}
            }
        }
        self.drain_net_events();
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
            self.net
                .peer_mut()
                .execution_finished(now(), run.job, report);
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
        self.net.peer_mut().set_reputation(table);
    }

    fn on_tick(&mut self) {
        self.net.dial_due();
        let instant = Instant::now();
        if self.started && self.reputation_due.is_some_and(|t| t <= instant) {
            self.recompute_reputation();
        }
        if !self.dht_settled {
            // Joined: the gossip mesh is up. Settled: Kademlia has also
            // finished its bootstrap lookups, which dial most of a small
            // network and load every peer while they last.
            let topic = wire::topic(Topic::Adverts).hash();
            let behaviour = self.net.swarm_mut().behaviour_mut();
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
            let elected = self.net.peer_mut().elected(now());
            let active = self
                .net
                .peer()
                .orchestrator()
                .map_or(0, |o| o.active_jobs());
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

    fn handle_swarm_event(&mut self, ev: SwarmEvent<NodeBehaviourEvent>) {
        self.net.handle_swarm_event(now(), ev);
        self.drain_net_events();
    }

    /// What the network layer did, as the coordinator's counters and
    /// observations see it (the node logs the same events).
    fn drain_net_events(&mut self) {
        let c = Arc::clone(&self.counters);
        while let Some(event) = self.net.poll_event() {
            match event {
                DriverEvent::Listening(mut addr) => {
                    // The coordinator dials by peer id and plain address.
                    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                        addr.pop();
                    }
                    self.observe(Observation::Listening {
                        peer: self.index,
                        peer_id: self.net.local_peer_id(),
                        addr,
                    });
                }
                DriverEvent::Connected { .. } => {
                    c.connections_opened.fetch_add(1, Ordering::Relaxed);
                }
                DriverEvent::Disconnected { .. } => {
                    c.connections_closed.fetch_add(1, Ordering::Relaxed);
                }
                DriverEvent::Gossip { advert, .. } => {
                    c.gossip_delivered.fetch_add(1, Ordering::Relaxed);
                    if let Some(id) = advert {
                        self.observe(Observation::AdvertArrived {
                            peer: self.index,
                            id: id.0,
                            at: Instant::now(),
                        });
                    }
                }
                DriverEvent::Direct {
                    from,
                    kind,
                    outcome,
                } => {
                    // Who hands this peer adverts directly, and how often,
                    // for its summary: bundles, or adverts one by one as
                    // peers did before bundles.
                    if matches!(kind, Some(Kind::Advert | Kind::AdvertBundle)) {
                        self.advert_senders.insert(from);
                        self.advert_messages_received += 1;
                    }
                    if let DirectOutcome::SyncAnswered {
                        answer: SyncAnswer::Sent { bundles, adverts },
                        ..
                    } = outcome
                    {
                        c.direct_sent.fetch_add(bundles, Ordering::Relaxed);
                        c.advert_bundles.fetch_add(bundles, Ordering::Relaxed);
                        c.adverts_shared.fetch_add(adverts, Ordering::Relaxed);
                    }
                }
                DriverEvent::DirectFailed { .. } => {
                    c.direct_failed.fetch_add(1, Ordering::Relaxed);
                }
                DriverEvent::AdvertsAsked { .. } => {
                    c.direct_sent.fetch_add(1, Ordering::Relaxed);
                    c.advert_syncs.fetch_add(1, Ordering::Relaxed);
                }
                DriverEvent::Published {
                    kind: Kind::Advert,
                    id,
                    ..
                } => self.observe(Observation::AdvertPublished {
                    peer: self.index,
                    id: id.0,
                    at: Instant::now(),
                }),
                DriverEvent::Published { .. } => {
                    c.receipts_published.fetch_add(1, Ordering::Relaxed);
                }
                DriverEvent::Sent {
                    how: Sent::Request(_),
                    ..
                } => {
                    c.direct_sent.fetch_add(1, Ordering::Relaxed);
                }
                DriverEvent::Withheld { .. } => {
                    c.withheld.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }
}

/// As in the model engine: a provider that walks away from its jobs never
/// reports them running nor sends their result.
fn walks_away_from(message: &Signed) -> bool {
    match message.message() {
        Message::Result(_) => true,
        Message::Status(s) => s.state == JobState::Running,
        _ => false,
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
