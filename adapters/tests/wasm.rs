//! The wasm adapter running real WASI modules in wasmtime.

use modchain_adapters::wasm::WasmAdapter;
use modchain_adapters::{Adapter, AdapterError, ExecutionContext, Limits, LogSink};
use modchain_protocol::{Digest, ExecutionReport, ExitStatus};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A module whose `_start` runs `body`, with WASI's fd_write, fd_read,
/// proc_exit, path_open and poll_oneoff imported, `data` placed at offset
/// 1024, and `$sleep` (an hour in `poll_oneoff`) defined.
fn module(body: &str, data: &str) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{data}")
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $sleep
    ;; One clock subscription at 2048: tag 0 (clock), monotonic clock,
    ;; relative timeout of an hour; the event goes to 3072.
    (i64.store (i32.const 2048) (i64.const 7))
    (i32.store8 (i32.const 2056) (i32.const 0))
    (i32.store (i32.const 2064) (i32.const 1))
    (i64.store (i32.const 2072) (i64.const 3600000000000))
    (i64.store (i32.const 2080) (i64.const 0))
    (i32.store16 (i32.const 2088) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 2048) (i32.const 3072) (i32.const 1) (i32.const 4000))))
  (func (export "_start") {body}))"#
    )
}

fn ctx(name: &str, timeout: Duration) -> ExecutionContext {
    ctx_with_memory(name, timeout, 16 << 20)
}

fn ctx_with_memory(name: &str, timeout: Duration, memory_bytes: u64) -> ExecutionContext {
    let dir = std::env::temp_dir().join(format!("modchain-wasm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    ExecutionContext {
        job_id: Digest::of(name.as_bytes()),
        limits: Limits {
            memory_bytes,
            ..Limits::default()
        },
        timeout,
        cancel: CancellationToken::new(),
        output_dir: dir,
        logs: LogSink::discard(),
    }
}

async fn run(name: &str, wat: String, extra: serde_json::Value) -> ExecutionReport {
    let a = WasmAdapter::new().expect("engine");
    let mut params = serde_json::json!({"wat": wat});
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    a.execute(ctx(name, Duration::from_secs(10)), "run", &params)
        .await
        .expect("ran")
}

#[tokio::test]
async fn stdout_and_exit_code_come_back() {
    let r = run("hello", module("(call $write (i32.const 1) (i32.const 1024) (i32.const 6)) (call $write (i32.const 2) (i32.const 1030) (i32.const 4)) (call $proc_exit (i32.const 3))", "hello\\0aerr\\0a"), serde_json::json!({})).await;
    assert_eq!(r.exit, Some(ExitStatus::Exited(3)));
    assert_eq!(r.stdout, b"hello\n");
    assert_eq!(r.stderr, b"err\n");
}

#[tokio::test]
async fn stdin_from_the_job_reaches_the_module() {
    // Read up to 64 bytes of stdin into 2048 and write them back out.
    let body = "(i32.store (i32.const 16) (i32.const 2048)) (i32.store (i32.const 20) (i32.const 64)) \
                (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24))) \
                (call $write (i32.const 1) (i32.const 2048) (i32.load (i32.const 24)))";
    let r = run(
        "stdin",
        module(body, ""),
        serde_json::json!({"stdin": "echo me"}),
    )
    .await;
    assert_eq!(r.exit, Some(ExitStatus::Exited(0)));
    assert_eq!(r.stdout, b"echo me");
}

#[tokio::test]
async fn a_module_that_never_ends_is_stopped_at_its_timeout() {
    let a = WasmAdapter::new().expect("engine");
    let params = serde_json::json!({"wat": module("(loop $l (br $l))", "")});
    let r = a
        .execute(ctx("spin", Duration::from_millis(300)), "run", &params)
        .await
        .expect("ran");
    assert_eq!(r.exit, Some(ExitStatus::TimedOut));
    assert!(r.usage.wall_ms < 5_000, "took {} ms", r.usage.wall_ms);
}

#[tokio::test]
async fn cancel_stops_a_running_module() {
    let a = WasmAdapter::new().expect("engine");
    // Ended by its timeout only after the ceiling below: a module that
    // ignored the cancel fails the test (the runtime then waits for the
    // module's thread until this timeout).
    let c = ctx("cancel", Duration::from_secs(240));
    let token = c.cancel.clone();
    let started = c.output_dir.join("started.txt");
    // Writes "started\n" to /outputs/started.txt and to stdout, then spins:
    // the file is the sign, seen from outside while the module runs, that it
    // has started.
    let body = "(drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 11) (i32.const 1) \
                (i64.const 536870911) (i64.const 536870911) (i32.const 0) (i32.const 64))) \
                (call $write (i32.load (i32.const 64)) (i32.const 1035) (i32.const 8)) \
                (call $write (i32.const 1) (i32.const 1035) (i32.const 8)) \
                (loop $l (br $l))";
    let params = serde_json::json!({"wat": module(body, "started.txtstarted\\0a")});
    let run = tokio::spawn(async move { a.execute(c, "run", &params).await });

    let up = tokio::time::timeout(Duration::from_secs(120), async {
        while std::fs::read(&started).ok().as_deref() != Some(&b"started\n"[..]) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(up.is_ok(), "the module never wrote {}", started.display());
    assert!(!run.is_finished(), "the module ended before the cancel");
    token.cancel();

    let r = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the cancelled module did not stop")
        .expect("the job's task")
        .expect("ran");
    assert_eq!(r.exit, Some(ExitStatus::Cancelled));
    assert_eq!(r.stdout, b"started\n");
}

#[tokio::test]
async fn a_module_over_its_memory_limit_is_reported_out_of_memory() {
    // Grow by 1 MiB (16 pages) until refused, then trap as an allocator would.
    let body = "(loop $l (if (i32.ne (memory.grow (i32.const 16)) (i32.const -1)) (then (br $l)))) unreachable";
    let r = run("oom", module(body, ""), serde_json::json!({})).await;
    assert_eq!(r.exit, Some(ExitStatus::OutOfMemory));
}

#[tokio::test]
async fn files_written_to_outputs_are_collected() {
    // path_open(fd 3 = /outputs, "out.txt", O_CREAT) then write "data\n" to it.
    let body = "(drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 7) (i32.const 1) \
                (i64.const 536870911) (i64.const 536870911) (i32.const 0) (i32.const 64))) \
                (call $write (i32.load (i32.const 64)) (i32.const 1031) (i32.const 5))";
    let r = run(
        "outputs",
        module(body, "out.txtdata\\0a"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(
        r.exit,
        Some(ExitStatus::Exited(0)),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(
        r.outputs.len(),
        1,
        "{:?}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(r.outputs[0].name, "out.txt");
    assert_eq!(r.outputs[0].digest, Digest::of(b"data\n"));
}

#[tokio::test]
async fn bad_modules_and_params_are_refused_before_anything_runs() {
    let a = WasmAdapter::new().expect("engine");
    let err = a
        .validate("run", &serde_json::json!({"wat": "(module (func"}))
        .expect_err("bad wat");
    assert!(
        err.to_string().contains("not a valid WebAssembly module"),
        "{err}"
    );
    assert!(matches!(
        a.validate("run", &serde_json::json!({"wasm_base64": "***"})),
        Err(AdapterError::InvalidParams(_))
    ));
    assert!(matches!(
        a.validate("run", &serde_json::json!({})),
        Err(AdapterError::InvalidParams(_))
    ));
    assert!(matches!(
        a.validate(
            "run",
            &serde_json::json!({"wat": "(module)", "wasm_base64": "AA=="})
        ),
        Err(AdapterError::InvalidParams(_))
    ));
    assert!(matches!(
        a.validate("exec", &serde_json::json!({"wat": "(module)"})),
        Err(AdapterError::UnknownMethod { .. })
    ));
    // A module with no `_start` is valid but runs to a clear trap.
    let r = a
        .execute(
            ctx("nostart", Duration::from_secs(5)),
            "run",
            &serde_json::json!({"wat": "(module)"}),
        )
        .await
        .expect("ran");
    assert_eq!(r.exit, Some(ExitStatus::Exited(134)));
    assert!(String::from_utf8_lossy(&r.stderr).contains("_start"));
}

/// Writes "started\n" to /outputs/started.txt (the sign, seen from outside,
/// that the module runs), then runs `then`.
fn started_then(then: &str) -> String {
    let body = format!(
        "(drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 11) (i32.const 1) \
         (i64.const 536870911) (i64.const 536870911) (i32.const 0) (i32.const 64))) \
         (call $write (i32.load (i32.const 64)) (i32.const 1035) (i32.const 8)) {then}"
    );
    module(&body, "started.txtstarted\\0a")
}

#[tokio::test]
async fn a_module_asleep_in_poll_oneoff_is_stopped_at_its_timeout() {
    let a = WasmAdapter::new().expect("engine");
    let params = serde_json::json!({"wat": module("(call $sleep)", "")});
    // Without the fix the module sleeps its hour: the outer timeout fails the test.
    let r = tokio::time::timeout(
        Duration::from_secs(120),
        a.execute(
            ctx("sleep-timeout", Duration::from_millis(500)),
            "run",
            &params,
        ),
    )
    .await
    .expect("the sleeping module outlived its timeout")
    .expect("ran");
    assert_eq!(r.exit, Some(ExitStatus::TimedOut));
    // The module is stopped by its deadline, not after it; generous for a slow machine.
    assert!(r.usage.wall_ms < 30_000, "took {} ms", r.usage.wall_ms);
}

#[tokio::test]
async fn cancel_stops_a_module_asleep_in_poll_oneoff() {
    let a = WasmAdapter::new().expect("engine");
    let c = ctx("sleep-cancel", Duration::from_secs(3600));
    let token = c.cancel.clone();
    let started = c.output_dir.join("started.txt");
    let params = serde_json::json!({"wat": started_then("(call $sleep)")});
    let run = tokio::spawn(async move { a.execute(c, "run", &params).await });
    let up = tokio::time::timeout(Duration::from_secs(120), async {
        while std::fs::read(&started).ok().as_deref() != Some(&b"started\n"[..]) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(up.is_ok(), "the module never wrote {}", started.display());
    // Let it reach poll_oneoff.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!run.is_finished(), "the module ended before the cancel");
    token.cancel();
    let r = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the cancelled module did not stop")
        .expect("the job's task")
        .expect("ran");
    assert_eq!(r.exit, Some(ExitStatus::Cancelled));
}

/// Eight memories of 56 MiB each: one fits a 64 MiB limit, eight do not.
fn memories(n: usize) -> String {
    let mut wat = String::from("(module\n");
    for i in 0..n {
        // 896 pages of 64 KiB: 56 MiB.
        wat.push_str(&format!("  (memory $m{i} 896)\n"));
    }
    wat.push_str("  (func (export \"_start\")))");
    wat
}

#[tokio::test]
async fn eight_memories_share_one_memory_limit() {
    let a = WasmAdapter::new().expect("engine");
    let limit = 64 << 20;
    let one = a
        .execute(
            ctx_with_memory("mem-one", Duration::from_secs(30), limit),
            "run",
            &serde_json::json!({"wat": memories(1)}),
        )
        .await
        .expect("ran");
    assert_eq!(
        one.exit,
        Some(ExitStatus::Exited(0)),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let eight = a
        .execute(
            ctx_with_memory("mem-eight", Duration::from_secs(30), limit),
            "run",
            &serde_json::json!({"wat": memories(8)}),
        )
        .await
        .expect("ran");
    assert_eq!(eight.exit, Some(ExitStatus::OutOfMemory));
    let stderr = String::from_utf8_lossy(&eight.stderr);
    assert!(
        stderr.contains("memory limit reached") && stderr.contains(&limit.to_string()),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_table_that_grows_past_the_memory_limit_fails() {
    let a = WasmAdapter::new().expect("engine");
    // 12 MiB of memory, then a table grown by a million elements (8 MiB
    // of pointers) at a time until refused: under a 16 MiB limit the first
    // growth fails, because memory and table count together.
    let wat = r#"(module
  (memory 192)
  (table $t 0 funcref)
  (func (export "_start")
    (if (i32.eq (table.grow $t (ref.null func) (i32.const 1000000)) (i32.const -1))
      (then unreachable))))"#;
    let r = a
        .execute(
            ctx_with_memory("table", Duration::from_secs(30), 16 << 20),
            "run",
            &serde_json::json!({"wat": wat}),
        )
        .await
        .expect("ran");
    assert_eq!(
        r.exit,
        Some(ExitStatus::OutOfMemory),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    // The same table alone fits.
    let alone = wat.replace("(memory 192)", "(memory 1)");
    let r = a
        .execute(
            ctx_with_memory("table-alone", Duration::from_secs(30), 16 << 20),
            "run",
            &serde_json::json!({"wat": alone}),
        )
        .await
        .expect("ran");
    assert_eq!(
        r.exit,
        Some(ExitStatus::Exited(0)),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
}

#[test]
fn bid_time_validation_does_not_compile_and_reports_initial_memory() {
    let a = WasmAdapter::new().expect("engine");
    let bytes = wat::parse_str(memories(2)).expect("wat");
    let facts = a.check_module(&bytes).expect("valid");
    assert_eq!(facts.initial_bytes, 2 * 896 * 65536);
    assert_eq!(a.cache_stats().misses, 0, "validation compiled the module");
    let err = a
        .check_module(b"\0asm\x01\0\0\0\x05")
        .expect_err("truncated");
    assert!(
        err.to_string().contains("not a valid WebAssembly module"),
        "{err}"
    );
}
