//! The container runtime: whether Docker answers on its socket, its version,
//! and whether an NVIDIA runtime is registered (GPU containers).

use modchain_protocol::ContainerRuntime;
use std::collections::HashMap;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ContainerError {
    #[error("no Docker socket reachable: {0}")]
    Unreachable(String),
    #[error("Docker did not answer within {0:?}")]
    Timeout(Duration),
}

/// Whether the runtimes Docker lists include an NVIDIA one.
pub fn has_nvidia_runtime<V>(runtimes: &HashMap<String, V>) -> bool {
    runtimes
        .keys()
        .any(|k| k.to_ascii_lowercase().contains("nvidia"))
}

pub async fn detect() -> Result<ContainerRuntime, ContainerError> {
    let timeout = Duration::from_secs(3);
    let docker = bollard::Docker::connect_with_local_defaults()
        .map_err(|e| ContainerError::Unreachable(e.to_string()))?;
    let query = async {
        let version = docker.version().await?;
        let info = docker.info().await?;
        Ok::<_, bollard::errors::Error>((version, info))
    };
    let (version, info) = tokio::time::timeout(timeout, query)
        .await
        .map_err(|_| ContainerError::Timeout(timeout))?
        .map_err(|e| ContainerError::Unreachable(e.to_string()))?;
    let nvidia = info.runtimes.as_ref().is_some_and(has_nvidia_runtime);
    let name = version
        .platform
        .as_ref()
        .map(|p| p.name.to_ascii_lowercase())
        .filter(|n| n.contains("podman"))
        .map_or_else(|| "docker".to_string(), |_| "podman".to_string());
    Ok(ContainerRuntime {
        name,
        version: version.version.unwrap_or_default(),
        nvidia,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_runtime_is_found_among_registered_runtimes() {
        let mut r: HashMap<String, ()> = HashMap::new();
        r.insert("runc".into(), ());
        assert!(!has_nvidia_runtime(&r));
        r.insert("nvidia".into(), ());
        assert!(has_nvidia_runtime(&r));
    }
}
