//! Credits and prices.
//!
//! All money is integer micro-credits so every peer computes the same sums.
//! A provider advertises a [`PriceTable`]; for a job it quotes a [`Quote`]
//! (a fixed part plus a per-second rate for the resources the job asked for).
//! The client is charged for the seconds the job actually ran, never more
//! than the quote's worst case over the job's timeout, which is what the job's
//! `max_price` bounds.

use crate::time::SECOND;
use crate::vocabulary::Credits;
use crate::vocabulary::Requirements;
use serde::{Deserialize, Serialize};

const GIB: u128 = 1 << 30;

/// What a provider charges per unit of each resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTable {
    /// Charged once per job, in micro-credits.
    pub per_job: Credits,
    /// Per CPU core per second.
    pub per_core_second: Credits,
    /// Per GiB of memory per second (pro rata for parts of a GiB).
    pub per_gib_memory_second: Credits,
    /// Per GPU per second.
    pub per_gpu_second: Credits,
    /// Per 1,000 generated tokens, for LLM jobs.
    pub per_1k_tokens: Credits,
}

impl PriceTable {
    /// The quote this table gives for a job with these requirements.
    #[must_use]
    pub fn quote(&self, req: &Requirements) -> Quote {
        let cores = u128::from(req.cores.max(1)) * u128::from(self.per_core_second.0);
        let memory = u128::from(req.memory_bytes) * u128::from(self.per_gib_memory_second.0) / GIB;
        let gpus = u128::from(req.gpus) * u128::from(self.per_gpu_second.0);
        let per_second = (cores + memory + gpus).min(u128::from(u64::MAX)) as u64;
        Quote {
            fixed: self.per_job,
            per_second: Credits(per_second),
            per_1k_tokens: self.per_1k_tokens,
        }
    }
}

/// A provider's price for one job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quote {
    /// Charged whatever the job's duration.
    pub fixed: Credits,
    /// Charged per started second of wall time.
    pub per_second: Credits,
    /// Charged per 1,000 tokens generated (LLM jobs; other jobs report none).
    pub per_1k_tokens: Credits,
}

impl Quote {
    /// The most this quote can cost: the job running until its timeout.
    /// Tokens are not bounded by the protocol, so a receipt's price is
    /// capped by this figure whatever was generated: a client never pays
    /// more than the worst case it accepted.
    #[must_use]
    pub fn max_total(&self, timeout_ms: u64) -> Credits {
        self.charge(timeout_ms, 0)
    }

    /// The price for a job that ran `wall_ms` milliseconds (seconds rounded up).
    #[must_use]
    pub fn charge(&self, wall_ms: u64, tokens: u64) -> Credits {
        let seconds = wall_ms.div_ceil(SECOND);
        // Per started thousandth: 1 token at 2000 per 1k costs 2.
        let for_tokens = (u128::from(tokens) * u128::from(self.per_1k_tokens.0)).div_ceil(1000);
        Credits(
            self.fixed
                .0
                .saturating_add(self.per_second.0.saturating_mul(seconds))
                .saturating_add(u64::try_from(for_tokens).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_scales_with_requested_resources() {
        let table = PriceTable {
            per_job: Credits(100),
            per_core_second: Credits(10),
            per_gib_memory_second: Credits(4),
            per_gpu_second: Credits(1000),
            per_1k_tokens: Credits(0),
        };
        let req = Requirements {
            cores: 2,
            memory_bytes: 512 << 20,
            gpus: 1,
            ..Requirements::default()
        };
        let q = table.quote(&req);
        assert_eq!(q.per_second, Credits(20 + 2 + 1000));
        assert_eq!(q.charge(1, 0), Credits(100 + 1022));
        assert_eq!(q.charge(2500, 0), Credits(100 + 3 * 1022));
        assert_eq!(q.max_total(10_000), Credits(100 + 10 * 1022));
    }

    #[test]
    fn tokens_are_charged_per_thousand_as_advertised() {
        let table = PriceTable {
            per_job: Credits(1000),
            per_core_second: Credits(100),
            per_gib_memory_second: Credits(0),
            per_gpu_second: Credits(0),
            per_1k_tokens: Credits(2000),
        };
        let q = table.quote(&Requirements::default());
        assert_eq!(q.per_1k_tokens, Credits(2000));
        // 1 s of one core, 250 tokens at 2 micro-credits each.
        assert_eq!(q.charge(900, 250), Credits(1000 + 100 + 500));
        // A part of a thousandth is charged as a whole one.
        assert_eq!(q.charge(900, 1), Credits(1000 + 100 + 2));
        let cheap = PriceTable {
            per_1k_tokens: Credits(3),
            ..table
        }
        .quote(&Requirements::default());
        assert_eq!(cheap.charge(0, 1), Credits(1000 + 1));
    }
}
