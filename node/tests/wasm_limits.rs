//! The wasm adapter's limits in a real network on 127.0.0.1 (a bootstrap
//! peer, a client that sells nothing, and a provider): a module asleep in
//! WASI's `poll_oneoff` for an hour ends at its `--timeout` and on cancel,
//! the provider's capacity and threads come back, and a stream of distinct
//! modules is checked off the provider's event loop, which keeps answering.

mod common;

use common::{TestNet, not_a_provider, wait_until};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Writes "started\n" to stdout, then sleeps an hour in `poll_oneoff` (one
/// relative clock subscription on the monotonic clock).
const SLEEPER_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "started\0a")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i64.store (i32.const 2048) (i64.const 7))
    (i32.store8 (i32.const 2056) (i32.const 0))
    (i32.store (i32.const 2064) (i32.const 1))
    (i64.store (i32.const 2072) (i64.const 3600000000000))
    (i64.store (i32.const 2080) (i64.const 0))
    (i32.store16 (i32.const 2088) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 2048) (i32.const 3072) (i32.const 1) (i32.const 4000)))))"#;

const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "hello\0a")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn stdout_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// Threads of `pid` named `name` (what `/proc/<pid>/task/*/comm` says).
fn threads_named(pid: u32, name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .count()
}

/// A field of `/proc/<pid>/status` (`Threads`, `VmRSS` in kB).
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The value of a metric line `name{labels} value` in a scrape.
fn metric(scrape: &str, name_and_labels: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn scrape(node: &common::TestNode) -> String {
    let url = node.url().expect("api.url");
    common::http(&url, "GET", "/metrics", Some(&node.token()), None)
        .map(|(_, body)| body)
        .unwrap_or_default()
}

fn write(root: &Path, name: &str, body: &str) -> String {
    let path = root.join(name);
    std::fs::write(&path, body).expect("write module");
    path.to_str().expect("path").to_string()
}

#[test]
fn a_module_asleep_in_poll_oneoff_ends_at_its_timeout_and_on_cancel_and_modules_are_checked_off_the_loop()
 {
    let net = TestNet::start_with("wasm-limits", 2, |i, dir| {
        if i == 1 {
            not_a_provider(dir);
        }
    });
    let client = &net.nodes[0];
    let provider = &net.nodes[1];
    let pid = provider.proc.as_ref().expect("provider process").child.id();
    let free_before = wait_until(
        Duration::from_secs(30),
        "the provider advertises its free capacity",
        || {
            let free = provider.own_advert()["free"].clone();
            (!free.is_null()).then_some(free)
        },
    );
    let threads_before = proc_status(pid, "Threads");
    let rss_before = proc_status(pid, "VmRSS");
    let sleeper = write(&net.root, "sleeper.wat", SLEEPER_WAT);
    let hello = write(&net.root, "hello.wat", HELLO_WAT);

    // 1. An hour's sleep with --timeout 5s: it ends as timed out, and the
    // provider's capacity is free again for the next job.
    let out = client.cli(&[
        "submit",
        "wasm",
        &sleeper,
        "--timeout",
        "5s",
        "--wait",
        "--json",
    ]);
    let v = stdout_json(&out);
    // It ran and was killed: the job ends (state `completed`) with the
    // timeout's exit.
    assert_eq!(v["exit"], "killed: timed out", "{v}\n{}", net.logs());
    assert_eq!(v["exit_code"], 124, "{v}");
    let ended = provider
        .log()
        .lines()
        .rev()
        .find(|l| l.contains("wasm job ended"))
        .map(String::from)
        .unwrap_or_else(|| panic!("no `wasm job ended` line\n{}", provider.log_tail(40)));
    eprintln!("provider: {ended}");
    wait_until(
        Duration::from_secs(15),
        "the provider advertises its capacity free again",
        || (provider.own_advert()["free"] == free_before).then_some(()),
    );
    let out = client.cli(&[
        "submit",
        "wasm",
        &hello,
        "--timeout",
        "30s",
        "--wait",
        "--json",
    ]);
    let v = stdout_json(&out);
    assert_eq!(v["state"], "completed", "{v}\n{}", net.logs());
    assert_eq!(v["stdout"], "hello\n", "{v}");

    // 2. Cancelled while asleep: it ends, and so does its thread. Threads
    // a job thread started that outlive it (wasmtime's compilation pool)
    // carry its name too: count from what is left with no job running.
    let idle = threads_named(pid, "wasm-job");
    let out = client.cli(&["submit", "wasm", &sleeper, "--timeout", "10m"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    wait_until(Duration::from_secs(30), "the sleeper runs", || {
        (client.job(&id)["stdout"] == "started\n" || threads_named(pid, "wasm-job") > idle)
            .then_some(())
    });
    // Let it reach poll_oneoff.
    std::thread::sleep(Duration::from_millis(500));
    let out = client.cli(&["cancel", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_until(Duration::from_secs(15), "the job is cancelled", || {
        (client.job(&id)["state"] == "cancelled").then_some(())
    });
    wait_until(
        Duration::from_secs(15),
        "the cancelled module's thread ends",
        || (threads_named(pid, "wasm-job") == idle).then_some(()),
    );
    wait_until(
        Duration::from_secs(15),
        "the provider advertises its capacity free again after the cancel",
        || (provider.own_advert()["free"] == free_before).then_some(()),
    );

    // 3. A stream of distinct modules of a few thousand functions each: every
    // one is checked off the provider's event loop (counted in /metrics),
    // and the provider answers its API all the while.
    let checks_before = metric(
        &scrape(provider),
        "modchain_wasm_module_checks_total{result=\"valid\"}",
    );
    let mut ids = Vec::new();
    for n in 0..8 {
        let mut wat = String::from("(module (memory (export \"memory\") 1)\n");
        for f in 0..3000 {
            wat.push_str(&format!(
                "(func (result i32) (i32.const {}))\n",
                n * 10_000 + f
            ));
        }
        wat.push_str("(func (export \"_start\")))");
        let file = write(&net.root, &format!("many-{n}.wat"), &wat);
        let out = client.cli(&["submit", "wasm", &file, "--timeout", "60s"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        ids.push(text(&out.stdout).trim().to_string());
        assert!(
            provider.get("/api/v1/stats").is_some(),
            "the provider stopped answering its API"
        );
    }
    for id in &ids {
        let v = wait_until(Duration::from_secs(120), "a module job ends", || {
            let j = client.job(id);
            j["state"]
                .as_str()
                .is_some_and(|s| matches!(s, "completed" | "failed" | "cancelled"))
                .then_some(j)
        });
        assert_eq!(v["state"], "completed", "{v}\n{}", net.logs());
    }
    let scraped = scrape(provider);
    let checks = metric(
        &scraped,
        "modchain_wasm_module_checks_total{result=\"valid\"}",
    );
    assert!(
        checks >= checks_before + ids.len() as f64,
        "{checks} valid checks after {checks_before}, for {} modules:\n{scraped}",
        ids.len()
    );
    assert!(
        metric(&scraped, "modchain_wasm_module_cache_modules") >= 1.0,
        "no compiled module cached:\n{scraped}"
    );

    // What the jobs left in the provider: no job thread, and the figures
    // for the record.
    wait_until(Duration::from_secs(15), "the job threads end", || {
        (threads_named(pid, "wasm-job") == idle).then_some(())
    });
    eprintln!(
        "provider threads {threads_before} -> {}, VmRSS {rss_before} kB -> {} kB",
        proc_status(pid, "Threads"),
        proc_status(pid, "VmRSS")
    );
}
