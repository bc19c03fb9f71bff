//! `modchain mcp`: the network as tools for an AI agent. Serves the Model
//! Context Protocol over stdio (rmcp) and answers every tool call through the
//! running node's local API, like the other CLI commands (see
//! [`super::api_client`]). It keeps no state of its own and finds the node
//! afresh on every call, so it may be started before the node and outlives
//! the node's restarts.
//!
//! stdout is the protocol channel: nothing but rmcp writes there; logs go to
//! stderr (see `init_tracing` in main.rs).

use super::api_client::{ApiClientError, Endpoint};
use super::format::is_terminal_state;
use super::parse::parse_size;
use crate::control::DEFAULT_JOB_TIMEOUT_MS;
use crate::datadir::DataDir;
use anyhow::Context;
use modchain_protocol::{CapabilityAdvert, MICROS_PER_CREDIT, NodeId};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// How often a waiting tool asks the node about its job.
const POLL: Duration = Duration::from_millis(100);
/// The longest any tool waits, whatever it is asked: an agent's call should
/// come back within the hour, and a job can always be followed again.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// What a submit tool waits beyond the job's own timeout by default: the
/// auction, a queue at the provider, output transfer.
const WAIT_SLACK: Duration = Duration::from_secs(120);
/// How long `job_logs` follows a job by default.
const DEFAULT_FOLLOW: Duration = Duration::from_secs(120);
/// Logs and outputs longer than this come back cut to their end, so one call
/// cannot flood the agent's context; the whole text stays on the node.
const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Credits are sent as micro-credits in a u64; far below that, and well
/// above any sane price.
const MAX_PRICE_CREDITS: f64 = 1e12;

const INSTRUCTIONS: &str = "Modchain is a peer-to-peer compute network. These tools act through \
the local modchain node: submit a job (submit_wasm runs a WebAssembly module on any provider; \
submit_docker runs a command in a Docker image a provider already has; submit_llm asks a model a \
provider serves), follow it (job_status, job_logs), read its signed result (job_result), cancel \
it (cancel_job), and look at the network (list_providers, list_models), your credits (balance) \
and who is trusted (reputation). Pass wait=true to a submit tool to get the job's output in the \
same call. Prices are in credits; the node's answers give micro-credits (1 credit = 1000000).";

// ---------------------------------------------------------------- arguments

/// Tool arguments that are checked by the tool, not by rmcp: arguments that
/// do not fit the schema come back as a tool error the agent can read and
/// correct (as the MCP spec asks for input errors), not as a protocol error.
/// The input schema is `T`'s.
#[derive(Debug)]
pub struct Checked<T>(Result<T, String>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(Checked(
            serde_json::from_value(v).map_err(|e| format!("invalid arguments: {e}")),
        ))
    }
}

impl<T: JsonSchema> JsonSchema for Checked<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// What every submit tool shares: limits, price and waiting.
#[derive(Debug, Default)]
struct Terms {
    timeout_seconds: Option<u64>,
    max_price: Option<f64>,
    wait: bool,
    wait_seconds: Option<u64>,
}

/// The [`Terms`] of a submit tool's arguments. The fields are repeated in
/// each argument struct rather than shared through `#[serde(flatten)]`,
/// which serde cannot combine with `deny_unknown_fields` (an agent's
/// mistyped argument would then pass silently).
macro_rules! terms_of {
    ($a:expr) => {
        Terms {
            timeout_seconds: $a.timeout_seconds,
            max_price: $a.max_price,
            wait: $a.wait,
            wait_seconds: $a.wait_seconds,
        }
    };
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitWasmArgs {
    /// The module in WebAssembly text format (WAT), WASI preview 1, with an
    /// exported `_start`; it writes its answer to stdout (fd 1). Give this or
    /// `wasm_base64`.
    #[serde(default)]
    pub wat: Option<String>,
    /// The module's binary (`\0asm...`), base64 with the standard alphabet.
    /// Give this or `wat`.
    #[serde(default)]
    pub wasm_base64: Option<String>,
    /// Command-line arguments for the module.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables for the module.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Text given to the module on standard input.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Memory the module may use, like "64m" or "1g" (binary units); default 256m.
    #[serde(default)]
    pub memory: Option<String>,
    /// Hard time limit in seconds (default 60; at most 86400).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// The most credits to pay (default 10); providers quoting more decline.
    #[serde(default)]
    pub max_price: Option<f64>,
    /// Wait for the job to end and return its state and output (default false:
    /// return the job id at once).
    #[serde(default)]
    pub wait: bool,
    /// With `wait`, give up waiting after this many seconds (the job goes on);
    /// default the job's timeout plus 120.
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitDockerArgs {
    /// The image, like "busybox:latest"; it must already be present on the
    /// provider (providers do not pull unless they allow it).
    pub image: String,
    /// The command and its arguments, like ["sh", "-c", "echo hi"]; the
    /// image's default command if empty.
    #[serde(default)]
    pub command: Vec<String>,
    /// CPU cores the job needs (default 1).
    #[serde(default)]
    pub cpus: Option<u32>,
    /// Memory limit, like "512m" or "2g" (binary units); default 256m.
    #[serde(default)]
    pub memory: Option<String>,
    /// GPUs the job needs (default 0).
    #[serde(default)]
    pub gpus: Option<u32>,
    /// Environment variables for the container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Ask for network access (granted only where the provider allows it).
    #[serde(default)]
    pub network: bool,
    /// Hard time limit in seconds (default 60; at most 86400).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// The most credits to pay (default 10); providers quoting more decline.
    #[serde(default)]
    pub max_price: Option<f64>,
    /// Wait for the job to end and return its state and output (default false).
    #[serde(default)]
    pub wait: bool,
    /// With `wait`, give up waiting after this many seconds (the job goes on);
    /// default the job's timeout plus 120.
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitLlmArgs {
    /// A model a provider serves, by name (see list_models).
    pub model: String,
    /// The prompt, as the user's message.
    pub prompt: String,
    /// A system prompt put before it.
    #[serde(default)]
    pub system: Option<String>,
    /// Sampling temperature, 0 (greedy, reproducible) to 2.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// The most tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Hard time limit in seconds (default 60; at most 86400).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// The most credits to pay (default 10); providers quoting more decline.
    #[serde(default)]
    pub max_price: Option<f64>,
    /// Wait for the answer and return it (default false).
    #[serde(default)]
    pub wait: bool,
    /// With `wait`, give up waiting after this many seconds (the job goes on);
    /// default the job's timeout plus 120.
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobIdArgs {
    /// The job id (64 hex digits), as a submit tool returned it.
    pub job_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobLogsArgs {
    /// The job id (64 hex digits), as a submit tool returned it.
    pub job_id: String,
    /// Keep reading until the job ends (or `wait_seconds` pass) instead of
    /// returning what was produced so far.
    #[serde(default)]
    pub follow: bool,
    /// With `follow`, stop after this many seconds (default 120).
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListJobsArgs {
    /// Only jobs in this state: queued, bidding, awarded, running, completed,
    /// failed or cancelled.
    #[serde(default)]
    pub state: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListProvidersArgs {
    /// Only providers offering this adapter (wasm, docker, llm, ...).
    #[serde(default)]
    pub adapter: Option<String>,
    /// Only providers serving this model.
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BalanceArgs {
    /// Another node's balance: its node id (64 hex digits) or libp2p peer id
    /// (12D3KooW...). This node's when left out.
    #[serde(default)]
    pub node: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

// ---------------------------------------------------------------- results

/// A successful answer: the JSON as text (what every client shows the model)
/// and as structured content.
fn answer(value: Value) -> CallToolResult {
    let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    if value.is_object() {
        result.structured_content = Some(value);
    }
    result
}

/// A failed call, as a tool error with what went wrong and what to do.
fn failure(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// The node's answer to an API error, in words an agent (and its user) can act on.
fn describe(e: ApiClientError) -> String {
    match e {
        ApiClientError::NotRunning(dir) => format!(
            "no modchain node is running with data directory {dir}: start one with \
             `modchain --data-dir {dir} start` (or a whole local network with `modchain devnet`), \
             then call the tool again"
        ),
        ApiClientError::Unreachable { url, reason } => format!(
            "the modchain node at {url} is not answering ({reason}): start it with \
             `modchain start` (or `modchain devnet`), or check it is still running"
        ),
        ApiClientError::Refused {
            status, body, path, ..
        } => {
            // Every API error is `{"error": "..."}`; show the node's words.
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(String::from))
                .unwrap_or(body);
            format!("the node refused {path} (HTTP {status}): {message}")
        }
        other => other.to_string(),
    }
}

/// A job id as a path segment: anything that could change the request path
/// is refused here; the node checks the rest.
fn job_segment(id: &str) -> Result<&str, String> {
    let id = id.trim();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{id:?} is not a job id: expected the 64 hex digits a submit tool returned"
        ));
    }
    Ok(id)
}

/// A node named by its id in hex, or by its libp2p peer id.
fn node_hex(s: &str) -> Result<String, String> {
    let s = s.trim();
    if let Ok(peer) = s.parse::<libp2p::PeerId>() {
        return NodeId::from_peer_id(&peer)
            .map(|n| n.to_hex())
            .map_err(|_| format!("peer id {s} carries no ed25519 key"));
    }
    NodeId::from_hex(s)
        .map(|n| n.to_hex())
        .ok_or_else(|| format!("{s:?} is neither a node id (64 hex digits) nor a peer id"))
}

/// Credits → micro-credits, for `max_price`.
fn micro_credits(credits: f64) -> Result<u64, String> {
    if !credits.is_finite() || credits <= 0.0 || credits > MAX_PRICE_CREDITS {
        return Err(format!(
            "max_price {credits}: expected a positive number of credits, like 0.5"
        ));
    }
    Ok((credits * MICROS_PER_CREDIT as f64).round() as u64)
}

/// The end of a long text, with a note saying what was left out.
fn tail(text: &str) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text.to_string();
    }
    let mut cut = text.len() - MAX_TEXT_BYTES;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    format!(
        "[… {cut} earlier bytes left out; `modchain logs ID` has them all]\n{}",
        &text[cut..]
    )
}

fn cut_text(v: &Value) -> Value {
    match v.as_str() {
        Some(s) => Value::String(tail(s)),
        None => v.clone(),
    }
}

/// `POST /api/v1/jobs` body from an adapter call and the submit terms.
fn job_body(
    adapter: &str,
    method: &str,
    params: Map<String, Value>,
    mut requirements: Map<String, Value>,
    terms: &Terms,
) -> Result<Value, String> {
    requirements.retain(|_, v| !v.is_null());
    let mut body = Map::new();
    body.insert("adapter".into(), json!(adapter));
    body.insert("method".into(), json!(method));
    body.insert("params".into(), Value::Object(params));
    if !requirements.is_empty() {
        body.insert("requirements".into(), Value::Object(requirements));
    }
    if let Some(t) = terms.timeout_seconds {
        let ms = t
            .checked_mul(1000)
            .filter(|ms| *ms > 0)
            .ok_or_else(|| format!("timeout_seconds {t}: expected 1 to 86400"))?;
        body.insert("timeout_ms".into(), json!(ms));
    }
    if let Some(p) = terms.max_price {
        body.insert("max_price".into(), json!(micro_credits(p)?));
    }
    Ok(Value::Object(body))
}

fn size(what: &str, s: &Option<String>) -> Result<Option<u64>, String> {
    s.as_deref()
        .map(|s| parse_size(s).map_err(|e| format!("{what}: {e:#}")))
        .transpose()
}

// ---------------------------------------------------------------- the server

/// The MCP server: one tool per thing a client of the network does.
#[derive(Clone, Debug)]
pub struct NetworkTools {
    data_dir: DataDir,
    tool_router: ToolRouter<Self>,
}

impl NetworkTools {
    pub fn new(data_dir: DataDir) -> Self {
        NetworkTools {
            data_dir,
            tool_router: Self::tool_router(),
        }
    }

    /// The node's API, read afresh every call (the node may have restarted).
    fn endpoint(&self) -> Result<Endpoint, String> {
        Endpoint::locate(&self.data_dir).map_err(describe)
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.endpoint()?
            .call("GET", path, None)
            .await
            .map_err(describe)
    }

    /// Submits a job, and with `wait` follows it to its end.
    async fn submit(&self, body: Value, terms: &Terms) -> Result<Value, String> {
        let ep = self.endpoint()?;
        let created = ep
            .call("POST", "/api/v1/jobs", Some(&body))
            .await
            .map_err(describe)?;
        let job_id = created["job_id"]
            .as_str()
            .ok_or("the node accepted the job but sent no job_id")?
            .to_string();
        if !terms.wait {
            return Ok(json!({
                "job_id": job_id,
                "state": "submitted",
                "next": "follow it with job_status or job_logs; job_result once it ended",
            }));
        }
        let job_timeout = terms.timeout_seconds.map_or(
            Duration::from_millis(DEFAULT_JOB_TIMEOUT_MS),
            Duration::from_secs,
        );
        let limit = terms
            .wait_seconds
            .map_or(job_timeout.saturating_add(WAIT_SLACK), Duration::from_secs)
            .min(MAX_WAIT);
        let (job, ended) = wait_for_job(&ep, &job_id, limit).await?;
        let mut out = json!({
            "job_id": job_id,
            "state": job["state"],
            "ended": ended,
            "detail": job["detail"],
            "provider": job["provider"],
            "exit_code": job["exit_code"],
            "exit": job["exit"],
            "stdout": cut_text(&job["stdout"]),
            "stderr": cut_text(&job["stderr"]),
            "price_micro_credits": job["price"],
            "receipt_id": job["receipt_id"],
            "outputs": job["outputs"],
        });
        if !ended && let Some(o) = out.as_object_mut() {
            o.insert(
                "next".into(),
                json!(format!(
                    "still {} after {} s; the job goes on: follow it with job_status or job_logs",
                    job["state"].as_str().unwrap_or("running"),
                    limit.as_secs()
                )),
            );
        }
        Ok(out)
    }
}

/// Polls the job until it is in a terminal state or `limit` passed; returns
/// the last view of it and whether it ended.
async fn wait_for_job(
    ep: &Endpoint,
    job_id: &str,
    limit: Duration,
) -> Result<(Value, bool), String> {
    let path = format!("/api/v1/jobs/{}", job_segment(job_id)?);
    let deadline = Instant::now() + limit;
    loop {
        let job = ep.call("GET", &path, None).await.map_err(describe)?;
        if job["state"].as_str().is_some_and(is_terminal_state) {
            return Ok((job, true));
        }
        if Instant::now() >= deadline {
            return Ok((job, false));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The tool's arguments, or its error result.
macro_rules! args {
    ($checked:expr) => {
        match $checked.0 {
            Ok(a) => a,
            Err(e) => return failure(e),
        }
    };
}

/// The tool's answer from a `Result<Value, String>`.
fn reply(r: Result<Value, String>) -> CallToolResult {
    match r {
        Ok(v) => answer(v),
        Err(e) => failure(e),
    }
}

#[tool_router]
impl NetworkTools {
    /// Runs a WebAssembly module (WASI preview 1) on a provider of the
    /// network; every provider runs wasm, no Docker needed.
    #[tool(
        description = "Run a WebAssembly module (WASI preview 1, text `wat` or base64 `wasm_base64`) on a provider of the Modchain network. Returns the job id; with wait=true, waits for the job to end and returns its state, exit code and stdout/stderr.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = true
        )
    )]
    async fn submit_wasm(
        &self,
        Parameters(a): Parameters<Checked<SubmitWasmArgs>>,
    ) -> CallToolResult {
        let a = args!(a);
        let terms = terms_of!(a);
        let r = async {
            let mut params = Map::new();
            match (a.wat, a.wasm_base64) {
                (Some(wat), None) => params.insert("wat".into(), json!(wat)),
                (None, Some(b64)) => params.insert("wasm_base64".into(), json!(b64.trim())),
                _ => {
                    return Err(
                        "give the module either as `wat` (WebAssembly text) or as `wasm_base64` (the binary, base64), exactly one of them"
                            .to_string(),
                    );
                }
            };
            if !a.args.is_empty() {
                params.insert("args".into(), json!(a.args));
            }
            if !a.env.is_empty() {
                params.insert("env".into(), json!(a.env));
            }
            if let Some(s) = a.stdin {
                params.insert("stdin".into(), json!(s));
            }
            let mut req = Map::new();
            req.insert("memory_bytes".into(), json!(size("memory", &a.memory)?));
            let body = job_body("wasm", "run", params, req, &terms)?;
            self.submit(body, &terms).await
        }
        .await;
        reply(r)
    }

    #[tool(
        description = "Run a command in a Docker image on a provider of the Modchain network (the image must already be on the provider). The container has no network unless asked and allowed, a read-only root, no capabilities; files it writes to /outputs come back. Returns the job id; with wait=true, waits for the job to end and returns its state, exit code and stdout/stderr.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = true
        )
    )]
    async fn submit_docker(
        &self,
        Parameters(a): Parameters<Checked<SubmitDockerArgs>>,
    ) -> CallToolResult {
        let a = args!(a);
        let terms = terms_of!(a);
        let r = async {
            if a.image.trim().is_empty() {
                return Err("`image` is empty: name an image, like busybox:latest".to_string());
            }
            let mut params = Map::new();
            params.insert("image".into(), json!(a.image.trim()));
            if !a.command.is_empty() {
                params.insert("cmd".into(), json!(a.command));
            }
            if !a.env.is_empty() {
                params.insert("env".into(), json!(a.env));
            }
            if a.network {
                params.insert("network".into(), json!(true));
            }
            let mut req = Map::new();
            req.insert("cores".into(), json!(a.cpus));
            req.insert("memory_bytes".into(), json!(size("memory", &a.memory)?));
            req.insert("gpus".into(), json!(a.gpus));
            let body = job_body("docker", "run", params, req, &terms)?;
            self.submit(body, &terms).await
        }
        .await;
        reply(r)
    }

    #[tool(
        description = "Ask a large language model served by a provider of the Modchain network (see list_models for the models on offer). Returns the job id; with wait=true, waits and returns the generated text as stdout.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = true
        )
    )]
    async fn submit_llm(
        &self,
        Parameters(a): Parameters<Checked<SubmitLlmArgs>>,
    ) -> CallToolResult {
        let a = args!(a);
        let terms = terms_of!(a);
        let r = async {
            if a.model.trim().is_empty() {
                return Err("`model` is empty: name a model list_models shows".to_string());
            }
            // The llm adapter's `generate` parameters: sampling options sit
            // under `options`, and are left out when not given so the
            // adapter's defaults apply.
            let mut options = Map::new();
            if let Some(t) = a.temperature {
                options.insert("temperature".into(), json!(t));
            }
            if let Some(n) = a.max_tokens {
                options.insert("max_tokens".into(), json!(n));
            }
            let mut params = Map::new();
            params.insert("model".into(), json!(a.model));
            params.insert("prompt".into(), json!(a.prompt));
            if let Some(s) = a.system {
                params.insert("system".into(), json!(s));
            }
            if !options.is_empty() {
                params.insert("options".into(), Value::Object(options));
            }
            // Only providers serving the model bid.
            let mut req = Map::new();
            req.insert("model".into(), json!(a.model));
            let body = job_body("llm", "generate", params, req, &terms)?;
            self.submit(body, &terms).await
        }
        .await;
        reply(r)
    }

    #[tool(
        description = "One job this node submitted: state (queued, bidding, awarded, running, completed, failed, cancelled), why it is in it, orchestrator, provider, history of states with times, exit code, price, and stdout/stderr once it ended.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn job_status(&self, Parameters(a): Parameters<Checked<JobIdArgs>>) -> CallToolResult {
        let a = args!(a);
        let r = async {
            let mut job = self
                .get(&format!("/api/v1/jobs/{}", job_segment(&a.job_id)?))
                .await?;
            for k in ["stdout", "stderr"] {
                job[k] = cut_text(&job[k]);
            }
            Ok(job)
        }
        .await;
        reply(r)
    }

    #[tool(
        description = "A job's output (stdout and stderr as the provider produced them). With follow=true, keeps reading until the job ends or wait_seconds pass.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn job_logs(&self, Parameters(a): Parameters<Checked<JobLogsArgs>>) -> CallToolResult {
        let a = args!(a);
        let r = async {
            let id = job_segment(&a.job_id)?;
            let ep = self.endpoint()?;
            let path = if a.follow {
                format!("/api/v1/jobs/{id}/logs?follow=true")
            } else {
                format!("/api/v1/jobs/{id}/logs")
            };
            let limit = if a.follow {
                a.wait_seconds
                    .map_or(DEFAULT_FOLLOW, Duration::from_secs)
                    .min(MAX_WAIT)
            } else {
                // A snapshot: the node answers at once.
                Duration::from_secs(30)
            };
            let deadline = Instant::now() + limit;
            let mut stream = ep.stream(&path).await.map_err(describe)?;
            let mut bytes = Vec::new();
            let ended = loop {
                match tokio::time::timeout_at(deadline, stream.next_bytes()).await {
                    Ok(Ok(Some(b))) => bytes.extend_from_slice(&b),
                    Ok(Ok(None)) => break true,
                    Ok(Err(e)) => return Err(format!("reading the logs from the node: {e}")),
                    Err(_) => break false,
                }
            };
            let mut out = json!({
                "job_id": id,
                "logs": tail(&String::from_utf8_lossy(&bytes)),
            });
            if a.follow
                && let Some(o) = out.as_object_mut()
            {
                o.insert("job_ended".into(), json!(ended));
            }
            Ok(out)
        }
        .await;
        reply(r)
    }

    #[tool(
        description = "A finished job's signed result: exit, stdout/stderr, resource usage, the receipt and price, and its output files (name, size, digest, local path on this node).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn job_result(&self, Parameters(a): Parameters<Checked<JobIdArgs>>) -> CallToolResult {
        let a = args!(a);
        let r = async {
            let mut result = self
                .get(&format!("/api/v1/jobs/{}/result", job_segment(&a.job_id)?))
                .await?;
            for k in ["stdout", "stderr"] {
                result[k] = cut_text(&result[k]);
            }
            Ok(result)
        }
        .await;
        reply(r)
    }

    #[tool(
        description = "Cancel a job this node submitted; the provider stops it (you pay for the time it ran).",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn cancel_job(&self, Parameters(a): Parameters<Checked<JobIdArgs>>) -> CallToolResult {
        let a = args!(a);
        let r = async {
            let id = job_segment(&a.job_id)?;
            let ep = self.endpoint()?;
            ep.call("DELETE", &format!("/api/v1/jobs/{id}"), None)
                .await
                .map_err(describe)
        }
        .await;
        reply(r)
    }

    #[tool(
        description = "The jobs this node submitted, oldest first, with state, adapter, provider, exit code and price (micro-credits).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_jobs(&self, Parameters(a): Parameters<Checked<ListJobsArgs>>) -> CallToolResult {
        let a = args!(a);
        let r = async {
            let jobs = self.get("/api/v1/jobs").await?;
            let jobs: Vec<Value> = jobs
                .as_array()
                .into_iter()
                .flatten()
                .filter(|j| a.state.as_deref().is_none_or(|s| j["state"] == json!(s)))
                .cloned()
                .collect();
            Ok(json!({ "count": jobs.len(), "jobs": jobs }))
        }
        .await;
        reply(r)
    }

    #[tool(
        description = "The providers on the network this node knows of, from their signed adverts: adapters with their methods and models, hardware (CPU, memory, GPUs, container runtime), free capacity, prices (micro-credits) and whether they are connected.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_providers(
        &self,
        Parameters(a): Parameters<Checked<ListProvidersArgs>>,
    ) -> CallToolResult {
        let a = args!(a);
        let r = async {
            let nodes = self.get("/api/v1/nodes").await?;
            let mut providers = Vec::new();
            let mut without_advert = 0usize;
            for n in nodes.as_array().into_iter().flatten() {
                let Ok(advert) = serde_json::from_value::<CapabilityAdvert>(n["advert"].clone())
                else {
                    without_advert += 1;
                    continue;
                };
                if let Some(want) = &a.adapter
                    && advert.adapter(want).is_none()
                {
                    continue;
                }
                if let Some(want) = &a.model
                    && !advert
                        .adapters
                        .iter()
                        .any(|ad| ad.models.iter().any(|m| m.name == *want))
                {
                    continue;
                }
                providers.push(provider_view(n, &advert));
            }
            Ok(json!({
                "count": providers.len(),
                "providers": providers,
                "peers_without_advert": without_advert,
            }))
        }
        .await;
        reply(r)
    }

    #[tool(
        description = "The models offered on the network (from the providers' adverts): name, adapter, parameter count, quantization, context length, and the providers serving each.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_models(&self, Parameters(a): Parameters<Checked<NoArgs>>) -> CallToolResult {
        let _: NoArgs = args!(a);
        let r = async {
            let nodes = self.get("/api/v1/nodes").await?;
            // (adapter, model) → description and the peers serving it.
            let mut models: BTreeMap<(String, String), (Value, BTreeSet<String>)> =
                BTreeMap::new();
            for n in nodes.as_array().into_iter().flatten() {
                let Ok(advert) = serde_json::from_value::<CapabilityAdvert>(n["advert"].clone())
                else {
                    continue;
                };
                let peer = n["peer_id"].as_str().unwrap_or_default().to_string();
                for ad in &advert.adapters {
                    for m in &ad.models {
                        let entry = models
                            .entry((ad.name.clone(), m.name.clone()))
                            .or_insert_with(|| {
                                (
                                    json!({
                                        "name": m.name,
                                        "adapter": ad.name,
                                        "parameters": m.parameters,
                                        "quantization": m.quantization,
                                        "context_length": m.context_length,
                                    }),
                                    BTreeSet::new(),
                                )
                            });
                        entry.1.insert(peer.clone());
                    }
                }
            }
            let list: Vec<Value> = models
                .into_values()
                .map(|(mut m, peers)| {
                    m["providers"] = json!(peers);
                    m
                })
                .collect();
            let empty = list.is_empty();
            let mut out = json!({ "count": list.len(), "models": list });
            if empty {
                out["note"] = json!(
                    "no provider on the network advertises a model yet (an llm provider lists the models it serves in its advert)"
                );
            }
            Ok(out)
        }
        .await;
        reply(r)
    }

    #[tool(
        description = "A credit balance derived from the receipts in the ledger: this node's, or another node's by node id or peer id.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn balance(&self, Parameters(a): Parameters<Checked<BalanceArgs>>) -> CallToolResult {
        let a = args!(a);
        let r = async {
            let path = match &a.node {
                Some(n) => format!("/api/v1/balance?node={}", node_hex(n)?),
                None => "/api/v1/balance".to_string(),
            };
            self.get(&path).await
        }
        .await;
        reply(r)
    }

    #[tool(
        description = "The reputation this node computes for every peer from the receipts in its ledger (EigenTrust): trust share, reputation in parts per million of the most trusted, and whether the peer is a pre-trusted seed. Most trusted first.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn reputation(&self, Parameters(a): Parameters<Checked<NoArgs>>) -> CallToolResult {
        let _: NoArgs = args!(a);
        let r = async {
            let list = self.get("/api/v1/reputation").await?;
            Ok(json!({ "reputation": list }))
        }
        .await;
        reply(r)
    }
}

/// One provider as `list_providers` shows it.
fn provider_view(node: &Value, advert: &CapabilityAdvert) -> Value {
    let adapters: Vec<Value> = advert
        .adapters
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "methods": a.methods,
                "models": a.models.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let gpus: Vec<Value> = advert
        .gpus
        .iter()
        .map(|g| json!({ "vendor": g.vendor, "model": g.model, "vram_bytes": g.vram_bytes }))
        .collect();
    json!({
        "peer_id": node["peer_id"],
        "node_id": node["node_id"],
        "self": node["self"],
        "connected": node["connected"],
        "adapters": adapters,
        "hardware": {
            "cpu": { "model": advert.cpu.model, "cores": advert.cpu.cores, "threads": advert.cpu.threads },
            "memory_bytes": advert.memory.total_bytes,
            "gpus": gpus,
            "container_runtime": advert.container_runtime,
            "benchmark_score": advert.benchmark_score,
        },
        "free": advert.free,
        "prices_micro_credits": advert.prices,
        "orchestrator_candidate": advert.orchestrator_candidate,
    })
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NetworkTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("modchain", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

/// `modchain mcp`: serves until the client closes stdin.
pub async fn serve(data_dir: DataDir) -> anyhow::Result<()> {
    // Not fatal: an agent's client starts its servers when it starts, maybe
    // before the node; every tool says what to do until the node is up.
    if let Err(e) = Endpoint::locate(&data_dir) {
        tracing::warn!("{}", describe(e));
    }
    let service = NetworkTools::new(data_dir)
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP session over stdin/stdout did not start")?;
    service
        .waiting()
        .await
        .context("the MCP session ended abnormally")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_description_and_an_object_schema() {
        let tools = NetworkTools::tool_router().list_all();
        let names: BTreeSet<String> = tools.iter().map(|t| t.name.to_string()).collect();
        for want in [
            "submit_wasm",
            "submit_docker",
            "submit_llm",
            "job_status",
            "job_logs",
            "job_result",
            "cancel_job",
            "list_jobs",
            "list_providers",
            "list_models",
            "balance",
            "reputation",
        ] {
            assert!(names.contains(want), "{want} missing from {names:?}");
        }
        for t in &tools {
            assert!(
                t.description.as_deref().is_some_and(|d| d.len() > 20),
                "{} has no description",
                t.name
            );
            assert_eq!(
                t.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                t.name
            );
        }
        let wasm = tools
            .iter()
            .find(|t| t.name == "submit_wasm")
            .map(|t| Value::Object(t.input_schema.as_ref().clone()))
            .unwrap_or_default();
        for field in [
            "wat",
            "wasm_base64",
            "args",
            "timeout_seconds",
            "max_price",
            "wait",
        ] {
            assert!(wasm["properties"][field].is_object(), "{field}: {wasm}");
        }
    }

    #[test]
    fn arguments_that_do_not_fit_become_a_message() {
        let bad: Checked<JobIdArgs> = serde_json::from_value(json!({ "id": "x" })).expect("value");
        assert!(bad.0.expect_err("unknown field").contains("job_id"));
        let good: Checked<JobIdArgs> =
            serde_json::from_value(json!({ "job_id": "ab" })).expect("value");
        assert_eq!(good.0.expect("fits").job_id, "ab");
    }

    #[test]
    fn prices_ids_and_long_text() {
        assert_eq!(micro_credits(0.5), Ok(500_000));
        assert_eq!(micro_credits(3.0), Ok(3_000_000));
        assert!(micro_credits(-1.0).is_err());
        assert!(micro_credits(f64::NAN).is_err());
        assert!(job_segment("../stats").is_err());
        assert!(job_segment("").is_err());
        assert_eq!(job_segment(" abc123 "), Ok("abc123"));
        assert!(node_hex("nope").is_err());
        let long = "é".repeat(MAX_TEXT_BYTES);
        let cut = tail(&long);
        assert!(cut.starts_with("[… "));
        assert!(cut.len() < long.len());
        assert_eq!(tail("short"), "short");
    }

    #[test]
    fn the_node_refusal_is_shown_in_its_own_words() {
        let e = ApiClientError::Refused {
            method: "POST".into(),
            path: "/api/v1/jobs".into(),
            status: 400,
            body: r#"{"error":"no provider offers the adapter `llm`"}"#.into(),
        };
        assert_eq!(
            describe(e),
            "the node refused /api/v1/jobs (HTTP 400): no provider offers the adapter `llm`"
        );
        let e = ApiClientError::NotRunning("/tmp/x".into());
        assert!(describe(e).contains("modchain --data-dir /tmp/x start"));
    }

    #[test]
    fn llm_jobs_carry_the_adapter_parameters() {
        let terms = Terms {
            timeout_seconds: Some(30),
            max_price: Some(1.0),
            ..Terms::default()
        };
        let mut params = Map::new();
        params.insert("model".into(), json!("m"));
        let mut req = Map::new();
        req.insert("model".into(), json!("m"));
        req.insert("gpus".into(), Value::Null);
        let body = job_body("llm", "generate", params, req, &terms).expect("body");
        assert_eq!(
            body,
            json!({
                "adapter": "llm",
                "method": "generate",
                "params": { "model": "m" },
                "requirements": { "model": "m" },
                "timeout_ms": 30_000,
                "max_price": 1_000_000,
            })
        );
    }
}
