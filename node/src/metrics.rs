//! The node's Prometheus metrics, in one `prometheus-client` registry:
//! rust-libp2p's own (`libp2p_*`: swarm, identify, Kademlia, ping, gossipsub
//! events, bandwidth; `gossipsub_*`: gossipsub's mesh internals) and the
//! application's (`modchain_*`). Served as OpenMetrics text at `/metrics`.
//!
//! Figures that the node already keeps (message counts in the protocol's
//! `Peer`, the ledger's size, job states) are copied in when a scrape comes,
//! from a `Snapshot`, so there is one source of truth for each; figures that
//! only exist as moments (an auction's duration, a job's run time) are
//! observed into histograms as the events happen.

use libp2p::metrics::{Metrics as Libp2pMetrics, Recorder, Registry};
#[cfg(test)]
use modchain_net::metrics::to_prometheus_text;
use modchain_protocol::{Event, JobId, Refused, Rejection};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Unit;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    state: String,
    adapter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdapterLabel {
    adapter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhatLabel {
    what: String,
}

/// What the node knows at scrape time, copied into the registry.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub peers_connected: usize,
    pub peers_known: usize,
    pub adverts: usize,
    /// Valid messages received, by kind name (cumulative).
    pub received: BTreeMap<String, u64>,
    /// Messages dropped, by reason (cumulative).
    pub rejected: BTreeMap<String, u64>,
    /// Authentic messages refused for the signer's standing, by reason (cumulative).
    pub refused: BTreeMap<String, u64>,
    /// Job, call and award ids held against replay.
    pub replay_cache_entries: usize,
    /// Ids dropped from the replay cache early for want of room (cumulative).
    pub replay_cache_evicted: u64,
    /// This node's jobs as a client: (state, adapter) → count.
    pub jobs: BTreeMap<(String, String), u64>,
    pub executions_running: usize,
    /// Jobs the orchestrator role holds; `None` when not a candidate.
    pub orchestrator_jobs: Option<usize>,
    pub gossip_published: u64,
    pub gossip_published_bytes: u64,
    pub gossip_received: u64,
    pub gossip_received_bytes: u64,
    pub direct_sent: u64,
    pub direct_received: u64,
    pub direct_failed: u64,
    pub ledger_receipts: usize,
    pub ledger_bytes: u64,
    pub receipts_stored: u64,
    pub receipts_refused: u64,
    /// This node's balance in micro-credits.
    pub balance_micro: i128,
    /// This node's share of global trust (0..1).
    pub trust: f64,
    /// Whether this node is elected orchestrator for the current epoch.
    pub elected: bool,
    /// Connected peers by the protocol version their identify agent names.
    pub peers_by_protocol: BTreeMap<String, u64>,
    /// Entries in each capped table a peer or a job can grow.
    pub tables: BTreeMap<String, u64>,
    /// Entries evicted from each capped table (cumulative).
    pub evictions: BTreeMap<String, u64>,
    /// What a cap or a rate limit dropped, by reason (cumulative).
    pub dropped: BTreeMap<String, u64>,
    /// Compiled wasm modules held for reuse: bytes, modules, and evictions
    /// since start.
    pub wasm_module_cache_bytes: u64,
    pub wasm_module_cache_modules: u64,
    pub wasm_module_cache_evictions: u64,
    /// Calls for bids held while their wasm modules are checked.
    pub wasm_calls_held: usize,
    /// Bid-time module checks since start: (result, count).
    pub wasm_module_checks: [(&'static str, u64); 3],
    /// Whether peers can dial us: `unknown`, `public` or `private`.
    pub reachability: &'static str,
    /// Relays we hold a reservation on.
    pub relay_reservations: usize,
    /// Our reservations that ended (cumulative).
    pub relay_reservations_lost: u64,
    /// Hole punches: (`direct`, count), (`failed`, count), cumulative.
    pub hole_punches: [(&'static str, u64); 2],
    /// Connected peers by path: (`direct`, n), (`relayed`, n).
    pub peers_by_path: [(&'static str, u64); 2],
    /// What our relay server did, by kind (cumulative).
    pub relay_served: BTreeMap<String, u64>,
}

/// Every reason [`Snapshot::dropped`] names, so that each reads 0 from the
/// start.
pub const DROP_REASONS: [&str; 11] = [
    "direct_throttled",
    "direct_inbound_failed",
    "bundle_unsolicited",
    "bundle_over_cap",
    "bundle_adverts_over_cap",
    "receipt_backlog",
    "receipt_quota",
    "log_overflow",
    "output_over_quota",
    "output_over_limit",
    "advert_envelope_cache_full",
];

/// Every table [`Snapshot::tables`] names.
pub const TABLES: [&str; 9] = [
    "results",
    "peers",
    "advert_envelopes",
    "request_buckets",
    "pending_publish",
    "job_logs",
    "served_outputs",
    "results_bytes",
    "provider_lookups",
];

pub struct NodeMetrics {
    registry: Registry,
    libp2p: Libp2pMetrics,
    peers_connected: Gauge,
    peers_known: Gauge,
    peers_by_protocol: Family<VersionLabel, Gauge>,
    adverts: Gauge,
    received: Family<KindLabel, Counter>,
    rejected: Family<ReasonLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
    replay_cache_entries: Gauge,
    replay_cache_evicted: Counter,
    jobs: Family<JobLabels, Gauge>,
    executions_running: Gauge,
    orchestrator_jobs: Gauge,
    elected: Gauge,
    auction_duration: Histogram,
    auction_bids: Histogram,
    job_duration: Family<AdapterLabel, Histogram>,
    executions: Family<ResultLabel, Counter>,
    gossip_messages: Family<DirectionLabel, Counter>,
    gossip_bytes: Family<DirectionLabel, Counter>,
    direct_messages: Family<ResultLabel, Counter>,
    ledger_receipts: Gauge,
    ledger_bytes: Gauge,
    receipts: Family<ResultLabel, Counter>,
    balance: Gauge<f64, AtomicU64>,
    trust: Gauge<f64, AtomicU64>,
    tables: Family<TableLabel, Gauge>,
    evictions: Family<TableLabel, Counter>,
    dropped: Family<ReasonLabel, Counter>,
    wasm_cache_bytes: Gauge,
    wasm_cache_modules: Gauge,
    wasm_cache_evictions: Counter,
    wasm_calls_held: Gauge,
    wasm_module_checks: Family<ResultLabel, Counter>,
    reachability: Family<StateLabel, Gauge>,
    relay_reservations: Gauge,
    relay_reservations_lost: Counter,
    hole_punches: Family<ResultLabel, Counter>,
    peers_by_path: Family<PathLabel, Gauge>,
    relay_served: Family<WhatLabel, Counter>,
    /// Adapter of each job this node is running, for the duration histogram.
    running: HashMap<JobId, String>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics")
            .field("running", &self.running.len())
            .finish_non_exhaustive()
    }
}

impl NodeMetrics {
    /// A registry with gossipsub's own metrics and bandwidth already in it
    /// (the swarm was built with them); adds libp2p's event metrics and the
    /// application's.
    pub fn new(mut registry: Registry, peer_id: &str) -> Self {
        let libp2p = Libp2pMetrics::new(&mut registry);
        let r = registry.sub_registry_with_prefix("modchain");
        r.register(
            "build",
            "This node's version and identity (always 1)",
            Info::new(vec![
                (
                    "version".to_string(),
                    crate::build_info::SOFTWARE_VERSION.to_string(),
                ),
                (
                    "protocol".to_string(),
                    modchain_protocol::PROTOCOL_VERSION.to_string(),
                ),
                ("peer_id".to_string(), peer_id.to_string()),
            ]),
        );
        let peers_connected = Gauge::default();
        r.register(
            "peers_connected",
            "Peers with an open connection",
            peers_connected.clone(),
        );
        let peers_known = Gauge::default();
        r.register(
            "peers_known",
            "Peers seen at the transport level (connected or not)",
            peers_known.clone(),
        );
        let peers_by_protocol = Family::<VersionLabel, Gauge>::default();
        r.register(
            "peers_by_protocol",
            "Connected peers by the wire protocol version their identify agent names (`unknown`: it names none)",
            peers_by_protocol.clone(),
        );
        let adverts = Gauge::default();
        r.register(
            "adverts_known",
            "Unexpired capability adverts held",
            adverts.clone(),
        );
        let received = Family::<KindLabel, Counter>::default();
        r.register(
            "messages_received",
            "Valid signed messages received, by kind",
            received.clone(),
        );
        let rejected = Family::<ReasonLabel, Counter>::default();
        r.register(
            "messages_rejected",
            "Messages dropped before the protocol saw them, by reason",
            rejected.clone(),
        );
        // Every reason reads 0 from the start, so rate() and alerts work
        // before the first forged message arrives.
        for reason in Rejection::LABELS {
            let _zero = rejected.get_or_create(&ReasonLabel {
                reason: reason.into(),
            });
        }
        let refused = Family::<ReasonLabel, Counter>::default();
        r.register(
            "messages_refused",
            "Authentic messages refused because the signer had no standing to send them (an unelected call for bids, a receipt without an elected orchestrator's award, a replay), by reason",
            refused.clone(),
        );
        for reason in Refused::ALL {
            let _zero = refused.get_or_create(&ReasonLabel {
                reason: reason.label().into(),
            });
        }
        let replay_cache_entries = Gauge::default();
        r.register(
            "replay_cache_entries",
            "Job, call-for-bids and award ids held against replay",
            replay_cache_entries.clone(),
        );
        let replay_cache_evicted = Counter::default();
        r.register(
            "replay_cache_evicted",
            "Ids dropped from the replay cache before their time for want of room",
            replay_cache_evicted.clone(),
        );
        let jobs = Family::<JobLabels, Gauge>::default();
        r.register(
            "client_jobs",
            "This node's jobs as a client, by state and adapter",
            jobs.clone(),
        );
        let executions_running = Gauge::default();
        r.register(
            "executions_running",
            "Jobs this node is running as a provider",
            executions_running.clone(),
        );
        let orchestrator_jobs = Gauge::default();
        r.register(
            "orchestrator_jobs",
            "Jobs the orchestrator role is handling (0 when not a candidate)",
            orchestrator_jobs.clone(),
        );
        let elected = Gauge::default();
        r.register(
            "orchestrator_elected",
            "1 while this node is an elected orchestrator for the current epoch",
            elected.clone(),
        );
        // 1 ms .. ~16 s: a bid window is 100s of ms; slow auctions wait for
        // providers that never answer.
        let auction_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        r.register_with_unit(
            "auction_duration",
            "From the call for bids to the award, for auctions this node ran",
            Unit::Seconds,
            auction_duration.clone(),
        );
        let auction_bids = Histogram::new([0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0]);
        r.register(
            "auction_bids",
            "Bids received per auction this node awarded",
            auction_bids.clone(),
        );
        let job_duration = Family::<AdapterLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 18))
        });
        r.register_with_unit(
            "job_duration",
            "Run time of jobs this node executed as a provider, by adapter",
            Unit::Seconds,
            job_duration.clone(),
        );
        let executions = Family::<ResultLabel, Counter>::default();
        r.register(
            "executions",
            "Jobs this node finished as a provider, by result (success, failure)",
            executions.clone(),
        );
        let gossip_messages = Family::<DirectionLabel, Counter>::default();
        r.register(
            "gossip_messages",
            "Gossipsub messages published (out) and received (in)",
            gossip_messages.clone(),
        );
        let gossip_bytes = Family::<DirectionLabel, Counter>::default();
        r.register_with_unit(
            "gossip",
            "Gossipsub payload bytes published (out) and received (in)",
            Unit::Bytes,
            gossip_bytes.clone(),
        );
        let direct_messages = Family::<ResultLabel, Counter>::default();
        r.register(
            "direct_messages",
            "Request-response messages: sent, received, failed",
            direct_messages.clone(),
        );
        let ledger_receipts = Gauge::default();
        r.register(
            "ledger_receipts",
            "Receipts in this node's ledger",
            ledger_receipts.clone(),
        );
        let ledger_bytes = Gauge::default();
        r.register_with_unit(
            "ledger_size",
            "The ledger's size on disk",
            Unit::Bytes,
            ledger_bytes.clone(),
        );
        let receipts = Family::<ResultLabel, Counter>::default();
        r.register(
            "receipts",
            "Receipts received since start, by result (stored, refused)",
            receipts.clone(),
        );
        let balance = Gauge::<f64, AtomicU64>::default();
        r.register(
            "balance_credits",
            "This node's credit balance from the ledger, in credits",
            balance.clone(),
        );
        let trust = Gauge::<f64, AtomicU64>::default();
        r.register(
            "trust_ratio",
            "This node's share of global trust (EigenTrust over the ledger, 0..1)",
            trust.clone(),
        );
        let tables = Family::<TableLabel, Gauge>::default();
        r.register(
            "table_entries",
            "Entries in each capped table a peer or a job can grow (results_bytes: bytes)",
            tables.clone(),
        );
        let evictions = Family::<TableLabel, Counter>::default();
        r.register(
            "table_evictions",
            "Entries evicted from each capped table to keep it within its cap",
            evictions.clone(),
        );
        let dropped = Family::<ReasonLabel, Counter>::default();
        r.register(
            "dropped",
            "What a cap, a quota or a rate limit dropped, by reason",
            dropped.clone(),
        );
        for table in TABLES {
            let label = TableLabel {
                table: table.into(),
            };
            let _zero = tables.get_or_create(&label);
            let _zero = evictions.get_or_create(&label);
        }
        for reason in DROP_REASONS {
            let _zero = dropped.get_or_create(&ReasonLabel {
                reason: reason.into(),
            });
        }
        let wasm_cache_bytes = Gauge::default();
        r.register_with_unit(
            "wasm_module_cache_size",
            "Compiled wasm modules held for reuse",
            Unit::Bytes,
            wasm_cache_bytes.clone(),
        );
        let wasm_cache_modules = Gauge::default();
        r.register(
            "wasm_module_cache_modules",
            "Compiled wasm modules held for reuse",
            wasm_cache_modules.clone(),
        );
        let wasm_cache_evictions = Counter::default();
        r.register(
            "wasm_module_cache_evictions",
            "Compiled wasm modules evicted to stay within [wasm] module_cache_mib",
            wasm_cache_evictions.clone(),
        );
        let wasm_calls_held = Gauge::default();
        r.register(
            "wasm_calls_held",
            "Calls for bids held while their wasm modules are checked off the event loop",
            wasm_calls_held.clone(),
        );
        let wasm_module_checks = Family::<ResultLabel, Counter>::default();
        r.register(
            "wasm_module_checks",
            "Bid-time wasm module checks, by result (valid, invalid, overflow)",
            wasm_module_checks.clone(),
        );
        let reachability = Family::<StateLabel, Gauge>::default();
        r.register(
            "reachability",
            "1 for whether peers can dial this node as AutoNAT last found (unknown, public, private), 0 for the others",
            reachability.clone(),
        );
        let relay_reservations = Gauge::default();
        r.register(
            "relay_reservations",
            "Relays this node holds a reservation on (it cannot be dialled directly)",
            relay_reservations.clone(),
        );
        let relay_reservations_lost = Counter::default();
        r.register(
            "relay_reservations_lost",
            "Relay reservations of this node that ended (the relay went away or refused)",
            relay_reservations_lost.clone(),
        );
        let hole_punches = Family::<ResultLabel, Counter>::default();
        r.register(
            "hole_punches",
            "Relayed connections DCUtR tried to make direct, by result (direct, failed)",
            hole_punches.clone(),
        );
        let peers_by_path = Family::<PathLabel, Gauge>::default();
        r.register(
            "peers_connected_by_path",
            "Connected peers by path: direct (at least one direct connection) or relayed (only through a relay)",
            peers_by_path.clone(),
        );
        let relay_served = Family::<WhatLabel, Counter>::default();
        r.register(
            "relay_served",
            "What this node's relay server did for others (reservation_accepted, reservation_denied, circuit_opened, circuit_denied, circuit_closed)",
            relay_served.clone(),
        );
        NodeMetrics {
            reachability,
            relay_reservations,
            relay_reservations_lost,
            hole_punches,
            peers_by_path,
            relay_served,
            tables,
            evictions,
            dropped,
            registry,
            libp2p,
            peers_connected,
            peers_known,
            peers_by_protocol,
            adverts,
            received,
            rejected,
            refused,
            replay_cache_entries,
            replay_cache_evicted,
            jobs,
            executions_running,
            orchestrator_jobs,
            elected,
            auction_duration,
            auction_bids,
            job_duration,
            executions,
            gossip_messages,
            gossip_bytes,
            direct_messages,
            ledger_receipts,
            ledger_bytes,
            receipts,
            balance,
            trust,
            wasm_cache_bytes,
            wasm_cache_modules,
            wasm_cache_evictions,
            wasm_calls_held,
            wasm_module_checks,
            running: HashMap::new(),
        }
    }

    /// rust-libp2p's recorder, for swarm and behaviour events.
    pub fn record<E>(&self, event: &E)
    where
        Libp2pMetrics: Recorder<E>,
    {
        self.libp2p.record(event);
    }

    /// A job this node won starts running through `adapter`.
    pub fn execution_started(&mut self, job: JobId, adapter: &str) {
        self.running.insert(job, adapter.to_string());
    }

    /// Observes the moments the protocol reports.
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::Awarded {
                bids, auction_ms, ..
            } => {
                self.auction_duration.observe(*auction_ms as f64 / 1000.0);
                self.auction_bids.observe(*bids as f64);
            }
            Event::ExecutionFinished {
                job_id,
                exit,
                wall_ms,
            } => {
                let adapter = self
                    .running
                    .remove(job_id)
                    .unwrap_or_else(|| "unknown".into());
                self.job_duration
                    .get_or_create(&AdapterLabel { adapter })
                    .observe(*wall_ms as f64 / 1000.0);
                let result = if exit.code() == 0 {
                    "success"
                } else {
                    "failure"
                };
                self.executions
                    .get_or_create(&ResultLabel {
                        result: result.into(),
                    })
                    .inc();
            }
            _ => {}
        }
    }

    /// Copies the node's current figures in, then encodes everything.
    pub fn encode(&self, s: &Snapshot) -> String {
        self.refresh(s);
        modchain_net::metrics::encode(&self.registry)
    }

    fn refresh(&self, s: &Snapshot) {
        set(&self.peers_connected, s.peers_connected as u64);
        set(&self.peers_known, s.peers_known as u64);
        set(&self.adverts, s.adverts as u64);
        // Versions no peer speaks any more must read 0, not linger.
        self.peers_by_protocol.clear();
        for (version, n) in &s.peers_by_protocol {
            set(
                &self.peers_by_protocol.get_or_create(&VersionLabel {
                    version: version.clone(),
                }),
                *n,
            );
        }
        for (kind, n) in &s.received {
            sync(
                &self
                    .received
                    .get_or_create(&KindLabel { kind: kind.clone() }),
                *n,
            );
        }
        for (reason, n) in &s.rejected {
            sync(
                &self.rejected.get_or_create(&ReasonLabel {
                    reason: reason.clone(),
                }),
                *n,
            );
        }
        for (reason, n) in &s.refused {
            sync(
                &self.refused.get_or_create(&ReasonLabel {
                    reason: reason.clone(),
                }),
                *n,
            );
        }
        set(&self.replay_cache_entries, s.replay_cache_entries as u64);
        sync(&self.replay_cache_evicted, s.replay_cache_evicted);
        // States a job left must read 0, not linger: start afresh.
        self.jobs.clear();
        for ((state, adapter), n) in &s.jobs {
            set(
                &self.jobs.get_or_create(&JobLabels {
                    state: state.clone(),
                    adapter: adapter.clone(),
                }),
                *n,
            );
        }
        set(&self.executions_running, s.executions_running as u64);
        set(
            &self.orchestrator_jobs,
            s.orchestrator_jobs.unwrap_or(0) as u64,
        );
        set(&self.elected, u64::from(s.elected));
        for (direction, messages, bytes) in [
            ("out", s.gossip_published, s.gossip_published_bytes),
            ("in", s.gossip_received, s.gossip_received_bytes),
        ] {
            let label = DirectionLabel {
                direction: direction.into(),
            };
            sync(&self.gossip_messages.get_or_create(&label), messages);
            sync(&self.gossip_bytes.get_or_create(&label), bytes);
        }
        for (result, n) in [
            ("sent", s.direct_sent),
            ("received", s.direct_received),
            ("failed", s.direct_failed),
        ] {
            sync(
                &self.direct_messages.get_or_create(&ResultLabel {
                    result: result.into(),
                }),
                n,
            );
        }
        for (table, n) in &s.tables {
            set(
                &self.tables.get_or_create(&TableLabel {
                    table: table.clone(),
                }),
                *n,
            );
        }
        for (table, n) in &s.evictions {
            sync(
                &self.evictions.get_or_create(&TableLabel {
                    table: table.clone(),
                }),
                *n,
            );
        }
        for (reason, n) in &s.dropped {
            sync(
                &self.dropped.get_or_create(&ReasonLabel {
                    reason: reason.clone(),
                }),
                *n,
            );
        }
        set(&self.ledger_receipts, s.ledger_receipts as u64);
        set(&self.ledger_bytes, s.ledger_bytes);
        for (result, n) in [
            ("stored", s.receipts_stored),
            ("refused", s.receipts_refused),
        ] {
            sync(
                &self.receipts.get_or_create(&ResultLabel {
                    result: result.into(),
                }),
                n,
            );
        }
        self.balance.set(s.balance_micro as f64 / 1_000_000.0);
        self.trust.set(s.trust);
        set(&self.wasm_cache_bytes, s.wasm_module_cache_bytes);
        set(&self.wasm_cache_modules, s.wasm_module_cache_modules);
        sync(&self.wasm_cache_evictions, s.wasm_module_cache_evictions);
        set(&self.wasm_calls_held, s.wasm_calls_held as u64);
        for (result, n) in s.wasm_module_checks {
            sync(
                &self.wasm_module_checks.get_or_create(&ResultLabel {
                    result: result.into(),
                }),
                n,
            );
        }
        for state in ["unknown", "public", "private"] {
            let g = self.reachability.get_or_create(&StateLabel {
                state: state.into(),
            });
            g.set(i64::from(state == s.reachability));
        }
        set(&self.relay_reservations, s.relay_reservations as u64);
        sync(&self.relay_reservations_lost, s.relay_reservations_lost);
        for (result, n) in s.hole_punches {
            sync(
                &self.hole_punches.get_or_create(&ResultLabel {
                    result: result.into(),
                }),
                n,
            );
        }
        for (path, n) in s.peers_by_path {
            set(
                &self
                    .peers_by_path
                    .get_or_create(&PathLabel { path: path.into() }),
                n,
            );
        }
        for (what, n) in &s.relay_served {
            sync(
                &self
                    .relay_served
                    .get_or_create(&WhatLabel { what: what.clone() }),
                *n,
            );
        }
    }
}

fn set(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

/// Brings a counter up to a cumulative figure kept elsewhere. Counters only
/// rise; a figure that went down (it cannot, but) leaves the counter as is.
fn sync(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modchain_protocol::{Credits, Digest, ExitStatus};

    #[test]
    fn figures_appear_with_prometheus_names_and_units() {
        let mut m = NodeMetrics::new(Registry::default(), "12D3KooWtest");
        let job = Digest::of(b"job");
        m.execution_started(job, "wasm");
        m.on_event(&Event::ExecutionFinished {
            job_id: job,
            exit: ExitStatus::Exited(0),
            wall_ms: 250,
        });
        m.on_event(&Event::Awarded {
            job_id: job,
            attempt: 0,
            provider: modchain_protocol::Keypair::from_seed(1).node_id(),
            max_total: Credits(1),
            bids: 3,
            auction_ms: 120,
        });
        let mut s = Snapshot {
            peers_connected: 4,
            ledger_bytes: 4096,
            balance_micro: 2_500_000,
            ..Snapshot::default()
        };
        s.received.insert("bid".into(), 7);
        s.rejected.insert("bad signature".into(), 2);
        s.jobs.insert(("running".into(), "wasm".into()), 1);
        let text = m.encode(&s);
        for line in [
            "modchain_peers_connected 4",
            "modchain_messages_received_total{kind=\"bid\"} 7",
            "modchain_messages_rejected_total{reason=\"bad signature\"} 2",
            "modchain_client_jobs{state=\"running\",adapter=\"wasm\"} 1",
            "modchain_ledger_size_bytes 4096",
            "modchain_balance_credits 2.5",
            "modchain_auction_duration_seconds_count 1",
            "modchain_auction_bids_sum 3.0",
            "modchain_job_duration_seconds_count{adapter=\"wasm\"} 1",
            "modchain_executions_total{result=\"success\"} 1",
            "# UNIT modchain_auction_duration_seconds seconds",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "one EOF, at the end");
        assert_eq!(text.matches("# EOF").count(), 1);

        // A job that left a state no longer shows in it; counters never fall.
        s.jobs.clear();
        s.jobs.insert(("completed".into(), "wasm".into()), 1);
        s.received.insert("bid".into(), 5);
        let text = m.encode(&s);
        assert!(!text.contains("state=\"running\""), "{text}");
        assert!(text.contains("modchain_client_jobs{state=\"completed\",adapter=\"wasm\"} 1"));
        assert!(text.contains("modchain_messages_received_total{kind=\"bid\"} 7"));

        let classic = to_prometheus_text(&text);
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
        assert!(classic.contains("# TYPE modchain_messages_received_total counter\n"));
        assert!(classic.contains("# HELP modchain_messages_received_total Valid signed"));
        assert!(classic.contains("# TYPE modchain_build_info gauge\n"));
        assert!(classic.contains("# TYPE modchain_auction_duration_seconds histogram\n"));
        assert!(!classic.contains('\u{0}'));
    }
}
