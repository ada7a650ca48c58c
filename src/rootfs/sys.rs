//! Thin wrappers for the mount-API and pivot syscalls that nix 0.30 does not provide.
//!
//! Every wrapper takes and returns owned/borrowed fds so callers never juggle raw fds.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// Attribute changes for `mount_setattr(2)`; mirrors `struct mount_attr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountAttr {
    pub set: u64,
    pub clear: u64,
    /// One of MS_PRIVATE / MS_SHARED / MS_SLAVE / MS_UNBINDABLE, or 0 to leave propagation alone.
    pub propagation: u64,
}

impl MountAttr {
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0 && self.propagation == 0
    }
}

fn fd_result(ret: libc::c_long) -> nix::Result<OwnedFd> {
    let fd = Errno::result(ret)?;
    // SAFETY: the syscall succeeded, so `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

fn cstring(s: &str) -> nix::Result<CString> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

/// `open_tree(dirfd, "", flags | AT_EMPTY_PATH)`: with OPEN_TREE_CLONE, a detached copy of the
/// mount (tree) that `fd` points at.
pub fn open_tree_fd(fd: BorrowedFd<'_>, flags: u32) -> nix::Result<OwnedFd> {
    let flags = flags | libc::AT_EMPTY_PATH as u32 | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: the path is a valid NUL-terminated empty string and `fd` is a live descriptor.
    fd_result(unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) })
}

/// `move_mount(from, "", to, "", F_EMPTY_PATH | T_EMPTY_PATH)`: attach the mount `from` onto
/// exactly the object `to` refers to; no path is resolved, so nothing can be swapped in between.
pub fn move_mount_fd(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> nix::Result<()> {
    let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: both fds are live descriptors and the paths are valid empty C strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            flags,
        )
    };
    Errno::result(ret).map(drop)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE], attr)`.
pub fn mount_setattr_fd(fd: BorrowedFd<'_>, recursive: bool, attr: MountAttr) -> nix::Result<()> {
    mount_setattr_raw(
        fd,
        recursive,
        libc::mount_attr {
            attr_set: attr.set,
            attr_clr: attr.clear,
            propagation: attr.propagation,
            userns_fd: 0,
        },
    )
}

/// `mount_setattr` with MOUNT_ATTR_IDMAP: the detached mount `fd` (or, recursive, its whole
/// tree) shows ids through the mappings of `userns`.
pub fn mount_setattr_idmap(
    fd: BorrowedFd<'_>,
    recursive: bool,
    userns: BorrowedFd<'_>,
) -> nix::Result<()> {
    mount_setattr_raw(
        fd,
        recursive,
        libc::mount_attr {
            attr_set: libc::MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.as_raw_fd() as u64,
        },
    )
}

fn mount_setattr_raw(
    fd: BorrowedFd<'_>,
    recursive: bool,
    mut raw: libc::mount_attr,
) -> nix::Result<()> {
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `raw` is a properly initialised mount_attr (any fd in it is live for the call)
    // and its exact size is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &mut raw as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// `fsopen(fstype, FSOPEN_CLOEXEC)`: a filesystem context to configure.
pub fn fsopen(fstype: &str) -> nix::Result<OwnedFd> {
    let name = cstring(fstype)?;
    // SAFETY: `name` is a valid NUL-terminated string.
    fd_result(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), libc::FSOPEN_CLOEXEC) })
}

fn fsconfig(
    ctx: BorrowedFd<'_>,
    cmd: libc::c_uint,
    key: Option<&CString>,
    value: Option<&CString>,
) -> nix::Result<()> {
    let key_ptr = key.map_or(std::ptr::null(), |k| k.as_ptr());
    let value_ptr = value.map_or(std::ptr::null(), |v| v.as_ptr());
    // SAFETY: the pointers are NULL or valid NUL-terminated strings alive for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            cmd,
            key_ptr,
            value_ptr,
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// `fsconfig(FSCONFIG_SET_STRING, key, value)`.
pub fn fsconfig_set_string(ctx: BorrowedFd<'_>, key: &str, value: &str) -> nix::Result<()> {
    let (key, value) = (cstring(key)?, cstring(value)?);
    fsconfig(ctx, libc::FSCONFIG_SET_STRING, Some(&key), Some(&value))
}

/// `fsconfig(FSCONFIG_SET_FLAG, key)`.
pub fn fsconfig_set_flag(ctx: BorrowedFd<'_>, key: &str) -> nix::Result<()> {
    let key = cstring(key)?;
    fsconfig(ctx, libc::FSCONFIG_SET_FLAG, Some(&key), None)
}

/// `fsconfig(FSCONFIG_CMD_CREATE)`: create (or reuse) the superblock.
pub fn fsconfig_create(ctx: BorrowedFd<'_>) -> nix::Result<()> {
    fsconfig(ctx, libc::FSCONFIG_CMD_CREATE, None, None)
}

/// `fsmount(ctx, FSMOUNT_CLOEXEC, attr_flags)`: a detached mount of the configured filesystem.
pub fn fsmount(ctx: BorrowedFd<'_>, attr_flags: u64) -> nix::Result<OwnedFd> {
    // SAFETY: `ctx` is a live fs context descriptor; the other arguments are plain integers.
    fd_result(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            ctx.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attr_flags,
        )
    })
}

/// The mount id of the mount `fd` lives on (statx STATX_MNT_ID), used to check that a path
/// really resolves to the mount we attached.
pub fn mount_id(fd: BorrowedFd<'_>) -> nix::Result<u64> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `stx` is a writable statx buffer and the path is a valid empty C string.
    let ret = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            stx.as_mut_ptr(),
        )
    };
    Errno::result(ret)?;
    // SAFETY: statx succeeded and filled the buffer (it was zeroed beforehand anyway).
    let stx = unsafe { stx.assume_init() };
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(Errno::ENOSYS);
    }
    Ok(stx.stx_mnt_id)
}
