//! `modchain devnet`: a whole network on this machine. A bootstrap peer and N
//! nodes run as child processes of this executable on 127.0.0.1; devnet
//! waits for them to see each other and settle an election, submits an
//! embedded demo WASM job from node-1, and shows it going through auction,
//! execution, result and receipts on every peer. Then it stays up until
//! Ctrl-C, and the children go down with it.
//!
//! | Module | Holds |
//! |---|---|
//! | this file | the run, phase by phase |
//! | [`processes`] | the child processes: start, wait for, stop |
//! | [`events`] | the nodes' event streams, printed (`--events`) or kept for the demo's summary |
//! | [`progress`] | the numbered phases: live bars on a terminal, one line each otherwise |
//! | [`demo_module`] | the demo job's WebAssembly module |
//! | [`bootstrap_peer`] | the hidden `bootstrap-peer` command devnet starts |

mod bootstrap_peer;
mod demo_module;
mod events;
mod processes;
mod progress;

pub use bootstrap_peer::bootstrap_peer;
use demo_module::demo_wat;

use super::DevnetArgs;
use super::api_client::Endpoint;
use super::format::{credits, is_terminal_state, short};
use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use events::EventFeed;
use modchain_protocol::Keypair;
use processes::{Children, fresh_dir, start_bootstrap, start_node, wait_api};
use progress::Display;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the nodes get to see each other's adverts.
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);
/// How long the demo job gets, end to end.
const DEMO_WITHIN: Duration = Duration::from_secs(60);
/// How long its receipt gets to reach every ledger.
const RECEIPTS_WITHIN: Duration = Duration::from_secs(30);
/// The phases [`demo`] shows.
const PHASES: usize = 5;

/// One devnet node, as devnet knows it.
#[derive(Clone, Debug)]
struct NodeInfo {
    label: String,
    data_dir: DataDir,
    peer_id: String,
}

/// Peer ids whose adverts `node` holds.
async fn advert_holders(node: &NodeInfo) -> HashSet<String> {
    let Ok(ep) = Endpoint::locate(&node.data_dir) else {
        return HashSet::new();
    };
    let Ok(v) = ep.call("GET", "/api/v1/nodes", None).await else {
        return HashSet::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|n| !n["advert"].is_null())
        .filter_map(|n| n["peer_id"].as_str().map(String::from))
        .collect()
}

pub async fn run(args: DevnetArgs) -> Result<()> {
    if args.peers == 0 {
        bail!("--peers must be at least 1");
    }
    let dir = args.dir.clone().unwrap_or_else(fresh_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the devnet directory {}", dir.display()))?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let exe = std::env::current_exe().context("cannot find this executable to start the nodes")?;
    let mut children = Children::default();
    let result = tokio::select! {
        r = demo(&args, &dir, &exe, &mut children) => r,
        _ = crate::shutdown_signal() => {
            println!("interrupted; stopping the network");
            Ok(())
        }
    };
    children.stop().await;
    match &result {
        Ok(()) => println!("stopped; data directories kept in {}", dir.display()),
        Err(_) => eprintln!("devnet: logs are in {}/<node>/node.log", dir.display()),
    }
    result
}

/// The whole run: peers up, adverts converged, election settled, the demo
/// job through auction and execution, its receipt in every ledger.
async fn demo(args: &DevnetArgs, dir: &Path, exe: &Path, children: &mut Children) -> Result<()> {
    let t0 = Instant::now();
    let show = Display::new(PHASES);
    let mut feed = EventFeed::new(args.events);
    show.line(format!(
        "Modchain devnet: a bootstrap peer and {} nodes on 127.0.0.1, data in {}",
        args.peers,
        dir.display()
    ));

    // 1. Peers: the bootstrap peer, then each node (init, start with only
    // the bootstrap address), then their APIs.
    let phase = show.phase(1, "peers", Some(args.peers as u64 + 1));
    phase.progress(0, "bootstrap peer");
    let bootstrap = start_bootstrap(exe, dir, children).await?;
    for i in 1..=args.peers {
        let label = format!("node-{i}");
        let model = args.model.as_deref().filter(|_| i == args.peers);
        let p = start_node(exe, &label, &dir.join(&label), &bootstrap, model).await?;
        if let Some(model) = model {
            phase.detail(format!(
                "{label} serves the model {} with its llm adapter",
                model.display()
            ));
        }
        children.0.push(p);
    }
    let mut nodes = Vec::new();
    for (i, p) in children.0.iter_mut().skip(1).enumerate() {
        phase.progress(i as u64 + 1, format!("waiting for {}", p.label));
        let stats = wait_api(p, Duration::from_secs(30)).await?;
        let peer_id = stats["peer_id"]
            .as_str()
            .context("the node's stats carry no peer_id")?
            .to_string();
        feed.labels.add(&peer_id, &p.label);
        nodes.push(NodeInfo {
            label: p.label.clone(),
            data_dir: DataDir::resolve(Some(p.dir.clone())),
            peer_id,
        });
    }
    if let Ok(bs_key) = Keypair::load(&dir.join("bootstrap").join("node.key")) {
        feed.labels.add(&bs_key.peer_id().to_string(), "bootstrap");
    }
    for n in &nodes {
        feed.follow(&n.label, &n.data_dir);
    }
    phase.done(format!(
        "bootstrap peer and {} nodes up (bootstrap at {bootstrap})",
        nodes.len()
    ));

    // 2. Adverts: until every node holds every node's advert.
    let all: HashSet<String> = nodes.iter().map(|n| n.peer_id.clone()).collect();
    let want = (nodes.len() * nodes.len()) as u64;
    let phase = show.phase(2, "adverts", Some(want));
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let mut held = 0;
        for n in &nodes {
            held += advert_holders(n).await.intersection(&all).count() as u64;
        }
        phase.progress(held, "adverts held, over all nodes");
        feed.drain();
        if held >= want {
            break;
        }
        if let Some((what, log)) = children.exited() {
            bail!("{what}; last log lines:\n{log}");
        }
        if Instant::now() > deadline {
            bail!(
                "the nodes did not see each other within {CONVERGE_WITHIN:?} ({held} of {want} adverts held)"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    phase.done(format!("every node holds all {} adverts", nodes.len()));

    // 3. The election: wait (a few seconds at most) until every node
    // computes the same elected set, so the demo job meets a settled network.
    let phase = show.phase(3, "election", None);
    phase.status("waiting for every node to elect the same orchestrators");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut views = Vec::new();
        for n in &nodes {
            let view = match Endpoint::locate(&n.data_dir) {
                Ok(ep) => ep
                    .call("GET", "/api/v1/stats", None)
                    .await
                    .map(|s| s["elected"].clone())
                    .unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            views.push(view);
        }
        feed.drain();
        let settled = views
            .iter()
            .all(|v| v.as_array().is_some_and(|a| !a.is_empty()) && *v == views[0]);
        if settled || Instant::now() > deadline {
            phase.done(format!(
                "orchestrators for this epoch: {} ({})",
                feed.labels.value(&views[0]),
                if settled {
                    "the same on every node"
                } else {
                    "not yet the same on every node"
                }
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 4. The demo job, from node-1.
    let wat_path = dir.join("demo.wat");
    let wat = demo_wat();
    std::fs::write(&wat_path, &wat)
        .with_context(|| format!("cannot write {}", wat_path.display()))?;
    let client = &nodes[0];
    let phase = show.phase(4, "demo job", None);
    let ep = Endpoint::locate(&client.data_dir)?;
    let body = json!({
        "adapter": "wasm",
        "method": "run",
        "params": { "wat": wat },
        "timeout_ms": 30_000,
    });
    let submitted = Instant::now();
    let created = ep
        .call("POST", "/api/v1/jobs", Some(&body))
        .await
        .context("submitting the demo job")?;
    let job_id = created["job_id"]
        .as_str()
        .context("the node accepted the demo job but sent no job_id")?
        .to_string();
    let path = format!("/api/v1/jobs/{job_id}");
    let deadline = Instant::now() + DEMO_WITHIN;
    let job = loop {
        let job = ep.call("GET", &path, None).await?;
        feed.drain();
        phase.status(format!(
            "{} from {}: {}",
            short(&job_id),
            client.label,
            job["state"].as_str().unwrap_or("?")
        ));
        if job["state"].as_str().is_some_and(is_terminal_state) {
            break job;
        }
        if Instant::now() > deadline {
            bail!("the demo job did not finish within {DEMO_WITHIN:?}: {job}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = submitted.elapsed();
    // Let the provider's and orchestrator's last events arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    feed.drain();
    let mut details = story(&feed, &job_id);
    if job["state"].as_str() != Some("completed") {
        for line in details {
            phase.detail(line);
        }
        bail!("the demo job did not complete: {job}");
    }
    let stdout = job["stdout"].as_str().unwrap_or("").trim_end();
    details.push(format!("result     stdout: {stdout}"));
    for o in job["outputs"].as_array().into_iter().flatten() {
        details.push(format!(
            "           output {} ({} bytes) fetched to {}",
            o["name"].as_str().unwrap_or("?"),
            o["size"],
            o["path"].as_str().unwrap_or("?"),
        ));
    }
    phase.done(format!(
        "WASM job {} completed on {} in {} ms from submit to result, price {} credits",
        short(&job_id),
        feed.labels.value(&job["provider"]),
        took.as_millis(),
        credits(&job["price"])
    ));
    for line in details {
        show.detail(line);
    }

    // 5. The receipt, on every peer.
    let phase = show.phase(5, "receipt", Some(nodes.len() as u64));
    let deadline = Instant::now() + RECEIPTS_WITHIN;
    let mut holding: HashSet<String> = HashSet::new();
    let mut receipt = Value::Null;
    while holding.len() < nodes.len() {
        for n in &nodes {
            if holding.contains(&n.label) {
                continue;
            }
            let Ok(nep) = Endpoint::locate(&n.data_dir) else {
                continue;
            };
            let Ok(list) = nep.call("GET", "/api/v1/receipts", None).await else {
                continue;
            };
            if let Some(r) = list
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["job_id"].as_str() == Some(job_id.as_str()))
            {
                holding.insert(n.label.clone());
                receipt = r.clone();
                phase.progress(
                    holding.len() as u64,
                    format!("ledgers (latest {})", n.label),
                );
            }
        }
        feed.drain();
        if Instant::now() > deadline {
            bail!(
                "the demo job's receipt reached only {} of {} ledgers within {RECEIPTS_WITHIN:?}",
                holding.len(),
                nodes.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    phase.done(format!(
        "receipt {} ({}, signed by client and provider) in all {} ledgers, {} ms after submit",
        receipt["receipt_id"]
            .as_str()
            .map(short)
            .unwrap_or_default(),
        receipt["outcome"].as_str().unwrap_or("?"),
        nodes.len(),
        submitted.elapsed().as_millis()
    ));
    show.line(format!(
        "The network took its first job {:.1} s after devnet started.",
        t0.elapsed().as_secs_f64()
    ));

    if args.exit_after_demo {
        return Ok(());
    }
    let me = command_name(exe);
    let n1 = nodes[0].data_dir.root().display();
    show.line("");
    show.line("The network is up. Try, from another terminal:");
    show.line(format!(
        "  {me} --data-dir {n1} submit wasm {} --wait",
        wat_path.display()
    ));
    show.line(format!("  {me} --data-dir {n1} jobs"));
    show.line(format!("  {me} --data-dir {n1} receipts"));
    show.line(format!(
        "Ctrl-C stops the network. Logs: {}/<node>/node.log; `devnet --events` shows every event.",
        dir.display()
    ));
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        feed.drain();
        if let Some((what, log)) = children.exited() {
            bail!("{what}; last log lines:\n{log}");
        }
    }
}

/// How to name this executable in the commands devnet suggests: `modchain`
/// when that is what the shell finds on `PATH`, else its full path.
fn command_name(exe: &Path) -> String {
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            d.join("modchain")
                .canonicalize()
                .is_ok_and(|p| exe.canonicalize().is_ok_and(|e| e == p))
        })
    });
    if on_path {
        "modchain".to_string()
    } else {
        exe.display().to_string()
    }
}

/// The demo job's way through the network, from the events of every node:
/// who held the auction, the bids, the award, the execution.
fn story(feed: &EventFeed, job_id: &str) -> Vec<String> {
    let l = &feed.labels;
    let mut called = 0;
    let mut orchestrator = String::new();
    let mut bids = 0;
    let mut declines = Vec::new();
    let mut award = None;
    let mut executed = None;
    for e in feed.of_job(job_id) {
        let ev = &e.event;
        match ev["event"].as_str() {
            Some("auction_opened") => {
                orchestrator = e.node.clone();
                called = ev["providers"].as_array().map_or(0, Vec::len);
            }
            Some("bid_received") => bids += 1,
            Some("decline_received") => declines.push(format!(
                "{} ({})",
                l.value(&ev["provider"]),
                ev["reason"].as_str().unwrap_or("?")
            )),
            Some("awarded") => award = Some(ev.clone()),
            Some("execution_finished") => executed = Some((e.node.clone(), ev.clone())),
            _ => {}
        }
    }
    let mut lines = Vec::new();
    if !orchestrator.is_empty() {
        let mut line = format!(
            "auction    {orchestrator} called {called} providers for bids; {bids} bid{}",
            if bids == 1 { "" } else { "s" }
        );
        if !declines.is_empty() {
            line.push_str(&format!(", declined: {}", declines.join(", ")));
        }
        lines.push(line);
    }
    if let Some(a) = award {
        lines.push(format!(
            "award      to {} for at most {} credits, {} ms after the call",
            l.value(&a["provider"]),
            credits(&a["max_total"]),
            a["auction_ms"]
        ));
    }
    if let Some((node, x)) = executed {
        lines.push(format!(
            "execution  on {node}: {} in {} ms",
            x["exit"].as_str().unwrap_or("?"),
            x["wall_ms"]
        ));
    }
    lines
}
