//! The OpenAI-compatible API with real parts: separate `modchain` processes
//! on loopback, two providers serving SmolLM2-135M-Instruct (GGUF, fetched
//! by scripts/fetch-test-model.sh) with the embedded llama.cpp backend, and
//! a client node whose `/v1` routes are driven by the official `openai`
//! Python client. Time to first token through this route against the
//! Ollama one is a benchmark: `cargo bench -p modchain-node --bench llm`.

mod common;

use common::{TestNet, serve_model, wait_until};
use modchain_adapters::testing::{LLM_TEST_MODEL as MODEL, llm_test_model as model_file};
use serde_json::Value;
use std::time::{Duration, Instant};

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
            || (net.nodes[i].executed_receipts() >= 6).then_some(()),
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
