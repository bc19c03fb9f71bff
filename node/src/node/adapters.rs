//! Which adapters this node runs (wasm always; docker when enabled and the
//! daemon answers; llm when it has models or an Ollama server), and the
//! provider's bid-time check against them.

use super::state::*;
use crate::config::{DockerSettings, LlmSettings};
use libp2p::PeerId;
use modchain_adapters::docker::{DockerAdapter, DockerConfig};
#[cfg(feature = "llm-embedded")]
use modchain_adapters::llm::embedded::{EmbeddedBackend, EmbeddedConfig};
use modchain_adapters::llm::ollama::OllamaBackend;
use modchain_adapters::llm::{LlmAdapter, LlmBackend};
use modchain_adapters::wasm::WasmAdapter;
use modchain_adapters::{Adapter, AdapterError};
use modchain_protocol::{Admission, AdmissionRefusal, JobSpec, NodeId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the docker adapter re-lists the images present.
const IMAGE_REFRESH: Duration = Duration::from_secs(15);

/// The provider's bid-time check: would the local adapter accept this job?
pub(super) struct AdapterAdmission(pub(super) BTreeMap<String, Arc<dyn Adapter>>);

impl std::fmt::Debug for AdapterAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AdapterAdmission")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Admission for AdapterAdmission {
    fn admit(&self, spec: &JobSpec) -> Result<(), AdmissionRefusal> {
        let adapter = self.0.get(&spec.adapter).ok_or_else(|| {
            AdmissionRefusal::Unsupported(format!("no `{}` adapter here", spec.adapter))
        })?;
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

/// The adapters this node runs: wasm always; docker when enabled and the
/// daemon answers (then containers a crashed run of this node left are removed).
pub(super) async fn local_adapters(
    me: &NodeId,
    docker: &DockerSettings,
) -> Result<Vec<Arc<dyn Adapter>>, NodeError> {
    let wasm = WasmAdapter::new().map_err(NodeError::Wasm)?;
    let mut list: Vec<Arc<dyn Adapter>> = vec![Arc::new(wasm)];
    if !docker.enabled {
        tracing::info!("docker adapter off (`[docker] enabled = false`)");
        return Ok(list);
    }
    let config = DockerConfig {
        allow_pull: docker.allow_pull,
        allowed_images: docker.allowed_images.clone(),
        allow_network: docker.allow_network,
        node: me.to_hex(),
        ..DockerConfig::default()
    };
    let adapter = match DockerAdapter::connect(config) {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(error = %e, "docker adapter off: no container runtime");
            return Ok(list);
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
    Ok(list)
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
