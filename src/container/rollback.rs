//! The undo of a failed `create` or `restore`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

use crate::cgroups::CgroupManager;
use crate::intelrdt::RdtGroup;
use crate::rootfs;
use crate::sys;

/// Undoes a container's setup when dropped armed: the init dies (and with it its namespaces),
/// then whatever else is in its cgroup (a container without a pid namespace of its own, or a
/// restored tree, does not die with its init); the cgroup, the resctrl group, the rootfs mounts
/// made in the runtime's own mount namespace and the state directory go. Each field is filled
/// in as the step that makes it succeeds.
pub(super) struct Rollback<'a> {
    dir: &'a Path,
    pub init: Option<(Pid, OwnedFd)>,
    pub cgroup: Option<Box<dyn CgroupManager>>,
    rdt_group: Option<&'a RdtGroup>,
    /// The rootfs, when the init mounts in the runtime's namespace.
    pub shared_rootfs: Option<(PathBuf, rootfs::RootfsBase)>,
}

impl<'a> Rollback<'a> {
    /// Armed for a claimed state directory and the resctrl group made before it.
    pub fn new(dir: &'a Path, rdt_group: Option<&'a RdtGroup>) -> Self {
        Rollback {
            dir,
            init: None,
            cgroup: None,
            rdt_group,
            shared_rootfs: None,
        }
    }

    /// The container is set up: keep everything.
    pub fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if let Some((pid, pidfd)) = self.init.take() {
            sys::kill_and_reap(pid, pidfd.as_fd());
        }
        if let Some(cgroup) = &self.cgroup {
            let _ = cgroup.kill_all(sys::SignalNumber::KILL);
            let _ = cgroup.remove();
        }
        if let Some(group) = self.rdt_group {
            let _ = group.remove();
        }
        if let Some((rootfs, base)) = &self.shared_rootfs {
            let _ = base.release(rootfs);
        }
        let _ = std::fs::remove_dir_all(self.dir);
    }
}
