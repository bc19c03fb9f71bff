//! Metrics over HTTP, shared by the node and the bootstrap peer: one
//! `prometheus-client` registry (encoded by `modchain_net::metrics`), served
//! at `/metrics` as OpenMetrics to scrapers that ask for it and as
//! Prometheus' classic text format to the rest (a plain `curl`, `promtool
//! check metrics`).

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use libp2p::metrics::Registry;
use modchain_net::metrics::{encode, to_prometheus_text};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// OpenMetrics' content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus' classic text format's content type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The answer to `GET /metrics`: OpenMetrics text when the scraper's
/// `Accept` names it (Prometheus itself does), else the classic format.
pub fn exposition(headers: &HeaderMap, openmetrics: String) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], openmetrics).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            to_prometheus_text(&openmetrics),
        )
            .into_response()
    }
}

/// Serves `GET /metrics` from `registry` on `addr` (port 0 picks one) in a
/// background task, for the life of the process: the bootstrap peer's only
/// HTTP endpoint. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Mutex<Registry>>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let registry = registry.clone();
            async move {
                let text = match registry.lock() {
                    Ok(r) => encode(&r),
                    // A panic elsewhere poisoned the lock; the registry
                    // itself is still whole (encoding only reads it).
                    Err(poisoned) => encode(&poisoned.into_inner()),
                };
                exposition(&headers, text)
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(local)
}

/// `serve`, then writes the URL to `metrics.url` in `data_dir` and logs it.
pub async fn serve_and_record(
    addr: SocketAddr,
    registry: Arc<Mutex<Registry>>,
    data_dir: &std::path::Path,
) -> Result<String, MetricsError> {
    let local = serve(addr, registry)
        .await
        .map_err(|cause| MetricsError::Bind { addr, cause })?;
    let url = format!("http://{local}/metrics");
    let file = data_dir.join("metrics.url");
    std::fs::write(&file, format!("{url}\n")).map_err(|cause| MetricsError::Write {
        path: file.display().to_string(),
        cause,
    })?;
    tracing::info!(%url, "serving metrics");
    Ok(url)
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot serve metrics on {addr}: {cause}; pick another address with --metrics HOST:PORT (port 0 for any free one)"
    )]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("cannot write {path}: {cause}")]
    Write { path: String, cause: std::io::Error },
}
