//! One entry of `mounts`: resolve the destination inside the rootfs, build the mount detached
//! (open_tree / fsopen+fsmount), set its attributes, attach it onto the resolved handle with
//! move_mount, and check that the destination path now shows exactly that mount.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::sys::statfs::PROC_SUPER_MAGIC;
use oci_spec::runtime::Mount;

use super::options::{MountPlan, parse_options};
use super::resolve::{Kind, clean_components, ensure_in_root, open_path_in_root};
use super::sys::{self, MountAttr};
use crate::lsm::selinux;

/// A mount whose read-only flag must wait until the rootfs is otherwise complete (a read-only
/// /dev still needs its device nodes).
pub struct DeferredReadonly(pub std::path::PathBuf);

/// Perform one config mount. `host_clone` is the clone of its bind source the runtime made, if
/// it made one (see `host_sources`); a new filesystem gets
/// `mount_label` (see [`selinux::labelled_mount_data`]); a `cgroup` mount shows the cgroup
/// namespace's root when `cgroup_namespace`. Returns a deferred read-only remount if one is
/// needed.
pub fn mount_entry(
    root: BorrowedFd<'_>,
    entry: &Mount,
    host_clone: Option<OwnedFd>,
    mount_label: Option<&str>,
    cgroup_namespace: bool,
) -> Result<Option<DeferredReadonly>> {
    let dest = entry.destination();
    let mut plan = parse_options(entry.options().as_deref().unwrap_or_default());
    let typ = entry.typ().as_deref();
    plan.bind |= typ == Some("bind");

    if plan.remount {
        return remount(root, dest, &plan).map(|()| None);
    }
    let mut deferred = None;
    if clean_components(dest) == ["dev"] && plan.attr.set & libc::MOUNT_ATTR_RDONLY != 0 {
        plan.attr.set &= !libc::MOUNT_ATTR_RDONLY;
        deferred = Some(DeferredReadonly(dest.to_owned()));
    }

    let (detached, kind) = if plan.bind {
        let source = entry
            .source()
            .as_deref()
            .context("a bind mount needs a source")?;
        detached_bind(source, &plan, host_clone)?
    } else {
        let typ = typ.context("type is required for a non-bind mount")?;
        if typ == "cgroup" {
            return super::cgroup::mount_cgroup(root, entry, &plan, mount_label, cgroup_namespace)
                .map(|()| deferred);
        }
        if matches!(typ, "proc" | "sysfs") {
            refuse_symlink_destination(root, dest, typ)?;
        }
        let source = entry
            .source()
            .as_deref()
            .map(Path::new)
            .unwrap_or(Path::new(typ));
        if typ == "tmpfs" {
            inherit_destination_mode(root, dest, &mut plan.data)?;
        }
        plan.data = selinux::labelled_mount_data(typ, std::mem::take(&mut plan.data), mount_label);
        (new_filesystem(typ, source, &plan)?, Kind::Dir)
    };
    let target = ensure_in_root(root, dest, kind, true)?;
    let inside = path_inside(root, target.as_fd())?;
    let source_is_proc = plan.bind
        && entry.source().as_deref().is_some_and(|s| {
            nix::sys::statfs::statfs(s).is_ok_and(|fs| fs.filesystem_type() == PROC_SUPER_MAGIC)
        });
    check_proc_destination(&inside, typ, source_is_proc)?;
    if plan.tmpcopyup {
        super::copyup::copy_dir_contents(target.as_fd(), detached.as_fd())
            .context("tmpcopyup: copy the destination's contents into the tmpfs")?;
    }
    attach(root, &detached, &target, dest)?;
    apply_propagation(detached.as_fd(), &plan)?;
    Ok(deferred)
}

/// A tmpfs whose options give no `mode=` gets the mode of the directory it covers, as runc
/// gives it (`podman --systemd` mounts /run this way); over a new directory it keeps the
/// kernel's default, 1777.
fn inherit_destination_mode(
    root: BorrowedFd<'_>,
    dest: &Path,
    data: &mut Vec<(String, Option<String>)>,
) -> Result<()> {
    if data.iter().any(|(key, _)| key == "mode") {
        return Ok(());
    }
    let covered = match open_path_in_root(root, dest, true) {
        Ok(fd) => fstat(fd.as_fd()).context("fstat the tmpfs destination")?,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("openat2 {} in the rootfs", dest.display()));
        }
    };
    let mode = format!("{:o}", covered.st_mode & 0o7777);
    data.insert(0, ("mode".to_owned(), Some(mode)));
    Ok(())
}

/// Where `fd` ended up, as a path inside `root` (both resolved by the kernel through the host's
/// /proc, which the container cannot influence before pivot_root).
fn path_inside(root: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<PathBuf> {
    let link = |fd: BorrowedFd<'_>| {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .context("readlink /proc/self/fd")
    };
    let (root_path, path) = (link(root)?, link(fd)?);
    let inside = path
        .strip_prefix(&root_path)
        .context("mount destination outside the rootfs")?;
    Ok(Path::new("/").join(inside))
}

/// Files under /proc that may be mounted over (what lxcfs provides), as runc allows.
const PROC_MOUNTABLE: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/pressure/cpu",
    "/proc/pressure/io",
    "/proc/pressure/memory",
    "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/kernel/random/boot_id",
];

/// Refuse mounts that would hide or replace parts of /proc berth and the kernel rely on (e.g.
/// /proc/self/attr for LSM labels), the CVE-2019-16884 class. `/proc` itself takes procfs only.
pub fn check_proc_destination(
    inside: &Path,
    typ: Option<&str>,
    source_is_proc: bool,
) -> Result<()> {
    if inside == Path::new("/proc") {
        if typ == Some("proc") || source_is_proc {
            return Ok(());
        }
        bail!("/proc can only be mounted with procfs");
    }
    if inside.starts_with("/proc") && !PROC_MOUNTABLE.iter().any(|p| inside == Path::new(p)) {
        bail!(
            "{} cannot be mounted because it is inside /proc",
            inside.display()
        );
    }
    Ok(())
}

/// proc and sysfs must never be mounted through a symlink (runc refuses too): an image could
/// otherwise point /proc somewhere the runtime later trusts as procfs.
fn refuse_symlink_destination(root: BorrowedFd<'_>, dest: &Path, typ: &str) -> Result<()> {
    match open_path_in_root(root, dest, false) {
        Ok(fd) => {
            let st = fstat(fd.as_fd()).context("fstat mount destination")?;
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
                bail!(
                    "refusing to mount {typ} on {}: it is a symlink",
                    dest.display()
                );
            }
            Ok(())
        }
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e).context("open mount destination"),
    }
}

/// A detached clone of the bind source (`host_clone`, when the runtime made it already) with the
/// requested attributes applied, plus the kind of destination it needs.
fn detached_bind(
    source: &Path,
    plan: &MountPlan,
    host_clone: Option<OwnedFd>,
) -> Result<(OwnedFd, Kind)> {
    let detached = match host_clone {
        Some(clone) => clone,
        None => clone_bind_source(source, plan.recursive)?,
    };
    let st = fstat(detached.as_fd()).context("fstat bind source")?;
    let kind = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        Kind::Dir
    } else {
        Kind::File
    };
    set_attributes(detached.as_fd(), plan)?;
    // sync/dirsync/mand belong to the superblock, which a bind mount shares with its source;
    // like runc we do not change them for binds.
    Ok((detached, kind))
}

/// open_tree(OPEN_TREE_CLONE [| AT_RECURSIVE]) of `source`: a detached copy of the mount (tree).
pub fn clone_bind_source(source: &Path, recursive: bool) -> Result<OwnedFd> {
    // The source is a host path chosen by the config author, so following symlinks is intended.
    let source_fd = open(source, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .with_context(|| format!("open bind source {}", source.display()))?;
    let mut flags = libc::OPEN_TREE_CLONE;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    sys::open_tree_fd(source_fd.as_fd(), flags)
        .with_context(|| format!("open_tree {}", source.display()))
}

fn set_attributes(mnt: BorrowedFd<'_>, plan: &MountPlan) -> Result<()> {
    if !plan.attr.is_empty() {
        sys::mount_setattr_fd(mnt, false, plan.attr).context("mount_setattr")?;
    }
    if !plan.rec_attr.is_empty() {
        sys::mount_setattr_fd(mnt, true, plan.rec_attr).context("mount_setattr AT_RECURSIVE")?;
    }
    Ok(())
}

/// A detached mount of a new `typ` filesystem configured with the plan's options.
pub fn new_filesystem(typ: &str, source: &Path, plan: &MountPlan) -> Result<OwnedFd> {
    let ctx = sys::fsopen(typ).with_context(|| format!("fsopen {typ}"))?;
    let ctx = ctx.as_fd();
    let source = source.to_str().context("mount source is not valid UTF-8")?;
    sys::fsconfig_set_string(ctx, "source", source).context("fsconfig source")?;
    for flag in &plan.sb_flags {
        sys::fsconfig_set_flag(ctx, flag).with_context(|| format!("fsconfig {flag}"))?;
    }
    for (key, value) in &plan.data {
        match value {
            Some(value) => sys::fsconfig_set_string(ctx, key, value),
            None => sys::fsconfig_set_flag(ctx, key),
        }
        .with_context(|| format!("{typ} option {key:?}"))?;
    }
    sys::fsconfig_create(ctx).with_context(|| format!("create {typ} filesystem"))?;
    let mnt = sys::fsmount(ctx, plan.attr.set).with_context(|| format!("fsmount {typ}"))?;
    if !plan.rec_attr.is_empty() {
        sys::mount_setattr_fd(mnt.as_fd(), true, plan.rec_attr)
            .context("mount_setattr AT_RECURSIVE")?;
    }
    Ok(mnt)
}

/// Attach `detached` onto the exact object `target` refers to, then check that `dest` resolved
/// afresh inside the rootfs now lands on that mount (nothing swapped underneath, the
/// CVE-2021-30465 class).
pub fn attach(
    root: BorrowedFd<'_>,
    detached: &OwnedFd,
    target: &OwnedFd,
    dest: &Path,
) -> Result<()> {
    sys::move_mount_fd(detached.as_fd(), target.as_fd())
        .with_context(|| format!("move_mount onto {}", dest.display()))?;
    let expected = sys::mount_id(detached.as_fd()).context("statx the new mount")?;
    let now = open_path_in_root(root, dest, true)
        .with_context(|| format!("reopen {} after mounting", dest.display()))?;
    let found = sys::mount_id(now.as_fd()).context("statx the mount destination")?;
    if found != expected {
        bail!(
            "{} does not show the new mount after mounting (destination swapped?)",
            dest.display()
        );
    }
    Ok(())
}

pub fn apply_propagation(mnt: BorrowedFd<'_>, plan: &MountPlan) -> Result<()> {
    for &(kind, recursive) in &plan.propagation {
        let attr = MountAttr {
            propagation: kind.bits(),
            ..Default::default()
        };
        sys::mount_setattr_fd(mnt, recursive, attr)
            .with_context(|| format!("set propagation {kind:?}"))?;
    }
    Ok(())
}

/// The `remount` option: change an existing mount at `dest` in place.
fn remount(root: BorrowedFd<'_>, dest: &Path, plan: &MountPlan) -> Result<()> {
    let target = open_path_in_root(root, dest, true)
        .with_context(|| format!("open remount destination {}", dest.display()))?;
    if plan.bind {
        set_attributes(target.as_fd(), plan)?;
    } else {
        // Superblock options need the classic remount; the magic link is resolved through the
        // host's /proc, which the container cannot influence before pivot_root.
        let proc_path = format!("/proc/self/fd/{}", target.as_raw_fd());
        let data = plan.data_string();
        mount(
            None::<&str>,
            proc_path.as_str(),
            None::<&str>,
            MsFlags::MS_REMOUNT | plan.ms_flags(),
            Some(data.as_str()),
        )
        .with_context(|| format!("remount {}", dest.display()))?;
    }
    apply_propagation(target.as_fd(), plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_procfs_and_lxcfs_style_files_go_on_proc() {
        let check = |path: &str, typ: Option<&str>, proc_source: bool| {
            check_proc_destination(Path::new(path), typ, proc_source)
        };
        assert!(check("/proc", Some("proc"), false).is_ok());
        assert!(check("/proc", Some("bind"), true).is_ok());
        assert!(check("/proc", Some("tmpfs"), false).is_err());
        assert!(check("/proc/cpuinfo", Some("bind"), false).is_ok());
        assert!(check("/proc/self/attr", Some("tmpfs"), false).is_err());
        assert!(check("/proc/sys", Some("bind"), false).is_err());
        assert!(check("/procfoo", Some("tmpfs"), false).is_ok());
        assert!(check("/sys", Some("sysfs"), false).is_ok());
    }
}
