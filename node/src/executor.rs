//! Where the provider role meets the adapters: runs the jobs this node won,
//! each in its own task, under the limits the job asked for, and reports each
//! one's end back to the node's event loop.

use modchain_adapters::{Adapter, AdapterError, ExecutionContext, Limits, LogLine, LogSink};
use modchain_protocol::{
    AdapterInfo, Execution, ExecutionReport, ExitStatus, JobId, LogStream as ProtoStream,
    Timestamp, limits,
};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Most log bytes kept per job for the API, from the end.
const LOG_BUFFER_BYTES: usize = 256 * 1024;
/// Output bytes a job may write when it declares no storage, unless the
/// node's config says otherwise.
const DEFAULT_OUTPUT_QUOTA: u64 = 1 << 30;
/// Pids a job may use, whatever it asks.
const PIDS_PER_JOB: u32 = 256;

/// A job that ended, for the event loop to hand to `Peer::execution_finished`.
#[derive(Debug)]
pub struct Finished {
    pub job_id: JobId,
    pub report: ExecutionReport,
    /// It was stopped for writing past its output quota.
    pub over_quota: bool,
    /// Live-output bytes not streamed: past its log quota, or while the
    /// node was too busy to take them.
    pub log_dropped_bytes: u64,
}

/// What a running job reports to the event loop: live output as it comes
/// (for `Peer::log_output`), then, last of all for that job, its end.
#[derive(Debug)]
pub enum ExecutorEvent {
    Output {
        job_id: JobId,
        stream: modchain_protocol::LogStream,
        data: Vec<u8>,
    },
    Finished(Finished),
}

/// The executor's events on their way to the event loop: a bounded queue
/// that never blocks a job and never grows past its cap. When it is full,
/// the oldest live-output event is dropped (and counted) to make room; a
/// job's `Finished` is never dropped (there is one per running job, so
/// those are bounded by the provider's capacity).
#[derive(Clone, Debug)]
pub struct EventQueue {
    inner: Arc<Mutex<std::collections::VecDeque<ExecutorEvent>>>,
    ready: Arc<tokio::sync::Notify>,
    cap: usize,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl EventQueue {
    pub fn new(cap: usize) -> Self {
        EventQueue {
            inner: Arc::default(),
            ready: Arc::default(),
            cap: cap.max(1),
            dropped: Arc::default(),
        }
    }

    /// Queues `ev`, dropping the oldest output event when full.
    pub fn send(&self, ev: ExecutorEvent) {
        let Ok(mut q) = self.inner.lock() else {
            return;
        };
        if q.len() >= self.cap {
            let oldest_output = q
                .iter()
                .position(|e| matches!(e, ExecutorEvent::Output { .. }));
            match (oldest_output, &ev) {
                (Some(i), _) => {
                    q.remove(i);
                }
                // Only ends are queued: an output event is the one to go.
                (None, ExecutorEvent::Output { .. }) => {
                    self.dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                (None, ExecutorEvent::Finished(_)) => {}
            }
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        q.push_back(ev);
        drop(q);
        self.ready.notify_one();
    }

    /// The next event, waiting for one.
    pub async fn recv(&self) -> Option<ExecutorEvent> {
        loop {
            if let Some(ev) = self.inner.lock().ok()?.pop_front() {
                return Some(ev);
            }
            self.ready.notified().await;
        }
    }

    /// The next event, if one is waiting.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn try_recv(&self) -> Option<ExecutorEvent> {
        self.inner.lock().ok()?.pop_front()
    }

    /// Output events dropped since start because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Events waiting now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |q| q.len())
    }
}

/// How long live output is gathered before it is forwarded.
const LOG_BATCH: Duration = Duration::from_millis(30);
/// How long a finished job waits for its last log lines to be forwarded.
const LOG_DRAIN_WAIT: Duration = Duration::from_secs(1);

/// The latest output of a running (or recently finished) job.
#[derive(Debug, Default)]
pub struct JobLog {
    pub data: Vec<u8>,
    pub done: bool,
}

struct Running {
    cancel: CancellationToken,
}

pub struct Executor {
    adapters: BTreeMap<String, Arc<dyn Adapter>>,
    work_dir: PathBuf,
    allow_network: bool,
    running: HashMap<JobId, Running>,
    logs: Arc<Mutex<HashMap<JobId, JobLog>>>,
    events: EventQueue,
    /// Output bytes a job may write when it declares no storage.
    output_quota: u64,
    /// Live-output bytes a job may stream.
    log_quota: u64,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("adapters", &self.adapters.keys().collect::<Vec<_>>())
            .field("running", &self.running.len())
            .finish()
    }
}

impl Executor {
    /// `work_dir` holds one directory per job (`<job id>/outputs`); at
    /// most `queue` events wait for the event loop.
    pub fn new(
        adapters: Vec<Arc<dyn Adapter>>,
        work_dir: PathBuf,
        allow_network: bool,
        queue: usize,
    ) -> (Self, EventQueue) {
        let tx = EventQueue::new(queue);
        let rx = tx.clone();
        let adapters = adapters
            .into_iter()
            .map(|a| (a.name().to_string(), a))
            .collect();
        (
            Executor {
                adapters,
                work_dir,
                allow_network,
                running: HashMap::new(),
                logs: Arc::new(Mutex::new(HashMap::new())),
                events: tx,
                output_quota: DEFAULT_OUTPUT_QUOTA,
                log_quota: modchain_adapters::DEFAULT_LOG_QUOTA_BYTES,
            },
            rx,
        )
    }

    /// Output bytes a job may write when it declares no storage.
    pub fn set_output_quota(&mut self, bytes: u64) {
        self.output_quota = bytes.max(1);
    }

    /// Live-output bytes a job may stream; past it the rest is dropped
    /// (the result still carries the last `MAX_LOG_BYTES`).
    pub fn set_log_quota(&mut self, bytes: u64) {
        self.log_quota = bytes;
    }

    /// What the node advertises.
    pub fn infos(&self) -> Vec<AdapterInfo> {
        self.adapters.values().map(|a| a.info()).collect()
    }

    /// Every adapter, for refreshing what they offer.
    pub fn adapters(&self) -> Vec<Arc<dyn Adapter>> {
        self.adapters.values().cloned().collect()
    }

    pub fn adapter(&self, name: &str) -> Option<&Arc<dyn Adapter>> {
        self.adapters.get(name)
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Output directory of a job.
    pub fn output_dir(&self, job: &JobId) -> PathBuf {
        self.work_dir.join(job.to_hex()).join("outputs")
    }

    /// Log bytes of a job so far, and whether it ended.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn log(&self, job: &JobId) -> Option<(Vec<u8>, bool)> {
        let logs = self.logs.lock().ok()?;
        logs.get(job).map(|l| (l.data.clone(), l.done))
    }

    /// Starts a job won at auction. Whatever happens, a `Finished` follows.
    pub fn start(&mut self, now: Timestamp, exec: Execution) {
        let job_id = exec.job_id;
        let cancel = CancellationToken::new();
        self.running.insert(
            job_id,
            Running {
                cancel: cancel.clone(),
            },
        );
        let (sink, lines) = LogSink::with_quota(self.log_quota);
        let drops = sink.drops();
        let logs = self.logs.clone();
        if let Ok(mut l) = logs.lock() {
            l.insert(job_id, JobLog::default());
        }
        let collector = self.forward_logs(job_id, lines);
        let req = &exec.spec.requirements;
        // The job's output quota (what it declared, else the node's) is
        // held while it writes: a watcher stops the job once past it.
        let quota = Some(req.storage_bytes)
            .filter(|b| *b > 0)
            .unwrap_or(self.output_quota);
        let stop = cancel.child_token();
        let ended = CancellationToken::new();
        let watcher = tokio::spawn(modchain_adapters::outputs::watch_quota(
            self.output_dir(&job_id),
            quota,
            stop.clone(),
            ended.clone(),
        ));
        let ctx = ExecutionContext {
            job_id,
            limits: Limits {
                cores: req.cores.max(1),
                memory_bytes: req.memory_bytes.max(16 << 20),
                pids: PIDS_PER_JOB,
                gpus: req.gpus,
                network: self.allow_network,
            },
            timeout: Duration::from_millis(exec.deadline.since(now).max(1)),
            cancel: stop,
            output_dir: self.output_dir(&job_id),
            logs: sink,
        };
        let adapter = self.adapters.get(&exec.spec.adapter).cloned();
        let done = self.events.clone();
        let spec = exec.spec;
        // The adapter's log lines (container ids, compile errors) name the job.
        let span = tracing::info_span!("job", job_id = %job_id.to_hex(), adapter = %spec.adapter);
        tokio::spawn(
            async move {
                let mut report = match adapter {
                    None => rejected(format!("this provider has no `{}` adapter", spec.adapter)),
                    Some(adapter) => {
                        match serde_json::from_str::<serde_json::Value>(&spec.params) {
                            Err(e) => rejected(format!("params are not valid JSON: {e}")),
                            Ok(params) => match adapter.execute(ctx, &spec.method, &params).await {
                                Ok(report) => report,
                                Err(e) => rejected_error(&e),
                            },
                        }
                    }
                };
                ended.cancel();
                let over_quota = watcher.await.unwrap_or(false);
                if over_quota {
                    report.exit = Some(ExitStatus::Rejected(format!(
                        "output quota exceeded: the job wrote more than {quota} bytes to its output directory"
                    )));
                    report.outputs.clear();
                }
                // The context (and its log sink) is gone: the collector ends
                // once it forwarded the last lines, so output precedes the end.
                let _ = tokio::time::timeout(LOG_DRAIN_WAIT, collector).await;
                if let Ok(mut l) = logs.lock()
                    && let Some(entry) = l.get_mut(&job_id)
                {
                    entry.done = true;
                }
                done.send(ExecutorEvent::Finished(Finished {
                    job_id,
                    report,
                    over_quota,
                    log_dropped_bytes: drops.bytes(),
                }));
            }
            .instrument(span),
        );
    }

    /// Hands a job's streamed output to the event loop (for the client)
    /// and keeps its tail for the API; ends when the job's log sink is gone.
    fn forward_logs(
        &self,
        job_id: JobId,
        mut lines: mpsc::Receiver<LogLine>,
    ) -> tokio::task::JoinHandle<()> {
        // Collect streamed output for the API while the job runs, and hand
        // it to the event loop, which streams it to the client.
        let log_store = self.logs.clone();
        let live = self.events.clone();
        tokio::spawn(async move {
            // Lines are gathered for a moment (or up to a chunk's size) so a
            // chatty job sends a few signed chunks, not one per line. The
            // very first piece goes at once: it is what a person (or an LLM
            // client waiting for its first token) is waiting to see.
            let mut open = true;
            let mut wait = Duration::ZERO;
            while open {
                let Some(first) = lines.recv().await else {
                    break;
                };
                let mut batch: Vec<(ProtoStream, Vec<u8>)> = Vec::new();
                let mut size = 0usize;
                size += merge(&mut batch, first);
                let until = tokio::time::Instant::now() + wait;
                wait = LOG_BATCH;
                while size < limits::MAX_LOG_CHUNK_BYTES {
                    match tokio::time::timeout_at(until, lines.recv()).await {
                        Ok(Some(line)) => size += merge(&mut batch, line),
                        Ok(None) => {
                            open = false;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                for (stream, data) in batch {
                    if let Ok(mut l) = log_store.lock()
                        && let Some(entry) = l.get_mut(&job_id)
                    {
                        entry.data.extend_from_slice(&data);
                        let len = entry.data.len();
                        if len > LOG_BUFFER_BYTES {
                            entry.data.drain(..len - LOG_BUFFER_BYTES);
                        }
                    }
                    live.send(ExecutorEvent::Output {
                        job_id,
                        stream,
                        data,
                    });
                }
            }
        })
    }

    /// Asks a running job to stop; its `Finished` still follows.
    pub fn stop(&mut self, job: &JobId) {
        if let Some(r) = self.running.get(job) {
            r.cancel.cancel();
        }
    }

    /// Asks every running job to stop (the node is shutting down).
    pub fn stop_all(&mut self) {
        for r in self.running.values() {
            r.cancel.cancel();
        }
    }

    /// The event loop took a job's `Finished`.
    pub fn forget(&mut self, job: &JobId) {
        self.running.remove(job);
    }

    /// Drops the log buffer of a job nobody will ask about any more.
    pub fn drop_log(&mut self, job: &JobId) {
        if let Ok(mut l) = self.logs.lock() {
            l.remove(job);
        }
    }
}

/// Appends a line to a batch, joining it to the last piece of the same
/// stream; returns its size.
fn merge(batch: &mut Vec<(ProtoStream, Vec<u8>)>, line: LogLine) -> usize {
    let stream = line.stream;
    let n = line.data.len();
    match batch.last_mut() {
        Some((s, d)) if *s == stream => d.extend_from_slice(&line.data),
        _ => batch.push((stream, line.data)),
    }
    n
}

fn rejected(why: String) -> ExecutionReport {
    ExecutionReport {
        exit: Some(ExitStatus::Rejected(why)),
        ..ExecutionReport::default()
    }
}

fn rejected_error(e: &AdapterError) -> ExecutionReport {
    rejected(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use modchain_adapters::wasm::WasmAdapter;
    use modchain_protocol::{Credits, Digest, JobSpec, Requirements};

    fn exec(adapter: &str, params: &str, timeout_ms: u64, now: Timestamp) -> Execution {
        Execution {
            job_id: Digest::of(params.as_bytes()),
            attempt: 0,
            client: modchain_protocol::Keypair::from_seed(1).node_id(),
            spec: JobSpec {
                adapter: adapter.into(),
                method: "run".into(),
                params: params.into(),
                requirements: Requirements::default(),
                max_price: Credits(1),
                timeout_ms,
                priority: 0,
                start_by: now.plus(60_000),
                nonce: 0,
            },
            deadline: now.plus(timeout_ms),
        }
    }

    /// The next `Finished`, collecting the output events before it.
    async fn finished(rx: &mut EventQueue) -> (Finished, Vec<u8>) {
        let mut out = Vec::new();
        loop {
            match rx.recv().await.expect("executor event") {
                ExecutorEvent::Output { data, .. } => out.extend_from_slice(&data),
                ExecutorEvent::Finished(f) => return (f, out),
            }
        }
    }

    #[tokio::test]
    async fn a_full_event_queue_drops_the_oldest_output_never_an_end() {
        let q = EventQueue::new(2);
        let job = Digest::of(b"chatty");
        let out = |n: u8| ExecutorEvent::Output {
            job_id: job,
            stream: ProtoStream::Stdout,
            data: vec![n],
        };
        q.send(out(1));
        q.send(out(2));
        q.send(out(3));
        q.send(ExecutorEvent::Finished(Finished {
            job_id: job,
            report: ExecutionReport::default(),
            over_quota: false,
            log_dropped_bytes: 0,
        }));
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.len(), 2);
        match q.recv().await {
            Some(ExecutorEvent::Output { data, .. }) => assert_eq!(data, [3]),
            other => panic!("the newest output is kept: {other:?}"),
        }
        assert!(matches!(q.recv().await, Some(ExecutorEvent::Finished(_))));
    }

    fn executor() -> (Executor, EventQueue) {
        let wasm: Arc<dyn Adapter> = Arc::new(WasmAdapter::new().expect("engine"));
        let dir = std::env::temp_dir().join(format!("modchain-executor-{}", std::process::id()));
        Executor::new(vec![wasm], dir, false, 4096)
    }

    #[tokio::test]
    async fn runs_a_job_and_reports_it_finished() {
        let (mut ex, mut rx) = executor();
        let now = Timestamp::now_wall();
        let wat = r#"(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 1) (data (i32.const 16) "hi\n") (func (export "_start") (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 3)) (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
        let params = serde_json::json!({ "wat": wat }).to_string();
        let e = exec("wasm", &params, 10_000, now);
        let id = e.job_id;
        ex.start(now, e);
        let (f, live) = finished(&mut rx).await;
        assert_eq!(
            live, b"hi\n",
            "live output reaches the event loop before the end"
        );
        assert_eq!(f.job_id, id);
        assert_eq!(f.report.exit, Some(ExitStatus::Exited(0)));
        assert_eq!(f.report.stdout, b"hi\n");
        assert_eq!(ex.log(&id), Some((b"hi\n".to_vec(), true)));
    }

    #[tokio::test]
    async fn unknown_adapter_and_bad_params_come_back_as_rejected() {
        let (mut ex, mut rx) = executor();
        let now = Timestamp::now_wall();
        ex.start(now, exec("quantum", "{}", 1000, now));
        let (f, _) = finished(&mut rx).await;
        assert!(
            matches!(f.report.exit, Some(ExitStatus::Rejected(ref w)) if w.contains("quantum"))
        );
        ex.start(now, exec("wasm", "not json", 1000, now));
        let (f, _) = finished(&mut rx).await;
        assert!(matches!(f.report.exit, Some(ExitStatus::Rejected(ref w)) if w.contains("JSON")));
    }

    #[tokio::test]
    async fn many_small_lines_travel_as_few_chunks() {
        let (ex, rx) = executor();
        let job_id = Digest::of(b"chatty");
        let (sink, lines) = LogSink::new();
        let handle = ex.forward_logs(job_id, lines);
        for i in 0..1000 {
            sink.send(
                modchain_adapters::LogStream::Stdout,
                format!("line {i}\n").as_bytes(),
            );
        }
        sink.send(modchain_adapters::LogStream::Stderr, b"oops\n");
        drop(sink);
        handle.await.expect("collector");
        let mut chunks = Vec::new();
        while let Some(ExecutorEvent::Output { stream, data, .. }) = rx.try_recv() {
            chunks.push((stream, data));
        }
        assert!(chunks.len() <= 4, "{} chunks", chunks.len());
        let stdout: Vec<u8> = chunks
            .iter()
            .filter(|(s, _)| *s == ProtoStream::Stdout)
            .flat_map(|(_, d)| d.clone())
            .collect();
        assert!(stdout.starts_with(b"line 0\n") && stdout.ends_with(b"line 999\n"));
        assert_eq!(chunks.last().map(|c| c.0), Some(ProtoStream::Stderr));
    }

    #[tokio::test]
    async fn stop_cancels_a_running_job() {
        let (mut ex, mut rx) = executor();
        let now = Timestamp::now_wall();
        let params =
            serde_json::json!({ "wat": "(module (func (export \"_start\") (loop $l (br $l))))" })
                .to_string();
        let e = exec("wasm", &params, 60_000, now);
        let id = e.job_id;
        ex.start(now, e);
        tokio::time::sleep(Duration::from_millis(100)).await;
        ex.stop(&id);
        let (f, _) = finished(&mut rx).await;
        assert_eq!(f.report.exit, Some(ExitStatus::Cancelled));
    }
}
