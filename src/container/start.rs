//! `start`: release a created init to exec the user's process, wait until it
//! did, then run the poststart hooks.

use std::io::Read;
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::create::socket_path;
use super::notify;
use super::state::{Phase, START_SOCKET, StateRoot, Status};
use super::{Container, wait_until_killed};
use crate::sync::{self, Message};
use crate::{hooks, sys, trace};

pub fn start(root: &StateRoot, id: &str) -> Result<()> {
    let container = trace::timed("load the container", || Container::load(root, id))?;
    start_container(container)
}

/// `start` of a container already loaded (and locked): `run` has it from `create`.
pub(super) fn start_container(mut container: Container) -> Result<()> {
    let status = container.status();
    if !status.can_start() {
        let id = &container.state.id;
        // runc's words.
        match status {
            Status::Stopped => bail!("{id}: cannot start a container that has stopped"),
            Status::Running => bail!("{id}: cannot start an already running container"),
            other => bail!(
                "{id}: cannot start a container in the {} state",
                other.name()
            ),
        }
    }
    let relay = notify::listen(&container.dir)?;
    let socket = socket_path(&container.dir, START_SOCKET)?;
    let mut connection = trace::timed("connect to the init", || {
        UnixStream::connect(&socket.path)
            .context("connecting to the container's init (did it die?)")
    })?;
    sync::write_line(&mut connection, &Message::Start)?;
    // From here on the container counts as started, whatever happens next.
    let saving = trace::span("state.json: started");
    std::fs::remove_file(container.dir.join(START_SOCKET)).context("removing the start socket")?;
    container.state.phase = Phase::Started;
    container.save()?;
    drop(saving);

    let mut reply = String::new();
    trace::timed("wait for the init: startContainer hooks, execve", || {
        connection.read_to_string(&mut reply)
    })
    .context("waiting for the container's process to start")?;
    for message in sync::read_lines(&reply) {
        match message {
            Message::Trace(records) => trace::absorb(records),
            Message::Failed(reason) => bail!("{reason}"),
            other => bail!("the container's init sent {other:?}"),
        }
    }
    trace::timed("poststart hooks", || run_poststart(&container))?;
    match (relay, container.state.init) {
        (Some(relay), Some(init)) => relay.relay_ready(init),
        _ => Ok(()),
    }
}

/// runtime-spec 1.3: a failing poststart hook stops the container and the
/// start fails.
fn run_poststart(container: &Container) -> Result<()> {
    let hooks = container.state.config.hooks().as_ref();
    let Some(poststart) = hooks.and_then(|h| h.poststart().as_ref()) else {
        return Ok(());
    };
    let json = container.hook_state_json(Status::Running)?;
    if let Err(err) = hooks::run_all("poststart", Some(poststart), &json) {
        if let Ok(pidfd) = container.init_pidfd() {
            let _ = sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(&pidfd), Signal::SIGKILL);
            let _ = wait_until_killed(&pidfd);
        }
        return Err(err);
    }
    Ok(())
}
