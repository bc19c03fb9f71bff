//! Jobs end to end with real parts: separate `modchain` processes on
//! 127.0.0.1 (a bootstrap peer and four nodes), the real dockerd with a
//! locally built busybox image, real sled ledgers. One network is shared by
//! the steps of one test, in an order where each step leaves the network as
//! the next expects (the provider kill comes last).

mod common;

use common::{Proc, TestNet, containers_of_job, modchain, test_image, wait_until};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests here each start a whole network; on a small machine they run
/// one at a time.
static ONE_NETWORK_AT_A_TIME: Mutex<()> = Mutex::new(());

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "completed" | "failed" | "cancelled")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// A module that prints `hello wasm <args>` and writes `/outputs/out.txt`.
const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "hello wasm\0a")
  (data (i32.const 2048) "out.txt")
  (data (i32.const 3072) "data\0a")
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (call $write (i32.const 1) (i32.const 1024) (i32.const 11))
    (drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 2048) (i32.const 7) (i32.const 1)
      (i64.const 536870911) (i64.const 536870911) (i32.const 0) (i32.const 64)))
    (call $write (i32.load (i32.const 64)) (i32.const 3072) (i32.const 5))))
"#;

#[test]
fn jobs_run_end_to_end_on_a_four_node_network() {
    let _one = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let image = test_image();
    let t0 = Instant::now();
    let mut net = TestNet::start("jobs-test", 4);
    eprintln!("[{:?}] four nodes converged", t0.elapsed());
    let client = 0;

    bad_input_is_refused_and_nothing_is_stored(&net, image);
    eprintln!("[{:?}] bad input refused", t0.elapsed());

    let job_id = docker_stdout_and_exit_code_come_back(&net, image);
    eprintln!("[{:?}] docker job done", t0.elapsed());
    receipts_reach_every_peer_within_10s(&net, &job_id);
    eprintln!("[{:?}] receipts on every peer", t0.elapsed());

    // Over its memory limit: killed and reported as out of memory.
    let out = net.nodes[client].cli(&[
        "submit",
        "docker",
        image,
        "--memory",
        "64m",
        "--timeout",
        "60s",
        "--wait",
        "--json",
        "--",
        "dd",
        "if=/dev/zero",
        "bs=200M",
        "count=1",
        "of=/dev/null",
    ]);
    let v = stdout_json(&out);
    assert!(!out.status.success(), "an OOM job exits non-zero: {v}");
    let exit = format!("{} {} {}", v["exit"], v["detail"], v["state"]).to_ascii_lowercase();
    assert!(
        exit.contains("memory") || exit.contains("oom"),
        "not reported as out of memory: {v}"
    );
    eprintln!("[{:?}] OOM reported", t0.elapsed());

    // No network unless asked: the address is never reached.
    let out = net.nodes[client].cli(&[
        "submit",
        "docker",
        image,
        "--wait",
        "--json",
        "--",
        "sh",
        "-c",
        "nc -w 2 10.0.0.1 80 </dev/null",
    ]);
    let v = stdout_json(&out);
    assert_ne!(v["exit_code"].as_i64(), Some(0), "{v}");
    assert!(
        v["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("Network is unreachable")),
        "{v}"
    );
    eprintln!("[{:?}] network refused", t0.elapsed());

    a_wasm_job_runs_and_its_output_comes_back(&net);
    eprintln!("[{:?}] wasm job done", t0.elapsed());

    cancel_stops_the_container_frees_capacity_and_fails_the_waiting_cli(&net, image);
    eprintln!("[{:?}] cancel done", t0.elapsed());

    a_killed_provider_leads_to_a_failure_receipt_and_a_rerun_elsewhere(&mut net, image);
    eprintln!("[{:?}] provider kill survived", t0.elapsed());
}

fn bad_input_is_refused_and_nothing_is_stored(net: &TestNet, image: &str) {
    let node = &net.nodes[0];
    let jobs_before = node.get("/api/v1/jobs").expect("jobs");
    let cases = [
        (
            "unknown adapter",
            json!({"adapter": "teleport", "method": "run", "params": {}}).to_string(),
        ),
        (
            "malformed params",
            json!({"adapter": "docker", "method": "run", "params": {"image": 5}}).to_string(),
        ),
        (
            "unknown method",
            json!({"adapter": "wasm", "method": "fly", "params": {"wat": "(module)"}}).to_string(),
        ),
        (
            "spec over the size limit",
            json!({"adapter": "wasm", "method": "run",
                   "params": {"wat": format!("(module) ;; {}", "x".repeat(600 * 1024))}})
            .to_string(),
        ),
        ("not JSON", "{\"adapter\": ".to_string()),
    ];
    for (what, body) in &cases {
        let (status, answer) = node.post("/api/v1/jobs", body);
        assert!(
            (400..500).contains(&status),
            "{what}: expected a 4xx, got {status}: {answer}"
        );
        let err: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        assert!(
            err["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: no error message in {answer}"
        );
    }
    // Without the token nothing is accepted.
    let url = node.url().expect("url");
    let (status, _) = common::http(
        &url,
        "POST",
        "/api/v1/jobs",
        None,
        Some(
            &json!({"adapter": "wasm", "method": "run", "params": {"wat": "(module)"}}).to_string(),
        ),
    )
    .expect("answered");
    assert_eq!(status, 401, "a POST without the token");

    // The CLI shows the node's refusal as it is, and fails.
    let big = net.root.join("big.wat");
    std::fs::write(&big, format!("(module) ;; {}", "x".repeat(600 * 1024))).expect("write");
    let out = node.cli(&["submit", "wasm", big.to_str().expect("path"), "--json"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("HTTP 4"), "{err}");

    assert_eq!(
        node.get("/api/v1/jobs").expect("jobs"),
        jobs_before,
        "a refused job was stored"
    );

    // An image no provider has: a clear error, and no receipt anywhere.
    let out = node.cli(&[
        "submit",
        "docker",
        "modchain-test/not-here:1",
        "--timeout",
        "20s",
        "--wait",
        "--json",
        "--",
        "true",
    ]);
    assert!(!out.status.success(), "a job for a missing image succeeded");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr)).to_ascii_lowercase();
    assert!(
        said.contains("image") || said.contains("no provider") || said.contains("not-here"),
        "no clear reason for the missing image: {said}"
    );
    let _ = image;
    // Refused before any bid (the node's own adapter checks at submit, and
    // providers decline at bid time what their adapters would refuse), so
    // no ledger holds a receipt for it: these steps run before any job.
    for n in &net.nodes {
        assert!(
            n.receipts().is_empty(),
            "{} stored a receipt for a refused job: {:?}\nCLI said: {said}",
            n.label,
            n.receipts()
        );
    }
}

fn docker_stdout_and_exit_code_come_back(net: &TestNet, image: &str) -> String {
    let out = net.nodes[0].cli(&[
        "submit",
        "docker",
        image,
        "--cpus",
        "1",
        "--memory",
        "128m",
        "--timeout",
        "60s",
        "--max-price",
        "1",
        "--env",
        "WHO=docker",
        "--wait",
        "--json",
        "--",
        "sh",
        "-c",
        "echo hello from $WHO; echo to stderr >&2; exit 3",
    ]);
    let v = stdout_json(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "CLI exit code follows the job: {v}"
    );
    assert_eq!(v["state"], "completed", "{v}\n{}", net.logs());
    assert_eq!(v["exit_code"], 3, "{v}");
    assert_eq!(v["stdout"], "hello from docker\n", "{v}");
    assert_eq!(v["stderr"], "to stderr\n", "{v}");
    let provider = v["provider"].as_str().expect("provider");
    assert!(
        net.by_peer(provider).is_some(),
        "provider {provider} is not ours"
    );
    v["job_id"].as_str().expect("job_id").to_string()
}

fn receipts_reach_every_peer_within_10s(net: &TestNet, job_id: &str) {
    let t0 = Instant::now();
    for n in &net.nodes {
        let r = wait_until(
            Duration::from_secs(10).saturating_sub(t0.elapsed()),
            &format!("receipt for {job_id} on {}", n.label),
            || {
                n.receipts()
                    .into_iter()
                    .find(|r| r["job_id"].as_str() == Some(job_id))
            },
        );
        assert!(r["receipt_id"].is_string(), "{r}");
    }
    // `receipts --json` carries what a client needs.
    let out = net.nodes[3].cli(&["receipts", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = stdout_json(&out);
    let r = list
        .as_array()
        .and_then(|a| a.iter().find(|r| r["job_id"] == job_id))
        .cloned()
        .expect("receipt listed");
    for key in [
        "receipt_id",
        "job_id",
        "client",
        "provider",
        "outcome",
        "price",
    ] {
        assert!(!r[key].is_null(), "receipt lacks {key}: {r}");
    }
    // Human tables work too.
    for args in [["receipts"], ["jobs"], ["reputation"], ["balance"]] {
        let out = net.nodes[0].cli(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
}

fn a_wasm_job_runs_and_its_output_comes_back(net: &TestNet) {
    let file = net.root.join("hello.wat");
    std::fs::write(&file, HELLO_WAT).expect("write wat");
    let out = net.nodes[1].cli(&[
        "submit",
        "wasm",
        file.to_str().expect("path"),
        "--wait",
        "--json",
        "--",
        "one",
        "two",
    ]);
    let v = stdout_json(&out);
    assert!(out.status.success(), "{v} {}", text(&out.stderr));
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(v["stdout"], "hello wasm\n", "{v}");
    let id = v["job_id"].as_str().expect("job_id");
    let dest = net.root.join("wasm-out");
    let out = net.nodes[1].cli(&["result", id, "--output", dest.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dest.join("out.txt"))
            .ok()
            .as_deref(),
        Some("data\n"),
        "result --output: {}",
        text(&out.stdout)
    );
    // Without --wait, submit prints the id; `job` and `logs` read it back.
    let out = net.nodes[1].cli(&["submit", "wasm", file.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let t = Instant::now();
    let job = loop {
        let j = net.nodes[1].job(&id);
        if j["state"].as_str().is_some_and(is_terminal) {
            break j;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "second wasm job did not end: {j}\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(job["state"], "completed", "{job}\n{}", net.logs());
    assert_eq!(job["stdout"], "hello wasm\n");
    let out = net.nodes[1].cli(&["logs", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("hello wasm"),
        "{}",
        text(&out.stdout)
    );
    let out = net.nodes[1].cli(&["job", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("completed"));
}

fn cancel_stops_the_container_frees_capacity_and_fails_the_waiting_cli(net: &TestNet, image: &str) {
    let free_before: Vec<Value> = net
        .nodes
        .iter()
        .map(|n| n.own_advert()["free"].clone())
        .collect();
    // The client waits on the job as a user would (`submit --wait`); its
    // progress lines on stderr start with the job's id.
    let mut waiter = Proc {
        name: "submit --wait".into(),
        child: Command::new(modchain())
            .arg("--data-dir")
            .arg(&net.nodes[0].dir)
            .args([
                "submit",
                "docker",
                image,
                "--timeout",
                "5m",
                "--wait",
                "--",
                "sleep",
                "300",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run modchain submit --wait"),
    };
    let mut progress = BufReader::new(waiter.child.stderr.take().expect("stderr"));
    let mut first = String::new();
    progress
        .read_line(&mut first)
        .expect("the first progress line");
    // "[  0.00s] job <id> submitted"
    let id = first
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in {first:?}"))
        .to_string();
    let job = wait_until(
        Duration::from_secs(30),
        "the sleeper's container runs",
        || {
            let j = net.nodes[0].job(&id);
            (!j["provider"].is_null() && containers_of_job(&id) > 0).then_some(j)
        },
    );
    assert_eq!(
        waiter.child.try_wait().expect("the waiting CLI's status"),
        None,
        "the waiting CLI ended before the job did"
    );
    let provider = net
        .by_peer(job["provider"].as_str().expect("provider"))
        .expect("a provider of ours");
    let out = net.nodes[0].cli(&["cancel", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_until(Duration::from_secs(10), "the job is cancelled", || {
        (net.nodes[0].job(&id)["state"] == "cancelled").then_some(())
    });
    wait_until(Duration::from_secs(15), "the container is gone", || {
        (containers_of_job(&id) == 0).then_some(())
    });
    // The CLI that waited on the job sees it end and exits non-zero.
    let status = wait_until(
        Duration::from_secs(30),
        "the CLI waiting on the cancelled job exits",
        || waiter.child.try_wait().ok().flatten(),
    );
    let mut rest = String::new();
    let _ = progress.read_to_string(&mut rest);
    assert!(
        !status.success(),
        "the CLI waiting on a cancelled job exited {status}; stderr:\n{first}{rest}"
    );
    assert!(rest.contains("cancelled"), "stderr:\n{first}{rest}");
    let t = Instant::now();
    loop {
        let free = net.nodes[provider].own_advert()["free"].clone();
        if free == free_before[provider] {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{} does not advertise its capacity free again: {free} (before the job: {})",
            net.nodes[provider].label,
            free_before[provider]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = net.nodes[0].cli(&["job", &id, "--json"]);
    assert_eq!(stdout_json(&out)["state"], "cancelled");
}

fn a_killed_provider_leads_to_a_failure_receipt_and_a_rerun_elsewhere(
    net: &mut TestNet,
    image: &str,
) {
    let client = 0;
    let cores = net
        .nodes
        .iter()
        .filter_map(|n| n.own_advert()["free"]["cores"].as_u64())
        .min()
        .unwrap_or(1)
        .max(1);
    // Find a run whose provider is neither the client nor the orchestrator.
    let mut attempt = 0;
    let (id, victim) = loop {
        attempt += 1;
        assert!(
            attempt <= 6,
            "never got a provider apart from client and orchestrator"
        );
        // Each attempt takes a whole provider, so a provider that is the
        // client or the orchestrator stays busy and the next attempt goes
        // elsewhere.
        let out = net.nodes[client].cli(&[
            "submit",
            "docker",
            image,
            "--cpus",
            &cores.to_string(),
            "--timeout",
            "20s",
            "--",
            "sh",
            "-c",
            "sleep 4; echo survived",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let id = text(&out.stdout).trim().to_string();
        // Running: its container is up (the client's view of the state may
        // still say awarded).
        let mut last = Value::Null;
        let t = Instant::now();
        let job = loop {
            let j = net.nodes[client].job(&id);
            if !j["provider"].is_null() && containers_of_job(&id) > 0 {
                break j;
            }
            if t.elapsed() > Duration::from_secs(30) {
                panic!("the job never ran: {last}\n{}", net.logs());
            }
            last = j;
            std::thread::sleep(Duration::from_millis(50));
        };
        let provider = job["provider"].as_str().unwrap_or_default();
        let orchestrator = job["orchestrator"].as_str().unwrap_or_default();
        let p = net.by_peer(provider).expect("provider of ours");
        let orch = net.by_peer(orchestrator);
        if p != client && Some(p) != orch {
            break (id, p);
        }
        eprintln!("attempt {attempt}: provider {p}, orchestrator {orch:?}; again");
    };
    let victim_peer = net.nodes[victim].peer_id.clone();
    let victim_hex = common::node_hex(&victim_peer);
    net.nodes[victim].kill9();
    eprintln!(
        "killed {} ({victim_peer}) mid-job {id}",
        net.nodes[victim].label
    );
    let job = wait_until(
        Duration::from_secs(60),
        "the job completes elsewhere",
        || {
            let j = net.nodes[client].job(&id);
            matches!(
                j["state"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
            .then_some(j)
        },
    );
    assert_eq!(job["state"], "completed", "{job}\n{}", net.logs());
    assert_ne!(
        job["provider"].as_str(),
        Some(victim_peer.as_str()),
        "{job}"
    );
    assert_eq!(job["stdout"], "survived\n", "{job}");
    // The failure is on record: a receipt for this job naming the lost provider.
    let failure = wait_until(Duration::from_secs(10), "a failure receipt", || {
        net.nodes[client].receipts().into_iter().find(|r| {
            r["job_id"] == id.as_str()
                && r["provider"]
                    .as_str()
                    .is_some_and(|p| p == victim_peer || p == victim_hex)
        })
    });
    assert_ne!(failure["outcome"], "success", "{failure}");
    assert_ne!(failure["outcome"], "completed", "{failure}");
    // Clean up the container the killed node left behind.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker ps -aq --filter label=modchain.job={id} | xargs -r docker rm -f"
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `modchain devnet --exit-after-demo` with `extra` arguments; its
/// stdout, after checking that it succeeded and left no node serving.
fn run_devnet(name: &str, peers: usize, extra: &[&str]) -> String {
    let dir = common::temp_root(name);
    let child = Command::new(common::modchain())
        .args([
            "devnet",
            "--peers",
            &peers.to_string(),
            "--exit-after-demo",
            "--dir",
        ])
        .arg(&dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn devnet");
    let pid = child.id();
    // A watchdog: devnet must finish on its own well within this.
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(100));
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    });
    let out = child.wait_with_output().expect("devnet output");
    drop(watchdog);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "devnet failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    // The children are gone: no node is left serving.
    for i in 1..=peers {
        assert!(
            !dir.join(format!("node-{i}/api.url")).exists(),
            "node-{i} left its api.url behind"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    stdout
}

#[test]
fn devnet_runs_its_demo_to_completion() {
    let _one = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let stdout = run_devnet("devnet-test", 3, &[]);
    assert!(stdout.contains("Hello from Modchain!"), "{stdout}");
    assert!(stdout.contains("greeting.txt"), "{stdout}");
    assert!(stdout.contains("in all 3 ledgers"), "{stdout}");
    // One line per phase, numbered, in order.
    let phases: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    let labels: Vec<&str> = phases
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        labels,
        ["peers", "adverts", "election", "demo", "receipt"],
        "{stdout}"
    );
    // The demo job's way through the network, summarised.
    for step in ["auction", "bid", "award", "execution", "receipt"] {
        assert!(
            stdout.contains(step),
            "devnet never showed a {step} step:\n{stdout}"
        );
    }
    // The default output fits one screen: no per-event wall of logs.
    assert!(
        stdout.lines().count() <= 20,
        "devnet printed {} lines:\n{stdout}",
        stdout.lines().count()
    );
}

#[test]
fn devnet_with_events_prints_every_node_s_events() {
    let _one = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let stdout = run_devnet("devnet-events", 2, &["--events"]);
    // Each step of the flow as the nodes report it, labelled by node.
    for event in [
        "auction_opened",
        "bid_received",
        "awarded",
        "execution_started",
        "result_received",
        "receipt_stored",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(event) && l.contains("node-")),
            "devnet --events never showed {event}:\n{stdout}"
        );
    }
    assert!(stdout.contains("in all 2 ledgers"), "{stdout}");
}
