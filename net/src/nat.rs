//! Reaching peers behind NAT: what a node knows of its own reachability
//! (from AutoNAT v2 probes), the relays it holds reservations on while it
//! cannot be dialled, and what hole punching (DCUtR) achieved.
//!
//! The rule, as a node and the simulator's libp2p engine follow it:
//!
//! - A node asks the peers it is connected to (AutoNAT v2 servers: every
//!   node and bootstrap peer runs one) to dial back the addresses others see
//!   it at. One that answers makes it **public**; failed dial-backs and none
//!   that succeeded make it **private**; before any answer it is **unknown**.
//! - A node that is private, or still unknown [`UNKNOWN_GRACE`] after it
//!   started, reserves a slot on up to [`MAX_RELAYS`] relays it is directly
//!   connected to (its bootstrap peers first), listens on their
//!   `/p2p-circuit` addresses and so becomes dialable through them; identify
//!   and Kademlia carry those addresses to every peer.
//! - A connection that arrives through a relay is upgraded to a direct one
//!   by DCUtR where both NATs allow it; the relayed one then goes idle and
//!   closes, and traffic takes the direct path.
//!
//! None of this logs or counts: the driver turns it into events.

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, relay};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// A node still unknown this long after it started reserves relays anyway:
/// better a relayed path it did not need than no path at all.
pub const UNKNOWN_GRACE: Duration = Duration::from_secs(20);

/// Relays a private node holds reservations on at once.
pub const MAX_RELAYS: usize = 2;

/// Whether other peers can dial us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reachability {
    /// No dial-back has answered yet.
    Unknown,
    /// A peer dialled one of our addresses back.
    Public,
    /// Dial-backs failed and none succeeded: we are behind a NAT or a
    /// firewall that drops what we did not ask for.
    Private,
}

impl Reachability {
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }
}

impl std::fmt::Display for Reachability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one relay costs its operator at most: relayed connections carry a
/// job's messages, logs and outputs when two private peers cannot punch a
/// hole, so the circuit limits are sized for a job (16 MiB of logs and
/// outputs, with room), not libp2p's defaults (2 minutes, 128 KiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// Peers holding a reservation at once.
    pub max_reservations: usize,
    /// Relayed connections at once, and per peer.
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
    /// A relayed connection closes after this long...
    pub max_circuit_duration: Duration,
    /// ...or after this many bytes each way.
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_reservations: 128,
            max_circuits: 32,
            max_circuits_per_peer: 4,
            max_circuit_duration: Duration::from_secs(30 * 60),
            max_circuit_bytes: 64 << 20,
        }
    }
}

impl RelayLimits {
    /// The relay server's configuration.
    pub fn config(&self) -> relay::Config {
        relay::Config {
            max_reservations: self.max_reservations,
            max_reservations_per_peer: 4,
            max_circuits: self.max_circuits,
            max_circuits_per_peer: self.max_circuits_per_peer,
            max_circuit_duration: self.max_circuit_duration,
            max_circuit_bytes: self.max_circuit_bytes,
            ..relay::Config::default()
        }
    }
}

/// A reservation we asked a relay for.
#[derive(Clone, Debug)]
pub struct Reservation {
    pub relay: PeerId,
    /// The `/p2p-circuit` address we listen on through it.
    pub addr: Multiaddr,
    pub listener: ListenerId,
    /// The relay accepted it (and renews it while connected).
    pub accepted: bool,
}

/// A change worth telling the operator about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReachabilityChange {
    pub from: Reachability,
    pub to: Reachability,
    /// The address whose probe decided it.
    pub addr: Multiaddr,
}

/// Our reachability and relay reservations.
#[derive(Clone, Debug)]
pub struct NatState {
    reachability: Reachability,
    started: Instant,
    /// Addresses a peer dialled back, and those whose dial-back failed.
    reachable: BTreeMap<Multiaddr, Instant>,
    unreachable: BTreeMap<Multiaddr, Instant>,
    reservations: BTreeMap<PeerId, Reservation>,
    /// Whether to reserve relays when private (off in the simulator).
    use_relays: bool,
    /// Connections upgraded to direct by hole punching, and attempts that failed.
    pub punched: u64,
    pub punch_failed: u64,
}

/// Addresses of each kind remembered (the newest kept).
const MAX_PROBED: usize = 16;

impl NatState {
    pub fn new(now: Instant, use_relays: bool) -> Self {
        NatState {
            reachability: Reachability::Unknown,
            started: now,
            reachable: BTreeMap::new(),
            unreachable: BTreeMap::new(),
            reservations: BTreeMap::new(),
            use_relays,
            punched: 0,
            punch_failed: 0,
        }
    }

    /// Whether this node uses relays at all (a node does; the simulator's
    /// engine does not).
    pub fn uses_relays(&self) -> bool {
        self.use_relays
    }

    pub fn reachability(&self) -> Reachability {
        self.reachability
    }

    /// Addresses a peer dialled back.
    pub fn reachable_addrs(&self) -> impl Iterator<Item = &Multiaddr> {
        self.reachable.keys()
    }

    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values()
    }

    /// An AutoNAT probe of `addr` answered: `Some(true)` dialled back,
    /// `Some(false)` the server could not connect, `None` inconclusive (no
    /// server, a broken stream). Returns the change of reachability, if any.
    pub fn probed(
        &mut self,
        now: Instant,
        addr: &Multiaddr,
        reached: Option<bool>,
    ) -> Option<ReachabilityChange> {
        // A relayed address says nothing about our own NAT.
        if is_relayed(addr) {
            return None;
        }
        match reached {
            Some(true) => {
                self.unreachable.remove(addr);
                remember(&mut self.reachable, addr, now);
            }
            Some(false) => {
                self.reachable.remove(addr);
                remember(&mut self.unreachable, addr, now);
            }
            None => return None,
        }
        let to = if !self.reachable.is_empty() {
            Reachability::Public
        } else if !self.unreachable.is_empty() {
            Reachability::Private
        } else {
            Reachability::Unknown
        };
        let from = self.reachability;
        self.reachability = to;
        (from != to).then(|| ReachabilityChange {
            from,
            to,
            addr: addr.clone(),
        })
    }

    /// Whether we should hold relay reservations now.
    pub fn wants_relays(&self, now: Instant) -> bool {
        self.use_relays
            && match self.reachability {
                Reachability::Private => true,
                Reachability::Unknown => now.duration_since(self.started) >= UNKNOWN_GRACE,
                Reachability::Public => false,
            }
    }

    /// Relays to reserve on now, from `candidates` (directly connected
    /// relays, in order of preference), with the `/p2p-circuit` address to
    /// listen on for each.
    pub fn relays_to_reserve(
        &self,
        now: Instant,
        candidates: impl IntoIterator<Item = (PeerId, Multiaddr)>,
    ) -> Vec<(PeerId, Multiaddr)> {
        if !self.wants_relays(now) {
            return Vec::new();
        }
        let room = MAX_RELAYS.saturating_sub(self.reservations.len());
        let mut chosen: Vec<(PeerId, Multiaddr)> = Vec::new();
        for (p, addr) in candidates {
            if chosen.len() >= room {
                break;
            }
            // A relay may be listed twice (a bootstrap peer that also
            // announces the hop protocol): one reservation each.
            if self.reservations.contains_key(&p) || chosen.iter().any(|(c, _)| *c == p) {
                continue;
            }
            if let Some(c) = circuit_addr(&addr, p) {
                chosen.push((p, c));
            }
        }
        chosen
    }

    /// We started listening through `relay`.
    pub fn reserving(&mut self, relay: PeerId, addr: Multiaddr, listener: ListenerId) {
        self.reservations.insert(
            relay,
            Reservation {
                relay,
                addr,
                listener,
                accepted: false,
            },
        );
    }

    /// `relay` accepted (or renewed) our reservation. Returns whether it is new.
    pub fn accepted(&mut self, relay: &PeerId) -> bool {
        match self.reservations.get_mut(relay) {
            Some(r) if !r.accepted => {
                r.accepted = true;
                true
            }
            _ => false,
        }
    }

    /// A listener closed: if it was a relay's, that reservation is gone
    /// (the relay went away or refused); a fresh one is asked for on the
    /// next tick.
    pub fn listener_closed(&mut self, listener: ListenerId) -> Option<Reservation> {
        let relay = self
            .reservations
            .iter()
            .find(|(_, r)| r.listener == listener)
            .map(|(p, _)| *p)?;
        self.reservations.remove(&relay)
    }

    /// Reservations to drop: we turned out public.
    pub fn surplus(&mut self, now: Instant) -> Vec<Reservation> {
        if self.wants_relays(now) || !self.use_relays {
            return Vec::new();
        }
        std::mem::take(&mut self.reservations)
            .into_values()
            .collect()
    }
}

fn remember(map: &mut BTreeMap<Multiaddr, Instant>, addr: &Multiaddr, now: Instant) {
    map.insert(addr.clone(), now);
    while map.len() > MAX_PROBED {
        let Some(oldest) = map.iter().min_by_key(|(_, t)| **t).map(|(a, _)| a.clone()) else {
            break;
        };
        map.remove(&oldest);
    }
}

/// Whether `addr` goes through a relay.
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// The address to listen on through the relay `relay` reached at `addr`:
/// `addr/p2p/<relay>/p2p-circuit`.
pub fn circuit_addr(addr: &Multiaddr, relay: PeerId) -> Option<Multiaddr> {
    if is_relayed(addr) {
        return None;
    }
    let base = match addr.iter().last() {
        Some(Protocol::P2p(p)) if p == relay => addr.clone(),
        Some(Protocol::P2p(_)) => return None,
        _ => addr.clone().with(Protocol::P2p(relay)),
    };
    Some(base.with(Protocol::P2pCircuit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    fn peer(seed: u64) -> PeerId {
        modchain_protocol::Keypair::from_seed(seed)
            .to_libp2p()
            .public()
            .to_peer_id()
    }

    #[test]
    fn reachability_follows_the_probes_and_a_success_outweighs_failures() {
        let t = Instant::now();
        let mut nat = NatState::new(t, true);
        assert_eq!(nat.reachability(), Reachability::Unknown);
        let a = addr("/ip4/192.0.2.1/tcp/4001");
        let b = addr("/ip4/192.0.2.1/tcp/4002");
        assert_eq!(nat.probed(t, &a, None), None, "inconclusive");
        let change = nat.probed(t, &a, Some(false)).expect("a change");
        assert_eq!(
            (change.from, change.to),
            (Reachability::Unknown, Reachability::Private)
        );
        assert!(nat.wants_relays(t));
        let change = nat.probed(t, &b, Some(true)).expect("a change");
        assert_eq!(change.to, Reachability::Public);
        assert!(!nat.wants_relays(t));
        assert_eq!(
            nat.probed(t, &a, Some(false)),
            None,
            "still public through b"
        );
        // A relayed address says nothing about our NAT.
        let relayed = addr(
            "/ip4/192.0.2.9/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
        );
        assert_eq!(nat.probed(t, &relayed, Some(false)), None);
    }

    #[test]
    fn an_unknown_node_reserves_relays_after_the_grace_and_at_most_two() {
        let t = Instant::now();
        let mut nat = NatState::new(t, true);
        let relays: Vec<(PeerId, Multiaddr)> = (0..3)
            .map(|i| (peer(i), addr(&format!("/ip4/192.0.2.{i}/tcp/4001"))))
            .collect();
        assert!(nat.relays_to_reserve(t, relays.clone()).is_empty());
        let later = t + UNKNOWN_GRACE;
        let twice = relays.iter().chain(&relays).cloned();
        let chosen = nat.relays_to_reserve(later, twice);
        assert_eq!(chosen.len(), MAX_RELAYS);
        assert_ne!(chosen[0].0, chosen[1].0, "one reservation per relay");
        assert!(chosen[0].1.to_string().ends_with("/p2p-circuit"));
        for (i, (p, a)) in chosen.iter().enumerate() {
            nat.reserving(*p, a.clone(), ListenerId::next());
            assert!(nat.accepted(p), "{i}");
            assert!(!nat.accepted(p), "a renewal is not new");
        }
        assert!(
            nat.relays_to_reserve(later, relays.clone()).is_empty(),
            "full"
        );
        // Public after all: the reservations are let go.
        nat.probed(later, &addr("/ip4/192.0.2.1/tcp/1"), Some(true));
        assert_eq!(nat.surplus(later).len(), MAX_RELAYS);
        // Off in the simulator.
        let off = NatState::new(t, false);
        assert!(off.relays_to_reserve(later, relays).is_empty());
    }

    #[test]
    fn circuit_addresses_name_their_relay_once() {
        let relay = peer(1);
        let plain = addr("/ip4/192.0.2.1/tcp/4001");
        let with_id = plain.clone().with(Protocol::P2p(relay));
        let expected = with_id.clone().with(Protocol::P2pCircuit);
        assert_eq!(circuit_addr(&plain, relay), Some(expected.clone()));
        assert_eq!(circuit_addr(&with_id, relay), Some(expected.clone()));
        assert_eq!(
            circuit_addr(&expected, relay),
            None,
            "no relay through a relay"
        );
        let other = plain.with(Protocol::P2p(peer(2)));
        assert_eq!(circuit_addr(&other, relay), None);
    }
}
