//! The libp2p engine: the scenario's peers as real rust-libp2p swarms in
//! this one process, over the memory transport (with the scenario's region
//! latencies added, see `link`), each with the node's own behaviour
//! (`modchain_net::behaviour::NodeBehaviour`) and a protocol `Peer`
//! driven from it as the node drives it (see `node`).
//!
//! It runs in wall-clock time. Peers first join the network the way nodes
//! do: every peer dials the bootstrap peers (the scenario's `pretrusted`
//! peers), Kademlia finds the others, and gossipsub builds its mesh. Time
//! zero of the run is when every peer's mesh is up and its Kademlia lookups
//! have ended (or the join gave up waiting); from there the peers start over
//! the first ten seconds and the workload arrives as in the model engine,
//! drawn from the same streams.
//!
//! What it measures that the model cannot: advert propagation through
//! gossipsub as it is (flood publishing, mesh, lazy gossip, validation,
//! scoring), over real connections, with real message sizes on the wire.

mod link;
mod node;
#[cfg(test)]
mod tests;

use crate::engine::{Progress, Report};
use crate::metrics::{CandidateView, Histogram, Ledger, Tally, Traffic, round3};
use crate::network::delay_quantiles;
use crate::population::{self, Population};
use crate::rng::{Purpose, Stream};
use crate::scenario::Scenario;
use crate::units::Duration as SimDuration;
use link::LinkTable;
use modchain_protocol::{Event, JobId, JobSpec, NodeId, SignedReceipt, Timestamp};
use node::{LiveCounters, LiveNode, NodeSetup, NodeSummary};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The most peers the engine runs: each is a whole swarm in this process.
pub const MAX_PEERS: usize = 256;
/// The longest run: the engine runs in wall-clock time.
pub const MAX_DURATION: SimDuration = SimDuration::from_mins(30);
/// Peers start over this window, as in the model engine.
const STARTUP_SPREAD_MS: u64 = 10_000;
/// How long peers get to join (listen, dial, build the gossip mesh, and
/// finish the Kademlia lookups) by default.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Adverts published this close to the end are left out of propagation
/// figures: their flood may not have finished when the run stops.
const PROPAGATION_TAIL_MS: u64 = 5_000;
/// Advert propagation is histogrammed at 1 ms resolution up to this.
const PROPAGATION_MAX_MS: usize = 60_000;
/// How long peers get to stop at the end before the run stops waiting.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum SwarmEngineError {
    #[error("the libp2p engine cannot run this scenario: {0}")]
    Unsupported(String),
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("peer {peer} could not be built: {reason}")]
    Peer { peer: usize, reason: String },
    #[error("the network did not form: {0}")]
    Join(String),
}

/// Orders from the coordinator to one machine.
#[derive(Debug)]
pub(crate) enum Command {
    /// Dial these bootstrap peers and keep dialling them as the node does.
    Join {
        bootstrap: Vec<(libp2p::PeerId, libp2p::Multiaddr)>,
    },
    /// Start the protocol peer at this time (its first advert).
    Start {
        at: Instant,
    },
    /// The local user submits a job of this class.
    Submit {
        class: usize,
        spec: JobSpec,
    },
    Stop,
}

/// What machines tell the coordinator.
#[derive(Debug)]
pub(crate) enum Observation {
    Listening {
        peer: u32,
        peer_id: libp2p::PeerId,
        addr: libp2p::Multiaddr,
    },
    /// Its mesh on the adverts topic reached gossipsub's `mesh_n_low`.
    MeshReady { peer: u32 },
    /// Its mesh is up and its Kademlia lookups have finished.
    DhtSettled { peer: u32 },
    AdvertPublished {
        peer: u32,
        id: [u8; 32],
        at: Instant,
    },
    AdvertArrived {
        peer: u32,
        id: [u8; 32],
        at: Instant,
    },
    Submitted {
        peer: u32,
        at: Instant,
        class: usize,
        result: Result<JobId, String>,
    },
    Event {
        peer: u32,
        at: Instant,
        event: Event,
    },
    /// A receipt this peer stored for the first time.
    Receipt { receipt: Box<SignedReceipt> },
    /// A candidate's view of the election and its load, when it changes.
    Status {
        peer: u32,
        elected: Vec<NodeId>,
        active_jobs: usize,
    },
}

/// Command-line choices for a libp2p run.
#[derive(Clone, Debug)]
pub struct SwarmOptions {
    /// Run this long instead of the scenario's `duration`.
    pub duration: Option<SimDuration>,
    /// Start the run only once every peer's Kademlia bootstrap lookups have
    /// finished, not as soon as its gossip mesh is up. On by default: the
    /// lookups of 64 peers joining at once keep two cores busy for tens of
    /// seconds, and measurements taken meanwhile measure the machine.
    pub wait_for_dht: bool,
    /// How long peers get to join.
    pub join_timeout: Duration,
    /// Peers start their protocol over this window after time zero (the
    /// model engine's ten seconds by default).
    pub startup_spread: Duration,
}

impl Default for SwarmOptions {
    fn default() -> Self {
        SwarmOptions {
            duration: None,
            wait_for_dht: true,
            join_timeout: JOIN_TIMEOUT,
            startup_spread: Duration::from_millis(STARTUP_SPREAD_MS),
        }
    }
}

/// A scenario checked for the libp2p engine, ready to run.
#[derive(Debug)]
pub struct SwarmEngine {
    scenario: Scenario,
    seed: u64,
    end_ms: u64,
    population: Population,
    options: SwarmOptions,
}

impl SwarmEngine {
    /// Checks that the engine can run `scenario`: every refusal says why and
    /// what to do instead.
    pub fn new(
        scenario: Scenario,
        seed: Option<u64>,
        options: SwarmOptions,
    ) -> Result<Self, SwarmEngineError> {
        // Every reason at once, so one edit of the scenario is enough.
        let mut reasons: Vec<String> = Vec::new();
        let peers = scenario.total_peers();
        if peers > MAX_PEERS {
            reasons.push(format!(
                "it has {peers} peers and the libp2p engine runs at most {MAX_PEERS}: every \
                 peer is a whole rust-libp2p swarm in this one process, in real time. Run it \
                 on the model engine (leave out --engine), or write a smaller scenario"
            ));
        }
        if peers < 2 {
            reasons.push("it needs at least two peers to have a network".into());
        }
        if scenario.churn.is_some() {
            reasons.push(
                "[churn] is not supported by the libp2p engine yet (peers would have to leave \
                 and rejoin as fresh swarms). Run it on the model engine, or remove [churn] \
                 from a copy of the scenario"
                    .into(),
            );
        }
        if !scenario.faults.is_empty() {
            reasons.push(
                "[[faults]] (partitions, crashes, forged receipts) are not supported by the \
                 libp2p engine yet. Run it on the model engine, or remove the faults from a \
                 copy of the scenario"
                    .into(),
            );
        }
        if scenario.network.loss > 0.0 {
            reasons.push(format!(
                "network.loss = {} cannot be modelled: the memory transport carries reliable \
                 streams (as TCP does), where single messages are not lost. Set loss = 0 in a \
                 copy of the scenario, or run it on the model engine",
                scenario.network.loss
            ));
        }
        let end_ms = match options.duration {
            Some(d) if d.ms() == 0 => {
                reasons.push("--duration must be longer than zero".into());
                0
            }
            Some(d) if d > MAX_DURATION => {
                reasons.push(format!(
                    "--duration {d} is longer than the {MAX_DURATION} the libp2p engine runs: \
                     it runs in wall-clock time"
                ));
                0
            }
            Some(d) => d.ms(),
            None if scenario.duration > MAX_DURATION => {
                reasons.push(format!(
                    "it lasts {} and the libp2p engine runs in wall-clock time, at most {}. \
                     Pass --duration (for example --duration 5m) to run its first part",
                    scenario.duration, MAX_DURATION
                ));
                0
            }
            None => scenario.duration.ms(),
        };
        if !reasons.is_empty() {
            return Err(SwarmEngineError::Unsupported(reasons.join("; ")));
        }
        let seed = seed.unwrap_or(scenario.seed);
        let population = population::plan(&scenario, seed);
        Ok(SwarmEngine {
            scenario,
            seed,
            end_ms,
            population,
            options,
        })
    }

    pub fn peers(&self) -> usize {
        self.population.peers.len()
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How long the run lasts, from time zero (after the join).
    pub fn duration_ms(&self) -> u64 {
        self.end_ms
    }

    /// Runs the scenario on a multi-threaded tokio runtime of its own.
    pub fn run(self, progress: &mut dyn FnMut(Progress)) -> Result<Report, SwarmEngineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(SwarmEngineError::Runtime)?;
        runtime.block_on(self.run_async(progress))
    }

    async fn run_async(
        self,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Report, SwarmEngineError> {
        let SwarmEngine {
            scenario,
            seed,
            end_ms,
            population,
            options,
        } = self;
        let n = population.peers.len();
        let regions = scenario.network.regions.len();
        let latency_ms: Vec<Vec<f64>> = (0..regions)
            .map(|a| (0..regions).map(|b| scenario.latency_ms(a, b)).collect())
            .collect();
        let table = Arc::new(LinkTable::new(
            seed,
            population.peers.iter().map(|p| p.region).collect(),
            population.peers.iter().map(|p| p.bandwidth).collect(),
            &latency_ms,
            scenario.network.jitter,
        ));
        let counters = Arc::new(LiveCounters::default());
        let job_classes = Arc::new(Mutex::new(HashMap::new()));
        let durations = Arc::new(
            scenario
                .workload
                .jobs
                .iter()
                .map(|j| j.duration.clone())
                .collect::<Vec<_>>(),
        );
        let (obs_tx, mut obs_rx) = mpsc::unbounded_channel();
        let mut commands = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        // A peer with gossipsub's `mesh_n_low` mesh peers on the adverts
        // topic has joined.
        let mesh_target = modchain_net::wire::MESH_N_LOW.min(n - 1);
        for (i, p) in population.peers.iter().enumerate() {
            let setup = NodeSetup {
                index: i as u32,
                key: p.key.clone(),
                config: p.config.clone(),
                byzantine: p.behaviour,
                pretrusted: population.pretrusted.clone(),
                seed,
                durations: Arc::clone(&durations),
                job_classes: Arc::clone(&job_classes),
                table: Arc::clone(&table),
                counters: Arc::clone(&counters),
                mesh_target,
            };
            let node =
                LiveNode::new(setup, obs_tx.clone()).map_err(|e| SwarmEngineError::Peer {
                    peer: i,
                    reason: e.to_string(),
                })?;
            let (tx, rx) = mpsc::unbounded_channel();
            handles.push(tokio::spawn(node.run(rx)));
            commands.push(tx);
        }
        drop(obs_tx);
        let send = |peer: usize, c: Command| {
            // A machine that has stopped is noticed when the run ends.
            let _ = commands[peer].send(c);
        };

        // Join: every peer listens, then dials the bootstrap peers.
        let join_started = Instant::now();
        let join_deadline = join_started + options.join_timeout;
        let mut addrs: Vec<Option<(libp2p::PeerId, libp2p::Multiaddr)>> = vec![None; n];
        let mut listening = 0;
        while listening < n {
            match tokio::time::timeout_at(join_deadline, obs_rx.recv()).await {
                Ok(Some(Observation::Listening {
                    peer,
                    peer_id,
                    addr,
                })) => {
                    table.register(peer, &addr);
                    if addrs[peer as usize].is_none() {
                        listening += 1;
                    }
                    addrs[peer as usize] = Some((peer_id, addr));
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(SwarmEngineError::Join("every peer stopped".into())),
                Err(_) => {
                    return Err(SwarmEngineError::Join(format!(
                        "only {listening} of {n} peers were listening after {:?}",
                        options.join_timeout
                    )));
                }
            }
        }
        let mut bootstrap_peers: Vec<usize> = population
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.pretrusted)
            .map(|(i, _)| i)
            .collect();
        if bootstrap_peers.is_empty() {
            // No pre-trusted group: the first peer stands in as bootstrap peer.
            bootstrap_peers.push(0);
        }
        let bootstrap: Vec<(libp2p::PeerId, libp2p::Multiaddr)> = bootstrap_peers
            .iter()
            .filter_map(|i| addrs[*i].clone())
            .map(|(id, addr)| (id, addr.with_p2p(id).unwrap_or_else(|a| a)))
            .collect();
        for i in 0..n {
            send(
                i,
                Command::Join {
                    bootstrap: bootstrap.clone(),
                },
            );
        }
        let mut meshed = vec![false; n];
        let mut settled = vec![false; n];
        let (mut meshed_count, mut settled_count) = (0, 0);
        let target = |m: usize, s: usize| {
            if options.wait_for_dht { s >= n } else { m >= n }
        };
        while !target(meshed_count, settled_count) {
            match tokio::time::timeout_at(join_deadline, obs_rx.recv()).await {
                Ok(Some(Observation::MeshReady { peer })) => {
                    if !std::mem::replace(&mut meshed[peer as usize], true) {
                        meshed_count += 1;
                    }
                }
                Ok(Some(Observation::DhtSettled { peer })) => {
                    if !std::mem::replace(&mut settled[peer as usize], true) {
                        settled_count += 1;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(SwarmEngineError::Join("every peer stopped".into())),
                // Go on with the network as it is; the summary says how far it got.
                Err(_) => break,
            }
        }
        let join_ms = join_started.elapsed().as_millis() as u64;

        // The run proper: time zero is now.
        let t0 = Instant::now();
        let mut start_rng = Stream::new(seed ^ 0x5eed, Purpose::Placement);
        for i in 0..n {
            let spread = (options.startup_spread.as_millis() as usize).max(1);
            let at = start_rng.below(spread) as u64;
            send(
                i,
                Command::Start {
                    at: t0 + Duration::from_millis(at),
                },
            );
        }
        let mut run = Run::new(&scenario, seed, end_ms, &population, t0, table, counters);
        run.join_ms = join_ms;
        run.connections_at_join = run.live.connections_opened.load(Ordering::Relaxed);
        run.wire_bytes_at_join = run.table.wire_bytes();
        run.last_bytes = run.wire_bytes_at_join;
        run.mesh_ready_peers = meshed_count;
        run.dht_settled_peers = settled_count;
        let end = t0 + Duration::from_millis(end_ms);
        let interval = scenario.metrics.interval.ms();
        let mut next_sample = interval.min(end_ms);
        let rep_interval = population::reputation_interval_ms(&scenario);
        let mut next_reputation = rep_interval;
        let mut progress_tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            let next_arrival = run.next_arrival;
            tokio::select! {
                o = obs_rx.recv() => match o {
                    Some(o) => run.observe(o),
                    None => break,
                },
                _ = sleep_until_ms(t0, next_arrival) => {
                    if let Some((client, class, spec)) = run.arrival() {
                        send(client as usize, Command::Submit { class, spec });
                    }
                }
                _ = sleep_until_ms(t0, Some(next_sample)), if next_sample < end_ms => {
                    run.sample(next_sample);
                    next_sample = (next_sample + interval).min(end_ms);
                }
                _ = sleep_until_ms(t0, Some(next_reputation)) => {
                    run.update_reputation(next_reputation);
                    next_reputation += rep_interval;
                }
                _ = tokio::time::sleep_until(end) => break,
                _ = progress_tick.tick() => progress(run.progress()),
            }
        }
        run.sample(end_ms);
        progress(run.progress());
        for i in 0..n {
            send(i, Command::Stop);
        }
        let mut summaries = Vec::with_capacity(n);
        let stop_deadline = Instant::now() + STOP_TIMEOUT;
        for h in handles {
            match tokio::time::timeout_at(stop_deadline, h).await {
                Ok(Ok(s)) => summaries.push(s),
                Ok(Err(e)) => {
                    return Err(SwarmEngineError::Peer {
                        peer: summaries.len(),
                        reason: format!("its task ended abnormally: {e}"),
                    });
                }
                Err(_) => summaries.push(NodeSummary::default()),
            }
        }
        Ok(run.finish(&summaries))
    }
}

async fn sleep_until_ms(t0: Instant, ms: Option<u64>) {
    match ms {
        Some(ms) => tokio::time::sleep_until(t0 + Duration::from_millis(ms)).await,
        None => std::future::pending().await,
    }
}

/// One advert's flood as observed.
#[derive(Debug, Default)]
struct Flood {
    published: Option<(u32, Instant)>,
    arrivals: Vec<(u32, Instant)>,
}

/// The coordinator's bookkeeping: the workload, the jobs, the global ledger
/// (for reporting only; every peer keeps its own) and the metrics.
struct Run<'a> {
    scenario: &'a Scenario,
    population: &'a Population,
    seed: u64,
    end_ms: u64,
    t0: Instant,
    table: Arc<LinkTable>,
    live: Arc<LiveCounters>,
    index: HashMap<NodeId, u32>,
    candidates: Vec<u32>,
    clients: Vec<u32>,
    workload_rng: Stream,
    job_weights: Vec<f64>,
    job_nonce: u64,
    next_arrival: Option<u64>,
    floods: HashMap<[u8; 32], Flood>,
    ledger: Ledger,
    tally: Tally,
    observations: u64,
    status: BTreeMap<u32, (Vec<NodeId>, usize)>,
    last_messages: u64,
    last_bytes: u64,
    join_ms: u64,
    mesh_ready_peers: usize,
    dht_settled_peers: usize,
    /// Connections opened while the peers joined (before time zero).
    connections_at_join: u64,
    /// Bytes on the wire while the peers joined.
    wire_bytes_at_join: u64,
}

impl<'a> Run<'a> {
    fn new(
        scenario: &'a Scenario,
        seed: u64,
        end_ms: u64,
        population: &'a Population,
        t0: Instant,
        table: Arc<LinkTable>,
        live: Arc<LiveCounters>,
    ) -> Self {
        let peers = &population.peers;
        let mut run = Run {
            scenario,
            population,
            seed,
            end_ms,
            t0,
            table,
            live,
            index: peers
                .iter()
                .enumerate()
                .map(|(i, p)| (p.node, i as u32))
                .collect(),
            candidates: (0..peers.len() as u32)
                .filter(|i| peers[*i as usize].candidate)
                .collect(),
            clients: (0..peers.len() as u32)
                .filter(|i| peers[*i as usize].client)
                .collect(),
            workload_rng: Stream::new(seed, Purpose::Workload),
            job_weights: scenario.workload.jobs.iter().map(|j| j.weight).collect(),
            job_nonce: 0,
            next_arrival: None,
            floods: HashMap::new(),
            ledger: Ledger::default(),
            tally: Tally::default(),
            observations: 0,
            status: BTreeMap::new(),
            last_messages: 0,
            last_bytes: 0,
            join_ms: 0,
            mesh_ready_peers: 0,
            dht_settled_peers: 0,
            connections_at_join: 0,
            wire_bytes_at_join: 0,
        };
        if scenario.workload.rate.per_ms() > 0.0 && !run.clients.is_empty() {
            let first = scenario.workload.start.ms() + run.next_gap();
            run.next_arrival = Some(first);
        }
        run
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.t0).as_millis() as u64
    }

    fn next_gap(&mut self) -> u64 {
        let rate = self.scenario.workload.rate.per_ms();
        (self.workload_rng.exponential(1.0 / rate).ceil() as u64).max(1)
    }

    fn progress(&self) -> Progress {
        Progress {
            simulated_ms: self.ms(Instant::now()).min(self.end_ms),
            duration_ms: self.end_ms,
            events: self.observations,
            jobs_submitted: self.tally.jobs.len() as u64,
            jobs_completed: self.tally.jobs_completed(),
        }
    }

    /// The next job: which client submits it, its class and its spec. The
    /// draws are those of the model engine, from the same stream.
    fn arrival(&mut self) -> Option<(u32, usize, JobSpec)> {
        let now_ms = self.next_arrival?;
        let stop = self.scenario.workload.stop.map_or(self.end_ms, |d| d.ms());
        if now_ms > stop {
            self.next_arrival = None;
            return None;
        }
        self.next_arrival = Some(now_ms + self.next_gap());
        let client = self.clients[self.workload_rng.below(self.clients.len())];
        let class = self.workload_rng.weighted(&self.job_weights);
        self.job_nonce += 1;
        let spec = population::job_spec(
            &self.scenario.workload.jobs[class],
            Timestamp::now_wall(),
            self.job_nonce,
        );
        Some((client, class, spec))
    }

    fn observe(&mut self, o: Observation) {
        self.observations += 1;
        match o {
            Observation::AdvertPublished { peer, id, at } => {
                self.tally.advert_published();
                self.floods.entry(id).or_default().published = Some((peer, at));
            }
            Observation::AdvertArrived { peer, id, at } => {
                self.floods.entry(id).or_default().arrivals.push((peer, at));
            }
            Observation::Submitted {
                peer,
                at,
                class,
                result,
            } => match result {
                Ok(id) => {
                    let now = self.ms(at);
                    self.tally.submitted(id, class, peer, now);
                }
                Err(e) => self.tally.submit_failed(e),
            },
            Observation::Event { peer, at, event } => {
                let now = self.ms(at);
                self.tally.on_event(peer, now, event, &self.index);
            }
            Observation::Receipt { receipt } => self.ledger.store(&receipt),
            Observation::Status {
                peer,
                elected,
                active_jobs,
            } => {
                self.status.insert(peer, (elected, active_jobs));
            }
            Observation::Listening { .. }
            | Observation::MeshReady { .. }
            | Observation::DhtSettled { .. } => {}
        }
    }

    /// The elected set as the first candidate last reported it.
    fn elected(&self) -> Vec<u32> {
        self.candidates
            .first()
            .and_then(|c| self.status.get(c))
            .map(|(elected, _)| {
                elected
                    .iter()
                    .filter_map(|n| self.index.get(n).copied())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn sample(&mut self, t_ms: u64) {
        if self
            .tally
            .time_rows
            .last()
            .is_some_and(|r| r.t_s * 1000.0 >= t_ms as f64)
        {
            return;
        }
        let elected = self.elected();
        let messages = self.live.gossip_delivered.load(Ordering::Relaxed)
            + self.live.direct_sent.load(Ordering::Relaxed);
        let bytes = self.table.wire_bytes();
        let traffic = Traffic {
            messages: messages - self.last_messages,
            bytes: bytes - self.last_bytes,
        };
        (self.last_messages, self.last_bytes) = (messages, bytes);
        let candidates = self.candidates.iter().map(|&c| CandidateView {
            peer: c,
            node: self.population.peers[c as usize].node.short(),
            online: true,
            active_jobs: self.status.get(&c).map_or(0, |(_, a)| *a),
        });
        self.tally.sample(
            t_ms as f64 / 1000.0,
            self.population.peers.len(),
            traffic,
            &elected,
            candidates,
        );
    }

    /// Reputation by class from every receipt any peer stored: the figure
    /// the model engine reports. Peers themselves use their own ledgers.
    fn update_reputation(&mut self, t_ms: u64) {
        let trust = self.ledger.trust(&self.population.pretrusted);
        let providers = self
            .population
            .providers()
            .map(|(class, node)| (class, f64::from(trust.reputation(&node)) / 1e6));
        self.tally
            .record_reputation(t_ms as f64 / 1000.0, providers);
    }

    /// Advert propagation over the floods whose publication we saw, left
    /// out those published in the last seconds of the run.
    fn propagation(&self) -> (Histogram, Vec<f64>) {
        let mut hist = Histogram::new(PROPAGATION_MAX_MS);
        let mut coverage = Vec::new();
        let others = self.population.peers.len().saturating_sub(1).max(1);
        let cutoff = self.end_ms.saturating_sub(PROPAGATION_TAIL_MS);
        let mut floods: Vec<&Flood> = self.floods.values().collect();
        // Deterministic order for the per-flood quantiles.
        floods.sort_by_key(|f| f.published.map(|(p, at)| (at, p)));
        for f in floods {
            let Some((origin, published)) = f.published else {
                continue;
            };
            if self.ms(published) > cutoff {
                continue;
            }
            let mut seen = HashSet::new();
            let delays: Vec<u64> = f
                .arrivals
                .iter()
                .filter(|(p, _)| *p != origin && seen.insert(*p))
                .map(|(_, at)| at.saturating_duration_since(published).as_micros() as u64)
                .collect();
            coverage.push(seen.len() as f64 / others as f64);
            for d in delay_quantiles(delays) {
                hist.add(d / 1000);
            }
        }
        (hist, coverage)
    }

    fn finish(mut self, summaries: &[NodeSummary]) -> Report {
        let n = self.population.peers.len();
        let (mut propagation, coverage) = self.propagation();
        let common = self.tally.summary(
            &self.scenario.workload.class_names(),
            self.live.executions.load(Ordering::Relaxed),
            propagation.stats(),
        );
        let coverage_mean = if coverage.is_empty() {
            0.0
        } else {
            round3(coverage.iter().sum::<f64>() / coverage.len() as f64)
        };
        let coverage_min = coverage.iter().copied().fold(f64::NAN, f64::min);
        let earnings = self
            .ledger
            .mean_balance_by_class(self.population.providers());
        let orchestrators = self
            .tally
            .orchestrators_json(|p| self.population.peers[p as usize].node.short());
        let mut rejected: BTreeMap<&'static str, u64> = BTreeMap::new();
        for s in summaries {
            for (k, v) in &s.rejected {
                *rejected.entry(k).or_default() += v;
            }
        }
        let mean = |f: &dyn Fn(&NodeSummary) -> f64| -> f64 {
            round3(summaries.iter().map(f).sum::<f64>() / summaries.len().max(1) as f64)
        };
        let wire_bytes = self.table.wire_bytes();
        let summary = serde_json::json!({
            "scenario": self.scenario.name,
            "engine": "libp2p",
            "peers": n,
            "seed": self.seed,
            "simulated_seconds": self.end_ms as f64 / 1000.0,
            "events": self.observations,
            "jobs": common.jobs,
            "latency_ms": common.latency,
            "auctions": common.auctions,
            "messages": {
                "gossip_delivered": self.live.gossip_delivered.load(Ordering::Relaxed),
                "direct": self.live.direct_sent.load(Ordering::Relaxed),
                "direct_failed": self.live.direct_failed.load(Ordering::Relaxed),
                "advert_syncs": self.live.advert_syncs.load(Ordering::Relaxed),
                "advert_bundles": self.live.advert_bundles.load(Ordering::Relaxed),
                "adverts_shared": self.live.adverts_shared.load(Ordering::Relaxed),
                "advert_senders_max": summaries.iter().map(|s| s.advert_senders).max().unwrap_or(0),
                "advert_messages_received_max": summaries.iter().map(|s| s.advert_messages_received).max().unwrap_or(0),
                "wire_bytes": wire_bytes,
                "wire_bytes_per_peer_mean": round3(wire_bytes as f64 * 2.0 / n.max(1) as f64),
                "withheld_by_byzantine": self.live.withheld.load(Ordering::Relaxed),
                "adverts_published": self.tally.counters.adverts_published,
                "advert_floods_measured": coverage.len(),
                "advert_coverage_mean": coverage_mean,
                "advert_coverage_min": if coverage_min.is_nan() { 0.0 } else { round3(coverage_min) },
                "receipts_published": self.live.receipts_published.load(Ordering::Relaxed),
                "rejected_by_peers": rejected,
                "mesh_degree_mean": mean(&|s| s.mesh_degree as f64),
            },
            "network": {
                "join_ms": self.join_ms,
                "connections_opened_joining": self.connections_at_join,
                "wire_bytes_joining": self.wire_bytes_at_join,
                "connections_opened": self.live.connections_opened.load(Ordering::Relaxed),
                "connections_closed": self.live.connections_closed.load(Ordering::Relaxed),
                "mesh_ready_peers": self.mesh_ready_peers,
                "dht_settled_peers": self.dht_settled_peers,
                "connections_per_peer_mean": mean(&|s| s.connected as f64),
                "adverts_held_mean": mean(&|s| s.adverts_held as f64),
            },
            "ledger": {
                "receipts_executed": self.ledger.receipts_executed,
                "receipts_failed": self.ledger.receipts_failed,
                "peers_with_receipts": summaries.iter().filter(|s| s.receipts_stored > 0).count(),
                "receipts_stored_per_peer_min": summaries.iter().map(|s| s.receipts_stored).min().unwrap_or(0),
                "mean_balance_credits_by_class": earnings,
            },
            "reputation_final": common.reputation_final,
            "orchestrators": orchestrators,
        });
        let peer_regions = self
            .scenario
            .region_names(self.population.peers.iter().map(|p| p.region));
        Report::new(
            self.tally,
            summary,
            common.jobs_csv,
            propagation.csv(),
            peer_regions,
            self.observations,
            self.end_ms,
        )
    }
}
