//! The auction's messages and its one selection rule.
//!
//! The rule is a pure function of the bids an orchestrator saw and the
//! reputations it used, and the `Award` carries both, so any peer can check
//! that the orchestrator picked the winner the rule picks.

use crate::digest::{BidId, Digest, JobId};
use crate::identity::NodeId;
use crate::pricing::Quote;
use crate::time::Timestamp;
use crate::vocabulary::Credits;
use crate::vocabulary::REPUTATION_SCALE;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A provider's offer to run a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The job bid on.
    pub job_id: JobId,
    /// The auction round the bid answers.
    pub attempt: u32,
    /// The provider's price for the job.
    pub quote: Quote,
    /// `quote` over the job's whole timeout: the most the client could pay.
    pub max_total: Credits,
}

/// Why a provider did not bid.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeclineReason {
    /// Not enough free capacity right now.
    Busy,
    /// The provider's price for this job is over the job's `max_price`.
    OverMaxPrice {
        /// The provider's quote over the job's whole timeout.
        max_total: Credits,
        /// The most the job's client will pay.
        max_price: Credits,
    },
    /// The provider does not run this adapter, method or model.
    Unsupported(String),
    /// The machine cannot meet the requirements at all.
    RequirementsUnmet(String),
    /// The call for bids was malformed or its job signature did not check.
    InvalidCall(String),
    /// The provider's adapter refused the job's parameters (a prompt over
    /// the model's context, a module that does not compile): no provider
    /// will take them, so waiting cannot help.
    InvalidParams(String),
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeclineReason::Busy => f.write_str("busy"),
            DeclineReason::OverMaxPrice {
                max_total,
                max_price,
            } => write!(f, "price {max_total} over the job's max price {max_price}"),
            DeclineReason::Unsupported(s) => write!(f, "unsupported: {s}"),
            DeclineReason::RequirementsUnmet(s) => write!(f, "requirements unmet: {s}"),
            DeclineReason::InvalidCall(s) => write!(f, "invalid call for bids: {s}"),
            DeclineReason::InvalidParams(s) => write!(f, "parameters refused: {s}"),
        }
    }
}

/// A provider's answer that it will not bid, so the window can close early
/// and the client can be told why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decline {
    /// The job declined.
    pub job_id: JobId,
    /// The auction round the decline answers.
    pub attempt: u32,
    /// Why the provider declined.
    pub reason: DeclineReason,
}

/// One bid as the selection rule saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BidEntry {
    /// The bid's id (the digest of its signed envelope).
    pub bid_id: BidId,
    /// The provider that bid.
    pub provider: NodeId,
    /// The bid's quote over the job's whole timeout.
    pub max_total: Credits,
    /// The provider's reputation as the orchestrator used it, 0..=REPUTATION_SCALE.
    pub reputation: u32,
}

/// The orchestrator's decision, sent to the winner, the losers and the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Award {
    /// The job awarded.
    pub job_id: JobId,
    /// The auction round (0 first).
    pub attempt: u32,
    /// The job's client.
    pub client: NodeId,
    /// The provider that runs the job.
    pub winner: NodeId,
    /// The id of the winning bid.
    pub winning_bid: BidId,
    /// The winning bid's quote: what the receipt charges by.
    pub quote: Quote,
    /// Every valid bid the orchestrator received, in bid-id order.
    pub bids: Vec<BidEntry>,
    /// Digest of `bids`, so a peer holding only the digest can compare.
    pub bids_digest: Digest,
    /// The provider must deliver a result by this time.
    pub execution_deadline: Timestamp,
}

/// The score the rule minimises: the worst-case price, discounted by up to
/// half for the best reputation. Integer arithmetic, so every peer agrees.
#[must_use]
pub fn effective_price(entry: &BidEntry) -> u128 {
    let rep = entry.reputation.min(REPUTATION_SCALE);
    u128::from(entry.max_total.0) * u128::from(2 * REPUTATION_SCALE - rep)
}

/// The selection rule: lowest effective price; ties go to the lower price,
/// then the higher reputation, then the lower bid id. Returns the index of the
/// winner in `bids`.
#[must_use]
pub fn select_winner(bids: &[BidEntry]) -> Option<usize> {
    bids.iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| {
            effective_price(a)
                .cmp(&effective_price(b))
                .then(a.max_total.cmp(&b.max_total))
                .then(b.reputation.cmp(&a.reputation))
                .then(a.bid_id.cmp(&b.bid_id))
        })
        .map(|(i, _)| i)
}

/// Digest of the bid list as carried in an award.
#[must_use]
pub fn bids_digest(bids: &[BidEntry]) -> Digest {
    Digest::of(&crate::codec::encode(bids))
}

/// Whether an award follows the rule, and why not. A verdict: dropping it
/// unread would run an award nobody checked.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AwardCheck {
    /// The award follows the rule.
    Valid,
    /// The bids' digest is not the one the award carries.
    DigestMismatch,
    /// The award lists no bids.
    NoBids,
    /// The rule picks another bid.
    WrongWinner {
        /// The bid the rule picks.
        expected: BidId,
    },
    /// The winner and quote do not belong to the winning bid.
    InconsistentWinner,
    /// More bids than [`MAX_AWARD_BIDS`]: no orchestrator calls that many.
    TooManyBids,
}

/// The most bids an award may list. An orchestrator calls at most this many
/// providers per round, so an honest award never lists more; the bound keeps
/// an award, and every receipt that carries it, small.
pub const MAX_AWARD_BIDS: usize = 64;

impl Award {
    /// Re-runs the selection rule over the award's own inputs.
    pub fn check(&self) -> AwardCheck {
        if self.bids.len() > MAX_AWARD_BIDS {
            return AwardCheck::TooManyBids;
        }
        if bids_digest(&self.bids) != self.bids_digest {
            return AwardCheck::DigestMismatch;
        }
        let Some(i) = select_winner(&self.bids) else {
            return AwardCheck::NoBids;
        };
        let chosen = &self.bids[i];
        if chosen.bid_id != self.winning_bid {
            return AwardCheck::WrongWinner {
                expected: chosen.bid_id,
            };
        }
        if chosen.provider != self.winner {
            return AwardCheck::InconsistentWinner;
        }
        AwardCheck::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, price: u64, rep: u32) -> BidEntry {
        BidEntry {
            bid_id: Digest([n; 32]),
            provider: NodeId([n; 32]),
            max_total: Credits(price),
            reputation: rep,
        }
    }

    #[test]
    fn cheapest_wins_at_equal_reputation() {
        let bids = [entry(1, 300, 0), entry(2, 200, 0), entry(3, 250, 0)];
        assert_eq!(select_winner(&bids), Some(1));
    }

    #[test]
    fn reputation_can_outweigh_a_small_price_difference() {
        // 200 at zero reputation scores 200*2; 300 at full reputation scores 300*1.
        let bids = [entry(1, 200, 0), entry(2, 300, REPUTATION_SCALE)];
        assert_eq!(select_winner(&bids), Some(1));
        // ... but not a large one.
        let bids = [entry(1, 100, 0), entry(2, 300, REPUTATION_SCALE)];
        assert_eq!(select_winner(&bids), Some(0));
    }

    #[test]
    fn full_tie_goes_to_lower_bid_id() {
        let bids = [entry(9, 100, 5), entry(4, 100, 5)];
        assert_eq!(select_winner(&bids), Some(1));
    }
}
