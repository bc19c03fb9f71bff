//! Jobs: what a client asks for, how it is going, and what came of it.

use crate::digest::{Digest, JobId};
use crate::identity::Signature;
use crate::time::Timestamp;
use crate::vocabulary::Credits;
use crate::vocabulary::Requirements;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Bounds that every peer enforces on a job spec before acting on it.
pub mod limits {
    /// Adapter and method names, model names.
    pub const MAX_NAME_BYTES: usize = 64;
    /// Adapter parameters (JSON text).
    pub const MAX_PARAMS_BYTES: usize = 256 * 1024;
    /// Longest timeout a job may ask for: one day.
    pub const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;
    /// stdout and stderr each, as carried in a result.
    pub const MAX_LOG_BYTES: usize = 64 * 1024;
    /// Outputs carried inline in a signed result, all together.
    pub const MAX_INLINE_OUTPUT_BYTES: usize = 1024 * 1024;
    /// Output files listed in one result.
    pub const MAX_OUTPUT_FILES: usize = 256;
    /// Free-text reasons and details.
    pub const MAX_TEXT_BYTES: usize = 1024;
    /// One live log chunk.
    pub const MAX_LOG_CHUNK_BYTES: usize = 16 * 1024;
    /// One chunk of an output file fetched from a provider.
    pub const MAX_OUTPUT_CHUNK_BYTES: usize = 256 * 1024;
}

/// A client's request, signed by the client (its `Job` envelope's signer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Adapter that runs the job (`docker`, `wasm`, `llm`).
    pub adapter: String,
    /// Method of the adapter (`run`, `generate`, ...).
    pub method: String,
    /// Adapter parameters as JSON text; the adapter validates them.
    pub params: String,
    /// What the job needs from the machine that runs it.
    pub requirements: Requirements,
    /// The most the client will pay, in micro-credits.
    pub max_price: Credits,
    /// Hard limit on execution time, in milliseconds.
    pub timeout_ms: u64,
    /// Higher runs first when orchestrators are busy.
    pub priority: u8,
    /// The job is dropped if no provider has started it by this time.
    pub start_by: Timestamp,
    /// Makes otherwise identical submissions distinct jobs.
    pub nonce: u64,
}

/// Why a job spec breaks the bounds every peer enforces.
#[non_exhaustive]
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "adapter name is empty or longer than {} bytes",
        limits::MAX_NAME_BYTES
    )]
    /// The adapter name is empty or too long.
    BadAdapter,
    /// The method name is empty or too long.
    #[error("method name is empty or longer than {} bytes", limits::MAX_NAME_BYTES)]
    BadMethod,
    /// The params are over their limit (their length).
    #[error("params are {0} bytes, over the {max} byte limit", max = limits::MAX_PARAMS_BYTES)]
    ParamsTooLarge(usize),
    /// The timeout is zero or over a day.
    #[error("timeout must be between 1 ms and {} ms", limits::MAX_TIMEOUT_MS)]
    BadTimeout,
    /// The model name is too long.
    #[error("model name is longer than {} bytes", limits::MAX_NAME_BYTES)]
    BadModel,
}

impl JobSpec {
    /// Checks the bounds every peer enforces. Adapter-specific checks come later,
    /// on the provider.
    pub fn validate(&self) -> Result<(), SpecError> {
        let name_ok = |s: &str| !s.is_empty() && s.len() <= limits::MAX_NAME_BYTES;
        if !name_ok(&self.adapter) {
            return Err(SpecError::BadAdapter);
        }
        if !name_ok(&self.method) {
            return Err(SpecError::BadMethod);
        }
        if self.params.len() > limits::MAX_PARAMS_BYTES {
            return Err(SpecError::ParamsTooLarge(self.params.len()));
        }
        if self.timeout_ms == 0 || self.timeout_ms > limits::MAX_TIMEOUT_MS {
            return Err(SpecError::BadTimeout);
        }
        if let Some(m) = &self.requirements.model
            && !name_ok(m)
        {
            return Err(SpecError::BadModel);
        }
        Ok(())
    }
}

/// Where a job stands, as its client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Accepted by an orchestrator, waiting for a provider (see the detail for why).
    Queued,
    /// Calls for bids are out.
    Bidding,
    /// A provider won the auction.
    Awarded,
    /// The provider started it.
    Running,
    /// Finished and settled by a receipt (whatever the exit code).
    Completed,
    /// Could not be run (no provider before `start_by`, retries exhausted, bad input).
    Failed,
    /// Cancelled by its client.
    Cancelled,
}

impl JobState {
    /// How far along a live job is: within one auction round a job only
    /// moves forward in this order (the client's rule against late
    /// messages). The ends share the last place.
    pub fn progress(self) -> u8 {
        match self {
            JobState::Queued => 0,
            JobState::Bidding => 1,
            JobState::Awarded => 2,
            JobState::Running => 3,
            JobState::Completed | JobState::Failed | JobState::Cancelled => 4,
        }
    }

    /// Whether the job has ended (completed, failed or cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }

    /// The state's name in lowercase, as the API and CLI show it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Bidding => "bidding",
            JobState::Awarded => "awarded",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// A progress report about a job, from its orchestrator or its provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job reported on.
    pub job_id: JobId,
    /// Auction round the report belongs to (0 for the first).
    pub attempt: u32,
    /// Where the job stands.
    pub state: JobState,
    /// Human-readable detail: why it is queued, why it failed.
    pub detail: String,
    /// The orchestrator numbers its reports on a job 1, 2, 3, …: each
    /// travels on its own substream, so they can arrive in any order, and
    /// the client keeps only the newest. 0 from a provider and in a reply
    /// that is not part of the job's story (a refusal).
    pub seq: u32,
    /// Why the sender refuses the job outright, as a value the client acts
    /// on; `Some` only with [`JobState::Failed`]. The detail says the same
    /// for a person, but nothing reads it as a signal.
    pub refusal: Option<Refusal>,
}

/// Why a peer refuses a job it was sent (new in protocol version 2; version 1
/// carried it as a prefix of the status's detail text).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Refusal {
    /// The peer is no elected orchestrator, in this epoch or the previous
    /// one, by its own view of the candidates: the client resubmits to the
    /// next orchestrator in the job's ranking at once, without waiting for
    /// its silence timeout.
    NotElected,
    /// Every provider called for bids refused the job's parameters (a
    /// prompt longer than the model's context, an option out of range):
    /// the job cannot run as asked anywhere, so it failed at once, and the
    /// client tells its user the request was wrong instead of retrying it.
    ParamsRefused,
}

/// How an execution ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExitStatus {
    /// The workload exited with this code.
    Exited(i32),
    /// Killed for exceeding its memory limit.
    OutOfMemory,
    /// Killed at its timeout.
    TimedOut,
    /// Stopped because the client cancelled.
    Cancelled,
    /// The adapter could not run it (bad params, image missing); the text says why.
    Rejected(String),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exited with code {c}"),
            ExitStatus::OutOfMemory => f.write_str("killed: over its memory limit"),
            ExitStatus::TimedOut => f.write_str("killed: past its timeout"),
            ExitStatus::Cancelled => f.write_str("stopped: cancelled by the client"),
            ExitStatus::Rejected(why) => write!(f, "not run: {why}"),
        }
    }
}

impl ExitStatus {
    /// Whether the workload exited with code 0.
    pub fn is_success(&self) -> bool {
        matches!(self, ExitStatus::Exited(0))
    }

    /// A process-style exit code for CLIs: the code itself, or 125..=128 for the rest.
    pub fn code(&self) -> i32 {
        match self {
            ExitStatus::Exited(c) => *c,
            ExitStatus::OutOfMemory => 137,
            ExitStatus::TimedOut => 124,
            ExitStatus::Cancelled => 130,
            ExitStatus::Rejected(_) => 125,
        }
    }
}

/// Resources a job used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// Wall-clock time from start to end, in milliseconds.
    pub wall_ms: u64,
    /// CPU time, in milliseconds, where the adapter can tell.
    pub cpu_ms: u64,
    /// Peak memory, in bytes, where the adapter can tell.
    pub peak_memory_bytes: u64,
    /// Tokens generated (LLM jobs).
    pub tokens: u64,
}

/// One file a job wrote to its outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to the output directory, `/`-separated.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the contents.
    pub digest: Digest,
    /// The contents, when all inline outputs together fit the inline limit;
    /// otherwise the client fetches them from the provider by digest.
    pub inline: Option<Vec<u8>>,
}

/// The outcome of an execution, signed by the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job this is the result of.
    pub job_id: JobId,
    /// The auction round whose award the provider ran.
    pub attempt: u32,
    /// How the execution ended.
    pub exit: ExitStatus,
    /// The last `MAX_LOG_BYTES` of stdout.
    pub stdout: Vec<u8>,
    /// The last `MAX_LOG_BYTES` of stderr.
    pub stderr: Vec<u8>,
    /// The files the job wrote, with their digests.
    pub outputs: Vec<OutputFile>,
    /// What the job used.
    pub usage: Usage,
    /// When it finished, by the provider's clock.
    pub finished_at: Timestamp,
    /// The provider's signature over the receipt this result settles
    /// (see [`Receipt::for_result`](crate::Receipt::for_result)); the client co-signs it.
    pub receipt_signature: Signature,
}

impl JobResult {
    /// Digest of everything but the receipt signature: what the receipt names.
    pub fn digest(&self) -> Digest {
        Digest::of(&crate::codec::encode(&(
            &self.job_id,
            self.attempt,
            &self.exit,
            &self.stdout,
            &self.stderr,
            &self.outputs,
            &self.usage,
            self.finished_at,
        )))
    }

    /// Checks the size bounds a client enforces on results it receives.
    pub fn within_limits(&self) -> bool {
        let inline: usize = self
            .outputs
            .iter()
            .filter_map(|o| o.inline.as_ref().map(Vec::len))
            .sum();
        self.stdout.len() <= limits::MAX_LOG_BYTES
            && self.stderr.len() <= limits::MAX_LOG_BYTES
            && self.outputs.len() <= limits::MAX_OUTPUT_FILES
            && inline <= limits::MAX_INLINE_OUTPUT_BYTES
    }
}

/// A request to stop a job, signed by its client. Orchestrators forward the
/// client's envelope unchanged to the provider, which checks the signer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    /// The job to stop.
    pub job_id: JobId,
    /// Why, for a person.
    pub reason: String,
}

/// Which output stream a log chunk belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LogStream {
    /// The job's standard output.
    Stdout,
    /// The job's standard error.
    Stderr,
}

/// Output of a running job as it is produced, from the provider to the
/// client (live logs, and tokens of an LLM answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// The job the output belongs to.
    pub job_id: JobId,
    /// The auction round whose run wrote it.
    pub attempt: u32,
    /// Counts up from 0 per job and attempt, so the client can order and spot gaps.
    pub seq: u64,
    /// stdout or stderr.
    pub stream: LogStream,
    /// At most `MAX_LOG_CHUNK_BYTES`.
    pub data: Vec<u8>,
}

/// The client asks the provider for part of an output file that did not
/// travel inline in the result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchOutput {
    /// The job whose output is asked for.
    pub job_id: JobId,
    /// The file's digest, as listed in the signed result.
    pub digest: Digest,
    /// Where in the file the part starts, in bytes.
    pub offset: u64,
    /// At most `MAX_OUTPUT_CHUNK_BYTES`.
    pub length: u32,
}

/// The provider's answer to a `FetchOutput`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    /// The job the file belongs to.
    pub job_id: JobId,
    /// The file's digest, as asked for.
    pub digest: Digest,
    /// Where in the file this part starts, in bytes.
    pub offset: u64,
    /// The whole file's size.
    pub total_size: u64,
    /// The bytes, at most `MAX_OUTPUT_CHUNK_BYTES`.
    pub data: Vec<u8>,
}

/// Keeps the last `max` bytes of a log, which is where the error usually is.
pub fn tail_bytes(bytes: &[u8], max: usize) -> Vec<u8> {
    bytes[bytes.len().saturating_sub(max)..].to_vec()
}

/// Truncates free text to the protocol's bound on a char boundary.
pub(crate) fn bounded_text(s: &str) -> String {
    if s.len() <= limits::MAX_TEXT_BYTES {
        return s.to_string();
    }
    let mut end = limits::MAX_TEXT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
