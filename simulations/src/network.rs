//! The simulated network: per-link latency from the region matrix, upload
//! bandwidth, loss, partitions, and gossip as a flood over a gossipsub-like
//! mesh (each peer keeps `D` mesh links, forwards a new message to every mesh
//! peer but the one it came from, and drops duplicates by message id).

use crate::metrics::Traffic;
use crate::rng::{Purpose, Stream};
use crate::scenario::MeshSpec;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// A flood remembered for repeats from the same source over the same mesh.
#[derive(Debug)]
struct CachedFlood {
    version: u64,
    transmissions: u64,
    /// Arrival offsets (µs after the start) of the readers, aligned with the reader list.
    readers: Vec<Option<u64>>,
    delays: Vec<u64>,
}

/// Each flood's delays are summarised by this many evenly spaced quantiles.
pub const DELAY_SAMPLES: usize = 100;

/// `DELAY_SAMPLES` evenly spaced quantiles of `delays` (all of them when fewer).
pub fn delay_quantiles(mut delays: Vec<u64>) -> Vec<u64> {
    delays.sort_unstable();
    if delays.len() <= DELAY_SAMPLES {
        return delays;
    }
    let n = delays.len();
    (0..DELAY_SAMPLES)
        .map(|i| delays[(2 * i + 1) * n / (2 * DELAY_SAMPLES)])
        .collect()
}

/// What a flood did, seen from the engine.
#[derive(Debug, Default)]
pub struct FloodOutcome {
    pub transmissions: u64,
    pub reached: usize,
    /// Arrival time (µs) of each reader, aligned with the reader list.
    pub readers: Vec<Option<u64>>,
    /// Delays (µs) from the publication to the peers reached, as up to
    /// [`DELAY_SAMPLES`] evenly spaced quantiles.
    pub delays: Vec<u64>,
}

/// What one gossip flood did.
#[derive(Debug, Default)]
pub struct Flood {
    /// Peers reached, with the arrival time in microseconds of simulated time.
    pub reached: Vec<(u32, u64)>,
    /// Transmissions made (duplicates included).
    pub transmissions: u64,
}

#[derive(Debug)]
pub struct Network {
    /// One-way latency between regions, microseconds.
    latency_us: Vec<Vec<u64>>,
    jitter: f64,
    loss: f64,
    hop_delay_us: u64,
    mesh_spec: MeshSpec,
    /// Region of each peer.
    region: Vec<u16>,
    /// Upload bandwidth of each peer, bytes per second.
    bandwidth: Vec<f64>,
    /// Partition component of each region (all zero when whole).
    component: Vec<u16>,
    partitioned: bool,
    /// Mesh links of each peer with their base latency (µs).
    mesh: Vec<Vec<(u32, u32)>>,
    /// Set when peers left or a partition cut links: repaired at the next heartbeat.
    damaged: bool,
    last_repair_ms: u64,
    rng: Stream,
    mesh_rng: Stream,
    /// Per peer: traffic sent and received (direct and gossip).
    pub sent: Vec<Traffic>,
    pub received: Vec<Traffic>,
    /// Bumped on every change to the mesh or to who is online.
    version: u64,
    /// Floods by (source, reader list), valid while the version holds.
    cache: HashMap<(u32, u8), CachedFlood>,
    /// Repeated floods over the current mesh not yet added to the per-peer counts.
    pending_floods: Traffic,
    // Scratch for floods.
    dist: Vec<u64>,
    parent: Vec<u32>,
    stamp: Vec<u32>,
    generation: u32,
}

const NO_PARENT: u32 = u32::MAX;

/// Everything a [`Network`] is built from.
#[derive(Debug)]
pub struct NetworkParams {
    pub seed: u64,
    /// One-way latency between regions, milliseconds.
    pub latency_ms: Vec<Vec<f64>>,
    pub jitter: f64,
    pub loss: f64,
    pub hop_delay_ms: u64,
    pub mesh_spec: MeshSpec,
    /// Region of each peer.
    pub region: Vec<u16>,
    /// Upload bandwidth of each peer, bytes per second.
    pub bandwidth: Vec<f64>,
}

impl Network {
    pub fn new(params: NetworkParams) -> Self {
        let NetworkParams {
            seed,
            latency_ms,
            jitter,
            loss,
            hop_delay_ms,
            mesh_spec,
            region,
            bandwidth,
        } = params;
        let n = region.len();
        let regions = latency_ms.len();
        Network {
            latency_us: latency_ms
                .iter()
                .map(|row| row.iter().map(|ms| (ms * 1000.0).round() as u64).collect())
                .collect(),
            jitter,
            loss,
            hop_delay_us: hop_delay_ms * 1000,
            mesh_spec,
            region,
            bandwidth,
            component: vec![0; regions],
            partitioned: false,
            mesh: vec![Vec::new(); n],
            damaged: false,
            last_repair_ms: 0,
            rng: Stream::new(seed, Purpose::Network),
            mesh_rng: Stream::new(seed, Purpose::Mesh),
            sent: vec![Traffic::default(); n],
            received: vec![Traffic::default(); n],
            version: 0,
            cache: HashMap::new(),
            pending_floods: Traffic::default(),
            dist: vec![u64::MAX; n],
            parent: vec![NO_PARENT; n],
            stamp: vec![0; n],
            generation: 0,
        }
    }

    pub fn region_of(&self, peer: u32) -> u16 {
        self.region[peer as usize]
    }

    /// Whether a message can pass between two peers now (partitions only).
    pub fn connected(&self, a: u32, b: u32) -> bool {
        !self.partitioned
            || self.component[self.region[a as usize] as usize]
                == self.component[self.region[b as usize] as usize]
    }

    /// Latency of one direct message of `bytes` from `a` to `b`, or `None` if lost or cut.
    pub fn direct(&mut self, a: u32, b: u32, bytes: usize) -> Option<u64> {
        if !self.connected(a, b) {
            return None;
        }
        if self.rng.chance(self.loss) {
            return None;
        }
        let base =
            self.latency_us[self.region[a as usize] as usize][self.region[b as usize] as usize];
        let jittered = base as f64 * (1.0 + self.jitter * self.rng.unit());
        let tx = bytes as f64 * 1e6 / self.bandwidth[a as usize];
        Some((jittered + tx).ceil() as u64)
    }

    /// Cuts the network into components: `groups[i]` lists region indices;
    /// regions not listed form one more component.
    pub fn partition(&mut self, groups: &[Vec<usize>], online: &[bool]) {
        self.settle(online);
        let extra = groups.len() as u16;
        for c in self.component.iter_mut() {
            *c = extra;
        }
        for (i, g) in groups.iter().enumerate() {
            for r in g {
                self.component[*r] = i as u16;
            }
        }
        self.partitioned = true;
        // Links across the cut drop; the heartbeat grafts replacements.
        for p in 0..self.mesh.len() {
            let region = &self.region;
            let component = &self.component;
            let cp = component[region[p] as usize];
            self.mesh[p].retain(|(q, _)| component[region[*q as usize] as usize] == cp);
        }
        self.damaged = true;
    }

    /// Heals any partition. Peers reconnect and the mesh is rebuilt.
    pub fn heal(&mut self, online: &[bool]) {
        self.settle(online);
        self.partitioned = false;
        for c in self.component.iter_mut() {
            *c = 0;
        }
        for links in self.mesh.iter_mut() {
            links.clear();
        }
        self.graft_all(online);
    }

    /// A peer left: its mesh links drop. Call before marking it offline.
    pub fn remove_peer(&mut self, p: u32, online: &[bool]) {
        self.settle(online);
        let links = std::mem::take(&mut self.mesh[p as usize]);
        for (q, _) in links {
            self.mesh[q as usize].retain(|(x, _)| *x != p);
        }
        self.damaged = true;
    }

    /// A peer joined: it grafts `D` mesh peers at once. Call after marking it
    /// online, and call [`Network::settle`] before marking it.
    pub fn add_peer(&mut self, p: u32, online: &[bool]) {
        self.version += 1;
        let pool = self.pool_for(p, online);
        self.graft(p, &pool);
    }

    /// Builds the first mesh.
    pub fn build(&mut self, online: &[bool]) {
        self.settle(online);
        self.graft_all(online);
    }

    /// Adds the repeated floods since the last change to the per-peer counts:
    /// a flood that reaches every online peer has each send to its mesh peers
    /// but one (the source to all of them), so each peer sends `degree - 1`
    /// and, on average, receives as many. Must run before the mesh or the
    /// online set changes.
    pub fn settle(&mut self, online: &[bool]) {
        self.version += 1;
        let Traffic { messages, bytes } = std::mem::take(&mut self.pending_floods);
        if messages == 0 {
            return;
        }
        for (p, on) in online.iter().enumerate() {
            if *on {
                let d = self.mesh[p].len().saturating_sub(1) as u64;
                self.sent[p].messages += messages * d;
                self.sent[p].bytes += bytes * d;
                self.received[p].messages += messages * d;
                self.received[p].bytes += bytes * d;
            }
        }
    }

    /// Runs the heartbeat's repair if the mesh is damaged and a heartbeat passed.
    pub fn maybe_repair(&mut self, now_ms: u64, online: &[bool]) {
        if self.damaged && now_ms >= self.last_repair_ms + self.mesh_spec.heartbeat.ms() {
            self.settle(online);
            self.last_repair_ms = now_ms;
            self.damaged = false;
            let low = self.mesh_spec.d_low;
            let pools = self.pools(online);
            for (p, on) in online.iter().enumerate() {
                if *on && self.mesh[p].len() < low {
                    let c = self.component_of(p as u32);
                    self.graft(p as u32, &pools[c]);
                }
            }
        }
    }

    fn component_of(&self, p: u32) -> usize {
        usize::from(self.component[self.region[p as usize] as usize])
    }

    fn pools(&self, online: &[bool]) -> Vec<Vec<u32>> {
        let comps = self
            .component
            .iter()
            .copied()
            .max()
            .map_or(1, |m| usize::from(m) + 1);
        let mut pools = vec![Vec::new(); comps];
        for (p, on) in online.iter().enumerate() {
            if *on {
                pools[self.component_of(p as u32)].push(p as u32);
            }
        }
        pools
    }

    fn pool_for(&self, p: u32, online: &[bool]) -> Vec<u32> {
        let c = self.component_of(p);
        online
            .iter()
            .enumerate()
            .filter(|(q, on)| **on && self.component_of(*q as u32) == c)
            .map(|(q, _)| q as u32)
            .collect()
    }

    fn graft_all(&mut self, online: &[bool]) {
        let pools = self.pools(online);
        for (p, on) in online.iter().enumerate() {
            if *on {
                let c = self.component_of(p as u32);
                self.graft(p as u32, &pools[c]);
            }
        }
        self.damaged = false;
    }

    /// Adds random mesh links from `p` to peers of `pool` until it has `D`.
    fn graft(&mut self, p: u32, pool: &[u32]) {
        let (d, high) = (self.mesh_spec.d, self.mesh_spec.d_high);
        if pool.len() <= 1 {
            return;
        }
        let mut tries = 0;
        while self.mesh[p as usize].len() < d && tries < 8 * d {
            tries += 1;
            let q = pool[self.mesh_rng.below(pool.len())];
            if q == p
                || self.mesh[q as usize].len() >= high
                || self.mesh[p as usize].iter().any(|(x, _)| *x == q)
            {
                continue;
            }
            let base =
                self.latency_us[self.region[p as usize] as usize][self.region[q as usize] as usize];
            let lat = (base as f64 * (1.0 + self.jitter * self.mesh_rng.unit())) as u64
                + self.hop_delay_us;
            let lat = lat.min(u64::from(u32::MAX)) as u32;
            self.mesh[p as usize].push((q, lat));
            self.mesh[q as usize].push((p, lat));
        }
    }

    /// Floods a message of `bytes` published by `source` at `start_us` over
    /// the mesh. Returns every peer reached with its arrival time, and the
    /// number of transmissions; `on_send(from, to)` is called for each one.
    /// Floods a message and reports when each of `readers` got it. With no
    /// loss, a repeat from the same source over an unchanged mesh (`cache_as`
    /// names the reader list) reuses the first flood's timing and is counted
    /// in bulk by [`Network::settle`].
    pub fn flood_to(
        &mut self,
        source: u32,
        start_us: u64,
        bytes: usize,
        online: &[bool],
        readers: &[u32],
        cache_as: Option<u8>,
    ) -> FloodOutcome {
        let online_n = online.iter().filter(|o| **o).count();
        if let Some(tag) = cache_as
            && self.loss == 0.0
            && let Some(c) = self.cache.get(&(source, tag))
            && c.version == self.version
        {
            self.pending_floods.add(bytes);
            // The source sends to all its mesh peers, one more than the bulk count.
            self.sent[source as usize].add(bytes);
            self.received[source as usize].add(bytes);
            return FloodOutcome {
                transmissions: c.transmissions,
                reached: online_n,
                readers: c.readers.iter().map(|o| o.map(|d| start_us + d)).collect(),
                delays: c.delays.clone(),
            };
        }
        let flood = self.flood(source, start_us, bytes, online);
        let arrivals: Vec<Option<u64>> = readers.iter().map(|r| self.arrival(*r)).collect();
        let delays = delay_quantiles(
            flood
                .reached
                .iter()
                .filter(|(v, _)| *v != source)
                .map(|(_, t)| t - start_us)
                .collect(),
        );
        if let Some(tag) = cache_as
            && self.loss == 0.0
            && flood.reached.len() == online_n
        {
            self.cache.insert(
                (source, tag),
                CachedFlood {
                    version: self.version,
                    transmissions: flood.transmissions,
                    readers: arrivals.iter().map(|a| a.map(|t| t - start_us)).collect(),
                    delays: delays.clone(),
                },
            );
        }
        FloodOutcome {
            transmissions: flood.transmissions,
            reached: flood.reached.len(),
            readers: arrivals,
            delays,
        }
    }

    /// Floods a message of `bytes` published by `source` at `start_us` over
    /// the mesh, counting every transmission. Returns every peer reached with
    /// its arrival time, and the number of transmissions.
    fn flood(&mut self, source: u32, start_us: u64, bytes: usize, online: &[bool]) -> Flood {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.generation = 1;
        }
        let generation = self.generation;
        let mut out = Flood::default();
        let mut heap = BinaryHeap::new();
        self.stamp[source as usize] = generation;
        self.dist[source as usize] = start_us;
        self.parent[source as usize] = NO_PARENT;
        heap.push(Reverse((start_us, source)));
        while let Some(Reverse((t, u))) = heap.pop() {
            let ui = u as usize;
            if self.dist[ui] != t || self.stamp[ui] != generation {
                continue;
            }
            out.reached.push((u, t));
            let tx = (bytes as f64 * 1e6 / self.bandwidth[ui]) as u64;
            let parent = self.parent[ui];
            for k in 0..self.mesh[ui].len() {
                let (v, lat) = self.mesh[ui][k];
                if v == parent || !online[v as usize] {
                    continue;
                }
                let lost = self.rng.chance(self.loss);
                out.transmissions += 1;
                self.sent[ui].add(bytes);
                if lost {
                    continue;
                }
                self.received[v as usize].add(bytes);
                let arrive = t + tx + u64::from(lat);
                let vi = v as usize;
                if self.stamp[vi] != generation {
                    self.stamp[vi] = generation;
                    self.dist[vi] = arrive;
                    self.parent[vi] = u;
                    heap.push(Reverse((arrive, v)));
                } else if arrive < self.dist[vi] {
                    // Settled peers have dist <= t < arrive, so only open ones improve.
                    self.dist[vi] = arrive;
                    self.parent[vi] = u;
                    heap.push(Reverse((arrive, v)));
                }
            }
        }
        out
    }

    /// When the last flood reached `p`, in microseconds.
    fn arrival(&self, p: u32) -> Option<u64> {
        (self.stamp[p as usize] == self.generation).then(|| self.dist[p as usize])
    }

    /// Mean mesh degree over online peers (for the summary).
    pub fn mean_degree(&self, online: &[bool]) -> f64 {
        let (sum, n) = self
            .mesh
            .iter()
            .zip(online)
            .filter(|(_, on)| **on)
            .fold((0usize, 0usize), |(s, n), (l, _)| (s + l.len(), n + 1));
        if n == 0 { 0.0 } else { sum as f64 / n as f64 }
    }
}
