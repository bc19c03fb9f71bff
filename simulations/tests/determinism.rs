//! The same scenario and seed give byte-identical output files.

mod common;

use modchain_sim::output;
use modchain_sim::units::Duration;
use std::collections::BTreeMap;
use std::path::Path;

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().to_string();
        out.insert(name, std::fs::read(entry.path()).expect("read output"));
    }
    out
}

fn short_run(seed: u64, minutes: u64, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    // Short, so the test stays quick in a debug build (signatures are slow there).
    let mut s = common::scenario("small-byzantine.toml");
    s.duration = Duration::from_mins(minutes);
    s.workload.start = Duration::from_secs(30);
    let report = common::run(s, Some(seed));
    output::write_report(&report, dir, true).expect("write outputs");
    files(dir)
}

#[test]
fn same_seed_gives_byte_identical_outputs() {
    let a = short_run(11, 3, &common::temp_dir("det-a"));
    let b = short_run(11, 3, &common::temp_dir("det-b"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for name in [
        "summary.json",
        "timeseries.csv",
        "reputation.csv",
        "orchestrators.csv",
        "jobs.csv",
        "jobs.svg",
        "latency.svg",
        "reputation.svg",
        "messages.svg",
        "orchestrator_load.svg",
    ] {
        assert!(a.contains_key(name), "{name} was not written");
        assert!(
            a[name] == b[name],
            "{name} differs between two runs of the same seed"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&a["summary.json"]).expect("summary is JSON");
    assert!(
        summary["jobs"]["submitted"].as_u64().unwrap_or(0) > 0,
        "the run submitted no jobs"
    );
}

#[test]
fn another_seed_gives_another_run() {
    let a = short_run(11, 2, &common::temp_dir("seed-a"));
    let b = short_run(12, 2, &common::temp_dir("seed-b"));
    assert_ne!(a["jobs.csv"], b["jobs.csv"]);
}

#[test]
fn coalescing_adverts_changes_no_decision() {
    // Candidates are handed provider adverts only when something may read
    // their advert table; every job must fare exactly as with eager delivery.
    let mut s = common::scenario("small-byzantine.toml");
    s.duration = Duration::from_mins(4);
    s.workload.start = Duration::from_secs(30);
    assert_coalescing_changes_no_job(s);
}

#[test]
fn coalescing_changes_no_decision_with_message_loss() {
    // With loss, every gossip transmission draws from the network's random
    // stream, so one flood more or less shifts every later latency. Eager
    // delivery used to wake peers that had not started yet (their first
    // timer published an early advert) and so diverged from the first
    // auctions of `churn-crash`; peers now arm no timer before they start.
    let mut s = common::scenario("churn-crash.toml");
    s.duration = Duration::from_mins(3);
    assert!(s.network.loss > 0.0);
    assert_coalescing_changes_no_job(s);
}

/// Runs `s` with adverts coalesced and delivered eagerly: every job must
/// fare the same (`jobs.csv` byte for byte), over enough jobs to matter.
fn assert_coalescing_changes_no_job(s: modchain_sim::scenario::Scenario) {
    let coalesced = common::run(s.clone(), None);
    let mut engine = modchain_sim::engine::Engine::new(s, None);
    engine.deliver_adverts_eagerly();
    let eager = engine.run(&mut |_| {});
    assert!(coalesced.job_records.len() > 50);
    assert_eq!(
        coalesced.jobs, eager.jobs,
        "jobs.csv differs between coalesced and eager advert delivery"
    );
}
