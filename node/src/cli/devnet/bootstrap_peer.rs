//! `modchain bootstrap-peer`: the bootstrap peer of `modchain-bootstrap`
//! run inside this executable, so devnet needs no second binary.

use crate::datadir::DataDir;
use anyhow::{Context, Result};
use libp2p::Multiaddr;
use modchain_bootstrap::{BootstrapConfig, BootstrapPeer};
use modchain_protocol::Keypair;
use std::io::Write;

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
