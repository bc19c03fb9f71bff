//! `modchain devnet`: a whole network on this machine. A bootstrap peer and N
//! nodes run as child processes of this executable on 127.0.0.1; devnet
//! follows every node's event stream, submits an embedded demo WASM job from
//! node-1 and prints each step (adverts, election, call for bids, bids,
//! award, run, result, receipts on every peer) as it happens. Then it stays up
//! until Ctrl-C, and the children go down with it.

use super::DevnetArgs;
use super::api_client::Endpoint;
use super::format::{clock, credits, is_terminal_state, short};
use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use libp2p::Multiaddr;
use modchain_bootstrap::{BootstrapConfig, BootstrapPeer};
use modchain_protocol::{Keypair, NodeId};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// How long the nodes get to see each other's adverts.
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);
/// How long the demo job gets, end to end.
const DEMO_WITHIN: Duration = Duration::from_secs(60);
/// How long its receipt gets to reach every ledger.
const RECEIPTS_WITHIN: Duration = Duration::from_secs(30);

/// The greeting the demo module prints.
pub const DEMO_GREETING: &str =
    "Hello from Modchain! This WebAssembly module ran on a provider chosen by auction.\n";
/// The file the demo module writes to `/outputs`.
pub const DEMO_OUTPUT_NAME: &str = "greeting.txt";
const DEMO_OUTPUT_TEXT: &str =
    "This file was written by the devnet demo job and fetched back by its client.\n";

/// The demo module in WebAssembly text: prints the greeting on stdout and
/// writes `greeting.txt` into the preopened `/outputs` (fd 3).
pub fn demo_wat() -> String {
    format!(
        r#";; The modchain devnet demo: WASI preview 1, no imports beyond fd_write,
;; path_open and fd_close. Submit it yourself with
;;   modchain --data-dir DIR/node-1 submit wasm demo.wat --wait
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{greeting}")
  (data (i32.const 2048) "{name}")
  (data (i32.const 3072) "{text}")
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (call $write (i32.const 1) (i32.const 1024) (i32.const {greeting_len}))
    ;; path_open(dirfd 3 = /outputs, flags 0, path, len, O_CREAT, rights, rights, 0, &fd)
    (if (i32.eqz (call $path_open (i32.const 3) (i32.const 0) (i32.const 2048) (i32.const {name_len})
                   (i32.const 1) (i64.const 536870911) (i64.const 536870911) (i32.const 0) (i32.const 64)))
      (then
        (call $write (i32.load (i32.const 64)) (i32.const 3072) (i32.const {text_len}))
        (drop (call $fd_close (i32.load (i32.const 64))))))))
"#,
        greeting = wat_escape(DEMO_GREETING),
        greeting_len = DEMO_GREETING.len(),
        name = wat_escape(DEMO_OUTPUT_NAME),
        name_len = DEMO_OUTPUT_NAME.len(),
        text = wat_escape(DEMO_OUTPUT_TEXT),
        text_len = DEMO_OUTPUT_TEXT.len(),
    )
}

fn wat_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' => format!("\\{}", b as char),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\{b:02x}"),
        })
        .collect()
}

/// Puts `model` into the node's `models/` directory: a hard link when the
/// file system allows (no copy of a large file), else a symbolic link.
fn give_model(model: &Path, node_dir: &Path) -> Result<()> {
    let model = model
        .canonicalize()
        .with_context(|| format!("--model {}: no such file", model.display()))?;
    if model
        .extension()
        .is_none_or(|x| !x.eq_ignore_ascii_case("gguf"))
    {
        bail!("--model {}: expected a .gguf file", model.display());
    }
    let dir = node_dir.join("models");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = model.file_name().context("--model names no file")?;
    let dest = dir.join(name);
    let _ = std::fs::remove_file(&dest);
    std::fs::hard_link(&model, &dest)
        .or_else(|_| std::os::unix::fs::symlink(&model, &dest))
        .with_context(|| format!("cannot link {} into {}", model.display(), dir.display()))?;
    Ok(())
}

// ---------------------------------------------------------------- bootstrap peer

/// `modchain bootstrap-peer`: the bootstrap peer of `modchain-bootstrap`,
/// run in this process. Prints its address as the first line on stdout.
pub async fn bootstrap_peer(
    data_dir: &DataDir,
    listen: Vec<Multiaddr>,
    metrics: Option<std::net::SocketAddr>,
) -> Result<()> {
    let root = data_dir.root();
    std::fs::create_dir_all(root).with_context(|| {
        format!(
            "cannot create the data directory {}; choose another with --data-dir",
            root.display()
        )
    })?;
    let key = Keypair::load_or_create(&root.join("node.key"))?;
    let listen = if listen.is_empty() {
        vec!["/ip4/127.0.0.1/tcp/0".parse()?]
    } else {
        listen
    };
    let mut peer = BootstrapPeer::new(
        &key,
        &BootstrapConfig {
            listen,
            max_connections: 1024,
        },
    )?;
    if let Some(at) = metrics {
        modchain_bootstrap::metrics::serve_and_record(at, peer.metrics_registry(), root).await?;
    }
    let addr = peer.announce_address().await?;
    let addr_file = root.join("addr");
    std::fs::write(&addr_file, format!("{addr}\n"))
        .with_context(|| format!("cannot write {}", addr_file.display()))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, "bootstrap peer up");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        let _ = tx.send(());
    });
    peer.run(rx).await;
    Ok(())
}

// ---------------------------------------------------------------- processes

/// A child process of devnet, killed if devnet lets go of it.
#[derive(Debug)]
struct Proc {
    label: String,
    dir: PathBuf,
    child: Child,
}

impl Proc {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// Every child, stopped with SIGTERM (then SIGKILL) when devnet ends, and
/// killed outright if devnet unwinds on an error.
#[derive(Debug, Default)]
struct Children(Vec<Proc>);

impl Children {
    async fn stop(&mut self) {
        for p in &self.0 {
            if let Some(pid) = p.child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for p in &mut self.0 {
            if tokio::time::timeout_at(deadline, p.child.wait())
                .await
                .is_err()
            {
                let _ = p.child.start_kill();
                let _ = p.child.wait().await;
            }
        }
        self.0.clear();
    }

    /// The first child that has exited, if any.
    fn exited(&mut self) -> Option<(String, String)> {
        for p in &mut self.0 {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Some((format!("{} exited with {status}", p.label), p.log_tail()));
            }
        }
        None
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.child.start_kill();
        }
    }
}

/// One devnet node, as devnet knows it.
#[derive(Clone, Debug)]
struct NodeInfo {
    label: String,
    data_dir: DataDir,
    peer_id: String,
}

/// Names peers by their devnet label in the printed events.
#[derive(Debug, Default)]
struct Labels(BTreeMap<String, String>);

impl Labels {
    fn add(&mut self, peer_id: &str, label: &str) {
        self.0.insert(peer_id.to_string(), label.to_string());
        if let Ok(p) = peer_id.parse::<libp2p::PeerId>()
            && let Ok(n) = NodeId::from_peer_id(&p)
        {
            self.0.insert(n.to_hex(), label.to_string());
        }
    }

    fn name(&self, s: &str) -> String {
        if let Some(l) = self.0.get(s) {
            return l.clone();
        }
        if s.len() > 20 && s.chars().all(|c| c.is_ascii_alphanumeric()) {
            return format!("{}…", &s[..10]);
        }
        // Free text: name the short node ids it mentions, keep it on one line.
        let mut text = s.trim_end().replace('\n', "⏎");
        for (id, label) in &self.0 {
            if id.len() == 64 && text.contains(&id[..8]) {
                text = text.replace(&id[..8], label);
            }
        }
        text
    }

    fn value(&self, v: &Value) -> String {
        match v {
            Value::String(s) => self.name(s),
            Value::Array(a) => {
                let items: Vec<String> = a.iter().take(8).map(|x| self.value(x)).collect();
                let more = if a.len() > 8 {
                    format!(", +{}", a.len() - 8)
                } else {
                    String::new()
                };
                format!("[{}{more}]", items.join(", "))
            }
            Value::Object(m) => {
                let items: Vec<String> = m
                    .iter()
                    .filter(|(_, x)| !x.is_null())
                    .take(8)
                    .map(|(k, x)| format!("{k}={}", self.value(x)))
                    .collect();
                format!("{{{}}}", items.join(" "))
            }
            other => other.to_string(),
        }
    }
}

fn spawn_node_process(exe: &Path, label: &str, dir: &Path, bootstrap: &str) -> Result<Proc> {
    let _ = std::fs::remove_file(dir.join("api.url"));
    let log = std::fs::File::create(dir.join("node.log"))
        .with_context(|| format!("cannot create {}", dir.join("node.log").display()))?;
    let mut cmd = Command::new(exe);
    // Each devnet node reads its own config.toml, never a --config file the
    // caller's environment names (the packaged service sets MODCHAIN_CONFIG).
    cmd.env_remove("MODCHAIN_CONFIG");
    cmd.arg("--data-dir")
        .arg(dir)
        .args([
            "start",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--bootstrap",
            bootstrap,
            "--orchestrator",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    Ok(Proc {
        label: label.to_string(),
        dir: dir.to_path_buf(),
        child,
    })
}

fn fresh_dir() -> PathBuf {
    let ms = modchain_protocol::Timestamp::now_wall().as_millis();
    std::env::temp_dir().join(format!("modchain-devnet-{}-{ms}", std::process::id()))
}

fn step(text: impl AsRef<str>) {
    println!(
        "{}  devnet  {}",
        clock(modchain_protocol::Timestamp::now_wall().as_millis()),
        text.as_ref()
    );
}

// ---------------------------------------------------------------- events

/// Prints one node's event stream, labelled, until the stream ends.
async fn follow_events(node: NodeInfo, labels: Arc<std::sync::Mutex<Labels>>) {
    let ep = match Endpoint::locate(&node.data_dir, false) {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("{}: cannot follow events: {e}", node.label);
            return;
        }
    };
    let mut stream = match ep.stream("/api/v1/events").await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: cannot follow events: {e}", node.label);
            return;
        }
    };
    let mut adverts_seen: HashSet<String> = HashSet::new();
    while let Ok(Some(line)) = stream.next_line().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Ok(ev) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let name = ev["event"].as_str().unwrap_or("event").to_string();
        let text = {
            let labels = labels.lock().unwrap_or_else(|e| e.into_inner());
            let fields: Vec<String> = ev
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| !matches!(k.as_str(), "at_ms" | "node" | "event") && !v.is_null())
                .map(|(k, v)| {
                    if k.contains("price") {
                        format!("{k}={}", credits(v))
                    } else {
                        format!("{k}={}", labels.value(v))
                    }
                })
                .collect();
            fields.join(" ")
        };
        // Adverts repeat periodically: show each sender's first one only.
        if name.contains("advert") && !adverts_seen.insert(text.clone()) {
            continue;
        }
        let at = ev["at_ms"]
            .as_u64()
            .unwrap_or_else(|| modchain_protocol::Timestamp::now_wall().as_millis());
        println!("{}  {:<7} {name:<22} {text}", clock(at), node.label);
    }
}

// ---------------------------------------------------------------- the demo

async fn wait_api(proc_: &mut Proc, within: Duration) -> Result<Value> {
    let data_dir = DataDir::resolve(Some(proc_.dir.clone()));
    let deadline = Instant::now() + within;
    loop {
        if let Ok(ep) = Endpoint::locate(&data_dir, false)
            && let Ok(stats) = ep.call("GET", "/api/v1/stats", None).await
        {
            return Ok(stats);
        }
        if let Ok(Some(status)) = proc_.child.try_wait() {
            bail!(
                "{} exited with {status} before its API came up; last log lines:\n{}",
                proc_.label,
                proc_.log_tail()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not serve its API within {within:?}; last log lines:\n{}",
                proc_.label,
                proc_.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Peer ids whose adverts `node` holds.
async fn advert_holders(node: &NodeInfo) -> HashSet<String> {
    let Ok(ep) = Endpoint::locate(&node.data_dir, false) else {
        return HashSet::new();
    };
    let Ok(v) = ep.call("GET", "/api/v1/nodes", None).await else {
        return HashSet::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|n| !n["advert"].is_null())
        .filter_map(|n| n["peer_id"].as_str().map(String::from))
        .collect()
}

pub async fn run(args: DevnetArgs) -> Result<()> {
    if args.peers == 0 {
        bail!("--peers must be at least 1");
    }
    let dir = args.dir.clone().unwrap_or_else(fresh_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the devnet directory {}", dir.display()))?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let exe = std::env::current_exe().context("cannot find this executable to start the nodes")?;
    let mut children = Children::default();
    let result = tokio::select! {
        r = demo(&args, &dir, &exe, &mut children) => r,
        _ = crate::shutdown_signal() => {
            step("interrupted; stopping the network");
            Ok(())
        }
    };
    children.stop().await;
    match &result {
        Ok(()) => step(format!(
            "stopped; data directories kept in {}",
            dir.display()
        )),
        Err(_) => eprintln!("devnet: logs are in {}", dir.display()),
    }
    result
}

async fn demo(args: &DevnetArgs, dir: &Path, exe: &Path, children: &mut Children) -> Result<()> {
    let t0 = Instant::now();
    step(format!(
        "starting a bootstrap peer and {} nodes in {}",
        args.peers,
        dir.display()
    ));

    // The bootstrap peer prints its address as its first line.
    let bs_dir = dir.join("bootstrap");
    std::fs::create_dir_all(&bs_dir)?;
    let bs_log = std::fs::File::create(bs_dir.join("node.log"))?;
    let mut bs = Command::new(exe)
        .arg("--data-dir")
        .arg(&bs_dir)
        .args(["bootstrap-peer", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(bs_log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let stdout = bs
        .stdout
        .take()
        .context("no stdout from the bootstrap peer")?;
    children.0.push(Proc {
        label: "bootstrap".into(),
        dir: bs_dir.clone(),
        child: bs,
    });
    let mut first = String::new();
    let mut reader = tokio::io::BufReader::new(stdout);
    tokio::time::timeout(Duration::from_secs(20), reader.read_line(&mut first))
        .await
        .context("the bootstrap peer did not print its address within 20 s")??;
    let bootstrap = first.trim().to_string();
    if !bootstrap.contains("/p2p/") {
        bail!(
            "the bootstrap peer did not start (said {bootstrap:?}); see {}",
            bs_dir.join("node.log").display()
        );
    }
    step(format!("bootstrap peer up at {bootstrap}"));

    // The nodes: init, then start with only the bootstrap address.
    let mut nodes = Vec::new();
    for i in 1..=args.peers {
        let label = format!("node-{i}");
        let ndir = dir.join(&label);
        let out = Command::new(exe)
            .env_remove("MODCHAIN_CONFIG")
            .arg("--data-dir")
            .arg(&ndir)
            .arg("init")
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot run `modchain init`")?;
        if !out.status.success() {
            bail!(
                "`modchain init` for {label} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if let Some(model) = &args.model
            && i == args.peers
        {
            give_model(model, &ndir)?;
            step(format!(
                "{label} serves the model {} with its llm adapter",
                model.display()
            ));
        }
        let p = spawn_node_process(exe, &label, &ndir, &bootstrap)?;
        children.0.push(p);
    }
    let labels = Arc::new(std::sync::Mutex::new(Labels::default()));
    for p in children.0.iter_mut().skip(1) {
        let stats = wait_api(p, Duration::from_secs(30)).await?;
        let peer_id = stats["peer_id"]
            .as_str()
            .context("the node's stats carry no peer_id")?
            .to_string();
        labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&peer_id, &p.label);
        step(format!("{} up: peer {peer_id}", p.label));
        nodes.push(NodeInfo {
            label: p.label.clone(),
            data_dir: DataDir::resolve(Some(p.dir.clone())),
            peer_id,
        });
    }
    if let Ok(Some(bs_key)) = Keypair::load(&bs_dir.join("node.key")).map(Some) {
        labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&bs_key.peer_id().to_string(), "bootstrap");
    }

    // Follow every node's events from here on.
    for n in &nodes {
        tokio::spawn(follow_events(n.clone(), labels.clone()));
    }

    // Wait until every node holds every node's advert.
    let all: HashSet<String> = nodes.iter().map(|n| n.peer_id.clone()).collect();
    let deadline = Instant::now() + CONVERGE_WITHIN;
    let mut done: HashSet<String> = HashSet::new();
    while done.len() < nodes.len() {
        for n in &nodes {
            if !done.contains(&n.label) && advert_holders(n).await.is_superset(&all) {
                done.insert(n.label.clone());
                step(format!(
                    "{} holds all {} adverts ({:.1}s)",
                    n.label,
                    nodes.len(),
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
        if let Some((what, log)) = children.exited() {
            bail!("{what}; last log lines:\n{log}");
        }
        if Instant::now() > deadline {
            bail!(
                "the nodes did not see each other within {CONVERGE_WITHIN:?} ({} of {} converged); logs in {}",
                done.len(),
                nodes.len(),
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The election: wait (a few seconds at most) until every node computes
    // the same elected set, so the demo job meets a settled network.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut views = Vec::new();
        for n in &nodes {
            let view = match Endpoint::locate(&n.data_dir, false) {
                Ok(ep) => ep
                    .call("GET", "/api/v1/stats", None)
                    .await
                    .map(|s| s["elected"].clone())
                    .unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            views.push(view);
        }
        let settled = views
            .iter()
            .all(|v| v.as_array().is_some_and(|a| !a.is_empty()) && *v == views[0]);
        if settled || Instant::now() > deadline {
            let l = labels.lock().unwrap_or_else(|e| e.into_inner());
            step(format!(
                "election: orchestrators for this epoch {} ({})",
                l.value(&views[0]),
                if settled {
                    "the same on every node"
                } else {
                    "not yet the same on every node"
                }
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The demo job, from node-1.
    let wat = demo_wat();
    let wat_path = dir.join("demo.wat");
    std::fs::write(&wat_path, &wat)
        .with_context(|| format!("cannot write {}", wat_path.display()))?;
    let client = &nodes[0];
    let ep = Endpoint::locate(&client.data_dir, true)?;
    let body = json!({
        "adapter": "wasm",
        "method": "run",
        "params": { "wat": wat },
        "timeout_ms": 30_000,
    });
    let submitted = Instant::now();
    let created = ep
        .call("POST", "/api/v1/jobs", Some(&body))
        .await
        .context("submitting the demo job")?;
    let job_id = created["job_id"]
        .as_str()
        .context("the node accepted the demo job but sent no job_id")?
        .to_string();
    step(format!(
        "submitted the demo WASM job {job_id} from {}",
        client.label
    ));
    let path = format!("/api/v1/jobs/{job_id}");
    let deadline = Instant::now() + DEMO_WITHIN;
    let job = loop {
        let job = ep.call("GET", &path, None).await?;
        if job["state"].as_str().is_some_and(is_terminal_state) {
            break job;
        }
        if Instant::now() > deadline {
            bail!("the demo job did not finish within {DEMO_WITHIN:?}: {job}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = submitted.elapsed();
    {
        let l = labels.lock().unwrap_or_else(|e| e.into_inner());
        step(format!(
            "demo job {} on {} in {} ms (exit code {}, price {} credits)",
            job["state"].as_str().unwrap_or("?"),
            l.value(&job["provider"]),
            took.as_millis(),
            l.value(&job["exit_code"]),
            credits(&job["price"])
        ));
    }
    if job["state"].as_str() != Some("completed") {
        bail!("the demo job did not complete: {job}");
    }
    println!("---- stdout of the demo job");
    print!("{}", job["stdout"].as_str().unwrap_or(""));
    println!("----");
    for o in job["outputs"].as_array().into_iter().flatten() {
        let content = o["path"]
            .as_str()
            .and_then(|p| std::fs::read_to_string(p).ok());
        step(format!(
            "output {} ({} bytes){}",
            o["name"].as_str().unwrap_or("?"),
            o["size"],
            o["path"]
                .as_str()
                .map(|p| format!(" at {p}"))
                .unwrap_or_default()
        ));
        if let Some(c) = content {
            for line in c.lines() {
                println!("     | {line}");
            }
        }
    }

    // The receipt, on every peer.
    let deadline = Instant::now() + RECEIPTS_WITHIN;
    let mut holding: HashSet<String> = HashSet::new();
    while holding.len() < nodes.len() {
        for n in &nodes {
            if holding.contains(&n.label) {
                continue;
            }
            let Ok(nep) = Endpoint::locate(&n.data_dir, false) else {
                continue;
            };
            let Ok(list) = nep.call("GET", "/api/v1/receipts", None).await else {
                continue;
            };
            if let Some(r) = list
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["job_id"].as_str() == Some(job_id.as_str()))
            {
                holding.insert(n.label.clone());
                step(format!(
                    "receipt {} ({}) in {}'s ledger, {} ms after submit",
                    r["receipt_id"].as_str().map(short).unwrap_or_default(),
                    r["outcome"].as_str().unwrap_or("?"),
                    n.label,
                    submitted.elapsed().as_millis()
                ));
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the demo job's receipt reached only {} of {} ledgers within {RECEIPTS_WITHIN:?}",
                holding.len(),
                nodes.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    step(format!(
        "the demo job's receipt is in all {} ledgers ({:.1}s since devnet started)",
        nodes.len(),
        t0.elapsed().as_secs_f64()
    ));
    // Let the last events print before going on.
    tokio::time::sleep(Duration::from_millis(300)).await;

    if args.exit_after_demo {
        return Ok(());
    }
    let me = exe.display();
    let n1 = nodes[0].data_dir.root().display();
    println!();
    println!("The network is up. From another terminal:");
    println!(
        "  {me} --data-dir {n1} submit wasm {} --wait",
        wat_path.display()
    );
    println!(
        "  {me} --data-dir {n1} submit docker IMAGE --wait -- CMD ARGS...   (needs docker and the image on the providers)"
    );
    println!("  {me} --data-dir {n1} jobs");
    if let Some(last) = nodes.last() {
        println!(
            "  {me} --data-dir {} receipts",
            last.data_dir.root().display()
        );
    }
    println!("  {me} --data-dir {n1} reputation");
    println!(
        "Logs: {}/<node>/node.log. Press Ctrl-C to stop the network.",
        dir.display()
    );
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some((what, log)) = children.exited() {
            bail!("{what}; last log lines:\n{log}");
        }
    }
}
