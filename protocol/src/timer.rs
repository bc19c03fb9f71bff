//! A deadline queue for state machines: the earliest deadline is what
//! `poll_timeout` reports. Entries are not removed when they stop mattering;
//! the machine checks, when one fires, whether its state still wants it.

use crate::time::Timestamp;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Deadlines keyed by what they are for, earliest first. Entries are not cancelled: the machines re-check their state when one fires.
#[derive(Clone, Debug)]
pub(crate) struct Timers<K: Ord> {
    heap: BinaryHeap<Reverse<(Timestamp, K)>>,
}

impl<K: Ord> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Clone> Timers<K> {
    /// Sets a deadline.
    pub(crate) fn set(&mut self, at: Timestamp, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline.
    #[must_use]
    pub(crate) fn next(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Removes and returns every entry due at or before `now`.
    pub(crate) fn expired(&mut self, now: Timestamp) -> Vec<K> {
        let mut out = Vec::new();
        while let Some(Reverse((t, _))) = self.heap.peek() {
            if *t > now {
                break;
            }
            if let Some(Reverse((_, k))) = self.heap.pop() {
                out.push(k);
            }
        }
        out
    }
}
