//! Modchain's own REST API: health, stats, the network view, jobs,
//! receipts, reputation, balances and the event stream, with the OpenAPI
//! document generated from these handlers' annotations.

use super::edge::{ApiFail, ApiState, ask, whole};
use crate::control::{
    ApiQuery, DEFAULT_CORES, DEFAULT_JOB_TIMEOUT_MS, DEFAULT_MAX_PRICE, DEFAULT_MEMORY_BYTES,
    DEFAULT_START_WITHIN_MS, LogFeed, Refusal,
};

use crate::views::{
    BalanceView, Cancelled, ErrorBody, JobDetail, JobResultView, JobSummary, ReceiptView,
    ReputationEntry, Submitted,
};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use libp2p::futures::stream;
use modchain_protocol::{
    Credits, GpuVendor, JobId, JobSpec, MAX_START_WINDOW_MS, NodeId, Requirements, Timestamp,
    limits,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use tokio::sync::broadcast;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The API's routes, each registered with its handler's `#[utoipa::path]`
/// description, so the OpenAPI document is generated from the same list the
/// server routes by.
pub(super) fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(stats))
        .routes(routes!(nodes))
        .routes(routes!(providers))
        .routes(routes!(metrics))
        .routes(routes!(list_jobs, submit_job))
        .routes(routes!(get_job, cancel_job))
        .routes(routes!(job_logs))
        .routes(routes!(job_result))
        .routes(routes!(receipts))
        .routes(routes!(reputation))
        .routes(routes!(balance))
        .routes(routes!(events))
        .routes(routes!(login_link))
        .routes(routes!(openapi))
}

/// The OpenAPI 3.1 description of this API, generated from the handlers'
/// annotations and the request and response types.
#[cfg(test)]
pub fn openapi_document() -> Value {
    super::routes_and_document().1
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Modchain node API",
        description = "The local API of a modchain node (loopback only). Every call needs `Authorization: Bearer <token>` (the token is in api.token in the data directory; the dashboard's browser sends a session cookie instead), a `Host` that names the API (its address, `localhost`, or a name in api_allowed_hosts), and no `Origin` but the API's own: cross-origin requests are refused. Errors are `{\"error\": \"...\"}`, except on the OpenAI-compatible routes (`/v1/...`), which answer OpenAI's `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`. Prices are in micro-credits (1 credit = 1000000)."
    ),
    modifiers(&BearerScheme),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the mutating calls name.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// Liveness.
#[utoipa::path(get, path = "/health", responses((status = 200, description = "ok", body = Object)))]
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Node, network, job, receipt and ledger counters.
#[utoipa::path(get, path = "/api/v1/stats", responses((status = 200, description = "counters", body = Object), (status = 503, description = "shutting down", body = ErrorBody)))]
async fn stats(State(state): State<ApiState>) -> Result<Json<Value>, ApiFail> {
    Ok(Json(ask(&state, ApiQuery::Stats).await?))
}

/// Known peers and their adverts.
#[utoipa::path(get, path = "/api/v1/nodes", responses((status = 200, description = "peers", body = [Object]), (status = 503, description = "shutting down", body = ErrorBody)))]
async fn nodes(State(state): State<ApiState>) -> Result<Json<Value>, ApiFail> {
    Ok(Json(ask(&state, ApiQuery::Nodes).await?))
}

/// Longest capability key asked for, in characters.
const MAX_CAPABILITY_KEY_CHARS: usize = 256;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ProvidersQuery {
    /// A capability key: `cap/docker`, `cap/gpu/nvidia`, `cap/llm/<model>`,
    /// `cap/orchestrator`; at most 256 characters, no control characters.
    #[param(
        pattern = r"^cap/[^\u0000-\u001f\u007f]{1,252}$",
        example = "cap/docker"
    )]
    key: String,
}

/// Whether `key` is a capability key as the document's pattern says.
fn capability_key(key: &str) -> bool {
    key.strip_prefix("cap/").is_some_and(|rest| {
        let n = rest.chars().count();
        (1..=MAX_CAPABILITY_KEY_CHARS - 4).contains(&n)
            && !rest.chars().any(|c| c.is_control() && (c as u32) < 0x80)
    })
}

/// The peers that provide a capability key in the DHT.
#[utoipa::path(
    get,
    path = "/api/v1/providers",
    params(ProvidersQuery),
    responses(
        (status = 200, description = "`{\"key\", \"providers\": [peer ids]}`", body = Object),
        (status = 400, description = "no `key`, or not a capability key", body = ErrorBody)
    )
)]
async fn providers(
    State(state): State<ApiState>,
    query: Result<Query<ProvidersQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiFail> {
    let key = query
        .map_err(|e| ApiFail(StatusCode::BAD_REQUEST, e.body_text()))?
        .0
        .key;
    if !capability_key(&key) {
        return Err(ApiFail(
            StatusCode::BAD_REQUEST,
            "`key` is a capability key: cap/ and 1 to 252 more characters, none a control character, e.g. cap/docker".into(),
        ));
    }
    Ok(Json(
        ask(&state, |reply| ApiQuery::Providers { key, reply }).await?,
    ))
}

/// Prometheus metrics: OpenMetrics text when `Accept` asks for it (as
/// Prometheus does), Prometheus' classic text format otherwise.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "metrics", content(
    (String = "application/openmetrics-text"),
    (String = "text/plain")
))))]
async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiFail> {
    let text = ask(&state, ApiQuery::Metrics).await?;
    Ok(modchain_bootstrap::metrics::exposition(&headers, text))
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
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// `wasm`, `docker`, ...
    #[schema(
        examples("wasm", "docker"),
        min_length = 1,
        max_length = 64,
        pattern = r"^[\x21-\x7e]{1,64}$"
    )]
    pub adapter: String,
    /// Defaults to `run`.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = r"^[\x21-\x7e]{1,64}$")]
    pub method: Option<String>,
    /// The adapter's parameters (see the adapter's JSON Schema); at most
    /// 262144 bytes serialised.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Value,
    #[serde(default)]
    pub requirements: RequirementsRequest,
    /// Micro-credits; default 10 credits.
    // Whole numbers are bounded in the document at 2^53 - 1, the largest
    // every JSON reader holds exactly; the server takes up to `u64::MAX`.
    #[schema(default = 10_000_000, minimum = 0, maximum = 9_007_199_254_740_991.0)]
    #[serde(default, deserialize_with = "whole::opt")]
    pub max_price: Option<u64>,
    /// Default 60000; at most 24 hours.
    #[schema(default = 60_000, minimum = 1, maximum = 86_400_000)]
    #[serde(default, deserialize_with = "whole::opt")]
    pub timeout_ms: Option<u64>,
    /// Higher runs first when orchestrators are busy.
    #[schema(minimum = 0, maximum = 255)]
    #[serde(default, deserialize_with = "whole::opt")]
    pub priority: Option<u8>,
    /// Absolute time in ms since the epoch, which must lie in the future
    /// and at most a day ahead (the document served gives a `minimum` that
    /// stays in the future for 10 minutes after it was fetched, and the
    /// `maximum` of now + one day); default now + 10 min.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991.0)]
    #[serde(default, deserialize_with = "whole::opt")]
    pub start_by_ms: Option<u64>,
}

/// What the job needs of its provider; omitted fields take the defaults.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequirementsRequest {
    #[schema(default = 1, minimum = 0, maximum = 4_294_967_295.0)]
    #[serde(default, deserialize_with = "whole::opt")]
    pub cores: Option<u32>,
    #[schema(default = 268_435_456, minimum = 0, maximum = 9_007_199_254_740_991.0)]
    #[serde(default, deserialize_with = "whole::opt")]
    pub memory_bytes: Option<u64>,
    #[schema(minimum = 0, maximum = 4_294_967_295.0)]
    #[serde(default, deserialize_with = "whole::opt")]
    pub gpus: Option<u32>,
    /// nvidia, amd, intel, apple or other.
    #[schema(examples("nvidia"), pattern = "^(nvidia|amd|intel|apple|other)$")]
    pub gpu_vendor: Option<String>,
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991.0)]
    #[serde(default, deserialize_with = "whole::opt")]
    pub min_vram_bytes: Option<u64>,
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991.0)]
    #[serde(default, deserialize_with = "whole::opt")]
    pub storage_bytes: Option<u64>,
    #[schema(min_length = 1, max_length = 64, pattern = r"^[\x21-\x7e]{1,64}$")]
    pub model: Option<String>,
}

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

/// What the document's pattern says a name (adapter, method, model) is:
/// 1 to 64 printable ASCII characters, no space.
fn check_name(field: &str, name: &str) -> Result<(), String> {
    let ok = (1..=limits::MAX_NAME_BYTES).contains(&name.len())
        && name.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} `{name}`: 1 to {} printable ASCII characters, no space",
            limits::MAX_NAME_BYTES
        ))
    }
}

impl SubmitRequest {
    /// The job spec, with defaults filled in and the protocol's bounds checked.
    pub fn into_spec(self, now: Timestamp) -> Result<JobSpec, String> {
        check_name("adapter", &self.adapter)?;
        if let Some(m) = &self.method {
            check_name("method", m)?;
        }
        if let Some(m) = &self.requirements.model {
            check_name("requirements.model", m)?;
        }
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
            Some(t) if t > now.plus(MAX_START_WINDOW_MS).as_millis() => {
                return Err(format!(
                    "start_by_ms {t} is more than a day ahead: peers refuse a job that may wait longer than {} ms after it was signed (at most {} now)",
                    MAX_START_WINDOW_MS,
                    now.plus(MAX_START_WINDOW_MS).as_millis()
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
            timeout_ms: self.timeout_ms.unwrap_or(DEFAULT_JOB_TIMEOUT_MS),
            priority: self.priority.unwrap_or(0),
            start_by,
            nonce: random_nonce(),
        };
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }
}

/// Submit a job.
#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    request_body = SubmitRequest,
    responses(
        (status = 201, description = "submitted", body = Submitted),
        (status = 400, description = "the body does not match this schema (bad JSON, an unknown field, a value out of its bounds, `start_by_ms` not in the future or more than a day ahead), or params over 262144 bytes", body = ErrorBody),
        (status = 404, description = "no provider on the network offers the adapter (or the model)", body = ErrorBody),
        (status = 422, description = "the body matches the schema, but the adapter refuses the method or its params (e.g. a module that does not compile)", body = ErrorBody),
        (status = 503, description = "no orchestrator elected yet", body = ErrorBody)
    )
)]
async fn submit_job(
    State(state): State<ApiState>,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Submitted>), ApiFail> {
    let req = body
        .map_err(|e| {
            ApiFail(
                StatusCode::BAD_REQUEST,
                format!("bad job request: {}", e.body_text()),
            )
        })?
        .0;
    let spec = req
        .into_spec(Timestamp::now_wall())
        .map_err(|e| ApiFail(StatusCode::BAD_REQUEST, format!("invalid job: {e}")))?;
    let id = ask(&state, |reply| ApiQuery::Submit { spec, reply })
        .await?
        .map_err(|r| match r {
            // The schema cannot say what each adapter accepts: a
            // well-formed request it refuses is unprocessable, not malformed.
            Refusal::Invalid(why) => ApiFail(StatusCode::UNPROCESSABLE_ENTITY, why),
            other => ApiFail::from(other),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(Submitted {
            job_id: id.to_hex(),
        }),
    ))
}

/// This node's jobs (as client), oldest first.
#[utoipa::path(get, path = "/api/v1/jobs", responses((status = 200, description = "jobs", body = [JobSummary])))]
async fn list_jobs(State(state): State<ApiState>) -> Result<Json<Vec<JobSummary>>, ApiFail> {
    Ok(Json(ask(&state, ApiQuery::Jobs).await?))
}

/// One job, with its history and output.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    params(("id" = String, Path, description = "job id (64 hex digits)")),
    responses(
        (status = 200, description = "job", body = JobDetail),
        (status = 400, description = "not a job id", body = ErrorBody),
        (status = 404, description = "unknown job", body = ErrorBody)
    )
)]
async fn get_job(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<JobDetail>, ApiFail> {
    let id = job_id(&raw)?;
    ask(&state, |reply| ApiQuery::Job { id, reply })
        .await?
        .map(Json)
        .ok_or_else(|| ApiFail(StatusCode::NOT_FOUND, format!("no job {id} on this node")))
}

/// Cancel a job.
#[utoipa::path(
    delete,
    path = "/api/v1/jobs/{id}",
    params(("id" = String, Path, description = "job id (64 hex digits)")),
    responses(
        (status = 200, description = "cancelled", body = Cancelled),
        (status = 400, description = "not a job id", body = ErrorBody),
        (status = 404, description = "unknown job", body = ErrorBody),
        (status = 409, description = "the job already ended", body = ErrorBody)
    )
)]
async fn cancel_job(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Cancelled>, ApiFail> {
    let id = job_id(&raw)?;
    ask(&state, |reply| ApiQuery::Cancel { id, reply })
        .await?
        .map_err(ApiFail::from)?;
    Ok(Json(Cancelled {
        job_id: id.to_hex(),
        state: "cancelled".into(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    /// Stream until the job ends.
    #[serde(default)]
    follow: bool,
}

/// The job's output: live chunks received so far, or the result's stdout and
/// stderr; with `follow`, streamed until the job ends.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/logs",
    params(("id" = String, Path, description = "job id (64 hex digits)"), LogsQuery),
    responses(
        (status = 200, description = "output", content_type = "text/plain", body = String),
        (status = 400, description = "not a job id, or `follow` is not true or false", body = ErrorBody),
        (status = 404, description = "unknown job", body = ErrorBody)
    )
)]
async fn job_logs(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiFail> {
    let id = job_id(&raw)?;
    let follow = query
        .map_err(|e| ApiFail(StatusCode::BAD_REQUEST, e.body_text()))?
        .0
        .follow;
    let view = ask(&state, |reply| ApiQuery::Logs { id, reply })
        .await?
        .ok_or_else(|| ApiFail(StatusCode::NOT_FOUND, format!("no job {id} on this node")))?;
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !follow || view.ended {
        return Ok((text_plain, view.text).into_response());
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
    Ok((text_plain, Body::from_stream(s)).into_response())
}

/// The job's signed result.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/result",
    params(("id" = String, Path, description = "job id (64 hex digits)")),
    responses(
        (status = 200, description = "result", body = JobResultView),
        (status = 400, description = "not a job id", body = ErrorBody),
        (status = 404, description = "unknown job, or no result yet", body = ErrorBody)
    )
)]
async fn job_result(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<JobResultView>, ApiFail> {
    let id = job_id(&raw)?;
    match ask(&state, |reply| ApiQuery::JobResult { id, reply }).await? {
        Some(Some(v)) => Ok(Json(v)),
        Some(None) => Err(ApiFail(
            StatusCode::NOT_FOUND,
            format!("job {id} has no result yet"),
        )),
        None => Err(ApiFail(
            StatusCode::NOT_FOUND,
            format!("no job {id} on this node"),
        )),
    }
}

/// Every receipt in this node's ledger, oldest first.
#[utoipa::path(get, path = "/api/v1/receipts", responses((status = 200, description = "receipts", body = [ReceiptView])))]
async fn receipts(State(state): State<ApiState>) -> Result<Json<Vec<ReceiptView>>, ApiFail> {
    Ok(Json(ask(&state, ApiQuery::Receipts).await?))
}

/// Global trust computed from the ledger, most trusted first.
#[utoipa::path(get, path = "/api/v1/reputation", responses((status = 200, description = "reputation", body = [ReputationEntry])))]
async fn reputation(State(state): State<ApiState>) -> Result<Json<Vec<ReputationEntry>>, ApiFail> {
    Ok(Json(ask(&state, ApiQuery::Reputation).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct BalanceQuery {
    /// Another node's id (64 hex digits); default this node.
    node: Option<String>,
}

/// A credit balance derived from the ledger.
#[utoipa::path(
    get,
    path = "/api/v1/balance",
    params(BalanceQuery),
    responses(
        (status = 200, description = "balance", body = BalanceView),
        (status = 400, description = "bad node id", body = ErrorBody)
    )
)]
async fn balance(
    State(state): State<ApiState>,
    query: Result<Query<BalanceQuery>, QueryRejection>,
) -> Result<Json<BalanceView>, ApiFail> {
    let q = query
        .map_err(|e| ApiFail(StatusCode::BAD_REQUEST, e.body_text()))?
        .0;
    let node = match q.node {
        None => None,
        Some(raw) => Some(NodeId::from_hex(&raw).ok_or_else(|| {
            ApiFail(
                StatusCode::BAD_REQUEST,
                format!("`{raw}` is not a node id: expected 64 hex digits"),
            )
        })?),
    };
    Ok(Json(
        ask(&state, |reply| ApiQuery::Balance { node, reply }).await?,
    ))
}

/// The node's protocol events from now on, one JSON object per line
/// (`{at_ms, node, event, ...fields}`), until the client goes away.
#[utoipa::path(get, path = "/api/v1/events", responses((status = 200, description = "stream", content_type = "application/x-ndjson", body = String)))]
async fn events(State(state): State<ApiState>) -> Result<Response, ApiFail> {
    let rx = ask(&state, ApiQuery::Events).await?;
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
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(s),
    )
        .into_response())
}

/// A link that logs a browser on this machine into the dashboard: opened
/// once, it sets the session cookie; then it is spent.
#[utoipa::path(post, path = "/api/v1/login-links", responses(
    (status = 201, description = "`{\"url\": \"http://127.0.0.1:PORT/?token=…\"}`", body = Object),
    (status = 500, description = "the operating system's random source failed", body = ErrorBody)
))]
async fn login_link(State(state): State<ApiState>) -> Result<(StatusCode, Json<Value>), ApiFail> {
    let url = state
        .access
        .login_url()
        .map_err(|e| ApiFail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((StatusCode::CREATED, Json(json!({ "url": url }))))
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)))]
async fn openapi(State(state): State<ApiState>) -> Response {
    let doc = super::contract::with_time_bounds(&state.openapi, Timestamp::now_wall());
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into()),
    )
        .into_response()
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

        // start_by_ms: in the future, and at most a day ahead (peers refuse more).
        let at = |t: u64| -> Result<JobSpec, String> {
            serde_json::from_value::<SubmitRequest>(
                json!({ "adapter": "wasm", "params": {}, "start_by_ms": t }),
            )
            .expect("parse")
            .into_spec(now)
        };
        assert!(
            at(now.as_millis())
                .expect_err("now")
                .contains("in the past")
        );
        let day = now.plus(MAX_START_WINDOW_MS).as_millis();
        assert_eq!(at(day).expect("a day ahead").start_by, Timestamp(day));
        assert!(
            at(day + 1)
                .expect_err("past a day")
                .contains("more than a day ahead")
        );

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
    fn openapi_is_generated_from_every_route() {
        let doc = openapi_document();
        for (path, method) in [
            ("/health", "get"),
            ("/api/v1/stats", "get"),
            ("/api/v1/nodes", "get"),
            ("/metrics", "get"),
            ("/api/v1/jobs", "get"),
            ("/api/v1/jobs", "post"),
            ("/api/v1/jobs/{id}", "get"),
            ("/api/v1/jobs/{id}", "delete"),
            ("/api/v1/jobs/{id}/logs", "get"),
            ("/api/v1/jobs/{id}/result", "get"),
            ("/api/v1/receipts", "get"),
            ("/api/v1/reputation", "get"),
            ("/api/v1/balance", "get"),
            ("/api/v1/events", "get"),
            ("/api/v1/openapi.json", "get"),
            ("/v1/models", "get"),
            ("/v1/models/{model}", "get"),
            ("/v1/chat/completions", "post"),
            ("/v1/completions", "post"),
            ("/v1/embeddings", "post"),
        ] {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing"
            );
        }
        assert_eq!(doc["openapi"], json!("3.1.0"));
        // Mutating calls name the bearer scheme, and it is declared.
        for (path, method) in [
            ("/api/v1/jobs", "post"),
            ("/api/v1/jobs/{id}", "delete"),
            ("/v1/chat/completions", "post"),
            ("/v1/completions", "post"),
            ("/v1/embeddings", "post"),
        ] {
            assert_eq!(
                doc["paths"][path][method]["security"][0]["bearer"],
                json!([])
            );
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            json!("bearer")
        );
        // Response schemas come from the view types' fields.
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in [
            ("ReceiptView", "receipt_id"),
            ("ReceiptView", "outcome"),
            ("JobSummary", "provider"),
            ("JobResultView", "usage"),
            ("SubmitRequest", "adapter"),
            ("RequirementsRequest", "gpu_vendor"),
            ("BalanceView", "balance_micro"),
            ("ReputationEntry", "trust"),
        ] {
            assert!(
                schemas[schema]["properties"][field].is_object(),
                "{schema}.{field} missing: {}",
                schemas[schema]
            );
        }
        // The OpenAI-compatible routes list every status they answer, each
        // error in OpenAI's shape.
        for path in ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"] {
            let responses = &doc["paths"][path]["post"]["responses"];
            for status in ["200", "400", "401", "404", "500", "502", "503"] {
                assert!(responses[status].is_object(), "{path} {status}");
            }
            assert_eq!(
                responses["404"]["content"]["application/json"]["schema"]["$ref"],
                json!("#/components/schemas/OpenAiErrorBody")
            );
        }
        assert!(schemas["OpenAiError"]["properties"]["type"].is_object());
        // The request bodies' schemas come from their types (the sampling
        // fields flattened in).
        let chat = schemas["ChatCompletionRequest"].to_string();
        assert!(
            chat.contains("messages") && chat.contains("SamplingFields"),
            "{chat}"
        );
        assert!(schemas["SamplingFields"]["properties"]["temperature"].is_object());
        assert_eq!(
            doc["paths"]["/api/v1/receipts"]["get"]["responses"]["200"]["content"]["application/json"]
                ["schema"]["items"]["$ref"],
            json!("#/components/schemas/ReceiptView")
        );
    }

    /// A response the node builds must match the schema the document gives
    /// for it: every field the schema names is there and nothing else.
    #[test]
    fn receipt_view_fields_match_its_schema() {
        let doc = openapi_document();
        let schema = &doc["components"]["schemas"]["ReceiptView"]["properties"];
        let view = crate::views::ReceiptView {
            receipt_id: "r".into(),
            job_id: "j".into(),
            attempt: 0,
            client: "c".into(),
            provider: "p".into(),
            orchestrator: "o".into(),
            outcome: "executed".into(),
            exit_code: Some(0),
            exit: None,
            failure: None,
            price: 1,
            wall_ms: 2,
            issued_at_ms: 3,
        };
        let v = serde_json::to_value(view).expect("serialise");
        let mut a: Vec<&String> = v.as_object().expect("object").keys().collect();
        let mut b: Vec<&String> = schema.as_object().expect("object").keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
}
