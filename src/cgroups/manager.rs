//! The one [`CgroupManager`]: the lifecycle's operations on a container's cgroup, the same for
//! every hierarchy version (see `hierarchy`); the driver only decides who makes, fills and
//! removes the cgroup.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::layout::{self, OwnCgroup};
use super::{
    CgroupDir, CgroupHandle, CgroupManager, Joining, OomWatch, SelfJoin, Stats, SubCgroups,
    Version, convert, fs, resources, systemd, v1, v2, writes,
};
use crate::sys::{self, SignalNumber};
use crate::{logging, rootless, trace};

/// Who makes and removes the container's cgroup.
pub enum Driver {
    /// berth itself, in the cgroup filesystems.
    Cgroupfs,
    /// systemd, as a transient unit that the init is started in.
    Systemd(Box<systemd::Session>),
}

pub struct Cgroup {
    pub handle: CgroupHandle,
    pub driver: Driver,
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
    /// runc's checks of a cgroup that exists before `create`. Frozen, it would freeze the init
    /// half-way through its setup: an error. With processes in it, `kill --all` and `delete
    /// --force` would reach them too: a warning, as runc 1.1 gives (runc 1.2 refuses).
    fn check_existing_cgroup(&self) -> Result<()> {
        if let Some(dir) = self.handle.frozen_before_create()? {
            bail!(
                "container's cgroup unexpectedly frozen: {}",
                dir.path.display()
            );
        }
        if let Ok(dir) = self.handle.procs_dir()
            && dir.existed()
        {
            let found = pids_in(dir)?.len();
            if found > 0 {
                let warning = format!("container's cgroup is not empty: {found} process(es) found");
                logging::log(logging::Level::Warning, &warning);
            }
        }
        Ok(())
    }

    fn create_each_dir(&mut self) -> Result<()> {
        let (hierarchy, rootless) = (self.handle.hierarchy, self.handle.rootless);
        for dir in &mut self.handle.dirs {
            dir.created = create_dir(dir, hierarchy, rootless)?;
            if dir.version == Version::V2 {
                // Only into a cgroup made just now: once a cgroup's cgroup.kill was written,
                // the kernel (6.x) SIGKILLs every later CLONE_INTO_CGROUP child there. An
                // existing one gets the init through cgroup.procs (`add_process`).
                if dir.created {
                    self.unified_fd = Some(open_dir(&dir.path)?);
                }
            }
        }
        Ok(())
    }

    /// The fields of `r` to set. Rootless, device rules are left out, as runc does: they need
    /// privilege on the host (v1 devices.deny, attaching the v2 eBPF program), and such a
    /// container only reaches device nodes bound from the host, with the user's own
    /// permissions.
    fn to_set(&self, r: &LinuxResources, change: Change) -> LinuxResources {
        let mut r = convert::without_unset(r);
        if self.handle.rootless || change == Change::Update {
            r.set_devices(None);
        }
        r
    }

    /// Plans the writes for the fields of `r` to set. Without a cgroup there is nowhere to put
    /// a limit.
    fn plan(&self, r: &LinuxResources) -> Result<writes::Writes> {
        if !self.handle.dirs.is_empty() {
            return resources::plan_writes(r, &|c, f| self.handle.target(c, f));
        }
        if *r != LinuxResources::default() {
            bail!(
                "linux.resources: the container has no cgroup to set limits in (berth is \
                 rootless and was given no cgroupsPath delegated to it)"
            );
        }
        Ok(writes::Writes::default())
    }

    /// The systemd driver's start: the unit with `pid` in it and the properties of `r`; then
    /// the directories in the hierarchies systemd does not manage (some v1 ones), and every
    /// resource in the cgroup files. Returns the directories systemd did not put `pid` in.
    fn start_unit(
        &self,
        unit: &systemd::Session,
        pid: i32,
        r: &LinuxResources,
    ) -> Result<Vec<&CgroupDir>> {
        let r = self.to_set(r, Change::Create);
        trace::timed("systemd: start the unit", || {
            unit.start(pid, &r, self.handle.hierarchy)
        })?;
        trace::timed("cgroup: create what systemd did not", || {
            for dir in &self.handle.dirs {
                create_dir(dir, self.handle.hierarchy, self.handle.rootless)?;
            }
            anyhow::Ok(())
        })?;
        trace::timed("cgroup: write the limits", || self.plan(&r)?.apply())?;
        let placed = layout::cgroups_of(pid)?;
        let cgroup = &self.handle.cgroups_path;
        Ok(not_placed_in(&self.handle.dirs, &placed, cgroup))
    }

    /// The systemd driver's session and the resources to start its unit with, once: only the
    /// container's first process starts it.
    fn take_unit_to_start(&self) -> Option<(&systemd::Session, LinuxResources)> {
        match &self.driver {
            Driver::Systemd(unit) => Some((unit, unit.take_start_resources()?)),
            Driver::Cgroupfs => None,
        }
    }
}

fn join<'a>(dirs: impl IntoIterator<Item = &'a CgroupDir>, pid: i32) -> Result<()> {
    for dir in dirs {
        fs::write(&dir.path, "cgroup.procs", &pid.to_string())?;
    }
    Ok(())
}

/// The directories of `dirs` (the container's `cgroup` in each hierarchy) that a process is
/// not in, given its `/proc/<pid>/cgroup`. systemd puts a scope's process into the hierarchies
/// it manages; writing cgroup.procs there again would move it nowhere and still cost an RCU
/// grace period (milliseconds). On cgroup v1 systemd leaves some controllers (cpuset,
/// freezer, ...) alone: those still need the write.
fn not_placed_in<'a>(
    dirs: &'a [CgroupDir],
    placed: &[OwnCgroup],
    cgroup: &str,
) -> Vec<&'a CgroupDir> {
    let is_placed = |dir: &CgroupDir| {
        layout::own_cgroup_in(placed, &dir.controllers).is_ok_and(|path| path == cgroup)
    };
    dirs.iter().filter(|dir| !is_placed(dir)).collect()
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    let dir = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(dir.into())
}

/// Creates `dir` if it is missing and makes its controllers usable; whether it was made now.
/// On a v2 host, every controller the host offers is enabled down to it, as runc does, so
/// later updates can use them (also those systemd does not delegate, like hugetlb); on hybrid
/// hosts, those on the cgroup2 mount are enabled when a field needs them. Rootless, only those
/// its parent offers: the cgroups above the delegated ones are not the user's to change.
fn create_dir(dir: &CgroupDir, hierarchy: Version, rootless: bool) -> Result<bool> {
    let created = fs::create_dirs(&dir.path)?;
    let made_now = created.last() == Some(&dir.path);
    if dir.controllers.iter().any(|c| c == "cpuset") {
        v1::init_cpuset(&dir.mount_point, &dir.path)?;
    }
    if hierarchy == Version::V2 {
        let offering = match dir.path.parent() {
            Some(parent) if rootless => parent,
            _ => &dir.mount_point,
        };
        let wanted = v2::controllers(offering)?;
        v2::enable_controllers(&dir.mount_point, &dir.path, &wanted)?;
    }
    Ok(made_now)
}

impl CgroupManager for Cgroup {
    fn create(&mut self) -> Result<()> {
        if let Driver::Systemd(_) = self.driver {
            // systemd makes the cgroup when the init joins it (add_process).
            return Ok(());
        }
        self.check_existing_cgroup()?;
        match self.create_each_dir() {
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
        let Some((unit, resources)) = self.take_unit_to_start() else {
            return join(&self.handle.dirs, pid);
        };
        let not_placed = self.start_unit(unit, pid, &resources)?;
        trace::timed("cgroup: join where systemd did not put the process", || {
            join(not_placed, pid)
        })
    }

    fn self_join_for_init(&self) -> Result<SelfJoin> {
        if let Driver::Systemd(_) = self.driver {
            return Ok(SelfJoin::default());
        }
        let cloned_into_v2 = self.unified_fd.is_some();
        let not_in_yet = (self.handle.dirs.iter())
            .filter(|d| !(cloned_into_v2 && d.version == Version::V2))
            .map(|d| (d.version, d.path.clone()));
        SelfJoin::open(not_in_yet)
    }

    fn add_init(&self, pid: i32) -> Result<SelfJoin> {
        let Some((unit, resources)) = self.take_unit_to_start() else {
            return Ok(SelfJoin::default());
        };
        // The init writes to these itself: a process moving itself costs no RCU grace period
        // (see `SelfJoin`), the runtime's write of its pid would, in each hierarchy.
        let not_placed = self.start_unit(unit, pid, &resources)?;
        SelfJoin::open(not_placed.into_iter().map(|d| (d.version, d.path.clone())))
    }

    fn joining_for_exec(&self, sub: &SubCgroups) -> Result<Option<Joining>> {
        if let Driver::Systemd(_) = self.driver
            && !rootless::has_host_privilege()
        {
            return Ok(None);
        }
        sub.check_controllers(&self.handle.dirs)?;
        let mut clone_into = None;
        let mut to_write = Vec::new();
        for dir in &self.handle.dirs {
            let target = sub.dir_in(dir)?;
            // Cloned into only a cgroup2 directory made for this container (see
            // `create_each_dir`), whose cgroup.kill was written only if the container is dead:
            // the one `create` made, or the unit's, which systemd makes anew (starting a unit
            // that exists fails). A sub-cgroup may be one the container's own systemd killed.
            let made_for_the_container = dir.created || matches!(self.driver, Driver::Systemd(_));
            if dir.version == Version::V2 && made_for_the_container && target == dir.path {
                clone_into = Some(open_dir(&dir.path)?);
            } else {
                to_write.push((dir.version, target));
            }
        }
        let self_join = SelfJoin::open(to_write)?;
        Ok(Some(Joining {
            clone_into,
            self_join,
        }))
    }

    fn add_exec_process(&self, pid: i32, sub: &SubCgroups) -> Result<()> {
        sub.check_controllers(&self.handle.dirs)?;
        for dir in &self.handle.dirs {
            let target = sub.dir_in(dir)?;
            let joined = fs::write(&target, "cgroup.procs", &pid.to_string());
            match &self.driver {
                // Rootless, berth may not move a process out of a cgroup the user does not own
                // (its login session's, where berth runs); the unit's systemd may, as it moved
                // the init there.
                Driver::Systemd(unit)
                    if target == dir.path && joined.as_ref().is_err_and(is_permission_error) =>
                {
                    unit.attach(pid)?
                }
                _ => joined?,
            }
        }
        Ok(())
    }

    fn prepare_exec_from_user_namespace(&self) {
        if let Driver::Systemd(unit) = &self.driver {
            unit.connect_if_possible();
        }
    }

    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        if let Driver::Systemd(unit) = &self.driver
            && unit.defer_until_started(resources)
        {
            return Ok(());
        }
        self.plan(&self.to_set(resources, Change::Create))?.apply()
    }

    fn update(&self, resources: &LinuxResources) -> Result<()> {
        let r = self.to_set(resources, Change::Update);
        self.plan(&r)?.apply_or_restore()?;
        // After the files, which a value the kernel refuses leaves as they were: systemd
        // applies what it accepts at once and would keep it.
        match &self.driver {
            Driver::Systemd(unit) => unit.update(&r, self.handle.hierarchy),
            Driver::Cgroupfs => Ok(()),
        }
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
            return match fs::write(&dir.path, "cgroup.kill", "1") {
                // systemd removes a unit's cgroup as soon as its last process is gone.
                Err(e) if is_gone(&e) => Ok(()),
                result => result,
            };
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
            match self.thaw() {
                // The signalled processes exited and systemd removed the unit's cgroup.
                Err(e) if is_gone(&e) => {}
                thawed => thawed?,
            }
        }
        result
    }

    /// Tries every hierarchy even when one fails (or systemd cannot be reached), so as little
    /// as possible is left behind.
    fn remove(&self) -> Result<()> {
        let stopped = match &self.driver {
            Driver::Systemd(unit) => unit.stop(),
            Driver::Cgroupfs => Ok(()),
        };
        let results: Vec<Result<()>> = (self.handle.dirs.iter())
            .filter(|d| d.created)
            .map(|d| fs::remove_cgroup_tree(&d.path))
            .collect();
        stopped.and(results.into_iter().collect())
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

/// The cgroup is gone: removed before its file was opened (ENOENT) or while it was open
/// (ENODEV), as systemd removes a unit's cgroup once its last process exited.
fn is_gone(err: &anyhow::Error) -> bool {
    let gone = |io: &std::io::Error| {
        io.kind() == std::io::ErrorKind::NotFound
            || io.raw_os_error().map(Errno::from_raw) == Some(Errno::ENODEV)
    };
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(gone)
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::self_join::join_file;
    use super::*;

    /// A hybrid host's cgroup as plain directories, each with the empty file a process joins
    /// it through, and a sub-cgroup `sub` likewise; removed even when the test fails.
    struct FakeHybridCgroup {
        top: PathBuf,
        cgroup: Cgroup,
    }

    impl FakeHybridCgroup {
        fn new(name: &str, cloned_into_v2: bool) -> FakeHybridCgroup {
            let top = std::env::temp_dir().join(format!("berth-{name}-{}", std::process::id()));
            let dir = |version: Version, sub: &str| {
                let path = top.join(sub);
                for cgroup in [&path, &path.join("sub")] {
                    std::fs::create_dir_all(cgroup).unwrap();
                    std::fs::write(cgroup.join(join_file(version)), "").unwrap();
                }
                CgroupDir {
                    version,
                    mount_point: top.clone(),
                    path,
                    controllers: Vec::new(),
                    created: true,
                }
            };
            let dirs = vec![dir(Version::V1, "memory"), dir(Version::V2, "unified")];
            let unified_fd = cloned_into_v2.then(|| std::fs::File::open(&top).unwrap().into());
            let handle = CgroupHandle {
                hierarchy: Version::V1,
                cgroups_path: "/test".into(),
                dirs,
                rootless: false,
                systemd: None,
            };
            let cgroup = Cgroup {
                handle,
                driver: Driver::Cgroupfs,
                unified_fd,
                optional: false,
            };
            FakeHybridCgroup { top, cgroup }
        }

        /// The same cgroup as systemd's unit: made by systemd, not by berth.
        fn of_a_systemd_unit(mut self) -> FakeHybridCgroup {
            let unit = systemd::Unit::from_cgroups_path(Some("system.slice:test:c"), "c", false);
            let session = systemd::Session::existing(&unit.unwrap());
            self.cgroup.driver = Driver::Systemd(Box::new(session));
            for dir in &mut self.cgroup.handle.dirs {
                dir.created = false;
            }
            self
        }

        /// What was written to the join file of the cgroup `dir` (below the fake's top).
        fn joined(&self, dir: &str, version: Version) -> String {
            let path = Path::new(&self.top).join(dir).join(join_file(version));
            std::fs::read_to_string(path).unwrap()
        }
    }

    impl Drop for FakeHybridCgroup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.top);
        }
    }

    fn join_as_a_new_init(fake: &FakeHybridCgroup) {
        fake.cgroup.self_join_for_init().unwrap().join().unwrap();
    }

    fn dir_of(version: Version, controllers: &[&str]) -> CgroupDir {
        let hierarchy = controllers.join(",");
        CgroupDir {
            version,
            mount_point: PathBuf::from("/sys/fs/cgroup").join(&hierarchy),
            path: PathBuf::from("/sys/fs/cgroup")
                .join(&hierarchy)
                .join("system.slice/c.scope"),
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            created: false,
        }
    }

    #[test]
    fn the_init_joins_only_the_hierarchies_systemd_did_not_put_it_in() {
        let dirs = [
            dir_of(Version::V1, &["cpu", "cpuacct"]),
            dir_of(Version::V1, &["cpuset"]),
            dir_of(Version::V1, &["memory"]),
            dir_of(Version::V1, &["freezer"]),
            dir_of(Version::V1, &["name=systemd"]),
            dir_of(Version::V2, &[]),
        ];
        // systemd's hybrid layout: a delegated scope's process is in the unit's cgroup in the
        // hierarchies systemd manages, at the root of the others.
        let placed = layout::parse_proc_cgroup(
            "11:freezer:/\n\
             6:memory:/system.slice/c.scope\n\
             4:cpuset:/\n\
             2:cpu,cpuacct:/system.slice/c.scope\n\
             1:name=systemd:/system.slice/c.scope\n\
             0::/system.slice/c.scope\n",
        );
        let to_join = not_placed_in(&dirs, &placed, "/system.slice/c.scope");
        assert_eq!(to_join, [&dirs[1], &dirs[3]]);
    }

    #[test]
    fn the_init_joins_a_cgroup2_unit_it_is_not_in_yet() {
        let dirs = [dir_of(Version::V2, &[])];
        // systemd put a scope's process in; anywhere else (a slice unit is started without
        // one) it joins.
        let in_scope = layout::parse_proc_cgroup("0::/system.slice/c.scope\n");
        assert!(not_placed_in(&dirs, &in_scope, "/system.slice/c.scope").is_empty());
        for elsewhere in ["0::/user.slice\n", "0::/system.slice/c.scope/sub\n", ""] {
            let placed = layout::parse_proc_cgroup(elsewhere);
            let to_join = not_placed_in(&dirs, &placed, "/system.slice/c.scope");
            assert_eq!(to_join, [&dirs[0]], "{elsewhere:?}");
        }
    }

    #[test]
    fn an_init_cloned_into_the_cgroup2_directory_joins_only_the_v1_hierarchies() {
        let fake = FakeHybridCgroup::new("cloned-init", true);
        join_as_a_new_init(&fake);
        assert_eq!(fake.joined("memory", Version::V1), "0");
        assert_eq!(fake.joined("unified", Version::V2), "");
    }

    #[test]
    fn an_init_cloned_outside_the_cgroup_joins_every_hierarchy() {
        let fake = FakeHybridCgroup::new("uncloned-init", false);
        join_as_a_new_init(&fake);
        assert_eq!(fake.joined("memory", Version::V1), "0");
        assert_eq!(fake.joined("unified", Version::V2), "0");
    }

    #[test]
    fn an_exec_is_cloned_into_the_cgroup2_directory_create_made() {
        let fake = FakeHybridCgroup::new("exec", false);
        let joining = fake.cgroup.joining_for_exec(&SubCgroups::default());
        let joining = joining
            .unwrap()
            .expect("the cgroupfs driver lets an exec join");
        assert!(joining.clone_into.is_some());
        joining.self_join.join().unwrap();
        assert_eq!(fake.joined("memory", Version::V1), "0");
        assert_eq!(fake.joined("unified", Version::V2), "");
    }

    #[test]
    fn an_exec_by_root_is_cloned_into_the_cgroup2_directory_of_the_systemd_unit() {
        if !rootless::has_host_privilege() {
            return;
        }
        let fake = FakeHybridCgroup::new("exec-systemd", false).of_a_systemd_unit();
        let joining = fake.cgroup.joining_for_exec(&SubCgroups::default());
        let joining = joining.unwrap().expect("root lets an exec join by itself");
        assert!(joining.clone_into.is_some());
        joining.self_join.join().unwrap();
        assert_eq!(fake.joined("memory", Version::V1), "0");
        assert_eq!(fake.joined("unified", Version::V2), "");
    }

    #[test]
    fn an_exec_into_an_existing_cgroup2_directory_joins_it_by_itself() {
        let mut fake = FakeHybridCgroup::new("exec-existing", false);
        for dir in &mut fake.cgroup.handle.dirs {
            dir.created = false;
        }
        let joining = fake.cgroup.joining_for_exec(&SubCgroups::default());
        let joining = joining
            .unwrap()
            .expect("the cgroupfs driver lets an exec join");
        assert!(joining.clone_into.is_none());
        joining.self_join.join().unwrap();
        assert_eq!(fake.joined("unified", Version::V2), "0");
    }

    #[test]
    fn an_exec_into_a_sub_cgroup_joins_every_hierarchy_by_itself() {
        let fake = FakeHybridCgroup::new("exec-sub", false);
        let sub = SubCgroups::parse(&["sub".to_string()]).unwrap();
        let joining = fake.cgroup.joining_for_exec(&sub).unwrap();
        let joining = joining.expect("the cgroupfs driver lets an exec join");
        assert!(joining.clone_into.is_none());
        joining.self_join.join().unwrap();
        assert_eq!(fake.joined("memory/sub", Version::V1), "0");
        assert_eq!(fake.joined("unified/sub", Version::V2), "0");
        assert_eq!(fake.joined("unified", Version::V2), "");
    }
}
