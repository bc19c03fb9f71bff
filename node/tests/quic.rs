//! QUIC, one of the node's two default transports, on its own: a bootstrap
//! peer and two `modchain` processes that listen only on
//! `/ip4/127.0.0.1/udp/0/quic-v1`, so nothing can connect over TCP, and a
//! WebAssembly job submitted on one node runs on the other.

mod common;

use common::{TestNet, http_with, not_a_provider};
use serde_json::Value;

const QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";

/// Prints `over quic` and exits 0.
const WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "over quic\0a")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 10))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

/// The sum of the samples of `metric` whose labels contain `label`.
fn sum_where(text: &str, metric: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_job_runs_end_to_end_between_nodes_that_listen_only_on_quic() {
    // node-1 only buys, so its job has to cross to node-2.
    let net = TestNet::start_on("quic-test", 2, QUIC, |i, dir| {
        if i == 1 {
            not_a_provider(dir);
        }
    });
    assert!(
        net.bootstrap_addr.contains("/udp/") && net.bootstrap_addr.contains("/quic-v1/"),
        "the bootstrap peer listens on {}",
        net.bootstrap_addr
    );
    for node in &net.nodes {
        let stats = node.get("/api/v1/stats").expect("stats");
        let addrs: Vec<&str> = stats["listen_addrs"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| a.contains("/quic-v1")),
            "{} listens on {addrs:?}",
            node.label
        );
    }

    let file = net.root.join("quic.wat");
    std::fs::write(&file, WAT).expect("write wat");
    let out = net.nodes[0].cli(&[
        "submit",
        "wasm",
        file.to_str().expect("utf-8 path"),
        "--timeout",
        "60s",
        "--wait",
        "--json",
    ]);
    let job: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "submit --wait --json printed no JSON ({e}): {}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            net.logs()
        )
    });
    assert!(out.status.success(), "{job}\n{}", net.logs());
    assert_eq!(job["state"], "completed", "{job}\n{}", net.logs());
    assert_eq!(job["stdout"], "over quic\n", "{job}");
    assert_eq!(
        net.by_peer(job["provider"].as_str().unwrap_or_default()),
        Some(1),
        "the job ran on node-2: {job}"
    );
    assert!(job["receipt_id"].is_string(), "{job}");

    // Every connection the nodes made is a QUIC one, as their swarm
    // metrics count them.
    for node in &net.nodes {
        let url = node.url().expect("api.url");
        let (status, _, text) =
            http_with(&url, "GET", "/metrics", &[], None).expect("/metrics answered");
        assert_eq!(status, 200, "{text}");
        let metric = "libp2p_swarm_connections_established_total";
        let quic = sum_where(&text, metric, "quic-v1");
        let tcp = sum_where(&text, metric, "/tcp");
        assert!(
            quic >= 1.0 && tcp == 0.0,
            "{}: {quic} QUIC and {tcp} TCP connections:\n{}",
            node.label,
            text.lines()
                .filter(|l| l.starts_with(metric))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
