//! Protocol time. The state machines never read a clock: every input carries a
//! [`Timestamp`] chosen by the driver (the node's wall clock, the simulator's
//! virtual clock, a test's hand-cranked clock).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The Unix epoch.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A time this many milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + ms`, saturating rather than wrapping so a hostile timeout
    /// cannot produce a deadline in the past.
    pub const fn plus(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub const fn since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The wall clock, for drivers. State machines must not call this.
    pub fn now_wall() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

/// Common durations in milliseconds, named so call sites read as prose.
pub const SECOND: u64 = 1_000;
/// A minute in milliseconds.
pub const MINUTE: u64 = 60 * SECOND;
