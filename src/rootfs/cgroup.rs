//! Mounts of type `cgroup`. On a cgroup2 host this is a plain cgroup2 mount. On a v1 (or
//! hybrid) host, like runc, the destination gets a tmpfs holding one mount per v1 hierarchy,
//! each showing the container's own cgroup of that hierarchy: in a cgroup namespace a new mount
//! of the hierarchy, which the kernel roots at the namespace's root (the namespace shows no
//! path to the container's directory in the host's mount); otherwise a bind mount of that
//! directory from the host's mount. The entry's options (`ro`) are the hierarchies'; the tmpfs
//! stays writable, as in runc, so that a systemd inside can add its own directories
//! (`podman --systemd`).

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::runtime::Mount;
use procfs::process::{MountInfo, Process};

use super::devices::create_link;
use super::mount::{apply_propagation, attach, new_filesystem};
use super::options::MountPlan;
use super::resolve::{Kind, ensure_in_root};
use super::sys;
use crate::cgroups;
use crate::lsm::selinux;

/// Mount a `cgroup` entry at its destination inside `root`; the v1 tmpfs gets `mount_label`.
pub fn mount_cgroup(
    root: BorrowedFd<'_>,
    entry: &Mount,
    plan: &MountPlan,
    mount_label: Option<&str>,
    cgroup_namespace: bool,
) -> Result<()> {
    let dest = entry.destination();
    if cgroups::is_unified_host()? {
        let mnt = new_filesystem("cgroup2", Path::new("cgroup"), plan)?;
        let target = ensure_in_root(root, dest, Kind::Dir, true)?;
        attach(root, &mnt, &target, dest)?;
        return apply_propagation(mnt.as_fd(), plan);
    }

    let mut tmpfs_plan = MountPlan {
        attr: plan.attr,
        data: selinux::labelled_mount_data(
            "tmpfs",
            vec![("mode".into(), Some("755".into()))],
            mount_label,
        ),
        ..Default::default()
    };
    tmpfs_plan.attr.set &= !libc::MOUNT_ATTR_RDONLY;
    let tmpfs = new_filesystem("tmpfs", Path::new("tmpfs"), &tmpfs_plan)?;
    let target = ensure_in_root(root, dest, Kind::Dir, true)?;
    attach(root, &tmpfs, &target, dest)?;

    for hierarchy in own_v1_cgroups()? {
        let name = &hierarchy.name;
        let sub = dest.join(name);
        if cgroup_namespace {
            mount_hierarchy(root, &hierarchy.controllers, &sub, plan)
                .with_context(|| format!("mount cgroup {}", hierarchy.controllers.join(",")))?;
        } else {
            bind_hierarchy(root, &hierarchy.host_dir, &sub, plan)
                .with_context(|| format!("bind cgroup {}", hierarchy.host_dir.display()))?;
        }
        // Co-mounted controllers ("cpu,cpuacct") also get one link per controller, like runc.
        if name.contains(',') {
            for part in name.split(',') {
                create_link(root, name, &dest.join(part).to_string_lossy())?;
            }
        }
    }
    apply_propagation(tmpfs.as_fd(), plan)
}

/// A new mount of the v1 hierarchy of `controllers` ("memory", "name=systemd") at `dest`.
fn mount_hierarchy(
    root: BorrowedFd<'_>,
    controllers: &[String],
    dest: &Path,
    plan: &MountPlan,
) -> Result<()> {
    let data = controllers
        .iter()
        .map(|controller| match controller.split_once('=') {
            Some((key, value)) => (key.to_owned(), Some(value.to_owned())),
            None => (controller.clone(), None),
        });
    let hierarchy_plan = MountPlan {
        attr: plan.attr,
        data: data.collect(),
        ..Default::default()
    };
    let mnt = new_filesystem("cgroup", Path::new("cgroup"), &hierarchy_plan)?;
    let target = ensure_in_root(root, dest, Kind::Dir, true)?;
    attach(root, &mnt, &target, dest)
}

fn bind_hierarchy(
    root: BorrowedFd<'_>,
    source: &Path,
    dest: &Path,
    plan: &MountPlan,
) -> Result<()> {
    let source_fd = nix::fcntl::open(
        source,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("open {}", source.display()))?;
    let clone = sys::open_tree_fd(
        source_fd.as_fd(),
        libc::OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32,
    )
    .context("open_tree")?;
    if !plan.attr.is_empty() {
        sys::mount_setattr_fd(clone.as_fd(), true, plan.attr).context("mount_setattr")?;
    }
    let target = ensure_in_root(root, dest, Kind::Dir, true)?;
    attach(root, &clone, &target, dest)
}

/// A v1 hierarchy this process belongs to.
struct V1Hierarchy {
    /// Its directory name under /sys/fs/cgroup ("memory", "cpu,cpuacct").
    name: String,
    /// As /proc/self/cgroup names them ("cpu", "cpuacct"; "name=systemd").
    controllers: Vec<String>,
    /// This process's cgroup in the host's mount of the hierarchy.
    host_dir: PathBuf,
}

/// Every v1 hierarchy this process belongs to, in the order of the host's mounts (as runc).
fn own_v1_cgroups() -> Result<Vec<V1Hierarchy>> {
    let me = Process::myself().context("open /proc/self")?;
    let mounts = me.mountinfo().context("read /proc/self/mountinfo")?;
    let cgroups = me.cgroups().context("read /proc/self/cgroup")?;
    let mut found: Vec<V1Hierarchy> = Vec::new();
    // A hierarchy mounted more than once is bound from its first mount only.
    let mut bound = Vec::new();
    for mi in mounts.0.iter().filter(|mi| mi.fs_type == "cgroup") {
        let Some(cg) = cgroups.0.iter().find(|cg| {
            !cg.controllers.is_empty()
                && !bound.contains(&cg.hierarchy)
                && has_controllers(mi, &cg.controllers)
        }) else {
            continue;
        };
        let Some(name) = mi.mount_point.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let relative = Path::new(&cg.pathname)
            .strip_prefix(&mi.root)
            .unwrap_or(Path::new(&cg.pathname));
        let relative = relative.strip_prefix("/").unwrap_or(relative);
        if !found.iter().any(|hierarchy| hierarchy.name == name) {
            bound.push(cg.hierarchy);
            found.push(V1Hierarchy {
                name: name.to_owned(),
                controllers: cg.controllers.clone(),
                host_dir: mi.mount_point.join(relative),
            });
        }
    }
    Ok(found)
}

/// Whether the hierarchy mounted at `mi` carries all `controllers` ("name=systemd" included).
fn has_controllers(mi: &MountInfo, controllers: &[String]) -> bool {
    controllers.iter().all(|c| match c.split_once('=') {
        Some((key, value)) => mi.super_options.get(key).and_then(|v| v.as_deref()) == Some(value),
        None => mi.super_options.contains_key(c.as_str()),
    })
}
