//! `modchain-sim`: runs a scenario file on the model engine and writes its figures.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use modchain_sim::engine::{Engine, Progress};
use modchain_sim::output::{self, RunFigures};
use modchain_sim::scenario::Scenario;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(
    name = "modchain-sim",
    version,
    about = "Modchain simulation harness: the real protocol state machines on a simulated network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario and write summary.json, run.json, CSV series and SVG plots.
    Run {
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
    },
    /// Check a scenario file and print what it describes, without running it.
    Check { scenario: PathBuf },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            scenario,
            seed,
            out,
            quiet,
            eager_adverts,
        } => run(scenario, seed, out, quiet, eager_adverts),
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

fn run(
    path: PathBuf,
    seed: Option<u64>,
    out: Option<PathBuf>,
    quiet: bool,
    eager_adverts: bool,
) -> Result<()> {
    let scenario = Scenario::load(&path)?;
    let plots = scenario.metrics.plots;
    let name = scenario.name.clone();
    let started = Instant::now();
    let mut engine = Engine::new(scenario, seed);
    if eager_adverts {
        engine.deliver_adverts_eagerly();
    }
    let seed = engine.seed();
    let peers = engine.peers();
    let out = out.unwrap_or_else(|| PathBuf::from("sim-out").join(format!("{name}-seed{seed}")));
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {msg}")
                .context("progress bar template")?,
        );
        bar
    };
    eprintln!(
        "{name}: {peers} peers, seed {seed}, writing to {}",
        out.display()
    );
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
    let report = engine.run(&mut on_progress);
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    output::write_report(&report, &out, plots)
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
    output::write_run(&figures, &out)?;
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
            "advert propagation p50/p99",
            format!(
                "{} / {} ms",
                g(&["latency_ms", "advert_propagation", "p50"]),
                g(&["latency_ms", "advert_propagation", "p99"])
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
