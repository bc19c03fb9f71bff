//! The model engine: the protocol crate's own [`Peer`] state machines on a
//! discrete-event simulated network, in virtual time, single-threaded and
//! deterministic from the seed.
//!
//! One queue of events ordered by (time, sequence number) drives everything:
//! message deliveries, peer timers (`poll_timeout` / `handle_timeout`), the
//! end of job executions, job arrivals, churn, faults, reputation updates and
//! metric samples. Peers are driven exactly as the node drives them; the
//! engine only stands in for libp2p, the adapters, the ledger and the clock.
//!
//! Two model choices keep 10,000 peers affordable, neither changing what a
//! state machine sees:
//! - gossip is computed per message as a flood over the mesh (every
//!   transmission counted), and the message is handed only to peers whose
//!   state machines read it: adverts to orchestrator candidates (they match
//!   providers), candidates' adverts also to clients (they run the
//!   election); receipts to their parties. Other peers would only store them.
//! - the ledger is one global receipt set; reputation is computed from it
//!   with the protocol's own EigenTrust and pushed to every peer.

use crate::metrics::{
    CandidateView, Histogram, JobRecord, Ledger, OrchestratorRow, Percentiles, ReputationRow,
    Tally, TimeRow, Traffic, round3,
};
use crate::network::{Network, NetworkParams};
use crate::population::{self, Population};
use crate::rng::{Purpose, Stream};
use crate::scenario::{Behaviour, Fault, Scenario};
use modchain_protocol::{
    Action, Credits, Digest, Envelope, Execution, ExitStatus, JobId, JobState, Keypair, Message,
    NodeId, Outcome, Peer, PeerConfig, Receipt, ReputationTable, Signature, Signed, SignedReceipt,
    StopReason, Timestamp, Topic, Usage,
};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::rc::Rc;

/// Peers start over this window, not all in the same millisecond.
const STARTUP_SPREAD_MS: u64 = 10_000;
/// How long an adapter takes to stop a job once asked.
const STOP_DELAY_MS: u64 = 100;
/// Advert propagation is histogrammed at 1 ms resolution up to this.
const PROPAGATION_MAX_MS: usize = 60_000;

#[derive(Debug)]
enum Ev {
    Start(u32),
    Deliver {
        to: u32,
        msg: Rc<Signed>,
        bytes: usize,
    },
    Wake {
        peer: u32,
        incarnation: u32,
    },
    Finish {
        peer: u32,
        incarnation: u32,
        job: JobId,
        exit: ExitStatus,
        wall_ms: u64,
        garbage: bool,
    },
    Arrival,
    Fault(usize),
    Heal,
    Restart(u32),
    Leave(u32),
    Join(u32),
    PeerGone {
        observer: u32,
        gone: NodeId,
    },
    Reputation,
    Sample,
}

#[derive(Debug)]
struct Entry {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Adverts waiting for a candidate, by publishing peer: (arrival ms, the
/// sequence number its delivery event would have had, message), oldest first.
type PendingAdverts = BTreeMap<u32, Vec<(u64, u64, Rc<Signed>)>>;

/// One simulated machine.
#[derive(Debug)]
struct Slot {
    peer: Option<Peer>,
    key: Keypair,
    node: NodeId,
    config: PeerConfig,
    candidate: bool,
    client: bool,
    provider: bool,
    behaviour: Option<Behaviour>,
    incarnation: u32,
    wake: Option<u64>,
    /// `Peer::start` has run. Until then the peer takes in what reaches it
    /// but its timers are not armed, as a node handles nothing before it
    /// starts its peer (otherwise the first message would start it early).
    started: bool,
}

impl Slot {
    /// Whether this provider keeps quiet once it wins a job.
    fn silent_after_award(&self) -> bool {
        matches!(
            self.behaviour,
            Some(Behaviour::NeverDeliver | Behaviour::Underbid)
        )
    }

    fn class(&self) -> &'static str {
        self.behaviour.map_or("honest", Behaviour::label)
    }
}

/// How far a run has got, for progress displays.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub simulated_ms: u64,
    pub duration_ms: u64,
    pub events: u64,
    pub jobs_submitted: u64,
    pub jobs_completed: u64,
}

/// Everything a finished run hands to the output writer.
#[derive(Debug)]
pub struct Report {
    pub summary: serde_json::Value,
    pub timeseries: String,
    pub reputation: String,
    pub orchestrators: String,
    pub jobs: String,
    /// `advert_propagation.csv`: the advert propagation distribution.
    pub propagation: String,
    pub time_rows: Vec<TimeRow>,
    pub reputation_rows: Vec<ReputationRow>,
    pub orchestrator_rows: Vec<OrchestratorRow>,
    /// Every job the clients accepted, in job-id order.
    pub job_records: Vec<JobRecord>,
    /// Region name of each peer, by peer index.
    pub peer_regions: Vec<String>,
    pub events: u64,
    pub simulated_ms: u64,
}

impl Report {
    /// A finished run's report: the time series, reputation and
    /// orchestrator files rendered from `tally`'s rows.
    pub fn new(
        tally: Tally,
        summary: serde_json::Value,
        jobs: String,
        propagation: String,
        peer_regions: Vec<String>,
        events: u64,
        simulated_ms: u64,
    ) -> Self {
        let (timeseries, reputation, orchestrators) = tally.csv_files();
        Report {
            summary,
            timeseries,
            reputation,
            orchestrators,
            jobs,
            propagation,
            time_rows: tally.time_rows,
            reputation_rows: tally.reputation_rows,
            orchestrator_rows: tally.orchestrator_rows,
            job_records: tally.jobs.into_values().collect(),
            peer_regions,
            events,
            simulated_ms,
        }
    }
}

#[derive(Debug)]
pub struct Engine {
    scenario: Scenario,
    seed: u64,
    now: u64,
    end: u64,
    queue: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    events: u64,
    slots: Vec<Slot>,
    /// Per candidate: provider adverts that arrived but are not handed over
    /// yet, newest last, by publishing peer (see `flush_adverts`).
    pending_adverts: Vec<PendingAdverts>,
    index: HashMap<NodeId, u32>,
    online: Vec<bool>,
    net: Network,
    candidates: Vec<u32>,
    clients: Vec<u32>,
    group_members: Vec<Vec<u32>>,
    pretrusted: Vec<NodeId>,
    workload_rng: Stream,
    exec_rng: Stream,
    churn_rng: Stream,
    fault_rng: Stream,
    job_weights: Vec<f64>,
    job_nonce: u64,
    ledger: Ledger,
    rep_full: ReputationTable,
    rep_candidates: ReputationTable,
    // Metrics.
    tally: Tally,
    propagation: Histogram,
    advert_coverage: Vec<f64>,
    /// Messages and bytes sent since the last sample.
    interval_traffic: Traffic,
    in_wake: bool,
    coalesce_adverts: bool,
    /// Sequence number of the event being handled.
    current_seq: u64,
    /// Per candidate: when it last expired old adverts (at its own re-advert).
    last_expire: Vec<u64>,
}

impl Engine {
    /// Builds the network of a scenario, with `seed` (the scenario's own when `None`).
    pub fn new(scenario: Scenario, seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or(scenario.seed);
        let end = scenario.duration.ms();
        let Population {
            peers,
            group_members,
            pretrusted,
        } = population::plan(&scenario, seed);
        let regions: Vec<u16> = peers.iter().map(|p| p.region).collect();
        let bandwidth: Vec<f64> = peers.iter().map(|p| p.bandwidth).collect();
        let slots: Vec<Slot> = peers
            .into_iter()
            .map(|p| Slot {
                peer: None,
                key: p.key,
                node: p.node,
                config: p.config,
                candidate: p.candidate,
                client: p.client,
                provider: p.provider,
                behaviour: p.behaviour,
                incarnation: 0,
                wake: None,
                started: false,
            })
            .collect();
        let n_regions = scenario.network.regions.len();
        let latency_ms: Vec<Vec<f64>> = (0..n_regions)
            .map(|a| (0..n_regions).map(|b| scenario.latency_ms(a, b)).collect())
            .collect();
        let net = Network::new(NetworkParams {
            seed,
            latency_ms,
            jitter: scenario.network.jitter,
            loss: scenario.network.loss,
            hop_delay_ms: scenario.network.hop_delay.ms(),
            mesh_spec: scenario.network.mesh.clone(),
            region: regions,
            bandwidth,
        });
        let index = slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.node, i as u32))
            .collect();
        let candidates = (0..slots.len() as u32)
            .filter(|i| slots[*i as usize].candidate)
            .collect();
        let clients = (0..slots.len() as u32)
            .filter(|i| slots[*i as usize].client)
            .collect();
        let job_weights = scenario.workload.jobs.iter().map(|j| j.weight).collect();
        let n = slots.len();
        Engine {
            seed,
            now: 0,
            end,
            queue: BinaryHeap::new(),
            seq: 0,
            events: 0,
            slots,
            pending_adverts: vec![BTreeMap::new(); n],
            index,
            online: vec![false; n],
            net,
            candidates,
            clients,
            group_members,
            pretrusted,
            workload_rng: Stream::new(seed, Purpose::Workload),
            exec_rng: Stream::new(seed, Purpose::Execution),
            churn_rng: Stream::new(seed, Purpose::Churn),
            fault_rng: Stream::new(seed, Purpose::Faults),
            job_weights,
            job_nonce: 0,
            ledger: Ledger::default(),
            rep_full: ReputationTable::new(),
            rep_candidates: ReputationTable::new(),
            tally: Tally::default(),
            propagation: Histogram::new(PROPAGATION_MAX_MS),
            advert_coverage: Vec::new(),
            interval_traffic: Traffic::default(),
            in_wake: false,
            coalesce_adverts: true,
            current_seq: 0,
            last_expire: vec![0; n],
            scenario,
        }
    }

    /// Hands every advert to candidates as it arrives instead of coalescing
    /// them (see `flush_adverts`): much slower at scale, for checking that
    /// coalescing changes no decision.
    pub fn deliver_adverts_eagerly(&mut self) {
        self.coalesce_adverts = false;
    }

    pub fn peers(&self) -> usize {
        self.slots.len()
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Entry {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn now_ts(&self) -> Timestamp {
        Timestamp(self.now)
    }

    /// Runs the scenario to its end; `progress` is called now and then.
    pub fn run(mut self, progress: &mut dyn FnMut(Progress)) -> Report {
        self.schedule_start();
        let mut last_report = 0u64;
        while let Some(Reverse(entry)) = self.queue.pop() {
            if entry.at > self.end {
                break;
            }
            self.now = entry.at;
            self.current_seq = entry.seq;
            self.events += 1;
            self.handle(entry.ev);
            if self.events - last_report >= 4096 {
                last_report = self.events;
                progress(self.progress());
            }
        }
        self.now = self.end;
        progress(self.progress());
        self.finish()
    }

    fn progress(&self) -> Progress {
        Progress {
            simulated_ms: self.now,
            duration_ms: self.end,
            events: self.events,
            jobs_submitted: self.tally.jobs.len() as u64,
            jobs_completed: self.tally.jobs_completed(),
        }
    }

    fn schedule_start(&mut self) {
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            slot.peer = Some(Peer::new(slot.key.clone(), slot.config.clone()));
            self.online[i] = true;
        }
        self.net.build(&self.online);
        let mut placement = Stream::new(self.seed ^ 0x5eed, Purpose::Placement);
        for i in 0..self.slots.len() as u32 {
            let at = placement.below(STARTUP_SPREAD_MS as usize) as u64;
            self.push(at, Ev::Start(i));
        }
        if self.scenario.workload.rate.per_ms() > 0.0 {
            let start = self.scenario.workload.start.ms();
            let first = start + self.next_gap();
            self.push(first, Ev::Arrival);
        }
        for i in 0..self.scenario.faults.len() {
            let at = self.scenario.faults[i].at().ms();
            self.push(at, Ev::Fault(i));
        }
        if let Some(churn) = self.scenario.churn.clone() {
            for g in &churn.groups {
                let Some(gi) = self.scenario.peers.iter().position(|p| &p.name == g) else {
                    continue;
                };
                for m in self.group_members[gi].clone() {
                    let at = STARTUP_SPREAD_MS
                        + self.churn_rng.exponential(churn.session.ms() as f64) as u64;
                    self.push(at, Ev::Leave(m));
                }
            }
        }
        let rep = self.reputation_interval();
        self.push(rep, Ev::Reputation);
        let interval = self.scenario.metrics.interval.ms();
        self.push(interval.min(self.end), Ev::Sample);
    }

    fn reputation_interval(&self) -> u64 {
        population::reputation_interval_ms(&self.scenario)
    }

    fn next_gap(&mut self) -> u64 {
        let rate = self.scenario.workload.rate.per_ms();
        (self.workload_rng.exponential(1.0 / rate).ceil() as u64).max(1)
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Start(i) => {
                let slot = &mut self.slots[i as usize];
                slot.started = true;
                if let Some(peer) = slot.peer.as_mut() {
                    peer.start(Timestamp(self.now));
                    self.drain(i);
                }
            }
            Ev::Deliver { to, msg, bytes } => self.deliver(to, msg, bytes),
            Ev::Wake { peer, incarnation } => {
                let slot = &mut self.slots[peer as usize];
                if slot.incarnation != incarnation || slot.wake != Some(self.now) {
                    return;
                }
                slot.wake = None;
                if self.orchestrating(peer) {
                    self.flush_adverts(peer);
                }
                if let Some(p) = self.slots[peer as usize].peer.as_mut() {
                    p.handle_timeout(Timestamp(self.now));
                    self.in_wake = true;
                    self.drain(peer);
                    self.in_wake = false;
                }
            }
            Ev::Finish {
                peer,
                incarnation,
                job,
                exit,
                wall_ms,
                garbage,
            } => {
                let slot = &mut self.slots[peer as usize];
                if slot.incarnation != incarnation {
                    return;
                }
                if let Some(p) = slot.peer.as_mut() {
                    let report = population::execution_report(exit, wall_ms, garbage);
                    p.execution_finished(Timestamp(self.now), job, report);
                    self.drain(peer);
                }
            }
            Ev::Arrival => self.arrival(),
            Ev::Fault(i) => self.fault(i),
            Ev::Heal => self.net.heal(&self.online),
            Ev::Restart(p) | Ev::Join(p) => {
                let is_join = matches!(ev, Ev::Join(_));
                if !self.online[p as usize] {
                    self.come_online(p);
                    if is_join {
                        self.tally.counters.churn_joins += 1;
                    } else {
                        self.tally.counters.restarts += 1;
                    }
                }
                if is_join && let Some(churn) = &self.scenario.churn {
                    let session = churn.session.ms() as f64;
                    let at = self.now + self.churn_rng.exponential(session).max(1.0) as u64;
                    self.push(at, Ev::Leave(p));
                }
            }
            Ev::Leave(p) => {
                if self.online[p as usize] {
                    self.tally.counters.churn_leaves += 1;
                    self.go_offline(p);
                }
                if let Some(downtime) = self.scenario.churn.as_ref().and_then(|c| c.downtime) {
                    let at =
                        self.now + self.churn_rng.exponential(downtime.ms() as f64).max(1.0) as u64;
                    self.push(at, Ev::Join(p));
                }
            }
            Ev::PeerGone { observer, gone } => {
                if self.orchestrating(observer) {
                    self.flush_adverts(observer);
                }
                if let Some(p) = self.slots[observer as usize].peer.as_mut() {
                    p.peer_gone(Timestamp(self.now), &gone);
                    self.drain(observer);
                }
            }
            Ev::Reputation => {
                self.update_reputation();
                let next = self.now + self.reputation_interval();
                self.push(next, Ev::Reputation);
            }
            Ev::Sample => {
                self.sample();
                let interval = self.scenario.metrics.interval.ms();
                if self.now < self.end {
                    let next = (self.now + interval).min(self.end);
                    self.push(next, Ev::Sample);
                }
            }
        }
    }

    /// Drains a peer's actions and re-arms its timer.
    fn drain(&mut self, p: u32) {
        let now = self.now_ts();
        loop {
            let Some(peer) = self.slots[p as usize].peer.as_mut() else {
                return;
            };
            let Some(action) = peer.poll_action(now) else {
                break;
            };
            self.on_action(p, action);
        }
        let slot = &mut self.slots[p as usize];
        let Some(peer) = slot.peer.as_ref() else {
            return;
        };
        if !slot.started {
            return;
        }
        let floor = if self.in_wake { self.now + 1 } else { self.now };
        let next = peer.poll_timeout().map(|t| t.0.max(floor));
        if next != slot.wake {
            slot.wake = next;
            if let Some(at) = next {
                let incarnation = slot.incarnation;
                self.push(
                    at,
                    Ev::Wake {
                        peer: p,
                        incarnation,
                    },
                );
            }
        }
    }

    fn on_action(&mut self, p: u32, action: Action) {
        match action {
            Action::Send { to, message } => self.send(p, to, message),
            Action::Publish { topic, message } => {
                if self.in_wake && topic == Topic::Adverts {
                    // `Peer::handle_timeout` expires old adverts when it re-advertises.
                    self.last_expire[p as usize] = self.now;
                }
                self.publish(p, topic, message)
            }
            Action::Execute(exec) => self.execute(p, exec),
            Action::Stop { job_id, reason } => {
                let exit = match reason {
                    StopReason::Cancelled => ExitStatus::Cancelled,
                    StopReason::TimedOut => ExitStatus::TimedOut,
                };
                let incarnation = self.slots[p as usize].incarnation;
                self.push(
                    self.now + STOP_DELAY_MS,
                    Ev::Finish {
                        peer: p,
                        incarnation,
                        job: job_id,
                        exit,
                        wall_ms: 0,
                        garbage: false,
                    },
                );
            }
            Action::StoreReceipt(r) => self.ledger.store(&r),
            // The model engine simulates no output files; fetches cost nothing.
            Action::ServeOutput { .. } => {}
            Action::Notify(event) => self.tally.on_event(p, self.now, event, &self.index),
        }
    }

    fn count_kind(&mut self, kind: &'static str, bytes: usize) {
        self.tally
            .counters
            .by_kind
            .entry(kind)
            .or_default()
            .add(bytes);
        self.interval_traffic.add(bytes);
    }

    fn send(&mut self, p: u32, to: NodeId, message: Signed) {
        if self.slots[p as usize].silent_after_award() {
            let quiet = match message.message() {
                Message::Result(_) => true,
                Message::Status(s) => s.state == JobState::Running,
                _ => false,
            };
            if quiet {
                self.tally.counters.withheld += 1;
                return;
            }
        }
        let Some(&q) = self.index.get(&to) else {
            self.tally.counters.dropped_network += 1;
            return;
        };
        let bytes = message.to_bytes().len();
        self.net.sent[p as usize].add(bytes);
        self.tally.counters.direct.add(bytes);
        self.count_kind(message.kind().name(), bytes);
        if !self.online[q as usize] {
            self.tally.counters.dropped_offline += 1;
            return;
        }
        match self.net.direct(p, q, bytes) {
            Some(us) => {
                let at = self.now + us.div_ceil(1000).max(1);
                self.push(
                    at,
                    Ev::Deliver {
                        to: q,
                        msg: Rc::new(message),
                        bytes,
                    },
                );
            }
            None => self.tally.counters.dropped_network += 1,
        }
    }

    fn deliver(&mut self, to: u32, msg: Rc<Signed>, bytes: usize) {
        if !self.online[to as usize] {
            self.tally.counters.dropped_offline += 1;
            return;
        }
        let msg = Rc::try_unwrap(msg).unwrap_or_else(|rc| (*rc).clone());
        if bytes > 0 {
            self.net.received[to as usize].add(bytes);
        }
        if msg.kind() != modchain_protocol::Kind::Advert {
            self.flush_adverts(to);
        }
        if let Some(peer) = self.slots[to as usize].peer.as_mut() {
            peer.handle_signed(Timestamp(self.now), msg);
            self.drain(to);
        }
    }

    /// Gossip: a flood over the mesh, counted hop by hop, handed to the peers that read it.
    fn publish(&mut self, p: u32, topic: Topic, message: Signed) {
        let bytes = message.to_bytes().len();
        let kind = message.kind().name();
        self.net.maybe_repair(self.now, &self.online);
        let start_us = self.now * 1000;
        let mut readers: Vec<u32> = Vec::new();
        let mut deferred = false;
        let mut cache_as = None;
        let mut is_advert = false;
        match (topic, message.message()) {
            (Topic::Adverts, Message::Advert(ad)) => {
                is_advert = true;
                self.tally.advert_published();
                readers.extend(self.candidates.iter().copied());
                if ad.orchestrator_candidate {
                    readers.extend(
                        self.clients
                            .iter()
                            .copied()
                            .filter(|c| !self.slots[*c as usize].candidate),
                    );
                    cache_as = Some(1);
                } else {
                    deferred = self.coalesce_adverts;
                    cache_as = Some(0);
                }
            }
            (Topic::Receipts, Message::Receipt(r)) => {
                self.tally.counters.receipts_published += 1;
                let parties = [r.receipt.client, r.receipt.provider, r.receipt.orchestrator];
                for node in parties {
                    if let Some(i) = self.index.get(&node)
                        && !readers.contains(i)
                    {
                        readers.push(*i);
                    }
                }
                if r.client_signature.is_some() && r.verify().is_err() {
                    // A forged receipt: every candidate checks it too.
                    readers.extend(
                        self.candidates
                            .iter()
                            .copied()
                            .filter(|c| !parties.contains(&self.slots[*c as usize].node)),
                    );
                }
            }
            _ => {}
        }
        let flood = self
            .net
            .flood_to(p, start_us, bytes, &self.online, &readers, cache_as);
        self.tally.counters.gossip.messages += flood.transmissions;
        self.tally.counters.gossip.bytes += flood.transmissions * bytes as u64;
        let entry = self.tally.counters.by_kind.entry(kind).or_default();
        entry.messages += flood.transmissions;
        entry.bytes += flood.transmissions * bytes as u64;
        self.interval_traffic.messages += flood.transmissions;
        self.interval_traffic.bytes += flood.transmissions * bytes as u64;
        if is_advert {
            let online_n = self.online.iter().filter(|o| **o).count().max(1);
            self.advert_coverage
                .push(flood.reached as f64 / online_n as f64);
            for d in &flood.delays {
                self.propagation.add(d / 1000);
            }
        }
        let shared = Rc::new(message);
        for (r, arrival) in readers.into_iter().zip(flood.readers) {
            if r == p {
                continue;
            }
            if let Some(at_us) = arrival {
                let at = at_us.div_ceil(1000).max(self.now + 1);
                if deferred {
                    // The sequence number the delivery event would have had,
                    // so hand-over keeps the eager order of same-time events.
                    self.seq += 1;
                    let seq = self.seq;
                    let now = self.now;
                    let list = self.pending_adverts[r as usize].entry(p).or_default();
                    // Of the adverts already arrived only the newest can matter.
                    if let Some(newest) = list.iter().rposition(|(t, _, _)| *t < now) {
                        let mut i = 0;
                        list.retain(|(t, _, _)| {
                            let keep = *t >= now || i == newest;
                            i += 1;
                            keep
                        });
                    }
                    list.push((at, seq, Rc::clone(&shared)));
                } else {
                    self.push(
                        at,
                        Ev::Deliver {
                            to: r,
                            msg: Rc::clone(&shared),
                            bytes: 0,
                        },
                    );
                }
            }
        }
    }

    /// Hands a candidate the provider adverts that have arrived by now: for
    /// each provider only the newest, since the advert table keeps only the
    /// newest per node and nothing reads it in between. Called before any
    /// event that may read the table (every message but an advert, a timer
    /// of an orchestrator holding jobs, a lost peer). This is what keeps
    /// 10,000 peers affordable: each advert a peer takes in costs it a sort
    /// of its whole table (`Peer::handle_signed` → `refresh_candidates`).
    fn flush_adverts(&mut self, c: u32) {
        let pending = &mut self.pending_adverts[c as usize];
        if pending.is_empty() {
            return;
        }
        let cutoff = (self.now, self.current_seq);
        let last_expire = self.last_expire[c as usize];
        let mut ready: Vec<(u64, Rc<Signed>)> = Vec::new();
        pending.retain(|_, list| {
            // Lists are in publication order; with loss, arrivals may not be.
            if let Some(newest) = list.iter().rposition(|(t, s, _)| (*t, *s) < cutoff) {
                let (t, _, msg) = &list[newest];
                // Eager delivery would have inserted it at `t` and, if it had
                // expired by the candidate's last clean-up, removed it there.
                let expired = matches!(msg.message(), Message::Advert(ad)
                    if *t < last_expire && ad.expires_at.0 <= last_expire);
                if !expired {
                    ready.push((*t, Rc::clone(msg)));
                }
                list.retain(|(t, s, _)| (*t, *s) >= cutoff);
            }
            !list.is_empty()
        });
        if let Some(peer) = self.slots[c as usize].peer.as_mut() {
            for (t, msg) in ready {
                // An advert only enters the table: handing it over with its
                // arrival time is what eager delivery would have done.
                peer.handle_signed(Timestamp(t), (*msg).clone());
            }
        }
    }

    fn drop_arrived_adverts(&mut self, c: u32) {
        let cutoff = (self.now, self.current_seq);
        self.pending_adverts[c as usize].retain(|_, list| {
            list.retain(|(t, s, _)| (*t, *s) >= cutoff);
            !list.is_empty()
        });
    }

    /// Whether a candidate's timer may read its advert table (it holds jobs).
    fn orchestrating(&self, c: u32) -> bool {
        self.slots[c as usize]
            .peer
            .as_ref()
            .and_then(|p| p.orchestrator())
            .is_some_and(|o| o.active_jobs() > 0)
    }

    fn execute(&mut self, p: u32, exec: Execution) {
        self.tally.counters.executions += 1;
        let Some(class) = self.tally.jobs.get(&exec.job_id).map(|j| j.class) else {
            return;
        };
        let dist = self.scenario.workload.jobs[class].duration.clone();
        let wall_ms = population::draw(&mut self.exec_rng, &dist).max(1);
        let slot = &self.slots[p as usize];
        let wrong = slot.behaviour == Some(Behaviour::WrongResult);
        let exit = if wrong {
            ExitStatus::Exited(1)
        } else {
            ExitStatus::Exited(0)
        };
        let incarnation = slot.incarnation;
        self.push(
            self.now + wall_ms,
            Ev::Finish {
                peer: p,
                incarnation,
                job: exec.job_id,
                exit,
                wall_ms,
                garbage: wrong,
            },
        );
    }

    fn arrival(&mut self) {
        let stop = self.scenario.workload.stop.map_or(self.end, |d| d.ms());
        if self.now > stop {
            return;
        }
        let next = self.now + self.next_gap();
        self.push(next, Ev::Arrival);
        let online: Vec<u32> = self
            .clients
            .iter()
            .copied()
            .filter(|c| self.online[*c as usize])
            .collect();
        if online.is_empty() {
            self.tally.submit_failed("no client peer online".into());
            return;
        }
        let client = online[self.workload_rng.below(online.len())];
        let class = self.workload_rng.weighted(&self.job_weights);
        let c = &self.scenario.workload.jobs[class];
        self.job_nonce += 1;
        let spec = population::job_spec(c, Timestamp(self.now), self.job_nonce);
        let now = self.now_ts();
        self.flush_adverts(client);
        let Some(peer) = self.slots[client as usize].peer.as_mut() else {
            return;
        };
        match peer.submit(now, spec) {
            Ok(id) => self.tally.submitted(id, class, client, self.now),
            Err(e) => self.tally.submit_failed(e.to_string()),
        }
        self.drain(client);
    }

    fn go_offline(&mut self, p: u32) {
        let i = p as usize;
        if !self.online[i] {
            return;
        }
        self.net.remove_peer(p, &self.online);
        self.online[i] = false;
        let slot = &mut self.slots[i];
        slot.peer = None;
        slot.incarnation += 1;
        slot.wake = None;
        let node = slot.node;
        // Adverts that reached it before it left went with its state; later
        // ones may still arrive after it comes back.
        self.drop_arrived_adverts(p);
        self.last_expire[i] = 0;
        let now = self.now;
        self.tally.client_left(p, now);
        let detect = self
            .scenario
            .churn
            .as_ref()
            .map_or(10_000, |c| c.detect.ms());
        for c in self.candidates.clone() {
            if c != p && self.online[c as usize] {
                self.push(
                    now + detect,
                    Ev::PeerGone {
                        observer: c,
                        gone: node,
                    },
                );
            }
        }
    }

    fn come_online(&mut self, p: u32) {
        let i = p as usize;
        // Adverts that arrived while it was away were lost.
        self.drop_arrived_adverts(p);
        let slot = &mut self.slots[i];
        let mut peer = Peer::new(slot.key.clone(), slot.config.clone());
        peer.set_reputation(if slot.candidate {
            self.rep_full.clone()
        } else {
            self.rep_candidates.clone()
        });
        peer.start(Timestamp(self.now));
        slot.peer = Some(peer);
        slot.started = true;
        self.net.settle(&self.online);
        self.online[i] = true;
        self.net.add_peer(p, &self.online);
        self.drain(p);
    }

    fn fault(&mut self, i: usize) {
        let fault = self.scenario.faults[i].clone();
        match fault {
            Fault::Partition { groups, heal, .. } => {
                let idx: Vec<Vec<usize>> = groups
                    .iter()
                    .map(|g| {
                        g.iter()
                            .filter_map(|r| self.scenario.region_index(r))
                            .collect()
                    })
                    .collect();
                self.net.partition(&idx, &self.online);
                if let Some(h) = heal {
                    self.push(h.ms(), Ev::Heal);
                }
            }
            Fault::Heal { .. } => self.net.heal(&self.online),
            Fault::Crash {
                group,
                count,
                restart,
                ..
            } => {
                let Some(gi) = self.scenario.peers.iter().position(|g| g.name == group) else {
                    return;
                };
                let mut pool: Vec<u32> = self.group_members[gi]
                    .iter()
                    .copied()
                    .filter(|m| self.online[*m as usize])
                    .collect();
                for _ in 0..count.min(pool.len()) {
                    let k = self.fault_rng.below(pool.len());
                    let p = pool.swap_remove(k);
                    self.crash(p, restart.map(|d| d.ms()));
                }
            }
            Fault::CrashOrchestrators { count, restart, .. } => {
                let now = self.now_ts();
                let viewer = self
                    .candidates
                    .iter()
                    .copied()
                    .find(|c| self.online[*c as usize]);
                let elected = viewer
                    .and_then(|v| self.slots[v as usize].peer.as_mut())
                    .map(|peer| peer.elected(now))
                    .unwrap_or_default();
                for node in elected.iter().take(count) {
                    if let Some(&p) = self.index.get(node) {
                        self.crash(p, restart.map(|d| d.ms()));
                    }
                }
            }
            Fault::ForgedReceipts { group, count, .. } => {
                let Some(gi) = self.scenario.peers.iter().position(|g| g.name == group) else {
                    return;
                };
                let pool: Vec<u32> = self.group_members[gi]
                    .iter()
                    .copied()
                    .filter(|m| self.online[*m as usize])
                    .collect();
                if pool.is_empty() || self.candidates.is_empty() {
                    return;
                }
                for k in 0..count {
                    let forger = pool[self.fault_rng.below(pool.len())];
                    let victim = self.fault_rng.below(self.slots.len()) as u32;
                    let orch = self.candidates[self.fault_rng.below(self.candidates.len())];
                    let key = self.slots[forger as usize].key.clone();
                    let receipt = Receipt {
                        job_id: Digest::of_parts(&[
                            b"forged",
                            &self.seed.to_le_bytes(),
                            &(k as u64).to_le_bytes(),
                        ]),
                        attempt: 0,
                        client: self.slots[victim as usize].node,
                        provider: self.slots[forger as usize].node,
                        orchestrator: self.slots[orch as usize].node,
                        award_id: Digest([0; 32]),
                        price: Credits::from_credits(1),
                        usage: Usage {
                            wall_ms: 60_000,
                            ..Usage::default()
                        },
                        outcome: Outcome::Executed(ExitStatus::Exited(0)),
                        result_digest: None,
                        issued_at: self.now_ts(),
                    };
                    let provider_signature = Some(receipt.sign(&key));
                    let forged = SignedReceipt {
                        receipt,
                        client_signature: Some(Signature([7; 64])),
                        provider_signature,
                        orchestrator_signature: None,
                        // No orchestrator awarded it: the forger has no award to attach.
                        award: Vec::new(),
                    };
                    let msg = Envelope::seal(&key, self.now_ts(), Message::Receipt(forged));
                    self.tally.counters.forged_receipts_published += 1;
                    self.publish(forger, Topic::Receipts, msg);
                }
            }
        }
    }

    fn crash(&mut self, p: u32, restart: Option<u64>) {
        if !self.online[p as usize] {
            return;
        }
        self.tally.counters.crashes += 1;
        self.go_offline(p);
        if let Some(r) = restart {
            self.push(self.now + r, Ev::Restart(p));
        }
    }

    fn update_reputation(&mut self) {
        let trust = self.ledger.trust(&self.pretrusted);
        let mut full = ReputationTable::new();
        for (node, _) in trust.iter() {
            full.insert(node, trust.reputation(&node));
        }
        let mut cands = ReputationTable::new();
        for c in &self.candidates {
            let node = self.slots[*c as usize].node;
            cands.insert(node, trust.reputation(&node));
        }
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if let Some(peer) = slot.peer.as_mut() {
                peer.set_reputation(if slot.candidate {
                    full.clone()
                } else {
                    cands.clone()
                });
            }
        }
        self.rep_full = full;
        self.rep_candidates = cands;
        // Reputation of providers by class, on the 0..1 scale.
        let providers: Vec<(&'static str, f64)> = self
            .providers()
            .map(|(class, node)| (class, f64::from(trust.reputation(&node)) / 1e6))
            .collect();
        self.tally
            .record_reputation(self.now as f64 / 1000.0, providers);
    }

    /// Every provider's class and node.
    fn providers(&self) -> impl Iterator<Item = (&'static str, NodeId)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.provider)
            .map(|s| (s.class(), s.node))
    }

    fn sample(&mut self) {
        let now = self.now_ts();
        let online = self.online.iter().filter(|o| **o).count();
        let mut elected: Vec<u32> = Vec::new();
        if let Some(v) = self
            .candidates
            .iter()
            .copied()
            .find(|c| self.online[*c as usize])
            && let Some(peer) = self.slots[v as usize].peer.as_mut()
        {
            for node in peer.elected(now) {
                if let Some(i) = self.index.get(&node) {
                    elected.push(*i);
                }
            }
        }
        let traffic = std::mem::take(&mut self.interval_traffic);
        let candidates = self.candidates.iter().map(|&c| {
            let slot = &self.slots[c as usize];
            CandidateView {
                peer: c,
                node: slot.node.short(),
                online: self.online[c as usize],
                active_jobs: slot
                    .peer
                    .as_ref()
                    .and_then(|p| p.orchestrator())
                    .map_or(0, |o| o.active_jobs()),
            }
        });
        self.tally.sample(
            self.now as f64 / 1000.0,
            online,
            traffic,
            &elected,
            candidates,
        );
    }

    fn finish(mut self) -> Report {
        self.net.settle(&self.online);
        let propagation = self.propagation.stats();
        let propagation_csv = self.propagation.csv();
        let executions = self.tally.counters.executions;
        let common = self.tally.summary(
            &self.scenario.workload.class_names(),
            executions,
            propagation,
        );
        let n = self.slots.len().max(1) as f64;
        let mut per_peer_msgs: Vec<u64> = self
            .net
            .sent
            .iter()
            .zip(&self.net.received)
            .map(|(s, r)| s.messages + r.messages)
            .collect();
        let mut per_peer_bytes: Vec<u64> = self
            .net
            .sent
            .iter()
            .zip(&self.net.received)
            .map(|(s, r)| s.bytes + r.bytes)
            .collect();
        let total_msgs = self.tally.counters.direct.messages + self.tally.counters.gossip.messages;
        let total_bytes = self.tally.counters.direct.bytes + self.tally.counters.gossip.bytes;

        let earnings = self.ledger.mean_balance_by_class(self.providers());
        let orchestrators = self
            .tally
            .orchestrators_json(|p| self.slots[p as usize].node.short());
        let mut rejected: BTreeMap<&'static str, u64> = BTreeMap::new();
        for s in &self.slots {
            if let Some(p) = &s.peer {
                for (k, v) in &p.stats().rejected {
                    *rejected.entry(k).or_default() += v;
                }
            }
        }
        let by_kind: BTreeMap<&str, Traffic> = self.tally.counters.by_kind.clone();
        let coverage = if self.advert_coverage.is_empty() {
            0.0
        } else {
            round3(self.advert_coverage.iter().sum::<f64>() / self.advert_coverage.len() as f64)
        };
        let summary = serde_json::json!({
            "scenario": self.scenario.name,
            "engine": "model",
            "peers": self.slots.len(),
            "seed": self.seed,
            "simulated_seconds": self.end as f64 / 1000.0,
            "events": self.events,
            "jobs": common.jobs,
            "latency_ms": common.latency,
            "auctions": common.auctions,
            "messages": {
                "total": total_msgs,
                "bytes": total_bytes,
                "per_peer_mean": round3(total_msgs as f64 * 2.0 / n),
                "bytes_per_peer_mean": round3(total_bytes as f64 * 2.0 / n),
                "per_peer": Percentiles::of(&mut per_peer_msgs),
                "bytes_per_peer": Percentiles::of(&mut per_peer_bytes),
                "direct": self.tally.counters.direct,
                "gossip": self.tally.counters.gossip,
                "by_kind": by_kind,
                "dropped_offline": self.tally.counters.dropped_offline,
                "dropped_network": self.tally.counters.dropped_network,
                "withheld_by_byzantine": self.tally.counters.withheld,
                "adverts_published": self.tally.counters.adverts_published,
                "advert_coverage_mean": coverage,
                "receipts_published": self.tally.counters.receipts_published,
                "rejected_by_peers": rejected,
                "mesh_degree_mean": round3(self.net.mean_degree(&self.online)),
            },
            "ledger": {
                "receipts_executed": self.ledger.receipts_executed,
                "receipts_failed": self.ledger.receipts_failed,
                "forged_receipts_published": self.tally.counters.forged_receipts_published,
                "mean_balance_credits_by_class": earnings,
            },
            "reputation_final": common.reputation_final,
            "orchestrators": orchestrators,
            "churn": {
                "leaves": self.tally.counters.churn_leaves,
                "joins": self.tally.counters.churn_joins,
                "crashes": self.tally.counters.crashes,
                "restarts": self.tally.counters.restarts,
                "online_at_end": self.online.iter().filter(|o| **o).count(),
            },
        });
        let peer_regions = self
            .scenario
            .region_names((0..self.slots.len() as u32).map(|p| self.net.region_of(p)));
        Report::new(
            self.tally,
            summary,
            common.jobs_csv,
            propagation_csv,
            peer_regions,
            self.events,
            self.end,
        )
    }
}
