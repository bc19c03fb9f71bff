//! How CLI commands reach a running node: the URL in `<data-dir>/api.url`,
//! plain HTTP/1.1 over loopback. Every call carries the bearer token from
//! `<data-dir>/api.token` (the API answers nothing without it); streams
//! (logs, events) are read as they arrive.

use crate::datadir::DataDir;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Error)]
pub enum ApiClientError {
    #[error(
        "no node is running with data directory {0} (no api.url); start one with `modchain start`"
    )]
    NotRunning(String),
    #[error(
        "the node at {url} is not answering ({reason}); start the node with `modchain start` (or check it is still running)"
    )]
    Unreachable { url: String, reason: String },
    #[error("api.url holds `{0}`, not an http://host:port URL; restart the node to rewrite it")]
    BadUrl(String),
    #[error("the node's answer to {path} is not JSON: {reason}")]
    NotJson { path: String, reason: String },
    #[error("the node refused {method} {path} (HTTP {status}): {body}")]
    Refused {
        method: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error(
        "cannot read the API token {0} ({1}); every call to the node needs it: is this the data directory of a running node, and may this user read it?"
    )]
    Token(String, String),
}

/// GETs `path` from the node and parses the JSON body.
pub async fn get_json(data_dir: &DataDir, path: &str) -> Result<serde_json::Value, ApiClientError> {
    Endpoint::locate(data_dir)?.call("GET", path, None).await
}

/// Where a running node's API is, and its token.
#[derive(Clone, Debug)]
pub struct Endpoint {
    url: String,
    hostport: String,
    token: String,
}

impl Endpoint {
    /// Reads `api.url` and `api.token`.
    pub fn locate(data_dir: &DataDir) -> Result<Self, ApiClientError> {
        let url = std::fs::read_to_string(data_dir.api_url_path())
            .map_err(|_| ApiClientError::NotRunning(data_dir.root().display().to_string()))?;
        let url = url.trim().to_string();
        let hostport = url
            .strip_prefix("http://")
            .map(|s| s.trim_end_matches('/'))
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| ApiClientError::BadUrl(url.clone()))?
            .to_string();
        let path = data_dir.api_token_path();
        let token = std::fs::read_to_string(&path)
            .map_err(|e| ApiClientError::Token(path.display().to_string(), e.to_string()))?
            .trim()
            .to_string();
        Ok(Endpoint {
            url,
            hostport,
            token,
        })
    }

    fn unreachable(&self, reason: impl Into<String>) -> ApiClientError {
        ApiClientError::Unreachable {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    fn request_head(&self, method: &str, path: &str, body: Option<&[u8]>) -> String {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nAuthorization: Bearer {}\r\nConnection: close\r\n",
            self.hostport, self.token
        );
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        req
    }

    /// Opens a request and reads the status line and headers; the body is
    /// left in the returned stream.
    pub async fn open(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<BodyStream, ApiClientError> {
        let body = body.map(|b| b.to_string().into_bytes());
        let mut stream = tokio::net::TcpStream::connect(&self.hostport)
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut req = self
            .request_head(method, path, body.as_deref())
            .into_bytes();
        if let Some(b) = body {
            req.extend_from_slice(&b);
        }
        stream
            .write_all(&req)
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        let mut reader = tokio::io::BufReader::new(stream);
        let mut status_line = String::new();
        reader
            .read_line(&mut status_line)
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.unreachable("malformed HTTP status line"))?;
        let mut chunked = false;
        let mut length = None;
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .await
                .map_err(|e| self.unreachable(e.to_string()))?;
            if n == 0 || line == "\r\n" || line == "\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some((name, value)) = lower.split_once(':') {
                match name.trim() {
                    "transfer-encoding" if value.contains("chunked") => chunked = true,
                    "content-length" => length = value.trim().parse::<u64>().ok(),
                    _ => {}
                }
            }
        }
        let mode = if chunked {
            BodyMode::Chunked { left: 0 }
        } else if let Some(n) = length {
            BodyMode::Length { left: n }
        } else {
            BodyMode::ToEnd
        };
        Ok(BodyStream {
            status,
            reader,
            mode,
            done: false,
            pending: Vec::new(),
        })
    }

    /// One request, whole answer: 2xx bodies parsed as JSON (empty → null),
    /// anything else returned as [`ApiClientError::Refused`] with the body as it is.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ApiClientError> {
        let exchange = async {
            let mut s = self.open(method, path, body).await?;
            let bytes = s
                .read_all()
                .await
                .map_err(|e| self.unreachable(e.to_string()))?;
            Ok::<_, ApiClientError>((s.status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .map_err(|_| self.unreachable("timed out"))??;
        let text = String::from_utf8_lossy(&bytes).to_string();
        if !(200..300).contains(&status) {
            return Err(ApiClientError::Refused {
                method: method.into(),
                path: path.into(),
                status,
                body: text.trim().to_string(),
            });
        }
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ApiClientError::NotJson {
            path: path.into(),
            reason: e.to_string(),
        })
    }

    /// Opens a streaming GET (`?follow=true` logs, events); refuses non-2xx.
    pub async fn stream(&self, path: &str) -> Result<BodyStream, ApiClientError> {
        let mut s = self.open("GET", path, None).await?;
        if !(200..300).contains(&s.status) {
            let bytes = tokio::time::timeout(Duration::from_secs(10), s.read_all())
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default();
            return Err(ApiClientError::Refused {
                method: "GET".into(),
                path: path.into(),
                status: s.status,
                body: String::from_utf8_lossy(&bytes).trim().to_string(),
            });
        }
        Ok(s)
    }
}

#[derive(Debug)]
enum BodyMode {
    Chunked { left: u64 },
    Length { left: u64 },
    ToEnd,
}

/// Reads at most `left` bytes (and at most `buf`'s length), counting them
/// off `left`; an early end of the stream ends the body.
async fn read_counted(
    reader: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    done: &mut bool,
    left: &mut u64,
    mut buf: Vec<u8>,
) -> std::io::Result<Option<Vec<u8>>> {
    let want = (*left).min(buf.len() as u64) as usize;
    let n = reader.read(&mut buf[..want]).await?;
    if n == 0 {
        *done = true;
        return Ok(None);
    }
    *left -= n as u64;
    buf.truncate(n);
    Ok(Some(buf))
}

/// A response body read as it arrives, whatever its framing.
#[derive(Debug)]
pub struct BodyStream {
    pub status: u16,
    reader: tokio::io::BufReader<tokio::net::TcpStream>,
    mode: BodyMode,
    done: bool,
    pending: Vec<u8>,
}

impl BodyStream {
    /// The next piece of the body, or `None` at its end.
    pub async fn next_bytes(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let mut buf = vec![0u8; 16 * 1024];
        match &mut self.mode {
            BodyMode::ToEnd => {
                let n = self.reader.read(&mut buf).await?;
                if n == 0 {
                    self.done = true;
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some(buf))
            }
            BodyMode::Length { left } => {
                if *left == 0 {
                    self.done = true;
                    return Ok(None);
                }
                read_counted(&mut self.reader, &mut self.done, left, buf).await
            }
            BodyMode::Chunked { left } => {
                if *left == 0 {
                    let mut line = String::new();
                    // Skip the CRLF that ends the previous chunk, then read a size line.
                    loop {
                        line.clear();
                        if self.reader.read_line(&mut line).await? == 0 {
                            self.done = true;
                            return Ok(None);
                        }
                        if !line.trim().is_empty() {
                            break;
                        }
                    }
                    let size = line.trim().split(';').next().unwrap_or("");
                    let n = u64::from_str_radix(size, 16).map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("bad chunk size line {line:?}"),
                        )
                    })?;
                    if n == 0 {
                        self.done = true;
                        return Ok(None);
                    }
                    *left = n;
                }
                read_counted(&mut self.reader, &mut self.done, left, buf).await
            }
        }
    }

    /// The next complete line (without its newline); a last unterminated
    /// line is returned at the end of the body.
    pub async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                return Ok(Some(text.trim_end_matches('\r').to_string()));
            }
            match self.next_bytes().await? {
                Some(b) => self.pending.extend_from_slice(&b),
                None => {
                    if self.pending.is_empty() {
                        return Ok(None);
                    }
                    let rest = std::mem::take(&mut self.pending);
                    return Ok(Some(String::from_utf8_lossy(&rest).to_string()));
                }
            }
        }
    }

    /// The rest of the body.
    pub async fn read_all(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = std::mem::take(&mut self.pending);
        while let Some(b) = self.next_bytes().await? {
            out.extend_from_slice(&b);
        }
        Ok(out)
    }
}
