//! Dialling the bootstrap peers: every one is dialled until it answers, and
//! one that cannot be reached is tried again after a wait that doubles from
//! [`BACKOFF_MIN`] up to [`BACKOFF_MAX`], so an unreachable peer is not
//! hammered and a reachable one is joined quickly.

use crate::behaviour::NodeBehaviour;
use crate::behaviour::timings::{BACKOFF_MAX, BACKOFF_MIN};
use crate::bootstrap_list::BootstrapAddr;
use libp2p::swarm::DialError;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm};
use std::time::Duration;
use tokio::time::Instant;

/// One bootstrap peer and where we stand with it.
#[derive(Clone, Debug)]
pub struct BootstrapDial {
    peer: BootstrapAddr,
    /// The address dialled and given to Kademlia.
    dial_addr: Multiaddr,
    connected: bool,
    /// The wait before the next attempt if this one fails.
    backoff: Duration,
    /// When to dial next; `None` while connected or while a dial is under way.
    next_dial: Option<Instant>,
    /// Failed attempts since it last answered.
    failures: u32,
}

impl BootstrapDial {
    fn new(peer: BootstrapAddr, dial_addr: Multiaddr, now: Instant) -> Self {
        BootstrapDial {
            peer,
            dial_addr,
            connected: false,
            backoff: BACKOFF_MIN,
            next_dial: Some(now),
            failures: 0,
        }
    }

    pub fn peer(&self) -> &BootstrapAddr {
        &self.peer
    }

    pub fn connected(&self) -> bool {
        self.connected
    }

    /// The address it is dialled at.
    pub fn dial_addr(&self) -> &Multiaddr {
        &self.dial_addr
    }

    /// Failed attempts since it last answered.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A failed attempt, and when the next one is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    pub peer: BootstrapAddr,
    /// How many attempts in a row have failed, this one included.
    pub attempt: u32,
    /// The wait before the next attempt, jitter included.
    pub wait: Duration,
}

/// A dial the swarm refused at once, and the retries it scheduled.
#[derive(Debug)]
pub struct DialFailed {
    pub error: DialError,
    pub retries: Vec<Retry>,
}

/// What a new connection meant for the bootstrap peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Joined {
    /// The bootstrap peers this connection reached and that were not connected.
    pub newly: Vec<BootstrapAddr>,
    /// No bootstrap peer was connected before: we (re)joined the network.
    pub first: bool,
}

/// The bootstrap peers, in the order given.
#[derive(Clone, Debug, Default)]
pub struct BootstrapPeers {
    peers: Vec<BootstrapDial>,
}

impl BootstrapPeers {
    /// Peers from a bootstrap list, dialled at their transport address,
    /// all due at `now`.
    pub fn from_list(list: &[BootstrapAddr], now: Instant) -> Self {
        BootstrapPeers {
            peers: list
                .iter()
                .map(|p| BootstrapDial::new(p.clone(), p.transport_addr(), now))
                .collect(),
        }
    }

    /// Peers dialled at the address given, all due at `now`.
    pub fn new(peers: impl IntoIterator<Item = (PeerId, Multiaddr)>, now: Instant) -> Self {
        BootstrapPeers {
            peers: peers
                .into_iter()
                .map(|(peer_id, addr)| {
                    BootstrapDial::new(
                        BootstrapAddr {
                            peer_id,
                            addr: addr.clone(),
                        },
                        addr,
                        now,
                    )
                })
                .collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &BootstrapDial> {
        self.peers.iter()
    }

    /// Whether `peer_id` is one of the bootstrap peers.
    pub fn contains(&self, peer_id: &PeerId) -> bool {
        self.peers.iter().any(|b| b.peer.peer_id == *peer_id)
    }

    /// Whether any bootstrap peer is connected.
    pub fn joined(&self) -> bool {
        self.peers.iter().any(|b| b.connected)
    }

    /// Dials every peer that is due: its address goes to Kademlia, and a
    /// dial the swarm refuses at once counts as a failed attempt.
    /// `jitter` draws from [0, 1] (see [`failed`](Self::failed)).
    pub fn dial_due(
        &mut self,
        swarm: &mut Swarm<NodeBehaviour>,
        now: Instant,
        mut jitter: impl FnMut() -> f64,
    ) -> Vec<DialFailed> {
        let mut refused = Vec::new();
        for i in 0..self.peers.len() {
            let b = &mut self.peers[i];
            if b.connected || b.next_dial.is_none_or(|t| t > now) {
                continue;
            }
            b.next_dial = None;
            let (peer_id, addr) = (b.peer.peer_id, b.dial_addr.clone());
            swarm
                .behaviour_mut()
                .kad
                .add_address(&peer_id, addr.clone());
            let opts = DialOpts::peer_id(peer_id).addresses(vec![addr]).build();
            if let Err(error) = swarm.dial(opts) {
                let retries = self.failed(&peer_id, now, &mut jitter);
                refused.push(DialFailed { error, retries });
            }
        }
        refused
    }

    /// A dial of `peer_id` failed: each of its entries with no attempt
    /// scheduled waits its backoff, up to a quarter more (`jitter`, drawn
    /// from [0, 1], so that peers which lost the same bootstrap peer do not
    /// all come back at once), and its next wait doubles up to
    /// [`BACKOFF_MAX`].
    pub fn failed(
        &mut self,
        peer_id: &PeerId,
        now: Instant,
        mut jitter: impl FnMut() -> f64,
    ) -> Vec<Retry> {
        let mut retries = Vec::new();
        for b in self.peers.iter_mut().filter(|b| b.peer.peer_id == *peer_id) {
            if b.connected || b.next_dial.is_some() {
                continue;
            }
            b.failures += 1;
            let wait = b.backoff.mul_f64(1.0 + jitter() / 4.0);
            b.next_dial = Some(now + wait);
            b.backoff = (b.backoff * 2).min(BACKOFF_MAX);
            retries.push(Retry {
                peer: b.peer.clone(),
                attempt: b.failures,
                wait,
            });
        }
        retries
    }

    /// A connection to `peer_id` is up: if it is a bootstrap peer, its
    /// backoff starts over.
    pub fn connected(&mut self, peer_id: &PeerId) -> Joined {
        let was_joined = self.joined();
        let mut newly = Vec::new();
        for b in self.peers.iter_mut().filter(|b| b.peer.peer_id == *peer_id) {
            if !b.connected {
                newly.push(b.peer.clone());
            }
            b.connected = true;
            b.backoff = BACKOFF_MIN;
            b.failures = 0;
            b.next_dial = None;
        }
        let first = !newly.is_empty() && !was_joined;
        Joined { newly, first }
    }

    /// The last connection to `peer_id` closed: a bootstrap peer is dialled
    /// again after its backoff. Returns whether it was one.
    pub fn disconnected(&mut self, peer_id: &PeerId, now: Instant) -> bool {
        let mut lost = false;
        for b in self.peers.iter_mut().filter(|b| b.peer.peer_id == *peer_id) {
            b.connected = false;
            b.next_dial = Some(now + b.backoff);
            lost = true;
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_peer(now: Instant) -> (PeerId, BootstrapPeers) {
        let peer_id = PeerId::random();
        let addr: Multiaddr = "/memory/7".parse().expect("addr");
        (peer_id, BootstrapPeers::new([(peer_id, addr)], now))
    }

    /// Takes the peer's pending attempt, as a dial does.
    fn dialling(peers: &mut BootstrapPeers) {
        for b in &mut peers.peers {
            b.next_dial = None;
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let now = Instant::now();
        let (id, mut peers) = one_peer(now);
        let mut waits = Vec::new();
        for _ in 0..10 {
            dialling(&mut peers);
            let retries = peers.failed(&id, now, || 0.0);
            assert_eq!(retries.len(), 1);
            waits.push(retries[0].wait.as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(peers.iter().next().map(BootstrapDial::failures), Some(10));
    }

    #[test]
    fn jitter_adds_up_to_a_quarter() {
        let now = Instant::now();
        let (id, mut peers) = one_peer(now);
        dialling(&mut peers);
        let retries = peers.failed(&id, now, || 1.0);
        assert_eq!(retries[0].wait, BACKOFF_MIN.mul_f64(1.25));
    }

    #[test]
    fn a_failure_with_an_attempt_already_scheduled_counts_once() {
        let now = Instant::now();
        let (id, mut peers) = one_peer(now);
        assert!(peers.failed(&id, now, || 0.0).is_empty(), "still due");
        dialling(&mut peers);
        assert_eq!(peers.failed(&id, now, || 0.0).len(), 1);
        assert!(peers.failed(&id, now, || 0.0).is_empty());
        assert!(peers.failed(&PeerId::random(), now, || 0.0).is_empty());
    }

    #[test]
    fn connecting_resets_the_backoff_and_joins_once() {
        let now = Instant::now();
        let (id, mut peers) = one_peer(now);
        dialling(&mut peers);
        peers.failed(&id, now, || 0.0);
        assert!(!peers.joined());
        let joined = peers.connected(&id);
        assert!(joined.first);
        assert_eq!(joined.newly.len(), 1);
        assert!(peers.joined());
        assert_eq!(peers.connected(&id), Joined::default(), "already connected");
        assert_eq!(peers.iter().next().map(BootstrapDial::failures), Some(0));

        assert!(peers.disconnected(&id, now));
        assert!(!peers.disconnected(&PeerId::random(), now));
        let b = peers.iter().next().expect("one peer");
        assert_eq!(
            (b.connected(), b.next_dial),
            (false, Some(now + BACKOFF_MIN))
        );
    }

    #[test]
    fn a_second_bootstrap_peer_is_no_new_join() {
        let now = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let addr: Multiaddr = "/memory/7".parse().expect("addr");
        let mut peers = BootstrapPeers::new([(a, addr.clone()), (b, addr)], now);
        assert!(peers.connected(&a).first);
        let second = peers.connected(&b);
        assert_eq!((second.newly.len(), second.first), (1, false));
        assert!(peers.connected(&PeerId::random()).newly.is_empty());
    }

    #[test]
    fn a_list_entry_is_dialled_at_its_transport_address() {
        let id = PeerId::random();
        let entry =
            BootstrapAddr::parse(&format!("/ip4/127.0.0.1/tcp/4001/p2p/{id}")).expect("valid");
        let peers = BootstrapPeers::from_list(std::slice::from_ref(&entry), Instant::now());
        let b = peers.iter().next().expect("one peer");
        assert_eq!(b.peer(), &entry);
        assert_eq!(b.dial_addr.to_string(), "/ip4/127.0.0.1/tcp/4001");
        assert!(peers.contains(&id));
    }
}
