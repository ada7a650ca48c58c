//! When the filter goes on, relative to the rest of process setup (runc's
//! order): as late as possible, so the runtime's own syscalls are not
//! filtered, but
//! - without no_new_privs only CAP_SYS_ADMIN allows loading it: before the
//!   identity switch drops that;
//! - with SCMP_ACT_NOTIFY the notify fd must reach the agent through the
//!   parent: while the parent still listens (before Ready / execve).

use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxSeccomp, Process};
use serde_json::Value;

use super::{Filter, send_notify_fd};
use crate::sync::{Channel, Message};

/// A compiled filter waiting for its moment.
pub struct PendingFilter {
    filter: Option<Filter>,
    no_new_privileges: bool,
}

impl PendingFilter {
    pub fn new(filter: Option<Filter>, process: &Process) -> PendingFilter {
        let no_new_privileges = process.no_new_privileges().unwrap_or(false);
        PendingFilter {
            filter,
            no_new_privileges,
        }
    }

    /// Call just before the identity switch.
    pub fn before_identity(&mut self, channel: &Channel) -> Result<()> {
        if !self.no_new_privileges {
            self.load(channel)?;
        }
        Ok(())
    }

    /// Call after the identity switch, while the parent still listens.
    pub fn after_identity(&mut self, channel: &Channel) -> Result<()> {
        if self.filter.as_ref().is_some_and(Filter::needs_notify) {
            self.load(channel)?;
        }
        Ok(())
    }

    /// Call once the process is to run: before the startContainer hooks, which runc runs under
    /// the filter, and execve.
    pub fn before_exec(&mut self, channel: &Channel) -> Result<()> {
        self.load(channel)
    }

    fn load(&mut self, channel: &Channel) -> Result<()> {
        let Some(filter) = self.filter.take() else {
            return Ok(());
        };
        if let Some(notify_fd) = filter.load()? {
            channel.send_with_fd(&Message::SeccompNotify, notify_fd.as_fd())?;
            channel.expect(Message::SeccompNotifyDone, "the runtime")?;
        }
        Ok(())
    }
}

/// The parent's side of `SeccompNotify`: pass the fd on to the agent at
/// `listenerPath`, then let the child go on.
pub fn forward_notify_fd(
    channel: &Channel,
    notify_fd: Option<OwnedFd>,
    seccomp: Option<&LinuxSeccomp>,
    pid: i32,
    state: &Value,
) -> Result<()> {
    let notify_fd = notify_fd.context("SeccompNotify came without an fd")?;
    let Some(listener) = seccomp.and_then(|s| s.listener_path().as_ref()) else {
        bail!("linux.seccomp.listenerPath: required with SCMP_ACT_NOTIFY");
    };
    let metadata = seccomp.and_then(|s| s.listener_metadata().as_deref());
    send_notify_fd(listener, notify_fd.as_fd(), pid, state, metadata)?;
    channel.send(&Message::SeccompNotifyDone)
}
