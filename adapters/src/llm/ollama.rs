//! The Ollama backend: a provider that already runs Ollama serves its models
//! through Ollama's HTTP API (`/api/tags`, `/api/show`, `/api/generate`,
//! `/api/chat`, `/api/embed`), with streamed NDJSON answers.
//!
//! The HTTP client is hyper's, which the docker adapter's bollard already
//! brings into the build: no new crates, no TLS stack. Ollama listens on
//! plain HTTP on the provider's own machine, so `https://` URLs are refused
//! with a clear error rather than half-supported.

use super::text::Output;
use super::{
    Completion, Embeddings, FinishReason, GenerateRequest, Halt, LlmBackend, LlmError, Prompt,
    TokenSink,
};
use crate::adapter::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use modchain_protocol::ModelInfo;
use serde::Deserialize;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Time allowed for a non-streaming call (tags, show). Generation and
/// embedding are bounded by the job's deadline instead: Ollama may first
/// have to load a large model.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest non-streaming answer read (a model list, a model's details).
const MAX_BODY: usize = 16 << 20;
/// Longest NDJSON line accepted while streaming.
const MAX_LINE: usize = 1 << 20;

/// Serves the models of an Ollama server. Cloning shares the model list.
#[derive(Clone)]
pub struct OllamaBackend {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    models: Arc<RwLock<Vec<ModelInfo>>>,
    /// Sent as `Authorization: Bearer …` on every call: Ollama itself needs
    /// none, but a server behind an authenticating proxy does, and so does
    /// another Modchain node's Ollama-compatible API.
    token: Option<String>,
    /// This provider's peer id, added to [`super::VIA_HEADER`] on every call
    /// so that a Modchain node at `base` can tell a loop.
    me: Option<String>,
}

// By hand, so that the token never reaches a log line.
impl std::fmt::Debug for OllamaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OllamaBackend")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl OllamaBackend {
    /// A backend for the Ollama server at `base_url` (`http://127.0.0.1:11434`),
    /// with its model list read once.
    pub async fn connect(base_url: &str) -> Result<Self, LlmError> {
        let b = Self::new(base_url)?;
        b.refresh().await?;
        Ok(b)
    }

    /// A backend with no models listed yet: call [`Self::refresh`].
    pub fn new(base_url: &str) -> Result<Self, LlmError> {
        let base = base_url.trim_end_matches('/').to_string();
        let uri: Uri = base
            .parse()
            .map_err(|e| LlmError::Unavailable(format!("Ollama URL `{base_url}`: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(LlmError::Unavailable(format!(
                    "Ollama URL `{base_url}`: scheme `{other}` is not supported (plain http only)"
                )));
            }
            None => {
                return Err(LlmError::Unavailable(format!(
                    "Ollama URL `{base_url}` needs a scheme, as in http://127.0.0.1:11434"
                )));
            }
        }
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Ok(OllamaBackend {
            base,
            client,
            models: Arc::new(RwLock::new(Vec::new())),
            token: None,
            me: None,
        })
    }

    /// Sends `token` as a bearer token on every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.trim().is_empty()).then(|| token.trim().to_string());
        self
    }

    /// Names this provider (its peer id) in [`super::VIA_HEADER`] on every
    /// call: when `base` is a Modchain node's Ollama-compatible API, the
    /// node refuses a request that came from one of its own network's
    /// peers, rather than auctioning it back to the provider forwarding it.
    pub fn with_via(mut self, peer_id: impl Into<String>) -> Self {
        self.me = Some(peer_id.into());
        self
    }

    /// Reads the model list again: `/api/tags`, then `/api/show` for each
    /// model's context length and exact parameter count.
    pub async fn refresh(&self) -> Result<(), LlmError> {
        let tags: Tags = match self.call(Method::GET, "/api/tags", None).await {
            Ok(tags) => tags,
            // The server is this provider's own network: what it lists is
            // served here already, or by peers that will be asked directly.
            Err(e @ LlmError::Loop(_)) => {
                if let Ok(mut w) = self.models.write() {
                    w.clear();
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let mut models = Vec::with_capacity(tags.models.len());
        for t in tags.models {
            let body = serde_json::json!({ "model": t.name });
            // A model whose details cannot be read is still served, with what the tag said.
            let show: Option<Show> = self.call(Method::POST, "/api/show", Some(body)).await.ok();
            models.push(model_info(&t, show.as_ref()));
        }
        if let Ok(mut w) = self.models.write() {
            *w = models;
        }
        Ok(())
    }

    fn uri(&self, path: &str) -> Result<Uri, LlmError> {
        format!("{}{path}", self.base)
            .parse()
            .map_err(|e| LlmError::Unavailable(format!("Ollama URL: {e}")))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
        via: &[String],
    ) -> Result<Response<Incoming>, LlmError> {
        let bytes = match body {
            Some(v) => {
                Bytes::from(serde_json::to_vec(&v).map_err(|e| LlmError::Inference(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(self.uri(path)?)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let chain: Vec<&str> = via
            .iter()
            .map(String::as_str)
            .chain(self.me.as_deref())
            .collect();
        if !chain.is_empty() {
            req = req.header(super::VIA_HEADER, chain.join(", "));
        }
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| LlmError::Inference(e.to_string()))?;
        let resp = tokio::time::timeout(timeout, self.client.request(req))
            .await
            .map_err(|_| LlmError::Unavailable(format!("Ollama at {} did not answer", self.base)))?
            .map_err(|e| LlmError::Unavailable(format!("Ollama at {}: {e}", self.base)))?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let body = read_limited(resp.into_body()).await.unwrap_or_default();
            let why = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            if status == StatusCode::LOOP_DETECTED {
                return Err(LlmError::Loop(why));
            }
            // A model removed from Ollama since the last refresh answers 404: say what is left.
            if status == StatusCode::NOT_FOUND && path != "/api/tags" {
                return Err(LlmError::Inference(format!(
                    "Ollama answered {status}: {why}; it served: {}",
                    self.names()
                )));
            }
            return Err(LlmError::Inference(format!(
                "Ollama answered {status}: {why}"
            )));
        }
        Ok(resp)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, LlmError> {
        self.call_within(method, path, body, CALL_TIMEOUT).await
    }

    async fn call_within<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<T, LlmError> {
        let resp = self.send(method, path, body, timeout, &[]).await?;
        let bytes = tokio::time::timeout(timeout, read_limited(resp.into_body()))
            .await
            .map_err(|_| LlmError::Unavailable(format!("Ollama at {} stalled", self.base)))??;
        serde_json::from_slice(&bytes)
            .map_err(|e| LlmError::Inference(format!("unexpected answer from Ollama {path}: {e}")))
    }

    fn names(&self) -> String {
        let names: Vec<String> = self.models().into_iter().map(|m| m.name).collect();
        if names.is_empty() {
            "no models".into()
        } else {
            names.join(", ")
        }
    }

    async fn stream(
        &self,
        request: GenerateRequest,
        tokens: TokenSink,
        halt: Halt,
    ) -> Result<Completion, LlmError> {
        let options = options(&request);
        let (path, body) = match &request.prompt {
            Prompt::Text {
                prompt,
                system,
                raw,
            } => {
                let mut b = serde_json::json!({
                    "model": request.model, "prompt": prompt, "raw": raw,
                    "stream": true, "options": options,
                });
                if let (Some(s), Some(o)) = (system, b.as_object_mut()) {
                    o.insert("system".into(), s.clone().into());
                }
                ("/api/generate", b)
            }
            Prompt::Chat(messages) => (
                "/api/chat",
                serde_json::json!({
                    "model": request.model, "messages": messages,
                    "stream": true, "options": options,
                }),
            ),
        };
        let until_deadline = halt
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        // Cancelling while Ollama loads the model must not wait for it.
        let resp = tokio::select! {
            r = self.send(Method::POST, path, Some(body), until_deadline, &request.via) => r?,
            _ = halt.cancel.cancelled() => {
                return Ok(finish(&request, Output::new(&[], TokenSink::discard()), FinishReason::Cancelled, 0, 0));
            }
        };
        let mut body = resp.into_body();
        let mut lines = NdjsonLines::default();
        let mut out = Output::new(&request.sampling.stop, tokens);
        let mut chunks: u32 = 0;
        let deadline = tokio::time::Instant::from_std(halt.deadline);
        loop {
            // Dropping the body closes the connection, which makes Ollama stop.
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = halt.cancel.cancelled() => {
                    return Ok(finish(&request, out, FinishReason::Cancelled, 0, chunks));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Ok(finish(&request, out, FinishReason::TimedOut, 0, chunks));
                }
            };
            let data = match frame {
                None => {
                    return Err(LlmError::Inference(
                        "Ollama closed the stream before it was done".into(),
                    ));
                }
                Some(Err(e)) => return Err(LlmError::Inference(format!("Ollama stream: {e}"))),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => d,
                    Err(_) => continue, // trailers
                },
            };
            lines.push(&data)?;
            while let Some(line) = lines.next_line() {
                let chunk = parse_chunk(&line)?;
                if !chunk.text.is_empty() {
                    chunks += 1;
                    if out.push_str(&chunk.text) {
                        return Ok(finish(&request, out, FinishReason::Stop, 0, chunks));
                    }
                }
                if chunk.done {
                    let reason = match chunk.done_reason.as_deref() {
                        Some("length") => FinishReason::Length,
                        _ => FinishReason::Stop,
                    };
                    let mut c = finish(&request, out, reason, chunk.prompt_eval_count, chunks);
                    if let Some(n) = chunk.eval_count {
                        c.completion_tokens = n;
                    }
                    return Ok(c);
                }
            }
        }
    }
}

/// A completion from what was streamed. Ollama sends one token per chunk,
/// so the chunk count stands in for the token count until its final line
/// (which a cancelled stream never gets) says the real one.
fn finish(
    request: &GenerateRequest,
    out: Output,
    finish_reason: FinishReason,
    prompt_tokens: u32,
    chunks: u32,
) -> Completion {
    Completion {
        model: request.model.clone(),
        text: out.finish(),
        finish_reason,
        prompt_tokens,
        completion_tokens: chunks,
    }
}

/// The options object of Ollama's generate and chat calls.
fn options(request: &GenerateRequest) -> serde_json::Value {
    let s = &request.sampling;
    let mut o = serde_json::json!({
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "num_predict": s.max_tokens,
    });
    if let Some(map) = o.as_object_mut() {
        if let Some(seed) = s.seed {
            map.insert("seed".into(), seed.into());
        }
        if !s.stop.is_empty() {
            map.insert("stop".into(), s.stop.clone().into());
        }
    }
    o
}

async fn read_limited(body: Incoming) -> Result<Bytes, LlmError> {
    Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| LlmError::Inference(format!("reading Ollama's answer: {e}")))
}

/// Splits a byte stream into lines, whatever the chunking.
#[derive(Debug, Default)]
pub struct NdjsonLines {
    buf: Vec<u8>,
}

impl NdjsonLines {
    /// Adds bytes; errors if a line grows past the limit (a stream that is not NDJSON).
    pub fn push(&mut self, data: &[u8]) -> Result<(), LlmError> {
        self.buf.extend_from_slice(data);
        let pending = self
            .buf
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(self.buf.len(), |i| self.buf.len() - i - 1);
        if pending > MAX_LINE {
            return Err(LlmError::Inference(format!(
                "a streamed line from Ollama is over {MAX_LINE} bytes"
            )));
        }
        Ok(())
    }

    /// The next complete, non-empty line.
    pub fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            let i = self.buf.iter().position(|b| *b == b'\n')?;
            let mut line: Vec<u8> = self.buf.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(line);
            }
        }
    }
}

/// One line of a streamed generate or chat answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamChunk {
    pub text: String,
    pub done: bool,
    pub done_reason: Option<String>,
    pub prompt_eval_count: u32,
    pub eval_count: Option<u32>,
}

#[derive(Deserialize)]
struct RawChunk {
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    message: Option<ChatMessageChunk>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u32>,
    #[serde(default)]
    eval_count: Option<u32>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ChatMessageChunk {
    #[serde(default)]
    content: String,
}

/// Parses one NDJSON line of `/api/generate` (`response`) or `/api/chat`
/// (`message.content`); an `error` line is an error.
pub fn parse_chunk(line: &[u8]) -> Result<StreamChunk, LlmError> {
    let raw: RawChunk = serde_json::from_slice(line)
        .map_err(|e| LlmError::Inference(format!("unexpected line from Ollama: {e}")))?;
    if let Some(e) = raw.error {
        return Err(LlmError::Inference(format!("Ollama: {e}")));
    }
    Ok(StreamChunk {
        text: raw
            .response
            .or(raw.message.map(|m| m.content))
            .unwrap_or_default(),
        done: raw.done,
        done_reason: raw.done_reason,
        prompt_eval_count: raw.prompt_eval_count.unwrap_or(0),
        eval_count: raw.eval_count,
    })
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

#[derive(Debug, Deserialize)]
struct Tags {
    #[serde(default)]
    models: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
struct Tag {
    name: String,
    #[serde(default)]
    details: TagDetails,
}

#[derive(Debug, Default, Deserialize)]
struct TagDetails {
    #[serde(default)]
    parameter_size: String,
    #[serde(default)]
    quantization_level: String,
}

#[derive(Debug, Deserialize)]
struct Show {
    #[serde(default)]
    model_info: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct EmbedAnswer {
    embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    prompt_eval_count: u32,
}

/// What the advert says about an Ollama model.
fn model_info(tag: &Tag, show: Option<&Show>) -> ModelInfo {
    let info = show.map(|s| &s.model_info);
    let get = |key: &str| info.and_then(|m| m.get(key)).and_then(|v| v.as_u64());
    let arch = info
        .and_then(|m| m.get("general.architecture"))
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    ModelInfo {
        name: tag.name.clone(),
        parameters: get("general.parameter_count")
            .unwrap_or_else(|| parse_parameter_size(&tag.details.parameter_size)),
        quantization: tag.details.quantization_level.clone(),
        context_length: get(&format!("{arch}.context_length"))
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
    }
}

/// Ollama's rounded sizes: `135M`, `7.2B`, `1.5T`.
pub fn parse_parameter_size(s: &str) -> u64 {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1e3),
        Some('M' | 'm') => (&s[..s.len() - 1], 1e6),
        Some('B' | 'b') => (&s[..s.len() - 1], 1e9),
        Some('T' | 't') => (&s[..s.len() - 1], 1e12),
        _ => (s, 1.0),
    };
    num.trim()
        .parse::<f64>()
        .map(|n| (n * mult).round() as u64)
        .unwrap_or(0)
}

impl LlmBackend for OllamaBackend {
    fn kind(&self) -> &'static str {
        "ollama"
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), LlmError>> {
        Box::pin(OllamaBackend::refresh(self))
    }

    fn models(&self) -> Vec<ModelInfo> {
        self.models.read().map(|m| m.clone()).unwrap_or_default()
    }

    fn count_prompt_tokens(&self, _request: &GenerateRequest) -> Result<Option<u32>, LlmError> {
        // Ollama's documented API has no tokenizer endpoint.
        Ok(None)
    }

    fn generate<'a>(
        &'a self,
        request: GenerateRequest,
        _threads: u32,
        tokens: TokenSink,
        halt: Halt,
    ) -> BoxFuture<'a, Result<Completion, LlmError>> {
        Box::pin(self.stream(request, tokens, halt))
    }

    fn embed<'a>(
        &'a self,
        model: &'a str,
        inputs: Vec<String>,
        _threads: u32,
        halt: Halt,
    ) -> BoxFuture<'a, Result<Embeddings, LlmError>> {
        Box::pin(async move {
            let body = serde_json::json!({ "model": model, "input": inputs });
            let deadline = tokio::time::Instant::from_std(halt.deadline);
            let answer: EmbedAnswer = tokio::select! {
                a = self.call_within(Method::POST, "/api/embed", Some(body), Duration::MAX) => a?,
                _ = halt.cancel.cancelled() => return Err(LlmError::Inference("cancelled".into())),
                _ = tokio::time::sleep_until(deadline) => return Err(LlmError::Inference("past the deadline".into())),
            };
            Ok(Embeddings {
                model: model.to_string(),
                embeddings: answer.embeddings,
                prompt_tokens: answer.prompt_eval_count,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_whatever_the_chunking() {
        let stream = b"{\"response\":\"Hel\",\"done\":false}\n{\"response\":\"lo\",\"done\":false}\r\n\n{\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":12,\"eval_count\":2}\n";
        for split in 1..stream.len() {
            let mut l = NdjsonLines::default();
            let mut got = Vec::new();
            for part in stream.chunks(split) {
                l.push(part).expect("within limits");
                while let Some(line) = l.next_line() {
                    got.push(parse_chunk(&line).expect("parses"));
                }
            }
            assert_eq!(got.len(), 3, "split {split}");
            assert_eq!(got[0].text, "Hel");
            assert_eq!(got[1].text, "lo");
            assert!(got[2].done);
            assert_eq!(got[2].prompt_eval_count, 12);
            assert_eq!(got[2].eval_count, Some(2));
        }
    }

    #[test]
    fn chat_lines_and_error_lines() {
        let c = parse_chunk(
            br#"{"model":"m","message":{"role":"assistant","content":"Pa"},"done":false}"#,
        )
        .expect("parses");
        assert_eq!(c.text, "Pa");
        let e = parse_chunk(br#"{"error":"model 'x' not found"}"#);
        assert!(matches!(e, Err(LlmError::Inference(m)) if m.contains("not found")));
        assert!(parse_chunk(b"not json").is_err());
    }

    #[test]
    fn a_line_without_end_past_the_limit_is_refused() {
        let mut l = NdjsonLines::default();
        assert!(l.push(&vec![b'x'; MAX_LINE + 1]).is_err());
    }

    #[test]
    fn parameter_sizes() {
        assert_eq!(parse_parameter_size("135M"), 135_000_000);
        assert_eq!(parse_parameter_size("7.2B"), 7_200_000_000);
        assert_eq!(parse_parameter_size("?"), 0);
    }

    #[test]
    fn urls_other_than_plain_http_are_refused() {
        assert!(OllamaBackend::new("https://example.invalid").is_err());
        assert!(OllamaBackend::new("127.0.0.1:11434").is_err());
        assert!(OllamaBackend::new("http://127.0.0.1:11434/").is_ok());
    }
}
