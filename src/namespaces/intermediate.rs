//! The init of a container that joins namespaces the runtime itself may not enter around
//! its clone: a short-lived intermediate process enters them and clones the init from there
//! (runc's nsexec does the same in its stage 1). With CLONE_PARENT the init is the runtime's
//! child all the same: `run` waits for it and a failed `create` reaps it. The intermediate
//! hands the init's pidfd over and exits. Two cases:
//! - a user namespace joined by path while the container gets new namespaces too (a pod's
//!   user namespace, podman's `--userns=ns:`): new namespaces belong to the user namespace
//!   of the process that creates them, so they must not come from the runtime, in the host's;
//! - a pid namespace joined by a runtime that could not enter its own again afterwards (see
//!   `may_return_to_own_pid_namespace`).
//!
//! Only these cases pay for the extra process; every other container is cloned by the
//! runtime directly.

use std::os::fd::{AsFd, BorrowedFd};

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;

use crate::sync::{Channel, Message};
use crate::sys::{self, Forked};

/// Clones the init with `flags` inside `pid_namespace` and `user_namespace` (those joined)
/// and in `cgroup`, through an intermediate process: returns like `sys::clone3`,
/// `Forked::Child` in the init. Whatever fails, no intermediate is left, and no init.
pub fn clone_init_inside(
    user_namespace: Option<BorrowedFd>,
    pid_namespace: Option<BorrowedFd>,
    flags: CloneFlags,
    cgroup: Option<BorrowedFd>,
) -> Result<Forked> {
    let (runtime_end, intermediate_end) = Channel::pair()?;
    // In the cgroup from the start, so the init never runs outside it either.
    let forked = sys::clone3(0, cgroup).context("starting the intermediate process")?;
    let (pid, pidfd) = match forked {
        Forked::Child => {
            drop(runtime_end);
            let joining = Joining {
                pid: pid_namespace,
                user: user_namespace,
            };
            return Ok(run_intermediate(intermediate_end, joining, flags));
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(intermediate_end);
    let init = receive_init(&runtime_end);
    if init.is_err() {
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGKILL);
    }
    // It has reported, failed or been killed: it exits now either way.
    let _ = waitpid(pid, None);
    init
}

/// In the intermediate: returns `Forked::Child` in the init; the intermediate
/// itself reports to the runtime and exits here.
fn run_intermediate(channel: Channel, joining: Joining, flags: CloneFlags) -> Forked {
    match clone_from_inside(joining, flags) {
        Ok(Forked::Child) => {
            // The init holds no end of this channel: the runtime must see EOF
            // when the intermediate dies.
            drop(channel);
            Forked::Child
        }
        Ok(Forked::Parent { pidfd, .. }) => {
            if channel
                .send_with_fd(&Message::InitCloned, pidfd.as_fd())
                .is_ok()
            {
                sys::exit_now(0)
            }
            // The runtime cannot learn of this init: it must not live on.
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGKILL);
            sys::exit_now(1)
        }
        Err(err) => {
            let _ = channel.send(&Message::Failed(format!("{err:#}")));
            sys::exit_now(1)
        }
    }
}

/// The namespaces the intermediate enters before it clones the init.
struct Joining<'a> {
    pid: Option<BorrowedFd<'a>>,
    user: Option<BorrowedFd<'a>>,
}

fn clone_from_inside(joining: Joining, flags: CloneFlags) -> Result<Forked> {
    // A runtime killed mid-create must not leave it behind.
    sys::set_parent_death_signal(Some(Signal::SIGKILL)).context("prctl(PR_SET_PDEATHSIG)")?;
    // Like the init: the container's processes share this user namespace.
    sys::set_non_dumpable().context("prctl(PR_SET_DUMPABLE)")?;
    // The pid namespace first, with the runtime's privilege over the namespaces it owns.
    if let Some(pid) = joining.pid {
        setns(pid, CloneFlags::CLONE_NEWPID)
            .context("setns into the pid namespace (linux.namespaces)")?;
    }
    if let Some(user) = joining.user {
        setns(user, CloneFlags::CLONE_NEWUSER)
            .context("setns into the user namespace (linux.namespaces)")?;
    }
    sys::clone3((flags | CloneFlags::CLONE_PARENT).bits(), None)
        .context("clone3 of the container init inside the joined namespaces")
}

/// The init's pid (as the runtime numbers it) and pidfd, from the
/// intermediate's report.
fn receive_init(channel: &Channel) -> Result<Forked> {
    let pidfd = match channel.recv_with_fd()? {
        Some((Message::InitCloned, Some(pidfd))) => pidfd,
        Some((Message::Failed(reason), _)) => bail!("{reason}"),
        Some((other, _)) => bail!("the intermediate process sent {other:?}, expected InitCloned"),
        None => bail!("the intermediate process exited before it cloned the container init"),
    };
    match sys::pid_of_pidfd(pidfd.as_fd()) {
        Ok(pid) => Ok(Forked::Parent { pid, pidfd }),
        Err(err) => {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGKILL);
            Err(err).context("the container init's pid, from its pidfd")
        }
    }
}
