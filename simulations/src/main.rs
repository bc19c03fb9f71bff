//! `modchain-sim`: runs a scenario file on the model engine (or on real
//! libp2p swarms) and writes its figures.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use modchain_sim::engine::{Engine, Progress, Report};
use modchain_sim::output::{self, RunFigures};
use modchain_sim::scenario::Scenario;
use modchain_sim::swarm::{SwarmEngine, SwarmOptions};
use modchain_sim::units::{self, Duration};
use std::path::PathBuf;
use std::time::Instant;

/// Which engine runs the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum EngineKind {
    /// The protocol's state machines on a simulated network, in virtual
    /// time, deterministic from the seed; thousands of peers.
    Model,
    /// Real rust-libp2p swarms with the node's own behaviour over the
    /// memory transport, in one process, in wall-clock time.
    Libp2p,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    units::parse_duration(s)
        .filter(|d| d.ms() > 0)
        .ok_or_else(|| format!("expected a duration such as \"60s\", \"5m\", not {s:?}"))
}

#[derive(Debug, Parser)]
#[command(
    name = "modchain-sim",
    version,
    about = "Modchain simulation harness: the real protocol state machines on a simulated network, or on real libp2p swarms in one process"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario and write summary.json, run.json, CSV series and SVG plots.
    Run(RunArgs),
    /// Check a scenario file and print what it describes, without running it.
    Check { scenario: PathBuf },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check { scenario } => {
            let s = Scenario::load(&scenario)?;
            println!(
                "{}: {} peers in {} group(s), {} region(s), {} fault(s), {} simulated",
                s.name,
                s.total_peers(),
                s.peers.len(),
                s.network.regions.len(),
                s.faults.len(),
                s.duration
            );
            Ok(())
        }
    }
}

/// The `run` command's arguments, declared once: clap reads them and
/// `run` takes them as they are.
#[derive(Debug, Args)]
struct RunArgs {
    /// The scenario file (TOML).
    scenario: PathBuf,
    /// Seed for every random draw (default: the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory (default: sim-out/<scenario name>-seed<N>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Hand every advert to orchestrator candidates on arrival instead of
    /// coalescing them (slow at scale; for checking the model).
    #[arg(long)]
    eager_adverts: bool,
    /// Which engine runs it.
    #[arg(long, value_enum, default_value = "model")]
    engine: EngineKind,
    /// Run only this long (e.g. "60s", "5m") instead of the scenario's
    /// `duration`; the libp2p engine runs in wall-clock time.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// libp2p engine: start the run as soon as every peer's gossip mesh
    /// is up, without waiting for the Kademlia bootstrap lookups to end.
    #[arg(long)]
    start_on_mesh: bool,
    /// libp2p engine: how long the peers get to join (default 120s).
    #[arg(long, value_parser = parse_duration)]
    join_timeout: Option<Duration>,
}

fn run(args: RunArgs) -> Result<()> {
    let mut scenario = Scenario::load(&args.scenario)?;
    let plots = scenario.metrics.plots;
    let name = scenario.name.clone();
    let started = Instant::now();
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {msg}")
                .context("progress bar template")?,
        );
        bar
    };
    let mut on_progress = |p: Progress| {
        bar.set_length(p.duration_ms.max(1));
        bar.set_position(p.simulated_ms);
        bar.set_message(format!(
            "sim {:.0}s / {:.0}s · {} events · {} jobs submitted",
            p.simulated_ms as f64 / 1000.0,
            p.duration_ms as f64 / 1000.0,
            p.events,
            p.jobs_submitted,
        ));
    };
    let out_dir = |seed: u64, tag: &str| {
        args.out
            .clone()
            .unwrap_or_else(|| PathBuf::from("sim-out").join(format!("{name}-seed{seed}{tag}")))
    };
    let (report, seed, peers, out) = match args.engine {
        EngineKind::Model => {
            if args.start_on_mesh || args.join_timeout.is_some() {
                anyhow::bail!(
                    "--start-on-mesh and --join-timeout are libp2p engine options: the model \
                     engine's peers need no joining"
                );
            }
            if let Some(d) = args.duration {
                scenario.duration = d;
            }
            let mut engine = Engine::new(scenario, args.seed);
            if args.eager_adverts {
                engine.deliver_adverts_eagerly();
            }
            let (seed, peers) = (engine.seed(), engine.peers());
            let out = out_dir(seed, "");
            eprintln!(
                "{name}: {peers} peers, seed {seed}, model engine, writing to {}",
                out.display()
            );
            (engine.run(&mut on_progress), seed, peers, out)
        }
        EngineKind::Libp2p => {
            if args.eager_adverts {
                anyhow::bail!(
                    "--eager-adverts is a model engine option: the libp2p engine hands every \
                     message over as it arrives"
                );
            }
            let mut options = SwarmOptions {
                duration: args.duration,
                wait_for_dht: !args.start_on_mesh,
                ..SwarmOptions::default()
            };
            if let Some(t) = args.join_timeout {
                options.join_timeout = std::time::Duration::from_millis(t.ms());
            }
            let engine = SwarmEngine::new(scenario, args.seed, options)?;
            let (seed, peers) = (engine.seed(), engine.peers());
            let out = out_dir(seed, "-libp2p");
            eprintln!(
                "{name}: {peers} peers, seed {seed}, libp2p engine ({:.0} s of wall-clock time \
                 after the peers join), writing to {}",
                engine.duration_ms() as f64 / 1000.0,
                out.display()
            );
            (engine.run(&mut on_progress)?, seed, peers, out)
        }
    };
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    write(&report, &out, plots, wall, peers, seed)
}

fn write(
    report: &Report,
    out: &std::path::Path,
    plots: bool,
    wall: f64,
    peers: usize,
    seed: u64,
) -> Result<()> {
    output::write_report(report, out, plots)
        .with_context(|| format!("writing the results to {}", out.display()))?;
    let simulated = report.simulated_ms as f64 / 1000.0;
    let figures = RunFigures {
        wall_seconds: wall,
        peak_rss_bytes: output::peak_rss_bytes(),
        simulated_seconds: simulated,
        simulated_seconds_per_wall_second: simulated / wall.max(1e-9),
        events: report.events,
        events_per_wall_second: report.events as f64 / wall.max(1e-9),
        peers,
        seed,
    };
    output::write_run(&figures, out)?;
    print_table(&report.summary, &figures);
    Ok(())
}

fn print_table(s: &serde_json::Value, f: &RunFigures) {
    let g = |path: &[&str]| -> String {
        let mut v = s;
        for k in path {
            v = &v[*k];
        }
        match v {
            serde_json::Value::Null => "-".into(),
            other => other.to_string(),
        }
    };
    let rows: Vec<(&str, String)> = vec![
        ("scenario", g(&["scenario"]).trim_matches('"').to_string()),
        ("engine", g(&["engine"]).trim_matches('"').to_string()),
        ("peers", g(&["peers"])),
        ("seed", g(&["seed"])),
        ("simulated", format!("{} s", g(&["simulated_seconds"]))),
        (
            "wall",
            format!(
                "{:.2} s ({:.1}× real time)",
                f.wall_seconds, f.simulated_seconds_per_wall_second
            ),
        ),
        (
            "peak memory",
            format!("{:.1} MiB", f.peak_rss_bytes as f64 / (1 << 20) as f64),
        ),
        ("events", g(&["events"])),
        ("jobs submitted", g(&["jobs", "submitted"])),
        ("jobs completed", g(&["jobs", "completed"])),
        ("jobs failed", g(&["jobs", "failed"])),
        ("jobs lost with client", g(&["jobs", "lost_with_client"])),
        ("jobs unfinished", g(&["jobs", "unfinished"])),
        (
            "submit→award p50/p90/p99",
            format!(
                "{} / {} / {} ms",
                g(&["latency_ms", "submit_to_award", "p50"]),
                g(&["latency_ms", "submit_to_award", "p90"]),
                g(&["latency_ms", "submit_to_award", "p99"])
            ),
        ),
        (
            "submit→complete p50/p90/p99",
            format!(
                "{} / {} / {} ms",
                g(&["latency_ms", "submit_to_complete", "p50"]),
                g(&["latency_ms", "submit_to_complete", "p90"]),
                g(&["latency_ms", "submit_to_complete", "p99"])
            ),
        ),
        (
            "advert propagation p50/p90/p99/max",
            format!(
                "{} / {} / {} / {} ms",
                g(&["latency_ms", "advert_propagation", "p50"]),
                g(&["latency_ms", "advert_propagation", "p90"]),
                g(&["latency_ms", "advert_propagation", "p99"]),
                g(&["latency_ms", "advert_propagation", "max"])
            ),
        ),
        (
            "messages per peer (mean)",
            g(&["messages", "per_peer_mean"]),
        ),
        (
            "bytes per peer (mean)",
            g(&["messages", "bytes_per_peer_mean"]),
        ),
    ];
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v}");
    }
    if let serde_json::Value::Object(classes) = &s["reputation_final"] {
        for (class, row) in classes {
            println!(
                "{:<width$}  {}",
                format!("reputation median: {class}"),
                row["median"]
            );
        }
    }
}
