//! A deadline queue for state machines: the earliest deadline is what
//! `poll_timeout` reports. Most entries are left to fire when they stop
//! mattering (the machine checks, when one fires, whether its state still
//! wants it); a far one that a remote peer made can be removed, so such
//! entries cannot pile up.

use crate::time::Timestamp;
use std::collections::BTreeSet;

/// Deadlines keyed by what they are for, earliest first.
#[derive(Clone, Debug)]
pub(crate) struct Timers<K: Ord> {
    set: BTreeSet<(Timestamp, K)>,
}

impl<K: Ord> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            set: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone> Timers<K> {
    /// Sets a deadline.
    pub(crate) fn set(&mut self, at: Timestamp, key: K) {
        self.set.insert((at, key));
    }

    /// Removes the deadline `key` set for `at`, if it is still there.
    pub(crate) fn remove(&mut self, at: Timestamp, key: K) {
        self.set.remove(&(at, key));
    }

    /// How many deadlines are pending.
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    /// The earliest deadline.
    #[must_use]
    pub(crate) fn next(&self) -> Option<Timestamp> {
        self.set.first().map(|(t, _)| *t)
    }

    /// Removes and returns every entry due at or before `now`.
    pub(crate) fn expired(&mut self, now: Timestamp) -> Vec<K> {
        let mut out = Vec::new();
        while self.set.first().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, k)) = self.set.pop_first() {
                out.push(k);
            }
        }
        out
    }
}
