//! A peer that breaks the rules of `authority`: it may sign what it likes,
//! but an honest peer acts only on what its signer had the standing to send.

use modchain_protocol::testnet::{Executor, ReceiptParties, TestNet, settled_receipt, test_job};
use modchain_protocol::{
    CallForBids, Credits, Digest, Envelope, Event, ExitStatus, Keypair, MAX_BID_WINDOW_MS,
    MAX_START_WINDOW_MS, MINUTE, Message, NodeId, OrchestratorConfig, Outcome, SECOND,
};

struct World {
    net: TestNet,
    client: NodeId,
    orchestrator: NodeId,
    provider: NodeId,
}

fn world() -> World {
    let mut net = TestNet::new();
    let client = net.add_client(1);
    let orchestrator = net.add_orchestrator(2);
    let provider = net.add_provider(10, 100, Executor::default());
    net.run_for(SECOND);
    World {
        net,
        client,
        orchestrator,
        provider,
    }
}

fn refused(net: &TestNet, at: &NodeId, label: &str) -> u64 {
    net.peer(at)
        .stats()
        .refused
        .get(label)
        .copied()
        .unwrap_or(0)
}

/// A call for bids signed by `caller` for a job the client signed.
fn call(w: &World, caller: &Keypair, deadline_ms: u64) -> modchain_protocol::Signed {
    let now = w.net.now;
    let job = Envelope::seal(&Keypair::from_seed(1), now, Message::Job(test_job(now, 7)));
    Envelope::seal(
        caller,
        now,
        Message::CallForBids(CallForBids {
            job: job.into_envelope(),
            attempt: 0,
            bid_deadline: now.plus(deadline_ms),
        }),
    )
}

#[test]
fn a_provider_ignores_calls_for_bids_from_a_peer_not_elected() {
    let mut w = world();
    let free = w
        .net
        .peer(&w.provider)
        .provider()
        .expect("provider")
        .free_capacity();
    // A stranger asks for all the provider's capacity until the year 3000.
    let rogue = Keypair::from_seed(66);
    let far = 1000 * 365 * 24 * 60 * MINUTE;
    let message = call(&w, &rogue, far);
    w.net.inject(w.provider, message);
    w.net.run_for(SECOND);
    let p = w.net.peer(&w.provider).provider().expect("provider");
    assert_eq!(p.reservations(), 0, "nothing reserved for the stranger");
    assert_eq!(p.free_capacity(), free);
    assert_eq!(refused(&w.net, &w.provider, "unelected_call"), 1);

    // The honest network still completes a job.
    let job = w.net.submit(w.client, test_job(w.net.now, 1));
    assert!(w.net.run_until_cond(30 * SECOND, |n| {
        n.peer(&w.client)
            .job(&job)
            .is_some_and(|j| j.receipt.is_some())
    }));
}

#[test]
fn an_elected_orchestrator_cannot_hold_capacity_past_the_bid_window() {
    let mut w = world();
    let message = call(&w, &Keypair::from_seed(2), MAX_BID_WINDOW_MS + SECOND);
    w.net.inject(w.provider, message);
    w.net.run_for(SECOND);
    let p = w.net.peer(&w.provider).provider().expect("provider");
    assert_eq!(p.reservations(), 0);
    assert_eq!(refused(&w.net, &w.provider, "far_deadline"), 1);
    // Within the window, the same orchestrator's call is answered.
    let message = call(&w, &Keypair::from_seed(2), MAX_BID_WINDOW_MS);
    w.net.inject(w.provider, message);
    w.net.run_for(100);
    assert_eq!(
        w.net
            .peer(&w.provider)
            .provider()
            .expect("provider")
            .reservations(),
        1
    );
}

#[test]
fn a_job_asking_to_wait_more_than_a_day_is_refused() {
    let mut w = world();
    let now = w.net.now;
    let mut spec = test_job(now, 3);
    spec.start_by = now.plus(MAX_START_WINDOW_MS + MINUTE);
    let job = Envelope::seal(&Keypair::from_seed(1), now, Message::Job(spec));
    w.net.inject(w.orchestrator, job);
    w.net.run_for(SECOND);
    assert_eq!(refused(&w.net, &w.orchestrator, "far_start_by"), 1);
    assert_eq!(
        w.net
            .peer(&w.orchestrator)
            .orchestrator()
            .expect("orchestrator")
            .active_jobs(),
        0
    );
}

#[test]
fn receipts_between_throwaway_keys_count_for_nothing() {
    let mut w = world();
    let (a, b, fake) = (
        Keypair::from_seed(70),
        Keypair::from_seed(71),
        Keypair::from_seed(72),
    );
    let parties = ReceiptParties {
        client: &a,
        provider: &b,
        orchestrator: &fake,
    };
    let before = w.net.ledgers.get(&w.client).map_or(0, |l| l.len());
    for n in 0u8..20 {
        // Well-formed, fully signed, with an award: but by no orchestrator
        // any peer saw elected.
        let r = settled_receipt(
            &parties,
            Digest([n; 32]),
            Credits::from_credits(1_000),
            Outcome::Executed(ExitStatus::Exited(0)),
            w.net.now,
        );
        let message = Envelope::seal(&a, w.net.now, Message::Receipt(r));
        w.net.inject(w.client, message);
    }
    w.net.run_for(SECOND);
    assert_eq!(refused(&w.net, &w.client, "unelected_award"), 20);
    assert_eq!(w.net.ledgers.get(&w.client).map_or(0, |l| l.len()), before);

    // The same receipts with the elected orchestrator's award would count.
    let orchestrator = Keypair::from_seed(2);
    let parties = ReceiptParties {
        client: &a,
        provider: &b,
        orchestrator: &orchestrator,
    };
    let r = settled_receipt(
        &parties,
        Digest([99; 32]),
        Credits::from_credits(1),
        Outcome::Executed(ExitStatus::Exited(0)),
        w.net.now,
    );
    w.net
        .inject(w.client, Envelope::seal(&a, w.net.now, Message::Receipt(r)));
    w.net.run_for(SECOND);
    assert_eq!(
        w.net.ledgers.get(&w.client).map_or(0, |l| l.len()),
        before + 1
    );
}

#[test]
fn a_replayed_job_does_not_run_again_once_the_orchestrator_forgot_it() {
    let mut w = world();
    let now = w.net.now;
    let mut spec = test_job(now, 9);
    spec.start_by = now.plus(60 * MINUTE);
    let job = Envelope::seal(&Keypair::from_seed(1), now, Message::Job(spec));
    w.net.inject(w.orchestrator, job.clone());
    w.net.run_for(10 * SECOND);
    let runs = |net: &TestNet| {
        net.events
            .iter()
            .filter(|(_, _, e)| matches!(e, Event::ExecutionStarted { job_id, .. } if *job_id == job.id()))
            .count()
    };
    assert_eq!(runs(&w.net), 1);
    // Past the time the orchestrator remembers an ended job.
    w.net
        .run_for(OrchestratorConfig::default().remember_ended_ms + MINUTE);
    assert!(
        w.net
            .peer(&w.orchestrator)
            .orchestrator()
            .expect("orchestrator")
            .job_state(&job.id())
            .is_none(),
        "forgotten"
    );
    w.net.inject(w.orchestrator, job.clone());
    w.net.run_for(10 * SECOND);
    assert_eq!(runs(&w.net), 1, "the replay did not run it again");
    assert_eq!(refused(&w.net, &w.orchestrator, "replayed"), 1);
}

#[test]
fn a_flood_of_strangers_adverts_fills_the_table_only_up_to_its_cap_and_displaces_no_peer_with_a_record()
 {
    use modchain_protocol::{AdvertBook, AdvertRejection, CapabilityAdvert, Timestamp};
    let now = Timestamp(1_000_000);
    let advert = |candidate: bool, ttl: u64| CapabilityAdvert {
        sequence: 1,
        expires_at: now.plus(ttl),
        orchestrator_candidate: candidate,
        ..CapabilityAdvert::default()
    };
    let trusted = Keypair::from_seed(1).node_id();
    let known = Keypair::from_seed(2).node_id();
    let reputation = |n: &NodeId| match n {
        n if *n == trusted => 900,
        n if *n == known => 10,
        _ => 0,
    };
    let mut book = AdvertBook::with_cap(4);
    book.insert_ranked(now, trusted, advert(true, MINUTE), reputation)
        .expect("room");
    book.insert_ranked(now, known, advert(false, MINUTE), reputation)
        .expect("room");

    // A thousand fresh keys, each advertising for longer than the last.
    let mut refused = 0;
    for seed in 0..1000u64 {
        let stranger = Keypair::from_seed(10_000 + seed).node_id();
        let ttl = MINUTE + seed * 10;
        match book.insert_ranked(now, stranger, advert(true, ttl), reputation) {
            Ok(()) => {}
            Err(AdvertRejection::Full) => refused += 1,
            Err(other) => panic!("unexpected rejection {other:?}"),
        }
    }
    assert_eq!(book.len(), 4, "the table holds its cap, no more");
    assert!(book.get(&trusted).is_some(), "the trusted candidate stays");
    assert!(book.get(&known).is_some(), "a provider with a record stays");
    // Each stranger valid for longer displaced an earlier one: the two
    // slots left hold the last two, and nothing was refused.
    assert_eq!(refused, 0);
    assert_eq!(book.evicted(), 998);
    assert!(
        book.get(&Keypair::from_seed(10_999).node_id()).is_some()
            && book.get(&Keypair::from_seed(10_998).node_id()).is_some()
    );

    // A stranger that ranks below everything held is refused, and counted
    // as such by the peer; a node already held always gets its update in.
    let late = Keypair::from_seed(99).node_id();
    assert_eq!(
        book.insert_ranked(now, late, advert(false, SECOND), reputation),
        Err(AdvertRejection::Full)
    );
    assert_eq!(AdvertRejection::Full.label(), "table_full");
    let mut update = advert(false, SECOND);
    update.sequence = 2;
    book.insert_ranked(now, known, update, reputation)
        .expect("an update from a held node");

    // Once adverts expire, their slots are free for anyone.
    let later = now.plus(2 * MINUTE);
    let fresh = CapabilityAdvert {
        sequence: 1,
        expires_at: later.plus(MINUTE),
        ..CapabilityAdvert::default()
    };
    book.insert_ranked(later, late, fresh, reputation)
        .expect("expired adverts make room");
}

#[test]
fn an_orchestrator_that_loses_its_seat_hands_its_queued_jobs_back() {
    let mut net = TestNet::new();
    let client = net.add_client(1);
    let first: Vec<NodeId> = (2..5).map(|s| net.add_orchestrator(s)).collect();
    net.run_for(SECOND);
    // A job nobody can run yet (64 cores), allowed to wait most of a day.
    let mut spec = test_job(net.now, 7);
    spec.requirements.cores = 64;
    spec.start_by = net.now.plus(MAX_START_WINDOW_MS - MINUTE);
    let job = net.submit(client, spec);
    net.run_for(SECOND);
    let holder = first
        .iter()
        .copied()
        .find(|o| {
            net.peer(o)
                .orchestrator()
                .is_some_and(|r| r.active_jobs() == 1)
        })
        .expect("an elected orchestrator queued the job");

    // Three candidates with a record join; from the next epoch on they
    // hold the seats, and the first three none.
    let later: Vec<NodeId> = (5..8).map(|s| net.add_orchestrator(s)).collect();
    let reputation: modchain_protocol::ReputationTable =
        later.iter().map(|n| (*n, 1_000_000)).collect();
    for id in first.iter().chain(&later).chain([&client]) {
        net.peer_mut(id).set_reputation(reputation.clone());
    }
    let epoch = net.peer(&client).election().config().epoch_ms;
    net.run_for(2 * epoch + MINUTE);
    let now = net.now;
    let seated = net.peer_mut(&client).elected(now);
    assert!(
        !seated.contains(&holder),
        "the test needs the holder unseated: {seated:?}; candidates {:?}",
        net.peer(&client).election().candidates()
    );

    // The unseated orchestrator holds nothing; the job lives on with an
    // orchestrator that holds a seat.
    assert_eq!(
        net.peer(&holder).orchestrator().map(|o| o.active_jobs()),
        Some(0),
        "an unseated orchestrator kept a queued job"
    );
    let held_by: Vec<NodeId> = later
        .iter()
        .copied()
        .filter(|o| {
            net.peer(o)
                .orchestrator()
                .is_some_and(|r| r.active_jobs() == 1)
        })
        .collect();
    let state = net.peer(&client).job(&job).map(|j| j.state);
    assert!(
        !held_by.is_empty(),
        "no seated orchestrator holds the job (client sees {state:?})"
    );
}
