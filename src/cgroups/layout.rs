//! Where the host mounts its cgroup hierarchies, and where a container's cgroup goes in each.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::sys::statfs;

/// v1 controllers berth knows how to drive; other super options of a cgroup mount are flags.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "net_cls",
    "net_prio",
    "hugetlb",
    "perf_event",
    "rdma",
    "misc",
];

/// One mounted cgroup v1 hierarchy, e.g. `/sys/fs/cgroup/memory` with `["memory"]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub mount_point: PathBuf,
    /// The cgroup of the hierarchy that is visible at `mount_point` (not `/` inside a cgroupns).
    pub mount_root: String,
    /// Controllers bound to the hierarchy, plus `name=…` for named hierarchies.
    pub controllers: Vec<String>,
}

/// The cgroup2 mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unified {
    pub mount_point: PathBuf,
    pub mount_root: String,
}

/// The host's cgroup layout, detected from `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    V1 {
        hierarchies: Vec<V1Hierarchy>,
    },
    V2 {
        unified: Unified,
    },
    /// v1 controllers plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`) holding whatever
    /// controllers are not bound to v1 (hugetlb only, on the development host).
    Hybrid {
        hierarchies: Vec<V1Hierarchy>,
        unified: Unified,
    },
}

impl Layout {
    /// The hierarchies this process can reach: those `/proc/self/mountinfo` lists whose mount
    /// point still shows a cgroup filesystem (see [`Layout::from_mountinfo`]).
    pub fn detect() -> Result<Layout> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .context("reading /proc/self/mountinfo")?;
        Layout::from_mountinfo(&mountinfo, shows_cgroup_fs)
    }

    /// The layout from mountinfo text. mountinfo also lists mounts that something mounted over
    /// later hides (a tmpfs over /sys/fs/cgroup in nested containers, tools that hide the
    /// cgroup2 mount): a mount whose mount point a later line mounts again is skipped, and
    /// `reachable(mount_point, cgroup2)` must confirm each remaining one (as runc, with statfs).
    pub fn from_mountinfo(
        mountinfo: &str,
        reachable: impl Fn(&Path, bool) -> bool,
    ) -> Result<Layout> {
        let mounts: Vec<MountinfoEntry> =
            mountinfo.lines().filter_map(parse_mountinfo_line).collect();
        let covered_later = |i: usize| {
            let mount_point = mounts[i].mount_point;
            mounts[i + 1..].iter().any(|m| m.mount_point == mount_point)
        };
        let mut hierarchies: Vec<V1Hierarchy> = Vec::new();
        let mut unified = None;
        for (i, mount) in mounts.iter().enumerate() {
            let cgroup2 = match mount.fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => continue,
            };
            if covered_later(i) || !reachable(Path::new(mount.mount_point), cgroup2) {
                continue;
            }
            if cgroup2 {
                unified.get_or_insert_with(|| Unified {
                    mount_point: mount.mount_point.into(),
                    mount_root: mount.root.to_string(),
                });
                continue;
            }
            let controllers: Vec<String> = mount
                .super_options
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_string)
                .collect();
            // The same hierarchy can be mounted twice (bind mounts); the first one wins.
            if !controllers.is_empty() && !hierarchies.iter().any(|h| h.controllers == controllers)
            {
                hierarchies.push(V1Hierarchy {
                    mount_point: mount.mount_point.into(),
                    mount_root: mount.root.to_string(),
                    controllers,
                });
            }
        }
        // Named-only v1 hierarchies (name=systemd kept for old tools on a v2 host) hold no
        // controller: such a host is v2 for all that berth does.
        let has_v1_controllers = hierarchies
            .iter()
            .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
        if !has_v1_controllers && unified.is_some() {
            hierarchies.clear();
        }
        Ok(match (hierarchies.is_empty(), unified) {
            (true, Some(unified)) => Layout::V2 { unified },
            (false, Some(unified)) => Layout::Hybrid {
                hierarchies,
                unified,
            },
            (false, None) => Layout::V1 { hierarchies },
            (true, None) => bail!(
                "no cgroup filesystem is reachable (see /proc/self/mountinfo and what is \
                 mounted over /sys/fs/cgroup)"
            ),
        })
    }
}

/// Whether /sys/fs/cgroup is itself the cgroup2 filesystem: a pure cgroup v2 host, as runc
/// tells one (`IsCgroup2UnifiedMode`).
pub fn is_unified_host() -> Result<bool> {
    let fs = statfs::statfs("/sys/fs/cgroup").context("statfs /sys/fs/cgroup")?;
    Ok(fs.filesystem_type() == statfs::CGROUP2_SUPER_MAGIC)
}

/// Whether `mount_point` shows a cgroup (v1) or cgroup2 filesystem, not what covers it.
fn shows_cgroup_fs(mount_point: &Path, cgroup2: bool) -> bool {
    let wanted = if cgroup2 {
        statfs::CGROUP2_SUPER_MAGIC
    } else {
        statfs::CGROUP_SUPER_MAGIC
    };
    statfs::statfs(mount_point).is_ok_and(|fs| fs.filesystem_type() == wanted)
}

struct MountinfoEntry<'a> {
    root: &'a str,
    mount_point: &'a str,
    fstype: &'a str,
    super_options: &'a str,
}

/// `36 35 98:0 /root /mnt rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_mountinfo_line(line: &str) -> Option<MountinfoEntry<'_>> {
    let (before, after) = line.split_once(" - ")?;
    let mut before = before.split(' ');
    let root = before.nth(3)?;
    let mount_point = before.next()?;
    let mut after = after.split(' ');
    let fstype = after.next()?;
    let super_options = after.nth(1)?;
    Some(MountinfoEntry {
        root,
        mount_point,
        fstype,
        super_options,
    })
}

/// Lexically cleans an absolute cgroup path: no `.`, no `..` above the root, no empty parts.
pub fn clean_cgroup_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The parent of a cgroup path (`/` is its own parent).
pub fn parent_cgroup(path: &str) -> String {
    let clean = clean_cgroup_path(path);
    match clean.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((parent, _)) => parent.to_string(),
    }
}

/// How `linux.cgroupsPath` places the container's cgroup inside each hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupPath {
    /// Relative to the root of every hierarchy.
    Absolute(String),
    /// Relative to berth's own cgroup in every hierarchy (as runc does).
    RelativeToOwn(String),
}

/// Where berth puts a container whose bundle has no `linux.cgroupsPath`: `/<id>`, as runc does.
/// No shared parent, so `delete` leaves no directory behind.
pub fn default_cgroup_path(container_id: &str) -> String {
    clean_cgroup_path(&format!("/{container_id}"))
}

impl CgroupPath {
    pub fn from_spec(cgroups_path: Option<&str>, container_id: &str) -> CgroupPath {
        match cgroups_path {
            None | Some("") => CgroupPath::Absolute(default_cgroup_path(container_id)),
            Some(p) if p.starts_with('/') => CgroupPath::Absolute(clean_cgroup_path(p)),
            Some(p) => CgroupPath::RelativeToOwn(p.to_string()),
        }
    }

    /// The cgroup (as the hierarchy names it) given the cgroup berth itself is in there.
    pub fn in_hierarchy(&self, own_cgroup: &str) -> String {
        match self {
            CgroupPath::Absolute(p) => p.clone(),
            CgroupPath::RelativeToOwn(p) => clean_cgroup_path(&format!("{own_cgroup}/{p}")),
        }
    }
}

/// The directory of `cgroup` under a mount that shows the hierarchy from `mount_root`.
pub fn cgroup_dir(mount_point: &Path, mount_root: &str, cgroup: &str) -> Result<PathBuf> {
    let root = clean_cgroup_path(mount_root);
    let cgroup = clean_cgroup_path(cgroup);
    let inside = if root == "/" {
        cgroup.as_str()
    } else {
        cgroup
            .strip_prefix(&root)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .with_context(|| {
                format!("cgroup {cgroup} is outside the part {root} mounted at {mount_point:?}")
            })?
    };
    Ok(mount_point.join(inside.trim_start_matches('/')))
}

/// One line of `/proc/<pid>/cgroup`: the controllers of a hierarchy (empty for cgroup2) and the
/// process's cgroup in it.
#[derive(Debug, PartialEq, Eq)]
pub struct OwnCgroup {
    pub controllers: Vec<String>,
    pub path: String,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<OwnCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _id = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            Some(OwnCgroup {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// Reads berth's own cgroups, only when a relative cgroupsPath needs them.
pub fn own_cgroups() -> Result<Vec<OwnCgroup>> {
    read_proc_cgroup("self")
}

/// The cgroups of process `pid`, as this process's cgroup namespace names them.
pub fn cgroups_of(pid: i32) -> Result<Vec<OwnCgroup>> {
    read_proc_cgroup(&pid.to_string())
}

fn read_proc_cgroup(process: &str) -> Result<Vec<OwnCgroup>> {
    let path = format!("/proc/{process}/cgroup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_proc_cgroup(&text))
}

/// berth's own cgroup in the hierarchy with these controllers (empty = cgroup2).
pub fn own_cgroup_in<'a>(own: &'a [OwnCgroup], controllers: &[String]) -> Result<&'a str> {
    own.iter()
        .find(|o| o.controllers == controllers)
        .map(|o| o.path.as_str())
        .with_context(|| {
            format!("/proc/self/cgroup has no entry for the hierarchy {controllers:?}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:3 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 / /mnt/memory-again rw,relatime - cgroup cgroup rw,memory
";

    /// Every listed mount is reachable.
    fn all(_: &Path, _: bool) -> bool {
        true
    }

    #[test]
    fn mounts_hidden_by_later_ones_are_not_used() {
        // A tmpfs over /sys/fs/cgroup (a nested container) with v1 hierarchies mounted again
        // on it, but not the cgroup2 one: what is left of the host's lines is out of reach.
        let nested = format!(
            "{HYBRID}\
             200 31 0:90 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
             201 200 0:29 /docker/c /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
             202 200 0:32 /docker/c /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        );
        let below_tmpfs = |p: &Path, _: bool| {
            ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory"].contains(&p.to_str().unwrap())
        };
        let Layout::V1 { hierarchies } = Layout::from_mountinfo(&nested, below_tmpfs).unwrap()
        else {
            panic!("not v1")
        };
        let roots: Vec<_> = hierarchies.iter().map(|h| h.mount_root.as_str()).collect();
        assert_eq!(roots, ["/docker/c", "/docker/c"]);
        // The cgroup2 mount unmounted or covered, nothing else changed: pure v1.
        let no_unified = |_: &Path, cgroup2: bool| !cgroup2;
        let layout = Layout::from_mountinfo(HYBRID, no_unified).unwrap();
        assert!(matches!(layout, Layout::V1 { .. }), "{layout:?}");
        let err = Layout::from_mountinfo(HYBRID, |_, _| false).unwrap_err();
        assert!(err.to_string().contains("no cgroup filesystem"), "{err}");
    }

    #[test]
    fn detects_hybrid_with_named_hierarchy_and_ignores_duplicate_mounts() {
        let Layout::Hybrid {
            hierarchies,
            unified,
        } = Layout::from_mountinfo(HYBRID, all).unwrap()
        else {
            panic!("not hybrid")
        };
        let controllers: Vec<_> = hierarchies
            .iter()
            .map(|h| h.controllers.join(","))
            .collect();
        assert_eq!(controllers, ["cpu", "cpuacct", "memory", "name=systemd"]);
        assert_eq!(
            hierarchies[2].mount_point,
            Path::new("/sys/fs/cgroup/memory")
        );
        assert_eq!(unified.mount_point, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn detects_pure_v2_and_pure_v1() {
        let v2 = "25 20 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert!(matches!(
            Layout::from_mountinfo(v2, all).unwrap(),
            Layout::V2 { .. }
        ));
        let with_named =
            format!("{v2}40 25 0:37 / /run/systemd rw - cgroup cgroup rw,name=systemd\n");
        assert!(matches!(
            Layout::from_mountinfo(&with_named, all).unwrap(),
            Layout::V2 { .. }
        ));
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let Layout::V1 { hierarchies } = Layout::from_mountinfo(v1, all).unwrap() else {
            panic!("not v1")
        };
        assert_eq!(hierarchies[0].controllers, ["cpu", "cpuacct"]);
        assert!(Layout::from_mountinfo("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n", all).is_err());
    }

    #[test]
    fn cgroups_path_absolute_relative_and_default() {
        let abs = CgroupPath::from_spec(Some("/a/../b/./c/"), "x");
        assert_eq!(abs, CgroupPath::Absolute("/b/c".into()));
        assert_eq!(abs.in_hierarchy("/process_api/1"), "/b/c");
        let rel = CgroupPath::from_spec(Some("ctr/x"), "x");
        assert_eq!(rel.in_hierarchy("/process_api/1"), "/process_api/1/ctr/x");
        assert_eq!(rel.in_hierarchy("/"), "/ctr/x");
        assert_eq!(
            CgroupPath::from_spec(None, "abc"),
            CgroupPath::Absolute("/abc".into())
        );
        assert_eq!(clean_cgroup_path("/../../etc"), "/etc");
        assert_eq!(parent_cgroup("/user.slice/session-1.scope"), "/user.slice");
        assert_eq!(parent_cgroup("/a"), "/");
        assert_eq!(parent_cgroup("/"), "/");
    }

    #[test]
    fn cgroup_dir_respects_the_mount_root() {
        let mp = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(cgroup_dir(mp, "/", "/berth/x").unwrap(), mp.join("berth/x"));
        assert_eq!(cgroup_dir(mp, "/", "/").unwrap(), mp);
        assert_eq!(
            cgroup_dir(mp, "/docker/1", "/docker/1/berth").unwrap(),
            mp.join("berth")
        );
        assert!(cgroup_dir(mp, "/docker/1", "/docker/12").is_err());
    }

    #[test]
    fn parses_proc_self_cgroup() {
        let own = parse_proc_cgroup("4:memory:/process_api/e\n9:name=systemd:/\n0::/\n");
        assert_eq!(
            own_cgroup_in(&own, &["memory".into()]).unwrap(),
            "/process_api/e"
        );
        assert_eq!(own_cgroup_in(&own, &["name=systemd".into()]).unwrap(), "/");
        assert_eq!(own_cgroup_in(&own, &[]).unwrap(), "/");
        assert!(own_cgroup_in(&own, &["pids".into()]).is_err());
    }
}
