//! Answers to the local API's queries: the node's stats, the network's
//! peers and models, metrics, and the client's jobs, receipts, reputation
//! and balances. Refusals are typed (`control::Refusal`); the HTTP edge
//! chooses their status.

use super::jobs::{hex_list, lossy};
use super::state::*;
use crate::control::{ApiQuery, LogView, Refusal};
use crate::metrics::Snapshot;
use crate::views::{
    BalanceView, HistoryEntry, JobDetail, JobRefusal, JobResultView, JobSummary, OutputFile,
    ReceiptView, ReputationEntry, UsageView, exit_text,
};
use libp2p::{PeerId, kad};
use modchain_protocol::{ClientJob, JobId, JobSpec, NodeId};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

impl Node {
    pub(super) fn answer(&mut self, q: ApiQuery) {
        match q {
            ApiQuery::Stats(tx) => {
                let _ = tx.send(self.stats_json());
            }
            ApiQuery::Nodes(tx) => {
                let _ = tx.send(self.nodes_json());
            }
            ApiQuery::Metrics(tx) => {
                let _ = tx.send(self.metrics_text());
            }
            ApiQuery::Models(tx) => {
                let _ = tx.send(self.network_models());
            }
            ApiQuery::Member { peers, reply } => {
                let me = self.net.local_peer_id();
                let member = peers.into_iter().find(|p| {
                    *p == me
                        || self.net.peers().contains_key(p)
                        || NodeId::from_peer_id(p)
                            .is_ok_and(|n| self.net.peer().adverts().get(&n).is_some())
                });
                let _ = reply.send(member);
            }
            q @ (ApiQuery::Submit { .. }
            | ApiQuery::Jobs(_)
            | ApiQuery::Job { .. }
            | ApiQuery::Cancel { .. }
            | ApiQuery::Logs { .. }
            | ApiQuery::JobResult { .. }
            | ApiQuery::Receipts(_)
            | ApiQuery::Reputation(_)
            | ApiQuery::Balance { .. }
            | ApiQuery::Events(_)) => self.answer_jobs(q),
            ApiQuery::Providers { key, reply } => {
                let id = self
                    .net
                    .swarm_mut()
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&key));
                self.provider_lookups.insert(
                    id,
                    ProviderLookup {
                        key,
                        reply,
                        found: BTreeSet::new(),
                    },
                );
            }
        }
    }

    pub(super) fn stats_json(&self) -> Value {
        let mut v = self.network_stats_json();
        if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), self.jobs_stats()) {
            obj.extend(extra);
        }
        v
    }

    pub(super) fn network_stats_json(&self) -> Value {
        let stats = self.net.peer().stats();
        let received: BTreeMap<&str, u64> =
            stats.received.iter().map(|(k, v)| (k.name(), *v)).collect();
        let g = &self.gossip;
        json!({
            "peer_id": self.peer_id().to_string(),
            "node_id": self.me.to_hex(),
            "listen_addrs": self.net.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "uptime_secs": self.started.elapsed().as_secs(),
            "connected_peers": self.net.swarm().connected_peers().count(),
            "known_peers": self.net.peers().len(),
            "software": crate::build_info::SOFTWARE_VERSION,
            "protocol_version": modchain_protocol::PROTOCOL_VERSION,
            "peers_by_protocol": super::versions::peers_by_protocol(self.net.peers()),
            "adverts": self.net.peer().adverts().len(),
            "jobs": self.net.peer().client().jobs().count(),
            "received": received,
            "rejected": stats.rejected,
            "adverts_rejected": stats.adverts_rejected,
            "refused": stats.refused,
            "replay_cache": {
                "entries": self.net.peer().replay_cache().0,
                "evicted": self.net.peer().replay_cache().1,
            },
            "gossip": {
                "published": g.published,
                "published_bytes": g.published_bytes,
                "received": g.received,
                "received_bytes": g.received_bytes,
                "rejected": g.rejected,
            },
            "direct": {
                "sent": g.direct_sent,
                "received": g.direct_received,
                "failed": g.direct_failed,
            },
            "bootstrap": self.net.bootstrap().iter().map(|b| json!({
                "addr": b.peer().to_string(),
                "connected": b.connected(),
                "failures": b.failures(),
            })).collect::<Vec<_>>(),
            "capability_keys": self.net.provided().keys(),
            "reachability": self.net.nat().reachability().as_str(),
            "reachable_addrs": self.net.nat().reachable_addrs().map(|a| a.to_string()).collect::<Vec<_>>(),
            "relays": self.net.nat().reservations().map(|r| json!({
                "relay": r.relay.to_string(),
                "addr": r.addr.to_string(),
                "accepted": r.accepted,
            })).collect::<Vec<_>>(),
            "hole_punches": {
                "direct": self.net.nat().punched,
                "failed": self.net.nat().punch_failed,
            },
            "relay_served": self.nat_seen.relay_served,
        })
    }

    pub(super) fn nodes_json(&self) -> Value {
        let me = self.peer_id();
        let mut ids: BTreeSet<PeerId> = self.net.peers().keys().copied().collect();
        for (node, _) in self.net.peer().adverts().iter() {
            if let Ok(p) = node.to_peer_id() {
                ids.insert(p);
            }
        }
        ids.insert(me);
        let list: Vec<Value> = ids
            .into_iter()
            .map(|pid| {
                let node = NodeId::from_peer_id(&pid).ok();
                let advert = node.and_then(|n| self.net.peer().adverts().get(&n));
                let entry = self.net.peers().get(&pid);
                let addrs: Vec<String> = if pid == me {
                    self.net.listen_addrs().iter().map(|a| a.to_string()).collect()
                } else {
                    entry.map(|e| e.addrs.iter().map(|a| a.to_string()).collect()).unwrap_or_default()
                };
                json!({
                    "peer_id": pid.to_string(),
                    "node_id": node.map(|n| n.to_hex()),
                    "self": pid == me,
                    "connected": pid == me || entry.is_some_and(|e| e.connections > 0),
                    // How we reach it now: directly, or only through a relay.
                    "path": entry.filter(|e| e.connections > 0).map(|e| {
                        if e.connections > e.relayed { "direct" } else { "relayed" }
                    }),
                    "agent": entry.and_then(|e| e.agent.clone()),
                    "gossip_score": (pid != me)
                        .then(|| self.net.swarm().behaviour().gossipsub.peer_score(&pid))
                        .flatten(),
                    "addrs": addrs,
                    "advert": advert,
                    "advert_received_at": node.and_then(|n| self.net.peer().adverts().received_at(&n)).map(|t| t.as_millis()),
                })
            })
            .collect();
        Value::Array(list)
    }

    /// Every model an unexpired advert offers, by name, with how many
    /// providers serve it.
    pub(super) fn network_models(&self) -> Vec<crate::control::NetworkModel> {
        let t = now();
        let mut by_name: BTreeMap<String, crate::control::NetworkModel> = BTreeMap::new();
        for (_, ad) in self.net.peer().adverts().iter() {
            if ad.expires_at <= t {
                continue;
            }
            for m in ad.adapters.iter().flat_map(|a| a.models.iter()) {
                by_name
                    .entry(m.name.clone())
                    .or_insert_with(|| crate::control::NetworkModel {
                        info: m.clone(),
                        providers: 0,
                    })
                    .providers += 1;
            }
        }
        by_name.into_values().collect()
    }

    pub(super) fn metrics_text(&self) -> String {
        let stats = self.net.peer().stats();
        let mut jobs: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (_, j) in self.net.peer().client().jobs() {
            *jobs
                .entry((j.state.as_str().to_string(), j.spec.adapter.clone()))
                .or_default() += 1;
        }
        let g = &self.gossip;
        let cache = self.wasm_gate.cache_stats();
        let checks = self.wasm_gate.counts();
        let snapshot = Snapshot {
            peers_connected: self.net.swarm().connected_peers().count(),
            peers_known: self.net.peers().len(),
            adverts: self.net.peer().adverts().len(),
            received: stats
                .received
                .iter()
                .map(|(k, n)| (k.name().to_string(), *n))
                .collect(),
            rejected: stats
                .rejected
                .iter()
                .map(|(r, n)| (r.to_string(), *n))
                .collect(),
            refused: stats
                .refused
                .iter()
                .map(|(r, n)| (r.to_string(), *n))
                .collect(),
            replay_cache_entries: self.net.peer().replay_cache().0,
            replay_cache_evicted: self.net.peer().replay_cache().1,
            jobs,
            executions_running: self.jobs.executor.running(),
            orchestrator_jobs: self.net.peer().orchestrator().map(|o| o.active_jobs()),
            gossip_published: g.published,
            gossip_published_bytes: g.published_bytes,
            gossip_received: g.received,
            gossip_received_bytes: g.received_bytes,
            direct_sent: g.direct_sent,
            direct_received: g.direct_received,
            direct_failed: g.direct_failed,
            ledger_receipts: self.jobs.ledger.len(),
            ledger_bytes: self.jobs.ledger.size_on_disk(),
            receipts_stored: self.jobs.receipts_new,
            receipts_refused: self.jobs.receipts_failed,
            balance_micro: self.jobs.totals.balances.balance(&self.me),
            trust: self.jobs.trust.value(&self.me),
            elected: self.jobs.elected.contains(&self.me),
            peers_by_protocol: super::versions::peers_by_protocol(self.net.peers()),
            tables: self.table_entries(),
            evictions: self.table_evictions(),
            dropped: self.drops(),
            wasm_module_cache_bytes: cache.bytes,
            wasm_module_cache_modules: cache.entries,
            wasm_module_cache_evictions: cache.evictions,
            wasm_calls_held: self.wasm_gate.held(),
            wasm_module_checks: [
                ("valid", checks.valid),
                ("invalid", checks.invalid),
                ("overflow", checks.overflow),
            ],
            reachability: self.net.nat().reachability().as_str(),
            relay_reservations: self.net.nat().reservations().filter(|r| r.accepted).count(),
            relay_reservations_lost: self.nat_seen.reservations_lost,
            hole_punches: [
                ("direct", self.net.nat().punched),
                ("failed", self.net.nat().punch_failed),
            ],
            peers_by_path: self.peers_by_path(),
            relay_served: self
                .nat_seen
                .relay_served
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        };
        self.metrics.encode(&snapshot)
    }
}

impl Node {
    /// Connected peers reached directly (at least one direct connection)
    /// and only through a relay.
    fn peers_by_path(&self) -> [(&'static str, u64); 2] {
        let (mut direct, mut relayed) = (0, 0);
        for info in self.net.peers().values().filter(|i| i.connections > 0) {
            if info.connections > info.relayed {
                direct += 1;
            } else {
                relayed += 1;
            }
        }
        [("direct", direct), ("relayed", relayed)]
    }

    /// Entries in each capped table, for `/metrics`.
    fn table_entries(&self) -> BTreeMap<String, u64> {
        let t = self.net.table_sizes();
        [
            ("peers", t.peers as u64),
            ("adverts", self.net.peer().adverts().len() as u64),
            ("advert_envelopes", t.advert_envelopes as u64),
            ("request_buckets", t.request_buckets as u64),
            ("pending_publish", t.pending_publish as u64),
            ("job_logs", self.jobs.job_logs.len() as u64),
            ("served_outputs", self.jobs.served.len() as u64),
            ("results_bytes", self.jobs.results.stored_bytes()),
            ("provider_lookups", self.provider_lookups.len() as u64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn table_evictions(&self) -> BTreeMap<String, u64> {
        let t = self.net.table_sizes();
        let mut out: BTreeMap<String, u64> = self
            .limits_seen
            .evicted
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        out.insert("advert_envelopes".into(), t.advert_envelopes_evicted);
        out.insert("adverts".into(), self.net.peer().adverts().evicted());
        out
    }

    fn drops(&self) -> BTreeMap<String, u64> {
        let t = self.net.table_sizes();
        let mut out: BTreeMap<String, u64> = self
            .limits_seen
            .dropped
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        out.insert(
            "advert_envelope_cache_full".into(),
            t.advert_envelopes_refused,
        );
        out.insert("receipt_backlog".into(), self.jobs.receipts_backlogged);
        out.insert("receipt_quota".into(), self.jobs.receipts_over_quota);
        out.insert("log_overflow".into(), self.jobs.executor_events.dropped());
        out
    }

    /// Client: checks that some advert offers the adapter (and the model a
    /// job asks for), runs the local adapter's shape checks if we have it,
    /// then signs and submits.
    pub(super) fn submit(&mut self, spec: JobSpec) -> Result<JobId, Refusal> {
        let t = now();
        let offered: BTreeSet<String> = self
            .net
            .peer()
            .adverts()
            .iter()
            .filter(|(_, ad)| ad.expires_at > t)
            .flat_map(|(_, ad)| ad.adapters.iter().map(|a| a.name.clone()))
            .collect();
        if !offered.contains(&spec.adapter) {
            let list = if offered.is_empty() {
                "none yet (no provider adverts seen; is the node connected?)".to_string()
            } else {
                offered.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            return Err(Refusal::NotOffered(format!(
                "no provider offers the adapter `{}`; the network offers: {list}",
                spec.adapter
            )));
        }
        if let Some(model) = &spec.requirements.model {
            // Providers that offer the adapter but no model (a provider
            // waiting for its first file) cannot take it either.
            let models: BTreeSet<String> = self
                .net
                .peer()
                .adverts()
                .iter()
                .filter(|(_, ad)| ad.expires_at > t)
                .flat_map(|(_, ad)| ad.adapters.iter())
                .filter(|a| a.name == spec.adapter)
                .flat_map(|a| a.models.iter().map(|m| m.name.clone()))
                .collect();
            if !models.contains(model) {
                let list = if models.is_empty() {
                    "none".to_string()
                } else {
                    models.into_iter().collect::<Vec<_>>().join(", ")
                };
                return Err(Refusal::NotOffered(format!(
                    "no provider offers the model `{model}` with the `{}` adapter; the network offers: {list}",
                    spec.adapter
                )));
            }
        }
        if let Some(adapter) = self.jobs.executor.adapter(&spec.adapter) {
            let params: Value = serde_json::from_str(&spec.params)
                .map_err(|e| Refusal::Invalid(format!("params are not valid JSON: {e}")))?;
            // Shape only: the job may be for something other providers
            // hold (a model this node does not).
            adapter
                .check_params(&spec.method, &params)
                .map_err(|e| Refusal::Invalid(e.to_string()))?;
        }
        let id = self.net.peer_mut().submit(t, spec).map_err(|e| match e {
            modchain_protocol::SubmitError::NoOrchestrator => {
                Refusal::NoOrchestrator(e.to_string())
            }
            other => Refusal::Invalid(other.to_string()),
        })?;
        tracing::info!(job = %id.to_hex(), "job submitted");
        self.emit("job_submitted", json!({ "job_id": id.to_hex() }));
        Ok(id)
    }

    pub(super) fn outputs_view(&self, id: &JobId, job: &ClientJob) -> Vec<OutputFile> {
        let stored = self.jobs.results.stored(id);
        job.result
            .as_ref()
            .map(|r| {
                r.outputs
                    .iter()
                    .map(|o| OutputFile {
                        name: o.name.clone(),
                        size: o.size,
                        digest: o.digest.to_hex(),
                        inline: o.inline.is_some(),
                        path: stored
                            .and_then(|s| s.get(&o.name))
                            .map(|p| p.to_string_lossy().into_owned()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn job_summary(&self, id: &JobId, job: &ClientJob) -> JobSummary {
        JobSummary {
            job_id: id.to_hex(),
            state: job.state.as_str().into(),
            detail: job.detail.clone(),
            refusal: job.refusal.and_then(JobRefusal::of),
            adapter: job.spec.adapter.clone(),
            method: job.spec.method.clone(),
            submitted_at_ms: job.submitted_at.as_millis(),
            orchestrator: job.orchestrator_id().map(|n| n.to_hex()),
            provider: job.provider().map(|n| n.to_hex()),
            price: job.receipt.as_ref().map(|r| r.receipt.price.0),
            receipt_id: job.receipt.as_ref().map(|r| r.id().to_hex()),
            exit_code: job.result.as_ref().map(|r| r.exit.code()),
            exit: job.result.as_ref().map(|r| exit_text(&r.exit)),
            outputs_pending: self.jobs.results.pending(id),
            outputs: self.outputs_view(id, job),
        }
    }

    pub(super) fn job_detail(&self, id: &JobId, job: &ClientJob) -> JobDetail {
        JobDetail {
            summary: self.job_summary(id, job),
            history: job
                .history
                .iter()
                .map(|(at, s)| HistoryEntry {
                    at_ms: at.as_millis(),
                    state: s.as_str().into(),
                })
                .collect(),
            max_price: job.spec.max_price.0,
            timeout_ms: job.spec.timeout_ms,
            stdout: job.result.as_ref().map(|r| lossy(&r.stdout)),
            stderr: job.result.as_ref().map(|r| lossy(&r.stderr)),
            results_dir: self.jobs.results.job_dir(id).to_string_lossy().into_owned(),
        }
    }

    pub(super) fn result_view(&self, id: &JobId, job: &ClientJob) -> Option<JobResultView> {
        let r = job.result.as_ref()?;
        Some(JobResultView {
            job_id: id.to_hex(),
            state: job.state.as_str().into(),
            provider: job.provider().map(|n| n.to_hex()),
            attempt: r.attempt,
            exit_code: r.exit.code(),
            exit: exit_text(&r.exit),
            stdout: lossy(&r.stdout),
            stderr: lossy(&r.stderr),
            usage: UsageView {
                wall_ms: r.usage.wall_ms,
                cpu_ms: r.usage.cpu_ms,
                peak_memory_bytes: r.usage.peak_memory_bytes,
                tokens: r.usage.tokens,
            },
            finished_at_ms: r.finished_at.as_millis(),
            result_digest: r.digest().to_hex(),
            receipt_id: job.receipt.as_ref().map(|x| x.id().to_hex()),
            price: job.receipt.as_ref().map(|x| x.receipt.price.0),
            results_dir: self.jobs.results.job_dir(id).to_string_lossy().into_owned(),
            outputs_pending: self.jobs.results.pending(id),
            outputs: self.outputs_view(id, job),
        })
    }

    pub(super) fn answer_jobs(&mut self, q: ApiQuery) {
        match q {
            ApiQuery::Submit { spec, reply } => {
                let r = self.submit(spec);
                self.drain_actions();
                let _ = reply.send(r);
            }
            ApiQuery::Jobs(reply) => {
                let mut jobs: Vec<(&JobId, &ClientJob)> = self.net.peer().client().jobs().collect();
                jobs.sort_by_key(|(id, j)| (j.submitted_at, **id));
                let list = jobs
                    .into_iter()
                    .map(|(id, j)| self.job_summary(id, j))
                    .collect();
                let _ = reply.send(list);
            }
            ApiQuery::Job { id, reply } => {
                let _ = reply.send(self.net.peer().job(&id).map(|j| self.job_detail(&id, j)));
            }
            ApiQuery::Cancel { id, reply } => {
                let r = match self.net.peer().job(&id).map(|j| j.state) {
                    None => Err(Refusal::UnknownJob(format!("no job {id} on this node"))),
                    Some(s) if s.is_terminal() => Err(Refusal::AlreadyEnded(format!(
                        "job {id} already ended ({})",
                        s.as_str()
                    ))),
                    Some(_) => {
                        self.net
                            .peer_mut()
                            .cancel(now(), &id, "cancelled by its client");
                        self.drain_actions();
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            ApiQuery::Logs { id, reply } => {
                let view = self.net.peer().job(&id).map(|j| LogView {
                    text: self.jobs.job_logs.get(&id).cloned().unwrap_or_default(),
                    ended: j.state.is_terminal(),
                    feed: self.jobs.log_feed.subscribe(),
                });
                let _ = reply.send(view);
            }
            ApiQuery::JobResult { id, reply } => {
                let _ = reply.send(self.net.peer().job(&id).map(|j| self.result_view(&id, j)));
            }
            ApiQuery::Receipts(reply) => {
                // Reading (and checking) the whole ledger is bulk work: on
                // the blocking pool, never on the event loop.
                let ledger = self.jobs.ledger.clone();
                tokio::task::spawn_blocking(move || {
                    let (list, damaged) = ledger.receipts();
                    if damaged > 0 {
                        tracing::warn!(
                            damaged,
                            "ledger entries that failed to decode or verify were skipped"
                        );
                    }
                    let _ = reply.send(list.iter().map(ReceiptView::from).collect());
                });
            }
            ApiQuery::Reputation(reply) => {
                let trust = &self.jobs.trust;
                let mut list: Vec<(NodeId, f64)> = trust.iter().collect();
                list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let v = list
                    .into_iter()
                    .map(|(n, value)| ReputationEntry {
                        node_id: n.to_hex(),
                        peer_id: n.to_peer_id().ok().map(|p| p.to_string()),
                        trust: value,
                        reputation: trust.reputation(&n),
                        pretrusted: self.jobs.pretrusted.contains(&n),
                    })
                    .collect();
                let _ = reply.send(v);
            }
            ApiQuery::Balance { node, reply } => {
                let node = node.unwrap_or(self.me);
                let micro = self.jobs.totals.balances.balance(&node);
                let micro =
                    i64::try_from(micro).unwrap_or(if micro < 0 { i64::MIN } else { i64::MAX });
                let _ = reply.send(BalanceView {
                    node_id: node.to_hex(),
                    balance_micro: micro,
                    balance: micro as f64 / 1_000_000.0,
                });
            }
            ApiQuery::Events(reply) => {
                let _ = reply.send(self.jobs.events.subscribe());
            }
            other => tracing::debug!(?other, "query not for jobs"),
        }
    }

    pub(super) fn jobs_stats(&self) -> Value {
        let mut states: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, j) in self.net.peer().client().jobs() {
            *states.entry(j.state.as_str()).or_default() += 1;
        }
        let epoch_ms = self.net.peer().election().config().epoch_ms.max(1);
        json!({
            "elected": hex_list(&self.jobs.elected),
            "epoch": now().as_millis() / epoch_ms,
            "orchestrator_candidate": self.net.peer().orchestrator().is_some(),
            "client_jobs": states,
            "executions_running": self.jobs.executor.running(),
            "provider": self.jobs.provider,
            "adapters": self.jobs.executor.infos().iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
            "orchestrator_active_jobs": self.net.peer().orchestrator().map(|o| o.active_jobs()),
            "receipts": {
                "seen": self.jobs.receipts_seen,
                "stored": self.jobs.receipts_new,
                "refused": self.jobs.receipts_failed,
            },
            "ledger": {
                "receipts": self.jobs.ledger.len(),
                "bytes_on_disk": self.jobs.ledger.size_on_disk(),
            },
        })
    }
}
