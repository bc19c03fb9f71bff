//! The DHT keys we provide for our own capabilities (those
//! [`capability_keys`](crate::behaviour::capability_keys) derives from our
//! advert), so a peer looking for one finds us through Kademlia without
//! waiting for our advert.

use libp2p::kad;
use std::collections::BTreeSet;

type Kad = kad::Behaviour<kad::store::MemoryStore>;

/// What [`ProvidedKeys::update`] did.
#[derive(Debug)]
pub enum ProvideUpdate {
    /// The advert offers the same keys as before: nothing to announce.
    Unchanged,
    /// Stopped providing the keys lost, started (again) on every key held;
    /// `failed` lists the keys the local record store refused.
    Changed {
        failed: Vec<(String, kad::store::Error)>,
    },
}

/// The capability keys we provide now.
#[derive(Debug, Default)]
pub struct ProvidedKeys {
    keys: BTreeSet<String>,
}

impl ProvidedKeys {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn keys(&self) -> &BTreeSet<String> {
        &self.keys
    }

    /// Follows the keys of our newest advert: stops providing the keys of
    /// capabilities lost, starts providing those of the capabilities it has.
    pub fn update(&mut self, kad: &mut Kad, keys: BTreeSet<String>) -> ProvideUpdate {
        if keys == self.keys {
            return ProvideUpdate::Unchanged;
        }
        for gone in self.keys.difference(&keys) {
            kad.stop_providing(&kad::RecordKey::new(gone));
        }
        let failed = keys
            .iter()
            .filter_map(|key| {
                kad.start_providing(kad::RecordKey::new(key))
                    .err()
                    .map(|e| (key.clone(), e))
            })
            .collect();
        self.keys = keys;
        ProvideUpdate::Changed { failed }
    }

    /// Announces our keys again, once the DHT has peers to hold them. A
    /// refusal here was already reported by [`update`](Self::update).
    pub fn reprovide(&self, kad: &mut Kad) {
        for key in &self.keys {
            let _ = kad.start_providing(kad::RecordKey::new(key));
        }
    }
}

/// On joining the network (the first bootstrap peer answered): one DHT walk
/// for other peers, not one per bootstrap peer, since each walk costs the
/// network a round of lookups; and our keys announced now that the DHT has
/// peers to hold them. The walk's error says that it could not start.
pub fn walk_dht(kad: &mut Kad, provided: &ProvidedKeys) -> Result<kad::QueryId, kad::NoKnownPeers> {
    let walk = kad.bootstrap();
    provided.reprovide(kad);
    walk
}

/// The first walk again, after joining: peers that joined just before us,
/// or became DHT servers only once AutoNAT confirmed their address, are
/// missing from the walk made on joining, and a message to one of them has
/// no address to go to. Walks 5 s after joining, then at gaps growing
/// threefold up to five minutes.
#[derive(Clone, Debug, Default)]
pub struct Rewalks {
    next: Option<tokio::time::Instant>,
    gap: std::time::Duration,
}

impl Rewalks {
    pub const FIRST: std::time::Duration = std::time::Duration::from_secs(5);
    pub const MAX: std::time::Duration = std::time::Duration::from_secs(300);

    /// We (re)joined at `now`: the schedule starts over.
    pub fn joined(&mut self, now: tokio::time::Instant) {
        self.gap = Self::FIRST;
        self.next = Some(now + Self::FIRST);
    }

    /// Whether a walk is due at `now` (and if so, when the next one is).
    pub fn due(&mut self, now: tokio::time::Instant) -> bool {
        match self.next {
            Some(t) if t <= now => {
                self.gap = (self.gap * 3).min(Self::MAX);
                self.next = Some(now + self.gap);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behaviour::capability_keys;
    use modchain_protocol::{CapabilityAdvert, ContainerRuntime};

    fn kad() -> Kad {
        let key = libp2p::identity::Keypair::generate_ed25519();
        crate::wire::kademlia(&key)
    }

    #[test]
    fn follows_the_advert_and_reports_no_change() {
        let mut kad = kad();
        let mut provided = ProvidedKeys::new();
        let docker = CapabilityAdvert {
            container_runtime: Some(ContainerRuntime::default()),
            ..CapabilityAdvert::default()
        };
        assert!(matches!(
            provided.update(&mut kad, capability_keys(&docker)),
            ProvideUpdate::Changed { failed } if failed.is_empty()
        ));
        assert_eq!(provided.keys().iter().collect::<Vec<_>>(), ["cap/docker"]);
        assert!(matches!(
            provided.update(&mut kad, capability_keys(&docker)),
            ProvideUpdate::Unchanged
        ));
        assert!(matches!(
            provided.update(&mut kad, BTreeSet::new()),
            ProvideUpdate::Changed { .. }
        ));
        assert!(provided.keys().is_empty());
        assert!(walk_dht(&mut kad, &provided).is_err(), "no known peers yet");
    }

    #[test]
    fn walks_again_at_growing_gaps_after_joining() {
        let t = tokio::time::Instant::now();
        let mut w = Rewalks::default();
        assert!(!w.due(t + Rewalks::MAX), "not before joining");
        w.joined(t);
        assert!(!w.due(t + std::time::Duration::from_secs(4)));
        assert!(w.due(t + Rewalks::FIRST));
        assert!(!w.due(t + Rewalks::FIRST));
        let mut at = t + Rewalks::FIRST;
        let mut gaps = Vec::new();
        for _ in 0..5 {
            let mut step = at;
            while !w.due(step) {
                step += std::time::Duration::from_secs(1);
            }
            gaps.push((step - at).as_secs());
            at = step;
        }
        assert_eq!(gaps, [15, 45, 135, 300, 300]);
    }
}
