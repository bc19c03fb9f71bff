//! `modchain benchmark`: a few seconds of CPU and memory-bandwidth work, and
//! the score the advert carries (higher is faster).

use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkResult {
    /// The single number the advert carries.
    pub score: u64,
    /// Integer multiply-xor rounds per second over all threads, in millions.
    pub cpu_mops: f64,
    /// Memory copy bandwidth in MB/s (one thread).
    pub memory_mb_per_s: f64,
    pub threads: u32,
    /// When it ran, ms since the epoch.
    pub measured_at: u64,
}

#[derive(Debug, Error)]
pub enum BenchmarkError {
    #[error(
        "the stored benchmark result at {path} is damaged ({reason}); run `modchain benchmark` again"
    )]
    Damaged { path: String, reason: String },
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
}

const CPU_TIME: Duration = Duration::from_millis(2500);
const MEMORY_TIME: Duration = Duration::from_millis(1500);

fn cpu_worker(deadline: Instant) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rounds = 0u64;
    while Instant::now() < deadline {
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        }
        rounds += 100_000;
    }
    black_box(x);
    rounds
}

/// Runs the measurement, calling `progress` with the fraction done.
pub fn run(mut progress: impl FnMut(f64)) -> BenchmarkResult {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let total = CPU_TIME + MEMORY_TIME;
    let start = Instant::now();
    let cpu_deadline = start + CPU_TIME;
    let handles: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || cpu_worker(cpu_deadline)))
        .collect();
    while Instant::now() < cpu_deadline {
        progress(start.elapsed().as_secs_f64() / total.as_secs_f64());
        std::thread::sleep(Duration::from_millis(100));
    }
    let rounds: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let cpu_mops = rounds as f64 / CPU_TIME.as_secs_f64() / 1e6;

    // Memory: copy 64 MiB back and forth; count bytes read plus written.
    let size = 64 << 20;
    let mut a = vec![1u8; size];
    let mut b = vec![0u8; size];
    let mem_start = Instant::now();
    let mut moved = 0u64;
    while mem_start.elapsed() < MEMORY_TIME {
        b.copy_from_slice(&a);
        black_box(&b);
        std::mem::swap(&mut a, &mut b);
        moved += 2 * size as u64;
        progress((CPU_TIME + mem_start.elapsed()).as_secs_f64() / total.as_secs_f64());
    }
    let memory_mb_per_s = moved as f64 / mem_start.elapsed().as_secs_f64() / 1e6;
    progress(1.0);
    BenchmarkResult {
        score: (cpu_mops + memory_mb_per_s / 100.0).round() as u64,
        cpu_mops,
        memory_mb_per_s,
        threads,
        measured_at: modchain_protocol::Timestamp::now_wall().as_millis(),
    }
}

/// The stored result, if `modchain benchmark` ever ran.
pub fn load(path: &Path) -> Result<Option<BenchmarkResult>, BenchmarkError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| BenchmarkError::Damaged {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(cause) => Err(BenchmarkError::Read {
            path: path.display().to_string(),
            cause,
        }),
    }
}
