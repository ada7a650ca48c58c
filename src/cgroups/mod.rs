//! Container cgroups on cgroup v1, v2 and hybrid hosts.
//!
//! The lifecycle calls [`for_new_container`] at create time, persists [`CgroupManager::handle`]
//! in the container state, and rebuilds the manager with [`from_handle`] for later commands.
//!
//! Placement (`linux.cgroupsPath`): an absolute path is taken relative to the root of every
//! hierarchy; a relative one relative to berth's own cgroup in each hierarchy (as runc does); an
//! absent one becomes `/berth/<id>`. The systemd driver is not implemented yet.
//!
//! Hybrid hosts (v1 controllers plus a cgroup2 mount) use the v1 driver, which also creates the
//! container's cgroup on the cgroup2 mount and uses it for controllers that only exist there
//! (hugetlb on the development host), for device rules when no v1 devices hierarchy exists, and
//! for `unified` keys.

mod bpf;
mod convert;
mod devices;
mod fs;
mod layout;
mod oom;
mod stats;
mod update;
mod v1;
mod v2;
mod writes;

#[cfg(test)]
mod root_tests;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};
use serde::{Deserialize, Serialize};

use crate::logging;
use crate::sys::{self, SignalNumber};

pub use convert::updated_record;
pub use devices::container_device_rules;
pub use layout::Layout;
pub use oom::OomWatch;
pub use stats::{Event, Stats};
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
    /// The driver: `v1` (also on hybrid hosts, with a `v2` dir for the cgroup2 mount) or `v2`.
    pub driver: Version,
    /// The cgroup path as resolved from `linux.cgroupsPath` (before per-hierarchy placement).
    pub cgroups_path: String,
    pub dirs: Vec<CgroupDir>,
    /// Made by a rootless berth (see `CgroupOptions`): `update` leaves device rules out too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rootless: bool,
}

/// What the lifecycle does with a container's cgroup.
pub trait CgroupManager {
    /// Creates the cgroup in every hierarchy, remembering which directories already existed.
    /// On error, `remove` undoes what was made.
    fn create(&mut self) -> Result<()>;
    /// A directory fd of the cgroup2 cgroup for clone3's CLONE_INTO_CGROUP (after `create`);
    /// None on pure v1 and when the cgroup existed before. The child is then only in that
    /// hierarchy: call `add_process` as well.
    fn clone_into_fd(&self) -> Option<BorrowedFd<'_>>;
    /// Moves `pid` into the cgroup in every hierarchy.
    fn add_process(&self, pid: i32) -> Result<()>;
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
        systemd: false,
        systemd_user: false,
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
    if options.systemd {
        bail!(
            "linux.cgroupsPath {:?}: systemd cgroup driver not supported yet (run without \
             --systemd-cgroup)",
            cgroups_path.unwrap_or("")
        );
    }
    let path = layout::CgroupPath::from_spec(cgroups_path, container_id);
    let own = match path {
        layout::CgroupPath::RelativeToOwn(_) => layout::own_cgroups()?,
        layout::CgroupPath::Absolute(_) => Vec::new(),
    };
    let mut handle = plan(&Layout::detect()?, &path, &own)?;
    handle.rootless = options.rootless;
    let cgroup = Cgroup {
        handle,
        unified_fd: None,
        optional: options.rootless && cgroups_path.is_none_or(str::is_empty),
    };
    Ok(manager(cgroup))
}

/// Rebuilds the manager of an existing container from its persisted handle.
pub fn from_handle(handle: &CgroupHandle) -> Result<Box<dyn CgroupManager>> {
    Ok(manager(Cgroup {
        handle: handle.clone(),
        unified_fd: None,
        optional: false,
    }))
}

fn manager(cgroup: Cgroup) -> Box<dyn CgroupManager> {
    match cgroup.handle.driver {
        Version::V1 => Box::new(V1Manager(cgroup)),
        Version::V2 => Box::new(V2Manager(cgroup)),
    }
}

/// Where the container's cgroup goes in each hierarchy of `layout`.
fn plan(
    layout: &Layout,
    path: &layout::CgroupPath,
    own: &[layout::OwnCgroup],
) -> Result<CgroupHandle> {
    // A relative path starts at berth's own cgroup in each v1 hierarchy, and at its parent on
    // cgroup2 (as runc's fs2): berth's own holds berth, and a cgroup2 cgroup with processes
    // cannot enable controllers for the cgroups below it.
    let in_hierarchy = |controllers: &[String]| -> Result<String> {
        Ok(match path {
            layout::CgroupPath::Absolute(p) => p.clone(),
            relative => {
                let own = layout::own_cgroup_in(own, controllers)?;
                let start = if controllers.is_empty() {
                    layout::parent_cgroup(own)
                } else {
                    own.to_string()
                };
                relative.in_hierarchy(&start)
            }
        })
    };
    let v1_dirs = |hierarchies: &[layout::V1Hierarchy]| -> Result<Vec<CgroupDir>> {
        hierarchies
            .iter()
            .map(|h| {
                let cgroup = in_hierarchy(&h.controllers)?;
                let path = layout::cgroup_dir(&h.mount_point, &h.mount_root, &cgroup)?;
                Ok(CgroupDir {
                    version: Version::V1,
                    mount_point: h.mount_point.clone(),
                    created: will_create(&path),
                    path,
                    controllers: h.controllers.clone(),
                })
            })
            .collect()
    };
    let v2_dir = |u: &layout::Unified| -> Result<CgroupDir> {
        let path = layout::cgroup_dir(&u.mount_point, &u.mount_root, &in_hierarchy(&[])?)?;
        Ok(CgroupDir {
            version: Version::V2,
            mount_point: u.mount_point.clone(),
            created: will_create(&path),
            path,
            controllers: Vec::new(),
        })
    };
    let (driver, dirs) = match layout {
        Layout::V1 { hierarchies } => (Version::V1, v1_dirs(hierarchies)?),
        Layout::V2 { unified } => (Version::V2, vec![v2_dir(unified)?]),
        Layout::Hybrid {
            hierarchies,
            unified,
        } => {
            let mut dirs = v1_dirs(hierarchies)?;
            dirs.push(v2_dir(unified)?);
            (Version::V1, dirs)
        }
    };
    let cgroups_path = match path {
        layout::CgroupPath::Absolute(p) | layout::CgroupPath::RelativeToOwn(p) => p.clone(),
    };
    Ok(CgroupHandle {
        driver,
        cgroups_path,
        dirs,
        rootless: false,
    })
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

/// A directory that does not exist yet is berth's to create, and to remove:
/// recorded so before `create`, a handle saved early lets `delete --force`
/// clean up after a create that was killed half-way.
fn will_create(path: &Path) -> bool {
    !path.exists()
}

/// The directory a resource is written to, and in which format.
enum Target<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl Target<'_> {
    fn dir(&self) -> &Path {
        match self {
            Target::V1(d) | Target::V2(d) => d,
        }
    }
}

/// State shared by both drivers.
struct Cgroup {
    handle: CgroupHandle,
    /// The cgroup2 directory, opened by `create` for CLONE_INTO_CGROUP when it made it.
    unified_fd: Option<OwnedFd>,
    /// Rootless without a cgroupsPath: no permission to create the cgroup means none at all
    /// (an empty `handle.dirs`), not an error.
    optional: bool,
}

impl Cgroup {
    fn v1_dir(&self, controller: &str) -> Option<&CgroupDir> {
        self.handle
            .dirs
            .iter()
            .find(|d| d.version == Version::V1 && d.controllers.iter().any(|c| c == controller))
    }

    fn v2_dir(&self) -> Option<&CgroupDir> {
        self.handle.dirs.iter().find(|d| d.version == Version::V2)
    }

    fn create_dirs(&mut self, enable_all_v2_controllers: bool) -> Result<()> {
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

    /// Plans the writes for `r` where the driver's `target` says. Rootless, device rules are
    /// left out, as runc does: they need privilege on the host (v1 devices.deny, attaching the
    /// v2 eBPF program), and such a container only reaches device nodes bound from the host,
    /// with the user's own permissions. Without a cgroup there is nowhere to put a limit.
    fn plan<'m>(
        &self,
        r: &LinuxResources,
        change: Change,
        target: &dyn Fn(&str, &str) -> Result<Target<'m>>,
    ) -> Result<writes::Writes> {
        let mut r = convert::without_unset(r);
        if self.handle.rootless || change == Change::Update {
            r.set_devices(None);
        }
        if !self.handle.dirs.is_empty() {
            return plan_writes(&r, target);
        }
        if r != LinuxResources::default() {
            bail!(
                "linux.resources: the container has no cgroup to set limits in (berth is \
                 rootless and was given no cgroupsPath delegated to it)"
            );
        }
        Ok(writes::Writes::default())
    }

    fn apply<'m>(
        &self,
        r: &LinuxResources,
        target: &dyn Fn(&str, &str) -> Result<Target<'m>>,
    ) -> Result<()> {
        self.plan(r, Change::Create, target)?.apply()
    }

    fn update<'m>(
        &self,
        r: &LinuxResources,
        target: &dyn Fn(&str, &str) -> Result<Target<'m>>,
    ) -> Result<()> {
        self.plan(r, Change::Update, target)?.apply_or_restore()
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        for dir in &self.handle.dirs {
            fs::write(&dir.path, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// The v2 directory, if it has `controller` (enabling it on the way down on hybrid hosts,
    /// where only controllers actually used are enabled).
    fn v2_target(&self, controller: &str, enable: bool) -> Result<Option<&Path>> {
        let Some(dir) = self.v2_dir() else {
            return Ok(None);
        };
        // Device rules are an eBPF program, not a controller: any cgroup2 directory takes them.
        if controller == "devices" {
            return Ok(Some(&dir.path));
        }
        let v2_name = v2::controller_name(controller);
        if !v2::controllers(&dir.mount_point)?
            .iter()
            .any(|c| c == v2_name)
        {
            return Ok(None);
        }
        if enable {
            v2::enable_controllers(&dir.mount_point, &dir.path, &[v2_name.to_string()])?;
        }
        Ok(Some(&dir.path))
    }

    /// Tries every hierarchy even when one fails, so as little as possible is left behind.
    fn remove(&self) -> Result<()> {
        let results: Vec<Result<()>> = (self.handle.dirs.iter())
            .filter(|d| d.created)
            .map(|d| fs::remove_cgroup_tree(&d.path))
            .collect();
        results.into_iter().collect()
    }

    fn pids_in(&self, dir: &CgroupDir) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        fs::pids_recursive(&dir.path, &mut pids)?;
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// SIGKILL through cgroup.kill when there is a cgroup2 directory (also on hybrid hosts: every
    /// container process is in it); otherwise freezes so no process can fork while being
    /// signalled, signals each, then thaws (unless the container was paused and the signal does
    /// not need it to run).
    fn kill_all(&self, m: &dyn CgroupManager, signal: SignalNumber) -> Result<()> {
        if let Some(dir) = self.v2_dir()
            && signal == SignalNumber::KILL
            && dir.path.join("cgroup.kill").exists()
        {
            return fs::write(&dir.path, "cgroup.kill", "1");
        }
        if m.pids()?.is_empty() {
            return Ok(());
        }
        let was_frozen = m.is_frozen()?;
        m.freeze()?;
        let result = m.pids().and_then(|pids| {
            for pid in pids {
                match sys::send_signal(Pid::from_raw(pid), signal) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => return Err(e).with_context(|| format!("kill({pid}, {signal})")),
                }
            }
            Ok(())
        });
        if !was_frozen || signal == SignalNumber::KILL {
            m.thaw()?;
        }
        result
    }
}

/// Whether resources are applied to a new container or updated on a running one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Create,
    Update,
}

/// The first set field of a section, to name it when its controller is missing.
fn first_set(fields: &[(&'static str, bool)]) -> Option<&'static str> {
    fields.iter().find(|(_, set)| *set).map(|(f, _)| *f)
}

fn memory_field(m: &LinuxMemory) -> Option<&'static str> {
    first_set(&[
        ("limit", m.limit().is_some()),
        ("reservation", m.reservation().is_some()),
        ("swap", m.swap().is_some()),
        ("swappiness", m.swappiness().is_some()),
        ("disableOOMKiller", m.disable_oom_killer().is_some()),
        ("useHierarchy", m.use_hierarchy().is_some()),
    ])
}

fn cpu_field(c: &LinuxCpu) -> Option<&'static str> {
    first_set(&[
        ("shares", c.shares().is_some()),
        ("quota", c.quota().is_some()),
        ("period", c.period().is_some()),
        ("burst", c.burst().is_some()),
        ("realtimeRuntime", c.realtime_runtime().is_some()),
        ("realtimePeriod", c.realtime_period().is_some()),
        ("idle", c.idle().is_some()),
    ])
}

fn blkio_field(b: &LinuxBlockIo) -> Option<&'static str> {
    first_set(&[
        ("weight", b.weight().is_some()),
        ("leafWeight", b.leaf_weight().is_some()),
        ("weightDevice", b.weight_device().is_some()),
        (
            "throttleReadBpsDevice",
            b.throttle_read_bps_device().is_some(),
        ),
        (
            "throttleWriteBpsDevice",
            b.throttle_write_bps_device().is_some(),
        ),
        (
            "throttleReadIOPSDevice",
            b.throttle_read_iops_device().is_some(),
        ),
        (
            "throttleWriteIOPSDevice",
            b.throttle_write_iops_device().is_some(),
        ),
    ])
}

/// Plans the writes of every set field of `r` (see `convert::without_unset`), asking `target`
/// where each controller lives. Shared by both drivers so a field means the same thing
/// everywhere; nothing is written until the whole plan stands.
fn plan_writes<'m>(
    r: &LinuxResources,
    target: &dyn Fn(&str, &str) -> Result<Target<'m>>,
) -> Result<writes::Writes> {
    let mut w = writes::Writes::default();
    if let Some(m) = r.memory()
        && let Some(field) = memory_field(m)
    {
        match target("memory", &format!("memory.{field}"))? {
            Target::V1(d) => v1::memory(&mut w, d, m)?,
            Target::V2(d) => v2::memory(&mut w, d, m)?,
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(field) = cpu_field(c) {
            match target("cpu", &format!("cpu.{field}"))? {
                Target::V1(d) => v1::cpu(&mut w, d, c)?,
                Target::V2(d) => v2::cpu(&mut w, d, c)?,
            }
        }
        if c.cpus().is_some() || c.mems().is_some() {
            v2::cpuset(&mut w, target("cpuset", "cpu.cpus")?.dir(), c)?;
        }
    }
    if let Some(p) = r.pids() {
        v2::pids(&mut w, target("pids", "pids.limit")?.dir(), p.limit())?;
    }
    if let Some(b) = r.block_io()
        && let Some(field) = blkio_field(b)
    {
        match target("blkio", &format!("blockIO.{field}"))? {
            Target::V1(d) => v1::blkio(&mut w, d, b)?,
            Target::V2(d) => v2::io(&mut w, d, b)?,
        }
    }
    if let Some(limits) = r.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
        let available = convert::host_hugepage_sizes()?;
        for l in limits {
            convert::check_hugepage_size(l.page_size(), &available)?;
        }
        match target("hugetlb", "hugepageLimits")? {
            Target::V1(d) => v1::hugetlb(&mut w, d, limits)?,
            Target::V2(d) => v2::hugetlb(&mut w, d, limits)?,
        }
    }
    if let Some(n) = r.network() {
        if let Some(class_id) = n.class_id() {
            match target("net_cls", "network.classID")? {
                Target::V1(d) => v1::net_cls(&mut w, d, class_id)?,
                Target::V2(_) => bail!("linux.resources.network.classID: cgroup v1 only"),
            }
        }
        if n.priorities().is_some() {
            match target("net_prio", "network.priorities")? {
                Target::V1(d) => v1::net_prio(&mut w, d, n)?,
                Target::V2(_) => bail!("linux.resources.network.priorities: cgroup v1 only"),
            }
        }
    }
    if let Some(rdma) = r.rdma().as_ref().filter(|r| !r.is_empty()) {
        v2::rdma(&mut w, target("rdma", "rdma")?.dir(), rdma)?;
    }
    if let Some(rules) = r.devices() {
        match target("devices", "devices")? {
            Target::V1(d) => v1::devices(&mut w, d, rules)?,
            Target::V2(d) => w.install_device_program(d, rules)?,
        }
    }
    for (key, value) in r.unified().iter().flatten() {
        let controller = convert::check_unified_key(key)?;
        // cgroup.* files exist in every cgroup2 directory; other keys need their controller.
        let lookup = if controller == "cgroup" {
            "unified"
        } else {
            controller
        };
        match target(lookup, &format!("unified.{key}"))? {
            Target::V2(d) => v2::unified_key(&mut w, d, key, value)?,
            Target::V1(_) => bail!(
                "linux.resources.unified: key {key:?}: {controller} is a cgroup v1 controller \
                 on this host"
            ),
        }
    }
    Ok(w)
}

/// Polls `done` for up to a second: freezing completes asynchronously.
fn wait_until(what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !done()? {
        if Instant::now() > deadline {
            bail!("timed out waiting for the cgroup to become {what}");
        }
        sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// The v1 driver (also for hybrid hosts).
struct V1Manager(Cgroup);

impl V1Manager {
    fn target(&self, controller: &str, field: &str) -> Result<Target<'_>> {
        if controller == "unified" {
            let dir = self.0.v2_dir().map(|d| Target::V2(&d.path));
            return dir.context("linux.resources.unified: needs a cgroup v2 mount");
        }
        if let Some(dir) = self.0.v1_dir(controller) {
            return Ok(Target::V1(&dir.path));
        }
        match self.0.v2_target(controller, true)? {
            Some(dir) => Ok(Target::V2(dir)),
            None => bail!("linux.resources.{field}: {controller} controller is not mounted"),
        }
    }

    /// freezer.state of the v1 freezer, or cgroup.freeze on the cgroup2 mount without one.
    fn freezer(&self) -> Result<Target<'_>> {
        if let Some(dir) = self.0.v1_dir("freezer") {
            return Ok(Target::V1(&dir.path));
        }
        let dir = self.0.v2_dir().map(|d| Target::V2(&d.path));
        dir.context("pausing needs the freezer controller, which is not mounted")
    }

    /// The hierarchy listing the container's processes: the freezer one that pause and kill use.
    fn procs_dir(&self) -> Result<&CgroupDir> {
        let freezer = self.0.v1_dir("freezer");
        freezer
            .or_else(|| self.0.handle.dirs.first())
            .context("the container has no cgroup")
    }
}

fn freeze_v2(dir: &Path, frozen: bool) -> Result<()> {
    fs::write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let state = if frozen { "frozen" } else { "thawed" };
    wait_until(state, || Ok(is_frozen_v2(dir)? == frozen))
}

fn is_frozen_v2(dir: &Path) -> Result<bool> {
    let events = fs::parse_flat_keyed(&fs::read(dir, "cgroup.events")?);
    Ok(events.get("frozen") == Some(&1))
}

impl CgroupManager for V1Manager {
    fn create(&mut self) -> Result<()> {
        // On hybrid hosts, controllers on the cgroup2 mount are enabled when a field needs them.
        self.0.create_dirs(false)
    }

    fn clone_into_fd(&self) -> Option<BorrowedFd<'_>> {
        self.0.unified_fd.as_ref().map(|fd| fd.as_fd())
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        self.0.add_process(pid)
    }

    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        self.0.apply(resources, &|c, f| self.target(c, f))
    }

    fn update(&self, resources: &LinuxResources) -> Result<()> {
        self.0.update(resources, &|c, f| self.target(c, f))
    }

    fn freeze(&self) -> Result<()> {
        match self.freezer()? {
            Target::V1(dir) => {
                fs::write(dir, "freezer.state", "FROZEN")?;
                wait_until("frozen", || {
                    if self.is_frozen()? {
                        return Ok(true);
                    }
                    // A task that was forking can leave the cgroup FREEZING: ask again.
                    fs::write(dir, "freezer.state", "FROZEN")?;
                    Ok(false)
                })
            }
            Target::V2(dir) => freeze_v2(dir, true),
        }
    }

    fn thaw(&self) -> Result<()> {
        match self.freezer()? {
            Target::V1(dir) => {
                fs::write(dir, "freezer.state", "THAWED")?;
                wait_until("thawed", || Ok(!self.is_frozen()?))
            }
            Target::V2(dir) => freeze_v2(dir, false),
        }
    }

    fn is_frozen(&self) -> Result<bool> {
        match self.freezer()? {
            Target::V1(dir) => Ok(fs::read(dir, "freezer.state")?.trim() == "FROZEN"),
            Target::V2(dir) => is_frozen_v2(dir),
        }
    }

    fn stats(&self) -> Result<Stats> {
        let mut out = Stats::default();
        if let Some(d) = self.0.v1_dir("cpu") {
            v1::cpu_stats(&d.path, &mut out)?;
        }
        if let Some(d) = self.0.v1_dir("cpuacct") {
            v1::cpuacct_stats(&d.path, &mut out)?;
        }
        if let Some(d) = self.0.v1_dir("cpuset") {
            v1::cpuset_stats(&d.path, &mut out)?;
        }
        if let Some(d) = self.0.v1_dir("memory") {
            v1::memory_stats(&d.path, &mut out)?;
        }
        if let Some(d) = self.0.v1_dir("pids") {
            v1::pids_stats(&d.path, &mut out)?;
        }
        if let Some(d) = self.0.v1_dir("blkio") {
            v1::blkio_stats(&d.path, &mut out)?;
        }
        if let Some(d) = self.0.v1_dir("hugetlb") {
            v1::hugetlb_stats(&d.path, &convert::host_hugepage_sizes()?, &mut out)?;
        } else if let Some(dir) = self.0.v2_target("hugetlb", false)?
            && v2::controllers(dir)?.iter().any(|c| c == "hugetlb")
        {
            v2::hugetlb_stats(dir, &convert::host_hugepage_sizes()?, &mut out)?;
        }
        Ok(out)
    }

    fn watch_oom(&self) -> Result<OomWatch> {
        match self.0.v1_dir("memory") {
            Some(d) => OomWatch::v1(&d.path),
            None => bail!("OOM events need the memory controller, which is not mounted"),
        }
    }

    fn pids(&self) -> Result<Vec<i32>> {
        self.0.pids_in(self.procs_dir()?)
    }

    fn kill_all(&self, signal: SignalNumber) -> Result<()> {
        self.0.kill_all(self, signal)
    }

    fn remove(&self) -> Result<()> {
        self.0.remove()
    }

    fn handle(&self) -> CgroupHandle {
        self.0.handle.clone()
    }
}

/// The cgroup v2 driver.
struct V2Manager(Cgroup);

impl V2Manager {
    fn dir(&self) -> Result<&Path> {
        let dir = self.0.v2_dir().map(|d| d.path.as_path());
        dir.context("the container has no cgroup v2 directory")
    }

    fn target(&self, controller: &str, field: &str) -> Result<Target<'_>> {
        let dir = self.dir()?;
        let v2_name = v2::controller_name(controller);
        let always_there = matches!(controller, "devices" | "unified");
        if always_there || v2::controllers(dir)?.iter().any(|c| c == v2_name) {
            return Ok(Target::V2(dir));
        }
        bail!(
            "linux.resources.{field}: the {v2_name} controller is not available in {}",
            dir.display()
        )
    }
}

impl CgroupManager for V2Manager {
    fn create(&mut self) -> Result<()> {
        self.0.create_dirs(true)
    }

    fn clone_into_fd(&self) -> Option<BorrowedFd<'_>> {
        self.0.unified_fd.as_ref().map(|fd| fd.as_fd())
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        self.0.add_process(pid)
    }

    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        self.0.apply(resources, &|c, f| self.target(c, f))
    }

    fn update(&self, resources: &LinuxResources) -> Result<()> {
        self.0.update(resources, &|c, f| self.target(c, f))
    }

    fn freeze(&self) -> Result<()> {
        freeze_v2(self.dir()?, true)
    }

    fn thaw(&self) -> Result<()> {
        freeze_v2(self.dir()?, false)
    }

    fn is_frozen(&self) -> Result<bool> {
        is_frozen_v2(self.dir()?)
    }

    fn stats(&self) -> Result<Stats> {
        let dir = self.dir()?;
        let mut out = Stats::default();
        v2::stats(dir, &v2::controllers(dir)?, &mut out)?;
        Ok(out)
    }

    fn watch_oom(&self) -> Result<OomWatch> {
        OomWatch::v2(self.dir()?)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let dir = self.0.v2_dir().context("the container has no cgroup")?;
        self.0.pids_in(dir)
    }

    fn kill_all(&self, signal: SignalNumber) -> Result<()> {
        self.0.kill_all(self, signal)
    }

    fn remove(&self) -> Result<()> {
        self.0.remove()
    }

    fn handle(&self) -> CgroupHandle {
        self.0.handle.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";

    #[test]
    fn plans_one_dir_per_hierarchy_and_the_unified_one_on_hybrid() {
        let layout = Layout::from_mountinfo(HYBRID, |_, _| true).unwrap();
        let path = layout::CgroupPath::from_spec(None, "c1");
        let handle = plan(&layout, &path, &[]).unwrap();
        assert_eq!(handle.driver, Version::V1);
        let dirs: Vec<_> = handle
            .dirs
            .iter()
            .map(|d| d.path.to_str().unwrap())
            .collect();
        assert_eq!(
            dirs,
            [
                "/sys/fs/cgroup/cpu/berth/c1",
                "/sys/fs/cgroup/memory/berth/c1",
                "/sys/fs/cgroup/unified/berth/c1"
            ]
        );
        assert_eq!(handle.dirs[2].version, Version::V2);
        let json = serde_json::to_string(&handle).unwrap();
        assert_eq!(serde_json::from_str::<CgroupHandle>(&json).unwrap(), handle);
    }

    #[test]
    fn relative_paths_follow_berths_own_cgroup_per_v1_hierarchy_and_its_parent_on_v2() {
        let layout = Layout::from_mountinfo(HYBRID, |_, _| true).unwrap();
        let own = layout::parse_proc_cgroup("2:cpu:/\n4:memory:/process_api/e\n0::/u\n");
        let path = layout::CgroupPath::from_spec(Some("sub/c1"), "c1");
        let handle = plan(&layout, &path, &own).unwrap();
        let dirs: Vec<_> = handle
            .dirs
            .iter()
            .map(|d| d.path.to_str().unwrap())
            .collect();
        assert_eq!(
            dirs,
            [
                "/sys/fs/cgroup/cpu/sub/c1",
                "/sys/fs/cgroup/memory/process_api/e/sub/c1",
                "/sys/fs/cgroup/unified/sub/c1"
            ]
        );
    }

    #[test]
    fn systemd_driver_is_a_clear_error() {
        let systemd = CgroupOptions {
            systemd: true,
            rootless: false,
        };
        let err = for_new_container(Some("system.slice:berth:c1"), "c1", systemd)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("systemd cgroup driver not supported yet"),
            "{err}"
        );
    }

    #[test]
    fn features_json() {
        let json = serde_json::to_value(features()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"v1": true, "v2": true, "systemd": false,
                               "systemdUser": false, "rdma": true})
        );
    }
}
