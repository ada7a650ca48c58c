//! The parent ↔ child protocol of `create` and `exec`.
//!
//! ```text
//!   parent (berth create)                      child (container init)
//!   clone3 ─────────────────────────────────▶  waits for Go
//!   joins cgroup (v1), writes id maps
//!   Go{host_pid} ───────────────────────────▶  namespaces, mounts, devices
//!                ◀─────────────────────────── RunHooks
//!   prestart + createRuntime hooks
//!   HooksDone ──────────────────────────────▶  createContainer hooks, pivot_root,
//!                                              console, masks, process identity
//!                ◀─────────────────────────── Ready   (now blocked in accept())
//!   pid file, state "created", exit
//! ```
//! Either side may send `Failed` instead of its next message; a closed socket
//! means the peer died. `exec` uses the same channel: Go, then the child's
//! end closes on execve (it is close-on-exec) or carries `Failed`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result, bail};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub enum Message {
    /// The child is in its cgroup and may proceed; `host_pid` is its pid as the
    /// host sees it, which hooks receive in the state JSON.
    Go {
        host_pid: i32,
    },
    RunHooks,
    HooksDone,
    Ready,
    Failed(String),
}

/// One end of a SOCK_SEQPACKET pair: message boundaries are kept, and the
/// close-on-exec end doubles as an "execve happened" signal.
pub struct Channel(OwnedFd);

impl Channel {
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .context("socketpair for the parent/child channel")?;
        Ok((Channel(a), Channel(b)))
    }

    pub fn send(&self, message: &Message) -> Result<()> {
        let bytes = serde_json::to_vec(message)?;
        socket::send(self.0.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL)
            .with_context(|| format!("sending {message:?} to the other side"))?;
        Ok(())
    }

    /// The next message, or `None` when the peer closed its end (it exited,
    /// or, for `exec`, it called execve).
    pub fn recv(&self) -> Result<Option<Message>> {
        let mut buf = vec![0u8; 64 * 1024];
        let len = loop {
            match socket::recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other.context("receiving from the other side")?,
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let message = serde_json::from_slice(&buf[..len]).context("malformed sync message")?;
        Ok(Some(message))
    }

    /// Waits for `Go` and returns the pid it carries.
    pub fn expect_go(&self) -> Result<i32> {
        match self.recv()? {
            Some(Message::Go { host_pid }) => Ok(host_pid),
            Some(Message::Failed(reason)) => bail!("{reason}"),
            other => bail!("the runtime sent {other:?}, expected Go"),
        }
    }

    /// Waits for `expected`; a `Failed` from the peer becomes our error.
    pub fn expect(&self, expected: Message, peer: &str) -> Result<()> {
        match self.recv()? {
            Some(m) if m == expected => Ok(()),
            Some(Message::Failed(reason)) => bail!("{reason}"),
            Some(other) => bail!("{peer} sent {other:?}, expected {expected:?}"),
            None => bail!("{peer} exited before sending {expected:?}"),
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
