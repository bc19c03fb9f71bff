//! The wire between in-process swarms: libp2p's memory transport with the
//! scenario's latency and bandwidth added, upgraded with noise and yamux as
//! the node upgrades TCP.
//!
//! Memory-transport peers talk in microseconds, so every connection delays
//! what it reads: a chunk read at `t` becomes readable at
//! `t + latency(remote → me) + bytes / bandwidth(remote)`, never before the
//! chunk ahead of it (a stream stays in order). Delaying reads on both ends
//! delays both directions, once each. The listener learns who dialed from a
//! four-byte preamble (the dialer's peer index) sent before the noise
//! handshake: it is part of the simulated cable, not of the protocol.

use crate::rng::{Purpose, Stream};
use libp2p::core::ConnectedPoint;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, MemoryTransport, Transport};
use libp2p::core::upgrade::Version;
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, identity, noise, yamux};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How much one read from the memory channel takes at most.
const READ_CHUNK: usize = 16 * 1024;

/// What every link needs to know: where each peer is and how fast it sends.
#[derive(Debug)]
pub struct LinkTable {
    seed: u64,
    /// Region of each peer.
    region: Vec<u16>,
    /// Upload bandwidth of each peer, bytes per second.
    bandwidth: Vec<f64>,
    /// One-way latency between regions, microseconds.
    latency_us: Vec<Vec<u64>>,
    jitter: f64,
    /// Memory port each peer listens on → peer index.
    ports: RwLock<HashMap<u64, u32>>,
    /// Bytes read off every link (each byte once, at its receiver).
    wire_bytes: AtomicU64,
}

impl LinkTable {
    pub fn new(
        seed: u64,
        region: Vec<u16>,
        bandwidth: Vec<f64>,
        latency_ms: &[Vec<f64>],
        jitter: f64,
    ) -> Self {
        LinkTable {
            seed,
            region,
            bandwidth,
            latency_us: latency_ms
                .iter()
                .map(|row| row.iter().map(|ms| (ms * 1000.0).round() as u64).collect())
                .collect(),
            jitter,
            ports: RwLock::new(HashMap::new()),
            wire_bytes: AtomicU64::new(0),
        }
    }

    /// Records that `peer` listens on `addr` (a `/memory/N` address).
    pub fn register(&self, peer: u32, addr: &Multiaddr) {
        if let Some(port) = memory_port(addr)
            && let Ok(mut ports) = self.ports.write()
        {
            ports.insert(port, peer);
        }
    }

    fn peer_at(&self, addr: &Multiaddr) -> Option<u32> {
        let port = memory_port(addr)?;
        self.ports.read().ok()?.get(&port).copied()
    }

    pub fn wire_bytes(&self) -> u64 {
        self.wire_bytes.load(Ordering::Relaxed)
    }

    fn peers(&self) -> usize {
        self.region.len()
    }

    /// One-way latency between two peers: the region latency scaled by
    /// `1 + jitter × u`, with `u` drawn once per pair of peers (like the
    /// model's mesh links), so both directions and every connection of a
    /// pair agree and a stream is never reordered.
    pub fn latency(&self, a: u32, b: u32) -> Duration {
        let base = self.latency_us[usize::from(self.region[a as usize])]
            [usize::from(self.region[b as usize])];
        let (lo, hi) = (a.min(b), a.max(b));
        let pair = (u64::from(lo) << 32) | u64::from(hi);
        let u = Stream::new(self.seed ^ pair.rotate_left(17), Purpose::Network).unit();
        Duration::from_micros((base as f64 * (1.0 + self.jitter * u)).round() as u64)
    }

    /// Transmission time of one byte sent by `peer`.
    fn per_byte(&self, peer: u32) -> f64 {
        let bw = self.bandwidth[peer as usize];
        if bw > 0.0 { 1.0 / bw } else { 0.0 }
    }
}

/// The port of a `/memory/N` address.
pub fn memory_port(addr: &Multiaddr) -> Option<u64> {
    addr.iter().find_map(|p| match p {
        Protocol::Memory(port) => Some(port),
        _ => None,
    })
}

/// The transport of peer `me`: memory, the latency of [`LinkTable`], then
/// noise and yamux with the node's own settings.
pub fn transport(
    me: u32,
    key: &identity::Keypair,
    table: Arc<LinkTable>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let noise = noise::Config::new(key)?;
    Ok(MemoryTransport::default()
        .and_then(move |conn, point| open_link(conn, point, me, table))
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .boxed())
}

type Channel = libp2p::core::transport::memory::Channel<Vec<u8>>;

async fn open_link(
    mut conn: Channel,
    point: ConnectedPoint,
    me: u32,
    table: Arc<LinkTable>,
) -> io::Result<Link> {
    let remote = match &point {
        ConnectedPoint::Dialer { address, .. } => {
            let remote = table.peer_at(address).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{address} is no simulated peer's address"),
                )
            })?;
            conn.write_all(&me.to_be_bytes()).await?;
            conn.flush().await?;
            remote
        }
        ConnectedPoint::Listener { .. } => {
            let mut preamble = [0u8; 4];
            conn.read_exact(&mut preamble).await?;
            let remote = u32::from_be_bytes(preamble);
            if remote as usize >= table.peers() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a link preamble names peer {remote}, not in the scenario"),
                ));
            }
            remote
        }
    };
    Ok(Link {
        inner: conn,
        latency: table.latency(remote, me),
        per_byte: table.per_byte(remote),
        queue: VecDeque::new(),
        last_due: Instant::now(),
        timer: None,
        eof: false,
        scratch: vec![0; READ_CHUNK],
        table,
    })
}

/// Bytes read from the channel, waiting until they may be handed on.
#[derive(Debug)]
struct Chunk {
    due: Instant,
    data: Vec<u8>,
    pos: usize,
}

/// One end of a connection, delaying what it reads.
pub struct Link {
    inner: Channel,
    latency: Duration,
    per_byte: f64,
    queue: VecDeque<Chunk>,
    last_due: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    eof: bool,
    scratch: Vec<u8>,
    table: Arc<LinkTable>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("latency", &self.latency)
            .field("queued", &self.queue.len())
            .finish()
    }
}

impl AsyncRead for Link {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Take in everything the other end has sent so far, stamped with the
        // time it may be read.
        while !this.eof {
            match Pin::new(&mut this.inner).poll_read(cx, &mut this.scratch) {
                Poll::Ready(Ok(0)) => this.eof = true,
                Poll::Ready(Ok(n)) => {
                    this.table.wire_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    let tx = Duration::from_secs_f64(n as f64 * this.per_byte);
                    let due = (Instant::now() + this.latency + tx).max(this.last_due);
                    this.last_due = due;
                    this.queue.push_back(Chunk {
                        due,
                        data: this.scratch[..n].to_vec(),
                        pos: 0,
                    });
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        loop {
            let Some(head) = this.queue.front_mut() else {
                return if this.eof {
                    Poll::Ready(Ok(0))
                } else {
                    Poll::Pending
                };
            };
            if head.due <= Instant::now() {
                let n = (head.data.len() - head.pos).min(buf.len());
                buf[..n].copy_from_slice(&head.data[head.pos..head.pos + n]);
                head.pos += n;
                if head.pos == head.data.len() {
                    this.queue.pop_front();
                }
                return Poll::Ready(Ok(n));
            }
            let due = head.due;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_symmetric_and_follows_regions() {
        let table = LinkTable::new(
            3,
            vec![0, 0, 1],
            vec![1e6; 3],
            &[vec![10.0, 50.0], vec![50.0, 8.0]],
            0.2,
        );
        assert_eq!(table.latency(0, 2), table.latency(2, 0));
        let near = table.latency(0, 1);
        let far = table.latency(0, 2);
        assert!(near >= Duration::from_millis(10) && near < Duration::from_millis(12));
        assert!(far >= Duration::from_millis(50) && far < Duration::from_millis(60));
    }

    #[test]
    fn memory_ports_map_to_peers() {
        let table = LinkTable::new(1, vec![0, 0], vec![1e6; 2], &[vec![1.0]], 0.0);
        let addr: Multiaddr = "/memory/4242".parse().expect("address");
        table.register(1, &addr);
        let dialed = addr.clone().with(Protocol::P2p(PeerId::random()));
        assert_eq!(table.peer_at(&dialed), Some(1));
        assert_eq!(table.peer_at(&"/memory/7".parse().expect("address")), None);
    }
}
