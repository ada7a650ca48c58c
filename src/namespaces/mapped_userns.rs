//! A user namespace that exists only to carry id mappings, for `MOUNT_ATTR_IDMAP`.
//!
//! A process cannot create a user namespace and stay outside it, so a short-lived child is
//! cloned into a new one; the parent (root in its own user namespace) writes the maps, keeps
//! the namespace by an fd, then kills and reaps the child. The fd alone keeps the namespace.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::{Pid, getpid, getppid};

use super::IdMaps;
use crate::sys::{self, Forked};

/// A new user namespace with `maps` (of the config.json object `owner`). No process is left
/// in it when this returns, whether it succeeds or not.
pub fn user_namespace_with(maps: &IdMaps, owner: &str) -> Result<OwnedFd> {
    let parent = getpid();
    let holder = match sys::clone3(libc::CLONE_NEWUSER, None)
        .with_context(|| format!("{owner}: clone3(CLONE_NEWUSER) for the mount's mappings"))?
    {
        Forked::Child => hold_until_killed(parent),
        Forked::Parent { pid, pidfd } => Holder { pid, pidfd },
    };
    maps.write(holder.pid, owner)?;
    let path = format!("/proc/{}/ns/user", holder.pid);
    let namespace = File::open(&path).with_context(|| format!("{owner}: opening {path}"))?;
    Ok(namespace.into())
}

/// The child's whole life: it only has to exist while the parent sets the namespace up.
fn hold_until_killed(parent: Pid) -> ! {
    // If the parent died before the death signal was armed, nobody would ever kill us.
    if sys::set_parent_death_signal(Some(Signal::SIGKILL)).is_err() || getppid() != parent {
        sys::exit_now(1);
    }
    loop {
        nix::unistd::pause();
    }
}

/// The child holding the namespace; killed and reaped on drop.
struct Holder {
    pid: Pid,
    pidfd: OwnedFd,
}

impl Drop for Holder {
    fn drop(&mut self) {
        sys::kill_and_reap(self.pid, self.pidfd.as_fd());
    }
}
