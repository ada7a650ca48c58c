//! Syscall wrappers this module needs and nix does not provide. Each `unsafe` block is one call.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

/// `struct sched_attr` (SCHED_ATTR_SIZE_VER1) from include/uapi/linux/sched/types.h.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub sched_policy: u32,
    pub sched_flags: u64,
    pub sched_nice: i32,
    pub sched_priority: u32,
    pub sched_runtime: u64,
    pub sched_deadline: u64,
    pub sched_period: u64,
    pub sched_util_min: u32,
    pub sched_util_max: u32,
}

/// `sched_setattr(0, attr, 0)` for the calling thread.
pub fn sched_setattr(attr: &SchedAttr) -> nix::Result<()> {
    let mut attr = *attr;
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is a valid, fully initialised sched_attr whose size field matches.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    Errno::result(ret).map(drop)
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, value)` for the calling process.
pub fn ioprio_set(value: libc::c_int) -> nix::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    Errno::result(ret).map(drop)
}

/// `personality(persona)`; nix's `Persona` cannot express execution domains such as PER_LINUX32.
pub fn personality(persona: libc::c_ulong) -> nix::Result<()> {
    // SAFETY: plain integer argument.
    let ret = unsafe { libc::personality(persona) };
    Errno::result(ret).map(drop)
}

/// `ioctl(fd, request, int_arg)` for the tty ioctls that take an integer by value (TIOCGPTPEER,
/// TIOCSCTTY).
pub fn ioctl_int(
    fd: BorrowedFd,
    request: libc::Ioctl,
    arg: libc::c_int,
) -> nix::Result<libc::c_int> {
    // SAFETY: these requests take an int by value and write no memory.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) };
    Errno::result(ret)
}

/// `ioctl(fd, request, &int)` for the ioctls that read an integer through a pointer (TIOCSPTLCK).
pub fn ioctl_write_int(
    fd: BorrowedFd,
    request: libc::Ioctl,
    value: libc::c_int,
) -> nix::Result<()> {
    // SAFETY: the request reads exactly one int from the pointer, which outlives the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, &value as *const libc::c_int) };
    Errno::result(ret).map(drop)
}

/// `ioctl(fd, request, &mut int)` for TIOCGPTN.
pub fn ioctl_read_int(fd: BorrowedFd, request: libc::Ioctl) -> nix::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    // SAFETY: the request writes exactly one int to the pointer we own.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut value as *mut libc::c_int) };
    Errno::result(ret).map(|_| value)
}

/// `ioctl(fd, TIOCSWINSZ, &size)`.
pub fn set_window_size(fd: BorrowedFd, size: &libc::winsize) -> nix::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    let ret = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            size as *const libc::winsize,
        )
    };
    Errno::result(ret).map(drop)
}

/// Wraps the fd returned by an ioctl that creates one (TIOCGPTPEER).
pub fn own_fd(fd: libc::c_int) -> OwnedFd {
    // SAFETY: the kernel just returned this new fd to us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Opens `path` inside the current root (`/` — the container's after pivot_root or setns):
/// symlinks resolve as if `/` were the root and magic links (/proc/self/fd/N …) are refused, so
/// nothing can lead outside the container.
pub fn open_in_root(path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let root = nix::fcntl::open(
        c"/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root.as_fd(), path, how)
}

/// `execve` returning only the error.
pub fn execve(path: &CStr, args: &[std::ffi::CString], env: &[std::ffi::CString]) -> Errno {
    match nix::unistd::execve(path, args, env) {
        Err(errno) => errno,
        Ok(never) => match never {},
    }
}
