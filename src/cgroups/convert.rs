//! Value conversions and checks shared by the v1 and v2 drivers, following runc.

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNetwork,
    LinuxResources, LinuxWeightDeviceBuilder,
};

use crate::logging;

/// `r` with the values that mean "not set" taken out, as runc's converters read them, so that
/// every writer can take a present field as one to write. Docker sends `blockIO.weight: 0` with
/// every container and zeros for memory, cpu and blockIO with every `docker update`.
///
/// Unset: a zero memory limit, reservation or swap; zero cpu shares, quota, period, realtime
/// runtime or period; empty cpus or mems; `disableOOMKiller: false` (runc only ever writes 1);
/// swappiness -1 (as the unsigned value it becomes); zero blockIO weights (also per device); a
/// zero net_cls class id; a zero pids limit. Kernel memory (`kernel`, `kernelTCP`) is
/// deprecated and ignored with a warning, as runc does. Hugepage limits, burst, idle and the
/// rest keep zero as a real value.
pub fn without_unset(r: &LinuxResources) -> LinuxResources {
    let mut r = r.clone();
    let memory = r.memory().map(without_unset_memory);
    r.set_memory(memory.filter(|m| *m != LinuxMemory::default()));
    let cpu = r.cpu().as_ref().map(without_unset_cpu);
    r.set_cpu(cpu.filter(|c| *c != LinuxCpu::default()));
    let block_io = r.block_io().as_ref().map(without_unset_block_io);
    r.set_block_io(block_io.filter(|b| *b != LinuxBlockIo::default()));
    let network = r.network().as_ref().map(|n| {
        let mut n = n.clone();
        n.set_class_id(n.class_id().filter(|id| *id != 0));
        n
    });
    r.set_network(network.filter(|n| *n != LinuxNetwork::default()));
    r.set_pids(r.pids().filter(|p| p.limit() != 0));
    r
}

/// What a container's resources are after `update` applied `update` to `recorded`: every
/// field the update sets (see [`without_unset`]) replaces the recorded one, the others stay;
/// device rules never change after create.
pub fn updated_record(recorded: &LinuxResources, update: &LinuxResources) -> LinuxResources {
    let mut update = without_unset(update);
    update.set_devices(None);
    let mut merged = serde_json::to_value(recorded).expect("resources serialize to JSON");
    merge_json(
        &mut merged,
        serde_json::to_value(update).expect("resources serialize"),
    );
    serde_json::from_value(merged).expect("merged resources keep their shape")
}

/// Objects merge key by key; anything else (numbers, strings, arrays) is replaced.
fn merge_json(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(into), serde_json::Value::Object(from)) => {
            for (key, value) in from {
                merge_json(into.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (into, from) => *into = from,
    }
}

fn without_unset_memory(m: LinuxMemory) -> LinuxMemory {
    let mut m = m;
    #[allow(deprecated)] // kernel memory is still in the spec
    if m.kernel().is_some_and(|k| k != 0) || m.kernel_tcp().is_some_and(|k| k != 0) {
        logging::log(
            logging::Level::Warning,
            "linux.resources.memory.kernel/kernelTCP: kernel memory settings are ignored",
        );
    }
    #[allow(deprecated)]
    m.set_kernel(None);
    m.set_kernel_tcp(None);
    let nonzero = |v: Option<i64>| v.filter(|v| *v != 0);
    m.set_limit(nonzero(m.limit()));
    m.set_reservation(nonzero(m.reservation()));
    m.set_swap(nonzero(m.swap()));
    m.set_swappiness(m.swappiness().filter(|s| *s != u64::MAX));
    m.set_disable_oom_killer(m.disable_oom_killer().filter(|disable| *disable));
    m
}

fn without_unset_cpu(c: &LinuxCpu) -> LinuxCpu {
    let mut c = c.clone();
    c.set_shares(c.shares().filter(|s| *s != 0));
    c.set_quota(c.quota().filter(|q| *q != 0));
    c.set_period(c.period().filter(|p| *p != 0));
    c.set_realtime_runtime(c.realtime_runtime().filter(|r| *r != 0));
    c.set_realtime_period(c.realtime_period().filter(|p| *p != 0));
    c.set_cpus(c.cpus().clone().filter(|cpus| !cpus.is_empty()));
    c.set_mems(c.mems().clone().filter(|mems| !mems.is_empty()));
    c
}

fn without_unset_block_io(b: &LinuxBlockIo) -> LinuxBlockIo {
    let mut b = b.clone();
    b.set_weight(b.weight().filter(|w| *w != 0));
    b.set_leaf_weight(b.leaf_weight().filter(|w| *w != 0));
    let devices = b.weight_device().as_ref().map(|devices| {
        let nonzero = |w: Option<u16>| w.filter(|w| *w != 0);
        let set = devices
            .iter()
            .filter(|d| nonzero(d.weight()).is_some() || nonzero(d.leaf_weight()).is_some());
        set.map(|d| {
            // Built anew: oci-spec has no setters for these fields.
            let mut builder = LinuxWeightDeviceBuilder::default()
                .major(d.major())
                .minor(d.minor());
            if let Some(weight) = nonzero(d.weight()) {
                builder = builder.weight(weight);
            }
            if let Some(leaf_weight) = nonzero(d.leaf_weight()) {
                builder = builder.leaf_weight(leaf_weight);
            }
            builder
                .build()
                .expect("every field of a weight device has a default")
        })
        .collect::<Vec<_>>()
    });
    b.set_weight_device(devices.filter(|d| !d.is_empty()));
    b
}

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

/// The devices a rule is about, as the device cgroup knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceClass {
    All,
    Block,
    Char,
}

/// A rule's `type`: `a` (also when absent), `b` or `c`. The device cgroup never sees fifos, so
/// `p` (and `u`) mean nothing here; runc refuses them in `linux.resources.devices` too.
pub fn device_class(rule: &LinuxDeviceCgroup) -> Result<DeviceClass> {
    match rule.typ().unwrap_or_default() {
        LinuxDeviceType::A => Ok(DeviceClass::All),
        LinuxDeviceType::B => Ok(DeviceClass::Block),
        LinuxDeviceType::C => Ok(DeviceClass::Char),
        other => bail!(
            "linux.resources.devices: type {:?} is not a, b or c (fifos are never in the device \
             cgroup)",
            other.as_str()
        ),
    }
}

/// A rule in the v1 `devices.allow`/`devices.deny` format: `c 1:3 rwm`, `a *:* rwm`.
pub fn device_rule(rule: &LinuxDeviceCgroup) -> Result<String> {
    let class = match device_class(rule)? {
        DeviceClass::All => "a",
        DeviceClass::Block => "b",
        DeviceClass::Char => "c",
    };
    let number = |n: Option<i64>| n.filter(|n| *n >= 0).map_or("*".into(), |n| n.to_string());
    let (major, minor) = (number(rule.major()), number(rule.minor()));
    let access = device_access(rule.access().as_deref())?;
    Ok(format!("{class} {major}:{minor} {access}"))
}

/// A memory limit: -1 is unlimited, other negative values mean nothing.
pub fn check_limit(value: i64, field: &str) -> Result<()> {
    if value < -1 {
        bail!("linux.resources.{field}: {value} is negative (-1 means unlimited)");
    }
    Ok(())
}

/// cpu.shares as the kernel takes it without clamping (runc reads it back to find out).
pub fn check_cpu_shares(shares: u64) -> Result<()> {
    if !(2..=262144).contains(&shares) {
        bail!("linux.resources.cpu.shares: {shares} is outside 2…262144");
    }
    Ok(())
}

/// CFS bandwidth as the kernel takes it: a period of 1ms to 1s, a quota of at least 1ms (or -1,
/// unlimited).
pub fn check_cfs(quota: Option<i64>, period: Option<u64>) -> Result<()> {
    if let Some(period) = period.filter(|p| !(1000..=1_000_000).contains(p)) {
        bail!("linux.resources.cpu.period: {period} is outside 1000…1000000 (µs)");
    }
    if let Some(quota) = quota.filter(|q| *q != -1 && *q < 1000) {
        bail!("linux.resources.cpu.quota: {quota} is below 1000 µs (-1 means unlimited)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    /// What every `docker update` sends, whatever was asked.
    const DOCKER_UPDATE: &str = r#"{"memory":{"limit":0,"reservation":0,"kernel":0},
        "cpu":{"shares":0,"quota":0,"period":0},"blockIO":{"weight":0}}"#;

    #[test]
    fn zeros_that_mean_unset_are_taken_out() {
        assert_eq!(
            without_unset(&resources(DOCKER_UPDATE)),
            LinuxResources::default()
        );
        let docker_run = r#"{"memory":{"disableOOMKiller":false},
            "cpu":{"shares":0,"cpus":"","mems":""},
            "blockIO":{"weight":0,"weightDevice":[{"major":8,"minor":0,"weight":0}]},
            "pids":{"limit":0},"network":{"classID":0}}"#;
        assert_eq!(
            without_unset(&resources(docker_run)),
            LinuxResources::default()
        );
        let real = r#"{"memory":{"limit":1,"swappiness":0},"cpu":{"burst":0,"idle":0},
            "hugepageLimits":[{"pageSize":"2MB","limit":0}],
            "blockIO":{"weightDevice":[{"major":8,"minor":0,"weight":0,"leafWeight":5}]}}"#;
        let kept = without_unset(&resources(real));
        let json = serde_json::to_value(&kept).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"memory":{"limit":1,"swappiness":0},"cpu":{"burst":0,"idle":0},
                "hugepageLimits":[{"pageSize":"2MB","limit":0}],
                "blockIO":{"weightDevice":[{"major":8,"minor":0,"leafWeight":5}]}})
        );
    }

    #[test]
    fn an_update_record_keeps_what_the_update_did_not_set() {
        let recorded = resources(
            r#"{"memory":{"limit":1000,"swap":2000},"devices":[{"allow":false,"access":"rwm"}],
                "unified":{"a.b":"1"}}"#,
        );
        let update = resources(
            r#"{"memory":{"limit":0,"swap":3000},"devices":[],
            "unified":{"c.d":"2"},"pids":{"limit":7}}"#,
        );
        let json = serde_json::to_value(updated_record(&recorded, &update)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"memory":{"limit":1000,"swap":3000},
                "devices":[{"allow":false,"access":"rwm"}],
                "unified":{"a.b":"1","c.d":"2"},"pids":{"limit":7}})
        );
        assert_eq!(
            updated_record(&recorded, &resources(DOCKER_UPDATE)),
            recorded
        );
    }

    #[test]
    fn value_checks() {
        assert!(check_limit(-1, "memory.limit").is_ok());
        assert!(check_limit(-2, "memory.limit").is_err());
        assert!(check_cpu_shares(1).is_err() && check_cpu_shares(2).is_ok());
        assert!(check_cfs(Some(-1), Some(100000)).is_ok());
        assert!(check_cfs(Some(999), None).is_err());
        assert!(check_cfs(None, Some(1_000_001)).is_err());
        let rule = |json: &str| serde_json::from_str::<LinuxDeviceCgroup>(json).unwrap();
        let fifo = rule(r#"{"allow":true,"type":"p","access":"rwm"}"#);
        assert!(device_rule(&fifo).is_err());
        let all = rule(r#"{"allow":false}"#);
        assert_eq!(device_rule(&all).unwrap(), "a *:* rwm");
        let null = rule(r#"{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}"#);
        assert_eq!(device_rule(&null).unwrap(), "c 1:3 rw");
    }

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
