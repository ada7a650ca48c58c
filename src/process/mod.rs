//! Turns the calling process — a root process with every capability, already inside the
//! container's namespaces and root — into the one `process` describes, then execs it.
//!
//! The init (and the child of `berth exec`) calls, in this order:
//! 1. [`prepare`]: rlimits, oomScoreAdj, scheduler, ioPriority, personality, umask, cwd, and the
//!    AppArmor profile and SELinux label for the execve.
//! 2. seccomp, if `noNewPrivileges` is false (loading a filter then needs CAP_SYS_ADMIN).
//! 3. [`assume_identity`]: bounding set, groups/gid/uid, capability sets, no_new_privs.
//! 4. [`prepare_exec`]: look the program up (a missing one fails `create`, as in runc).
//! 5. [`mark_fds_cloexec`], block on `start`, [`set_final_cpu_affinity`], seccomp if
//!    `noNewPrivileges` is true, then [`ExecPlan::exec`].

mod affinity;
pub mod console;
mod cwd;
mod exec;
mod exec_options;
mod identity;
mod limits;
mod sys;
mod validate;

use std::os::fd::RawFd;

use anyhow::{Result, anyhow};
use oci_spec::runtime::{LinuxPersonality, Process};

pub use affinity::{set_final_cpu_affinity, set_initial_cpu_affinity};
pub use exec::{ExecPlan, prepare_exec};
pub use exec_options::{ExecOptions, exec_process};
pub use validate::validate;

/// The settings that need root and all capabilities. Rlimits come first: raising a hard limit
/// needs CAP_SYS_RESOURCE in the effective set, which the identity switch takes away.
pub fn prepare(process: &Process, personality: Option<&LinuxPersonality>) -> Result<()> {
    limits::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    if let Some(adj) = process.oom_score_adj() {
        limits::set_oom_score_adj(adj)?;
    }
    if let Some(scheduler) = process.scheduler() {
        limits::set_scheduler(scheduler)?;
    }
    if let Some(io_priority) = process.io_priority() {
        limits::set_io_priority(io_priority)?;
    }
    if let Some(personality) = personality {
        limits::set_personality(personality)?;
    }
    limits::set_umask(process.user().umask());
    // As root, like runc's first chdir: the final user may lack search permission on the path
    // to cwd but still be meant to work in it.
    cwd::enter(process.cwd())?;
    crate::lsm::set_exec_labels(process)
}

/// Groups, gid, uid and capabilities, then no_new_privs. Without `process.capabilities` the
/// capability sets are left as they are (runc's behaviour).
pub fn assume_identity(process: &Process) -> Result<()> {
    let plan = process
        .capabilities()
        .as_ref()
        .map(identity::plan_capabilities)
        .transpose()?;
    if let Some(plan) = &plan {
        identity::limit_bounding_set(plan)?;
    }
    identity::switch_user(process.user(), plan.is_some())?;
    if let Some(plan) = &plan {
        identity::set_capabilities(plan)?;
    }
    if process.no_new_privileges() == Some(true) {
        identity::set_no_new_privileges()?;
    }
    Ok(())
}

/// Marks every fd from `first` up close-on-exec (stdio and the preserved fds
/// 3..3+LISTEN_FDS+preserve-fds stay open). Runtime fds still needed before execve keep working.
pub fn mark_fds_cloexec(first: RawFd) -> Result<()> {
    crate::sys::cloexec_from(first)
        .map_err(|errno| anyhow!("close_range({first}, CLOEXEC): {}", errno.desc()))
}

#[cfg(test)]
mod root_tests;
