//! A container's cgroup as the host sees it, to check that the limits an engine asked for are
//! the ones in force.

use std::fs;
use std::path::PathBuf;

use crate::common::v1_cgroup_mount;

/// The directory of `pid`'s cgroup for `controller` (e.g. "memory", "pids"): in the v1
/// hierarchy that has the controller, else in the unified (v2) one.
pub fn cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let membership = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    // "4:memory:/path" in v1, "0::/path" in v2.
    let v1 = membership.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| (v1_cgroup_mount(controller), path))
    });
    let (mount, path) = match v1 {
        Some((Some(mount), path)) => (mount, path),
        _ => {
            let path = membership
                .lines()
                .find_map(|line| line.strip_prefix("0::"))
                .unwrap_or_else(|| panic!("pid {pid} has no {controller} cgroup:\n{membership}"));
            (v2_mount(&mountinfo), path)
        }
    };
    mount.join(path.trim_start_matches('/'))
}

/// Reads `<cgroup dir of pid for controller>/<file>`, trimmed.
pub fn read(pid: i32, controller: &str, file: &str) -> String {
    let path = cgroup_dir(pid, controller).join(file);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// True when `controller` is in a v1 hierarchy on this host.
pub fn is_v1(controller: &str) -> bool {
    v1_cgroup_mount(controller).is_some()
}

fn v2_mount(mountinfo: &str) -> PathBuf {
    mountinfo
        .lines()
        .find_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            fs.starts_with("cgroup2 ")
                .then_some(PathBuf::from(mount.split(' ').nth(4)?))
        })
        .expect("no cgroup2 mount")
}
