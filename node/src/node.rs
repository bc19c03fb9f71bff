//! The running node: drives the protocol's sans-IO [`Peer`] from the libp2p
//! swarm and the clock, keeps the view of the network the API shows, and
//! retries bootstrap peers. Every `SwarmEvent` is translated here, once.

use crate::config::{DockerSettings, LlmSettings};
use crate::executor::{Executor, ExecutorEvent, Finished};
use crate::ledger::{Appended, Ledger, LedgerError};
use crate::metrics::{NodeMetrics, Snapshot};
use crate::outputs::{ChunkOutcome, ResultStore};
use crate::views::{
    BalanceView, HistoryEntry, JobDetail, JobResultView, JobSummary, OutputFile, ReceiptView,
    ReputationEntry, UsageView, exit_text,
};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, kad};
use modchain_adapters::docker::{DockerAdapter, DockerConfig};
use modchain_adapters::llm::embedded::{EmbeddedBackend, EmbeddedConfig};
use modchain_adapters::llm::ollama::OllamaBackend;
use modchain_adapters::llm::{LlmAdapter, LlmBackend};
use modchain_adapters::wasm::WasmAdapter;
use modchain_adapters::{Adapter, AdapterError};
use modchain_net::BootstrapAddr;
use modchain_net::behaviour::timings::{REPUTATION_DEBOUNCE, REPUTATION_INTERVAL};
use modchain_net::behaviour::{NodeBehaviour, NodeBehaviourEvent, node_gossipsub};
use modchain_net::driver::{
    BootstrapPeers, ProvideUpdate, Publication, PublishOutcome, Retry, Sent, SyncAnswer, Verdict,
};
use modchain_net::wire::{self, NetworkError};
use modchain_net::{DirectOutcome, DriverEvent, SwarmDriver};
use modchain_protocol::action::{Action, Event};
use modchain_protocol::advert::{CapabilityAdvert, Capacity};
use modchain_protocol::client::ClientJob;
use modchain_protocol::digest::Digest;
use modchain_protocol::envelope::{Envelope, Message};
use modchain_protocol::job::{FetchOutput, JobSpec, OutputChunk, limits};
use modchain_protocol::orchestrator::{OrchestratorConfig, ReputationTable};
use modchain_protocol::peer::{Peer, PeerConfig};
use modchain_protocol::pricing::Credits;
use modchain_protocol::provider::{Admission, AdmissionRefusal};
use modchain_protocol::provider::{OUTPUT_RETENTION_MS, ProviderConfig};
use modchain_protocol::receipt::{Outcome, SignedReceipt};
use modchain_protocol::reputation::{Trust, TrustConfig};
use modchain_protocol::{JobId, Keypair, NodeId, Timestamp};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot};

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
    /// The data directory: ledger, results, job work directories.
    pub data_dir: PathBuf,
    /// Sell capacity (the provider role).
    pub provider: bool,
    pub docker: DockerSettings,
    pub llm: LlmSettings,
    /// Credits every node starts with, in micro-credits (balances only).
    pub grant: Credits,
}

#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the wasm adapter cannot start: {0}")]
    Wasm(AdapterError),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why the node refused an API request, with the HTTP status to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub error: String,
}

impl Refusal {
    fn new(status: u16, error: impl Into<String>) -> Self {
        Refusal {
            status,
            error: error.into(),
        }
    }
}

/// Live output of a client job for `logs --follow`: a piece of output, or
/// `None` once the job ended.
#[derive(Clone, Debug)]
pub struct LogFeed {
    pub job_id: JobId,
    pub data: Option<Vec<u8>>,
}

/// A job's output so far, and the feed of what comes next.
#[derive(Debug)]
pub struct LogView {
    pub text: Vec<u8>,
    pub ended: bool,
    pub feed: broadcast::Receiver<LogFeed>,
}

/// Questions the local API asks the running node.
#[derive(Debug)]
pub enum ApiQuery {
    Stats(oneshot::Sender<Value>),
    Nodes(oneshot::Sender<Value>),
    Metrics(oneshot::Sender<String>),
    /// The models providers advertise (for the Ollama-compatible API).
    Models(oneshot::Sender<Vec<crate::ollama_api::NetworkModel>>),
    /// The first of these peers that is this node or a peer of its
    /// network (connected, or with an advert held): a forwarded request
    /// that names one went round in a loop.
    Member {
        peers: Vec<PeerId>,
        reply: oneshot::Sender<Option<PeerId>>,
    },
    /// Who provides a capability key (`cap/docker`, ...), asked of the DHT.
    Providers {
        key: String,
        reply: oneshot::Sender<Value>,
    },
    /// Submit a job built from the API request (bounds already checked).
    Submit {
        spec: JobSpec,
        reply: oneshot::Sender<Result<JobId, Refusal>>,
    },
    Jobs(oneshot::Sender<Vec<JobSummary>>),
    Job {
        id: JobId,
        reply: oneshot::Sender<Option<JobDetail>>,
    },
    Cancel {
        id: JobId,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Logs {
        id: JobId,
        reply: oneshot::Sender<Option<LogView>>,
    },
    /// `Ok(None)`: the job is known but has no result yet.
    JobResult {
        id: JobId,
        reply: oneshot::Sender<Option<Option<JobResultView>>>,
    },
    Receipts(oneshot::Sender<Vec<ReceiptView>>),
    Reputation(oneshot::Sender<Vec<ReputationEntry>>),
    Balance {
        node: Option<NodeId>,
        reply: oneshot::Sender<BalanceView>,
    },
    /// A subscription to the node's event stream (JSON lines).
    Events(oneshot::Sender<broadcast::Receiver<String>>),
}

/// A DHT provider lookup the API is waiting on.
#[derive(Debug)]
struct ProviderLookup {
    key: String,
    reply: oneshot::Sender<Value>,
    found: BTreeSet<PeerId>,
}

/// A draw from [0, 1] for the bootstrap backoff's jitter, so peers that
/// lost the same bootstrap peer do not all come back at the same instant
/// (none when the OS has no randomness to give).
fn jitter() -> f64 {
    let mut b = [0u8; 2];
    if getrandom::fill(&mut b).is_err() {
        return 0.0;
    }
    f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
}

/// The warning for each bootstrap peer a failed dial leaves waiting.
fn log_retries(retries: &[Retry], error: &str) {
    for r in retries {
        tracing::warn!(
            bootstrap = %r.peer,
            attempt = r.attempt,
            retry_in_ms = r.wait.as_millis() as u64,
            error,
            "bootstrap peer unreachable; retrying with backoff"
        );
    }
}

/// Live output kept per client job for the API, from the end.
const JOB_LOG_BYTES: usize = 1 << 20;
/// Events waiting for slow observers before they miss some.
const EVENT_BUFFER: usize = 4096;
/// How long running jobs get to stop at shutdown.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(4);
/// An output fetch with no answer for this long is asked again.
const FETCH_QUIET: Duration = Duration::from_secs(10);
/// How long the docker daemon gets to answer at start-up.
const DOCKER_PING_TIMEOUT: Duration = Duration::from_secs(3);

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
    /// The swarm and the protocol peer, run one over the other.
    net: SwarmDriver,
    me: NodeId,
    metrics: NodeMetrics,
    started: Instant,
    gossip: GossipCounters,
    options: NodeOptions,
    provider_lookups: HashMap<kad::QueryId, ProviderLookup>,
    jobs: JobDriver,
}

/// Everything about jobs the node keeps beside the protocol's machines:
/// the executor (provider), served outputs, stored results (client), the
/// ledger, reputation, and the event feeds for observers.
struct JobDriver {
    executor: Executor,
    executor_events: mpsc::UnboundedReceiver<ExecutorEvent>,
    provider: bool,
    /// Provider: output files of finished jobs by digest, until retention ends.
    served: HashMap<JobId, (Instant, HashMap<Digest, PathBuf>)>,
    results: ResultStore,
    ledger: Ledger,
    grant: Credits,
    pretrusted: Vec<NodeId>,
    trust: Trust,
    reputation_due: Option<Instant>,
    receipts_seen: u64,
    receipts_new: u64,
    receipts_failed: u64,
    /// Client: live output received per job.
    job_logs: HashMap<JobId, Vec<u8>>,
    log_feed: broadcast::Sender<LogFeed>,
    events: broadcast::Sender<String>,
    elected: Vec<NodeId>,
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
    /// Builds the swarm and starts listening (errors name the address),
    /// opens the ledger and sets up the adapters.
    pub async fn new(key: &Keypair, options: NodeOptions) -> Result<Self, NodeError> {
        let mut registry = libp2p::metrics::Registry::default();
        let lkey = key.to_libp2p();
        let gs = node_gossipsub(&lkey, &mut registry)?;
        let max = options.max_connections;
        let mut swarm = wire::build_swarm(lkey, Some(&mut registry), |k| {
            NodeBehaviour::new(k, gs, max)
        })?;
        wire::join(
            &mut swarm,
            |s| &mut s.behaviour_mut().gossipsub,
            &options.listen,
        )?;
        let me = key.node_id();
        let work_dir = options.data_dir.join("work");
        // What an earlier run left (it crashed or was killed mid-job) can
        // never be delivered: start clean.
        let _ = std::fs::remove_dir_all(&work_dir);
        std::fs::create_dir_all(&work_dir).map_err(|source| NodeError::Dir {
            path: work_dir.clone(),
            source,
        })?;
        let mut adapters = adapters(&me, &options.docker).await?;
        let peer_id = *swarm.local_peer_id();
        // A provider that looks for model changes keeps the llm adapter on
        // with no model yet: the first file dropped in is then served too.
        let rescans = options.provider && options.llm.rescan_interval().is_some();
        if let Some(llm) = llm_adapter(&options.data_dir, &options.llm, &peer_id, rescans).await {
            adapters.push(llm);
        }
        let admission = AdapterAdmission(
            adapters
                .iter()
                .map(|a| (a.name().to_string(), a.clone()))
                .collect(),
        );
        let (executor, executor_events) =
            Executor::new(adapters, work_dir, options.docker.allow_network);
        let provider = options.provider.then(|| {
            let ad = &options.advert;
            ProviderConfig {
                prices: ad.prices.clone(),
                capacity: Capacity {
                    cores: ad.cpu.threads.max(1),
                    memory_bytes: ad.memory.total_bytes,
                    gpus: ad.gpus.len() as u32,
                    storage_bytes: ad.storage.available_bytes,
                },
                adapters: executor.infos(),
                ..ProviderConfig::default()
            }
        });
        if let Some(p) = &provider {
            let names: Vec<&str> = p.adapters.iter().map(|a| a.name.as_str()).collect();
            tracing::info!(adapters = ?names, cores = p.capacity.cores, memory_bytes = p.capacity.memory_bytes, gpus = p.capacity.gpus, "provider role on");
        } else {
            tracing::info!("provider role off (`provider = false` in config.toml)");
        }
        let ledger = Ledger::open(&options.data_dir.join("ledger"))?;
        let pretrusted: Vec<NodeId> = options
            .bootstrap
            .iter()
            .filter_map(|b| NodeId::from_peer_id(&b.peer_id).ok())
            .collect();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (log_feed, _) = broadcast::channel(EVENT_BUFFER);
        let jobs = JobDriver {
            executor,
            executor_events,
            provider: provider.is_some(),
            served: HashMap::new(),
            results: ResultStore::new(options.data_dir.join("results")),
            ledger,
            grant: options.grant,
            pretrusted,
            trust: Trust::default(),
            reputation_due: Some(Instant::now()),
            receipts_seen: 0,
            receipts_new: 0,
            receipts_failed: 0,
            job_logs: HashMap::new(),
            log_feed,
            events,
            elected: Vec::new(),
        };
        let config = PeerConfig {
            orchestrator: options.orchestrator.then(OrchestratorConfig::default),
            provider,
            advert: options.advert.clone(),
            advert_ttl_ms: options.advert_ttl.as_millis() as u64,
            advert_interval_ms: options.advert_interval.as_millis() as u64,
            ..PeerConfig::default()
        };
        let bootstrap = BootstrapPeers::from_list(&options.bootstrap, tokio::time::Instant::now());
        let mut peer = Peer::new(key.clone(), config);
        // Decline at bid time what our adapters would refuse (a missing
        // image, a module that does not compile), so such a job goes to a
        // provider that can run it and leaves no receipt.
        peer.set_admission(Box::new(admission));
        Ok(Node {
            net: SwarmDriver::new(swarm, peer, bootstrap, Box::new(jitter)),
            me,
            metrics: NodeMetrics::new(registry, &key.to_libp2p().public().to_peer_id().to_string()),
            started: Instant::now(),
            gossip: GossipCounters::default(),
            options,
            provider_lookups: HashMap::new(),
            jobs,
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.net.local_peer_id()
    }

    /// Waits for the first listen address, so a port in use is reported
    /// before the node claims to be up.
    pub async fn wait_listening(&mut self) -> Result<Vec<Multiaddr>, NetworkError> {
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        let mut settle: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                ev = self.net.next_swarm_event() => {
                    match ev {
                        SwarmEvent::ListenerClosed { addresses, reason: Err(e), .. } => {
                            let addr = addresses.first().cloned().unwrap_or_else(Multiaddr::empty);
                            return Err(wire::listen_error(&addr, e));
                        }
                        SwarmEvent::ListenerError { error, .. } => {
                            return Err(NetworkError::Transport(error.to_string()));
                        }
                        other => {
                            let was_empty = self.net.listen_addrs().is_empty();
                            self.handle_swarm_event(other);
                            if was_empty && !self.net.listen_addrs().is_empty() {
                                settle = Some(Box::pin(tokio::time::sleep(Duration::from_millis(200))));
                            }
                        }
                    }
                }
                _ = async { if let Some(s) = settle.as_mut() { s.await } else { std::future::pending().await } } => {
                    return Ok(self.net.listen_addrs().to_vec());
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
        self.recompute_reputation();
        self.net.peer_mut().start(now());
        self.drain_actions();
        let mut reputation_tick = tokio::time::interval(REPUTATION_INTERVAL);
        reputation_tick.tick().await;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut summary = tokio::time::interval(self.options.summary_interval);
        summary.tick().await;
        // The adapters' offer (models on disk, an Ollama server's list) is
        // looked at again in a task of its own: reading it can take a while.
        let (offer_tx, mut offer_rx) = mpsc::channel::<()>(1);
        let rescan = self
            .options
            .llm
            .rescan_interval()
            .filter(|_| self.jobs.provider);
        let mut offer_tick = tokio::time::interval(rescan.unwrap_or(Duration::from_secs(3600)));
        offer_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        offer_tick.tick().await;
        let mut refreshing = false;
        loop {
            let wait = self
                .net
                .peer()
                .poll_timeout()
                .map_or(Duration::from_secs(3600), |t| {
                    Duration::from_millis(t.since(now()))
                });
            tokio::select! {
                ev = self.net.next_swarm_event() => self.handle_swarm_event(ev),
                _ = tokio::time::sleep(wait) => {
                    self.net.peer_mut().handle_timeout(now());
                }
                Some(q) = api.recv() => self.answer(q),
                Some(ev) = self.jobs.executor_events.recv() => self.on_executor_event(ev),
                _ = tick.tick() => {
                    self.net.dial_due();
                    self.on_tick();
                }
                _ = reputation_tick.tick() => self.recompute_reputation(),
                _ = summary.tick() => self.log_summary(),
                _ = offer_tick.tick(), if rescan.is_some() && !refreshing => {
                    refreshing = true;
                    let adapters = self.jobs.executor.adapters();
                    let done = offer_tx.clone();
                    tokio::spawn(async move {
                        for a in adapters {
                            a.refresh().await;
                        }
                        let _ = done.send(()).await;
                    });
                }
                Some(()) = offer_rx.recv() => {
                    refreshing = false;
                    self.offer_refreshed();
                }
                _ = &mut shutdown => break,
            }
            self.drain_actions();
        }
        self.stop_executions().await;
        tracing::info!("node stopped");
    }

    /// Carries out what the peer asked for, then logs and counts what the
    /// network layer did meanwhile. Publications and direct messages are
    /// the driver's; the rest is the node's.
    fn drain_actions(&mut self) {
        let t = now();
        while let Some(action) = self.net.poll_action(t) {
            match action {
                Action::StoreReceipt(r) => self.store_receipt(&r),
                Action::Execute(e) => {
                    tracing::info!(job = %e.job_id.to_hex(), adapter = %e.spec.adapter, method = %e.spec.method, "starting a job we won");
                    self.metrics.execution_started(e.job_id, &e.spec.adapter);
                    self.jobs.executor.start(t, e);
                }
                Action::Stop { job_id, reason } => {
                    tracing::info!(job = %job_id.to_hex(), ?reason, "stopping a job");
                    self.jobs.executor.stop(&job_id);
                }
                Action::ServeOutput { to, request } => self.serve_output(t, to, request),
                Action::Notify(event) => {
                    // What the protocol says of a job is logged in its span.
                    let span = event_job(&event)
                        .map(|id| tracing::info_span!("job", job_id = %id.to_hex()));
                    let _entered = span.as_ref().map(|s| s.enter());
                    self.on_event(t, event)
                }
                // Carried out by the driver, which never returns them.
                Action::Publish { .. } | Action::Send { .. } => {}
            }
        }
        self.drain_net_events();
    }

    fn note_publication(&mut self, p: Publication) {
        match p.outcome {
            PublishOutcome::Sent => {
                self.gossip.published += 1;
                self.gossip.published_bytes += p.len as u64;
            }
            PublishOutcome::Held => tracing::debug!(
                topic = p.topic.name(),
                "no subscriber yet; holding the message"
            ),
            PublishOutcome::Duplicate => {}
            PublishOutcome::Failed(e) => {
                tracing::warn!(topic = p.topic.name(), error = %e, "publish failed")
            }
        }
    }

    /// One swarm event: libp2p's own metrics record it, then the driver
    /// translates it.
    fn handle_swarm_event(&mut self, ev: SwarmEvent<NodeBehaviourEvent>) {
        self.metrics.record(&ev);
        if let SwarmEvent::Behaviour(b) = &ev {
            match b {
                NodeBehaviourEvent::Identify(e) => self.metrics.record(e),
                NodeBehaviourEvent::Kad(e) => self.metrics.record(e),
                NodeBehaviourEvent::Ping(e) => self.metrics.record(e),
                NodeBehaviourEvent::Gossipsub(e) => self.metrics.record(e),
                _ => {}
            }
        }
        self.net.handle_swarm_event(now(), ev);
        self.drain_net_events();
    }

    /// What the network layer did: logged and counted here, nowhere else.
    fn drain_net_events(&mut self) {
        while let Some(event) = self.net.poll_event() {
            match event {
                DriverEvent::Listening(address) => tracing::info!(%address, "listening"),
                DriverEvent::BootstrapConnected(b) => {
                    tracing::info!(bootstrap = %b, "connected to bootstrap peer")
                }
                DriverEvent::Joined(Ok(())) => {
                    tracing::info!("joined: walking the DHT for other peers")
                }
                DriverEvent::Joined(Err(e)) => {
                    tracing::debug!(error = %e, "kademlia bootstrap not started")
                }
                DriverEvent::Disconnected {
                    peer,
                    connections: 0,
                    cause,
                } => tracing::debug!(%peer, ?cause, "peer disconnected"),
                DriverEvent::BootstrapLost(peer) => {
                    tracing::warn!(%peer, "lost the bootstrap peer; will redial")
                }
                DriverEvent::BootstrapUnreachable { error, retries } => {
                    log_retries(&retries, &error)
                }
                DriverEvent::DialFailed { peer, error } => {
                    tracing::debug!(%peer, %error, "dial failed")
                }
                DriverEvent::Gossip { len, verdict, .. } => {
                    self.gossip.received += 1;
                    self.gossip.received_bytes += len as u64;
                    if matches!(verdict, Verdict::Rejected(_) | Verdict::Misrouted(_)) {
                        self.gossip.rejected += 1;
                    }
                    self.note_verdict(&verdict);
                }
                DriverEvent::Direct { from, outcome, .. } => {
                    self.gossip.direct_received += 1;
                    self.note_direct(from, outcome);
                }
                DriverEvent::DirectFailed { peer, error } => {
                    self.gossip.direct_failed += 1;
                    tracing::debug!(%peer, %error, "direct message not delivered");
                }
                DriverEvent::AdvertsAsked { to, listed } => {
                    self.gossip.direct_sent += 1;
                    tracing::debug!(%to, listed, "asked a peer for the adverts it holds");
                }
                DriverEvent::Published { publication, .. }
                | DriverEvent::Republished(publication) => self.note_publication(publication),
                DriverEvent::Sent {
                    how: Sent::Request, ..
                } => self.gossip.direct_sent += 1,
                DriverEvent::Unaddressable { to, error } => {
                    tracing::warn!(to = %to.short(), %error, "cannot address a direct message")
                }
                DriverEvent::Provided(ProvideUpdate::Changed { failed }) => {
                    for (key, e) in failed {
                        tracing::warn!(key, error = %e, "cannot provide capability key");
                    }
                    tracing::debug!(keys = ?self.net.provided().keys(), "providing capability keys");
                }
                DriverEvent::ProvidersFound {
                    query,
                    providers,
                    done,
                    error,
                } => self.providers_found(query, providers, done, error),
                DriverEvent::DhtWalked => tracing::debug!("kademlia bootstrap finished"),
                _ => {}
            }
        }
    }

    /// A step of a provider lookup the API asked for: answered when it ends.
    fn providers_found(
        &mut self,
        query: kad::QueryId,
        providers: Vec<PeerId>,
        done: bool,
        error: Option<String>,
    ) {
        if let Some(e) = error {
            tracing::debug!(error = %e, "provider lookup ended early");
        }
        if let Some(l) = self.provider_lookups.get_mut(&query) {
            l.found.extend(providers);
        }
        if done && let Some(l) = self.provider_lookups.remove(&query) {
            let providers: Vec<String> = l.found.iter().map(|p| p.to_string()).collect();
            let _ = l
                .reply
                .send(json!({ "key": l.key, "providers": providers }));
        }
    }

    /// Logs a message dropped, and tells the events stream of an advert
    /// that is news to us.
    fn note_verdict(&self, verdict: &Verdict) {
        match verdict {
            Verdict::Taken(Some(signed)) => {
                if let Message::Advert(ad) = signed.message() {
                    self.emit(
                        "advert_received",
                        json!({
                            "from": signed.signer().to_hex(),
                            "adapters": ad.adapters.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
                            "free_cores": ad.free.cores,
                            "orchestrator_candidate": ad.orchestrator_candidate,
                        }),
                    );
                }
            }
            Verdict::Rejected(rejection) => {
                tracing::warn!(reason = rejection.label(), %rejection, "rejected a message");
            }
            Verdict::Misrouted(kind) => {
                tracing::warn!(%kind, "rejected a gossiped message of a direct-only kind");
            }
            Verdict::Taken(None) | Verdict::Stale => {}
        }
    }

    /// What became of a direct message from `from`.
    fn note_direct(&mut self, from: PeerId, outcome: DirectOutcome) {
        match outcome {
            DirectOutcome::Message(verdict) => {
                if matches!(verdict, Verdict::Rejected(_)) {
                    tracing::debug!(%from, "rejected a direct message");
                }
                self.note_verdict(&verdict);
            }
            DirectOutcome::SyncAnswered {
                answer: SyncAnswer::Sent { bundles, adverts },
                known,
            } => {
                self.gossip.direct_sent += bundles;
                tracing::debug!(%from, bundles, adverts, known, "sent a joining peer our adverts");
            }
            DirectOutcome::SyncAnswered {
                answer: SyncAnswer::TooSoon,
                ..
            } => {
                tracing::debug!(%from, "advert sync asked again too soon; not answered");
            }
            DirectOutcome::Bundle(taken) => {
                for verdict in &taken.adverts {
                    self.note_verdict(verdict);
                }
                tracing::debug!(
                    %from,
                    new = taken.kept().count(),
                    dropped = taken.dropped(),
                    "took an advert bundle"
                );
            }
        }
    }

    /// After the adapters looked again at what they serve: advertise the
    /// change, if any (a model added or removed).
    fn offer_refreshed(&mut self) {
        let infos = self.jobs.executor.infos();
        if !self.net.peer_mut().set_adapters(now(), infos.clone()) {
            return;
        }
        let models: Vec<&str> = infos
            .iter()
            .flat_map(|a| a.models.iter().map(|m| m.name.as_str()))
            .collect();
        tracing::info!(?models, "the offer changed; advertising it");
        self.emit("offer_changed", json!({ "models": models }));
    }

    fn log_summary(&self) {
        let jobs = self.net.peer().client().jobs().count();
        tracing::info!(
            peers = self.net.swarm().connected_peers().count(),
            adverts = self.net.peer().adverts().len(),
            jobs,
            rejected = self.net.peer().stats().rejected.values().sum::<u64>(),
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
            ApiQuery::Models(tx) => {
                let _ = tx.send(self.network_models());
            }
            ApiQuery::Member { peers, reply } => {
                let me = self.net.local_peer_id();
                let member = peers.into_iter().find(|p| {
                    *p == me
                        || self.net.peers().contains_key(p)
                        || NodeId::from_peer_id(p)
                            .is_ok_and(|n| self.net.peer().adverts().get(&n).is_some())
                });
                let _ = reply.send(member);
            }
            q @ (ApiQuery::Submit { .. }
            | ApiQuery::Jobs(_)
            | ApiQuery::Job { .. }
            | ApiQuery::Cancel { .. }
            | ApiQuery::Logs { .. }
            | ApiQuery::JobResult { .. }
            | ApiQuery::Receipts(_)
            | ApiQuery::Reputation(_)
            | ApiQuery::Balance { .. }
            | ApiQuery::Events(_)) => self.answer_jobs(q),
            ApiQuery::Providers { key, reply } => {
                let id = self
                    .net
                    .swarm_mut()
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
        let mut v = self.network_stats_json();
        if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), self.jobs_stats()) {
            obj.extend(extra);
        }
        v
    }

    fn network_stats_json(&self) -> Value {
        let stats = self.net.peer().stats();
        let received: BTreeMap<&str, u64> =
            stats.received.iter().map(|(k, v)| (k.name(), *v)).collect();
        let g = &self.gossip;
        json!({
            "peer_id": self.peer_id().to_string(),
            "node_id": self.me.to_hex(),
            "listen_addrs": self.net.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "uptime_secs": self.started.elapsed().as_secs(),
            "connected_peers": self.net.swarm().connected_peers().count(),
            "known_peers": self.net.peers().len(),
            "adverts": self.net.peer().adverts().len(),
            "jobs": self.net.peer().client().jobs().count(),
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
            "bootstrap": self.net.bootstrap().iter().map(|b| json!({
                "addr": b.peer().to_string(),
                "connected": b.connected(),
                "failures": b.failures(),
            })).collect::<Vec<_>>(),
            "capability_keys": self.net.provided().keys(),
        })
    }

    fn nodes_json(&self) -> Value {
        let me = self.peer_id();
        let mut ids: BTreeSet<PeerId> = self.net.peers().keys().copied().collect();
        for (node, _) in self.net.peer().adverts().iter() {
            if let Ok(p) = node.to_peer_id() {
                ids.insert(p);
            }
        }
        ids.insert(me);
        let list: Vec<Value> = ids
            .into_iter()
            .map(|pid| {
                let node = NodeId::from_peer_id(&pid).ok();
                let advert = node.and_then(|n| self.net.peer().adverts().get(&n));
                let entry = self.net.peers().get(&pid);
                let addrs: Vec<String> = if pid == me {
                    self.net.listen_addrs().iter().map(|a| a.to_string()).collect()
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
                        .then(|| self.net.swarm().behaviour().gossipsub.peer_score(&pid))
                        .flatten(),
                    "addrs": addrs,
                    "advert": advert,
                    "advert_received_at": node.and_then(|n| self.net.peer().adverts().received_at(&n)).map(|t| t.as_millis()),
                })
            })
            .collect();
        Value::Array(list)
    }

    /// Every model an unexpired advert offers, by name, with how many
    /// providers serve it.
    fn network_models(&self) -> Vec<crate::ollama_api::NetworkModel> {
        let t = now();
        let mut by_name: BTreeMap<String, crate::ollama_api::NetworkModel> = BTreeMap::new();
        for (_, ad) in self.net.peer().adverts().iter() {
            if ad.expires_at <= t {
                continue;
            }
            for m in ad.adapters.iter().flat_map(|a| a.models.iter()) {
                by_name
                    .entry(m.name.clone())
                    .or_insert_with(|| crate::ollama_api::NetworkModel {
                        info: m.clone(),
                        providers: 0,
                    })
                    .providers += 1;
            }
        }
        by_name.into_values().collect()
    }

    fn metrics_text(&self) -> String {
        let stats = self.net.peer().stats();
        let mut jobs: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (_, j) in self.net.peer().client().jobs() {
            *jobs
                .entry((j.state.as_str().to_string(), j.spec.adapter.clone()))
                .or_default() += 1;
        }
        let g = &self.gossip;
        let snapshot = Snapshot {
            peers_connected: self.net.swarm().connected_peers().count(),
            peers_known: self.net.peers().len(),
            adverts: self.net.peer().adverts().len(),
            received: stats
                .received
                .iter()
                .map(|(k, n)| (k.name().to_string(), *n))
                .collect(),
            rejected: stats
                .rejected
                .iter()
                .map(|(r, n)| (r.to_string(), *n))
                .collect(),
            jobs,
            executions_running: self.jobs.executor.running(),
            orchestrator_jobs: self.net.peer().orchestrator().map(|o| o.active_jobs()),
            gossip_published: g.published,
            gossip_published_bytes: g.published_bytes,
            gossip_received: g.received,
            gossip_received_bytes: g.received_bytes,
            direct_sent: g.direct_sent,
            direct_received: g.direct_received,
            direct_failed: g.direct_failed,
            ledger_receipts: self.jobs.ledger.len(),
            ledger_bytes: self.jobs.ledger.size_on_disk(),
            receipts_stored: self.jobs.receipts_new,
            receipts_refused: self.jobs.receipts_failed,
            balance_micro: self.jobs.ledger.balances(self.jobs.grant).balance(&self.me),
            trust: self.jobs.trust.value(&self.me),
            elected: self.jobs.elected.contains(&self.me),
        };
        self.metrics.encode(&snapshot)
    }
}

/// How often the docker adapter re-lists the images present.
const IMAGE_REFRESH: Duration = Duration::from_secs(15);

/// The provider's bid-time check: would the local adapter accept this job?
struct AdapterAdmission(BTreeMap<String, Arc<dyn Adapter>>);

impl std::fmt::Debug for AdapterAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AdapterAdmission")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Admission for AdapterAdmission {
    fn admit(&self, spec: &JobSpec) -> Result<(), AdmissionRefusal> {
        let adapter = self.0.get(&spec.adapter).ok_or_else(|| {
            AdmissionRefusal::Unsupported(format!("no `{}` adapter here", spec.adapter))
        })?;
        let params: serde_json::Value = serde_json::from_str(&spec.params).map_err(|e| {
            AdmissionRefusal::InvalidParams(format!("params are not valid JSON: {e}"))
        })?;
        adapter
            .validate(&spec.method, &params)
            .map_err(|e| match e {
                AdapterError::InvalidParams(_) => AdmissionRefusal::InvalidParams(e.to_string()),
                other => AdmissionRefusal::Unsupported(other.to_string()),
            })
    }
}

/// The adapters this node runs: wasm always; docker when enabled and the
/// daemon answers (then containers a crashed run of this node left are removed).
async fn adapters(
    me: &NodeId,
    docker: &DockerSettings,
) -> Result<Vec<Arc<dyn Adapter>>, NodeError> {
    let wasm = WasmAdapter::new().map_err(NodeError::Wasm)?;
    let mut list: Vec<Arc<dyn Adapter>> = vec![Arc::new(wasm)];
    if !docker.enabled {
        tracing::info!("docker adapter off (`[docker] enabled = false`)");
        return Ok(list);
    }
    let config = DockerConfig {
        allow_pull: docker.allow_pull,
        allowed_images: docker.allowed_images.clone(),
        allow_network: docker.allow_network,
        node: me.to_hex(),
        ..DockerConfig::default()
    };
    let adapter = match DockerAdapter::connect(config) {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(error = %e, "docker adapter off: no container runtime");
            return Ok(list);
        }
    };
    match tokio::time::timeout(DOCKER_PING_TIMEOUT, adapter.ping()).await {
        Ok(Ok(version)) => {
            match adapter.remove_orphans().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "removed containers left by an earlier run"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list containers left by an earlier run")
                }
            }
            tracing::info!(%version, "docker adapter on");
            // Keep the list of local images fresh for bid-time admission.
            if let Err(e) = adapter.refresh_images().await {
                tracing::warn!(error = %e, "cannot list docker images");
            }
            let refresher = adapter.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(IMAGE_REFRESH).await;
                    if let Err(e) = refresher.refresh_images().await {
                        tracing::debug!(error = %e, "cannot list docker images");
                    }
                }
            });
            list.push(Arc::new(adapter));
        }
        Ok(Err(e)) => tracing::info!(error = %e, "docker adapter off: the daemon did not answer"),
        Err(_) => tracing::info!("docker adapter off: the daemon did not answer within 3 s"),
    }
    Ok(list)
}

/// The llm adapter: GGUF files in `<data-dir>/models/` and `[llm] models`,
/// in this process; an Ollama server's models when `[llm] ollama_url` is
/// set. With `rescans` (a provider that looks for model changes) it is on
/// even with nothing to serve yet, and an Ollama server that does not
/// answer now is asked again at each rescan; without, it is on only when
/// it has a model to serve.
async fn llm_adapter(
    data_dir: &std::path::Path,
    settings: &LlmSettings,
    me: &PeerId,
    rescans: bool,
) -> Option<Arc<dyn Adapter>> {
    let embedded = EmbeddedBackend::new(EmbeddedConfig::new(
        Some(data_dir.join("models")),
        settings.models.clone(),
    ));
    for problem in embedded.problems() {
        tracing::warn!(%problem, "llm: a model file cannot be served");
    }
    let mut backends: Vec<Arc<dyn LlmBackend>> = vec![Arc::new(embedded)];
    if let Some(url) = &settings.ollama_url {
        match OllamaBackend::new(url) {
            Err(e) => tracing::warn!(%url, error = %e, "llm: the Ollama server is not served"),
            Ok(b) => {
                // Named in every call, so that a Modchain node at `url` of
                // this provider's own network refuses rather than loops.
                let mut b = b.with_via(me.to_string());
                if let Some(token) = &settings.ollama_token {
                    b = b.with_token(token);
                }
                let answered = tokio::time::timeout(Duration::from_secs(5), b.refresh()).await;
                let why = match answered {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("it did not answer within 5 s".to_string()),
                };
                match why {
                    None => backends.push(Arc::new(b)),
                    Some(why) if rescans => {
                        tracing::warn!(%url, error = %why, "llm: the Ollama server is not served yet; asked again at each rescan");
                        backends.push(Arc::new(b));
                    }
                    Some(why) => {
                        tracing::warn!(%url, error = %why, "llm: the Ollama server is not served")
                    }
                }
            }
        }
    }
    let adapter = LlmAdapter::new(backends);
    let served = adapter.served();
    let names: Vec<&str> = served.iter().map(|m| m.name.as_str()).collect();
    if served.is_empty() {
        if !rescans {
            tracing::info!(
                "llm adapter off: no model in <data-dir>/models, `[llm] models` or Ollama"
            );
            return None;
        }
        tracing::info!(
            "llm adapter on with no model yet: a GGUF file put in <data-dir>/models is served within `[llm] rescan_seconds`"
        );
    } else {
        tracing::info!(models = ?names, "llm adapter on");
    }
    Some(Arc::new(adapter))
}

fn hex_list(nodes: &[NodeId]) -> Vec<String> {
    nodes.iter().map(NodeId::to_hex).collect()
}

/// The job an event is about, if any.
fn event_job(event: &Event) -> Option<JobId> {
    match event {
        Event::JobAccepted { job_id, .. }
        | Event::JobRejected { job_id, .. }
        | Event::JobWaiting { job_id, .. }
        | Event::AuctionOpened { job_id, .. }
        | Event::BidReceived { job_id, .. }
        | Event::DeclineReceived { job_id, .. }
        | Event::Awarded { job_id, .. }
        | Event::ProviderFailed { job_id, .. }
        | Event::JobEnded { job_id, .. }
        | Event::BidSent { job_id, .. }
        | Event::BidWithheld { job_id, .. }
        | Event::ExecutionStarted { job_id, .. }
        | Event::ExecutionFinished { job_id, .. }
        | Event::StateChanged { job_id, .. }
        | Event::ResultReceived { job_id, .. }
        | Event::ResultRejected { job_id, .. }
        | Event::Resubmitted { job_id, .. }
        | Event::LogReceived { job_id, .. }
        | Event::ReceiptStored { job_id, .. } => Some(*job_id),
        Event::ChunkReceived(c) => Some(c.job_id),
        _ => None,
    }
}

/// An event's name and fields for the JSON event stream.
fn event_fields(event: &Event) -> (&'static str, Value) {
    match event {
        Event::JobAccepted { job_id, client } => (
            "job_accepted",
            json!({ "job_id": job_id.to_hex(), "client": client.to_hex() }),
        ),
        Event::JobRejected { job_id, reason } => (
            "job_rejected",
            json!({ "job_id": job_id.to_hex(), "reason": reason }),
        ),
        Event::JobWaiting { job_id, reason } => (
            "job_waiting",
            json!({ "job_id": job_id.to_hex(), "reason": reason }),
        ),
        Event::AuctionOpened {
            job_id,
            attempt,
            providers,
        } => (
            "auction_opened",
            json!({ "job_id": job_id.to_hex(), "attempt": attempt, "providers": hex_list(providers) }),
        ),
        Event::BidReceived {
            job_id,
            provider,
            max_total,
        } => (
            "bid_received",
            json!({ "job_id": job_id.to_hex(), "provider": provider.to_hex(), "max_total": max_total.0 }),
        ),
        Event::DeclineReceived {
            job_id,
            provider,
            reason,
        } => (
            "decline_received",
            json!({ "job_id": job_id.to_hex(), "provider": provider.to_hex(), "reason": reason.to_string() }),
        ),
        Event::Awarded {
            job_id,
            attempt,
            provider,
            max_total,
            bids,
            auction_ms,
        } => (
            "awarded",
            json!({
                "job_id": job_id.to_hex(), "attempt": attempt, "provider": provider.to_hex(),
                "max_total": max_total.0, "bids": bids, "auction_ms": auction_ms,
            }),
        ),
        Event::ProviderFailed {
            job_id,
            provider,
            reason,
        } => (
            "provider_failed",
            json!({ "job_id": job_id.to_hex(), "provider": provider.to_hex(), "reason": reason.as_str() }),
        ),
        Event::JobEnded {
            job_id,
            state,
            detail,
        } => (
            "job_ended",
            json!({ "job_id": job_id.to_hex(), "state": state.as_str(), "detail": detail }),
        ),
        Event::BidSent {
            job_id,
            orchestrator,
            max_total,
        } => (
            "bid_sent",
            json!({ "job_id": job_id.to_hex(), "orchestrator": orchestrator.to_hex(), "max_total": max_total.0 }),
        ),
        Event::BidWithheld { job_id, reason } => (
            "bid_withheld",
            json!({ "job_id": job_id.to_hex(), "reason": reason.to_string() }),
        ),
        Event::ExecutionStarted { job_id, client } => (
            "execution_started",
            json!({ "job_id": job_id.to_hex(), "client": client.to_hex() }),
        ),
        Event::ExecutionFinished {
            job_id,
            exit,
            wall_ms,
        } => (
            "execution_finished",
            json!({ "job_id": job_id.to_hex(), "exit_code": exit.code(), "exit": exit_text(exit), "wall_ms": wall_ms }),
        ),
        Event::CapacityChanged => ("capacity_changed", json!({})),
        Event::StateChanged {
            job_id,
            state,
            detail,
        } => (
            "state_changed",
            json!({ "job_id": job_id.to_hex(), "state": state.as_str(), "detail": detail }),
        ),
        Event::ResultReceived {
            job_id,
            provider,
            exit,
        } => (
            "result_received",
            json!({ "job_id": job_id.to_hex(), "provider": provider.to_hex(), "exit_code": exit.code(), "exit": exit_text(exit) }),
        ),
        Event::ResultRejected { job_id, reason } => (
            "result_rejected",
            json!({ "job_id": job_id.to_hex(), "reason": reason }),
        ),
        Event::Resubmitted {
            job_id,
            orchestrator,
        } => (
            "resubmitted",
            json!({ "job_id": job_id.to_hex(), "orchestrator": orchestrator.to_hex() }),
        ),
        Event::LogReceived {
            job_id,
            seq,
            stream,
            data,
        } => (
            "log_received",
            json!({
                "job_id": job_id.to_hex(), "seq": seq,
                "stream": match stream { modchain_protocol::job::LogStream::Stdout => "stdout", modchain_protocol::job::LogStream::Stderr => "stderr" },
                "text": String::from_utf8_lossy(data),
            }),
        ),
        Event::ChunkReceived(c) => (
            "chunk_received",
            json!({ "job_id": c.job_id.to_hex(), "digest": c.digest.to_hex(), "offset": c.offset, "bytes": c.data.len(), "total_size": c.total_size }),
        ),
        Event::ReceiptStored { receipt_id, job_id } => (
            "receipt_stored",
            json!({ "receipt_id": receipt_id.to_hex(), "job_id": job_id.to_hex() }),
        ),
        // A kind of event this build does not know yet: named, not dropped,
        // so an observer sees something happened.
        other => ("event", json!({ "debug": format!("{other:?}") })),
    }
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Executed(_) => "executed",
        Outcome::ProviderFailed(_) => "provider_failed",
    }
}

/// A receipt as the API and the event stream show it.
pub fn receipt_json(r: &SignedReceipt) -> Value {
    serde_json::to_value(ReceiptView::from(r)).unwrap_or(Value::Null)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Node {
    /// At shutdown: stops the jobs still running and waits a little for the
    /// adapters to clean up (containers removed), so nothing is left behind.
    async fn stop_executions(&mut self) {
        if self.jobs.executor.running() == 0 {
            return;
        }
        tracing::info!(
            running = self.jobs.executor.running(),
            "stopping the jobs still running"
        );
        self.jobs.executor.stop_all();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while self.jobs.executor.running() > 0 {
            match tokio::time::timeout_at(deadline, self.jobs.executor_events.recv()).await {
                Ok(Some(ExecutorEvent::Finished(f))) => self.jobs.executor.forget(&f.job_id),
                Ok(Some(ExecutorEvent::Output { .. })) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// One line on the event stream.
    fn emit(&self, name: &str, fields: Value) {
        if self.jobs.events.receiver_count() == 0 {
            return;
        }
        let mut line = json!({
            "at_ms": now().as_millis(),
            "node": self.me.short(),
            "event": name,
        });
        if let (Some(obj), Value::Object(extra)) = (line.as_object_mut(), fields) {
            obj.extend(extra);
        }
        let _ = self.jobs.events.send(line.to_string());
    }

    fn store_receipt(&mut self, r: &SignedReceipt) {
        self.jobs.receipts_seen += 1;
        match self.jobs.ledger.append(r) {
            Ok(Appended::New) => {
                self.jobs.receipts_new += 1;
                let rec = &r.receipt;
                tracing::info!(
                    receipt = %r.id().to_hex(),
                    job = %rec.job_id.to_hex(),
                    outcome = outcome_name(&rec.outcome),
                    price = rec.price.0,
                    "receipt stored"
                );
                let mut fields = receipt_json(r);
                if let Value::Object(o) = &mut fields {
                    o.insert("new".into(), Value::Bool(true));
                }
                self.emit("receipt_stored", fields);
                if self.jobs.reputation_due.is_none() {
                    self.jobs.reputation_due = Some(Instant::now() + REPUTATION_DEBOUNCE);
                }
            }
            Ok(Appended::Duplicate) => {}
            Err(e) => {
                self.jobs.receipts_failed += 1;
                tracing::warn!(receipt = %r.id().to_hex(), error = %e, "receipt not stored");
            }
        }
    }

    fn recompute_reputation(&mut self) {
        self.jobs.reputation_due = None;
        let trust = self
            .jobs
            .ledger
            .trust(&self.jobs.pretrusted, &TrustConfig::default());
        let table: ReputationTable = trust
            .iter()
            .map(|(n, _)| (n, trust.reputation(&n)))
            .collect();
        tracing::debug!(nodes = table.len(), "reputation recomputed from the ledger");
        self.net.peer_mut().set_reputation(table);
        self.jobs.trust = trust;
    }

    /// Every half second: debounced reputation, output retention, election changes.
    fn on_tick(&mut self) {
        let instant = Instant::now();
        if self.jobs.reputation_due.is_some_and(|t| t <= instant) {
            self.recompute_reputation();
            self.drain_actions();
        }
        let expired: Vec<JobId> = self
            .jobs
            .served
            .iter()
            .filter(|(_, (until, _))| *until <= instant)
            .map(|(j, _)| *j)
            .collect();
        for job in expired {
            self.jobs.served.remove(&job);
            self.forget_work(&job);
        }
        let (again, abandoned) = self.jobs.results.stalled(FETCH_QUIET);
        for (job, digest, offsets) in again {
            tracing::info!(job = %job.to_hex(), "output fetch went quiet; asking again");
            for offset in offsets {
                self.net
                    .peer_mut()
                    .fetch_output(now(), &job, &digest, offset);
            }
        }
        for (job, name) in abandoned {
            tracing::warn!(job = %job.to_hex(), %name, "output fetch abandoned: the provider stopped answering");
            self.emit(
                "output_rejected",
                json!({ "job_id": job.to_hex(), "name": name, "reason": "the provider stopped answering" }),
            );
        }
        self.drain_actions();
        let elected = self.net.peer_mut().elected(now());
        if elected != self.jobs.elected {
            tracing::info!(orchestrators = ?elected.iter().map(NodeId::short).collect::<Vec<_>>(), "elected orchestrators");
            self.emit(
                "election",
                json!({ "elected": hex_list(&elected), "me": elected.contains(&self.me) }),
            );
            self.jobs.elected = elected;
        }
    }

    /// Removes a finished job's work directory and log buffer.
    fn forget_work(&mut self, job: &JobId) {
        self.jobs.executor.drop_log(job);
        if let Some(dir) = self.jobs.executor.output_dir(job).parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    fn on_executor_event(&mut self, ev: ExecutorEvent) {
        let t = now();
        match ev {
            ExecutorEvent::Output {
                job_id,
                stream,
                data,
            } => self.net.peer_mut().log_output(t, job_id, stream, &data),
            ExecutorEvent::Finished(Finished { job_id, report }) => {
                let dir = self.jobs.executor.output_dir(&job_id);
                let files: HashMap<Digest, PathBuf> = report
                    .outputs
                    .iter()
                    .filter(|o| o.inline.is_none())
                    .filter_map(|o| {
                        crate::outputs::safe_name(&o.name)
                            .ok()
                            .map(|rel| (o.digest, dir.join(rel)))
                    })
                    .collect();
                self.jobs.executor.forget(&job_id);
                if files.is_empty() {
                    self.forget_work(&job_id);
                } else {
                    let until = Instant::now() + Duration::from_millis(OUTPUT_RETENTION_MS);
                    self.jobs.served.insert(job_id, (until, files));
                }
                self.net.peer_mut().execution_finished(t, job_id, report);
            }
        }
    }

    /// Provider: answers a client's fetch with a chunk of an output file.
    fn serve_output(&mut self, t: Timestamp, to: NodeId, request: FetchOutput) {
        let Some(path) = self
            .jobs
            .served
            .get(&request.job_id)
            .and_then(|(_, files)| files.get(&request.digest))
            .cloned()
        else {
            tracing::debug!(job = %request.job_id, "fetch for an output we no longer hold");
            return;
        };
        let read = || -> std::io::Result<(u64, Vec<u8>)> {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = std::fs::File::open(&path)?;
            let total = f.metadata()?.len();
            let want = u64::from(request.length)
                .min(limits::MAX_OUTPUT_CHUNK_BYTES as u64)
                .min(total.saturating_sub(request.offset));
            f.seek(SeekFrom::Start(request.offset))?;
            let mut data = vec![0u8; want as usize];
            f.read_exact(&mut data)?;
            Ok((total, data))
        };
        match read() {
            Ok((total_size, data)) => {
                let chunk = OutputChunk {
                    job_id: request.job_id,
                    digest: request.digest,
                    offset: request.offset,
                    total_size,
                    data,
                };
                let msg = Envelope::seal(self.net.peer().key(), t, Message::Chunk(chunk));
                self.net.send(t, to, msg);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read an output to serve")
            }
        }
    }

    fn push_job_log(&mut self, job_id: JobId, data: &[u8]) {
        let buf = self.jobs.job_logs.entry(job_id).or_default();
        buf.extend_from_slice(data);
        if buf.len() > JOB_LOG_BYTES {
            let cut = buf.len() - JOB_LOG_BYTES;
            buf.drain(..cut);
        }
        let _ = self.jobs.log_feed.send(LogFeed {
            job_id,
            data: Some(data.to_vec()),
        });
    }

    fn on_event(&mut self, t: Timestamp, event: Event) {
        self.metrics.on_event(&event);
        let (name, fields) = event_fields(&event);
        match &event {
            Event::LogReceived { .. } | Event::ChunkReceived(_) | Event::CapacityChanged => {
                tracing::debug!(event = name, %fields, "protocol event")
            }
            _ => tracing::info!(event = name, %fields, "protocol event"),
        }
        self.emit(name, fields);
        match event {
            Event::LogReceived { job_id, data, .. } => self.push_job_log(job_id, &data),
            Event::ResultReceived { job_id, .. } => self.take_result(t, job_id),
            Event::ChunkReceived(chunk) => self.take_chunk(t, &chunk),
            Event::StateChanged { job_id, state, .. } if state.is_terminal() => {
                let _ = self.jobs.log_feed.send(LogFeed { job_id, data: None });
            }
            _ => {}
        }
    }

    /// Client: a result arrived. Inline outputs are written at once; the
    /// others are fetched from the provider.
    fn take_result(&mut self, t: Timestamp, job_id: JobId) {
        let Some(result) = self.net.peer().job(&job_id).and_then(|j| j.result.clone()) else {
            return;
        };
        if !self.jobs.job_logs.contains_key(&job_id) {
            // No live output came: the result's logs are what there is.
            let mut text = result.stdout.clone();
            text.extend_from_slice(&result.stderr);
            if !text.is_empty() {
                self.push_job_log(job_id, &text);
            }
        }
        for file in &result.outputs {
            match &file.inline {
                Some(data) => match self.jobs.results.store_inline(job_id, file, data) {
                    Ok(path) => {
                        tracing::info!(job = %job_id.to_hex(), path = %path.display(), "output stored")
                    }
                    Err(e) => {
                        tracing::warn!(job = %job_id.to_hex(), error = %e, "output not stored")
                    }
                },
                None => match self.jobs.results.begin_fetch(job_id, file) {
                    Ok(offsets) => {
                        if !offsets.is_empty() {
                            tracing::info!(job = %job_id.to_hex(), name = %file.name, size = file.size, "fetching an output from the provider");
                        }
                        for offset in offsets {
                            self.net
                                .peer_mut()
                                .fetch_output(t, &job_id, &file.digest, offset);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(job = %job_id.to_hex(), error = %e, "output not fetched")
                    }
                },
            }
        }
    }

    fn take_chunk(&mut self, t: Timestamp, chunk: &OutputChunk) {
        let job = chunk.job_id;
        match self.jobs.results.on_chunk(chunk) {
            ChunkOutcome::Next(offsets) => {
                for offset in offsets {
                    self.net
                        .peer_mut()
                        .fetch_output(t, &job, &chunk.digest, offset);
                }
            }
            ChunkOutcome::Complete { name, path } => {
                tracing::info!(job = %job.to_hex(), path = %path.display(), "output fetched and verified");
                self.emit(
                    "output_stored",
                    json!({ "job_id": job.to_hex(), "name": name, "path": path }),
                );
            }
            ChunkOutcome::Mismatch { name } => {
                tracing::warn!(job = %job.to_hex(), %name, "fetched output does not match its signed digest; deleted");
                self.emit(
                    "output_rejected",
                    json!({ "job_id": job.to_hex(), "name": name, "reason": "digest mismatch" }),
                );
            }
            ChunkOutcome::Failed { name, error } => {
                tracing::warn!(job = %job.to_hex(), %name, %error, "output fetch abandoned");
                self.emit(
                    "output_rejected",
                    json!({ "job_id": job.to_hex(), "name": name, "reason": error }),
                );
            }
            ChunkOutcome::Ignored => {}
        }
    }

    /// Client: checks that some advert offers the adapter (and the model a
    /// job asks for), runs the local adapter's shape checks if we have it,
    /// then signs and submits.
    fn submit(&mut self, spec: JobSpec) -> Result<JobId, Refusal> {
        let t = now();
        let offered: BTreeSet<String> = self
            .net
            .peer()
            .adverts()
            .iter()
            .filter(|(_, ad)| ad.expires_at > t)
            .flat_map(|(_, ad)| ad.adapters.iter().map(|a| a.name.clone()))
            .collect();
        if !offered.contains(&spec.adapter) {
            let list = if offered.is_empty() {
                "none yet (no provider adverts seen; is the node connected?)".to_string()
            } else {
                offered.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            return Err(Refusal::new(
                400,
                format!(
                    "no provider offers the adapter `{}`; the network offers: {list}",
                    spec.adapter
                ),
            ));
        }
        if let Some(model) = &spec.requirements.model {
            // Providers that offer the adapter but no model (a provider
            // waiting for its first file) cannot take it either.
            let models: BTreeSet<String> = self
                .net
                .peer()
                .adverts()
                .iter()
                .filter(|(_, ad)| ad.expires_at > t)
                .flat_map(|(_, ad)| ad.adapters.iter())
                .filter(|a| a.name == spec.adapter)
                .flat_map(|a| a.models.iter().map(|m| m.name.clone()))
                .collect();
            if !models.contains(model) {
                let list = if models.is_empty() {
                    "none".to_string()
                } else {
                    models.into_iter().collect::<Vec<_>>().join(", ")
                };
                return Err(Refusal::new(
                    400,
                    format!(
                        "no provider offers the model `{model}` with the `{}` adapter; the network offers: {list}",
                        spec.adapter
                    ),
                ));
            }
        }
        if let Some(adapter) = self.jobs.executor.adapter(&spec.adapter) {
            let params: Value = serde_json::from_str(&spec.params)
                .map_err(|e| Refusal::new(400, format!("params are not valid JSON: {e}")))?;
            // Shape only: the job may be for something other providers
            // hold (a model this node does not).
            adapter
                .check_params(&spec.method, &params)
                .map_err(|e| Refusal::new(400, e.to_string()))?;
        }
        let id = self.net.peer_mut().submit(t, spec).map_err(|e| match e {
            modchain_protocol::client::SubmitError::NoOrchestrator => {
                Refusal::new(503, e.to_string())
            }
            other => Refusal::new(400, other.to_string()),
        })?;
        tracing::info!(job = %id.to_hex(), "job submitted");
        self.emit("job_submitted", json!({ "job_id": id.to_hex() }));
        Ok(id)
    }

    fn outputs_view(&self, id: &JobId, job: &ClientJob) -> Vec<OutputFile> {
        let stored = self.jobs.results.stored(id);
        job.result
            .as_ref()
            .map(|r| {
                r.outputs
                    .iter()
                    .map(|o| OutputFile {
                        name: o.name.clone(),
                        size: o.size,
                        digest: o.digest.to_hex(),
                        inline: o.inline.is_some(),
                        path: stored
                            .and_then(|s| s.get(&o.name))
                            .map(|p| p.to_string_lossy().into_owned()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn job_summary(&self, id: &JobId, job: &ClientJob) -> JobSummary {
        JobSummary {
            job_id: id.to_hex(),
            state: job.state.as_str().into(),
            detail: job.detail.clone(),
            adapter: job.spec.adapter.clone(),
            method: job.spec.method.clone(),
            submitted_at_ms: job.submitted_at.as_millis(),
            orchestrator: job.orchestrator_id().map(|n| n.to_hex()),
            provider: job.provider().map(|n| n.to_hex()),
            price: job.receipt.as_ref().map(|r| r.receipt.price.0),
            receipt_id: job.receipt.as_ref().map(|r| r.id().to_hex()),
            exit_code: job.result.as_ref().map(|r| r.exit.code()),
            exit: job.result.as_ref().map(|r| exit_text(&r.exit)),
            outputs_pending: self.jobs.results.pending(id),
            outputs: self.outputs_view(id, job),
        }
    }

    fn job_detail(&self, id: &JobId, job: &ClientJob) -> JobDetail {
        JobDetail {
            summary: self.job_summary(id, job),
            history: job
                .history
                .iter()
                .map(|(at, s)| HistoryEntry {
                    at_ms: at.as_millis(),
                    state: s.as_str().into(),
                })
                .collect(),
            max_price: job.spec.max_price.0,
            timeout_ms: job.spec.timeout_ms,
            stdout: job.result.as_ref().map(|r| lossy(&r.stdout)),
            stderr: job.result.as_ref().map(|r| lossy(&r.stderr)),
            results_dir: self.jobs.results.job_dir(id).to_string_lossy().into_owned(),
        }
    }

    fn result_view(&self, id: &JobId, job: &ClientJob) -> Option<JobResultView> {
        let r = job.result.as_ref()?;
        Some(JobResultView {
            job_id: id.to_hex(),
            state: job.state.as_str().into(),
            provider: job.provider().map(|n| n.to_hex()),
            attempt: r.attempt,
            exit_code: r.exit.code(),
            exit: exit_text(&r.exit),
            stdout: lossy(&r.stdout),
            stderr: lossy(&r.stderr),
            usage: UsageView {
                wall_ms: r.usage.wall_ms,
                cpu_ms: r.usage.cpu_ms,
                peak_memory_bytes: r.usage.peak_memory_bytes,
                tokens: r.usage.tokens,
            },
            finished_at_ms: r.finished_at.as_millis(),
            result_digest: r.digest().to_hex(),
            receipt_id: job.receipt.as_ref().map(|x| x.id().to_hex()),
            price: job.receipt.as_ref().map(|x| x.receipt.price.0),
            results_dir: self.jobs.results.job_dir(id).to_string_lossy().into_owned(),
            outputs_pending: self.jobs.results.pending(id),
            outputs: self.outputs_view(id, job),
        })
    }

    fn answer_jobs(&mut self, q: ApiQuery) {
        match q {
            ApiQuery::Submit { spec, reply } => {
                let r = self.submit(spec);
                self.drain_actions();
                let _ = reply.send(r);
            }
            ApiQuery::Jobs(reply) => {
                let mut jobs: Vec<(&JobId, &ClientJob)> = self.net.peer().client().jobs().collect();
                jobs.sort_by_key(|(id, j)| (j.submitted_at, **id));
                let list = jobs
                    .into_iter()
                    .map(|(id, j)| self.job_summary(id, j))
                    .collect();
                let _ = reply.send(list);
            }
            ApiQuery::Job { id, reply } => {
                let _ = reply.send(self.net.peer().job(&id).map(|j| self.job_detail(&id, j)));
            }
            ApiQuery::Cancel { id, reply } => {
                let r = match self.net.peer().job(&id).map(|j| j.state) {
                    None => Err(Refusal::new(404, format!("no job {id} on this node"))),
                    Some(s) if s.is_terminal() => Err(Refusal::new(
                        409,
                        format!("job {id} already ended ({})", s.as_str()),
                    )),
                    Some(_) => {
                        self.net
                            .peer_mut()
                            .cancel(now(), &id, "cancelled by its client");
                        self.drain_actions();
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            ApiQuery::Logs { id, reply } => {
                let view = self.net.peer().job(&id).map(|j| LogView {
                    text: self.jobs.job_logs.get(&id).cloned().unwrap_or_default(),
                    ended: j.state.is_terminal(),
                    feed: self.jobs.log_feed.subscribe(),
                });
                let _ = reply.send(view);
            }
            ApiQuery::JobResult { id, reply } => {
                let _ = reply.send(self.net.peer().job(&id).map(|j| self.result_view(&id, j)));
            }
            ApiQuery::Receipts(reply) => {
                let (list, damaged) = self.jobs.ledger.receipts();
                if damaged > 0 {
                    tracing::warn!(
                        damaged,
                        "ledger entries that failed to decode or verify were skipped"
                    );
                }
                let _ = reply.send(list.iter().map(ReceiptView::from).collect());
            }
            ApiQuery::Reputation(reply) => {
                let trust = &self.jobs.trust;
                let mut list: Vec<(NodeId, f64)> = trust.iter().collect();
                list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let v = list
                    .into_iter()
                    .map(|(n, value)| ReputationEntry {
                        node_id: n.to_hex(),
                        peer_id: n.to_peer_id().ok().map(|p| p.to_string()),
                        trust: value,
                        reputation: trust.reputation(&n),
                        pretrusted: self.jobs.pretrusted.contains(&n),
                    })
                    .collect();
                let _ = reply.send(v);
            }
            ApiQuery::Balance { node, reply } => {
                let node = node.unwrap_or(self.me);
                let micro = self.jobs.ledger.balances(self.jobs.grant).balance(&node);
                let micro =
                    i64::try_from(micro).unwrap_or(if micro < 0 { i64::MIN } else { i64::MAX });
                let _ = reply.send(BalanceView {
                    node_id: node.to_hex(),
                    balance_micro: micro,
                    balance: micro as f64 / 1_000_000.0,
                });
            }
            ApiQuery::Events(reply) => {
                let _ = reply.send(self.jobs.events.subscribe());
            }
            other => tracing::debug!(?other, "query not for jobs"),
        }
    }

    fn jobs_stats(&self) -> Value {
        let mut states: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, j) in self.net.peer().client().jobs() {
            *states.entry(j.state.as_str()).or_default() += 1;
        }
        let epoch_ms = self.net.peer().election().config().epoch_ms.max(1);
        json!({
            "elected": hex_list(&self.jobs.elected),
            "epoch": now().as_millis() / epoch_ms,
            "orchestrator_candidate": self.net.peer().orchestrator().is_some(),
            "client_jobs": states,
            "executions_running": self.jobs.executor.running(),
            "provider": self.jobs.provider,
            "adapters": self.jobs.executor.infos().iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
            "orchestrator_active_jobs": self.net.peer().orchestrator().map(|o| o.active_jobs()),
            "receipts": {
                "seen": self.jobs.receipts_seen,
                "stored": self.jobs.receipts_new,
                "refused": self.jobs.receipts_failed,
            },
            "ledger": {
                "receipts": self.jobs.ledger.len(),
                "bytes_on_disk": self.jobs.ledger.size_on_disk(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modchain_protocol::job::{ExitStatus, JobState, Usage};
    use modchain_protocol::receipt::{FailureReason, Receipt};

    fn receipt(outcome: Outcome) -> SignedReceipt {
        let (c, p, o) = (
            Keypair::from_seed(1),
            Keypair::from_seed(2),
            Keypair::from_seed(3),
        );
        let r = Receipt {
            job_id: Digest::of(b"job"),
            attempt: 1,
            client: c.node_id(),
            provider: p.node_id(),
            orchestrator: o.node_id(),
            price: Credits(1234),
            usage: Usage::default(),
            outcome,
            result_digest: None,
            issued_at: Timestamp(1_700_000_000_000),
        };
        SignedReceipt {
            client_signature: Some(r.sign(&c)),
            provider_signature: Some(r.sign(&p)),
            orchestrator_signature: None,
            receipt: r,
        }
    }

    #[test]
    fn receipts_show_parties_as_hex_and_the_outcome_by_name() {
        let r = receipt(Outcome::Executed(ExitStatus::Exited(3)));
        let v = receipt_json(&r);
        assert_eq!(v["receipt_id"], json!(r.id().to_hex()));
        assert_eq!(v["client"], json!(Keypair::from_seed(1).node_id().to_hex()));
        assert_eq!(v["outcome"], json!("executed"));
        assert_eq!(v["exit_code"], json!(3));
        assert_eq!(v["price"], json!(1234));
        assert_eq!(v["issued_at_ms"], json!(1_700_000_000_000u64));
        let f = receipt_json(&receipt(Outcome::ProviderFailed(
            FailureReason::MissedDeadline,
        )));
        assert_eq!(f["outcome"], json!("provider_failed"));
        assert!(f["exit_code"].is_null());
        assert_eq!(f["failure"], json!("missed its deadline"));
    }

    #[test]
    fn events_have_snake_case_names_and_hex_ids() {
        let job = Digest::of(b"j");
        let (name, fields) = event_fields(&Event::StateChanged {
            job_id: job,
            state: JobState::Running,
            detail: "running on x".into(),
        });
        assert_eq!(name, "state_changed");
        assert_eq!(fields["job_id"], json!(job.to_hex()));
        assert_eq!(fields["state"], json!("running"));
        let (name, fields) = event_fields(&Event::ExecutionFinished {
            job_id: job,
            exit: ExitStatus::OutOfMemory,
            wall_ms: 5,
        });
        assert_eq!(name, "execution_finished");
        assert_eq!(fields["exit_code"], json!(137));
        assert_eq!(fields["exit"], json!("killed: over its memory limit"));
    }
}
