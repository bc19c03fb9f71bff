//! Reputation: EigenTrust-style global trust computed from receipts.
//!
//! Each valid receipt adds local trust between its parties: an executed job
//! makes client and provider trust each other one unit more; a failure
//! receipt makes the orchestrator that signed it distrust the provider one
//! unit (the client did not sign it, so nothing is counted in its name). Local trust `s_ij = max(sat - unsat, 0)` is normalised per row into
//! `c_ij`; the global trust vector is the fixed point of
//! `t = (1 - a) · Cᵀ t + a · p`, where `p` mixes the pre-trusted peers (the
//! bootstrap peers) with a uniform share for everyone in the graph, and rows
//! with no outgoing trust spend their mass according to `p`. Trust values sum to 1.
//!
//! Only receipts that passed [`SignedReceipt::verify`](crate::SignedReceipt::verify) may be
//! added; a forged or half-signed receipt must never reach this module.
//! Computation walks nodes in id order, so every peer holding the same
//! receipts computes bit-identical values.

use crate::identity::NodeId;
use crate::job::ExitStatus;
use crate::receipt::{Outcome, Receipt};
use crate::vocabulary::REPUTATION_SCALE;
use std::collections::HashMap;

/// How trust is computed (EigenTrust).
#[derive(Clone, Debug, PartialEq)]
pub struct TrustConfig {
    /// Weight of the seed distribution `p` in each step (EigenTrust's `a`).
    pub alpha: f64,
    /// Share of `p` given to pre-trusted peers; the rest is uniform over all.
    pub pretrusted_share: f64,
    /// Stop when the L1 change of an iteration is below this.
    pub epsilon: f64,
    /// Stop after this many iterations whatever the change.
    pub max_iterations: usize,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            alpha: 0.15,
            pretrusted_share: 0.5,
            epsilon: 1e-9,
            max_iterations: 50,
        }
    }
}

/// Satisfied and unsatisfied interaction counts from one peer about another.
#[derive(Clone, Copy, Debug, Default)]
struct Interactions {
    sat: u32,
    unsat: u32,
}

/// The local-trust graph built from receipts.
#[derive(Clone, Debug, Default)]
pub struct TrustGraph {
    index: HashMap<NodeId, u32>,
    nodes: Vec<NodeId>,
    edges: HashMap<(u32, u32), Interactions>,
    receipts: u64,
}

impl TrustGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    fn idx(&mut self, n: NodeId) -> u32 {
        if let Some(i) = self.index.get(&n) {
            return *i;
        }
        let i = self.nodes.len() as u32;
        self.nodes.push(n);
        self.index.insert(n, i);
        i
    }

    fn add_edge(&mut self, from: NodeId, to: NodeId, good: bool) {
        if from == to {
            // Self-dealing earns nothing.
            return;
        }
        let (f, t) = (self.idx(from), self.idx(to));
        let e = self.edges.entry((f, t)).or_default();
        if good {
            e.sat = e.sat.saturating_add(1);
        } else {
            e.unsat = e.unsat.saturating_add(1);
        }
    }

    /// Adds a verified receipt.
    pub fn add(&mut self, r: &Receipt) {
        self.receipts += 1;
        match &r.outcome {
            // Nothing ran: no evidence either way.
            Outcome::Executed(ExitStatus::Rejected(_)) => {
                self.idx(r.client);
                self.idx(r.provider);
            }
            Outcome::Executed(_) => {
                self.add_edge(r.client, r.provider, true);
                self.add_edge(r.provider, r.client, true);
            }
            Outcome::ProviderFailed(_) => {
                self.add_edge(r.orchestrator, r.provider, false);
            }
        }
    }

    /// How many receipts went in.
    pub fn receipts(&self) -> u64 {
        self.receipts
    }

    /// How many nodes the receipts name.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Global trust over the graph's nodes.
    #[must_use]
    pub fn compute(&self, pretrusted: &[NodeId], config: &TrustConfig) -> Trust {
        let n = self.nodes.len();
        if n == 0 {
            return Trust::default();
        }
        // Canonical order: by node id, so results do not depend on receipt order.
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|i| self.nodes[*i as usize]);
        let mut rank = vec![0u32; n];
        for (pos, i) in order.iter().enumerate() {
            rank[*i as usize] = pos as u32;
        }
        let nodes: Vec<NodeId> = order.iter().map(|i| self.nodes[*i as usize]).collect();

        let mut edges: Vec<(u32, u32, f64)> = self
            .edges
            .iter()
            .filter_map(|((f, t), e)| {
                let s = i64::from(e.sat) - i64::from(e.unsat);
                (s > 0).then(|| (rank[*f as usize], rank[*t as usize], s as f64))
            })
            .collect();
        edges.sort_unstable_by_key(|e| (e.0, e.1));
        let mut row_sum = vec![0.0f64; n];
        for (f, _, s) in &edges {
            row_sum[*f as usize] += s;
        }
        for (f, _, s) in edges.iter_mut() {
            *s /= row_sum[*f as usize];
        }

        // Seed distribution p.
        let pre: Vec<usize> = pretrusted
            .iter()
            .filter_map(|p| nodes.binary_search(p).ok())
            .collect();
        let share = if pre.is_empty() {
            0.0
        } else {
            config.pretrusted_share
        };
        let mut p = vec![(1.0 - share) / n as f64; n];
        for i in &pre {
            p[*i] += share / pre.len() as f64;
        }

        let a = config.alpha;
        let mut t = p.clone();
        let mut next = vec![0.0f64; n];
        let mut iterations = 0;
        for _ in 0..config.max_iterations {
            iterations += 1;
            // Mass of rows with no outgoing trust is spent like p.
            let dangling: f64 = (0..n).filter(|i| row_sum[*i] == 0.0).map(|i| t[i]).sum();
            for j in 0..n {
                next[j] = a * p[j] + (1.0 - a) * dangling * p[j];
            }
            for (f, to, c) in &edges {
                next[*to as usize] += (1.0 - a) * c * t[*f as usize];
            }
            // Renormalise against rounding drift so the values sum to 1.
            let total: f64 = next.iter().sum();
            let mut delta = 0.0;
            for j in 0..n {
                next[j] /= total;
                delta += (next[j] - t[j]).abs();
            }
            std::mem::swap(&mut t, &mut next);
            if delta < config.epsilon {
                break;
            }
        }
        let max = t.iter().cloned().fold(0.0, f64::max);
        Trust {
            values: nodes.iter().copied().zip(t).collect(),
            max,
            iterations,
        }
    }
}

/// Global trust values.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    values: HashMap<NodeId, f64>,
    max: f64,
    iterations: usize,
}

impl Trust {
    /// The node's share of global trust (0 for nodes never seen in a receipt).
    pub fn value(&self, node: &NodeId) -> f64 {
        self.values.get(node).copied().unwrap_or(0.0)
    }

    /// Trust relative to the most trusted peer, in parts per million: the
    /// reputation that the auction rule and the election weigh.
    pub fn reputation(&self, node: &NodeId) -> u32 {
        if self.max <= 0.0 {
            return 0;
        }
        ((self.value(node) / self.max) * f64::from(REPUTATION_SCALE)).round() as u32
    }

    /// The sum of every node's trust (1 after a computation).
    pub fn sum(&self) -> f64 {
        self.values.values().sum()
    }

    /// How many nodes have a trust value.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no node has a trust value.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// How many iterations the computation took.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// All values, in node order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, f64)> + '_ {
        let mut v: Vec<_> = self.values.iter().map(|(k, v)| (*k, *v)).collect();
        v.sort_by_key(|(k, _)| *k);
        v.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::job::Usage;
    use crate::receipt::FailureReason;
    use crate::time::Timestamp;
    use crate::vocabulary::Credits;

    fn node(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn receipt(client: u8, provider: u8, outcome: Outcome) -> Receipt {
        Receipt {
            job_id: Digest([client ^ provider; 32]),
            attempt: 0,
            client: node(client),
            provider: node(provider),
            orchestrator: node(200),
            award_id: Digest([0; 32]),
            price: Credits(1),
            usage: Usage::default(),
            outcome,
            result_digest: None,
            issued_at: Timestamp(0),
        }
    }

    #[test]
    fn failing_provider_ends_below_honest_ones() {
        let mut g = TrustGraph::new();
        for c in 10..20 {
            g.add(&receipt(c, 1, Outcome::Executed(ExitStatus::Exited(0))));
            g.add(&receipt(c, 2, Outcome::Executed(ExitStatus::Exited(0))));
            g.add(&receipt(
                c,
                3,
                Outcome::ProviderFailed(FailureReason::MissedDeadline),
            ));
        }
        let t = g.compute(&[node(10)], &TrustConfig::default());
        assert!((t.sum() - 1.0).abs() < 1e-9);
        assert!(t.value(&node(3)) < t.value(&node(1)));
        assert!(t.value(&node(3)) < t.value(&node(2)));
        assert_eq!(t.reputation(&node(99)), 0);
    }

    #[test]
    fn result_does_not_depend_on_receipt_order() {
        let rs: Vec<Receipt> = (0..30u8)
            .map(|i| receipt(i % 7, 7 + i % 5, Outcome::Executed(ExitStatus::Exited(0))))
            .collect();
        let mut a = TrustGraph::new();
        rs.iter().for_each(|r| a.add(r));
        let mut b = TrustGraph::new();
        rs.iter().rev().for_each(|r| b.add(r));
        let (ta, tb) = (
            a.compute(&[], &TrustConfig::default()),
            b.compute(&[], &TrustConfig::default()),
        );
        let va: Vec<_> = ta.iter().collect();
        let vb: Vec<_> = tb.iter().collect();
        assert_eq!(va, vb);
    }
}
