//! Invariants, checked over generated inputs.

use modchain_protocol::testnet::{
    Executor, ReceiptParties, TestNet, settled_receipt, test_advert, test_job,
};
use modchain_protocol::{
    AdvertBundle, AdvertSync, AwardCheck, Bid, BidEntry, CallForBids, CapabilityAdvert, Credits,
    Digest, Envelope, ExitStatus, FailureReason, JobResult, Keypair, Kind, KnownAdvert, Message,
    NodeId, Outcome, PROTOCOL_VERSION, Peer, PeerConfig, Quote, REPUTATION_SCALE, Receipt, SECOND,
    Timestamp, TrustConfig, TrustGraph, Usage, effective_price, elect, select_winner,
};
use proptest::prelude::*;

const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// One valid message of every kind, signed, as bytes.
fn valid_messages() -> Vec<Vec<u8>> {
    let key = Keypair::from_seed(1);
    let job = Envelope::seal(&key, NOW, Message::Job(test_job(NOW, 1)));
    let advert = Envelope::seal(
        &key,
        NOW,
        Message::Advert(CapabilityAdvert {
            expires_at: NOW.plus(60_000),
            ..test_advert()
        }),
    );
    let bid = Envelope::seal(
        &key,
        NOW,
        Message::Bid(Bid {
            job_id: job.id(),
            attempt: 0,
            quote: Quote {
                fixed: Credits(1),
                per_second: Credits(2),
                per_1k_tokens: Credits(0),
            },
            max_total: Credits(61),
        }),
    );
    let result = Envelope::seal(
        &key,
        NOW,
        Message::Result(JobResult {
            job_id: job.id(),
            attempt: 0,
            exit: ExitStatus::Exited(3),
            stdout: b"out".to_vec(),
            stderr: b"err".to_vec(),
            outputs: vec![],
            usage: Usage::default(),
            finished_at: NOW,
            receipt_signature: key.sign(b"x"),
        }),
    );
    let call = Envelope::seal(
        &key,
        NOW,
        Message::CallForBids(CallForBids {
            job: job.envelope().clone(),
            attempt: 0,
            bid_deadline: NOW.plus(1000),
        }),
    );
    let sync = Envelope::seal(
        &key,
        NOW,
        Message::AdvertSync(AdvertSync {
            known: vec![KnownAdvert {
                node: key.node_id(),
                sequence: 3,
            }],
        }),
    );
    let bundle = Envelope::seal(
        &key,
        NOW,
        Message::AdvertBundle(AdvertBundle {
            adverts: vec![advert.to_bytes(), advert.to_bytes()],
        }),
    );
    vec![
        job.to_bytes(),
        advert.to_bytes(),
        bid.to_bytes(),
        result.to_bytes(),
        call.to_bytes(),
        sync.to_bytes(),
        bundle.to_bytes(),
    ]
}

/// An envelope of `kind` around `payload`, correctly signed whatever the
/// payload holds, so that it reaches the payload's decoder.
fn signed_around(kind: Kind, payload: Vec<u8>) -> Vec<u8> {
    let key = Keypair::from_seed(9);
    let signer = key.node_id();
    let mut signed = format!("modchain/v1/{}", kind.name()).into_bytes();
    signed.push(0);
    signed.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    signed.extend_from_slice(&NOW.0.to_le_bytes());
    signed.extend_from_slice(&signer.0);
    signed.extend_from_slice(&payload);
    Envelope {
        version: PROTOCOL_VERSION,
        kind,
        timestamp: NOW,
        signer,
        payload,
        signature: key.sign(&signed),
    }
    .to_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes from the network never panic the decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Envelope::open(&bytes, NOW);
    }

    /// Mutated valid messages never panic, and never verify with a changed
    /// signed part: a flipped byte is either rejected or decodes to the
    /// very same envelope (a byte outside the signed content cannot exist).
    #[test]
    fn mutated_messages_never_panic_nor_verify(
        which in 0usize..7,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let original = valid_messages()[which].clone();
        let mut bytes = original.clone();
        for (i, x) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        if let Ok(signed) = Envelope::open(&bytes, NOW) {
            let orig = Envelope::open(&original, NOW).expect("original verifies");
            prop_assert_eq!(signed.envelope(), orig.envelope());
        }
    }

    /// Signed advert syncs and bundles with arbitrary payloads never panic a
    /// peer: they decode within their limits or are rejected.
    #[test]
    fn arbitrary_sync_and_bundle_payloads_never_panic(
        bundle in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let kind = if bundle { Kind::AdvertBundle } else { Kind::AdvertSync };
        let bytes = signed_around(kind, payload);
        let mut peer = Peer::new(Keypair::from_seed(1), PeerConfig::default());
        if let Ok(signed) = Envelope::open(&bytes, NOW) {
            prop_assert_eq!(signed.kind(), kind);
        }
        let _ = peer.handle_bytes(NOW, &bytes);
        prop_assert!(peer.adverts().is_empty(), "a bundle is unpacked by the driver, not the peer");
    }

    /// Whatever bytes a bundle carries, it travels intact, and each entry
    /// opens or is rejected without panicking.
    #[test]
    fn arbitrary_bundle_entries_travel_intact_and_never_panic(
        entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 0..16),
    ) {
        let key = Keypair::from_seed(2);
        let sent = AdvertBundle { adverts: entries };
        let bytes = Envelope::seal(&key, NOW, Message::AdvertBundle(sent.clone())).to_bytes();
        let opened = Envelope::open(&bytes, NOW).expect("a bundle within its limits opens");
        let Message::AdvertBundle(got) = opened.message() else {
            panic!("not a bundle");
        };
        prop_assert_eq!(got, &sent);
        for entry in &got.adverts {
            let _ = Envelope::open(entry, NOW);
        }
    }

    /// The rule's winner has the lowest effective price among all bids, and
    /// shuffling the bids does not change it.
    #[test]
    fn winner_is_the_rules_choice(
        bids in proptest::collection::vec((any::<[u8; 4]>(), 1u64..1_000_000, 0..=REPUTATION_SCALE), 1..20),
        seed in any::<u64>(),
    ) {
        let entries: Vec<BidEntry> = bids.iter().map(|(id, price, rep)| BidEntry {
            bid_id: Digest::of(id),
            provider: NodeId(*Digest::of(&[id.as_slice(), b"p"].concat()).as_bytes()),
            max_total: Credits(*price),
            reputation: *rep,
        }).collect();
        let w = select_winner(&entries).expect("non-empty");
        let best = entries.iter().map(effective_price).min().expect("non-empty");
        prop_assert_eq!(effective_price(&entries[w]), best);
        let mut shuffled = entries.clone();
        let n = shuffled.len();
        shuffled.rotate_left((seed as usize) % n);
        shuffled.reverse();
        let w2 = select_winner(&shuffled).expect("non-empty");
        prop_assert_eq!(&shuffled[w2].bid_id, &entries[w].bid_id);
    }

    /// Every peer computes the same election from the same inputs, in any order.
    #[test]
    fn election_is_the_same_for_every_peer(
        cands in proptest::collection::vec((any::<u16>(), 0..=REPUTATION_SCALE), 1..40),
        epoch in any::<u32>(),
        k in 1usize..6,
        rot in any::<usize>(),
    ) {
        let list: Vec<(NodeId, u32)> = cands.iter()
            .map(|(n, r)| (NodeId(*Digest::of(&n.to_le_bytes()).as_bytes()), *r))
            .collect();
        // Duplicated node ids take one reputation; give every copy the first one.
        let mut canonical = std::collections::BTreeMap::new();
        for (n, r) in &list { canonical.entry(*n).or_insert(*r); }
        let list: Vec<(NodeId, u32)> = list.iter().map(|(n, _)| (*n, canonical[n])).collect();
        let a = elect(u64::from(epoch), &list, k);
        let mut other = list.clone();
        let len = other.len();
        other.rotate_left(rot % len);
        other.reverse();
        prop_assert_eq!(&a, &elect(u64::from(epoch), &other, k));
        prop_assert_eq!(a.len(), k.min(canonical.len()));
    }

    /// Trust values sum to 1 over any receipt graph.
    #[test]
    fn trust_sums_to_one(
        edges in proptest::collection::vec((0u8..30, 0u8..30, any::<bool>()), 1..300),
        pre in proptest::collection::vec(0u8..30, 0..3),
    ) {
        let node = |n: u8| NodeId([n; 32]);
        let mut g = TrustGraph::new();
        for (c, p, ok) in &edges {
            g.add(&Receipt {
                job_id: Digest([*c; 32]),
                attempt: 0,
                client: node(*c),
                provider: node(*p),
                orchestrator: node(200),
                award_id: Digest([0; 32]),
                price: Credits(1),
                usage: Usage::default(),
                outcome: if *ok { Outcome::Executed(ExitStatus::Exited(0)) } else { Outcome::ProviderFailed(FailureReason::MissedDeadline) },
                result_digest: None,
                issued_at: NOW,
            });
        }
        let pre: Vec<NodeId> = pre.into_iter().map(node).collect();
        let t = g.compute(&pre, &TrustConfig::default());
        // A node's receipts with itself are no evidence: with only those,
        // nobody has any trust (pre-trusted peers included, as trust is over
        // the parties of receipts); otherwise it sums to 1. A failure
        // receipt is the orchestrator's word on the provider, so it is
        // evidence even when the client ran its own job.
        let no_evidence = edges.iter().all(|(c, p, ok)| *ok && c == p);
        if no_evidence {
            prop_assert!(t.is_empty(), "trust from self-dealing alone: {}", t.sum());
        } else {
            prop_assert!((t.sum() - 1.0).abs() < 1e-9, "sum {}", t.sum());
        }
        prop_assert!(t.iter().all(|(_, v)| v >= 0.0));
    }

    /// No receipt counts without the signatures its outcome needs, and no
    /// signature from anyone else stands in for them.
    #[test]
    fn no_receipt_counts_without_both_signatures(
        has_client in any::<bool>(),
        has_provider in any::<bool>(),
        swap in any::<bool>(),
        failure in any::<bool>(),
    ) {
        let (c, p, o, x) = (Keypair::from_seed(1), Keypair::from_seed(2), Keypair::from_seed(3), Keypair::from_seed(4));
        let parties = ReceiptParties { client: &c, provider: &p, orchestrator: &o };
        let outcome = if failure { Outcome::ProviderFailed(FailureReason::Unresponsive) } else { Outcome::Executed(ExitStatus::Exited(0)) };
        let mut signed = settled_receipt(&parties, Digest([9; 32]), Credits(5), outcome, NOW);
        if !failure {
            if swap {
                signed.client_signature = Some(signed.receipt.sign(&x));
            }
            if !has_client {
                signed.client_signature = None;
            }
            if !has_provider {
                signed.provider_signature = None;
            }
        }
        let valid = if failure { true } else { has_client && has_provider && !swap };
        prop_assert_eq!(signed.verify().is_ok(), valid);
    }

    /// No receipt counts unless the award it carries is the orchestrator's
    /// own, for the same job, round and parties: two throwaway keys cannot
    /// settle a job that no orchestrator awarded.
    #[test]
    fn no_receipt_counts_without_its_award(
        failure in any::<bool>(),
        tamper in 0u8..7,
    ) {
        let (c, p, o, x) = (Keypair::from_seed(1), Keypair::from_seed(2), Keypair::from_seed(3), Keypair::from_seed(4));
        let parties = ReceiptParties { client: &c, provider: &p, orchestrator: &o };
        let outcome = if failure { Outcome::ProviderFailed(FailureReason::Unresponsive) } else { Outcome::Executed(ExitStatus::Exited(0)) };
        let mut signed = settled_receipt(&parties, Digest([9; 32]), Credits(5), outcome.clone(), NOW);
        prop_assert!(signed.verify().is_ok());
        // Each change below, re-signed by the receipt's parties, must not pass.
        match tamper {
            0 => signed.award.clear(),
            1 => { let n = signed.award.len(); signed.award[n - 1] ^= 1; }
            2 => signed.receipt.job_id = Digest([8; 32]),
            3 => signed.receipt.attempt = 1,
            4 => signed.receipt.orchestrator = x.node_id(),
            5 => {
                // An award for another job, signed by the same orchestrator.
                let other = settled_receipt(&parties, Digest([7; 32]), Credits(5), outcome, NOW);
                signed.award = other.award;
            }
            _ => signed.receipt.price = Credits(6),
        }
        let r = signed.receipt.clone();
        if failure {
            signed.orchestrator_signature = Some(r.sign(if tamper == 4 { &x } else { &o }));
        } else {
            signed.client_signature = Some(r.sign(&c));
            signed.provider_signature = Some(r.sign(&p));
        }
        // A price change on a failure receipt is refused for the price itself.
        prop_assert!(signed.verify().is_err(), "tamper {} passed", tamper);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Whatever fails and whenever, no job ever has two live awards, every
    /// award follows the rule, and each job ends or is still in hand.
    #[test]
    fn at_most_one_live_award_per_job(
        providers in 1usize..5,
        hang in proptest::collection::vec(any::<bool>(), 5),
        vanish_at in proptest::option::of(0u64..20),
        jobs in 1u64..4,
    ) {
        let mut net = TestNet::new();
        let client = net.add_client(1);
        let orch = net.add_orchestrator(2);
        let ps: Vec<NodeId> = (0..providers)
            .map(|i| net.add_provider(10 + i as u64, 100 + 50 * i as u64,
                if hang[i] { Executor::Hangs } else { Executor::default() }))
            .collect();
        net.run_for(SECOND);
        let now = net.now;
        let ids: Vec<_> = (0..jobs).map(|n| net.submit(client, test_job(now, n))).collect();
        for step in 0..200u64 {
            net.run_for(500);
            if vanish_at == Some(step) {
                net.vanish(ps[0]);
            }
            let o = net.peer(&orch).orchestrator().expect("orchestrator");
            for id in &ids {
                prop_assert!(o.live_awards(id) <= 1);
                // At most one live provider executes the job at a time.
                let running = ps
                    .iter()
                    .filter(|p| !net.is_down(p) && net.peer(p).provider().is_some_and(|pr| pr.is_running(id)))
                    .count();
                prop_assert!(running <= 1, "{running} providers run one job");
            }
        }
        for id in &ids {
            let cj = net.peer(&client).job(id).expect("job");
            if let Some(a) = &cj.award {
                prop_assert_eq!(a.check(), AwardCheck::Valid);
            }
            prop_assert!(cj.state.is_terminal(), "job still {:?} after 100 s: {}", cj.state, cj.detail);
        }
    }
}
