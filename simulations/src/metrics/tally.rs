//! What both engines record from their peers: the jobs as the clients see
//! them, orchestrator load, auction figures, the time series and its
//! interval counts. The model engine and the libp2p engine each hold one
//! [`Tally`] and hand it every submission, every `Notify` event and every
//! sample, so the two report the same figures computed the same way and
//! their outputs can be compared line by line.

use super::{
    Counters, JobRecord, JobTable, ORCHESTRATOR_HEADER, OrchestratorLoad, OrchestratorRow,
    Percentiles, REPUTATION_HEADER, ReputationRow, TIME_HEADER, TimeRow, Traffic, round3,
};
use modchain_protocol::{Event, JobId, JobState, NodeId};
use std::collections::{BTreeMap, HashMap};

/// Counts since the last time-series sample.
#[derive(Clone, Debug, Default)]
struct Interval {
    submitted: u64,
    completed: u64,
    /// Jobs that ended any other way than completed (lost ones included).
    failed: u64,
    adverts: u64,
    provider_failures: u64,
    /// Load per orchestrator candidate, by peer index.
    orchestrators: BTreeMap<u32, OrchestratorLoad>,
}

/// An orchestrator candidate at a sample, as its engine sees it.
#[derive(Clone, Debug)]
pub struct CandidateView {
    pub peer: u32,
    /// The node's short id.
    pub node: String,
    pub online: bool,
    pub active_jobs: usize,
}

/// A run's record. Ordered maps throughout, so the output files are
/// byte-identical per seed.
#[derive(Debug, Default)]
pub struct Tally {
    /// Every job a client accepted, by id.
    pub jobs: BTreeMap<JobId, JobRecord>,
    pub counters: Counters,
    /// Load per orchestrator candidate over the whole run, by peer index.
    orch_load: BTreeMap<u32, OrchestratorLoad>,
    interval: Interval,
    /// Submit → first award of the jobs awarded in this interval (the time
    /// series' award percentiles; the run's come from the job table).
    award_ms: Vec<u64>,
    /// Submit → completion of the jobs completed in this interval.
    complete_ms: Vec<u64>,
    pub time_rows: Vec<TimeRow>,
    pub orchestrator_rows: Vec<OrchestratorRow>,
    pub reputation_rows: Vec<ReputationRow>,
}

impl Tally {
    /// A client accepted job `id` of class `class` at `now` (ms since time zero).
    pub fn submitted(&mut self, id: JobId, class: usize, client: u32, now: u64) {
        self.interval.submitted += 1;
        self.jobs.insert(
            id,
            JobRecord {
                class,
                client,
                submitted_ms: now,
                awarded_ms: None,
                ended_ms: None,
                state: "queued".into(),
                detail: "submitted".into(),
                orchestrator: None,
                provider: None,
                rounds: 0,
                resubmissions: 0,
            },
        );
    }

    /// A client refused a submission, or there was no client to submit to.
    pub fn submit_failed(&mut self, reason: String) {
        *self.counters.submit_errors.entry(reason).or_default() += 1;
    }

    pub fn advert_published(&mut self) {
        self.counters.adverts_published += 1;
        self.interval.adverts += 1;
    }

    /// Peer `p` reported `event` at `now` (ms since time zero); `index` maps
    /// a provider's node to its peer index.
    ///
    /// `now` may be a little earlier than a job's `submitted_ms` on the
    /// libp2p engine, where the submission and the event are stamped by
    /// different tasks: a job's times are kept at or after its submission,
    /// so no delay is negative. On the model engine `now` never is earlier.
    pub fn on_event(&mut self, p: u32, now: u64, event: Event, index: &HashMap<NodeId, u32>) {
        match event {
            Event::StateChanged {
                job_id,
                state,
                detail,
            } => {
                let Some(job) = self.jobs.get_mut(&job_id) else {
                    return;
                };
                if job.client != p || job.is_ended() {
                    return;
                }
                let at = now.max(job.submitted_ms);
                job.state = state.as_str().to_string();
                job.detail = detail;
                if state == JobState::Awarded && job.awarded_ms.is_none() {
                    job.awarded_ms = Some(at);
                    self.award_ms.push(at - job.submitted_ms);
                }
                if state.is_terminal() {
                    job.ended_ms = Some(at);
                    match state {
                        JobState::Completed => {
                            self.interval.completed += 1;
                            self.complete_ms.push(at - job.submitted_ms);
                        }
                        _ => self.interval.failed += 1,
                    }
                }
            }
            Event::JobAccepted { job_id, .. } => {
                self.load(p, |l| l.accepted += 1);
                if let Some(job) = self.jobs.get_mut(&job_id) {
                    job.orchestrator = Some(p);
                }
            }
            Event::AuctionOpened { .. } => {
                self.counters.auctions_opened += 1;
                self.load(p, |l| l.auctions += 1);
            }
            Event::Awarded {
                job_id,
                attempt,
                provider,
                bids,
                auction_ms,
                ..
            } => {
                self.counters.auction_ms.push(auction_ms);
                self.counters.bids_per_award.push(bids as u64);
                self.load(p, |l| l.awards += 1);
                if let Some(job) = self.jobs.get_mut(&job_id) {
                    job.provider = index.get(&provider).copied();
                    job.rounds = job.rounds.max(attempt + 1);
                }
            }
            Event::JobEnded { .. } => self.load(p, |l| l.ended += 1),
            Event::ProviderFailed { reason, .. } => {
                *self
                    .counters
                    .provider_failures
                    .entry(reason.as_str().to_string())
                    .or_default() += 1;
                self.interval.provider_failures += 1;
            }
            Event::Resubmitted { job_id, .. } => {
                self.counters.resubmissions += 1;
                if let Some(job) = self.jobs.get_mut(&job_id) {
                    job.resubmissions += 1;
                }
            }
            Event::ResultRejected { .. } => self.counters.results_rejected += 1,
            _ => {}
        }
    }

    /// Adds to orchestrator `p`'s load, over the run and in this interval.
    fn load(&mut self, p: u32, add: impl Fn(&mut OrchestratorLoad)) {
        add(self.orch_load.entry(p).or_default());
        add(self.interval.orchestrators.entry(p).or_default());
    }

    /// Client `p` left the network: its open jobs end as `lost`, since
    /// nobody is left to hear how they end.
    pub fn client_left(&mut self, p: u32, now: u64) {
        for job in self.jobs.values_mut() {
            if job.client == p && !job.is_ended() {
                let before = std::mem::replace(&mut job.state, "lost".into());
                job.ended_ms = Some(now);
                job.detail =
                    format!("the client's peer left the network while the job was {before}");
                self.interval.failed += 1;
            }
        }
    }

    pub fn jobs_completed(&self) -> u64 {
        self.jobs
            .values()
            .filter(|j| j.state == "completed")
            .count() as u64
    }

    /// Closes the interval at `t_s`: one time-series row (with `traffic`
    /// sent since the last sample and the orchestrators `elected`) and one
    /// orchestrator row per candidate; the interval counts start again.
    pub fn sample(
        &mut self,
        t_s: f64,
        online_peers: usize,
        traffic: Traffic,
        elected: &[u32],
        candidates: impl IntoIterator<Item = CandidateView>,
    ) {
        let ended = self.jobs.values().filter(|j| j.is_ended()).count() as u64;
        let award = Percentiles::of(&mut std::mem::take(&mut self.award_ms));
        let complete = Percentiles::of(&mut std::mem::take(&mut self.complete_ms));
        let interval = std::mem::take(&mut self.interval);
        let peers = online_peers.max(1) as f64;
        self.time_rows.push(TimeRow {
            t_s,
            online_peers,
            submitted: interval.submitted,
            completed: interval.completed,
            failed: interval.failed,
            in_flight: self.jobs.len() as u64 - ended,
            award_p50_ms: award.p50,
            award_p90_ms: award.p90,
            complete_p50_ms: complete.p50,
            complete_p90_ms: complete.p90,
            messages: traffic.messages,
            bytes: traffic.bytes,
            messages_per_peer: round3(traffic.messages as f64 / peers),
            bytes_per_peer: round3(traffic.bytes as f64 / peers),
            adverts_published: interval.adverts,
            provider_failures: interval.provider_failures,
            elected: elected
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        });
        for c in candidates {
            self.orchestrator_rows.push(OrchestratorRow {
                t_s,
                peer: c.peer,
                load: interval
                    .orchestrators
                    .get(&c.peer)
                    .copied()
                    .unwrap_or_default(),
                node: c.node,
                online: c.online,
                elected: elected.contains(&c.peer),
                active_jobs: c.active_jobs,
            });
        }
    }

    /// One reputation row per class of `providers` (class, reputation 0..1) at `t_s`.
    pub fn record_reputation(
        &mut self,
        t_s: f64,
        providers: impl IntoIterator<Item = (&'static str, f64)>,
    ) {
        let mut by_class: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
        for (class, r) in providers {
            by_class.entry(class).or_default().push(r);
        }
        for (class, values) in by_class {
            self.reputation_rows
                .push(ReputationRow::new(t_s, class, values));
        }
    }

    /// The summary's figures that both engines compute the same way.
    /// `executions` is the engine's count of executions started.
    pub fn summary(
        &mut self,
        class_names: &[String],
        executions: u64,
        advert_propagation: Percentiles,
    ) -> CommonSummary {
        let mut table = JobTable::of(&self.jobs, class_names);
        let submit_errors: u64 = self.counters.submit_errors.values().sum();
        let c = &mut self.counters;
        let jobs = serde_json::json!({
            "submitted": table.accepted + submit_errors,
            "accepted_by_client": table.accepted,
            "completed": table.count("completed"),
            "failed": table.count("failed") + submit_errors,
            "cancelled": table.count("cancelled"),
            "lost_with_client": table.count("lost"),
            "unfinished": table.count("unfinished"),
            "submit_errors": c.submit_errors,
            "reasons": table.reasons,
        });
        let latency = serde_json::json!({
            "submit_to_award": Percentiles::of(&mut table.award_ms),
            "submit_to_complete": Percentiles::of(&mut table.complete_ms),
            "auction": Percentiles::of(&mut c.auction_ms),
            "advert_propagation": advert_propagation,
        });
        let auctions = serde_json::json!({
            "opened": c.auctions_opened,
            "bids_per_award": Percentiles::of(&mut c.bids_per_award),
            "provider_failures": c.provider_failures,
            "resubmissions": c.resubmissions,
            "results_rejected": c.results_rejected,
            "executions": executions,
        });
        let last_t = self.reputation_rows.last().map(|r| r.t_s);
        let reputation_final = self
            .reputation_rows
            .iter()
            .filter(|r| Some(r.t_s) == last_t)
            .map(|r| (r.class.clone(), serde_json::to_value(r).unwrap_or_default()))
            .collect();
        CommonSummary {
            jobs_csv: table.csv,
            jobs,
            latency,
            auctions,
            reputation_final,
        }
    }

    /// The summary's `orchestrators`: each candidate's load over the run,
    /// `node` giving a peer's short node id.
    pub fn orchestrators_json(&self, node: impl Fn(u32) -> String) -> Vec<serde_json::Value> {
        self.orch_load
            .iter()
            .map(|(p, l)| {
                serde_json::json!({
                    "peer": p,
                    "node": node(*p),
                    "accepted": l.accepted,
                    "auctions": l.auctions,
                    "awards": l.awards,
                    "ended": l.ended,
                })
            })
            .collect()
    }

    /// `timeseries.csv`, `reputation.csv` and `orchestrators.csv`.
    pub fn csv_files(&self) -> (String, String, String) {
        (
            csv_file(TIME_HEADER, self.time_rows.iter().map(TimeRow::csv)),
            csv_file(
                REPUTATION_HEADER,
                self.reputation_rows.iter().map(ReputationRow::csv),
            ),
            csv_file(
                ORCHESTRATOR_HEADER,
                self.orchestrator_rows.iter().map(OrchestratorRow::csv),
            ),
        )
    }
}

/// The parts of `summary.json` (and `jobs.csv`) both engines share.
#[derive(Debug)]
pub struct CommonSummary {
    pub jobs_csv: String,
    /// The summary's `jobs`.
    pub jobs: serde_json::Value,
    /// The summary's `latency_ms`.
    pub latency: serde_json::Value,
    /// The summary's `auctions`.
    pub auctions: serde_json::Value,
    /// The last reputation rows, by class.
    pub reputation_final: BTreeMap<String, serde_json::Value>,
}

fn csv_file(header: &str, rows: impl Iterator<Item = String>) -> String {
    let mut out = String::from(header);
    out.push('\n');
    for r in rows {
        out.push_str(&r);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use modchain_protocol::{Digest, Keypair};

    fn state(job_id: JobId, state: JobState) -> Event {
        Event::StateChanged {
            job_id,
            state,
            detail: String::new(),
        }
    }

    #[test]
    fn an_event_stamped_before_its_submission_gives_no_negative_delay() {
        let mut t = Tally::default();
        let job = Digest::of_parts(&[b"job"]);
        let provider = Keypair::from_seed(1).node_id();
        let index = HashMap::from([(provider, 7)]);
        t.submitted(job, 0, 3, 100);
        t.on_event(3, 90, state(job, JobState::Awarded), &index);
        t.on_event(
            5,
            95,
            Event::Awarded {
                job_id: job,
                attempt: 0,
                provider,
                max_total: Default::default(),
                bids: 2,
                auction_ms: 40,
            },
            &index,
        );
        t.on_event(3, 150, state(job, JobState::Completed), &index);
        let j = &t.jobs[&job];
        assert_eq!((j.awarded_ms, j.ended_ms), (Some(100), Some(150)));
        assert_eq!((j.provider, j.rounds), (Some(7), 1));
        assert_eq!(
            (t.award_ms.clone(), t.complete_ms.clone()),
            (vec![0], vec![50])
        );
        assert_eq!(t.orch_load[&5].awards, 1);
        // An event from another peer than the client changes nothing.
        t.on_event(4, 200, state(job, JobState::Failed), &index);
        assert_eq!(t.jobs[&job].state, "completed");
    }

    #[test]
    fn a_sample_starts_the_interval_counts_again() {
        let mut t = Tally::default();
        let job = Digest::of_parts(&[b"job"]);
        t.submitted(job, 0, 1, 0);
        t.advert_published();
        let view = CandidateView {
            peer: 2,
            node: "n".into(),
            online: true,
            active_jobs: 1,
        };
        t.on_event(
            2,
            10,
            Event::JobAccepted {
                job_id: job,
                client: Keypair::from_seed(1).node_id(),
            },
            &HashMap::new(),
        );
        t.on_event(1, 30, state(job, JobState::Awarded), &HashMap::new());
        t.sample(1.0, 4, Traffic::default(), &[2], [view.clone()]);
        t.sample(2.0, 4, Traffic::default(), &[2], [view]);
        let (a, b) = (&t.time_rows[0], &t.time_rows[1]);
        assert_eq!((a.submitted, a.adverts_published, a.in_flight), (1, 1, 1));
        assert_eq!((b.submitted, b.adverts_published, b.in_flight), (0, 0, 1));
        // Award delays are the interval's own: none in the second.
        assert_eq!((a.award_p50_ms, b.award_p50_ms), (30, 0));
        assert_eq!(t.orchestrator_rows[0].load.accepted, 1);
        assert_eq!(t.orchestrator_rows[1].load.accepted, 0);
        assert_eq!(t.orch_load[&2].accepted, 1);
        assert!(t.orchestrator_rows[1].elected);
    }
}
