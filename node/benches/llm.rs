//! Time to first token (`cargo bench -p modchain-node --bench llm`): a
//! prompt to SmolLM2-135M-Instruct through a three-node loopback network
//! (the client node's Ollama-compatible `/api/generate`, streaming, served by
//! another node's embedded llama.cpp backend) against the same generation
//! in-process with the llm adapter. Medians of RUNS runs each, model loaded
//! and warm, the two interleaved; the difference is what the network adds (auction, award,
//! signed log chunks, the client node's HTTP stream).
//!
//!
//! Then the same chat through the client node's two compatible APIs,
//! Ollama's `/api/chat` and OpenAI's `/v1/chat/completions` (both streamed,
//! both one `llm` job on the network; only the framing differs), interleaved.
//!
//! Needs the model (scripts/fetch-test-model.sh, or MODCHAIN_TEST_MODEL).
//! MODCHAIN_BENCH_RUNS changes the run count.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::TestNet;
use modchain_adapters::llm::embedded::{EmbeddedBackend, EmbeddedConfig};
use modchain_adapters::llm::{
    GenerateRequest, Halt, LlmAdapter, LlmBackend, Prompt, Sampling, TokenSink,
};
use modchain_adapters::testing::{LLM_TEST_MODEL as MODEL, llm_test_model as model_file};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{median, ms};

const PROMPT: &str = "What is the capital of France?";

/// POSTs a streaming generate and returns the time until the first chunk
/// with text, reading the rest to the end.
fn network_ttft(url: &str, token: &str) -> Duration {
    let body = serde_json::json!({
        "model": MODEL, "prompt": PROMPT,
        "options": { "temperature": 0, "num_predict": 8 },
    })
    .to_string();
    let t = Instant::now();
    let mut first = None;
    common::post_streaming(url, token, "/api/generate", &body, |line| {
        if first.is_none()
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
        {
            assert!(v["error"].is_null(), "{v}");
            if v["response"].as_str().is_some_and(|r| !r.is_empty()) {
                first = Some(t.elapsed());
            }
        }
    });
    first.expect("a token came")
}

/// Which compatible API a chat measurement goes through.
#[derive(Clone, Copy, Debug)]
enum Route {
    Ollama,
    OpenAi,
}

/// POSTs the same streamed chat through `route` and returns the time until
/// the first piece of text, reading the answer to its end (and checking
/// that it ends as the API says it does).
fn chat_ttft(url: &str, token: &str, route: Route) -> Duration {
    let messages = json!([{ "role": "user", "content": PROMPT }]);
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

fn main() {
    let Some(runs) = support::runs("llm") else {
        return;
    };
    let model = model_file();

    // ---- in-process
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let backend: Arc<dyn LlmBackend> = Arc::new(EmbeddedBackend::new(EmbeddedConfig::new(
        None,
        vec![model.clone()],
    )));
    let adapter = LlmAdapter::new(vec![backend]);
    let local_ttft = || {
        let first: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
        let t = Instant::now();
        let f = first.clone();
        let sink = TokenSink::new(move |piece: &str| {
            if let Ok(mut g) = f.lock()
                && g.is_none()
                && !piece.is_empty()
            {
                *g = Some(t.elapsed());
            }
        });
        let request = GenerateRequest {
            model: MODEL.into(),
            prompt: Prompt::Text {
                prompt: PROMPT.into(),
                system: None,
                raw: false,
            },
            sampling: Sampling {
                temperature: 0.0,
                max_tokens: 8,
                ..Sampling::default()
            },
            via: Vec::new(),
        };
        rt.block_on(adapter.generate(request, 1, sink, Halt::never()))
            .expect("in-process generation");
        first.lock().ok().and_then(|g| *g).expect("a token came")
    };
    // ---- through the network
    let t0 = Instant::now();
    let net = TestNet::start_with("llm-bench", 3, |i, dir| {
        if i >= 2 {
            let d = dir.join("models");
            std::fs::create_dir_all(&d).expect("models dir");
            let dest = d.join(model.file_name().expect("name"));
            std::fs::hard_link(&model, &dest)
                .or_else(|_| std::os::unix::fs::symlink(&model, &dest))
                .expect("link model");
        }
    });
    println!(
        "three-node loopback network up in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let url = net.nodes[0].url().expect("api.url");
    let token = net.nodes[0].token();
    for _ in 0..3 {
        local_ttft();
        network_ttft(&url, &token);
    }
    // Interleaved, so that both see the same machine: a burst of load
    // elsewhere shifts a pair, not one side's whole series.
    let mut local = Vec::with_capacity(runs);
    let mut remote = Vec::with_capacity(runs);
    let mut added = Vec::with_capacity(runs);
    for _ in 0..runs {
        let l = local_ttft();
        let r = network_ttft(&url, &token);
        local.push(l);
        remote.push(r);
        added.push(ms(r) - ms(l));
    }
    added.sort_by(f64::total_cmp);

    let (l, r) = (median(local), median(remote));
    println!(
        "time to first token, median of {runs} (SmolLM2-135M Q4_1, one thread, 8 tokens asked):"
    );
    println!(
        "  in-process (llm adapter, embedded llama.cpp): {:.1} ms",
        ms(l)
    );
    println!(
        "  through the network (Ollama API → auction → provider → stream): {:.1} ms",
        ms(r)
    );
    println!(
        "  the network adds {:.1} ms (difference of the medians; target < 30 ms)",
        ms(r.saturating_sub(l))
    );
    println!(
        "  per interleaved pair: median {:.1} ms, p10 {:.1} ms, p90 {:.1} ms",
        added[added.len() / 2],
        added[added.len() / 10],
        added[added.len() * 9 / 10]
    );

    // ---- the same chat through each compatible API of the same node
    for _ in 0..3 {
        chat_ttft(&url, &token, Route::Ollama);
        chat_ttft(&url, &token, Route::OpenAi);
    }
    let mut ollama = Vec::with_capacity(runs);
    let mut openai = Vec::with_capacity(runs);
    for _ in 0..runs {
        ollama.push(chat_ttft(&url, &token, Route::Ollama));
        openai.push(chat_ttft(&url, &token, Route::OpenAi));
    }
    let (o, a) = (median(ollama), median(openai));
    println!("time to first token of a chat, same client node, median of {runs} interleaved:");
    println!("  Ollama API  /api/chat             {:.1} ms", ms(o));
    println!(
        "  OpenAI API  /v1/chat/completions  {:.1} ms  ({:.2}× the Ollama route)",
        ms(a),
        ms(a) / ms(o)
    );
}
