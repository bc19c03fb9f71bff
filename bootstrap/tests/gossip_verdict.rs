//! A bootstrap peer checks gossip with the nodes' own verdict
//! (`modchain_net::driver::screen_gossip`): a kind that nodes refuse on a
//! topic (any direct kind, an advert on the receipts topic) and a receipt
//! that does not check out stop at the bootstrap peer. The nodes it serves never receive it from the
//! bootstrap peer, so they never hold it against it: its gossipsub score with
//! them stays where an honest peer's is.
//!
//! Real swarms over TCP on 127.0.0.1: the bootstrap peer, a hostile node that
//! publishes the misrouted kind, and an honest node, both nodes run by the
//! same `SwarmDriver` as `modchain start`.

use libp2p::gossipsub::TopicHash;
use libp2p::{Multiaddr, PeerId};
use modchain_bootstrap::{BootstrapConfig, BootstrapPeer};
use modchain_net::behaviour::NodeBehaviour;
use modchain_net::driver::{BootstrapPeers, Verdict};
use modchain_net::{BootstrapAddr, DriverEvent, SwarmDriver, wire};
use modchain_protocol::testnet::{ReceiptParties, settled_receipt};
use modchain_protocol::{
    AdvertSync, Cancel, CapabilityAdvert, Credits, Envelope, ExitStatus, FetchOutput, Keypair,
    Message, Outcome, Peer, PeerConfig, Timestamp, Topic,
};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Generous: the mesh forms within a few heartbeats (1 s each) on an idle
/// machine; a loaded CI machine gets far more.
const WITHIN: Duration = Duration::from_secs(60);
/// Heartbeats the honest node gets to score what reached it.
const SCORING_TIME: Duration = Duration::from_secs(3);

fn loopback() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0".parse().expect("a multiaddr")
}

/// A node as `modchain start` builds one (no roles), joining through `boot`.
fn node(seed: u64, boot: &BootstrapAddr) -> (Keypair, SwarmDriver) {
    let key = Keypair::from_seed(seed);
    let lkey = key.to_libp2p();
    let gs = wire::gossipsub(&lkey).expect("gossipsub");
    let mut swarm = wire::build_swarm(lkey, None, |k, _| {
        NodeBehaviour::new(
            k,
            &wire::agent_string("modchain-test/0"),
            gs,
            wire::DEFAULT_MAX_CONNECTIONS,
        )
    })
    .expect("swarm");
    wire::join(
        &mut swarm,
        |s| &mut s.behaviour_mut().gossipsub,
        &[loopback()],
    )
    .expect("listen");
    let peer = Peer::new(key.clone(), PeerConfig::default());
    let bootstrap = BootstrapPeers::from_list(std::slice::from_ref(boot), Instant::now());
    let driver = SwarmDriver::new(swarm, peer, bootstrap, Box::new(|| 0.0));
    (key, driver)
}

/// What the honest node saw from the bootstrap peer.
#[derive(Debug, Default)]
struct Seen {
    /// An advert of the hostile node reached us (the relay path works).
    hostile_advert: bool,
    /// Gossip the bootstrap peer relayed that we refused.
    refused_from_bootstrap: Vec<String>,
}

/// Runs both nodes for one step: a swarm event or a tick.
async fn step(
    hostile: &mut SwarmDriver,
    honest: &mut SwarmDriver,
    boot: PeerId,
    hostile_id: PeerId,
    seen: &mut Seen,
) {
    tokio::select! {
        ev = hostile.next_swarm_event() => hostile.handle_swarm_event(Timestamp::now_wall(), ev),
        ev = honest.next_swarm_event() => honest.handle_swarm_event(Timestamp::now_wall(), ev),
        _ = tokio::time::sleep(Duration::from_millis(100)) => {
            hostile.dial_due();
            honest.dial_due();
        }
    }
    for driver in [&mut *hostile, &mut *honest] {
        let now = Timestamp::now_wall();
        if let Some(t) = driver.peer().poll_timeout()
            && t <= now
        {
            driver.peer_mut().handle_timeout(now);
        }
        while driver.poll_action(now).is_some() {}
    }
    while hostile.poll_event().is_some() {}
    while let Some(event) = honest.poll_event() {
        if let DriverEvent::Gossip { from, verdict, .. } = event {
            match verdict {
                Verdict::Taken(Some(signed))
                    if signed.signer().to_peer_id().ok() == Some(hostile_id) =>
                {
                    seen.hostile_advert = true;
                }
                Verdict::Rejected(_) | Verdict::Misrouted(_) if from == boot => {
                    seen.refused_from_bootstrap.push(format!("{verdict:?}"));
                }
                _ => {}
            }
        }
    }
}

fn bootstrap_rejections(registry: &std::sync::Mutex<libp2p::metrics::Registry>) -> String {
    let text = match registry.lock() {
        Ok(r) => modchain_net::metrics::encode(&r),
        Err(poisoned) => modchain_net::metrics::encode(&poisoned.into_inner()),
    };
    text.lines()
        .filter(|l| l.starts_with("modchain_bootstrap_rejected_messages_total"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_peer_refuses_what_nodes_refuse_and_keeps_their_trust() {
    let mut boot = BootstrapPeer::new(
        &Keypair::from_seed(1),
        &BootstrapConfig {
            listen: vec![loopback()],
            max_connections: 64,
        },
    )
    .expect("bootstrap peer");
    let boot_addr = boot.announce_address().await.expect("bootstrap address");
    let boot_id = boot.peer_id();
    let registry = boot.metrics_registry();
    let (stop, stopped) = oneshot::channel();
    let running = tokio::spawn(boot.run(stopped));
    let boot_list = BootstrapAddr::parse(&boot_addr.to_string()).expect("bootstrap list entry");

    let (hostile_key, mut hostile) = node(2, &boot_list);
    let (_, mut honest) = node(3, &boot_list);
    let hostile_id = hostile.local_peer_id();
    let now = Timestamp::now_wall();
    hostile.peer_mut().start(now);
    honest.peer_mut().start(now);

    // Joined: the hostile node's advert reached the honest one. The
    // bootstrap peer relays honest gossip.
    let mut seen = Seen::default();
    let deadline = Instant::now() + WITHIN;
    while !seen.hostile_advert {
        assert!(
            Instant::now() < deadline,
            "the hostile node's advert never reached the honest node within {WITHIN:?}"
        );
        step(&mut hostile, &mut honest, boot_id, hostile_id, &mut seen).await;
    }
    assert!(
        seen.refused_from_bootstrap.is_empty(),
        "refused before the attack: {:?}",
        seen.refused_from_bootstrap
    );

    // The attack: kinds that do not travel on the topic they are published
    // on (direct kinds on the adverts topic, an advert on the receipts
    // topic), and a receipt that no orchestrator awarded.
    let now = Timestamp::now_wall();
    let seal = |m: Message| Envelope::seal(&hostile_key, now, m).to_bytes();
    let job_id = modchain_protocol::Digest::of(b"a job");
    let adverts: TopicHash = wire::topic(Topic::Adverts).hash();
    let receipts: TopicHash = wire::topic(Topic::Receipts).hash();
    let forged = {
        let (a, b) = (Keypair::from_seed(70), Keypair::from_seed(71));
        let parties = ReceiptParties {
            client: &a,
            provider: &b,
            orchestrator: &a,
        };
        let mut r = settled_receipt(
            &parties,
            job_id,
            Credits(5),
            Outcome::Executed(ExitStatus::Exited(0)),
            now,
        );
        r.award.clear();
        r
    };
    let flood = [
        (
            adverts.clone(),
            seal(Message::AdvertSync(AdvertSync { known: Vec::new() })),
        ),
        (
            adverts.clone(),
            seal(Message::Cancel(Cancel {
                job_id,
                reason: "x".into(),
            })),
        ),
        (
            adverts.clone(),
            seal(Message::Fetch(FetchOutput {
                job_id,
                digest: job_id,
                offset: 0,
                length: 1,
            })),
        ),
        (
            receipts.clone(),
            seal(Message::Advert(CapabilityAdvert::default())),
        ),
        (receipts.clone(), seal(Message::Receipt(forged))),
    ];
    for (topic, bytes) in flood {
        hostile
            .swarm_mut()
            .behaviour_mut()
            .gossipsub
            .publish(topic, bytes)
            .expect("gossipsub takes the message");
    }

    // The bootstrap peer refuses them as the nodes would (or, as before the
    // shared verdict, relays them and the honest node refuses them from the
    // bootstrap peer: the assertions below then say so). Each refusal costs
    // the hostile node score at the bootstrap peer; from the third on it may
    // be graylisted there and the rest ignored unread, so three suffice.
    let refused = |text: &str| -> u64 {
        text.lines()
            .filter(|l| {
                l.contains("reason=\"misrouted\"") || l.contains("reason=\"invalid_receipt\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let deadline = Instant::now() + WITHIN;
    loop {
        let rejections = bootstrap_rejections(&registry);
        if refused(&rejections) >= 3 || !seen.refused_from_bootstrap.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bootstrap peer did not refuse the misrouted gossip within {WITHIN:?}; \
             its rejections: {rejections:?}"
        );
        step(&mut hostile, &mut honest, boot_id, hostile_id, &mut seen).await;
    }
    // ... and the honest node, scoring over a few heartbeats, has nothing
    // against it.
    let until = Instant::now() + SCORING_TIME;
    while Instant::now() < until {
        step(&mut hostile, &mut honest, boot_id, hostile_id, &mut seen).await;
    }
    assert!(
        seen.refused_from_bootstrap.is_empty(),
        "the bootstrap peer relayed what the honest node refused: {:?}",
        seen.refused_from_bootstrap
    );
    let score = honest
        .swarm()
        .behaviour()
        .gossipsub
        .peer_score(&boot_id)
        .expect("the honest node scores its peers");
    assert!(
        score >= 0.0,
        "the honest node scores the bootstrap peer {score}, below an honest peer's 0"
    );
    assert!(
        honest
            .swarm()
            .behaviour()
            .gossipsub
            .mesh_peers(&adverts)
            .any(|p| *p == boot_id),
        "the bootstrap peer left the honest node's adverts mesh"
    );

    let _ = stop.send(());
    let _ = running.await;
}
