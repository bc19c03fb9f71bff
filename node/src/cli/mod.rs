//! The `modchain` command line: its arguments (this file), the commands
//! that talk to a running node through its local API ([`commands`],
//! [`api_client`]), `devnet` and the MCP server, and the small parsing and
//! formatting helpers they share ([`parse`], [`format`]).

pub mod api_client;
pub mod commands;
pub mod devnet;
mod format;
pub mod manual;
pub mod mcp;
mod parse;

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
    /// The configuration file, when not `config.toml` in the data directory
    /// (the Debian package's service reads /etc/modchain/config.toml).
    #[arg(long, global = true, env = "MODCHAIN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How log lines on stderr look: `text` for people, `json` (one object
    /// per line, with the current span's job and peer ids) for machines.
    /// Filter with RUST_LOG, e.g. RUST_LOG=modchain=debug,libp2p_gossipsub=info.
    #[arg(long, global = true, env = "MODCHAIN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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
    /// Submit a job to the network through this node.
    #[command(subcommand)]
    Submit(SubmitCommand),
    /// List the jobs this node knows.
    Jobs {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Show one job: state, history, provider, exit, output.
    Job {
        /// The job id (hex), as `submit` printed it.
        id: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Print a job's output so far.
    Logs {
        id: String,
        /// Keep printing as the job writes, until it ends.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Print one JSON document (ignored with --follow).
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job (the provider stops it).
    Cancel {
        id: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Show a finished job's result and fetch its output files.
    Result {
        id: String,
        /// Copy the output files into this directory.
        #[arg(long, short = 'o', value_name = "DIR")]
        output: Option<PathBuf>,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// List the receipts in this node's ledger.
    Receipts {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Show the reputation this node computes for its peers.
    Reputation {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Show a credit balance (this node's, or another's with --node).
    Balance {
        /// A node id (hex) or peer id; this node's when left out.
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Print a link that logs this machine's browser into the running
    /// node's web dashboard. The link works once; run it again for another.
    Dashboard {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Serve the Model Context Protocol on stdin/stdout, so an AI agent can
    /// use the network through this running node as tools (submit jobs,
    /// follow them, list providers and models, balance, reputation).
    Mcp,
    /// Run a whole network on this machine (a bootstrap peer and N nodes) and
    /// show a demo job going through it step by step.
    Devnet(DevnetArgs),
    /// Run a bootstrap peer in this process (used by `devnet`).
    #[command(hide = true)]
    BootstrapPeer {
        /// Addresses to listen on (repeatable).
        #[arg(long = "listen", value_name = "MULTIADDR")]
        listen: Vec<Multiaddr>,
        /// Serve Prometheus metrics at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Print a shell completion script (packaging: see cli/manual.rs).
    #[command(hide = true)]
    Completions {
        shell: clap_complete::Shell,
        /// The binary to complete.
        #[arg(long, value_enum, default_value_t = manual::Program::Modchain)]
        program: manual::Program,
    },
    /// Write the man pages of `modchain` and `modchain-bootstrap` into DIR.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum SubmitCommand {
    /// Run a command in a Docker image already present on the provider.
    Docker(SubmitDockerArgs),
    /// Run a WebAssembly module (WASI preview 1; FILE is .wasm or .wat).
    Wasm(SubmitWasmArgs),
    /// Ask a model a provider serves; the answer streams as it is generated.
    Llm(SubmitLlmArgs),
}

#[derive(Debug, clap::Args)]
pub struct SubmitLlmArgs {
    /// The model, by the name providers advertise (`modchain peers` lists them).
    pub model: String,
    /// A system prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature (0 picks the most likely token every time).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Most tokens to generate (default 256).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// The same seed, model, prompt and options give the same answer.
    #[arg(long)]
    pub seed: Option<u32>,
    /// Print one JSON object at the end instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// The prompt, after `--`.
    #[arg(last = true, required = true, value_name = "PROMPT")]
    pub prompt: Vec<String>,
}

/// What every submission shares: how long, how much, and how to wait.
#[derive(Debug, clap::Args)]
pub struct SubmitCommon {
    /// Hard time limit, like 30s, 5m, 1h.
    #[arg(long, value_name = "DUR")]
    pub timeout: Option<String>,
    /// Most credits to pay, like 0.5 (six decimals at most).
    #[arg(long = "max-price", value_name = "CREDITS")]
    pub max_price: Option<String>,
    /// Follow the job until it ends, print its output and exit with its exit code.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON (with --wait: one object with the job's end).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SubmitDockerArgs {
    /// The image, e.g. busybox:latest.
    pub image: String,
    /// CPU cores.
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,
    /// Memory limit, like 512m or 2g.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// GPUs.
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// Environment variable for the container (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Give the container a network (only if the provider allows it).
    #[arg(long)]
    pub network: bool,
    #[command(flatten)]
    pub common: SubmitCommon,
    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct SubmitWasmArgs {
    /// The module: a .wasm binary or a .wat text file.
    pub file: PathBuf,
    /// Memory limit, like 64m.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Environment variable for the module (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Standard input for the module, as text.
    #[arg(long)]
    pub stdin: Option<String>,
    #[command(flatten)]
    pub common: SubmitCommon,
    /// Arguments for the module, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct DevnetArgs {
    /// How many nodes besides the bootstrap peer.
    #[arg(long, default_value_t = 4)]
    pub peers: usize,
    /// Where the data directories go (a fresh temporary directory if left out).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Exit once the demo job's receipt reached every peer.
    #[arg(long, hide = true)]
    pub exit_after_demo: bool,
    /// Print every node's events as they happen (adverts, auction, bids,
    /// execution, receipts), not just one line per phase.
    #[arg(long)]
    pub events: bool,
    /// A GGUF model for the last node to serve with its llm adapter (linked
    /// into its `models/` directory), so LLM jobs can run on the devnet.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
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
