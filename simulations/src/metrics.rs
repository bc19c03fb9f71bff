//! What a run measures: per-job records, message and byte counters, the
//! time series rows, orchestrator load and reputation by class. Everything
//! is kept in ordered maps so the output files are byte-identical per seed.
//! Both engines record into a [`Tally`] and a [`Ledger`].

mod ledger;
mod tally;

pub use ledger::Ledger;
pub use tally::{CandidateView, CommonSummary, Tally};

use modchain_protocol::{JobId, JobState};
use serde::Serialize;
use std::collections::BTreeMap;

/// One job as the simulator saw it, from its client's side.
#[derive(Clone, Debug)]
pub struct JobRecord {
    pub class: usize,
    pub client: u32,
    pub submitted_ms: u64,
    pub awarded_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    /// The client's view of the state, or `lost` when the client left.
    pub state: String,
    /// The client's last detail: for a failed job, why.
    pub detail: String,
    pub orchestrator: Option<u32>,
    pub provider: Option<u32>,
    /// Auction rounds (1 for the first).
    pub rounds: u32,
    pub resubmissions: u32,
}

impl JobRecord {
    pub fn is_ended(&self) -> bool {
        self.ended_ms.is_some()
    }
}

/// Counts per millisecond, for exact percentiles of bounded delays.
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: Vec<u64>,
    overflow: Vec<u64>,
    count: u64,
    sum: u128,
}

impl Histogram {
    pub fn new(max_ms: usize) -> Self {
        Histogram {
            buckets: vec![0; max_ms + 1],
            overflow: Vec::new(),
            count: 0,
            sum: 0,
        }
    }

    pub fn add(&mut self, ms: u64) {
        self.count += 1;
        self.sum += u128::from(ms);
        match self.buckets.get_mut(ms as usize) {
            Some(b) => *b += 1,
            None => self.overflow.push(ms),
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The distribution as CSV: one row per millisecond value seen, with
    /// its count and the share of values at or below it (a CDF to plot).
    pub fn csv(&self) -> String {
        let mut rows: Vec<(u64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(ms, n)| (ms as u64, *n))
            .collect();
        let mut overflow = self.overflow.clone();
        overflow.sort_unstable();
        for ms in overflow {
            match rows.last_mut() {
                Some((last, n)) if *last == ms => *n += 1,
                _ => rows.push((ms, 1)),
            }
        }
        let mut out = String::from("delay_ms,count,cumulative_share\n");
        let mut seen = 0u64;
        for (ms, n) in rows {
            seen += n;
            let share = seen as f64 / self.count.max(1) as f64;
            out.push_str(&format!("{ms},{n},{}\n", (share * 1e6).round() / 1e6));
        }
        out
    }

    pub fn stats(&mut self) -> Percentiles {
        self.overflow.sort_unstable();
        let q = |p: f64| -> u64 {
            if self.count == 0 {
                return 0;
            }
            let rank = ((p * self.count as f64).ceil() as u64).clamp(1, self.count);
            let mut seen = 0;
            for (ms, n) in self.buckets.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return ms as u64;
                }
            }
            let i = (rank - seen - 1) as usize;
            self.overflow.get(i).copied().unwrap_or(0)
        };
        Percentiles {
            count: self.count,
            mean: if self.count == 0 {
                0.0
            } else {
                round3(self.sum as f64 / self.count as f64)
            },
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: q(1.0),
        }
    }
}

/// What the per-job records add up to: `jobs.csv` and the summary's job figures.
#[derive(Clone, Debug, Default)]
pub struct JobTable {
    pub csv: String,
    /// Jobs the clients accepted.
    pub accepted: u64,
    /// Jobs by outcome (`completed`, `failed`, `lost`, `unfinished`, ...).
    pub by_state: BTreeMap<String, u64>,
    /// For each non-completed outcome, normalised reasons and their counts.
    pub reasons: BTreeMap<String, BTreeMap<String, u64>>,
    /// Submit → first award of every awarded job.
    pub award_ms: Vec<u64>,
    /// Submit → completion of every completed job.
    pub complete_ms: Vec<u64>,
}

impl JobTable {
    /// Jobs still open at the end keep their last state as the reason.
    pub fn of<'a>(
        jobs: impl IntoIterator<Item = (&'a JobId, &'a JobRecord)>,
        class_names: &[String],
    ) -> Self {
        let mut t = JobTable {
            csv: String::from(
                "job,class,client,orchestrator,provider,submitted_ms,awarded_ms,ended_ms,state,rounds,resubmissions,reason\n",
            ),
            ..JobTable::default()
        };
        for (id, j) in jobs {
            t.accepted += 1;
            let outcome = if j.is_ended() {
                j.state.clone()
            } else {
                "unfinished".to_string()
            };
            *t.by_state.entry(outcome.clone()).or_default() += 1;
            if outcome != "completed" {
                let reason = if j.is_ended() {
                    j.detail.clone()
                } else {
                    format!("still {} at the end of the run: {}", j.state, j.detail)
                };
                *t.reasons
                    .entry(outcome.clone())
                    .or_default()
                    .entry(normalize_reason(&reason))
                    .or_default() += 1;
            }
            if let Some(a) = j.awarded_ms {
                t.award_ms.push(a - j.submitted_ms);
            }
            if j.state == "completed"
                && let Some(e) = j.ended_ms
            {
                t.complete_ms.push(e - j.submitted_ms);
            }
            let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
            let optp = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_default();
            t.csv.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{}\n",
                &id.to_hex()[..16],
                class_names.get(j.class).map_or("", String::as_str),
                j.client,
                optp(j.orchestrator),
                optp(j.provider),
                j.submitted_ms,
                opt(j.awarded_ms),
                opt(j.ended_ms),
                outcome,
                j.rounds,
                j.resubmissions,
                csv_text(&j.detail)
            ));
        }
        t
    }

    pub fn count(&self, state: &str) -> u64 {
        self.by_state.get(state).copied().unwrap_or(0)
    }
}

/// A free-text CSV field: quoted, with quotes and newlines taken out.
pub fn csv_text(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c == '"' || c == '\n' { '\'' } else { c })
        .collect();
    format!("\"{clean}\"")
}

/// Percentiles of a set of millisecond values.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(values: &mut [u64]) -> Self {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_unstable();
        let n = values.len();
        let q = |p: f64| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let sum: u128 = values.iter().map(|v| u128::from(*v)).sum();
        Percentiles {
            count: n as u64,
            mean: round3(sum as f64 / n as f64),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: q(1.0),
        }
    }
}

/// Rounds to three decimals, so JSON and CSV stay short and stable.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The value at quantile `p` of sorted `v` (0 for an empty slice).
pub fn quantile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len();
    v[((p * n as f64).ceil() as usize).clamp(1, n) - 1]
}

/// Message and byte counts.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Traffic {
    pub messages: u64,
    pub bytes: u64,
}

impl Traffic {
    pub fn add(&mut self, bytes: usize) {
        self.messages += 1;
        self.bytes += bytes as u64;
    }
}

/// Network-wide counters.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Transmissions by message kind (direct sends and gossip hops).
    pub by_kind: BTreeMap<&'static str, Traffic>,
    pub direct: Traffic,
    pub gossip: Traffic,
    pub dropped_offline: u64,
    pub dropped_network: u64,
    /// Messages Byzantine providers chose not to send.
    pub withheld: u64,
    pub adverts_published: u64,
    pub receipts_published: u64,
    pub forged_receipts_published: u64,
    pub executions: u64,
    pub provider_failures: BTreeMap<String, u64>,
    pub auctions_opened: u64,
    pub auction_ms: Vec<u64>,
    pub bids_per_award: Vec<u64>,
    pub resubmissions: u64,
    pub results_rejected: u64,
    pub submit_errors: BTreeMap<String, u64>,
    pub crashes: u64,
    pub restarts: u64,
    pub churn_leaves: u64,
    pub churn_joins: u64,
}

/// Per-orchestrator counts.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct OrchestratorLoad {
    pub accepted: u64,
    pub auctions: u64,
    pub awards: u64,
    pub ended: u64,
}

/// One row of `timeseries.csv`.
#[derive(Clone, Debug)]
pub struct TimeRow {
    pub t_s: f64,
    pub online_peers: usize,
    pub submitted: u64,
    pub completed: u64,
    pub failed: u64,
    pub in_flight: u64,
    pub award_p50_ms: u64,
    pub award_p90_ms: u64,
    pub complete_p50_ms: u64,
    pub complete_p90_ms: u64,
    pub messages: u64,
    pub bytes: u64,
    pub messages_per_peer: f64,
    pub bytes_per_peer: f64,
    pub adverts_published: u64,
    pub provider_failures: u64,
    pub elected: String,
}

pub const TIME_HEADER: &str = "t_s,online_peers,submitted,completed,failed,in_flight,award_p50_ms,award_p90_ms,complete_p50_ms,complete_p90_ms,messages,bytes,messages_per_peer,bytes_per_peer,adverts_published,provider_failures,elected";

impl TimeRow {
    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.t_s,
            self.online_peers,
            self.submitted,
            self.completed,
            self.failed,
            self.in_flight,
            self.award_p50_ms,
            self.award_p90_ms,
            self.complete_p50_ms,
            self.complete_p90_ms,
            self.messages,
            self.bytes,
            self.messages_per_peer,
            self.bytes_per_peer,
            self.adverts_published,
            self.provider_failures,
            self.elected
        )
    }
}

/// One row of `orchestrators.csv`.
#[derive(Clone, Debug)]
pub struct OrchestratorRow {
    pub t_s: f64,
    pub peer: u32,
    pub node: String,
    pub online: bool,
    pub elected: bool,
    pub load: OrchestratorLoad,
    pub active_jobs: usize,
}

pub const ORCHESTRATOR_HEADER: &str =
    "t_s,peer,node,online,elected,accepted,auctions,awards,ended,active_jobs";

impl OrchestratorRow {
    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{}",
            self.t_s,
            self.peer,
            self.node,
            u8::from(self.online),
            u8::from(self.elected),
            self.load.accepted,
            self.load.auctions,
            self.load.awards,
            self.load.ended,
            self.active_jobs
        )
    }
}

/// One row of `reputation.csv`: the reputation of one class of providers.
#[derive(Clone, Debug, Serialize)]
pub struct ReputationRow {
    pub t_s: f64,
    pub class: String,
    pub providers: usize,
    pub min: f64,
    pub p10: f64,
    pub median: f64,
    pub p90: f64,
    pub max: f64,
    pub mean: f64,
}

pub const REPUTATION_HEADER: &str = "t_s,class,providers,min,p10,median,p90,max,mean";

impl ReputationRow {
    pub fn new(t_s: f64, class: &str, mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let mean = if values.is_empty() {
            0.0
        } else {
            values.iter().sum::<f64>() / values.len() as f64
        };
        ReputationRow {
            t_s,
            class: class.to_string(),
            providers: values.len(),
            min: quantile(&values, 0.0),
            p10: quantile(&values, 0.1),
            median: quantile(&values, 0.5),
            p90: quantile(&values, 0.9),
            max: quantile(&values, 1.0),
            mean: round3(mean),
        }
    }

    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{}",
            self.t_s,
            self.class,
            self.providers,
            self.min,
            self.p10,
            self.median,
            self.p90,
            self.max,
            self.mean
        )
    }
}

/// A failure detail with peer ids and numbers taken out, so equal causes count together.
pub fn normalize_reason(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len());
    for (i, word) in detail.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let core = word.trim_end_matches([';', ',', ':', '.', ')']);
        let tail = &word[core.len()..];
        if core.len() == 8
            && core.chars().all(|c| c.is_ascii_hexdigit())
            && core.chars().any(|c| c.is_ascii_digit())
        {
            out.push_str("<peer>");
            out.push_str(tail);
            continue;
        }
        let mut last_digit = false;
        for c in word.chars() {
            if c.is_ascii_digit() {
                if !last_digit {
                    out.push('N');
                }
                last_digit = true;
            } else {
                out.push(c);
                last_digit = false;
            }
        }
    }
    out
}

pub fn state_name(s: JobState) -> &'static str {
    s.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_match_sorted_values() {
        let mut h = Histogram::new(100);
        let mut v = Vec::new();
        for x in [5u64, 1, 99, 250, 7, 7, 42] {
            h.add(x);
            v.push(x);
        }
        let a = h.stats();
        let b = Percentiles::of(&mut v);
        assert_eq!((a.p50, a.p90, a.p99, a.max), (b.p50, b.p90, b.p99, b.max));
        assert_eq!(a.max, 250);
    }

    #[test]
    fn reasons_lose_peer_ids_and_numbers() {
        assert_eq!(
            normalize_reason("provider 1a2b3c4d stopped responding; gave up after 3 attempt(s)"),
            "provider <peer> stopped responding; gave up after N attempt(s)"
        );
    }
}
