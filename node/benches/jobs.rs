//! End-to-end job latency (`cargo bench -p modchain-node --bench jobs`):
//! a trivial docker job (`true`) through a four-node loopback network
//! against a raw `docker run --rm --network none` of the same image, and a
//! trivial wasm job through the network against running the module
//! in-process with wasmtime. Medians of RUNS runs each, after warm-up.
//!
//! Latency is measured at the client's API: from the POST that submits the
//! job until GET shows it completed (polled every 2 ms). Set
//! MODCHAIN_BENCH_RUNS to change the run count; MODCHAIN_BENCH_SKIP_DOCKER=1
//! skips the docker half where there is no dockerd.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::{TestNet, TestNode, test_image};
use modchain_adapters::wasm::WasmAdapter;
use modchain_adapters::{ExecutionContext, Limits, LogSink};
use modchain_protocol::Digest;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{median, ms};
use tokio_util::sync::CancellationToken;

const TRIVIAL_WAT: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

fn summary(name: &str, xs: &[Duration]) -> Duration {
    let m = median(xs.to_vec());
    let min = xs.iter().min().copied().unwrap_or_default();
    let max = xs.iter().max().copied().unwrap_or_default();
    println!(
        "{name:<44} median {:>9.2} ms   min {:>9.2}   max {:>9.2}   (n={})",
        ms(m),
        ms(min),
        ms(max),
        xs.len()
    );
    m
}

/// Submits through the node's API and polls until the job ends.
fn run_job(node: &TestNode, body: &Value) -> Duration {
    let body = body.to_string();
    let t0 = Instant::now();
    let (status, answer) = node.post("/api/v1/jobs", &body);
    assert_eq!(status, 201, "submit refused: {answer}");
    let created: Value = serde_json::from_str(&answer).expect("json");
    let id = created["job_id"].as_str().expect("job_id").to_string();
    let path = format!("/api/v1/jobs/{id}");
    loop {
        let j = node.get(&path).unwrap_or(Value::Null);
        match j["state"].as_str() {
            Some("completed") => {
                let took = t0.elapsed();
                assert_eq!(j["exit_code"], 0, "{j}");
                return took;
            }
            Some("failed" | "cancelled") => panic!("job ended badly: {j}"),
            _ => {}
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "job stuck: {j}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn main() {
    let Some(runs) = support::runs("jobs") else {
        return;
    };
    let skip_docker = std::env::var("MODCHAIN_BENCH_SKIP_DOCKER").is_ok_and(|v| v == "1");
    let image = if skip_docker { "" } else { test_image() };

    let t0 = Instant::now();
    let net = TestNet::start("jobs-bench", 4);
    println!(
        "four-node loopback network up in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let client = &net.nodes[0];

    // ---- wasm
    let wasm_job = json!({"adapter": "wasm", "method": "run", "params": {"wat": TRIVIAL_WAT}, "timeout_ms": 30_000});
    for _ in 0..3 {
        run_job(client, &wasm_job);
    }
    let net_wasm: Vec<Duration> = (0..runs).map(|_| run_job(client, &wasm_job)).collect();
    let adapter = WasmAdapter::new().expect("wasmtime engine");
    let params = json!({"wat": TRIVIAL_WAT});
    let out_root = net.root.join("bench-wasm-outputs");
    let local_run = |i: usize| {
        let ctx = ExecutionContext {
            job_id: Digest::of(format!("bench-{i}").as_bytes()),
            limits: Limits::default(),
            timeout: Duration::from_secs(10),
            cancel: CancellationToken::new(),
            output_dir: out_root.join(i.to_string()),
            logs: LogSink::discard(),
        };
        let t = Instant::now();
        let r = adapter.run_now(&ctx, &params).expect("in-process run");
        let took = t.elapsed();
        assert!(r.exit.is_some());
        took
    };
    for i in 0..3 {
        local_run(i);
    }
    let local_wasm: Vec<Duration> = (0..runs).map(|i| local_run(100 + i)).collect();

    // ---- docker
    let (net_docker, raw_docker) = if skip_docker {
        (Vec::new(), Vec::new())
    } else {
        let docker_job = json!({"adapter": "docker", "method": "run",
            "params": {"image": image, "cmd": ["true"]}, "timeout_ms": 60_000});
        let raw = || {
            let t = Instant::now();
            let st = Command::new("docker")
                .args(["run", "--rm", "--network", "none", image, "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("docker run");
            assert!(st.success());
            t.elapsed()
        };
        for _ in 0..2 {
            raw();
            run_job(client, &docker_job);
        }
        // Interleaved, so drift in the machine's load hits both alike.
        let mut n = Vec::new();
        let mut r = Vec::new();
        for _ in 0..runs {
            r.push(raw());
            n.push(run_job(client, &docker_job));
        }
        (n, r)
    };

    println!();
    println!("end-to-end job latency, median of {runs} runs each");
    let nw = summary("wasm job through the network", &net_wasm);
    let lw = summary("wasm module in-process (wasmtime)", &local_wasm);
    println!(
        "wasm: network / in-process = {:.1}x; end to end {:.2} ms (target < 50 ms: {})",
        nw.as_secs_f64() / lw.as_secs_f64().max(1e-9),
        ms(nw),
        if ms(nw) < 50.0 { "met" } else { "NOT met" }
    );
    if !skip_docker {
        let nd = summary("docker `true` through the network", &net_docker);
        let rd = summary("docker run --rm --network none `true`", &raw_docker);
        let ratio = nd.as_secs_f64() / rd.as_secs_f64();
        println!(
            "docker: network / raw = {ratio:.2} (target <= 1.5: {})",
            if ratio <= 1.5 { "met" } else { "NOT met" }
        );
    }
}
