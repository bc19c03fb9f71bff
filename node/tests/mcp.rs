//! `modchain mcp` driven by a real MCP client: the official Python SDK (`mcp`
//! on PyPI) launches `modchain --data-dir DIR mcp` over stdio against a
//! two-node network on 127.0.0.1, lists the tools and their input schemas,
//! runs a WebAssembly job through them and reads it back, looks at the
//! providers, models, balance and reputation, cancels a job, and checks that
//! bad calls and a missing node come back as tool errors that say why
//! (`tests/mcp/client.py`).
//!
//! Needs `pip install 'mcp==2.3.*'` in the test Python (`.ci/run` puts it in
//! `~/.cache/modchain-venv`; `MODCHAIN_PYTHON` points at another). Without
//! it the test fails and says so.

mod common;

use common::{TestNet, modchain, node_hex, temp_root};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole client run: a handful of quick jobs and reads.
const CLIENT_WITHIN: Duration = Duration::from_secs(180);

/// The test Python, checked to have the MCP SDK before any node starts.
fn python() -> String {
    let python = common::test_python();
    let probe = Command::new(&python)
        .args([
            "-c",
            "from mcp import ClientSession, StdioServerParameters; from mcp.client.stdio import stdio_client",
        ])
        .output();
    match probe {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "the MCP test needs the official MCP Python SDK in {python}: \
             .ci/run makes ~/.cache/modchain-venv with it, or run \
             `{python} -m pip install 'mcp==2.3.*'`; {python} said: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "the MCP test needs {python} with the `mcp` package: apt-get install -y python3-venv, \
             then run .ci/run's Python step (a venv at ~/.cache/modchain-venv with mcp==2.3.*) ({e})"
        ),
    }
}

/// Runs the client script to its end, or kills it after `within`; its output
/// goes to files so a chatty run cannot block on a full pipe.
fn run_client(python: &str, args: &[&str], dir: &Path, within: Duration) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py");
    let out_path = dir.join("mcp-client.out");
    let err_path = dir.join("mcp-client.err");
    let mut child = Command::new(python)
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("mcp-client.out"))
        .stderr(std::fs::File::create(&err_path).expect("mcp-client.err"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {}: {e}", script.display()));
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the MCP client") {
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

#[test]
fn an_mcp_client_lists_the_tools_and_runs_a_job_through_them() {
    // Checked first: a missing package is a failure that says what to install.
    let python = python();

    let t0 = Instant::now();
    let net = TestNet::start("mcp-test", 2);
    eprintln!("[{:?}] two nodes converged", t0.elapsed());
    let node = &net.nodes[0];
    let peers = net
        .nodes
        .iter()
        .map(|n| format!("{}={}", n.peer_id, node_hex(&n.peer_id)))
        .collect::<Vec<_>>()
        .join(",");
    // A data directory no node runs in, for the "start a node" error.
    let empty = temp_root("mcp-test-no-node");

    let binary = modchain();
    let (ok, output) = run_client(
        &python,
        &[
            &binary.display().to_string(),
            &node.dir.display().to_string(),
            &peers,
            &empty.display().to_string(),
        ],
        &net.root,
        CLIENT_WITHIN,
    );
    let _ = std::fs::remove_dir_all(&empty);
    assert!(
        ok,
        "the MCP client failed:\n{output}\n\nnode logs:\n{}",
        net.logs()
    );
    eprintln!("{output}");
    eprintln!("[{:?}] MCP client done", t0.elapsed());
}
