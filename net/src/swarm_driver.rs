//! [`SwarmDriver`]: the one place where a protocol [`Peer`] meets a libp2p
//! swarm. It owns the swarm, the peer and what a driver keeps beside them
//! (adverts to hand to joining peers, gossip held until someone subscribes,
//! the DHT keys we provide, the bootstrap peers and their backoff), turns
//! every `SwarmEvent` into the peer's inputs, carries the peer's network
//! actions out, and tells its caller what happened as typed
//! [`DriverEvent`]s. It never logs and never counts: the node logs and counts
//! those events, the simulator's libp2p engine observes them.
//!
//! The driving loop, as the node and the simulator both run it:
//!
//! ```text
//! loop {
//!     select! {
//!         ev = driver.next_swarm_event() => driver.handle_swarm_event(now(), ev),
//!         _ = sleep_until(driver.peer().poll_timeout()) => driver.peer_mut().handle_timeout(now()),
//!         _ = tick => driver.dial_due(),
//!         // ... the caller's own inputs (API, executor, commands)
//!     }
//!     while let Some(action) = driver.poll_action(now()) { /* execute, store, notify */ }
//!     while let Some(event) = driver.poll_event() { /* log, count, observe */ }
//! }
//! ```

use crate::behaviour::{NodeBehaviour, NodeBehaviourEvent, capability_keys, declared_kind};
use crate::driver::{
    self, AdvertEnvelopes, AdvertHandoff, AdvertSyncs, BootstrapPeers, BundleAdmission,
    BundleTaken, Direct, PendingPublish, ProvideUpdate, ProvidedKeys, Publication, Retry, Sent,
    SyncAnswer, Verdict,
};
use crate::limits::{NetLimits, RequestBuckets};
use crate::nat::{NatState, ReachabilityChange, is_relayed};
use crate::wire;
use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{
    Multiaddr, PeerId, Swarm, autonat, dcutr, gossipsub, identify, kad, relay, request_response,
};
use modchain_protocol::{Action, Digest, Kind, NodeId, Peer, Signed, Timestamp, Topic};
use std::collections::{BTreeSet, HashMap, VecDeque};
use tokio::time::Instant;

/// What the driver knows of another peer at the transport level.
#[derive(Clone, Debug, Default)]
pub struct PeerInfo {
    /// Connections open to it now.
    pub connections: u32,
    /// Of `connections`, those through a relay (the rest are direct).
    pub relayed: u32,
    /// It serves as a relay (identify lists the relay v2 hop protocol).
    pub relays: bool,
    /// Addresses it was reached at or said it listens on.
    pub addrs: BTreeSet<Multiaddr>,
    /// Its identify agent string, once identify ran.
    pub agent: Option<String>,
    /// Where the advert hand-off with it stands.
    pub adverts: AdvertHandoff,
}

/// A source of jitter in [0, 1] for bootstrap backoffs: the node draws it
/// from the OS, the simulator from its seeded stream.
pub type Jitter = Box<dyn FnMut() -> f64 + Send>;

/// Decides whether a direct message is really sent: the simulator's
/// Byzantine providers withhold some. `false` drops the message.
pub type SendFilter = Box<dyn FnMut(&NodeId, &Signed) -> bool + Send>;

/// What became of a direct message that arrived.
#[derive(Debug)]
pub enum DirectOutcome {
    /// A protocol message, taken as gossip would be.
    Message(Verdict),
    /// A joining peer asked for our adverts (`known` of them it holds already).
    SyncAnswered {
        /// How the request was answered.
        answer: SyncAnswer,
        /// Adverts the asker listed as already held.
        known: usize,
    },
    /// A bundle of adverts, each taken as if gossiped.
    Bundle(BundleTaken),
}

/// What happened on the network, for the caller to log, count or observe.
#[derive(Debug)]
#[non_exhaustive]
pub enum DriverEvent {
    /// A listen address came up (with `/p2p/<our id>`).
    Listening(Multiaddr),
    /// A listen address went away.
    ListenerExpired(Multiaddr),
    /// A connection opened.
    Connected {
        /// The peer at the other end.
        peer: PeerId,
        /// Connections to it now open.
        connections: u32,
    },
    /// A bootstrap peer answered that was not connected.
    BootstrapConnected(crate::bootstrap_list::BootstrapAddr),
    /// No bootstrap peer was connected and one now is: we (re)joined. The
    /// driver asked Kademlia to walk the DHT; `Err` says why it could not.
    Joined(Result<(), kad::NoKnownPeers>),
    /// A connection closed; `connections` is how many remain.
    Disconnected {
        /// The peer at the other end.
        peer: PeerId,
        /// Connections to it still open (0: it is gone).
        connections: u32,
        /// Why it closed, when libp2p says.
        cause: Option<String>,
    },
    /// The last connection to a bootstrap peer closed: it will be redialled.
    BootstrapLost(PeerId),
    /// A dial of a bootstrap peer failed; these retries are scheduled.
    BootstrapUnreachable {
        /// What the dial failed with.
        error: String,
        /// When each affected bootstrap peer is tried again.
        retries: Vec<Retry>,
    },
    /// A dial of another peer failed.
    DialFailed {
        /// The peer dialled.
        peer: PeerId,
        /// What the dial failed with.
        error: String,
    },
    /// Identify told us of a peer.
    Identified(PeerId),
    /// A gossip message arrived and was judged.
    Gossip {
        /// The peer that forwarded it to us.
        from: PeerId,
        /// Its size in bytes.
        len: usize,
        /// The content id of an advert (the adverts topic only), for
        /// propagation measurements.
        advert: Option<Digest>,
        /// What the peer made of it; gossipsub was told already.
        verdict: Verdict,
    },
    /// A direct message arrived (and was acknowledged).
    Direct {
        /// Who sent it.
        from: PeerId,
        /// The envelope's kind, when it opened at all.
        kind: Option<Kind>,
        /// What became of it.
        outcome: DirectOutcome,
    },
    /// A direct message of ours was not delivered.
    DirectFailed {
        /// Whom it was for.
        peer: PeerId,
        /// Why it failed.
        error: String,
    },
    /// We asked a ready peer for the adverts it holds, listing `listed` we have.
    AdvertsAsked {
        /// The peer asked.
        to: PeerId,
        /// Adverts we listed as held.
        listed: usize,
    },
    /// The peer published on a topic (or tried to).
    Published {
        /// What kind of message it was.
        kind: Kind,
        /// The content id of the bytes published.
        id: Digest,
        /// How gossipsub took it.
        publication: Publication,
    },
    /// Gossip held for want of a subscriber was published again.
    Republished(Publication),
    /// The peer sent a direct message.
    Sent {
        /// Whom it was for.
        to: NodeId,
        /// What kind of message it was.
        kind: Kind,
        /// In memory (to ourselves) or over the network.
        how: Sent,
    },
    /// A direct message could not be addressed (`to` is no valid peer key).
    Unaddressable {
        /// The node id it was for.
        to: NodeId,
        /// Why it could not be addressed.
        error: String,
    },
    /// The send filter withheld a direct message.
    Withheld {
        /// Whom it was for.
        to: NodeId,
        /// What kind of message it was.
        kind: Kind,
    },
    /// The DHT keys we provide changed.
    Provided(ProvideUpdate),
    /// A provider lookup (started with `kad.get_providers`) found some
    /// providers, or ended.
    ProvidersFound {
        /// The lookup.
        query: kad::QueryId,
        /// Providers found in this step.
        providers: Vec<PeerId>,
        /// The lookup is over: no more steps will come.
        done: bool,
        /// Why it ended early, if it did.
        error: Option<String>,
    },
    /// Kademlia's walk of the DHT finished.
    DhtWalked,
    /// A direct request from a peer over its rate was dropped unopened.
    Throttled {
        /// Who sent it.
        from: PeerId,
    },
    /// An advert bundle was dropped unopened: we never asked its sender,
    /// asked too long ago, or its answer already brought the most we take.
    BundleRefused {
        /// Who sent it.
        from: PeerId,
        /// Why it was refused.
        why: BundleAdmission,
    },
    /// Disconnected peers were forgotten to keep the peer table within its cap.
    PeersForgotten(usize),
    /// A direct request from a peer never arrived whole: it stalled past
    /// the request timeout, broke a cap of the codec, or its stream failed.
    InboundFailed {
        /// Who opened the stream.
        from: PeerId,
        /// What went wrong.
        error: String,
    },
    /// A direct message whose dial failed was sent once more, through the
    /// relays we know.
    DirectRetried { peer: PeerId },
    /// An AutoNAT probe of one of our addresses answered.
    Probed {
        addr: Multiaddr,
        server: PeerId,
        error: Option<String>,
    },
    /// AutoNAT changed its mind about whether we can be dialled.
    Reachability(ReachabilityChange),
    /// We asked `relay` for a reservation and listen on `addr` through it.
    RelayReserving { relay: PeerId, addr: Multiaddr },
    /// `relay` accepted our reservation: peers can reach us through it.
    RelayReserved { relay: PeerId },
    /// A reservation ended (the relay went away or refused); another is
    /// asked for on the next tick while we still need one.
    RelayLost {
        relay: PeerId,
        addr: Multiaddr,
        /// Why, when the relay or the transport said.
        reason: Option<String>,
    },
    /// A relayed connection to `peer` was upgraded to a direct one
    /// (`error: None`), or the attempt failed and traffic stays on the relay.
    HolePunch { peer: PeerId, error: Option<String> },
    /// What our relay server did for others.
    Relayed(RelayService),
}

/// One thing our relay server did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayService {
    ReservationAccepted,
    ReservationDenied,
    CircuitOpened,
    CircuitDenied,
    CircuitClosed,
}

impl RelayService {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayService::ReservationAccepted => "reservation_accepted",
            RelayService::ReservationDenied => "reservation_denied",
            RelayService::CircuitOpened => "circuit_opened",
            RelayService::CircuitDenied => "circuit_denied",
            RelayService::CircuitClosed => "circuit_closed",
        }
    }
}

/// How full the driver's tables are, and what their caps made them drop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Peers in the peer table (connected, and disconnected up to the cap).
    pub peers: usize,
    /// Signed adverts kept to hand to joining peers.
    pub advert_envelopes: usize,
    /// Advert envelopes evicted (their advert left the book) since start.
    pub advert_envelopes_evicted: u64,
    /// Advert envelopes not kept (the cache was full) since start.
    pub advert_envelopes_refused: u64,
    /// Peers with a direct-request token bucket.
    pub request_buckets: usize,
    /// Gossip held for want of a subscriber.
    pub pending_publish: usize,
}

/// Owns a swarm and a protocol peer and runs one over the other. See the
/// module documentation for the loop that drives it.
/// Requests to unconnected peers kept for one retry; past this many, new
/// ones are sent without a retry.
const MAX_UNCONNECTED_SENDS: usize = 1024;

pub struct SwarmDriver {
    swarm: Swarm<NodeBehaviour>,
    peer: Peer,
    me: NodeId,
    peers: HashMap<PeerId, PeerInfo>,
    /// The newest signed advert of each node (ours too), as it travelled:
    /// handed to peers that join so they need not wait for the next round.
    advert_envelopes: AdvertEnvelopes,
    /// The peers asked for their adverts since we last (re)joined.
    advert_syncs: AdvertSyncs,
    pending_publish: PendingPublish,
    provided: ProvidedKeys,
    bootstrap: BootstrapPeers,
    listen_addrs: Vec<Multiaddr>,
    jitter: Jitter,
    send_filter: Option<SendFilter>,
    events: VecDeque<DriverEvent>,
    limits: NetLimits,
    /// Direct requests per peer, as a token bucket.
    buckets: RequestBuckets,
    /// Disconnected peers still in the peer table, longest gone first.
    gone: VecDeque<PeerId>,
    /// Our reachability and relay reservations.
    nat: NatState,
    /// DHT walks after joining.
    rewalks: driver::Rewalks,
    /// Requests to peers we were not connected to, kept until answered:
    /// one whose dial fails is sent once more through the relays (see
    /// [`add_relayed_route`](Self::add_relayed_route)).
    unconnected_sends: HashMap<request_response::OutboundRequestId, (PeerId, Vec<u8>)>,
}

impl std::fmt::Debug for SwarmDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmDriver")
            .field("me", &self.me)
            .field("peers", &self.peers.len())
            .finish()
    }
}

impl SwarmDriver {
    /// Drives `peer` over `swarm` (already listening), joining through
    /// `bootstrap`; `jitter` spreads bootstrap redials.
    pub fn new(
        swarm: Swarm<NodeBehaviour>,
        peer: Peer,
        bootstrap: BootstrapPeers,
        jitter: Jitter,
    ) -> Self {
        let me = peer.id();
        SwarmDriver {
            swarm,
            peer,
            me,
            peers: HashMap::new(),
            advert_envelopes: AdvertEnvelopes::new(),
            advert_syncs: AdvertSyncs::new(),
            pending_publish: PendingPublish::new(),
            provided: ProvidedKeys::new(),
            bootstrap,
            listen_addrs: Vec::new(),
            jitter,
            send_filter: None,
            events: VecDeque::new(),
            buckets: RequestBuckets::new(
                NetLimits::default().direct_per_second,
                NetLimits::default().direct_burst,
            ),
            limits: NetLimits::default(),
            gone: VecDeque::new(),
            nat: NatState::new(Instant::now(), false),
            rewalks: driver::Rewalks::default(),
            unconnected_sends: HashMap::new(),
        }
    }

    /// Reserve relays while we cannot be dialled (a node does; the
    /// simulator's engine, on a memory transport, never needs to).
    pub fn with_relays(mut self) -> Self {
        self.nat = NatState::new(Instant::now(), true);
        self
    }

    /// Our reachability, relay reservations and hole-punch counts.
    pub fn nat(&self) -> &NatState {
        &self.nat
    }

    /// The caps on what remote peers can make the driver hold (the
    /// connection and stream limits are the behaviour's: see
    /// [`NodeBehaviour::with_limits`]). Call before the first event.
    pub fn with_limits(mut self, limits: NetLimits) -> Self {
        self.advert_envelopes = AdvertEnvelopes::with_cap(limits.max_advert_envelopes);
        self.advert_syncs =
            AdvertSyncs::with_limits(limits.bundle_deadline, limits.max_adverts_per_sync);
        self.buckets = RequestBuckets::new(limits.direct_per_second, limits.direct_burst);
        self.limits = limits;
        self
    }

    /// How full the driver's tables are.
    pub fn table_sizes(&self) -> TableSizes {
        TableSizes {
            peers: self.peers.len(),
            advert_envelopes: self.advert_envelopes.len(),
            advert_envelopes_evicted: self.advert_envelopes.evicted(),
            advert_envelopes_refused: self.advert_envelopes.refused(),
            request_buckets: self.buckets.len(),
            pending_publish: self.pending_publish.len(),
        }
    }

    /// Direct messages pass `filter` before they leave (the simulator's
    /// Byzantine providers).
    pub fn set_send_filter(&mut self, filter: SendFilter) {
        self.send_filter = Some(filter);
    }

    /// Replaces the bootstrap peers (the simulator joins on command).
    pub fn set_bootstrap(&mut self, bootstrap: BootstrapPeers) {
        self.bootstrap = bootstrap;
    }

    /// The protocol peer.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The protocol peer, to feed it inputs that do not come from the
    /// network (a submitted job, a finished execution, a timeout).
    pub fn peer_mut(&mut self) -> &mut Peer {
        &mut self.peer
    }

    /// The swarm, to read its state.
    pub fn swarm(&self) -> &Swarm<NodeBehaviour> {
        &self.swarm
    }

    /// The swarm, for requests of the caller's own (a provider lookup).
    pub fn swarm_mut(&mut self) -> &mut Swarm<NodeBehaviour> {
        &mut self.swarm
    }

    /// Our libp2p peer id.
    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Every peer we were connected to or heard of by identify.
    pub fn peers(&self) -> &HashMap<PeerId, PeerInfo> {
        &self.peers
    }

    /// Our listen addresses, `/p2p/<our id>` included.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// The bootstrap peers and where dialling them stands.
    pub fn bootstrap(&self) -> &BootstrapPeers {
        &self.bootstrap
    }

    /// The DHT keys we provide.
    pub fn provided(&self) -> &ProvidedKeys {
        &self.provided
    }

    /// Gossip waiting for a subscriber.
    pub fn pending_publish(&self) -> &PendingPublish {
        &self.pending_publish
    }

    /// The next event of the swarm; hand it to
    /// [`handle_swarm_event`](Self::handle_swarm_event).
    pub async fn next_swarm_event(&mut self) -> SwarmEvent<NodeBehaviourEvent> {
        self.swarm.select_next_some().await
    }

    /// The next thing that happened, until `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<DriverEvent> {
        self.events.pop_front()
    }

    /// Dials the bootstrap peers that are due, and keeps relay
    /// reservations while we need them (call it on a tick).
    pub fn dial_due(&mut self) {
        let now = Instant::now();
        for failed in self
            .bootstrap
            .dial_due(&mut self.swarm, now, &mut self.jitter)
        {
            self.events.push_back(DriverEvent::BootstrapUnreachable {
                error: failed.error.to_string(),
                retries: failed.retries,
            });
        }
        self.keep_relays(now);
        if self.bootstrap.joined() && self.rewalks.due(now) {
            // No known peers is no news: the next tick's join walks anyway.
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    /// Reserves on connected relays while private (bootstrap peers first,
    /// then peers that relay and reach us directly), and lets reservations
    /// go once public.
    fn keep_relays(&mut self, now: Instant) {
        for gone in self.nat.surplus(now) {
            self.swarm.remove_listener(gone.listener);
        }
        let bootstrap = self
            .bootstrap
            .iter()
            .filter(|b| b.connected())
            .map(|b| (b.peer().peer_id, b.dial_addr().clone()));
        let relays: Vec<(PeerId, Multiaddr)> = bootstrap
            .chain(self.peers.iter().filter_map(|(p, info)| {
                let serves = info.relays && info.connections > info.relayed;
                let addr = info.addrs.iter().find(|a| !is_relayed(a))?;
                serves.then(|| (*p, addr.clone()))
            }))
            .collect();
        for (relay, addr) in self.nat.relays_to_reserve(now, relays) {
            match self.swarm.listen_on(addr.clone()) {
                Ok(listener) => {
                    self.nat.reserving(relay, addr.clone(), listener);
                    self.events
                        .push_back(DriverEvent::RelayReserving { relay, addr });
                }
                // Refused at once (no transport for it): asked again next tick.
                Err(e) => self.events.push_back(DriverEvent::RelayLost {
                    relay,
                    addr,
                    reason: Some(e.to_string()),
                }),
            }
        }
    }

    /// The peer's next action that is not the network's: publications and
    /// direct messages are carried out here (and reported as events); the
    /// rest (store a receipt, run or stop a job, serve an output, an event
    /// for the application) is returned. Call until `None` after every input.
    #[must_use]
    pub fn poll_action(&mut self, now: Timestamp) -> Option<Action> {
        loop {
            match self.peer.poll_action(now)? {
                Action::Publish { topic, message } => self.publish(topic, &message),
                Action::Send { to, message } => self.send(now, to, message),
                other => return Some(other),
            }
        }
    }

    fn publish(&mut self, topic: Topic, message: &Signed) {
        let bytes = message.to_bytes();
        let kind = message.kind();
        if kind == Kind::Advert {
            if let Some(ad) = self.advert_envelopes.keep_own(message, &bytes) {
                let keys = capability_keys(ad);
                let kad = &mut self.swarm.behaviour_mut().kad;
                let update = self.provided.update(kad, keys);
                if matches!(update, ProvideUpdate::Changed { .. }) {
                    self.events.push_back(DriverEvent::Provided(update));
                }
            }
            // Only the newest advert is worth delivering late.
            self.pending_publish.discard(Topic::Adverts);
        }
        let id = Digest::of(&bytes);
        let publication =
            self.pending_publish
                .publish(&mut self.swarm.behaviour_mut().gossipsub, topic, bytes);
        self.events.push_back(DriverEvent::Published {
            kind,
            id,
            publication,
        });
    }

    /// A signed message to one peer: in memory when it is ourselves, else
    /// by request-response. The peer's own messages go out through
    /// [`poll_action`](Self::poll_action); this is for what the caller signs
    /// itself (output chunks).
    pub fn send(&mut self, now: Timestamp, to: NodeId, message: Signed) {
        let kind = message.kind();
        if let Some(filter) = self.send_filter.as_mut()
            && !filter(&to, &message)
        {
            self.events.push_back(DriverEvent::Withheld { to, kind });
            return;
        }
        let retry = self
            .add_relayed_route(&to)
            .map(|peer| (peer, message.to_bytes()));
        let messages = &mut self.swarm.behaviour_mut().messages;
        match driver::send_direct(&mut self.peer, messages, self.me, now, to, message) {
            Ok(how) => {
                if let (Sent::Request(id), Some(retry)) = (&how, retry)
                    && self.unconnected_sends.len() < MAX_UNCONNECTED_SENDS
                {
                    self.unconnected_sends.insert(*id, retry);
                }
                self.events.push_back(DriverEvent::Sent { to, kind, how })
            }
            Err(e) => self.events.push_back(DriverEvent::Unaddressable {
                to,
                error: e.to_string(),
            }),
        }
    }

    /// A peer we are not connected to may be reachable only through a
    /// relay, and its `/p2p-circuit` addresses may not have reached us yet
    /// (identify carries them to the peers it is connected to, Kademlia to
    /// the rest, later). Private nodes reserve on the bootstrap peers first,
    /// so each connected bootstrap peer's circuit is offered to the dial
    /// beside the addresses we know: a wrong guess fails at the relay at
    /// once, a right one connects.
    ///
    /// Returns the peer when routes were added (it is not connected).
    fn add_relayed_route(&mut self, to: &NodeId) -> Option<PeerId> {
        let peer = to.to_peer_id().ok()?;
        if *to == self.me || self.swarm.is_connected(&peer) || !self.nat.uses_relays() {
            return None;
        }
        let routes: Vec<Multiaddr> = self
            .bootstrap
            .iter()
            .filter(|b| b.connected())
            .filter_map(|b| crate::nat::circuit_addr(b.dial_addr(), b.peer().peer_id))
            .collect();
        // Every behaviour hears of it (request-response keeps it for its
        // dials); Kademlia's table would take it only for a peer in DHT
        // server mode, which a node behind NAT is not.
        for route in routes {
            self.swarm.add_peer_address(peer, route);
        }
        Some(peer)
    }

    /// Translates one swarm event into the peer's inputs and the driver's
    /// events. Every `SwarmEvent` of a Modchain peer is handled here, once.
    pub fn handle_swarm_event(&mut self, now: Timestamp, ev: SwarmEvent<NodeBehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address
                    .clone()
                    .with_p2p(self.local_peer_id())
                    .unwrap_or(address);
                self.listen_addrs.push(full.clone());
                self.events.push_back(DriverEvent::Listening(full));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs
                    .retain(|a| !a.to_string().starts_with(&address.to_string()));
                self.events.push_back(DriverEvent::ListenerExpired(address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                let entry = self.peers.entry(peer_id).or_default();
                entry.connections = num_established.get();
                if endpoint.is_relayed() {
                    entry.relayed += 1;
                }
                if endpoint.is_dialer() && entry.addrs.len() < self.limits.max_addrs_per_peer {
                    entry.addrs.insert(endpoint.get_remote_address().clone());
                }
                self.events.push_back(DriverEvent::Connected {
                    peer: peer_id,
                    connections: num_established.get(),
                });
                let joined = self.bootstrap.connected(&peer_id);
                for b in joined.newly {
                    self.events.push_back(DriverEvent::BootstrapConnected(b));
                }
                // One DHT walk per (re)join, not one per bootstrap peer that
                // answers; a (re)join asks two ready peers for adverts and
                // advertises again once gossip has a mesh to carry it.
                if joined.first {
                    self.advert_syncs.rejoined();
                    self.peer.rejoined(now);
                    let kad = &mut self.swarm.behaviour_mut().kad;
                    let walk = driver::walk_dht(kad, &self.provided).map(|_| ());
                    self.rewalks.joined(Instant::now());
                    self.events.push_back(DriverEvent::Joined(walk));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                endpoint,
                ..
            } => {
                if let Some(e) = self.peers.get_mut(&peer_id) {
                    e.connections = num_established;
                    if endpoint.is_relayed() {
                        e.relayed = e.relayed.saturating_sub(1);
                    }
                    e.relayed = e.relayed.min(num_established);
                }
                self.events.push_back(DriverEvent::Disconnected {
                    peer: peer_id,
                    connections: num_established,
                    cause: cause.map(|c| c.to_string()),
                });
                if num_established == 0 {
                    self.peer_gone(now, peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                error,
                ..
            } => {
                let error = error.to_string();
                if self.bootstrap.contains(&peer_id) {
                    let retries = self
                        .bootstrap
                        .failed(&peer_id, Instant::now(), &mut self.jitter);
                    self.events
                        .push_back(DriverEvent::BootstrapUnreachable { error, retries });
                } else {
                    self.events.push_back(DriverEvent::DialFailed {
                        peer: peer_id,
                        error,
                    });
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(r) = self.nat.listener_closed(listener_id) {
                    self.events.push_back(DriverEvent::RelayLost {
                        relay: r.relay,
                        addr: r.addr,
                        reason: reason.err().map(|e| format!("{e:?}")),
                    });
                }
            }
            SwarmEvent::Behaviour(ev) => self.handle_behaviour_event(now, ev),
            _ => {}
        }
    }

    /// The last connection to `peer_id` closed.
    fn peer_gone(&mut self, now: Timestamp, peer_id: PeerId) {
        if let Some(e) = self.peers.get_mut(&peer_id) {
            e.adverts.disconnected();
        }
        self.buckets.forget(&peer_id);
        self.remember_gone(peer_id);
        if let Ok(node) = NodeId::from_peer_id(&peer_id) {
            self.peer.peer_gone(now, &node);
        }
        if self.bootstrap.disconnected(&peer_id, Instant::now()) {
            self.events.push_back(DriverEvent::BootstrapLost(peer_id));
        }
    }

    /// Keeps `peer_id` in the peer table while disconnected, forgetting the
    /// peers longest gone past [`NetLimits::max_known_peers`].
    fn remember_gone(&mut self, peer_id: PeerId) {
        self.gone.retain(|p| *p != peer_id);
        self.gone.push_back(peer_id);
        let mut forgotten = 0;
        while self.gone.len() > self.limits.max_known_peers {
            let Some(old) = self.gone.pop_front() else {
                break;
            };
            if self.peers.get(&old).is_some_and(|e| e.connections == 0) {
                self.peers.remove(&old);
                forgotten += 1;
            }
        }
        if forgotten > 0 {
            self.events
                .push_back(DriverEvent::PeersForgotten(forgotten));
        }
    }

    fn handle_behaviour_event(&mut self, now: Timestamp, ev: NodeBehaviourEvent) {
        match ev {
            NodeBehaviourEvent::Identify(identify::Event::Received {
                peer_id, mut info, ..
            }) => {
                // A peer may list any number of addresses: keep a few.
                info.listen_addrs.truncate(self.limits.max_addrs_per_peer);
                let entry = self.peers.entry(peer_id).or_default();
                entry.agent = Some(info.agent_version.clone());
                entry.relays = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
                let room = self
                    .limits
                    .max_addrs_per_peer
                    .saturating_sub(entry.addrs.len());
                entry
                    .addrs
                    .extend(info.listen_addrs.iter().take(room).cloned());
                let kad = &mut self.swarm.behaviour_mut().kad;
                let ready = driver::identified(kad, &mut entry.adverts, peer_id, &info);
                self.events.push_back(DriverEvent::Identified(peer_id));
                if ready {
                    self.advert_peer_ready(now, peer_id);
                }
            }
            NodeBehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let topic = wire::topic_of(&message.topic);
                let advert = (topic == Some(Topic::Adverts)).then(|| Digest::of(&message.data));
                let verdict = driver::take_bytes(
                    &mut self.peer,
                    &mut self.advert_envelopes,
                    now,
                    topic,
                    &message.data,
                );
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                verdict.report(gossipsub, &message_id, &propagation_source);
                self.events.push_back(DriverEvent::Gossip {
                    from: propagation_source,
                    len: message.data.len(),
                    advert,
                    verdict,
                });
            }
            NodeBehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic }) => {
                if let Some(t) = wire::topic_of(&topic) {
                    let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                    for publication in self.pending_publish.retry(gossipsub, t) {
                        self.events.push_back(DriverEvent::Republished(publication));
                    }
                    if t == Topic::Adverts
                        && self.peers.entry(peer_id).or_default().adverts.subscribed()
                    {
                        self.advert_peer_ready(now, peer_id);
                    }
                }
            }
            NodeBehaviourEvent::Messages(request_response::Event::Message {
                message: request_response::Message::Response { request_id, .. },
                ..
            }) => {
                self.unconnected_sends.remove(&request_id);
            }
            NodeBehaviourEvent::Messages(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                // Over its rate: dropped unopened and unacknowledged, so the
                // sender sees a failure.
                if !self.buckets.take(peer, Instant::now()) {
                    self.events.push_back(DriverEvent::Throttled { from: peer });
                    return;
                }
                // A bundle nobody asked for is not opened (each advert in it
                // would cost a signature check).
                if declared_kind(&request) == Some(Kind::AdvertBundle) {
                    match self.advert_syncs.admit_bundle(&peer, Instant::now()) {
                        BundleAdmission::Take(_) => {}
                        why => {
                            self.events
                                .push_back(DriverEvent::BundleRefused { from: peer, why });
                            return;
                        }
                    }
                }
                // The acknowledgement says only that the bytes arrived.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .messages
                    .send_response(channel, Vec::new());
                self.take_direct(now, peer, &request);
            }
            NodeBehaviourEvent::Messages(request_response::Event::OutboundFailure {
                peer,
                error,
                request_id,
                ..
            }) => {
                // A dial that failed may have raced one that had no relayed
                // route yet (a dial already under way is joined, not
                // redone): once more, now that the routes are known.
                let kept = self.unconnected_sends.remove(&request_id);
                if let (request_response::OutboundFailure::DialFailure, Some((to, bytes))) =
                    (&error, kept)
                {
                    let messages = &mut self.swarm.behaviour_mut().messages;
                    messages.send_request(&to, bytes);
                    self.events
                        .push_back(DriverEvent::DirectRetried { peer: to });
                    return;
                }
                self.events.push_back(DriverEvent::DirectFailed {
                    peer,
                    error: error.to_string(),
                });
            }
            NodeBehaviourEvent::Messages(request_response::Event::InboundFailure {
                peer,
                error,
                ..
            }) => {
                self.events.push_back(DriverEvent::InboundFailed {
                    from: peer,
                    error: error.to_string(),
                });
            }
            NodeBehaviourEvent::Autonat(autonat::v2::client::Event {
                tested_addr,
                result,
                server,
                ..
            }) => {
                self.events.push_back(DriverEvent::Probed {
                    addr: tested_addr.clone(),
                    server,
                    error: result.as_ref().err().map(|e| e.to_string()),
                });
                // Only "the server could not connect" says we are not
                // reachable at that address; other failures (a stream that
                // broke) say nothing. The error's kind is private to
                // libp2p-autonat: its text is what tells them apart.
                let reached = match &result {
                    Ok(()) => Some(true),
                    Err(e) if e.to_string().contains("failed to establish a connection") => {
                        Some(false)
                    }
                    Err(_) => None,
                };
                if let Some(change) = self.nat.probed(Instant::now(), &tested_addr, reached) {
                    self.events.push_back(DriverEvent::Reachability(change));
                }
            }
            // Renewals are not news.
            NodeBehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                ..
            }) if self.nat.accepted(&relay_peer_id) => {
                self.events.push_back(DriverEvent::RelayReserved {
                    relay: relay_peer_id,
                });
            }
            NodeBehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => {
                let error = match result {
                    Ok(_) => {
                        self.nat.punched += 1;
                        None
                    }
                    Err(e) => {
                        self.nat.punch_failed += 1;
                        Some(e.to_string())
                    }
                };
                self.events.push_back(DriverEvent::HolePunch {
                    peer: remote_peer_id,
                    error,
                });
            }
            NodeBehaviourEvent::Relay(ev) => {
                let what = match ev {
                    relay::Event::ReservationReqAccepted { .. } => {
                        Some(RelayService::ReservationAccepted)
                    }
                    relay::Event::ReservationReqDenied { .. } => {
                        Some(RelayService::ReservationDenied)
                    }
                    relay::Event::CircuitReqAccepted { .. } => Some(RelayService::CircuitOpened),
                    relay::Event::CircuitReqDenied { .. } => Some(RelayService::CircuitDenied),
                    relay::Event::CircuitClosed { .. } => Some(RelayService::CircuitClosed),
                    _ => None,
                };
                if let Some(what) = what {
                    self.events.push_back(DriverEvent::Relayed(what));
                }
            }
            NodeBehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::Bootstrap(Ok(r)),
                ..
            }) if r.num_remaining == 0 => {
                self.events.push_back(DriverEvent::DhtWalked);
            }
            NodeBehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                ..
            }) => {
                let event = match result {
                    Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                        DriverEvent::ProvidersFound {
                            query: id,
                            providers: providers.into_iter().collect(),
                            done: step.last,
                            error: None,
                        }
                    }
                    Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => {
                        DriverEvent::ProvidersFound {
                            query: id,
                            providers: Vec::new(),
                            done: true,
                            error: None,
                        }
                    }
                    Err(e) => DriverEvent::ProvidersFound {
                        query: id,
                        providers: Vec::new(),
                        done: true,
                        error: Some(e.to_string()),
                    },
                };
                self.events.push_back(event);
            }
            _ => {}
        }
    }

    /// A direct message from `from` into the peer: an advert sync is
    /// answered, each advert of a bundle taken as if gossiped.
    fn take_direct(&mut self, now: Timestamp, from: PeerId, bytes: &[u8]) {
        let kind = modchain_protocol::Envelope::decode(bytes)
            .ok()
            .map(|e| e.kind);
        let room = match self.advert_syncs.admit_bundle(&from, Instant::now()) {
            BundleAdmission::Take(room) => room,
            _ => 0,
        };
        let outcome = match driver::take_direct_capped(
            &mut self.peer,
            &mut self.advert_envelopes,
            now,
            bytes,
            room,
        ) {
            Direct::Message(verdict) => DirectOutcome::Message(verdict),
            Direct::Bundle(taken) => {
                self.advert_syncs.took(&from, taken.adverts.len());
                DirectOutcome::Bundle(taken)
            }
            Direct::SyncAsked(sync) => {
                let handoff = &mut self.peers.entry(from).or_default().adverts;
                let answer = driver::answer_sync(
                    handoff,
                    &self.peer,
                    &self.advert_envelopes,
                    &mut self.swarm.behaviour_mut().messages,
                    from,
                    now,
                    Instant::now(),
                    &sync,
                );
                DirectOutcome::SyncAnswered {
                    answer,
                    known: sync.known.len(),
                }
            }
        };
        self.events.push_back(DriverEvent::Direct {
            from,
            kind,
            outcome,
        });
    }

    /// `to` subscribed to adverts and speaks direct messages: if it is one
    /// of the first two since we (re)joined, ask it for the adverts it
    /// holds, so we see the network at once instead of after the next
    /// advert round.
    fn advert_peer_ready(&mut self, now: Timestamp, to: PeerId) {
        if !self.advert_syncs.should_ask(to, Instant::now()) {
            return;
        }
        let listed = driver::ask_for_adverts(
            &self.peer,
            &self.advert_envelopes,
            &mut self.swarm.behaviour_mut().messages,
            to,
            now,
        );
        self.events
            .push_back(DriverEvent::AdvertsAsked { to, listed });
    }
}
