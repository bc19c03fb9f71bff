//! The local HTTP API on 127.0.0.1, where requests become `control`
//! queries and typed refusals become HTTP statuses: health, stats, the network view, jobs,
//! receipts, reputation, balances and the event stream. The running node
//! answers through a channel; the API holds no state of its own but the
//! token. At start it writes `api.url` and a fresh bearer token (`api.token`,
//! mode 0600) to the data directory; mutating calls require
//! `Authorization: Bearer <token>`. Every error is JSON: `{"error": "..."}`.
//!
//! | Module | Serves |
//! |---|---|
//! | [`edge`] | what every handler shares: the state, error answers (a status for each `control::Refusal`), the bearer check, asking the node |
//! | [`rest`] | Modchain's own REST API (`/api/v1/...`, `/health`) and its generated OpenAPI document |
//! | [`inference`] | what the Ollama and OpenAI routes share: the network's models, a request submitted as an `llm` job, its output followed to the end |
//! | [`ollama`] | Ollama's API, answered by the network's providers |
//! | [`openai`] | OpenAI's API (`/v1/...`), answered by the network's providers |
//! | [`dashboard`] | the embedded web dashboard |

mod dashboard;
mod edge;
mod inference;
mod ollama;
mod openai;
mod rest;

use edge::{ApiState, method_not_allowed, not_found};

use crate::control::ApiQuery;
use crate::datadir::{DataDir, DataDirError};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::mpsc;

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

/// The routes the OpenAPI document describes, with their descriptions:
/// Modchain's own and OpenAI's.
fn documented_routes() -> utoipa_axum::router::OpenApiRouter<ApiState> {
    rest::api_routes().merge(openai::routes())
}

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
        let (routes, doc) = documented_routes().split_for_parts();
        let openapi = Arc::new(doc.to_pretty_json().unwrap_or_else(|_| "{}".into()));
        let router: Router = routes
            .merge(dashboard::routes())
            .merge(ollama::routes())
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(ApiState {
                node,
                token,
                openapi,
            });
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
