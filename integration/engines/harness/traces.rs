//! What a container or a daemon may leave on the host (processes, mounts, cgroups, files),
//! found by a name only it uses: a container id, a private directory, a cgroup parent.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common;

/// Host processes (other than this one) whose command line, working directory or cgroup
/// mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    common::all_pids()
        .into_iter()
        .filter(|&pid| pid != me && !common::is_orphaned_zombie(pid))
        .filter(|&pid| {
            let read = |name: &str| fs::read(format!("/proc/{pid}/{name}")).unwrap_or_default();
            let cwd = fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            common::contains(&read("cmdline"), needle.as_bytes())
                || common::contains(&read("cgroup"), needle.as_bytes())
                || cwd.to_string_lossy().contains(needle)
        })
        .collect()
}

/// Mount points (in this mount namespace) whose path mentions `needle`.
pub fn mounts_mentioning(needle: &str) -> Vec<PathBuf> {
    common::mounts_under(Path::new("/"))
        .into_iter()
        .filter(|m| m.to_string_lossy().contains(needle))
        .collect()
}

/// Cgroup dirs `<hierarchy>/<parent>/<entry>` whose entry mentions `needle`, in every
/// hierarchy.
pub fn cgroups_mentioning(parent: &str, needle: &str) -> Vec<PathBuf> {
    common::cgroup_hierarchies()
        .into_iter()
        .flat_map(|h| {
            fs::read_dir(h.join(parent.trim_start_matches('/')))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| {
            dir.is_dir()
                && dir
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(needle))
        })
        .collect()
}

/// Everything on the host that still names container `id` — its processes (shim, conmon,
/// runtime, container), mounts, cgroups under `cgroup_parent` — and which of `state_dirs`
/// (the runtime's `<root>/<id>` and the like) still exist. Empty means gone.
pub fn traces_of(id: &str, cgroup_parent: &str, state_dirs: &[PathBuf]) -> Vec<String> {
    let mut traces: Vec<String> = processes_mentioning(id)
        .into_iter()
        .map(|pid| format!("process {pid}: {}", common::describe_process(pid)))
        .collect();
    traces.extend(
        mounts_mentioning(id)
            .iter()
            .map(|m| format!("mount {}", m.display())),
    );
    traces.extend(
        cgroups_mentioning(cgroup_parent, id)
            .iter()
            .map(|d| format!("cgroup {}", d.display())),
    );
    traces.extend(
        state_dirs
            .iter()
            .filter(|d| d.exists())
            .map(|d| format!("state {}", d.display())),
    );
    traces
}

/// [`traces_of`] after up to 5 s: engines remove a container's pieces asynchronously (a shim
/// exits a moment after the engine's `rm` returned).
pub fn settled_traces_of(id: &str, cgroup_parent: &str, state_dirs: &[PathBuf]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let traces = traces_of(id, cgroup_parent, state_dirs);
        if traces.is_empty() || Instant::now() >= deadline {
            return traces;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILLs every process `processes_mentioning(needle)` finds and waits (up to 5 s) for them
/// to go. Returns what it killed, described.
pub fn kill_processes_mentioning(needle: &str) -> Vec<String> {
    let found: Vec<String> = processes_mentioning(needle)
        .into_iter()
        .map(|pid| {
            let description = format!("process {pid}: {}", common::describe_process(pid));
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            description
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(needle).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    found
}

/// Removes cgroup `parent` (and what is below it) from every hierarchy; returns the dirs below
/// it other than the engine's own `expected` ones (a container's cgroup left behind).
pub fn remove_cgroup_parent(parent: &str, expected: &[&str]) -> Vec<String> {
    let mut leftovers = Vec::new();
    for hierarchy in common::cgroup_hierarchies() {
        let dir = hierarchy.join(parent.trim_start_matches('/'));
        let children = fs::read_dir(&dir).into_iter().flatten().flatten();
        leftovers.extend(
            children
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| !expected.iter().any(|name| e.file_name() == *name))
                .map(|e| format!("cgroup {}", e.path().display())),
        );
        common::remove_cgroup_tree(&dir);
    }
    leftovers
}

/// Removes `dir` for good: kills processes working in or naming it, unmounts what is mounted
/// below it (deepest first, detached), deletes it. Returns the processes and mounts it found.
pub fn scrub_dir(dir: &Path) -> Vec<String> {
    let mut found = kill_processes_mentioning(&dir.to_string_lossy());
    let mut mounts = common::mounts_under(dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    for mount in mounts {
        found.push(format!("mount {}", mount.display()));
        let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
    }
    if let Err(e) = fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        found.push(format!("{} cannot be removed: {e}", dir.display()));
    }
    found
}
