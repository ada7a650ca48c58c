//! `process.cwd`, resolved inside the container root (CVE-2024-21626: a leaked host directory fd
//! reached through /proc/self/fd/N must not become the working directory).

use std::path::Path;

use anyhow::{Result, anyhow, ensure};
use nix::fcntl::OFlag;

use super::sys;

/// Opens `cwd` with the container's `/` as root, refusing magic links, then fchdir()s to it and
/// checks that the kernel agrees the new working directory is reachable from the root.
pub fn enter(cwd: &Path) -> Result<()> {
    let dir = sys::open_in_root(cwd, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|errno| anyhow!("process.cwd {cwd:?}: {}", errno.desc().to_lowercase()))?;
    nix::unistd::fchdir(&dir)
        .map_err(|errno| anyhow!("process.cwd {cwd:?}: fchdir: {}", errno.desc()))?;
    // getcwd fails (ENOENT, "(unreachable)") when the directory is outside our root.
    let actual = nix::unistd::getcwd().map_err(|errno| {
        anyhow!(
            "process.cwd {cwd:?}: outside the container: {}",
            errno.desc()
        )
    })?;
    ensure!(
        actual.is_absolute(),
        "process.cwd {cwd:?}: resolves outside the container"
    );
    Ok(())
}
