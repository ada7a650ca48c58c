//! `run`: create + start, then (unless detached) stay in the foreground as the
//! container's parent: forward signals, proxy the terminal, exit with its code.

use std::path::PathBuf;

use anyhow::Result;

use super::create::{ConsoleTarget, CreateOptions, create};
use super::foreground::{self, receive_pty_master};
use super::start::start_container;
use super::state::StateRoot;
use super::{Container, delete};
use crate::{sys, trace};

pub struct RunOptions {
    pub create: CreateOptions,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub keep: bool,
    pub no_subreaper: bool,
}

/// Returns the exit code berth itself should exit with.
pub fn run(root: &StateRoot, options: &RunOptions) -> Result<i32> {
    let id = &options.create.id;
    let console = match (&options.console_socket, options.detach) {
        (Some(path), _) => ConsoleTarget::Socket(path.clone()),
        (None, false) => ConsoleTarget::Proxy,
        (None, true) => ConsoleTarget::None,
    };
    // Before the clone, so that not even an instant exit is missed.
    let signals = (!options.detach)
        .then(foreground::block_signals)
        .transpose()?;
    if !options.detach && !options.no_subreaper {
        sys::set_child_subreaper()?;
    }
    let created = trace::timed("create", || create(root, &options.create, console))?;
    let pty = created
        .console_receiver
        .as_ref()
        .map(receive_pty_master)
        .transpose();
    let container = Container::locked(created.dir, created.state);
    let started =
        pty.and_then(|pty| trace::timed("start", || start_container(container?)).map(|()| pty));
    let pty = match started {
        Ok(pty) => pty,
        Err(err) => {
            let _ = delete(root, id, true);
            return Err(err);
        }
    };
    let Some(signals) = signals else {
        return Ok(0);
    };
    let _raw_terminal = pty.as_ref().map(|_| foreground::RawTerminal::enter());
    let code = trace::timed("the container runs", || {
        foreground::wait(created.init, signals, pty)
    })?;
    if !options.keep {
        trace::timed("delete", || delete(root, id, true))?;
    }
    Ok(code)
}
