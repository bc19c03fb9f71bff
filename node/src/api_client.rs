//! How CLI commands reach a running node: the URL in `<data-dir>/api.url`,
//! plain HTTP/1.1 over loopback.

use crate::datadir::DataDir;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Error)]
pub enum ApiClientError {
    #[error(
        "no node is running with data directory {0} (no api.url); start one with `modchain start`"
    )]
    NotRunning(String),
    #[error("the node at {url} is not answering ({reason}); is `modchain start` still running?")]
    Unreachable { url: String, reason: String },
    #[error("api.url holds `{0}`, not an http://host:port URL; restart the node to rewrite it")]
    BadUrl(String),
    #[error("the node answered {path} with status {status}: {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
    #[error("the node's answer to {path} is not JSON: {reason}")]
    NotJson { path: String, reason: String },
}

/// GETs `path` from the node and parses the JSON body.
pub async fn get_json(data_dir: &DataDir, path: &str) -> Result<serde_json::Value, ApiClientError> {
    let url = std::fs::read_to_string(data_dir.api_url_path())
        .map_err(|_| ApiClientError::NotRunning(data_dir.root().display().to_string()))?;
    let url = url.trim().to_string();
    let hostport = url
        .strip_prefix("http://")
        .map(|s| s.trim_end_matches('/'))
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .ok_or_else(|| ApiClientError::BadUrl(url.clone()))?
        .to_string();
    let unreachable = |reason: String| ApiClientError::Unreachable {
        url: url.clone(),
        reason,
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&hostport).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| unreachable("malformed HTTP response".into()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| unreachable("malformed HTTP status line".into()))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    if status != 200 {
        return Err(ApiClientError::Status {
            path: path.into(),
            status,
            body,
        });
    }
    serde_json::from_str(&body).map_err(|e| ApiClientError::NotJson {
        path: path.into(),
        reason: e.to_string(),
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
