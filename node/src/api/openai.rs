//! OpenAI's API on every node, so the OpenAI SDKs and the agent frameworks
//! built on them work against the network by changing only their base URL
//! (`<api.url>/v1`) and key (the node's bearer token): `GET /v1/models`
//! lists the models the network offers, and `POST /v1/chat/completions`,
//! `POST /v1/completions` and `POST /v1/embeddings` each become an `llm` job
//! on the network, as the Ollama-compatible routes do (auction, execution
//! on a provider, receipt). Streamed answers are server-sent events
//! (`data: {...}`, ending with `data: [DONE]`) sent while the provider
//! generates. Errors are OpenAI's shape, `{"error": {"message", "type",
//! "param", "code"}}`. Fields OpenAI accepts that mean nothing here
//! (`presence_penalty`, `logit_bias`, `user`, `tools`, ...) are accepted and
//! ignored. Submitting needs the bearer token, as every mutating call of
//! this API does; OpenAI's clients send their key as exactly that header.

use super::edge::{ApiFail, ApiState, whole};
use super::inference::{self, Failure, Finished, JobFeed, Piece, find, network_models, parse};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use libp2p::futures::stream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Tokens `/v1/completions` generates when the request does not say:
/// OpenAI's own default for that endpoint.
const DEFAULT_COMPLETION_MAX_TOKENS: u32 = 16;

/// The routes, each with its `#[utoipa::path]` description for the API's
/// OpenAPI document.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_models))
        .routes(routes!(retrieve_model))
        .routes(routes!(chat_completions))
        .routes(routes!(completions))
        .routes(routes!(embeddings))
}

// ---- Errors ------------------------------------------------------------------

/// OpenAI's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiError,
}

/// What went wrong, as OpenAI's clients read it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiError {
    pub message: String,
    /// `invalid_request_error`, `authentication_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// `model_not_found`, `invalid_api_key`, or none.
    pub code: Option<String>,
}

/// Every error a route that runs a job can answer, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Described, never built: the handlers answer `OpenAiFail`.
enum JobErrors {
    /// Bad body or parameters; a prompt or input over the model's context
    /// length (every provider refused it).
    #[response(status = 400)]
    BadRequest(OpenAiErrorBody),
    /// Missing or wrong bearer token.
    #[response(status = 401)]
    Unauthorized(OpenAiErrorBody),
    /// No provider offers the model.
    #[response(status = 404)]
    NotFound(OpenAiErrorBody),
    /// The job failed.
    #[response(status = 500)]
    Failed(OpenAiErrorBody),
    /// The provider running the job was lost (the network re-auctions it).
    #[response(status = 502)]
    Lost(OpenAiErrorBody),
    /// No orchestrator elected yet, or the node is shutting down.
    #[response(status = 503)]
    Unavailable(OpenAiErrorBody),
}

/// An error answer in OpenAI's shape, with its HTTP status.
#[derive(Debug)]
struct OpenAiFail {
    status: StatusCode,
    message: String,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl OpenAiFail {
    fn invalid(param: &'static str, message: String) -> Self {
        OpenAiFail {
            status: StatusCode::BAD_REQUEST,
            message,
            param: Some(param),
            code: None,
        }
    }

    /// A model the network does not offer: 404, naming the field.
    fn model(e: ApiFail) -> Self {
        let mut f = OpenAiFail::from(e);
        if f.status == StatusCode::NOT_FOUND {
            f.param = Some("model");
            f.code = Some("model_not_found");
        }
        f
    }

    fn body(&self) -> OpenAiErrorBody {
        let kind = match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        OpenAiErrorBody {
            error: OpenAiError {
                message: self.message.clone(),
                kind: kind.into(),
                param: self.param.map(str::to_string),
                code: self.code.map(str::to_string),
            },
        }
    }
}

/// The node's refusals and failures keep their status; only the shape changes.
impl From<ApiFail> for OpenAiFail {
    fn from(ApiFail(status, message): ApiFail) -> Self {
        OpenAiFail {
            status,
            message,
            param: None,
            code: (status == StatusCode::UNAUTHORIZED).then_some("invalid_api_key"),
        }
    }
}

impl From<Failure> for OpenAiFail {
    fn from(f: Failure) -> Self {
        OpenAiFail::from(ApiFail::from(f))
    }
}

/// An answer of the guard in front of every route (wrong host, foreign
/// origin, no token), in OpenAI's shape for OpenAI's clients.
pub(super) fn refusal(status: StatusCode, message: String) -> Response {
    OpenAiFail::from(ApiFail(status, message)).into_response()
}

impl IntoResponse for OpenAiFail {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

// ---- Requests ----------------------------------------------------------------

/// Text, or a list of texts (OpenAI's `stop`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The sampling fields the llm adapter understands.
#[derive(Debug, Default, Deserialize, ToSchema)]
struct SamplingFields {
    /// 0 to 2; 0 picks the most likely token every time.
    temperature: Option<f32>,
    top_p: Option<f32>,
    /// The same seed, model and request give the same text.
    #[schema(minimum = 0, maximum = 4_294_967_295.0)]
    #[serde(default, deserialize_with = "whole::opt")]
    seed: Option<i64>,
    /// Tokens to generate at most.
    #[schema(minimum = 0, maximum = 4_294_967_295.0)]
    #[serde(default, deserialize_with = "whole::opt")]
    max_tokens: Option<u32>,
    /// Generation ends before the first of these.
    stop: Option<OneOrMany>,
    /// Only 1.
    #[schema(minimum = 1, maximum = 1)]
    #[serde(default, deserialize_with = "whole::opt")]
    n: Option<u32>,
}

impl SamplingFields {
    /// The adapter's `options`: what OpenAI's names say, in its words.
    fn options(self, max_tokens: Option<u32>) -> Result<Value, OpenAiFail> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(OpenAiFail::invalid(
                "n",
                "only one choice per request (`n` = 1) is served".into(),
            ));
        }
        let mut o = Map::new();
        if let Some(t) = self.temperature {
            o.insert("temperature".into(), json!(t));
        }
        if let Some(p) = self.top_p {
            o.insert("top_p".into(), json!(p));
        }
        if let Some(seed) = self.seed {
            let seed = u32::try_from(seed).map_err(|_| {
                OpenAiFail::invalid(
                    "seed",
                    format!("`seed` must be between 0 and {}, got {seed}", u32::MAX),
                )
            })?;
            o.insert("seed".into(), json!(seed));
        }
        if let Some(m) = max_tokens.or(self.max_tokens) {
            o.insert("max_tokens".into(), json!(m));
        }
        if let Some(stop) = self.stop {
            o.insert("stop".into(), json!(stop.into_vec()));
        }
        Ok(Value::Object(o))
    }
}

/// One message of a chat.
#[derive(Debug, Deserialize, ToSchema)]
struct ChatMessageIn {
    /// `system`, `developer` (taken as `system`), `user` or `assistant`.
    role: String,
    /// Text, or a list of parts of which only `text` ones are served.
    #[schema(value_type = Object)]
    content: Option<Value>,
}

impl ChatMessageIn {
    fn text(&self) -> Result<String, OpenAiFail> {
        match &self.content {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Array(parts)) => parts
                .iter()
                .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("text"), Some(t)) => Ok(t),
                    _ => Err(OpenAiFail::invalid(
                        "messages",
                        format!(
                            "only text content parts are served, not `{}`",
                            p["type"].as_str().unwrap_or("?")
                        ),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|t| t.concat()),
            Some(_) => Err(OpenAiFail::invalid(
                "messages",
                "a message's `content` is text or a list of text parts".into(),
            )),
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
struct StreamOptions {
    /// Send a last chunk with the `usage` of the whole request.
    #[serde(default)]
    include_usage: bool,
}

/// `POST /v1/chat/completions` body.
#[derive(Debug, Deserialize, ToSchema)]
struct ChatCompletionRequest {
    model: String,
    messages: Vec<ChatMessageIn>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// Newer name of `max_tokens`.
    #[schema(minimum = 0, maximum = 4_294_967_295.0)]
    #[serde(default, deserialize_with = "whole::opt")]
    max_completion_tokens: Option<u32>,
    #[serde(flatten)]
    sampling: SamplingFields,
}

/// `POST /v1/completions` body.
#[derive(Debug, Deserialize, ToSchema)]
struct CompletionRequest {
    model: String,
    /// Text continued as it is, with no chat template; a list of one text
    /// is taken too.
    prompt: OneOrMany,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    sampling: SamplingFields,
}

/// `POST /v1/embeddings` body.
#[derive(Debug, Deserialize, ToSchema)]
struct EmbeddingRequest {
    model: String,
    /// A text or a list of texts (token arrays are not served).
    #[schema(value_type = OneOrMany)]
    input: Value,
    /// `float` (default) or `base64` (little-endian f32, as OpenAI's
    /// clients ask by default).
    #[serde(default)]
    #[schema(pattern = "^(float|base64)$")]
    encoding_format: Option<String>,
}

// ---- Handlers ----------------------------------------------------------------

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn model_object(name: &str, created: u64) -> Value {
    json!({ "id": name, "object": "model", "created": created, "owned_by": "modchain" })
}

/// The models the network offers, from the providers' adverts.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "openai",
    responses(
        (status = 200, description = "`{\"object\": \"list\", \"data\": [{\"id\", \"object\": \"model\", \"created\", \"owned_by\"}]}`", body = Object),
        (status = 503, description = "the node is shutting down", body = OpenAiErrorBody)
    )
)]
async fn list_models(State(state): State<ApiState>) -> Result<Json<Value>, OpenAiFail> {
    let models = network_models(&state).await?;
    let created = unix_now();
    let data: Vec<Value> = models
        .iter()
        .map(|m| model_object(&m.info.name, created))
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// One model the network offers.
#[utoipa::path(
    get,
    path = "/v1/models/{model}",
    tag = "openai",
    params(("model" = String, Path, description = "a model name, as `/v1/models` lists it")),
    responses(
        (status = 200, description = "`{\"id\", \"object\": \"model\", \"created\", \"owned_by\"}`", body = Object),
        (status = 404, description = "no provider offers the model", body = OpenAiErrorBody),
        (status = 503, description = "the node is shutting down", body = OpenAiErrorBody)
    )
)]
async fn retrieve_model(
    State(state): State<ApiState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, OpenAiFail> {
    let models = network_models(&state).await?;
    let m = find(&models, &model).map_err(OpenAiFail::model)?;
    Ok(Json(model_object(&m.info.name, unix_now())))
}

/// The model as the network offers it, or a 404 naming the field.
async fn resolve(state: &ApiState, model: &str) -> Result<String, OpenAiFail> {
    let models = network_models(state).await?;
    Ok(find(&models, model)
        .map_err(OpenAiFail::model)?
        .info
        .name
        .clone())
}

/// A chat turned into the next message, as an `llm` job on the network.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "openai",
    request_body = ChatCompletionRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a `chat.completion` object; with `stream`, `text/event-stream` of `chat.completion.chunk` objects ending with `data: [DONE]`", body = Object),
        JobErrors
    )
)]
async fn chat_completions(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Response, OpenAiFail> {
    let req: ChatCompletionRequest = parse(&body)?;
    let model = resolve(&state, &req.model).await?;
    let messages = req
        .messages
        .iter()
        .map(|m| {
            // OpenAI's newer name for the system role.
            let role = if m.role == "developer" {
                "system"
            } else {
                m.role.as_str()
            };
            Ok(json!({ "role": role, "content": m.text()? }))
        })
        .collect::<Result<Vec<Value>, OpenAiFail>>()?;
    let params = json!({
        "messages": messages,
        "options": req.sampling.options(req.max_completion_tokens)?,
    });
    let feed = inference::submit(&state, "openai", &model, "chat", params).await?;
    let head = Head::new(Kind::Chat, &feed, model);
    answer(feed, head, req.stream, req.stream_options).await
}

/// A prompt continued as it is (no chat template), as an `llm` job.
#[utoipa::path(
    post,
    path = "/v1/completions",
    tag = "openai",
    request_body = CompletionRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a `text_completion` object; with `stream`, `text/event-stream` of them ending with `data: [DONE]`", body = Object),
        JobErrors
    )
)]
async fn completions(State(state): State<ApiState>, body: Bytes) -> Result<Response, OpenAiFail> {
    let req: CompletionRequest = parse(&body)?;
    let model = resolve(&state, &req.model).await?;
    let prompt = match req.prompt {
        OneOrMany::One(p) => p,
        OneOrMany::Many(mut v) if v.len() == 1 => v.remove(0),
        OneOrMany::Many(_) => {
            return Err(OpenAiFail::invalid(
                "prompt",
                "one prompt per request is served, not a list of several".into(),
            ));
        }
    };
    let max_tokens = req
        .sampling
        .max_tokens
        .unwrap_or(DEFAULT_COMPLETION_MAX_TOKENS);
    let params = json!({
        "prompt": prompt,
        "raw": true,
        "options": req.sampling.options(Some(max_tokens))?,
    });
    let feed = inference::submit(&state, "openai", &model, "generate", params).await?;
    let head = Head::new(Kind::Completion, &feed, model);
    answer(feed, head, req.stream, req.stream_options).await
}

/// Embedding vectors of one or more texts, as an `llm` job.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "openai",
    request_body = EmbeddingRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"object\": \"list\", \"data\": [{\"object\": \"embedding\", \"index\", \"embedding\"}], \"model\", \"usage\"}`", body = Object),
        JobErrors
    )
)]
async fn embeddings(State(state): State<ApiState>, body: Bytes) -> Result<Response, OpenAiFail> {
    let req: EmbeddingRequest = parse(&body)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(OpenAiFail::invalid(
                "encoding_format",
                format!("`encoding_format` is float or base64, not `{other}`"),
            ));
        }
    };
    let input: Vec<String> = match req.input {
        Value::String(s) => vec![s],
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => {
            return Err(OpenAiFail::invalid(
                "input",
                "`input` is a text or a list of texts (token arrays are not served)".into(),
            ));
        }
    };
    let model = resolve(&state, &req.model).await?;
    let params = json!({ "input": input });
    let end = inference::submit(&state, "openai", &model, "embed", params)
        .await?
        .finish()
        .await?;
    let vectors: Vec<Vec<f32>> = serde_json::from_value(end.completion["embeddings"].clone())
        .map_err(|e| {
            OpenAiFail::from(ApiFail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "job {}: the provider's embeddings are unreadable: {e}",
                    end.result.job_id
                ),
            ))
        })?;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let prompt_tokens = end.prompt_tokens();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
        "modchain": modchain_fields(&end),
    }))
    .into_response())
}

// ---- Answers -----------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

/// What every object of one answer repeats.
#[derive(Debug)]
struct Head {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
}

impl Head {
    fn new(kind: Kind, feed: &JobFeed, model: String) -> Self {
        let prefix = match kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        };
        Head {
            kind,
            id: format!("{prefix}-{}", feed.id.to_hex()),
            created: unix_now(),
            model,
        }
    }

    fn object(&self, streamed: bool) -> &'static str {
        match (self.kind, streamed) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    /// One choice: a whole message, a delta, or a piece of text.
    fn choice(&self, streamed: bool, text: Option<&str>, finish: Option<&str>) -> Value {
        let mut c = json!({ "index": 0, "logprobs": null, "finish_reason": finish });
        match (self.kind, streamed) {
            (Kind::Chat, false) => {
                c["message"] = json!({ "role": "assistant", "content": text.unwrap_or("") });
            }
            (Kind::Chat, true) => {
                c["delta"] = match text {
                    Some(t) => json!({ "content": t }),
                    None => json!({}),
                };
            }
            (Kind::Completion, _) => c["text"] = json!(text.unwrap_or("")),
        }
        c
    }

    fn envelope(&self, streamed: bool, choices: Vec<Value>) -> Value {
        json!({
            "id": self.id,
            "object": self.object(streamed),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        })
    }
}

fn usage(end: &Finished) -> Value {
    let (p, c) = (end.prompt_tokens(), end.completion_tokens());
    json!({ "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c })
}

/// Modchain's own facts about the job that answered.
fn modchain_fields(end: &Finished) -> Value {
    json!({
        "job_id": end.result.job_id,
        "receipt_id": end.result.receipt_id,
        "price": end.result.price,
    })
}

fn finish_reason(end: &Finished) -> &'static str {
    if end.hit_length() { "length" } else { "stop" }
}

/// The answer: one object at the end, or server-sent events as the
/// provider generates.
async fn answer(
    feed: JobFeed,
    head: Head,
    stream: Option<bool>,
    options: Option<StreamOptions>,
) -> Result<Response, OpenAiFail> {
    if !stream.unwrap_or(false) {
        let end = feed.finish().await?;
        let choice = head.choice(false, Some(&end.result.stdout), Some(finish_reason(&end)));
        let mut v = head.envelope(false, vec![choice]);
        v["usage"] = usage(&end);
        v["modchain"] = modchain_fields(&end);
        return Ok(Json(v).into_response());
    }
    let mut queued = VecDeque::new();
    if head.kind == Kind::Chat {
        // OpenAI's first chunk names the role; clients build the message on it.
        let mut c = head.choice(true, None, None);
        c["delta"] = json!({ "role": "assistant", "content": "" });
        queued.push_back(head.envelope(true, vec![c]).to_string());
    }
    let events = Events {
        feed,
        head,
        include_usage: options.unwrap_or_default().include_usage,
        queued,
        over: false,
    };
    let s = stream::unfold(events, |mut e| async move {
        let data = e.next().await?;
        Some((Ok::<_, Infallible>(format!("data: {data}\n\n")), e))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(s),
    )
        .into_response())
}

/// A streamed answer's events, each the `data` of one server-sent event.
struct Events {
    feed: JobFeed,
    head: Head,
    include_usage: bool,
    queued: VecDeque<String>,
    over: bool,
}

impl Events {
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Some(e);
            }
            if self.over {
                return None;
            }
            let Some(piece) = self.feed.next().await else {
                self.over = true;
                continue;
            };
            let head = &self.head;
            match piece {
                Piece::Text(text) => {
                    let c = head.choice(true, Some(&text), None);
                    self.queued
                        .push_back(head.envelope(true, vec![c]).to_string());
                }
                Piece::Done(end) => {
                    let c = head.choice(true, None, Some(finish_reason(&end)));
                    let mut last = head.envelope(true, vec![c]);
                    last["modchain"] = modchain_fields(&end);
                    self.queued.push_back(last.to_string());
                    if self.include_usage {
                        let mut u = head.envelope(true, Vec::new());
                        u["usage"] = usage(&end);
                        self.queued.push_back(u.to_string());
                    }
                    self.queued.push_back("[DONE]".into());
                    self.over = true;
                }
                Piece::Failed(f) => {
                    // OpenAI's clients raise on an event that carries an
                    // `error`; no `[DONE]` follows one.
                    let body = OpenAiFail::from(f).body();
                    self.queued.push_back(json!(body).to_string());
                    self.over = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_openais_shape() {
        let f = OpenAiFail::model(ApiFail(StatusCode::NOT_FOUND, "model 'x' not found".into()));
        let v = serde_json::to_value(f.body()).expect("json");
        assert_eq!(
            v,
            json!({ "error": {
                "message": "model 'x' not found",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }})
        );
        let f = OpenAiFail::from(ApiFail(StatusCode::UNAUTHORIZED, "token".into()));
        let v = serde_json::to_value(f.body()).expect("json");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        let f = OpenAiFail::from(Failure::Lost("gone".into()));
        assert_eq!(f.status, StatusCode::BAD_GATEWAY);
        assert_eq!(f.body().error.kind, "server_error");
    }

    #[test]
    fn openai_sampling_becomes_the_adapters_options() {
        let req: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "m", "messages": [], "temperature": 0, "seed": 7, "stop": "\n",
            "max_tokens": 5, "max_completion_tokens": 9, "presence_penalty": 0.5, "n": 1
        }))
        .expect("parse");
        assert_eq!(
            req.sampling
                .options(req.max_completion_tokens)
                .expect("options"),
            json!({ "temperature": 0.0, "seed": 7, "max_tokens": 9, "stop": ["\n"] })
        );
        let req: CompletionRequest =
            serde_json::from_value(json!({ "model": "m", "prompt": "x", "n": 2 })).expect("parse");
        assert_eq!(
            req.sampling.options(None).expect_err("n = 2").param,
            Some("n")
        );
        let req: CompletionRequest =
            serde_json::from_value(json!({ "model": "m", "prompt": "x", "seed": -1 }))
                .expect("parse");
        assert_eq!(
            req.sampling.options(None).expect_err("seed").param,
            Some("seed")
        );
    }

    #[test]
    fn content_parts_join_their_text() {
        let m: ChatMessageIn = serde_json::from_value(json!({
            "role": "user",
            "content": [{ "type": "text", "text": "a" }, { "type": "text", "text": "b" }]
        }))
        .expect("parse");
        assert_eq!(m.text().expect("text"), "ab");
        let m: ChatMessageIn = serde_json::from_value(json!({
            "role": "user", "content": [{ "type": "image_url", "image_url": {} }]
        }))
        .expect("parse");
        assert!(m.text().expect_err("image").message.contains("image_url"));
    }
}
