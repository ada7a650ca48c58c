//! `linux.rootfsPropagation`: how the container's `/` takes part in mount propagation (runc's
//! default: `rslave`).
//!
//! With a mount namespace of its own it acts in two steps, as in runc. Before the rootfs is
//! built, the value goes to the namespace's copy of the runtime's mounts, so that bind sources
//! come in as peers or slaves of the host's as asked (Docker's `rshared` volumes rely on that),
//! and the mount holding the rootfs becomes a slave (for the slave modes) or private: pivot_root
//! refuses a shared parent, and the new root, a bind of that mount, inherits its propagation.
//! That settles `slave` and `private`. A shared or unbindable root is impossible before
//! pivot_root (it refuses a shared root; an unbindable one cannot be bound or masked), so those
//! are applied to `/` at the very end of the setup: a `shared` root then has a peer group of its
//! own (the spec: "this does not mean that it's shared with the host").
//!
//! Without a mount namespace of its own (see `shared_namespace`) the runtime's mounts are left
//! alone and the value, whatever it is, applies at the end to the container's root: the bind of
//! the rootfs that berth stacked for it.

use std::os::fd::BorrowedFd;
use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{MsFlags, mount};
use procfs::process::Process;

use super::sys::{self, MountAttr};

/// Mount flags of `linux.rootfsPropagation` (MS_SHARED, MS_SLAVE, …, maybe with MS_REC).
#[derive(Clone, Copy, Debug)]
pub struct RootPropagation(MsFlags);

impl RootPropagation {
    pub fn of(value: Option<&str>) -> Result<RootPropagation> {
        super::options::root_propagation(value).map(RootPropagation)
    }

    /// Before the rootfs is built, in the container's own mount namespace.
    pub fn prepare(self, rootfs: &Path) -> Result<()> {
        mount(None::<&str>, "/", None::<&str>, self.0, None::<&str>)
            .context("set the propagation of / (linux.rootfsPropagation)")?;
        let parent = mount_holding(rootfs)?;
        let parent_flags = if self.0.contains(MsFlags::MS_SLAVE) {
            MsFlags::MS_SLAVE
        } else {
            MsFlags::MS_PRIVATE
        };
        mount(
            None::<&str>,
            &parent,
            None::<&str>,
            parent_flags,
            None::<&str>,
        )
        .with_context(|| {
            format!(
                "set the propagation of {} to {parent_flags:?}",
                parent.display()
            )
        })
    }

    /// For a bind source the runtime cloned from its own mounts (see `host_sources`): what the
    /// container namespace's copy of that mount gets in [`prepare`](Self::prepare). A mount
    /// namespace owned by a user namespace of the container's gets its copies of shared mounts
    /// as slaves (the kernel never lets it send events back), so a clone for it first becomes
    /// one.
    pub fn give_to_clone(
        self,
        clone: BorrowedFd,
        recursive: bool,
        for_user_namespace: bool,
    ) -> Result<()> {
        let set = |kind: MsFlags, recursive: bool| {
            let attr = MountAttr {
                propagation: kind.bits(),
                ..Default::default()
            };
            sys::mount_setattr_fd(clone, recursive, attr)
                .with_context(|| format!("set the propagation {kind:?} of the clone"))
        };
        if for_user_namespace {
            set(MsFlags::MS_SLAVE, recursive)?;
        }
        set(
            self.0 & !MsFlags::MS_REC,
            recursive && self.0.contains(MsFlags::MS_REC),
        )
    }

    /// After every mount of the container is in place, from inside its root.
    pub fn finish(self, own_mount_namespace: bool) -> Result<()> {
        let deferred = MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE;
        if own_mount_namespace && !self.0.intersects(deferred) {
            return Ok(());
        }
        mount(None::<&str>, "/", None::<&str>, self.0, None::<&str>)
            .context("linux.rootfsPropagation: set the propagation of the container's /")
    }
}

/// The mount point of the mount that `path` lives on.
fn mount_holding(path: &Path) -> Result<std::path::PathBuf> {
    let mounts = Process::myself()
        .and_then(|p| p.mountinfo())
        .context("read /proc/self/mountinfo")?;
    let holder = mounts
        .0
        .into_iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
        .with_context(|| format!("no mount contains {}", path.display()))?;
    Ok(holder.mount_point)
}
