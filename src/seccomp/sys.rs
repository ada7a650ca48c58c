//! seccomp(2) wrappers: neither nix nor the libseccomp crate exposes loading a ready BPF program.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use libc::{c_ulong, sock_filter, sock_fprog};

/// Installs `program` on the calling thread. Returns the notify fd when `flags` contains
/// SECCOMP_FILTER_FLAG_NEW_LISTENER.
pub(super) fn set_mode_filter(
    flags: c_ulong,
    program: &[sock_filter],
) -> io::Result<Option<OwnedFd>> {
    let len =
        u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = sock_fprog {
        len,
        // The kernel only reads through this pointer.
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `program`, which outlives the call; the kernel copies it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const sock_fprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER == 0 {
        return Ok(None);
    }
    let fd = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: with NEW_LISTENER the kernel returns a fresh fd that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Whether the kernel accepts `flags` for SECCOMP_SET_MODE_FILTER. The program pointer is
/// NULL: the kernel validates flags first (EINVAL) and only then copies the program
/// (EFAULT), so nothing is ever installed. libseccomp probes the same way.
pub(super) fn kernel_accepts_flags(flags: c_ulong) -> bool {
    // SAFETY: a NULL program makes the call fail before it changes any state.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::null::<sock_fprog>(),
        )
    };
    ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}
