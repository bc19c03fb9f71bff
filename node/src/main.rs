//! `modchain`: the node binary. This is the edge where errors become
//! messages for a person; the modules below return typed errors.

mod api;
mod benchmark;
mod build_info;
mod cli;
mod config;
mod control;
mod datadir;
mod executor;
mod hardware;
mod ledger;
mod metrics;
mod node;
mod outputs;
mod views;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command, LogFormat, StartArgs, api_client, commands, devnet, mcp};
use config::Config;
use datadir::DataDir;
use modchain_protocol::{IdentityError, Keypair};
use serde_json::json;
use std::time::Duration;
use tracing::Instrument;

/// Logs to stderr, filtered by RUST_LOG (else `default`), as text or as
/// JSON lines that carry the enclosing spans (`node` with the peer id,
/// `job` with the job id).
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests start several commands in one process) is a no-op.
    let _ = match LOG_FORMAT.get().copied().unwrap_or(LogFormat::Text) {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// The `--log-format` the command line asked for, read by `init_tracing`.
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

fn main() -> std::process::ExitCode {
    // The version line is built at run time (it names the protocol version,
    // a constant of another crate), so clap gets it through `command()`.
    let matches = Cli::command()
        .version(build_info::version_line())
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let _ = LOG_FORMAT.set(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let data_dir = DataDir::resolve(cli.data_dir).with_config(cli.config);
    match cli.command {
        Command::Init => {
            init_tracing("warn");
            init(&data_dir)
        }
        Command::Info { json } => {
            init_tracing("warn");
            info(&data_dir, json).await
        }
        Command::Benchmark { json } => {
            init_tracing("warn");
            benchmark(&data_dir, json)
        }
        Command::Start(args) => {
            init_tracing("info");
            start(&data_dir, args).await
        }
        Command::Peers { json } => {
            init_tracing("warn");
            peers(&data_dir, json).await
        }
        Command::Submit(submit) => {
            init_tracing("warn");
            let code = commands::submit(&data_dir, submit).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Jobs { json } => {
            init_tracing("warn");
            commands::jobs(&data_dir, json).await
        }
        Command::Job { id, json } => {
            init_tracing("warn");
            commands::job(&data_dir, &id, json).await
        }
        Command::Logs { id, follow, json } => {
            init_tracing("warn");
            commands::logs(&data_dir, &id, follow, json).await
        }
        Command::Cancel { id, json } => {
            init_tracing("warn");
            commands::cancel(&data_dir, &id, json).await
        }
        Command::Result { id, output, json } => {
            init_tracing("warn");
            commands::result(&data_dir, &id, output.as_deref(), json).await
        }
        Command::Receipts { json } => {
            init_tracing("warn");
            commands::receipts(&data_dir, json).await
        }
        Command::Reputation { json } => {
            init_tracing("warn");
            commands::reputation(&data_dir, json).await
        }
        Command::Balance { node, json } => {
            init_tracing("warn");
            commands::balance(&data_dir, node.as_deref(), json).await
        }
        Command::Dashboard { json } => {
            init_tracing("warn");
            commands::dashboard(&data_dir, json).await
        }
        Command::Mcp => {
            // stderr only: stdout carries the protocol.
            init_tracing("warn");
            mcp::serve(data_dir).await
        }
        Command::Devnet(args) => {
            init_tracing("warn");
            devnet::run(args).await
        }
        Command::BootstrapPeer { listen, metrics } => {
            init_tracing("info");
            devnet::bootstrap_peer(&data_dir, listen, metrics).await
        }
        Command::Completions { shell, program } => {
            cli::manual::completions(program, shell, &mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Man { dir } => {
            for page in cli::manual::man_pages(&dir)? {
                println!("{}", page.display());
            }
            Ok(())
        }
    }
}

fn init(data_dir: &DataDir) -> Result<()> {
    data_dir.ensure_writable()?;
    let key_path = data_dir.key_path();
    let key = match Keypair::load(&key_path) {
        Ok(key) => {
            println!("node key already present at {}", key_path.display());
            key
        }
        Err(IdentityError::Missing(_)) => {
            let key = Keypair::generate()?;
            key.save_new(&key_path)?;
            println!("created node key at {}", key_path.display());
            key
        }
        Err(e) => return Err(e.into()),
    };
    let config_path = data_dir.config_path();
    if config_path.exists() {
        Config::load(&config_path)?;
        println!("config already present at {}", config_path.display());
    } else {
        data_dir.write_file(&config_path, config::commented_template().as_bytes(), false)?;
        println!("wrote {}", config_path.display());
    }
    println!("peer id: {}", key.peer_id());
    println!("next: `modchain benchmark`, then `modchain start --bootstrap <address>`");
    Ok(())
}

async fn info(data_dir: &DataDir, as_json: bool) -> Result<()> {
    let peer_id = match Keypair::load(&data_dir.key_path()) {
        Ok(k) => Some(k.peer_id().to_string()),
        Err(IdentityError::Missing(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let hw = hardware::detect(data_dir.root()).await;
    let bench = benchmark::load(&data_dir.benchmark_path())?;
    if as_json {
        let doc = json!({
            "peer_id": peer_id,
            "data_dir": data_dir.root(),
            "cpu": hw.cpu,
            "memory": hw.memory,
            "storage": hw.storage,
            "gpus": hw.gpus,
            "container_runtime": hw.container_runtime,
            "benchmark": bench,
            "notes": hw.notes,
            "software": build_info::SOFTWARE_VERSION,
            "protocol_version": modchain_protocol::PROTOCOL_VERSION,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let gib = hardware::gib;
    match &peer_id {
        Some(p) => println!("peer id     {p}"),
        None => println!("peer id     (none yet: run `modchain init`)"),
    }
    println!("data dir    {}", data_dir.root().display());
    println!("software    modchain {}", build_info::version_line());
    println!(
        "cpu         {} ({}), {} cores / {} threads",
        hw.cpu.model, hw.cpu.vendor, hw.cpu.cores, hw.cpu.threads
    );
    println!("features    {}", hw.cpu.features.join(" "));
    println!(
        "memory      {} total, {} available",
        gib(hw.memory.total_bytes),
        gib(hw.memory.available_bytes)
    );
    println!(
        "storage     {} total, {} available ({:?})",
        gib(hw.storage.total_bytes),
        gib(hw.storage.available_bytes),
        hw.storage.kind
    );
    if hw.gpus.is_empty() {
        println!("gpus        none");
    }
    for g in &hw.gpus {
        let cc = g
            .compute_capability
            .map(|(a, b)| format!(", compute {a}.{b}"))
            .unwrap_or_default();
        println!(
            "gpu         {} {}, {} VRAM, driver {}{cc}",
            g.vendor,
            g.model,
            gib(g.vram_bytes),
            g.driver
        );
    }
    match &hw.container_runtime {
        Some(rt) => println!(
            "containers  {} {}{}",
            rt.name,
            rt.version,
            if rt.nvidia { ", nvidia runtime" } else { "" }
        ),
        None => println!("containers  none reachable"),
    }
    match bench {
        Some(b) => println!(
            "benchmark   score {} ({:.0} Mops/s, {:.0} MB/s)",
            b.score, b.cpu_mops, b.memory_mb_per_s
        ),
        None => println!("benchmark   not run yet (`modchain benchmark`)"),
    }
    for n in &hw.notes {
        println!("note        {n}");
    }
    Ok(())
}

fn benchmark(data_dir: &DataDir, as_json: bool) -> Result<()> {
    data_dir.ensure_writable()?;
    let bar = if as_json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(1000)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("benchmark {bar:40} {percent:>3}% {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let result = benchmark::run(|f| bar.set_position((f * 1000.0) as u64));
    bar.finish_and_clear();
    let path = data_dir.benchmark_path();
    data_dir.write_file(
        &path,
        serde_json::to_string_pretty(&result)?.as_bytes(),
        false,
    )?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "score {} (cpu {:.0} Mops/s on {} threads, memory {:.0} MB/s); saved to {}",
            result.score,
            result.cpu_mops,
            result.threads,
            result.memory_mb_per_s,
            path.display()
        );
    }
    Ok(())
}

async fn start(data_dir: &DataDir, args: StartArgs) -> Result<()> {
    data_dir.ensure_writable()?;
    let key = Keypair::load(&data_dir.key_path())?;
    let config = Config::load(&data_dir.config_path())?;
    let bootstrap = config
        .bootstrap_peers(&args.bootstrap)
        .context("bad --bootstrap address")?;
    let listen = if args.listen.is_empty() {
        config.listen.clone()
    } else {
        args.listen
    };
    let api_addr = args.api.unwrap_or(config.api);
    if !api_addr.ip().is_loopback() {
        bail!("--api {api_addr}: the API must listen on a loopback address such as 127.0.0.1");
    }
    if bootstrap.is_empty() {
        tracing::warn!(
            "no bootstrap peers (--bootstrap or `bootstrap` in config.toml): waiting for others to dial in"
        );
    }

    let hw = hardware::detect(data_dir.root()).await;
    for n in &hw.notes {
        tracing::info!("hardware: {n}");
    }
    let score = match benchmark::load(&data_dir.benchmark_path()) {
        Ok(Some(b)) => b.score,
        Ok(None) => {
            tracing::info!("no benchmark score yet; run `modchain benchmark` to advertise one");
            0
        }
        Err(e) => {
            tracing::warn!("{e}");
            0
        }
    };
    let mut advert = hw.to_advert(score);
    advert.prices = config.prices.to_table();

    let options = node::NodeOptions {
        listen,
        bootstrap,
        orchestrator: args.orchestrator || config.orchestrator,
        max_connections: config.max_connections,
        advert,
        advert_interval: Duration::from_secs(config.advert.interval_secs.max(1)),
        advert_ttl: Duration::from_secs(config.advert.ttl_secs.max(1)),
        llm: config.llm.clone(),
        summary_interval: Duration::from_secs(60),
        data_dir: data_dir.root().to_path_buf(),
        provider: config.provider,
        docker: config.docker.clone(),
        wasm: config.wasm.clone(),
        relay: config.relay.clone(),
        grant: modchain_protocol::Credits::ZERO,
        limits: config.limits.clone(),
    };
    let mut node = node::Node::new(&key, options).await?;
    let addrs = node.wait_listening().await?;
    tracing::info!(peer_id = %node.peer_id(), addrs = ?addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(), "node up");

    let (api_tx, api_rx) = tokio::sync::mpsc::channel(64);
    let api = api::Api::bind(api_addr, &config.api_allowed_hosts, data_dir, api_tx).await?;
    tracing::info!(url = %api.url, "local API up");
    // As Jupyter does: a link that logs this machine's user into the
    // dashboard, once (`modchain dashboard` prints another).
    let login = api.login_url()?;
    tracing::info!(
        "dashboard: open {login} (the link works once; `modchain dashboard` prints a new one)"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut api_stop = stop_rx.clone();
    let api_task = tokio::spawn(api.serve(async move {
        let _ = api_stop.changed().await;
    }));
    let mut node_stop = stop_rx;
    // Every line the node logs carries its peer id (the `node` span).
    let node_span = tracing::info_span!("node", peer_id = %node.peer_id());
    let node_task = tokio::spawn(
        node.run(api_rx, async move {
            let _ = node_stop.changed().await;
        })
        .instrument(node_span),
    );

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), node_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), api_task).await;
    let _ = std::fs::remove_file(data_dir.api_url_path());
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn peers(data_dir: &DataDir, as_json: bool) -> Result<()> {
    let nodes = api_client::get_json(data_dir, "/api/v1/nodes").await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(());
    }
    let list = nodes.as_array().cloned().unwrap_or_default();
    println!(
        "{:<54} {:<5} {:>7} {:>9} {:>5} {:>10}  {:<27} ADDRESS",
        "PEER ID", "CONN", "THREADS", "MEMORY", "GPUS", "µ/CORE-S", "VERSION"
    );
    for n in &list {
        let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        let advert = &n["advert"];
        let (threads, mem, gpus, price) = if advert.is_null() {
            (
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
            )
        } else {
            (
                advert["cpu"]["threads"].to_string(),
                hardware::gib(advert["memory"]["total_bytes"].as_u64().unwrap_or(0)),
                advert["gpus"].as_array().map_or(0, |g| g.len()).to_string(),
                advert["prices"]["per_core_second"].to_string(),
            )
        };
        let conn = if n["self"].as_bool() == Some(true) {
            "self"
        } else if n["connected"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        };
        let addr = n["addrs"]
            .as_array()
            .and_then(|a| a.first())
            .map(s)
            .unwrap_or_default();
        // What the peer runs: its advert's software version; for a peer
        // without an advert (a bootstrap peer), its identify agent.
        let version = advert["software"]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(String::from)
            .or_else(|| n["agent"].as_str().map(String::from))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<54} {:<5} {:>7} {:>9} {:>5} {:>10}  {:<27} {}",
            s(&n["peer_id"]),
            conn,
            threads,
            mem,
            gpus,
            price,
            version,
            addr
        );
    }
    let with_adverts = list.iter().filter(|n| !n["advert"].is_null()).count();
    println!("{} peers, {} with adverts", list.len(), with_adverts);
    Ok(())
}
