//! The CPU: vendor, model, cores and threads from sysinfo; instruction-set
//! features from `/proc/cpuinfo` (x86 `flags`, Arm `Features`).

use modchain_protocol::CpuInfo;

/// The features jobs select on; everything else in `flags` is noise here.
const INTERESTING: &[&str] = &[
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "aes",
    "sha_ni",
    "bmi2",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512cd",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
    "sve2",
    "asimddp",
    "i8mm",
    "bf16",
];

/// Features named in a `/proc/cpuinfo` text (first processor's block),
/// reduced to [`INTERESTING`] and sorted. Arm's `asimd` is reported as `neon`.
pub fn parse_cpuinfo_features(text: &str) -> Vec<String> {
    let line = text.lines().find(|l| {
        let key = l.split(':').next().unwrap_or("").trim();
        key == "flags" || key == "Features"
    });
    let Some(line) = line else {
        return Vec::new();
    };
    let list = line.split_once(':').map_or("", |(_, v)| v);
    let mut out: Vec<String> = list
        .split_whitespace()
        .filter(|f| INTERESTING.contains(f))
        .map(|f| {
            if f == "asimd" {
                "neon".to_string()
            } else {
                f.to_string()
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn detect() -> CpuInfo {
    let mut sys = sysinfo::System::new();
    sys.refresh_cpu_all();
    let cpus = sys.cpus();
    let threads = cpus.len() as u32;
    let first = cpus.first();
    let cores = sysinfo::System::physical_core_count()
        .map(|c| c as u32)
        .unwrap_or(threads);
    let features = std::fs::read_to_string("/proc/cpuinfo")
        .map(|t| parse_cpuinfo_features(&t))
        .unwrap_or_default();
    CpuInfo {
        vendor: first
            .map(|c| c.vendor_id().trim().to_string())
            .unwrap_or_default(),
        model: first
            .map(|c| c.brand().trim().to_string())
            .unwrap_or_default(),
        cores,
        threads,
        features,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_flags_are_reduced_to_what_jobs_select_on() {
        let text = include_str!("../../tests/fixtures/cpuinfo-x86_64.txt");
        let f = parse_cpuinfo_features(text);
        assert!(f.contains(&"avx2".to_string()), "{f:?}");
        assert!(f.contains(&"avx512f".to_string()), "{f:?}");
        assert!(!f.contains(&"fpu".to_string()), "{f:?}");
        let mut sorted = f.clone();
        sorted.sort();
        assert_eq!(f, sorted);
    }

    #[test]
    fn arm_features_report_neon() {
        let text = include_str!("../../tests/fixtures/cpuinfo-aarch64.txt");
        let f = parse_cpuinfo_features(text);
        assert!(f.contains(&"neon".to_string()), "{f:?}");
        assert!(f.contains(&"sve".to_string()), "{f:?}");
    }

    #[test]
    fn no_flags_line_means_no_features() {
        assert!(parse_cpuinfo_features("processor : 0\n").is_empty());
    }
}
