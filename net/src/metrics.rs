//! The swarm's metrics as text: one `prometheus-client` registry (libp2p's
//! own metrics and the application's) encoded as OpenMetrics, or as
//! Prometheus' classic text format for tools that do not speak OpenMetrics.
//! Serving them over HTTP is the caller's business (the node's API, the
//! bootstrap peer's `--metrics` endpoint).

use libp2p::metrics::Registry;

/// Encodes a registry as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        // Encoding into a String cannot fail; if it ever did, a truncated
        // exposition would be worse than an empty one.
        out.clear();
    }
    out
}

/// The same exposition in Prometheus' classic text format (version 0.0.4),
/// for scrapers and tools that do not speak OpenMetrics (`promtool check
/// metrics` among them): counters are declared under their `_total` name,
/// info metrics become gauges named `_info`, and the OpenMetrics-only lines
/// (`# UNIT`, `# EOF`) go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // The encoder writes HELP, then TYPE: HELP waits for the name TYPE picks.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take(), None);
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{family}_total"), "counter"),
                "info" => (format!("{family}_info"), "gauge"),
                "unknown" => (family.to_string(), "untyped"),
                other => (family.to_string(), other),
            };
            flush_help(&mut out, help.take(), Some((family, &name)));
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        flush_help(&mut out, help.take(), None);
        out.push_str(line);
        out.push('\n');
    }
    flush_help(&mut out, help, None);
    out
}

/// Writes a held HELP line, under the family's new name if it was renamed.
fn flush_help(out: &mut String, help: Option<(&str, &str)>, renamed: Option<(&str, &str)>) {
    if let Some((name, text)) = help {
        let name = match renamed {
            Some((family, new)) if family == name => new,
            _ => name,
        };
        out.push_str(&format!("# HELP {name} {text}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_renames_counters_and_info_and_drops_openmetrics_lines() {
        let om = "# HELP a_messages Messages.\n# TYPE a_messages counter\na_messages_total{kind=\"x\"} 3\n# HELP a_build Build.\n# TYPE a_build info\na_build_info{version=\"1\"} 1\n# HELP a_wait Wait.\n# TYPE a_wait histogram\n# UNIT a_wait seconds\na_wait_sum 0.0\na_wait_count 0\na_wait_bucket{le=\"+Inf\"} 0\n# EOF\n";
        let text = to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP a_messages_total Messages.\n# TYPE a_messages_total counter\na_messages_total{kind=\"x\"} 3\n# HELP a_build_info Build.\n# TYPE a_build_info gauge\na_build_info{version=\"1\"} 1\n# HELP a_wait Wait.\n# TYPE a_wait histogram\na_wait_sum 0.0\na_wait_count 0\na_wait_bucket{le=\"+Inf\"} 0\n"
        );
    }
}
