//! The whole job flow through the deterministic test network: one client,
//! one orchestrator and three providers, with the failures the protocol
//! must survive.

use modchain_protocol::testnet::{Executor, TestNet, test_advert, test_job, test_provider};
use modchain_protocol::{
    AdapterInfo, AwardCheck, ClientConfig, ElectionConfig, Event, ExitStatus, JobId, JobState,
    ModelInfo, NodeId, OrchestratorConfig, Outcome, PeerConfig, SECOND,
};

struct World {
    net: TestNet,
    client: NodeId,
    orchestrator: NodeId,
    providers: Vec<NodeId>,
}

/// Client, orchestrator, and three providers priced 100, 200, 300 per core-second.
fn world() -> World {
    let mut net = TestNet::new();
    let client = net.add_client(1);
    let orchestrator = net.add_orchestrator(2);
    let providers = vec![
        net.add_provider(10, 100, Executor::default()),
        net.add_provider(11, 200, Executor::default()),
        net.add_provider(12, 300, Executor::default()),
    ];
    // Let the adverts spread.
    net.run_for(SECOND);
    World {
        net,
        client,
        orchestrator,
        providers,
    }
}

fn state(w: &World, job: &JobId) -> JobState {
    w.net
        .peer(&w.client)
        .job(job)
        .map(|j| j.state)
        .unwrap_or(JobState::Failed)
}

fn settled(w: &World, job: &JobId) -> bool {
    w.net
        .peer(&w.client)
        .job(job)
        .is_some_and(|j| j.receipt.is_some())
}

/// The orchestrators the client ranks for `spec` now, first choice first.
fn ranking_of(net: &TestNet, client: NodeId, spec: &modchain_protocol::JobSpec) -> Vec<NodeId> {
    let now = net.now;
    let signed = net
        .peer(&client)
        .client()
        .prepare(now, spec.clone())
        .expect("valid");
    net.peer(&client)
        .election()
        .clone()
        .ranking(now, &signed.id())
}

/// A test job (of the first 64 nonces) whose orchestrator ranking, as the
/// client computes it now, satisfies `wanted`.
fn job_ranked(
    net: &TestNet,
    client: NodeId,
    wanted: impl Fn(&[NodeId]) -> bool,
) -> Option<modchain_protocol::JobSpec> {
    (0..64)
        .map(|nonce| test_job(net.now, nonce))
        .find(|spec| wanted(&ranking_of(net, client, spec)))
}

#[test]
fn job_flows_from_submit_to_receipt_on_every_peer() {
    let mut w = world();
    let now = w.net.now;
    let job = w.net.submit(w.client, test_job(now, 1));
    assert!(w.net.run_until_cond(30 * SECOND, |n| {
        n.peer(&w.client)
            .job(&job)
            .is_some_and(|j| j.receipt.is_some())
    }));
    let cj = w
        .net
        .peer(&w.client)
        .job(&job)
        .expect("client knows its job")
        .clone();
    assert_eq!(cj.state, JobState::Completed);
    let states: Vec<JobState> = cj.history.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        states,
        vec![
            JobState::Queued,
            JobState::Bidding,
            JobState::Awarded,
            JobState::Running,
            JobState::Completed
        ]
    );
    // The cheapest provider won, by the published rule, and the award checks.
    let award = cj.award.expect("awarded");
    assert_eq!(award.winner, w.providers[0]);
    assert_eq!(award.bids.len(), 3);
    assert_eq!(award.check(), AwardCheck::Valid);
    let result = cj.result.expect("result");
    assert_eq!(result.exit, ExitStatus::Exited(0));
    assert_eq!(result.stdout, b"hello from the provider\n");

    // The co-signed receipt reaches every peer's ledger.
    w.net.run_for(SECOND);
    for p in w.net.peer_ids() {
        let ledger = w.net.ledger(&p);
        assert_eq!(ledger.len(), 1, "peer {p:?} ledger");
        let r = &ledger[0];
        assert!(r.verify().is_ok());
        assert_eq!(r.receipt.job_id, job);
        assert_eq!(r.receipt.provider, w.providers[0]);
        assert!(matches!(
            r.receipt.outcome,
            Outcome::Executed(ExitStatus::Exited(0))
        ));
        // 2 s at 1 core: 1,000 fixed + 2 × (100 + 10 × 0.25 GiB) micro-credits.
        assert_eq!(r.receipt.price.0, 1_000 + 2 * (100 + 2));
    }
    // Every reservation was released, on the winner and on the losers.
    for p in &w.providers {
        let prov = w.net.peer(p).provider().expect("provider");
        assert_eq!(prov.reservations(), 0);
        assert_eq!(prov.running_jobs(), 0);
    }
}

#[test]
fn provider_that_vanishes_is_replaced_by_reauction() {
    let mut w = world();
    // The cheapest provider will win, start the job, and then vanish.
    w.net.set_executor(w.providers[0], Executor::Hangs);
    let now = w.net.now;
    let job = w.net.submit(w.client, test_job(now, 2));
    assert!(w.net.run_until_cond(10 * SECOND, |n| {
        n.peer(&w.client)
            .job(&job)
            .is_some_and(|j| j.state == JobState::Running)
    }));
    w.net.vanish(w.providers[0]);

    assert!(w.net.run_until_cond(2 * 60 * SECOND, |n| {
        n.peer(&w.client)
            .job(&job)
            .is_some_and(|j| j.receipt.is_some())
    }));
    let cj = w.net.peer(&w.client).job(&job).expect("job").clone();
    assert_eq!(cj.state, JobState::Completed);
    let award = cj.award.expect("award");
    assert_eq!(award.attempt, 1, "second round");
    assert_eq!(award.winner, w.providers[1], "next cheapest provider");
    assert!(!award.bids.iter().any(|b| b.provider == w.providers[0]));

    // The orchestrator published a failure receipt against the vanished
    // provider, and the completion receipt followed; both reach every live peer.
    w.net.run_for(SECOND);
    let ledger = w.net.ledger(&w.client);
    assert_eq!(ledger.len(), 2);
    let failure = ledger
        .iter()
        .find(|r| r.receipt.is_failure())
        .expect("failure receipt");
    assert_eq!(failure.receipt.provider, w.providers[0]);
    assert_eq!(failure.receipt.orchestrator, w.orchestrator);
    assert!(failure.verify().is_ok());
    for p in [w.orchestrator, w.providers[1], w.providers[2]] {
        assert_eq!(w.net.ledger(&p).len(), 2);
    }
    assert!(w.net.events.iter().any(|(_, who, e)| *who == w.orchestrator
        && matches!(e, Event::ProviderFailed { provider, .. } if *provider == w.providers[0])));
}

#[test]
fn cancel_stops_the_running_job_and_frees_capacity() {
    let mut w = world();
    let long = Executor::Runs {
        duration_ms: 20 * SECOND,
        exit: ExitStatus::Exited(0),
        stdout: vec![],
    };
    for p in w.providers.clone() {
        w.net.set_executor(p, long.clone());
    }
    let now = w.net.now;
    let job = w.net.submit(w.client, test_job(now, 3));
    assert!(w.net.run_until_cond(10 * SECOND, |n| {
        n.peer(&w.client)
            .job(&job)
            .is_some_and(|j| j.state == JobState::Running)
    }));
    let winner = w
        .net
        .peer(&w.client)
        .job(&job)
        .and_then(|j| j.provider())
        .expect("winner");
    assert_eq!(
        w.net.peer(&winner).provider().map(|p| p.running_jobs()),
        Some(1)
    );

    w.net.cancel(w.client, &job);
    assert_eq!(state(&w, &job), JobState::Cancelled);
    let client = w.client;
    assert!(w.net.run_until_cond(5 * SECOND, |n| {
        n.peer(&client)
            .job(&job)
            .is_some_and(|j| j.receipt.is_some())
    }));
    assert!(settled(&w, &job));
    let cj = w.net.peer(&w.client).job(&job).expect("job").clone();
    assert_eq!(cj.state, JobState::Cancelled);
    assert_eq!(cj.result.map(|r| r.exit), Some(ExitStatus::Cancelled));
    let prov = w.net.peer(&winner).provider().expect("provider");
    assert_eq!(prov.running_jobs(), 0);
    assert_eq!(prov.reservations(), 0);
    assert_eq!(
        w.net
            .peer(&w.orchestrator)
            .orchestrator()
            .and_then(|o| o.job_state(&job)),
        Some(JobState::Cancelled)
    );
}

#[test]
fn job_no_provider_can_take_waits_with_the_reason_until_its_start_by() {
    let mut w = world();
    let now = w.net.now;
    let mut spec = test_job(now, 4);
    spec.requirements.memory_bytes = 24 << 30;
    let job = w.net.submit(w.client, spec);
    w.net.run_for(5 * SECOND);
    let cj = w.net.peer(&w.client).job(&job).expect("job").clone();
    assert_eq!(
        cj.state,
        JobState::Queued,
        "waits rather than failing at once"
    );
    assert_eq!(cj.detail, "no provider with ≥ 24.0 GiB of memory");

    w.net.run_for(60 * SECOND);
    let cj = w.net.peer(&w.client).job(&job).expect("job").clone();
    assert_eq!(cj.state, JobState::Failed);
    assert!(cj.detail.contains("start-by"), "{}", cj.detail);
    assert!(cj.detail.contains("24.0 GiB"), "{}", cj.detail);
}

#[test]
fn a_waiting_job_shows_the_newest_reason_whatever_order_messages_arrive_in() {
    // "accepted" and the reason it waits leave the orchestrator in one
    // instant, as two statuses of the same state; the later one must win.
    for seed in 0..32 {
        let mut w = world();
        w.net.shuffle = Some(seed);
        let now = w.net.now;
        let mut spec = test_job(now, 4);
        spec.requirements.memory_bytes = 24 << 30;
        let job = w.net.submit(w.client, spec);
        w.net.run_for(SECOND);
        let cj = w.net.peer(&w.client).job(&job).expect("job");
        assert_eq!(
            (cj.state, cj.detail.as_str()),
            (JobState::Queued, "no provider with ≥ 24.0 GiB of memory"),
            "seed {seed}"
        );
    }
}

#[test]
fn job_over_every_price_waits_and_says_so() {
    let mut w = world();
    let now = w.net.now;
    let mut spec = test_job(now, 5);
    spec.max_price = modchain_protocol::Credits(10);
    let job = w.net.submit(w.client, spec);
    w.net.run_for(3 * SECOND);
    let cj = w.net.peer(&w.client).job(&job).expect("job");
    assert_eq!(cj.state, JobState::Queued);
    assert!(
        cj.detail.contains("3 of 3 provider(s) declined"),
        "{}",
        cj.detail
    );
    assert!(cj.detail.contains("max price"), "{}", cj.detail);
    for p in &w.providers {
        assert_eq!(w.net.peer(p).provider().map(|p| p.reservations()), Some(0));
    }
}

#[test]
fn orchestrator_that_vanishes_is_replaced_by_the_next_in_the_ranking() {
    let mut net = TestNet::new();
    let client = net.add_client(1);
    let o1 = net.add_orchestrator(2);
    let o2 = net.add_orchestrator(3);
    let p = net.add_provider(10, 100, Executor::default());
    net.run_for(SECOND);
    let now = net.now;
    let spec = test_job(now, 6);
    // Find which orchestrator ranks first for the job and kill it first.
    let ranking = ranking_of(&net, client, &spec);
    assert_eq!(ranking.len(), 2);
    net.vanish(ranking[0]);
    let job = net.submit(client, spec);
    assert!(net.run_until_cond(60 * SECOND, |n| {
        n.peer(&client)
            .job(&job)
            .is_some_and(|j| j.receipt.is_some())
    }));
    let cj = net.peer(&client).job(&job).expect("job");
    assert_eq!(cj.state, JobState::Completed);
    assert_eq!(cj.orchestrator_id(), Some(ranking[1]));
    assert_eq!(cj.provider(), Some(p));
    assert!([o1, o2].contains(&ranking[1]));
    assert!(
        net.events
            .iter()
            .any(|(_, who, e)| *who == client && matches!(e, Event::Resubmitted { .. }))
    );
}

#[test]
fn forged_messages_never_reach_the_state_machines() {
    let mut w = world();
    let now = w.net.now;
    let signed = w
        .net
        .peer(&w.client)
        .client()
        .prepare(now, test_job(now, 7))
        .expect("valid");
    let mut env = signed.into_envelope();
    env.payload[0] ^= 1;
    let err = w
        .net
        .peer_mut(&w.orchestrator)
        .handle_bytes(now, &env.to_bytes())
        .expect_err("tampered payload");
    assert_eq!(err.label(), "bad_signature");
    assert_eq!(
        w.net
            .peer(&w.orchestrator)
            .stats()
            .rejected
            .get("bad_signature"),
        Some(&1)
    );
    assert_eq!(
        w.net
            .peer(&w.orchestrator)
            .orchestrator()
            .map(|o| o.active_jobs()),
        Some(0)
    );
}

#[test]
fn output_streams_live_and_large_outputs_are_fetched_from_the_provider() {
    use modchain_protocol::{Digest, LogStream, OutputFile};
    let mut w = world();
    // Every provider's job writes a 5 MiB file: too large to travel inline.
    let big = OutputFile {
        name: "model.bin".into(),
        size: 5 << 20,
        digest: Digest([7; 32]),
        inline: None,
    };
    for p in w.providers.clone() {
        w.net.set_outputs(p, vec![big.clone()]);
    }
    let now = w.net.now;
    let job = w.net.submit(w.client, test_job(now, 8));
    let client = w.client;
    assert!(w.net.run_until_cond(30 * SECOND, |n| {
        n.peer(&client)
            .job(&job)
            .is_some_and(|j| j.receipt.is_some())
    }));
    // The provider's stdout reached the client while the job ran.
    let streamed: Vec<_> = w
        .net
        .events
        .iter()
        .filter_map(|(_, who, e)| match e {
            Event::LogReceived {
                job_id,
                stream,
                data,
                seq,
            } if *who == client && *job_id == job => Some((*seq, *stream, data.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        streamed,
        vec![(0, LogStream::Stdout, b"hello from the provider\n".to_vec())]
    );
    let result = w
        .net
        .peer(&client)
        .job(&job)
        .and_then(|j| j.result.clone())
        .expect("result");
    assert_eq!(result.outputs, vec![big.clone()]);

    // The client asks for the file by digest; the provider is asked to serve it.
    let now = w.net.now;
    assert!(
        w.net
            .peer_mut(&client)
            .fetch_output(now, &job, &big.digest, 0)
    );
    assert!(
        !w.net
            .peer_mut(&client)
            .fetch_output(now, &job, &Digest([9; 32]), 0)
    );
    w.net.run_for(SECOND);
    assert_eq!(w.net.served.len(), 1);
    let (_, provider, to, req) = &w.net.served[0];
    assert_eq!(*provider, w.providers[0]);
    assert_eq!(*to, client);
    assert_eq!(
        (req.digest, req.offset, req.length),
        (big.digest, 0, 256 * 1024)
    );
}

#[test]
fn a_provider_running_its_own_job_sees_it_move_only_forward() {
    // The provider's "running" reaches its own client role at once; the
    // orchestrator's "awarded" arrives later and must not send it back.
    let mut net = TestNet::new();
    // Added first so the orchestrator's advert reaches it.
    let me = net.add_provider(10, 100, Executor::default());
    let _orchestrator = net.add_orchestrator(2);
    net.run_for(SECOND);
    let now = net.now;
    let job = net.submit(me, test_job(now, 9));
    assert!(net.run_until_cond(30 * SECOND, |n| {
        n.peer(&me).job(&job).is_some_and(|j| j.receipt.is_some())
    }));
    let cj = net.peer(&me).job(&job).expect("job");
    let states: Vec<JobState> = cj.history.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        states,
        vec![
            JobState::Queued,
            JobState::Bidding,
            JobState::Awarded,
            JobState::Running,
            JobState::Completed
        ]
    );
    assert_eq!(cj.detail, "exited with code 0");
}

#[test]
fn a_client_sees_its_job_move_only_forward_whatever_order_messages_arrive_in() {
    // The orchestrator awards the job to itself, so its "accepted",
    // "bidding", award and "running" leave in one instant. In whatever
    // order they arrive, the late ones must not send the job back (a
    // "queued" after "running" reads as a lost provider to a streaming
    // client).
    for seed in 0..32 {
        let mut net = TestNet::new();
        net.shuffle = Some(seed);
        let client = net.add_client(1);
        let both = net.add(
            2,
            PeerConfig {
                advert: test_advert(),
                orchestrator: Some(OrchestratorConfig::default()),
                provider: Some(test_provider(100)),
                ..PeerConfig::default()
            },
        );
        net.set_executor(both, Executor::default());
        net.run_for(SECOND);
        let now = net.now;
        let job = net.submit(client, test_job(now, 3));
        assert!(net.run_until_cond(30 * SECOND, |n| {
            n.peer(&client)
                .job(&job)
                .is_some_and(|j| j.receipt.is_some())
        }));
        let cj = net.peer(&client).job(&job).expect("job");
        assert_eq!(cj.provider(), Some(both));
        let states: Vec<JobState> = cj.history.iter().map(|(_, s)| *s).collect();
        assert!(
            states
                .windows(2)
                .all(|w| w[0].progress() <= w[1].progress()),
            "seed {seed}: the job went back: {states:?}"
        );
        assert_eq!(states.last(), Some(&JobState::Completed), "seed {seed}");
    }
}

#[derive(Debug)]
struct NoImage;

impl modchain_protocol::Admission for NoImage {
    fn admit(
        &self,
        _spec: &modchain_protocol::JobSpec,
    ) -> Result<(), modchain_protocol::AdmissionRefusal> {
        Err(modchain_protocol::AdmissionRefusal::Unsupported(
            "image `x:1` is not present".into(),
        ))
    }
}

#[test]
fn a_provider_declines_what_its_admission_check_refuses_and_nothing_is_stored() {
    let mut w = world();
    for p in w.providers.clone() {
        w.net.peer_mut(&p).set_admission(Box::new(NoImage));
    }
    let now = w.net.now;
    let job = w.net.submit(w.client, test_job(now, 10));
    w.net.run_for(3 * SECOND);
    let cj = w.net.peer(&w.client).job(&job).expect("job");
    assert_eq!(cj.state, JobState::Queued);
    assert!(
        cj.detail.contains("image `x:1` is not present"),
        "{}",
        cj.detail
    );
    assert!(w.net.executions.is_empty());
    for p in w.net.peer_ids() {
        assert!(w.net.ledger(&p).is_empty());
    }
}

/// Refuses every job's parameters, as an llm provider refuses a prompt
/// longer than its model's context.
#[derive(Debug)]
struct PromptTooLong;

impl modchain_protocol::Admission for PromptTooLong {
    fn admit(
        &self,
        _spec: &modchain_protocol::JobSpec,
    ) -> Result<(), modchain_protocol::AdmissionRefusal> {
        Err(modchain_protocol::AdmissionRefusal::InvalidParams(
            "the prompt is 9010 tokens, over the context length (8192 tokens)".into(),
        ))
    }
}

#[test]
fn parameters_every_provider_refuses_fail_the_job_with_a_typed_refusal() {
    let mut w = world();
    for p in w.providers.clone() {
        w.net.peer_mut(&p).set_admission(Box::new(PromptTooLong));
    }
    let now = w.net.now;
    let job = w.net.submit(w.client, test_job(now, 10));
    w.net.run_for(3 * SECOND);
    let cj = w.net.peer(&w.client).job(&job).expect("job");
    assert_eq!(cj.state, JobState::Failed);
    assert_eq!(cj.refusal, Some(modchain_protocol::Refusal::ParamsRefused));
    assert!(cj.detail.contains("context length"), "{}", cj.detail);
    assert!(w.net.executions.is_empty());
}

/// An orchestrator that awarded the job to itself and then crashed leaves
/// nobody to report on the job: no heartbeats, no failure receipt. The
/// client fails over to the next orchestrator as soon as the connection
/// drops, not after the after-award silence (60 s), and the job completes.
#[test]
fn an_orchestrator_that_ran_its_own_award_and_crashed_is_replaced_at_once() {
    let mut net = TestNet::new();
    let client = net.add_client(1);
    let provides_and_orchestrates = |price| PeerConfig {
        advert: test_advert(),
        orchestrator: Some(OrchestratorConfig::default()),
        provider: Some(test_provider(price)),
        ..PeerConfig::default()
    };
    // The cheaper one wins the auction wherever it runs.
    let cheap = net.add(2, provides_and_orchestrates(100));
    let dear = net.add(3, provides_and_orchestrates(300));
    net.set_executor(cheap, Executor::Hangs);
    net.set_executor(dear, Executor::default());
    net.run_for(SECOND);
    // A job whose first orchestrator is the cheap provider itself.
    let spec = job_ranked(&net, client, |ranking| ranking.first() == Some(&cheap))
        .expect("some nonce ranks the cheap provider first");
    let job = net.submit(client, spec);
    assert!(net.run_until_cond(10 * SECOND, |n| {
        n.peer(&client)
            .job(&job)
            .is_some_and(|j| j.state == JobState::Running && j.provider() == Some(cheap))
    }));
    let crashed_at = net.now;
    net.crash(cheap);
    assert!(
        net.events.iter().any(|(t, who, e)| *who == client
            && *t <= crashed_at.plus(SECOND)
            && matches!(e, Event::Resubmitted { orchestrator, .. } if *orchestrator == dear)),
        "the client resubmitted to the next orchestrator on the crash"
    );
    assert!(net.run_until_cond(30 * SECOND, |n| {
        n.peer(&client)
            .job(&job)
            .is_some_and(|j| j.receipt.is_some())
    }));
    let cj = net.peer(&client).job(&job).expect("job");
    assert_eq!(cj.state, JobState::Completed);
    assert_eq!(
        (cj.orchestrator_id(), cj.provider()),
        (Some(dear), Some(dear))
    );
}

/// A provider whose models change (a file added, an Ollama server that
/// pulled one) advertises the new set within a second, and the auction can
/// then route jobs for the new model to it.
#[test]
fn a_provider_that_gains_a_model_advertises_it_within_a_second() {
    let mut w = world();
    let p = w.providers[0];
    let mut adapters = w
        .net
        .peer(&p)
        .provider()
        .expect("provides")
        .config()
        .adapters
        .clone();
    adapters.push(AdapterInfo {
        name: "llm".into(),
        methods: vec!["generate".into(), "chat".into()],
        models: vec![ModelInfo {
            name: "new-model".into(),
            parameters: 135_000_000,
            quantization: "Q4_1".into(),
            context_length: 8192,
        }],
    });
    let now = w.net.now;
    assert!(w.net.peer_mut(&p).set_adapters(now, adapters.clone()));
    assert!(
        !w.net.peer_mut(&p).set_adapters(now, adapters.clone()),
        "the same set again changes nothing"
    );
    w.net.run_for(SECOND + 100);
    for other in [w.client, w.orchestrator] {
        let seen = w.net.peer(&other).adverts().get(&p).expect("advert");
        assert_eq!(seen.adapters, adapters);
    }
    // A peer that provides nothing has no adapters to change.
    let now = w.net.now;
    assert!(!w.net.peer_mut(&w.client).set_adapters(now, adapters));
}

#[test]
fn client_fails_over_at_once_when_the_orchestrator_says_it_is_not_elected() {
    let mut net = TestNet::new();
    let client = net.add_client(1);
    // A candidate whose own view elects nobody: the client counts it among
    // the elected (views of the candidates can differ), the peer does not,
    // and refuses every job it is sent.
    let doubter = net.add(
        2,
        PeerConfig {
            advert: test_advert(),
            orchestrator: Some(OrchestratorConfig::default()),
            election: ElectionConfig {
                orchestrators: 0,
                ..ElectionConfig::default()
            },
            ..PeerConfig::default()
        },
    );
    let other = net.add_orchestrator(3);
    let p = net.add_provider(10, 100, Executor::default());
    net.run_for(SECOND);
    let now = net.now;
    // A job for which the doubter ranks first.
    let spec = job_ranked(&net, client, |ranking| ranking == [doubter, other])
        .expect("some nonce ranks the doubter first");
    let job = net.submit(client, spec);
    assert!(net.run_until_cond(60 * SECOND, |n| {
        n.peer(&client)
            .job(&job)
            .is_some_and(|j| j.receipt.is_some())
    }));
    let cj = net.peer(&client).job(&job).expect("job");
    assert_eq!(cj.state, JobState::Completed);
    assert_eq!(cj.orchestrator_id(), Some(other));
    assert_eq!(cj.provider(), Some(p));
    // At once: well before the client's silence timeout would have moved it.
    let resubmitted_at = net
        .events
        .iter()
        .find_map(|(at, who, e)| match e {
            Event::Resubmitted {
                job_id,
                orchestrator,
            } if *who == client && *job_id == job && *orchestrator == other => Some(*at),
            _ => None,
        })
        .expect("the client resubmitted to the next orchestrator");
    assert!(resubmitted_at.0 - now.0 < ClientConfig::default().silence_timeout_ms / 4);
}
