//! The local HTTP API on 127.0.0.1: health, stats and the network view. The
//! running node answers through a channel; the API holds no state of its own.
//! At start it writes `api.url` and a fresh bearer token (`api.token`, mode
//! 0600) to the data directory; mutating endpoints (later issues) require it.

use crate::datadir::{DataDir, DataDirError};
use crate::node::ApiQuery;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Error)]
pub enum ApiError {
    #[error(
        "cannot serve the API on {addr}: the port is in use; pick another with --api 127.0.0.1:PORT (0 for any free port) or `api` in config.toml"
    )]
    PortInUse { addr: SocketAddr },
    #[error("cannot serve the API on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("the operating system's random source failed: {0}")]
    Randomness(String),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
}

#[derive(Clone, Debug)]
struct ApiState {
    node: mpsc::Sender<ApiQuery>,
}

/// A bound API server, ready to run.
#[derive(Debug)]
pub struct Api {
    listener: tokio::net::TcpListener,
    router: Router,
    pub url: String,
}

fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Randomness(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Api {
    /// Binds `addr`, writes `api.url` and a new `api.token`.
    pub async fn bind(
        addr: SocketAddr,
        data_dir: &DataDir,
        node: mpsc::Sender<ApiQuery>,
    ) -> Result<Self, ApiError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|cause| {
            if cause.kind() == std::io::ErrorKind::AddrInUse {
                ApiError::PortInUse { addr }
            } else {
                ApiError::Bind { addr, cause }
            }
        })?;
        let local = listener
            .local_addr()
            .map_err(|cause| ApiError::Bind { addr, cause })?;
        let url = format!("http://{local}");
        let token = random_token()?;
        data_dir.write_file(&data_dir.api_token_path(), token.as_bytes(), true)?;
        data_dir.write_file(
            &data_dir.api_url_path(),
            format!("{url}\n").as_bytes(),
            false,
        )?;
        let router = Router::new()
            .route("/health", get(health))
            .route("/api/v1/stats", get(stats))
            .route("/api/v1/nodes", get(nodes))
            .route("/api/v1/providers/{*key}", get(providers))
            .route("/metrics", get(metrics))
            .with_state(ApiState { node });
        Ok(Api {
            listener,
            router,
            url,
        })
    }

    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "the node is shutting down" })),
    )
        .into_response()
}

async fn ask<T>(state: &ApiState, make: impl FnOnce(oneshot::Sender<T>) -> ApiQuery) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    state.node.send(make(tx)).await.ok()?;
    rx.await.ok()
}

async fn stats(State(state): State<ApiState>) -> Response {
    match ask(&state, ApiQuery::Stats).await {
        Some(v) => Json(v).into_response(),
        None => unavailable(),
    }
}

async fn nodes(State(state): State<ApiState>) -> Response {
    match ask(&state, ApiQuery::Nodes).await {
        Some(v) => Json(v).into_response(),
        None => unavailable(),
    }
}

/// `GET /api/v1/providers/cap/docker`: the peers that provide a capability
/// key in the DHT.
async fn providers(State(state): State<ApiState>, Path(key): Path<String>) -> Response {
    let key = key.trim_start_matches('/').to_string();
    if !key.starts_with("cap/") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "capability keys start with cap/, e.g. cap/docker" })),
        )
            .into_response();
    }
    match ask(&state, |reply| ApiQuery::Providers { key, reply }).await {
        Some(v) => Json(v).into_response(),
        None => unavailable(),
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    match ask(&state, ApiQuery::Metrics).await {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => unavailable(),
    }
}
