//! Hostile peers against a real network of separate processes: the rogue
//! peer (`modchain-rogue`, speaking the real protocol over libp2p) attacks
//! one node while a client keeps submitting jobs. The jobs complete, the
//! target's memory stays within a stated bound, and each attack shows in
//! the target's `/metrics`.

mod common;

use common::{Proc, TestNet, http_with, wait_until};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
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
    let net = TestNet::start("hostile-test", 3);
    let (client, target) = (0, 1);
    let url = net.nodes[target].url().expect("api.url");
    let stats = net.nodes[target].get("/api/v1/stats").expect("stats");
    let addr = stats["listen_addrs"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .find(|a| a.contains("/tcp/"))
        })
        .expect("a tcp listen address")
        .to_string();
    let pid = net.nodes[target].proc.as_ref().expect("running").child.id();
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
    let file = net.root.join("fine.wat");
    std::fs::write(&file, WAT).expect("write wat");
    let t0 = Instant::now();
    let mut peak = before;
    for _ in 0..3 {
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
    for mut a in attacks {
        let _ = a.child.wait();
        let mut said = String::new();
        if let Some(mut out) = a.child.stdout.take() {
            let _ = out.read_to_string(&mut said);
        }
        eprintln!("{}: {}", a.name, said.trim());
    }
}

#[test]
fn a_rogue_peer_without_a_seat_cannot_lock_capacity_or_fill_ledgers() {
    let net = TestNet::start("hostile-authority", 3);
    let (client, target) = (0, 1);
    let url = net.nodes[target].url().expect("api.url");
    let stats = net.nodes[target].get("/api/v1/stats").expect("stats");
    let addr = stats["listen_addrs"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .find(|a| a.contains("/tcp/"))
        })
        .expect("a tcp listen address")
        .to_string();
    let pid = net.nodes[target].proc.as_ref().expect("running").child.id();
    let before = vm_rss_kib(pid).expect("VmRSS");
    let receipts_before = net.nodes[target].receipts().len();

    // Calls for bids a year long from a peer nobody elected, and receipts
    // between throwaway keys with a throwaway "orchestrator"'s award.
    let attacks = vec![
        attack(&addr, &["calls", "--count", "200"]),
        attack(&addr, &["receipts", "--count", "2000"]),
    ];

    let file = net.root.join("fine.wat");
    std::fs::write(&file, WAT).expect("write wat");
    let mut peak = before;
    for _ in 0..3 {
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
    for mut a in attacks {
        let _ = a.child.wait();
        let mut said = String::new();
        if let Some(mut out) = a.child.stdout.take() {
            let _ = out.read_to_string(&mut said);
        }
        eprintln!("{}: {}", a.name, said.trim());
    }
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
    let stats = net.nodes[target].get("/api/v1/stats").expect("stats");
    eprintln!("refused on the target: {}", stats["refused"]);
    let stored = net.nodes[target].receipts().len();
    assert!(
        stored <= receipts_before + 3,
        "the rogue's receipts were stored: {receipts_before} before, {stored} after 3 jobs"
    );
    assert!(
        sample(&text, "modchain_executions_running") == 0.0,
        "a rogue call left work running:\n{text}"
    );
}
