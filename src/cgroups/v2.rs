//! cgroup v2 file formats, for the v2 driver and for controllers that a hybrid host offers only on
//! its cgroup2 mount (hugetlb on the development host).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxRdma,
};

use super::convert::{self, v2_limit};
use super::fs::{self, set};
use super::stats::{self, Stats};

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

pub fn memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    #[allow(deprecated)] // kernel memory is still in the spec; v2 never had it.
    let unsupported = [
        ("kernel", m.kernel().is_some()),
        ("kernelTCP", m.kernel_tcp().is_some()),
        ("swappiness", m.swappiness().is_some()),
        ("disableOOMKiller", m.disable_oom_killer() == Some(true)),
        ("useHierarchy", m.use_hierarchy() == Some(false)),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        bail!("linux.resources.memory.{field}: not supported on cgroup v2");
    }
    if let Some(limit) = m.limit() {
        if m.check_before_update() == Some(true) && limit > 0 {
            let usage = fs::read_u64(dir, "memory.current")?;
            if (limit as u64) < usage {
                bail!("linux.resources.memory.limit: {limit} is below the current usage {usage}");
            }
        }
        set(dir, "memory.max", &v2_limit(limit), "memory.limit")?;
    }
    if let Some(swap) = convert::memory_swap_to_v2(m.swap(), m.limit())? {
        set(dir, "memory.swap.max", &swap, "memory.swap")?;
    }
    if let Some(reservation) = m.reservation() {
        set(
            dir,
            "memory.low",
            &v2_limit(reservation),
            "memory.reservation",
        )?;
    }
    Ok(())
}

pub fn cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
        bail!("linux.resources.cpu.realtimeRuntime/realtimePeriod: not supported on cgroup v2");
    }
    if let Some(shares) = c.shares().filter(|s| *s != 0) {
        let weight = convert::cpu_shares_to_weight(shares).to_string();
        set(dir, "cpu.weight", &weight, "cpu.shares")?;
    }
    if let Some(max) = convert::cpu_max(c.quota(), c.period()) {
        set(dir, "cpu.max", &max, "cpu.quota")?;
    }
    if let Some(burst) = c.burst() {
        set(dir, "cpu.max.burst", &burst.to_string(), "cpu.burst")?;
    }
    if let Some(idle) = c.idle() {
        set(dir, "cpu.idle", &idle.to_string(), "cpu.idle")?;
    }
    Ok(())
}

/// cpuset.cpus / cpuset.mems: the same files on v1 and v2.
pub fn cpuset(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus() {
        set(dir, "cpuset.cpus", cpus, "cpu.cpus")?;
    }
    if let Some(mems) = c.mems() {
        set(dir, "cpuset.mems", mems, "cpu.mems")?;
    }
    Ok(())
}

/// pids.max: the same file on v1 and v2; 0 leaves it alone, negative is unlimited (runc).
pub fn pids(dir: &Path, limit: i64) -> Result<()> {
    if limit == 0 {
        return Ok(());
    }
    set(dir, "pids.max", &v2_limit(limit), "pids.limit")
}

pub fn io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
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
    let weight_value = |w: u16| {
        if bfq {
            w.to_string()
        } else {
            convert::blkio_weight_to_io_weight(w).to_string()
        }
    };
    let weight_file = if bfq { "io.bfq.weight" } else { "io.weight" };
    if let Some(weight) = b.weight().filter(|w| *w != 0) {
        set(dir, weight_file, &weight_value(weight), "blockIO.weight")?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(weight) = d.weight() {
            let line = format!("{}:{} {}", d.major(), d.minor(), weight_value(weight));
            set(dir, weight_file, &line, "blockIO.weightDevice")?;
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
            let line = format!("{}:{} {key}={}", d.major(), d.minor(), d.rate());
            set(dir, "io.max", &line, &format!("blockIO.{field}"))?;
        }
    }
    Ok(())
}

pub fn hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let limit = v2_limit(l.limit());
        set(
            dir,
            &format!("hugetlb.{}.max", l.page_size()),
            &limit,
            "hugepageLimits",
        )?;
        // Reservations are what hugetlb users actually hit first (runc sets both).
        let rsvd = format!("hugetlb.{}.rsvd.max", l.page_size());
        if dir.join(&rsvd).exists() {
            set(dir, &rsvd, &limit, "hugepageLimits")?;
        }
    }
    Ok(())
}

/// rdma.max: the same format on v1 and v2.
pub fn rdma(dir: &Path, rdma: &HashMap<String, LinuxRdma>) -> Result<()> {
    for (device, limits) in rdma {
        let mut line = device.clone();
        if let Some(h) = limits.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = limits.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        set(dir, "rdma.max", &line, "rdma")?;
    }
    Ok(())
}

pub fn devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let fd: OwnedFd = std::fs::File::open(dir)
        .with_context(|| format!("opening {} for the device program", dir.display()))?
        .into();
    super::bpf::install(&fd, rules).context("linux.resources.devices")
}

/// One raw `unified` key (already checked by `convert::check_unified_key`).
pub fn unified_key(dir: &Path, key: &str, value: &str) -> Result<()> {
    if !dir.join(key).exists() {
        bail!(
            "linux.resources.unified: key {key:?}: no such file in {}",
            dir.display()
        );
    }
    set(dir, key, value, &format!("unified.{key}"))
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

    #[test]
    fn memory_files_and_refused_fields() {
        let dir = Scratch::new("memory", &["memory.max", "memory.swap.max", "memory.low"]);
        let m = serde_json::from_str(r#"{"limit":1000,"swap":3000,"reservation":-1}"#).unwrap();
        memory(&dir.0, &m).unwrap();
        assert_eq!(dir.read("memory.max"), "1000");
        assert_eq!(dir.read("memory.swap.max"), "2000");
        assert_eq!(dir.read("memory.low"), "max");
        for refused in [
            r#"{"swappiness":1}"#,
            r#"{"kernel":1}"#,
            r#"{"disableOOMKiller":true}"#,
        ] {
            let m = serde_json::from_str(refused).unwrap();
            let err = memory(&dir.0, &m).unwrap_err().to_string();
            assert!(err.starts_with("linux.resources.memory."), "{err}");
        }
    }

    #[test]
    fn cpu_and_io_formats() {
        let files = ["cpu.weight", "cpu.max", "io.weight", "io.max"];
        let dir = Scratch::new("cpu-io", &files);
        let c = serde_json::from_str(r#"{"shares":1024,"quota":-1,"period":50000}"#).unwrap();
        cpu(&dir.0, &c).unwrap();
        assert_eq!(dir.read("cpu.weight"), "100");
        assert_eq!(dir.read("cpu.max"), "max 50000");
        let rt = serde_json::from_str(r#"{"realtimeRuntime":1}"#).unwrap();
        assert!(cpu(&dir.0, &rt).is_err());
        let b = serde_json::from_str(
            r#"{"weight":1000,"throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":7}]}"#,
        )
        .unwrap();
        io(&dir.0, &b).unwrap();
        assert_eq!(dir.read("io.weight"), "10000");
        assert_eq!(dir.read("io.max"), "8:0 wiops=7");
    }
}
