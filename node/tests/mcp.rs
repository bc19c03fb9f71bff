//! `modchain mcp` driven by a real MCP client: the official Python SDK (`mcp`
//! on PyPI) launches `modchain --data-dir DIR mcp` over stdio against a
//! two-node network on 127.0.0.1 (both run docker jobs; the second serves the
//! test model, SmolLM2-135M-Instruct, fetched by scripts/fetch-test-model.sh),
//! lists the tools and their input schemas, runs a WebAssembly job, a docker
//! job in the locally built busybox image and an LLM prompt through them to
//! their end and reads them back, looks at the providers, models, balance and
//! reputation, cancels a job, and checks that bad calls and a missing node
//! come back as tool errors that say why (`tests/mcp/client.py`).
//!
//! Needs `pip install 'mcp==2.3.*'` in the test Python (`.ci/run` puts it in
//! `~/.cache/modchain-venv`; `MODCHAIN_PYTHON` points at another). Without
//! it the test fails and says so.

mod common;

use common::{TestNet, modchain, node_hex, run_python_script, serve_model, temp_root, test_image};
use modchain_adapters::testing::{LLM_TEST_MODEL, llm_test_model};

use std::process::Command;
use std::time::{Duration, Instant};

/// The whole client run: a handful of quick jobs (one a short LLM answer on
/// the CPU) and reads.
const CLIENT_WITHIN: Duration = Duration::from_secs(300);

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

#[test]
fn an_mcp_client_lists_the_tools_and_runs_wasm_docker_and_llm_jobs_through_them() {
    // Checked first: a missing package is a failure that says what to install.
    let python = python();
    let model = llm_test_model();
    let image = test_image();

    let t0 = Instant::now();
    // node-1 runs the MCP server; node-2 also serves the model, so the LLM
    // job can only run there.
    let net = TestNet::start_with("mcp-test", 2, |i, dir| {
        if i == 2 {
            serve_model(&model, dir);
        }
    });
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
    let (ok, output) = run_python_script(
        &python,
        "tests/mcp/client.py",
        &[
            &binary.display().to_string(),
            &node.dir.display().to_string(),
            &peers,
            &empty.display().to_string(),
            LLM_TEST_MODEL,
            &node_hex(&net.nodes[1].peer_id),
            image,
        ],
        &net.root,
        "mcp-client",
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
