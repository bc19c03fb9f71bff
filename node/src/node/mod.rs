//! The running node: drives the protocol's [`Peer`] over the network layer
//! (`modchain_net::SwarmDriver`) and the clock, keeps the view of the
//! network the API shows, and runs jobs. Split by concern:
//!
//! | Module | Holds |
//! |---|---|
//! | [`state`] | `Node`, its options and errors, the job state beside the protocol's machines, shared constants; imported by every other module here, importing none of them but the leaf [`versions`] |
//! | this file | the node's construction and its run loop: what wakes it, and the drain of the peer's actions |
//! | [`network`] | what the network layer reports: logged and counted here, once |
//! | [`queries`] | answers to the local API's queries (`control::ApiQuery`) |
//! | [`jobs`] | jobs around the protocol's machines: executions, outputs, results, receipts into the ledger, the event stream |
//! | [`adapters`] | which adapters this node runs, and its bid-time admission check |
//! | [`versions`] | which protocol versions the peers speak, and the warning when most are newer |

mod adapters;
mod jobs;
mod network;
mod queries;
mod state;
mod versions;

pub use state::{Node, NodeError, NodeOptions};

use adapters::{AdapterAdmission, WasmGate, llm_adapter, local_adapters};
use jobs::{event_job, hex_list};
use network::jitter;
use state::*;

use crate::control::ApiQuery;
use crate::executor::{Executor, ExecutorEvent};
use crate::ledger::{Ledger, LedgerWorker, SignerQuota};
use crate::metrics::NodeMetrics;
use crate::outputs::ResultStore;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use modchain_net::SwarmDriver;
use modchain_net::behaviour::timings::REPUTATION_INTERVAL;
use modchain_net::behaviour::{NodeBehaviour, node_gossipsub};
use modchain_net::driver::BootstrapPeers;
use modchain_net::wire::{self, NetworkError};
use modchain_protocol::{
    Action, Capacity, JobId, Keypair, NodeId, OrchestratorConfig, Peer, PeerConfig, ProviderConfig,
    ReputationTable, Trust, TrustConfig,
};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

impl Node {
    /// Builds the swarm and starts listening (errors name the address),
    /// opens the ledger and sets up the adapters.
    pub async fn new(key: &Keypair, options: NodeOptions) -> Result<Self, NodeError> {
        let mut registry = libp2p::metrics::Registry::default();
        let lkey = key.to_libp2p();
        let gs = node_gossipsub(&lkey, &mut registry)?;
        let net_limits = options.limits.net(options.max_connections);
        let agent = format!("modchain/{}", crate::build_info::SOFTWARE_VERSION);
        let serve = options.relay.limits();
        let mut swarm = wire::build_swarm(lkey, Some(&mut registry), |k, relay_client| {
            NodeBehaviour::with_limits(
                k,
                &wire::agent_string(&agent),
                gs,
                &net_limits,
                Some(relay_client),
                serve.as_ref(),
            )
        })?;
        wire::join(
            &mut swarm,
            |s| &mut s.behaviour_mut().gossipsub,
            &options.listen,
        )?;
        let me = key.node_id();
        let work_dir = options.data_dir.join("work");
        // What an earlier run left (it crashed or was killed mid-job) can
        // never be delivered: start clean.
        let _ = std::fs::remove_dir_all(&work_dir);
        std::fs::create_dir_all(&work_dir).map_err(|source| NodeError::Dir {
            path: work_dir.clone(),
            source,
        })?;
        let (mut adapters, wasm) = local_adapters(&me, &options.docker, &options.wasm).await?;
        let wasm_gate = WasmGate::new(wasm);
        let peer_id = *swarm.local_peer_id();
        // A provider that looks for model changes keeps the llm adapter on
        // with no model yet: the first file dropped in is then served too.
        let rescans = options.provider && options.llm.rescan_interval().is_some();
        if let Some(llm) = llm_adapter(&options.data_dir, &options.llm, &peer_id, rescans).await {
            adapters.push(llm);
        }
        let admission = AdapterAdmission {
            adapters: adapters
                .iter()
                .map(|a| (a.name().to_string(), a.clone()))
                .collect(),
            verdicts: wasm_gate.verdicts.clone(),
            wasm: wasm_gate.wasm(),
        };
        let (mut executor, executor_events) = Executor::new(
            adapters,
            work_dir,
            options.docker.allow_network,
            options.limits.log_queue,
        );
        executor.set_output_quota(options.limits.output_quota_bytes);
        executor.set_log_quota(options.limits.log_quota_bytes);
        let provider = options.provider.then(|| {
            let ad = &options.advert;
            ProviderConfig {
                prices: ad.prices.clone(),
                capacity: Capacity {
                    cores: ad.cpu.threads.max(1),
                    memory_bytes: ad.memory.total_bytes,
                    gpus: ad.gpus.len() as u32,
                    storage_bytes: ad.storage.available_bytes,
                },
                adapters: executor.infos(),
                ..ProviderConfig::default()
            }
        });
        if let Some(p) = &provider {
            let names: Vec<&str> = p.adapters.iter().map(|a| a.name.as_str()).collect();
            tracing::info!(adapters = ?names, cores = p.capacity.cores, memory_bytes = p.capacity.memory_bytes, gpus = p.capacity.gpus, "provider role on");
        } else {
            tracing::info!("provider role off (`provider = false` in config.toml)");
        }
        let ledger = Ledger::open(&options.data_dir.join("ledger"))?;
        // The one read of the whole ledger, before the event loop starts;
        // from here on the totals follow each receipt stored.
        let totals = {
            let (ledger, grant) = (ledger.clone(), options.grant);
            tokio::task::spawn_blocking(move || ledger.totals(grant))
                .await
                .unwrap_or_default()
        };
        let limits = &options.limits;
        let (ledger_worker, stored) = LedgerWorker::start(
            ledger.clone(),
            SignerQuota::new(
                limits.receipts_per_signer_per_hour,
                Duration::from_secs(3600),
                limits.max_receipt_signers,
            ),
            limits.ledger_queue,
        );
        let (reputation_tx, reputation_rx) = mpsc::channel(1);
        let pretrusted: Vec<NodeId> = options
            .bootstrap
            .iter()
            .filter_map(|b| NodeId::from_peer_id(&b.peer_id).ok())
            .collect();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (log_feed, _) = broadcast::channel(EVENT_BUFFER);
        let jobs = JobDriver {
            executor,
            executor_events,
            provider: provider.is_some(),
            served: HashMap::new(),
            results: ResultStore::new(options.data_dir.join("results")),
            ledger,
            ledger_worker,
            stored,
            totals,
            pretrusted,
            trust: Trust::default(),
            reputation_due: Some(Instant::now()),
            reputation_running: false,
            reputation_tx,
            reputation_rx,
            receipts_seen: 0,
            receipts_new: 0,
            receipts_failed: 0,
            receipts_backlogged: 0,
            receipts_over_quota: 0,
            job_logs: HashMap::new(),
            job_log_order: Default::default(),
            log_feed,
            events,
            elected: Vec::new(),
        };
        let config = PeerConfig {
            orchestrator: options.orchestrator.then(OrchestratorConfig::default),
            provider,
            advert: options.advert.clone(),
            advert_ttl_ms: options.advert_ttl.as_millis() as u64,
            advert_interval_ms: options.advert_interval.as_millis() as u64,
            max_adverts: options.limits.max_adverts,
            ..PeerConfig::default()
        };
        let bootstrap = BootstrapPeers::from_list(&options.bootstrap, tokio::time::Instant::now());
        let mut peer = Peer::new(key.clone(), config);
        // Decline at bid time what our adapters would refuse (a missing
        // image, a module that does not compile), so such a job goes to a
        // provider that can run it and leaves no receipt.
        peer.set_admission(Box::new(admission));
        Ok(Node {
            net: SwarmDriver::new(swarm, peer, bootstrap, Box::new(jitter))
                .with_limits(net_limits)
                .with_relays(),
            me,
            metrics: NodeMetrics::new(registry, &key.to_libp2p().public().to_peer_id().to_string()),
            started: Instant::now(),
            gossip: GossipCounters::default(),
            limits_seen: LimitCounters::default(),
            nat_seen: NatCounters::default(),
            options,
            provider_lookups: HashMap::new(),
            protocol_watch: versions::ProtocolWatch::default(),
            jobs,
            wasm_gate,
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.net.local_peer_id()
    }

    /// Waits for the first listen address, so a port in use is reported
    /// before the node claims to be up.
    pub async fn wait_listening(&mut self) -> Result<Vec<Multiaddr>, NetworkError> {
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        let mut settle: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                ev = self.net.next_swarm_event() => {
                    match ev {
                        SwarmEvent::ListenerClosed { addresses, reason: Err(e), .. } => {
                            let addr = addresses.first().cloned().unwrap_or_else(Multiaddr::empty);
                            return Err(wire::listen_error(&addr, e));
                        }
                        SwarmEvent::ListenerError { error, .. } => {
                            return Err(NetworkError::Transport(error.to_string()));
                        }
                        other => {
                            let was_empty = self.net.listen_addrs().is_empty();
                            self.handle_swarm_event(other);
                            if was_empty && !self.net.listen_addrs().is_empty() {
                                settle = Some(Box::pin(tokio::time::sleep(Duration::from_millis(200))));
                            }
                        }
                    }
                }
                _ = async { if let Some(s) = settle.as_mut() { s.await } else { std::future::pending().await } } => {
                    return Ok(self.net.listen_addrs().to_vec());
                }
                _ = &mut deadline => {
                    return Err(NetworkError::Transport("no listen address came up within 10 s".into()));
                }
            }
        }
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(
        mut self,
        mut api: mpsc::Receiver<ApiQuery>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        self.recompute_reputation();
        self.net.peer_mut().start(now());
        self.drain_actions();
        let mut reputation_tick = tokio::time::interval(REPUTATION_INTERVAL);
        reputation_tick.tick().await;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut summary = tokio::time::interval(self.options.summary_interval);
        summary.tick().await;
        // The adapters' offer (models on disk, an Ollama server's list) is
        // looked at again in a task of its own: reading it can take a while.
        let (offer_tx, mut offer_rx) = mpsc::channel::<()>(1);
        let rescan = self
            .options
            .llm
            .rescan_interval()
            .filter(|_| self.jobs.provider);
        let mut offer_tick = tokio::time::interval(rescan.unwrap_or(Duration::from_secs(3600)));
        offer_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        offer_tick.tick().await;
        let mut refreshing = false;
        loop {
            let wait = self
                .net
                .peer()
                .poll_timeout()
                .map_or(Duration::from_secs(3600), |t| {
                    Duration::from_millis(t.since(now()))
                });
            tokio::select! {
                ev = self.net.next_swarm_event() => self.handle_swarm_event(ev),
                _ = tokio::time::sleep(wait) => {
                    self.net.peer_mut().handle_timeout(now());
                }
                Some(q) = api.recv() => self.answer(q),
                Some(ev) = self.jobs.executor_events.recv() => self.on_executor_event(ev),
                Some(stored) = self.jobs.stored.recv() => self.on_stored(stored),
                Some(trust) = self.jobs.reputation_rx.recv() => self.reputation_computed(trust),
                Some(checked) = self.wasm_gate.rx.recv() => {
                    if let Some(ev) = self.wasm_gate.checked(checked) {
                        self.handle_swarm_event_now(ev);
                    }
                }
                _ = tick.tick() => {
                    self.net.dial_due();
                    self.on_tick();
                }
                _ = reputation_tick.tick() => self.recompute_reputation(),
                _ = summary.tick() => self.log_summary(),
                _ = offer_tick.tick(), if rescan.is_some() && !refreshing => {
                    refreshing = true;
                    let adapters = self.jobs.executor.adapters();
                    let done = offer_tx.clone();
                    tokio::spawn(async move {
                        for a in adapters {
                            a.refresh().await;
                        }
                        let _ = done.send(()).await;
                    });
                }
                Some(()) = offer_rx.recv() => {
                    refreshing = false;
                    self.offer_refreshed();
                }
                _ = &mut shutdown => break,
            }
            self.drain_actions();
        }
        self.stop_executions().await;
        tracing::info!("node stopped");
    }

    /// Carries out what the peer asked for, then logs and counts what the
    /// network layer did meanwhile. Publications and direct messages are
    /// the driver's; the rest is the node's.
    fn drain_actions(&mut self) {
        let t = now();
        while let Some(action) = self.net.poll_action(t) {
            match action {
                Action::StoreReceipt(r) => self.store_receipt(&r),
                Action::Execute(e) => {
                    tracing::info!(job = %e.job_id.to_hex(), adapter = %e.spec.adapter, method = %e.spec.method, "starting a job we won");
                    self.metrics.execution_started(e.job_id, &e.spec.adapter);
                    self.jobs.executor.start(t, e);
                }
                Action::Stop { job_id, reason } => {
                    tracing::info!(job = %job_id.to_hex(), ?reason, "stopping a job");
                    self.jobs.executor.stop(&job_id);
                }
                Action::ServeOutput { to, request } => self.serve_output(t, to, request),
                Action::Notify(event) => {
                    // What the protocol says of a job is logged in its span.
                    let span = event_job(&event)
                        .map(|id| tracing::info_span!("job", job_id = %id.to_hex()));
                    let _entered = span.as_ref().map(|s| s.enter());
                    self.on_event(t, event)
                }
                // Carried out by the driver, which never returns them.
                Action::Publish { .. } | Action::Send { .. } => {}
            }
        }
        self.drain_net_events();
    }

    /// After the adapters looked again at what they serve: advertise the
    /// change, if any (a model added or removed).
    fn offer_refreshed(&mut self) {
        let infos = self.jobs.executor.infos();
        if !self.net.peer_mut().set_adapters(now(), infos.clone()) {
            return;
        }
        let models: Vec<&str> = infos
            .iter()
            .flat_map(|a| a.models.iter().map(|m| m.name.as_str()))
            .collect();
        tracing::info!(?models, "the offer changed; advertising it");
        self.emit("offer_changed", json!({ "models": models }));
    }

    fn log_summary(&self) {
        let jobs = self.net.peer().client().jobs().count();
        tracing::info!(
            peers = self.net.swarm().connected_peers().count(),
            adverts = self.net.peer().adverts().len(),
            jobs,
            rejected = self.net.peer().stats().rejected.values().sum::<u64>(),
            gossip_sent_bytes = self.gossip.published_bytes,
            "summary"
        );
    }

    /// At shutdown: stops the jobs still running and waits a little for the
    /// adapters to clean up (containers removed), so nothing is left behind.
    async fn stop_executions(&mut self) {
        if self.jobs.executor.running() == 0 {
            return;
        }
        tracing::info!(
            running = self.jobs.executor.running(),
            "stopping the jobs still running"
        );
        self.jobs.executor.stop_all();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while self.jobs.executor.running() > 0 {
            match tokio::time::timeout_at(deadline, self.jobs.executor_events.recv()).await {
                Ok(Some(ExecutorEvent::Finished(f))) => self.jobs.executor.forget(&f.job_id),
                Ok(Some(ExecutorEvent::Output { .. })) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Starts a reputation computation on the blocking pool, from a copy of
    /// the trust graph kept up to date receipt by receipt; its result comes
    /// back to [`reputation_computed`](Self::reputation_computed). One at a
    /// time: asked while one runs, it runs again right after.
    fn recompute_reputation(&mut self) {
        if self.jobs.reputation_running {
            self.jobs.reputation_due = Some(Instant::now());
            return;
        }
        self.jobs.reputation_due = None;
        self.jobs.reputation_running = true;
        let graph = self.jobs.totals.graph.clone();
        let pretrusted = self.jobs.pretrusted.clone();
        let done = self.jobs.reputation_tx.clone();
        tokio::task::spawn_blocking(move || {
            let trust = graph.compute(&pretrusted, &TrustConfig::default());
            let _ = done.blocking_send(trust);
        });
    }

    /// A reputation computation finished: the protocol's table follows it.
    fn reputation_computed(&mut self, trust: Trust) {
        self.jobs.reputation_running = false;
        let table: ReputationTable = trust
            .iter()
            .map(|(n, _)| (n, trust.reputation(&n)))
            .collect();
        tracing::debug!(nodes = table.len(), "reputation recomputed from the ledger");
        self.net.peer_mut().set_reputation(table);
        self.jobs.trust = trust;
    }

    /// Every half second: debounced reputation, output retention, election changes.
    fn on_tick(&mut self) {
        let instant = Instant::now();
        if self.jobs.reputation_due.is_some_and(|t| t <= instant) && !self.jobs.reputation_running {
            self.recompute_reputation();
            self.drain_actions();
        }
        let expired: Vec<JobId> = self
            .jobs
            .served
            .iter()
            .filter(|(_, (until, _))| *until <= instant)
            .map(|(j, _)| *j)
            .collect();
        for job in expired {
            self.jobs.served.remove(&job);
            self.forget_work(&job);
        }
        let limits = &self.options.limits;
        let retention = crate::outputs::Retention {
            max_bytes: limits.results_max_bytes,
            max_age: Duration::from_secs(limits.results_max_age_secs),
        };
        let pruned = self.jobs.results.prune(retention, instant);
        if pruned > 0 {
            self.limits_seen.evict("results", pruned as u64);
            tracing::info!(jobs = pruned, "pruned old results");
        }
        let (again, abandoned) = self.jobs.results.stalled(FETCH_QUIET);
        for (job, digest, offsets) in again {
            tracing::info!(job = %job.to_hex(), "output fetch went quiet; asking again");
            for offset in offsets {
                self.net
                    .peer_mut()
                    .fetch_output(now(), &job, &digest, offset);
            }
        }
        for (job, name) in abandoned {
            tracing::warn!(job = %job.to_hex(), %name, "output fetch abandoned: the provider stopped answering");
            self.emit(
                "output_rejected",
                json!({ "job_id": job.to_hex(), "name": name, "reason": "the provider stopped answering" }),
            );
        }
        self.drain_actions();
        let elected = self.net.peer_mut().elected(now());
        if elected != self.jobs.elected {
            tracing::info!(orchestrators = ?elected.iter().map(NodeId::short).collect::<Vec<_>>(), "elected orchestrators");
            self.emit(
                "election",
                json!({ "elected": hex_list(&elected), "me": elected.contains(&self.me) }),
            );
            self.jobs.elected = elected;
        }
    }
}
