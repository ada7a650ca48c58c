//! `kill`: send a signal to the container's init (or, with --all, to every
//! process of the container).

use std::os::fd::AsFd;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::state::{StateRoot, Status};
use super::{Container, NotRunning, thaw_after_sigkill};
use crate::sys;

pub fn kill(root: &StateRoot, id: &str, signal: Signal, all: bool) -> Result<()> {
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
        Some(cgroup) if signal == Signal::SIGKILL => thaw_after_sigkill(cgroup.as_ref()),
        _ => Ok(()),
    }
}

/// runc's forms: `9`, `KILL`, `SIGKILL` (any case).
pub fn parse_signal(text: &str) -> Result<Signal> {
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).with_context(|| format!("unknown signal {text:?}"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).with_context(|| format!("unknown signal {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_in_every_runc_form() {
        for text in ["9", "KILL", "kill", "SIGKILL", "sigkill"] {
            assert_eq!(parse_signal(text).unwrap(), Signal::SIGKILL, "{text}");
        }
        assert_eq!(parse_signal("15").unwrap(), Signal::SIGTERM);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
