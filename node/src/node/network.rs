//! What the network layer reports (`DriverEvent`s), logged and counted
//! here, once; provider lookups for the API completed from them.

use super::state::*;
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, kad};
use modchain_net::behaviour::NodeBehaviourEvent;
use modchain_net::driver::{
    BundleAdmission, ProvideUpdate, Publication, PublishOutcome, Retry, Sent, SyncAnswer, Verdict,
};
use modchain_net::{DirectOutcome, DriverEvent};
use modchain_protocol::Message;
use serde_json::json;

/// A draw from [0, 1] for the bootstrap backoff's jitter, so peers that
/// lost the same bootstrap peer do not all come back at the same instant
/// (none when the OS has no randomness to give).
pub(super) fn jitter() -> f64 {
    let mut b = [0u8; 2];
    if getrandom::fill(&mut b).is_err() {
        return 0.0;
    }
    f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
}

/// The warning for each bootstrap peer a failed dial leaves waiting.
pub(super) fn log_retries(retries: &[Retry], error: &str) {
    for r in retries {
        tracing::warn!(
            bootstrap = %r.peer,
            attempt = r.attempt,
            retry_in_ms = r.wait.as_millis() as u64,
            error,
            "bootstrap peer unreachable; retrying with backoff"
        );
    }
}

impl Node {
    pub(super) fn note_publication(&mut self, p: Publication) {
        match p.outcome {
            PublishOutcome::Sent => {
                self.gossip.published += 1;
                self.gossip.published_bytes += p.len as u64;
            }
            PublishOutcome::Held => tracing::debug!(
                topic = p.topic.name(),
                "no subscriber yet; holding the message"
            ),
            PublishOutcome::Duplicate => {}
            PublishOutcome::Failed(e) => {
                tracing::warn!(topic = p.topic.name(), error = %e, "publish failed")
            }
        }
    }

    /// One swarm event, unless it is a call for bids held while its module
    /// is checked off the loop (then handled when the verdict comes back).
    pub(super) fn handle_swarm_event(&mut self, ev: SwarmEvent<NodeBehaviourEvent>) {
        if let Some(ev) = self.wasm_gate.hold(ev) {
            self.handle_swarm_event_now(ev);
        }
    }

    /// One swarm event: libp2p's own metrics record it, then the driver
    /// translates it.
    pub(super) fn handle_swarm_event_now(&mut self, ev: SwarmEvent<NodeBehaviourEvent>) {
        self.metrics.record(&ev);
        if let SwarmEvent::Behaviour(b) = &ev {
            match b {
                NodeBehaviourEvent::Identify(e) => self.metrics.record(e),
                NodeBehaviourEvent::Kad(e) => self.metrics.record(e),
                NodeBehaviourEvent::Ping(e) => self.metrics.record(e),
                NodeBehaviourEvent::Gossipsub(e) => self.metrics.record(e),
                _ => {}
            }
        }
        self.net.handle_swarm_event(now(), ev);
        self.drain_net_events();
    }

    /// A peer told us its agent: if most peers now speak a newer protocol
    /// than ours, say so (they will refuse our envelopes and we theirs).
    fn check_protocol_versions(&mut self) {
        let tally = super::versions::peers_by_protocol(self.net.peers());
        if let Some(behind) = self.protocol_watch.check(&tally) {
            tracing::warn!(
                ours = modchain_protocol::PROTOCOL_VERSION,
                newest = behind.newest,
                "{} of {} peers speak protocol {} or newer; this node speaks {} and cannot exchange messages with them: upgrade modchain",
                behind.newer,
                behind.of,
                behind.newest,
                modchain_protocol::PROTOCOL_VERSION,
            );
        }
    }

    /// What the network layer did: logged and counted here, nowhere else.
    pub(super) fn drain_net_events(&mut self) {
        while let Some(event) = self.net.poll_event() {
            match event {
                DriverEvent::Listening(address) => tracing::info!(%address, "listening"),
                DriverEvent::BootstrapConnected(b) => {
                    tracing::info!(bootstrap = %b, "connected to bootstrap peer")
                }
                DriverEvent::Joined(Ok(())) => {
                    tracing::info!("joined: walking the DHT for other peers")
                }
                DriverEvent::Joined(Err(e)) => {
                    tracing::debug!(error = %e, "kademlia bootstrap not started")
                }
                DriverEvent::Disconnected {
                    peer,
                    connections: 0,
                    cause,
                } => tracing::debug!(%peer, ?cause, "peer disconnected"),
                DriverEvent::BootstrapLost(peer) => {
                    tracing::warn!(%peer, "lost the bootstrap peer; will redial")
                }
                DriverEvent::BootstrapUnreachable { error, retries } => {
                    log_retries(&retries, &error)
                }
                DriverEvent::DialFailed { peer, error } => {
                    tracing::debug!(%peer, %error, "dial failed")
                }
                DriverEvent::Gossip { len, verdict, .. } => {
                    self.gossip.received += 1;
                    self.gossip.received_bytes += len as u64;
                    if matches!(verdict, Verdict::Rejected(_) | Verdict::Misrouted(_)) {
                        self.gossip.rejected += 1;
                    }
                    self.note_verdict(&verdict);
                }
                DriverEvent::Direct { from, outcome, .. } => {
                    self.gossip.direct_received += 1;
                    self.note_direct(from, outcome);
                }
                DriverEvent::DirectFailed { peer, error } => {
                    self.gossip.direct_failed += 1;
                    tracing::debug!(%peer, %error, "direct message not delivered");
                }
                DriverEvent::AdvertsAsked { to, listed } => {
                    self.gossip.direct_sent += 1;
                    tracing::debug!(%to, listed, "asked a peer for the adverts it holds");
                }
                DriverEvent::Published { publication, .. }
                | DriverEvent::Republished(publication) => self.note_publication(publication),
                DriverEvent::Sent {
                    how: Sent::Request(_),
                    ..
                } => self.gossip.direct_sent += 1,
                DriverEvent::Unaddressable { to, error } => {
                    tracing::warn!(to = %to.short(), %error, "cannot address a direct message")
                }
                DriverEvent::Provided(ProvideUpdate::Changed { failed }) => {
                    for (key, e) in failed {
                        tracing::warn!(key, error = %e, "cannot provide capability key");
                    }
                    tracing::debug!(keys = ?self.net.provided().keys(), "providing capability keys");
                }
                DriverEvent::ProvidersFound {
                    query,
                    providers,
                    done,
                    error,
                } => self.providers_found(query, providers, done, error),
                DriverEvent::DhtWalked => tracing::debug!("kademlia bootstrap finished"),
                DriverEvent::Identified(_) => self.check_protocol_versions(),
                DriverEvent::Throttled { from } => {
                    self.limits_seen.drop("direct_throttled", 1);
                    tracing::debug!(%from, "direct request over the peer's rate; dropped");
                }
                DriverEvent::BundleRefused { from, why } => {
                    let reason = match why {
                        BundleAdmission::OverCap => "bundle_over_cap",
                        _ => "bundle_unsolicited",
                    };
                    self.limits_seen.drop(reason, 1);
                    tracing::debug!(%from, ?why, "advert bundle refused unopened");
                }
                DriverEvent::InboundFailed { from, error } => {
                    self.limits_seen.drop("direct_inbound_failed", 1);
                    tracing::debug!(%from, %error, "a direct request never arrived whole");
                }
                DriverEvent::PeersForgotten(n) => self.limits_seen.evict("peers", n as u64),
                DriverEvent::Reachability(change) => self.reachability_changed(&change),
                DriverEvent::Probed {
                    addr,
                    server,
                    error,
                } => tracing::debug!(%addr, %server, ?error, "reachability probe answered"),
                DriverEvent::RelayReserving { relay, addr } => {
                    tracing::info!(%relay, %addr, "asking a relay for a reservation (this node cannot be dialled directly)")
                }
                DriverEvent::RelayReserved { relay } => {
                    tracing::info!(%relay, "relay reservation accepted: peers can reach this node through it")
                }
                DriverEvent::RelayLost {
                    relay,
                    addr,
                    reason,
                } => {
                    self.nat_seen.reservations_lost += 1;
                    tracing::info!(%relay, %addr, ?reason, "relay reservation ended; another is asked for while needed")
                }
                DriverEvent::HolePunch { peer, error: None } => {
                    tracing::info!(%peer, "hole punched: the relayed connection is now direct")
                }
                DriverEvent::HolePunch {
                    peer,
                    error: Some(error),
                } => tracing::info!(%peer, %error, "hole punch failed; traffic stays on the relay"),
                DriverEvent::Relayed(what) => {
                    *self.nat_seen.relay_served.entry(what.as_str()).or_default() += 1;
                    tracing::debug!(what = what.as_str(), "relayed for a peer");
                }
                _ => {}
            }
        }
    }

    /// AutoNAT changed its mind: say so, and for a private node what it
    /// means and what the operator can do.
    fn reachability_changed(&mut self, change: &modchain_net::nat::ReachabilityChange) {
        use modchain_net::nat::Reachability;
        match change.to {
            Reachability::Public => tracing::info!(
                addr = %change.addr,
                "reachability: public (a peer dialled this node back at this address)"
            ),
            Reachability::Private => {
                let port = change.addr.iter().find_map(|p| match p {
                    libp2p::multiaddr::Protocol::Tcp(port) => Some(format!("TCP port {port}")),
                    libp2p::multiaddr::Protocol::Udp(port) => Some(format!("UDP port {port}")),
                    _ => None,
                });
                tracing::warn!(
                    addr = %change.addr,
                    "reachability: private (peers cannot dial this node). It keeps working through relays and hole punching; to be dialled directly, forward {} on your router to this machine",
                    port.unwrap_or_else(|| "the port it listens on".into())
                );
            }
            Reachability::Unknown => tracing::info!("reachability: unknown"),
        }
    }

    /// A step of a provider lookup the API asked for: answered when it ends.
    pub(super) fn providers_found(
        &mut self,
        query: kad::QueryId,
        providers: Vec<PeerId>,
        done: bool,
        error: Option<String>,
    ) {
        if let Some(e) = error {
            tracing::debug!(error = %e, "provider lookup ended early");
        }
        if let Some(l) = self.provider_lookups.get_mut(&query) {
            l.found.extend(providers);
        }
        if done && let Some(l) = self.provider_lookups.remove(&query) {
            let providers: Vec<String> = l.found.iter().map(|p| p.to_string()).collect();
            let _ = l
                .reply
                .send(json!({ "key": l.key, "providers": providers }));
        }
    }

    /// Logs a message dropped, and tells the events stream of an advert
    /// that is news to us.
    pub(super) fn note_verdict(&self, verdict: &Verdict) {
        match verdict {
            Verdict::Taken(Some(signed)) => {
                if let Message::Advert(ad) = signed.message() {
                    self.emit(
                        "advert_received",
                        json!({
                            "from": signed.signer().to_hex(),
                            "adapters": ad.adapters.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
                            "free_cores": ad.free.cores,
                            "orchestrator_candidate": ad.orchestrator_candidate,
                        }),
                    );
                }
            }
            Verdict::Rejected(rejection) => {
                tracing::warn!(reason = rejection.label(), %rejection, "rejected a message");
            }
            Verdict::Misrouted(kind) => {
                tracing::warn!(%kind, "rejected a message that came by a channel its kind does not travel by");
            }
            Verdict::InvalidReceipt(e) => {
                tracing::warn!(error = %e, "rejected a receipt that does not check out");
            }
            Verdict::Refused(why) => {
                tracing::debug!(
                    reason = why.label(),
                    "refused a message from a sender without standing"
                );
            }
            Verdict::Taken(None) | Verdict::Stale => {}
        }
    }

    /// What became of a direct message from `from`.
    pub(super) fn note_direct(&mut self, from: PeerId, outcome: DirectOutcome) {
        match outcome {
            DirectOutcome::Message(verdict) => {
                if matches!(verdict, Verdict::Rejected(_)) {
                    tracing::debug!(%from, "rejected a direct message");
                }
                self.note_verdict(&verdict);
            }
            DirectOutcome::SyncAnswered {
                answer: SyncAnswer::Sent { bundles, adverts },
                known,
            } => {
                self.gossip.direct_sent += bundles;
                tracing::debug!(%from, bundles, adverts, known, "sent a joining peer our adverts");
            }
            DirectOutcome::SyncAnswered {
                answer: SyncAnswer::TooSoon,
                ..
            } => {
                tracing::debug!(%from, "advert sync asked again too soon; not answered");
            }
            DirectOutcome::Bundle(taken) => {
                self.limits_seen
                    .drop("bundle_adverts_over_cap", taken.over_cap as u64);
                for verdict in &taken.adverts {
                    self.note_verdict(verdict);
                }
                tracing::debug!(
                    %from,
                    new = taken.kept().count(),
                    dropped = taken.dropped(),
                    "took an advert bundle"
                );
            }
        }
    }
}
