//! The client: submits a job to the orchestrator that ranks first for it,
//! follows it through submitted → bidding → awarded → running → completed /
//! failed / cancelled, fails over to the next orchestrator when one goes
//! silent, checks the result's signature, and co-signs the receipt.

use crate::action::{Action, Event, Topic};
use crate::auction::{Award, AwardCheck};
use crate::digest::JobId;
use crate::envelope::{Envelope, Message, Signed};
use crate::identity::{Keypair, NodeId};
use crate::job::{
    Cancel, JobResult, JobSpec, JobState, JobStatus, LogChunk, OutputChunk, Refusal, SpecError,
};
use crate::receipt::{Outcome, Receipt, SignedReceipt};
use crate::time::{SECOND, Timestamp};
use crate::timer::Timers;
use std::collections::{HashMap, VecDeque};
use thiserror::Error;

/// How the client role behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// With no word from the orchestrator for this long before an award,
    /// resubmit to the next one in the job's ranking.
    pub silence_timeout_ms: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            silence_timeout_ms: 12 * SECOND,
        }
    }
}

/// Why a job could not be submitted.
#[non_exhaustive]
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The spec breaks the bounds every peer enforces.
    #[error("invalid job: {0}")]
    Invalid(#[from] SpecError),
    /// The envelope does not carry a job.
    #[error("only a signed job can be submitted, not a {0} message")]
    NotAJob(crate::envelope::Kind),
    /// This peer sees no elected orchestrator yet.
    #[error("no orchestrator is elected yet: wait until the node sees orchestrator candidates")]
    NoOrchestrator,
}

/// A job as its client knows it.
#[derive(Clone, Debug)]
pub struct ClientJob {
    /// The job as the client signed it.
    pub spec: JobSpec,
    /// Where the job stands.
    pub state: JobState,
    /// Why, for a person (the last status's detail).
    pub detail: String,
    /// When the client submitted it.
    pub submitted_at: Timestamp,
    /// Orchestrators for this job, responsible first.
    pub ranking: Vec<NodeId>,
    /// Index into `ranking` of the orchestrator in charge.
    pub orchestrator: usize,
    /// The award, once an orchestrator made one and it checked out.
    pub award: Option<Award>,
    /// The provider's signed result, once it arrived and checked out.
    pub result: Option<JobResult>,
    /// The receipt that settles the job, once co-signed.
    pub receipt: Option<SignedReceipt>,
    /// Every state the job went through, with when.
    pub history: Vec<(Timestamp, JobState)>,
    /// Why the network refused the job, when it failed so.
    pub refusal: Option<Refusal>,
    envelope: Envelope,
    /// The award's signed envelope: the receipt carries it.
    award_envelope: Option<Envelope>,
    last_heard: Timestamp,
    /// The `seq` of the newest status from the orchestrator in charge:
    /// anything it numbered lower is a late arrival.
    newest: Option<u32>,
    /// The auction round (attempt) the job's state belongs to.
    round: Option<u32>,
}

impl ClientJob {
    /// The provider that won the job, once awarded.
    pub fn provider(&self) -> Option<NodeId> {
        self.award.as_ref().map(|a| a.winner)
    }
    /// The orchestrator now in charge of the job.
    pub fn orchestrator_id(&self) -> Option<NodeId> {
        self.ranking.get(self.orchestrator).copied()
    }
}

/// After an award, how many silence timeouts pass before the client gives up
/// on the orchestrator and the provider together.
const AFTER_AWARD_SILENCE_FACTOR: u64 = 5;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Silence(JobId),
}

/// The client role: submits jobs, follows them and settles them with a receipt.
#[derive(Debug)]
pub struct Client {
    key: Keypair,
    me: NodeId,
    config: ClientConfig,
    jobs: HashMap<JobId, ClientJob>,
    timers: Timers<TimerKey>,
    actions: VecDeque<Action>,
}

impl Client {
    /// A client role signing with `key`.
    pub fn new(key: Keypair, config: ClientConfig) -> Self {
        Client {
            me: key.node_id(),
            key,
            config,
            jobs: HashMap::new(),
            timers: Timers::default(),
            actions: VecDeque::new(),
        }
    }

    /// Poll: the next action of the client role, `None` when there is none.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Timeout: when the client role next wants `handle_timeout`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.next()
    }

    /// A job of ours, by id.
    pub fn job(&self, id: &JobId) -> Option<&ClientJob> {
        self.jobs.get(id)
    }

    /// Every job of ours.
    pub fn jobs(&self) -> impl Iterator<Item = (&JobId, &ClientJob)> {
        self.jobs.iter()
    }

    /// Signs `spec` and sends it to the first orchestrator of `ranking`
    /// (computed by the caller from the election for the job's id, see
    /// [`Client::prepare`]).
    pub fn submit(
        &mut self,
        now: Timestamp,
        signed: Signed,
        ranking: Vec<NodeId>,
    ) -> Result<JobId, SubmitError> {
        let Message::Job(spec) = signed.message() else {
            return Err(SubmitError::NotAJob(signed.kind()));
        };
        spec.validate()?;
        let Some(first) = ranking.first().copied() else {
            return Err(SubmitError::NoOrchestrator);
        };
        let id = signed.id();
        self.jobs.insert(
            id,
            ClientJob {
                spec: spec.clone(),
                state: JobState::Queued,
                detail: "submitted".into(),
                submitted_at: now,
                ranking,
                orchestrator: 0,
                award: None,
                award_envelope: None,
                result: None,
                receipt: None,
                history: vec![(now, JobState::Queued)],
                refusal: None,
                envelope: signed.envelope().clone(),
                last_heard: now,
                newest: None,
                round: None,
            },
        );
        self.actions.push_back(Action::Send {
            to: first,
            message: signed,
        });
        self.timers.set(
            now.plus(self.config.silence_timeout_ms),
            TimerKey::Silence(id),
        );
        self.set_state(
            now,
            id,
            JobState::Queued,
            format!("submitted to orchestrator {}", first.short()),
        );
        Ok(id)
    }

    /// Signs a job spec; its id is the signed envelope's digest, which the
    /// caller needs to rank orchestrators before submitting.
    pub fn prepare(&self, now: Timestamp, spec: JobSpec) -> Result<Signed, SubmitError> {
        spec.validate()?;
        Ok(Envelope::seal(&self.key, now, Message::Job(spec)))
    }

    /// Asks the orchestrator (and the provider, if there is one) to stop the job.
    pub fn cancel(&mut self, now: Timestamp, id: &JobId, reason: &str) -> bool {
        let Some(job) = self.jobs.get(id) else {
            return false;
        };
        if job.state.is_terminal() {
            return false;
        }
        let msg = Envelope::seal(
            &self.key,
            now,
            Message::Cancel(Cancel {
                job_id: *id,
                reason: crate::job::bounded_text(reason),
            }),
        );
        let mut to: Vec<NodeId> = job.orchestrator_id().into_iter().collect();
        if let Some(p) = job.provider() {
            to.push(p);
        }
        for n in to {
            self.actions.push_back(Action::Send {
                to: n,
                message: msg.clone(),
            });
        }
        self.set_state(now, *id, JobState::Cancelled, "cancelled by you".into());
        true
    }

    fn set_state(&mut self, now: Timestamp, id: JobId, state: JobState, detail: String) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.state == state && job.detail == detail {
            return;
        }
        if job.state != state {
            job.history.push((now, state));
        }
        job.state = state;
        job.detail = detail.clone();
        self.actions.push_back(Action::Notify(Event::StateChanged {
            job_id: id,
            state,
            detail,
        }));
    }

    /// Handle: a verified message about one of our jobs.
    pub fn handle_message(&mut self, now: Timestamp, msg: &Signed) {
        let from = msg.signer();
        match msg.message() {
            Message::Status(s) => self.on_status(now, from, s),
            Message::Award(a) => self.on_award(now, msg, a),
            Message::Result(r) => self.on_result(now, from, r),
            Message::Receipt(r) => self.on_receipt(now, r),
            Message::Log(l) => self.on_log(now, from, l),
            Message::Chunk(c) => self.on_chunk(from, c),
            _ => {}
        }
    }

    fn on_status(&mut self, now: Timestamp, from: NodeId, s: &JobStatus) {
        let Some(job) = self.jobs.get_mut(&s.job_id) else {
            return;
        };
        if job.state.is_terminal() {
            return;
        }
        let from_orchestrator = job.orchestrator_id() == Some(from);
        let from_provider = job.provider() == Some(from)
            && job.award.as_ref().is_some_and(|a| a.attempt == s.attempt);
        if !from_orchestrator && !from_provider {
            return;
        }
        job.last_heard = now;
        // Providers may only say "running"; the orchestrator speaks for the rest.
        if from_provider && s.state != JobState::Running {
            return;
        }
        // An awarded job is not sent back to bidding by a late status of an older round.
        if job.round.is_some_and(|r| r > s.attempt)
            || (from_orchestrator && job.award.as_ref().is_some_and(|a| a.attempt > s.attempt))
        {
            return;
        }
        // The orchestrator numbers its reports; one numbered below the
        // newest is late ("accepted" arriving after "bidding"). "Running"
        // is the provider's word, even from an orchestrator that awarded
        // the job to itself, and is not numbered.
        if from_orchestrator && s.state != JobState::Running && s.seq != 0 {
            if job.newest.is_some_and(|newest| s.seq <= newest) {
                return;
            }
            job.newest = Some(s.seq);
        }
        let state = match s.state {
            // Completion is the result's to say, with its receipt.
            JobState::Completed => return,
            other => other,
        };
        if from_orchestrator
            && state == JobState::Failed
            && s.refusal == Some(Refusal::NotElected)
            && job.award.is_none()
        {
            // This peer does not see itself elected (our views of the
            // candidates differ): go to the next one at once.
            self.fail_over(now, s.job_id);
            return;
        }
        // Once awarded, a round only moves forward: the orchestrator's
        // "awarded" can arrive after the provider's "running" (they travel
        // separately), or its "bidding" after its own "running" when it
        // awarded the job to itself, and must not send the job back.
        // Before the award a round may go back from bidding to queued (no
        // bids came), which the numbering above orders.
        let same_round = job.round == Some(s.attempt)
            || job.award.as_ref().is_some_and(|a| a.attempt == s.attempt);
        if same_round
            && job.state.progress() >= JobState::Awarded.progress()
            && state.progress() < job.state.progress()
        {
            return;
        }
        job.round = Some(s.attempt);
        if matches!(state, JobState::Queued | JobState::Bidding)
            && job.award.as_ref().is_some_and(|a| a.attempt < s.attempt)
        {
            // A re-auction: the old award is void.
            job.award = None;
        }
        if state == JobState::Failed {
            job.refusal = s.refusal;
        }
        self.set_state(now, s.job_id, state, s.detail.clone());
    }

    fn on_log(&mut self, now: Timestamp, from: NodeId, l: &LogChunk) {
        let Some(job) = self.jobs.get_mut(&l.job_id) else {
            return;
        };
        if job
            .award
            .as_ref()
            .is_none_or(|a| a.winner != from || a.attempt != l.attempt)
        {
            return;
        }
        job.last_heard = now;
        self.actions.push_back(Action::Notify(Event::LogReceived {
            job_id: l.job_id,
            seq: l.seq,
            stream: l.stream,
            data: l.data.clone(),
        }));
    }

    fn on_chunk(&mut self, from: NodeId, c: &OutputChunk) {
        let Some(job) = self.jobs.get(&c.job_id) else {
            return;
        };
        let listed = job.result.as_ref().is_some_and(|r| {
            r.outputs
                .iter()
                .any(|o| o.digest == c.digest && o.size == c.total_size)
        });
        if job.provider() != Some(from) || !listed {
            return;
        }
        self.actions
            .push_back(Action::Notify(Event::ChunkReceived(c.clone())));
    }

    /// Asks the provider of a finished job for part of an output file that
    /// did not travel inline. Returns false if there is no such file.
    pub fn fetch_output(
        &mut self,
        now: Timestamp,
        id: &JobId,
        digest: &crate::digest::Digest,
        offset: u64,
    ) -> bool {
        let Some(job) = self.jobs.get(id) else {
            return false;
        };
        let (Some(provider), Some(result)) = (job.provider(), job.result.as_ref()) else {
            return false;
        };
        let Some(file) = result.outputs.iter().find(|o| o.digest == *digest) else {
            return false;
        };
        if offset >= file.size {
            return false;
        }
        let length =
            (file.size - offset).min(crate::job::limits::MAX_OUTPUT_CHUNK_BYTES as u64) as u32;
        let msg = Envelope::seal(
            &self.key,
            now,
            Message::Fetch(crate::job::FetchOutput {
                job_id: *id,
                digest: *digest,
                offset,
                length,
            }),
        );
        self.actions.push_back(Action::Send {
            to: provider,
            message: msg,
        });
        true
    }

    fn on_award(&mut self, now: Timestamp, msg: &Signed, a: &Award) {
        let me = self.me;
        let from = msg.signer();
        let Some(job) = self.jobs.get_mut(&a.job_id) else {
            return;
        };
        if job.orchestrator_id() != Some(from) || a.client != me || job.state.is_terminal() {
            return;
        }
        if job
            .award
            .as_ref()
            .is_some_and(|old| old.attempt >= a.attempt)
        {
            return;
        }
        let winning_max = a
            .bids
            .iter()
            .find(|b| b.bid_id == a.winning_bid)
            .map(|b| b.max_total);
        if a.check() != AwardCheck::Valid
            || winning_max != Some(a.quote.max_total(job.spec.timeout_ms))
        {
            self.actions
                .push_back(Action::Notify(Event::ResultRejected {
                    job_id: a.job_id,
                    reason: format!("award does not follow the selection rule: {:?}", a.check()),
                }));
            return;
        }
        job.award = Some(a.clone());
        job.award_envelope = Some(msg.envelope().clone());
        job.last_heard = now;
        // An orchestrator that awarded the job to itself may have said
        // "running" first: the award is recorded and the job stays there.
        let started =
            job.round == Some(a.attempt) && job.state.progress() > JobState::Awarded.progress();
        job.round = Some(a.attempt);
        if started {
            return;
        }
        let detail = format!(
            "awarded to {} for at most {}",
            a.winner.short(),
            a.bids
                .iter()
                .find(|b| b.bid_id == a.winning_bid)
                .map(|b| b.max_total)
                .unwrap_or_default()
        );
        self.set_state(now, a.job_id, JobState::Awarded, detail);
    }

    fn on_result(&mut self, now: Timestamp, from: NodeId, r: &JobResult) {
        let Some(job) = self.jobs.get_mut(&r.job_id) else {
            return;
        };
        let Some(award) = job.award.clone() else {
            return;
        };
        if award.winner != from || award.attempt != r.attempt || job.result.is_some() {
            return;
        }
        let reject = |reason: &str| {
            Action::Notify(Event::ResultRejected {
                job_id: r.job_id,
                reason: reason.to_string(),
            })
        };
        if !r.within_limits() {
            self.actions
                .push_back(reject("result over the size limits"));
            return;
        }
        let Some(orchestrator) = job.orchestrator_id() else {
            return;
        };
        let Some(award_envelope) = job.award_envelope.clone() else {
            return;
        };
        let receipt = Receipt::for_result(&award, orchestrator, award_envelope.id(), r);
        if !from.verify(&receipt.signing_bytes(), &r.receipt_signature) {
            self.actions.push_back(reject(
                "the provider's receipt signature does not match the result",
            ));
            return;
        }
        let signed = SignedReceipt {
            client_signature: Some(receipt.sign(&self.key)),
            provider_signature: Some(r.receipt_signature),
            orchestrator_signature: None,
            receipt,
            award: award_envelope.to_bytes(),
        };
        job.result = Some(r.clone());
        job.receipt = Some(signed.clone());
        job.last_heard = now;
        let was_cancelled = job.state == JobState::Cancelled;
        let msg = Envelope::seal(&self.key, now, Message::Receipt(signed.clone()));
        self.actions.push_back(Action::StoreReceipt(signed));
        self.actions.push_back(Action::Publish {
            topic: Topic::Receipts,
            message: msg.clone(),
        });
        // Directly too, so provider and orchestrator settle even if gossip lags.
        self.actions.push_back(Action::Send {
            to: from,
            message: msg.clone(),
        });
        if orchestrator != from {
            self.actions.push_back(Action::Send {
                to: orchestrator,
                message: msg,
            });
        }
        self.actions
            .push_back(Action::Notify(Event::ResultReceived {
                job_id: r.job_id,
                provider: from,
                exit: r.exit.clone(),
            }));
        if !was_cancelled {
            self.set_state(now, r.job_id, JobState::Completed, r.exit.to_string());
        }
    }

    fn on_receipt(&mut self, now: Timestamp, r: &SignedReceipt) {
        // A failure receipt about our job: the orchestrator will re-auction.
        let rec = &r.receipt;
        if let Outcome::ProviderFailed(reason) = rec.outcome
            && let Some(job) = self.jobs.get_mut(&rec.job_id)
            && job.orchestrator_id() == Some(rec.orchestrator)
            && r.verify().is_ok()
            && !job.state.is_terminal()
        {
            job.last_heard = now;
            let detail = format!(
                "provider {} {}; waiting for a new auction",
                rec.provider.short(),
                reason.as_str()
            );
            job.award = None;
            // That round is over: what comes late from it is ignored.
            job.round = Some(rec.attempt.saturating_add(1));
            self.set_state(now, rec.job_id, JobState::Queued, detail);
        }
    }

    /// Replaces the orchestrators not yet tried for job `id` with `current`
    /// (the job's ranking in the election as it stands now), leaving out
    /// any already tried: the next fail-over goes to a peer that holds a
    /// seat now, not one drawn when the job was submitted.
    pub fn rerank(&mut self, id: &JobId, current: Vec<NodeId>) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        if job.state.is_terminal() {
            return;
        }
        let tried = job.orchestrator.saturating_add(1).min(job.ranking.len());
        job.ranking.truncate(tried);
        let fresh: Vec<NodeId> = current
            .into_iter()
            .filter(|n| !job.ranking.contains(n))
            .collect();
        job.ranking.extend(fresh);
    }

    /// Resubmits the same signed job (same id) to the next orchestrator in
    /// its ranking, or fails the job when none is left.
    fn fail_over(&mut self, now: Timestamp, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.orchestrator + 1 >= job.ranking.len() {
            self.set_state(
                now,
                id,
                JobState::Failed,
                "no orchestrator in the job's ranking took the job".into(),
            );
            return;
        }
        job.orchestrator += 1;
        job.last_heard = now;
        job.award = None;
        // The next orchestrator counts its rounds and its reports afresh.
        job.newest = None;
        job.round = None;
        let next = job.ranking[job.orchestrator];
        let Ok(message) = job.envelope.clone().verify() else {
            return;
        };
        self.actions.push_back(Action::Send { to: next, message });
        self.actions.push_back(Action::Notify(Event::Resubmitted {
            job_id: id,
            orchestrator: next,
        }));
        self.set_state(
            now,
            id,
            JobState::Queued,
            format!("orchestrator unavailable; resubmitted to {}", next.short()),
        );
    }

    /// The connection to `node` dropped. A job awarded by `node` to itself
    /// (an orchestrator that also provides) has nobody left to report on
    /// it: no heartbeats, no failure receipt. It fails over to the next
    /// orchestrator now rather than after the long after-award silence.
    /// Jobs with another party still alive wait for it as before: a
    /// provider carries on and reports, an orchestrator re-auctions.
    pub fn handle_peer_gone(&mut self, now: Timestamp, node: &NodeId) {
        let orphaned: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| {
                !j.state.is_terminal()
                    && j.orchestrator_id().as_ref() == Some(node)
                    && j.provider().as_ref() == Some(node)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in orphaned {
            self.fail_over(now, id);
        }
    }

    /// Timeout: acts on every silence timer due by `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        for TimerKey::Silence(id) in self.timers.expired(now) {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if job.state.is_terminal() {
                continue;
            }
            let quiet = now.since(job.last_heard);
            // Before an award the orchestrator reports at least every requeue
            // interval; after it, the provider's heartbeats keep coming. A job
            // that hears from nobody for long has lost both.
            let limit = if job.award.is_none() {
                self.config.silence_timeout_ms
            } else {
                AFTER_AWARD_SILENCE_FACTOR * self.config.silence_timeout_ms
            };
            if quiet >= limit {
                self.fail_over(now, id);
                if self.jobs.get(&id).is_none_or(|j| j.state.is_terminal()) {
                    continue;
                }
            }
            let last = self.jobs.get(&id).map(|j| j.last_heard).unwrap_or(now);
            self.timers.set(
                last.plus(self.config.silence_timeout_ms).max(now.plus(1)),
                TimerKey::Silence(id),
            );
        }
    }
}
