//! `/metrics` on a node and on the bootstrap peer, checked by Prometheus'
//! own `promtool check metrics` after a real job went through a loopback
//! network of separate processes.

mod common;

use common::{TestNet, http_with, wait_until};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Prints `metered` and exits 0.
const WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "metered\0a")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

/// `promtool check metrics` on `text`: its complaints, or a panic saying
/// how to get promtool.
fn promtool_check(what: &str, text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|e| {
        panic!(
            "cannot run promtool ({e}): install it with `apt-get install prometheus` (.ci/run does)"
        )
    });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics failed on {what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn scrape(url: &str, accept: Option<&str>) -> (String, String) {
    let headers: Vec<(&str, &str)> = accept.map(|a| vec![("Accept", a)]).unwrap_or_default();
    let (status, head, body) =
        http_with(url, "GET", "/metrics", &headers, None).expect("/metrics answered");
    assert_eq!(status, 200, "{head}\n{body}");
    (head, body)
}

#[test]
fn node_and_bootstrap_metrics_pass_promtool_and_count_a_job() {
    let mut net = TestNet::start("metrics-test", 3);
    let file = net.root.join("metered.wat");
    std::fs::write(&file, WAT).expect("write wat");
    let out = net.nodes[0].cli(&[
        "submit",
        "wasm",
        file.to_str().expect("utf-8 path"),
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let urls: Vec<String> = net
        .nodes
        .iter()
        .map(|n| n.url().expect("api.url"))
        .collect();

    // The classic text format by default: what promtool reads.
    let (head, client) = scrape(&urls[0], None);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    promtool_check("node-1's /metrics", &client);
    for needle in [
        // rust-libp2p's own, into the same registry.
        "libp2p_swarm_connections_established_total",
        "libp2p_identify_",
        "libp2p_kad_",
        "libp2p_ping_rtt_seconds",
        "libp2p_bandwidth_bytes_total",
        "gossipsub_topic_msg_published_total",
        // The application's.
        "modchain_build_info{",
        "modchain_adverts_known 3",
        "modchain_messages_received_total{kind=\"advert\"}",
        "modchain_client_jobs{state=\"completed\",adapter=\"wasm\"} 1",
        "modchain_gossip_bytes_total{direction=\"out\"}",
        "modchain_ledger_size_bytes",
        "modchain_balance_credits",
        "modchain_trust_ratio",
    ] {
        assert!(
            client.contains(needle),
            "no {needle} in node-1's metrics:\n{client}"
        );
    }
    assert!(
        sample(&client, "modchain_peers_connected").is_some_and(|n| n >= 2.0),
        "peers connected: {client}"
    );

    // The receipt lands everywhere; somebody ran the auction and somebody
    // ran the job, and each counts it.
    let all = wait_until(
        Duration::from_secs(10),
        "receipt counted on every node",
        || {
            let bodies: Vec<String> = urls.iter().map(|u| scrape(u, None).1).collect();
            bodies
                .iter()
                .all(|b| sample(b, "modchain_ledger_receipts").is_some_and(|n| n >= 1.0))
                .then_some(bodies)
        },
    );
    let total = |prefix: &str| -> f64 { all.iter().filter_map(|b| sample(b, prefix)).sum() };
    assert!(total("modchain_auction_duration_seconds_count") >= 1.0);
    assert!(total("modchain_auction_bids_count") >= 1.0);
    assert!(total("modchain_job_duration_seconds_count{adapter=\"wasm\"}") >= 1.0);
    assert!(total("modchain_executions_total{result=\"success\"}") >= 1.0);
    assert!(total("modchain_receipts_total{result=\"stored\"}") >= 3.0);

    // OpenMetrics when asked, as Prometheus asks.
    let (head, om) = scrape(
        &urls[0],
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# UNIT modchain_auction_duration_seconds seconds"));

    // The bootstrap peer's own endpoint.
    let bs_url = std::fs::read_to_string(net.root.join("bootstrap").join("metrics.url"))
        .expect("bootstrap metrics.url");
    let bs_url = bs_url.trim().trim_end_matches("/metrics");
    let (_, bs) = scrape(bs_url, None);
    promtool_check("the bootstrap peer's /metrics", &bs);
    for needle in [
        "libp2p_swarm_connections_established_total",
        "libp2p_kad_",
        "modchain_bootstrap_relayed_messages_total",
        "modchain_bootstrap_peers_connected 3",
    ] {
        assert!(
            bs.contains(needle),
            "no {needle} in the bootstrap's metrics:\n{bs}"
        );
    }

    the_grafana_dashboard_queries_what_nodes_export(&net, &all.concat());
    json_logs_carry_the_node_and_job_spans(&mut net, &file);
}

/// docs/grafana/modchain-dashboard.json: every query parses as PromQL
/// (`promtool check rules` on them as recording rules) and every metric it
/// names is one a node exports.
fn the_grafana_dashboard_queries_what_nodes_export(net: &TestNet, exported: &str) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana/modchain-dashboard.json"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard file"))
            .expect("dashboard is JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(|e| e.replace("$instance", ".*")))
        .collect();
    assert!(exprs.len() >= 15, "{exprs:?}");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: '{e}'\n"
        ));
    }
    let file = net.root.join("dashboard-rules.yml");
    std::fs::write(&file, rules).expect("write rules");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "a dashboard query is not valid PromQL:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Sample names, and declared families (a family with no series yet,
    // like rejections on a healthy network, is still exported).
    let names: std::collections::BTreeSet<&str> = exported
        .lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(t) => t.split(' ').next(),
            None if l.starts_with('#') => None,
            None => l.split(['{', ' ']).next(),
        })
        .collect();
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if (word.starts_with("modchain_")
                || word.starts_with("libp2p_")
                || word.starts_with("gossipsub_"))
                && !word.contains(':')
            {
                assert!(
                    names.contains(word),
                    "the dashboard queries {word}, which no node exports"
                );
            }
        }
    }
}

/// `--log-format json`: every line is one JSON object, and what a node logs
/// about a job names the node's peer id and the job's id in its spans.
fn json_logs_carry_the_node_and_job_spans(net: &mut TestNet, wat: &std::path::Path) {
    let i = net.add_node_with_args(false, &["--log-format", "json"], |_| {});
    net.converge(Duration::from_secs(30));
    let out = net.nodes[i].cli(&["submit", "wasm", wat.to_str().expect("path"), "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer_id = net.nodes[i].peer_id.clone();
    let log = net.nodes[i].log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    assert!(lines.len() > 3, "{log}");
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
    let in_span = |l: &serde_json::Value, name: &str, field: &str| -> Option<String> {
        l["spans"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s[field].as_str().map(String::from))
    };
    assert!(
        lines
            .iter()
            .any(|l| in_span(l, "node", "peer_id").as_deref() == Some(peer_id.as_str())),
        "no line in the node span with its peer id:\n{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| in_span(l, "job", "job_id").is_some_and(|j| j.len() == 64)),
        "no line in a job span:\n{log}"
    );
}
