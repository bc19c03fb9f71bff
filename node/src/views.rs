//! What the local API shows: the typed bodies of its answers. The node builds
//! these from its protocol state, the handlers return them, and the OpenAPI
//! document is generated from their `ToSchema` derives, so the document, the
//! server and the CLI (which reads the same shapes) cannot disagree.

use modchain_protocol::{ExitStatus, Outcome, Refusal, SignedReceipt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error: what was wrong and what to do.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// `POST /api/v1/jobs` answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    /// 64 hex digits.
    pub job_id: String,
}

/// `DELETE /api/v1/jobs/{id}` answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Cancelled {
    pub job_id: String,
    /// Always `cancelled`.
    pub state: String,
}

/// A file the job wrote to its output directory.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OutputFile {
    pub name: String,
    pub size: u64,
    /// BLAKE3 of the contents, 64 hex digits, as signed in the result.
    pub digest: String,
    /// Whether the bytes came inside the signed result (≤ 1 MiB) rather than
    /// fetched from the provider in chunks.
    pub inline: bool,
    /// Local path once stored under `<data-dir>/results/<job-id>/`.
    pub path: Option<String>,
}

/// One of this node's jobs (as its client), as listed.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    pub job_id: String,
    /// queued, bidding, awarded, running, completed, failed or cancelled.
    #[schema(examples("completed"))]
    pub state: String,
    /// Why the job is in its state (a waiting reason, a failure), in words.
    pub detail: String,
    /// Why the network refused the job, when it failed so.
    pub refusal: Option<JobRefusal>,
    pub adapter: String,
    pub method: String,
    pub submitted_at_ms: u64,
    /// Node id of the orchestrator handling the job.
    pub orchestrator: Option<String>,
    /// Node id of the awarded provider.
    pub provider: Option<String>,
    /// Charged price in micro-credits, once the receipt is signed.
    pub price: Option<u64>,
    pub receipt_id: Option<String>,
    pub exit_code: Option<i32>,
    /// How the execution ended, in words.
    pub exit: Option<String>,
    /// Output files still being fetched from the provider.
    pub outputs_pending: usize,
    pub outputs: Vec<OutputFile>,
}

/// Why the network refused a job, as a value a caller acts on (the API's
/// OpenAI routes answer 400 for `params_refused`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobRefusal {
    /// No orchestrator took it: none sees itself elected.
    NotElected,
    /// Every provider called refused its parameters (a prompt longer than
    /// the model's context, an option out of range).
    ParamsRefused,
}

impl JobRefusal {
    /// The view of a protocol refusal; `None` for one this node does not know.
    pub fn of(r: Refusal) -> Option<Self> {
        match r {
            Refusal::NotElected => Some(JobRefusal::NotElected),
            Refusal::ParamsRefused => Some(JobRefusal::ParamsRefused),
            _ => None,
        }
    }
}

/// A state the job passed through, with when.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub at_ms: u64,
    pub state: String,
}

/// One job in full (`GET /api/v1/jobs/{id}`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub summary: JobSummary,
    pub history: Vec<HistoryEntry>,
    /// Micro-credits.
    pub max_price: u64,
    pub timeout_ms: u64,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub results_dir: String,
}

/// Resources the execution used, as the provider signed them.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub peak_memory_bytes: u64,
    pub tokens: u64,
}

/// The job's signed result (`GET /api/v1/jobs/{id}/result`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobResultView {
    pub job_id: String,
    pub state: String,
    pub provider: Option<String>,
    pub attempt: u32,
    pub exit_code: i32,
    pub exit: String,
    pub stdout: String,
    pub stderr: String,
    pub usage: UsageView,
    pub finished_at_ms: u64,
    /// Digest of the signed result, 64 hex digits.
    pub result_digest: String,
    pub receipt_id: Option<String>,
    pub price: Option<u64>,
    pub results_dir: String,
    pub outputs_pending: usize,
    pub outputs: Vec<OutputFile>,
}

/// A receipt in the ledger (`GET /api/v1/receipts`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReceiptView {
    pub receipt_id: String,
    pub job_id: String,
    pub attempt: u32,
    /// Node ids, 64 hex digits each.
    pub client: String,
    pub provider: String,
    pub orchestrator: String,
    /// `executed` or `provider_failed`.
    #[schema(examples("executed"))]
    pub outcome: String,
    pub exit_code: Option<i32>,
    pub exit: Option<String>,
    /// Why the provider failed, for `provider_failed`.
    pub failure: Option<String>,
    /// Micro-credits (1 credit = 1,000,000).
    pub price: u64,
    pub wall_ms: u64,
    pub issued_at_ms: u64,
}

/// How an execution ended, in words.
pub fn exit_text(exit: &ExitStatus) -> String {
    match exit {
        ExitStatus::Exited(c) => format!("exited with code {c}"),
        ExitStatus::OutOfMemory => "killed: over its memory limit".into(),
        ExitStatus::TimedOut => "killed: timed out".into(),
        ExitStatus::Cancelled => "cancelled".into(),
        ExitStatus::Rejected(why) => format!("rejected: {why}"),
    }
}

impl From<&SignedReceipt> for ReceiptView {
    fn from(r: &SignedReceipt) -> Self {
        let rec = &r.receipt;
        let (outcome, exit_code, exit, failure) = match &rec.outcome {
            Outcome::Executed(e) => ("executed", Some(e.code()), Some(exit_text(e)), None),
            Outcome::ProviderFailed(f) => ("provider_failed", None, None, Some(f.as_str().into())),
        };
        ReceiptView {
            receipt_id: r.id().to_hex(),
            job_id: rec.job_id.to_hex(),
            attempt: rec.attempt,
            client: rec.client.to_hex(),
            provider: rec.provider.to_hex(),
            orchestrator: rec.orchestrator.to_hex(),
            outcome: outcome.into(),
            exit_code,
            exit,
            failure,
            price: rec.price.0,
            wall_ms: rec.usage.wall_ms,
            issued_at_ms: rec.issued_at.as_millis(),
        }
    }
}

/// A node's standing (`GET /api/v1/reputation`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReputationEntry {
    pub node_id: String,
    pub peer_id: Option<String>,
    /// Share of global trust (EigenTrust); the list sums to 1.
    pub trust: f64,
    /// Trust relative to the most trusted node, in parts per million.
    pub reputation: u32,
    /// Whether this node is one of the pre-trusted seeds.
    pub pretrusted: bool,
}

/// A credit balance derived from the ledger (`GET /api/v1/balance`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BalanceView {
    pub node_id: String,
    /// Micro-credits.
    pub balance_micro: i64,
    /// Credits.
    pub balance: f64,
}
