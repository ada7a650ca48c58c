//! `process.execCPUAffinity` (runtime-spec 1.3): `initial` is the affinity of the process while it
//! is still runtime code — set by the parent right after clone/fork, before the child joins the
//! container's cgroup; `final` is set by the child itself after joining the cgroup, just before
//! execve (joining a cpuset cgroup resets the affinity, so `final` must come after it).

use anyhow::{Context, Result};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use crate::spec::parse_number_list;

/// Parses a kernel cpu list ("0-3,7") into a set.
pub fn parse_cpu_list(list: &str) -> Result<CpuSet, String> {
    let mut cpus = CpuSet::new();
    for cpu in parse_number_list(list, "cpu")? {
        cpus.set(cpu)
            .map_err(|_| format!("{list:?}: cpu {cpu} is beyond {}", CpuSet::count() - 1))?;
    }
    Ok(cpus)
}

/// Applies `execCPUAffinity.initial` to the calling process (the runtime's child, before it
/// joins the container's cgroup), if set.
pub fn set_initial_cpu_affinity(process: &Process) -> Result<()> {
    let list = process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.initial().as_deref());
    set_affinity(Pid::from_raw(0), list).context("process.execCPUAffinity.initial")
}

/// Applies `execCPUAffinity.final` to the calling process, if set.
pub fn set_final_cpu_affinity(process: &Process) -> Result<()> {
    let list = process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.cpu_affinity_final().as_deref());
    set_affinity(Pid::from_raw(0), list).context("process.execCPUAffinity.final")
}

fn set_affinity(pid: Pid, list: Option<&str>) -> Result<()> {
    let Some(list) = list else { return Ok(()) };
    let cpus = parse_cpu_list(list).map_err(anyhow::Error::msg)?;
    sched_setaffinity(pid, &cpus).with_context(|| format!("sched_setaffinity {list}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &str) -> Vec<usize> {
        let cpus = parse_cpu_list(list).unwrap();
        (0..CpuSet::count())
            .filter(|&cpu| cpus.is_set(cpu).unwrap())
            .collect()
    }

    #[test]
    fn parses_single_cpus_and_ranges() {
        assert_eq!(members("0"), [0]);
        assert_eq!(members("0-2,5,7-8"), [0, 1, 2, 5, 7, 8]);
    }

    #[test]
    fn rejects_malformed_lists() {
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("3-1").unwrap_err().contains("reversed"));
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("1,,2").is_err());
        assert!(parse_cpu_list("100000").unwrap_err().contains("beyond"));
    }
}
