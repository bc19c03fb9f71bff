//! The `modchain` command line.

use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Modchain: sell your machine's CPU and GPU time on a peer-to-peer network.
#[derive(Debug, Parser)]
#[command(name = "modchain", version)]
pub struct Cli {
    /// The node's data directory (key, config.toml, ledger).
    #[arg(long, global = true, env = "MODCHAIN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the node key and a commented config.toml.
    Init,
    /// Show this machine's hardware as the network will see it.
    Info {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Measure CPU and memory bandwidth (a few seconds) and store the score.
    Benchmark {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Join the network and run until interrupted.
    Start(StartArgs),
    /// List the peers this running node knows, with their adverts.
    Peers {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Listen on this address (repeatable; replaces `listen` in config.toml).
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Join through this bootstrap peer (repeatable; added to `bootstrap` in config.toml).
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Serve the local API here (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT")]
    pub api: Option<SocketAddr>,
    /// Stand as an orchestrator candidate.
    #[arg(long)]
    pub orchestrator: bool,
}
