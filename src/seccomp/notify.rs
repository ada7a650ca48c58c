//! The runtime-spec seccomp-notify hand-off (as runc does it): connect to
//! `linux.seccomp.listenerPath` and send one message whose data is the ContainerProcessState
//! JSON and whose SCM_RIGHTS carries the notify fd, named "seccompFd" in its `fds`.

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use oci_spec::runtime::SECCOMP_FD_NAME;
use serde_json::{Value, json};

/// Sends `notify_fd` to the seccomp agent listening on `listener_path` (a host path: call it
/// from a process in the host's mount namespace). `pid` is the filtered process (the init, or
/// an `exec` process); `state` is the container's state JSON as for hooks; `metadata` is
/// `linux.seccomp.listenerMetadata`.
pub fn send_notify_fd(
    listener_path: &Path,
    notify_fd: BorrowedFd,
    pid: i32,
    state: &Value,
    metadata: Option<&str>,
) -> Result<()> {
    let message = process_state_json(pid, state, metadata)?;
    let stream = UnixStream::connect(listener_path).with_context(|| {
        format!(
            "connecting to the seccomp listener {}",
            listener_path.display()
        )
    })?;
    let sending = || {
        format!(
            "sending the seccomp notify fd to {}",
            listener_path.display()
        )
    };
    let fds = [notify_fd.as_raw_fd()];
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&message)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .with_context(sending)?;
    // A stream may take less than the whole message; the fd travelled with the first byte.
    (&stream).write_all(&message[sent..]).with_context(sending)
}

/// The runtime-spec's ContainerProcessState.
fn process_state_json(pid: i32, state: &Value, metadata: Option<&str>) -> Result<Vec<u8>> {
    let mut process_state = json!({
        "ociVersion": state["ociVersion"],
        "fds": [SECCOMP_FD_NAME],
        "pid": pid,
        "state": state,
    });
    if let Some(metadata) = metadata {
        process_state["metadata"] = metadata.into();
    }
    serde_json::to_vec(&process_state).context("serializing the container process state")
}
