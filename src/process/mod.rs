//! Turns the calling process — a root process with every capability, already inside the
//! container's namespaces and root — into the one `process` describes, then execs it.
//!
//! The init (and the child of `berth exec`) calls, in this order:
//! 1. [`prepare`]: rlimits, oomScoreAdj, scheduler, ioPriority, personality, umask, cwd, the
//!    AppArmor profile and SELinux label for the execve, supplementary groups; then it resolves
//!    what the later steps need: the capability sets, HOME and the program (a missing one fails
//!    `create`, as in runc).
//! 2. [`mark_fds_cloexec`].
//! 3. seccomp, if `noNewPrivileges` is false (loading a filter then needs CAP_SYS_ADMIN).
//! 4. [`Prepared::assume_identity`]: bounding set, gid/uid, capability sets, no_new_privs.
//! 5. block on `start`, [`set_final_cpu_affinity`], seccomp if `noNewPrivileges` is true, the
//!    startContainer hooks (under the filter, as in runc), then [`Prepared::exec`].
//!
//! From step 3 on, a filter written for the container's program (and for runc) may be in force:
//! only the calls runc makes there follow — prctl, setresgid, setresuid, capset, the start
//! handshake, the startContainer hooks (forked, see `sys::spawn_with_fork`), execve. Nothing
//! opens a file, and nothing newer than the oldest profiles still in use is called (openat2,
//! close_range, faccessat2, clone3): a profile that names even newer syscalls answers those
//! with its default action (EPERM), not with the ENOSYS a fallback would expect.

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
use std::os::fd::RawFd;

use anyhow::{Result, anyhow};
use oci_spec::runtime::{LinuxPersonality, Process, User};

pub use affinity::{set_final_cpu_affinity, set_initial_cpu_affinity};
use exec::ExecPlan;
pub use exec_options::{ExecOptions, exec_process};
pub use limits::clone_with_oom_score_adj;
pub use validate::validate;

/// The settings that need root and all capabilities, then everything the steps after the
/// seccomp filter need resolved. Rlimits come first: raising a hard limit needs
/// CAP_SYS_RESOURCE in the effective set, which the identity switch takes away.
pub fn prepare(process: &Process, personality: Option<&LinuxPersonality>) -> Result<Prepared> {
    limits::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
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
    crate::lsm::set_exec_labels(process)?;
    // Already here, not with gid and uid: telling a user namespace that denies setgroups from
    // a real failure reads /proc.
    identity::set_supplementary_groups(process.user())?;
    let capabilities = process
        .capabilities()
        .as_ref()
        .map(identity::plan_capabilities)
        .transpose()?;
    Ok(Prepared {
        user: process.user().clone(),
        capabilities,
        no_new_privileges: process.no_new_privileges() == Some(true),
        program: exec::prepare_exec(process)?,
    })
}

/// What [`prepare`] resolved: the identity to assume and the program to exec.
#[derive(Debug)]
pub struct Prepared {
    user: User,
    capabilities: Option<identity::CapabilityPlan>,
    no_new_privileges: bool,
    program: ExecPlan,
}

impl Prepared {
    /// Bounding set, gid, uid and capabilities, then no_new_privs. Without
    /// `process.capabilities` the capability sets are left as they are (runc's behaviour).
    pub fn assume_identity(&self) -> Result<()> {
        if let Some(plan) = &self.capabilities {
            identity::limit_bounding_set(plan)?;
        }
        identity::switch_user(&self.user, self.capabilities.is_some())?;
        if let Some(plan) = &self.capabilities {
            identity::set_capabilities(plan)?;
        }
        if self.no_new_privileges {
            identity::set_no_new_privileges()?;
        }
        Ok(())
    }

    /// execve; returns only on failure.
    pub fn exec(self) -> Result<Infallible> {
        self.program.exec()
    }
}

/// Marks every fd from `first` up close-on-exec (stdio and the preserved fds
/// 3..3+LISTEN_FDS+preserve-fds stay open). Runtime fds still needed before execve keep working.
/// Call it before the seccomp filter may be loaded (close_range is newer than many profiles);
/// every fd berth opens after it is close-on-exec from the start.
pub fn mark_fds_cloexec(first: RawFd) -> Result<()> {
    crate::sys::cloexec_from(first)
        .map_err(|errno| anyhow!("close_range({first}, CLOEXEC): {}", errno.desc()))
}

#[cfg(test)]
mod root_tests;
