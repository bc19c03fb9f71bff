//! The nodes' event streams as devnet shows them: peers named by their
//! devnet label, and either every event printed (`--events`) or only
//! gathered for the demo job's summary.

use crate::cli::api_client::Endpoint;
use crate::cli::format::{clock, credits};
use crate::datadir::DataDir;
use modchain_protocol::NodeId;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use tokio::sync::mpsc;

/// Names peers by their devnet label in the printed events.
#[derive(Debug, Default)]
pub(super) struct Labels(BTreeMap<String, String>);

impl Labels {
    pub(super) fn add(&mut self, peer_id: &str, label: &str) {
        self.0.insert(peer_id.to_string(), label.to_string());
        if let Ok(p) = peer_id.parse::<libp2p::PeerId>()
            && let Ok(n) = NodeId::from_peer_id(&p)
        {
            self.0.insert(n.to_hex(), label.to_string());
        }
    }

    pub(super) fn name(&self, s: &str) -> String {
        if let Some(l) = self.0.get(s) {
            return l.clone();
        }
        if s.len() > 20 && s.chars().all(|c| c.is_ascii_alphanumeric()) {
            return format!("{}…", &s[..10]);
        }
        // Free text: name the short node ids it mentions, keep it on one line.
        let mut text = s.trim_end().replace('\n', "⏎");
        for (id, label) in &self.0 {
            if id.len() == 64 && text.contains(&id[..8]) {
                text = text.replace(&id[..8], label);
            }
        }
        text
    }

    pub(super) fn value(&self, v: &Value) -> String {
        match v {
            Value::String(s) => self.name(s),
            Value::Array(a) => {
                let items: Vec<String> = a.iter().take(8).map(|x| self.value(x)).collect();
                let more = if a.len() > 8 {
                    format!(", +{}", a.len() - 8)
                } else {
                    String::new()
                };
                format!("[{}{more}]", items.join(", "))
            }
            Value::Object(m) => {
                let items: Vec<String> = m
                    .iter()
                    .filter(|(_, x)| !x.is_null())
                    .take(8)
                    .map(|(k, x)| format!("{k}={}", self.value(x)))
                    .collect();
                format!("{{{}}}", items.join(" "))
            }
            other => other.to_string(),
        }
    }
}

/// One event from one node's stream.
#[derive(Debug)]
pub(super) struct NodeEvent {
    /// The node's devnet label (`node-2`).
    pub(super) node: String,
    /// The event as the node's API sent it (`event`, `at_ms`, fields).
    pub(super) event: Value,
}

/// Forwards one node's event stream into `tx` until the stream ends.
pub(super) async fn follow_events(
    label: String,
    data_dir: DataDir,
    tx: mpsc::UnboundedSender<NodeEvent>,
) {
    let ep = match Endpoint::locate(&data_dir) {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("{label}: cannot follow events: {e}");
            return;
        }
    };
    let mut stream = match ep.stream("/api/v1/events").await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{label}: cannot follow events: {e}");
            return;
        }
    };
    while let Ok(Some(line)) = stream.next_line().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let ev = NodeEvent {
            node: label.clone(),
            event,
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}

/// Every node's events, in one place: printed as they come with
/// `--events`, and kept for whoever asks for one job's (the demo summary).
#[derive(Debug)]
pub(super) struct EventFeed {
    rx: mpsc::UnboundedReceiver<NodeEvent>,
    tx: mpsc::UnboundedSender<NodeEvent>,
    pub(super) labels: Labels,
    print: bool,
    adverts_seen: HashSet<String>,
    kept: Vec<NodeEvent>,
}

impl EventFeed {
    pub(super) fn new(print: bool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        EventFeed {
            rx,
            tx,
            labels: Labels::default(),
            print,
            adverts_seen: HashSet::new(),
            kept: Vec::new(),
        }
    }

    /// Starts following `label`'s events.
    pub(super) fn follow(&self, label: &str, data_dir: &DataDir) {
        tokio::spawn(follow_events(
            label.to_string(),
            data_dir.clone(),
            self.tx.clone(),
        ));
    }

    /// Takes what arrived since the last call: prints it with `--events`,
    /// keeps what concerns a job.
    pub(super) fn drain(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            if self.print {
                self.print_event(&ev);
            }
            if ev.event.get("job_id").is_some_and(Value::is_string) {
                self.kept.push(ev);
            }
        }
    }

    /// The events about `job_id` so far, in arrival order.
    pub(super) fn of_job<'a>(&'a self, job_id: &'a str) -> impl Iterator<Item = &'a NodeEvent> {
        self.kept
            .iter()
            .filter(move |e| e.event["job_id"].as_str() == Some(job_id))
    }

    fn print_event(&mut self, ev: &NodeEvent) {
        let name = ev.event["event"].as_str().unwrap_or("event").to_string();
        let fields: Vec<String> = ev
            .event
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| !matches!(k.as_str(), "at_ms" | "node" | "event") && !v.is_null())
            .map(|(k, v)| {
                if k.contains("price") || k == "max_total" {
                    format!("{k}={}", credits(v))
                } else {
                    format!("{k}={}", self.labels.value(v))
                }
            })
            .collect();
        let text = fields.join(" ");
        // Adverts repeat periodically: show each sender's first one only.
        if name.contains("advert") && !self.adverts_seen.insert(text.clone()) {
            return;
        }
        let at = ev.event["at_ms"]
            .as_u64()
            .unwrap_or_else(|| modchain_protocol::Timestamp::now_wall().as_millis());
        println!("{}  {:<7} {name:<22} {text}", clock(at), ev.node);
    }
}
