//! cgroup v2 file formats, for the v2 driver and for controllers that a hybrid host offers only on
//! its cgroup2 mount (hugetlb on the development host).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, bail};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxRdma};

use super::convert::{self, v2_limit};
use super::fs;
use super::stats::{self, Stats};
use super::writes::Writes;

/// The v2 name of a v1 controller: blkio became io, the rest kept their names.
pub fn controller_name(v1_name: &str) -> &str {
    if v1_name == "blkio" { "io" } else { v1_name }
}

/// Controllers available in a v2 cgroup (those its parent enabled for it).
pub fn controllers(dir: &Path) -> Result<Vec<String>> {
    Ok(fs::read(dir, "cgroup.controllers")?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// Enables `wanted` controllers on every cgroup from the mount's root down to `leaf`'s parent,
/// so the leaf gets their files. Already enabled ones are not rewritten.
pub fn enable_controllers(mount_point: &Path, leaf: &Path, wanted: &[String]) -> Result<()> {
    let ancestors: Vec<&Path> = leaf
        .ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(mount_point))
        .collect();
    for dir in ancestors.into_iter().rev() {
        let enabled = fs::read(dir, "cgroup.subtree_control")?;
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        for controller in wanted.iter().filter(|c| !enabled.contains(&c.as_str())) {
            fs::write(dir, "cgroup.subtree_control", &format!("+{controller}"))?;
        }
    }
    Ok(())
}

pub fn memory(w: &mut Writes, dir: &Path, m: &LinuxMemory) -> Result<()> {
    let unsupported = [
        ("swappiness", m.swappiness().is_some()),
        ("disableOOMKiller", m.disable_oom_killer() == Some(true)),
        ("useHierarchy", m.use_hierarchy() == Some(false)),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        bail!("linux.resources.memory.{field}: not supported on cgroup v2");
    }
    if let Some(limit) = m.limit() {
        convert::check_limit(limit, "memory.limit")?;
        if m.check_before_update() == Some(true) && limit > 0 {
            let usage = fs::read_u64(dir, "memory.current")?;
            if (limit as u64) < usage {
                bail!("linux.resources.memory.limit: {limit} is below the current usage {usage}");
            }
        }
    }
    if let Some(swap) = m.swap() {
        convert::check_limit(swap, "memory.swap")?;
    }
    // v2 limits swap alone: an update of the swap only is taken against the current limit.
    let limit = match (m.limit(), m.swap()) {
        (None, Some(_)) => Some(current_limit(dir, "memory.max")?),
        (limit, _) => limit,
    };
    if let Some(swap) = convert::memory_swap_to_v2(m.swap(), limit)? {
        // Without swap accounting there is nothing to limit: "max" or "0" then change nothing,
        // as with runc.
        let no_swap = !dir.join("memory.swap.max").exists() && (swap == "max" || swap == "0");
        if !no_swap {
            w.set(dir, "memory.swap.max", &swap, "memory.swap")?;
        }
    }
    if let Some(limit) = m.limit() {
        w.set(dir, "memory.max", &v2_limit(limit), "memory.limit")?;
    }
    if let Some(reservation) = m.reservation() {
        convert::check_limit(reservation, "memory.reservation")?;
        let value = v2_limit(reservation);
        w.set(dir, "memory.low", &value, "memory.reservation")?;
    }
    Ok(())
}

/// A limit file's value as the spec writes it: -1 for `max`.
fn current_limit(dir: &Path, file: &str) -> Result<i64> {
    let value = fs::read_u64(dir, file)?;
    Ok(i64::try_from(value).unwrap_or(-1))
}

pub fn cpu(w: &mut Writes, dir: &Path, c: &LinuxCpu) -> Result<()> {
    if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
        bail!("linux.resources.cpu.realtimeRuntime/realtimePeriod: not supported on cgroup v2");
    }
    if let Some(shares) = c.shares() {
        convert::check_cpu_shares(shares)?;
        let weight = convert::cpu_shares_to_weight(shares).to_string();
        w.set(dir, "cpu.weight", &weight, "cpu.shares")?;
    }
    convert::check_cfs(c.quota(), c.period())?;
    // cpu.max is "QUOTA [PERIOD]": a new period alone keeps the current quota.
    let quota = match (c.quota(), c.period()) {
        (None, Some(_)) => {
            let current = fs::read(dir, "cpu.max")?;
            let quota = current.split_whitespace().next().unwrap_or("max");
            Some(quota.parse().unwrap_or(-1))
        }
        (quota, _) => quota,
    };
    if let Some(max) = convert::cpu_max(quota, c.period()) {
        w.set(dir, "cpu.max", &max, "cpu.quota")?;
    }
    if let Some(burst) = c.burst() {
        w.set(dir, "cpu.max.burst", &burst.to_string(), "cpu.burst")?;
    }
    if let Some(idle) = c.idle() {
        w.set(dir, "cpu.idle", &idle.to_string(), "cpu.idle")?;
    }
    Ok(())
}

/// cpuset.cpus / cpuset.mems: the same files on v1 and v2.
pub fn cpuset(w: &mut Writes, dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus() {
        w.set(dir, "cpuset.cpus", cpus, "cpu.cpus")?;
    }
    if let Some(mems) = c.mems() {
        w.set(dir, "cpuset.mems", mems, "cpu.mems")?;
    }
    Ok(())
}

/// pids.max: the same file on v1 and v2; negative is unlimited (runc).
pub fn pids(w: &mut Writes, dir: &Path, limit: i64) -> Result<()> {
    w.set(dir, "pids.max", &v2_limit(limit), "pids.limit")
}

pub fn io(w: &mut Writes, dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    let bfq = dir.join("io.bfq.weight").exists();
    if b.leaf_weight().is_some()
        || b.weight_device()
            .iter()
            .flatten()
            .any(|d| d.leaf_weight().is_some())
    {
        bail!("linux.resources.blockIO.leafWeight: not supported on cgroup v2");
    }
    // BFQ takes blkio-style weights as they are; io.weight needs the converted range.
    let weight_value = |w: u16| -> Result<String> {
        let (value, max) = if bfq {
            (u64::from(w), 1000)
        } else {
            (convert::blkio_weight_to_io_weight(w), 10000)
        };
        if !(1..=max).contains(&value) {
            bail!("linux.resources.blockIO.weight: {w} is outside 10…1000");
        }
        Ok(value.to_string())
    };
    let weight_file = if bfq { "io.bfq.weight" } else { "io.weight" };
    if let Some(weight) = b.weight() {
        // Reads as "default N" plus a line per device; takes that line back.
        let (value, absent) = (weight_value(weight)?, "default 100");
        w.set_line(
            dir,
            weight_file,
            "default",
            &value,
            absent,
            "blockIO.weight",
        )?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(weight) = d.weight() {
            let device = format!("{}:{}", d.major(), d.minor());
            let line = format!("{device} {}", weight_value(weight)?);
            let absent = format!("{device} default");
            w.set_line(
                dir,
                weight_file,
                &device,
                &line,
                &absent,
                "blockIO.weightDevice",
            )?;
        }
    }
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "rbps",
            "throttleReadBpsDevice",
        ),
        (
            b.throttle_write_bps_device(),
            "wbps",
            "throttleWriteBpsDevice",
        ),
        (
            b.throttle_read_iops_device(),
            "riops",
            "throttleReadIOPSDevice",
        ),
        (
            b.throttle_write_iops_device(),
            "wiops",
            "throttleWriteIOPSDevice",
        ),
    ];
    for (devices, key, field) in throttles {
        for d in devices.iter().flatten() {
            let device = format!("{}:{}", d.major(), d.minor());
            let line = format!("{device} {key}={}", d.rate());
            let absent = format!("{device} rbps=max wbps=max riops=max wiops=max");
            let field = format!("blockIO.{field}");
            w.set_line(dir, "io.max", &device, &line, &absent, &field)?;
        }
    }
    Ok(())
}

pub fn hugetlb(w: &mut Writes, dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let limit = v2_limit(l.limit());
        // Reservations are what hugetlb users actually hit first (runc sets both).
        for kind in ["", ".rsvd"] {
            let file = format!("hugetlb.{}{kind}.max", l.page_size());
            if kind.is_empty() || dir.join(&file).exists() {
                w.set(dir, &file, &limit, "hugepageLimits")?;
            }
        }
    }
    Ok(())
}

/// rdma.max: the same format on v1 and v2.
pub fn rdma(w: &mut Writes, dir: &Path, rdma: &HashMap<String, LinuxRdma>) -> Result<()> {
    for (device, limits) in rdma {
        let mut line = device.clone();
        if let Some(h) = limits.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = limits.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        let absent = format!("{device} hca_handle=max hca_object=max");
        w.set_line(dir, "rdma.max", device, &line, &absent, "rdma")?;
    }
    Ok(())
}

/// One raw `unified` key (already checked by `convert::check_unified_key`).
pub fn unified_key(w: &mut Writes, dir: &Path, key: &str, value: &str) -> Result<()> {
    if !dir.join(key).exists() {
        bail!(
            "linux.resources.unified: key {key:?}: no such file in {}",
            dir.display()
        );
    }
    w.set(dir, key, value, &format!("unified.{key}"))
}

pub fn hugetlb_stats(dir: &Path, sizes: &[String], out: &mut Stats) -> Result<()> {
    for size in sizes {
        let events = fs::read(dir, &format!("hugetlb.{size}.events"))?;
        out.hugetlb.insert(
            size.clone(),
            stats::Hugetlb {
                usage: fs::read_u64(dir, &format!("hugetlb.{size}.current"))?,
                max: fs::read_u64(dir, &format!("hugetlb.{size}.max"))?,
                failcnt: fs::parse_flat_keyed(&events)
                    .get("max")
                    .copied()
                    .unwrap_or(0),
            },
        );
    }
    Ok(())
}

/// The stats of every controller available in `dir`, the way runc's fs2 driver reports them.
pub fn stats(dir: &Path, available: &[String], out: &mut Stats) -> Result<()> {
    let has = |c: &str| available.iter().any(|a| a == c);
    let cpu_stat = fs::parse_flat_keyed(&fs::read(dir, "cpu.stat")?);
    let get = |key: &str| cpu_stat.get(key).copied().unwrap_or(0);
    out.cpu.usage.total = get("usage_usec") * 1000;
    out.cpu.usage.user = get("user_usec") * 1000;
    out.cpu.usage.kernel = get("system_usec") * 1000;
    out.cpu.throttling.periods = get("nr_periods");
    out.cpu.throttling.throttled_periods = get("nr_throttled");
    out.cpu.throttling.throttled_time = get("throttled_usec") * 1000;
    out.cpu.psi = read_psi(dir, "cpu.pressure");
    if has("memory") {
        memory_stats(dir, out)?;
    }
    if has("pids") {
        out.pids.current = fs::read_u64(dir, "pids.current")?;
        out.pids.limit =
            fs::read_u64(dir, "pids.max").map(|l| if l == u64::MAX { 0 } else { l })?;
    }
    if has("io") {
        let (bytes, ios) = stats::parse_io_stat(&fs::read(dir, "io.stat")?);
        out.blkio.io_service_bytes_recursive = bytes;
        out.blkio.io_serviced_recursive = ios;
        out.blkio.psi = read_psi(dir, "io.pressure");
    }
    if has("cpuset") {
        out.cpuset.cpus = stats::parse_cpuset_list(&fs::read(dir, "cpuset.cpus.effective")?);
        out.cpuset.mems = stats::parse_cpuset_list(&fs::read(dir, "cpuset.mems.effective")?);
    }
    if has("hugetlb") {
        hugetlb_stats(dir, &convert::host_hugepage_sizes()?, out)?;
    }
    Ok(())
}

fn read_psi(dir: &Path, file: &str) -> Option<stats::PsiStats> {
    // PSI may be compiled out or disabled at boot; runc then leaves it out too.
    stats::parse_psi(&fs::read(dir, file).ok()?)
}

fn memory_stats(dir: &Path, out: &mut Stats) -> Result<()> {
    let m = &mut out.memory;
    m.raw = fs::parse_flat_keyed(&fs::read(dir, "memory.stat")?);
    m.cache = m.raw.get("file").copied().unwrap_or(0);
    m.usage.usage = fs::read_u64(dir, "memory.current")?;
    m.usage.limit = fs::read_u64(dir, "memory.max")?;
    m.usage.max = fs::read_u64_if_exists(dir, "memory.peak")?.unwrap_or(0);
    if let Some(swap) = fs::read_u64_if_exists(dir, "memory.swap.current")? {
        // runc reports swap as memory+swap, the v1 meaning.
        m.swap.usage = swap + m.usage.usage;
        let swap_max = fs::read_u64(dir, "memory.swap.max")?;
        m.swap.limit = if swap_max == u64::MAX || m.usage.limit == u64::MAX {
            u64::MAX
        } else {
            swap_max + m.usage.limit
        };
        m.swap.max = fs::read_u64_if_exists(dir, "memory.swap.peak")?.unwrap_or(0);
    }
    let events = fs::parse_flat_keyed(&fs::read(dir, "memory.events")?);
    let count = |key: &str| events.get(key).copied().unwrap_or(0);
    m.usage.failcnt = count("max");
    m.event_count = stats::MemoryEventCount {
        low: count("low"),
        high: count("high"),
        max: count("max"),
        oom: count("oom"),
        oom_kill: count("oom_kill"),
    };
    m.psi = read_psi(dir, "memory.pressure");
    Ok(())
}

/// Number of OOM kills so far (memory.events `oom_kill`).
pub fn oom_kills(dir: &Path) -> Result<u64> {
    let events = fs::parse_flat_keyed(&fs::read(dir, "memory.events")?);
    Ok(events.get("oom_kill").copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory standing in for a cgroup: the writers only open existing files.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str, files: &[&str]) -> Scratch {
            let dir = std::env::temp_dir().join(format!("berth-v2-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for f in files {
                std::fs::write(dir.join(f), "").unwrap();
            }
            Scratch(dir)
        }

        fn read(&self, file: &str) -> String {
            std::fs::read_to_string(self.0.join(file)).unwrap()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Plans with `plan` and makes the writes.
    fn write(plan: impl FnOnce(&mut Writes) -> Result<()>) -> Result<()> {
        let mut w = Writes::default();
        plan(&mut w)?;
        w.apply()
    }

    fn json<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn memory_files_and_refused_fields() {
        let dir = Scratch::new("memory", &["memory.max", "memory.swap.max", "memory.low"]);
        let m = json(r#"{"limit":1000,"swap":3000,"reservation":-1}"#);
        write(|w| memory(w, &dir.0, &m)).unwrap();
        assert_eq!(dir.read("memory.max"), "1000");
        assert_eq!(dir.read("memory.swap.max"), "2000");
        assert_eq!(dir.read("memory.low"), "max");
        // A new swap alone is taken against the current limit.
        write(|w| memory(w, &dir.0, &json(r#"{"swap":2500}"#))).unwrap();
        assert_eq!(dir.read("memory.swap.max"), "1500");
        for refused in [
            r#"{"swappiness":1}"#,
            r#"{"disableOOMKiller":true}"#,
            r#"{"limit":-2}"#,
        ] {
            let err = write(|w| memory(w, &dir.0, &json(refused))).unwrap_err();
            assert!(
                err.to_string().starts_with("linux.resources.memory."),
                "{err}"
            );
        }
    }

    #[test]
    fn cpu_and_io_formats() {
        let files = ["cpu.weight", "cpu.max", "io.weight", "io.max"];
        let dir = Scratch::new("cpu-io", &files);
        let c = json(r#"{"shares":1024,"quota":-1,"period":50000}"#);
        write(|w| cpu(w, &dir.0, &c)).unwrap();
        assert_eq!(dir.read("cpu.weight"), "100");
        assert_eq!(dir.read("cpu.max"), "max 50000");
        // A new period alone keeps the current quota.
        std::fs::write(dir.0.join("cpu.max"), "20000 100000").unwrap();
        write(|w| cpu(w, &dir.0, &json(r#"{"period":500000}"#))).unwrap();
        assert_eq!(dir.read("cpu.max"), "20000 500000");
        let rt = json(r#"{"realtimeRuntime":1}"#);
        assert!(write(|w| cpu(w, &dir.0, &rt)).is_err());
        let b =
            json(r#"{"weight":1000,"throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":7}]}"#);
        write(|w| io(w, &dir.0, &b)).unwrap();
        assert_eq!(dir.read("io.weight"), "10000");
        assert_eq!(dir.read("io.max"), "8:0 wiops=7");
    }
}
