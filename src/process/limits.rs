//! Per-process kernel settings applied while the caller is still root with every capability:
//! rlimits, oomScoreAdj, scheduler, ioPriority, personality, umask.

use std::fs;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::stat::{Mode, umask};
use oci_spec::runtime::{
    IOPriorityClass, LinuxIOPriority, LinuxPersonality, LinuxPersonalityDomain, LinuxSchedulerFlag,
    LinuxSchedulerPolicy, PosixRlimit, PosixRlimitType, Scheduler,
};

use super::sys::{self, SchedAttr};
use crate::sys::Forked;

/// runc's umask when `process.user.umask` is absent.
const DEFAULT_UMASK: u32 = 0o022;

pub fn set_rlimits(rlimits: &[PosixRlimit]) -> Result<()> {
    for (index, rlimit) in rlimits.iter().enumerate() {
        let kind = rlimit.typ();
        setrlimit(resource(kind), rlimit.soft(), rlimit.hard()).map_err(|errno| {
            let hint = if errno == Errno::EPERM {
                " (raising a hard limit needs CAP_SYS_RESOURCE, which this host withholds)"
            } else {
                ""
            };
            anyhow::anyhow!(
                "process.rlimits[{index}] {kind}: setrlimit: {}{hint}",
                errno.desc()
            )
        })?;
    }
    Ok(())
}

fn resource(kind: PosixRlimitType) -> Resource {
    match kind {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Runs `clone` (of a container's init or exec'd process) with this process's oom_score_adj set
/// to `value`, which the child inherits, and restores the parent's own afterwards. The child
/// cannot always write its own: in a new user namespace, and not dumpable, its /proc/self files
/// belong to the root of the user namespace that owns its memory, the host's when the runtime
/// is root (Docker's userns-remap). runc too sets it before its init enters the namespaces.
pub fn clone_with_oom_score_adj(
    value: Option<i32>,
    clone: impl FnOnce() -> Result<Forked>,
) -> Result<Forked> {
    let Some(previous) = value.map(set_own_oom_score_adj).transpose()?.flatten() else {
        return clone();
    };
    let forked = clone();
    if !matches!(forked, Ok(Forked::Child)) {
        // Back to a value it had: allowed without CAP_SYS_RESOURCE.
        let _ = fs::write(OWN_OOM_SCORE_ADJ, previous);
    }
    forked
}

/// This process's; the runtime's own /proc (it is not in a container yet).
const OWN_OOM_SCORE_ADJ: &str = "/proc/self/oom_score_adj";

/// Sets this process's oom_score_adj to `value`; returns the one it had, or None when it was
/// `value` already (nothing written, nothing to restore).
fn set_own_oom_score_adj(value: i32) -> Result<Option<String>> {
    let current = fs::read_to_string(OWN_OOM_SCORE_ADJ)
        .with_context(|| format!("process.oomScoreAdj: reading {OWN_OOM_SCORE_ADJ}"))?;
    if current.trim() == value.to_string() {
        return Ok(None);
    }
    match fs::write(OWN_OOM_SCORE_ADJ, value.to_string()) {
        Ok(()) => Ok(Some(current)),
        Err(error) if error.raw_os_error() == Some(libc::EACCES) => bail!(
            "process.oomScoreAdj: writing {value} to {OWN_OOM_SCORE_ADJ}: permission denied \
             (lowering it below the current {} needs CAP_SYS_RESOURCE, which this host withholds)",
            current.trim()
        ),
        Err(error) => Err(error).with_context(|| {
            format!("process.oomScoreAdj: writing {value} to {OWN_OOM_SCORE_ADJ}")
        }),
    }
}

pub fn set_scheduler(scheduler: &Scheduler) -> Result<()> {
    sys::sched_setattr(&sched_attr(scheduler))
        .map_err(|errno| anyhow::anyhow!("process.scheduler: sched_setattr: {}", errno.desc()))
}

fn sched_attr(scheduler: &Scheduler) -> SchedAttr {
    let policy = match scheduler.policy() {
        LinuxSchedulerPolicy::SchedOther => libc::SCHED_OTHER,
        LinuxSchedulerPolicy::SchedFifo => libc::SCHED_FIFO,
        LinuxSchedulerPolicy::SchedRr => libc::SCHED_RR,
        LinuxSchedulerPolicy::SchedBatch => libc::SCHED_BATCH,
        // Rejected by validate; the kernel answers EINVAL if it gets here anyway.
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => libc::SCHED_IDLE,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let flags = scheduler.flags().iter().flatten().fold(0, |bits, flag| {
        bits | match flag {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        }
    });
    SchedAttr {
        sched_policy: policy as u32,
        sched_flags: flags,
        sched_nice: scheduler.nice().unwrap_or(0),
        sched_priority: scheduler.priority().unwrap_or(0) as u32,
        sched_runtime: scheduler.runtime().unwrap_or(0),
        sched_deadline: scheduler.deadline().unwrap_or(0),
        sched_period: scheduler.period().unwrap_or(0),
        ..SchedAttr::default()
    }
}

pub fn set_io_priority(io_priority: &LinuxIOPriority) -> Result<()> {
    sys::ioprio_set(ioprio_value(io_priority))
        .map_err(|errno| anyhow::anyhow!("process.ioPriority: ioprio_set: {}", errno.desc()))
}

/// IOPRIO_PRIO_VALUE(class, level) from include/uapi/linux/ioprio.h.
fn ioprio_value(io_priority: &LinuxIOPriority) -> libc::c_int {
    const IOPRIO_CLASS_SHIFT: libc::c_int = 13;
    let class = match io_priority.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    // validate() keeps the level in 0..=7.
    (class << IOPRIO_CLASS_SHIFT) | io_priority.priority() as libc::c_int
}

pub fn set_personality(personality: &LinuxPersonality) -> Result<()> {
    const PER_LINUX: libc::c_ulong = 0x0000;
    const PER_LINUX32: libc::c_ulong = 0x0008;
    let persona = match personality.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    sys::personality(persona)
        .map_err(|errno| anyhow::anyhow!("linux.personality: personality: {}", errno.desc()))
}

pub fn set_umask(configured: Option<u32>) {
    let mask = configured.unwrap_or(DEFAULT_UMASK);
    umask(Mode::from_bits_truncate(mask as libc::mode_t));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scheduler_fields_map_to_sched_attr() {
        let scheduler: Scheduler = serde_json::from_value(json!({
            "policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 20, "period": 30,
            "flags": ["SCHED_RESET_ON_FORK", "SCHED_FLAG_KEEP_POLICY"]
        }))
        .unwrap();
        let attr = sched_attr(&scheduler);
        assert_eq!(attr.sched_policy, 6);
        assert_eq!(attr.sched_flags, 0x09);
        assert_eq!(
            (attr.sched_runtime, attr.sched_deadline, attr.sched_period),
            (10, 20, 30)
        );
    }

    #[test]
    fn io_priority_encodes_class_and_level() {
        let prio: LinuxIOPriority =
            serde_json::from_value(json!({"class": "IOPRIO_CLASS_IDLE", "priority": 7})).unwrap();
        assert_eq!(ioprio_value(&prio), (3 << 13) | 7);
    }
}
