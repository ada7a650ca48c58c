//! The one [`CgroupManager`]: the lifecycle's operations on a container's cgroup, the same for
//! every hierarchy version (see `hierarchy`) and driver.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::{
    CgroupDir, CgroupHandle, CgroupManager, OomWatch, Stats, Version, convert, fs, resources, v1,
    v2, writes,
};
use crate::logging;
use crate::sys::{self, SignalNumber};

pub struct Cgroup {
    pub handle: CgroupHandle,
    /// The cgroup2 directory, opened by `create` for CLONE_INTO_CGROUP when it made it.
    pub unified_fd: Option<OwnedFd>,
    /// Rootless without a cgroupsPath: no permission to create the cgroup means none at all
    /// (an empty `handle.dirs`), not an error.
    pub optional: bool,
}

/// Whether resources are applied to a new container or updated on a running one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Create,
    Update,
}

impl Cgroup {
    fn create_each_dir(&mut self, enable_all_v2_controllers: bool) -> Result<()> {
        for dir in &mut self.handle.dirs {
            let created = fs::create_dirs(&dir.path)?;
            dir.created = created.last() == Some(&dir.path);
            if dir.controllers.iter().any(|c| c == "cpuset") {
                v1::init_cpuset(&dir.mount_point, &dir.path)?;
            }
            if dir.version == Version::V2 {
                if enable_all_v2_controllers {
                    // As runc: every controller the host offers, so later updates can use them.
                    let all = v2::controllers(&dir.mount_point)?;
                    v2::enable_controllers(&dir.mount_point, &dir.path, &all)?;
                }
                // Only into a cgroup made just now: once a cgroup's cgroup.kill was written,
                // the kernel (6.x) SIGKILLs every later CLONE_INTO_CGROUP child there. An
                // existing one gets the init through cgroup.procs (`add_process`).
                if dir.created {
                    let fd = std::fs::File::open(&dir.path)
                        .with_context(|| format!("opening {}", dir.path.display()))?;
                    self.unified_fd = Some(fd.into());
                }
            }
        }
        Ok(())
    }

    /// Plans the writes for `r`. Rootless, device rules are left out, as runc does: they need
    /// privilege on the host (v1 devices.deny, attaching the v2 eBPF program), and such a
    /// container only reaches device nodes bound from the host, with the user's own
    /// permissions. Without a cgroup there is nowhere to put a limit.
    fn plan(&self, r: &LinuxResources, change: Change) -> Result<writes::Writes> {
        let mut r = convert::without_unset(r);
        if self.handle.rootless || change == Change::Update {
            r.set_devices(None);
        }
        if !self.handle.dirs.is_empty() {
            return resources::plan_writes(&r, &|c, f| self.handle.target(c, f));
        }
        if r != LinuxResources::default() {
            bail!(
                "linux.resources: the container has no cgroup to set limits in (berth is \
                 rootless and was given no cgroupsPath delegated to it)"
            );
        }
        Ok(writes::Writes::default())
    }
}

impl CgroupManager for Cgroup {
    fn create(&mut self) -> Result<()> {
        // On hybrid hosts, controllers on the cgroup2 mount are enabled when a field needs them.
        let enable_all_v2_controllers = self.handle.hierarchy == Version::V2;
        match self.create_each_dir(enable_all_v2_controllers) {
            Err(e) if self.optional && is_permission_error(&e) => {
                logging::log(
                    logging::Level::Debug,
                    &format!("rootless: running the container without a cgroup: {e:#}"),
                );
                let undone = self.remove();
                self.handle.dirs.clear();
                self.unified_fd = None;
                undone
            }
            result => result,
        }
    }

    fn clone_into_fd(&self) -> Option<BorrowedFd<'_>> {
        self.unified_fd.as_ref().map(|fd| fd.as_fd())
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        for dir in &self.handle.dirs {
            fs::write(&dir.path, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        self.plan(resources, Change::Create)?.apply()
    }

    fn update(&self, resources: &LinuxResources) -> Result<()> {
        self.plan(resources, Change::Update)?.apply_or_restore()
    }

    fn freeze(&self) -> Result<()> {
        self.handle.freeze()
    }

    fn thaw(&self) -> Result<()> {
        self.handle.thaw()
    }

    fn is_frozen(&self) -> Result<bool> {
        self.handle.is_frozen()
    }

    fn stats(&self) -> Result<Stats> {
        self.handle.stats()
    }

    fn watch_oom(&self) -> Result<OomWatch> {
        self.handle.watch_oom()
    }

    fn pids(&self) -> Result<Vec<i32>> {
        pids_in(self.handle.procs_dir()?)
    }

    /// SIGKILL through cgroup.kill when there is a cgroup2 directory (also on hybrid hosts:
    /// every container process is in it); otherwise freezes so no process can fork while being
    /// signalled, signals each, then thaws (unless the container was paused and the signal does
    /// not need it to run).
    fn kill_all(&self, signal: SignalNumber) -> Result<()> {
        if let Some(dir) = self.handle.v2_dir()
            && signal == SignalNumber::KILL
            && dir.path.join("cgroup.kill").exists()
        {
            return fs::write(&dir.path, "cgroup.kill", "1");
        }
        if self.pids()?.is_empty() {
            return Ok(());
        }
        let was_frozen = self.is_frozen()?;
        self.freeze()?;
        let result = self.pids().and_then(|pids| {
            for pid in pids {
                match sys::send_signal(Pid::from_raw(pid), signal) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => return Err(e).with_context(|| format!("kill({pid}, {signal})")),
                }
            }
            Ok(())
        });
        if !was_frozen || signal == SignalNumber::KILL {
            self.thaw()?;
        }
        result
    }

    /// Tries every hierarchy even when one fails, so as little as possible is left behind.
    fn remove(&self) -> Result<()> {
        let results: Vec<Result<()>> = (self.handle.dirs.iter())
            .filter(|d| d.created)
            .map(|d| fs::remove_cgroup_tree(&d.path))
            .collect();
        results.into_iter().collect()
    }

    fn handle(&self) -> CgroupHandle {
        self.handle.clone()
    }
}

fn pids_in(dir: &CgroupDir) -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    fs::pids_recursive(&dir.path, &mut pids)?;
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// The cgroup is not ours to make (EROFS: a read-only cgroupfs, as in a container).
fn is_permission_error(err: &anyhow::Error) -> bool {
    let denied = |io: &std::io::Error| {
        let errno = io.raw_os_error().map(Errno::from_raw);
        matches!(errno, Some(Errno::EACCES | Errno::EPERM | Errno::EROFS))
    };
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(denied)
}
