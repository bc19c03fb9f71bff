//! GPUs: NVIDIA through NVML (the driver's library, loaded at run time, so a
//! machine without it just has no NVIDIA GPUs) and AMD through `rocm-smi`'s
//! JSON output.

use modchain_protocol::{GpuInfo, GpuVendor};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GpuError {
    #[error("no NVIDIA driver found")]
    NoNvidiaDriver,
    #[error("NVML error: {0}")]
    Nvml(String),
    #[error("rocm-smi output is not the expected JSON: {0}")]
    RocmJson(String),
    #[error("rocm-smi failed: {0}")]
    RocmFailed(String),
}

/// NVIDIA GPUs, or why there are none to report.
pub fn nvidia() -> Result<Vec<GpuInfo>, GpuError> {
    use nvml_wrapper::Nvml;
    use nvml_wrapper::error::NvmlError;
    let nvml = Nvml::init().map_err(|e| match e {
        NvmlError::LibloadingError(_) | NvmlError::DriverNotLoaded | NvmlError::LibraryNotFound => {
            GpuError::NoNvidiaDriver
        }
        other => GpuError::Nvml(other.to_string()),
    })?;
    let nvml_err = |e: NvmlError| GpuError::Nvml(e.to_string());
    let driver = nvml.sys_driver_version().map_err(nvml_err)?;
    let count = nvml.device_count().map_err(nvml_err)?;
    let mut out = Vec::new();
    for i in 0..count {
        let dev = nvml.device_by_index(i).map_err(nvml_err)?;
        let cc = dev.cuda_compute_capability().ok();
        out.push(GpuInfo {
            vendor: GpuVendor::Nvidia,
            model: dev.name().map_err(nvml_err)?,
            vram_bytes: dev.memory_info().map(|m| m.total).unwrap_or(0),
            compute_capability: cc.map(|c| (c.major.max(0) as u32, c.minor.max(0) as u32)),
            driver: driver.clone(),
        });
    }
    Ok(out)
}

/// Parses `rocm-smi --showproductname --showmeminfo vram [--showdriverversion] --json`.
/// Cards are the `cardN` objects; a `system` object may carry the driver version.
/// Key capitalisation differs between ROCm releases (`Card series` / `Card Series`).
pub fn parse_rocm_smi(json: &str) -> Result<Vec<GpuInfo>, GpuError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| GpuError::RocmJson(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| GpuError::RocmJson("top level is not an object".into()))?;
    let field =
        |o: &serde_json::Map<String, serde_json::Value>, names: &[&str]| -> Option<String> {
            names
                .iter()
                .find_map(|n| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)))
                .and_then(|(_, v)| match v {
                    serde_json::Value::String(s) => Some(s.trim().to_string()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
        };
    let driver = obj
        .get("system")
        .and_then(|s| s.as_object())
        .and_then(|s| field(s, &["Driver version"]))
        .unwrap_or_default();
    let mut cards: Vec<(u32, GpuInfo)> = Vec::new();
    for (name, card) in obj {
        let Some(index) = name
            .strip_prefix("card")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(card) = card.as_object() else {
            continue;
        };
        let model = field(
            card,
            &["Card Series", "Device Name", "Card Model", "Card SKU"],
        )
        .unwrap_or_else(|| "AMD GPU".into());
        let vram_bytes = field(card, &["VRAM Total Memory (B)"])
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        cards.push((
            index,
            GpuInfo {
                vendor: GpuVendor::Amd,
                model,
                vram_bytes,
                compute_capability: None,
                driver: driver.clone(),
            },
        ));
    }
    cards.sort_by_key(|(i, _)| *i);
    Ok(cards.into_iter().map(|(_, g)| g).collect())
}

/// AMD GPUs via `rocm-smi`, or `None` when the tool is not installed.
pub fn amd() -> Option<Result<Vec<GpuInfo>, GpuError>> {
    let out = std::process::Command::new("rocm-smi")
        .args([
            "--showproductname",
            "--showmeminfo",
            "vram",
            "--showdriverversion",
            "--json",
        ])
        .output();
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(GpuError::RocmFailed(e.to_string()))),
        Ok(o) if !o.status.success() => Some(Err(GpuError::RocmFailed(
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        ))),
        Ok(o) => Some(parse_rocm_smi(&String::from_utf8_lossy(&o.stdout))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocm_smi_json_gives_model_vram_and_driver() {
        let gpus = parse_rocm_smi(include_str!("../../tests/fixtures/rocm-smi.json"))
            .expect("fixture parses");
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].vendor, GpuVendor::Amd);
        assert_eq!(
            gpus[0].model,
            "Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]"
        );
        assert_eq!(gpus[0].vram_bytes, 25_753_026_560);
        assert_eq!(gpus[0].driver, "6.10.5");
        assert_eq!(gpus[1].model, "Aqua Vanjaram [Instinct MI300X]");
    }

    #[test]
    fn rocm_smi_garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            parse_rocm_smi("WARNING: no GPUs"),
            Err(GpuError::RocmJson(_))
        ));
        assert_eq!(parse_rocm_smi("{}"), Ok(vec![]));
    }

    #[test]
    fn missing_nvidia_driver_is_reported_plainly() {
        // On machines with the driver this finds GPUs; without it, the message is fixed.
        match nvidia() {
            Ok(_) => {}
            Err(e) => assert!(
                matches!(e, GpuError::NoNvidiaDriver | GpuError::Nvml(_)),
                "{e}"
            ),
        }
        assert_eq!(
            GpuError::NoNvidiaDriver.to_string(),
            "no NVIDIA driver found"
        );
    }
}
