//! What a remote peer may make us hold: every table, queue and stream that
//! another peer can grow has its cap here, so that a hostile peer costs a
//! node a bounded amount of memory and work whatever it sends.
//!
//! [`NetLimits`] gathers the caps (the node reads them from its config's
//! `[limits]` table; the simulator and the bootstrap peer take the
//! defaults); [`RequestBuckets`] is the per-peer token bucket on direct
//! requests.

use libp2p::PeerId;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// The caps on what remote peers can make the network layer hold.
#[derive(Clone, Debug, PartialEq)]
pub struct NetLimits {
    /// Most connections held at once, both directions together.
    pub max_connections: u32,
    /// Most connections other peers opened to us: a flood of dialers cannot
    /// take the slots our own dials need.
    pub max_inbound_connections: u32,
    /// Most connections we opened.
    pub max_outbound_connections: u32,
    /// Connections one peer may hold to us at once.
    pub connections_per_peer: u32,
    /// Direct-message streams open at once on one connection (inbound and
    /// outbound together); a stream past it is refused unread.
    pub streams_per_connection: usize,
    /// Direct requests a peer may send per second, sustained...
    pub direct_per_second: f64,
    /// ...and in a burst. A request past the bucket is dropped unopened.
    pub direct_burst: f64,
    /// Peers kept in the peer table once disconnected (connected peers are
    /// bounded by the connection limits); the longest gone are forgotten.
    pub max_known_peers: usize,
    /// Addresses kept per peer (identify may list any number).
    pub max_addrs_per_peer: usize,
    /// Signed advert envelopes kept to hand to joining peers.
    pub max_advert_envelopes: usize,
    /// A peer we asked for adverts may answer within this long; a bundle
    /// from a peer we did not ask, or after this, is dropped unopened.
    pub bundle_deadline: Duration,
    /// Adverts taken from one peer's answer to one sync request, all
    /// bundles together.
    pub max_adverts_per_sync: usize,
}

impl Default for NetLimits {
    fn default() -> Self {
        NetLimits::with_max_connections(crate::wire::DEFAULT_MAX_CONNECTIONS)
    }
}

impl NetLimits {
    /// The defaults, for a node holding at most `max` connections: half of
    /// them for each direction's own use beyond what the other leaves.
    pub fn with_max_connections(max: u32) -> Self {
        NetLimits {
            max_connections: max,
            max_inbound_connections: max.saturating_mul(3) / 4,
            max_outbound_connections: max / 2,
            connections_per_peer: crate::wire::CONNECTIONS_PER_PEER,
            streams_per_connection: 16,
            direct_per_second: 100.0,
            direct_burst: 400.0,
            max_known_peers: 1024,
            max_addrs_per_peer: 16,
            max_advert_envelopes: 4096,
            bundle_deadline: Duration::from_secs(30),
            max_adverts_per_sync: 4096,
        }
    }
}

/// One peer's token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per peer on the direct requests it sends us: `rate` a
/// second refill up to `burst`. The table holds connected peers only (the
/// driver forgets a peer when its last connection closes), so it is bounded
/// by the connection limits.
#[derive(Clone, Debug)]
pub struct RequestBuckets {
    rate: f64,
    burst: f64,
    buckets: HashMap<PeerId, Bucket>,
}

impl RequestBuckets {
    pub fn new(rate: f64, burst: f64) -> Self {
        RequestBuckets {
            rate: rate.max(0.0),
            burst: burst.max(1.0),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for a request from `peer` at `now`: `false` means the
    /// peer is over its rate and the request is to be dropped.
    pub fn take(&mut self, peer: PeerId, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(peer).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// `peer`'s last connection closed.
    pub fn forget(&mut self, peer: &PeerId) {
        self.buckets.remove(peer);
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = RequestBuckets::new(10.0, 5.0);
        let p = PeerId::random();
        assert_eq!((0..20).filter(|_| b.take(p, t0)).count(), 5, "the burst");
        // One second later: ten more tokens, capped at the burst of five.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..20).filter(|_| b.take(p, t1)).count(), 5);
        let t2 = t1 + Duration::from_millis(200);
        assert_eq!((0..20).filter(|_| b.take(p, t2)).count(), 2, "the rate");
        // Another peer has its own bucket; a forgotten peer starts afresh.
        let q = PeerId::random();
        assert!(b.take(q, t2));
        assert_eq!(b.len(), 2);
        b.forget(&p);
        assert_eq!(b.len(), 1);
        assert!(b.take(p, t2));
    }

    #[test]
    fn inbound_and_outbound_limits_leave_room_for_each_other() {
        let l = NetLimits::with_max_connections(256);
        assert!(l.max_inbound_connections < l.max_connections);
        assert!(l.max_outbound_connections < l.max_connections);
        assert_eq!(l, NetLimits::default());
    }
}
