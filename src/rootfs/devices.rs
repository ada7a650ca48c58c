//! Device nodes and the standard /dev links, created inside the rootfs without ever following
//! an entry the image put there (an image's /dev/null may be a symlink to a host path: crun's
//! /dev symlink class). Existing non-directory entries are unlinked and recreated.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open};
use nix::sys::stat::{Mode, SFlag, fstatat, makedev, mknodat, umask};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, symlinkat, unlinkat};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use super::mount::attach;
use super::resolve::{clean_components, create_file_at, open_path_in_root, parent_in_root};
use super::sys;

/// A device node to create inside the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceNode {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// How device nodes are made: mknod needs real root; in a user namespace the host's node is
/// bind-mounted instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStrategy {
    Mknod,
    BindFromHost,
}

/// runc's default device list: all 0666, owned by root.
pub fn default_devices() -> Vec<DeviceNode> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| DeviceNode {
        path: Path::new("/dev").join(name),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// One `linux.devices` entry as a node to create.
pub fn config_device(index: usize, dev: &LinuxDevice) -> Result<DeviceNode> {
    let field = format!("linux.devices[{index}]");
    let kind = match dev.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => bail!("{field}.type: \"a\" is only valid for cgroup rules"),
    };
    let number = |n: i64, what: &str| {
        u64::try_from(n).with_context(|| format!("{field}.{what}: {n} is negative"))
    };
    if clean_components(dev.path()).is_empty() {
        bail!("{field}.path: {:?} does not name a file", dev.path());
    }
    Ok(DeviceNode {
        path: dev.path().clone(),
        kind,
        major: number(dev.major(), "major")?,
        minor: number(dev.minor(), "minor")?,
        // fileMode may carry type bits; only the permission bits are ours to apply.
        mode: dev.file_mode().unwrap_or(0o666) & 0o7777,
        uid: dev.uid().unwrap_or(0),
        gid: dev.gid().unwrap_or(0),
    })
}

/// The nodes to create: the defaults, overridden by `linux.devices` entries with the same path.
pub fn devices_for(spec: &Spec) -> Result<Vec<DeviceNode>> {
    let configured: Vec<DeviceNode> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, d)| config_device(i, d))
        .collect::<Result<_>>()?;
    let mut nodes: Vec<DeviceNode> = default_devices()
        .into_iter()
        .filter(|d| {
            !configured
                .iter()
                .any(|c| clean_components(&c.path) == clean_components(&d.path))
        })
        .collect();
    nodes.extend(configured);
    Ok(nodes)
}

/// runc leaves /dev alone when the config bind-mounts it from elsewhere.
pub fn dev_is_bind_mounted(mounts: &[Mount]) -> bool {
    mounts
        .iter()
        .any(|m| super::is_bind_mount(m) && clean_components(m.destination()) == ["dev"])
}

/// Remove whatever non-directory entry `name` is (a symlink is removed, never followed).
pub fn remove_existing(parent: BorrowedFd<'_>, name: &OsString) -> Result<()> {
    match fstatat(parent, Path::new(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("fstatat {name:?}")),
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
            bail!("{name:?} is a directory")
        }
        Ok(_) => unlinkat(parent, Path::new(name), UnlinkatFlags::NoRemoveDir)
            .with_context(|| format!("unlink existing {name:?}")),
    }
}

/// Create one device node inside `root`.
pub fn create_device(
    root: BorrowedFd<'_>,
    node: &DeviceNode,
    strategy: DeviceStrategy,
) -> Result<()> {
    let (parent, name) = parent_in_root(root, &node.path)?;
    remove_existing(parent.as_fd(), &name)?;
    match strategy {
        DeviceStrategy::Mknod => {
            // The umask must not trim the configured mode; berth is single-threaded.
            let old = umask(Mode::empty());
            let made = mknodat(
                parent.as_fd(),
                Path::new(&name),
                node.kind,
                Mode::from_bits_truncate(node.mode),
                makedev(node.major, node.minor),
            );
            umask(old);
            made.context("mknodat")?;
            fchownat(
                parent.as_fd(),
                Path::new(&name),
                Some(Uid::from_raw(node.uid)),
                Some(Gid::from_raw(node.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .context("fchownat")?;
        }
        DeviceStrategy::BindFromHost => {
            let host = open(&node.path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .with_context(|| format!("open host device {}", node.path.display()))?;
            let detached = sys::open_tree_fd(host.as_fd(), libc::OPEN_TREE_CLONE)
                .context("open_tree host device")?;
            let target = create_file_at(parent.as_fd(), &name)?;
            attach(root, &detached, &target, &node.path)?;
        }
    }
    Ok(())
}

/// The standard links: /dev/fd, stdio, /dev/ptmx -> pts/ptmx, and /dev/core when the host has
/// /proc/kcore (as runc does).
pub fn default_links() -> Vec<(&'static str, &'static str)> {
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    links
}

/// Create `link` -> `target` inside `root`, replacing any non-directory entry.
pub fn create_link(root: BorrowedFd<'_>, target: &str, link: &str) -> Result<()> {
    let (parent, name) = parent_in_root(root, Path::new(link))?;
    remove_existing(parent.as_fd(), &name)?;
    symlinkat(target, parent.as_fd(), Path::new(&name)).with_context(|| format!("symlink {link}"))
}

/// Check that `path` inside `root` is a real character device `major:minor` (not a symlink or
/// anything else an image could have placed there) and return an O_PATH handle on it.
pub fn verified_char_device(
    root: BorrowedFd<'_>,
    path: &Path,
    major: u64,
    minor: u64,
) -> Result<std::os::fd::OwnedFd> {
    let fd = open_path_in_root(root, path, false)
        .with_context(|| format!("open {} in the container", path.display()))?;
    let st =
        nix::sys::stat::fstat(fd.as_fd()).with_context(|| format!("fstat {}", path.display()))?;
    let is_chr = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    let rdev = st.st_rdev;
    if !is_chr || nix::sys::stat::major(rdev) != major || nix::sys::stat::minor(rdev) != minor {
        bail!(
            "{} is not the character device {major}:{minor}",
            path.display()
        );
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxDeviceBuilder, MountBuilder, SpecBuilder};

    #[test]
    fn config_devices_override_defaults_by_path() {
        let dev = LinuxDeviceBuilder::default()
            .path("/dev/null")
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .file_mode(0o20600u32)
            .uid(7u32)
            .build()
            .unwrap();
        let fuse = LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .build()
            .unwrap();
        let linux = LinuxBuilder::default()
            .devices(vec![dev, fuse])
            .build()
            .unwrap();
        let spec = SpecBuilder::default().linux(linux).build().unwrap();
        let nodes = devices_for(&spec).unwrap();
        assert_eq!(nodes.len(), 7);
        let null: Vec<_> = nodes
            .iter()
            .filter(|n| n.path == Path::new("/dev/null"))
            .collect();
        assert_eq!(null.len(), 1);
        assert_eq!((null[0].mode, null[0].uid), (0o600, 7));
        assert!(
            nodes
                .iter()
                .any(|n| n.path == Path::new("/dev/fuse") && n.mode == 0o666)
        );
    }

    #[test]
    fn invalid_config_devices_name_the_field() {
        let all = LinuxDeviceBuilder::default()
            .path("/dev/x")
            .typ(LinuxDeviceType::A)
            .build()
            .unwrap();
        assert!(
            config_device(2, &all)
                .unwrap_err()
                .to_string()
                .contains("linux.devices[2].type")
        );
        let neg = LinuxDeviceBuilder::default()
            .path("/dev/x")
            .typ(LinuxDeviceType::B)
            .major(-1)
            .build()
            .unwrap();
        assert!(
            config_device(0, &neg)
                .unwrap_err()
                .to_string()
                .contains("major")
        );
        let root = LinuxDeviceBuilder::default()
            .path("/")
            .typ(LinuxDeviceType::C)
            .build()
            .unwrap();
        assert!(config_device(0, &root).is_err());
    }

    #[test]
    fn dev_bind_detection() {
        let bind = MountBuilder::default()
            .destination("/dev/")
            .typ("none")
            .source("/dev")
            .options(vec!["rbind".to_string()])
            .build()
            .unwrap();
        let tmpfs = MountBuilder::default()
            .destination("/dev")
            .typ("tmpfs")
            .build()
            .unwrap();
        assert!(dev_is_bind_mounted(&[tmpfs.clone(), bind]));
        assert!(!dev_is_bind_mounted(&[tmpfs]));
    }
}
