//! `--pidfd-socket` (runc 1.2+): the caller's unix socket receives a pidfd of the container's
//! init (`create`, `run`) or of the exec'd process (`exec`), so that it can signal and wait for
//! that process without racing pid reuse (containerd's shim does).
//!
//! runc's protocol: berth connects (a stream socket) before anything is created, so that a bad
//! path fails early; once the process exists it sends one message whose payload names the kind
//! of process, `standard` for an init and `setns` for an exec'd one, with exactly the pidfd
//! attached by SCM_RIGHTS. No reply. runc's init sends a pidfd_open of itself; berth sends the
//! pidfd clone3 gave it for the same process, which is the same kind of fd.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result};

use crate::sys;

/// Which process the pidfd refers to; runc's payload words.
#[derive(Clone, Copy)]
pub enum PidfdOf {
    Init,
    Exec,
}

impl PidfdOf {
    fn payload(self) -> &'static str {
        match self {
            PidfdOf::Init => "standard",
            PidfdOf::Exec => "setns",
        }
    }
}

/// A connection to the caller's `--pidfd-socket`.
pub struct PidfdSocket(UnixStream);

impl PidfdSocket {
    pub fn connect(path: &Path) -> Result<PidfdSocket> {
        UnixStream::connect(path)
            .map(PidfdSocket)
            .with_context(|| format!("--pidfd-socket {}", path.display()))
    }

    pub fn send(&self, pidfd: BorrowedFd, of: PidfdOf) -> Result<()> {
        sys::send_fd(self.0.as_fd(), of.payload().as_bytes(), pidfd)
            .context("--pidfd-socket: sending the pidfd")
    }
}
