//! The cgroupfs driver: berth itself makes and removes the container's cgroup directories.
//!
//! Placement (`linux.cgroupsPath`): an absolute path is taken relative to the root of every
//! hierarchy; a relative one relative to berth's own cgroup in each v1 hierarchy and to its
//! parent on cgroup2 (as runc does); an absent one becomes `/<id>` (runc).

use anyhow::Result;

use super::CgroupHandle;
use super::hierarchy;
use super::layout::{self, CgroupPath, Layout, OwnCgroup};

/// Where the container's cgroup goes on this host (nothing is created yet).
pub fn plan(cgroups_path: Option<&str>, container_id: &str) -> Result<CgroupHandle> {
    let path = CgroupPath::from_spec(cgroups_path, container_id);
    let own = match path {
        CgroupPath::RelativeToOwn(_) => layout::own_cgroups()?,
        CgroupPath::Absolute(_) => Vec::new(),
    };
    plan_in(&Layout::detect()?, &path, &own)
}

/// Where the container's cgroup goes in each hierarchy of `layout`, berth being in `own`.
fn plan_in(layout: &Layout, path: &CgroupPath, own: &[OwnCgroup]) -> Result<CgroupHandle> {
    // A relative path starts at berth's own cgroup in each v1 hierarchy, and at its parent on
    // cgroup2 (as runc's fs2): berth's own holds berth, and a cgroup2 cgroup with processes
    // cannot enable controllers for the cgroups below it.
    let cgroup_in = |controllers: &[String]| -> Result<String> {
        Ok(match path {
            CgroupPath::Absolute(p) => p.clone(),
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
    let (hierarchy, dirs) = hierarchy::place(layout, cgroup_in)?;
    let cgroups_path = match path {
        CgroupPath::Absolute(p) | CgroupPath::RelativeToOwn(p) => p.clone(),
    };
    Ok(CgroupHandle {
        hierarchy,
        cgroups_path,
        dirs,
        rootless: false,
        systemd: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Version;
    use super::*;

    const HYBRID: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";

    fn dir_paths(handle: &CgroupHandle) -> Vec<&str> {
        handle
            .dirs
            .iter()
            .map(|d| d.path.to_str().unwrap())
            .collect()
    }

    #[test]
    fn plans_one_dir_per_hierarchy_and_the_unified_one_on_hybrid() {
        let layout = Layout::from_mountinfo(HYBRID, |_, _| true).unwrap();
        let path = CgroupPath::from_spec(None, "c1");
        let handle = plan_in(&layout, &path, &[]).unwrap();
        assert_eq!(handle.hierarchy, Version::V1);
        assert_eq!(
            dir_paths(&handle),
            [
                "/sys/fs/cgroup/cpu/c1",
                "/sys/fs/cgroup/memory/c1",
                "/sys/fs/cgroup/unified/c1"
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
        let path = CgroupPath::from_spec(Some("sub/c1"), "c1");
        let handle = plan_in(&layout, &path, &own).unwrap();
        assert_eq!(
            dir_paths(&handle),
            [
                "/sys/fs/cgroup/cpu/sub/c1",
                "/sys/fs/cgroup/memory/process_api/e/sub/c1",
                "/sys/fs/cgroup/unified/sub/c1"
            ]
        );
    }
}
