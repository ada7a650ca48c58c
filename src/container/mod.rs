//! The lifecycle: one file per operation, all on top of `state`, which alone
//! decides what each status allows.

mod checkpoint;
mod create;
mod delete;
mod exec;
mod foreground;
mod kill;
mod notify;
mod pidfd_socket;
mod query;
mod resources;
mod restore;
mod rollback;
mod run;
mod start;
pub mod state;

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nix::fcntl::{Flock, FlockArg, OFlag, open};
use nix::sys::stat::Mode;

pub use checkpoint::{CheckpointOptions, checkpoint};
pub use create::{ConsoleTarget, CreateOptions, create};
pub use delete::delete;
pub use exec::{ExecRequest, exec};
pub use kill::kill;
pub use query::{list, ps, state};
pub use resources::{events, pause, resume, update};
pub use restore::{RestoreOptions, restore};
pub use run::{RunOptions, run};
pub use start::start;

use crate::cgroups::CgroupManager;
use crate::sys;
use state::{State, StateRoot, Status};

/// A container found under the state root, with its directory locked against
/// concurrent lifecycle commands for as long as this value lives.
pub struct Container {
    pub dir: PathBuf,
    pub state: State,
    _lock: Flock<File>,
}

// Callers match runc's words in the error output (containerd's shim: `does not exist` is no
// such container, `container not running` after a kill means it is already gone), so each
// refusal carries them verbatim, after the container's id.

#[derive(Debug, thiserror::Error)]
#[error("{0}: container does not exist")]
pub struct NotFound(pub String);

#[derive(Debug, thiserror::Error)]
#[error("{0}: container not running")]
pub struct NotRunning(pub String);

impl Container {
    pub fn load(root: &StateRoot, id: &str) -> Result<Container> {
        let dir = root.container_dir(id)?;
        let handle = match File::open(&dir) {
            Ok(handle) => handle,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(NotFound(id.to_string()).into());
            }
            Err(e) => return Err(e).with_context(|| format!("opening {}", dir.display())),
        };
        let lock = lock_dir(handle, &dir)?;
        let state = State::load(&dir)?;
        Ok(Container {
            dir,
            state,
            _lock: lock,
        })
    }

    /// The container `create` has just made, its state still in hand: locked, not read back.
    fn locked(dir: PathBuf, state: State) -> Result<Container> {
        let handle = File::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        let lock = lock_dir(handle, &dir)?;
        Ok(Container {
            dir,
            state,
            _lock: lock,
        })
    }

    pub fn status(&self) -> Status {
        self.state.status(&self.dir)
    }

    /// A pidfd for the init, checked to be the init and not a recycled pid.
    pub fn init_pidfd(&self) -> Result<OwnedFd> {
        let not_running = || NotRunning(self.state.id.clone());
        let init = self.state.init.ok_or_else(not_running)?;
        let pidfd = match sys::pidfd_open(init.pid()) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(not_running().into()),
            other => {
                other.with_context(|| format!("pidfd_open of the container's init {}", init.pid))?
            }
        };
        // Checked after opening: if it is still the same process now, the
        // pidfd refers to it for good.
        if !init.is_alive() {
            return Err(not_running().into());
        }
        Ok(pidfd)
    }

    /// The init's root directory (`/proc/<pid>/root`), checked to be still the init's.
    pub fn init_root(&self) -> Result<OwnedFd> {
        let not_running = || NotRunning(self.state.id.clone());
        let init = self.state.init.ok_or_else(not_running)?;
        let path = format!("/proc/{}/root", init.pid);
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let root =
            open(path.as_str(), flags, Mode::empty()).with_context(|| format!("opening {path}"))?;
        if !init.is_alive() {
            return Err(not_running().into());
        }
        Ok(root)
    }

    pub fn save(&self) -> Result<()> {
        self.state.save(&self.dir)
    }

    pub fn hook_state_json(&self, status: Status) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(&self.state.to_oci_json(status))?)
    }
}

fn lock_dir(handle: File, dir: &Path) -> Result<Flock<File>> {
    Flock::lock(handle, FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .with_context(|| format!("locking {}", dir.display()))
}

/// How long a process may take to die after SIGKILL, as long as runc's `delete --force` waits.
/// One that takes longer hangs in the kernel, and waiting on would hang the caller with it.
const DEATH_AFTER_SIGKILL: Duration = Duration::from_secs(10);

/// Waits until the process behind `pidfd` (it need not be our child), sent SIGKILL, has exited.
pub fn wait_until_killed(pidfd: &OwnedFd) -> Result<()> {
    let exited = sys::wait_for_exit(pidfd.as_fd(), Some(DEATH_AFTER_SIGKILL))
        .context("waiting for the process to exit")?;
    ensure!(
        exited,
        "still running {}s after SIGKILL",
        DEATH_AFTER_SIGKILL.as_secs()
    );
    Ok(())
}

/// Call after sending SIGKILL into the container: the cgroup v1 freezer keeps a frozen task
/// with the signal pending until it is thawed, so a paused container is thawed (as runc does).
pub fn thaw_after_sigkill(cgroup: &dyn CgroupManager) -> Result<()> {
    // No freezer (is_frozen fails) means nothing is frozen.
    if cgroup.is_frozen().unwrap_or(false) {
        cgroup.thaw()?;
    }
    Ok(())
}
