//! `modchain-bootstrap`: runs a bootstrap peer until SIGINT or SIGTERM.

use anyhow::{Context, Result};
use clap::Parser;
use modchain_bootstrap::cli::Cli;
use modchain_bootstrap::{BootstrapConfig, BootstrapPeer};
use modchain_protocol::Keypair;
use std::io::Write;
use std::path::PathBuf;

fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("modchain-bootstrap");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/modchain-bootstrap"),
        None => PathBuf::from(".modchain-bootstrap"),
    }
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let data_dir = cli.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}; choose another with --data-dir",
            data_dir.display()
        )
    })?;
    let key = Keypair::load_or_create(&data_dir.join("node.key"))?;
    let listen = if cli.listen.is_empty() {
        vec![
            "/ip4/0.0.0.0/tcp/4001".parse()?,
            "/ip4/0.0.0.0/udp/4001/quic-v1".parse()?,
        ]
    } else {
        cli.listen
    };
    let mut peer = BootstrapPeer::new(
        &key,
        &BootstrapConfig {
            listen,
            max_connections: cli.max_connections,
        },
    )?;
    if let Some(at) = cli.metrics {
        modchain_bootstrap::metrics::serve_and_record(at, peer.metrics_registry(), &data_dir)
            .await?;
    }
    let addr = peer.announce_address().await?;
    let addr_file = data_dir.join("addr");
    std::fs::write(&addr_file, format!("{addr}\n")).with_context(|| {
        format!(
            "cannot write {}; is the data directory writable?",
            addr_file.display()
        )
    })?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, "bootstrap peer up");

    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(());
    });
    peer.run(rx).await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}
