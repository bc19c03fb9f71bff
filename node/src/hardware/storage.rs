//! The filesystem under the data directory: its size, free space, and kind
//! (NVMe, SSD or HDD) from the block device's name and
//! `/sys/block/<dev>/queue/rotational`.

use modchain_protocol::{StorageInfo, StorageKind};
use std::path::Path;

/// The whole-disk name for a partition's device name: `nvme0n1p2` →
/// `nvme0n1`, `sda1` → `sda`, `mmcblk0p1` → `mmcblk0`, `vda` → `vda`.
pub fn base_device(name: &str) -> String {
    let name = name.trim_start_matches("/dev/");
    let needs_p =
        name.starts_with("nvme") || name.starts_with("mmcblk") || name.starts_with("loop");
    if needs_p {
        // The partition suffix is `p<digits>` after a digit.
        if let Some(pos) = name.rfind('p') {
            let (head, tail) = name.split_at(pos);
            let digits = &tail[1..];
            if !digits.is_empty()
                && digits.chars().all(|c| c.is_ascii_digit())
                && head.chars().last().is_some_and(|c| c.is_ascii_digit())
            {
                return head.to_string();
            }
        }
        return name.to_string();
    }
    name.trim_end_matches(|c: char| c.is_ascii_digit())
        .to_string()
}

/// The kind of a whole disk, from its name and the content of its
/// `queue/rotational` file when there is one.
pub fn storage_kind(disk: &str, rotational: Option<&str>) -> StorageKind {
    if disk.starts_with("nvme") {
        return StorageKind::Nvme;
    }
    match rotational.map(str::trim) {
        Some("0") => StorageKind::Ssd,
        Some("1") => StorageKind::Hdd,
        _ => StorageKind::Unknown,
    }
}

/// The filesystem that holds `dir` (the mount with the longest matching prefix).
pub fn detect(dir: &Path) -> StorageInfo {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let disks = sysinfo::Disks::new_with_refreshed_list();
    let best = disks
        .list()
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len());
    let Some(disk) = best else {
        return StorageInfo::default();
    };
    let name = disk.name().to_string_lossy().to_string();
    let base = base_device(&name);
    let rotational = std::fs::read_to_string(format!("/sys/block/{base}/queue/rotational")).ok();
    let mut kind = storage_kind(&base, rotational.as_deref());
    if kind == StorageKind::Unknown {
        kind = match disk.kind() {
            sysinfo::DiskKind::SSD => StorageKind::Ssd,
            sysinfo::DiskKind::HDD => StorageKind::Hdd,
            _ => StorageKind::Unknown,
        };
    }
    StorageInfo {
        total_bytes: disk.total_space(),
        available_bytes: disk.available_space(),
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_map_to_their_disk() {
        assert_eq!(base_device("/dev/nvme0n1p2"), "nvme0n1");
        assert_eq!(base_device("nvme0n1"), "nvme0n1");
        assert_eq!(base_device("/dev/sda1"), "sda");
        assert_eq!(base_device("/dev/vda"), "vda");
        assert_eq!(base_device("mmcblk0p1"), "mmcblk0");
    }

    #[test]
    fn kind_from_name_and_rotational_flag() {
        assert_eq!(storage_kind("nvme0n1", Some("0\n")), StorageKind::Nvme);
        assert_eq!(storage_kind("sda", Some("0\n")), StorageKind::Ssd);
        assert_eq!(storage_kind("sdb", Some("1\n")), StorageKind::Hdd);
        assert_eq!(storage_kind("overlay", None), StorageKind::Unknown);
    }
}
