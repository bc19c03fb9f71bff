//! The container image and the compose file of docs/operators.md: the
//! image is built from the .deb on the local Debian base (nothing pulled),
//! a bootstrap peer and three nodes come up on an internal docker network
//! this test creates, the nodes find each other, and a WebAssembly job
//! submitted on one runs on the network; and `docker run` of the image
//! runs a whole devnet. Everything the run made
//! (containers, volumes, the network, the image) goes, pass or fail.

mod common;

use common::*;
use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Prints `hello from the compose network` and exits 0.
const WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "hello from the compose network\0a")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 31))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

/// One compose project: its name and the environment every
/// docker-compose call needs.
struct Compose {
    project: String,
    env: Vec<(String, String)>,
}

impl Compose {
    fn run(&self, secs: u64, args: &[&str]) -> std::process::Output {
        let mut full = vec!["-p", &self.project, "-f", "packaging/docker-compose.yml"];
        full.extend_from_slice(args);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run_limited(secs, "docker-compose", &full, &env)
    }

    fn container(&self, service: &str) -> String {
        let out = self.run(60, &["ps", "-q", service]);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn logs(&self) -> String {
        let out = self.run(60, &["logs", "--no-color", "--tail", "20"]);
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

/// The peer ids a node holds adverts for, itself included; empty while its
/// API is not up yet.
fn advertised(container: &str) -> HashSet<String> {
    let out = docker_sh(container, "modchain peers --json");
    if !out.status.success() {
        return HashSet::new();
    }
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    nodes
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|n| !n["advert"].is_null())
                .filter_map(|n| n["peer_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_brings_up_a_network_whose_nodes_join_and_run_a_job() {
    require_docker();
    sweep_stale_test_resources();
    let t0 = Instant::now();
    let root = temp_root("container");
    let deb = debug_deb(&root.join("deb"));
    let pid = std::process::id();
    let tag = format!("modchain-test-{pid}:{}", workspace_version());
    let network = format!("modchain-test-{pid}");
    let compose = Compose {
        project: format!("modchain-test-{pid}"),
        env: vec![
            ("MODCHAIN_IMAGE".to_string(), tag.clone()),
            ("MODCHAIN_NETWORK".to_string(), network.clone()),
        ],
    };

    // Torn down last-added first: the compose project, then the network it
    // used, then the image.
    let mut cleanup = Cleanup::default();
    cleanup.on_drop("docker", &["rmi", "-f", &tag], &[]);
    let deb_s = deb.to_string_lossy().to_string();
    assert_eq!(
        run_ok(600, "scripts/build-image.sh", &[&deb_s, &tag], &[]),
        tag
    );
    eprintln!("image built after {:?}", t0.elapsed());

    cleanup.on_drop("docker", &["network", "rm", &network], &[]);
    run_ok(
        60,
        "docker",
        &["network", "create", "--internal", &network],
        &[],
    );
    let env: Vec<(&str, &str)> = compose
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    cleanup.on_drop(
        "docker-compose",
        &[
            "-p",
            &compose.project,
            "-f",
            "packaging/docker-compose.yml",
            "down",
            "--volumes",
            "--remove-orphans",
            "--timeout",
            "5",
        ],
        &env,
    );
    let up = compose.run(300, &["up", "-d"]);
    assert!(
        up.status.success(),
        "docker-compose up: {}",
        String::from_utf8_lossy(&up.stderr)
    );

    // Joined: every node holds the adverts of all three.
    let nodes: Vec<String> = ["node1", "node2", "node3"]
        .iter()
        .map(|s| compose.container(s))
        .collect();
    let started = Instant::now();
    loop {
        let views: Vec<HashSet<String>> = nodes.iter().map(|c| advertised(c)).collect();
        if views.iter().all(|v| v.len() >= 3) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the nodes did not all see each other's adverts: {views:?}\n{}",
            compose.logs()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("network joined after {:?}", t0.elapsed());

    // A job, submitted on node1, runs on the network.
    let mut put = Command::new("docker")
        .args(["exec", "-i", &nodes[0], "sh", "-c", "cat > /tmp/job.wat"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("docker exec");
    put.stdin
        .take()
        .expect("stdin")
        .write_all(WAT.as_bytes())
        .expect("write the module");
    assert!(put.wait().expect("docker exec").success());
    let submit = docker_sh(
        &nodes[0],
        "modchain submit wasm /tmp/job.wat --timeout 60s --wait --json",
    );
    let said = String::from_utf8_lossy(&submit.stdout).to_string();
    assert!(
        submit.status.success(),
        "the job failed: {said}{}\n{}",
        String::from_utf8_lossy(&submit.stderr),
        compose.logs()
    );
    let result: serde_json::Value = serde_json::from_str(&said).expect("--json is JSON");
    assert_eq!(result["exit_code"], 0, "{result}");
    assert!(
        result["stdout"]
            .as_str()
            .is_some_and(|s| s.contains("hello from the compose network")),
        "{result}"
    );
    assert!(
        result["provider"].is_string(),
        "no provider named: {result}"
    );
    eprintln!("job done after {:?}", t0.elapsed());

    // `docker run` alone: a whole devnet in one container, with no network
    // at all, runs its demo job to every ledger.
    let devnet = run_limited(
        180,
        "docker",
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &tag,
            "modchain",
            "devnet",
            "--peers",
            "3",
            "--exit-after-demo",
        ],
        &[],
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&devnet.stdout),
        String::from_utf8_lossy(&devnet.stderr)
    );
    assert!(
        devnet.status.success() && said.contains("in all 3 ledgers"),
        "devnet in a container ({}): {said}",
        devnet.status
    );
    eprintln!("devnet done after {:?}", t0.elapsed());

    drop(cleanup);
    let _ = std::fs::remove_dir_all(&root);
}
