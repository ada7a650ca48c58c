//! `kill`: send a signal to the container's init (or, with --all, to every
//! process of the container).

use std::os::fd::AsFd;

use anyhow::{Context, Result, bail};

use super::state::{StateRoot, Status};
use super::{Container, NotRunning, thaw_after_sigkill};
use crate::sys::{self, SignalNumber};

pub fn kill(root: &StateRoot, id: &str, signal: SignalNumber, all: bool) -> Result<()> {
    let container = Container::load(root, id)?;
    let status = container.status();
    if !status.can_kill(all) {
        return Err(NotRunning(id.to_string()).into());
    }
    let cgroup = container.state.cgroup_manager()?;
    if all {
        match &cgroup {
            Some(cgroup) => cgroup.kill_all(signal)?,
            None if status == Status::Stopped => {}
            None => bail!("{id}: the container has no cgroup"),
        }
    } else {
        let pidfd = container.init_pidfd()?;
        sys::pidfd_send_signal(pidfd.as_fd(), signal)
            .with_context(|| format!("sending {signal} to the container's init"))?;
    }
    match cgroup {
        Some(cgroup) if signal == SignalNumber::KILL => thaw_after_sigkill(cgroup.as_ref()),
        _ => Ok(()),
    }
}
