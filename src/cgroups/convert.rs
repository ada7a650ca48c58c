//! Value conversions and checks shared by the v1 and v2 drivers, following runc.

use anyhow::{Context, Result, bail};

/// cpu.shares (v1, 2…262144, default 1024) to cpu.weight (v2, 1…10000, default 100). runc's
/// current formula: a quadratic in log2(shares) through (2, 1), (1024, 100) and (262144, 10000).
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262144.. => 10000,
        _ => {
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            10f64.powf(exponent).ceil() as u64
        }
    }
}

/// blkio.weight (v1, 10…1000) to io.weight (v2, 1…10000), linear as in runc.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight).saturating_sub(10)) * 9999 / 990
}

/// A v1-style limit (negative = unlimited) as cgroup v2 writes it.
pub fn v2_limit(limit: i64) -> String {
    if limit < 0 {
        "max".to_string()
    } else {
        limit.to_string()
    }
}

/// v1's memory+swap total to v2's memory.swap.max (swap alone), as runc converts it.
/// Returns None when nothing should be written.
pub fn memory_swap_to_v2(swap: Option<i64>, limit: Option<i64>) -> Result<Option<String>> {
    let limit = limit.unwrap_or(0);
    match swap.unwrap_or(0) {
        // Unlimited memory without an explicit swap limit means unlimited swap too.
        0 if limit == -1 => Ok(Some("max".into())),
        0 => Ok(None),
        -1 => Ok(Some("max".into())),
        swap if limit == 0 || limit == -1 => {
            bail!("linux.resources.memory.swap: {swap} needs a memory limit on cgroup v2")
        }
        swap if swap < limit => bail!(
            "linux.resources.memory.swap: {swap} is below linux.resources.memory.limit {limit} \
             (swap is memory+swap)"
        ),
        swap => Ok(Some((swap - limit).to_string())),
    }
}

/// cpu.max from quota and period (runc: quota ≤ 0 means "max"; period 0 keeps the default).
pub fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let (quota, period) = (quota.unwrap_or(0), period.unwrap_or(0));
    if quota == 0 && period == 0 {
        return None;
    }
    let mut value = if quota > 0 {
        quota.to_string()
    } else {
        "max".to_string()
    };
    if period != 0 {
        value.push_str(&format!(" {period}"));
    }
    Some(value)
}

/// The name the kernel uses in hugetlb file names ("2MB", "1GB") for a size in kB, as listed in
/// /sys/kernel/mm/hugepages/hugepages-<kB>kB.
pub fn hugepage_size_name(size_kb: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    let mut size = size_kb as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size}{}", UNITS[unit])
}

/// The hugepage sizes this host supports, by their file-name spelling.
pub fn host_hugepage_sizes() -> Result<Vec<String>> {
    let dir = "/sys/kernel/mm/hugepages";
    let mut sizes = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {dir}"))? {
        let name = entry.with_context(|| format!("listing {dir}"))?.file_name();
        let kb = name
            .to_str()
            .and_then(|n| n.strip_prefix("hugepages-")?.strip_suffix("kB"))
            .and_then(|kb| kb.parse().ok());
        sizes.extend(kb.map(hugepage_size_name));
    }
    Ok(sizes)
}

pub fn check_hugepage_size(page_size: &str, available: &[String]) -> Result<()> {
    if available.iter().any(|s| s == page_size) {
        return Ok(());
    }
    bail!(
        "linux.resources.hugepageLimits: page size {page_size:?} is not supported by this host \
         (available: {})",
        available.join(", ")
    )
}

/// Checks a `linux.resources.unified` key the way runc does: CONTROLLER.PARAMETER, no path
/// separators, and not one of the files that move processes.
pub fn check_unified_key(key: &str) -> Result<&str> {
    if key.contains('/') || key == "cgroup.procs" || key == "cgroup.threads" {
        bail!("linux.resources.unified: key {key:?} is not allowed");
    }
    match key.split_once('.') {
        Some((controller, param)) if !controller.is_empty() && !param.is_empty() => Ok(controller),
        _ => bail!("linux.resources.unified: key {key:?} is not of the form CONTROLLER.PARAMETER"),
    }
}

/// Validates a device rule's access string ("rwm" subset); absent means all three.
pub fn device_access(access: Option<&str>) -> Result<&str> {
    let access = access.filter(|a| !a.is_empty()).unwrap_or("rwm");
    if access.chars().any(|c| !matches!(c, 'r' | 'w' | 'm')) {
        bail!("linux.resources.devices: access {access:?} is not a combination of r, w and m");
    }
    Ok(access)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_matches_runc_reference_points() {
        assert_eq!(cpu_shares_to_weight(0), 0);
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 100);
        assert_eq!(cpu_shares_to_weight(262144), 10000);
        assert_eq!(cpu_shares_to_weight(512), 59);
        assert!(cpu_shares_to_weight(100_000) < 10000);
    }

    #[test]
    fn blkio_weight_conversion() {
        assert_eq!(blkio_weight_to_io_weight(0), 0);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
    }

    #[test]
    fn swap_conversion() {
        assert_eq!(memory_swap_to_v2(None, None).unwrap(), None);
        assert_eq!(
            memory_swap_to_v2(None, Some(-1)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(
            memory_swap_to_v2(Some(-1), Some(100)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(
            memory_swap_to_v2(Some(300), Some(100)).unwrap().as_deref(),
            Some("200")
        );
        assert!(memory_swap_to_v2(Some(50), Some(100)).is_err());
        assert!(memory_swap_to_v2(Some(50), None).is_err());
    }

    #[test]
    fn cpu_max_values() {
        assert_eq!(cpu_max(None, None), None);
        assert_eq!(cpu_max(Some(50000), None).as_deref(), Some("50000"));
        assert_eq!(
            cpu_max(Some(50000), Some(100000)).as_deref(),
            Some("50000 100000")
        );
        assert_eq!(
            cpu_max(Some(-1), Some(100000)).as_deref(),
            Some("max 100000")
        );
    }

    #[test]
    fn hugepage_names_and_validation() {
        assert_eq!(hugepage_size_name(2048), "2MB");
        assert_eq!(hugepage_size_name(1048576), "1GB");
        assert_eq!(hugepage_size_name(64), "64KB");
        let available = vec!["2MB".to_string(), "1GB".to_string()];
        assert!(check_hugepage_size("2MB", &available).is_ok());
        let err = check_hugepage_size("3MB", &available)
            .unwrap_err()
            .to_string();
        assert!(err.contains("3MB") && err.contains("2MB, 1GB"), "{err}");
    }

    #[test]
    fn unified_keys() {
        assert_eq!(check_unified_key("memory.high").unwrap(), "memory");
        assert_eq!(check_unified_key("cgroup.freeze").unwrap(), "cgroup");
        for bad in ["cgroup.procs", "../x.y", "memory", ".max", "memory."] {
            assert!(check_unified_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn device_access_strings() {
        assert_eq!(device_access(None).unwrap(), "rwm");
        assert_eq!(device_access(Some("rw")).unwrap(), "rw");
        assert!(device_access(Some("rx")).is_err());
    }
}
