//! The `llm` adapter: text generation, chat and embeddings with GGUF models,
//! served by one or more backends behind [`LlmBackend`]:
//!
//! - [`embedded::EmbeddedBackend`] runs models inside the node with llama.cpp
//!   (through the `llama-cpp-2` binding), on CPU, or CUDA when the crate is
//!   built with the `cuda` feature. It serves every `*.gguf` file in a models
//!   directory and the files listed in its configuration.
//! - [`ollama::OllamaBackend`] forwards to an Ollama server the provider
//!   already runs, through Ollama's HTTP API.
//!
//! Methods: `generate` (a prompt, optionally a system prompt), `chat` (a list
//! of messages), `embed` and `list_models`. Generated text streams to the
//! execution's log sink as standard output while it is produced; the final
//! report carries the whole text as stdout, the completion token count in
//! [`Usage::tokens`](modchain_protocol::Usage), and a `result.json`
//! output file ([`Completion`]) with both token counts.

#[cfg(feature = "llm-embedded")]
pub mod embedded;
pub mod gguf;
pub mod ollama;
mod text;

use crate::adapter::{
    Adapter, AdapterError, BoxFuture, ExecutionContext, LogSink, LogStream, MethodSpec,
    unknown_method,
};
use crate::outputs;
use modchain_protocol::{ExecutionReport, ExitStatus, ModelInfo, Usage, limits, tail_bytes};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// The file in the output directory that holds a method's structured result.
pub const RESULT_FILE: &str = "result.json";

/// Defaults of the sampling options (Ollama's, so both backends agree).
pub const DEFAULT_TEMPERATURE: f32 = 0.8;
pub const DEFAULT_TOP_P: f32 = 0.9;
pub const DEFAULT_TOP_K: u32 = 40;
/// Tokens generated when a job does not say: a job pays for what it generates,
/// so an unbounded default would surprise.
pub const DEFAULT_MAX_TOKENS: u32 = 256;
const MAX_STOP_STRINGS: usize = 8;
const MAX_STOP_BYTES: usize = 256;
const MAX_EMBED_INPUTS: usize = 256;

/// The HTTP header in which a provider forwarding a request to an
/// Ollama-compatible API names itself, after the providers that forwarded
/// the request before it (comma-separated libp2p peer ids). A node refuses
/// a request that names one of its own network's peers: it went round in a
/// loop.
pub const VIA_HEADER: &str = "modchain-via";
/// How many forwarding providers a request may pass through.
pub const MAX_VIA: usize = 8;
/// The longest peer id accepted in `via` (a base58 ed25519 peer id is 52).
const MAX_VIA_ID_BYTES: usize = 64;

/// One message of a chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// What the model is asked to continue.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// A prompt, put into the model's chat template as the user's message
    /// after the optional system prompt, unless `raw`.
    Text {
        prompt: String,
        system: Option<String>,
        /// Feed `prompt` to the model exactly as given, with no template.
        raw: bool,
    },
    /// A conversation, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
}

/// How the next token is chosen, and when generation ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// 0 picks the most likely token every time (greedy).
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    #[serde(default = "default_top_p")]
    pub top_p: f32,
    /// 0 disables top-k.
    #[serde(default = "default_top_k")]
    pub top_k: u32,
    /// The same seed, model, prompt and options give the same text.
    #[serde(default)]
    pub seed: Option<u32>,
    #[serde(default = "default_max_tokens", alias = "num_predict")]
    pub max_tokens: u32,
    /// Generation ends before the first of these; it is not part of the text.
    #[serde(default)]
    pub stop: Vec<String>,
}

fn default_temperature() -> f32 {
    DEFAULT_TEMPERATURE
}
fn default_top_p() -> f32 {
    DEFAULT_TOP_P
}
fn default_top_k() -> u32 {
    DEFAULT_TOP_K
}
fn default_max_tokens() -> u32 {
    DEFAULT_MAX_TOKENS
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: DEFAULT_TEMPERATURE,
            top_p: DEFAULT_TOP_P,
            top_k: DEFAULT_TOP_K,
            seed: None,
            max_tokens: DEFAULT_MAX_TOKENS,
            stop: Vec::new(),
        }
    }
}

impl Sampling {
    fn check(&self) -> Result<(), LlmError> {
        let bad = |m: String| Err(LlmError::InvalidParams(m));
        if !(0.0..=2.0).contains(&self.temperature) {
            return bad(format!(
                "`temperature` must be between 0 and 2, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!(
                "`top_p` must be above 0 and at most 1, got {}",
                self.top_p
            ));
        }
        if self.max_tokens == 0 {
            return bad("`max_tokens` must be at least 1".into());
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return bad(format!(
                "at most {MAX_STOP_STRINGS} `stop` strings, got {}",
                self.stop.len()
            ));
        }
        if self
            .stop
            .iter()
            .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
        {
            return bad(format!(
                "`stop` strings must be 1 to {MAX_STOP_BYTES} bytes long"
            ));
        }
        Ok(())
    }
}

/// A request to generate text.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateRequest {
    pub model: String,
    pub prompt: Prompt,
    pub sampling: Sampling,
    /// Providers that forwarded this request from other networks (peer
    /// ids, first forwarder first): sent on in [`VIA_HEADER`].
    pub via: Vec<String>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer, or a stop string was reached.
    Stop,
    /// `max_tokens` were generated, or the context was full.
    Length,
    /// The client cancelled.
    Cancelled,
    /// The job's deadline passed.
    TimedOut,
}

/// The outcome of a generation: what `result.json` holds for `generate` and `chat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub model: String,
    pub text: String,
    pub finish_reason: FinishReason,
    /// Tokens the model read: the prompt after its chat template.
    pub prompt_tokens: u32,
    /// Tokens the model generated (an end-of-generation token is not counted).
    pub completion_tokens: u32,
}

/// Embeddings of a list of inputs: what `result.json` holds for `embed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Embeddings {
    pub model: String,
    /// One L2-normalised vector per input, in order.
    pub embeddings: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
}

/// A model a provider serves, as `list_models` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedModel {
    pub name: String,
    pub parameters: u64,
    pub quantization: String,
    pub context_length: u32,
    /// `embedded` or `ollama`.
    pub backend: String,
}

/// A function receiving text as it is produced.
type TextFn = dyn Fn(&str) + Send + Sync;

/// Where generated text goes as it is produced. Cloning shares the target.
#[derive(Clone, Default)]
pub struct TokenSink(Option<Arc<TextFn>>);

impl std::fmt::Debug for TokenSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "TokenSink"
        } else {
            "TokenSink(discard)"
        })
    }
}

impl TokenSink {
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        TokenSink(Some(Arc::new(f)))
    }

    /// A sink that drops everything.
    pub fn discard() -> Self {
        TokenSink(None)
    }

    /// Sends text to an execution's log sink, as standard output.
    pub fn logs(sink: LogSink) -> Self {
        TokenSink::new(move |s| sink.send(LogStream::Stdout, s.as_bytes()))
    }

    pub fn send(&self, text: &str) {
        if let Some(f) = &self.0 {
            f(text);
        }
    }
}

/// What stops a generation early, checked between tokens.
#[derive(Clone, Debug)]
pub struct Halt {
    pub cancel: CancellationToken,
    pub deadline: Instant,
}

impl Halt {
    pub fn new(cancel: CancellationToken, timeout: Duration) -> Self {
        let now = Instant::now();
        Halt {
            cancel,
            deadline: now
                .checked_add(timeout)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
        }
    }

    /// A halt that never fires.
    pub fn never() -> Self {
        Halt::new(CancellationToken::new(), Duration::from_secs(86_400 * 365))
    }

    /// Why generation must stop now, if it must.
    pub fn reason(&self) -> Option<FinishReason> {
        if self.cancel.is_cancelled() {
            Some(FinishReason::Cancelled)
        } else if Instant::now() >= self.deadline {
            Some(FinishReason::TimedOut)
        } else {
            None
        }
    }
}

#[derive(Debug, Error)]
pub enum LlmError {
    #[error("unknown model `{model}`; this provider serves: {available}")]
    UnknownModel { model: String, available: String },
    #[error(
        "the prompt is {prompt_tokens} tokens, over the context length of `{model}` ({context_length} tokens)"
    )]
    PromptTooLong {
        model: String,
        prompt_tokens: u32,
        context_length: u32,
    },
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    #[error("model `{model}` cannot compute embeddings on this provider")]
    EmbeddingsUnsupported { model: String },
    #[error("cannot load model `{model}` from {path}: {reason}")]
    ModelLoad {
        model: String,
        path: String,
        reason: String,
    },
    #[error("the LLM backend is unavailable: {0}")]
    Unavailable(String),
    #[error("inference failed: {0}")]
    Inference(String),
    /// The Ollama-compatible API forwarded to refused the request because
    /// it came back to a network it had passed through.
    #[error("the request went round in a loop: {0}")]
    Loop(String),
}

impl From<LlmError> for AdapterError {
    fn from(e: LlmError) -> Self {
        match e {
            LlmError::UnknownModel { .. }
            | LlmError::PromptTooLong { .. }
            | LlmError::EmbeddingsUnsupported { .. } => AdapterError::InvalidParams(e.to_string()),
            LlmError::InvalidParams(m) => AdapterError::InvalidParams(m),
            LlmError::ModelLoad { .. } | LlmError::Unavailable(_) | LlmError::Loop(_) => {
                AdapterError::RuntimeUnavailable(e.to_string())
            }
            LlmError::Inference(m) => AdapterError::Runtime(m),
        }
    }
}

/// An inference engine serving some models.
pub trait LlmBackend: Send + Sync + std::fmt::Debug {
    /// `embedded` or `ollama`.
    fn kind(&self) -> &'static str;

    /// The models this backend serves now.
    fn models(&self) -> Vec<ModelInfo>;

    /// Looks for models again (files added or removed, models an Ollama
    /// server pulled or deleted since), so that [`Self::models`] is current.
    fn refresh(&self) -> BoxFuture<'_, Result<(), LlmError>> {
        Box::pin(async { Ok(()) })
    }

    /// Tokens `request`'s prompt takes once rendered, where the backend can
    /// tell without running the model (`None`: it cannot). May load the
    /// model's vocabulary, so call it off the async threads for large models.
    fn count_prompt_tokens(&self, request: &GenerateRequest) -> Result<Option<u32>, LlmError>;

    /// Generates text, sending it to `tokens` as it comes, until the model
    /// ends, a stop string, `max_tokens`, or `halt`.
    fn generate<'a>(
        &'a self,
        request: GenerateRequest,
        threads: u32,
        tokens: TokenSink,
        halt: Halt,
    ) -> BoxFuture<'a, Result<Completion, LlmError>>;

    /// Embeds each input.
    fn embed<'a>(
        &'a self,
        model: &'a str,
        inputs: Vec<String>,
        threads: u32,
        halt: Halt,
    ) -> BoxFuture<'a, Result<Embeddings, LlmError>>;
}

/// Parameters of `generate`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateParams {
    model: String,
    prompt: String,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    options: Option<Sampling>,
    #[serde(default)]
    via: Vec<String>,
}

/// Parameters of `chat`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatParams {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    options: Option<Sampling>,
    #[serde(default)]
    via: Vec<String>,
}

/// Parameters of `embed`: one input or several.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbedParams {
    model: String,
    input: EmbedInput,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum EmbedInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {}

/// `via` as the schema allows it: at most [`MAX_VIA`] peer ids, each
/// non-empty and short.
fn checked_via(via: Vec<String>) -> Result<Vec<String>, AdapterError> {
    if via.len() > MAX_VIA {
        return Err(AdapterError::InvalidParams(format!(
            "`via` names {} forwarding providers, more than {MAX_VIA}: the request is going round in a loop",
            via.len()
        )));
    }
    if via
        .iter()
        .any(|v| v.is_empty() || v.len() > MAX_VIA_ID_BYTES || v.contains(','))
    {
        return Err(AdapterError::InvalidParams(format!(
            "`via` entries must be peer ids of 1 to {MAX_VIA_ID_BYTES} bytes without commas"
        )));
    }
    Ok(via)
}

/// A method call, parsed and checked.
#[derive(Clone, Debug)]
enum Call {
    Generate(GenerateRequest),
    Embed { model: String, inputs: Vec<String> },
    List,
}

/// The `llm` adapter: routes each model to the backend that serves it (the
/// first one listed, when two serve the same name).
#[derive(Clone, Debug)]
pub struct LlmAdapter {
    backends: Vec<Arc<dyn LlmBackend>>,
}

impl LlmAdapter {
    pub fn new(backends: Vec<Arc<dyn LlmBackend>>) -> Self {
        LlmAdapter { backends }
    }

    /// Every model served, with the backend serving it; the first backend
    /// listing a name wins.
    pub fn served(&self) -> Vec<ServedModel> {
        let mut out: Vec<ServedModel> = Vec::new();
        for b in &self.backends {
            for m in b.models() {
                if !out.iter().any(|s| s.name == m.name) {
                    out.push(ServedModel {
                        name: m.name,
                        parameters: m.parameters,
                        quantization: m.quantization,
                        context_length: m.context_length,
                        backend: b.kind().to_string(),
                    });
                }
            }
        }
        out
    }

    /// The backend serving `model` and the model's description.
    fn route(&self, model: &str) -> Result<(&Arc<dyn LlmBackend>, ModelInfo), LlmError> {
        for b in &self.backends {
            if let Some(m) = b.models().into_iter().find(|m| m.name == model) {
                return Ok((b, m));
            }
        }
        let names: Vec<String> = self.served().into_iter().map(|m| m.name).collect();
        Err(LlmError::UnknownModel {
            model: model.to_string(),
            available: if names.is_empty() {
                "no models".to_string()
            } else {
                names.join(", ")
            },
        })
    }

    fn parse(&self, method: &str, params: &serde_json::Value) -> Result<Call, AdapterError> {
        fn de<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Result<T, AdapterError> {
            serde_json::from_value(v.clone())
                .map_err(|e| AdapterError::InvalidParams(e.to_string()))
        }
        let call = match method {
            "generate" => {
                let p: GenerateParams = de(params)?;
                Call::Generate(GenerateRequest {
                    model: p.model,
                    prompt: Prompt::Text {
                        prompt: p.prompt,
                        system: p.system,
                        raw: p.raw,
                    },
                    sampling: p.options.unwrap_or_default(),
                    via: checked_via(p.via)?,
                })
            }
            "chat" => {
                let p: ChatParams = de(params)?;
                if p.messages.is_empty() {
                    return Err(AdapterError::InvalidParams(
                        "`messages` must hold at least one message".into(),
                    ));
                }
                if let Some(m) = p
                    .messages
                    .iter()
                    .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
                {
                    return Err(AdapterError::InvalidParams(format!(
                        "message role `{}` is not one of system, user, assistant",
                        m.role
                    )));
                }
                Call::Generate(GenerateRequest {
                    model: p.model,
                    prompt: Prompt::Chat(p.messages),
                    sampling: p.options.unwrap_or_default(),
                    via: checked_via(p.via)?,
                })
            }
            "embed" => {
                let p: EmbedParams = de(params)?;
                let inputs = match p.input {
                    EmbedInput::One(s) => vec![s],
                    EmbedInput::Many(v) => v,
                };
                if inputs.is_empty() || inputs.len() > MAX_EMBED_INPUTS {
                    return Err(AdapterError::InvalidParams(format!(
                        "`input` must hold 1 to {MAX_EMBED_INPUTS} texts"
                    )));
                }
                Call::Embed {
                    model: p.model,
                    inputs,
                }
            }
            "list_models" => {
                let _: ListParams = de(params)?;
                Call::List
            }
            _ => return Err(unknown_method(self, method)),
        };
        Ok(call)
    }

    /// Checks a generation request against the model serving it: the model
    /// exists, the options are in range, the prompt fits the context.
    pub fn check_request(&self, request: &GenerateRequest) -> Result<(), LlmError> {
        request.sampling.check()?;
        let (backend, info) = self.route(&request.model)?;
        if let Some(n) = backend.count_prompt_tokens(request)?
            && info.context_length > 0
            // Room for at least one generated token is needed.
            && n >= info.context_length
        {
            return Err(LlmError::PromptTooLong {
                model: request.model.clone(),
                prompt_tokens: n,
                context_length: info.context_length,
            });
        }
        Ok(())
    }

    /// Tokens the request's prompt takes once rendered for its model (`None`
    /// where the backend cannot tell): for pricing and admission checks.
    pub fn prompt_tokens(&self, request: &GenerateRequest) -> Result<Option<u32>, LlmError> {
        let (backend, _) = self.route(&request.model)?;
        backend.count_prompt_tokens(request)
    }

    /// Runs a generation directly, outside a job: for the node's own
    /// endpoints and the benchmark. Checks the request first.
    pub async fn generate(
        &self,
        request: GenerateRequest,
        threads: u32,
        tokens: TokenSink,
        halt: Halt,
    ) -> Result<Completion, LlmError> {
        request.sampling.check()?;
        let (backend, _) = self.route(&request.model)?;
        backend
            .generate(request, threads.max(1), tokens, halt)
            .await
    }

    /// Embeds inputs directly, outside a job.
    pub async fn embed(
        &self,
        model: &str,
        inputs: Vec<String>,
        threads: u32,
        halt: Halt,
    ) -> Result<Embeddings, LlmError> {
        let (backend, _) = self.route(model)?;
        backend.embed(model, inputs, threads.max(1), halt).await
    }
}

impl Adapter for LlmAdapter {
    fn name(&self) -> &str {
        "llm"
    }

    fn methods(&self) -> Vec<MethodSpec> {
        let options = serde_json::json!({
            "type": "object",
            "additionalProperties": false,
            "description": "sampling options",
            "properties": {
                "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": DEFAULT_TEMPERATURE, "description": "0 is greedy"},
                "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": DEFAULT_TOP_P},
                "top_k": {"type": "integer", "minimum": 0, "default": DEFAULT_TOP_K, "description": "0 disables top-k"},
                "seed": {"type": "integer", "minimum": 0, "maximum": u32::MAX, "description": "same seed, same text"},
                "max_tokens": {"type": "integer", "minimum": 1, "default": DEFAULT_MAX_TOKENS},
                "stop": {"type": "array", "maxItems": MAX_STOP_STRINGS, "items": {"type": "string", "minLength": 1, "maxLength": MAX_STOP_BYTES}}
            }
        });
        let model = serde_json::json!({"type": "string", "description": "a model this provider serves (see list_models)"});
        let via = serde_json::json!({"type": "array", "maxItems": MAX_VIA, "items": {"type": "string", "minLength": 1, "maxLength": MAX_VIA_ID_BYTES}, "description": "providers that forwarded this request from other networks (peer ids); set by the Ollama-compatible API, a loop guard"});
        vec![
            MethodSpec {
                name: "generate".into(),
                description: "Continue a prompt (in the model's chat template unless `raw`); text streams as stdout".into(),
                params_schema: serde_json::json!({
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["model", "prompt"],
                    "properties": {
                        "model": model,
                        "prompt": {"type": "string"},
                        "system": {"type": "string"},
                        "raw": {"type": "boolean", "default": false, "description": "no chat template"},
                        "options": options,
                        "via": via
                    }
                }),
            },
            MethodSpec {
                name: "chat".into(),
                description: "Answer a conversation; the reply streams as stdout".into(),
                params_schema: serde_json::json!({
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["model", "messages"],
                    "properties": {
                        "model": model,
                        "messages": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "additionalProperties": false,
                                "required": ["role", "content"],
                                "properties": {
                                    "role": {"enum": ["system", "user", "assistant"]},
                                    "content": {"type": "string"}
                                }
                            }
                        },
                        "options": options,
                        "via": via
                    }
                }),
            },
            MethodSpec {
                name: "embed".into(),
                description: "Embedding vectors (L2-normalised, mean-pooled) of one or more texts".into(),
                params_schema: serde_json::json!({
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["model", "input"],
                    "properties": {
                        "model": model,
                        "input": {"oneOf": [
                            {"type": "string"},
                            {"type": "array", "minItems": 1, "maxItems": MAX_EMBED_INPUTS, "items": {"type": "string"}}
                        ]}
                    }
                }),
            },
            MethodSpec {
                name: "list_models".into(),
                description: "The models this provider serves".into(),
                params_schema: serde_json::json!({"type": "object", "additionalProperties": false}),
            },
        ]
    }

    fn models(&self) -> Vec<ModelInfo> {
        self.served()
            .into_iter()
            .map(|m| ModelInfo {
                name: m.name,
                parameters: m.parameters,
                quantization: m.quantization,
                context_length: m.context_length,
            })
            .collect()
    }

    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for b in &self.backends {
                // A backend that cannot be read now keeps the models it had.
                if let Err(e) = b.refresh().await {
                    tracing::warn!(backend = b.kind(), error = %e, "llm: cannot refresh the model list");
                }
            }
        })
    }

    /// The request's shape and sampling options only: the model may be
    /// one that other providers hold.
    fn check_params(&self, method: &str, params: &serde_json::Value) -> Result<(), AdapterError> {
        if let Call::Generate(request) = self.parse(method, params)? {
            request.sampling.check()?;
        }
        Ok(())
    }

    fn validate(&self, method: &str, params: &serde_json::Value) -> Result<(), AdapterError> {
        match self.parse(method, params)? {
            Call::Generate(request) => self.check_request(&request)?,
            Call::Embed { model, .. } => {
                self.route(&model)?;
            }
            Call::List => {}
        }
        Ok(())
    }

    fn execute<'a>(
        &'a self,
        ctx: ExecutionContext,
        method: &'a str,
        params: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<ExecutionReport, AdapterError>> {
        Box::pin(async move {
            let call = self.parse(method, params)?;
            std::fs::create_dir_all(&ctx.output_dir).map_err(|source| AdapterError::OutputDir {
                path: ctx.output_dir.clone(),
                source,
            })?;
            let started = Instant::now();
            let halt = Halt::new(ctx.cancel.clone(), ctx.timeout);
            let threads = ctx.limits.cores.max(1);
            let (exit, stdout, stderr, result, tokens) = match call {
                Call::Generate(request) => {
                    request.sampling.check()?;
                    let (backend, _) = self.route(&request.model)?;
                    let sink = TokenSink::logs(ctx.logs.clone());
                    match backend.generate(request, threads, sink, halt).await {
                        Ok(c) => {
                            let exit = match c.finish_reason {
                                FinishReason::Stop | FinishReason::Length => ExitStatus::Exited(0),
                                FinishReason::Cancelled => ExitStatus::Cancelled,
                                FinishReason::TimedOut => ExitStatus::TimedOut,
                            };
                            let json = serde_json::to_vec(&c)
                                .map_err(|e| AdapterError::Runtime(e.to_string()))?;
                            (
                                exit,
                                c.text.into_bytes(),
                                Vec::new(),
                                Some(json),
                                u64::from(c.completion_tokens),
                            )
                        }
                        // Tokens may have streamed already: this is a run that failed,
                        // not a job that never started.
                        Err(LlmError::Inference(why)) => {
                            let msg = format!("inference failed: {why}\n");
                            ctx.logs.send(LogStream::Stderr, msg.as_bytes());
                            (ExitStatus::Exited(1), Vec::new(), msg.into_bytes(), None, 0)
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Call::Embed { model, inputs } => {
                    let (backend, _) = self.route(&model)?;
                    let e = backend.embed(&model, inputs, threads, halt.clone()).await;
                    match e {
                        Ok(e) => {
                            let json = serde_json::to_vec(&e)
                                .map_err(|e| AdapterError::Runtime(e.to_string()))?;
                            (
                                ExitStatus::Exited(0),
                                json.clone(),
                                Vec::new(),
                                Some(json),
                                0,
                            )
                        }
                        Err(LlmError::Inference(why)) => {
                            let exit = match halt.reason() {
                                Some(FinishReason::Cancelled) => ExitStatus::Cancelled,
                                Some(FinishReason::TimedOut) => ExitStatus::TimedOut,
                                _ => ExitStatus::Exited(1),
                            };
                            let msg = format!("embedding failed: {why}\n");
                            (exit, Vec::new(), msg.into_bytes(), None, 0)
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Call::List => {
                    let json = serde_json::to_vec(&serde_json::json!({"models": self.served()}))
                        .map_err(|e| AdapterError::Runtime(e.to_string()))?;
                    ctx.logs.send(LogStream::Stdout, &json);
                    (
                        ExitStatus::Exited(0),
                        json.clone(),
                        Vec::new(),
                        Some(json),
                        0,
                    )
                }
            };
            if let Some(json) = result {
                let path = ctx.output_dir.join(RESULT_FILE);
                std::fs::write(&path, json)
                    .map_err(|source| AdapterError::OutputDir { path, source })?;
            }
            let outputs =
                outputs::collect(&ctx.output_dir).map_err(|source| AdapterError::OutputDir {
                    path: ctx.output_dir.clone(),
                    source,
                })?;
            let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            Ok(ExecutionReport {
                exit: Some(exit),
                stdout: tail_bytes(&stdout, limits::MAX_LOG_BYTES),
                stderr: tail_bytes(&stderr, limits::MAX_LOG_BYTES),
                outputs,
                usage: Usage {
                    wall_ms,
                    // Inference keeps its threads busy from start to end.
                    cpu_ms: wall_ms.saturating_mul(u64::from(threads)),
                    peak_memory_bytes: 0,
                    tokens,
                },
            })
        })
    }
}
