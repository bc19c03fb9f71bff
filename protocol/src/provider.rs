//! The provider: bids on calls within its free capacity and prices, runs the
//! jobs it wins, reports status and a signed result, and frees every
//! reservation on every path that ends a job.

use crate::action::{Action, Event, Execution, StopReason};
use crate::advert::{AdapterInfo, Capacity};
use crate::auction::{Award, AwardCheck, Bid, Decline, DeclineReason};
use crate::digest::{BidId, JobId};
use crate::envelope::{CallForBids, Envelope, Message, Signed};
use crate::identity::{Keypair, NodeId};
use crate::job::{
    Cancel, ExitStatus, FetchOutput, JobResult, JobSpec, JobState, JobStatus, LogChunk, LogStream,
    OutputFile, Usage, bounded_text, limits, tail_bytes,
};
use crate::pricing::{PriceTable, Quote};
use crate::receipt::Receipt;
use crate::time::{SECOND, Timestamp};
use crate::timer::Timers;
use crate::vocabulary::Credits;
use std::collections::{HashMap, VecDeque};

/// How the provider role sells capacity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderConfig {
    /// What it charges.
    pub prices: PriceTable,
    /// What this provider offers to jobs in total.
    pub capacity: Capacity,
    /// Adapters with their methods and models.
    pub adapters: Vec<AdapterInfo>,
    /// How often a running job's status is reported.
    pub heartbeat_ms: u64,
    /// How long after the bid deadline a reservation waits for the award.
    pub award_grace_ms: u64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            prices: PriceTable::default(),
            capacity: Capacity::default(),
            adapters: Vec::new(),
            heartbeat_ms: 5 * SECOND,
            award_grace_ms: 5 * SECOND,
        }
    }
}

/// What an adapter reports when a job ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutionReport {
    /// How the job ended; `None` if the adapter could not tell.
    pub exit: Option<ExitStatus>,
    /// Everything the job wrote to stdout (the result keeps the tail).
    pub stdout: Vec<u8>,
    /// Everything the job wrote to stderr (the result keeps the tail).
    pub stderr: Vec<u8>,
    /// The files the job wrote.
    pub outputs: Vec<OutputFile>,
    /// What the job used.
    pub usage: Usage,
}

/// A call for bids we can answer with a bid.
struct Assessed {
    job_id: JobId,
    spec: JobSpec,
    client: NodeId,
    quote: Quote,
    max_total: Credits,
}

/// Why we will not bid, and on which job if the call named one we could read.
type Refusal = (Option<JobId>, DeclineReason);

#[derive(Clone, Debug)]
struct Reservation {
    orchestrator: NodeId,
    attempt: u32,
    bid_id: BidId,
    need: Capacity,
    spec: JobSpec,
    client: NodeId,
    quote: Quote,
    expires_at: Timestamp,
}

#[derive(Clone, Debug)]
struct Running {
    orchestrator: NodeId,
    award: Award,
    /// The id of the award's signed envelope, which the receipt names.
    award_id: crate::digest::Digest,
    need: Capacity,
    started_at: Timestamp,
    stop: Option<StopReason>,
    /// Next live log chunk number.
    log_seq: u64,
}

/// Output files of a finished job that its client may still fetch.
#[derive(Clone, Debug)]
struct Delivered {
    client: NodeId,
    files: Vec<(crate::digest::Digest, u64)>,
}

/// How long a provider keeps a finished job's outputs for its client to fetch.
pub const OUTPUT_RETENTION_MS: u64 = 30 * crate::time::MINUTE;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    ReservationExpiry(JobId, u32),
    ForgetOutputs(JobId),
    Heartbeat(JobId, u32),
    Deadline(JobId, u32),
}

/// A check the driver supplies for what only it can know, such as whether
/// a Docker image is present or a module compiles. It must answer from
/// memory (no I/O): the provider calls it while deciding whether to bid.
pub trait Admission: Send + Sync + std::fmt::Debug {
    /// `Err` with the reason declines the job before any bid.
    fn admit(&self, spec: &JobSpec) -> Result<(), AdmissionRefusal>;
}

/// Why the admission check declined a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdmissionRefusal {
    /// This provider cannot run it (an image not present here); another may.
    Unsupported(String),
    /// The job's parameters are invalid for the adapter; no provider will
    /// take them.
    InvalidParams(String),
}

/// The provider role: bids on calls, runs what it wins and reports.
#[derive(Debug)]
pub struct Provider {
    key: Keypair,
    me: NodeId,
    config: ProviderConfig,
    reserved: HashMap<JobId, Reservation>,
    running: HashMap<JobId, Running>,
    delivered: HashMap<JobId, Delivered>,
    admission: Option<Box<dyn Admission>>,
    timers: Timers<TimerKey>,
    actions: VecDeque<Action>,
}

impl Provider {
    /// A provider role signing with `key`.
    pub fn new(key: Keypair, config: ProviderConfig) -> Self {
        Provider {
            me: key.node_id(),
            key,
            config,
            reserved: HashMap::new(),
            running: HashMap::new(),
            delivered: HashMap::new(),
            admission: None,
            timers: Timers::default(),
            actions: VecDeque::new(),
        }
    }

    /// Installs the driver's admission check (see [`Admission`]).
    pub fn set_admission(&mut self, admission: Box<dyn Admission>) {
        self.admission = Some(admission);
    }

    /// How this provider sells capacity.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// Poll: the next action of the provider role, `None` when there is none.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Timeout: when the provider role next wants `handle_timeout`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.next()
    }

    /// Capacity not reserved by bids nor taken by running jobs.
    pub fn free_capacity(&self) -> Capacity {
        let used = self
            .reserved
            .values()
            .map(|r| r.need)
            .chain(self.running.values().map(|r| r.need))
            .fold(Capacity::default(), |a, b| a.plus(&b));
        self.config.capacity.minus(&used)
    }

    /// Capacity reserved for bids not yet decided.
    pub fn reservations(&self) -> usize {
        self.reserved.len()
    }

    /// Jobs running now.
    pub fn running_jobs(&self) -> usize {
        self.running.len()
    }

    /// Whether this provider is executing the job now.
    pub fn is_running(&self, job: &JobId) -> bool {
        self.running.contains_key(job)
    }

    /// Whether the job is still held (reserved or running).
    pub fn holds(&self, job: &JobId) -> bool {
        self.reserved.contains_key(job) || self.running.contains_key(job)
    }

    /// Handle: a verified call for bids, award, cancel or fetch.
    pub fn handle_message(&mut self, now: Timestamp, msg: &Signed) {
        let from = msg.signer();
        match msg.message() {
            Message::CallForBids(c) => self.on_call(now, from, c),
            Message::Award(a) => self.on_award(now, from, msg.id(), a),
            Message::Cancel(c) => self.on_cancel(from, c),
            Message::Fetch(f) => self.on_fetch(from, f),
            _ => {}
        }
    }

    fn notify(&mut self, e: Event) {
        self.actions.push_back(Action::Notify(e));
    }

    fn send(&mut self, now: Timestamp, to: NodeId, m: Message) {
        let message = Envelope::seal(&self.key, now, m);
        self.actions.push_back(Action::Send { to, message });
    }

    /// Checks a call and returns the job and our quote, or why we will not bid.
    fn assess(&self, call: &CallForBids) -> Result<Assessed, Refusal> {
        let job = call
            .job
            .clone()
            .verify()
            .map_err(|e| (None, DeclineReason::InvalidCall(e.to_string())))?;
        let job_id = job.id();
        let Message::Job(spec) = job.message() else {
            return Err((Some(job_id), DeclineReason::InvalidCall("not a job".into())));
        };
        spec.validate()
            .map_err(|e| (Some(job_id), DeclineReason::InvalidCall(e.to_string())))?;
        let adapter = self
            .config
            .adapters
            .iter()
            .find(|a| a.name == spec.adapter)
            .ok_or_else(|| {
                (
                    Some(job_id),
                    DeclineReason::Unsupported(format!("adapter `{}`", spec.adapter)),
                )
            })?;
        if !adapter.methods.contains(&spec.method) {
            return Err((
                Some(job_id),
                DeclineReason::Unsupported(format!("method `{}`", spec.method)),
            ));
        }
        if let Some(model) = &spec.requirements.model
            && !adapter.models.iter().any(|m| m.name == *model)
        {
            return Err((
                Some(job_id),
                DeclineReason::Unsupported(format!("model `{model}`")),
            ));
        }
        if let Some(check) = &self.admission {
            check.admit(spec).map_err(|why| {
                let reason = match why {
                    AdmissionRefusal::Unsupported(s) => DeclineReason::Unsupported(s),
                    AdmissionRefusal::InvalidParams(s) => DeclineReason::InvalidParams(s),
                };
                (Some(job_id), reason)
            })?;
        }
        let need = Capacity::for_requirements(&spec.requirements);
        if !self.config.capacity.fits(&need) {
            return Err((
                Some(job_id),
                DeclineReason::RequirementsUnmet("more than this machine offers".into()),
            ));
        }
        if !self.free_capacity().fits(&need) {
            return Err((Some(job_id), DeclineReason::Busy));
        }
        let quote = self.config.prices.quote(&spec.requirements);
        let max_total = quote.max_total(spec.timeout_ms);
        if max_total > spec.max_price {
            return Err((
                Some(job_id),
                DeclineReason::OverMaxPrice {
                    max_total,
                    max_price: spec.max_price,
                },
            ));
        }
        Ok(Assessed {
            job_id,
            spec: spec.clone(),
            client: job.signer(),
            quote,
            max_total,
        })
    }

    fn on_call(&mut self, now: Timestamp, orchestrator: NodeId, call: &CallForBids) {
        if call.bid_deadline <= now {
            return;
        }
        match self.assess(call) {
            Ok(Assessed {
                job_id,
                spec,
                client,
                quote,
                max_total,
            }) => {
                if self.holds(&job_id) {
                    // A duplicate call for a job we already hold: our first answer stands.
                    return;
                }
                let bid = Envelope::seal(
                    &self.key,
                    now,
                    Message::Bid(Bid {
                        job_id,
                        attempt: call.attempt,
                        quote,
                        max_total,
                    }),
                );
                let expires_at = call.bid_deadline.plus(self.config.award_grace_ms);
                self.reserved.insert(
                    job_id,
                    Reservation {
                        orchestrator,
                        attempt: call.attempt,
                        bid_id: bid.id(),
                        need: Capacity::for_requirements(&spec.requirements),
                        spec,
                        client,
                        quote,
                        expires_at,
                    },
                );
                self.timers.set(
                    expires_at,
                    TimerKey::ReservationExpiry(job_id, call.attempt),
                );
                self.actions.push_back(Action::Send {
                    to: orchestrator,
                    message: bid,
                });
                self.notify(Event::BidSent {
                    job_id,
                    orchestrator,
                    max_total,
                });
                self.notify(Event::CapacityChanged);
            }
            Err((job_id, reason)) => {
                if let Some(job_id) = job_id {
                    if self.holds(&job_id) {
                        return;
                    }
                    self.send(
                        now,
                        orchestrator,
                        Message::Decline(Decline {
                            job_id,
                            attempt: call.attempt,
                            reason: reason.clone(),
                        }),
                    );
                    self.notify(Event::BidWithheld { job_id, reason });
                }
            }
        }
    }

    fn release(&mut self, job: &JobId) {
        let had = self.reserved.remove(job).is_some() | self.running.remove(job).is_some();
        if had {
            self.notify(Event::CapacityChanged);
        }
    }

    fn on_award(
        &mut self,
        now: Timestamp,
        from: NodeId,
        award_id: crate::digest::Digest,
        award: &Award,
    ) {
        let Some(res) = self.reserved.get(&award.job_id) else {
            return;
        };
        if res.orchestrator != from || res.attempt != award.attempt {
            return;
        }
        if award.winner != self.me || award.winning_bid != res.bid_id {
            // We lost: free the capacity we held for this bid.
            self.release(&award.job_id);
            return;
        }
        if award.check() != AwardCheck::Valid
            || award.client != res.client
            || award.quote != res.quote
        {
            // An award that breaks the rule is not binding; drop the reservation.
            self.release(&award.job_id);
            return;
        }
        let Some(res) = self.reserved.remove(&award.job_id) else {
            return;
        };
        let job_id = award.job_id;
        let deadline = now.plus(res.spec.timeout_ms);
        self.running.insert(
            job_id,
            Running {
                orchestrator: from,
                award: award.clone(),
                award_id,
                need: res.need,
                started_at: now,
                stop: None,
                log_seq: 0,
            },
        );
        self.actions.push_back(Action::Execute(Execution {
            job_id,
            attempt: award.attempt,
            client: res.client,
            spec: res.spec,
            deadline,
        }));
        self.report_running(now, job_id);
        self.timers.set(
            now.plus(self.config.heartbeat_ms),
            TimerKey::Heartbeat(job_id, award.attempt),
        );
        self.timers
            .set(deadline, TimerKey::Deadline(job_id, award.attempt));
        self.notify(Event::ExecutionStarted {
            job_id,
            client: res.client,
        });
    }

    fn report_running(&mut self, now: Timestamp, job_id: JobId) {
        let Some(run) = self.running.get(&job_id) else {
            return;
        };
        let status = Envelope::seal(
            &self.key,
            now,
            Message::Status(JobStatus {
                job_id,
                attempt: run.award.attempt,
                state: JobState::Running,
                detail: format!("running on {}", self.me.short()),
                seq: 0,
                refusal: None,
            }),
        );
        let (o, c) = (run.orchestrator, run.award.client);
        self.actions.push_back(Action::Send {
            to: o,
            message: status.clone(),
        });
        self.actions.push_back(Action::Send {
            to: c,
            message: status,
        });
    }

    fn on_cancel(&mut self, from: NodeId, c: &Cancel) {
        if let Some(res) = self.reserved.get(&c.job_id) {
            if res.client == from {
                self.release(&c.job_id);
            }
            return;
        }
        if let Some(run) = self.running.get_mut(&c.job_id)
            && run.award.client == from
            && run.stop.is_none()
        {
            run.stop = Some(StopReason::Cancelled);
            self.actions.push_back(Action::Stop {
                job_id: c.job_id,
                reason: StopReason::Cancelled,
            });
        }
    }

    /// Output a running job just produced: streamed to its client in chunks.
    pub fn log_output(&mut self, now: Timestamp, job_id: JobId, stream: LogStream, data: &[u8]) {
        let Some(run) = self.running.get_mut(&job_id) else {
            return;
        };
        let (client, attempt) = (run.award.client, run.award.attempt);
        let mut chunks = Vec::new();
        for piece in data.chunks(limits::MAX_LOG_CHUNK_BYTES) {
            chunks.push(LogChunk {
                job_id,
                attempt,
                seq: run.log_seq,
                stream,
                data: piece.to_vec(),
            });
            run.log_seq += 1;
        }
        for c in chunks {
            self.send(now, client, Message::Log(c));
        }
    }

    fn on_fetch(&mut self, from: NodeId, f: &FetchOutput) {
        let Some(d) = self.delivered.get(&f.job_id) else {
            return;
        };
        let known = d
            .files
            .iter()
            .any(|(digest, size)| *digest == f.digest && f.offset <= *size);
        if d.client != from || !known || f.length as usize > limits::MAX_OUTPUT_CHUNK_BYTES {
            return;
        }
        self.actions.push_back(Action::ServeOutput {
            to: from,
            request: f.clone(),
        });
    }

    /// Timeout: stops jobs past their deadline, lets lapsed reservations go, sends heartbeats.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        for key in self.timers.expired(now) {
            match key {
                TimerKey::ForgetOutputs(id) => {
                    self.delivered.remove(&id);
                }
                TimerKey::ReservationExpiry(id, attempt) => {
                    if self
                        .reserved
                        .get(&id)
                        .is_some_and(|r| r.attempt == attempt && r.expires_at <= now)
                    {
                        self.release(&id);
                    }
                }
                TimerKey::Heartbeat(id, attempt) => {
                    if self
                        .running
                        .get(&id)
                        .is_some_and(|r| r.award.attempt == attempt)
                    {
                        self.report_running(now, id);
                        self.timers.set(
                            now.plus(self.config.heartbeat_ms),
                            TimerKey::Heartbeat(id, attempt),
                        );
                    }
                }
                TimerKey::Deadline(id, attempt) => {
                    if let Some(run) = self.running.get_mut(&id)
                        && run.award.attempt == attempt
                        && run.stop.is_none()
                    {
                        run.stop = Some(StopReason::TimedOut);
                        self.actions.push_back(Action::Stop {
                            job_id: id,
                            reason: StopReason::TimedOut,
                        });
                    }
                }
            }
        }
    }

    /// The adapter finished `job` (or stopped it). Sends the signed result,
    /// with our signature on the receipt it settles, and frees the capacity.
    pub fn execution_finished(&mut self, now: Timestamp, job_id: JobId, report: ExecutionReport) {
        let Some(run) = self.running.get(&job_id) else {
            return;
        };
        let exit = match (run.stop, report.exit) {
            (Some(StopReason::Cancelled), _) => ExitStatus::Cancelled,
            (Some(StopReason::TimedOut), _) => ExitStatus::TimedOut,
            (None, Some(ExitStatus::Rejected(why))) => ExitStatus::Rejected(bounded_text(&why)),
            (None, Some(e)) => e,
            (None, None) => ExitStatus::Rejected("the adapter reported no exit status".into()),
        };
        let mut usage = report.usage;
        if usage.wall_ms == 0 {
            usage.wall_ms = now.since(run.started_at);
        }
        let mut result = JobResult {
            job_id,
            attempt: run.award.attempt,
            exit: exit.clone(),
            stdout: tail_bytes(&report.stdout, limits::MAX_LOG_BYTES),
            stderr: tail_bytes(&report.stderr, limits::MAX_LOG_BYTES),
            outputs: bound_outputs(report.outputs),
            usage,
            finished_at: now,
            receipt_signature: crate::identity::Signature([0; 64]),
        };
        let fetchable: Vec<(crate::digest::Digest, u64)> = result
            .outputs
            .iter()
            .filter(|o| o.inline.is_none())
            .map(|o| (o.digest, o.size))
            .collect();
        if !fetchable.is_empty() {
            self.delivered.insert(
                job_id,
                Delivered {
                    client: run.award.client,
                    files: fetchable,
                },
            );
            self.timers.set(
                now.plus(OUTPUT_RETENTION_MS),
                TimerKey::ForgetOutputs(job_id),
            );
        }
        let receipt = Receipt::for_result(&run.award, run.orchestrator, run.award_id, &result);
        result.receipt_signature = receipt.sign(&self.key);
        let (o, c) = (run.orchestrator, run.award.client);
        let msg = Envelope::seal(&self.key, now, Message::Result(result));
        self.actions.push_back(Action::Send {
            to: c,
            message: msg.clone(),
        });
        if o != c {
            self.actions.push_back(Action::Send {
                to: o,
                message: msg,
            });
        }
        self.notify(Event::ExecutionFinished {
            job_id,
            exit,
            wall_ms: usage.wall_ms,
        });
        self.release(&job_id);
    }

    /// Replaces the capacity offered (the machine changed, or the operator did).
    pub fn set_capacity(&mut self, capacity: Capacity) {
        self.config.capacity = capacity;
    }

    /// Replaces the adapters offered and the models they serve (a model
    /// file added or removed, an Ollama server that pulled one).
    pub fn set_adapters(&mut self, adapters: Vec<AdapterInfo>) {
        self.config.adapters = adapters;
    }
}

/// The longest output file name listed in a result.
pub const MAX_OUTPUT_NAME_BYTES: usize = 255;

/// Drops inline contents once they would push the result over the inline
/// limit: the client then fetches those files by digest.
fn bound_outputs(outputs: Vec<OutputFile>) -> Vec<OutputFile> {
    let mut inline_total = 0usize;
    outputs
        .into_iter()
        // Names past the bound are not listed (the result's size limit
        // assumes them); such a file is a job's own odd choice.
        .filter(|o| o.name.len() <= MAX_OUTPUT_NAME_BYTES)
        .take(limits::MAX_OUTPUT_FILES)
        .map(|mut o| {
            if let Some(data) = &o.inline {
                if inline_total + data.len() > limits::MAX_INLINE_OUTPUT_BYTES {
                    o.inline = None;
                } else {
                    inline_total += data.len();
                }
            }
            o
        })
        .collect()
}
