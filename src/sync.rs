//! The parent ↔ child protocol of `create` and `exec`.
//!
//! ```text
//!   parent (berth create)                      child (container init)
//!   cloned bind sources (detached; their
//!   fds are inherited across clone3)
//!   clone3 ─────────────────────────────────▶  waits for Go
//!   writes id maps
//!   Go{host_pid} ───────────────────────────▶  joins the cgroup by itself
//!   systemd driver: starts the unit with       (`cgroups::SelfJoin`),
//!   the init in it                             namespaces, the mounts up to
//!                                              the first `cgroup` one, then
//!                                              waits for CgroupJoined
//!   CgroupJoined + the files of the  ───────▶  joins those hierarchies by
//!   hierarchies systemd left alone             itself, cgroup namespace, the
//!                                              rest of the mounts, devices
//!                ◀─────────────────────────── RunHooks
//!   prestart + createRuntime hooks
//!   HooksDone ──────────────────────────────▶  createContainer hooks, pivot_root,
//!                                              console, masks, process identity
//!               (◀── SeccompNotify + fd ─────  the filter's notify fd, for the
//!    send it to listenerPath                   seccomp agent on the host)
//!    SeccompNotifyDone ──────────────────▶
//!                ◀─────────────────────────── Ready   (now blocked in accept())
//!   pid file, state "created", exit
//! ```
//! Either side may send `Failed` instead of its next message; a closed socket
//! means the peer died. With the start trace on (`crate::trace`), the init sends
//! `Trace` just before `Ready`.
//!
//! `start` then connects to the init's start socket, a stream, and writes `Start`
//! ([`read_request`]): the init writes its last words there as JSON lines
//! ([`write_line`], [`read_lines`]) — its `Trace`, `Failed` if it could not exec —
//! and execve closes it. EOF with no `Failed` before it means the container's
//! process runs. An unprivileged `exec` into the created container writes
//! `SendNamespaces` instead and gets `Namespaces` with the fds; the init then
//! waits for the next connection.
//!
//! A container that joins a user namespace by path yet gets new namespaces is
//! cloned through an intermediate process (`crate::namespaces::intermediate`),
//! which reports on a channel of its own before the exchange above begins:
//!
//! ```text
//!   parent                   intermediate                 container init
//!   clone3 ───────────────▶  setns(user)
//!                            clone3(CLONE_PARENT) ──────▶ waits for Go
//!          ◀──────────────── InitCloned + the init's pidfd
//!   reaps it                 exits
//! ``` `exec` uses the same channel: Go, then the child's
//! end closes on execve (it is close-on-exec) or carries `Failed` (and, with
//! the trace on, `Trace` before it loads its seccomp filter).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use oci_spec::runtime::LinuxNamespaceType;
use serde::{Deserialize, Serialize};

use crate::cgroups::SelfJoin;
use crate::{sys, trace};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub enum Message {
    /// The child may proceed; `host_pid` is its pid as the host sees it, which
    /// hooks receive in the state JSON. The container init waits for
    /// `CgroupJoined` before anything that depends on its cgroup.
    Go {
        host_pid: i32,
    },
    /// The runtime's part of the cgroup join is done (the systemd driver's; none
    /// with cgroupfs). `join_by_yourself` names the files, attached in this order
    /// (SCM_RIGHTS), that the init writes to, to move itself into the hierarchies
    /// it is not in yet (on cgroup v1, those systemd leaves alone).
    CgroupJoined {
        join_by_yourself: Vec<PathBuf>,
    },
    RunHooks,
    HooksDone,
    /// Carries the seccomp notify fd (SCM_RIGHTS), which only the parent, in
    /// the host's mount namespace, can pass on to `linux.seccomp.listenerPath`.
    SeccompNotify,
    SeccompNotifyDone,
    Ready,
    /// The phases of the start trace a child recorded (`crate::trace`).
    Trace(Vec<trace::Record>),
    /// From the intermediate process: carries the init's pidfd (SCM_RIGHTS).
    InitCloned,
    /// The first line on a start connection from `start`: exec the container's process.
    Start,
    /// The first line on a start connection from an unprivileged `exec`: send the fds of your
    /// namespaces, which the kernel lets no one else open (the init is not dumpable).
    SendNamespaces,
    /// The created init's answer to `SendNamespaces`: the kinds of the namespace fds it
    /// carries (SCM_RIGHTS), in the same order.
    Namespaces(Vec<LinuxNamespaceType>),
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

    /// Sends `message` with `fd` attached.
    pub fn send_with_fd(&self, message: &Message, fd: BorrowedFd) -> Result<()> {
        let bytes = serde_json::to_vec(message)?;
        sys::send_fd(self.0.as_fd(), &bytes, fd)
            .with_context(|| format!("sending {message:?} to the other side"))
    }

    /// The next message, or `None` when the peer closed its end (it exited,
    /// or, for `exec`, it called execve).
    pub fn recv(&self) -> Result<Option<Message>> {
        Ok(self.recv_with_fd()?.map(|(message, _)| message))
    }

    /// Like `recv`, with the fd the message carried, if any.
    pub fn recv_with_fd(&self) -> Result<Option<(Message, Option<OwnedFd>)>> {
        let received = self.recv_with_fds()?;
        Ok(received.map(|(message, fds)| (message, fds.into_iter().next())))
    }

    /// Like `recv`, with the fds the message carried.
    pub fn recv_with_fds(&self) -> Result<Option<(Message, Vec<OwnedFd>)>> {
        let (bytes, fds) = loop {
            match sys::receive_fds(self.0.as_fd()) {
                Err(nix::errno::Errno::EINTR) => continue,
                // The peer closed with a message of ours unread (an init that failed before
                // reading CgroupJoined). A seqpacket socket reports that once, before the
                // messages the peer sent: its reason for failing comes next.
                Err(nix::errno::Errno::ECONNRESET) => continue,
                other => break other.context("receiving from the other side")?,
            }
        };
        if bytes.is_empty() {
            return Ok(None);
        }
        let message = serde_json::from_slice(&bytes).context("malformed sync message")?;
        Ok(Some((message, fds)))
    }

    /// Sends `CgroupJoined` with the files of `rest`, what the init joins by itself.
    pub fn send_cgroup_joined(&self, rest: &SelfJoin) -> Result<()> {
        let (paths, fds): (Vec<_>, Vec<_>) = rest.files().map(|(p, f)| (p.to_owned(), f)).unzip();
        let message = Message::CgroupJoined {
            join_by_yourself: paths,
        };
        let bytes = serde_json::to_vec(&message)?;
        sys::send_fds(self.0.as_fd(), &bytes, &fds)
            .with_context(|| format!("sending {message:?} to the other side"))
    }

    /// Waits for `CgroupJoined`; what it leaves the init to join by itself.
    pub fn expect_cgroup_joined(&self) -> Result<SelfJoin> {
        match self.recv_with_fds()? {
            Some((Message::CgroupJoined { join_by_yourself }, fds)) => {
                if join_by_yourself.len() != fds.len() {
                    bail!(
                        "the runtime sent {} cgroup files for {join_by_yourself:?}",
                        fds.len()
                    );
                }
                let files = join_by_yourself
                    .into_iter()
                    .zip(fds.into_iter().map(File::from));
                Ok(SelfJoin::from_files(files.collect()))
            }
            Some((Message::Failed(reason), _)) => bail!("{reason}"),
            Some((other, _)) => bail!("the runtime sent {other:?}, expected CgroupJoined"),
            None => bail!("the runtime exited before sending CgroupJoined"),
        }
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

/// Writes `message` as one line of the start connection: a single write(2), the call runc's
/// init makes on its exec fifo, since the container's seccomp filter may already be in force.
pub fn write_line(connection: &mut impl Write, message: &Message) -> Result<()> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    connection
        .write_all(&line)
        .context("writing to the start connection")
}

/// The first line a peer writes on a start connection (its request); `None` when it closed
/// without one. The peer waits for the answer after that line, so nothing is read ahead.
pub fn read_request(connection: &UnixStream) -> Result<Option<Message>> {
    let mut line = String::new();
    BufReader::new(connection)
        .read_line(&mut line)
        .context("reading the start connection")?;
    if line.is_empty() {
        return Ok(None);
    }
    let request = serde_json::from_str(&line).context("malformed start request")?;
    Ok(Some(request))
}

/// The messages of a start connection read to its end. A line that is not one (an init of
/// another berth version) is taken as the reason it failed.
pub fn read_lines(text: &str) -> impl Iterator<Item = Message> + '_ {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| Message::Failed(line.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_closes_with_a_message_unread_is_still_heard() {
        let (runtime, init) = Channel::pair().unwrap();
        init.send(&Message::Failed("mounting /proc".into()))
            .unwrap();
        runtime.send_cgroup_joined(&SelfJoin::default()).unwrap();
        drop(init);
        let heard = runtime.recv().unwrap();
        assert_eq!(heard, Some(Message::Failed("mounting /proc".into())));
        assert_eq!(runtime.recv().unwrap(), None);
    }

    #[test]
    fn the_init_joins_by_itself_the_files_cgroup_joined_carries() {
        let dir = std::env::temp_dir().join(format!("berth-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tasks = ["cpuset", "freezer"].map(|hierarchy| dir.join(hierarchy));
        let opened = tasks.iter().map(|path| {
            let file = File::options().create(true).append(true).open(path);
            (path.clone(), file.unwrap())
        });
        let (runtime, init) = Channel::pair().unwrap();
        let rest = SelfJoin::from_files(opened.collect());
        runtime.send_cgroup_joined(&rest).unwrap();
        drop(rest);
        init.expect_cgroup_joined().unwrap().join().unwrap();
        let written = tasks.map(|path| std::fs::read_to_string(path).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(written, ["0", "0"]);
    }
}
