//! A new process moves itself into the container's cgroup.
//!
//! When one process writes another's pid to `cgroup.procs`, the kernel takes
//! cgroup_threadgroup_rwsem for writing, and that waits for an RCU grace period: 4.5 to 45 ms
//! per write on a busy cgroup v1 host (measured in the README's "The cgroup v1 join"), most of
//! a container's start. A thread that writes `0` to a v1 hierarchy's `tasks` file moves only
//! itself, and the kernel takes no such lock for it (see cgroup_procs_write_start in
//! kernel/cgroup/cgroup.c); a kernel without that shortcut takes the lock either way, as it did
//! for the runtime's write. The process is single-threaded then, so its one thread is all of
//! it.
//!
//! The runtime opens the files before the clone, with its own credentials (which the kernel
//! checks, not the writer's); the child writes to them first thing, wherever its mount
//! namespace leaves the cgroup filesystems.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::Version;

/// How a process about to be cloned gets into the container's cgroup.
pub struct Joining {
    /// The cgroup2 directory to clone it straight into (CLONE_INTO_CGROUP): no write at all.
    pub clone_into: Option<OwnedFd>,
    /// What it writes to itself for the other hierarchies.
    pub self_join: SelfJoin,
}

/// The open files a new process writes `0` to, one per hierarchy.
#[derive(Debug, Default)]
pub struct SelfJoin {
    files: Vec<(PathBuf, File)>,
}

impl SelfJoin {
    /// Opens, for each (hierarchy, directory), the file that moves the writing thread there: a v1
    /// hierarchy's `tasks`; a cgroup2 directory has none, there `cgroup.procs` moves the
    /// whole process (and takes the lock).
    pub(super) fn open(dirs: impl IntoIterator<Item = (Version, PathBuf)>) -> Result<Self> {
        let open = |(version, dir): (Version, PathBuf)| {
            let path = dir.join(join_file(version));
            let file = File::options()
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            Ok((path, file))
        };
        let files = dirs.into_iter().map(open).collect::<Result<_>>()?;
        Ok(SelfJoin { files })
    }

    /// The files as received by the process that writes to them, with the paths they were
    /// opened at (for its errors).
    pub fn from_files(files: Vec<(PathBuf, File)>) -> Self {
        SelfJoin { files }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Each file with the path it was opened at, to hand them to another process.
    pub fn files(&self) -> impl Iterator<Item = (&Path, BorrowedFd<'_>)> {
        (self.files.iter()).map(|(path, file)| (path.as_path(), file.as_fd()))
    }

    /// In the new, single-threaded process: moves it into every hierarchy, and closes the
    /// files (they must not reach the container).
    pub fn join(self) -> Result<()> {
        for (path, mut file) in self.files {
            file.write_all(b"0")
                .with_context(|| format!("joining the cgroup: writing 0 to {}", path.display()))?;
        }
        Ok(())
    }
}

/// The file that moves the thread writing `0` to it into a `version` cgroup.
pub(super) fn join_file(version: Version) -> &'static str {
    match version {
        Version::V1 => "tasks",
        Version::V2 => "cgroup.procs",
    }
}
