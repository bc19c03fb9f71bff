//! Protocol figures: `cargo bench -p modchain-protocol`.
//!
//! A plain bench binary (no harness) so the dependency tree stays small; it
//! prints one line per figure. Everything runs on one thread, so "per second"
//! means per core.

use modchain_protocol::testnet::{ReceiptParties, settled_receipt, test_advert, test_job};
use modchain_protocol::{
    Award, Bid, BidEntry, CallForBids, Cancel, CapabilityAdvert, Credits, Digest, Envelope,
    ExitStatus, JobResult, JobState, JobStatus, Keypair, Message, NodeId, Outcome, Quote, Receipt,
    SignedReceipt, Timestamp, TrustConfig, TrustGraph, Usage,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// Runs `f` repeatedly for about `budget` and returns (iterations, seconds).
fn measure(budget: Duration, mut f: impl FnMut()) -> (u64, f64) {
    // Warm up.
    for _ in 0..10 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    (n, start.elapsed().as_secs_f64())
}

fn report(name: &str, n: u64, secs: f64) {
    let per = secs / n as f64;
    println!(
        "{name:<44} {:>12.0} ops/s  {:>10.2} µs/op",
        n as f64 / secs,
        per * 1e6
    );
}

fn sample_messages(key: &Keypair) -> Vec<(&'static str, Message)> {
    let job = Envelope::seal(key, NOW, Message::Job(test_job(NOW, 1)));
    let job_id = job.id();
    let bids: Vec<BidEntry> = (0..8u8)
        .map(|i| BidEntry {
            bid_id: Digest([i; 32]),
            provider: NodeId([i; 32]),
            max_total: Credits(1000 + u64::from(i)),
            reputation: 500_000,
        })
        .collect();
    let receipt = Receipt {
        job_id,
        attempt: 0,
        client: key.node_id(),
        provider: key.node_id(),
        orchestrator: key.node_id(),
        award_id: Digest([0; 32]),
        price: Credits(1234),
        usage: Usage {
            wall_ms: 2000,
            cpu_ms: 1900,
            peak_memory_bytes: 1 << 20,
            tokens: 0,
        },
        outcome: Outcome::Executed(ExitStatus::Exited(0)),
        result_digest: Some(Digest([1; 32])),
        issued_at: NOW,
    };
    vec![
        (
            "advert",
            Message::Advert(CapabilityAdvert {
                expires_at: NOW.plus(60_000),
                ..test_advert()
            }),
        ),
        ("job", Message::Job(test_job(NOW, 1))),
        (
            "call-for-bids",
            Message::CallForBids(CallForBids {
                job: job.envelope().clone(),
                attempt: 0,
                bid_deadline: NOW.plus(1500),
            }),
        ),
        (
            "bid",
            Message::Bid(Bid {
                job_id,
                attempt: 0,
                quote: Quote {
                    fixed: Credits(1000),
                    per_second: Credits(100),
                    per_1k_tokens: Credits(0),
                },
                max_total: Credits(4000),
            }),
        ),
        (
            "award (8 bids)",
            Message::Award(Award {
                job_id,
                attempt: 0,
                client: key.node_id(),
                winner: NodeId([0; 32]),
                winning_bid: Digest([0; 32]),
                quote: Quote::default(),
                bids_digest: modchain_protocol::bids_digest(&bids),
                bids,
                execution_deadline: NOW.plus(40_000),
            }),
        ),
        (
            "status",
            Message::Status(JobStatus {
                job_id,
                attempt: 0,
                state: JobState::Running,
                detail: "running on abcd1234".into(),
                seq: 0,
                refusal: None,
            }),
        ),
        (
            "result (4 KiB stdout)",
            Message::Result(JobResult {
                job_id,
                attempt: 0,
                exit: ExitStatus::Exited(0),
                stdout: vec![b'x'; 4096],
                stderr: vec![],
                outputs: vec![],
                usage: Usage::default(),
                finished_at: NOW,
                receipt_signature: key.sign(b"r"),
            }),
        ),
        (
            "cancel",
            Message::Cancel(Cancel {
                job_id,
                reason: "no longer needed".into(),
            }),
        ),
        (
            "receipt",
            Message::Receipt(SignedReceipt {
                client_signature: Some(receipt.sign(key)),
                provider_signature: Some(receipt.sign(key)),
                orchestrator_signature: None,
                receipt,
                award: Vec::new(),
            }),
        ),
    ]
}

fn synthetic_receipt(i: u64, peers: u64) -> Receipt {
    let node = |n: u64| NodeId(*Digest::of(&n.to_le_bytes()).as_bytes());
    // splitmix64: spread clients and providers so most pairs are distinct edges.
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let client = mix(2 * i) % peers;
    let provider = mix(2 * i + 1) % peers;
    Receipt {
        job_id: Digest::of(&i.to_le_bytes()),
        attempt: 0,
        client: node(client),
        provider: node(provider),
        orchestrator: node(i % 16),
        award_id: Digest([0; 32]),
        price: Credits(1000),
        usage: Usage::default(),
        outcome: if i.is_multiple_of(17) {
            Outcome::ProviderFailed(modchain_protocol::FailureReason::MissedDeadline)
        } else {
            Outcome::Executed(ExitStatus::Exited(0))
        },
        result_digest: None,
        issued_at: NOW,
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("MODCHAIN_BENCH_QUICK").is_some();
    let budget = if quick {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(400)
    };
    let key = Keypair::from_seed(1);

    println!("== encode / decode + verify, per message kind ==");
    for (name, msg) in sample_messages(&key) {
        let signed = Envelope::seal(&key, NOW, msg.clone());
        let bytes = signed.to_bytes();
        let (n, s) = measure(budget, || {
            black_box(Envelope::seal(&key, NOW, black_box(msg.clone())).to_bytes());
        });
        report(&format!("seal+encode {name} ({} B)", bytes.len()), n, s);
        let (n, s) = measure(budget, || {
            black_box(Envelope::decode(black_box(&bytes)).ok());
        });
        report(&format!("decode {name}"), n, s);
        let (n, s) = measure(budget, || {
            black_box(Envelope::open(black_box(&bytes), NOW).ok());
        });
        report(&format!("decode+verify {name}"), n, s);
    }

    println!("== receipt signature verification ==");
    // Strict verification, one receipt at a time (batch verification is
    // cofactored and may disagree with it, so no peer uses it): the two
    // party signatures and the award's.
    let receipts: Vec<SignedReceipt> = (0..64u64)
        .map(|i| {
            let (c, p, o) = (
                Keypair::from_seed(i),
                Keypair::from_seed(i + 10_000),
                Keypair::from_seed(i + 20_000),
            );
            let parties = ReceiptParties {
                client: &c,
                provider: &p,
                orchestrator: &o,
            };
            settled_receipt(
                &parties,
                Digest::of(&i.to_le_bytes()),
                Credits(100),
                Outcome::Executed(ExitStatus::Exited(0)),
                NOW,
            )
        })
        .collect();
    let (n, s) = measure(budget, || {
        for r in &receipts {
            black_box(r.verify().ok());
        }
    });
    report("receipt verify, one at a time (3 sigs each)", n * 64, s);

    println!("== reputation ==");
    let count: u64 = if quick { 100_000 } else { 1_000_000 };
    let peers = 10_000;
    let synthetic: Vec<Receipt> = (0..count).map(|i| synthetic_receipt(i, peers)).collect();
    let start = Instant::now();
    let mut graph = TrustGraph::new();
    for r in &synthetic {
        graph.add(r);
    }
    let build = start.elapsed();
    let start = Instant::now();
    let pre: Vec<NodeId> = (0..3u64)
        .map(|n| NodeId(*Digest::of(&n.to_le_bytes()).as_bytes()))
        .collect();
    let trust = graph.compute(&pre, &TrustConfig::default());
    let compute = start.elapsed();
    println!(
        "reputation over {count} receipts, {} peers: build {:.0} ms + compute {:.0} ms = {:.0} ms ({} iterations, sum {:.9}); target < 1000 ms: {}",
        graph.node_count(),
        build.as_secs_f64() * 1e3,
        compute.as_secs_f64() * 1e3,
        (build + compute).as_secs_f64() * 1e3,
        trust.iterations(),
        trust.sum(),
        if (build + compute).as_millis() < 1000 {
            "met"
        } else {
            "NOT met"
        }
    );
}
