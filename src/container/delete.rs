//! `delete`: remove a stopped container; with --force, stop it first. The
//! only operation that must work whatever state the container was left in,
//! including by a runtime killed in the middle of `create`.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::state::{StateRoot, Status};
use super::{Container, NotFound, thaw_after_sigkill, wait_until_killed};
use crate::sys::SignalNumber;
use crate::{hooks, sys, trace};

pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<()> {
    let container = match trace::timed("load the container", || Container::load(root, id)) {
        Ok(container) => container,
        // containerd deletes with --force whatever it last knew of.
        Err(err) if force && err.is::<NotFound>() => return Ok(()),
        // A create killed before it wrote its first state leaves a bare directory.
        Err(_) if force => return remove_state_dir(&root.container_dir(id)?),
        Err(err) => return Err(err),
    };
    let status = container.status();
    if !status.can_delete() {
        if !force {
            // runc's words.
            bail!(
                "cannot delete container {id} that is not stopped: {}",
                status.name()
            );
        }
        trace::timed("stop: SIGKILL, wait for the exit", || stop(&container))?;
    }
    destroy(container)
}

/// SIGKILL the init (and a creator that is still at work), thaw a paused container so that the
/// signal is delivered, and wait until they are gone.
fn stop(container: &Container) -> Result<()> {
    let living: Vec<(i32, OwnedFd)> = [container.state.creator, container.state.init]
        .into_iter()
        .flatten()
        .filter_map(|process| {
            let pidfd = sys::pidfd_open(process.pid()).ok()?;
            // Checked after opening: the pidfd then refers to this very process.
            process.is_alive().then_some((process.pid, pidfd))
        })
        .collect();
    for (pid, pidfd) in &living {
        sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGKILL)
            .with_context(|| format!("killing process {pid}"))?;
    }
    if let Some(cgroup) = container.state.cgroup_manager()? {
        thaw_after_sigkill(cgroup.as_ref())?;
    }
    for (pid, pidfd) in &living {
        wait_until_killed(pidfd).with_context(|| format!("process {pid}"))?;
    }
    Ok(())
}

fn destroy(container: Container) -> Result<()> {
    if let Some(cgroup) = container.state.cgroup_manager()? {
        let _span = trace::span("cgroup: kill what is left, remove");
        // Without a pid namespace of its own the container's processes do not
        // die with its init; its cgroup still holds every one of them.
        cgroup.kill_all(SignalNumber::KILL)?;
        thaw_after_sigkill(cgroup.as_ref())?;
        cgroup.remove()?;
    }
    if let Some(group) = &container.state.intel_rdt {
        group.remove()?;
    }
    if let Some(base) = &container.state.shared_rootfs {
        base.release(&container.state.rootfs)?;
    }
    let hooks = container.state.config.hooks().as_ref();
    if let Some(poststop) = hooks.and_then(|h| h.poststop().as_ref()) {
        let _span = trace::span("poststop hooks");
        let json = container.hook_state_json(Status::Stopped)?;
        hooks::run_all_warning_on_failure("poststop", Some(poststop), &json);
    }
    trace::timed("remove the state directory", || {
        remove_state_dir(&container.dir)
    })
}

fn remove_state_dir(dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}
