//! The node's own libp2p behaviour (identify, ping, Kademlia, gossipsub,
//! request-response for direct messages, connection limits, and the NAT
//! traversal trio: AutoNAT v2, circuit relay v2 client and server, DCUtR), the
//! direct-message codec, and the DHT keys a node provides.
//!
//! It lives in this library, beside the shared wire settings of [`wire`],
//! so that the node and the simulator's libp2p engine run one and the same
//! behaviour: what the simulator measures over real swarms is what a node does.

use crate::limits::NetLimits;
use crate::wire::{self, MESSAGE_PROTOCOL, NetworkError};
use libp2p::futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, autonat, connection_limits, dcutr, gossipsub, identify, kad, ping, relay,
    request_response,
};
use modchain_protocol::{CapabilityAdvert, GpuVendor, Kind, PROTOCOL_VERSION, max_envelope_bytes};
use std::collections::BTreeSet;
use std::io;

/// How a node drives this behaviour and its `Peer`: the node and the
/// simulator's libp2p engine both read these, so the engine keeps the
/// node's timings without copying them.
pub mod timings {
    use std::time::Duration;

    /// First wait before dialling an unreachable bootstrap peer again; it
    /// doubles up to [`BACKOFF_MAX`].
    pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
    pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
    /// Recompute reputation this often, and this long after new receipts.
    pub const REPUTATION_INTERVAL: Duration = Duration::from_secs(60);
    pub const REPUTATION_DEBOUNCE: Duration = Duration::from_secs(2);
    /// Messages published while nobody was subscribed wait (at most this
    /// many) for a subscriber.
    pub const MAX_PENDING_PUBLISH: usize = 64;
}

#[derive(NetworkBehaviour)]
pub struct NodeBehaviour {
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub messages: request_response::Behaviour<EnvelopeCodec>,
    /// Reservations on relays, and connections through them (off in a
    /// swarm without the relay transport: the simulator's).
    pub relay_client: Toggle<relay::client::Behaviour>,
    /// Relaying for others (`[relay] serve`), within [`crate::nat::RelayLimits`].
    pub relay: Toggle<relay::Behaviour>,
    /// Hole punching: a relayed connection upgraded to a direct one.
    pub dcutr: dcutr::Behaviour,
    /// Asks peers to dial our candidate addresses back: are we reachable?
    pub autonat: autonat::v2::client::Behaviour,
    /// Dials other peers' candidate addresses back for them.
    pub autonat_server: autonat::v2::server::Behaviour,
}

impl std::fmt::Debug for NodeBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeBehaviour")
    }
}

impl NodeBehaviour {
    /// `agent` is what identify tells peers we run ([`wire::agent_string`]);
    /// every other limit at its default for `max_connections`; no relay
    /// client (a swarm of the simulator's, which never needs a relay, has
    /// no relay transport for it) and no relaying for others.
    pub fn new(
        key: &libp2p::identity::Keypair,
        agent: &str,
        gossipsub: gossipsub::Behaviour,
        max_connections: u32,
    ) -> Self {
        Self::with_limits(
            key,
            agent,
            gossipsub,
            &NetLimits::with_max_connections(max_connections),
            None,
            None,
        )
    }

    /// As [`new`](Self::new), with the connection and stream limits of
    /// `limits`, the relay client the swarm builder made
    /// ([`wire::build_swarm`]), and relaying for others within `serve`.
    pub fn with_limits(
        key: &libp2p::identity::Keypair,
        agent: &str,
        gossipsub: gossipsub::Behaviour,
        limits: &NetLimits,
        relay_client: Option<relay::client::Behaviour>,
        serve: Option<&crate::nat::RelayLimits>,
    ) -> Self {
        let me = key.public().to_peer_id();
        NodeBehaviour {
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(limits.max_connections))
                    .with_max_established_incoming(Some(limits.max_inbound_connections))
                    .with_max_established_outgoing(Some(limits.max_outbound_connections))
                    .with_max_established_per_peer(Some(limits.connections_per_peer))
                    .with_max_pending_incoming(Some(limits.max_inbound_connections / 4 + 1)),
            ),
            identify: wire::identify(key, agent),
            ping: ping::Behaviour::new(ping::Config::new()),
            kad: wire::kademlia(key),
            gossipsub,
            messages: request_response::Behaviour::new(
                [(MESSAGE_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(wire::DIRECT_REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(limits.streams_per_connection.max(1)),
            ),
            relay_client: Toggle::from(relay_client),
            relay: Toggle::from(serve.map(|l| relay::Behaviour::new(me, l.config()))),
            dcutr: dcutr::Behaviour::new(me),
            // Probes every 5 s while candidates are untested.
            autonat: autonat::v2::client::Behaviour::default(),
            autonat_server: autonat::v2::server::Behaviour::default(),
        }
    }
}

/// Gossipsub for a node: shared configuration, plus metrics into `registry`.
pub fn node_gossipsub(
    key: &libp2p::identity::Keypair,
    registry: &mut libp2p::metrics::Registry,
) -> Result<gossipsub::Behaviour, NetworkError> {
    Ok(wire::gossipsub(key)?.with_metrics(
        registry.sub_registry_with_prefix("gossipsub"),
        gossipsub::MetricsConfig::default(),
    ))
}

/// One signed envelope per request, one empty acknowledgement per response,
/// each as a big-endian u32 length and the bytes.
///
/// A declared length is a claim, not bytes: the frame is read as its bytes
/// arrive, in [`READ_CHUNK`] steps, so a peer that announces a megabyte and
/// sends nothing costs a few bytes, not the megabyte. Once the envelope's
/// first bytes name its kind, the frame may be no longer than that kind's
/// largest envelope ([`frame_cap`]); a length over the largest envelope of
/// any kind is refused before anything is read.
#[derive(Clone, Debug, Default)]
pub struct EnvelopeCodec;

/// A frame grows by at most this much per read.
pub const READ_CHUNK: usize = 16 * 1024;

/// The kind an envelope's first bytes name, if they are an envelope of our
/// protocol version. The envelope is bincode (varint): the version, a u16
/// below 251, is one byte; the kind's tag, an index below 251, the next.
pub fn declared_kind(prefix: &[u8]) -> Option<Kind> {
    match prefix {
        [version, tag, ..] if u16::from(*version) == PROTOCOL_VERSION => {
            Kind::ALL.get(usize::from(*tag)).copied()
        }
        _ => None,
    }
}

/// The largest frame whose first bytes are `prefix`: the largest envelope
/// of the kind it names, or of any kind when it names none (an envelope of
/// another version, refused later by the protocol's checks).
pub fn frame_cap(prefix: &[u8]) -> usize {
    declared_kind(prefix).map_or_else(max_envelope_bytes, |k| {
        k.max_payload_bytes() + (max_envelope_bytes() - max_payload_of_any())
    })
}

fn max_payload_of_any() -> usize {
    Kind::ALL
        .iter()
        .map(|k| k.max_payload_bytes())
        .max()
        .unwrap_or(0)
}

fn too_large(len: usize, cap: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("direct message of {len} bytes exceeds the {cap} byte limit"),
    )
}

async fn read_frame<T: libp2p::futures::AsyncRead + Unpin + Send>(
    io: &mut T,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max_envelope_bytes() {
        return Err(too_large(len, max_envelope_bytes()));
    }
    let mut buf = Vec::with_capacity(len.min(READ_CHUNK));
    let mut chunk = vec![0u8; len.min(READ_CHUNK)];
    let mut cap = max_envelope_bytes();
    while buf.len() < len {
        let want = (len - buf.len()).min(chunk.len());
        let n = io.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let had = buf.len();
        buf.extend_from_slice(&chunk[..n]);
        // The kind is known from the second byte on: hold the frame to it.
        if had < 2 && buf.len() >= 2 {
            cap = frame_cap(&buf);
            if len > cap {
                return Err(too_large(len, cap));
            }
        }
    }
    debug_assert!(buf.len() <= cap);
    Ok(buf)
}

async fn write_frame<T: libp2p::futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|l| (*l as usize) <= max_envelope_bytes())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "direct message too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

impl request_response::Codec for EnvelopeCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: libp2p::futures::AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: libp2p::futures::AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: libp2p::futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: libp2p::futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res).await
    }
}

/// The DHT keys a node with this advert provides, so a peer looking for a
/// capability can find providers without waiting for adverts.
pub fn capability_keys(ad: &CapabilityAdvert) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    if ad.container_runtime.is_some() || ad.adapter("docker").is_some() {
        keys.insert("cap/docker".to_string());
    }
    if ad.adapter("wasm").is_some() {
        keys.insert("cap/wasm".to_string());
    }
    if ad.gpus.iter().any(|g| g.vendor == GpuVendor::Nvidia) {
        keys.insert("cap/gpu/nvidia".to_string());
    }
    for a in &ad.adapters {
        for m in &a.models {
            keys.insert(format!("cap/llm/{}", m.name));
        }
    }
    if ad.orchestrator_candidate {
        keys.insert("cap/orchestrator".to_string());
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::futures::executor::block_on;
    use libp2p::request_response::Codec;
    use modchain_protocol::{AdapterInfo, ContainerRuntime, GpuInfo, ModelInfo};

    #[test]
    fn capabilities_become_dht_keys() {
        let ad = CapabilityAdvert {
            container_runtime: Some(ContainerRuntime::default()),
            gpus: vec![GpuInfo {
                vendor: GpuVendor::Nvidia,
                model: "RTX 4090".into(),
                vram_bytes: 24 << 30,
                compute_capability: Some((8, 9)),
                driver: "550".into(),
            }],
            adapters: vec![AdapterInfo {
                name: "llm".into(),
                methods: vec!["generate".into()],
                models: vec![ModelInfo {
                    name: "llama3:8b".into(),
                    parameters: 8_000_000_000,
                    quantization: "Q4_K_M".into(),
                    context_length: 8192,
                }],
            }],
            orchestrator_candidate: true,
            ..CapabilityAdvert::default()
        };
        let keys: Vec<String> = capability_keys(&ad).into_iter().collect();
        assert_eq!(
            keys,
            [
                "cap/docker",
                "cap/gpu/nvidia",
                "cap/llm/llama3:8b",
                "cap/orchestrator"
            ]
        );
        assert!(capability_keys(&CapabilityAdvert::default()).is_empty());
    }

    #[test]
    fn codec_round_trips_and_refuses_oversized_frames() {
        let mut codec = EnvelopeCodec;
        let mut buf = libp2p::futures::io::Cursor::new(Vec::new());
        block_on(codec.write_request(&MESSAGE_PROTOCOL, &mut buf, b"hello".to_vec()))
            .expect("write");
        let mut rd = libp2p::futures::io::Cursor::new(buf.into_inner());
        assert_eq!(
            block_on(codec.read_request(&MESSAGE_PROTOCOL, &mut rd)).expect("read"),
            b"hello"
        );

        let huge = (max_envelope_bytes() as u32 + 1).to_be_bytes().to_vec();
        let mut rd = libp2p::futures::io::Cursor::new(huge);
        let err = block_on(codec.read_request(&MESSAGE_PROTOCOL, &mut rd)).expect_err("too big");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_first_two_bytes_of_every_kind_name_it() {
        use modchain_protocol::{Envelope, Keypair, Message, Timestamp};
        // Pins the layout `declared_kind` reads against the real encoding.
        let key = Keypair::from_seed(1);
        let sealed = Envelope::seal(
            &key,
            Timestamp(1),
            Message::Advert(CapabilityAdvert::default()),
        )
        .to_bytes();
        assert_eq!(declared_kind(&sealed), Some(Kind::Advert));
        for kind in Kind::ALL {
            let mut e = Envelope::decode(&sealed).expect("decodes");
            e.kind = kind;
            assert_eq!(declared_kind(&e.to_bytes()), Some(kind), "{kind}");
        }
        assert_eq!(declared_kind(&[0xff, 0]), None);
        assert_eq!(frame_cap(&[0xff, 0]), max_envelope_bytes());
    }

    #[test]
    fn a_frame_longer_than_its_kind_allows_is_refused_after_two_bytes() {
        // A "fetch" (a few hundred bytes at most) that claims a megabyte.
        let len = 1024 * 1024u32;
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend([PROTOCOL_VERSION as u8, Kind::Fetch as u8]);
        let mut rd = libp2p::futures::io::Cursor::new(bytes);
        let err = block_on(EnvelopeCodec.read_request(&MESSAGE_PROTOCOL, &mut rd))
            .expect_err("over the kind's cap");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn a_declared_length_is_not_allocated_before_the_bytes_arrive() {
        // A megabyte announced, ten bytes sent, then the stream ends: the
        // read fails at the end, holding no more than what arrived.
        let len = 1024 * 1024u32;
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend([0xffu8; 10]);
        let mut rd = libp2p::futures::io::Cursor::new(bytes);
        let err = block_on(EnvelopeCodec.read_request(&MESSAGE_PROTOCOL, &mut rd))
            .expect_err("truncated");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
