//! The client side of the CLI: `submit`, `jobs`, `job`, `logs`, `cancel`,
//! `result`, `receipts`, `reputation`, `balance`. Each talks to the running
//! node's local API (see [`super::api_client`]); none touches the network itself.

use super::api_client::Endpoint;
use super::format::*;
use super::parse::*;
use super::{SubmitCommand, SubmitCommon, SubmitDockerArgs, SubmitWasmArgs};
use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often `--wait` asks the node about the job.
const POLL: Duration = Duration::from_millis(25);

// ---------------------------------------------------------------- submit

/// `modchain submit llm`: through the node's Ollama-compatible endpoint, so
/// the answer streams to the terminal token by token as the provider
/// generates it. Returns the exit code (1 when the job failed).
async fn submit_llm(data_dir: &DataDir, a: super::SubmitLlmArgs) -> Result<i32> {
    use std::io::Write as _;
    let mut options = serde_json::Map::new();
    if let Some(t) = a.temperature {
        options.insert("temperature".into(), json!(t));
    }
    if let Some(n) = a.max_tokens {
        options.insert("num_predict".into(), json!(n));
    }
    if let Some(s) = a.seed {
        options.insert("seed".into(), json!(s));
    }
    let mut body = json!({
        "model": a.model,
        "prompt": a.prompt.join(" "),
        "stream": true,
        "options": options,
    });
    if let Some(s) = &a.system {
        body["system"] = json!(s);
    }
    let ep = Endpoint::locate(data_dir)?;
    let mut s = ep.open("POST", "/api/generate", Some(&body)).await?;
    if !(200..300).contains(&s.status) {
        let bytes = s.read_all().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let why = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_else(|| text.trim().to_string());
        bail!("the node refused the request (HTTP {}): {why}", s.status);
    }
    let mut text = String::new();
    let mut out = std::io::stdout().lock();
    while let Some(line) = s.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("the node sent a line that is not JSON: {line}"))?;
        if let Some(e) = v["error"].as_str() {
            if a.json {
                print_json(&json!({ "state": "failed", "error": e, "response": text }))?;
            } else {
                writeln!(out)?;
                eprintln!("error: {e}");
            }
            return Ok(1);
        }
        if v["done"] == true {
            if a.json {
                print_json(&json!({
                    "job_id": v["job_id"],
                    "state": "completed",
                    "model": a.model,
                    "response": text,
                    "done_reason": v["done_reason"],
                    "prompt_tokens": v["prompt_eval_count"],
                    "completion_tokens": v["eval_count"],
                    "price": v["price"],
                    "receipt_id": v["receipt_id"],
                }))?;
            } else {
                writeln!(out)?;
                eprintln!(
                    "job {} · {} prompt + {} generated tokens · {} credits",
                    v["job_id"].as_str().map(short).unwrap_or_default(),
                    v["prompt_eval_count"],
                    v["eval_count"],
                    credits(&v["price"])
                );
            }
            return Ok(0);
        }
        if let Some(piece) = v["response"].as_str() {
            text.push_str(piece);
            if !a.json {
                out.write_all(piece.as_bytes())?;
                out.flush()?;
            }
        }
    }
    bail!("the node ended the answer before it was done")
}

/// `modchain submit …`; returns the process exit code.
pub async fn submit(data_dir: &DataDir, command: SubmitCommand) -> Result<i32> {
    let (body, common) = match command {
        SubmitCommand::Docker(a) => docker_spec(a)?,
        SubmitCommand::Wasm(a) => wasm_spec(a)?,
        SubmitCommand::Llm(a) => return submit_llm(data_dir, a).await,
    };
    let ep = Endpoint::locate(data_dir)?;
    let created = ep.call("POST", "/api/v1/jobs", Some(&body)).await?;
    let job_id = created["job_id"]
        .as_str()
        .context("the node accepted the job but sent no job_id")?
        .to_string();
    if !common.wait {
        if common.json {
            print_json(&created)?;
        } else {
            println!("{job_id}");
            eprintln!(
                "submitted; follow it with `modchain job {job_id}` or `modchain logs --follow {job_id}`"
            );
        }
        return Ok(0);
    }
    let job = wait_for_job(&ep, &job_id, !common.json).await?;
    if common.json {
        let out = json!({
            "job_id": job_id,
            "state": job["state"],
            "detail": job["detail"],
            "provider": job["provider"],
            "orchestrator": job["orchestrator"],
            "exit_code": job["exit_code"],
            "exit": job["exit"],
            "stdout": job["stdout"],
            "stderr": job["stderr"],
            "price": job["price"],
            "receipt_id": job["receipt_id"],
            "outputs": job["outputs"],
        });
        print_json(&out)?;
    } else {
        print_output(&job);
    }
    Ok(job_exit_code(&job))
}

/// The process exit code a finished job maps to.
pub fn job_exit_code(job: &Value) -> i32 {
    let code = job["exit_code"].as_i64().map(|c| c.clamp(0, 255) as i32);
    match job["state"].as_str() {
        Some("completed") => code.unwrap_or(0),
        _ => match code {
            Some(c) if c != 0 => c,
            _ => 1,
        },
    }
}

fn print_output(job: &Value) {
    if let Some(out) = job["stdout"].as_str() {
        print!("{out}");
        let _ = std::io::stdout().flush();
    }
    if let Some(err) = job["stderr"].as_str()
        && !err.is_empty()
    {
        eprint!("{err}");
    }
}

fn common_requirements(
    common: &SubmitCommon,
    body: &mut Map<String, Value>,
    requirements: Map<String, Value>,
) -> Result<()> {
    if !requirements.is_empty() {
        body.insert("requirements".into(), Value::Object(requirements));
    }
    if let Some(t) = &common.timeout {
        body.insert(
            "timeout_ms".into(),
            json!(parse_duration(t)?.as_millis() as u64),
        );
    }
    if let Some(p) = &common.max_price {
        body.insert("max_price".into(), json!(parse_credits(p)?));
    }
    Ok(())
}

fn docker_spec(a: SubmitDockerArgs) -> Result<(Value, SubmitCommon)> {
    if a.image.trim().is_empty() {
        bail!("the image name is empty");
    }
    let mut params = Map::new();
    params.insert("image".into(), json!(a.image));
    if !a.cmd.is_empty() {
        params.insert("cmd".into(), json!(a.cmd));
    }
    let env = parse_env(&a.env)?;
    if !env.is_empty() {
        params.insert("env".into(), Value::Object(env));
    }
    if a.network {
        params.insert("network".into(), json!(true));
    }
    let mut req = Map::new();
    if let Some(c) = a.cpus {
        req.insert("cores".into(), json!(c));
    }
    if let Some(m) = &a.memory {
        req.insert("memory_bytes".into(), json!(parse_size(m)?));
    }
    if let Some(g) = a.gpus {
        req.insert("gpus".into(), json!(g));
    }
    let mut body = Map::new();
    body.insert("adapter".into(), json!("docker"));
    body.insert("method".into(), json!("run"));
    body.insert("params".into(), Value::Object(params));
    common_requirements(&a.common, &mut body, req)?;
    Ok((Value::Object(body), a.common))
}

/// The `run` params for a module file: `.wat` as text, anything else (or
/// bytes starting with `\0asm`) as base64 binary.
pub fn wasm_params(file: &Path) -> Result<Map<String, Value>> {
    let bytes = std::fs::read(file)
        .with_context(|| format!("cannot read the module {}", file.display()))?;
    let is_wat = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("wat"));
    let mut params = Map::new();
    if bytes.starts_with(b"\0asm") {
        params.insert("wasm_base64".into(), json!(base64(&bytes)));
    } else if is_wat {
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8 text", file.display()))?;
        params.insert("wat".into(), json!(text));
    } else {
        bail!(
            "{} is neither a .wat text module nor a .wasm binary (no \\0asm header)",
            file.display()
        );
    }
    Ok(params)
}

fn wasm_spec(a: SubmitWasmArgs) -> Result<(Value, SubmitCommon)> {
    let mut params = wasm_params(&a.file)?;
    if !a.args.is_empty() {
        params.insert("args".into(), json!(a.args));
    }
    let env = parse_env(&a.env)?;
    if !env.is_empty() {
        params.insert("env".into(), Value::Object(env));
    }
    if let Some(s) = &a.stdin {
        params.insert("stdin".into(), json!(s));
    }
    let mut req = Map::new();
    if let Some(m) = &a.memory {
        req.insert("memory_bytes".into(), json!(parse_size(m)?));
    }
    let mut body = Map::new();
    body.insert("adapter".into(), json!("wasm"));
    body.insert("method".into(), json!("run"));
    body.insert("params".into(), Value::Object(params));
    common_requirements(&a.common, &mut body, req)?;
    Ok((Value::Object(body), a.common))
}

/// Progress lines on stderr: above a spinner on a terminal, plain otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    started: Instant,
}

impl Progress {
    fn new(show: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (show && tty).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Progress {
            bar,
            plain: show && !tty,
            started: Instant::now(),
        }
    }

    fn line(&self, text: &str) {
        let text = format!("[{:>6.2}s] {text}", self.started.elapsed().as_secs_f64());
        if let Some(b) = &self.bar {
            b.println(text);
        } else if self.plain {
            eprintln!("{text}");
        }
    }

    fn status(&self, text: String) {
        if let Some(b) = &self.bar {
            b.set_message(text);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Follows a job until it ends, showing its progress when asked; returns
/// the final job document.
pub async fn wait_for_job(ep: &Endpoint, job_id: &str, show: bool) -> Result<Value> {
    let progress = Progress::new(show);
    progress.line(&format!("job {job_id} submitted"));
    let path = format!("/api/v1/jobs/{job_id}");
    let mut last_state = String::new();
    let mut last_provider = Value::Null;
    let mut last_orchestrator = Value::Null;
    loop {
        let job = ep.call("GET", &path, None).await?;
        let state = job["state"].as_str().unwrap_or("unknown").to_string();
        if job["orchestrator"] != last_orchestrator && !job["orchestrator"].is_null() {
            last_orchestrator = job["orchestrator"].clone();
            progress.line(&format!("orchestrator {}", cell(&last_orchestrator)));
        }
        if job["provider"] != last_provider && !job["provider"].is_null() {
            last_provider = job["provider"].clone();
            progress.line(&format!("provider chosen: {}", cell(&last_provider)));
        }
        if state != last_state {
            let detail = job["detail"].as_str().filter(|d| !d.is_empty());
            let mut text = state.clone();
            if let Some(d) = detail {
                text.push_str(&format!(" ({d})"));
            }
            if is_terminal_state(&state) {
                let exit = if !job["exit"].is_null() {
                    cell(&job["exit"])
                } else if !job["exit_code"].is_null() {
                    format!("exit code {}", cell(&job["exit_code"]))
                } else {
                    String::new()
                };
                text = match detail {
                    Some(d) if state != "completed" && !d.contains(&exit) => {
                        format!("{state}: {exit} ({d})")
                    }
                    _ if exit.is_empty() => state.clone(),
                    _ => format!("{state}: {exit}"),
                };
            }
            progress.line(&text);
            last_state = state.clone();
        }
        if is_terminal_state(&state) {
            progress.finish();
            return Ok(job);
        }
        progress.status(format!(
            "{state}{}",
            if state == "running" {
                format!(" on {}", short(&cell(&last_provider)))
            } else {
                String::new()
            }
        ));
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------- reads

pub async fn jobs(data_dir: &DataDir, as_json: bool) -> Result<()> {
    let ep = Endpoint::locate(data_dir)?;
    let v = ep.call("GET", "/api/v1/jobs", None).await?;
    if as_json {
        return print_json(&v);
    }
    print_table(
        &v,
        &[
            ("job_id", "JOB"),
            ("state", "STATE"),
            ("adapter", "ADAPTER"),
            ("provider", "PROVIDER"),
            ("exit_code", "EXIT"),
            ("price", "PRICE"),
            ("submitted_at_ms", "SUBMITTED (UTC)"),
        ],
        "no jobs yet: submit one with `modchain submit`",
    )
}

pub async fn job(data_dir: &DataDir, id: &str, as_json: bool) -> Result<()> {
    let ep = Endpoint::locate(data_dir)?;
    let j = ep
        .call("GET", &format!("/api/v1/jobs/{}", path_segment(id)?), None)
        .await?;
    if as_json {
        return print_json(&j);
    }
    let row = |k: &str, v: String| println!("{k:<13}{v}");
    row("job", cell(&j["job_id"]));
    let mut state = cell(&j["state"]);
    if let Some(d) = j["detail"].as_str().filter(|d| !d.is_empty()) {
        state.push_str(&format!(" ({d})"));
    }
    row("state", state);
    row(
        "adapter",
        format!("{} {}", cell(&j["adapter"]), cell(&j["method"])),
    );
    if let Some(t) = j["submitted_at_ms"].as_u64() {
        row("submitted", format!("{} UTC", clock(t)));
    }
    row("orchestrator", cell(&j["orchestrator"]));
    row("provider", cell(&j["provider"]));
    row("price", format!("{} credits", credits(&j["price"])));
    if !j["exit"].is_null() {
        row("exit", cell(&j["exit"]));
    }
    row("exit code", cell(&j["exit_code"]));
    row("receipt", cell(&j["receipt_id"]));
    if let Some(h) = j["history"].as_array() {
        let t0 = h.first().and_then(|e| e["at_ms"].as_u64()).unwrap_or(0);
        let steps: Vec<String> = h
            .iter()
            .map(|e| {
                format!(
                    "{} +{}ms",
                    cell(&e["state"]),
                    e["at_ms"].as_u64().unwrap_or(t0).saturating_sub(t0)
                )
            })
            .collect();
        row("history", steps.join(", "));
    }
    if let Some(outs) = j["outputs"].as_array() {
        for o in outs {
            row(
                "output",
                format!(
                    "{} ({} bytes) {}",
                    cell(&o["name"]),
                    cell(&o["size"]),
                    cell(&o["path"])
                ),
            );
        }
    }
    if let Some(out) = j["stdout"].as_str().filter(|s| !s.is_empty()) {
        println!("--- stdout\n{}", out.trim_end());
    }
    if let Some(err) = j["stderr"].as_str().filter(|s| !s.is_empty()) {
        println!("--- stderr\n{}", err.trim_end());
    }
    Ok(())
}

/// Job ids are hex; refuse anything that could change the request path.
fn path_segment(id: &str) -> Result<&str> {
    let id = id.trim();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("{id:?} is not a job id (expected the hex id `submit` printed)");
    }
    Ok(id)
}

pub async fn logs(data_dir: &DataDir, id: &str, follow: bool, as_json: bool) -> Result<()> {
    let ep = Endpoint::locate(data_dir)?;
    let id = path_segment(id)?;
    let path = if follow {
        format!("/api/v1/jobs/{id}/logs?follow=true")
    } else {
        format!("/api/v1/jobs/{id}/logs")
    };
    let mut stream = ep.stream(&path).await?;
    if as_json && !follow {
        let bytes = stream.read_all().await.context("reading the logs")?;
        return print_json(&json!({
            "job_id": id,
            "logs": String::from_utf8_lossy(&bytes),
        }));
    }
    let mut out = std::io::stdout().lock();
    while let Some(b) = stream.next_bytes().await.context("reading the logs")? {
        out.write_all(&b)?;
        out.flush()?;
    }
    Ok(())
}

pub async fn cancel(data_dir: &DataDir, id: &str, as_json: bool) -> Result<()> {
    let ep = Endpoint::locate(data_dir)?;
    let id = path_segment(id)?;
    let v = ep
        .call("DELETE", &format!("/api/v1/jobs/{id}"), None)
        .await?;
    if as_json {
        return print_json(&if v.is_null() {
            json!({"job_id": id, "cancelled": true})
        } else {
            v
        });
    }
    let state = v["state"].as_str().unwrap_or("cancel requested");
    println!("job {id}: {state}");
    Ok(())
}

pub async fn result(
    data_dir: &DataDir,
    id: &str,
    output: Option<&Path>,
    as_json: bool,
) -> Result<()> {
    let ep = Endpoint::locate(data_dir)?;
    let id = path_segment(id)?;
    let r = ep
        .call("GET", &format!("/api/v1/jobs/{id}/result"), None)
        .await?;
    let mut copied = Vec::new();
    if let Some(dir) = output {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for o in r["outputs"].as_array().into_iter().flatten() {
            let name = o["name"].as_str().unwrap_or("");
            // Only a plain file name: the provider chose it.
            let Some(file_name) = Path::new(name).file_name().filter(|f| *f == name) else {
                eprintln!("skipping output {name:?}: not a plain file name");
                continue;
            };
            let to = dir.join(file_name);
            if let Some(from) = o["path"].as_str().filter(|p| Path::new(p).exists()) {
                std::fs::copy(from, &to)
                    .with_context(|| format!("cannot copy {from} to {}", to.display()))?;
                copied.push(to.display().to_string());
            } else if let Some(text) = o["content"].as_str() {
                std::fs::write(&to, text)
                    .with_context(|| format!("cannot write {}", to.display()))?;
                copied.push(to.display().to_string());
            } else {
                eprintln!("output {name} is not on this machine yet (no local path)");
            }
        }
    }
    if as_json {
        let mut v = r.clone();
        if output.is_some()
            && let Some(o) = v.as_object_mut()
        {
            o.insert("copied".into(), json!(copied));
        }
        return print_json(&v);
    }
    println!("job          {id}");
    for k in ["state", "provider", "exit", "exit_code"] {
        if !r[k].is_null() {
            println!("{k:<13}{}", cell(&r[k]));
        }
    }
    for o in r["outputs"].as_array().into_iter().flatten() {
        println!(
            "output       {} ({} bytes, digest {}) {}",
            cell(&o["name"]),
            cell(&o["size"]),
            short(&cell(&o["digest"])),
            cell(&o["path"])
        );
    }
    for c in &copied {
        println!("copied       {c}");
    }
    if let Some(out) = r["stdout"].as_str().filter(|s| !s.is_empty()) {
        println!("--- stdout\n{}", out.trim_end());
    }
    if let Some(err) = r["stderr"].as_str().filter(|s| !s.is_empty()) {
        println!("--- stderr\n{}", err.trim_end());
    }
    Ok(())
}

pub async fn receipts(data_dir: &DataDir, as_json: bool) -> Result<()> {
    let ep = Endpoint::locate(data_dir)?;
    let v = ep.call("GET", "/api/v1/receipts", None).await?;
    if as_json {
        return print_json(&v);
    }
    print_table(
        &v,
        &[
            ("receipt_id", "RECEIPT"),
            ("job_id", "JOB"),
            ("client", "CLIENT"),
            ("provider", "PROVIDER"),
            ("outcome", "OUTCOME"),
            ("exit_code", "EXIT"),
            ("price", "PRICE"),
            ("issued_at_ms", "ISSUED (UTC)"),
        ],
        "no receipts in this node's ledger yet",
    )
}

pub async fn reputation(data_dir: &DataDir, as_json: bool) -> Result<()> {
    let ep = Endpoint::locate(data_dir)?;
    let v = ep.call("GET", "/api/v1/reputation", None).await?;
    if as_json {
        return print_json(&v);
    }
    // An array of rows, or an object keyed by node.
    let rows = match &v {
        Value::Array(_) => v.clone(),
        Value::Object(m) if m.values().all(|x| x.is_number()) => Value::Array(
            m.iter()
                .map(|(k, t)| json!({"node": k, "trust": t}))
                .collect(),
        ),
        Value::Object(m) => match m.values().find(|x| x.is_array()) {
            Some(a) => a.clone(),
            None => return print_json(&v),
        },
        _ => return print_json(&v),
    };
    let columns: Vec<(String, String)> = rows
        .as_array()
        .and_then(|a| a.first())
        .and_then(|r| r.as_object())
        .map(|o| {
            o.iter()
                .filter(|(_, x)| !x.is_object() && !x.is_array())
                .map(|(k, _)| (k.clone(), k.to_ascii_uppercase()))
                .collect()
        })
        .unwrap_or_default();
    let cols: Vec<(&str, &str)> = columns
        .iter()
        .map(|(k, t)| (k.as_str(), t.as_str()))
        .collect();
    print_table(
        &rows,
        &cols,
        "no reputation computed yet (it comes from receipts between different peers)",
    )
}

/// A node named by its id in hex, or by its libp2p peer id.
fn node_hex(s: &str) -> Result<String> {
    let s = path_segment(s)?;
    if let Ok(peer) = s.parse::<libp2p::PeerId>() {
        let node = modchain_protocol::NodeId::from_peer_id(&peer)
            .with_context(|| format!("peer id {s} carries no ed25519 key"))?;
        return Ok(node.to_hex());
    }
    Ok(s.to_string())
}

pub async fn balance(data_dir: &DataDir, node: Option<&str>, as_json: bool) -> Result<()> {
    let ep = Endpoint::locate(data_dir)?;
    let path = match node {
        Some(n) => format!("/api/v1/balance?node={}", node_hex(n)?),
        None => "/api/v1/balance".to_string(),
    };
    let v = ep.call("GET", &path, None).await?;
    if as_json {
        return print_json(&v);
    }
    match &v {
        Value::Object(m) => {
            // Micro-credit fields are shown exactly, as credits.
            for (k, x) in m {
                if m.contains_key(&format!("{k}_micro")) {
                    continue;
                }
                let (name, text) = match k.strip_suffix("_micro") {
                    Some(base) => (base, format!("{} credits", credits(x))),
                    None => (k.as_str(), cell(x)),
                };
                println!("{name:<15}{text}");
            }
            Ok(())
        }
        Value::Number(_) => {
            println!("{} credits", credits(&v));
            Ok(())
        }
        _ => print_json(&v),
    }
}

/// `modchain dashboard`: asks the node for a one-time login link (it needs
/// the token in `api.token`, so only a user who may read the data directory
/// gets one) and prints it.
pub async fn dashboard(data_dir: &DataDir, as_json: bool) -> Result<()> {
    let ep = Endpoint::locate(data_dir)?;
    let v = ep.call("POST", "/api/v1/login-links", None).await?;
    let url = v["url"]
        .as_str()
        .context("the node's answer has no `url`")?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{url}");
        eprintln!("open it in a browser on this machine; it works once");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_prices_parse() {
        assert_eq!(parse_size("512m").ok(), Some(512 << 20));
        assert_eq!(parse_size("2g").ok(), Some(2 << 30));
        assert_eq!(parse_size("2GiB").ok(), Some(2 << 30));
        assert_eq!(parse_size("1.5k").ok(), Some(1536));
        assert_eq!(parse_size("4096").ok(), Some(4096));
        assert!(parse_size("12q").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_duration("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m").ok(), Some(Duration::from_secs(300)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
        assert!(parse_duration("1y").is_err());
        assert_eq!(parse_credits("0.5").ok(), Some(500_000));
        assert_eq!(parse_credits("3").ok(), Some(3_000_000));
        assert_eq!(parse_credits(".000001").ok(), Some(1));
        assert!(parse_credits("0.0000001").is_err());
        assert!(parse_credits("-1").is_err());
        assert!(parse_credits("abc").is_err());
        assert!(parse_credits("99999999999999999999").is_err());
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"\0asm"), "AGFzbQ==");
    }

    #[test]
    fn exit_codes_follow_the_job() {
        assert_eq!(
            job_exit_code(&json!({"state":"completed","exit_code":3})),
            3
        );
        assert_eq!(job_exit_code(&json!({"state":"completed"})), 0);
        assert_eq!(job_exit_code(&json!({"state":"failed","exit_code":0})), 1);
        assert_eq!(job_exit_code(&json!({"state":"cancelled"})), 1);
        assert_eq!(
            job_exit_code(&json!({"state":"failed","exit_code":137})),
            137
        );
        assert_eq!(credits(&json!(1_500_000)), "1.500000");
    }
}
