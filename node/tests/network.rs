//! End to end, with the real binaries as separate processes on 127.0.0.1:
//! one bootstrap peer and five nodes that know nothing but its address.

use libp2p::futures::StreamExt;
use libp2p::gossipsub;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use modchain_net::wire as network;
use modchain_protocol::{CapabilityAdvert, Envelope, Keypair, Message, Timestamp, Topic};
use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

const NODES: usize = 5;
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);
/// The outsider that publishes the forged advert.
const FORGER_SEED: u64 = 0xF0F0;

/// A child process that is killed when the test lets go of it.
struct Proc {
    name: String,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn modchain() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_modchain"))
}

/// The bootstrap binary lives in another package: find it beside ours,
/// building it first if needed.
fn modchain_bootstrap() -> PathBuf {
    let dir = modchain()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let bin = dir.join(format!(
        "modchain-bootstrap{}",
        std::env::consts::EXE_SUFFIX
    ));
    if !bin.exists() {
        let target = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "modchain-bootstrap",
                "--bin",
                "modchain-bootstrap",
            ])
            .env("CARGO_TARGET_DIR", target)
            .status()
            .expect("run cargo build -p modchain-bootstrap");
        assert!(status.success(), "cargo build -p modchain-bootstrap failed");
    }
    assert!(
        bin.exists(),
        "no modchain-bootstrap binary at {}",
        bin.display()
    );
    bin
}

fn temp_root() -> PathBuf {
    let root = std::env::temp_dir().join(format!("modchain-network-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    root
}

fn http_get(url: &str, token: &str, path: &str) -> Option<Value> {
    let hostport = url.trim().strip_prefix("http://")?;
    let mut s = TcpStream::connect(hostport).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

struct TestNode {
    dir: PathBuf,
    proc: Option<Proc>,
    /// Flags beyond the common ones (`--orchestrator`).
    extra: Vec<&'static str>,
}

impl TestNode {
    fn start(&mut self, bootstrap: &str) {
        let _ = std::fs::remove_file(self.dir.join("api.url"));
        let log = std::fs::File::create(self.dir.join("node.log")).expect("log file");
        let child = Command::new(modchain())
            .arg("--data-dir")
            .arg(&self.dir)
            .args([
                "start",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--api",
                "127.0.0.1:0",
                "--bootstrap",
                bootstrap,
            ])
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn modchain start");
        self.proc = Some(Proc {
            name: self.dir.display().to_string(),
            child,
        });
    }

    fn url(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("api.url")).ok()
    }

    fn get(&self, path: &str) -> Option<Value> {
        let token = std::fs::read_to_string(self.dir.join("api.token")).ok()?;
        http_get(&self.url()?, token.trim(), path)
    }

    fn wait_api(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(v) = self.get("/api/v1/stats") {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "node {} never served its API; log:\n{}",
            self.dir.display(),
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Peer ids of the adverts this node holds, read through `modchain peers --json`.
    fn advert_holders(&self) -> HashSet<String> {
        let out = Command::new(modchain())
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["peers", "--json"])
            .output()
            .expect("run modchain peers");
        if !out.status.success() {
            return HashSet::new();
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|n| !n["advert"].is_null() && n["addrs"].is_array())
                    .filter_map(|n| n["peer_id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut p = self.proc.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(p.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM",
                p.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn rejected_bad_signature(stats: &Value) -> u64 {
    stats["rejected"]["bad_signature"].as_u64().unwrap_or(0)
}

/// Joins the nodes' gossip over real libp2p as an outsider and publishes an
/// advert whose signature does not verify. Runs until `stop` is set.
fn publish_forged_advert(
    targets: Vec<Multiaddr>,
    published: mpsc::Sender<Result<(), String>>,
    stop: Arc<AtomicBool>,
) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let key = Keypair::from_seed(FORGER_SEED).to_libp2p();
        let gs = network::gossipsub(&key).expect("gossipsub");
        let mut swarm = network::build_swarm(key, None, |_, _| gs).expect("swarm");
        let topic = network::topic(Topic::Adverts);
        swarm.behaviour_mut().subscribe(&topic).expect("subscribe");
        let mut waiting: HashSet<PeerId> = HashSet::new();
        for addr in targets {
            if let Some(libp2p::multiaddr::Protocol::P2p(p)) = addr.iter().last() {
                waiting.insert(p);
            }
            swarm.dial(addr).expect("dial node");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !waiting.is_empty() {
            tokio::select! {
                ev = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, topic: t }) = ev
                        && t == topic.hash()
                    {
                        waiting.remove(&peer_id);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let _ = published.send(Err(format!("nodes never subscribed: {waiting:?}")));
                    return;
                }
            }
        }
        let now = Timestamp::now_wall();
        let forger = Keypair::from_seed(0xBAD);
        let advert = CapabilityAdvert {
            sequence: now.as_millis(),
            expires_at: now.plus(120_000),
            benchmark_score: 1_000_000,
            ..CapabilityAdvert::default()
        };
        let mut envelope = Envelope::seal(&forger, now, Message::Advert(advert)).into_envelope();
        envelope.signature.0[0] ^= 0x01;
        let result = swarm
            .behaviour_mut()
            .publish(topic.hash(), envelope.to_bytes())
            .map(|_| ())
            .map_err(|e| e.to_string());
        let _ = published.send(result);
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                _ = swarm.select_next_some() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    // Do not wait on the runtime's blocking threads (resolver, interface watcher).
    rt.shutdown_background();
}

#[test]
fn five_nodes_converge_reject_a_forged_advert_and_keep_their_peer_id_across_restart() {
    let root = temp_root();

    // The bootstrap peer prints its full address as its first line.
    let bs_dir = root.join("bootstrap");
    let mut bs_child = Command::new(modchain_bootstrap())
        .arg("--data-dir")
        .arg(&bs_dir)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(root.join("bootstrap.log")).expect("log"))
        .spawn()
        .expect("spawn modchain-bootstrap");
    let mut first = String::new();
    BufReader::new(bs_child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("bootstrap address line");
    let _bootstrap = Proc {
        name: "bootstrap".into(),
        child: bs_child,
    };
    let bootstrap_addr = first.trim().to_string();
    assert!(
        bootstrap_addr.contains("/p2p/12D3KooW"),
        "first line: {bootstrap_addr:?}"
    );
    assert_eq!(
        std::fs::read_to_string(bs_dir.join("addr"))
            .expect("addr file")
            .trim(),
        bootstrap_addr
    );

    // Five nodes, each initialised and started with only the bootstrap address.
    let mut nodes: Vec<TestNode> = (0..NODES)
        .map(|i| TestNode {
            dir: root.join(format!("node{i}")),
            proc: None,
            // The last node stands as orchestrator candidate.
            extra: if i == NODES - 1 {
                vec!["--orchestrator"]
            } else {
                vec![]
            },
        })
        .collect();
    for n in &nodes {
        let out = Command::new(modchain())
            .arg("--data-dir")
            .arg(&n.dir)
            .arg("init")
            .output()
            .expect("init");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let t0 = Instant::now();
    for n in &mut nodes {
        n.start(&bootstrap_addr);
    }
    let stats: Vec<Value> = nodes.iter().map(TestNode::wait_api).collect();
    let peer_ids: HashSet<String> = stats
        .iter()
        .map(|s| s["peer_id"].as_str().expect("peer_id").to_string())
        .collect();
    assert_eq!(peer_ids.len(), NODES);

    // Every node holds all five adverts (its own included) within 30 s.
    let mut converged = vec![false; NODES];
    while converged.iter().any(|c| !c) {
        for (i, n) in nodes.iter().enumerate() {
            if !converged[i] && n.advert_holders().is_superset(&peer_ids) {
                converged[i] = true;
            }
        }
        if t0.elapsed() > CONVERGE_WITHIN {
            let lagging: Vec<String> = nodes
                .iter()
                .zip(&converged)
                .filter(|(_, c)| !**c)
                .map(|(n, _)| format!("{}:\n{}", n.dir.display(), n.log()))
                .collect();
            panic!(
                "not converged within {CONVERGE_WITHIN:?}:\n{}",
                lagging.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("five nodes converged on all adverts in {:?}", t0.elapsed());

    // Every advert names the software its node runs, the version
    // `modchain --version` prints; and every node counts its connected
    // peers by the protocol version their identify agent names.
    let version = Command::new(modchain())
        .arg("--version")
        .output()
        .expect("modchain --version");
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    let software = version
        .split_whitespace()
        .nth(1)
        .expect("`modchain VERSION (...)`")
        .to_string();
    assert!(
        version.contains(&format!("protocol {}", modchain_protocol::PROTOCOL_VERSION)),
        "{version}"
    );
    let listed = nodes[0].get("/api/v1/nodes").expect("nodes");
    let with_adverts: Vec<&Value> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter(|n| !n["advert"].is_null())
        .collect();
    assert_eq!(with_adverts.len(), NODES);
    for n in with_adverts {
        assert_eq!(
            n["advert"]["software"].as_str(),
            Some(software.as_str()),
            "{n}"
        );
    }
    for n in &nodes {
        let s = n.get("/api/v1/stats").expect("stats");
        let ours = modchain_protocol::PROTOCOL_VERSION.to_string();
        assert!(
            s["peers_by_protocol"][ours.as_str()].as_u64() >= Some(1),
            "no connected peer counted under protocol {ours}: {}",
            s["peers_by_protocol"]
        );
        assert_eq!(s["software"].as_str(), Some(software.as_str()));
    }

    // The candidate is found through its DHT provider record, from any node.
    let candidate = stats[NODES - 1]["peer_id"]
        .as_str()
        .expect("peer_id")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = nodes[0]
            .get("/api/v1/providers?key=cap/orchestrator")
            .and_then(|v| v["providers"].as_array().cloned())
            .unwrap_or_default();
        if found.iter().any(|p| p.as_str() == Some(candidate.as_str())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cap/orchestrator provider not found: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("cap/orchestrator provider found after {:?}", t0.elapsed());

    // A forged advert, published over libp2p straight to every node, is
    // rejected by each of them and counted by reason.
    let before: Vec<u64> = nodes
        .iter()
        .map(|n| rejected_bad_signature(&n.get("/api/v1/stats").expect("stats")))
        .collect();
    let targets: Vec<Multiaddr> = stats
        .iter()
        .filter_map(|s| s["listen_addrs"][0].as_str().and_then(|a| a.parse().ok()))
        .collect();
    assert_eq!(targets.len(), NODES);
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let forger = {
        let stop = stop.clone();
        std::thread::spawn(move || publish_forged_advert(targets, tx, stop))
    };
    rx.recv_timeout(Duration::from_secs(30))
        .expect("forger reported")
        .expect("forged advert published");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut counted = vec![false; NODES];
    while counted.iter().any(|c| !c) {
        for (i, n) in nodes.iter().enumerate() {
            if let Some(s) = n.get("/api/v1/stats") {
                counted[i] = rejected_bad_signature(&s) > before[i];
            }
        }
        assert!(
            Instant::now() < deadline,
            "forged advert not counted by every node: {counted:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for n in &nodes {
        let holders = n.advert_holders();
        assert_eq!(
            holders.len(),
            NODES,
            "a forged advert entered the table of {}",
            n.dir.display()
        );
    }
    eprintln!(
        "forged advert rejected and counted by every node at {:?}",
        t0.elapsed()
    );
    // ...and the peer that sent it has lost standing in every node's gossip.
    let forger_id = Keypair::from_seed(FORGER_SEED).peer_id().to_string();
    for n in &nodes {
        let view = n.get("/api/v1/nodes").expect("nodes");
        let score = view
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|p| p["peer_id"].as_str() == Some(forger_id.as_str()))
            })
            .and_then(|p| p["gossip_score"].as_f64());
        assert!(
            score.is_some_and(|s| s < 0.0),
            "forger's gossip score at {} is {score:?}",
            n.dir.display()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = forger.join();

    // A restarted node keeps its PeerId, shuts down cleanly and rejoins.
    let old_id = stats[0]["peer_id"].as_str().expect("peer_id").to_string();
    let status = nodes[0].stop();
    assert!(status.success(), "node exited with {status} on SIGTERM");
    assert!(
        !nodes[0].dir.join("api.url").exists(),
        "api.url left behind after a clean stop"
    );
    eprintln!("node stopped cleanly at {:?}", t0.elapsed());
    nodes[0].start(&bootstrap_addr);
    let again = nodes[0].wait_api();
    assert_eq!(again["peer_id"].as_str(), Some(old_id.as_str()));
    let t1 = Instant::now();
    while !nodes[0].advert_holders().is_superset(&peer_ids) {
        assert!(
            t1.elapsed() < CONVERGE_WITHIN,
            "restarted node did not rejoin:\n{}",
            nodes[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "restarted node held all adverts again after {:?}",
        t1.elapsed()
    );

    drop(nodes);
    let _ = std::fs::remove_dir_all(&root);
}
