//! `modchain-bootstrap`'s command line. It lives in the library, not in
//! `main.rs`, so that `modchain man` and `modchain completions` (which link
//! this crate already) render the bootstrap peer's man page and completions
//! from the very definition its binary parses.

use clap::Parser;
use libp2p::Multiaddr;
use std::path::PathBuf;

/// A Modchain bootstrap peer: Kademlia server, identify, gossip relay and
/// circuit relay for nodes joining the network.
#[derive(Debug, Parser)]
#[command(name = "modchain-bootstrap", version)]
pub struct Cli {
    /// Where the key and the address file live.
    #[arg(long, env = "MODCHAIN_BOOTSTRAP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Addresses to listen on (repeatable).
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Most connections held at once.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: u32,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464;
    /// port 0 picks one, written to `metrics.url` in the data directory).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
}
