//! The replay cache: the ids of job-carrying messages (jobs, calls for
//! bids, awards) a peer has taken, each kept for as long as the message
//! itself would still be accepted. A copy that arrives again within that
//! time is a replay: recorded once, acted on once. After it, the message is
//! refused for its age anyway, so nothing is kept longer than that.

use crate::digest::Digest;
use crate::time::Timestamp;
use std::collections::{BTreeSet, HashMap};

/// How many ids a peer remembers at most. At about 80 bytes an entry this
/// is a few MiB; past it the ids closest to expiry go first, and each one
/// evicted is counted (a peer that sees evictions is being flooded).
pub const MAX_REPLAY_ENTRIES: usize = 65_536;

/// Message ids with the time each stops mattering.
#[derive(Clone, Debug, Default)]
pub struct ReplayCache {
    until: HashMap<Digest, Timestamp>,
    by_expiry: BTreeSet<(Timestamp, Digest)>,
    evicted: u64,
}

impl ReplayCache {
    /// Records `id` until `expires_at`. Returns `false` if it was already
    /// there (a replay), `true` if it is new.
    pub fn insert(&mut self, now: Timestamp, id: Digest, expires_at: Timestamp) -> bool {
        self.expire(now);
        if self.until.contains_key(&id) {
            return false;
        }
        while self.until.len() >= MAX_REPLAY_ENTRIES {
            let Some((_, oldest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.until.remove(&oldest);
            self.evicted += 1;
        }
        self.until.insert(id, expires_at);
        self.by_expiry.insert((expires_at, id));
        true
    }

    /// Whether `id` is held.
    pub fn contains(&self, id: &Digest) -> bool {
        self.until.contains_key(id)
    }

    /// Forgets every id whose time has passed.
    pub fn expire(&mut self, now: Timestamp) {
        while let Some(&(t, id)) = self.by_expiry.first() {
            if t > now {
                break;
            }
            self.by_expiry.pop_first();
            self.until.remove(&id);
        }
    }

    /// How many ids are held.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    /// How many ids were dropped before their time for want of room.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_copy_within_its_time_is_a_replay() {
        let mut c = ReplayCache::default();
        let id = Digest([7; 32]);
        assert!(c.insert(Timestamp(0), id, Timestamp(100)));
        assert!(!c.insert(Timestamp(50), id, Timestamp(150)));
        // Past its time the message is refused for its age, not by the cache.
        assert!(c.insert(Timestamp(100), id, Timestamp(200)));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn full_cache_evicts_the_soonest_to_expire() {
        let mut c = ReplayCache::default();
        for n in 0..MAX_REPLAY_ENTRIES as u64 {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&n.to_le_bytes());
            assert!(c.insert(Timestamp(0), Digest(d), Timestamp(1_000 + n)));
        }
        assert!(c.insert(Timestamp(0), Digest([0xff; 32]), Timestamp(5_000_000)));
        assert_eq!(c.len(), MAX_REPLAY_ENTRIES);
        assert_eq!(c.evicted(), 1);
        let mut first = [0u8; 32];
        first[..8].copy_from_slice(&0u64.to_le_bytes());
        assert!(!c.contains(&Digest(first)), "the soonest to expire went");
    }
}
