//! What the node's benchmarks share: when to run, how many times, and
//! the figures they print.

use std::time::Duration;

/// How many measured runs: `MODCHAIN_BENCH_RUNS`, 15 by default, at least
/// 3. `None` unless cargo bench asked (`cargo test --benches` runs bench
/// binaries with no arguments too; only `cargo bench` passes `--bench`):
/// then the bench says how to run it and stops.
pub fn runs(name: &str) -> Option<usize> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("{name} bench: run with `cargo bench -p modchain-node --bench {name}`");
        return None;
    }
    Some(
        std::env::var("MODCHAIN_BENCH_RUNS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(15)
            .max(3),
    )
}

pub fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
