//! The container's root filesystem, set up inside the init process (already in its new mount
//! namespace, single-threaded, real root) in three phases around the hooks and the console:
//! [`prepare`] (propagation, rootfs bind, config mounts, devices), [`PreparedRootfs::enter`]
//! (pivot_root or MS_MOVE+chroot) and [`EnteredRootfs::finish`] (root.readonly, sysctl,
//! readonlyPaths, maskedPaths, the root's propagation). A container without a mount namespace of
//! its own gets the same in the runtime's, on a stack of mounts berth can undo (see
//! [`shared_namespace`]).
//!
//! Every path inside the rootfs is resolved with [`resolve`] (openat2 RESOLVE_IN_ROOT) and every
//! mount is attached with move_mount onto the resolved handle, so neither a symlink in the
//! image nor a swap during setup can make berth mount or write outside the container.
//!
//! The one part that runs in the runtime instead, before the init is cloned, is
//! [`host_sources`]: bind sources that need the runtime's privilege (idmapped mounts, and the
//! sources of a container with its own user namespace).
//!
//! `linux.mountLabel` becomes the SELinux `context=` of every filesystem berth creates that can
//! take one (config mounts, the cgroup v1 tmpfs, the tmpfs over masked directories), as in runc.

mod cgroup;
mod copyup;
mod devices;
mod harden;
mod host_sources;
mod idmap;
mod mount;
mod options;
mod propagation;
pub mod resolve;
mod shared_namespace;
pub mod sys;
pub mod sysctl;

pub use devices::devices_for;
pub use host_sources::{HostClones, OtherBinds, clone_bind_sources};
pub use options::SUPPORTED_OPTIONS as SUPPORTED_MOUNT_OPTIONS;
pub use shared_namespace::RootfsBase;

#[cfg(test)]
mod root_tests;

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::sys::statfs::{DEVPTS_SUPER_MAGIC, fstatfs};
use nix::unistd::{chdir, chroot, fchdir, pivot_root};
use oci_spec::runtime::{Mount, Spec};

use devices::{
    DeviceStrategy, create_device, create_link, default_links, dev_is_bind_mounted, remove_existing,
};
use mount::{DeferredReadonly, attach, mount_entry};
use propagation::RootPropagation;
use resolve::{create_file_at, parent_in_root};
use sys::MountAttr;

use crate::trace;

pub struct RootfsOptions<'a> {
    /// Absolute, canonical host path of the bundle's root.path.
    pub rootfs: &'a Path,
    /// --no-pivot: MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// False when the config lists no mount namespace: the init is in the runtime's.
    pub own_mount_namespace: bool,
    /// The container has a cgroup namespace (new or joined), entered by `before_cgroup_use`.
    pub cgroup_namespace: bool,
    /// Mounts the runtime adds after the config's own (e.g. the NOTIFY_SOCKET directory).
    pub extra_mounts: Vec<Mount>,
    /// The bind sources the runtime cloned for `mounts` entries.
    pub host_clones: HostClones,
    /// Called once, before the first step that depends on the init's cgroup: a `cgroup` mount
    /// (it shows the init's cgroups) or the device nodes (the devices cgroup may refuse mknod).
    pub before_cgroup_use: Option<Box<dyn FnOnce() -> Result<()> + 'a>>,
}

/// The rootfs with every mount and device in place, not yet entered.
pub struct PreparedRootfs {
    rootfs: PathBuf,
    root: OwnedFd,
    no_pivot: bool,
    own_mount_namespace: bool,
    propagation: RootPropagation,
    deferred: Vec<DeferredReadonly>,
}

/// The process now lives inside the container root; masking and read-only remounts remain.
pub struct EnteredRootfs {
    own_mount_namespace: bool,
    propagation: RootPropagation,
    deferred: Vec<DeferredReadonly>,
}

const RDONLY: MountAttr = MountAttr {
    set: libc::MOUNT_ATTR_RDONLY,
    clear: 0,
    propagation: 0,
};

/// Bundle-loading checks of everything the rootfs setup reads from the config.
pub fn validate(spec: &Spec) -> Result<()> {
    idmap::validate(spec)?;
    harden::validate(spec)?;
    sysctl::validate(spec)
}

/// Whether berth mounts `entry` as a bind mount: `type: bind`, or a `bind`/`rbind` option.
pub fn is_bind_mount(entry: &Mount) -> bool {
    entry.typ().as_deref() == Some("bind")
        || options::parse_options(entry.options().as_deref().unwrap_or_default()).bind
}

/// Phase 1, before the createRuntime/createContainer hooks.
pub fn prepare(spec: &Spec, mut opts: RootfsOptions) -> Result<PreparedRootfs> {
    let linux = spec.linux().as_ref();
    let propagation = RootPropagation::of(linux.and_then(|l| l.rootfs_propagation().as_deref()))?;
    sysctl::validate(spec)?;
    if opts.own_mount_namespace {
        propagation.prepare(opts.rootfs)?;
        mount(
            Some(opts.rootfs),
            opts.rootfs,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("bind the rootfs {} onto itself", opts.rootfs.display()))?;
    } else {
        shared_namespace::stack_rootfs(opts.rootfs)?;
    }
    let root = open(
        opts.rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open rootfs {}", opts.rootfs.display()))?;

    let config_mounts = spec.mounts().as_deref().unwrap_or_default();
    let mut before_cgroup_use = opts.before_cgroup_use.take();
    let mut deferred = Vec::new();
    for (i, entry) in config_mounts.iter().chain(&opts.extra_mounts).enumerate() {
        let what = if i < config_mounts.len() {
            format!("mounts[{i}]")
        } else {
            "runtime mount".into()
        };
        if matches!(entry.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            before_cgroup_use.take().map_or(Ok(()), |wait| wait())?;
        }
        let _span = trace::span_with(|| format!("mount {}", entry.destination().display()));
        let done = mount_entry(
            root.as_fd(),
            entry,
            opts.host_clones.take(i),
            mount_label(spec),
            opts.cgroup_namespace,
        )
        .with_context(|| format!("{what}: mount on {}", entry.destination().display()))?;
        deferred.extend(done);
    }

    before_cgroup_use.take().map_or(Ok(()), |wait| wait())?;
    if !dev_is_bind_mounted(config_mounts) {
        let _span = trace::span("devices");
        // Any user namespace but the host's, the container's own or the one berth was started
        // in (rootless podman's): only the host's root may mknod a device.
        let strategy = if crate::rootless::in_user_namespace() {
            DeviceStrategy::BindFromHost
        } else {
            DeviceStrategy::Mknod
        };
        for node in devices_for(spec)? {
            create_device(root.as_fd(), &node, strategy)
                .with_context(|| format!("create device {}", node.path.display()))?;
        }
        for (target, link) in default_links() {
            create_link(root.as_fd(), target, link)
                .with_context(|| format!("create link {link}"))?;
        }
    }
    Ok(PreparedRootfs {
        rootfs: opts.rootfs.to_owned(),
        root,
        no_pivot: opts.no_pivot,
        own_mount_namespace: opts.own_mount_namespace,
        propagation,
        deferred,
    })
}

/// The kernel lets a new procfs or sysfs be mounted only where one is fully visible already
/// (no masked path over it), and counts the host's, left in the namespace by --no-pivot, which
/// chroot puts out of reach: the container could mount a bare /proc. As runc does, each whole
/// procfs and sysfs outside the rootfs is detached, or covered with a tmpfs where it may not be.
fn hide_host_proc_and_sysfs(rootfs: &Path) -> Result<()> {
    let me = procfs::process::Process::myself().context("open /proc/self")?;
    let mounts = me.mountinfo().context("read /proc/self/mountinfo")?;
    let exposing = (mounts.0.iter()).filter(|m| {
        m.root == "/"
            && matches!(m.fs_type.as_str(), "proc" | "sysfs")
            && !m.mount_point.starts_with(rootfs)
    });
    for host_mount in exposing {
        let path = &host_mount.mount_point;
        // Keep the detach from propagating to the host.
        match mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        ) {
            // Below one detached already.
            Err(nix::errno::Errno::ENOENT) => continue,
            made_slave => made_slave.with_context(|| format!("make {} rslave", path.display()))?,
        }
        match umount2(path, MntFlags::MNT_DETACH) {
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EPERM) => mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .with_context(|| format!("cover the host's {} (--no-pivot)", path.display()))?,
            detached => detached
                .with_context(|| format!("detach the host's {} (--no-pivot)", path.display()))?,
        }
    }
    Ok(())
}

impl PreparedRootfs {
    /// Phase 2, after the createRuntime/createContainer hooks: make the rootfs the root.
    pub fn enter(self) -> Result<EnteredRootfs> {
        if !self.own_mount_namespace {
            // pivot_root would move the root of every process in the runtime's namespace.
            fchdir(self.root.as_fd()).context("chdir into the rootfs")?;
            chroot(".").context("chroot into the rootfs")?;
        } else if self.no_pivot {
            // Without pivot_root the host's mounts stay in this namespace underneath; that is
            // what --no-pivot accepts (it exists for ramfs roots that cannot be pivoted).
            hide_host_proc_and_sysfs(&self.rootfs)?;
            fchdir(self.root.as_fd()).context("chdir into the rootfs")?;
            mount(
                Some(&self.rootfs),
                "/",
                None::<&str>,
                MsFlags::MS_MOVE,
                None::<&str>,
            )
            .context("move the rootfs onto / (--no-pivot)")?;
            chroot(".").context("chroot into the rootfs")?;
        } else {
            let old_root = open(
                "/",
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .context("open the old root")?;
            fchdir(self.root.as_fd()).context("chdir into the rootfs")?;
            // pivot_root(".", ".") stacks the old root on top of the new one, so no directory
            // for it is needed inside the image; it is then detached.
            pivot_root(".", ".").context("pivot_root")?;
            fchdir(old_root.as_fd()).context("chdir to the old root")?;
            // Keep the detach from propagating to the host's mounts.
            mount(
                None::<&str>,
                ".",
                None::<&str>,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                None::<&str>,
            )
            .context("make the old root rslave")?;
            umount2(".", MntFlags::MNT_DETACH).context("detach the old root")?;
        }
        chdir("/").context("chdir /")?;
        Ok(EnteredRootfs {
            own_mount_namespace: self.own_mount_namespace,
            propagation: self.propagation,
            deferred: self.deferred,
        })
    }
}

/// `linux.mountLabel`; the bundle was only accepted with one if SELinux is enabled.
fn mount_label(spec: &Spec) -> Option<&str> {
    let linux = spec.linux().as_ref()?;
    linux
        .mount_label()
        .as_deref()
        .filter(|label| !label.is_empty())
}

fn open_root() -> Result<OwnedFd> {
    open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("open /")
}

impl EnteredRootfs {
    /// Phase 3, after the console is set up.
    pub fn finish(self, spec: &Spec) -> Result<()> {
        let root = open_root()?;
        // runc creates a missing cwd, before the root may turn read-only.
        if let Some(process) = spec.process() {
            resolve::mkdir_all_in_root(
                root.as_fd(),
                process.cwd(),
                Mode::from_bits_truncate(0o755),
            )
            .with_context(|| format!("process.cwd: creating {}", process.cwd().display()))?;
        }
        for DeferredReadonly(path) in &self.deferred {
            let fd = resolve::open_path_in_root(root.as_fd(), path, true)
                .with_context(|| format!("open {}", path.display()))?;
            sys::mount_setattr_fd(fd.as_fd(), false, RDONLY)
                .with_context(|| format!("make {} read-only", path.display()))?;
        }
        if spec
            .root()
            .as_ref()
            .is_some_and(|r| r.readonly().unwrap_or(false))
        {
            sys::mount_setattr_fd(root.as_fd(), false, RDONLY)
                .context("root.readonly: remount / read-only")?;
        }
        // sysctls first: readonlyPaths usually includes /proc/sys.
        trace::timed("sysctl", || sysctl::apply(spec))?;
        let linux = spec.linux().as_ref();
        trace::timed("readonlyPaths", || {
            harden::make_readonly(
                root.as_fd(),
                linux
                    .and_then(|l| l.readonly_paths().as_deref())
                    .unwrap_or_default(),
            )
        })?;
        trace::timed("maskedPaths", || {
            harden::mask(
                root.as_fd(),
                linux
                    .and_then(|l| l.masked_paths().as_deref())
                    .unwrap_or_default(),
                mount_label(spec),
            )
        })?;
        // Last: none of the mounts above may propagate, nor be refused by an unbindable root.
        self.propagation.finish(self.own_mount_namespace)
    }
}

/// Bind the console's pty slave (a path on the container's devpts, e.g. /dev/pts/0) onto
/// /dev/console, after [`PreparedRootfs::enter`]. Neither path may lead through a symlink: an
/// image-provided /dev/console symlink is replaced, never followed.
pub fn bind_console(pty_slave: &Path) -> Result<()> {
    let root = open_root()?;
    let slave = resolve::open_in_root(root.as_fd(), pty_slave, OFlag::O_PATH | OFlag::O_NOFOLLOW)
        .with_context(|| format!("open pty {}", pty_slave.display()))?;
    let st = fstat(slave.as_fd()).context("fstat pty")?;
    let is_chr = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    let on_devpts =
        fstatfs(slave.as_fd()).is_ok_and(|fs| fs.filesystem_type() == DEVPTS_SUPER_MAGIC);
    if !is_chr || !on_devpts {
        bail!("{} is not a pty on devpts", pty_slave.display());
    }
    let console = Path::new("/dev/console");
    let (parent, name) = parent_in_root(root.as_fd(), console)?;
    // Whatever the image has there (a symlink to a host path, say) goes; a fresh empty file
    // is the mount point.
    remove_existing(parent.as_fd(), &name).context("remove the image's /dev/console")?;
    let target = create_file_at(parent.as_fd(), &name)?;
    let clone = sys::open_tree_fd(slave.as_fd(), libc::OPEN_TREE_CLONE).context("open_tree pty")?;
    attach(root.as_fd(), &clone, &target, console).context("bind the pty onto /dev/console")?;
    Ok(())
}
