//! What a provider offers: its signed capability advert, whether an advert
//! satisfies a job's requirements, and the table of the network's adverts.

use crate::identity::NodeId;
use crate::job::JobSpec;
use crate::pricing::PriceTable;
use crate::time::{MINUTE, Timestamp};
use crate::vocabulary::GpuVendor;
use crate::vocabulary::Requirements;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The node's CPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// Who made it (`GenuineIntel`, `AuthenticAMD`, `Apple`, ...).
    pub vendor: String,
    /// Its model name, as the OS reports it.
    pub model: String,
    /// Physical cores.
    pub cores: u32,
    /// Hardware threads.
    pub threads: u32,
    /// Instruction-set features that jobs select on (`avx2`, `avx512f`, `neon`, ...).
    pub features: Vec<String>,
}

/// The node's main memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryInfo {
    /// Installed memory, in bytes.
    pub total_bytes: u64,
    /// Memory not in use when the advert was made, in bytes.
    pub available_bytes: u64,
}

/// What kind of disk holds the node's scratch storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageKind {
    /// An NVMe SSD.
    Nvme,
    /// Another SSD.
    Ssd,
    /// A spinning disk.
    Hdd,
    /// The node could not tell.
    #[default]
    Unknown,
}

/// The node's scratch storage for jobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageInfo {
    /// Size of the disk, in bytes.
    pub total_bytes: u64,
    /// Free space on it, in bytes.
    pub available_bytes: u64,
    /// What kind of disk it is.
    pub kind: StorageKind,
}

/// One GPU of the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// Who made it.
    pub vendor: GpuVendor,
    /// Its model name (`NVIDIA GeForce RTX 4090`, ...).
    pub model: String,
    /// Its memory, in bytes.
    pub vram_bytes: u64,
    /// CUDA compute capability (major, minor) for NVIDIA GPUs.
    pub compute_capability: Option<(u32, u32)>,
    /// Driver version.
    pub driver: String,
}

/// The container runtime the node runs Docker jobs with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRuntime {
    /// `docker`, `podman`, ...
    pub name: String,
    /// Its version.
    pub version: String,
    /// Whether an NVIDIA container runtime is registered (GPU containers).
    pub nvidia: bool,
}

/// A model an adapter serves (LLM jobs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model's name, as jobs ask for it (`llama3.2:3b`).
    pub name: String,
    /// Parameter count.
    pub parameters: u64,
    /// Quantization (`Q4_K_M`, `F16`, ...).
    pub quantization: String,
    /// Context length in tokens.
    pub context_length: u32,
}

/// An adapter the provider runs jobs with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterInfo {
    /// Its name (`docker`, `wasm`, `llm`).
    pub name: String,
    /// The methods it offers (`run`, `generate`, ...).
    pub methods: Vec<String>,
    /// The models it serves (LLM adapters).
    pub models: Vec<ModelInfo>,
}

/// Resources not currently committed to jobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capacity {
    /// CPU cores.
    pub cores: u32,
    /// Memory, in bytes.
    pub memory_bytes: u64,
    /// GPUs.
    pub gpus: u32,
    /// Scratch storage, in bytes.
    pub storage_bytes: u64,
}

impl Capacity {
    /// The share of this capacity a job with these requirements takes.
    pub fn for_requirements(req: &Requirements) -> Self {
        Capacity {
            cores: req.cores.max(1),
            memory_bytes: req.memory_bytes,
            gpus: req.gpus,
            storage_bytes: req.storage_bytes,
        }
    }

    /// Whether `need` fits in this capacity, resource by resource.
    pub fn fits(&self, need: &Capacity) -> bool {
        self.cores >= need.cores
            && self.memory_bytes >= need.memory_bytes
            && self.gpus >= need.gpus
            && self.storage_bytes >= need.storage_bytes
    }

    /// This capacity less `o`, never below zero.
    pub fn minus(&self, o: &Capacity) -> Capacity {
        Capacity {
            cores: self.cores.saturating_sub(o.cores),
            memory_bytes: self.memory_bytes.saturating_sub(o.memory_bytes),
            gpus: self.gpus.saturating_sub(o.gpus),
            storage_bytes: self.storage_bytes.saturating_sub(o.storage_bytes),
        }
    }

    /// This capacity and `o` together, saturating.
    pub fn plus(&self, o: &Capacity) -> Capacity {
        Capacity {
            cores: self.cores.saturating_add(o.cores),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
            gpus: self.gpus.saturating_add(o.gpus),
            storage_bytes: self.storage_bytes.saturating_add(o.storage_bytes),
        }
    }
}

/// A node's signed statement of what it offers (its `Advert` envelope's signer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityAdvert {
    /// Increases with every advert the node publishes; older ones are replays.
    pub sequence: u64,
    /// Peers forget the advert after this time unless a newer one arrives.
    pub expires_at: Timestamp,
    /// The node's CPU.
    pub cpu: CpuInfo,
    /// The node's memory.
    pub memory: MemoryInfo,
    /// The node's scratch storage.
    pub storage: StorageInfo,
    /// The node's GPUs.
    pub gpus: Vec<GpuInfo>,
    /// The container runtime, if the node runs Docker jobs.
    pub container_runtime: Option<ContainerRuntime>,
    /// The adapters it runs jobs with, and their models.
    pub adapters: Vec<AdapterInfo>,
    /// Result of `modchain benchmark` (higher is faster; 0 if never run).
    pub benchmark_score: u64,
    /// What it charges.
    pub prices: PriceTable,
    /// What it could take on now.
    pub free: Capacity,
    /// Whether the node stands for election as an orchestrator.
    pub orchestrator_candidate: bool,
    /// The software the node runs, as its operator would name it in a bug
    /// report (`modchain --version`'s first word, like `0.1.0+3f2a1bc09d4e`);
    /// at most [`MAX_SOFTWARE_BYTES`]. Informational: nothing in the
    /// protocol depends on it (the wire version is the envelope's).
    pub software: String,
}

/// The longest [`CapabilityAdvert::software`] a peer accepts.
pub const MAX_SOFTWARE_BYTES: usize = 128;

/// Bounds on an advert's lists, so a hostile advert cannot bloat every table.
pub const MAX_ADVERT_ITEMS: usize = 64;

impl CapabilityAdvert {
    /// Whether the advert's lists are within [`MAX_ADVERT_ITEMS`] and its
    /// software name within [`MAX_SOFTWARE_BYTES`].
    pub fn within_limits(&self) -> bool {
        self.gpus.len() <= MAX_ADVERT_ITEMS
            && self.software.len() <= MAX_SOFTWARE_BYTES
            && self.adapters.len() <= MAX_ADVERT_ITEMS
            && self.cpu.features.len() <= 4 * MAX_ADVERT_ITEMS
            && self
                .adapters
                .iter()
                .all(|a| a.methods.len() <= MAX_ADVERT_ITEMS && a.models.len() <= MAX_ADVERT_ITEMS)
    }

    /// The adapter of this name, if the node offers it.
    pub fn adapter(&self, name: &str) -> Option<&AdapterInfo> {
        self.adapters.iter().find(|a| a.name == name)
    }

    /// The whole machine, as a capacity: what it could run when idle.
    pub fn total_capacity(&self) -> Capacity {
        Capacity {
            cores: self.cpu.threads.max(self.cpu.cores),
            memory_bytes: self.memory.total_bytes,
            gpus: self.gpus.len() as u32,
            storage_bytes: self.storage.total_bytes,
        }
    }

    /// Whether this machine could ever run the job (ignoring what is busy now).
    pub fn satisfies(&self, job: &JobSpec) -> Result<(), Unmet> {
        for check in Unmet::ORDER {
            if !check.passes(self, job) {
                return Err(check);
            }
        }
        Ok(())
    }
}

/// The first requirement of a job that an advert does not meet. The order of
/// checks is fixed so "why is my job waiting" always names the same thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unmet {
    /// The adapter the job names.
    Adapter,
    /// The adapter's method the job names.
    Method,
    /// The model the job names.
    Model,
    /// Enough free CPU cores.
    Cores,
    /// Enough free memory.
    Memory,
    /// Enough free GPUs.
    GpuCount,
    /// GPUs of the vendor the job asks for.
    GpuVendor,
    /// Enough memory on each GPU.
    GpuMemory,
    /// Enough free scratch storage.
    Storage,
}

impl Unmet {
    /// Every requirement, in the order they are checked.
    pub const ORDER: [Unmet; 9] = [
        Unmet::Adapter,
        Unmet::Method,
        Unmet::Model,
        Unmet::Cores,
        Unmet::Memory,
        Unmet::GpuCount,
        Unmet::GpuVendor,
        Unmet::GpuMemory,
        Unmet::Storage,
    ];

    fn matching_gpus<'a>(
        ad: &'a CapabilityAdvert,
        req: &'a Requirements,
    ) -> impl Iterator<Item = &'a GpuInfo> {
        ad.gpus.iter().filter(move |g| {
            req.gpu_vendor.is_none_or(|v| g.vendor == v) && g.vram_bytes >= req.min_vram_bytes
        })
    }

    fn passes(self, ad: &CapabilityAdvert, job: &JobSpec) -> bool {
        let req = &job.requirements;
        match self {
            Unmet::Adapter => ad.adapter(&job.adapter).is_some(),
            Unmet::Method => ad
                .adapter(&job.adapter)
                .is_some_and(|a| a.methods.contains(&job.method)),
            Unmet::Model => match &req.model {
                None => true,
                Some(model) => ad
                    .adapter(&job.adapter)
                    .is_some_and(|a| a.models.iter().any(|m| m.name == *model)),
            },
            Unmet::Cores => ad.total_capacity().cores >= req.cores,
            Unmet::Memory => ad.memory.total_bytes >= req.memory_bytes,
            Unmet::GpuCount => ad.gpus.len() as u64 >= u64::from(req.gpus),
            Unmet::GpuVendor => {
                req.gpus == 0
                    || ad
                        .gpus
                        .iter()
                        .filter(|g| req.gpu_vendor.is_none_or(|v| g.vendor == v))
                        .count() as u64
                        >= u64::from(req.gpus)
            }
            Unmet::GpuMemory => {
                req.gpus == 0 || Self::matching_gpus(ad, req).count() as u64 >= u64::from(req.gpus)
            }
            Unmet::Storage => ad.storage.total_bytes >= req.storage_bytes,
        }
    }

    /// "no provider with ..." in the network's words, for a job's queued status.
    pub fn describe(self, job: &JobSpec) -> String {
        let req = &job.requirements;
        let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
        match self {
            Unmet::Adapter => format!("no provider offers the `{}` adapter", job.adapter),
            Unmet::Method => format!(
                "no provider's `{}` adapter offers the `{}` method",
                job.adapter, job.method
            ),
            Unmet::Model => format!(
                "no provider serves the model `{}`",
                req.model.as_deref().unwrap_or_default()
            ),
            Unmet::Cores => format!("no provider with ≥ {} CPU cores", req.cores),
            Unmet::Memory => format!("no provider with ≥ {} of memory", gib(req.memory_bytes)),
            Unmet::GpuCount => format!("no provider with ≥ {} GPUs", req.gpus),
            Unmet::GpuVendor => format!(
                "no provider with ≥ {} {} GPUs",
                req.gpus,
                req.gpu_vendor.map(|v| v.to_string()).unwrap_or_default()
            ),
            Unmet::GpuMemory => format!(
                "no provider with ≥ {} GPU memory on {} GPU(s)",
                gib(req.min_vram_bytes),
                req.gpus
            ),
            Unmet::Storage => format!("no provider with ≥ {} of storage", gib(req.storage_bytes)),
        }
    }
}

/// Why an advert was not taken into the table.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdvertRejection {
    /// Its expiry has passed.
    Expired,
    /// Not newer than the one we hold (a replay or a reordering).
    Stale,
    /// Its lists are over the bounds.
    TooLarge,
    /// It claims to stay valid for longer than any peer keeps an advert.
    TooLong,
    /// The table is full of adverts that rank above this one (see
    /// [`AdvertBook::insert_ranked`]).
    Full,
}

impl AdvertRejection {
    /// A short name for counters (`/metrics`, the node's stats).
    pub fn label(self) -> &'static str {
        match self {
            AdvertRejection::Expired => "expired",
            AdvertRejection::Stale => "stale",
            AdvertRejection::TooLarge => "too_large",
            AdvertRejection::TooLong => "too_long",
            AdvertRejection::Full => "table_full",
        }
    }
}

/// Adverts a peer holds by default. Adverts cost nothing to make (a fresh
/// key signs one), so without a cap a flood of strangers' adverts would
/// grow every peer's table until it ran out of memory.
pub const DEFAULT_MAX_ADVERTS: usize = 20_000;

/// The longest validity an advert may claim: a node that vanishes is
/// forgotten within this time.
pub const MAX_ADVERT_TTL_MS: u64 = 60 * MINUTE;

/// The network's adverts as one peer knows them: the newest per node, until
/// it expires, at most `cap` of them.
#[derive(Clone, Debug)]
pub struct AdvertBook {
    /// Ordered by node, so every walk over the table is deterministic without sorting.
    adverts: BTreeMap<NodeId, (CapabilityAdvert, Timestamp)>,
    cap: usize,
    evicted: u64,
}

impl Default for AdvertBook {
    fn default() -> Self {
        Self::with_cap(DEFAULT_MAX_ADVERTS)
    }
}

/// Where an advert stands when the table is full: an advert from a node
/// with more reputation stays before one with less, a candidate before a
/// node that only sells, and then the one valid for longer. A flood of
/// adverts from fresh keys (no reputation) therefore only ever displaces
/// other strangers, never a peer with a record.
fn standing(reputation: u32, ad: &CapabilityAdvert) -> (u32, bool, Timestamp) {
    (reputation, ad.orchestrator_candidate, ad.expires_at)
}

impl AdvertBook {
    /// An empty table of at most [`DEFAULT_MAX_ADVERTS`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table of at most `cap` adverts (at least one).
    pub fn with_cap(cap: usize) -> Self {
        AdvertBook {
            adverts: BTreeMap::new(),
            cap: cap.max(1),
            evicted: 0,
        }
    }

    /// The most adverts this table holds.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Adverts pushed out so far to make room for better-standing ones.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Takes a verified advert from `node`, replacing an older one, as if
    /// every node had the same reputation (see [`insert_ranked`](Self::insert_ranked)).
    pub fn insert(
        &mut self,
        now: Timestamp,
        node: NodeId,
        advert: CapabilityAdvert,
    ) -> Result<(), AdvertRejection> {
        self.insert_ranked(now, node, advert, |_| 0)
    }

    /// Takes a verified advert from `node`, replacing an older one. When the
    /// table is full (after forgetting expired adverts) a new node's advert
    /// displaces the lowest-standing one held, if it stands above it
    /// (reputation from `reputation`, then candidacy, then expiry), and is
    /// refused as [`AdvertRejection::Full`] otherwise. A node already held
    /// always gets its newer advert in.
    pub fn insert_ranked(
        &mut self,
        now: Timestamp,
        node: NodeId,
        advert: CapabilityAdvert,
        reputation: impl Fn(&NodeId) -> u32,
    ) -> Result<(), AdvertRejection> {
        if advert.expires_at <= now {
            return Err(AdvertRejection::Expired);
        }
        if advert.expires_at.since(now) > MAX_ADVERT_TTL_MS {
            return Err(AdvertRejection::TooLong);
        }
        if !advert.within_limits() {
            return Err(AdvertRejection::TooLarge);
        }
        if let Some((held, _)) = self.adverts.get(&node)
            && held.sequence >= advert.sequence
        {
            return Err(AdvertRejection::Stale);
        }
        if !self.adverts.contains_key(&node) && self.adverts.len() >= self.cap {
            self.expire(now);
        }
        if !self.adverts.contains_key(&node) && self.adverts.len() >= self.cap {
            // A linear walk, but only while full: the table stays small
            // enough (tens of thousands) that a sorted index kept in step
            // with changing reputations would cost more than it saves.
            let lowest = self
                .adverts
                .iter()
                .map(|(n, (a, _))| (standing(reputation(n), a), *n))
                .min();
            match lowest {
                Some((worst, victim)) if standing(reputation(&node), &advert) > worst => {
                    self.adverts.remove(&victim);
                    self.evicted += 1;
                }
                _ => return Err(AdvertRejection::Full),
            }
        }
        self.adverts.insert(node, (advert, now));
        Ok(())
    }

    /// Forgets expired adverts.
    pub fn expire(&mut self, now: Timestamp) {
        self.adverts.retain(|_, (a, _)| a.expires_at > now);
    }

    /// Forgets the advert from `node`.
    pub fn remove(&mut self, node: &NodeId) {
        self.adverts.remove(node);
    }

    /// The advert from `node`, if one is held.
    pub fn get(&self, node: &NodeId) -> Option<&CapabilityAdvert> {
        self.adverts.get(node).map(|(a, _)| a)
    }

    /// When the advert from `node` arrived.
    pub fn received_at(&self, node: &NodeId) -> Option<Timestamp> {
        self.adverts.get(node).map(|(_, t)| *t)
    }

    /// How many adverts are held.
    pub fn len(&self) -> usize {
        self.adverts.len()
    }

    /// Whether no advert is held.
    pub fn is_empty(&self) -> bool {
        self.adverts.is_empty()
    }

    /// Adverts in node order, so every walk over the table is deterministic.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &CapabilityAdvert)> {
        self.adverts.iter().map(|(k, (a, _))| (k, a))
    }

    /// Nodes that stand as orchestrator candidates.
    pub fn candidates(&self) -> Vec<NodeId> {
        self.iter()
            .filter(|(_, a)| a.orchestrator_candidate)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Providers that could run `job`, or the requirement nobody meets.
    pub fn matching(&self, job: &JobSpec) -> Result<Vec<NodeId>, Unmet> {
        let mut deepest: Option<usize> = None;
        let mut found = Vec::new();
        for (node, ad) in self.iter() {
            match ad.satisfies(job) {
                Ok(()) => found.push(*node),
                Err(unmet) => {
                    let depth = Unmet::ORDER.iter().position(|u| *u == unmet).unwrap_or(0);
                    deepest = Some(deepest.map_or(depth, |d| d.max(depth)));
                }
            }
        }
        if found.is_empty() {
            // The requirement that stopped the adverts that got furthest: the
            // one the client most plausibly needs to relax.
            return Err(Unmet::ORDER[deepest.unwrap_or(0)]);
        }
        Ok(found)
    }
}
