//! How the CLI shows what the node answers: credits, ids, clocks, JSON and
//! tables; and which job states are final. Shared by the commands, `devnet`
//! and `mcp`.

use anyhow::Result;
use modchain_protocol::MICROS_PER_CREDIT;
use serde_json::Value;

/// Micro-credits as credits with six decimals.
pub fn credits(v: &Value) -> String {
    match v.as_u64() {
        Some(m) => format!("{}.{:06}", m / MICROS_PER_CREDIT, m % MICROS_PER_CREDIT),
        None if v.is_null() => "-".into(),
        None => v.to_string(),
    }
}

/// A value as table text: strings bare, null as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Long ids shortened for tables (the full ones are in `--json`).
pub fn short(s: &str) -> String {
    if s.len() > 16 && s.is_ascii() {
        format!("{}…{}", &s[..8], &s[s.len() - 4..])
    } else {
        s.to_string()
    }
}

pub fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// An array of objects as a table over the given columns; anything else as JSON.
pub fn print_table(v: &Value, columns: &[(&str, &str)], empty: &str) -> Result<()> {
    let Some(rows) = v.as_array() else {
        return print_json(v);
    };
    if rows.is_empty() {
        println!("{empty}");
        return Ok(());
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|(key, _)| {
                    let c = &r[*key];
                    if key.contains("price") || *key == "balance" {
                        credits(c)
                    } else if key.ends_with("_at_ms") {
                        c.as_u64().map_or_else(|| cell(c), clock)
                    } else {
                        short(&cell(c))
                    }
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, title))| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([title.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |items: Vec<String>| {
        items
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!(
        "{}",
        line(columns.iter().map(|(_, t)| t.to_string()).collect())
    );
    for r in cells {
        println!("{}", line(r));
    }
    Ok(())
}

/// UTC wall-clock time of day, `HH:MM:SS.mmm`.
pub fn clock(at_ms: u64) -> String {
    let day_ms = at_ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

/// Whether a job in `state` (as the API names it) has ended.
pub fn is_terminal_state(state: &str) -> bool {
    matches!(state, "completed" | "failed" | "cancelled")
}
