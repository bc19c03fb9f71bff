//! Hostile peers against a real network of separate processes: the rogue
//! peer (`modchain-rogue`, speaking the real protocol over libp2p) attacks
//! one node while a client keeps submitting jobs. The jobs complete, the
//! target's memory stays within a stated bound, and each attack shows in
//! the target's `/metrics`.

mod common;

use common::{Proc, TestNet, http_with, test_image, wait_until};
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Prints `fine` and exits 0.
const WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "fine\0a")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 5))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

/// How much a node's resident memory may grow under the attacks below.
/// 100 streams announcing 1 MiB each would be 100 MiB if a declared length
/// were allocated up front; the stream cap (16 per connection) and reading
/// only what arrives keep it to the few bytes each stream sends.
const RSS_GROWTH_BOUND_KIB: u64 = 64 * 1024;

fn rogue() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_modchain-rogue"))
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn metrics(url: &str) -> String {
    let (status, _, body) = http_with(url, "GET", "/metrics", &[], None).expect("/metrics");
    assert_eq!(status, 200);
    body
}

fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The tests here each run a network of their own; one at a time, so that
/// timings under attack are not also timings under the other tests' load.
static ONE_NETWORK_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The node under attack: its API, a TCP address the rogue dials, its pid.
struct Target {
    url: String,
    addr: String,
    pid: u32,
}

fn target(net: &TestNet, i: usize) -> Target {
    let url = net.nodes[i].url().expect("api.url");
    let stats = net.nodes[i].get("/api/v1/stats").expect("stats");
    let addr = stats["listen_addrs"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .find(|a| a.contains("/tcp/"))
        })
        .expect("a tcp listen address")
        .to_string();
    let pid = net.nodes[i].proc.as_ref().expect("running").child.id();
    Target { url, addr, pid }
}

/// Submits `n` small wasm jobs from `client`, each of which must complete;
/// returns the highest RSS seen of `pid` meanwhile.
fn jobs_complete(net: &TestNet, client: usize, n: usize, pid: u32) -> u64 {
    let file = net.root.join("fine.wat");
    std::fs::write(&file, WAT).expect("write wat");
    let mut peak = vm_rss_kib(pid).unwrap_or(0);
    for _ in 0..n {
        let out = net.nodes[client].cli(&[
            "submit",
            "wasm",
            file.to_str().expect("utf-8 path"),
            "--wait",
        ]);
        assert!(
            out.status.success(),
            "a job failed under attack: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            net.logs()
        );
        peak = peak.max(vm_rss_kib(pid).unwrap_or(0));
    }
    peak
}

/// Waits for the rogue processes and prints what each says it sent.
fn finish(attacks: Vec<Proc>) {
    for mut a in attacks {
        let _ = a.child.wait();
        let mut said = String::new();
        if let Some(mut out) = a.child.stdout.take() {
            let _ = out.read_to_string(&mut said);
        }
        eprintln!("{}: {}", a.name, said.trim());
    }
}

fn attack(target: &str, args: &[&str]) -> Proc {
    let child = Command::new(rogue())
        .args(args)
        .args(["--target", target])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start modchain-rogue");
    Proc {
        name: format!("rogue {}", args[0]),
        child,
    }
}

#[test]
fn a_rogue_peer_flooding_streams_bundles_and_requests_does_not_stop_the_network() {
    let _one = one_at_a_time();
    let net = TestNet::start("hostile-test", 3);
    let client = 0;
    let Target { url, addr, pid } = target(&net, 1);
    let before = vm_rss_kib(pid).expect("VmRSS");

    let attacks = vec![
        attack(
            &addr,
            &[
                "streams",
                "--count",
                "100",
                "--declared",
                "1048576",
                "--hold-secs",
                "25",
            ],
        ),
        attack(&addr, &["bundles", "--count", "200", "--adverts", "50"]),
        attack(&addr, &["direct", "--count", "5000"]),
    ];

    // The network keeps completing jobs while the attacks run.
    let t0 = Instant::now();
    let mut peak = jobs_complete(&net, client, 3, pid);
    while t0.elapsed() < Duration::from_secs(20) {
        peak = peak.max(vm_rss_kib(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        peak.saturating_sub(before) < RSS_GROWTH_BOUND_KIB,
        "the target's RSS grew from {before} KiB to {peak} KiB under attack"
    );

    // Every attack is visible on the target.
    let text = wait_until(Duration::from_secs(30), "the attacks counted", || {
        let text = metrics(&url);
        (sample(
            &text,
            "modchain_dropped_total{reason=\"bundle_unsolicited\"}",
        ) > 0.0
            && sample(&text, "modchain_dropped_total{reason=\"direct_throttled\"}") > 0.0
            && sample(
                &text,
                "modchain_dropped_total{reason=\"direct_inbound_failed\"}",
            ) > 0.0)
            .then_some(text)
    });
    // No advert of a throwaway signer made it into the target's book.
    assert!(
        sample(&text, "modchain_adverts_known") <= 3.0,
        "unsolicited adverts were taken:\n{text}"
    );
    finish(attacks);
}

#[test]
fn a_rogue_peer_without_a_seat_cannot_lock_capacity_or_fill_ledgers() {
    let _one = one_at_a_time();
    let net = TestNet::start("hostile-authority", 3);
    let (client, target_node) = (0, 1);
    let Target { url, addr, pid } = target(&net, target_node);
    let before = vm_rss_kib(pid).expect("VmRSS");
    let receipts_before = net.nodes[target_node].receipts().len();

    // Calls for bids a year long from a peer nobody elected, and receipts
    // between throwaway keys with a throwaway "orchestrator"'s award.
    let attacks = vec![
        attack(&addr, &["calls", "--count", "200"]),
        attack(&addr, &["receipts", "--count", "2000"]),
    ];

    let mut peak = jobs_complete(&net, client, 3, pid);
    finish(attacks);
    peak = peak.max(vm_rss_kib(pid).unwrap_or(0));
    assert!(
        peak.saturating_sub(before) < RSS_GROWTH_BOUND_KIB,
        "the target's RSS grew from {before} KiB to {peak} KiB under attack"
    );

    // Both attacks are visible on the target, and neither took hold.
    let text = wait_until(Duration::from_secs(30), "the attacks counted", || {
        let text = metrics(&url);
        (sample(
            &text,
            "modchain_messages_refused_total{reason=\"unelected_call\"}",
        ) > 0.0
            && sample(
                &text,
                "modchain_messages_refused_total{reason=\"unelected_award\"}",
            ) > 0.0)
            .then_some(text)
    });
    let stats = net.nodes[target_node].get("/api/v1/stats").expect("stats");
    eprintln!("refused on the target: {}", stats["refused"]);
    let stored = net.nodes[target_node].receipts().len();
    assert!(
        stored <= receipts_before + 3,
        "the rogue's receipts were stored: {receipts_before} before, {stored} after 3 jobs"
    );
    assert!(
        sample(&text, "modchain_executions_running") == 0.0,
        "a rogue call left work running:\n{text}"
    );
}

/// Output and live-output quotas small enough to pass in a test.
const OUTPUT_QUOTA: u64 = 8 << 20;
const LOG_QUOTA: u64 = 1 << 20;

fn small_quotas(dir: &std::path::Path) {
    let path = dir.join("config.toml");
    let config = std::fs::read_to_string(&path).expect("config.toml");
    let changed = config
        .replacen(
            "output_quota_bytes = 1073741824",
            &format!("output_quota_bytes = {OUTPUT_QUOTA}"),
            1,
        )
        .replacen(
            "log_quota_bytes = 67108864",
            &format!("log_quota_bytes = {LOG_QUOTA}"),
            1,
        );
    assert_ne!(changed, config, "the quotas are in the config init writes");
    std::fs::write(&path, changed).expect("write config.toml");
}

/// Sum of one sample over every node's `/metrics`.
fn on_every_node(net: &TestNet, prefix: &str) -> f64 {
    net.nodes
        .iter()
        .filter_map(|n| n.url())
        .map(|url| sample(&metrics(&url), prefix))
        .sum()
}

fn docker_job(net: &TestNet, client: usize, script: &str) -> (bool, Value, Duration) {
    let t0 = Instant::now();
    let out = net.nodes[client].cli(&[
        "submit",
        "docker",
        test_image(),
        "--timeout",
        "120s",
        "--wait",
        "--json",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v, t0.elapsed())
}

#[test]
fn a_job_writing_past_its_output_and_log_quotas_is_held_to_them_while_it_writes() {
    let _one = one_at_a_time();
    let net = TestNet::start_with("hostile-quota", 3, |_, dir| small_quotas(dir));
    let client = 0;
    let pids: Vec<u32> = (0..net.nodes.len()).map(|i| target(&net, i).pid).collect();
    let before: Vec<u64> = pids.iter().map(|p| vm_rss_kib(*p).unwrap_or(0)).collect();

    // 64 MiB of outputs against an 8 MiB quota, then a long sleep: the
    // job is stopped while it runs (long before its two-minute timeout),
    // and nothing it wrote is handed out.
    let (ok, v, took) = docker_job(
        &net,
        client,
        "dd if=/dev/zero of=/outputs/big bs=1048576 count=64 2>/dev/null; sleep 110",
    );
    assert!(!ok, "a job past its output quota does not succeed: {v}");
    assert!(
        v.to_string().contains("output quota exceeded"),
        "not stopped for its output quota: {v}\n{}",
        net.logs()
    );
    assert!(
        took < Duration::from_secs(60),
        "stopped only after {took:?}: the quota was not held while it ran"
    );
    assert_eq!(
        v["outputs"],
        serde_json::json!([]),
        "outputs past the quota came back: {v}"
    );

    // 4 MiB on stdout against a 1 MiB live-output quota: the job runs to
    // its end, the stream stops at the quota with a line saying so, and
    // the result carries the last 64 KiB as always.
    let (ok, v, _) = docker_job(
        &net,
        client,
        "/bin/busybox yes modchain | head -c 4194304; echo; echo finished",
    );
    assert!(ok, "a chatty job still completes: {v}\n{}", net.logs());
    let stdout = v["stdout"].as_str().unwrap_or_default();
    assert!(
        stdout.ends_with("finished\n"),
        "the result's tail: {}",
        &stdout[stdout.len().saturating_sub(200)..]
    );
    assert!(
        stdout.len() <= 64 * 1024 + 1024,
        "the result carries only the tail ({} bytes)",
        stdout.len()
    );

    // Both show in the providers' metrics.
    wait_until(Duration::from_secs(30), "the quotas counted", || {
        (on_every_node(&net, "modchain_dropped_total{reason=\"output_over_quota\"}") >= 1.0
            && on_every_node(&net, "modchain_dropped_total{reason=\"live_output_cut\"}") >= 1.0)
            .then_some(())
    });

    // The network goes on: an honest job completes, and no node grew past
    // the bound (4 MiB of output through a node's memory would show).
    for (i, pid) in pids.iter().enumerate() {
        let peak = jobs_complete(&net, client, 1, *pid);
        assert!(
            peak.saturating_sub(before[i]) < RSS_GROWTH_BOUND_KIB,
            "node-{}'s RSS grew from {} KiB to {peak} KiB",
            i + 1,
            before[i]
        );
    }
}
