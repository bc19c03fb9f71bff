//! The node's own libp2p behaviour (identify, ping, Kademlia, gossipsub,
//! request-response for direct messages, connection limits), the
//! direct-message codec, and the DHT keys a node provides.
//!
//! It lives in this library, beside the shared wire settings of [`wire`],
//! so that the node and the simulator's libp2p engine run one and the same
//! behaviour: what the simulator measures over real swarms is what a node does.

use crate::wire::{self, MESSAGE_PROTOCOL, NetworkError};
use libp2p::futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, connection_limits, gossipsub, identify, kad, ping, request_response};
use modchain_protocol::{CapabilityAdvert, GpuVendor, max_envelope_bytes};
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
}

impl std::fmt::Debug for NodeBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeBehaviour")
    }
}

impl NodeBehaviour {
    /// `agent` is what identify tells peers we run ([`wire::agent_string`]).
    pub fn new(
        key: &libp2p::identity::Keypair,
        agent: &str,
        gossipsub: gossipsub::Behaviour,
        max_connections: u32,
    ) -> Self {
        NodeBehaviour {
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(max_connections))
                    .with_max_established_per_peer(Some(wire::CONNECTIONS_PER_PEER))
                    .with_max_pending_incoming(Some(max_connections / 4 + 1)),
            ),
            identify: wire::identify(key, agent),
            ping: ping::Behaviour::new(ping::Config::new()),
            kad: wire::kademlia(key),
            gossipsub,
            messages: request_response::Behaviour::new(
                [(MESSAGE_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(wire::DIRECT_REQUEST_TIMEOUT),
            ),
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
/// each as a big-endian u32 length and the bytes. Lengths over the largest
/// envelope are refused before anything is allocated.
#[derive(Clone, Debug, Default)]
pub struct EnvelopeCodec;

async fn read_frame<T: libp2p::futures::AsyncRead + Unpin + Send>(
    io: &mut T,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max_envelope_bytes() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "direct message of {len} bytes exceeds the {} byte limit",
                max_envelope_bytes()
            ),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
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
}
