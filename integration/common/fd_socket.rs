//! The receiving end of runc's fd-passing sockets (`--console-socket`, `--pidfd-socket`): the
//! runtime connects and sends one message, a payload with exactly one fd attached.

use std::io::{ErrorKind, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

/// A listening unix socket a test passes to the runtime.
pub struct FdSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl FdSocket {
    pub fn bind(path: &Path) -> FdSocket {
        let listener =
            UnixListener::bind(path).unwrap_or_else(|e| panic!("binding {}: {e}", path.display()));
        FdSocket {
            path: path.to_path_buf(),
            listener,
        }
    }

    /// The socket's path, as a flag value.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 temp dir")
    }

    /// Accepts the runtime's connection (waiting at most `timeout`) and receives its message:
    /// the payload and the one fd.
    #[track_caller]
    pub fn receive(&self, timeout: Duration) -> (String, OwnedFd) {
        receive_one(&self.accept(timeout))
    }

    fn accept(&self, timeout: Duration) -> UnixStream {
        self.listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => return stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("the runtime never connected to {}: {e}", self.path()),
            }
        }
    }
}

/// One message: the payload and exactly one fd.
#[track_caller]
fn receive_one(stream: &UnixStream) -> (String, OwnedFd) {
    let mut payload = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut payload)];
    let mut cmsg_space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg_space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .expect("recvmsg on the runtime's connection");
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs().expect("control messages") {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            fds.extend(received);
        }
    }
    let len = msg.bytes;
    assert_eq!(fds.len(), 1, "expected exactly one fd, got {fds:?}");
    // SAFETY: the kernel just installed this fd in our table for us; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    let payload = String::from_utf8_lossy(&payload[..len])
        .trim_end_matches('\0')
        .to_string();
    (payload, fd)
}
