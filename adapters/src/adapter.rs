//! The adapter trait and what an execution gets to work with.

use modchain_protocol::{AdapterInfo, ExecutionReport, JobId, ModelInfo};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A method an adapter offers, with the JSON Schema of its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodSpec {
    pub name: String,
    pub description: String,
    pub params_schema: serde_json::Value,
}

/// Resource limits for one execution, from the job's requirements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub cores: u32,
    pub memory_bytes: u64,
    pub pids: u32,
    pub gpus: u32,
    /// Whether the job may reach the network (it asked, and the provider allows it).
    pub network: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cores: 1,
            memory_bytes: 256 << 20,
            pids: 256,
            gpus: 0,
            network: false,
        }
    }
}

/// Which output stream a chunk belongs to: the protocol's own type, so a
/// line goes from the adapter to the wire without a translation.
pub use modchain_protocol::LogStream;

/// A chunk of a job's output as it is produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    pub data: Vec<u8>,
}

/// Live output a job may stream by default before the rest is held back
/// (its last `MAX_LOG_BYTES` still come back with the result).
pub const DEFAULT_LOG_QUOTA_BYTES: u64 = 64 << 20;

/// Chunks waiting for the node to forward them. The node drains the queue
/// as fast as chunks come; it fills only when the node is starved, and then
/// the newest chunks are dropped rather than held without bound.
pub const LOG_SINK_CHUNKS: usize = 1024;

/// Where an execution streams its logs. Sending never blocks the job: a
/// receiver that went away only means nobody is watching. The sink holds a
/// job to its log quota while it writes: past the quota, and whenever the
/// queue to the node is full, chunks are dropped and counted
/// ([`LogSink::dropped_bytes`]).
#[derive(Clone, Debug)]
pub struct LogSink {
    tx: Option<mpsc::Sender<LogLine>>,
    budget: Arc<LogBudget>,
}

#[derive(Debug)]
struct LogBudget {
    quota: u64,
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl LogSink {
    /// A sink with the default quota, and the receiving end.
    pub fn new() -> (Self, mpsc::Receiver<LogLine>) {
        Self::with_quota(DEFAULT_LOG_QUOTA_BYTES)
    }

    /// A sink that streams at most `quota` bytes, and the receiving end.
    pub fn with_quota(quota: u64) -> (Self, mpsc::Receiver<LogLine>) {
        let (tx, rx) = mpsc::channel(LOG_SINK_CHUNKS);
        (
            LogSink {
                tx: Some(tx),
                budget: Arc::new(LogBudget::new(quota)),
            },
            rx,
        )
    }

    /// A sink that drops everything.
    pub fn discard() -> Self {
        LogSink {
            tx: None,
            budget: Arc::new(LogBudget::new(0)),
        }
    }

    pub fn send(&self, stream: LogStream, data: &[u8]) {
        let Some(tx) = &self.tx else {
            return;
        };
        if data.is_empty() {
            return;
        }
        let len = data.len() as u64;
        let b = &self.budget;
        let before = b.sent.fetch_add(len, Ordering::Relaxed);
        if before.saturating_add(len) > b.quota {
            b.dropped.fetch_add(len, Ordering::Relaxed);
            if before <= b.quota {
                // Once, as the quota is crossed: say why the stream stops,
                // so a person watching does not wait for more.
                let note = format!(
                    "\n[modchain: this job passed its live-output quota of {} bytes; the rest is not streamed, and its last {} KiB come back with the result]\n",
                    b.quota,
                    modchain_protocol::limits::MAX_LOG_BYTES / 1024
                );
                let _ = tx.try_send(LogLine {
                    stream: LogStream::Stderr,
                    data: note.into_bytes(),
                });
            }
            return;
        }
        let line = LogLine {
            stream,
            data: data.to_vec(),
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(line) {
            b.dropped.fetch_add(len, Ordering::Relaxed);
        }
    }

    /// Bytes this job's sink dropped: past its quota, or with the queue full.
    pub fn dropped_bytes(&self) -> u64 {
        self.budget.dropped.load(Ordering::Relaxed)
    }

    /// A handle that reads [`dropped_bytes`](Self::dropped_bytes) without
    /// keeping the sink open (the receiver ends when every sink is gone).
    pub fn drops(&self) -> LogDrops {
        LogDrops(self.budget.clone())
    }
}

/// Reads how many bytes a [`LogSink`] dropped, after the sink is gone.
#[derive(Clone, Debug)]
pub struct LogDrops(Arc<LogBudget>);

impl LogDrops {
    /// Bytes dropped so far.
    pub fn bytes(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

impl LogBudget {
    fn new(quota: u64) -> Self {
        LogBudget {
            quota,
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

/// Everything an execution needs besides its method and parameters.
#[derive(Clone, Debug)]
pub struct ExecutionContext {
    pub job_id: JobId,
    pub limits: Limits,
    /// Hard limit on run time; the adapter stops the job when it passes.
    pub timeout: Duration,
    /// Cancelled when the client cancels; the adapter stops the job.
    pub cancel: CancellationToken,
    /// Files the job writes here come back as outputs.
    pub output_dir: PathBuf,
    pub logs: LogSink,
}

#[derive(Debug, Error)]
pub enum AdapterError {
    #[error("unknown method `{method}`; this adapter offers: {offered}")]
    UnknownMethod { method: String, offered: String },
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    #[error("image `{0}` is not present on this provider and pulling is disabled")]
    ImageNotPresent(String),
    #[error(
        "image `{image}` is not allowed on this provider: {}",
        if allowed.is_empty() {
            "its `[docker] allowed_images` is empty, which allows no image (its operator lists the images jobs may run there, e.g. allowed_images = [\"busybox:*\"])".to_string()
        } else {
            format!("it matches none of `[docker] allowed_images` ({allowed})")
        }
    )]
    ImageNotAllowed { image: String, allowed: String },
    #[error(
        "image `{image}` is not named by digest, and this provider runs only images named so (`[docker] require_digest = true`): ask for `name@sha256:<64 hex digits>`"
    )]
    DigestRequired { image: String },
    #[error(
        "image `{image}` is present on this provider with another digest ({found}): `[docker] require_digest = true` runs only the exact image named"
    )]
    DigestMismatch { image: String, found: String },
    #[error("the job asked for network access, which this provider does not allow")]
    NetworkNotAllowed,
    #[error("the container runtime is unavailable: {0}")]
    RuntimeUnavailable(String),
    #[error("the container runtime failed: {0}")]
    Runtime(String),
    #[error("cannot prepare the job's output directory {path}: {source}")]
    OutputDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A workload executor.
pub trait Adapter: Send + Sync {
    /// The name jobs ask for (`docker`, `wasm`, `llm`).
    fn name(&self) -> &str;

    /// The methods offered, with their parameter schemas.
    fn methods(&self) -> Vec<MethodSpec>;

    /// Models served, for adapters that serve models.
    fn models(&self) -> Vec<ModelInfo> {
        Vec::new()
    }

    /// Looks again at what the adapter can serve (models on disk, images),
    /// for adapters whose offer changes while the node runs; the node then
    /// advertises [`Self::info`] anew if it changed.
    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Checks a method and its parameters before anything runs.
    fn validate(&self, method: &str, params: &serde_json::Value) -> Result<(), AdapterError>;

    /// Checks that a method and its parameters are well formed, whatever
    /// this provider holds: what a client checks before it submits a job
    /// that another provider may run. [`Self::validate`] unless the
    /// adapter's validation also asks for something held here (a model).
    fn check_params(&self, method: &str, params: &serde_json::Value) -> Result<(), AdapterError> {
        self.validate(method, params)
    }

    /// Runs `method`. Errors mean nothing ran (bad parameters, a missing
    /// image); a workload that ran and failed is an `Ok` report with its exit status.
    fn execute<'a>(
        &'a self,
        ctx: ExecutionContext,
        method: &'a str,
        params: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<ExecutionReport, AdapterError>>;

    /// What the node advertises for this adapter.
    fn info(&self) -> AdapterInfo {
        AdapterInfo {
            name: self.name().to_string(),
            methods: self.methods().into_iter().map(|m| m.name).collect(),
            models: self.models(),
        }
    }
}

/// The error for a method name an adapter does not offer.
pub fn unknown_method(adapter: &dyn Adapter, method: &str) -> AdapterError {
    AdapterError::UnknownMethod {
        method: method.to_string(),
        offered: adapter
            .methods()
            .into_iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_streams_up_to_its_quota_then_says_so_once_and_counts_the_rest() {
        let (sink, mut rx) = LogSink::with_quota(250);
        let drops = sink.drops();
        for _ in 0..5 {
            sink.send(LogStream::Stdout, &[b'x'; 100]);
        }
        drop(sink);
        let mut lines = Vec::new();
        while let Ok(line) = rx.try_recv() {
            lines.push(line);
        }
        assert_eq!(
            lines.len(),
            3,
            "two chunks within the quota, then one notice"
        );
        assert!(lines[..2].iter().all(|l| l.data.len() == 100));
        assert_eq!(lines[2].stream, LogStream::Stderr);
        assert!(String::from_utf8_lossy(&lines[2].data).contains("quota of 250 bytes"));
        assert_eq!(drops.bytes(), 300);
    }

    #[test]
    fn a_full_queue_drops_instead_of_growing() {
        let (sink, mut rx) = LogSink::with_quota(u64::MAX);
        for _ in 0..LOG_SINK_CHUNKS + 10 {
            sink.send(LogStream::Stdout, b"line\n");
        }
        assert_eq!(sink.dropped_bytes(), 50);
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, LOG_SINK_CHUNKS);
    }
}
