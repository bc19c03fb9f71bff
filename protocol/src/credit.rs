//! Credit balances derived from receipts: the client pays the provider the
//! receipt's price; every peer starts with a configurable grant.

use crate::identity::NodeId;
use crate::receipt::Receipt;
use crate::vocabulary::Credits;
use std::collections::HashMap;

/// Every peer's credit balance, computed from the receipts in the ledger.
#[derive(Clone, Debug, Default)]
pub struct Balances {
    /// What every peer starts with.
    grant: Credits,
    /// Net change per node in micro-credits.
    net: HashMap<NodeId, i128>,
}

impl Balances {
    /// Balances where every peer starts with `grant`.
    pub fn new(grant: Credits) -> Self {
        Balances {
            grant,
            net: HashMap::new(),
        }
    }

    /// Adds a verified receipt.
    pub fn add(&mut self, r: &Receipt) {
        if r.price == Credits::ZERO || r.client == r.provider {
            return;
        }
        *self.net.entry(r.client).or_default() -= i128::from(r.price.0);
        *self.net.entry(r.provider).or_default() += i128::from(r.price.0);
    }

    /// Balance in micro-credits; negative when a peer spent more than its grant and earnings.
    pub fn balance(&self, node: &NodeId) -> i128 {
        i128::from(self.grant.0) + self.net.get(node).copied().unwrap_or(0)
    }

    /// What every peer starts with.
    pub fn grant(&self) -> Credits {
        self.grant
    }
}
