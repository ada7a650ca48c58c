//! What depends on the hierarchy version but not on who made the cgroup: where each
//! controller's files are, the freezer, statistics, OOM events, the process list. Every driver
//! uses it through the directories recorded in the [`CgroupHandle`].
//!
//! Hybrid hosts (v1 controllers plus a cgroup2 mount) count as v1: the container also has a
//! directory on the cgroup2 mount, used for controllers that only exist there (hugetlb on the
//! development host), for device rules when no v1 devices hierarchy exists, and for `unified`
//! keys.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::layout::{self, Layout};
use super::{CgroupDir, CgroupHandle, OomWatch, Stats, Version, convert, fs, v1, v2};

/// The directory a resource is written to, and in which format.
pub enum Target<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

/// The container's directory in every hierarchy of `layout`, given its cgroup (as the
/// hierarchy names it) in the hierarchy with these controllers (empty for cgroup2), and the
/// version whose formats the container's cgroup follows.
pub fn place(
    layout: &Layout,
    cgroup_in: impl Fn(&[String]) -> Result<String>,
) -> Result<(Version, Vec<CgroupDir>)> {
    let v1_dirs = |hierarchies: &[layout::V1Hierarchy]| -> Result<Vec<CgroupDir>> {
        hierarchies
            .iter()
            .map(|h| {
                let cgroup = cgroup_in(&h.controllers)?;
                let path = layout::cgroup_dir(&h.mount_point, &h.mount_root, &cgroup)?;
                Ok(CgroupDir::planned(
                    Version::V1,
                    &h.mount_point,
                    path,
                    &h.controllers,
                ))
            })
            .collect()
    };
    let v2_dir = |u: &layout::Unified| -> Result<CgroupDir> {
        let path = layout::cgroup_dir(&u.mount_point, &u.mount_root, &cgroup_in(&[])?)?;
        Ok(CgroupDir::planned(Version::V2, &u.mount_point, path, &[]))
    };
    Ok(match layout {
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
    })
}

impl CgroupDir {
    /// A directory that does not exist yet is berth's to create, and to remove: recorded so
    /// before anything is made, a handle saved early lets `delete --force` clean up after a
    /// create that was killed half-way.
    fn planned(
        version: Version,
        mount_point: &Path,
        path: std::path::PathBuf,
        controllers: &[String],
    ) -> CgroupDir {
        CgroupDir {
            version,
            mount_point: mount_point.to_path_buf(),
            created: !path.exists(),
            path,
            controllers: controllers.to_vec(),
        }
    }

    /// Whether the directory is there and was not made by berth for the container.
    pub(super) fn existed(&self) -> bool {
        !self.created && self.path.is_dir()
    }
}

impl Target<'_> {
    pub fn dir(&self) -> &Path {
        match self {
            Target::V1(d) | Target::V2(d) => d,
        }
    }
}

impl CgroupHandle {
    pub(super) fn v1_dir(&self, controller: &str) -> Option<&CgroupDir> {
        self.dirs
            .iter()
            .find(|d| d.version == Version::V1 && d.controllers.iter().any(|c| c == controller))
    }

    pub(super) fn v2_dir(&self) -> Option<&CgroupDir> {
        self.dirs.iter().find(|d| d.version == Version::V2)
    }

    fn v2_path(&self) -> Result<&Path> {
        let dir = self.v2_dir().map(|d| d.path.as_path());
        dir.context("the container has no cgroup v2 directory")
    }

    /// Where `controller`'s files are (`field` names the spec field that needs them). On
    /// hybrid hosts, a controller found only on the cgroup2 mount is enabled on the way down.
    pub(super) fn target(&self, controller: &str, field: &str) -> Result<Target<'_>> {
        match self.hierarchy {
            Version::V1 => self.v1_target(controller, field),
            Version::V2 => {
                let dir = self.v2_path()?;
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
    }

    fn v1_target(&self, controller: &str, field: &str) -> Result<Target<'_>> {
        if controller == "unified" {
            let dir = self.v2_dir().map(|d| Target::V2(&d.path));
            return dir.context("linux.resources.unified: needs a cgroup v2 mount");
        }
        if let Some(dir) = self.v1_dir(controller) {
            return Ok(Target::V1(&dir.path));
        }
        match self.hybrid_v2_target(controller, true)? {
            Some(dir) => Ok(Target::V2(dir)),
            None => bail!("linux.resources.{field}: {controller} controller is not mounted"),
        }
    }

    /// The cgroup2 directory of a hybrid host, if it has `controller` (enabling it on the way
    /// down when `enable`: there only controllers actually used are enabled).
    fn hybrid_v2_target(&self, controller: &str, enable: bool) -> Result<Option<&Path>> {
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

    /// freezer.state of the v1 freezer, or cgroup.freeze on the cgroup2 mount without one.
    fn freezer(&self) -> Result<Target<'_>> {
        if self.hierarchy == Version::V1
            && let Some(dir) = self.v1_dir("freezer")
        {
            return Ok(Target::V1(&dir.path));
        }
        let dir = self.v2_dir().map(|d| Target::V2(&d.path));
        dir.context("pausing needs the freezer controller, which is not mounted")
    }

    pub(super) fn freeze(&self) -> Result<()> {
        match self.freezer()? {
            Target::V1(dir) => {
                fs::write(dir, "freezer.state", "FROZEN")?;
                wait_until("frozen", || {
                    if v1_freezer_state(dir)? == "FROZEN" {
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

    pub(super) fn thaw(&self) -> Result<()> {
        match self.freezer()? {
            Target::V1(dir) => {
                fs::write(dir, "freezer.state", "THAWED")?;
                wait_until("thawed", || Ok(!self.is_frozen()?))
            }
            Target::V2(dir) => freeze_v2(dir, false),
        }
    }

    /// Whether the container is paused. On v1 also while FREEZING: a frozen cgroup shows that
    /// until a task that just joined it (`exec --ignore-paused`) is frozen too.
    pub(super) fn is_frozen(&self) -> Result<bool> {
        match self.freezer()? {
            Target::V1(dir) => Ok(v1_freezer_state(dir)? != "THAWED"),
            Target::V2(dir) => is_frozen_v2(dir),
        }
    }

    /// A directory of the container's cgroup that existed before `create` and is frozen.
    pub(super) fn frozen_before_create(&self) -> Result<Option<&CgroupDir>> {
        for dir in self.dirs.iter().filter(|d| d.existed()) {
            let frozen = match dir.version {
                Version::V1 if dir.controllers.iter().any(|c| c == "freezer") => {
                    v1_freezer_state(&dir.path)? != "THAWED"
                }
                Version::V1 => false,
                Version::V2 => is_frozen_v2(&dir.path)?,
            };
            if frozen {
                return Ok(Some(dir));
            }
        }
        Ok(None)
    }

    /// The directory listing the container's processes: v1's freezer hierarchy, which pause
    /// and kill use.
    pub(super) fn procs_dir(&self) -> Result<&CgroupDir> {
        let dir = match self.hierarchy {
            Version::V1 => self.v1_dir("freezer").or_else(|| self.dirs.first()),
            Version::V2 => self.v2_dir(),
        };
        dir.context("the container has no cgroup")
    }

    pub(super) fn stats(&self) -> Result<Stats> {
        let mut out = Stats::default();
        match self.hierarchy {
            Version::V1 => self.v1_stats(&mut out)?,
            Version::V2 => {
                let dir = self.v2_path()?;
                v2::stats(dir, &v2::controllers(dir)?, &mut out)?;
            }
        }
        Ok(out)
    }

    fn v1_stats(&self, out: &mut Stats) -> Result<()> {
        type Reader = fn(&Path, &mut Stats) -> Result<()>;
        let readers: [(&str, Reader); 6] = [
            ("cpu", v1::cpu_stats),
            ("cpuacct", v1::cpuacct_stats),
            ("cpuset", v1::cpuset_stats),
            ("memory", v1::memory_stats),
            ("pids", v1::pids_stats),
            ("blkio", v1::blkio_stats),
        ];
        for (controller, read) in readers {
            if let Some(d) = self.v1_dir(controller) {
                read(&d.path, out)?;
            }
        }
        if let Some(d) = self.v1_dir("hugetlb") {
            v1::hugetlb_stats(&d.path, &convert::host_hugepage_sizes()?, out)?;
        } else if let Some(dir) = self.hybrid_v2_target("hugetlb", false)?
            && v2::controllers(dir)?.iter().any(|c| c == "hugetlb")
        {
            v2::hugetlb_stats(dir, &convert::host_hugepage_sizes()?, out)?;
        }
        Ok(())
    }

    pub(super) fn watch_oom(&self) -> Result<OomWatch> {
        match self.hierarchy {
            Version::V1 => match self.v1_dir("memory") {
                Some(d) => OomWatch::v1(&d.path),
                None => bail!("OOM events need the memory controller, which is not mounted"),
            },
            Version::V2 => OomWatch::v2(self.v2_path()?),
        }
    }
}

fn freeze_v2(dir: &Path, frozen: bool) -> Result<()> {
    fs::write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let state = if frozen { "frozen" } else { "thawed" };
    wait_until(state, || Ok(is_frozen_v2(dir)? == frozen))
}

/// THAWED, FREEZING or FROZEN.
fn v1_freezer_state(dir: &Path) -> Result<String> {
    Ok(fs::read(dir, "freezer.state")?.trim().to_string())
}

fn is_frozen_v2(dir: &Path) -> Result<bool> {
    let events = fs::parse_flat_keyed(&fs::read(dir, "cgroup.events")?);
    Ok(events.get("frozen") == Some(&1))
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
