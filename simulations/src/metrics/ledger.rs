//! One global receipt set, for what the summary reports about the ledger:
//! receipts by outcome, balances and reputation by class. The model engine
//! has no other ledger; on the libp2p engine every peer keeps its own and
//! this one is the union of the receipts any of them stored.

use modchain_protocol::{
    Balances, NodeId, Outcome, ReceiptId, SignedReceipt, Trust, TrustConfig, TrustGraph,
};
use std::collections::{BTreeMap, HashSet};

/// Every receipt stored anywhere, each counted once.
#[derive(Debug, Default)]
pub struct Ledger {
    seen: HashSet<ReceiptId>,
    trust_graph: TrustGraph,
    /// Balances with no starting grant: what peers earned and spent.
    balances: Balances,
    pub receipts_executed: u64,
    pub receipts_failed: u64,
}

impl Ledger {
    /// Adds a receipt the first time any peer stores it.
    pub fn store(&mut self, r: &SignedReceipt) {
        if !self.seen.insert(r.receipt.id()) {
            return;
        }
        self.trust_graph.add(&r.receipt);
        self.balances.add(&r.receipt);
        match r.receipt.outcome {
            Outcome::Executed(_) => self.receipts_executed += 1,
            Outcome::ProviderFailed(_) => self.receipts_failed += 1,
        }
    }

    /// Global trust from every receipt, with the protocol's EigenTrust.
    pub fn trust(&self, pretrusted: &[NodeId]) -> Trust {
        self.trust_graph
            .compute(pretrusted, &TrustConfig::default())
    }

    /// Mean balance in credits of each class of `providers` (class, node).
    pub fn mean_balance_by_class(
        &self,
        providers: impl IntoIterator<Item = (&'static str, NodeId)>,
    ) -> BTreeMap<&'static str, f64> {
        let mut sums: BTreeMap<&'static str, (f64, usize)> = BTreeMap::new();
        for (class, node) in providers {
            let e = sums.entry(class).or_default();
            e.0 += self.balances.balance(&node) as f64 / 1e6;
            e.1 += 1;
        }
        sums.into_iter()
            .map(|(k, (sum, c))| (k, super::round3(sum / c.max(1) as f64)))
            .collect()
    }
}
