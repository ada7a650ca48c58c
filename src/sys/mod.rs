//! Thin wrappers for the syscalls nix does not cover. Every `unsafe` block of the
//! runtime's own process management lives here, each with its justification.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

mod signal;

pub use signal::SignalNumber;

/// `struct clone_args` of clone3(2), kernel ABI version 2 (with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3's flag; libc declares it as a c_int, which it overflows.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Which side of a fork the caller is on.
pub enum Forked {
    Parent { pid: Pid, pidfd: OwnedFd },
    Child,
}

/// Forks like fork(2) but with namespace flags, a pidfd for the parent, and
/// optionally straight into a cgroup v2 directory (CLONE_INTO_CGROUP), so the
/// child never runs a single instruction outside its cgroup.
///
/// With CLONE_PARENT in `flags` the child becomes the caller's sibling: clone3
/// then demands exit_signal 0, and the kernel gives the child the caller's own
/// exit signal instead.
///
/// The caller must be single-threaded: the child continues on a copy of the
/// caller's stack and heap, which is only consistent without other threads.
pub fn clone3(flags: libc::c_int, cgroup: Option<BorrowedFd>) -> io::Result<Forked> {
    let mut pidfd: RawFd = -1;
    let exit_signal = if flags & libc::CLONE_PARENT == 0 {
        libc::SIGCHLD as u64
    } else {
        0
    };
    let mut flags = flags as u64 | libc::CLONE_PIDFD as u64;
    let mut args = CloneArgs {
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal,
        ..Default::default()
    };
    if let Some(cgroup) = cgroup {
        flags |= CLONE_INTO_CGROUP;
        args.cgroup = cgroup.as_raw_fd() as u64;
    }
    args.flags = flags;
    // SAFETY: `args` is a valid clone_args of the size passed; with stack == 0 the
    // child resumes on a copy of this stack, like fork(2). The pidfd pointer
    // outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: Pid::from_raw(pid as i32),
            // SAFETY: the kernel just handed us this fd; nothing else owns it.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// pidfd_open(2): a stable handle to a process that cannot be confused with a
/// later process reusing the same pid.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The pid, as this process's /proc numbers it, of the process behind a pidfd
/// (from the pidfd's fdinfo): a pidfd received from a process in another pid
/// namespace comes without a pid that means anything here.
pub fn pid_of_pidfd(pidfd: BorrowedFd) -> io::Result<Pid> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))?;
    let pid = info
        .lines()
        .find_map(|line| line.strip_prefix("Pid:"))
        .and_then(|value| value.trim().parse::<i32>().ok())
        // 0: outside our pid namespace; -1: already reaped.
        .filter(|&pid| pid > 0);
    pid.map(Pid::from_raw).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the pidfd names no live process of ours",
        )
    })
}

/// Waits until the process behind `pidfd` has exited (it need not be our
/// child: a pidfd becomes readable when its process ends). Returns false if
/// `timeout` passed first.
pub fn wait_for_exit(pidfd: BorrowedFd, timeout: Option<std::time::Duration>) -> nix::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let timeout = timeout.map_or(PollTimeout::NONE, |t| {
        PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX)
    });
    let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => continue,
            other => return other.map(|ready| ready > 0),
        }
    }
}

/// Best-effort end of a child this process cloned: SIGKILL through its pidfd (a recycled pid
/// cannot be hit), then reaped so that no zombie stays. For cleanup paths, which have nothing
/// better to do with an error.
pub fn kill_and_reap(pid: Pid, pidfd: BorrowedFd) {
    let _ = pidfd_send_signal(pidfd, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

/// pidfd_send_signal(2).
pub fn pidfd_send_signal(pidfd: BorrowedFd, signal: impl Into<SignalNumber>) -> Result<(), Errno> {
    // SAFETY: plain syscall; a null siginfo means "as kill(2) would send it".
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal.into().as_raw(),
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// kill(2) of one process, with any signal number (nix's `kill` takes only the classic ones).
pub fn send_signal(pid: Pid, signal: SignalNumber) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    Errno::result(unsafe { libc::kill(pid.as_raw(), signal.as_raw()) }).map(drop)
}

/// Marks every fd from `first` upwards close-on-exec, so none leaks into the
/// container's process while the runtime can still use them until execve.
pub fn cloexec_from(first: RawFd) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(ret).map(drop)
}

/// prctl(PR_SET_PDEATHSIG): have the kernel deliver `signal` when our parent dies.
pub fn set_parent_death_signal(signal: Option<Signal>) -> Result<(), Errno> {
    let signal = signal.map_or(0, |s| s as libc::c_ulong);
    // SAFETY: prctl with integer arguments only.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) }).map(drop)
}

/// prctl(PR_SET_DUMPABLE, 0): other processes, including those of the container,
/// may no longer open /proc/<pid>/exe, mem, fd/ or environ of this process
/// (ptrace access checks). This closes CVE-2019-5736: the runtime's own binary
/// stays out of reach while it runs inside the container's namespaces.
pub fn set_non_dumpable() -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(drop)
}

/// prctl(PR_SET_CHILD_SUBREAPER).
pub fn set_child_subreaper() -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }).map(drop)
}

/// Makes `command` start its child with fork(2), which glibc implements with the clone syscall,
/// instead of posix_spawn, which it implements with clone3 and falls back from only on ENOSYS.
/// A hook may run under the container's seccomp filter (startContainer, as in runc), and a
/// profile that names syscalls newer than clone3 but not clone3 answers it with EPERM.
pub fn spawn_with_fork(command: &mut std::process::Command) {
    // std uses posix_spawn only for commands without a pre_exec closure.
    // SAFETY: the closure does nothing, which is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, || Ok(()));
    }
}

/// What Rust's runtime does before `main` that berth relies on (berth has its own entry point,
/// see main.rs): stdio fds that are closed are opened on /dev/null, so that no file berth opens
/// takes their place; and SIGPIPE is ignored, so that a reader that went away is an EPIPE
/// error, not death.
pub fn prepare_process() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only reads the fd's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // The lowest free fd: this one, as the lower ones are open.
            // SAFETY: the path is a valid NUL-terminated string.
            if unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } != fd {
                std::process::abort();
            }
        }
    }
    // SAFETY: SIG_IGN runs no code of ours in signal context.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Ends the calling process at once: no atexit handlers, no stdio flushing of
/// buffers the parent also owns. The right exit for a forked child.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// ioctl(NS_GET_NSTYPE): the CLONE_NEW* type of a namespace fd.
pub fn namespace_type(ns: BorrowedFd) -> io::Result<libc::c_int> {
    const NS_GET_NSTYPE: libc::c_ulong = 0xb7 << 8 | 0x3; // _IO(0xb7, 0x3)
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
    let ret = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_NSTYPE) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// keyctl(KEYCTL_JOIN_SESSION_KEYRING): a fresh session keyring named after the
/// container, so it does not share the host's (runc does the same).
pub fn join_session_keyring(name: &str) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    let name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let ret =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Resets every catchable signal to its default action and unblocks all of
/// them: the container's process must not inherit the runtime's choices (Rust
/// ignores SIGPIPE; `run` blocks the signals it forwards).
pub fn reset_signals() -> Result<(), Errno> {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, sigprocmask};
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours in signal context.
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }?;
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

/// setdomainname(2), which nix lacks.
pub fn set_domain_name(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes for the call.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// set_mempolicy(2) for the calling thread: `mode` with its flags, over the nodes whose bits are
/// set in `nodemask` (empty for the modes that take none).
pub fn set_mempolicy(mode: libc::c_int, nodemask: &[libc::c_ulong]) -> io::Result<()> {
    let bits = nodemask.len() * libc::c_ulong::BITS as usize;
    // The kernel reads one bit fewer than `maxnode` says (its historical off-by-one, which
    // libnuma also compensates for).
    let maxnode = if bits == 0 { 0 } else { bits + 1 };
    let mask = if bits == 0 {
        std::ptr::null()
    } else {
        nodemask.as_ptr()
    };
    // SAFETY: `mask` points to `nodemask`, which holds `bits` bits and outlives the call (or is
    // null with maxnode 0); the kernel only reads it.
    let ret = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, mask, maxnode) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `payload` with exactly one fd attached by SCM_RIGHTS, in one sendmsg (the sync channel,
/// runc's console and pidfd socket protocols, which expect no reply).
pub fn send_fd(socket: BorrowedFd, payload: &[u8], fd: BorrowedFd) -> io::Result<()> {
    send_fds(socket, payload, &[fd])
}

/// Sends `payload` with `fds` attached by SCM_RIGHTS, in one sendmsg.
pub fn send_fds(socket: BorrowedFd, payload: &[u8], fds: &[BorrowedFd]) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let fds: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &[io::IoSlice::new(payload)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if sent != payload.len() {
        return Err(io::Error::other(format!(
            "sendmsg sent {sent} of {} bytes",
            payload.len()
        )));
    }
    Ok(())
}

/// Receives one message and the fd it may carry by SCM_RIGHTS (the sync
/// channel, runc's console protocol): the payload (empty at EOF) and the fd,
/// close-on-exec.
pub fn receive_fd(socket: BorrowedFd) -> nix::Result<(Vec<u8>, Option<OwnedFd>)> {
    let (payload, fds) = receive_fds(socket)?;
    Ok((payload, fds.into_iter().next()))
}

/// Receives one message and the fds (up to 16) it may carry by SCM_RIGHTS, close-on-exec. A
/// message with more is an error (EMSGSIZE): the kernel closed the rest.
pub fn receive_fds(socket: BorrowedFd) -> nix::Result<(Vec<u8>, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut payload = vec![0u8; 64 * 1024];
    let mut iov = [io::IoSliceMut::new(&mut payload)];
    let mut space = nix::cmsg_space!([RawFd; 16]);
    let message = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let len = message.bytes;
    let mut received = Vec::new();
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel installed these fds for us with the message; nothing else
            // refers to them.
            received.extend(
                fds.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if message.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(nix::errno::Errno::EMSGSIZE);
    }
    payload.truncate(len);
    Ok((payload, received))
}

/// Gives the pty the window size of our terminal (on SIGWINCH); a stdin
/// that is not a terminal has no size, and then nothing changes.
pub fn copy_window_size(from: BorrowedFd, pty: BorrowedFd) {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the valid pointer given.
    if unsafe { libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut size) } == 0 {
        // SAFETY: TIOCSWINSZ reads a winsize from the valid pointer given.
        unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
}
