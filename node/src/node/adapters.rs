//! Which adapters this node runs (wasm always; docker when enabled and the
//! daemon answers; llm when it has models or an Ollama server), and the
//! provider's bid-time check against them.
//!
//! A wasm module is checked off the event loop: a call for bids that
//! carries a wasm job is held ([`WasmGate`]) while a blocking task verifies
//! it and validates the module with `wasmparser`; the verdict comes back as
//! an event, is remembered by the digest of the job's parameters, and the
//! call is then handed to the network layer as if it had just arrived, so
//! the protocol's admission check ([`AdapterAdmission`]) answers it from
//! memory and the bid (or decline) goes out.

use super::state::*;
use crate::config::{DockerSettings, LlmSettings, WasmSettings};
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, request_response};
use modchain_adapters::docker::{DockerAdapter, DockerConfig};
#[cfg(feature = "llm-embedded")]
use modchain_adapters::llm::embedded::{EmbeddedBackend, EmbeddedConfig};
use modchain_adapters::llm::ollama::OllamaBackend;
use modchain_adapters::llm::{LlmAdapter, LlmBackend};
use modchain_adapters::wasm::{WasmAdapter, WasmConfig};
use modchain_adapters::{Adapter, AdapterError};
use modchain_net::behaviour::NodeBehaviourEvent;
use modchain_protocol::{
    Admission, AdmissionRefusal, CallForBids, Digest, Envelope, JobSpec, Kind, Message, NodeId,
};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the docker adapter re-lists the images present.
const IMAGE_REFRESH: Duration = Duration::from_secs(15);
/// Calls for bids held at once while their modules are checked; more are
/// handed on unchecked, and the admission check declines them.
const MAX_HELD_CALLS: usize = 64;
/// Module verdicts remembered (the oldest forgotten first): a call for a
/// job seen before is answered without another check.
const MAX_VERDICTS: usize = 4096;
/// Longest refusal kept with a verdict.
const MAX_VERDICT_TEXT: usize = 512;
/// The adapter whose jobs are checked off the loop.
const WASM: &str = "wasm";

/// Verdicts on wasm jobs' modules by digest of the job's parameters, written
/// when a check ends and read by the admission check.
#[derive(Debug, Default)]
pub(super) struct Verdicts {
    by_params: HashMap<Digest, Result<(), String>>,
    order: VecDeque<Digest>,
    /// Checks the admission check started itself, under way.
    checking: HashSet<Digest>,
    pub(super) counts: GateCounts,
}

impl Verdicts {
    fn insert(&mut self, key: Digest, verdict: Result<(), String>) {
        match &verdict {
            Ok(()) => self.counts.valid += 1,
            Err(_) => self.counts.invalid += 1,
        }
        if self.by_params.insert(key, verdict).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > MAX_VERDICTS {
            if let Some(old) = self.order.pop_front() {
                self.by_params.remove(&old);
            }
        }
    }
}

/// The provider's bid-time check: would the local adapter accept this job?
/// Answers from memory: a wasm job from the verdict its module's check left.
pub(super) struct AdapterAdmission {
    pub(super) adapters: BTreeMap<String, Arc<dyn Adapter>>,
    pub(super) verdicts: Arc<Mutex<Verdicts>>,
    pub(super) wasm: Arc<WasmAdapter>,
}

impl std::fmt::Debug for AdapterAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AdapterAdmission")
            .field(&self.adapters.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Admission for AdapterAdmission {
    fn admit(&self, spec: &JobSpec) -> Result<(), AdmissionRefusal> {
        let adapter = self.adapters.get(&spec.adapter).ok_or_else(|| {
            AdmissionRefusal::Unsupported(format!("no `{}` adapter here", spec.adapter))
        })?;
        if spec.adapter == WASM {
            let key = Digest::of(spec.params.as_bytes());
            let Ok(mut verdicts) = self.verdicts.lock() else {
                return Err(AdmissionRefusal::Unsupported("cannot check modules".into()));
            };
            return match verdicts.by_params.get(&key).cloned() {
                Some(Ok(())) => Ok(()),
                Some(Err(why)) => Err(AdmissionRefusal::InvalidParams(why)),
                // Not checked yet: a call our own orchestrator role sent
                // us (it never crosses the swarm, so the gate never held
                // it) or one handed on past the gate's cap. Check it off
                // the loop now; the orchestrator's next round finds the
                // verdict.
                None => {
                    if verdicts.checking.len() < MAX_HELD_CALLS
                        && verdicts.checking.insert(key)
                        && let Ok(rt) = tokio::runtime::Handle::try_current()
                    {
                        let (wasm, shared, spec) =
                            (self.wasm.clone(), self.verdicts.clone(), spec.clone());
                        rt.spawn_blocking(move || {
                            let verdict = check_spec(&wasm, &spec);
                            if let Ok(mut v) = shared.lock() {
                                v.checking.remove(&key);
                                v.insert(key, verdict);
                            }
                        });
                    } else {
                        verdicts.counts.overflow += 1;
                    }
                    Err(AdmissionRefusal::Unsupported(
                        "checking the module; ask again".into(),
                    ))
                }
            };
        }
        let params: serde_json::Value = serde_json::from_str(&spec.params).map_err(|e| {
            AdmissionRefusal::InvalidParams(format!("params are not valid JSON: {e}"))
        })?;
        adapter
            .validate(&spec.method, &params)
            .map_err(|e| match e {
                AdapterError::InvalidParams(_) => AdmissionRefusal::InvalidParams(e.to_string()),
                other => AdmissionRefusal::Unsupported(other.to_string()),
            })
    }
}

/// The verdict of a blocking check on a held call for bids.
#[derive(Debug)]
pub(super) struct Checked {
    ticket: u64,
    /// The parameters' digest and the verdict on the module, when the call
    /// opened and carried a wasm job.
    verdict: Option<(Digest, Result<(), String>)>,
}

/// Counts of the checks, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct GateCounts {
    pub(super) valid: u64,
    pub(super) invalid: u64,
    /// Handed on unchecked: too many checks were under way.
    pub(super) overflow: u64,
}

/// Holds calls for bids that carry a wasm job while a blocking task checks
/// them; see the module documentation.
pub(super) struct WasmGate {
    wasm: Arc<WasmAdapter>,
    pub(super) verdicts: Arc<Mutex<Verdicts>>,
    held: HashMap<u64, SwarmEvent<NodeBehaviourEvent>>,
    next: u64,
    tx: mpsc::Sender<Checked>,
    pub(super) rx: mpsc::Receiver<Checked>,
}

impl WasmGate {
    pub(super) fn new(wasm: Arc<WasmAdapter>) -> Self {
        // Never full: at most MAX_HELD_CALLS checks are under way.
        let (tx, rx) = mpsc::channel(MAX_HELD_CALLS + 1);
        WasmGate {
            wasm,
            verdicts: Arc::default(),
            held: HashMap::new(),
            next: 0,
            tx,
            rx,
        }
    }

    /// Calls held now.
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }

    pub(super) fn cache_stats(&self) -> modchain_adapters::wasm::ModuleCacheStats {
        self.wasm.cache_stats()
    }

    /// Counts of the checks, whoever started them.
    pub(super) fn counts(&self) -> GateCounts {
        self.verdicts.lock().map(|v| v.counts).unwrap_or_default()
    }

    pub(super) fn wasm(&self) -> Arc<WasmAdapter> {
        self.wasm.clone()
    }

    /// Takes a direct message that is a call for bids for a wasm job whose
    /// module has no verdict yet, to check off the loop, and gives back
    /// every other event to handle now.
    pub(super) fn hold(
        &mut self,
        ev: SwarmEvent<NodeBehaviourEvent>,
    ) -> Option<SwarmEvent<NodeBehaviourEvent>> {
        let SwarmEvent::Behaviour(NodeBehaviourEvent::Messages(request_response::Event::Message {
            message: request_response::Message::Request { request, .. },
            ..
        })) = &ev
        else {
            return Some(ev);
        };
        // Read, not verified (the network layer verifies what it is handed):
        // only whether to hold the call depends on it.
        let Some(params) = wasm_params(request) else {
            return Some(ev);
        };
        let known = self
            .verdicts
            .lock()
            .is_ok_and(|v| v.by_params.contains_key(&Digest::of(params.as_bytes())));
        if known {
            return Some(ev);
        }
        if self.held.len() >= MAX_HELD_CALLS {
            // Handed on unchecked: the admission check declines it.
            return Some(ev);
        }
        let bytes = request.clone();
        let ticket = self.next;
        self.next += 1;
        self.held.insert(ticket, ev);
        let wasm = self.wasm.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let verdict = check_call(&wasm, &bytes);
            let _ = tx.try_send(Checked { ticket, verdict });
        });
        None
    }

    /// A check ended: its verdict is remembered, and the call it held is
    /// given back to be handled now.
    pub(super) fn checked(&mut self, c: Checked) -> Option<SwarmEvent<NodeBehaviourEvent>> {
        if let Some((key, verdict)) = c.verdict
            && let Ok(mut v) = self.verdicts.lock()
        {
            v.insert(key, verdict);
        }
        self.held.remove(&c.ticket)
    }
}

/// The parameters of the wasm job a call for bids carries, read without
/// checking a signature: `None` for any other message or job.
fn wasm_params(bytes: &[u8]) -> Option<String> {
    let envelope = Envelope::decode(bytes).ok()?;
    if envelope.kind != Kind::CallForBids {
        return None;
    }
    let call: CallForBids =
        modchain_protocol::decode(&envelope.payload, Kind::CallForBids.max_payload_bytes()).ok()?;
    if call.job.kind != Kind::Job {
        return None;
    }
    let spec: JobSpec =
        modchain_protocol::decode(&call.job.payload, Kind::Job.max_payload_bytes()).ok()?;
    (spec.adapter == WASM).then_some(spec.params)
}

/// Opens a call for bids and, when it carries a wasm job, checks the job's
/// module: the verdict under the digest of its parameters. Runs on a
/// blocking pool. `None` when the call does not open or is not for wasm:
/// the network layer and the protocol judge it as they judge any message.
fn check_call(wasm: &WasmAdapter, bytes: &[u8]) -> Option<(Digest, Result<(), String>)> {
    let call = Envelope::decode(bytes).ok()?.verify().ok()?;
    let Message::CallForBids(call) = call.message() else {
        return None;
    };
    let job = call.job.clone().verify().ok()?;
    let Message::Job(spec) = job.message() else {
        return None;
    };
    if spec.adapter != WASM {
        return None;
    }
    Some((Digest::of(spec.params.as_bytes()), check_spec(wasm, spec)))
}

/// The verdict on a wasm job's module: the adapter's bid-time check with
/// the memory the job will run with (see the executor).
fn check_spec(wasm: &WasmAdapter, spec: &JobSpec) -> Result<(), String> {
    let memory = spec.requirements.memory_bytes.max(16 << 20);
    serde_json::from_str::<serde_json::Value>(&spec.params)
        .map_err(|e| AdapterError::InvalidParams(format!("params are not valid JSON: {e}")))
        .and_then(|params| wasm.check(&spec.method, &params, memory))
        .map(|_| ())
        .map_err(|e| {
            let mut why = e.to_string();
            why.truncate(why.floor_char_boundary(MAX_VERDICT_TEXT));
            why
        })
}

/// The adapters this node runs: wasm always; docker when enabled and the
/// daemon answers (then containers a crashed run of this node left are
/// removed). The wasm adapter also comes back on its own, for the gate.
pub(super) async fn local_adapters(
    me: &NodeId,
    docker: &DockerSettings,
    wasm: &WasmSettings,
) -> Result<(Vec<Arc<dyn Adapter>>, Arc<WasmAdapter>), NodeError> {
    let wasm = Arc::new(
        WasmAdapter::with_config(WasmConfig {
            module_cache_bytes: wasm.module_cache_mib.saturating_mul(1 << 20),
        })
        .map_err(NodeError::Wasm)?,
    );
    let mut list: Vec<Arc<dyn Adapter>> = vec![wasm.clone()];
    if !docker.enabled {
        tracing::info!("docker adapter off (`[docker] enabled = false`)");
        return Ok((list, wasm));
    }
    if docker.allowed_images.is_empty() {
        tracing::warn!(
            "docker adapter: `[docker] allowed_images` is empty, so no image may run; list the images jobs may run in config.toml"
        );
    }
    let config = DockerConfig {
        allow_pull: docker.allow_pull,
        allowed_images: docker.allowed_images.clone(),
        require_digest: docker.require_digest,
        allow_network: docker.allow_network,
        node: me.to_hex(),
        ..DockerConfig::default()
    };
    let adapter = match DockerAdapter::connect(config) {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(error = %e, "docker adapter off: no container runtime");
            return Ok((list, wasm));
        }
    };
    match tokio::time::timeout(DOCKER_PING_TIMEOUT, adapter.ping()).await {
        Ok(Ok(version)) => {
            match adapter.remove_orphans().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "removed containers left by an earlier run"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list containers left by an earlier run")
                }
            }
            tracing::info!(%version, "docker adapter on");
            // Keep the list of local images fresh for bid-time admission.
            if let Err(e) = adapter.refresh_images().await {
                tracing::warn!(error = %e, "cannot list docker images");
            }
            let refresher = adapter.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(IMAGE_REFRESH).await;
                    if let Err(e) = refresher.refresh_images().await {
                        tracing::debug!(error = %e, "cannot list docker images");
                    }
                }
            });
            list.push(Arc::new(adapter));
        }
        Ok(Err(e)) => tracing::info!(error = %e, "docker adapter off: the daemon did not answer"),
        Err(_) => tracing::info!("docker adapter off: the daemon did not answer within 3 s"),
    }
    Ok((list, wasm))
}

/// The llm adapter: GGUF files in `<data-dir>/models/` and `[llm] models`,
/// in this process; an Ollama server's models when `[llm] ollama_url` is
/// set. With `rescans` (a provider that looks for model changes) it is on
/// even with nothing to serve yet, and an Ollama server that does not
/// answer now is asked again at each rescan; without, it is on only when
/// it has a model to serve.
pub(super) async fn llm_adapter(
    data_dir: &std::path::Path,
    settings: &LlmSettings,
    me: &PeerId,
    rescans: bool,
) -> Option<Arc<dyn Adapter>> {
    let mut backends: Vec<Arc<dyn LlmBackend>> = Vec::new();
    #[cfg(feature = "llm-embedded")]
    {
        let embedded = EmbeddedBackend::new(EmbeddedConfig::new(
            Some(data_dir.join("models")),
            settings.models.clone(),
        ));
        for problem in embedded.problems() {
            tracing::warn!(%problem, "llm: a model file cannot be served");
        }
        backends.push(Arc::new(embedded));
    }
    #[cfg(not(feature = "llm-embedded"))]
    {
        // Say why GGUF files are not served, rather than ignoring them.
        let _ = data_dir;
        if !settings.models.is_empty() {
            tracing::warn!(
                "llm: `[llm] models` is set, but this build has no embedded backend (built without the `llm-embedded` feature); only an Ollama server's models are served"
            );
        }
    }
    if let Some(url) = &settings.ollama_url {
        match OllamaBackend::new(url) {
            Err(e) => tracing::warn!(%url, error = %e, "llm: the Ollama server is not served"),
            Ok(b) => {
                // Named in every call, so that a Modchain node at `url` of
                // this provider's own network refuses rather than loops.
                let mut b = b.with_via(me.to_string());
                if let Some(token) = &settings.ollama_token {
                    b = b.with_token(token);
                }
                let answered = tokio::time::timeout(Duration::from_secs(5), b.refresh()).await;
                let why = match answered {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("it did not answer within 5 s".to_string()),
                };
                match why {
                    None => backends.push(Arc::new(b)),
                    Some(why) if rescans => {
                        tracing::warn!(%url, error = %why, "llm: the Ollama server is not served yet; asked again at each rescan");
                        backends.push(Arc::new(b));
                    }
                    Some(why) => {
                        tracing::warn!(%url, error = %why, "llm: the Ollama server is not served")
                    }
                }
            }
        }
    }
    let adapter = LlmAdapter::new(backends);
    let served = adapter.served();
    let names: Vec<&str> = served.iter().map(|m| m.name.as_str()).collect();
    if served.is_empty() {
        if !rescans {
            tracing::info!(
                "llm adapter off: no model in <data-dir>/models, `[llm] models` or Ollama"
            );
            return None;
        }
        tracing::info!(
            "llm adapter on with no model yet: a GGUF file put in <data-dir>/models is served within `[llm] rescan_seconds`"
        );
    } else {
        tracing::info!(models = ?names, "llm adapter on");
    }
    Some(Arc::new(adapter))
}
