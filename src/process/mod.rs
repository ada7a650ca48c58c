//! Turns the calling process — a root process with every capability, already inside the
//! container's namespaces and root — into the one `process` describes, then execs it.
//!
//! Order, as the init (and the child of `berth exec`) must call it:
//! 1. [`validate`] (+ [`validate_personality`]) in the parent, at bundle load: nothing created yet.
//! 2. [`set_initial_cpu_affinity`] from the parent on the child's pid, before it joins the cgroup.
//! 3. [`apply`] in the child: rlimits, oomScoreAdj, scheduler, ioPriority, umask, cwd (the
//!    settings that need root), then bounding set, groups/gid/uid, capability sets,
//!    no_new_privs. [`set_personality`] anywhere before execve.
//!    Seccomp is not here: with `noNewPrivileges` false the filter must be loaded while
//!    CAP_SYS_ADMIN is still held (runc loads it before the identity switch); see `apply`.
//! 4. [`prepare_exec`] before blocking on `start` (a missing program fails `create`, as in
//!    runc), then close-on-exec for fds past the preserved ones, [`set_final_cpu_affinity`]
//!    after joining the cgroup, seccomp (when `noNewPrivileges` is true), [`ExecPlan::exec`].

mod affinity;
pub mod console;
mod cwd;
mod exec;
mod exec_options;
mod identity;
mod limits;
mod sys;
mod validate;

use std::convert::Infallible;

use anyhow::Result;
use oci_spec::runtime::{LinuxPersonality, Process};

#[allow(unused_imports)] // TODO(lead): call around the cgroup join (see the module docs).
pub use affinity::{set_final_cpu_affinity, set_initial_cpu_affinity};
#[allow(unused_imports)] // TODO(lead): prepare before blocking on `start`, exec after it.
pub use exec::{ExecPlan, prepare_exec};
pub use exec_options::{ExecOptions, exec_process};
#[allow(unused_imports)] // TODO(lead): validate_personality at bundle load.
pub use validate::{validate, validate_personality};

/// Everything but seccomp and execve, in the documented order: first what needs root and all
/// capabilities, then the identity. Rlimits come first because raising a hard limit needs
/// CAP_SYS_RESOURCE in the effective set, which the identity switch takes away.
/// `validate` runs first again: `berth exec` and a parent that skipped it must not get a
/// half-applied process from a bad config.
pub fn apply(process: &Process) -> Result<()> {
    validate(process)?;
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
    limits::set_umask(process.user().umask());
    // As root, like runc's first chdir: the final user may lack search permission on the path
    // to cwd but still be meant to work in it.
    cwd::enter(process.cwd())?;
    assume_identity(process)
}

/// Groups, gid, uid and capabilities, then no_new_privs. Without `process.capabilities` the
/// capability sets are left as they are (runc's behaviour).
fn assume_identity(process: &Process) -> Result<()> {
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

/// `linux.personality`: sets the execution domain (LINUX or LINUX32) for the process to be.
#[allow(dead_code)] // TODO(lead): call in the init and the exec child when the spec has it.
pub fn set_personality(personality: &LinuxPersonality) -> Result<()> {
    limits::set_personality(personality)
}

/// Looks the program up and execs it; returns only on failure.
pub fn exec(process: &Process) -> Result<Infallible> {
    prepare_exec(process)?.exec()
}

#[cfg(test)]
mod root_tests;
