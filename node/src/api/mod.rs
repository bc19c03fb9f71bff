//! The local HTTP API on 127.0.0.1, where requests become `control`
//! queries and typed refusals become HTTP statuses: health, stats, the network view, jobs,
//! receipts, reputation, balances and the event stream. The running node
//! answers through a channel; the API holds no state of its own but its
//! credentials. At start it writes `api.url` and a fresh bearer token
//! (`api.token`, mode 0600) to the data directory; every call but the
//! dashboard's page and assets requires `Authorization: Bearer <token>` (or a
//! dashboard session), names the API in `Host`, and comes from no other
//! origin (see [`guard`]). Every error is JSON: `{"error": "..."}`.
//!
//! | Module | Serves |
//! |---|---|
//! | [`guard`] | what every request passes first: the `Host` check, cross-origin requests refused, the token or the dashboard's session (and its one-time login links) |
//! | [`edge`] | what every handler shares: the state, error answers (a status for each `control::Refusal`), asking the node |
//! | [`rest`] | Modchain's own REST API (`/api/v1/...`, `/health`) and its generated OpenAPI document |
//! | [`inference`] | what the Ollama and OpenAI routes share: the network's models, a request submitted as an `llm` job, its output followed to the end |
//! | [`ollama`] | Ollama's API, answered by the network's providers |
//! | [`openai`] | OpenAI's API (`/v1/...`), answered by the network's providers |
//! | [`dashboard`] | the embedded web dashboard |

mod contract;
mod dashboard;
mod edge;
mod guard;
mod inference;
mod ollama;
mod openai;
mod rest;

use edge::{ApiState, method_not_allowed, not_found};

use crate::control::ApiQuery;
use crate::datadir::{DataDir, DataDirError};
use axum::Router;
use guard::Access;
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

/// The routes, and the OpenAPI document that describes them, completed
/// with what every route shares (see [`contract`]).
fn routes_and_document() -> (Router<ApiState>, serde_json::Value) {
    let (routes, doc) = documented_routes().split_for_parts();
    let doc = serde_json::to_value(doc).unwrap_or_default();
    (routes, contract::complete(doc))
}

#[derive(Debug)]
pub struct Api {
    listener: tokio::net::TcpListener,
    router: Router,
    access: Arc<Access>,
    pub url: String,
}

pub(crate) fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Randomness(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Api {
    /// Binds `addr`, writes `api.url` and a new `api.token`. Requests must
    /// name the bound address (or `localhost`, or one of `allowed_hosts`)
    /// in `Host`.
    pub async fn bind(
        addr: SocketAddr,
        allowed_hosts: &[String],
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
        let (routes, doc) = routes_and_document();
        let openapi = Arc::new(doc);
        let access = Arc::new(Access::new(token, local, allowed_hosts));
        let state = ApiState {
            node,
            access: access.clone(),
            openapi,
        };
        let router: Router = routes
            .merge(dashboard::routes())
            .merge(ollama::routes())
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            // Outermost: nothing is answered before the guard has passed it.
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                guard::check,
            ))
            .with_state(state);
        Ok(Api {
            listener,
            router,
            access,
            url,
        })
    }

    /// A new one-time link that logs a browser into the dashboard.
    pub fn login_url(&self) -> Result<String, ApiError> {
        self.access.login_url()
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
