//! The network's shared vocabulary: the few value types that the messages,
//! the matching, the pricing and the auction all speak of. It imports
//! nothing else of the crate, so the modules of logic depend on it and
//! never on each other for a word.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Micro-credits in one credit: the one place the ratio is written.
pub const MICROS_PER_CREDIT: u64 = 1_000_000;

/// Micro-credits (1 credit = [`MICROS_PER_CREDIT`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Credits(pub u64);

impl Credits {
    /// No credits.
    pub const ZERO: Credits = Credits(0);
    /// Whole credits, as micro-credits.
    pub const fn from_credits(c: u64) -> Self {
        Credits(c.saturating_mul(MICROS_PER_CREDIT))
    }
    /// The amount in micro-credits.
    pub const fn micros(self) -> u64 {
        self.0
    }
    /// The sum, saturating at the largest amount.
    pub const fn saturating_add(self, o: Credits) -> Credits {
        Credits(self.0.saturating_add(o.0))
    }
}

impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}",
            self.0 / MICROS_PER_CREDIT,
            self.0 % MICROS_PER_CREDIT
        )
    }
}

/// Who made a GPU: jobs may ask for one vendor's GPUs (CUDA, ROCm, Metal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GpuVendor {
    /// NVIDIA (CUDA).
    Nvidia,
    /// AMD (ROCm).
    Amd,
    /// Intel.
    Intel,
    /// Apple (Metal).
    Apple,
    /// Any other vendor.
    Other,
}

impl fmt::Display for GpuVendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GpuVendor::Nvidia => "NVIDIA",
            GpuVendor::Amd => "AMD",
            GpuVendor::Intel => "Intel",
            GpuVendor::Apple => "Apple",
            GpuVendor::Other => "other",
        })
    }
}

/// What a job needs from the machine that runs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Requirements {
    /// CPU cores (at least one is always reserved).
    pub cores: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Number of GPUs.
    pub gpus: u32,
    /// GPU vendor, if the job cares.
    pub gpu_vendor: Option<GpuVendor>,
    /// Minimum memory per GPU, in bytes.
    pub min_vram_bytes: u64,
    /// Scratch storage in bytes.
    pub storage_bytes: u64,
    /// A model the provider must serve (LLM jobs).
    pub model: Option<String>,
}

/// Reputation in the selection rule: parts per million of the best trust
/// value among the bidders' peers (see [`Trust::reputation`](crate::Trust::reputation)).
pub const REPUTATION_SCALE: u32 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_display_whole_and_micro() {
        assert_eq!(Credits(1_500_000).to_string(), "1.500000");
    }
}
