//! A deterministic test network: peers, one virtual clock, and a message
//! queue with a fixed latency. It moves messages and fires timers until
//! nothing is left to do, and can crash a peer or stall a provider on cue.
//! Tests state a scenario and assert what each party saw (in the manner of
//! quinn-proto's `Pair`). Everything is ordered by (time, sequence), so a run
//! reproduces exactly.

use crate::action::{Action, Event, Execution};
use crate::advert::{AdapterInfo, CapabilityAdvert, Capacity, CpuInfo, MemoryInfo, StorageInfo};
use crate::digest::JobId;
use crate::envelope::Signed;
use crate::identity::{Keypair, NodeId};
use crate::job::{ExitStatus, JobSpec, Usage};
use crate::orchestrator::OrchestratorConfig;
use crate::peer::{Peer, PeerConfig};
use crate::pricing::PriceTable;
use crate::provider::{ExecutionReport, ProviderConfig};
use crate::receipt::SignedReceipt;
use crate::time::{MINUTE, Timestamp};
use crate::vocabulary::{Credits, Requirements};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// How a provider's executor behaves in the test network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Executor {
    /// Finishes after `duration_ms` with this exit status and stdout.
    Runs {
        /// How long the job runs, in milliseconds.
        duration_ms: u64,
        /// How it ends.
        exit: ExitStatus,
        /// What it writes to stdout.
        stdout: Vec<u8>,
    },
    /// Starts the job and never finishes it (a hung or crashed executor).
    Hangs,
}

impl Default for Executor {
    fn default() -> Self {
        Executor::Runs {
            duration_ms: 2_000,
            exit: ExitStatus::Exited(0),
            stdout: b"hello from the provider\n".to_vec(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Delivery {
    Message {
        to: NodeId,
        seq: u64,
    },
    Finish {
        provider: NodeId,
        job: JobId,
        stopped: bool,
    },
}

/// The test network.
#[derive(Debug)]
pub struct TestNet {
    /// The virtual clock.
    pub now: Timestamp,
    /// How long every message takes, in milliseconds.
    pub latency_ms: u64,
    /// With a seed, delivers what is due at the same instant in an order
    /// drawn from it rather than the order it was sent. Real peers send
    /// each message on its own substream, so nothing keeps two messages in
    /// order.
    pub shuffle: Option<u64>,
    peers: BTreeMap<NodeId, Peer>,
    down: BTreeSet<NodeId>,
    executors: BTreeMap<NodeId, Executor>,
    queue: BinaryHeap<Reverse<(Timestamp, u64, Delivery)>>,
    messages: BTreeMap<u64, Signed>,
    seq: u64,
    /// Every event each peer reported, in order.
    pub events: Vec<(Timestamp, NodeId, Event)>,
    /// Each peer's ledger: receipts it stored, deduplicated by id.
    pub ledgers: BTreeMap<NodeId, BTreeMap<crate::digest::ReceiptId, SignedReceipt>>,
    /// Executions started, by provider.
    pub executions: Vec<(Timestamp, NodeId, Execution)>,
    /// Messages dropped because their destination was down.
    pub dropped: u64,
    /// Output files each provider's executor reports for every job.
    outputs: BTreeMap<NodeId, Vec<crate::job::OutputFile>>,
    /// Output fetches providers were asked to serve: (when, provider, client, request).
    pub served: Vec<(Timestamp, NodeId, NodeId, crate::job::FetchOutput)>,
}

/// A plain machine: 8 cores, 16 GiB, 100 GiB of disk.
pub fn test_advert() -> CapabilityAdvert {
    CapabilityAdvert {
        cpu: CpuInfo {
            vendor: "TestVendor".into(),
            model: "Test CPU".into(),
            cores: 8,
            threads: 8,
            features: vec!["avx2".into()],
        },
        memory: MemoryInfo {
            total_bytes: 16 << 30,
            available_bytes: 12 << 30,
        },
        storage: StorageInfo {
            total_bytes: 100 << 30,
            available_bytes: 80 << 30,
            kind: crate::advert::StorageKind::Ssd,
        },
        ..CapabilityAdvert::default()
    }
}

/// A provider selling `test_advert()`'s machine for the `wasm` adapter at
/// `per_core_second` micro-credits per core-second.
pub fn test_provider(per_core_second: u64) -> ProviderConfig {
    ProviderConfig {
        prices: PriceTable {
            per_job: Credits(1_000),
            per_core_second: Credits(per_core_second),
            per_gib_memory_second: Credits(10),
            ..PriceTable::default()
        },
        capacity: Capacity {
            cores: 8,
            memory_bytes: 16 << 30,
            gpus: 0,
            storage_bytes: 100 << 30,
        },
        adapters: vec![AdapterInfo {
            name: "wasm".into(),
            methods: vec!["run".into()],
            models: vec![],
        }],
        ..ProviderConfig::default()
    }
}

/// A small wasm job that may wait a minute for a provider.
pub fn test_job(now: Timestamp, nonce: u64) -> JobSpec {
    JobSpec {
        adapter: "wasm".into(),
        method: "run".into(),
        params: "{}".into(),
        requirements: Requirements {
            cores: 1,
            memory_bytes: 256 << 20,
            ..Requirements::default()
        },
        max_price: Credits::from_credits(10),
        timeout_ms: 30_000,
        priority: 0,
        start_by: now.plus(MINUTE),
        nonce,
    }
}

impl Default for TestNet {
    fn default() -> Self {
        Self::new()
    }
}

impl TestNet {
    /// An empty network at a fixed start time.
    pub fn new() -> Self {
        TestNet {
            now: Timestamp(1_700_000_000_000),
            latency_ms: 20,
            shuffle: None,
            peers: BTreeMap::new(),
            down: BTreeSet::new(),
            executors: BTreeMap::new(),
            queue: BinaryHeap::new(),
            messages: BTreeMap::new(),
            seq: 0,
            events: Vec::new(),
            ledgers: BTreeMap::new(),
            executions: Vec::new(),
            dropped: 0,
            served: Vec::new(),
            outputs: BTreeMap::new(),
        }
    }

    /// Adds a peer with key seed `seed` and starts it.
    pub fn add(&mut self, seed: u64, config: PeerConfig) -> NodeId {
        let mut peer = Peer::new(Keypair::from_seed(seed), config);
        let id = peer.id();
        peer.start(self.now);
        // A newcomer gets the adverts the others published before it joined,
        // as a node hands them to a peer that subscribes.
        let held: Vec<Signed> = self
            .peers
            .values()
            .map(|p| {
                let ad = p.current_advert(self.now);
                crate::envelope::Envelope::seal(
                    p.key(),
                    self.now,
                    crate::envelope::Message::Advert(ad),
                )
            })
            .collect();
        self.peers.insert(id, peer);
        for message in held {
            self.send(id, message);
        }
        self.drain(id);
        id
    }

    /// A client-only peer.
    pub fn add_client(&mut self, seed: u64) -> NodeId {
        self.add(
            seed,
            PeerConfig {
                advert: test_advert(),
                ..PeerConfig::default()
            },
        )
    }

    /// An orchestrator candidate that sells nothing.
    pub fn add_orchestrator(&mut self, seed: u64) -> NodeId {
        self.add(
            seed,
            PeerConfig {
                advert: test_advert(),
                orchestrator: Some(OrchestratorConfig::default()),
                ..PeerConfig::default()
            },
        )
    }

    /// A provider with the given price and executor.
    pub fn add_provider(&mut self, seed: u64, per_core_second: u64, executor: Executor) -> NodeId {
        let id = self.add(
            seed,
            PeerConfig {
                advert: test_advert(),
                provider: Some(test_provider(per_core_second)),
                ..PeerConfig::default()
            },
        );
        self.executors.insert(id, executor);
        id
    }

    /// The peer with this id (panics if there is none: a test's mistake).
    pub fn peer(&self, id: &NodeId) -> &Peer {
        &self.peers[id]
    }

    /// The peer with this id, to change (panics if there is none).
    pub fn peer_mut(&mut self, id: &NodeId) -> &mut Peer {
        self.peers
            .get_mut(id)
            .unwrap_or_else(|| panic!("no peer {id:?}"))
    }

    /// Makes `provider`'s executor report these output files for every job.
    pub fn set_outputs(&mut self, provider: NodeId, files: Vec<crate::job::OutputFile>) {
        self.outputs.insert(provider, files);
    }

    /// Changes how a provider's executor behaves.
    pub fn set_executor(&mut self, provider: NodeId, executor: Executor) {
        self.executors.insert(provider, executor);
    }

    /// Kills a peer: it handles nothing more, messages to it are lost, and
    /// every peer connected to it notices the connection drop.
    pub fn crash(&mut self, id: NodeId) {
        self.down.insert(id);
        let others: Vec<NodeId> = self.peers.keys().copied().filter(|p| *p != id).collect();
        for o in others {
            if !self.down.contains(&o) {
                let now = self.now;
                self.peer_mut(&o).peer_gone(now, &id);
                self.drain(o);
            }
        }
    }

    /// Kills a peer silently: nobody is told; only timeouts can notice.
    pub fn vanish(&mut self, id: NodeId) {
        self.down.insert(id);
    }

    /// Submits a job from `client` (panics if it is refused).
    pub fn submit(&mut self, client: NodeId, spec: JobSpec) -> JobId {
        let now = self.now;
        let id = self
            .peer_mut(&client)
            .submit(now, spec)
            .unwrap_or_else(|e| panic!("submit failed: {e}"));
        self.drain(client);
        id
    }

    /// Delivers `message` to `to` as if it came off the wire (after the
    /// usual latency): for tests that play a peer breaking the rules.
    pub fn inject(&mut self, to: NodeId, message: Signed) {
        self.send(to, message);
    }

    /// The client cancels its job.
    pub fn cancel(&mut self, client: NodeId, job: &JobId) {
        let now = self.now;
        self.peer_mut(&client).cancel(now, job, "test cancel");
        self.drain(client);
    }

    fn enqueue(&mut self, at: Timestamp, d: Delivery) {
        self.seq += 1;
        let order = match self.shuffle {
            Some(seed) => splitmix64(seed ^ self.seq),
            None => self.seq,
        };
        self.queue.push(Reverse((at, order, d)));
    }

    fn send(&mut self, to: NodeId, message: Signed) {
        self.seq += 1;
        let key = self.seq;
        self.messages.insert(key, message);
        let at = self.now.plus(self.latency_ms);
        self.enqueue(at, Delivery::Message { to, seq: key });
    }

    /// Carries out everything `id` asked for.
    fn drain(&mut self, id: NodeId) {
        let now = self.now;
        loop {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            let Some(action) = peer.poll_action(now) else {
                return;
            };
            match action {
                Action::Send { to, message } => self.send(to, message),
                Action::Publish { message, .. } => {
                    let all: Vec<NodeId> =
                        self.peers.keys().copied().filter(|p| *p != id).collect();
                    for to in all {
                        self.send(to, message.clone());
                    }
                }
                Action::Execute(exec) => {
                    self.executions.push((now, id, exec.clone()));
                    match self.executors.get(&id).cloned().unwrap_or_default() {
                        Executor::Runs {
                            duration_ms,
                            stdout,
                            ..
                        } => {
                            // The output streams to the client as the job starts.
                            if let Some(p) = self.peers.get_mut(&id) {
                                p.log_output(
                                    now,
                                    exec.job_id,
                                    crate::job::LogStream::Stdout,
                                    &stdout,
                                );
                            }
                            let at = now.plus(duration_ms);
                            self.enqueue(
                                at,
                                Delivery::Finish {
                                    provider: id,
                                    job: exec.job_id,
                                    stopped: false,
                                },
                            );
                        }
                        Executor::Hangs => {}
                    }
                }
                Action::Stop { job_id, .. } => {
                    // The adapter stops promptly; the provider knows why it asked.
                    let at = now.plus(10);
                    self.enqueue(
                        at,
                        Delivery::Finish {
                            provider: id,
                            job: job_id,
                            stopped: true,
                        },
                    );
                }
                Action::StoreReceipt(r) => {
                    if r.verify().is_ok() {
                        self.ledgers.entry(id).or_default().insert(r.id(), r);
                    }
                }
                Action::ServeOutput { to, request } => {
                    // The test network keeps no files: it records the request.
                    self.served.push((now, id, to, request));
                }
                Action::Notify(e) => self.events.push((now, id, e)),
            }
        }
    }

    /// The time of the next thing to happen, if anything is left.
    fn next_at(&self) -> Option<Timestamp> {
        let q = self.queue.peek().map(|Reverse((t, _, _))| *t);
        let timers = self
            .peers
            .iter()
            .filter(|(id, _)| !self.down.contains(id))
            .filter_map(|(_, p)| p.poll_timeout())
            .min();
        [q, timers].into_iter().flatten().min()
    }

    /// Runs one instant: every delivery and timer due at the next time.
    pub fn step(&mut self) -> bool {
        let Some(at) = self.next_at() else {
            return false;
        };
        self.now = self.now.max(at);
        let now = self.now;
        while let Some(Reverse((t, _, _))) = self.queue.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, _, d))) = self.queue.pop() else {
                break;
            };
            match d {
                Delivery::Message { to, seq } => {
                    let Some(msg) = self.messages.remove(&seq) else {
                        continue;
                    };
                    if self.down.contains(&to) {
                        self.dropped += 1;
                        continue;
                    }
                    // Off the wire exactly as the node would take it.
                    let bytes = msg.to_bytes();
                    if let Some(p) = self.peers.get_mut(&to) {
                        let _ = p.handle_bytes(now, &bytes);
                    }
                    self.drain(to);
                }
                Delivery::Finish {
                    provider,
                    job,
                    stopped,
                } => {
                    if self.down.contains(&provider) {
                        continue;
                    }
                    let report = match self.executors.get(&provider).cloned().unwrap_or_default() {
                        Executor::Runs { exit, stdout, .. } if !stopped => ExecutionReport {
                            exit: Some(exit),
                            stdout,
                            outputs: self.outputs.get(&provider).cloned().unwrap_or_default(),
                            usage: Usage::default(),
                            ..ExecutionReport::default()
                        },
                        _ => ExecutionReport::default(),
                    };
                    if let Some(p) = self.peers.get_mut(&provider) {
                        p.execution_finished(now, job, report);
                    }
                    self.drain(provider);
                }
            }
        }
        let due: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(id, p)| !self.down.contains(id) && p.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(p) = self.peers.get_mut(&id) {
                p.handle_timeout(now);
            }
            self.drain(id);
        }
        true
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Timestamp) {
        while self.next_at().is_some_and(|t| t <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `ms` of virtual time.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.now.plus(ms);
        self.run_until(until);
    }

    /// Runs until `done` holds or `max_ms` of virtual time pass; returns whether it held.
    pub fn run_until_cond(&mut self, max_ms: u64, mut done: impl FnMut(&TestNet) -> bool) -> bool {
        let until = self.now.plus(max_ms);
        while !done(self) {
            match self.next_at() {
                Some(t) if t <= until => {
                    self.step();
                }
                _ => return done(self),
            }
        }
        true
    }

    /// The receipts `id` stored, in id order.
    pub fn ledger(&self, id: &NodeId) -> Vec<&SignedReceipt> {
        self.ledgers
            .get(id)
            .map(|l| l.values().collect())
            .unwrap_or_default()
    }

    /// Whether `id` crashed or vanished.
    pub fn is_down(&self, id: &NodeId) -> bool {
        self.down.contains(id)
    }

    /// Every peer's id.
    pub fn peer_ids(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }
}

/// A 64-bit mix (SplitMix64's finaliser): a cheap, seedable permutation of
/// delivery order with no dependency.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The parties of a receipt made outside a network, for tests and
/// benchmarks that need receipts any peer would accept (or, changing one
/// field afterwards, one it must refuse).
#[derive(Clone, Debug)]
pub struct ReceiptParties<'a> {
    /// The client (signs executed receipts).
    pub client: &'a Keypair,
    /// The provider (signs executed receipts).
    pub provider: &'a Keypair,
    /// The orchestrator (signs the award, and failure receipts).
    pub orchestrator: &'a Keypair,
}

/// A receipt for `job_id` with everything its outcome requires: the award
/// the orchestrator signed at `at` (one bid, by the provider, for at most
/// `price`), and the signatures of the parties.
pub fn settled_receipt(
    parties: &ReceiptParties<'_>,
    job_id: JobId,
    price: Credits,
    outcome: crate::receipt::Outcome,
    at: Timestamp,
) -> SignedReceipt {
    use crate::auction::{Award, BidEntry, bids_digest};
    use crate::envelope::{Envelope, Message};
    use crate::receipt::Receipt;
    let entry = BidEntry {
        bid_id: crate::digest::Digest::of(&job_id.0),
        provider: parties.provider.node_id(),
        max_total: price,
        reputation: 0,
    };
    let bids = vec![entry.clone()];
    let award = Award {
        job_id,
        attempt: 0,
        client: parties.client.node_id(),
        winner: entry.provider,
        winning_bid: entry.bid_id,
        quote: crate::pricing::Quote::default(),
        bids_digest: bids_digest(&bids),
        bids,
        execution_deadline: at.plus(MINUTE),
    };
    let sealed = Envelope::seal(parties.orchestrator, at, Message::Award(award.clone()));
    let failure = matches!(outcome, crate::receipt::Outcome::ProviderFailed(_));
    let receipt = Receipt {
        job_id,
        attempt: 0,
        client: award.client,
        provider: award.winner,
        orchestrator: parties.orchestrator.node_id(),
        award_id: sealed.id(),
        price: if failure { Credits::ZERO } else { price },
        usage: Usage::default(),
        outcome,
        result_digest: None,
        issued_at: at,
    };
    SignedReceipt {
        client_signature: (!failure).then(|| receipt.sign(parties.client)),
        provider_signature: (!failure).then(|| receipt.sign(parties.provider)),
        orchestrator_signature: failure.then(|| receipt.sign(parties.orchestrator)),
        receipt,
        award: sealed.to_bytes(),
    }
}
