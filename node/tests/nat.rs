//! Peers behind NAT, with real processes in network namespaces
//! (`scripts/netns-nat.sh`): a bootstrap peer and a public orchestrator on
//! an "internet" bridge, a client behind one home router and the only
//! provider behind another. Needs root and iptables (`scripts/test` sets
//! both up); the namespaces are removed on every path, a panic included.

mod common;

use common::{
    Proc, modchain, not_a_provider, repo_root, spawn_bootstrap_in, temp_root, wait_until,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Writes 4 MiB (64 blocks of 64 KiB) to `/outputs/big.bin`.
const BIG_OUTPUT_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "big.bin")
  (func (export "_start")
    (local $i i32)
    (local $fd i32)
    (drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 7) (i32.const 9)
      (i64.const 536870911) (i64.const 536870911) (i32.const 0) (i32.const 8)))
    (local.set $fd (i32.load (i32.const 8)))
    (memory.fill (i32.const 65536) (i32.const 7) (i32.const 65536))
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const 65536))
    (loop $l
      (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 12)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 64))))))
"#;
const BIG_OUTPUT_BYTES: usize = 64 * 65536;

/// The namespaces of one topology; removed (with whatever runs inside)
/// when dropped.
struct Topology {
    tag: String,
}

impl Topology {
    fn up(tag: &str, nat: &str) -> Topology {
        let topology = Topology { tag: tag.into() };
        let out = Command::new(repo_root().join("scripts/netns-nat.sh"))
            .args(["up", tag, nat])
            .output()
            .expect("run scripts/netns-nat.sh");
        assert!(
            out.status.success(),
            "cannot build the NAT topology (root and iptables needed; scripts/test installs iptables): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        topology
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.tag)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/netns-nat.sh"))
            .args(["down", &self.tag])
            .output();
    }
}

/// A modchain process in a namespace (killed with the namespace).
struct NsNode {
    ns: String,
    dir: PathBuf,
    child: Child,
}

impl NsNode {
    fn cli(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(modchain())
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run modchain in the namespace")
    }

    /// GET an API path (with the token) from inside the namespace, where
    /// the API listens on loopback.
    fn get(&self, path: &str) -> Option<Value> {
        let url = std::fs::read_to_string(self.dir.join("api.url")).ok()?;
        let token = std::fs::read_to_string(self.dir.join("api.token")).ok()?;
        let script = format!(
            "import urllib.request,sys\nr=urllib.request.Request({:?}, headers={{'Authorization': 'Bearer ' + {:?}}})\nsys.stdout.write(urllib.request.urlopen(r, timeout=5).read().decode())",
            format!("{}{path}", url.trim()),
            token.trim()
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-c", &script])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    fn stats(&self) -> Value {
        self.get("/api/v1/stats").unwrap_or(Value::Null)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }
}

fn spawn_bootstrap(net: &Topology, root: &Path) -> (Proc, String) {
    let ns = net.ns("pub");
    spawn_bootstrap_in(
        &["ip", "netns", "exec", &ns],
        &root.join("bootstrap"),
        "/ip4/198.18.0.10/tcp/4001",
    )
}

fn spawn_node(
    net: &Topology,
    root: &Path,
    host: &str,
    label: &str,
    listen: &str,
    bootstrap: &str,
    roles: (bool, bool),
) -> NsNode {
    let (orchestrator, provider) = roles;
    let dir = root.join(label);
    let out = Command::new(modchain())
        .arg("--data-dir")
        .arg(&dir)
        .arg("init")
        .output()
        .expect("init");
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !provider {
        not_a_provider(&dir);
    }
    let ns = net.ns(host);
    let child = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(modchain())
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "start",
            "--listen",
            listen,
            "--api",
            "127.0.0.1:0",
            "--bootstrap",
            bootstrap,
        ])
        .args(orchestrator.then_some("--orchestrator"))
        .env("RUST_LOG", "info,modchain=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log")).expect("log"))
        .spawn()
        .expect("spawn modchain start");
    NsNode { ns, dir, child }
}

struct Network {
    // Dropped last: the namespaces go with everything in them.
    nodes: Vec<NsNode>,
    bootstrap: Proc,
    root: PathBuf,
    started: Instant,
    _topology: Topology,
}

impl Network {
    fn start(tag: &str, nat: &str) -> Network {
        let net = Topology::up(tag, nat);
        let root = temp_root(&format!("nat-{tag}"));
        let (bootstrap, addr) = spawn_bootstrap(&net, &root);
        let orchestrator = spawn_node(
            &net,
            &root,
            "pub",
            "orchestrator",
            "/ip4/198.18.0.10/tcp/4101",
            &addr,
            (true, false),
        );
        let client = spawn_node(
            &net,
            &root,
            "h1",
            "client",
            "/ip4/0.0.0.0/tcp/4201",
            &addr,
            (false, false),
        );
        let provider = spawn_node(
            &net,
            &root,
            "h2",
            "provider",
            "/ip4/0.0.0.0/tcp/4301",
            &addr,
            (false, true),
        );
        Network {
            nodes: vec![orchestrator, client, provider],
            bootstrap,
            root,
            started: Instant::now(),
            _topology: net,
        }
    }

    fn orchestrator(&self) -> &NsNode {
        &self.nodes[0]
    }
    fn client(&self) -> &NsNode {
        &self.nodes[1]
    }
    fn provider(&self) -> &NsNode {
        &self.nodes[2]
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (name, n) in ["orchestrator", "client", "provider"]
            .iter()
            .zip(&self.nodes)
        {
            let log = n.log();
            let lines: Vec<&str> = log.lines().collect();
            out.push_str(&format!(
                "==== {name}\n{}\n",
                lines[lines.len().saturating_sub(40)..].join("\n")
            ));
        }
        out
    }

    /// Waits until each node's reachability is as expected, and the
    /// client knows the provider's advert.
    fn settle(&self) {
        let want = [
            ("orchestrator", 0, "public"),
            ("client", 1, "private"),
            ("provider", 2, "private"),
        ];
        for (name, i, state) in want {
            wait_until(
                Duration::from_secs(90),
                &format!("{name} finds itself {state}"),
                || (self.nodes[i].stats()["reachability"] == state).then_some(()),
            );
        }
        // A node learns other peers' addresses from the DHT walk it makes
        // on joining; one that submits before the walk found the
        // orchestrator cannot reach it (a race of its own, not of NAT).
        let orchestrator_id = wait_until(Duration::from_secs(30), "the orchestrator's API", || {
            self.orchestrator().stats()["node_id"]
                .as_str()
                .map(String::from)
        });
        wait_until(
            Duration::from_secs(60),
            "the client knows where the orchestrator is",
            || {
                let p = self.client_view_of(&orchestrator_id)?;
                (p["connected"] == true || p["addrs"].to_string().contains("198.18.0.10"))
                    .then_some(())
            },
        );
        let provider_id = wait_until(Duration::from_secs(30), "the provider's API", || {
            self.provider().stats()["node_id"]
                .as_str()
                .map(String::from)
        });
        wait_until(
            Duration::from_secs(60),
            "the client holds the provider's advert",
            || (!self.client_view_of(&provider_id)?["advert"].is_null()).then_some(()),
        );
    }

    /// Submits the 4 MiB-output job from the client; returns its JSON and
    /// how long it took.
    fn big_job(&self) -> (Value, Duration) {
        let wat = self.root.join("big.wat");
        std::fs::write(&wat, BIG_OUTPUT_WAT).expect("write wat");
        let t0 = Instant::now();
        let out = self.client().cli(&[
            "submit",
            "wasm",
            wat.to_str().expect("utf-8"),
            "--timeout",
            "60s",
            "--wait",
            "--json",
        ]);
        let took = t0.elapsed();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(
            out.status.success() && v["state"] == "completed",
            "the job across the NATs did not complete: {v}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        (v, took)
    }

    /// Fetches the job's output to the client and checks every byte.
    fn output_arrives(&self, id: &str) {
        let dest = self.root.join(format!("out-{id}"));
        // The client fetches an output too large to travel inline after
        // the job ends, chunk by chunk, checking its digest.
        let data = wait_until(
            Duration::from_secs(90),
            "the 4 MiB output reaches the client",
            || {
                let out =
                    self.client()
                        .cli(&["result", id, "--output", dest.to_str().expect("utf-8")]);
                if !out.status.success() {
                    return None;
                }
                std::fs::read(dest.join("big.bin")).ok()
            },
        );
        assert_eq!(data.len(), BIG_OUTPUT_BYTES);
        assert!(data.iter().all(|b| *b == 7), "the output's bytes");
    }

    /// Every node holds the job's receipt.
    fn receipt_everywhere(&self, receipt: &str) {
        for (name, n) in ["orchestrator", "client", "provider"]
            .iter()
            .zip(&self.nodes)
        {
            wait_until(
                Duration::from_secs(30),
                &format!("{name} holds the receipt"),
                || {
                    let out = n.cli(&["receipts", "--json"]);
                    String::from_utf8_lossy(&out.stdout)
                        .contains(receipt)
                        .then_some(())
                },
            );
        }
    }

    /// The client's `modchain peers --json` entry for the node `node_id`.
    fn client_view_of(&self, node_id: &str) -> Option<Value> {
        let out = self.client().cli(&["peers", "--json"]);
        let peers: Value = serde_json::from_slice(&out.stdout).ok()?;
        peers
            .as_array()?
            .iter()
            .find(|p| p["node_id"] == node_id)
            .cloned()
    }

    /// How the client reaches the provider now: "direct" or "relayed".
    fn client_path_to_provider(&self) -> Option<String> {
        let provider_id = self.provider().stats()["node_id"].as_str()?.to_string();
        self.client_view_of(&provider_id)?["path"]
            .as_str()
            .map(String::from)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}

fn tag(base: &str) -> String {
    // Unique per run, so that a leftover of a killed run never collides.
    format!("{base}{}", std::process::id() % 10_000)
}

#[test]
fn a_job_crosses_two_cone_nats_and_the_connection_becomes_direct() {
    let net = Network::start(&tag("c"), "cone");
    net.settle();
    let (v, took) = net.big_job();
    eprintln!("job across two cone NATs: {took:?}");
    let id = v["job_id"].as_str().expect("job id").to_string();
    net.output_arrives(&id);
    net.receipt_everywhere(v["receipt_id"].as_str().expect("receipt id"));
    // Hole punching made the client's connection to the provider direct.
    wait_until(
        Duration::from_secs(60),
        "a direct client↔provider connection",
        || (net.client_path_to_provider().as_deref() == Some("direct")).then_some(()),
    );
    eprintln!(
        "direct client↔provider {:?} after the network started; hole punches: client {}, provider {}",
        net.started.elapsed(),
        net.client().stats()["hole_punches"],
        net.provider().stats()["hole_punches"]
    );
    let punched = net.client().stats()["hole_punches"]["direct"]
        .as_u64()
        .unwrap_or(0)
        + net.provider().stats()["hole_punches"]["direct"]
            .as_u64()
            .unwrap_or(0);
    assert!(punched >= 1, "no hole punch counted:\n{}", net.logs());

    // The bootstrap peer goes: jobs between the homes still complete.
    let mut net = net;
    let _ = net.bootstrap.child.kill();
    let _ = net.bootstrap.child.wait();
    let (v, _) = net.big_job();
    assert_eq!(v["state"], "completed");
}

#[test]
fn a_job_crosses_two_symmetric_nats_through_a_relay() {
    let net = Network::start(&tag("s"), "symmetric");
    net.settle();
    let (v, took) = net.big_job();
    eprintln!("job across two symmetric NATs: {took:?}");
    let id = v["job_id"].as_str().expect("job id").to_string();
    net.output_arrives(&id);
    net.receipt_everywhere(v["receipt_id"].as_str().expect("receipt id"));
    eprintln!(
        "client→provider path: {:?}; hole punches: client {}, provider {}",
        net.client_path_to_provider(),
        net.client().stats()["hole_punches"],
        net.provider().stats()["hole_punches"]
    );
    let relays = net.provider().stats()["relays"].clone();
    assert!(
        relays
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["accepted"] == true)),
        "the provider holds no relay reservation: {relays}"
    );
    let _ = net.orchestrator();
}
