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
    /// The gossipsub topic name on the wire.
    #[must_use]
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
    /// The job to run.
    pub job_id: JobId,
    /// The auction round that awarded it to this provider.
    pub attempt: u32,
    /// The client who signed the job and will co-sign its receipt.
    pub client: NodeId,
    /// What to run, as the client signed it.
    pub spec: JobSpec,
    /// The adapter must stop the job by this time.
    pub deadline: Timestamp,
}

/// Why a provider must stop a running job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Its client cancelled it.
    Cancelled,
    /// It ran past its timeout.
    TimedOut,
}

/// An output of a state machine, drained by the driver with `poll_action`.
///
/// Not `#[non_exhaustive]` on purpose: a driver must perform every action,
/// so a new one should break its build rather than fall into a wildcard arm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Deliver a signed message to one peer (request-response in the node).
    Send {
        /// The peer to deliver it to.
        to: NodeId,
        /// The message, as its signer sealed it.
        message: Signed,
    },
    /// Publish a signed message on a gossip topic.
    Publish {
        /// The gossip topic.
        topic: Topic,
        /// The message, as its signer sealed it.
        message: Signed,
    },
    /// Run a job through an adapter, then report with `execution_finished`.
    Execute(Execution),
    /// Stop a running job; the adapter still reports it finished.
    Stop {
        /// The job to stop.
        job_id: JobId,
        /// Why it stops.
        reason: StopReason,
    },
    /// Append a verified receipt to the ledger.
    StoreReceipt(SignedReceipt),
    /// Provider: the client asked for part of an output file of a job this
    /// provider ran. The driver reads it and answers with an `OutputChunk`.
    ServeOutput {
        /// The client that asked.
        to: NodeId,
        /// Which file, and which part of it.
        request: FetchOutput,
    },
    /// Something a person or a metric may want to know.
    Notify(Event),
}

/// What happened, in the network's words: the devnet prints these, the node
/// logs and counts them, the simulator records them. New kinds of event may
/// come: a driver that does not know one passes it by.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    // Orchestrator.
    /// Orchestrator: a client's job was accepted for auction.
    JobAccepted {
        /// The job.
        job_id: JobId,
        /// Its client.
        client: NodeId,
    },
    /// Orchestrator: a job was refused (invalid spec, no room).
    JobRejected {
        /// The job.
        job_id: JobId,
        /// Why, for a person.
        reason: String,
    },
    /// Orchestrator: a job waits for a provider (no match, no bids).
    JobWaiting {
        /// The job.
        job_id: JobId,
        /// Why it waits, for a person.
        reason: String,
    },
    /// Orchestrator: calls for bids went out.
    AuctionOpened {
        /// The job.
        job_id: JobId,
        /// The auction round (0 first).
        attempt: u32,
        /// The providers called.
        providers: Vec<NodeId>,
    },
    /// Orchestrator: a provider bid.
    BidReceived {
        /// The job.
        job_id: JobId,
        /// The bidder.
        provider: NodeId,
        /// The most the bid could cost the client.
        max_total: Credits,
    },
    /// Orchestrator: a provider declined to bid.
    DeclineReceived {
        /// The job.
        job_id: JobId,
        /// The provider that declined.
        provider: NodeId,
        /// Why it declined.
        reason: DeclineReason,
    },
    /// Orchestrator: the auction picked a winner.
    Awarded {
        /// The job.
        job_id: JobId,
        /// The auction round (0 first).
        attempt: u32,
        /// The winner.
        provider: NodeId,
        /// The most the winning bid could cost the client.
        max_total: Credits,
        /// How many bids the auction saw.
        bids: usize,
        /// From calls out to award, in milliseconds.
        auction_ms: u64,
    },
    /// Orchestrator: the awarded provider failed the job (silent, late).
    ProviderFailed {
        /// The job.
        job_id: JobId,
        /// The provider that failed.
        provider: NodeId,
        /// How it failed, as the failure receipt says.
        reason: FailureReason,
    },
    /// Orchestrator: a job ended (completed, failed or cancelled).
    JobEnded {
        /// The job.
        job_id: JobId,
        /// How it ended.
        state: JobState,
        /// Why, for a person.
        detail: String,
    },
    // Provider.
    /// Provider: it bid on a job.
    BidSent {
        /// The job.
        job_id: JobId,
        /// The orchestrator running the auction.
        orchestrator: NodeId,
        /// The most the bid could cost the client.
        max_total: Credits,
    },
    /// Provider: it declined to bid on a job.
    BidWithheld {
        /// The job.
        job_id: JobId,
        /// Why it declined.
        reason: DeclineReason,
    },
    /// Provider: it started a job it won.
    ExecutionStarted {
        /// The job.
        job_id: JobId,
        /// The job's client.
        client: NodeId,
    },
    /// Provider: a job it ran finished.
    ExecutionFinished {
        /// The job.
        job_id: JobId,
        /// How it ended.
        exit: ExitStatus,
        /// How long it ran, in milliseconds.
        wall_ms: u64,
    },
    /// Provider: its free capacity changed (a job reserved or released it).
    CapacityChanged,
    // Client.
    /// Client: one of our jobs moved to a new state.
    StateChanged {
        /// The job.
        job_id: JobId,
        /// Its new state.
        state: JobState,
        /// Why, for a person.
        detail: String,
    },
    /// Client: the signed result of our job arrived and checked out.
    ResultReceived {
        /// The job.
        job_id: JobId,
        /// The provider that ran it.
        provider: NodeId,
        /// How it ended.
        exit: ExitStatus,
    },
    /// Client: a result for our job was refused (bad signature, over limits).
    ResultRejected {
        /// The job.
        job_id: JobId,
        /// Why, for a person.
        reason: String,
    },
    /// Client: our job went to the next orchestrator in its ranking.
    Resubmitted {
        /// The job.
        job_id: JobId,
        /// The orchestrator it went to.
        orchestrator: NodeId,
    },
    /// Live output of our job from its provider, in `seq` order as sent.
    LogReceived {
        /// The job.
        job_id: JobId,
        /// Counts up from 0 per job and attempt.
        seq: u64,
        /// stdout or stderr.
        stream: LogStream,
        /// The bytes, as the job wrote them.
        data: Vec<u8>,
    },
    /// A chunk of an output file of our job, from its provider; the driver
    /// assembles the file and checks it against the result's digest.
    ChunkReceived(OutputChunk),
    // Any peer.
    /// Any peer: a verified receipt went to the ledger.
    ReceiptStored {
        /// The receipt's id.
        receipt_id: ReceiptId,
        /// The job it settles.
        job_id: JobId,
    },
}
