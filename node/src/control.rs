//! What the local API asks of the running node, and what it is answered:
//! the queries, the typed refusals (the HTTP edge picks a status for each),
//! live log feeds, the network's model list and the defaults a request
//! falls back on. The node's core and the HTTP modules both import this; it
//! imports neither.

use crate::views::{
    BalanceView, JobDetail, JobResultView, JobSummary, ReceiptView, ReputationEntry,
};
use libp2p::PeerId;
use modchain_protocol::{JobId, JobSpec, ModelInfo, NodeId};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::{broadcast, oneshot};

// What a request falls back on where it says nothing: the REST API, the
// Ollama-compatible API and the MCP server all build jobs from these.
/// The most a job pays, in micro-credits, when its request does not say.
pub const DEFAULT_MAX_PRICE: u64 = 10_000_000;
/// How long a submitted job may run when its request does not say.
pub const DEFAULT_JOB_TIMEOUT_MS: u64 = 60_000;
/// Cores a job asks for when its request does not say.
pub const DEFAULT_CORES: u32 = 1;
/// Memory a job asks for when its request does not say.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
/// How long a job may wait for a provider when its request does not say.
pub const DEFAULT_START_WITHIN_MS: u64 = 10 * 60_000;

/// Why the node refused a request, in the network's words. Where HTTP lives
/// (`api`), each becomes a status; the node's core never picks one.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Refusal {
    /// The request itself is wrong (bad parameters, a spec the protocol
    /// refuses): the caller must change it.
    #[error("{0}")]
    Invalid(String),
    /// No live advert offers what the job needs (its adapter, its model):
    /// nothing on the network could run it now.
    #[error("{0}")]
    NotOffered(String),
    /// No elected orchestrator is known yet to take the job: try again soon.
    #[error("{0}")]
    NoOrchestrator(String),
    /// This node knows no such job.
    #[error("{0}")]
    UnknownJob(String),
    /// The job has ended already; there is nothing left to do to it.
    #[error("{0}")]
    AlreadyEnded(String),
}

/// A model the network offers, with how many providers serve it.
#[derive(Clone, Debug)]
pub struct NetworkModel {
    pub info: ModelInfo,
    pub providers: usize,
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
    Models(oneshot::Sender<Vec<NetworkModel>>),
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
