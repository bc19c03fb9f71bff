//! Who a scenario's peers are: keys, protocol configuration, region,
//! bandwidth and roles, drawn from the seed. Both engines build their peers
//! here, so one scenario and seed give the same peers (same keys, same
//! prices, same regions) on the model engine and on real swarms; and the
//! job specifications, execution times and execution reports both engines
//! use.

use crate::rng::{Purpose, Stream};
use crate::scenario::{Behaviour, DurationDist, JobClass, PeerGroup, ProtocolSpec, Scenario};
use modchain_protocol::{
    AdapterInfo, CapabilityAdvert, Capacity, ClientConfig, CpuInfo, Credits, ElectionConfig,
    ExecutionReport, ExitStatus, GpuInfo, GpuVendor, JobSpec, Keypair, MemoryInfo, NodeId,
    OrchestratorConfig, PeerConfig, PriceTable, ProviderConfig, Requirements, StorageInfo,
    StorageKind, Timestamp, Usage,
};

/// One peer of the scenario, before anything runs.
#[derive(Clone, Debug)]
pub struct PeerPlan {
    pub key: Keypair,
    pub node: NodeId,
    pub config: PeerConfig,
    /// Index into `network.regions`.
    pub region: u16,
    /// Upload bandwidth, bytes per second.
    pub bandwidth: f64,
    pub candidate: bool,
    pub client: bool,
    pub provider: bool,
    pub pretrusted: bool,
    pub behaviour: Option<Behaviour>,
}

impl PeerPlan {
    /// The class its figures are reported under: how it misbehaves, or `honest`.
    pub fn class(&self) -> &'static str {
        self.behaviour.map_or("honest", Behaviour::label)
    }
}

/// Every peer of a scenario, in group order.
#[derive(Clone, Debug)]
pub struct Population {
    pub peers: Vec<PeerPlan>,
    /// Peer indices of each `[[peers]]` group.
    pub group_members: Vec<Vec<u32>>,
    /// Nodes of the `pretrusted` groups (the bootstrap peers).
    pub pretrusted: Vec<NodeId>,
}

impl Population {
    /// Every provider's class and node, for the figures by class.
    pub fn providers(&self) -> impl Iterator<Item = (&'static str, NodeId)> + '_ {
        self.peers
            .iter()
            .filter(|p| p.provider)
            .map(|p| (p.class(), p.node))
    }
}

/// Draws the peers of `scenario` from `seed`.
pub fn plan(scenario: &Scenario, seed: u64) -> Population {
    let mut placement = Stream::new(seed, Purpose::Placement);
    let p = &scenario.protocol;
    let orchestrator_config = {
        let mut o = OrchestratorConfig::default();
        if let Some(v) = p.bid_window {
            o.bid_window_ms = v.ms();
        }
        if let Some(v) = p.enough_bids {
            o.enough_bids = v;
        }
        if let Some(v) = p.max_calls {
            o.max_calls = v;
        }
        if let Some(v) = p.max_attempts {
            o.max_attempts = v;
        }
        if let Some(v) = p.status_timeout {
            o.status_timeout_ms = v.ms();
        }
        if let Some(v) = p.result_grace {
            o.result_grace_ms = v.ms();
        }
        if let Some(v) = p.requeue_interval {
            o.requeue_interval_ms = v.ms();
        }
        if let Some(v) = p.max_concurrent_auctions {
            o.max_concurrent_auctions = v;
        }
        o
    };
    let mut election = ElectionConfig::default();
    if let Some(v) = p.epoch {
        election.epoch_ms = v.ms();
    }
    if let Some(v) = p.orchestrators {
        election.orchestrators = v;
    }
    let mut client_config = ClientConfig::default();
    if let Some(v) = p.silence_timeout {
        client_config.silence_timeout_ms = v.ms();
    }
    let base = PeerConfig::default();
    let advert_interval_ms = p
        .advert_interval
        .map_or(base.advert_interval_ms, |d| d.ms());
    let advert_ttl_ms = p.advert_ttl.map_or(base.advert_ttl_ms, |d| d.ms());

    let region_weights: Vec<f64> = scenario.network.regions.iter().map(|r| r.weight).collect();
    let mut peers: Vec<PeerPlan> = Vec::with_capacity(scenario.total_peers());
    let mut group_members = Vec::new();
    let mut pretrusted = Vec::new();
    for g in &scenario.peers {
        let allowed: Vec<usize> = match &g.regions {
            Some(names) => names
                .iter()
                .filter_map(|n| scenario.region_index(n))
                .collect(),
            None => (0..scenario.network.regions.len()).collect(),
        };
        let weights: Vec<f64> = allowed.iter().map(|r| region_weights[*r]).collect();
        let mut members = Vec::with_capacity(g.count);
        for _ in 0..g.count {
            let i = peers.len() as u32;
            let region = allowed[placement.weighted(&weights)];
            let jitter = 1.0 + g.price_jitter * (2.0 * placement.unit() - 1.0);
            let key = Keypair::from_seed((seed << 32) ^ u64::from(i));
            let config = peer_config(
                g,
                jitter,
                &election,
                &orchestrator_config,
                &client_config,
                p,
                advert_interval_ms,
                advert_ttl_ms,
            );
            let node = key.node_id();
            if g.pretrusted {
                pretrusted.push(node);
            }
            members.push(i);
            peers.push(PeerPlan {
                key,
                node,
                config,
                region: region as u16,
                bandwidth: g.bandwidth.unwrap_or(scenario.network.bandwidth).0,
                candidate: g.candidate,
                client: g.client,
                provider: g.provider,
                pretrusted: g.pretrusted,
                behaviour: g.byzantine,
            });
        }
        group_members.push(members);
    }
    Population {
        peers,
        group_members,
        pretrusted,
    }
}

/// Credits as the protocol's micro-credits.
pub fn micro(credits: f64) -> Credits {
    Credits((credits * 1e6).round().max(0.0) as u64)
}

fn scale(c: Credits, f: f64) -> Credits {
    Credits((c.0 as f64 * f).round().max(0.0) as u64)
}

/// The job a client submits for an arrival of class `c` at `now`. Jobs name
/// the `wasm` adapter every simulated provider offers; nothing runs it.
pub fn job_spec(c: &JobClass, now: Timestamp, nonce: u64) -> JobSpec {
    JobSpec {
        adapter: "wasm".into(),
        method: "run".into(),
        params: "{}".into(),
        requirements: Requirements {
            cores: c.cores,
            memory_bytes: c.memory.0,
            gpus: c.gpus,
            gpu_vendor: None,
            min_vram_bytes: c.min_vram.0,
            storage_bytes: c.storage.0,
            model: None,
        },
        max_price: micro(c.max_price),
        timeout_ms: c.timeout.ms(),
        priority: c.priority,
        start_by: now.plus(c.start_within.ms()),
        nonce,
    }
}

/// How often reputation is recomputed from the ledger: the scenario's
/// `reputation_interval`, else once per epoch.
pub fn reputation_interval_ms(scenario: &Scenario) -> u64 {
    scenario.protocol.reputation_interval.map_or_else(
        || {
            scenario
                .protocol
                .epoch
                .map_or(ElectionConfig::default().epoch_ms, |d| d.ms())
        },
        |d| d.ms(),
    )
}

/// What a modelled adapter reports when a job ends after `wall_ms`: a
/// wrong-result provider's output is `garbage`, bytes no honest run gives.
pub fn execution_report(exit: ExitStatus, wall_ms: u64, garbage: bool) -> ExecutionReport {
    ExecutionReport {
        exit: Some(exit),
        stdout: if garbage {
            b"\x00\x13garbage\xff".to_vec()
        } else {
            b"ok\n".to_vec()
        },
        stderr: Vec::new(),
        outputs: Vec::new(),
        usage: Usage {
            wall_ms,
            cpu_ms: wall_ms,
            peak_memory_bytes: 0,
            tokens: 0,
        },
    }
}

/// Draws an execution time in milliseconds.
pub fn draw(rng: &mut Stream, dist: &DurationDist) -> u64 {
    match dist {
        DurationDist::Constant { value } => value.ms(),
        DurationDist::Uniform { min, max } => {
            min.ms() + (rng.unit() * (max.ms() - min.ms()) as f64) as u64
        }
        DurationDist::Exponential { mean } => rng.exponential(mean.ms() as f64) as u64,
        DurationDist::Lognormal { median, sigma } => {
            (median.ms() as f64 * (sigma * rng.normal()).exp()) as u64
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn peer_config(
    g: &PeerGroup,
    price_jitter: f64,
    election: &ElectionConfig,
    orchestrator: &OrchestratorConfig,
    client: &ClientConfig,
    p: &ProtocolSpec,
    advert_interval_ms: u64,
    advert_ttl_ms: u64,
) -> PeerConfig {
    let factor = price_jitter
        * if g.byzantine == Some(Behaviour::Underbid) {
            g.underbid_factor
        } else {
            1.0
        };
    let prices = PriceTable {
        per_job: scale(micro(g.prices.per_job), factor),
        per_core_second: scale(micro(g.prices.per_core_second), factor),
        per_gib_memory_second: scale(micro(g.prices.per_gib_memory_second), factor),
        per_gpu_second: scale(micro(g.prices.per_gpu_second), factor),
        per_1k_tokens: scale(micro(g.prices.per_1k_tokens), factor),
    };
    let capacity = Capacity {
        cores: g.cores,
        memory_bytes: g.memory.0,
        gpus: g.gpus,
        storage_bytes: g.storage.0,
    };
    let provider = g.provider.then(|| {
        let mut c = ProviderConfig {
            prices,
            capacity,
            adapters: vec![AdapterInfo {
                name: "wasm".into(),
                methods: vec!["run".into()],
                models: vec![],
            }],
            ..ProviderConfig::default()
        };
        if let Some(v) = p.heartbeat {
            c.heartbeat_ms = v.ms();
        }
        if let Some(v) = p.award_grace {
            c.award_grace_ms = v.ms();
        }
        c
    });
    let advert = CapabilityAdvert {
        cpu: CpuInfo {
            vendor: "sim".into(),
            model: g.name.clone(),
            cores: g.cores,
            threads: g.cores,
            features: Vec::new(),
        },
        memory: MemoryInfo {
            total_bytes: g.memory.0,
            available_bytes: g.memory.0,
        },
        storage: StorageInfo {
            total_bytes: g.storage.0,
            available_bytes: g.storage.0,
            kind: StorageKind::Ssd,
        },
        gpus: (0..g.gpus)
            .map(|_| GpuInfo {
                vendor: GpuVendor::Nvidia,
                model: "sim-gpu".into(),
                vram_bytes: g.gpu_vram.0,
                compute_capability: Some((8, 6)),
                driver: "sim".into(),
            })
            .collect(),
        ..CapabilityAdvert::default()
    };
    PeerConfig {
        election: election.clone(),
        orchestrator: g.candidate.then(|| orchestrator.clone()),
        provider,
        client: client.clone(),
        advert,
        advert_ttl_ms,
        advert_interval_ms,
        // The model engine delivers adverts to a sample of peers, not to
        // every provider, so a provider's own view of the election is not
        // the network's: the seat checks would refuse honest calls.
        check_seats: false,
        // A node's cap: populations past it show what the cap does.
        max_adverts: modchain_protocol::DEFAULT_MAX_ADVERTS,
    }
}
