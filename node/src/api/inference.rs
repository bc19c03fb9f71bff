//! What the Ollama- and OpenAI-compatible routes share: the models the
//! network offers, finding one by name, submitting a request as an `llm`
//! job on the network, and following that job's output to its end, as
//! pieces of text and then the job's signed result (or why there is none).
//! Each route turns these into its own wire shape.

use super::edge::{ApiFail, ApiState, ask};
use super::rest::{RequirementsRequest, SubmitRequest};
use crate::control::{ApiQuery, LogFeed, NetworkModel};
use crate::views::{JobRefusal, JobResultView};
use axum::http::StatusCode;
use modchain_protocol::{JobId, Timestamp};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// How long an LLM job may run when the request does not say.
const DEFAULT_LLM_JOB_TIMEOUT_MS: u64 = 5 * 60_000;

pub(super) async fn network_models(state: &ApiState) -> Result<Vec<NetworkModel>, ApiFail> {
    ask(state, ApiQuery::Models).await
}

/// The JSON body, whatever its declared content type: Ollama's server
/// reads it so, `curl -d` declares a form, and OpenAI's clients declare JSON.
pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiFail> {
    serde_json::from_slice(body)
        .map_err(|e| ApiFail(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
}

/// The model by name (Ollama's `:latest` suffix is optional), or a 404 that
/// lists what the network offers.
pub(super) fn find<'a>(
    models: &'a [NetworkModel],
    name: &str,
) -> Result<&'a NetworkModel, ApiFail> {
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

/// Submits `method` of the `llm` adapter with `params` for the model named
/// `model` (as the network offers it) and starts following the job. `api`
/// names the compatible API the request came through, for the log.
pub(super) async fn submit(
    state: &ApiState,
    api: &str,
    model: &str,
    method: &str,
    mut params: Value,
) -> Result<JobFeed, ApiFail> {
    params["model"] = json!(model);
    let request = SubmitRequest {
        adapter: "llm".into(),
        method: Some(method.into()),
        params,
        requirements: RequirementsRequest {
            model: Some(model.to_string()),
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
    let id = ask(state, |reply| ApiQuery::Submit { spec, reply })
        .await?
        .map_err(ApiFail::from)?;
    tracing::info!(job = %id.to_hex(), model = %model, api, "compatible-API request became a job");
    // The job's output so far (nothing yet) and the feed of what follows,
    // taken atomically by the node, so no token falls between the two.
    let view = ask(state, |reply| ApiQuery::Logs { id, reply })
        .await?
        .ok_or_else(|| ApiFail(StatusCode::INTERNAL_SERVER_ERROR, "the job vanished".into()))?;
    let events = ask(state, ApiQuery::Events).await?;
    Ok(JobFeed {
        state: state.clone(),
        id,
        feed: view.feed,
        pending: view.text,
        ended: view.ended,
        events,
        ran: false,
        sent: String::new(),
        held: None,
        done: false,
    })
}

/// What a followed job gives next.
#[derive(Debug)]
pub(super) enum Piece {
    /// Text as the provider generated it (whole UTF-8 characters).
    Text(String),
    /// The job ended with its signed result; the last piece.
    Done(Box<Finished>),
    /// The job ended without an answer; the last piece.
    Failed(Failure),
}

/// A job's end: its result and the adapter's `result.json`.
#[derive(Debug)]
pub(super) struct Finished {
    pub(super) result: JobResultView,
    /// The adapter's completion (`prompt_tokens`, `completion_tokens`,
    /// `finish_reason`) or embeddings; `null` if the file is missing.
    pub(super) completion: Value,
}

impl Finished {
    pub(super) fn prompt_tokens(&self) -> u64 {
        self.completion["prompt_tokens"].as_u64().unwrap_or(0)
    }

    pub(super) fn completion_tokens(&self) -> u64 {
        self.completion["completion_tokens"]
            .as_u64()
            .unwrap_or(self.result.usage.tokens)
    }

    /// Whether generation stopped at the token limit (or a full context).
    pub(super) fn hit_length(&self) -> bool {
        self.completion["finish_reason"].as_str() == Some("length")
    }
}

/// Why a job gave no answer, as the compatible APIs tell their callers.
#[derive(Debug)]
pub(super) enum Failure {
    /// Every provider refused the request's parameters (a prompt over the
    /// model's context): the caller's request is wrong.
    Refused(String),
    /// The provider running the job was lost; the network re-auctions it,
    /// but what the next provider generates starts over.
    Lost(String),
    /// The job failed, or ended without a result.
    Failed(String),
}

impl Failure {
    pub(super) fn message(&self) -> &str {
        match self {
            Failure::Refused(m) | Failure::Lost(m) | Failure::Failed(m) => m,
        }
    }

    /// The HTTP status of an answer that is not streamed.
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Failure::Refused(_) => StatusCode::BAD_REQUEST,
            Failure::Lost(_) => StatusCode::BAD_GATEWAY,
            Failure::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<Failure> for ApiFail {
    fn from(f: Failure) -> Self {
        let status = f.status();
        let (Failure::Refused(m) | Failure::Lost(m) | Failure::Failed(m)) = f;
        ApiFail(status, m)
    }
}

/// Following one job's output to its end.
#[derive(Debug)]
pub(super) struct JobFeed {
    state: ApiState,
    pub(super) id: JobId,
    feed: broadcast::Receiver<LogFeed>,
    /// Bytes received but not yet given out (a UTF-8 sequence may be split
    /// across chunks).
    pending: Vec<u8>,
    ended: bool,
    /// The node's event stream: tells when the provider running the job
    /// was lost (the job goes back to the auction).
    events: broadcast::Receiver<String>,
    /// Whether the job has run on a provider.
    ran: bool,
    /// The text given out so far.
    sent: String,
    /// The end, held while the text it completes goes out.
    held: Option<Finished>,
    done: bool,
}

impl JobFeed {
    /// The next piece, or `None` after the last one.
    pub(super) async fn next(&mut self) -> Option<Piece> {
        loop {
            if let Some(end) = self.held.take() {
                self.done = true;
                return Some(Piece::Done(Box::new(end)));
            }
            if self.done {
                return None;
            }
            let text = take_utf8(&mut self.pending);
            if !text.is_empty() {
                self.sent.push_str(&text);
                return Some(Piece::Text(text));
            }
            if self.ended {
                self.done = true;
                let end = match self.outcome().await {
                    Ok(end) => end,
                    Err(f) => return Some(Piece::Failed(f)),
                };
                // Live output and the end travel as separate messages; the
                // signed result's text is whole, so what the stream missed
                // at its end is given from it.
                return Some(match end.result.stdout.strip_prefix(self.sent.as_str()) {
                    Some(rest) if !rest.is_empty() => {
                        let rest = rest.to_string();
                        self.sent.push_str(&rest);
                        self.held = Some(end);
                        Piece::Text(rest)
                    }
                    _ => Piece::Done(Box::new(end)),
                });
            }
            if let Some(lost) = self.step().await {
                self.done = true;
                return Some(Piece::Failed(Failure::Lost(lost)));
            }
        }
    }

    /// The job's end, skipping the text as it streams: for answers that
    /// are not streamed, which take the whole text from the result.
    pub(super) async fn finish(mut self) -> Result<Finished, Failure> {
        while let Some(piece) = self.next().await {
            match piece {
                Piece::Text(_) => {}
                Piece::Done(end) => return Ok(*end),
                Piece::Failed(f) => return Err(f),
            }
        }
        Err(Failure::Failed(format!("job {} gave no result", self.id)))
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

    /// The job's end: its result and the completion record, or why it
    /// failed.
    async fn outcome(&self) -> Result<Finished, Failure> {
        let id = self.id;
        let gone = |_| Failure::Failed("the node is shutting down".to_string());
        // The inline result file is stored as the result arrives; give the
        // node a moment if the stream ended first.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let detail = ask(&self.state, |reply| ApiQuery::Job { id, reply })
                .await
                .map_err(gone)?
                .ok_or_else(|| Failure::Failed(format!("job {id} vanished")))?;
            let state = detail.summary.state.as_str();
            if matches!(state, "failed" | "cancelled") {
                let why = format!("job {id} {state}: {}", detail.summary.detail);
                return Err(match detail.summary.refusal {
                    Some(JobRefusal::ParamsRefused) => Failure::Refused(why),
                    _ => Failure::Failed(why),
                });
            }
            let result = ask(&self.state, |reply| ApiQuery::JobResult { id, reply })
                .await
                .map_err(gone)?
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
                    return Err(Failure::Failed(format!("job {id}: {why}")));
                }
                let completion = r
                    .outputs
                    .iter()
                    .find(|o| o.name == modchain_adapters::llm::RESULT_FILE)
                    .and_then(|o| o.path.as_ref())
                    .and_then(|p| std::fs::read(p).ok())
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(Value::Null);
                return Ok(Finished {
                    result: r,
                    completion,
                });
            }
            if Instant::now() > deadline {
                return Err(Failure::Failed(format!(
                    "job {id} ended ({state}) without a result: {}",
                    detail.summary.detail
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use modchain_protocol::ModelInfo;

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
