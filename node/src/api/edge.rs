//! What every handler of the API shares: its state, error answers (with the
//! HTTP status chosen here for each typed refusal of the node), and asking
//! the running node.

use super::guard::Access;
use crate::control::{ApiQuery, Refusal};
use crate::views::ErrorBody;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

#[derive(Clone, Debug)]
pub(crate) struct ApiState {
    pub(super) node: mpsc::Sender<ApiQuery>,
    /// The token, the dashboard's logins and sessions, the names the API answers to.
    pub(super) access: Arc<Access>,
    /// The OpenAPI document, generated once from the REST routes.
    pub(super) openapi: Arc<serde_json::Value>,
}

/// A bound API server, ready to run.
pub(super) fn unavailable() -> ApiFail {
    ApiFail(
        StatusCode::SERVICE_UNAVAILABLE,
        "the node is shutting down".into(),
    )
}

pub(crate) async fn ask<T>(
    state: &ApiState,
    make: impl FnOnce(oneshot::Sender<T>) -> ApiQuery,
) -> Result<T, ApiFail> {
    let (tx, rx) = oneshot::channel();
    state.node.send(make(tx)).await.map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())
}

/// An error answer, as `{"error": "..."}` with its status.
#[derive(Debug)]
pub(crate) struct ApiFail(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiFail {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

/// The HTTP status of each refusal, chosen here at the edge.
impl From<Refusal> for ApiFail {
    fn from(r: Refusal) -> Self {
        let status = match &r {
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            // Nothing on the network offers it: the adapter or model named
            // is not found, though the request is well formed.
            Refusal::NotOffered(_) => StatusCode::NOT_FOUND,
            Refusal::NoOrchestrator(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::UnknownJob(_) => StatusCode::NOT_FOUND,
            Refusal::AlreadyEnded(_) => StatusCode::CONFLICT,
        };
        ApiFail(status, r.to_string())
    }
}

pub(super) async fn method_not_allowed() -> ApiFail {
    ApiFail(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method; see /api/v1/openapi.json".into(),
    )
}

pub(super) async fn not_found() -> ApiFail {
    ApiFail(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /api/v1/openapi.json for the API".into(),
    )
}
