//! The writes that set a container's resources, planned the same way whoever made its cgroup:
//! each set field goes to the hierarchy that has its controller, in that hierarchy's format.

use anyhow::{Result, bail};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::hierarchy::Target;
use super::{convert, v1, v2, writes};

/// The first set field of a section, to name it when its controller is missing.
fn first_set(fields: &[(&'static str, bool)]) -> Option<&'static str> {
    fields.iter().find(|(_, set)| *set).map(|(f, _)| *f)
}

fn memory_field(m: &LinuxMemory) -> Option<&'static str> {
    first_set(&[
        ("limit", m.limit().is_some()),
        ("reservation", m.reservation().is_some()),
        ("swap", m.swap().is_some()),
        ("swappiness", m.swappiness().is_some()),
        ("disableOOMKiller", m.disable_oom_killer().is_some()),
        ("useHierarchy", m.use_hierarchy().is_some()),
    ])
}

fn cpu_field(c: &LinuxCpu) -> Option<&'static str> {
    first_set(&[
        ("shares", c.shares().is_some()),
        ("quota", c.quota().is_some()),
        ("period", c.period().is_some()),
        ("burst", c.burst().is_some()),
        ("realtimeRuntime", c.realtime_runtime().is_some()),
        ("realtimePeriod", c.realtime_period().is_some()),
        ("idle", c.idle().is_some()),
    ])
}

fn blkio_field(b: &LinuxBlockIo) -> Option<&'static str> {
    first_set(&[
        ("weight", b.weight().is_some()),
        ("leafWeight", b.leaf_weight().is_some()),
        ("weightDevice", b.weight_device().is_some()),
        (
            "throttleReadBpsDevice",
            b.throttle_read_bps_device().is_some(),
        ),
        (
            "throttleWriteBpsDevice",
            b.throttle_write_bps_device().is_some(),
        ),
        (
            "throttleReadIOPSDevice",
            b.throttle_read_iops_device().is_some(),
        ),
        (
            "throttleWriteIOPSDevice",
            b.throttle_write_iops_device().is_some(),
        ),
    ])
}

/// Plans the writes of every set field of `r` (see `convert::without_unset`), asking `target`
/// where each controller lives. Shared by both drivers so a field means the same thing
/// everywhere; nothing is written until the whole plan stands.
pub fn plan_writes<'m>(
    r: &LinuxResources,
    target: &dyn Fn(&str, &str) -> Result<Target<'m>>,
) -> Result<writes::Writes> {
    let mut w = writes::Writes::default();
    if let Some(m) = r.memory()
        && let Some(field) = memory_field(m)
    {
        match target("memory", &format!("memory.{field}"))? {
            Target::V1(d) => v1::memory(&mut w, d, m)?,
            Target::V2(d) => v2::memory(&mut w, d, m)?,
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(field) = cpu_field(c) {
            match target("cpu", &format!("cpu.{field}"))? {
                Target::V1(d) => v1::cpu(&mut w, d, c)?,
                Target::V2(d) => v2::cpu(&mut w, d, c)?,
            }
        }
        if c.cpus().is_some() || c.mems().is_some() {
            v2::cpuset(&mut w, target("cpuset", "cpu.cpus")?.dir(), c)?;
        }
    }
    if let Some(p) = r.pids() {
        v2::pids(&mut w, target("pids", "pids.limit")?.dir(), p.limit())?;
    }
    if let Some(b) = r.block_io()
        && let Some(field) = blkio_field(b)
    {
        match target("blkio", &format!("blockIO.{field}"))? {
            Target::V1(d) => v1::blkio(&mut w, d, b)?,
            Target::V2(d) => v2::io(&mut w, d, b)?,
        }
    }
    if let Some(limits) = r.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
        let available = convert::host_hugepage_sizes()?;
        for l in limits {
            convert::check_hugepage_size(l.page_size(), &available)?;
        }
        match target("hugetlb", "hugepageLimits")? {
            Target::V1(d) => v1::hugetlb(&mut w, d, limits)?,
            Target::V2(d) => v2::hugetlb(&mut w, d, limits)?,
        }
    }
    if let Some(n) = r.network() {
        if let Some(class_id) = n.class_id() {
            match target("net_cls", "network.classID")? {
                Target::V1(d) => v1::net_cls(&mut w, d, class_id)?,
                Target::V2(_) => bail!("linux.resources.network.classID: cgroup v1 only"),
            }
        }
        if n.priorities().is_some() {
            match target("net_prio", "network.priorities")? {
                Target::V1(d) => v1::net_prio(&mut w, d, n)?,
                Target::V2(_) => bail!("linux.resources.network.priorities: cgroup v1 only"),
            }
        }
    }
    if let Some(rdma) = r.rdma().as_ref().filter(|r| !r.is_empty()) {
        v2::rdma(&mut w, target("rdma", "rdma")?.dir(), rdma)?;
    }
    if let Some(rules) = r.devices() {
        match target("devices", "devices")? {
            Target::V1(d) => v1::devices(&mut w, d, rules)?,
            Target::V2(d) => w.install_device_program(d, rules)?,
        }
    }
    for (key, value) in r.unified().iter().flatten() {
        let controller = convert::check_unified_key(key)?;
        // cgroup.* files exist in every cgroup2 directory; other keys need their controller.
        let lookup = if controller == "cgroup" {
            "unified"
        } else {
            controller
        };
        match target(lookup, &format!("unified.{key}"))? {
            Target::V2(d) => v2::unified_key(&mut w, d, key, value)?,
            Target::V1(_) => bail!(
                "linux.resources.unified: key {key:?}: {controller} is a cgroup v1 controller \
                 on this host"
            ),
        }
    }
    Ok(w)
}
