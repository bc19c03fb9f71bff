//! `modchain-rogue`: a hostile peer for tests. It speaks the real protocol
//! over libp2p (the same transport and direct-message protocol as a node)
//! and runs one attack per subcommand against one target node, then prints
//! one JSON line saying what it did. The tests in `node/tests/hostile.rs`
//! start it as a separate process beside a real network and check that the
//! network keeps working, the target's memory stays bounded, and the attack
//! shows in the target's `/metrics`.
//!
//! New attacks are new subcommands: each builds its requests and hands them
//! to [`Rogue::run`], which dials, sends, and counts the answers.
//!
//! Not a tool for operators: it is not packaged.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use libp2p::futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, request_response};
use modchain_net::wire::{self, MESSAGE_PROTOCOL};
use modchain_protocol::testnet::{ReceiptParties, settled_receipt};
use modchain_protocol::{
    AdvertBundle, AdvertSync, CallForBids, CapabilityAdvert, Credits, Digest, Envelope, ExitStatus,
    FetchOutput, JobSpec, Keypair, Kind, MAX_START_WINDOW_MS, Message, Outcome, PROTOCOL_VERSION,
    Requirements, Timestamp, limits,
};
use std::io;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "modchain-rogue", about = "A hostile Modchain peer, for tests")]
struct Cli {
    /// The target node: a multiaddr ending in /p2p/<peer id>.
    #[arg(long, global = true)]
    target: Option<Multiaddr>,
    /// Seed of the rogue's own key (a fresh one each run when absent).
    #[arg(long, global = true)]
    seed: Option<u64>,
    #[command(subcommand)]
    attack: Attack,
}

#[derive(Subcommand, Debug)]
enum Attack {
    /// Opens `count` direct-message streams on one connection, each
    /// announcing `declared` bytes and then sending almost nothing, held
    /// open for `hold_secs`.
    Streams {
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(long, default_value_t = 1 << 20)]
        declared: u32,
        #[arg(long, default_value_t = 20)]
        hold_secs: u64,
    },
    /// Sends `count` advert bundles nobody asked for, each holding
    /// `adverts` adverts signed by throwaway keys.
    Bundles {
        #[arg(long, default_value_t = 200)]
        count: usize,
        #[arg(long, default_value_t = 50)]
        adverts: usize,
    },
    /// Sends `count` small signed direct requests as fast as the connection
    /// takes them.
    Direct {
        #[arg(long, default_value_t = 5000)]
        count: usize,
    },
    /// Sends `count` calls for bids for jobs that ask for every core, each
    /// signed by the rogue (elected by nobody), with a bid deadline
    /// `deadline_secs` ahead (a year by default): were they obeyed, the
    /// target's capacity would be reserved until then.
    Calls {
        #[arg(long, default_value_t = 200)]
        count: usize,
        #[arg(long, default_value_t = 365 * 24 * 3600)]
        deadline_secs: u64,
    },
    /// Sends `count` receipts made between pairs of throwaway keys, fully
    /// signed and each with an award signed by a third throwaway key: were
    /// they stored, they would fill the target's ledger and move balances.
    Receipts {
        #[arg(long, default_value_t = 2000)]
        count: usize,
    },
}

/// What the rogue writes on a stream.
#[derive(Clone, Debug)]
enum Frame {
    /// A well-formed frame: the length, then the bytes.
    Whole(Vec<u8>),
    /// A length of `declared`, then `prefix`, then nothing: the stream
    /// stays open until the target gives up on it.
    Stall { declared: u32, prefix: Vec<u8> },
}

#[derive(Clone, Debug, Default)]
struct RogueCodec;

impl request_response::Codec for RogueCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Frame>
    where
        T: libp2p::futures::AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("the rogue serves nothing"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: libp2p::futures::AsyncRead + Unpin + Send,
    {
        // The acknowledgement is empty; read at most a little of anything.
        let mut buf = Vec::new();
        io.take(64).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> io::Result<()>
    where
        T: libp2p::futures::AsyncWrite + Unpin + Send,
    {
        match req {
            Frame::Whole(bytes) => {
                let len = u32::try_from(bytes.len()).map_err(io::Error::other)?;
                io.write_all(&len.to_be_bytes()).await?;
                io.write_all(&bytes).await?;
                io.close().await
            }
            Frame::Stall { declared, prefix } => {
                io.write_all(&declared.to_be_bytes()).await?;
                io.write_all(&prefix).await?;
                io.flush().await?;
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()>
    where
        T: libp2p::futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

#[derive(NetworkBehaviour)]
struct RogueBehaviour {
    messages: request_response::Behaviour<RogueCodec>,
}

/// Dials the target and sends it frames.
struct Rogue {
    swarm: libp2p::Swarm<RogueBehaviour>,
    target: PeerId,
}

/// What became of the frames sent.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    acknowledged: usize,
    failed: usize,
}

impl Rogue {
    async fn connect(key: &Keypair, target: Multiaddr, streams: usize) -> Result<Self> {
        let Some(libp2p::multiaddr::Protocol::P2p(peer)) = target.iter().last() else {
            bail!("--target must end in /p2p/<peer id>");
        };
        let mut swarm = wire::build_swarm(key.to_libp2p(), None, |_, _| RogueBehaviour {
            messages: request_response::Behaviour::new(
                [(
                    MESSAGE_PROTOCOL,
                    request_response::ProtocolSupport::Outbound,
                )],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(3600))
                    .with_max_concurrent_streams(streams.max(1)),
            ),
        })
        .context("build the rogue's swarm")?;
        swarm.dial(target).context("dial the target")?;
        let connected = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                    swarm.select_next_some().await
                    && peer_id == peer
                {
                    return;
                }
            }
        })
        .await;
        if connected.is_err() {
            bail!("the target did not answer within 15 s");
        }
        Ok(Rogue {
            swarm,
            target: peer,
        })
    }

    /// Sends every frame (at most `window` unanswered at once), then drives
    /// the swarm until each was answered or failed, or `hold` passed.
    async fn run(&mut self, frames: Vec<Frame>, window: usize, hold: Duration) -> Tally {
        let mut tally = Tally::default();
        let mut queue = frames.into_iter();
        let deadline = tokio::time::sleep(hold);
        tokio::pin!(deadline);
        let mut in_flight = 0usize;
        loop {
            while in_flight < window {
                let Some(frame) = queue.next() else { break };
                self.swarm
                    .behaviour_mut()
                    .messages
                    .send_request(&self.target, frame);
                tally.sent += 1;
                in_flight += 1;
            }
            if in_flight == 0 {
                return tally;
            }
            tokio::select! {
                ev = self.swarm.select_next_some() => match ev {
                    SwarmEvent::Behaviour(RogueBehaviourEvent::Messages(
                        request_response::Event::Message { .. },
                    )) => {
                        tally.acknowledged += 1;
                        in_flight -= 1;
                    }
                    SwarmEvent::Behaviour(RogueBehaviourEvent::Messages(
                        request_response::Event::OutboundFailure { .. },
                    )) => {
                        tally.failed += 1;
                        in_flight -= 1;
                    }
                    _ => {}
                },
                _ = &mut deadline => return tally,
            }
        }
    }
}

fn advert(key: &Keypair, now: Timestamp) -> Vec<u8> {
    let ad = CapabilityAdvert {
        sequence: 1,
        expires_at: now.plus(120_000),
        ..CapabilityAdvert::default()
    };
    Envelope::seal(key, now, Message::Advert(ad)).to_bytes()
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let target = cli.target.context("--target is required")?;
    let key = match cli.seed {
        Some(seed) => Keypair::from_seed(seed),
        None => Keypair::generate().context("a fresh key")?,
    };
    let now = Timestamp::now_wall();
    let (name, frames, window, hold) = match cli.attack {
        Attack::Streams {
            count,
            declared,
            hold_secs,
        } => {
            // An advert bundle's kind byte: the one kind whose cap admits
            // a megabyte, so the target cannot refuse the length outright
            // and must wait for bytes that never come.
            let frames = (0..count)
                .map(|_| Frame::Stall {
                    declared,
                    prefix: vec![PROTOCOL_VERSION as u8, Kind::AdvertBundle as u8, 0, 0],
                })
                .collect();
            ("streams", frames, count, Duration::from_secs(hold_secs))
        }
        Attack::Bundles { count, adverts } => {
            // Throwaway signers, distinct from one run to the next.
            let mut seed = u64::from(std::process::id()) << 32;
            let frames = (0..count)
                .map(|_| {
                    let adverts = (0..adverts)
                        .map(|_| {
                            seed = seed.wrapping_add(1);
                            advert(&Keypair::from_seed(seed), now)
                        })
                        .collect();
                    let bundle = Message::AdvertBundle(AdvertBundle { adverts });
                    Frame::Whole(Envelope::seal(&key, now, bundle).to_bytes())
                })
                .collect();
            ("bundles", frames, 16, Duration::from_secs(120))
        }
        Attack::Direct { count } => {
            let frames = (0..count)
                .map(|i| {
                    let message = if i % 2 == 0 {
                        Message::AdvertSync(AdvertSync::default())
                    } else {
                        Message::Fetch(FetchOutput {
                            job_id: Digest::of(&i.to_le_bytes()),
                            digest: Digest::of(b"nothing"),
                            offset: 0,
                            length: 16,
                        })
                    };
                    Frame::Whole(Envelope::seal(&key, now, message).to_bytes())
                })
                .collect();
            ("direct", frames, 64, Duration::from_secs(120))
        }
        Attack::Calls {
            count,
            deadline_secs,
        } => {
            let client = Keypair::from_seed(u64::from(std::process::id()) << 20);
            let frames = (0..count)
                .map(|i| {
                    let spec = JobSpec {
                        adapter: "wasm".into(),
                        method: "run".into(),
                        params: "{}".into(),
                        requirements: Requirements {
                            cores: 1,
                            ..Requirements::default()
                        },
                        max_price: Credits::from_credits(1_000_000),
                        timeout_ms: limits::MAX_TIMEOUT_MS,
                        priority: 255,
                        start_by: now.plus(MAX_START_WINDOW_MS),
                        nonce: i as u64,
                    };
                    let job = Envelope::seal(&client, now, Message::Job(spec));
                    let call = Message::CallForBids(CallForBids {
                        job: job.into_envelope(),
                        attempt: 0,
                        bid_deadline: now.plus(deadline_secs.saturating_mul(1000)),
                    });
                    Frame::Whole(Envelope::seal(&key, now, call).to_bytes())
                })
                .collect();
            ("calls", frames, 16, Duration::from_secs(120))
        }
        Attack::Receipts { count } => {
            let base = u64::from(std::process::id()) << 24;
            let frames = (0..count as u64)
                .map(|i| {
                    let (a, b, o) = (
                        Keypair::from_seed(base + 3 * i),
                        Keypair::from_seed(base + 3 * i + 1),
                        Keypair::from_seed(base + 3 * i + 2),
                    );
                    let parties = ReceiptParties {
                        client: &a,
                        provider: &b,
                        orchestrator: &o,
                    };
                    let receipt = settled_receipt(
                        &parties,
                        Digest::of(&(base + i).to_le_bytes()),
                        Credits::from_credits(1_000),
                        Outcome::Executed(ExitStatus::Exited(0)),
                        now,
                    );
                    Frame::Whole(Envelope::seal(&a, now, Message::Receipt(receipt)).to_bytes())
                })
                .collect();
            ("receipts", frames, 16, Duration::from_secs(120))
        }
    };
    let mut rogue = Rogue::connect(&key, target, window + 8).await?;
    let tally = rogue.run(frames, window, hold).await;
    println!(
        "{}",
        serde_json::json!({
            "attack": name,
            "sent": tally.sent,
            "acknowledged": tally.acknowledged,
            "failed": tally.failed,
        })
    );
    Ok(())
}
