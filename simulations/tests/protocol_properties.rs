//! Protocol properties, checked on small shipped scenarios run by the
//! protocol crate's own state machines.

mod common;

use modchain_sim::engine::Report;
use modchain_sim::units::{Duration, Rate};
use std::sync::OnceLock;

/// The shipped Byzantine scenario, shortened so the test stays quick in a
/// debug build: 13 minutes of jobs, then 7 minutes for the last ones to end.
fn byzantine_run() -> &'static Report {
    static RUN: OnceLock<Report> = OnceLock::new();
    RUN.get_or_init(|| {
        let mut s = common::scenario("small-byzantine.toml");
        s.duration = Duration::from_mins(20);
        s.workload.stop = Some(Duration::from_mins(13));
        s.workload.rate = Rate(20.0 / 60_000.0);
        common::run(s, None)
    })
}

#[test]
fn every_job_completes_or_fails_with_a_stated_reason() {
    let report = byzantine_run();
    assert!(
        report.job_records.len() > 150,
        "too few jobs to say anything: {}",
        report.job_records.len()
    );
    for job in &report.job_records {
        assert!(
            job.is_ended(),
            "a job submitted at {} ms never ended; last state {} ({})",
            job.submitted_ms,
            job.state,
            job.detail
        );
        assert!(
            matches!(job.state.as_str(), "completed" | "failed"),
            "a job ended as {} ({})",
            job.state,
            job.detail
        );
        if job.state == "failed" {
            assert!(
                !job.detail.trim().is_empty(),
                "a job failed without a reason"
            );
        }
    }
    let completed = report
        .job_records
        .iter()
        .filter(|j| j.state == "completed")
        .count();
    assert!(
        completed * 10 >= report.job_records.len() * 9,
        "only {completed} of {} jobs completed",
        report.job_records.len()
    );
}

#[test]
fn byzantine_providers_end_with_reputation_below_the_honest_median() {
    let report = byzantine_run();
    let last = report
        .reputation_rows
        .last()
        .map(|r| r.t_s)
        .expect("reputation was computed");
    let row = |class: &str| {
        report
            .reputation_rows
            .iter()
            .find(|r| r.t_s == last && r.class == class)
            .unwrap_or_else(|| panic!("no reputation row for {class}"))
    };
    let honest = row("honest");
    assert!(honest.median > 0.0, "honest providers earned no reputation");
    // Providers that walk away from jobs they won: failure receipts mark them.
    for class in ["never_deliver", "underbid"] {
        let r = row(class);
        assert!(
            r.max < honest.median,
            "{class} providers reach reputation {} against the honest median {}",
            r.max,
            honest.median
        );
    }
}

#[test]
fn jobs_submitted_on_both_sides_of_a_healed_partition_complete() {
    let mut s = common::scenario("partition-heal.toml");
    s.duration = Duration::from_mins(24);
    s.workload.stop = Some(Duration::from_mins(17));
    s.workload.rate = Rate(12.0 / 60_000.0);
    let report = common::run(s, None);
    let (cut, heal) = (10 * 60_000, 16 * 60_000);
    let mut per_side = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    for job in &report.job_records {
        if job.submitted_ms < cut || job.submitted_ms >= heal {
            continue;
        }
        let side = report.peer_regions[job.client as usize].as_str();
        let e = per_side.entry(side).or_default();
        e.0 += 1;
        if job.state == "completed" {
            e.1 += 1;
        } else {
            panic!(
                "a job submitted in {side} at {} s during the partition ended {}: {}",
                job.submitted_ms / 1000,
                job.state,
                job.detail
            );
        }
    }
    assert_eq!(
        per_side.len(),
        2,
        "jobs were not submitted on both sides: {per_side:?}"
    );
    for (side, (submitted, completed)) in per_side {
        assert!(
            submitted >= 10,
            "only {submitted} jobs submitted in {side} during the partition"
        );
        assert_eq!(submitted, completed);
    }
}
