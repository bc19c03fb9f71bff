//! Tokens per second of the llm adapter's embedded backend on the test model
//! (SmolLM2-135M-Instruct Q4_1; `scripts/fetch-test-model.sh` fetches it).
//!
//! `cargo bench -p modchain-adapters --bench llm` prints, for 2 threads as
//! the project's machines have 2 cores (override with LLM_BENCH_THREADS):
//!
//! - `pp128` / `tg64`: measured as llama.cpp's own `llama-bench -p 128 -n 64`
//!   measures (a 128-token batch into an empty context; 64 tokens decoded one
//!   at a time), 5 runs after a warm-up, mean ± standard deviation; compare
//!   with `llama-bench -m MODEL -p 128 -n 64 -t 2` on the same machine
//!   (docs: how to build llama-bench);
//! - an end-to-end `generate` through the adapter's API (chat template,
//!   sampling, streaming), which is what a job sees.

use modchain_adapters::llm::embedded::{EmbeddedBackend, EmbeddedConfig};
use modchain_adapters::llm::{
    FinishReason, GenerateRequest, Halt, LlmAdapter, LlmBackend, Prompt, Sampling, TokenSink,
};
use modchain_adapters::testing::llm_test_model as model_path;
use std::sync::Arc;
use std::time::Instant;

const RUNS: usize = 5;

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("llm bench: run with `cargo bench -p modchain-adapters --bench llm`");
        return;
    }
    let threads: u32 = std::env::var("LLM_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let path = model_path();
    let backend = EmbeddedBackend::new(EmbeddedConfig::new(None, vec![path.clone()]));
    let model = match backend.models().first() {
        Some(m) => m.name.clone(),
        None => panic!(
            "{} is not a usable model: {:?}",
            path.display(),
            backend.problems()
        ),
    };
    println!("model {} ({}), {threads} threads", model, path.display());

    let run = || {
        backend
            .benchmark(&model, 128, 64, threads)
            .unwrap_or_else(|e| panic!("benchmark failed: {e}"))
    };
    let _warm_up = run();
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = run();
        pp.push(t.prompt_per_s);
        tg.push(t.generation_per_s);
    }
    let (pp_mean, pp_sd) = mean_sd(&pp);
    let (tg_mean, tg_sd) = mean_sd(&tg);
    println!("embedded pp128: {pp_mean:8.2} ± {pp_sd:6.2} tokens/s");
    println!("embedded tg64:  {tg_mean:8.2} ± {tg_sd:6.2} tokens/s");

    // End to end, as a job runs it: template, sampling, streaming, counting.
    let adapter = LlmAdapter::new(vec![Arc::new(backend) as Arc<dyn LlmBackend>]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    let request = GenerateRequest {
        model: model.clone(),
        prompt: Prompt::Text {
            prompt: "Write a long story about a lighthouse keeper.".into(),
            system: None,
            raw: false,
        },
        sampling: Sampling {
            seed: Some(3),
            max_tokens: 128,
            ..Sampling::default()
        },
        via: Vec::new(),
    };
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let c = rt
            .block_on(adapter.generate(
                request.clone(),
                threads,
                TokenSink::discard(),
                Halt::never(),
            ))
            .unwrap_or_else(|e| panic!("generate failed: {e}"));
        let secs = started.elapsed().as_secs_f64();
        assert!(matches!(
            c.finish_reason,
            FinishReason::Stop | FinishReason::Length
        ));
        rates.push(f64::from(c.prompt_tokens + c.completion_tokens) / secs);
        println!(
            "generate: {} prompt + {} generated tokens in {:.3} s",
            c.prompt_tokens, c.completion_tokens, secs
        );
    }
    let (g_mean, g_sd) = mean_sd(&rates);
    println!(
        "embedded generate end to end: {g_mean:8.2} ± {g_sd:6.2} tokens/s (prompt + generated over wall time)"
    );
}
