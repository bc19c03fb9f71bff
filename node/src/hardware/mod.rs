//! What this machine offers, as the network will see it: CPU, memory, the
//! data directory's storage, GPUs and the container runtime. Detection never
//! fails as a whole: a part that cannot be read is reported with the reason.

pub mod container;
pub mod cpu;
pub mod gpu;
pub mod storage;

use modchain_protocol::{
    CapabilityAdvert, ContainerRuntime, CpuInfo, GpuInfo, MemoryInfo, StorageInfo,
};
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct Hardware {
    pub cpu: CpuInfo,
    pub memory: MemoryInfo,
    pub storage: StorageInfo,
    pub gpus: Vec<GpuInfo>,
    pub container_runtime: Option<ContainerRuntime>,
    /// Why a part is missing or partial ("no NVIDIA driver found", ...).
    pub notes: Vec<String>,
}

pub fn memory() -> MemoryInfo {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    MemoryInfo {
        total_bytes: sys.total_memory(),
        available_bytes: sys.available_memory(),
    }
}

/// Detects everything; `data_dir` picks the filesystem that is reported.
pub async fn detect(data_dir: &Path) -> Hardware {
    let mut notes = Vec::new();
    let dir = data_dir.to_path_buf();
    let blocking = tokio::task::spawn_blocking(move || {
        let cpu = cpu::detect();
        let memory = memory();
        let storage = storage::detect(&dir);
        let mut gpus = Vec::new();
        let mut notes = Vec::new();
        match gpu::nvidia() {
            Ok(found) => gpus.extend(found),
            Err(e) => notes.push(e.to_string()),
        }
        match gpu::amd() {
            None => {}
            Some(Ok(found)) => gpus.extend(found),
            Some(Err(e)) => notes.push(e.to_string()),
        }
        (cpu, memory, storage, gpus, notes)
    });
    let container = container::detect().await;
    let (cpu, memory, storage, gpus, gpu_notes) = match blocking.await {
        Ok(parts) => parts,
        Err(e) => {
            notes.push(format!("hardware detection failed: {e}"));
            (
                CpuInfo::default(),
                MemoryInfo::default(),
                StorageInfo::default(),
                Vec::new(),
                Vec::new(),
            )
        }
    };
    notes.extend(gpu_notes);
    let container_runtime = match container {
        Ok(rt) => Some(rt),
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    };
    Hardware {
        cpu,
        memory,
        storage,
        gpus,
        container_runtime,
        notes,
    }
}

impl Hardware {
    /// The hardware part of this node's advert; the peer fills in the rest.
    pub fn to_advert(&self, benchmark_score: u64) -> CapabilityAdvert {
        CapabilityAdvert {
            cpu: self.cpu.clone(),
            memory: self.memory,
            storage: self.storage,
            gpus: self.gpus.clone(),
            container_runtime: self.container_runtime.clone(),
            benchmark_score,
            software: crate::build_info::SOFTWARE_VERSION.to_string(),
            ..CapabilityAdvert::default()
        }
    }
}

pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}
