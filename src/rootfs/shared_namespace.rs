//! A container whose config lists no mount namespace inherits the runtime's (runtime-spec, like
//! every namespace type left out). Its mounts are then made where every process of that
//! namespace sees them, so berth keeps them apart and undoes them:
//!
//! - nothing that exists is changed: not the propagation of `/` or of the rootfs's parent mount
//!   (runc makes the runtime's `/` rslave here), and no pivot_root, which would move the root of
//!   every process in the namespace: the init chroots instead;
//! - the init stacks one bind mount of the rootfs onto itself and makes that tree a slave before
//!   anything else: the container's mounts all go on top of it, none propagates to another
//!   mount (mounts of the runtime's under the rootfs still show inside), and one detach takes
//!   them all away;
//! - the state records the mount that was on top of the rootfs path before `create`
//!   ([`RootfsBase`]); `delete`, and a failed `create`, detach every bind of the rootfs stacked
//!   on it since.
//!
//! The rest of the setup is the same as with a mount namespace of its own: masked and read-only
//! paths, `root.readonly` and `linux.rootfsPropagation` apply to mounts of that stack only
//! (runc refuses the first two and ignores the third).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, fstat};
use serde::{Deserialize, Serialize};

use super::sys;

/// The mount shown at the rootfs path before the container stacked its own there.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct RootfsBase {
    /// Its mount id (statx STATX_MNT_ID), unique while it exists, and it outlives the stack.
    mount_id: u64,
    /// The rootfs directory (st_dev, st_ino): what every bind of it shows too.
    dev: u64,
    ino: u64,
}

impl RootfsBase {
    /// In the runtime, before the init is cloned.
    pub fn record(rootfs: &Path) -> Result<RootfsBase> {
        let fd = open_rootfs(rootfs)?;
        let st = fstat(fd.as_fd()).with_context(|| format!("fstat {}", rootfs.display()))?;
        Ok(RootfsBase {
            mount_id: sys::mount_id(fd.as_fd())
                .with_context(|| format!("mount id of {}", rootfs.display()))?,
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// Detaches every bind of the rootfs stacked on the base since it was recorded (the
    /// container's stack with all its mounts); stops at the base or at anything else, which is
    /// not the container's to remove.
    pub fn release(&self, rootfs: &Path) -> Result<()> {
        loop {
            let top = match open_rootfs(rootfs) {
                Ok(fd) => fd,
                // The rootfs is gone (its own mount removed): nothing of ours can be on it.
                Err(_) if !rootfs.exists() => return Ok(()),
                Err(err) => return Err(err),
            };
            let top_id = sys::mount_id(top.as_fd()).context("statx the rootfs")?;
            let st = fstat(top.as_fd()).context("fstat the rootfs")?;
            if top_id == self.mount_id || (st.st_dev, st.st_ino) != (self.dev, self.ino) {
                return Ok(());
            }
            // The magic link names exactly the mount `top` is on, not whatever the path shows.
            let handle = format!("/proc/self/fd/{}", top.as_raw_fd());
            umount2(handle.as_str(), MntFlags::MNT_DETACH).with_context(|| {
                format!("detach the container's mounts on {}", rootfs.display())
            })?;
        }
    }
}

/// In the init, in the runtime's mount namespace: the rootfs bound onto itself, a slave tree.
pub fn stack_rootfs(rootfs: &Path) -> Result<()> {
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind the rootfs {} onto itself", rootfs.display()))?;
    mount(
        None::<&str>,
        rootfs,
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("make the container's mounts on {} slaves", rootfs.display()))
}

fn open_rootfs(rootfs: &Path) -> Result<OwnedFd> {
    open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open the rootfs {}", rootfs.display()))
}
