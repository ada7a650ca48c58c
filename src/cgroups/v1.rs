//! cgroup v1 file formats, one hierarchy directory per controller: the writes a resource
//! plans, the statistics, cpuset's initial values.

use std::path::Path;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxNetwork,
};

use super::convert::{self, device_rule};
use super::fs;
use super::stats::{self, Stats};
use super::writes::Writes;

/// v1 writes -1 for "unlimited" into *_in_bytes files.
fn bytes_limit(limit: i64) -> String {
    if limit < 0 {
        "-1".into()
    } else {
        limit.to_string()
    }
}

pub fn memory(w: &mut Writes, dir: &Path, m: &LinuxMemory) -> Result<()> {
    if let Some(limit) = m.limit().filter(|l| *l > 0)
        && m.check_before_update() == Some(true)
    {
        let usage = fs::read_u64(dir, "memory.usage_in_bytes")?;
        if (limit as u64) < usage {
            bail!("linux.resources.memory.limit: {limit} is below the current usage {usage}");
        }
    }
    limit_and_swap(w, dir, m.limit(), m.swap())?;
    if let Some(reservation) = m.reservation() {
        convert::check_limit(reservation, "memory.reservation")?;
        let value = bytes_limit(reservation);
        let field = "memory.reservation";
        w.set(dir, "memory.soft_limit_in_bytes", &value, field)?;
    }
    if let Some(swappiness) = m.swappiness() {
        if swappiness > 100 {
            bail!("linux.resources.memory.swappiness: {swappiness} is above 100");
        }
        let value = swappiness.to_string();
        w.set(dir, "memory.swappiness", &value, "memory.swappiness")?;
    }
    if m.disable_oom_killer() == Some(true) {
        let (file, field) = ("memory.oom_control", "memory.disableOOMKiller");
        w.set_keyed_value(dir, file, "oom_kill_disable", "1", field)?;
    }
    if let Some(hierarchy) = m.use_hierarchy() {
        let value = if hierarchy { "1" } else { "0" };
        w.set(dir, "memory.use_hierarchy", value, "memory.useHierarchy")?;
    }
    Ok(())
}

/// The kernel insists on memory ≤ memory+swap at every moment, so the write order depends on
/// whether the limits grow or shrink (runc's logic).
fn limit_and_swap(w: &mut Writes, dir: &Path, limit: Option<i64>, swap: Option<i64>) -> Result<()> {
    let has_swap_accounting = dir.join("memory.memsw.limit_in_bytes").exists();
    // Unlimited memory without a swap value means unlimited swap too.
    let swap = match (limit, swap) {
        (Some(-1), None) if has_swap_accounting => Some(-1),
        _ => swap,
    };
    if let Some(l) = limit {
        convert::check_limit(l, "memory.limit")?;
    }
    if let Some(s) = swap {
        convert::check_limit(s, "memory.swap")?;
        if !has_swap_accounting {
            bail!("linux.resources.memory.swap: swap accounting is not enabled on this host");
        }
    }
    let write_limit = |w: &mut Writes, l: i64| {
        w.set(
            dir,
            "memory.limit_in_bytes",
            &bytes_limit(l),
            "memory.limit",
        )
    };
    let write_swap = |w: &mut Writes, s: i64| {
        let file = "memory.memsw.limit_in_bytes";
        w.set(dir, file, &bytes_limit(s), "memory.swap")
    };
    match (limit, swap) {
        (Some(l), Some(s)) => {
            let current = fs::read_u64(dir, "memory.limit_in_bytes")?;
            if s == -1 || current < s as u64 {
                write_swap(w, s)?;
                write_limit(w, l)
            } else {
                write_limit(w, l)?;
                write_swap(w, s)
            }
        }
        (Some(l), None) => write_limit(w, l),
        (None, Some(s)) => write_swap(w, s),
        (None, None) => Ok(()),
    }
}

pub fn cpu(w: &mut Writes, dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(shares) = c.shares() {
        convert::check_cpu_shares(shares)?;
        w.set(dir, "cpu.shares", &shares.to_string(), "cpu.shares")?;
    }
    convert::check_cfs(c.quota(), c.period())?;
    let quota = Knob {
        file: "cpu.cfs_quota_us",
        field: "cpu.quota",
    };
    let period = Knob {
        file: "cpu.cfs_period_us",
        field: "cpu.period",
    };
    let quota = (quota, Unlimited::WithinTheParents, c.quota());
    budget_and_period(w, dir, quota, (period, c.period()))?;
    if let Some(burst) = c.burst() {
        w.set(dir, "cpu.cfs_burst_us", &burst.to_string(), "cpu.burst")?;
    }
    if let Some(idle) = c.idle() {
        w.set(dir, "cpu.idle", &idle.to_string(), "cpu.idle")?;
    }
    let runtime = Knob {
        file: "cpu.rt_runtime_us",
        field: "cpu.realtimeRuntime",
    };
    let period = Knob {
        file: "cpu.rt_period_us",
        field: "cpu.realtimePeriod",
    };
    let runtime = (runtime, Unlimited::TheWholePeriod, c.realtime_runtime());
    budget_and_period(w, dir, runtime, (period, c.realtime_period()))
}

/// A control file and the spec field that sets it.
struct Knob {
    file: &'static str,
    field: &'static str,
}

/// What the kernel counts a budget of -1 (unlimited) as, against the parent's budget.
#[derive(Clone, Copy, Debug)]
enum Unlimited {
    /// A CFS quota: the parent's quota still bounds the cgroup, which asks for nothing more.
    WithinTheParents,
    /// A realtime runtime: all of each period.
    TheWholePeriod,
}

impl Unlimited {
    /// The share of a CPU that `budget` per `period` asks of the parent.
    fn share(self, budget: i64, period: i64) -> f64 {
        match (budget, self) {
            (..0, Unlimited::WithinTheParents) => 0.0,
            (..0, Unlimited::TheWholePeriod) => f64::INFINITY,
            (budget, _) => budget as f64 / period.max(1) as f64,
        }
    }
}

/// Writes a budget (CFS quota, realtime runtime; -1 = unlimited) and its period. The kernel
/// checks budget/period against the parent's at each write, so when both change, the one whose
/// intermediate pair asks for less goes first (runc tries period first and retries on EINVAL).
fn budget_and_period(
    w: &mut Writes,
    dir: &Path,
    (budget, unlimited, new_budget): (Knob, Unlimited, Option<i64>),
    (period, new_period): (Knob, Option<u64>),
) -> Result<()> {
    let write_budget =
        |w: &mut Writes, b: i64| w.set(dir, budget.file, &b.to_string(), budget.field);
    let write_period =
        |w: &mut Writes, p: u64| w.set(dir, period.file, &p.to_string(), period.field);
    match (new_budget, new_period) {
        (Some(b), Some(p)) => {
            let old = (read_i64(dir, budget.file)?, read_i64(dir, period.file)?);
            if period_goes_first(unlimited, old, (b, p as i64)) {
                write_period(w, p)?;
                write_budget(w, b)
            } else {
                write_budget(w, b)?;
                write_period(w, p)
            }
        }
        (Some(b), None) => write_budget(w, b),
        (None, Some(p)) => write_period(w, p),
        (None, None) => Ok(()),
    }
}

/// Whether going from `old` to `new` (budget, period) passes through (old budget, new period)
/// asking for no more than through (new budget, old period).
fn period_goes_first(unlimited: Unlimited, old: (i64, i64), new: (i64, i64)) -> bool {
    unlimited.share(old.0, new.1) <= unlimited.share(new.0, old.1)
}

fn read_i64(dir: &Path, file: &str) -> Result<i64> {
    let text = fs::read(dir, file)?;
    (text.trim().parse())
        .with_context(|| format!("{}/{file}: not a number: {text:?}", dir.display()))
}

pub fn blkio(w: &mut Writes, dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // CFQ is gone from current kernels; BFQ offers the same knobs under blkio.bfq.* and takes
    // weights from 1 where CFQ took them from 10.
    let weight_file = |name: &str, field: &str| -> Result<(String, u16)> {
        for (candidate, min) in [
            (format!("blkio.{name}"), 10),
            (format!("blkio.bfq.{name}"), 1),
        ] {
            if dir.join(&candidate).exists() {
                return Ok((candidate, min));
            }
        }
        bail!("linux.resources.blockIO.{field}: no blkio.{name} (CFQ or BFQ) on this host")
    };
    let check = |weight: u16, min: u16, field: &str| -> Result<()> {
        if !(min..=1000).contains(&weight) {
            bail!("linux.resources.blockIO.{field}: {weight} is outside {min}…1000");
        }
        Ok(())
    };
    if let Some(weight) = b.weight() {
        let (file, min) = weight_file("weight", "weight")?;
        check(weight, min, "weight")?;
        w.set(dir, &file, &weight.to_string(), "blockIO.weight")?;
    }
    if let Some(weight) = b.leaf_weight() {
        let (file, min) = weight_file("leaf_weight", "leafWeight")?;
        check(weight, min, "leafWeight")?;
        w.set(dir, &file, &weight.to_string(), "blockIO.leafWeight")?;
    }
    for d in b.weight_device().iter().flatten() {
        let device = format!("{}:{}", d.major(), d.minor());
        let per_device = [
            (d.weight(), "weight_device", "weightDevice"),
            (
                d.leaf_weight(),
                "leaf_weight_device",
                "weightDevice.leafWeight",
            ),
        ];
        for (weight, name, field) in per_device {
            let Some(weight) = weight else { continue };
            let (file, min) = weight_file(name, field)?;
            check(weight, min, field)?;
            let line = format!("{device} {weight}");
            let field = format!("blockIO.{field}");
            w.set_line(dir, &file, &device, &line, &format!("{device} 0"), &field)?;
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
            let device = format!("{}:{}", d.major(), d.minor());
            let line = format!("{device} {}", d.rate());
            let (file, field) = (format!("blkio.throttle.{file}"), format!("blockIO.{field}"));
            w.set_line(dir, &file, &device, &line, &format!("{device} 0"), &field)?;
        }
    }
    Ok(())
}

/// The limit and, where the kernel has them, the reservation limit (as runc sets both).
pub fn hugetlb(w: &mut Writes, dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let limit = bytes_limit(l.limit());
        for kind in ["", ".rsvd"] {
            let file = format!("hugetlb.{}{kind}.limit_in_bytes", l.page_size());
            if kind.is_empty() || dir.join(&file).exists() {
                w.set(dir, &file, &limit, "hugepageLimits")?;
            }
        }
    }
    Ok(())
}

pub fn net_cls(w: &mut Writes, dir: &Path, class_id: u32) -> Result<()> {
    let value = class_id.to_string();
    w.set(dir, "net_cls.classid", &value, "network.classID")
}

pub fn net_prio(w: &mut Writes, dir: &Path, network: &LinuxNetwork) -> Result<()> {
    for p in network.priorities().iter().flatten() {
        let line = format!("{} {}", p.name(), p.priority());
        let absent = format!("{} 0", p.name());
        let field = "network.priorities";
        w.set_line(dir, "net_prio.ifpriomap", p.name(), &line, &absent, field)?;
    }
    Ok(())
}

/// Default deny (as runc), then every rule in order: later rules override earlier ones.
pub fn devices(w: &mut Writes, dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    w.set(dir, "devices.deny", "a", "devices")?;
    for rule in rules {
        let file = if rule.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        w.set(dir, file, &device_rule(rule)?, "devices")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_an_unlimited_cfs_quota_the_period_goes_first() {
        // runc's "update cpu period in a pod cgroup with pod limit set": the pod is limited to
        // 50000/100000 and the new container asks 500000/1000000; its quota first would ask the
        // pod for five CPUs at the old period.
        let first = period_goes_first(Unlimited::WithinTheParents, (-1, 100000), (500000, 1000000));
        assert!(first);
    }

    #[test]
    fn a_shorter_period_goes_after_its_smaller_quota() {
        // 50000/100000 to 3000/10000: the period first would ask for five CPUs for a moment.
        let first = period_goes_first(Unlimited::WithinTheParents, (50000, 100000), (3000, 10000));
        assert!(!first);
    }

    #[test]
    fn from_an_unlimited_realtime_runtime_the_runtime_goes_first() {
        // -1 asks for all of each period, whatever its length.
        let first = period_goes_first(Unlimited::TheWholePeriod, (-1, 1000000), (10000, 500000));
        assert!(!first);
    }
}
