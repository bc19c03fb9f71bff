//! The OpenAI-compatible API with real parts: separate `modchain` processes
//! on loopback, two providers serving SmolLM2-135M-Instruct (GGUF, fetched
//! by scripts/fetch-test-model.sh) with the embedded llama.cpp backend, and
//! a client node whose `/v1` routes are driven by the official `openai`
//! Python client; then time to first token through the OpenAI route and the
//! Ollama route of the same node, interleaved.

mod common;

use common::{TestNet, serve_model, wait_until};
use modchain_adapters::testing::{LLM_TEST_MODEL as MODEL, llm_test_model as model_file};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn executed_receipts(net: &TestNet, i: usize) -> usize {
    net.nodes[i]
        .receipts()
        .iter()
        .filter(|r| r["outcome"] == "executed")
        .count()
}

#[test]
fn the_official_openai_client_gets_answers_from_the_network() {
    let model = model_file();
    let t0 = Instant::now();
    // node-1 is the client (no model); node-2 and node-3 serve the model.
    let net = TestNet::start_with("openai-test", 3, |i, dir| {
        if i >= 2 {
            serve_model(&model, dir);
        }
    });
    eprintln!("[{:?}] network up", t0.elapsed());
    let url = net.nodes[0].url().expect("api.url");
    let token = net.nodes[0].token();
    wait_until(
        Duration::from_secs(20),
        "the model offered on /v1/models",
        || {
            net.nodes[0]
                .get("/v1/models")
                .filter(|v| v.to_string().contains(MODEL))
        },
    );

    let report = run_openai_client(&net, &url, &token);
    eprintln!("[{:?}] openai client: {}", t0.elapsed(), report["seen"]);

    // Six jobs answered (chat and completions, streamed and not, and two
    // embeddings); each is an llm job settled by a receipt on every peer.
    for i in 0..net.nodes.len() {
        wait_until(
            Duration::from_secs(10),
            "the OpenAI routes' receipts on every peer",
            || (executed_receipts(&net, i) >= 6).then_some(()),
        );
    }
    let jobs = net.nodes[0].get("/api/v1/jobs").expect("jobs");
    let llm_jobs: Vec<&Value> = jobs
        .as_array()
        .expect("a list")
        .iter()
        .filter(|j| j["adapter"] == "llm")
        .collect();
    for method in ["chat", "generate", "embed"] {
        assert!(
            llm_jobs
                .iter()
                .any(|j| j["method"] == method && j["state"] == "completed"),
            "an llm `{method}` job completed: {jobs}"
        );
    }
    // The over-long prompt failed as refused by every provider: a typed
    // refusal, which the route answered as a 400.
    assert!(
        llm_jobs
            .iter()
            .any(|j| j["state"] == "failed" && j["refusal"] == "params_refused"),
        "{jobs}"
    );

    time_to_first_token_through_both_apis(&url, &token);
}

/// Runs tests/openai/openai_client.py (the official `openai` Python client)
/// against the node API at `url`; returns what it saw.
fn run_openai_client(net: &TestNet, url: &str, token: &str) -> Value {
    common::run_client_script(
        "tests/openai/openai_client.py",
        &[url, token, MODEL],
        "openai",
        "openai==2.*",
        || format!("against {url}:\n{}", net.logs()),
    )
}

/// Which compatible API a measurement goes through.
#[derive(Clone, Copy, Debug)]
enum Route {
    Ollama,
    OpenAi,
}

/// POSTs the same streamed chat through `route` and returns the time until
/// the first piece of text, reading the answer to its end (and checking
/// that it ends as the API says it does).
fn first_token(url: &str, token: &str, route: Route) -> Duration {
    let messages = json!([{ "role": "user", "content": "What is the capital of France?" }]);
    let (path, body) = match route {
        Route::Ollama => (
            "/api/chat",
            json!({ "model": MODEL, "messages": messages,
                    "options": { "temperature": 0, "num_predict": 8 } }),
        ),
        Route::OpenAi => (
            "/v1/chat/completions",
            json!({ "model": MODEL, "messages": messages, "stream": true,
                    "temperature": 0, "max_tokens": 8 }),
        ),
    };
    let t = Instant::now();
    let mut first = None;
    let mut last = String::new();
    common::post_streaming(url, token, path, &body.to_string(), |line| {
        let data = match route {
            Route::Ollama => line,
            Route::OpenAi => match line.strip_prefix("data: ") {
                Some(d) => d,
                // Chunked transfer's size lines and the blank lines between events.
                None => return,
            },
        };
        last = data.to_string();
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        assert!(v["error"].is_null(), "{route:?}: {v}");
        let text = match route {
            Route::Ollama => &v["message"]["content"],
            Route::OpenAi => &v["choices"][0]["delta"]["content"],
        };
        if first.is_none() && text.as_str().is_some_and(|t| !t.is_empty()) {
            first = Some(t.elapsed());
        }
    });
    if let Route::OpenAi = route {
        assert_eq!(last, "[DONE]", "the event stream ends with data: [DONE]");
    }
    first.unwrap_or_else(|| panic!("{route:?}: no token came"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Time to first token of the same chat through each API of the same
/// node, interleaved so that both see the same machine; printed, and the
/// OpenAI route must not be much slower than the Ollama one (both are one
/// job on the network; only the framing differs).
fn time_to_first_token_through_both_apis(url: &str, token: &str) {
    let runs: usize = std::env::var("MODCHAIN_TTFT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    // Warm both paths (model loaded on the providers, connections up).
    first_token(url, token, Route::Ollama);
    first_token(url, token, Route::OpenAi);
    let mut ollama = Vec::with_capacity(runs);
    let mut openai = Vec::with_capacity(runs);
    for _ in 0..runs {
        ollama.push(first_token(url, token, Route::Ollama));
        openai.push(first_token(url, token, Route::OpenAi));
    }
    let (o, a) = (median(ollama.clone()), median(openai.clone()));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "time to first token, same node, same chat (SmolLM2-135M Q4_1, 8 tokens asked), median of {runs} interleaved:\n  \
         Ollama  /api/chat            {:.1} ms  (runs: {:?})\n  \
         OpenAI  /v1/chat/completions {:.1} ms  (runs: {:?})",
        ms(o),
        ollama.iter().map(|d| ms(*d).round()).collect::<Vec<_>>(),
        ms(a),
        openai.iter().map(|d| ms(*d).round()).collect::<Vec<_>>(),
    );
    assert!(
        a <= o * 2 + Duration::from_millis(200),
        "the OpenAI route's first token ({a:?}) should come about when the Ollama route's does ({o:?})"
    );
}
