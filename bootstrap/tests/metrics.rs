//! The standalone `modchain-bootstrap` binary with `--metrics`: it serves
//! Prometheus text that Prometheus' own `promtool check metrics` accepts,
//! with rust-libp2p's swarm metrics in it, counting what reaches its
//! listener. Needs promtool (`apt-get install prometheus`; `.ci/run` does).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bootstrap peer, killed when the test lets go of it.
struct Bootstrap(Child);

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modchain-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `GET /metrics` at `url` (`http://HOST:PORT/metrics`): status and body.
fn scrape(url: &str) -> (u16, String) {
    let hostport = url
        .trim()
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("not an http URL: {url:?}"));
    let mut s = TcpStream::connect(hostport).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
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

/// `promtool check metrics` on `text`, or a panic saying how to get it.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install it with `apt-get install prometheus` (.ci/run does)"
            )
        });
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sum of the samples of `metric` (any labels).
fn total(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("bootstrap.log")).unwrap_or_default()
}

#[test]
fn bootstrap_metrics_pass_promtool_and_count_connections_to_its_listener() {
    let dir = temp_dir("bootstrap-metrics");
    let mut child = Command::new(env!("CARGO_BIN_EXE_modchain-bootstrap"))
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("bootstrap.log")).expect("log file"))
        .spawn()
        .expect("start modchain-bootstrap");
    let stdout = child.stdout.take().expect("stdout");
    let _bootstrap = Bootstrap(child);

    // Its first line is the address to dial; by then the metrics endpoint
    // is bound and its URL written to `metrics.url` (port 0 picks one).
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("the address line");
    let addr = first.trim();
    assert!(
        addr.starts_with("/ip4/127.0.0.1/tcp/") && addr.contains("/p2p/12D3KooW"),
        "the first line is not the bootstrap address: {addr:?}\n{}",
        log_of(&dir)
    );
    let url = std::fs::read_to_string(dir.join("metrics.url")).unwrap_or_else(|e| {
        panic!(
            "no metrics.url in the data directory ({e}):\n{}",
            log_of(&dir)
        )
    });
    let url = url.trim();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let (status, text) = scrape(url);
    assert_eq!(status, 200, "{text}");
    promtool_check(&text);
    for family in [
        "libp2p_swarm_dial_attempt_total",
        "libp2p_swarm_listener_error_total",
        "libp2p_identify_",
        "libp2p_kad_",
        "libp2p_gossipsub_",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}")),
            "no {family} in the bootstrap's metrics:\n{text}"
        );
    }

    // Something that is not libp2p connects to the listener: the swarm
    // counts the incoming connection (and its failed upgrade).
    let port = addr
        .strip_prefix("/ip4/127.0.0.1/tcp/")
        .and_then(|rest| rest.split('/').next())
        .expect("a tcp port");
    let mut stranger = TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect");
    let _ = stranger.write_all(b"not a libp2p handshake\r\n");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let (status, text) = scrape(url);
        assert_eq!(status, 200, "{text}");
        if total(&text, "libp2p_swarm_connections_incoming_total") >= 1.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the incoming connection was never counted:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(stranger);
    promtool_check(&text);
    let _ = std::fs::remove_dir_all(&dir);
}
