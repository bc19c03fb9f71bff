//! The local HTTP API on 127.0.0.1: health, stats, the network view, jobs,
//! receipts, reputation, balances and the event stream. The running node
//! answers through a channel; the API holds no state of its own but the
//! token. At start it writes `api.url` and a fresh bearer token (`api.token`,
//! mode 0600) to the data directory; mutating calls require
//! `Authorization: Bearer <token>`. Every error is JSON: `{"error": "..."}`.

use crate::datadir::{DataDir, DataDirError};
use crate::node::{ApiQuery, LogFeed, Refusal};
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use libp2p::futures::stream;
use modchain_protocol::advert::GpuVendor;
use modchain_protocol::job::{JobSpec, Requirements, limits};
use modchain_protocol::pricing::Credits;
use modchain_protocol::{JobId, NodeId, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot};

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
    token: String,
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
            .route("/api/v1/jobs", get(list_jobs).post(submit_job))
            .route("/api/v1/jobs/{id}", get(get_job).delete(cancel_job))
            .route("/api/v1/jobs/{id}/logs", get(job_logs))
            .route("/api/v1/jobs/{id}/result", get(job_result))
            .route("/api/v1/receipts", get(receipts))
            .route("/api/v1/reputation", get(reputation))
            .route("/api/v1/balance", get(balance))
            .route("/api/v1/events", get(events))
            .route("/api/v1/openapi.json", get(openapi))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(ApiState { node, token });
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

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    ApiFail(status, message.into()).into_response()
}

/// An error answer, as `{"error": "..."}` with its status.
#[derive(Debug)]
struct ApiFail(StatusCode, String);

impl IntoResponse for ApiFail {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn refused(r: Refusal) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    error(status, r.error)
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method; see /api/v1/openapi.json",
    )
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /api/v1/openapi.json for the API",
    )
}

/// Checks `Authorization: Bearer <token>` in constant time.
fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiFail> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = given.is_some_and(|g| {
        g.len() == state.token.len()
            && g.bytes()
                .zip(state.token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        Ok(())
    } else {
        Err(ApiFail(
            StatusCode::UNAUTHORIZED,
            "this call needs `Authorization: Bearer <token>`; the token is in api.token in the node's data directory".into(),
        ))
    }
}

fn job_id(raw: &str) -> Result<JobId, ApiFail> {
    JobId::from_hex(raw).ok_or_else(|| {
        ApiFail(
            StatusCode::BAD_REQUEST,
            format!("`{raw}` is not a job id: expected 64 hex digits"),
        )
    })
}

/// `POST /api/v1/jobs` body.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// `wasm`, `docker`, ...
    pub adapter: String,
    /// Defaults to `run`.
    #[serde(default)]
    pub method: Option<String>,
    /// The adapter's parameters (any JSON).
    #[serde(default)]
    pub params: Value,
    #[serde(default)]
    pub requirements: RequirementsRequest,
    /// Micro-credits; default 10 credits.
    #[serde(default)]
    pub max_price: Option<u64>,
    /// Default 60000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub priority: Option<u8>,
    /// Absolute time in ms since the epoch; default now + 10 min.
    #[serde(default)]
    pub start_by_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequirementsRequest {
    pub cores: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub gpus: Option<u32>,
    pub gpu_vendor: Option<String>,
    pub min_vram_bytes: Option<u64>,
    pub storage_bytes: Option<u64>,
    pub model: Option<String>,
}

pub const DEFAULT_MAX_PRICE: u64 = 10_000_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_CORES: u32 = 1;
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
pub const DEFAULT_START_WITHIN_MS: u64 = 10 * 60_000;

fn gpu_vendor(s: &str) -> Option<GpuVendor> {
    match s.to_ascii_lowercase().as_str() {
        "nvidia" => Some(GpuVendor::Nvidia),
        "amd" => Some(GpuVendor::Amd),
        "intel" => Some(GpuVendor::Intel),
        "apple" => Some(GpuVendor::Apple),
        "other" => Some(GpuVendor::Other),
        _ => None,
    }
}

fn random_nonce() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

impl SubmitRequest {
    /// The job spec, with defaults filled in and the protocol's bounds checked.
    pub fn into_spec(self, now: Timestamp) -> Result<JobSpec, String> {
        let params = if self.params.is_null() {
            "{}".to_string()
        } else {
            serde_json::to_string(&self.params).map_err(|e| format!("params: {e}"))?
        };
        if params.len() > limits::MAX_PARAMS_BYTES {
            return Err(format!(
                "params are {} bytes, over the {} byte limit",
                params.len(),
                limits::MAX_PARAMS_BYTES
            ));
        }
        let r = self.requirements;
        let vendor = match r.gpu_vendor.as_deref() {
            None => None,
            Some(v) => Some(gpu_vendor(v).ok_or_else(|| {
                format!(
                    "requirements.gpu_vendor `{v}`: expected nvidia, amd, intel, apple or other"
                )
            })?),
        };
        let start_by = match self.start_by_ms {
            None => now.plus(DEFAULT_START_WITHIN_MS),
            Some(t) if t <= now.as_millis() => {
                return Err(format!(
                    "start_by_ms {t} is in the past (now is {})",
                    now.as_millis()
                ));
            }
            Some(t) => Timestamp(t),
        };
        let spec = JobSpec {
            adapter: self.adapter,
            method: self.method.unwrap_or_else(|| "run".into()),
            params,
            requirements: Requirements {
                cores: r.cores.unwrap_or(DEFAULT_CORES),
                memory_bytes: r.memory_bytes.unwrap_or(DEFAULT_MEMORY_BYTES),
                gpus: r.gpus.unwrap_or(0),
                gpu_vendor: vendor,
                min_vram_bytes: r.min_vram_bytes.unwrap_or(0),
                storage_bytes: r.storage_bytes.unwrap_or(0),
                model: r.model,
            },
            max_price: Credits(self.max_price.unwrap_or(DEFAULT_MAX_PRICE)),
            timeout_ms: self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            priority: self.priority.unwrap_or(0),
            start_by,
            nonce: random_nonce(),
        };
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }
}

async fn submit_job(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r.into_response();
    }
    let req = match body {
        Ok(Json(b)) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad job request: {}", e.body_text()),
            );
        }
    };
    let spec = match req.into_spec(Timestamp::now_wall()) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid job: {e}")),
    };
    match ask(&state, |reply| ApiQuery::Submit { spec, reply }).await {
        Some(Ok(id)) => {
            (StatusCode::CREATED, Json(json!({ "job_id": id.to_hex() }))).into_response()
        }
        Some(Err(r)) => refused(r),
        None => unavailable(),
    }
}

async fn list_jobs(State(state): State<ApiState>) -> Response {
    match ask(&state, ApiQuery::Jobs).await {
        Some(v) => Json(v).into_response(),
        None => unavailable(),
    }
}

async fn get_job(State(state): State<ApiState>, Path(raw): Path<String>) -> Response {
    let id = match job_id(&raw) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match ask(&state, |reply| ApiQuery::Job { id, reply }).await {
        Some(Some(v)) => Json(v).into_response(),
        Some(None) => error(StatusCode::NOT_FOUND, format!("no job {id} on this node")),
        None => unavailable(),
    }
}

async fn cancel_job(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r.into_response();
    }
    let id = match job_id(&raw) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match ask(&state, |reply| ApiQuery::Cancel { id, reply }).await {
        Some(Ok(())) => {
            Json(json!({ "job_id": id.to_hex(), "state": "cancelled" })).into_response()
        }
        Some(Err(r)) => refused(r),
        None => unavailable(),
    }
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
}

async fn job_logs(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Response {
    let id = match job_id(&raw) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let follow = match query {
        Ok(Query(q)) => q.follow,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let view = match ask(&state, |reply| ApiQuery::Logs { id, reply }).await {
        Some(Some(v)) => v,
        Some(None) => return error(StatusCode::NOT_FOUND, format!("no job {id} on this node")),
        None => return unavailable(),
    };
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !follow || view.ended {
        return (text_plain, view.text).into_response();
    }
    // What came so far, then each new piece until the job ends.
    struct Follow {
        first: Option<Vec<u8>>,
        feed: broadcast::Receiver<LogFeed>,
        id: JobId,
    }
    let s = stream::unfold(
        Follow {
            first: Some(view.text),
            feed: view.feed,
            id,
        },
        |mut f| async move {
            if let Some(first) = f.first.take() {
                return Some((Ok::<_, Infallible>(first), f));
            }
            loop {
                match f.feed.recv().await {
                    Ok(LogFeed { job_id, data }) if job_id == f.id => match data {
                        Some(d) => return Some((Ok(d), f)),
                        None => return None,
                    },
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    (text_plain, Body::from_stream(s)).into_response()
}

async fn job_result(State(state): State<ApiState>, Path(raw): Path<String>) -> Response {
    let id = match job_id(&raw) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match ask(&state, |reply| ApiQuery::JobResult { id, reply }).await {
        Some(Some(Some(v))) => Json(v).into_response(),
        Some(Some(None)) => error(StatusCode::NOT_FOUND, format!("job {id} has no result yet")),
        Some(None) => error(StatusCode::NOT_FOUND, format!("no job {id} on this node")),
        None => unavailable(),
    }
}

async fn receipts(State(state): State<ApiState>) -> Response {
    match ask(&state, ApiQuery::Receipts).await {
        Some(v) => Json(v).into_response(),
        None => unavailable(),
    }
}

async fn reputation(State(state): State<ApiState>) -> Response {
    match ask(&state, ApiQuery::Reputation).await {
        Some(v) => Json(v).into_response(),
        None => unavailable(),
    }
}

#[derive(Debug, Deserialize)]
struct BalanceQuery {
    node: Option<String>,
}

async fn balance(
    State(state): State<ApiState>,
    query: Result<Query<BalanceQuery>, QueryRejection>,
) -> Response {
    let node = match query {
        Ok(Query(q)) => match q.node {
            None => None,
            Some(raw) => match NodeId::from_hex(&raw) {
                Some(n) => Some(n),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("`{raw}` is not a node id: expected 64 hex digits"),
                    );
                }
            },
        },
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match ask(&state, |reply| ApiQuery::Balance { node, reply }).await {
        Some(v) => Json(v).into_response(),
        None => unavailable(),
    }
}

/// `GET /api/v1/events`: the node's events as newline-delimited JSON, from
/// now on, until the client goes away.
async fn events(State(state): State<ApiState>) -> Response {
    let Some(rx) = ask(&state, ApiQuery::Events).await else {
        return unavailable();
    };
    let s = stream::unfold(rx, |mut rx| async move {
        let line = match rx.recv().await {
            Ok(line) => line,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                json!({ "event": "lagged", "missed": n }).to_string()
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(format!("{line}\n")), rx))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(s),
    )
        .into_response()
}

async fn openapi() -> Json<Value> {
    Json(crate::api::openapi_document())
}

/// The OpenAPI 3.1 description of this API, written from the request and
/// response types above (kept beside them; a test checks every route is in it).
pub fn openapi_document() -> Value {
    let err = json!({ "$ref": "#/components/schemas/Error" });
    let json_resp = |desc: &str, schema: Value| json!({ "description": desc, "content": { "application/json": { "schema": schema } } });
    let error_resp = |desc: &str| json_resp(desc, err.clone());
    let id_param = json!({
        "name": "id", "in": "path", "required": true,
        "description": "job id (64 hex digits)",
        "schema": { "type": "string", "pattern": "^[0-9a-f]{64}$" }
    });
    let bearer = json!([{ "bearer": [] }]);
    let hex = json!({ "type": "string", "description": "64 hex digits" });
    let nullable = |t: &str| json!({ "type": [t, "null"] });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Modchain node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The local API of a modchain node (loopback only). Mutating calls need `Authorization: Bearer <token>` (the token is in api.token in the data directory). Errors are `{\"error\": \"...\"}`. Prices are in micro-credits (1 credit = 1000000)."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "Requirements": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "cores": { "type": "integer", "minimum": 1, "default": DEFAULT_CORES },
                        "memory_bytes": { "type": "integer", "default": DEFAULT_MEMORY_BYTES },
                        "gpus": { "type": "integer", "default": 0 },
                        "gpu_vendor": { "type": "string", "enum": ["nvidia", "amd", "intel", "apple", "other"] },
                        "min_vram_bytes": { "type": "integer", "default": 0 },
                        "storage_bytes": { "type": "integer", "default": 0 },
                        "model": { "type": "string" }
                    }
                },
                "SubmitRequest": {
                    "type": "object", "additionalProperties": false, "required": ["adapter"],
                    "properties": {
                        "adapter": { "type": "string", "examples": ["wasm", "docker"] },
                        "method": { "type": "string", "default": "run" },
                        "params": { "description": "the adapter's parameters (see the adapter's JSON Schema); at most 262144 bytes serialised" },
                        "requirements": { "$ref": "#/components/schemas/Requirements" },
                        "max_price": { "type": "integer", "default": DEFAULT_MAX_PRICE, "description": "micro-credits" },
                        "timeout_ms": { "type": "integer", "default": DEFAULT_TIMEOUT_MS, "minimum": 1, "maximum": limits::MAX_TIMEOUT_MS },
                        "priority": { "type": "integer", "minimum": 0, "maximum": 255, "default": 0 },
                        "start_by_ms": { "type": "integer", "description": "absolute ms since the epoch; default now + 10 min" }
                    }
                },
                "Submitted": { "type": "object", "required": ["job_id"], "properties": { "job_id": hex } },
                "OutputFile": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" }, "size": { "type": "integer" }, "digest": hex,
                        "inline": { "type": "boolean" },
                        "path": { "type": ["string", "null"], "description": "local path once stored under <data-dir>/results/<job-id>/" }
                    }
                },
                "Job": {
                    "type": "object",
                    "properties": {
                        "job_id": hex,
                        "state": { "type": "string", "enum": ["queued", "bidding", "awarded", "running", "completed", "failed", "cancelled"] },
                        "detail": { "type": "string" },
                        "adapter": { "type": "string" }, "method": { "type": "string" },
                        "submitted_at_ms": { "type": "integer" },
                        "orchestrator": nullable("string"), "provider": nullable("string"),
                        "history": { "type": "array", "items": { "type": "object", "properties": { "at_ms": { "type": "integer" }, "state": { "type": "string" } } } },
                        "price": nullable("integer"), "receipt_id": nullable("string"),
                        "exit_code": nullable("integer"), "exit": nullable("string"),
                        "stdout": nullable("string"), "stderr": nullable("string"),
                        "max_price": { "type": "integer" }, "timeout_ms": { "type": "integer" },
                        "outputs": { "type": "array", "items": { "$ref": "#/components/schemas/OutputFile" } },
                        "outputs_pending": { "type": "integer" },
                        "results_dir": { "type": "string" }
                    }
                },
                "JobResult": {
                    "type": "object",
                    "properties": {
                        "job_id": hex, "provider": nullable("string"), "attempt": { "type": "integer" },
                        "exit_code": { "type": "integer" }, "exit": { "type": "string" },
                        "stdout": { "type": "string" }, "stderr": { "type": "string" },
                        "usage": { "type": "object", "properties": { "wall_ms": { "type": "integer" }, "cpu_ms": { "type": "integer" }, "peak_memory_bytes": { "type": "integer" }, "tokens": { "type": "integer" } } },
                        "finished_at_ms": { "type": "integer" }, "result_digest": hex,
                        "receipt_id": nullable("string"), "price": nullable("integer"),
                        "results_dir": { "type": "string" }, "outputs_pending": { "type": "integer" },
                        "outputs": { "type": "array", "items": { "$ref": "#/components/schemas/OutputFile" } }
                    }
                },
                "Receipt": {
                    "type": "object",
                    "properties": {
                        "receipt_id": hex, "job_id": hex, "attempt": { "type": "integer" },
                        "client": hex, "provider": hex, "orchestrator": hex,
                        "outcome": { "type": "string", "enum": ["executed", "provider_failed"] },
                        "exit_code": nullable("integer"), "exit": nullable("string"), "failure": nullable("string"),
                        "price": { "type": "integer", "description": "micro-credits" },
                        "wall_ms": { "type": "integer" }, "issued_at_ms": { "type": "integer" }
                    }
                },
                "Reputation": {
                    "type": "object",
                    "properties": {
                        "node_id": hex, "peer_id": nullable("string"),
                        "trust": { "type": "number", "description": "share of global trust (EigenTrust), sums to 1" },
                        "reputation": { "type": "integer", "description": "trust relative to the most trusted node, parts per million" },
                        "pretrusted": { "type": "boolean" }
                    }
                },
                "Balance": {
                    "type": "object",
                    "properties": { "node_id": hex, "balance_micro": { "type": "integer" }, "balance": { "type": "number" } }
                }
            }
        },
        "paths": {
            "/health": { "get": { "summary": "liveness", "responses": { "200": json_resp("ok", json!({ "type": "object" })) } } },
            "/api/v1/stats": { "get": { "summary": "node, network, job, receipt and ledger counters", "responses": { "200": json_resp("counters", json!({ "type": "object" })) } } },
            "/api/v1/nodes": { "get": { "summary": "known peers and their adverts", "responses": { "200": json_resp("peers", json!({ "type": "array", "items": { "type": "object" } })) } } },
            "/api/v1/providers/{key}": { "get": { "summary": "DHT lookup of a capability key (cap/docker, cap/gpu/nvidia, ...)", "parameters": [{ "name": "key", "in": "path", "required": true, "schema": { "type": "string" } }], "responses": { "200": json_resp("providers", json!({ "type": "object" })), "400": error_resp("not a cap/ key") } } },
            "/metrics": { "get": { "summary": "Prometheus / OpenMetrics text", "responses": { "200": { "description": "metrics", "content": { "application/openmetrics-text": {} } } } } },
            "/api/v1/jobs": {
                "get": { "summary": "this node's jobs (as client), oldest first", "responses": { "200": json_resp("jobs", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Job" } })) } },
                "post": {
                    "summary": "submit a job", "security": bearer,
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SubmitRequest" } } } },
                    "responses": {
                        "201": json_resp("submitted", json!({ "$ref": "#/components/schemas/Submitted" })),
                        "400": error_resp("invalid job: bad body, params over the limit, unknown adapter on the network, params the adapter refuses"),
                        "401": error_resp("missing or wrong bearer token"),
                        "503": error_resp("no orchestrator elected yet")
                    }
                }
            },
            "/api/v1/jobs/{id}": {
                "get": { "summary": "one job", "parameters": [id_param.clone()], "responses": { "200": json_resp("job", json!({ "$ref": "#/components/schemas/Job" })), "404": error_resp("unknown job") } },
                "delete": { "summary": "cancel a job", "security": bearer, "parameters": [id_param.clone()], "responses": { "200": json_resp("cancelled", json!({ "type": "object" })), "401": error_resp("missing or wrong bearer token"), "404": error_resp("unknown job"), "409": error_resp("the job already ended") } }
            },
            "/api/v1/jobs/{id}/logs": {
                "get": {
                    "summary": "the job's output: live chunks received so far, or the result's stdout and stderr",
                    "parameters": [id_param.clone(), { "name": "follow", "in": "query", "schema": { "type": "boolean", "default": false }, "description": "stream until the job ends" }],
                    "responses": { "200": { "description": "output", "content": { "text/plain": {} } }, "404": error_resp("unknown job") }
                }
            },
            "/api/v1/jobs/{id}/result": { "get": { "summary": "the job's signed result", "parameters": [id_param], "responses": { "200": json_resp("result", json!({ "$ref": "#/components/schemas/JobResult" })), "404": error_resp("unknown job, or no result yet") } } },
            "/api/v1/receipts": { "get": { "summary": "every receipt in this node's ledger, oldest first", "responses": { "200": json_resp("receipts", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Receipt" } })) } } },
            "/api/v1/reputation": { "get": { "summary": "global trust computed from the ledger, most trusted first", "responses": { "200": json_resp("reputation", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Reputation" } })) } } },
            "/api/v1/balance": { "get": { "summary": "credit balance from the ledger", "parameters": [{ "name": "node", "in": "query", "schema": hex, "description": "another node's id; default this node" }], "responses": { "200": json_resp("balance", json!({ "$ref": "#/components/schemas/Balance" })), "400": error_resp("bad node id") } } },
            "/api/v1/events": { "get": { "summary": "the node's protocol events from now on, one JSON object per line: {at_ms, node, event, ...fields}", "responses": { "200": { "description": "stream", "content": { "application/x-ndjson": {} } } } } },
            "/api/v1/openapi.json": { "get": { "summary": "this document", "responses": { "200": json_resp("OpenAPI 3.1", json!({ "type": "object" })) } } }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_request_fills_defaults_and_checks_bounds() {
        let now = Timestamp(1_700_000_000_000);
        let req: SubmitRequest =
            serde_json::from_value(json!({ "adapter": "wasm", "params": { "wat": "(module)" } }))
                .expect("parse");
        let spec = req.into_spec(now).expect("spec");
        assert_eq!(spec.method, "run");
        assert_eq!(spec.requirements.cores, 1);
        assert_eq!(spec.requirements.memory_bytes, 256 << 20);
        assert_eq!(spec.max_price, Credits(10_000_000));
        assert_eq!(spec.timeout_ms, 60_000);
        assert_eq!(spec.start_by, now.plus(600_000));
        assert_eq!(spec.params, r#"{"wat":"(module)"}"#);

        let big = "x".repeat(limits::MAX_PARAMS_BYTES);
        let req: SubmitRequest =
            serde_json::from_value(json!({ "adapter": "wasm", "params": { "wat": big } }))
                .expect("parse");
        assert!(req.into_spec(now).expect_err("too big").contains("limit"));

        let req: SubmitRequest =
            serde_json::from_value(json!({ "adapter": "wasm", "timeout_ms": 0 })).expect("parse");
        assert!(req.into_spec(now).is_err());
        let req: SubmitRequest = serde_json::from_value(
            json!({ "adapter": "docker", "requirements": { "gpu_vendor": "NVIDIA" } }),
        )
        .expect("parse");
        assert_eq!(
            req.into_spec(now).expect("spec").requirements.gpu_vendor,
            Some(GpuVendor::Nvidia)
        );
        assert!(
            serde_json::from_value::<SubmitRequest>(json!({ "adapter": "wasm", "cpus": 2 }))
                .is_err()
        );
    }

    #[test]
    fn openapi_lists_every_route() {
        let doc = openapi_document();
        for path in [
            "/api/v1/jobs",
            "/api/v1/jobs/{id}",
            "/api/v1/jobs/{id}/logs",
            "/api/v1/jobs/{id}/result",
            "/api/v1/receipts",
            "/api/v1/reputation",
            "/api/v1/balance",
            "/api/v1/events",
            "/api/v1/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert_eq!(
            doc["paths"]["/api/v1/jobs"]["post"]["security"][0]["bearer"],
            json!([])
        );
    }
}
