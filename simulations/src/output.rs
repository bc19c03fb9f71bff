//! Writes a run's files: `summary.json`, the CSV series, the plots and
//! `run.json` (the only file with wall-clock figures, so the only one that
//! differs between two runs of the same seed).

use crate::engine::Report;
use crate::plot::{self, PlotError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum OutputError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("cannot encode {what} as JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
}

/// Wall-clock figures of a run.
#[derive(Clone, Debug, Serialize)]
pub struct RunFigures {
    pub wall_seconds: f64,
    pub peak_rss_bytes: u64,
    pub simulated_seconds: f64,
    pub simulated_seconds_per_wall_second: f64,
    pub events: u64,
    pub events_per_wall_second: f64,
    pub peers: usize,
    pub seed: u64,
}

/// Peak resident memory of this process (VmHWM), in bytes; 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), OutputError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|source| OutputError::Write { path, source })
}

/// Writes every file but `run.json`.
pub fn write_report(report: &Report, dir: &Path, plots: bool) -> Result<(), OutputError> {
    std::fs::create_dir_all(dir).map_err(|source| OutputError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let summary =
        serde_json::to_string_pretty(&report.summary).map_err(|source| OutputError::Json {
            what: "the summary",
            source,
        })?;
    write(dir, "summary.json", &(summary + "\n"))?;
    write(dir, "timeseries.csv", &report.timeseries)?;
    write(dir, "reputation.csv", &report.reputation)?;
    write(dir, "orchestrators.csv", &report.orchestrators)?;
    write(dir, "jobs.csv", &report.jobs)?;
    write(dir, "advert_propagation.csv", &report.propagation)?;
    if plots {
        for (name, svg) in plot::all(
            &report.time_rows,
            &report.reputation_rows,
            &report.orchestrator_rows,
        )? {
            write(dir, &name, &svg)?;
        }
    }
    Ok(())
}

pub fn write_run(figures: &RunFigures, dir: &Path) -> Result<(), OutputError> {
    let text = serde_json::to_string_pretty(figures).map_err(|source| OutputError::Json {
        what: "the run figures",
        source,
    })?;
    write(dir, "run.json", &(text + "\n"))
}
