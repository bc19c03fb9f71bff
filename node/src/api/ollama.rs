//! Ollama's own API on every node, so the tools people already use (the
//! official Ollama client libraries, anything that speaks `/api/generate`)
//! work unchanged against the network: `GET /api/tags` lists the models the
//! network offers, `POST /api/show` describes one, and `POST /api/generate`
//! and `POST /api/chat` each become an `llm` job on the network, whose
//! tokens stream back as Ollama's newline-delimited JSON while the provider
//! produces them. Request and response shapes follow Ollama's API docs;
//! fields Ollama accepts that mean nothing here (`keep_alive`, `format`,
//! `images`, ...) are accepted and ignored. Submitting needs the bearer token,
//! as every mutating call of this API does.

use super::edge::{ApiFail, ApiState, ask, authorize};
use super::rest::{RequirementsRequest, SubmitRequest};
use crate::control::{ApiQuery, LogFeed, NetworkModel};
use crate::views::JobResultView;
use axum::Json;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use libp2p::PeerId;
use libp2p::futures::stream;
use modchain_adapters::llm::{MAX_VIA, VIA_HEADER};
use modchain_protocol::{JobId, ModelInfo, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::convert::Infallible;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// The version `GET /api/version` reports: Ollama's API level we follow.
const API_VERSION: &str = "0.6.0";
/// How long an LLM job may run when the request does not say.
const DEFAULT_LLM_JOB_TIMEOUT_MS: u64 = 5 * 60_000;

pub fn routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/api/version", get(version))
        .route("/api/tags", get(tags))
        .route("/api/show", post(show))
        .route("/api/generate", post(generate))
        .route("/api/chat", post(chat))
}

async fn version() -> Json<Value> {
    Json(json!({ "version": API_VERSION }))
}

async fn network_models(state: &ApiState) -> Result<Vec<NetworkModel>, ApiFail> {
    ask(state, ApiQuery::Models).await
}

/// The providers that forwarded this request from other networks, from
/// [`VIA_HEADER`]; refused when one of them is this node or a peer of its
/// network (a provider whose `ollama_url` points back into its own
/// network would otherwise have the job auctioned back to itself, round
/// and round), or when the chain is longer than [`MAX_VIA`].
async fn forwarded_by(state: &ApiState, headers: &HeaderMap) -> Result<Vec<String>, ApiFail> {
    let Some(value) = headers.get(VIA_HEADER) else {
        return Ok(Vec::new());
    };
    let bad = |why: String| {
        ApiFail(
            StatusCode::BAD_REQUEST,
            format!("`{VIA_HEADER}` header: {why}"),
        )
    };
    let value = value.to_str().map_err(|_| bad("not ASCII".into()))?;
    let via: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    if via.len() > MAX_VIA {
        return Err(ApiFail(
            StatusCode::LOOP_DETECTED,
            format!(
                "the request passed through {} forwarding providers, more than {MAX_VIA}: it is going round in a loop between networks",
                via.len()
            ),
        ));
    }
    let peers = via
        .iter()
        .map(|v| {
            v.parse::<PeerId>()
                .map_err(|e| bad(format!("`{v}` is not a peer id: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(member) = ask(state, |reply| ApiQuery::Member { peers, reply }).await? {
        return Err(ApiFail(
            StatusCode::LOOP_DETECTED,
            format!(
                "this request was forwarded by {member}, a peer of this network: its `[llm] ollama_url` points back into the network it serves; point it at an Ollama server or at a node of another network"
            ),
        ));
    }
    Ok(via)
}

fn parameter_size(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{:.0}M", n as f64 / 1e6)
    }
}

fn details(m: &ModelInfo) -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": parameter_size(m.parameters),
        "quantization_level": m.quantization,
    })
}

/// `GET /api/tags`: the models the network offers (from the providers'
/// adverts), in Ollama's shape.
async fn tags(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, ApiFail> {
    forwarded_by(&state, &headers).await?;
    let models = network_models(&state).await?;
    let now = rfc3339(SystemTime::now());
    let list: Vec<Value> = models
        .iter()
        .map(|m| {
            json!({
                "name": m.info.name,
                "model": m.info.name,
                "modified_at": now,
                "size": 0,
                "digest": blake3::hash(m.info.name.as_bytes()).to_hex().to_string(),
                "details": details(&m.info),
                "providers": m.providers,
            })
        })
        .collect();
    Ok(Json(json!({ "models": list })))
}

#[derive(Debug, Deserialize)]
struct ShowRequest {
    #[serde(default)]
    model: Option<String>,
    /// Older clients send `name`.
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/show`: one model's details.
async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiFail> {
    forwarded_by(&state, &headers).await?;
    let req: ShowRequest = parse(&body)?;
    let name = req
        .model
        .or(req.name)
        .ok_or_else(|| ApiFail(StatusCode::BAD_REQUEST, "missing `model`".into()))?;
    let models = network_models(&state).await?;
    let m = find(&models, &name)?;
    Ok(Json(json!({
        "modelfile": "",
        "parameters": "",
        "template": "",
        "details": details(&m.info),
        "model_info": {
            "general.architecture": "llama",
            "general.parameter_count": m.info.parameters,
            "llama.context_length": m.info.context_length,
        },
        "capabilities": ["completion"],
        "modified_at": rfc3339(SystemTime::now()),
    })))
}

/// The JSON body, whatever its declared content type: Ollama's server
/// reads it so, and `curl -d` declares a form.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiFail> {
    serde_json::from_slice(body)
        .map_err(|e| ApiFail(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
}

/// The model by name (Ollama's `:latest` suffix is optional), or a 404 that
/// lists what the network offers.
fn find<'a>(models: &'a [NetworkModel], name: &str) -> Result<&'a NetworkModel, ApiFail> {
    let bare = name.strip_suffix(":latest").unwrap_or(name);
    models
        .iter()
        .find(|m| m.info.name == name || m.info.name == bare)
        .ok_or_else(|| {
            let offered: Vec<&str> = models.iter().map(|m| m.info.name.as_str()).collect();
            ApiFail(
                StatusCode::NOT_FOUND,
                format!(
                    "model '{name}' not found: the network offers {}",
                    if offered.is_empty() {
                        "no models yet (no provider advertises one)".to_string()
                    } else {
                        offered.join(", ")
                    }
                ),
            )
        })
}

/// The sampling options Ollama sends that the llm adapter understands; the
/// rest (`num_ctx`, `mirostat`, ...) are dropped rather than refused, as
/// Ollama itself ignores options a model does not use.
fn sampling(options: Option<&Map<String, Value>>) -> Value {
    let mut out = Map::new();
    if let Some(o) = options {
        for (from, to) in [
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("top_k", "top_k"),
            ("seed", "seed"),
            ("num_predict", "max_tokens"),
            ("stop", "stop"),
        ] {
            if let Some(v) = o.get(from).filter(|v| !v.is_null()) {
                out.insert(to.into(), v.clone());
            }
        }
    }
    Value::Object(out)
}

#[derive(Debug, Deserialize)]
struct GenerateBody {
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    model: String,
    #[serde(default)]
    messages: Vec<ChatMessageBody>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct ChatMessageBody {
    role: String,
    #[serde(default)]
    content: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Generate,
    Chat,
}

/// `POST /api/generate`.
async fn generate(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiFail> {
    authorize(&state, &headers)?;
    let via = forwarded_by(&state, &headers).await?;
    let b: GenerateBody = parse(&body)?;
    let mut params = json!({
        "model": b.model,
        "prompt": b.prompt,
        "options": sampling(b.options.as_ref()),
    });
    if !via.is_empty() {
        params["via"] = json!(via);
    }
    if let Some(s) = b.system {
        params["system"] = json!(s);
    }
    if b.raw {
        params["raw"] = json!(true);
    }
    run(
        state,
        Shape::Generate,
        b.model,
        "generate",
        params,
        b.stream.unwrap_or(true),
    )
    .await
}

/// `POST /api/chat`.
async fn chat(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiFail> {
    authorize(&state, &headers)?;
    let via = forwarded_by(&state, &headers).await?;
    let b: ChatBody = parse(&body)?;
    let messages: Vec<Value> = b
        .messages
        .iter()
        .map(|m| json!({ "role": m.role, "content": m.content }))
        .collect();
    let mut params = json!({
        "model": b.model,
        "messages": messages,
        "options": sampling(b.options.as_ref()),
    });
    if !via.is_empty() {
        params["via"] = json!(via);
    }
    run(
        state,
        Shape::Chat,
        b.model,
        "chat",
        params,
        b.stream.unwrap_or(true),
    )
    .await
}

/// Submits the job, then answers as Ollama does: a stream of chunks, or one
/// object at the end.
async fn run(
    state: ApiState,
    shape: Shape,
    model: String,
    method: &str,
    params: Value,
    streaming: bool,
) -> Result<Response, ApiFail> {
    let started = Instant::now();
    let models = network_models(&state).await?;
    let name = find(&models, &model)?.info.name.clone();
    let mut params = params;
    params["model"] = json!(name);
    let request = SubmitRequest {
        adapter: "llm".into(),
        method: Some(method.into()),
        params,
        requirements: RequirementsRequest {
            model: Some(name.clone()),
            ..Default::default()
        },
        max_price: None,
        timeout_ms: Some(DEFAULT_LLM_JOB_TIMEOUT_MS),
        priority: None,
        start_by_ms: None,
    };
    let spec = request
        .into_spec(Timestamp::now_wall())
        .map_err(|e| ApiFail(StatusCode::BAD_REQUEST, format!("invalid request: {e}")))?;
    let id = ask(&state, |reply| ApiQuery::Submit { spec, reply })
        .await?
        .map_err(ApiFail::from)?;
    tracing::info!(job = %id.to_hex(), model = %model, "ollama-compatible request became a job");
    // The job's output so far (nothing yet) and the feed of what follows,
    // taken atomically by the node, so no token falls between the two.
    let view = ask(&state, |reply| ApiQuery::Logs { id, reply })
        .await?
        .ok_or_else(|| ApiFail(StatusCode::INTERNAL_SERVER_ERROR, "the job vanished".into()))?;
    let events = ask(&state, ApiQuery::Events).await?;
    let follow = Follow {
        events,
        ran: false,
        sent: String::new(),
        last: None,
        state,
        shape,
        model,
        id,
        started,
        feed: view.feed,
        pending: view.text,
        ended: view.ended,
        done: false,
    };
    if streaming {
        let s = stream::unfold(follow, |mut f| async move {
            let line = f.next_line().await?;
            Some((Ok::<_, Infallible>(format!("{line}\n")), f))
        });
        return Ok((
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            Body::from_stream(s),
        )
            .into_response());
    }
    // Not streaming: the whole text in one object, or the error.
    let mut f = follow;
    let mut text = String::new();
    while !f.ended {
        if let Some(lost) = f.step().await {
            return Err(ApiFail(StatusCode::BAD_GATEWAY, lost));
        }
        f.pending.clear();
    }
    match f.outcome().await {
        Ok((result, completion)) => {
            text.push_str(&result.stdout);
            let mut v = f.final_object(&result, &completion);
            match shape {
                Shape::Generate => v["response"] = json!(text),
                Shape::Chat => v["message"] = json!({ "role": "assistant", "content": text }),
            }
            Ok(Json(v).into_response())
        }
        Err(e) => Err(ApiFail(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

/// Following one job's output into Ollama's chunks.
struct Follow {
    state: ApiState,
    shape: Shape,
    model: String,
    id: JobId,
    started: Instant,
    feed: broadcast::Receiver<LogFeed>,
    /// Bytes received but not yet sent (a UTF-8 sequence may be split
    /// across chunks).
    pending: Vec<u8>,
    ended: bool,
    done: bool,
    /// The node's event stream: tells when the provider running the job
    /// was lost (the job goes back to the auction).
    events: broadcast::Receiver<String>,
    /// Whether the job has run on a provider.
    ran: bool,
    /// The text streamed so far.
    sent: String,
    /// The final object, held while the text it completes goes out.
    last: Option<String>,
}

impl Follow {
    /// The next NDJSON line, or `None` after the final one.
    async fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(last) = self.last.take() {
                self.done = true;
                return Some(last);
            }
            if self.done {
                return None;
            }
            let text = take_utf8(&mut self.pending);
            if !text.is_empty() {
                self.sent.push_str(&text);
                return Some(self.chunk(&text).to_string());
            }
            if self.ended {
                return Some(match self.outcome().await {
                    Ok((result, completion)) => {
                        let last = self.final_object(&result, &completion).to_string();
                        // Live output and the end travel as separate
                        // messages; the signed result's text is whole, so
                        // what the stream missed at its end is sent from it.
                        match result.stdout.strip_prefix(self.sent.as_str()) {
                            Some(rest) if !rest.is_empty() => {
                                let rest = rest.to_string();
                                self.sent.push_str(&rest);
                                self.last = Some(last);
                                self.chunk(&rest).to_string()
                            }
                            _ => {
                                self.done = true;
                                last
                            }
                        }
                    }
                    Err(e) => {
                        self.done = true;
                        json!({ "error": e }).to_string()
                    }
                });
            }
            if let Some(lost) = self.step().await {
                self.done = true;
                return Some(json!({ "error": lost }).to_string());
            }
        }
    }

    /// Waits for the next piece of output, the end, or the loss of the
    /// provider (then says so: the stream cannot go on, as what the next
    /// provider generates starts over).
    async fn step(&mut self) -> Option<String> {
        tokio::select! {
            got = self.feed.recv() => match got {
                Ok(LogFeed { job_id, data }) if job_id == self.id => match data {
                    Some(d) => self.pending.extend_from_slice(&d),
                    None => self.ended = true,
                },
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(job = %self.id.to_hex(), missed = n, "stream lagged");
                }
                Err(broadcast::error::RecvError::Closed) => self.ended = true,
            },
            got = self.events.recv() => {
                let line = match got {
                    Ok(line) => line,
                    Err(broadcast::error::RecvError::Lagged(_)) => return None,
                    Err(broadcast::error::RecvError::Closed) => {
                        self.ended = true;
                        return None;
                    }
                };
                let Ok(e) = serde_json::from_str::<Value>(&line) else {
                    return None;
                };
                if e["event"] != "state_changed" || e["job_id"] != self.id.to_hex().as_str() {
                    return None;
                }
                match e["state"].as_str() {
                    Some("running") => self.ran = true,
                    Some("queued") if self.ran => {
                        return Some(format!(
                            "the provider running job {} was lost ({}); the network re-auctions the job: follow it with `modchain job {}`",
                            self.id.to_hex(),
                            e["detail"].as_str().unwrap_or("no word from it"),
                            self.id.to_hex()
                        ));
                    }
                    _ => {}
                }
            }
        }
        None
    }

    fn chunk(&self, text: &str) -> Value {
        let mut v = json!({
            "model": self.model,
            "created_at": rfc3339(SystemTime::now()),
            "done": false,
        });
        match self.shape {
            Shape::Generate => v["response"] = json!(text),
            Shape::Chat => v["message"] = json!({ "role": "assistant", "content": text }),
        }
        v
    }

    /// The job's end: its result and the completion record, or why it
    /// failed, in words.
    async fn outcome(&self) -> Result<(JobResultView, Value), String> {
        let id = self.id;
        // The inline result file is stored as the result arrives; give the
        // node a moment if the stream ended first.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let detail = ask(&self.state, |reply| ApiQuery::Job { id, reply })
                .await
                .map_err(|_| "the node is shutting down".to_string())?
                .ok_or_else(|| format!("job {id} vanished"))?;
            let state = detail.summary.state.as_str();
            if matches!(state, "failed" | "cancelled") {
                return Err(format!("job {id} {state}: {}", detail.summary.detail));
            }
            let result = ask(&self.state, |reply| ApiQuery::JobResult { id, reply })
                .await
                .map_err(|_| "the node is shutting down".to_string())?
                .flatten();
            if let Some(r) = result
                && r.outputs_pending == 0
                && state == "completed"
            {
                if r.exit_code != 0 {
                    let why = if r.stderr.trim().is_empty() {
                        r.exit.clone()
                    } else {
                        r.stderr.trim().to_string()
                    };
                    return Err(format!("job {id}: {why}"));
                }
                let completion = r
                    .outputs
                    .iter()
                    .find(|o| o.name == modchain_adapters::llm::RESULT_FILE)
                    .and_then(|o| o.path.as_ref())
                    .and_then(|p| std::fs::read(p).ok())
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(Value::Null);
                return Ok((r, completion));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "job {id} ended ({state}) without a result: {}",
                    detail.summary.detail
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn final_object(&self, r: &JobResultView, completion: &Value) -> Value {
        let total_ns = self.started.elapsed().as_nanos() as u64;
        let eval_ns = r.usage.wall_ms.saturating_mul(1_000_000);
        let done_reason = match completion["finish_reason"].as_str() {
            Some("length") => "length",
            _ => "stop",
        };
        let mut v = json!({
            "model": self.model,
            "created_at": rfc3339(SystemTime::now()),
            "done": true,
            "done_reason": done_reason,
            "total_duration": total_ns,
            "load_duration": 0,
            "prompt_eval_count": completion["prompt_tokens"].as_u64().unwrap_or(0),
            "prompt_eval_duration": 0,
            "eval_count": completion["completion_tokens"].as_u64().unwrap_or(r.usage.tokens),
            "eval_duration": eval_ns,
            "job_id": r.job_id,
            "receipt_id": r.receipt_id,
            "price": r.price,
        });
        match self.shape {
            Shape::Generate => v["response"] = json!(""),
            Shape::Chat => v["message"] = json!({ "role": "assistant", "content": "" }),
        }
        v
    }
}

/// Takes the longest valid UTF-8 prefix of `buf`, leaving an incomplete
/// trailing sequence for the next chunk (invalid bytes become U+FFFD).
fn take_utf8(buf: &mut Vec<u8>) -> String {
    let cut = match std::str::from_utf8(buf) {
        Ok(_) => buf.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => buf.len(),
    };
    let rest = buf.split_off(cut);
    let text = String::from_utf8_lossy(buf).into_owned();
    *buf = rest;
    text
}

/// RFC 3339 in UTC with nanoseconds, as Ollama writes `created_at`.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        let t = UNIX_EPOCH + Duration::new(1_795_622_263, 5);
        assert_eq!(rfc3339(t), "2026-11-25T15:57:43.000000005Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn split_utf8_waits_for_the_rest_of_a_character() {
        let mut buf = "é".as_bytes()[..1].to_vec();
        assert_eq!(take_utf8(&mut buf), "");
        buf.extend_from_slice(&"é".as_bytes()[1..]);
        buf.extend_from_slice(b"!");
        assert_eq!(take_utf8(&mut buf), "é!");
        assert!(buf.is_empty());
    }

    #[test]
    fn only_known_sampling_options_pass() {
        let o: Map<String, Value> = serde_json::from_value(json!({
            "temperature": 0.0, "num_predict": 12, "seed": 7, "num_ctx": 4096, "stop": ["\n"]
        }))
        .expect("map");
        assert_eq!(
            sampling(Some(&o)),
            json!({ "temperature": 0.0, "max_tokens": 12, "seed": 7, "stop": ["\n"] })
        );
    }

    #[test]
    fn unknown_models_are_refused_with_the_list() {
        let models = vec![NetworkModel {
            info: ModelInfo {
                name: "smollm2".into(),
                parameters: 135_000_000,
                quantization: "Q4_1".into(),
                context_length: 8192,
            },
            providers: 1,
        }];
        assert!(find(&models, "smollm2:latest").is_ok());
        let e = find(&models, "llama3").expect_err("refused");
        assert_eq!(e.0, StatusCode::NOT_FOUND);
        assert!(e.1.contains("smollm2"), "{}", e.1);
    }
}
