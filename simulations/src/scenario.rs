//! Scenarios as data: a TOML file describes the peers, the network, the
//! workload, churn and faults. Every table rejects unknown keys, and every
//! value that does not parse names its key, its line and the form expected.

use crate::units::{Bandwidth, ByteSize, Duration, Rate};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("cannot read the scenario file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: `{key}` {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

/// A whole scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seed used when the command line gives none.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated time to run.
    pub duration: Duration,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub protocol: ProtocolSpec,
    /// `[[peers]]` groups: how many peers of each kind.
    pub peers: Vec<PeerGroup>,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default)]
    pub churn: Option<Churn>,
    #[serde(default)]
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub metrics: MetricsSpec,
}

fn default_seed() -> u64 {
    1
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: String,
    /// Share of peers placed here when a group does not list its regions.
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSpec {
    /// gossipsub `D`: mesh peers per peer.
    #[serde(default = "mesh_d")]
    pub d: usize,
    /// gossipsub `D_low`: graft when below.
    #[serde(default = "mesh_d_low")]
    pub d_low: usize,
    /// gossipsub `D_high`: refuse grafts above.
    #[serde(default = "mesh_d_high")]
    pub d_high: usize,
    /// gossipsub heartbeat: how often a damaged mesh is repaired.
    #[serde(default = "mesh_heartbeat")]
    pub heartbeat: Duration,
}

fn mesh_d() -> usize {
    6
}
fn mesh_d_low() -> usize {
    4
}
fn mesh_d_high() -> usize {
    12
}
fn mesh_heartbeat() -> Duration {
    Duration(1000)
}

impl Default for MeshSpec {
    fn default() -> Self {
        MeshSpec {
            d: mesh_d(),
            d_low: mesh_d_low(),
            d_high: mesh_d_high(),
            heartbeat: mesh_heartbeat(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    #[serde(default = "default_regions")]
    pub regions: Vec<Region>,
    /// One-way latency in milliseconds between regions: `latency_ms.eu.us = 45`.
    /// Missing pairs are taken from the reverse direction.
    #[serde(default)]
    pub latency_ms: BTreeMap<String, BTreeMap<String, f64>>,
    /// Each message's latency is scaled by `1 + jitter * u`, `u` uniform in [0, 1).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Probability that a message (or one gossip transmission) is lost.
    #[serde(default)]
    pub loss: f64,
    /// Upload bandwidth of peers whose group does not set one.
    #[serde(default = "default_bandwidth")]
    pub bandwidth: Bandwidth,
    /// Time a peer takes to validate a gossip message before forwarding it.
    #[serde(default = "default_hop_delay")]
    pub hop_delay: Duration,
    #[serde(default)]
    pub mesh: MeshSpec,
}

fn default_regions() -> Vec<Region> {
    vec![Region {
        name: "local".into(),
        weight: 1.0,
    }]
}
fn default_jitter() -> f64 {
    0.1
}
fn default_bandwidth() -> Bandwidth {
    Bandwidth(100e6 / 8.0)
}
fn default_hop_delay() -> Duration {
    Duration(1)
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            regions: default_regions(),
            latency_ms: BTreeMap::new(),
            jitter: default_jitter(),
            loss: 0.0,
            bandwidth: default_bandwidth(),
            hop_delay: default_hop_delay(),
            mesh: MeshSpec::default(),
        }
    }
}

/// Protocol parameters; anything left out keeps the protocol crate's default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolSpec {
    pub epoch: Option<Duration>,
    /// Orchestrators elected per epoch (K).
    pub orchestrators: Option<usize>,
    pub advert_interval: Option<Duration>,
    pub advert_ttl: Option<Duration>,
    pub bid_window: Option<Duration>,
    pub enough_bids: Option<usize>,
    pub max_calls: Option<usize>,
    pub max_attempts: Option<u32>,
    pub status_timeout: Option<Duration>,
    pub result_grace: Option<Duration>,
    pub requeue_interval: Option<Duration>,
    pub max_concurrent_auctions: Option<usize>,
    pub heartbeat: Option<Duration>,
    pub award_grace: Option<Duration>,
    pub silence_timeout: Option<Duration>,
    /// How often the simulated ledger recomputes reputation and pushes it to
    /// every peer (default: once per epoch, at the epoch boundary).
    pub reputation_interval: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Bids, wins, then never reports status nor a result.
    NeverDeliver,
    /// Runs the job but returns a non-zero exit and garbage output.
    WrongResult,
    /// Bids far below cost (`underbid_factor` of its prices), then walks away.
    Underbid,
}

impl Behaviour {
    pub fn label(self) -> &'static str {
        match self {
            Behaviour::NeverDeliver => "never_deliver",
            Behaviour::WrongResult => "wrong_result",
            Behaviour::Underbid => "underbid",
        }
    }
}

/// Prices in credits (1 credit = 1,000,000 micro-credits).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    #[serde(default = "price_per_job")]
    pub per_job: f64,
    #[serde(default = "price_per_core_second")]
    pub per_core_second: f64,
    #[serde(default = "price_per_gib_memory_second")]
    pub per_gib_memory_second: f64,
    #[serde(default = "price_per_gpu_second")]
    pub per_gpu_second: f64,
    #[serde(default)]
    pub per_1k_tokens: f64,
}

fn price_per_job() -> f64 {
    0.001
}
fn price_per_core_second() -> f64 {
    0.0001
}
fn price_per_gib_memory_second() -> f64 {
    0.00001
}
fn price_per_gpu_second() -> f64 {
    0.002
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            per_job: price_per_job(),
            per_core_second: price_per_core_second(),
            per_gib_memory_second: price_per_gib_memory_second(),
            per_gpu_second: price_per_gpu_second(),
            per_1k_tokens: 0.0,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerGroup {
    pub name: String,
    pub count: usize,
    /// Regions to spread this group over (by region weight); default: all.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    #[serde(default = "default_cores")]
    pub cores: u32,
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    #[serde(default = "default_storage")]
    pub storage: ByteSize,
    #[serde(default)]
    pub gpus: u32,
    #[serde(default)]
    pub gpu_vram: ByteSize,
    /// Sells capacity.
    #[serde(default = "yes")]
    pub provider: bool,
    /// Stands as orchestrator candidate.
    #[serde(default)]
    pub candidate: bool,
    /// Submits the workload's jobs.
    #[serde(default)]
    pub client: bool,
    /// Pre-trusted in the reputation computation (bootstrap peers).
    #[serde(default)]
    pub pretrusted: bool,
    #[serde(default)]
    pub bandwidth: Option<Bandwidth>,
    #[serde(default)]
    pub prices: Prices,
    /// Each peer's prices are scaled by `1 + price_jitter * u`, `u` uniform in [-1, 1).
    #[serde(default)]
    pub price_jitter: f64,
    #[serde(default)]
    pub byzantine: Option<Behaviour>,
    /// Price multiplier of `underbid` providers.
    #[serde(default = "default_underbid")]
    pub underbid_factor: f64,
}

fn default_cores() -> u32 {
    4
}
fn default_memory() -> ByteSize {
    ByteSize(8 << 30)
}
fn default_storage() -> ByteSize {
    ByteSize(100 << 30)
}
fn yes() -> bool {
    true
}
fn default_underbid() -> f64 {
    0.1
}

/// How long a job runs once started.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum DurationDist {
    Constant { value: Duration },
    Uniform { min: Duration, max: Duration },
    Exponential { mean: Duration },
    Lognormal { median: Duration, sigma: f64 },
}

impl Default for DurationDist {
    fn default() -> Self {
        DurationDist::Lognormal {
            median: Duration::from_secs(30),
            sigma: 0.5,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobClass {
    pub name: String,
    #[serde(default = "one")]
    pub weight: f64,
    #[serde(default = "one_u32")]
    pub cores: u32,
    #[serde(default = "default_job_memory")]
    pub memory: ByteSize,
    #[serde(default)]
    pub gpus: u32,
    #[serde(default)]
    pub min_vram: ByteSize,
    #[serde(default)]
    pub storage: ByteSize,
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// In credits.
    #[serde(default = "default_max_price")]
    pub max_price: f64,
    #[serde(default)]
    pub priority: u8,
    /// `start_by` is the submission time plus this.
    #[serde(default = "default_start_within")]
    pub start_within: Duration,
    #[serde(default)]
    pub duration: DurationDist,
}

fn one_u32() -> u32 {
    1
}
fn default_job_memory() -> ByteSize {
    ByteSize(512 << 20)
}
fn default_timeout() -> Duration {
    Duration::from_mins(5)
}
fn default_max_price() -> f64 {
    1.0
}
fn default_start_within() -> Duration {
    Duration::from_mins(5)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// First submission no earlier than this (adverts need time to spread).
    #[serde(default = "default_workload_start")]
    pub start: Duration,
    /// No submissions after this (default: the scenario's duration).
    #[serde(default)]
    pub stop: Option<Duration>,
    /// Poisson arrival rate of jobs over the whole network.
    #[serde(default)]
    pub rate: Rate,
    #[serde(default)]
    pub jobs: Vec<JobClass>,
}

fn default_workload_start() -> Duration {
    Duration::from_mins(1)
}

impl Workload {
    /// The job classes' names, by class index.
    pub fn class_names(&self) -> Vec<String> {
        self.jobs.iter().map(|j| j.name.clone()).collect()
    }
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            start: default_workload_start(),
            stop: None,
            rate: Rate(0.0),
            jobs: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Peer groups whose peers come and go.
    pub groups: Vec<String>,
    /// Mean time online before a peer leaves (exponential).
    pub session: Duration,
    /// Mean time offline before it comes back (exponential); absent: never.
    #[serde(default)]
    pub downtime: Option<Duration>,
    /// How long orchestrators take to notice a peer is gone (connection timeout).
    #[serde(default = "default_detect")]
    pub detect: Duration,
}

fn default_detect() -> Duration {
    Duration::from_secs(10)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Cut the network between groups of regions; regions not listed form one more group.
    Partition {
        at: Duration,
        groups: Vec<Vec<String>>,
        #[serde(default)]
        heal: Option<Duration>,
    },
    /// Heal any partition.
    Heal { at: Duration },
    /// Crash `count` online peers of a group (chosen by the seed).
    Crash {
        at: Duration,
        group: String,
        count: usize,
        #[serde(default)]
        restart: Option<Duration>,
    },
    /// Crash the first `count` orchestrators elected at that moment.
    CrashOrchestrators {
        at: Duration,
        #[serde(default = "one_usize")]
        count: usize,
        #[serde(default)]
        restart: Option<Duration>,
    },
    /// Peers of a group publish `count` receipts with forged client signatures.
    ForgedReceipts {
        at: Duration,
        group: String,
        count: usize,
    },
}

fn one_usize() -> usize {
    1
}

impl Fault {
    pub fn at(&self) -> Duration {
        match self {
            Fault::Partition { at, .. }
            | Fault::Heal { at }
            | Fault::Crash { at, .. }
            | Fault::CrashOrchestrators { at, .. }
            | Fault::ForgedReceipts { at, .. } => *at,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    /// Width of one row of the time series.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Write SVG plots.
    #[serde(default = "yes")]
    pub plots: bool,
}

fn default_interval() -> Duration {
    Duration::from_mins(1)
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec {
            interval: default_interval(),
            plots: true,
        }
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks scenario text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        scenario.validate(origin)?;
        Ok(scenario)
    }

    pub fn total_peers(&self) -> usize {
        self.peers.iter().map(|g| g.count).sum()
    }

    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.network.regions.iter().position(|r| r.name == name)
    }

    /// The names of `regions`, indices into `network.regions` that the
    /// engines drew from this scenario.
    pub fn region_names(&self, regions: impl IntoIterator<Item = u16>) -> Vec<String> {
        regions
            .into_iter()
            .map(|r| self.network.regions[usize::from(r)].name.clone())
            .collect()
    }

    /// One-way latency between two regions in milliseconds.
    pub fn latency_ms(&self, a: usize, b: usize) -> f64 {
        let (ra, rb) = (&self.network.regions[a].name, &self.network.regions[b].name);
        self.network
            .latency_ms
            .get(ra)
            .and_then(|m| m.get(rb))
            .or_else(|| self.network.latency_ms.get(rb).and_then(|m| m.get(ra)))
            .copied()
            .unwrap_or(DEFAULT_LATENCY_MS)
    }

    fn validate(&self, origin: &str) -> Result<(), ScenarioError> {
        let bad = |key: &str, message: String| ScenarioError::Invalid {
            path: origin.to_string(),
            key: key.to_string(),
            message,
        };
        if self.duration.ms() == 0 {
            return Err(bad(
                "duration",
                "must be longer than zero, e.g. \"1h\"".into(),
            ));
        }
        let net = &self.network;
        if net.regions.is_empty() {
            return Err(bad("network.regions", "needs at least one region".into()));
        }
        let mut names = BTreeSet::new();
        for (i, r) in net.regions.iter().enumerate() {
            if !names.insert(r.name.as_str()) {
                return Err(bad(
                    &format!("network.regions[{i}].name"),
                    format!("`{}` is listed twice", r.name),
                ));
            }
            if !(r.weight > 0.0 && r.weight.is_finite()) {
                return Err(bad(
                    &format!("network.regions[{i}].weight"),
                    "must be a number above zero".into(),
                ));
            }
        }
        for (a, row) in &net.latency_ms {
            if !names.contains(a.as_str()) {
                return Err(bad(
                    &format!("network.latency_ms.{a}"),
                    format!(
                        "names a region not in network.regions (known: {})",
                        join(&names)
                    ),
                ));
            }
            for (b, v) in row {
                if !names.contains(b.as_str()) {
                    return Err(bad(
                        &format!("network.latency_ms.{a}.{b}"),
                        format!(
                            "names a region not in network.regions (known: {})",
                            join(&names)
                        ),
                    ));
                }
                if !(*v >= 0.0 && v.is_finite()) {
                    return Err(bad(
                        &format!("network.latency_ms.{a}.{b}"),
                        "must be a number of milliseconds, zero or more".into(),
                    ));
                }
            }
        }
        if net.regions.len() > 1 {
            for a in &net.regions {
                for b in &net.regions {
                    let has = net
                        .latency_ms
                        .get(&a.name)
                        .is_some_and(|m| m.contains_key(&b.name))
                        || net
                            .latency_ms
                            .get(&b.name)
                            .is_some_and(|m| m.contains_key(&a.name));
                    if !has {
                        return Err(bad(
                            &format!("network.latency_ms.{}.{}", a.name, b.name),
                            "is missing: with several regions every pair needs a latency in milliseconds".into(),
                        ));
                    }
                }
            }
        }
        if !(0.0..1.0).contains(&net.loss) {
            return Err(bad(
                "network.loss",
                "must be a probability in [0, 1)".into(),
            ));
        }
        if !(net.jitter >= 0.0 && net.jitter.is_finite()) {
            return Err(bad(
                "network.jitter",
                "must be a fraction, zero or more".into(),
            ));
        }
        let m = &net.mesh;
        if m.d == 0 || m.d_low > m.d || m.d > m.d_high {
            return Err(bad(
                "network.mesh",
                "needs 0 < d, d_low <= d <= d_high".into(),
            ));
        }
        if m.heartbeat.ms() == 0 {
            return Err(bad(
                "network.mesh.heartbeat",
                "must be longer than zero".into(),
            ));
        }

        let p = &self.protocol;
        if p.orchestrators == Some(0) {
            return Err(bad("protocol.orchestrators", "must be at least 1".into()));
        }
        for (key, v) in [
            ("protocol.epoch", p.epoch),
            ("protocol.advert_interval", p.advert_interval),
            ("protocol.advert_ttl", p.advert_ttl),
            ("protocol.reputation_interval", p.reputation_interval),
        ] {
            if v.is_some_and(|d| d.ms() == 0) {
                return Err(bad(key, "must be longer than zero".into()));
            }
        }

        if self.peers.is_empty() {
            return Err(bad("peers", "needs at least one [[peers]] group".into()));
        }
        let mut groups = BTreeSet::new();
        for (i, g) in self.peers.iter().enumerate() {
            let key = |k: &str| format!("peers[{i}].{k}");
            if !groups.insert(g.name.as_str()) {
                return Err(bad(
                    &key("name"),
                    format!("`{}` is used by two groups", g.name),
                ));
            }
            if g.count == 0 {
                return Err(bad(&key("count"), "must be at least 1".into()));
            }
            if let Some(rs) = &g.regions {
                if rs.is_empty() {
                    return Err(bad(
                        &key("regions"),
                        "must list at least one region, or be left out".into(),
                    ));
                }
                for r in rs {
                    if !names.contains(r.as_str()) {
                        return Err(bad(
                            &key("regions"),
                            format!(
                                "names `{r}`, not in network.regions (known: {})",
                                join(&names)
                            ),
                        ));
                    }
                }
            }
            if g.provider && g.cores == 0 {
                return Err(bad(
                    &key("cores"),
                    "a provider needs at least one core".into(),
                ));
            }
            if !(g.price_jitter >= 0.0 && g.price_jitter < 1.0) {
                return Err(bad(
                    &key("price_jitter"),
                    "must be a fraction in [0, 1)".into(),
                ));
            }
            if !(g.underbid_factor > 0.0 && g.underbid_factor.is_finite()) {
                return Err(bad(
                    &key("underbid_factor"),
                    "must be a number above zero".into(),
                ));
            }
            if g.byzantine.is_some() && !g.provider {
                return Err(bad(
                    &key("byzantine"),
                    "only providers can misbehave this way: set provider = true".into(),
                ));
            }
            for (k, v) in [
                ("prices.per_job", g.prices.per_job),
                ("prices.per_core_second", g.prices.per_core_second),
                (
                    "prices.per_gib_memory_second",
                    g.prices.per_gib_memory_second,
                ),
                ("prices.per_gpu_second", g.prices.per_gpu_second),
                ("prices.per_1k_tokens", g.prices.per_1k_tokens),
            ] {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(bad(
                        &key(k),
                        "must be a number of credits, zero or more".into(),
                    ));
                }
            }
        }
        if !self.peers.iter().any(|g| g.candidate) {
            return Err(bad(
                "peers",
                "no group has `candidate = true`: the network needs orchestrator candidates".into(),
            ));
        }

        let w = &self.workload;
        if w.rate.per_ms() < 0.0 || !w.rate.per_ms().is_finite() {
            return Err(bad("workload.rate", "must be zero or more".into()));
        }
        if w.rate.per_ms() > 0.0 {
            if w.jobs.is_empty() {
                return Err(bad(
                    "workload.jobs",
                    "needs at least one [[workload.jobs]] class when workload.rate is above zero"
                        .into(),
                ));
            }
            if !self.peers.iter().any(|g| g.client) {
                return Err(bad(
                    "peers",
                    "no group has `client = true`: nobody would submit the workload".into(),
                ));
            }
        }
        for (i, j) in w.jobs.iter().enumerate() {
            let key = |k: &str| format!("workload.jobs[{i}].{k}");
            if !(j.weight > 0.0 && j.weight.is_finite()) {
                return Err(bad(&key("weight"), "must be a number above zero".into()));
            }
            if j.timeout.ms() == 0 {
                return Err(bad(&key("timeout"), "must be longer than zero".into()));
            }
            if !(j.max_price >= 0.0 && j.max_price.is_finite()) {
                return Err(bad(
                    &key("max_price"),
                    "must be a number of credits, zero or more".into(),
                ));
            }
            match &j.duration {
                DurationDist::Uniform { min, max } if min > max => {
                    return Err(bad(&key("duration"), "has min above max".into()));
                }
                DurationDist::Lognormal { sigma, .. } if !(*sigma >= 0.0 && sigma.is_finite()) => {
                    return Err(bad(&key("duration.sigma"), "must be zero or more".into()));
                }
                _ => {}
            }
        }
        if let Some(c) = &self.churn {
            for g in &c.groups {
                if !groups.contains(g.as_str()) {
                    return Err(bad(
                        "churn.groups",
                        format!(
                            "names `{g}`, not a [[peers]] group (known: {})",
                            join(&groups)
                        ),
                    ));
                }
            }
            if c.session.ms() == 0 {
                return Err(bad("churn.session", "must be longer than zero".into()));
            }
        }
        for (i, f) in self.faults.iter().enumerate() {
            let key = |k: &str| format!("faults[{i}].{k}");
            match f {
                Fault::Partition {
                    groups: pg,
                    heal,
                    at,
                } => {
                    let mut seen = BTreeSet::new();
                    if pg.is_empty() {
                        return Err(bad(
                            &key("groups"),
                            "must list groups of regions, e.g. [[\"eu\"], [\"us\", \"asia\"]]"
                                .into(),
                        ));
                    }
                    for r in pg.iter().flatten() {
                        if !names.contains(r.as_str()) {
                            return Err(bad(
                                &key("groups"),
                                format!(
                                    "names `{r}`, not in network.regions (known: {})",
                                    join(&names)
                                ),
                            ));
                        }
                        if !seen.insert(r.as_str()) {
                            return Err(bad(&key("groups"), format!("lists `{r}` twice")));
                        }
                    }
                    if heal.is_some_and(|h| h <= *at) {
                        return Err(bad(&key("heal"), "must come after `at`".into()));
                    }
                }
                Fault::Crash { group, count, .. } | Fault::ForgedReceipts { group, count, .. } => {
                    if !groups.contains(group.as_str()) {
                        return Err(bad(
                            &key("group"),
                            format!(
                                "names `{group}`, not a [[peers]] group (known: {})",
                                join(&groups)
                            ),
                        ));
                    }
                    if *count == 0 {
                        return Err(bad(&key("count"), "must be at least 1".into()));
                    }
                }
                Fault::CrashOrchestrators { count, .. } => {
                    if *count == 0 {
                        return Err(bad(&key("count"), "must be at least 1".into()));
                    }
                }
                Fault::Heal { .. } => {}
            }
        }
        if self.metrics.interval.ms() == 0 {
            return Err(bad("metrics.interval", "must be longer than zero".into()));
        }
        Ok(())
    }
}

/// Latency within the default single region.
const DEFAULT_LATENCY_MS: f64 = 10.0;

fn join(names: &BTreeSet<&str>) -> String {
    names.iter().copied().collect::<Vec<_>>().join(", ")
}
