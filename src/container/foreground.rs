//! A foreground `run` or `exec`: forward signals to the container's process,
//! proxy its pty when berth holds the master, and return its exit code.
//!
//! Signals are blocked before the clone and read from a signalfd, so a child
//! that exits at once (/bin/true) is never missed: its SIGCHLD waits in the
//! signalfd until we read it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::sys::{self, SignalNumber};

/// Blocks every signal we forward (and SIGCHLD) until `wait` reads them; call
/// before cloning the child, which resets its own mask.
pub fn block_signals() -> Result<SigSet> {
    let all = SigSet::all();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None).context("blocking signals")?;
    Ok(all)
}

/// Receives the pty master that the container's init sent (runc's protocol).
pub fn receive_pty_master(socket: &UnixStream) -> Result<OwnedFd> {
    let (_name, master) = sys::receive_fd(socket.as_fd()).context("receiving the pty master")?;
    master.context("the container sent no pty master")
}

/// Waits for `child`, forwarding signals and proxying `pty` to our stdio;
/// returns the exit code as a shell would report it (128+n when killed by n).
pub fn wait(child: Pid, signals: SigSet, pty: Option<OwnedFd>) -> Result<i32> {
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC).context("signalfd")?;
    let stdin = std::io::stdin();
    let mut stdin_open = pty.is_some();
    loop {
        let mut fds = vec![PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN)];
        if let Some(pty) = &pty {
            fds.push(PollFd::new(pty.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            other => other.context("poll")?,
        };
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        if ready.get(2) == Some(&true) {
            stdin_open = copy(stdin.as_fd(), pty.as_ref().expect("polled").as_fd());
        }
        if ready.get(1) == Some(&true) {
            copy(
                pty.as_ref().expect("polled").as_fd(),
                std::io::stdout().as_fd(),
            );
        }
        if ready[0]
            && let Some(code) = handle_signal(&signal_fd, child, pty.as_ref())?
        {
            if let Some(pty) = &pty {
                drain(pty.as_fd());
            }
            return Ok(code);
        }
    }
}

/// Forwards one signal; on SIGCHLD reaps and reports the child's exit code.
fn handle_signal(signal_fd: &SignalFd, child: Pid, pty: Option<&OwnedFd>) -> Result<Option<i32>> {
    let Some(info) = signal_fd.read_signal().context("reading the signalfd")? else {
        return Ok(None);
    };
    let number = info.ssi_signo as libc::c_int;
    match Signal::try_from(number) {
        Ok(Signal::SIGCHLD) => return reap(child),
        Ok(Signal::SIGWINCH) if pty.is_some() => {
            sys::copy_window_size(std::io::stdin().as_fd(), pty.expect("checked").as_fd())
        }
        // Realtime signals too (systemd stops on SIGRTMIN+3), which nix's Signal does not name.
        _ => {
            if let Some(signal) = SignalNumber::new(number) {
                let _ = sys::send_signal(child, signal);
            }
        }
    }
    Ok(None)
}

/// Reaps every exited child (as a subreaper we may inherit orphans); returns
/// the code once `child` is among them.
fn reap(child: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                return Ok(Some(128 + signal as i32));
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(None),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waitpid"),
        }
    }
}

/// Copies what is available; false at EOF or on error (e.g. EIO once the
/// pty's other side is closed).
fn copy(from: BorrowedFd, to: BorrowedFd) -> bool {
    let mut buf = [0u8; 8192];
    match nix::unistd::read(from, &mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => write_all(to, &buf[..n]),
    }
}

fn write_all(to: BorrowedFd, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match nix::unistd::write(to, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// What the container wrote before it exited, without waiting for more (a
/// process left behind may hold the pty open).
fn drain(pty: BorrowedFd) {
    loop {
        let mut fds = [PollFd::new(pty, PollFlags::POLLIN)];
        let readable = poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
            && fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN));
        if !readable || !copy(pty, std::io::stdout().as_fd()) {
            return;
        }
    }
}

/// Puts our terminal (if stdin is one) in raw mode while we proxy a pty, so
/// keys reach the container unprocessed; restores it on drop.
pub struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    pub fn enter() -> RawTerminal {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let Ok(original) = tcgetattr(&stdin) else {
            return RawTerminal(None);
        };
        let mut raw = original.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        RawTerminal(Some(original))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(original) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                original,
            );
        }
    }
}
