//! cgroup v1 file formats, one hierarchy directory per controller.

use std::path::Path;

use anyhow::{Result, bail};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxNetwork,
};

use super::convert::device_access;
use super::fs::{self, set};
use super::stats::{self, Stats};

/// v1 writes -1 for "unlimited" into *_in_bytes files.
fn bytes_limit(limit: i64) -> String {
    if limit < 0 {
        "-1".into()
    } else {
        limit.to_string()
    }
}

pub fn memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    if let Some(limit) = m.limit().filter(|l| *l > 0)
        && m.check_before_update() == Some(true)
    {
        let usage = fs::read_u64(dir, "memory.usage_in_bytes")?;
        if (limit as u64) < usage {
            bail!("linux.resources.memory.limit: {limit} is below the current usage {usage}");
        }
    }
    limit_and_swap(dir, m.limit(), m.swap())?;
    if let Some(reservation) = m.reservation() {
        let value = bytes_limit(reservation);
        set(
            dir,
            "memory.soft_limit_in_bytes",
            &value,
            "memory.reservation",
        )?;
    }
    #[allow(deprecated)] // kernel memory is still in the spec; older v1 kernels honour it.
    if let Some(kernel) = m.kernel() {
        let value = bytes_limit(kernel);
        set(dir, "memory.kmem.limit_in_bytes", &value, "memory.kernel")?;
    }
    if let Some(tcp) = m.kernel_tcp() {
        let value = bytes_limit(tcp);
        set(
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            &value,
            "memory.kernelTCP",
        )?;
    }
    if let Some(swappiness) = m.swappiness() {
        if swappiness > 100 {
            bail!("linux.resources.memory.swappiness: {swappiness} is above 100");
        }
        set(
            dir,
            "memory.swappiness",
            &swappiness.to_string(),
            "memory.swappiness",
        )?;
    }
    if let Some(disable) = m.disable_oom_killer() {
        let value = if disable { "1" } else { "0" };
        set(dir, "memory.oom_control", value, "memory.disableOOMKiller")?;
    }
    if let Some(hierarchy) = m.use_hierarchy() {
        let value = if hierarchy { "1" } else { "0" };
        set(dir, "memory.use_hierarchy", value, "memory.useHierarchy")?;
    }
    Ok(())
}

/// The kernel insists on memory ≤ memory+swap at every moment, so the write order depends on
/// whether the limits grow or shrink (runc's logic).
fn limit_and_swap(dir: &Path, limit: Option<i64>, swap: Option<i64>) -> Result<()> {
    let has_swap_accounting = dir.join("memory.memsw.limit_in_bytes").exists();
    // Unlimited memory without a swap value means unlimited swap too.
    let swap = match (limit, swap) {
        (Some(-1), None) if has_swap_accounting => Some(-1),
        _ => swap,
    };
    let write_limit = |l: i64| {
        set(
            dir,
            "memory.limit_in_bytes",
            &bytes_limit(l),
            "memory.limit",
        )
    };
    let write_swap = |s: i64| {
        if !has_swap_accounting {
            bail!("linux.resources.memory.swap: swap accounting is not enabled on this host");
        }
        set(
            dir,
            "memory.memsw.limit_in_bytes",
            &bytes_limit(s),
            "memory.swap",
        )
    };
    match (limit, swap) {
        (Some(l), Some(s)) => {
            let current = fs::read_u64(dir, "memory.limit_in_bytes")?;
            if s == -1 || current < s as u64 {
                write_swap(s)?;
                write_limit(l)
            } else {
                write_limit(l)?;
                write_swap(s)
            }
        }
        (Some(l), None) => write_limit(l),
        (None, Some(s)) => write_swap(s),
        (None, None) => Ok(()),
    }
}

pub fn cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(shares) = c.shares().filter(|s| *s != 0) {
        set(dir, "cpu.shares", &shares.to_string(), "cpu.shares")?;
    }
    if let Some(period) = c.realtime_period() {
        set(
            dir,
            "cpu.rt_period_us",
            &period.to_string(),
            "cpu.realtimePeriod",
        )?;
    }
    if let Some(runtime) = c.realtime_runtime() {
        set(
            dir,
            "cpu.rt_runtime_us",
            &runtime.to_string(),
            "cpu.realtimeRuntime",
        )?;
    }
    let write_quota = || match c.quota() {
        Some(q) => set(dir, "cpu.cfs_quota_us", &q.to_string(), "cpu.quota"),
        None => Ok(()),
    };
    match c.period().filter(|p| *p != 0) {
        Some(period) => {
            let period = period.to_string();
            // A shorter period can be refused while the old quota exceeds it: quota first then.
            if fs::write(dir, "cpu.cfs_period_us", &period).is_err() {
                write_quota()?;
                set(dir, "cpu.cfs_period_us", &period, "cpu.period")?;
            } else {
                write_quota()?;
            }
        }
        None => write_quota()?,
    }
    if let Some(burst) = c.burst() {
        set(dir, "cpu.cfs_burst_us", &burst.to_string(), "cpu.burst")?;
    }
    if let Some(idle) = c.idle() {
        set(dir, "cpu.idle", &idle.to_string(), "cpu.idle")?;
    }
    Ok(())
}

pub fn blkio(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // CFQ is gone from current kernels; BFQ offers the same knobs under blkio.bfq.*.
    let weight_file = |name: &str, field: &str| -> Result<String> {
        for candidate in [format!("blkio.{name}"), format!("blkio.bfq.{name}")] {
            if dir.join(&candidate).exists() {
                return Ok(candidate);
            }
        }
        bail!("linux.resources.blockIO.{field}: no blkio.{name} (CFQ or BFQ) on this host")
    };
    if let Some(weight) = b.weight() {
        let file = weight_file("weight", "weight")?;
        set(dir, &file, &weight.to_string(), "blockIO.weight")?;
    }
    if let Some(weight) = b.leaf_weight() {
        let file = weight_file("leaf_weight", "leafWeight")?;
        set(dir, &file, &weight.to_string(), "blockIO.leafWeight")?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(weight) = d.weight() {
            let file = weight_file("weight_device", "weightDevice")?;
            let line = format!("{}:{} {weight}", d.major(), d.minor());
            set(dir, &file, &line, "blockIO.weightDevice")?;
        }
        if let Some(weight) = d.leaf_weight() {
            let file = weight_file("leaf_weight_device", "weightDevice.leafWeight")?;
            let line = format!("{}:{} {weight}", d.major(), d.minor());
            set(dir, &file, &line, "blockIO.weightDevice")?;
        }
    }
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "read_bps_device",
            "throttleReadBpsDevice",
        ),
        (
            b.throttle_write_bps_device(),
            "write_bps_device",
            "throttleWriteBpsDevice",
        ),
        (
            b.throttle_read_iops_device(),
            "read_iops_device",
            "throttleReadIOPSDevice",
        ),
        (
            b.throttle_write_iops_device(),
            "write_iops_device",
            "throttleWriteIOPSDevice",
        ),
    ];
    for (devices, file, field) in throttles {
        for d in devices.iter().flatten() {
            let line = format!("{}:{} {}", d.major(), d.minor(), d.rate());
            set(
                dir,
                &format!("blkio.throttle.{file}"),
                &line,
                &format!("blockIO.{field}"),
            )?;
        }
    }
    Ok(())
}

pub fn hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let file = format!("hugetlb.{}.limit_in_bytes", l.page_size());
        set(dir, &file, &bytes_limit(l.limit()), "hugepageLimits")?;
    }
    Ok(())
}

pub fn net_cls(dir: &Path, class_id: u32) -> Result<()> {
    set(
        dir,
        "net_cls.classid",
        &class_id.to_string(),
        "network.classID",
    )
}

pub fn net_prio(dir: &Path, network: &LinuxNetwork) -> Result<()> {
    for p in network.priorities().iter().flatten() {
        let line = format!("{} {}", p.name(), p.priority());
        set(dir, "net_prio.ifpriomap", &line, "network.priorities")?;
    }
    Ok(())
}

/// Default deny (as runc), then every rule in order: later rules override earlier ones.
pub fn devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    set(dir, "devices.deny", "a", "devices")?;
    for rule in rules {
        let number = |n: Option<i64>| n.filter(|n| *n >= 0).map_or("*".into(), |n| n.to_string());
        let line = format!(
            "{} {}:{} {}",
            rule.typ().unwrap_or_default().as_str(),
            number(rule.major()),
            number(rule.minor()),
            device_access(rule.access().as_deref())?
        );
        let file = if rule.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        set(dir, file, &line, "devices")?;
    }
    Ok(())
}

pub fn cpuacct_stats(dir: &Path, out: &mut Stats) -> Result<()> {
    let per_cpu = |file: &str| -> Result<Vec<u64>> {
        Ok(fs::read(dir, file)?
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect())
    };
    let usage = &mut out.cpu.usage;
    usage.total = fs::read_u64(dir, "cpuacct.usage")?;
    usage.percpu = per_cpu("cpuacct.usage_percpu")?;
    if dir.join("cpuacct.usage_percpu_sys").exists() {
        usage.percpu_kernel = per_cpu("cpuacct.usage_percpu_sys")?;
        usage.percpu_user = per_cpu("cpuacct.usage_percpu_user")?;
    }
    // cpuacct.stat counts USER_HZ ticks.
    let ticks = fs::parse_flat_keyed(&fs::read(dir, "cpuacct.stat")?);
    let ns_per_tick = 1_000_000_000 / clock_ticks_per_second();
    usage.user = ticks.get("user").copied().unwrap_or(0) * ns_per_tick;
    usage.kernel = ticks.get("system").copied().unwrap_or(0) * ns_per_tick;
    Ok(())
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

pub fn cpu_stats(dir: &Path, out: &mut Stats) -> Result<()> {
    let stat = fs::parse_flat_keyed(&fs::read(dir, "cpu.stat")?);
    let get = |key: &str| stat.get(key).copied().unwrap_or(0);
    out.cpu.throttling.periods = get("nr_periods");
    out.cpu.throttling.throttled_periods = get("nr_throttled");
    out.cpu.throttling.throttled_time = get("throttled_time");
    Ok(())
}

fn memory_entry(dir: &Path, prefix: &str) -> Result<stats::MemoryEntry> {
    let file = |name: &str| format!("{prefix}.{name}");
    if !dir.join(file("usage_in_bytes")).exists() {
        return Ok(stats::MemoryEntry::default());
    }
    Ok(stats::MemoryEntry {
        limit: fs::read_u64(dir, &file("limit_in_bytes"))?,
        usage: fs::read_u64(dir, &file("usage_in_bytes"))?,
        max: fs::read_u64(dir, &file("max_usage_in_bytes"))?,
        failcnt: fs::read_u64(dir, &file("failcnt"))?,
    })
}

pub fn memory_stats(dir: &Path, out: &mut Stats) -> Result<()> {
    let m = &mut out.memory;
    m.raw = fs::parse_flat_keyed(&fs::read(dir, "memory.stat")?);
    m.cache = m.raw.get("cache").copied().unwrap_or(0);
    m.usage = memory_entry(dir, "memory")?;
    m.swap = memory_entry(dir, "memory.memsw")?;
    m.kernel = memory_entry(dir, "memory.kmem")?;
    m.kernel_tcp = memory_entry(dir, "memory.kmem.tcp")?;
    m.event_count.oom_kill = oom_kills(dir)?;
    Ok(())
}

/// Number of OOM kills so far (memory.oom_control `oom_kill`).
fn oom_kills(dir: &Path) -> Result<u64> {
    let control = fs::parse_flat_keyed(&fs::read(dir, "memory.oom_control")?);
    Ok(control.get("oom_kill").copied().unwrap_or(0))
}

pub fn pids_stats(dir: &Path, out: &mut Stats) -> Result<()> {
    out.pids.current = fs::read_u64(dir, "pids.current")?;
    let limit = fs::read_u64(dir, "pids.max")?;
    out.pids.limit = if limit == u64::MAX { 0 } else { limit };
    Ok(())
}

pub fn blkio_stats(dir: &Path, out: &mut Stats) -> Result<()> {
    // The throttle counters exist whatever the I/O scheduler.
    let read = |file: &str| -> Result<Vec<stats::BlkioEntry>> {
        Ok(stats::parse_blkio_v1(&fs::read(dir, file)?))
    };
    out.blkio.io_service_bytes_recursive = read("blkio.throttle.io_service_bytes_recursive")?;
    out.blkio.io_serviced_recursive = read("blkio.throttle.io_serviced_recursive")?;
    Ok(())
}

pub fn cpuset_stats(dir: &Path, out: &mut Stats) -> Result<()> {
    let s = &mut out.cpuset;
    s.cpus = stats::parse_cpuset_list(&fs::read(dir, "cpuset.cpus")?);
    s.mems = stats::parse_cpuset_list(&fs::read(dir, "cpuset.mems")?);
    let flag = |file: &str| fs::read_u64_if_exists(dir, file).map(|v| v.unwrap_or(0));
    s.cpu_exclusive = flag("cpuset.cpu_exclusive")?;
    s.mem_hardwall = flag("cpuset.mem_hardwall")?;
    s.mem_exclusive = flag("cpuset.mem_exclusive")?;
    s.memory_migrate = flag("cpuset.memory_migrate")?;
    s.memory_spread_page = flag("cpuset.memory_spread_page")?;
    s.memory_spread_slab = flag("cpuset.memory_spread_slab")?;
    s.memory_pressure = flag("cpuset.memory_pressure")?;
    s.sched_load_balance = flag("cpuset.sched_load_balance")?;
    s.sched_relax_domain_level = fs::read(dir, "cpuset.sched_relax_domain_level")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(())
}

pub fn hugetlb_stats(dir: &Path, sizes: &[String], out: &mut Stats) -> Result<()> {
    for size in sizes {
        let file = |name: &str| format!("hugetlb.{size}.{name}");
        out.hugetlb.insert(
            size.clone(),
            stats::Hugetlb {
                usage: fs::read_u64(dir, &file("usage_in_bytes"))?,
                max: fs::read_u64(dir, &file("max_usage_in_bytes"))?,
                failcnt: fs::read_u64(dir, &file("failcnt"))?,
            },
        );
    }
    Ok(())
}

/// A new v1 cpuset cgroup starts with empty cpus/mems and refuses tasks until they are set;
/// copy them down from the parent for every level between the mount and `leaf` (as runc does).
pub fn init_cpuset(mount_point: &Path, leaf: &Path) -> Result<()> {
    let mut levels: Vec<&Path> = leaf
        .ancestors()
        .take_while(|a| a.starts_with(mount_point) && *a != mount_point)
        .collect();
    levels.reverse();
    for dir in levels {
        let Some(parent) = dir.parent() else { continue };
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if fs::read(dir, file)?.trim().is_empty() {
                fs::write(dir, file, fs::read(parent, file)?.trim())?;
            }
        }
    }
    Ok(())
}
