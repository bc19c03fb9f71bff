//! The orchestrator: queues jobs, runs their auctions, watches the winners,
//! and re-auctions a job when its provider fails.
//!
//! Sans-IO: every call takes an [`OrchestratorContext`] (the time, the advert
//! table and the reputations) and queues [`Action`]s, drained with
//! `poll_action`.
//! `poll_timeout` says when `handle_timeout` must next be called.

use crate::action::{Action, Event, Topic};
use crate::advert::{AdvertBook, Capacity};
use crate::auction::{self, Award, Bid, BidEntry, Decline, DeclineReason, MAX_AWARD_BIDS};
use crate::digest::JobId;
use crate::envelope::{CallForBids, Envelope, Message, Signed};
use crate::identity::{Keypair, NodeId};
use crate::job::{Cancel, JobResult, JobSpec, JobState, JobStatus, Refusal, bounded_text};
use crate::pricing::Quote;
use crate::receipt::{FailureReason, Outcome, Receipt, SignedReceipt};
use crate::time::{MINUTE, SECOND, Timestamp};
use crate::timer::Timers;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Reputation per node, 0..=REPUTATION_SCALE, as the ledger last computed it.
pub type ReputationTable = HashMap<NodeId, u32>;

/// What the orchestrator reads but does not own.
#[derive(Clone, Copy, Debug)]
pub struct OrchestratorContext<'a> {
    /// The driver's clock.
    pub now: Timestamp,
    /// The adverts this peer holds.
    pub adverts: &'a AdvertBook,
    /// Reputation per node, as the ledger last computed it.
    pub reputation: &'a ReputationTable,
}

impl OrchestratorContext<'_> {
    fn reputation_of(&self, node: &NodeId) -> u32 {
        self.reputation.get(node).copied().unwrap_or(0)
    }
}

/// How the orchestrator role runs auctions and watches providers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrchestratorConfig {
    /// How long calls for bids stay open.
    pub bid_window_ms: u64,
    /// Close the window early once this many bids are in.
    pub enough_bids: usize,
    /// Call at most this many providers per auction.
    pub max_calls: usize,
    /// Auction rounds per job before it fails.
    pub max_attempts: u32,
    /// A provider running a job must report at least this often.
    pub status_timeout_ms: u64,
    /// Slack after the job's own timeout before the result counts as missed.
    pub result_grace_ms: u64,
    /// How often a waiting job is looked at again.
    pub requeue_interval_ms: u64,
    /// Auctions open at once; further jobs wait in the priority queue.
    pub max_concurrent_auctions: usize,
    /// Jobs held (queued, bidding or running); more are refused.
    pub max_jobs: usize,
    /// How long an ended job is remembered (so resubmissions are recognised).
    pub remember_ended_ms: u64,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        OrchestratorConfig {
            bid_window_ms: 1500,
            enough_bids: 5,
            max_calls: 16,
            max_attempts: 3,
            status_timeout_ms: 15 * SECOND,
            result_grace_ms: 10 * SECOND,
            requeue_interval_ms: 5 * SECOND,
            max_concurrent_auctions: 256,
            max_jobs: 10_000,
            remember_ended_ms: 10 * MINUTE,
        }
    }
}

#[derive(Clone, Debug)]
enum Phase {
    Queued {
        reason: String,
        /// In the dispatch queue (else waiting for a requeue timer).
        ready: bool,
    },
    Bidding {
        called: BTreeSet<NodeId>,
        answered: BTreeSet<NodeId>,
        bids: Vec<(BidEntry, Quote)>,
        declines: Vec<(NodeId, DeclineReason)>,
        opened_at: Timestamp,
    },
    Awarded {
        award: Award,
        /// The award as signed and sent: failure receipts carry it.
        envelope: Box<Envelope>,
        last_heard: Timestamp,
    },
    Ended(JobState),
}

#[derive(Clone, Debug)]
struct Job {
    envelope: Envelope,
    spec: JobSpec,
    client: NodeId,
    submitted_at: Timestamp,
    attempt: u32,
    excluded: BTreeSet<NodeId>,
    phase: Phase,
    last_status: Option<(JobState, String)>,
    /// Why the job was refused outright, told with its `Failed` status.
    refusal: Option<Refusal>,
    /// How many statuses went to the client (`JobStatus::seq`).
    statuses: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    BidWindow(JobId, u32),
    Watch(JobId, u32),
    Requeue(JobId),
    StartBy(JobId),
    Forget(JobId),
}

/// Priority queue order: higher priority first, then earlier submission.
type QueueKey = (std::cmp::Reverse<u8>, Timestamp, JobId);

/// The orchestrator role: runs the auctions of the jobs it is responsible for and watches the winners.
#[derive(Debug)]
pub struct Orchestrator {
    key: Keypair,
    me: NodeId,
    config: OrchestratorConfig,
    jobs: HashMap<JobId, Job>,
    queue: BTreeSet<QueueKey>,
    auctions_open: usize,
    timers: Timers<TimerKey>,
    actions: VecDeque<Action>,
}

impl Orchestrator {
    /// An orchestrator role signing with `key`.
    pub fn new(key: Keypair, config: OrchestratorConfig) -> Self {
        Orchestrator {
            me: key.node_id(),
            key,
            config,
            jobs: HashMap::new(),
            queue: BTreeSet::new(),
            auctions_open: 0,
            timers: Timers::default(),
            actions: VecDeque::new(),
        }
    }

    /// Poll: the next action of the orchestrator role, `None` when there is none.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Timeout: when the orchestrator role next wants `handle_timeout`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.next()
    }

    /// Jobs not yet ended.
    pub fn active_jobs(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| !matches!(j.phase, Phase::Ended(_)))
            .count()
    }

    /// How many deadlines the orchestrator holds (bounded by its jobs: each
    /// ended job's far deadlines are removed).
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// The state of a job as this orchestrator sees it.
    pub fn job_state(&self, job: &JobId) -> Option<JobState> {
        self.jobs.get(job).map(|j| phase_state(&j.phase))
    }

    /// Number of live awards for a job (the protocol promises at most one).
    pub fn live_awards(&self, job: &JobId) -> usize {
        usize::from(matches!(
            self.jobs.get(job).map(|j| &j.phase),
            Some(Phase::Awarded { .. })
        ))
    }

    /// A verified message addressed to this orchestrator.
    pub fn handle_message(&mut self, ctx: &OrchestratorContext<'_>, msg: &Signed) {
        let from = msg.signer();
        match msg.message() {
            Message::Job(spec) => self.on_job(ctx, msg, spec.clone()),
            Message::Bid(bid) => self.on_bid(ctx, from, msg, bid),
            Message::Decline(d) => self.on_decline(ctx, from, d),
            Message::Status(s) => self.on_status(ctx, from, s),
            Message::Result(r) => self.on_result(ctx, from, r),
            Message::Cancel(c) => self.on_cancel(ctx, from, msg, c),
            Message::Receipt(r) => self.on_receipt(ctx, r),
            _ => {}
        }
    }

    /// The connection to `node` is gone: whatever it was running for us failed.
    pub fn handle_peer_gone(&mut self, ctx: &OrchestratorContext<'_>, node: &NodeId) {
        let mut failed = Vec::new();
        let mut answered = Vec::new();
        for (id, job) in &self.jobs {
            match &job.phase {
                Phase::Awarded { award, .. } if award.winner == *node => failed.push(*id),
                Phase::Bidding { called, .. } if called.contains(node) => answered.push(*id),
                _ => {}
            }
        }
        failed.sort();
        answered.sort();
        for id in failed {
            self.fail_provider(ctx, id, FailureReason::Unresponsive);
        }
        for id in answered {
            self.on_decline(
                ctx,
                *node,
                &Decline {
                    job_id: id,
                    attempt: self.jobs.get(&id).map(|j| j.attempt).unwrap_or(0),
                    reason: DeclineReason::InvalidCall("provider disconnected".into()),
                },
            );
        }
    }

    /// Timeout: closes bid windows, retries queued jobs, gives up on silent providers, as due by `ctx.now`.
    pub fn handle_timeout(&mut self, ctx: &OrchestratorContext<'_>) {
        for key in self.timers.expired(ctx.now) {
            match key {
                TimerKey::BidWindow(id, attempt) => {
                    if self.is_bidding(&id, attempt) {
                        self.close_auction(ctx, id);
                    }
                }
                TimerKey::Watch(id, attempt) => self.watch(ctx, id, attempt),
                TimerKey::Requeue(id) => {
                    if let Some(job) = self.jobs.get_mut(&id)
                        && let Phase::Queued { ready, .. } = &mut job.phase
                        && !*ready
                    {
                        *ready = true;
                        self.queue.insert((
                            std::cmp::Reverse(job.spec.priority),
                            job.submitted_at,
                            id,
                        ));
                    }
                }
                TimerKey::StartBy(id) => self.start_by_passed(ctx, id),
                TimerKey::Forget(id) => {
                    if matches!(self.jobs.get(&id).map(|j| &j.phase), Some(Phase::Ended(_))) {
                        self.jobs.remove(&id);
                    }
                }
            }
        }
        self.dispatch(ctx);
    }

    /// This peer no longer holds a seat (not elected now, nor the epoch
    /// before): every job still queued for its first auction goes back to
    /// its client with the typed refusal `NotElected`, on which the client
    /// resubmits to the next orchestrator in the job's ranking at once.
    /// Kept, such a job would only be called for bids that providers now
    /// refuse, until its start-by time. Jobs already awarded run on (their
    /// provider took the award while the seat was held), and a job in a
    /// later round stays: its client holds an award for it already and
    /// would take the refusal as the end of the job. Returns how many went.
    pub fn hand_back_queued(&mut self, ctx: &OrchestratorContext<'_>) -> usize {
        let queued: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.attempt == 0 && matches!(j.phase, Phase::Queued { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in &queued {
            if let Some(job) = self.jobs.get_mut(id) {
                job.refusal = Some(Refusal::NotElected);
            }
            self.end(
                ctx,
                *id,
                JobState::Failed,
                format!(
                    "not an elected orchestrator: {} lost its seat; resubmit to the next in the job's ranking",
                    self.key.node_id().short()
                ),
            );
        }
        queued.len()
    }

    fn seal(&self, now: Timestamp, m: Message) -> Signed {
        Envelope::seal(&self.key, now, m)
    }

    fn send(&mut self, to: NodeId, message: Signed) {
        self.actions.push_back(Action::Send { to, message });
    }

    fn notify(&mut self, e: Event) {
        self.actions.push_back(Action::Notify(e));
    }

    fn is_bidding(&self, id: &JobId, attempt: u32) -> bool {
        self.jobs
            .get(id)
            .is_some_and(|j| j.attempt == attempt && matches!(j.phase, Phase::Bidding { .. }))
    }

    /// Tells the client where its job stands. Repeats are sent too: they are
    /// the client's sign that this orchestrator is alive.
    fn status_to_client(
        &mut self,
        ctx: &OrchestratorContext<'_>,
        id: JobId,
        state: JobState,
        detail: String,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let detail = bounded_text(&detail);
        job.last_status = Some((state, detail.clone()));
        job.statuses = job.statuses.saturating_add(1);
        let (client, attempt, seq) = (job.client, job.attempt, job.statuses);
        let refusal = job.refusal.filter(|_| state == JobState::Failed);
        let msg = self.seal(
            ctx.now,
            Message::Status(JobStatus {
                job_id: id,
                attempt,
                state,
                detail,
                seq,
                refusal,
            }),
        );
        self.send(client, msg);
    }

    fn end(&mut self, ctx: &OrchestratorContext<'_>, id: JobId, state: JobState, detail: String) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if matches!(job.phase, Phase::Ended(_)) {
            return;
        }
        if matches!(job.phase, Phase::Bidding { .. }) {
            self.auctions_open = self.auctions_open.saturating_sub(1);
        }
        job.phase = Phase::Ended(state);
        self.queue
            .remove(&(std::cmp::Reverse(job.spec.priority), job.submitted_at, id));
        // The start-by deadline may be a day away; an ended job needs it no more.
        self.timers.remove(job.spec.start_by, TimerKey::StartBy(id));
        self.timers.set(
            ctx.now.plus(self.config.remember_ended_ms),
            TimerKey::Forget(id),
        );
        self.status_to_client(ctx, id, state, detail.clone());
        self.notify(Event::JobEnded {
            job_id: id,
            state,
            detail,
        });
    }

    fn on_job(&mut self, ctx: &OrchestratorContext<'_>, msg: &Signed, spec: JobSpec) {
        let id = msg.id();
        let client = msg.signer();
        if let Some(job) = self.jobs.get(&id) {
            // A resubmission (the client failed over, or a duplicate): repeat where it stands.
            let (state, detail) = job
                .last_status
                .clone()
                .unwrap_or((phase_state(&job.phase), String::new()));
            self.status_to_client(ctx, id, state, detail);
            return;
        }
        let refusal = if let Err(e) = spec.validate() {
            Some(e.to_string())
        } else if spec.start_by <= ctx.now {
            Some("its start-by time has already passed".to_string())
        } else if self.active_jobs() >= self.config.max_jobs {
            Some("this orchestrator's queue is full; try again later".to_string())
        } else {
            None
        };
        if let Some(reason) = refusal {
            // A refused job is answered and not kept: keeping it (to
            // recognise a resubmission) would let a stream of jobs that are
            // refused anyway grow the table past `max_jobs`.
            self.notify(Event::JobRejected {
                job_id: id,
                reason: reason.clone(),
            });
            let msg = self.seal(
                ctx.now,
                Message::Status(JobStatus {
                    job_id: id,
                    attempt: 0,
                    state: JobState::Failed,
                    detail: bounded_text(&format!("rejected: {reason}")),
                    seq: 1,
                    refusal: None,
                }),
            );
            self.send(client, msg);
            return;
        }
        let priority = spec.priority;
        let start_by = spec.start_by;
        self.make_room_for_one();
        self.jobs.insert(
            id,
            Job {
                envelope: msg.envelope().clone(),
                spec,
                client,
                submitted_at: ctx.now,
                attempt: 0,
                excluded: BTreeSet::new(),
                phase: Phase::Queued {
                    reason: "waiting for an auction slot".into(),
                    ready: true,
                },
                last_status: None,
                refusal: None,
                statuses: 0,
            },
        );
        self.queue
            .insert((std::cmp::Reverse(priority), ctx.now, id));
        self.timers.set(start_by, TimerKey::StartBy(id));
        self.notify(Event::JobAccepted { job_id: id, client });
        self.status_to_client(ctx, id, JobState::Queued, "accepted".into());
        self.dispatch(ctx);
    }

    /// Ended jobs are remembered for `remember_ended_ms` so a resubmission
    /// is recognised; at most `max_jobs` of them, the oldest forgotten
    /// first, so the table holds at most twice `max_jobs` whatever arrives.
    fn make_room_for_one(&mut self) {
        let ended = self.jobs.len() - self.active_jobs();
        if ended < self.config.max_jobs.max(1) {
            return;
        }
        let oldest = self
            .jobs
            .iter()
            .filter(|(_, j)| matches!(j.phase, Phase::Ended(_)))
            .min_by_key(|(_, j)| j.submitted_at)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.jobs.remove(&id);
        }
    }

    /// Opens auctions for ready jobs, highest priority first, while slots remain.
    fn dispatch(&mut self, ctx: &OrchestratorContext<'_>) {
        while self.auctions_open < self.config.max_concurrent_auctions {
            let Some(first) = self.queue.pop_first() else {
                break;
            };
            self.open_auction(ctx, first.2);
        }
    }

    fn wait(&mut self, ctx: &OrchestratorContext<'_>, id: JobId, reason: String) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.phase = Phase::Queued {
            reason: reason.clone(),
            ready: false,
        };
        self.timers.set(
            ctx.now.plus(self.config.requeue_interval_ms),
            TimerKey::Requeue(id),
        );
        self.notify(Event::JobWaiting {
            job_id: id,
            reason: reason.clone(),
        });
        self.status_to_client(ctx, id, JobState::Queued, reason);
    }

    fn open_auction(&mut self, ctx: &OrchestratorContext<'_>, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if !matches!(job.phase, Phase::Queued { .. }) {
            return;
        }
        let matching = match ctx.adverts.matching(&job.spec) {
            Ok(m) => m,
            Err(unmet) => {
                let reason = unmet.describe(&job.spec);
                self.wait(ctx, id, reason);
                return;
            }
        };
        let need = Capacity::for_requirements(&job.spec.requirements);
        let timeout = job.spec.timeout_ms;
        let mut ranked: Vec<(bool, u64, std::cmp::Reverse<u32>, NodeId)> = matching
            .into_iter()
            .filter(|n| !job.excluded.contains(n))
            .filter_map(|n| {
                let ad = ctx.adverts.get(&n)?;
                let quote = ad.prices.quote(&job.spec.requirements);
                Some((
                    !ad.free.fits(&need),
                    quote.max_total(timeout).0,
                    std::cmp::Reverse(ctx.reputation_of(&n)),
                    n,
                ))
            })
            .collect();
        if ranked.is_empty() {
            let reason = format!(
                "every matching provider has already failed this job ({} excluded)",
                job.excluded.len()
            );
            self.wait(ctx, id, reason);
            return;
        }
        ranked.sort();
        // Providers whose latest advert shows no room would only decline
        // "busy": when some have room, call only those, so a requeued job
        // (which carries its parameters, up to 256 KiB) is not sent again to
        // every busy provider on each retry.
        if ranked.iter().any(|r| !r.0) {
            ranked.retain(|r| !r.0);
        }
        ranked.truncate(self.config.max_calls.min(MAX_AWARD_BIDS));
        let called: BTreeSet<NodeId> = ranked.iter().map(|r| r.3).collect();
        let attempt = job.attempt;
        let call = CallForBids {
            job: job.envelope.clone(),
            attempt,
            bid_deadline: ctx.now.plus(self.config.bid_window_ms),
        };
        let msg = self.seal(ctx.now, Message::CallForBids(call));
        for p in &called {
            self.send(*p, msg.clone());
        }
        let providers: Vec<NodeId> = called.iter().copied().collect();
        if let Some(job) = self.jobs.get_mut(&id) {
            job.phase = Phase::Bidding {
                called,
                answered: BTreeSet::new(),
                bids: Vec::new(),
                declines: Vec::new(),
                opened_at: ctx.now,
            };
        }
        self.auctions_open += 1;
        self.timers.set(
            ctx.now.plus(self.config.bid_window_ms),
            TimerKey::BidWindow(id, attempt),
        );
        let n = providers.len();
        self.notify(Event::AuctionOpened {
            job_id: id,
            attempt,
            providers,
        });
        self.status_to_client(
            ctx,
            id,
            JobState::Bidding,
            format!("called {n} provider(s) for bids (round {})", attempt + 1),
        );
    }

    fn on_bid(&mut self, ctx: &OrchestratorContext<'_>, from: NodeId, msg: &Signed, bid: &Bid) {
        let enough = self.config.enough_bids;
        let Some(job) = self.jobs.get_mut(&bid.job_id) else {
            return;
        };
        if job.attempt != bid.attempt {
            return;
        }
        let timeout = job.spec.timeout_ms;
        let max_price = job.spec.max_price;
        let Phase::Bidding {
            called,
            answered,
            bids,
            ..
        } = &mut job.phase
        else {
            return;
        };
        if !called.contains(&from) || answered.contains(&from) {
            return;
        }
        // The bid's stated maximum must be what its quote gives, and within budget.
        if bid.quote.max_total(timeout) != bid.max_total || bid.max_total > max_price {
            return;
        }
        answered.insert(from);
        bids.push((
            BidEntry {
                bid_id: msg.id(),
                provider: from,
                max_total: bid.max_total,
                reputation: ctx.reputation_of(&from),
            },
            bid.quote,
        ));
        let close = answered.len() == called.len() || bids.len() >= enough;
        let job_id = bid.job_id;
        self.notify(Event::BidReceived {
            job_id,
            provider: from,
            max_total: bid.max_total,
        });
        if close {
            self.close_auction(ctx, job_id);
        }
    }

    fn on_decline(&mut self, ctx: &OrchestratorContext<'_>, from: NodeId, d: &Decline) {
        let Some(job) = self.jobs.get_mut(&d.job_id) else {
            return;
        };
        if job.attempt != d.attempt {
            return;
        }
        let Phase::Bidding {
            called,
            answered,
            declines,
            ..
        } = &mut job.phase
        else {
            return;
        };
        if !called.contains(&from) || !answered.insert(from) {
            return;
        }
        declines.push((from, d.reason.clone()));
        let all = answered.len() == called.len();
        self.notify(Event::DeclineReceived {
            job_id: d.job_id,
            provider: from,
            reason: d.reason.clone(),
        });
        if all {
            self.close_auction(ctx, d.job_id);
        }
    }

    fn close_auction(&mut self, ctx: &OrchestratorContext<'_>, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Phase::Bidding {
            called,
            bids,
            declines,
            opened_at,
            ..
        } = std::mem::replace(
            &mut job.phase,
            Phase::Queued {
                reason: String::new(),
                ready: false,
            },
        )
        else {
            return;
        };
        self.auctions_open = self.auctions_open.saturating_sub(1);
        if bids.is_empty() {
            let reason = if declines.is_empty() {
                format!("no bids from the {} provider(s) called", called.len())
            } else {
                summarize_declines(&declines, called.len())
            };
            // Parameters every provider's adapter refused stay refused:
            // the job fails with the reason instead of waiting until start-by.
            if !declines.is_empty()
                && declines
                    .iter()
                    .all(|(_, r)| matches!(r, DeclineReason::InvalidParams(_)))
            {
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.refusal = Some(Refusal::ParamsRefused);
                }
                self.end(ctx, id, JobState::Failed, format!("rejected: {reason}"));
                return;
            }
            self.wait(ctx, id, reason);
            return;
        }
        let mut bids = bids;
        bids.sort_by_key(|(e, _)| e.bid_id);
        let entries: Vec<BidEntry> = bids.iter().map(|(e, _)| e.clone()).collect();
        let Some(w) = auction::select_winner(&entries) else {
            return;
        };
        let winner = entries[w].clone();
        let award = Award {
            job_id: id,
            attempt: job.attempt,
            client: job.client,
            winner: winner.provider,
            winning_bid: winner.bid_id,
            quote: bids[w].1,
            bids_digest: auction::bids_digest(&entries),
            bids: entries,
            execution_deadline: ctx
                .now
                .plus(job.spec.timeout_ms)
                .plus(self.config.result_grace_ms),
        };
        let attempt = job.attempt;
        let client = job.client;
        let msg = Envelope::seal(&self.key, ctx.now, Message::Award(award.clone()));
        job.phase = Phase::Awarded {
            award: award.clone(),
            envelope: Box::new(msg.envelope().clone()),
            last_heard: ctx.now,
        };
        // Winner, client, and the losers (so they free their reservations).
        let mut to: BTreeSet<NodeId> = award.bids.iter().map(|b| b.provider).collect();
        to.insert(client);
        for n in to {
            self.send(n, msg.clone());
        }
        self.timers.set(
            ctx.now
                .plus(self.config.status_timeout_ms)
                .min(award.execution_deadline),
            TimerKey::Watch(id, attempt),
        );
        self.notify(Event::Awarded {
            job_id: id,
            attempt,
            provider: winner.provider,
            max_total: winner.max_total,
            bids: award.bids.len(),
            auction_ms: ctx.now.since(opened_at),
        });
        self.status_to_client(
            ctx,
            id,
            JobState::Awarded,
            format!(
                "awarded to {} for at most {}",
                winner.provider.short(),
                winner.max_total
            ),
        );
    }

    fn watch(&mut self, ctx: &OrchestratorContext<'_>, id: JobId, attempt: u32) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.attempt != attempt {
            return;
        }
        let Phase::Awarded {
            award, last_heard, ..
        } = &job.phase
        else {
            return;
        };
        if ctx.now >= award.execution_deadline {
            self.fail_provider(ctx, id, FailureReason::MissedDeadline);
        } else if ctx.now.since(*last_heard) >= self.config.status_timeout_ms {
            self.fail_provider(ctx, id, FailureReason::Unresponsive);
        } else {
            let next = last_heard
                .plus(self.config.status_timeout_ms)
                .min(award.execution_deadline);
            self.timers.set(next, TimerKey::Watch(id, attempt));
        }
    }

    /// Publishes a failure receipt against the winner and re-auctions without it.
    fn fail_provider(&mut self, ctx: &OrchestratorContext<'_>, id: JobId, reason: FailureReason) {
        let max_attempts = self.config.max_attempts;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Phase::Awarded {
            award, envelope, ..
        } = &job.phase
        else {
            return;
        };
        let award = award.clone();
        let receipt = Receipt::for_failure(&award, self.me, envelope.id(), reason, ctx.now);
        let signed = SignedReceipt {
            orchestrator_signature: Some(receipt.sign(&self.key)),
            receipt,
            client_signature: None,
            provider_signature: None,
            award: envelope.to_bytes(),
        };
        job.excluded.insert(award.winner);
        job.attempt += 1;
        let exhausted = job.attempt >= max_attempts;
        job.phase = Phase::Queued {
            reason: String::new(),
            ready: !exhausted,
        };
        if !exhausted {
            self.queue
                .insert((std::cmp::Reverse(job.spec.priority), job.submitted_at, id));
        }
        let attempt = job.attempt;
        let msg = self.seal(ctx.now, Message::Receipt(signed.clone()));
        self.actions.push_back(Action::StoreReceipt(signed));
        self.actions.push_back(Action::Publish {
            topic: Topic::Receipts,
            message: msg,
        });
        self.notify(Event::ProviderFailed {
            job_id: id,
            provider: award.winner,
            reason,
        });
        let what = format!("provider {} {}", award.winner.short(), reason.as_str());
        if exhausted {
            self.end(
                ctx,
                id,
                JobState::Failed,
                format!("{what}; gave up after {attempt} attempt(s)"),
            );
        } else {
            self.status_to_client(
                ctx,
                id,
                JobState::Queued,
                format!("{what}; re-auctioning (round {})", attempt + 1),
            );
            self.dispatch(ctx);
        }
    }

    fn on_status(&mut self, ctx: &OrchestratorContext<'_>, from: NodeId, s: &JobStatus) {
        if let Some(job) = self.jobs.get_mut(&s.job_id)
            && job.attempt == s.attempt
            && let Phase::Awarded {
                award, last_heard, ..
            } = &mut job.phase
            && award.winner == from
        {
            *last_heard = ctx.now;
        }
    }

    fn on_result(&mut self, ctx: &OrchestratorContext<'_>, from: NodeId, r: &JobResult) {
        let done = self.jobs.get(&r.job_id).is_some_and(|job| {
            job.attempt == r.attempt
                && matches!(&job.phase, Phase::Awarded { award, .. } if award.winner == from)
        });
        if done {
            let detail = format!("{} on {}", r.exit, from.short());
            self.end(ctx, r.job_id, JobState::Completed, detail);
        }
    }

    fn on_receipt(&mut self, ctx: &OrchestratorContext<'_>, r: &SignedReceipt) {
        if r.verify().is_err() || !matches!(r.receipt.outcome, Outcome::Executed(_)) {
            return;
        }
        let rec = &r.receipt;
        let done = self.jobs.get(&rec.job_id).is_some_and(|job| {
            job.attempt == rec.attempt
                && matches!(&job.phase, Phase::Awarded { award, .. } if award.winner == rec.provider)
        });
        if done {
            self.end(ctx, rec.job_id, JobState::Completed, "settled".into());
        }
    }

    fn on_cancel(&mut self, ctx: &OrchestratorContext<'_>, from: NodeId, msg: &Signed, c: &Cancel) {
        let Some(job) = self.jobs.get(&c.job_id) else {
            return;
        };
        if job.client != from {
            return;
        }
        // Providers holding a reservation or running it get the client's own envelope.
        let notify: Vec<NodeId> = match &job.phase {
            Phase::Bidding { called, .. } => called.iter().copied().collect(),
            Phase::Awarded { award, .. } => vec![award.winner],
            _ => Vec::new(),
        };
        for p in notify {
            self.send(p, msg.clone());
        }
        self.end(
            ctx,
            c.job_id,
            JobState::Cancelled,
            format!("cancelled by the client: {}", bounded_text(&c.reason)),
        );
    }

    fn start_by_passed(&mut self, ctx: &OrchestratorContext<'_>, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let reason = match &job.phase {
            Phase::Queued { reason, .. } => reason.clone(),
            Phase::Bidding { .. } => "the auction was still open".into(),
            _ => return,
        };
        self.end(
            ctx,
            id,
            JobState::Failed,
            format!("no provider started the job before its start-by time: {reason}"),
        );
    }
}

fn phase_state(p: &Phase) -> JobState {
    match p {
        Phase::Queued { .. } => JobState::Queued,
        Phase::Bidding { .. } => JobState::Bidding,
        Phase::Awarded { .. } => JobState::Awarded,
        Phase::Ended(s) => *s,
    }
}

fn summarize_declines(declines: &[(NodeId, DeclineReason)], called: usize) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, r) in declines {
        let key = match r {
            DeclineReason::OverMaxPrice { .. } => "price over the job's max price".to_string(),
            other => other.to_string(),
        };
        *counts.entry(key).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect();
    format!(
        "{} of {called} provider(s) declined: {}",
        declines.len(),
        parts.join(", ")
    )
}
