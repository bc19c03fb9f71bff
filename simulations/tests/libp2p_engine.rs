//! The libp2p engine on 64 real swarms: every advert reaches every peer,
//! jobs complete, and their receipts reach every peer's ledger.

mod common;

use modchain_sim::scenario::{Churn, DurationDist};
use modchain_sim::swarm::{SwarmEngine, SwarmOptions};
use modchain_sim::units::{Duration, Rate};
use std::time::Instant;

#[test]
fn sixty_four_swarms_spread_adverts_and_complete_jobs() {
    // The comparison scenario, shortened: peers start within two seconds,
    // jobs of one second arrive from 3 s to 9 s, and the run ends at 40 s.
    // The engine runs for a set time and cannot stop on a condition, so
    // every condition asserted below gets a long tail instead: the first
    // adverts (by 2 s) and those a job's start or end sends (by about 11 s)
    // have over 25 s to land on a loaded machine, every job over 30 s to
    // end and its receipt to spread. No periodic advert is sent during the
    // run (its interval is longer than the run), so none lands in the last
    // seconds, which the measurement leaves out anyway.
    let mut s = common::scenario("advert-propagation-64.toml");
    assert_eq!(s.total_peers(), 64);
    s.workload.start = Duration::from_secs(3);
    s.workload.stop = Some(Duration::from_secs(9));
    s.workload.rate = Rate(1.0 / 1000.0);
    for class in &mut s.workload.jobs {
        class.duration = DurationDist::Constant {
            value: Duration::from_secs(1),
        };
    }
    s.protocol.advert_interval = Some(Duration::from_secs(60));
    let options = SwarmOptions {
        duration: Some(Duration::from_secs(40)),
        startup_spread: std::time::Duration::from_secs(2),
        ..SwarmOptions::default()
    };
    let started = Instant::now();
    let engine = SwarmEngine::new(s, None, options).expect("the scenario suits the engine");
    let report = engine.run(&mut |_| {}).expect("the run completes");
    let summary = &report.summary;
    let wall = started.elapsed();
    eprintln!(
        "64 swarms: joined in {} ms, whole test run {:.1} s\n{}",
        summary["network"]["join_ms"],
        wall.as_secs_f64(),
        serde_json::to_string_pretty(summary).unwrap_or_default()
    );

    assert_eq!(summary["engine"], "libp2p");
    assert_eq!(summary["peers"], 64);
    assert_eq!(
        summary["network"]["mesh_ready_peers"], 64,
        "every peer's gossip mesh came up"
    );
    let messages = &summary["messages"];
    let floods = messages["advert_floods_measured"].as_u64().unwrap_or(0);
    assert!(
        floods >= 64,
        "every peer's first advert is measured, got {floods} floods"
    );
    assert_eq!(
        messages["advert_coverage_min"].as_f64(),
        Some(1.0),
        "some advert did not reach all 63 other peers"
    );
    let propagation = &summary["latency_ms"]["advert_propagation"];
    assert_eq!(
        propagation["count"].as_u64(),
        Some(floods * 63),
        "one delay per advert and receiving peer"
    );

    let jobs = &summary["jobs"];
    let completed = jobs["completed"].as_u64().unwrap_or(0);
    assert!(
        completed >= 2,
        "jobs should complete over real swarms: {jobs}"
    );
    let ledger = &summary["ledger"];
    assert!(
        ledger["receipts_executed"].as_u64().unwrap_or(0) >= completed,
        "every completed job leaves an executed receipt: {ledger}"
    );
    assert!(
        ledger["receipts_stored_per_peer_min"].as_u64().unwrap_or(0) > 0,
        "receipts are gossiped into every peer's own ledger: {ledger}"
    );
    assert!(
        report.propagation.lines().count() > 1,
        "advert_propagation.csv has rows"
    );
}

#[test]
fn unsupported_scenarios_are_refused_with_the_reason() {
    let too_many = common::scenario("large-10k.toml");
    let err = SwarmEngine::new(too_many, None, SwarmOptions::default())
        .expect_err("10,000 swarms are refused")
        .to_string();
    assert!(
        err.contains("10000 peers") && err.contains("model engine"),
        "{err}"
    );

    let mut churn = common::scenario("advert-propagation-64.toml");
    churn.churn = Some(Churn {
        groups: vec!["providers".into()],
        session: Duration::from_mins(5),
        downtime: None,
        detect: Duration::from_secs(10),
    });
    let err = SwarmEngine::new(churn, None, SwarmOptions::default())
        .expect_err("churn is refused")
        .to_string();
    assert!(err.contains("[churn]"), "{err}");

    let faults = common::scenario("partition-heal.toml");
    let err = SwarmEngine::new(faults, None, SwarmOptions::default())
        .expect_err("faults are refused")
        .to_string();
    assert!(err.contains("[[faults]]"), "{err}");

    // Every reason at once: 300 peers, churn, faults and loss.
    let err = SwarmEngine::new(
        common::scenario("churn-crash.toml"),
        None,
        SwarmOptions::default(),
    )
    .expect_err("churn-crash is refused")
    .to_string();
    for reason in ["300 peers", "[churn]", "[[faults]]", "network.loss"] {
        assert!(err.contains(reason), "{reason} missing from: {err}");
    }

    let mut long = common::scenario("advert-propagation-64.toml");
    long.duration = Duration::from_mins(60);
    let err = SwarmEngine::new(long, None, SwarmOptions::default())
        .expect_err("an hour of wall-clock time is refused")
        .to_string();
    assert!(err.contains("--duration"), "{err}");

    let mut lossy = common::scenario("advert-propagation-64.toml");
    lossy.network.loss = 0.01;
    let err = SwarmEngine::new(lossy, None, SwarmOptions::default())
        .expect_err("message loss is refused")
        .to_string();
    assert!(err.contains("network.loss"), "{err}");
}
