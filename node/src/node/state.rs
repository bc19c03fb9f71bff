//! What the node is made of: its options, its errors, the `Node` itself
//! and the job state it keeps beside the protocol's machines, and the
//! constants its parts share. Every other module of `node/` imports this
//! one and nothing imports them back.

use crate::config::{DockerSettings, LimitsSettings, LlmSettings, RelaySettings, WasmSettings};
use crate::control::LogFeed;
use crate::executor::{EventQueue, Executor};
use crate::ledger::{Ledger, LedgerError, LedgerWorker, Stored, Totals};
use crate::metrics::NodeMetrics;
use crate::outputs::ResultStore;
use libp2p::{Multiaddr, PeerId, kad};
use modchain_adapters::AdapterError;
use modchain_net::BootstrapAddr;
use modchain_net::SwarmDriver;
use modchain_net::wire::NetworkError;
use modchain_protocol::{CapabilityAdvert, Credits, Digest, JobId, NodeId, Timestamp, Trust};
use serde_json::Value;
use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::oneshot;
use tokio::sync::{broadcast, mpsc};

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
    pub wasm: WasmSettings,
    pub relay: RelaySettings,
    /// Credits every node starts with, in micro-credits (balances only).
    pub grant: Credits,
    /// The caps on what peers and jobs can make the node hold.
    pub limits: LimitsSettings,
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

/// Live output kept per client job for the API, from the end.
pub(super) const JOB_LOG_BYTES: usize = 1 << 20;
/// Events waiting for slow observers before they miss some.
pub(super) const EVENT_BUFFER: usize = 4096;
/// How long running jobs get to stop at shutdown.
pub(super) const SHUTDOWN_WAIT: Duration = Duration::from_secs(4);
/// An output fetch with no answer for this long is asked again.
pub(super) const FETCH_QUIET: Duration = Duration::from_secs(10);
/// How long the docker daemon gets to answer at start-up.
pub(super) const DOCKER_PING_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, Default)]
pub(super) struct GossipCounters {
    pub(super) published: u64,
    pub(super) published_bytes: u64,
    pub(super) received: u64,
    pub(super) received_bytes: u64,
    pub(super) rejected: u64,
    pub(super) direct_sent: u64,
    pub(super) direct_received: u64,
    pub(super) direct_failed: u64,
}

/// What this node did for peers behind NATs, and what reaching it took.
#[derive(Clone, Debug, Default)]
pub(super) struct NatCounters {
    /// What our relay server did, by kind (`RelayService::as_str`).
    pub(super) relay_served: BTreeMap<&'static str, u64>,
    /// Our reservations on relays that ended.
    pub(super) reservations_lost: u64,
}

/// What caps, quotas and rate limits dropped or evicted, for `/metrics`.
#[derive(Clone, Debug, Default)]
pub(super) struct LimitCounters {
    pub(super) dropped: BTreeMap<&'static str, u64>,
    pub(super) evicted: BTreeMap<&'static str, u64>,
}

impl LimitCounters {
    pub(super) fn drop(&mut self, reason: &'static str, n: u64) {
        *self.dropped.entry(reason).or_default() += n;
    }

    pub(super) fn evict(&mut self, table: &'static str, n: u64) {
        *self.evicted.entry(table).or_default() += n;
    }
}

pub struct Node {
    /// The swarm and the protocol peer, run one over the other.
    pub(super) net: SwarmDriver,
    pub(super) me: NodeId,
    pub(super) metrics: NodeMetrics,
    pub(super) started: Instant,
    pub(super) gossip: GossipCounters,
    pub(super) limits_seen: LimitCounters,
    pub(super) nat_seen: NatCounters,
    pub(super) options: NodeOptions,
    pub(super) provider_lookups: HashMap<kad::QueryId, ProviderLookup>,
    pub(super) jobs: JobDriver,
    /// Warns (once per version) when most peers speak a newer protocol.
    pub(super) protocol_watch: super::versions::ProtocolWatch,
    /// Calls for bids held while their wasm modules are checked off the loop.
    pub(super) wasm_gate: super::adapters::WasmGate,
}

/// Everything about jobs the node keeps beside the protocol's machines:
/// the executor (provider), served outputs, stored results (client), the
/// ledger, reputation, and the event feeds for observers.
pub(super) struct JobDriver {
    pub(super) executor: Executor,
    pub(super) executor_events: EventQueue,
    pub(super) provider: bool,
    /// Provider: output files of finished jobs by digest, until retention ends.
    pub(super) served: HashMap<JobId, (Instant, HashMap<Digest, PathBuf>)>,
    pub(super) results: ResultStore,
    /// For reads (sizes, listings); writes go through `ledger_worker`.
    pub(super) ledger: Ledger,
    /// Verifies and stores receipts on the blocking pool.
    pub(super) ledger_worker: LedgerWorker,
    /// What the ledger worker did with each receipt.
    pub(super) stored: mpsc::Receiver<Stored>,
    /// Balances and the trust graph, kept up to date receipt by receipt.
    pub(super) totals: Totals,
    pub(super) pretrusted: Vec<NodeId>,
    pub(super) trust: Trust,
    pub(super) reputation_due: Option<Instant>,
    /// A reputation computation runs on the blocking pool.
    pub(super) reputation_running: bool,
    pub(super) reputation_tx: mpsc::Sender<Trust>,
    pub(super) reputation_rx: mpsc::Receiver<Trust>,
    pub(super) receipts_seen: u64,
    pub(super) receipts_new: u64,
    pub(super) receipts_failed: u64,
    /// Receipts dropped because the ledger worker's queue was full.
    pub(super) receipts_backlogged: u64,
    /// Receipts refused because a signer was over its quota.
    pub(super) receipts_over_quota: u64,
    /// Client: live output received per job.
    pub(super) job_logs: HashMap<JobId, Vec<u8>>,
    /// The jobs in `job_logs`, first come first.
    pub(super) job_log_order: std::collections::VecDeque<JobId>,
    pub(super) log_feed: broadcast::Sender<LogFeed>,
    pub(super) events: broadcast::Sender<String>,
    pub(super) elected: Vec<NodeId>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("me", &self.me).finish()
    }
}

pub(super) fn now() -> Timestamp {
    Timestamp::now_wall()
}

/// A DHT provider lookup the API is waiting on.
#[derive(Debug)]
pub(super) struct ProviderLookup {
    pub(super) key: String,
    pub(super) reply: oneshot::Sender<Value>,
    pub(super) found: BTreeSet<PeerId>,
}
