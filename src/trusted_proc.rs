//! The one way berth writes to procfs from inside a container (sysctls, oom_score_adj, LSM
//! attributes): through a procfs root the container cannot have redirected, with every lookup
//! beneath it kept on that very mount.
//!
//! Inside the container `/proc` is whatever the image and the config made it: a symlink to a
//! host directory, a bind mount of something else, a tmpfs with planted files. So the root is a
//! fresh procfs instance nobody else can see (fsopen+fsmount, for the caller's pid namespace, so
//! `self` and `thread-self` name the caller), and only when the kernel refuses a fresh one (a
//! user namespace whose procfs is partly masked) the container's `/proc`, accepted only if it
//! is the root of a procfs mount.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::fstat;
use nix::sys::statfs::{PROC_SUPER_MAGIC, fstatfs};

use crate::rootfs::sys;

/// The root of a procfs instance that was checked to be one.
pub struct ProcRoot(OwnedFd);

impl ProcRoot {
    pub fn open() -> Result<ProcRoot> {
        let root = match fresh_procfs() {
            Ok(fd) => fd,
            Err(_) => {
                let how = OpenHow::new()
                    .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                    .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
                openat2(AT_FDCWD, "/proc", how).context("open /proc")?
            }
        };
        ensure_on_procfs(root.as_fd(), "/proc")?;
        // The root inode of every procfs instance is 1; anything else is a subdirectory bound
        // there (a host /proc/<pid>, say).
        if fstat(root.as_fd()).context("fstat /proc")?.st_ino != 1 {
            bail!("/proc is not the root of a procfs mount");
        }
        Ok(ProcRoot(root))
    }

    /// Opens `path` (relative, e.g. `sys/kernel/shmmni` or `thread-self/attr/exec`) beneath the
    /// root. The walk may not leave the root nor cross a mount (a bind mount over a proc file is
    /// a known attack), nor follow magic links; the plain symlinks procfs itself provides
    /// (`self`, `thread-self`) resolve within this instance. The error keeps the errno, for
    /// callers that tell a missing file apart.
    pub fn open_file(&self, path: impl AsRef<Path>, flags: OFlag) -> Result<File> {
        let path = path.as_ref();
        let shown = format!("/proc/{}", path.display());
        let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
        let fd = openat2(self.0.as_fd(), path, how).with_context(|| format!("open {shown}"))?;
        ensure_on_procfs(fd.as_fd(), &shown)?;
        Ok(File::from(fd))
    }

    /// Writes `value` to `path` in one write(2): procfs files take no partial writes.
    pub fn write(&self, path: impl AsRef<Path>, value: &[u8]) -> Result<()> {
        let path = path.as_ref();
        self.open_file(path, OFlag::O_WRONLY)?
            .write_all(value)
            .with_context(|| format!("write /proc/{}", path.display()))
    }
}

fn fresh_procfs() -> nix::Result<OwnedFd> {
    let ctx = sys::fsopen("proc")?;
    sys::fsconfig_set_string(ctx.as_fd(), "source", "proc")?;
    sys::fsconfig_create(ctx.as_fd())?;
    sys::fsmount(
        ctx.as_fd(),
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC,
    )
}

fn ensure_on_procfs(fd: BorrowedFd<'_>, what: &str) -> Result<()> {
    let fs = fstatfs(fd).with_context(|| format!("fstatfs {what}"))?;
    if fs.filesystem_type() != PROC_SUPER_MAGIC {
        bail!("{what} is not on procfs");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Unit tests run as any user on the host; the fresh instance may be refused there, and then
    // the host's /proc is the root: both must behave the same.

    #[test]
    fn self_and_thread_self_resolve_to_the_caller() {
        let proc = ProcRoot::open().unwrap();
        let mut status = String::new();
        std::io::Read::read_to_string(
            &mut proc
                .open_file("thread-self/status", OFlag::O_RDONLY)
                .unwrap(),
            &mut status,
        )
        .unwrap();
        let pid_line = format!("Pid:\t{}\n", nix::unistd::gettid());
        assert!(status.contains(&pid_line), "{status}");
    }

    #[test]
    fn magic_links_and_escapes_are_refused() {
        let proc = ProcRoot::open().unwrap();
        for path in [
            "self/root/etc/passwd",
            "self/cwd",
            "../etc/passwd",
            "/etc/passwd",
        ] {
            assert!(
                proc.open_file(path, OFlag::O_RDONLY).is_err(),
                "{path} was opened"
            );
        }
    }

    #[test]
    fn a_missing_file_keeps_its_errno() {
        let proc = ProcRoot::open().unwrap();
        let err = proc.open_file("no-such-file", OFlag::O_RDONLY).unwrap_err();
        assert_eq!(
            err.downcast_ref::<nix::errno::Errno>(),
            Some(&nix::errno::Errno::ENOENT)
        );
    }
}
