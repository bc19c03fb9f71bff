//! Metrics exposition shared by the node and the bootstrap peer: one
//! `prometheus-client` registry, served at `/metrics` as OpenMetrics to
//! scrapers that ask for it and as Prometheus' classic text format to the
//! rest (a plain `curl`, `promtool check metrics`).

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use libp2p::metrics::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// OpenMetrics' content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus' classic text format's content type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The answer to `GET /metrics`: OpenMetrics text when the scraper's
/// `Accept` names it (Prometheus itself does), else the classic format.
pub fn exposition(headers: &HeaderMap, openmetrics: String) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], openmetrics).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            to_prometheus_text(&openmetrics),
        )
            .into_response()
    }
}

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

/// Serves `GET /metrics` from `registry` on `addr` (port 0 picks one) in a
/// background task, for the life of the process: the bootstrap peer's only
/// HTTP endpoint. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Mutex<Registry>>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let registry = registry.clone();
            async move {
                let text = match registry.lock() {
                    Ok(r) => encode(&r),
                    // A panic elsewhere poisoned the lock; the registry
                    // itself is still whole (encoding only reads it).
                    Err(poisoned) => encode(&poisoned.into_inner()),
                };
                exposition(&headers, text)
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(local)
}

/// `serve`, then writes the URL to `metrics.url` in `data_dir` and logs it.
pub async fn serve_and_record(
    addr: SocketAddr,
    registry: Arc<Mutex<Registry>>,
    data_dir: &std::path::Path,
) -> Result<String, MetricsError> {
    let local = serve(addr, registry)
        .await
        .map_err(|cause| MetricsError::Bind { addr, cause })?;
    let url = format!("http://{local}/metrics");
    let file = data_dir.join("metrics.url");
    std::fs::write(&file, format!("{url}\n")).map_err(|cause| MetricsError::Write {
        path: file.display().to_string(),
        cause,
    })?;
    tracing::info!(%url, "serving metrics");
    Ok(url)
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot serve metrics on {addr}: {cause}; pick another address with --metrics HOST:PORT (port 0 for any free one)"
    )]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("cannot write {path}: {cause}")]
    Write { path: String, cause: std::io::Error },
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
