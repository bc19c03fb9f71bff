//! The libp2p engine's machines on a handful of real swarms: what a peer
//! that joins an established network is handed.

use super::link::LinkTable;
use super::node::{LiveCounters, LiveNode, NodeSetup, NodeSummary};
use super::{Command, Observation};
use modchain_protocol::{Keypair, MINUTE, PeerConfig};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Peers in the network before the newcomer joins.
const ESTABLISHED: usize = 5;
/// How long each step may take before the test gives up.
const STEP: Duration = Duration::from_secs(60);

/// Adverts far apart, so that after the first round a peer can only learn
/// an advert by being handed it.
fn config() -> PeerConfig {
    PeerConfig {
        advert_interval_ms: 30 * MINUTE,
        advert_ttl_ms: 40 * MINUTE,
        ..PeerConfig::default()
    }
}

/// Waits for observations until `done` says so.
async fn until(
    rx: &mut mpsc::UnboundedReceiver<Observation>,
    what: &str,
    mut done: impl FnMut(Observation) -> bool,
) {
    let deadline = Instant::now() + STEP;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(o)) => {
                if done(o) {
                    return;
                }
            }
            Ok(None) => panic!("every machine stopped while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

#[test]
fn a_newcomer_is_handed_every_advert_by_at_most_two_peers() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let n = ESTABLISHED + 1;
        let newcomer = ESTABLISHED;
        let table = Arc::new(LinkTable::new(
            7,
            vec![0; n],
            vec![0.0; n],
            &[vec![2.0]],
            0.0,
        ));
        let counters = Arc::new(LiveCounters::default());
        let (obs_tx, mut obs_rx) = mpsc::unbounded_channel();
        let mut commands = Vec::new();
        let mut handles = Vec::new();
        for i in 0..n {
            let key = Keypair::from_seed(100 + i as u64);
            let setup = NodeSetup {
                index: i as u32,
                key,
                config: config(),
                byzantine: None,
                pretrusted: Vec::new(),
                seed: 7,
                durations: Arc::new(Vec::new()),
                job_classes: Arc::new(Mutex::new(HashMap::new())),
                table: Arc::clone(&table),
                counters: Arc::clone(&counters),
                mesh_target: ESTABLISHED - 1,
            };
            let node = LiveNode::new(setup, obs_tx.clone()).expect("a swarm");
            let (tx, rx) = mpsc::unbounded_channel();
            handles.push(tokio::spawn(node.run(rx)));
            commands.push(tx);
        }
        drop(obs_tx);
        let send = |i: usize, c: Command| {
            commands[i].send(c).expect("the machine runs");
        };

        let mut addrs = vec![None; n];
        until(&mut obs_rx, "every peer to listen", |o| {
            if let Observation::Listening {
                peer,
                peer_id,
                addr,
            } = o
            {
                table.register(peer, &addr);
                addrs[peer as usize] = Some((peer_id, addr));
            }
            addrs.iter().all(Option::is_some)
        })
        .await;
        let bootstrap = addrs[0].clone().map(|(id, addr)| {
            let addr = addr.with_p2p(id).unwrap_or_else(|a| a);
            vec![(id, addr)]
        });
        let bootstrap = bootstrap.expect("peer 0 listens");

        // The established network: joined, then started, until every peer
        // saw every other's first advert.
        for i in 0..ESTABLISHED {
            send(
                i,
                Command::Join {
                    bootstrap: bootstrap.clone(),
                },
            );
        }
        let mut settled = HashSet::new();
        until(&mut obs_rx, "the established peers to join", |o| {
            if let Observation::DhtSettled { peer } = o {
                settled.insert(peer);
            }
            settled.len() == ESTABLISHED
        })
        .await;
        for i in 0..ESTABLISHED {
            send(i, Command::Start { at: Instant::now() });
        }
        let mut origin = HashMap::new();
        let mut seen: HashSet<(u32, u32)> = HashSet::new();
        let mut early = Vec::new();
        until(&mut obs_rx, "the first adverts to spread", |o| {
            match o {
                Observation::AdvertPublished { peer, id, .. } => {
                    origin.insert(id, peer);
                    for (p, i) in std::mem::take(&mut early) {
                        match origin.get(&i) {
                            Some(&from) => {
                                seen.insert((p, from));
                            }
                            None => early.push((p, i)),
                        }
                    }
                }
                Observation::AdvertArrived { peer, id, .. } => match origin.get(&id) {
                    Some(&from) => {
                        seen.insert((peer, from));
                    }
                    None => early.push((peer, id)),
                },
                _ => {}
            }
            seen.len() == ESTABLISHED * (ESTABLISHED - 1)
        })
        .await;

        // The newcomer starts (as a node does, before it dials) and joins.
        let shared_before = counters.adverts_shared.load(Ordering::Relaxed);
        send(newcomer, Command::Start { at: Instant::now() });
        send(newcomer, Command::Join { bootstrap });
        until(
            &mut obs_rx,
            "the newcomer to join",
            |o| matches!(o, Observation::DhtSettled { peer } if peer as usize == newcomer),
        )
        .await;
        // The adverts are handed over after the join, in bundles, and no
        // observation reports a bundle taken: wait until the established
        // peers have sent the newcomer all of theirs (the shared counters
        // are the one thing the machines show while they run).
        let deadline = Instant::now() + STEP;
        loop {
            let shared = counters.adverts_shared.load(Ordering::Relaxed) - shared_before;
            if shared >= ESTABLISHED as u64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after {STEP:?} the newcomer was handed {shared} of the {ESTABLISHED} adverts"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        for i in 0..n {
            send(i, Command::Stop);
        }
        let mut summaries: Vec<NodeSummary> = Vec::new();
        for h in handles {
            summaries.push(h.await.expect("the machine stopped cleanly"));
        }
        let joined = &summaries[newcomer];
        eprintln!("the newcomer: {joined:?}");
        assert!(
            joined.connected >= 3,
            "the newcomer is connected to several peers: {joined:?}"
        );
        assert_eq!(
            joined.adverts_held, n,
            "the newcomer learned every advert: {joined:?}"
        );
        assert!(
            joined.advert_senders <= 2,
            "adverts were handed to the newcomer by {} peers: {joined:?}",
            joined.advert_senders
        );
        assert!(
            joined.advert_messages_received <= 2,
            "adverts came in {} direct messages, not in one bundle per peer: {joined:?}",
            joined.advert_messages_received
        );
        for (i, s) in summaries.iter().enumerate().take(ESTABLISHED) {
            assert_eq!(
                s.advert_messages_received, 0,
                "established peer {i} was handed adverts again: {s:?}"
            );
        }
    });
}
