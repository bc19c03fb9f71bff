//! Shared by the jobs tests and the jobs benchmark: a real network of
//! `modchain` processes on 127.0.0.1 (a bootstrap peer run by the hidden
//! `modchain bootstrap-peer`, and nodes started with `modchain start`), the
//! locally built busybox image, and small HTTP and CLI helpers.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The data directory of each node API this test has seen (by `host:port`),
/// so that a request to it carries the node's token (every route of the
/// API but the dashboard's page needs it), read afresh each time since a
/// restarted node has a new one.
static NODE_DIRS: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

fn hostport(url: &str) -> Option<&str> {
    url.trim().strip_prefix("http://")?.split('/').next()
}

fn remember_node(url: &str, dir: &Path) {
    if let Some(hp) = hostport(url) {
        let mut dirs = NODE_DIRS.lock().unwrap_or_else(|e| e.into_inner());
        dirs.get_or_insert_with(HashMap::new)
            .insert(hp.to_string(), dir.to_path_buf());
    }
}

/// The token of the node serving `url`, when it is one of this test's.
pub fn token_for(url: &str) -> Option<String> {
    let hp = hostport(url)?;
    let dir = NODE_DIRS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()?
        .get(hp)?
        .clone();
    std::fs::read_to_string(dir.join("api.token"))
        .ok()
        .map(|t| t.trim().to_string())
}

/// A child process that is killed when the test lets go of it.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn modchain() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_modchain"))
}

pub fn temp_root(what: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("modchain-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    root
}

/// The locally built busybox image the docker jobs run (see
/// `modchain_adapters::testing`).
pub fn test_image() -> &'static str {
    modchain_adapters::testing::busybox_image()
}

/// One HTTP/1.1 exchange with `Connection: close`, with `token` as the
/// bearer (or none): status and body.
pub fn http(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    // Exactly the token given: `None` sends none.
    http_bare(url, method, path, &headers, body).map(|(status, _, body)| (status, body))
}

/// One HTTP/1.1 exchange with extra request headers: status, response head
/// (lower-cased) and body. A request to a node of this test without an
/// `Authorization` header of its own carries the node's token.
pub fn http_with(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<(u16, String, String)> {
    let has_auth = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
    let auth = (!has_auth)
        .then(|| token_for(url))
        .flatten()
        .map(|t| format!("Bearer {t}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(a) = auth.as_deref() {
        all.push(("Authorization", a));
    }
    http_bare(url, method, path, &all, body)
}

/// [`http_with`] with exactly the headers given (and `Host` for `url`): no
/// token added.
pub fn http_bare(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<(u16, String, String)> {
    let hostport = hostport(url)?;
    let has_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
    let mut s = TcpStream::connect(hostport).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let _ = s.set_nodelay(true);
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !has_host {
        req.push_str(&format!("Host: {hostport}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, head, body))
}

/// POSTs `body` to `path` with the bearer token and hands `each` every
/// line of the answer as it arrives (chunked transfer's size lines and
/// blank lines included), until the server closes the answer: for
/// streamed answers, read while they are produced.
pub fn post_streaming(url: &str, token: &str, path: &str, body: &str, mut each: impl FnMut(&str)) {
    let hostport = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(hostport).expect("connect");
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        each(line.trim());
    }
}

/// Runs a client-library script (`script`, relative to the node crate)
/// with the test Python; it prints one JSON object with what it saw, which
/// is returned. `module` is the Python package it needs, `pip` how
/// `.ci/run` installs it; `context` is shown if the script fails.
pub fn run_client_script(
    script: &str,
    args: &[&str],
    module: &str,
    pip: &str,
    context: impl FnOnce() -> String,
) -> Value {
    let python = test_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains(&format!("No module named '{module}'")),
        "{} needs the `{module}` Python package in {python}: .ci/run installs it in \
         ~/.cache/modchain-venv (pip install '{pip}')",
        script.display()
    );
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{stderr}\n{}",
        script.display(),
        context()
    );
    serde_json::from_str(stdout.trim()).expect("the script's JSON")
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub struct TestNode {
    pub label: String,
    pub dir: PathBuf,
    pub proc: Option<Proc>,
    pub peer_id: String,
}

impl TestNode {
    pub fn url(&self) -> Option<String> {
        let url = std::fs::read_to_string(self.dir.join("api.url"))
            .ok()
            .map(|s| s.trim().to_string())?;
        remember_node(&url, &self.dir);
        Some(url)
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("api.token"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// GET with the token, parsed, 200 only.
    pub fn get(&self, path: &str) -> Option<Value> {
        let (status, body) = http(&self.url()?, "GET", path, Some(&self.token()), None)?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// POST with the token: status and body.
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        let url = self.url().expect("api.url");
        http(&url, "POST", path, Some(&self.token()), Some(body)).expect("POST answered")
    }

    /// Runs `modchain --data-dir DIR args...` to its end.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(modchain())
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run modchain")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn job(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/jobs/{id}"))
            .unwrap_or(Value::Null)
    }

    pub fn receipts(&self) -> Vec<Value> {
        self.get("/api/v1/receipts")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// How many receipts in this node's ledger say a job was executed.
    pub fn executed_receipts(&self) -> usize {
        self.receipts()
            .iter()
            .filter(|r| r["outcome"] == "executed")
            .count()
    }

    /// Peer ids of the adverts this node holds.
    pub fn advert_holders(&self) -> HashSet<String> {
        self.get("/api/v1/nodes")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|n| !n["advert"].is_null())
            .filter_map(|n| n["peer_id"].as_str().map(String::from))
            .collect()
    }

    /// This node's own advert, as it publishes it.
    pub fn own_advert(&self) -> Value {
        self.get("/api/v1/nodes")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .find(|n| n["self"].as_bool() == Some(true))
            .map(|n| n["advert"].clone())
            .unwrap_or(Value::Null)
    }

    /// Waits (up to 30 s) until the node serves its API, and learns its peer id.
    pub fn await_api(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.get("/api/v1/stats") {
                self.peer_id = s["peer_id"].as_str().expect("peer_id").to_string();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never served its API; log:\n{}",
                self.label,
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no chance to say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &p.child.id().to_string()])
                .status();
            let _ = p.child.wait();
        }
    }
}

/// A bootstrap peer and `n` nodes (all orchestrator candidates) on loopback.
pub struct TestNet {
    pub root: PathBuf,
    pub bootstrap: Proc,
    pub bootstrap_addr: String,
    pub nodes: Vec<TestNode>,
    /// The one address every peer of the network listens on (port 0).
    pub listen: String,
}

/// What the test networks listen on unless a test says otherwise.
pub const TCP_LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

impl TestNet {
    pub fn start(what: &str, n: usize) -> TestNet {
        Self::start_with(what, n, |_, _| {})
    }

    /// Like `start`, with `configure(i, dir)` called for node `i` (from 1)
    /// after `init` wrote its data directory and before it starts, e.g. to
    /// write its `config.toml`.
    pub fn start_with(what: &str, n: usize, configure: impl Fn(usize, &Path)) -> TestNet {
        Self::start_on(what, n, TCP_LOOPBACK, configure)
    }

    /// Like `start_with`, with the bootstrap peer and every node listening
    /// only on `listen` (a multiaddr with port 0).
    pub fn start_on(
        what: &str,
        n: usize,
        listen: &str,
        configure: impl Fn(usize, &Path),
    ) -> TestNet {
        let root = temp_root(what);
        let (bootstrap, bootstrap_addr) = spawn_bootstrap_on(&root.join("bootstrap"), listen);
        let mut nodes = Vec::new();
        for i in 1..=n {
            let label = format!("node-{i}");
            let dir = root.join(&label);
            let out = Command::new(modchain())
                .arg("--data-dir")
                .arg(&dir)
                .arg("init")
                .output()
                .expect("init");
            assert!(
                out.status.success(),
                "init failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            configure(i, &dir);
            let mut node = TestNode {
                label,
                dir,
                proc: None,
                peer_id: String::new(),
            };
            node.proc = Some(spawn_node_on(&node.dir, &bootstrap_addr, true, &[], listen));
            nodes.push(node);
        }
        for node in &mut nodes {
            node.await_api();
        }
        let net = TestNet {
            root,
            bootstrap,
            bootstrap_addr,
            nodes,
            listen: listen.to_string(),
        };
        net.converge(Duration::from_secs(45));
        net
    }

    /// Starts one more node (node `n+1`), configured by `configure` before
    /// it starts, standing as an orchestrator candidate or not, and waits
    /// until it serves its API. Returns its index.
    pub fn add_node(&mut self, orchestrator: bool, configure: impl Fn(&Path)) -> usize {
        self.add_node_with_args(orchestrator, &[], configure)
    }

    /// `add_node`, with extra arguments for `modchain` (before `start`).
    pub fn add_node_with_args(
        &mut self,
        orchestrator: bool,
        args: &[&str],
        configure: impl Fn(&Path),
    ) -> usize {
        let label = format!("node-{}", self.nodes.len() + 1);
        let dir = self.root.join(&label);
        let out = Command::new(modchain())
            .arg("--data-dir")
            .arg(&dir)
            .arg("init")
            .output()
            .expect("init");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        configure(&dir);
        let mut node = TestNode {
            label,
            proc: Some(spawn_node_on(
                &dir,
                &self.bootstrap_addr,
                orchestrator,
                args,
                &self.listen,
            )),
            dir,
            peer_id: String::new(),
        };
        node.await_api();
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Waits until every live node holds every live node's advert.
    pub fn converge(&self, within: Duration) {
        let t0 = Instant::now();
        let all: HashSet<String> = self
            .nodes
            .iter()
            .filter(|n| n.proc.is_some())
            .map(|n| n.peer_id.clone())
            .collect();
        loop {
            let lagging: Vec<&TestNode> = self
                .nodes
                .iter()
                .filter(|n| n.proc.is_some() && !n.advert_holders().is_superset(&all))
                .collect();
            if lagging.is_empty() {
                return;
            }
            if t0.elapsed() > within {
                panic!(
                    "not converged within {within:?}: {}",
                    lagging
                        .iter()
                        .map(|n| format!("{}:\n{}", n.label, n.log_tail(30)))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The node named by peer id or by node id (hex).
    pub fn by_peer(&self, peer: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.peer_id == peer || node_hex(&n.peer_id) == peer)
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("==== {}\n{}", n.label, n.log_tail(40)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.proc.take();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Starts a bootstrap peer (`modchain bootstrap-peer`) with its data and
/// log in `dir`; returns it and the address it prints.
pub fn spawn_bootstrap(dir: &Path) -> (Proc, String) {
    spawn_bootstrap_on(dir, TCP_LOOPBACK)
}

/// `spawn_bootstrap`, listening only on `listen`.
pub fn spawn_bootstrap_on(dir: &Path, listen: &str) -> (Proc, String) {
    spawn_bootstrap_in(&[], dir, listen)
}

/// `spawn_bootstrap_on`, with `modchain` run by the command `wrapper`
/// (e.g. `ip netns exec NS`, for a peer inside a network namespace).
pub fn spawn_bootstrap_in(wrapper: &[&str], dir: &Path, listen: &str) -> (Proc, String) {
    std::fs::create_dir_all(dir).expect("bootstrap dir");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(modchain());
            c
        }
        None => Command::new(modchain()),
    };
    let mut child = command
        .arg("--data-dir")
        .arg(dir)
        .args([
            "bootstrap-peer",
            "--listen",
            listen,
            "--metrics",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("node.log")).expect("log"))
        .spawn()
        .expect("spawn modchain bootstrap-peer");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("bootstrap address line");
    let addr = first.trim().to_string();
    assert!(
        addr.contains("/p2p/12D3KooW"),
        "bootstrap peer's first line: {addr:?}"
    );
    (
        Proc {
            name: "bootstrap".into(),
            child,
        },
        addr,
    )
}

pub fn spawn_node(dir: &Path, bootstrap: &str) -> Proc {
    spawn_node_as(dir, bootstrap, true)
}

/// Starts a node, as an orchestrator candidate or not.
pub fn spawn_node_as(dir: &Path, bootstrap: &str, orchestrator: bool) -> Proc {
    spawn_node_with(dir, bootstrap, orchestrator, &[])
}

/// Starts a node with extra global arguments (e.g. `--log-format json`).
pub fn spawn_node_with(dir: &Path, bootstrap: &str, orchestrator: bool, args: &[&str]) -> Proc {
    spawn_node_on(dir, bootstrap, orchestrator, args, TCP_LOOPBACK)
}

/// `spawn_node_with`, listening only on `listen`.
/// The images the test nodes' docker adapter may run: the locally built
/// test image's repository (an empty allowlist allows none).
pub const ALLOWED_TEST_IMAGES: &str = r#"allowed_images = ["modchain-test/*"]"#;

/// Lets the node run the test image, in the `config.toml` `init` wrote,
/// unless the test configured an allowlist of its own.
pub fn allow_test_images(dir: &Path) {
    let path = dir.join("config.toml");
    let Ok(config) = std::fs::read_to_string(&path) else {
        return;
    };
    let changed = config.replacen("allowed_images = []", ALLOWED_TEST_IMAGES, 1);
    if changed != config {
        std::fs::write(&path, changed).expect("write config.toml");
    }
}

pub fn spawn_node_on(
    dir: &Path,
    bootstrap: &str,
    orchestrator: bool,
    args: &[&str],
    listen: &str,
) -> Proc {
    allow_test_images(dir);
    let _ = std::fs::remove_file(dir.join("api.url"));
    let log = std::fs::File::create(dir.join("node.log")).expect("log file");
    let child = Command::new(modchain())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
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
        .env(
            "RUST_LOG",
            std::env::var("MODCHAIN_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn modchain start");
    Proc {
        name: dir.display().to_string(),
        child,
    }
}

/// Turns the node's provider role off in its `config.toml`: a node that only
/// buys, so that every job it submits runs on another peer.
pub fn not_a_provider(dir: &Path) {
    let path = dir.join("config.toml");
    let config = std::fs::read_to_string(&path).expect("config.toml");
    let changed = config.replace("\nprovider = true\n", "\nprovider = false\n");
    assert_ne!(changed, config, "config.toml has no `provider = true` line");
    std::fs::write(&path, changed).expect("write config.toml");
}

/// Gives the node in `node_dir` the model file `model` to serve (linked into
/// its `models` directory, which the llm adapter scans).
pub fn serve_model(model: &Path, node_dir: &Path) {
    let dir = node_dir.join("models");
    std::fs::create_dir_all(&dir).expect("models dir");
    let dest = dir.join(model.file_name().expect("file name"));
    std::fs::hard_link(model, &dest)
        .or_else(|_| std::os::unix::fs::symlink(model, &dest))
        .expect("link the model");
}

/// Polls `f` every 50 ms until it gives `Some`, or panics with `what` after `within`.
pub fn wait_until<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < within, "timed out after {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Containers labelled as this job's on this machine.
pub fn containers_of_job(job_id: &str) -> usize {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=modchain.job={job_id}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The node id (ed25519 key, hex) inside an ed25519 peer id.
pub fn node_hex(peer_id: &str) -> String {
    peer_id
        .parse::<libp2p::PeerId>()
        .ok()
        .and_then(|p| modchain_protocol::NodeId::from_peer_id(&p).ok())
        .map(|n| n.to_hex())
        .unwrap_or_default()
}

/// The Python the browser and client-library tests run: `MODCHAIN_PYTHON`,
/// else the project's virtual environment (`.ci/run` makes it at
/// `~/.cache/modchain-venv` with the pinned packages), else `python3`.
pub fn test_python() -> String {
    if let Ok(p) = std::env::var("MODCHAIN_PYTHON") {
        return p;
    }
    let venv =
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/modchain-venv/bin/python"));
    match venv {
        Some(v) if v.is_file() => v.display().to_string(),
        _ => "python3".into(),
    }
}

/// Runs `script` (relative to the node crate) with `python` and `args` to
/// its end, or kills it after `within`; its output goes to files named
/// `<label>.out` / `<label>.err` in `dir`, so a chatty run cannot block on a
/// full pipe. Returns whether it succeeded, and all it printed.
pub fn run_python_script(
    python: &str,
    script: &str,
    args: &[&str],
    dir: &Path,
    label: &str,
    within: Duration,
) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out_path = dir.join(format!("{label}.out"));
    let err_path = dir.join(format!("{label}.err"));
    let mut child = Command::new(python)
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("script stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("script stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {}: {e}", script.display()));
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if t0.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!(
        "{}{}{}",
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
        if status.is_none() {
            format!("\n(killed after {within:?})")
        } else {
            String::new()
        }
    );
    (status.is_some_and(|s| s.success()), text)
}

// ---- Packaging: the .deb and the container image (tests/package.rs,
// tests/container.rs). They drive docker, docker-compose and the scripts in
// scripts/ as an operator would; every container, network and image they
// make for a run is removed by a `Cleanup` guard, on success and on panic.

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ has a parent")
        .to_path_buf()
}

/// The workspace version (the .deb's and the image's).
pub fn workspace_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Runs `program args` with a time limit (coreutils `timeout`, so a hung
/// docker call fails the test instead of holding CI), from the repository
/// root, with `env` added.
pub fn run_limited(secs: u64, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg(secs.to_string())
        .arg(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// `run_limited`, which must succeed; returns its trimmed stdout.
pub fn run_ok(secs: u64, program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run_limited(secs, program, args, env);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Fails the test at once, with what to do, when the Docker daemon does not
/// answer (CI starts one in .ci/run).
pub fn require_docker() {
    let out = run_limited(
        30,
        "docker",
        &["info", "--format", "{{.ServerVersion}}"],
        &[],
    );
    assert!(
        out.status.success(),
        "these tests need the Docker daemon (start one: `setsid dockerd >/tmp/dockerd.log 2>&1 </dev/null &`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Debian bookworm base image (scripts/base-image.sh: a tarball of
/// debootstrap's root filesystem cached under ~/.cache/modchain-images,
/// imported into the daemon). Cold: a couple of minutes; warm: nothing.
pub fn base_image() -> String {
    run_ok(900, "scripts/base-image.sh", &[], &[])
}

/// Builds the .deb from the debug binaries the test build already made
/// (scripts/build-deb.sh --debug) into `out`, and returns its path. The
/// binaries are found next to this test's `modchain`, so the package holds
/// what the other tests run; `modchain-bootstrap` comes from the same
/// `cargo build -p modchain-node -p modchain-bootstrap`.
pub fn debug_deb(out: &Path) -> PathBuf {
    let profile_dir = modchain()
        .parent()
        .expect("the binary has a directory")
        .to_path_buf();
    let target = profile_dir
        .parent()
        .expect("the profile directory has a parent")
        .to_path_buf();
    let out_s = out.to_string_lossy().to_string();
    let target_s = target.to_string_lossy().to_string();
    let deb = run_ok(
        600,
        "scripts/build-deb.sh",
        &["--debug", &out_s],
        &[("CARGO_TARGET_DIR", &target_s)],
    );
    let deb = PathBuf::from(deb.lines().last().unwrap_or_default());
    assert!(
        deb.is_file(),
        "scripts/build-deb.sh printed no .deb: {}",
        deb.display()
    );
    deb
}

/// Commands run when the test lets go of it, last added first: the
/// teardown of what a test made, whether it passed or panicked.
#[derive(Default)]
pub struct Cleanup {
    steps: Vec<CleanupStep>,
}

/// One command of a `Cleanup`: program, arguments, added environment.
struct CleanupStep(String, Vec<String>, Vec<(String, String)>);

impl Cleanup {
    pub fn on_drop(&mut self, program: &str, args: &[&str], env: &[(&str, &str)]) {
        self.steps.push(CleanupStep(
            program.to_string(),
            args.iter().map(|a| a.to_string()).collect(),
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        while let Some(CleanupStep(program, args, env)) = self.steps.pop() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let out = run_limited(120, &program, &args, &env);
            if !out.status.success() {
                eprintln!(
                    "cleanup: {program} {args:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
}

/// `sh -c script` in a running container, as root.
pub fn docker_sh(container: &str, script: &str) -> Output {
    run_limited(120, "docker", &["exec", container, "sh", "-c", script], &[])
}

/// `docker_sh`, which must succeed; returns its trimmed stdout.
pub fn docker_sh_ok(container: &str, script: &str) -> String {
    let out = docker_sh(container, script);
    assert!(
        out.status.success(),
        "in {container}: `{script}` failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes what a killed earlier run of the packaging tests left behind
/// (its guard never ran): containers, compose volumes, networks and images
/// named `modchain-test-*` / `modchain-package-*` whose process is gone.
pub fn sweep_stale_test_resources() {
    // The names carry the pid of the test process that made them, right
    // after the prefix (`modchain-test-<pid>_node1_1`, `modchain-test-<pid>:0.1.0`).
    let alive = |name: &str| {
        let rest = name
            .strip_prefix("modchain-test-")
            .or_else(|| name.strip_prefix("modchain-package-"))
            .unwrap_or_default();
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse::<u32>() {
            Ok(pid) => Path::new(&format!("/proc/{pid}")).exists(),
            // Not a name these tests make: leave it alone.
            Err(_) => true,
        }
    };
    let list = |args: &[&str]| -> Vec<String> {
        let out = run_limited(60, "docker", args, &[]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("modchain-test-") || l.starts_with("modchain-package-"))
            .filter(|l| !alive(l))
            .map(str::to_string)
            .collect()
    };
    for c in list(&["ps", "-a", "--format", "{{.Names}}"]) {
        let _ = run_limited(60, "docker", &["rm", "-f", "-v", &c], &[]);
    }
    for v in list(&["volume", "ls", "--format", "{{.Name}}"]) {
        let _ = run_limited(60, "docker", &["volume", "rm", &v], &[]);
    }
    for n in list(&["network", "ls", "--format", "{{.Name}}"]) {
        let _ = run_limited(60, "docker", &["network", "rm", &n], &[]);
    }
    for i in list(&["images", "--format", "{{.Repository}}:{{.Tag}}"]) {
        let _ = run_limited(60, "docker", &["rmi", "-f", &i], &[]);
    }
}
