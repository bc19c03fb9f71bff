//! An orchestrator killed while it holds a job: the client's node notices
//! the silence and resubmits the same signed job to the next orchestrator
//! in the job's ranking, which runs it to completion. Separate `modchain`
//! processes on 127.0.0.1; WASM jobs, so no Docker is needed.

mod common;

use common::{TestNet, not_a_provider, wait_until};
use serde_json::Value;
use std::process::Output;
use std::time::{Duration, Instant};

/// Prints `failed over` and exits 0.
const WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "failed over\0a")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 12))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn submitted_id(out: &Output) -> String {
    assert!(
        out.status.success(),
        "submit failed: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

#[test]
fn a_killed_orchestrator_is_replaced_by_the_next_in_the_ranking() {
    let t0 = Instant::now();
    // Three orchestrator candidates that do not provide, and one provider
    // that does not stand for election.
    let mut net = TestNet::start_with("failover-test", 3, |_, dir| not_a_provider(dir));
    let gone = net.add_node(false, |_| {});
    net.converge(Duration::from_secs(45));
    eprintln!("[{:?}] four nodes converged", t0.elapsed());
    // The provider dies; its advert lives on in the others' books until it
    // expires, so jobs are accepted and wait at their orchestrator for bids
    // that never come.
    net.nodes[gone].kill9();
    let client = 0;
    let file = net.root.join("failover.wat");
    std::fs::write(&file, WAT).expect("write wat");
    let file = file.to_str().expect("utf-8 path").to_string();

    // A job whose first orchestrator is another node (the client's own turn
    // comes up one time in three; those jobs are cancelled).
    let mut tries = 0;
    let (id, orchestrator) = loop {
        tries += 1;
        assert!(
            tries <= 12,
            "every job went to the client's own orchestrator"
        );
        let id = submitted_id(&net.nodes[client].cli(&["submit", "wasm", &file]));
        let job = wait_until(Duration::from_secs(20), "the job is queued", || {
            let j = net.nodes[client].job(&id);
            j["orchestrator"].is_string().then_some(j)
        });
        assert!(
            matches!(job["state"].as_str(), Some("queued" | "bidding")),
            "no live provider, so it waits: {job}"
        );
        let orch = net
            .by_peer(job["orchestrator"].as_str().unwrap_or_default())
            .expect("an orchestrator of ours");
        if orch != client {
            break (id, orch);
        }
        let out = net.nodes[client].cli(&["cancel", &id]);
        assert!(out.status.success(), "cancel: {}", text(&out.stderr));
    };
    // It waits there: no live provider bids.
    std::thread::sleep(Duration::from_secs(2));
    let job = net.nodes[client].job(&id);
    assert!(
        matches!(job["state"].as_str(), Some("queued" | "bidding")),
        "{job}"
    );
    eprintln!(
        "[{:?}] job {id} waits at {}: {}",
        t0.elapsed(),
        net.nodes[orchestrator].label,
        job["detail"]
    );
    let first = job["orchestrator"].as_str().unwrap_or_default().to_string();

    net.nodes[orchestrator].kill9();
    eprintln!(
        "[{:?}] killed {} (the job's orchestrator)",
        t0.elapsed(),
        net.nodes[orchestrator].label
    );
    // A provider joins; it does not stand for election, so the ranking the
    // client computed stays the one the network uses.
    let provider = net.add_node(false, |_| {});
    eprintln!(
        "[{:?}] provider {} joined",
        t0.elapsed(),
        net.nodes[provider].label
    );

    // The client hears nothing from the dead orchestrator, resubmits the
    // same job to the next one, and that one runs it on the new provider.
    let job = wait_until(Duration::from_secs(90), "the job ends", || {
        let j = net.nodes[client].job(&id);
        matches!(
            j["state"].as_str(),
            Some("completed" | "failed" | "cancelled")
        )
        .then_some(j)
    });
    eprintln!("[{:?}] job ended: {}", t0.elapsed(), job["state"]);
    assert_eq!(job["state"], "completed", "{job}\n{}", net.logs());
    assert_eq!(job["stdout"], "failed over\n", "{job}");
    assert_eq!(job["job_id"], id.as_str(), "the same job id throughout");
    assert_ne!(
        job["orchestrator"].as_str(),
        Some(first.as_str()),
        "finished by another orchestrator: {job}"
    );
    assert_eq!(
        net.by_peer(job["provider"].as_str().unwrap_or_default()),
        Some(provider),
        "run by the provider that joined: {job}"
    );
    let history: Vec<&str> = job["history"]
        .as_array()
        .map(|h| h.iter().filter_map(|e| e["state"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        history.contains(&"running") && history.last() == Some(&"completed"),
        "history: {history:?}"
    );
    // The client's event log says it resubmitted.
    assert!(
        net.nodes[client].log().contains("resubmit"),
        "the client's log never mentions the resubmission:\n{}",
        net.nodes[client].log_tail(60)
    );
    // The receipt reaches the live peers.
    let receipt_on = |i: usize| -> Option<Value> {
        net.nodes[i]
            .receipts()
            .into_iter()
            .find(|r| r["job_id"] == id.as_str() && r["outcome"] == "executed")
    };
    for i in (0..net.nodes.len()).filter(|&i| i != orchestrator && i != gone) {
        wait_until(
            Duration::from_secs(15),
            "the receipt on every live peer",
            || receipt_on(i),
        );
    }
    eprintln!("[{:?}] receipt on every live peer", t0.elapsed());
}
