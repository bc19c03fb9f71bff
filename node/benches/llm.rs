//! Time to first token (`cargo bench -p modchain-node --bench llm`): a
//! prompt to SmolLM2-135M-Instruct through a three-node loopback network
//! (the client node's Ollama-compatible `/api/generate`, streaming, served by
//! another node's embedded llama.cpp backend) against the same generation
//! in-process with the llm adapter. Medians of RUNS runs each, model loaded
//! and warm, the two interleaved; the difference is what the network adds (auction, award,
//! signed log chunks, the client node's HTTP stream).
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
}
