//! Orchestrator election.
//!
//! Time is cut into epochs. For each epoch every peer computes, from the same
//! candidates and reputations, the same ordered set of K orchestrators by
//! weighted rendezvous hashing: each candidate draws `-log2(u) / weight` with
//! `u` a hash of (epoch, candidate), and the K smallest draws win. Within the
//! elected set, each job is ranked by plain rendezvous hashing of (job id,
//! orchestrator): the first is responsible, the others are fallbacks in order.
//!
//! All arithmetic is integer (a fixed-point log2), so peers on any platform agree.

use crate::digest::{Digest, JobId};
use crate::identity::NodeId;
use crate::time::{MINUTE, Timestamp};
use crate::vocabulary::REPUTATION_SCALE;
use std::collections::BTreeMap;

/// How orchestrators are elected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    /// Length of an epoch in milliseconds.
    pub epoch_ms: u64,
    /// How many orchestrators are elected per epoch.
    pub orchestrators: usize,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig {
            epoch_ms: 10 * MINUTE,
            orchestrators: 3,
        }
    }
}

/// The epoch `now` falls in.
pub fn epoch_at(now: Timestamp, epoch_ms: u64) -> u64 {
    now.0 / epoch_ms.max(1)
}

/// log2(x) in fixed point with 32 fractional bits, for x ≥ 1.
fn log2_q32(x: u64) -> u64 {
    debug_assert!(x >= 1);
    let int = 63 - u64::from(x.leading_zeros());
    // y in [2^63, 2^64) represents x / 2^int in [1, 2).
    let mut y = u128::from(x) << (63 - int);
    let mut frac: u64 = 0;
    for _ in 0..32 {
        y = (y * y) >> 63;
        frac <<= 1;
        if y >= 1u128 << 64 {
            frac |= 1;
            y >>= 1;
        }
    }
    (int << 32) | frac
}

/// -log2(u) in Q32 for u = (h's top 53 bits + 1) / 2^53, in (0, 1].
fn neg_log2_unit(h: u64) -> u64 {
    let x = (h >> 11) + 1;
    (53u64 << 32) - log2_q32(x)
}

/// Weight of a candidate in the election. The floor keeps new candidates in
/// the running: with no reputation a candidate has 1/11 of the weight of the
/// most trusted one.
fn weight(reputation: u32) -> u128 {
    u128::from(REPUTATION_SCALE / 10) + u128::from(reputation.min(REPUTATION_SCALE))
}

fn election_hash(epoch: u64, candidate: &NodeId) -> u64 {
    Digest::of_parts(&[b"modchain/v1/election", &epoch.to_le_bytes(), &candidate.0]).prefix_u64()
}

/// The ordered orchestrator set for `epoch` from `(candidate, reputation)` pairs.
/// Input order does not matter; a candidate listed twice counts once, with
/// the reputation of its last entry.
#[must_use]
pub fn elect(epoch: u64, candidates: &[(NodeId, u32)], k: usize) -> Vec<NodeId> {
    let unique: BTreeMap<NodeId, u32> = candidates.iter().copied().collect();
    let mut draws: Vec<(u128, NodeId)> = unique
        .into_iter()
        .map(|(node, rep)| {
            let draw = (u128::from(neg_log2_unit(election_hash(epoch, &node))) << 32) / weight(rep);
            (draw, node)
        })
        .collect();
    draws.sort();
    draws.into_iter().take(k).map(|(_, n)| n).collect()
}

/// The elected orchestrators ordered for one job: first is responsible.
#[must_use]
pub fn rank_for_job(elected: &[NodeId], job: &JobId) -> Vec<NodeId> {
    let mut ranked: Vec<(u64, NodeId)> = elected
        .iter()
        .map(|o| {
            let h = Digest::of_parts(&[b"modchain/v1/job-rank", &job.0, &o.0]).prefix_u64();
            (h, *o)
        })
        .collect();
    // Highest hash first; node id breaks the (astronomically unlikely) tie.
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    ranked.into_iter().map(|(_, n)| n).collect()
}

/// A peer's view of the election: the candidates it knows with their
/// reputation, and the result for the current epoch, recomputed when a
/// candidate comes or goes.
///
/// A candidate's reputation is weighed as it was when this peer first drew
/// the epoch (or first saw the candidate in it): reputation is recomputed
/// every few minutes, and an update that moved the elected set mid-epoch
/// left jobs ranked just before it with no orchestrator that still saw
/// itself elected.
#[derive(Clone, Debug, Default)]
pub struct Election {
    config: ElectionConfig,
    /// The candidates now, with their current reputation.
    candidates: BTreeMap<NodeId, u32>,
    /// The weights each recent epoch is drawn with: this one and the one
    /// before (a job that arrives just after an epoch change is accepted by
    /// the previous epoch's orchestrators too).
    frozen: BTreeMap<u64, BTreeMap<NodeId, u32>>,
    /// The elected set of each recent epoch.
    cached: BTreeMap<u64, Vec<NodeId>>,
    /// Every orchestrator this view saw elected in each past epoch (the
    /// union, if the candidates changed within it), for
    /// [`had_seat`](Self::had_seat): an award is judged by the seats this
    /// peer drew at the time, never by a draw made later, so a signer cannot
    /// backdate its award to an epoch that today's weights would give it.
    seated: BTreeMap<u64, std::collections::BTreeSet<NodeId>>,
}

/// How many epochs of seats [`Election::had_seat`] remembers: enough for the
/// longest job's award (a day, at the default ten-minute epoch) to be
/// judged when its receipt arrives, and a bound however short epochs are.
pub const SEATED_EPOCHS_KEPT: usize = 200;

/// How many epochs' weights and results are kept.
const EPOCHS_KEPT: usize = 2;

impl Election {
    /// A view with no candidates yet.
    pub fn new(config: ElectionConfig) -> Self {
        Election {
            config,
            candidates: BTreeMap::new(),
            frozen: BTreeMap::new(),
            cached: BTreeMap::new(),
            seated: BTreeMap::new(),
        }
    }

    /// How this view elects.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// Replaces the candidate set (from the advert table and the ledger's
    /// reputation). A new reputation for a known candidate counts from the
    /// next epoch; a candidate that came or went counts at once.
    pub fn set_candidates(&mut self, candidates: impl IntoIterator<Item = (NodeId, u32)>) {
        let next: BTreeMap<NodeId, u32> = candidates.into_iter().collect();
        if !next.keys().eq(self.candidates.keys()) {
            self.cached.clear();
        }
        self.candidates = next;
    }

    /// The weights for `epoch`: the reputations frozen when the epoch was
    /// first drawn, with the candidates brought up to date.
    fn weights(&mut self, epoch: u64) -> Vec<(NodeId, u32)> {
        let candidates = &self.candidates;
        let w = self
            .frozen
            .entry(epoch)
            .or_insert_with(|| candidates.clone());
        w.retain(|node, _| candidates.contains_key(node));
        for (node, rep) in candidates {
            w.entry(*node).or_insert(*rep);
        }
        let list = w.iter().map(|(k, v)| (*k, *v)).collect();
        keep_latest(&mut self.frozen);
        list
    }

    /// The candidates known now, with their reputation.
    pub fn candidates(&self) -> &BTreeMap<NodeId, u32> {
        &self.candidates
    }

    /// The epoch `now` falls in.
    pub fn epoch(&self, now: Timestamp) -> u64 {
        epoch_at(now, self.config.epoch_ms)
    }

    /// When the current epoch ends.
    pub fn next_epoch_at(&self, now: Timestamp) -> Timestamp {
        Timestamp((self.epoch(now) + 1).saturating_mul(self.config.epoch_ms.max(1)))
    }

    /// The elected orchestrators at `now`.
    pub fn elected(&mut self, now: Timestamp) -> &[NodeId] {
        let epoch = self.epoch(now);
        if !self.cached.contains_key(&epoch) {
            let list = self.weights(epoch);
            let set = elect(epoch, &list, self.config.orchestrators);
            self.seated
                .entry(epoch)
                .or_default()
                .extend(set.iter().copied());
            while self.seated.len() > SEATED_EPOCHS_KEPT {
                self.seated.pop_first();
            }
            self.cached.insert(epoch, set);
            keep_latest(&mut self.cached);
        }
        self.cached.get(&epoch).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `node` is an elected orchestrator at `now`.
    pub fn is_elected(&mut self, now: Timestamp, node: &NodeId) -> bool {
        self.elected(now).contains(node)
    }

    /// Whether this view saw `node` elected in the epoch of `at` or the one
    /// before (an orchestrator elected just before an epoch change still
    /// finishes the jobs it took). Only epochs this view drew count: one it
    /// never drew (the peer was not running) is not redrawn with today's
    /// weights, so the answer is no.
    pub fn had_seat(&self, at: Timestamp, node: &NodeId) -> bool {
        let epoch = self.epoch(at);
        [Some(epoch), epoch.checked_sub(1)]
            .into_iter()
            .flatten()
            .any(|e| self.seated.get(&e).is_some_and(|s| s.contains(node)))
    }

    /// Orchestrators for `job` at `now`, responsible first.
    pub fn ranking(&mut self, now: Timestamp, job: &JobId) -> Vec<NodeId> {
        let elected = self.elected(now).to_vec();
        rank_for_job(&elected, job)
    }
}

/// Drops all but the [`EPOCHS_KEPT`] latest epochs.
fn keep_latest<T>(by_epoch: &mut BTreeMap<u64, T>) {
    while by_epoch.len() > EPOCHS_KEPT {
        by_epoch.pop_first();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u16) -> NodeId {
        NodeId(*Digest::of(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn fixed_point_log_is_accurate() {
        for x in [1u64, 2, 3, 10, 1000, 1 << 40, u64::MAX >> 11] {
            let got = log2_q32(x) as f64 / (1u64 << 32) as f64;
            assert!((got - (x as f64).log2()).abs() < 1e-6, "log2({x}) = {got}");
        }
    }

    #[test]
    fn election_ignores_input_order_and_duplicates() {
        let mut c: Vec<(NodeId, u32)> = (0..20).map(|i| (node(i), u32::from(i) * 1000)).collect();
        let a = elect(5, &c, 3);
        c.reverse();
        c.push(c[0]);
        assert_eq!(elect(5, &c, 3), a);
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn elected_set_rotates_between_epochs() {
        let c: Vec<(NodeId, u32)> = (0..50).map(|i| (node(i), 0)).collect();
        let sets: std::collections::HashSet<Vec<NodeId>> =
            (0..10).map(|e| elect(e, &c, 3)).collect();
        assert!(
            sets.len() > 5,
            "election should rotate, got {} distinct sets",
            sets.len()
        );
    }

    #[test]
    fn reputation_weighs_the_draw() {
        // One trusted candidate among 40 unknown ones wins far more often than 1/41.
        let mut c: Vec<(NodeId, u32)> = (1..41).map(|i| (node(i), 0)).collect();
        c.push((node(0), REPUTATION_SCALE));
        let wins = (0..400).filter(|e| elect(*e, &c, 1)[0] == node(0)).count();
        // Expected share: weight 11 against 40 × 1 → about 22%.
        assert!(wins > 50, "trusted candidate won {wins} of 400");
    }

    #[test]
    fn reputation_counts_from_the_next_epoch_and_candidates_at_once() {
        let config = ElectionConfig {
            epoch_ms: 60_000,
            orchestrators: 1,
        };
        let mut e = Election::new(config);
        let t = Timestamp(600_000);
        // Ten unknown candidates; find the winner, then give a loser the
        // full reputation: it would win most epochs from now on.
        let cands: Vec<(NodeId, u32)> = (0..10).map(|i| (node(i), 0)).collect();
        e.set_candidates(cands.clone());
        let winner = e.elected(t)[0];
        let boost = |loser: NodeId| -> Vec<(NodeId, u32)> {
            cands
                .iter()
                .map(|(n, _)| (*n, if *n == loser { REPUTATION_SCALE } else { 0 }))
                .collect()
        };
        // A loser that the boost would make this epoch's winner.
        let boosted = cands
            .iter()
            .map(|c| boost(c.0))
            .find(|b| elect(10, b, 1)[0] != winner)
            .expect("some boost moves the election");
        e.set_candidates(boosted.clone());
        // A look at the previous epoch (a job arriving just after a change
        // is accepted by its orchestrators too) leaves this one's draw as is.
        e.elected(Timestamp(t.0 - 60_000));
        assert_eq!(e.elected(t.plus(30_000)), [winner], "same epoch, same draw");
        // Later epochs weigh it: it wins as often as a fresh election says.
        let later: Vec<u64> = (11..60).collect();
        for epoch in &later {
            let at = Timestamp(epoch * 60_000);
            assert_eq!(e.elected(at), elect(*epoch, &boosted, 1).as_slice());
        }
        // The winner leaving counts at once.
        let at = Timestamp(61 * 60_000);
        let now_winner = e.elected(at)[0];
        let without: Vec<(NodeId, u32)> = boosted
            .iter()
            .copied()
            .filter(|(n, _)| *n != now_winner)
            .collect();
        e.set_candidates(without.clone());
        assert_eq!(e.elected(at), elect(61, &without, 1).as_slice());
    }

    #[test]
    fn every_job_ranks_all_elected_once() {
        let elected: Vec<NodeId> = (0..5).map(node).collect();
        let r = rank_for_job(&elected, &Digest([7; 32]));
        let mut sorted = r.clone();
        sorted.sort();
        let mut expected = elected.clone();
        expected.sort();
        assert_eq!(sorted, expected);
    }
}
