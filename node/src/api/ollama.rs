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

use super::edge::{ApiFail, ApiState, ask};
use super::inference::{self, Finished, Piece, find, network_models, parse};
use crate::control::ApiQuery;
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
use modchain_protocol::ModelInfo;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::convert::Infallible;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The version `GET /api/version` reports: Ollama's API level we follow.
const API_VERSION: &str = "0.6.0";

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
    let feed = inference::submit(&state, "ollama", &name, method, params).await?;
    let answer = Answer {
        shape,
        model,
        started,
    };
    if !streaming {
        // The whole text in one object, or the error.
        let end = feed.finish().await?;
        let mut v = answer.final_object(&end);
        answer.put_text(&mut v, &end.result.stdout);
        return Ok(Json(v).into_response());
    }
    let s = stream::unfold(
        (feed, answer, false),
        |(mut feed, answer, over)| async move {
            if over {
                return None;
            }
            let (line, over) = match feed.next().await? {
                Piece::Text(text) => (answer.chunk(&text), false),
                Piece::Done(end) => (answer.final_object(&end), true),
                Piece::Failed(f) => (json!({ "error": f.message() }), true),
            };
            Some((
                Ok::<_, Infallible>(format!("{line}\n")),
                (feed, answer, over),
            ))
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(s),
    )
        .into_response())
}

/// How one request's answer is written in Ollama's objects.
struct Answer {
    shape: Shape,
    model: String,
    started: Instant,
}

impl Answer {
    /// Puts `text` where the shape carries it.
    fn put_text(&self, v: &mut Value, text: &str) {
        match self.shape {
            Shape::Generate => v["response"] = json!(text),
            Shape::Chat => v["message"] = json!({ "role": "assistant", "content": text }),
        }
    }

    fn chunk(&self, text: &str) -> Value {
        let mut v = json!({
            "model": self.model,
            "created_at": rfc3339(SystemTime::now()),
            "done": false,
        });
        self.put_text(&mut v, text);
        v
    }

    fn final_object(&self, end: &Finished) -> Value {
        let r = &end.result;
        let total_ns = self.started.elapsed().as_nanos() as u64;
        let eval_ns = r.usage.wall_ms.saturating_mul(1_000_000);
        let done_reason = if end.hit_length() { "length" } else { "stop" };
        let mut v = json!({
            "model": self.model,
            "created_at": rfc3339(SystemTime::now()),
            "done": true,
            "done_reason": done_reason,
            "total_duration": total_ns,
            "load_duration": 0,
            "prompt_eval_count": end.prompt_tokens(),
            "prompt_eval_duration": 0,
            "eval_count": end.completion_tokens(),
            "eval_duration": eval_ns,
            "job_id": r.job_id,
            "receipt_id": r.receipt_id,
            "price": r.price,
        });
        self.put_text(&mut v, "");
        v
    }
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
    use std::time::Duration;

    #[test]
    fn dates_are_rfc3339() {
        let t = UNIX_EPOCH + Duration::new(1_795_622_263, 5);
        assert_eq!(rfc3339(t), "2026-11-25T15:57:43.000000005Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
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
}
