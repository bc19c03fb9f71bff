//! The web dashboard in a real browser: a network of `modchain` processes on
//! 127.0.0.1 (a bootstrap peer and three nodes), and node-1's dashboard
//! driven by Playwright for Python in Debian's headless chromium
//! (`tests/browser/dashboard.py`): logged in through the one-time link
//! `modchain dashboard` prints, every peer listed, a job submitted from the
//! page runs to completion with its receipt shown, and a job submitted with
//! the CLI appears live. Any console error fails it.
//!
//! Needs `apt-get install -y chromium` and `pip install 'playwright==1.65.*'`
//! (no `playwright install`: the system chromium is used). Without them the
//! test fails and says so. `MODCHAIN_CHROMIUM` and `MODCHAIN_PYTHON` point
//! at other binaries.

mod common;

use common::{TestNet, modchain, not_a_provider, run_python_script};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The whole browser run: page load, two jobs, screenshots.
const BROWSER_WITHIN: Duration = Duration::from_secs(240);

/// What the page's built-in example job prints (see `EXAMPLE_WAT` in app.js).
const PAGE_GREETING: &str = "Hello from the Modchain dashboard!";

/// The module the CLI submits: prints a line on stdout.
const CLI_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from the CLI\0a")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 19))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

fn chromium() -> PathBuf {
    let path = std::env::var_os("MODCHAIN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "the dashboard test needs Debian's chromium at {}: apt-get install -y chromium \
         (or set MODCHAIN_CHROMIUM to a chromium binary)",
        path.display()
    );
    path
}

fn python() -> String {
    let python = common::test_python();
    let probe = Command::new(&python)
        .args(["-c", "import playwright.sync_api"])
        .output();
    match probe {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "the dashboard test needs Playwright for Python in {python}: \
             .ci/run makes ~/.cache/modchain-venv with it (or pip install 'playwright==1.65.*'; \
             no `playwright install`: it drives /usr/bin/chromium); \
             {python} said: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "the dashboard test needs {python} with Playwright: apt-get install -y python3-venv, \
             then run .ci/run's Python step (a venv at ~/.cache/modchain-venv with playwright) ({e})"
        ),
    }
}

#[test]
fn dashboard_shows_the_network_and_follows_jobs_live_in_chromium() {
    // Checked first: a missing tool is a failure that says what to install.
    let chromium = chromium();
    let python = python();

    let t0 = Instant::now();
    // Node-1, whose page is driven, only buys: every job it submits then runs
    // on another peer, and its receipts earn trust the reputation table shows.
    // A node that won its own jobs would rightly show "no trust yet", since a
    // receipt with oneself is no evidence.
    let net = TestNet::start_with("dashboard-test", 3, |i, dir| {
        if i == 1 {
            not_a_provider(dir);
        }
    });
    eprintln!("[{:?}] three nodes converged", t0.elapsed());
    let node = &net.nodes[0];
    let url = node.url().expect("node-1's api.url");
    let out = node.cli(&["dashboard"]);
    assert!(
        out.status.success(),
        "modchain dashboard failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login_url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        login_url.starts_with(&format!("{url}/?token=")),
        "modchain dashboard printed {login_url:?}"
    );

    let mut peers: Vec<String> = net.nodes.iter().map(|n| n.peer_id.clone()).collect();
    let bootstrap_peer = net
        .bootstrap_addr
        .rsplit("/p2p/")
        .next()
        .expect("bootstrap address has /p2p/")
        .to_string();
    peers.push(bootstrap_peer);

    let wat = net.root.join("cli.wat");
    std::fs::write(&wat, CLI_WAT).expect("write cli.wat");
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let config = net.root.join("browser.json");
    std::fs::write(
        &config,
        json!({
            "url": url,
            "login_url": login_url,
            "peers": peers,
            "self_peer": node.peer_id,
            "modchain": modchain(),
            "data_dir": node.dir,
            "wat": wat,
            "greeting": PAGE_GREETING,
            "chromium": chromium,
            "screenshot": screenshot,
        })
        .to_string(),
    )
    .expect("write browser.json");

    let (ok, output) = run_python_script(
        &python,
        "tests/browser/dashboard.py",
        &[&config.display().to_string()],
        &net.root,
        "browser",
        BROWSER_WITHIN,
    );
    eprintln!("{output}");
    assert!(
        ok,
        "the dashboard test in chromium failed:\n{output}\nnode logs:\n{}",
        net.logs()
    );
    eprintln!(
        "[{:?}] dashboard checked in chromium; screenshot at {}",
        t0.elapsed(),
        screenshot.display()
    );
}
