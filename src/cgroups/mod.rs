//! Container cgroups on cgroup v1, v2 and hybrid hosts.
//!
//! The lifecycle calls [`for_new_container`] at create time, persists [`CgroupManager::handle`]
//! in the container state, and rebuilds the manager with [`from_handle`] for later commands.
//!
//! Two concerns, kept apart (crun's split): the driver decides where the cgroup is and who
//! makes and removes it (`cgroupfs`: berth itself); the hierarchy version decides where each
//! controller's files are and what they take (`hierarchy`, with the formats in `v1` and `v2`
//! and the writes planned by `resources`), whatever the driver. The other driver, `systemd`
//! (`--systemd-cgroup`), has systemd make and remove the cgroup as a transient unit.

mod bpf;
mod cgroupfs;
mod convert;
mod devices;
mod fs;
mod hierarchy;
mod layout;
mod manager;
mod oom;
mod resources;
mod self_join;
mod stats;
mod sub_cgroup;
mod systemd;
mod update;
mod v1;
mod v2;
mod writes;

#[cfg(test)]
mod root_tests;

use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use anyhow::Result;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::sys::SignalNumber;

pub use convert::updated_record;
pub use devices::container_device_rules;
pub use layout::is_unified_host;
pub use oom::OomWatch;
pub use self_join::{Joining, SelfJoin};
pub use stats::{Event, Stats};
pub use sub_cgroup::SubCgroups;
pub use update::UpdateArgs;

/// cgroup v1 or v2 file formats.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

/// The container's cgroup in one hierarchy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CgroupDir {
    pub version: Version,
    /// Where the hierarchy is mounted.
    pub mount_point: PathBuf,
    /// The container's cgroup directory.
    pub path: PathBuf,
    /// v1: the hierarchy's controllers (`name=systemd` included). v2: empty; the directory's
    /// cgroup.controllers is read when needed.
    pub controllers: Vec<String>,
    /// Whether berth made `path`: delete removes only those.
    pub created: bool,
}

/// Everything later commands need to find the cgroup again; stored in the container state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CgroupHandle {
    /// Whose formats the container's cgroup follows: `v1` (also on hybrid hosts, with a `v2`
    /// dir for the cgroup2 mount) or `v2`.
    #[serde(alias = "driver")]
    pub hierarchy: Version,
    /// The cgroup path as resolved from `linux.cgroupsPath` (before per-hierarchy placement).
    pub cgroups_path: String,
    pub dirs: Vec<CgroupDir>,
    /// Made by a rootless berth (see `CgroupOptions`): `update` leaves device rules out too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rootless: bool,
    /// The systemd driver's unit; None: the cgroupfs driver (berth makes the directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<systemd::Unit>,
}

/// What the lifecycle does with a container's cgroup.
pub trait CgroupManager {
    /// Creates the cgroup in every hierarchy, remembering which directories already existed.
    /// On error, `remove` undoes what was made.
    fn create(&mut self) -> Result<()>;
    /// A directory fd of the cgroup2 cgroup for clone3's CLONE_INTO_CGROUP (after `create`);
    /// None on pure v1 and when the cgroup existed before. The child is then only in that
    /// hierarchy: see `self_join_for_init`.
    fn clone_into_fd(&self) -> Option<BorrowedFd<'_>>;
    /// Moves `pid` into the cgroup in every hierarchy (with the systemd driver, the first
    /// process starts the unit).
    fn add_process(&self, pid: i32) -> Result<()>;
    /// For the init about to be cloned (after `create`): what it writes to first, to move
    /// itself into every hierarchy `clone_into_fd` does not put it in. Nothing with the
    /// systemd driver, where the unit must be started first (`add_init`).
    fn self_join_for_init(&self) -> Result<SelfJoin>;
    /// The runtime's part of moving the cloned init in, after its `self_join_for_init`: with
    /// the systemd driver, starts the unit with the init in it. Returns what the init then
    /// writes to, to move itself into the hierarchies it is still not in (on cgroup v1, those
    /// systemd leaves alone: cpuset, freezer, ...).
    fn add_init(&self, pid: i32) -> Result<SelfJoin>;
    /// How an exec'd process about to be cloned gets into the cgroup, or into the sub-cgroups
    /// `exec --cgroup` names. None with the systemd driver run without privilege over the
    /// host: the runtime moves it with `add_exec_process`, which may ask systemd.
    fn joining_for_exec(&self, sub: &SubCgroups) -> Result<Option<Joining>>;
    /// Moves an exec'd process into the cgroup, or the sub-cgroups `exec --cgroup` names.
    fn add_exec_process(&self, pid: i32, sub: &SubCgroups) -> Result<()>;
    /// Before an unprivileged exec enters the container's user namespace: connects to what
    /// `add_exec_process` may need from outside it (the user's systemd, whose bus would not
    /// know berth in there). A failure shows when it is needed.
    fn prepare_exec_from_user_namespace(&self);
    /// Applies every field that is set (see `convert::without_unset`) at create, after checking
    /// them all. On error, `remove` undoes what was made.
    fn apply(&self, resources: &LinuxResources) -> Result<()>;
    /// `berth update`: like `apply`, but leaves the device rules alone (as runc does: they
    /// were composed with the defaults at create) and changes nothing when it fails.
    fn update(&self, resources: &LinuxResources) -> Result<()>;
    fn freeze(&self) -> Result<()>;
    fn thaw(&self) -> Result<()>;
    fn is_frozen(&self) -> Result<bool>;
    /// runc-compatible statistics for `events`.
    fn stats(&self) -> Result<Stats>;
    /// A pollable descriptor for `events`: readable when the container runs out of memory.
    fn watch_oom(&self) -> Result<OomWatch>;
    /// Every process in the cgroup and the cgroups below it.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Signals every process (cgroup.kill for SIGKILL on v2 where the kernel has it).
    fn kill_all(&self, signal: SignalNumber) -> Result<()>;
    /// Removes the directories berth created (and cgroups the container made below them).
    fn remove(&self) -> Result<()>;
    fn handle(&self) -> CgroupHandle;
}

/// The cgroup part of `berth features`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CgroupFeatures {
    pub v1: bool,
    pub v2: bool,
    pub systemd: bool,
    pub systemd_user: bool,
    pub rdma: bool,
}

pub fn features() -> CgroupFeatures {
    CgroupFeatures {
        v1: true,
        v2: true,
        systemd: true,
        systemd_user: true,
        rdma: true,
    }
}

/// How berth was asked to manage cgroups.
#[derive(Clone, Copy, Debug, Default)]
pub struct CgroupOptions {
    /// --systemd-cgroup: cgroupsPath is `slice:prefix:name` for systemd.
    pub systemd: bool,
    /// berth has no privilege over the host's cgroups (see `crate::rootless`).
    pub rootless: bool,
}

/// Plans the container's cgroup on this host (nothing is created until `create`).
///
/// Rootless without a cgroupsPath, a cgroup that cannot be created is done without, as runc
/// does: the container runs in berth's own cgroup and may set no limits. A given cgroupsPath
/// names one that was delegated, so failing to create it stays an error.
pub fn for_new_container(
    cgroups_path: Option<&str>,
    container_id: &str,
    options: CgroupOptions,
) -> Result<Box<dyn CgroupManager>> {
    let (mut handle, driver) = if options.systemd {
        let (handle, session) = systemd::plan(cgroups_path, container_id, options.rootless)?;
        (handle, manager::Driver::Systemd(Box::new(session)))
    } else {
        let handle = cgroupfs::plan(cgroups_path, container_id)?;
        (handle, manager::Driver::Cgroupfs)
    };
    handle.rootless = options.rootless;
    Ok(Box::new(manager::Cgroup {
        handle,
        driver,
        unified_fd: None,
        optional: options.rootless && !options.systemd && cgroups_path.is_none_or(str::is_empty),
    }))
}

/// Rebuilds the manager of an existing container from its persisted handle.
pub fn from_handle(handle: &CgroupHandle) -> Result<Box<dyn CgroupManager>> {
    let driver = match &handle.systemd {
        Some(unit) => manager::Driver::Systemd(Box::new(systemd::Session::existing(unit))),
        None => manager::Driver::Cgroupfs,
    };
    Ok(Box::new(manager::Cgroup {
        handle: handle.clone(),
        driver,
        unified_fd: None,
        optional: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_without_systemd_running_is_a_clear_error() {
        if std::path::Path::new("/run/systemd/system").exists() {
            return; // a systemd host: the driver works there (tools/vm/test-systemd)
        }
        let systemd = CgroupOptions {
            systemd: true,
            rootless: false,
        };
        let err = for_new_container(Some("system.slice:berth:c1"), "c1", systemd)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("systemd is not running"), "{err}");
        assert!(err.contains("without --systemd-cgroup"), "{err}");
    }

    #[test]
    fn features_json() {
        let json = serde_json::to_value(features()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"v1": true, "v2": true, "systemd": true,
                               "systemdUser": true, "rdma": true})
        );
    }
}
