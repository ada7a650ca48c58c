//! The cgroup-backed commands: `pause`, `resume`, `update`, `events`.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::state::{State, StateRoot, Status};
use super::{Container, NotRunning};
use crate::cgroups::{self, CgroupManager, Event, UpdateArgs};
use crate::intelrdt::{self, RdtUpdateArgs};

fn cgroup_of(state: &State) -> Result<Box<dyn CgroupManager>> {
    state
        .cgroup_manager()?
        .context("the container has no cgroup")
}

pub fn pause(root: &StateRoot, id: &str) -> Result<()> {
    let container = Container::load(root, id)?;
    let status = container.status();
    if !status.can_pause() {
        return Err(NotRunning(id.to_string()).into());
    }
    cgroup_of(&container.state)?.freeze()
}

pub fn resume(root: &StateRoot, id: &str) -> Result<()> {
    let container = Container::load(root, id)?;
    let status = container.status();
    if !status.can_resume() {
        // runc's words.
        bail!("{id}: container not paused");
    }
    cgroup_of(&container.state)?.thaw()
}

/// Applies new limits; the config kept in the state records them, so that
/// later commands see the container as it now is.
pub fn update(
    root: &StateRoot,
    id: &str,
    args: &UpdateArgs,
    rdt_args: &RdtUpdateArgs,
) -> Result<()> {
    let mut container = Container::load(root, id)?;
    let status = container.status();
    if status == Status::Stopped {
        return Err(NotRunning(id.to_string()).into());
    }
    let resources = args.resources(&mut std::io::stdin().lock())?;
    let state = &mut container.state;
    let recorded_rdt = (state.config.linux().as_ref()).and_then(|l| l.intel_rdt().as_ref());
    let rdt_update = intelrdt::prepare_update(recorded_rdt, state.intel_rdt.as_ref(), rdt_args)?;
    cgroup_of(state)?.update(&resources)?;
    let rdt_config = rdt_update.map(|update| update.apply()).transpose()?;
    if let Some(linux) = state.config.linux_mut() {
        let recorded = linux.resources().clone().unwrap_or_default();
        linux.set_resources(Some(cgroups::updated_record(&recorded, &resources)));
        if rdt_config.is_some() {
            linux.set_intel_rdt(rdt_config);
        }
    }
    container.save()
}

/// runc's event stream: with `stats_once`, one stats event; otherwise a
/// stats event every `interval` and an `oom` event whenever the container
/// runs out of memory, until it stops.
pub fn events(root: &StateRoot, id: &str, interval: Duration, stats_once: bool) -> Result<()> {
    let dir = root.container_dir(id)?;
    let state = State::load(&dir).map_err(|_| super::NotFound(id.to_string()))?;
    if state.status(&dir) == Status::Stopped {
        // runc's words.
        bail!("container with id {id} is not running");
    }
    let cgroup = cgroup_of(&state)?;
    let mut out = std::io::stdout().lock();
    let mut emit = |event: Event| -> Result<()> {
        writeln!(out, "{}", serde_json::to_string(&event)?)?;
        out.flush().context("writing an event")
    };
    if stats_once {
        return emit(Event::stats(id, cgroup.stats()?));
    }
    let mut oom = cgroup.watch_oom()?;
    let mut next_stats = Instant::now() + interval;
    while state.status(&dir) != Status::Stopped {
        // On its own clock: a burst of OOM notifications (v1 sends one per failed charge)
        // must not hold the stats back.
        let now = Instant::now();
        if now >= next_stats {
            emit(Event::stats(id, cgroup.stats()?))?;
            next_stats = now + interval;
            continue;
        }
        let wait = (next_stats - now).max(Duration::from_millis(1));
        let mut fds = [PollFd::new(oom.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX),
        ) {
            Err(nix::errno::Errno::EINTR) | Ok(0) => continue,
            Err(e) => return Err(e).context("waiting for events"),
            Ok(_) => match oom.read()? {
                Some(0) => {}
                Some(_) => emit(Event::oom(id))?,
                None => break, // the cgroup is gone
            },
        }
    }
    Ok(())
}
