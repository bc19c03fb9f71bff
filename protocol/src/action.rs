//! What the state machines ask their driver to do, and what they report.

use crate::auction::DeclineReason;
use crate::digest::{JobId, ReceiptId};
use crate::envelope::Signed;
use crate::identity::NodeId;
use crate::job::{ExitStatus, FetchOutput, JobSpec, JobState, LogStream, OutputChunk};
use crate::receipt::{FailureReason, SignedReceipt};
use crate::time::Timestamp;
use crate::vocabulary::Credits;

/// Gossip topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `modchain/1/adverts`
    Adverts,
    /// `modchain/1/receipts`
    Receipts,
}

impl Topic {
    pub fn name(self) -> &'static str {
        match self {
            Topic::Adverts => "modchain/1/adverts",
            Topic::Receipts => "modchain/1/receipts",
        }
    }
}

/// A job a provider must start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    pub job_id: JobId,
    pub attempt: u32,
    pub client: NodeId,
    pub spec: JobSpec,
    /// The adapter must stop the job by this time.
    pub deadline: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Cancelled,
    TimedOut,
}

/// An output of a state machine, drained by the driver with `poll_action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Deliver a signed message to one peer (request-response in the node).
    Send { to: NodeId, message: Signed },
    /// Publish a signed message on a gossip topic.
    Publish { topic: Topic, message: Signed },
    /// Run a job through an adapter, then report with `execution_finished`.
    Execute(Execution),
    /// Stop a running job; the adapter still reports it finished.
    Stop { job_id: JobId, reason: StopReason },
    /// Append a verified receipt to the ledger.
    StoreReceipt(SignedReceipt),
    /// Provider: the client asked for part of an output file of a job this
    /// provider ran. The driver reads it and answers with an `OutputChunk`.
    ServeOutput { to: NodeId, request: FetchOutput },
    /// Something a person or a metric may want to know.
    Notify(Event),
}

/// What happened, in the network's words: the devnet prints these, the node
/// logs and counts them, the simulator records them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    // Orchestrator.
    JobAccepted {
        job_id: JobId,
        client: NodeId,
    },
    JobRejected {
        job_id: JobId,
        reason: String,
    },
    JobWaiting {
        job_id: JobId,
        reason: String,
    },
    AuctionOpened {
        job_id: JobId,
        attempt: u32,
        providers: Vec<NodeId>,
    },
    BidReceived {
        job_id: JobId,
        provider: NodeId,
        max_total: Credits,
    },
    DeclineReceived {
        job_id: JobId,
        provider: NodeId,
        reason: DeclineReason,
    },
    Awarded {
        job_id: JobId,
        attempt: u32,
        provider: NodeId,
        max_total: Credits,
        bids: usize,
        auction_ms: u64,
    },
    ProviderFailed {
        job_id: JobId,
        provider: NodeId,
        reason: FailureReason,
    },
    JobEnded {
        job_id: JobId,
        state: JobState,
        detail: String,
    },
    // Provider.
    BidSent {
        job_id: JobId,
        orchestrator: NodeId,
        max_total: Credits,
    },
    BidWithheld {
        job_id: JobId,
        reason: DeclineReason,
    },
    ExecutionStarted {
        job_id: JobId,
        client: NodeId,
    },
    ExecutionFinished {
        job_id: JobId,
        exit: ExitStatus,
        wall_ms: u64,
    },
    CapacityChanged,
    // Client.
    StateChanged {
        job_id: JobId,
        state: JobState,
        detail: String,
    },
    ResultReceived {
        job_id: JobId,
        provider: NodeId,
        exit: ExitStatus,
    },
    ResultRejected {
        job_id: JobId,
        reason: String,
    },
    Resubmitted {
        job_id: JobId,
        orchestrator: NodeId,
    },
    /// Live output of our job from its provider, in `seq` order as sent.
    LogReceived {
        job_id: JobId,
        seq: u64,
        stream: LogStream,
        data: Vec<u8>,
    },
    /// A chunk of an output file of our job, from its provider; the driver
    /// assembles the file and checks it against the result's digest.
    ChunkReceived(OutputChunk),
    // Any peer.
    ReceiptStored {
        receipt_id: ReceiptId,
        job_id: JobId,
    },
}
