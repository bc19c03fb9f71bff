//! SVG plots of the main series, drawn with plotters' SVG backend.

use crate::metrics::{OrchestratorRow, ReputationRow, TimeRow};
use plotters::prelude::*;
use std::collections::BTreeMap;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot draw the plot `{name}`: {message}")]
pub struct PlotError {
    pub name: String,
    pub message: String,
}

/// Points of a line.
pub type Points = Vec<(f64, f64)>;
/// A named line.
pub type Series = (String, Points);

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws lines over simulated minutes; returns the SVG text.
pub fn line_chart(
    name: &str,
    title: &str,
    y_label: &str,
    series: &[Series],
) -> Result<String, PlotError> {
    let err = |e: String| PlotError {
        name: name.to_string(),
        message: e,
    };
    let (mut x_max, mut y_max) = (1.0f64, 1.0f64);
    for (_, pts) in series {
        for (x, y) in pts {
            x_max = x_max.max(*x);
            y_max = y_max.max(*y);
        }
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max * 1.05)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("simulated minutes")
            .y_desc(y_label)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (i, (label, pts)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(svg)
}

fn minutes(t_s: f64) -> f64 {
    t_s / 60.0
}

/// Every plot of a run, as (file name, SVG text).
pub fn all(
    time: &[TimeRow],
    reputation: &[ReputationRow],
    orchestrators: &[OrchestratorRow],
) -> Result<Vec<(String, String)>, PlotError> {
    let mut out = Vec::new();
    let mut cum = (0.0, 0.0, 0.0);
    let (mut sub, mut done, mut fail) = (Vec::new(), Vec::new(), Vec::new());
    for r in time {
        cum.0 += r.submitted as f64;
        cum.1 += r.completed as f64;
        cum.2 += r.failed as f64;
        sub.push((minutes(r.t_s), cum.0));
        done.push((minutes(r.t_s), cum.1));
        fail.push((minutes(r.t_s), cum.2));
    }
    out.push((
        "jobs.svg".to_string(),
        line_chart(
            "jobs.svg",
            "Jobs over time (cumulative)",
            "jobs",
            &[
                ("submitted".into(), sub),
                ("completed".into(), done),
                ("failed or lost".into(), fail),
            ],
        )?,
    ));
    let pick = |f: fn(&TimeRow) -> f64| -> Vec<(f64, f64)> {
        time.iter().map(|r| (minutes(r.t_s), f(r))).collect()
    };
    out.push((
        "latency.svg".to_string(),
        line_chart(
            "latency.svg",
            "Job latency per interval",
            "seconds",
            &[
                (
                    "submit→award p50".into(),
                    pick(|r| r.award_p50_ms as f64 / 1000.0),
                ),
                (
                    "submit→award p90".into(),
                    pick(|r| r.award_p90_ms as f64 / 1000.0),
                ),
                (
                    "submit→complete p50".into(),
                    pick(|r| r.complete_p50_ms as f64 / 1000.0),
                ),
                (
                    "submit→complete p90".into(),
                    pick(|r| r.complete_p90_ms as f64 / 1000.0),
                ),
            ],
        )?,
    ));
    out.push((
        "messages.svg".to_string(),
        line_chart(
            "messages.svg",
            "Messages per online peer per interval",
            "messages",
            &[("messages per peer".into(), pick(|r| r.messages_per_peer))],
        )?,
    ));
    let mut classes: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for r in reputation {
        classes
            .entry(r.class.as_str())
            .or_default()
            .push((minutes(r.t_s), r.median));
    }
    let rep: Vec<Series> = classes
        .into_iter()
        .map(|(c, pts)| (format!("{c} (median)"), pts))
        .collect();
    out.push((
        "reputation.svg".to_string(),
        line_chart(
            "reputation.svg",
            "Provider reputation by behaviour",
            "reputation (0..1)",
            &rep,
        )?,
    ));
    let mut per: BTreeMap<u32, Vec<(f64, f64)>> = BTreeMap::new();
    for r in orchestrators {
        per.entry(r.peer)
            .or_default()
            .push((minutes(r.t_s), r.load.accepted as f64));
    }
    // The busiest eight, so the legend stays readable.
    let mut ranked: Vec<(u32, f64, Points)> = per
        .into_iter()
        .map(|(p, pts)| (p, pts.iter().map(|x| x.1).sum::<f64>(), pts))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let load: Vec<Series> = ranked
        .into_iter()
        .take(PALETTE.len())
        .map(|(p, _, pts)| (format!("peer {p}"), pts))
        .collect();
    out.push((
        "orchestrator_load.svg".to_string(),
        line_chart(
            "orchestrator_load.svg",
            "Jobs accepted per orchestrator per interval",
            "jobs",
            &load,
        )?,
    ));
    Ok(out)
}
