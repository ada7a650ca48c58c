//! The container's persistent record under `--root`, and the one place that
//! decides which status a container is in and what each status allows.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::atomic_write::write_atomically;
use crate::cgroups::{self, CgroupHandle, CgroupManager};
use crate::intelrdt::RdtGroup;
use crate::rootfs::RootfsBase;

pub const STATE_FILE: &str = "state.json";
/// The socket the created init waits on; it exists exactly while the
/// container is `created`.
pub const START_SOCKET: &str = "start.sock";

/// A process identified robustly: pid plus its start time, so a recycled pid
/// is never mistaken for the container's init.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    pub fn of(pid: Pid) -> Result<ProcessId> {
        let start_time =
            start_time(pid)?.with_context(|| format!("process {pid} exited during setup"))?;
        Ok(ProcessId {
            pid: pid.as_raw(),
            start_time,
        })
    }

    /// Alive and still the same process (a zombie counts as gone).
    pub fn is_alive(&self) -> bool {
        matches!(start_time(Pid::from_raw(self.pid)), Ok(Some(t)) if t == self.start_time)
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.pid)
    }
}

/// Start time in clock ticks from /proc/<pid>/stat; `None` if gone or a zombie.
fn start_time(pid: Pid) -> Result<Option<u64>> {
    let stat = match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading /proc/{pid}/stat")),
    };
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // fields[0] is field 3 (state); starttime is field 22.
    if fields.first() == Some(&"Z") {
        return Ok(None);
    }
    let start = fields
        .get(19)
        .and_then(|f| f.parse().ok())
        .with_context(|| format!("malformed /proc/{pid}/stat"))?;
    Ok(Some(start))
}

/// How far the lifecycle got, as recorded by the commands that moved it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Creating,
    Created,
    Started,
}

/// What the spec (and runc) call the container's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }

    pub fn can_start(self) -> bool {
        self == Status::Created
    }

    /// The spec: signals go to created or running containers (runc also
    /// allows paused ones, where the signal is delivered on resume). runc:
    /// `kill --all` of a stopped container succeeds, killing what its cgroup
    /// still holds (containerd's CRI sends it whenever a container exits).
    pub fn can_kill(self, all: bool) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
            || (all && self == Status::Stopped)
    }

    /// The spec: delete only a stopped container; --force first kills it.
    pub fn can_delete(self) -> bool {
        self == Status::Stopped
    }

    /// runc's rule: a paused container only when asked to (`--ignore-paused`).
    pub fn can_exec(self, even_paused: bool) -> bool {
        matches!(self, Status::Created | Status::Running) || (even_paused && self == Status::Paused)
    }

    /// runc pauses a created container too; `resume` then makes it created again.
    pub fn can_pause(self) -> bool {
        matches!(self, Status::Created | Status::Running)
    }

    pub fn can_resume(self) -> bool {
        self == Status::Paused
    }

    /// runc's rule: CRIU dumps processes, so there must be some that run (or are frozen).
    pub fn can_checkpoint(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// `Config` is the validated config (`Spec`) for the commands that act on the container, or
/// [`ConfigSummary`] for those that only report on it.
#[derive(Serialize, Deserialize)]
pub struct State<Config = Spec> {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 time of `create`.
    pub created: String,
    pub phase: Phase,
    /// The `berth create` process while `phase` is `creating`: if it died, the
    /// container is a leftover for `delete --force`, not a container in the making.
    pub creator: Option<ProcessId>,
    pub init: Option<ProcessId>,
    /// The container's cgroup, recorded before the init exists so that even a
    /// create killed half-way leaves `delete --force` what it needs.
    pub cgroup: Option<CgroupHandle>,
    /// The container's resctrl groups (`linux.intelRdt`), recorded before they are made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intel_rdt: Option<RdtGroup>,
    /// Without a mount namespace of its own: what the rootfs showed before the container
    /// stacked its mounts there, for delete to detach them (see `rootfs::RootfsBase`).
    #[serde(default)]
    pub shared_rootfs: Option<RootfsBase>,
    /// The validated config, for exec, hooks and delete.
    pub config: Config,
}

/// Of the recorded config, what `state`, `list` and `ps` print: the rest (thousands of values
/// in an engine's config) is skipped by the parser, never built.
#[derive(Deserialize)]
pub struct ConfigSummary {
    #[serde(rename = "ociVersion")]
    oci_version: String,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

/// A config's part of the state JSON of the runtime spec.
pub trait StateJsonSource {
    fn oci_version(&self) -> &str;
    fn annotations(&self) -> Option<&HashMap<String, String>>;
}

impl StateJsonSource for Spec {
    fn oci_version(&self) -> &str {
        self.version()
    }

    fn annotations(&self) -> Option<&HashMap<String, String>> {
        Spec::annotations(self).as_ref()
    }
}

impl StateJsonSource for ConfigSummary {
    fn oci_version(&self) -> &str {
        &self.oci_version
    }

    fn annotations(&self) -> Option<&HashMap<String, String>> {
        self.annotations.as_ref()
    }
}

impl<Config> State<Config> {
    pub fn status(&self, dir: &Path) -> Status {
        let init_alive = self.init.is_some_and(|init| init.is_alive());
        match self.phase {
            Phase::Creating if self.creator.is_some_and(|c| c.is_alive()) => Status::Creating,
            Phase::Creating => Status::Stopped,
            _ if !init_alive => Status::Stopped,
            // Before `created`: a created container can be paused, as in runc.
            _ if self.is_frozen() => Status::Paused,
            Phase::Created if dir.join(START_SOCKET).exists() => Status::Created,
            _ => Status::Running,
        }
    }

    fn is_frozen(&self) -> bool {
        self.cgroup_manager()
            .is_ok_and(|cgroup| cgroup.is_some_and(|c| c.is_frozen().unwrap_or(false)))
    }

    pub fn cgroup_manager(&self) -> anyhow::Result<Option<Box<dyn CgroupManager>>> {
        self.cgroup.as_ref().map(cgroups::from_handle).transpose()
    }
}

impl<Config: StateJsonSource> State<Config> {
    pub fn annotations(&self) -> HashMap<String, String> {
        self.config.annotations().cloned().unwrap_or_default()
    }

    /// The state JSON of the runtime spec plus runc's extras (`rootfs`,
    /// `created`, `owner`): what `state` prints and hooks read on stdin.
    pub fn to_oci_json(&self, status: Status) -> serde_json::Value {
        let pid = match status {
            Status::Stopped => 0,
            _ => self.init.map_or(0, |init| init.pid),
        };
        let mut json = serde_json::json!({
            "ociVersion": self.config.oci_version(),
            "id": self.id,
            "pid": pid,
            "status": status.name(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": "",
        });
        let annotations = self.annotations();
        if !annotations.is_empty() {
            json["annotations"] = serde_json::json!(annotations);
        }
        json
    }
}

impl State {
    pub fn load(dir: &Path) -> Result<State> {
        read_state(dir)
    }

    /// Replaces state.json atomically: readers see the old or the new file, never half.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomically(&dir.join(STATE_FILE), &serde_json::to_vec(self)?)
    }
}

impl State<ConfigSummary> {
    /// The state without the config's body: what reporting on a container needs.
    pub fn load_summary(dir: &Path) -> Result<State<ConfigSummary>> {
        read_state(dir)
    }
}

fn read_state<Config: DeserializeOwned>(dir: &Path) -> Result<State<Config>> {
    let path = dir.join(STATE_FILE);
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// The directory that holds every container's state.
pub struct StateRoot(PathBuf);

impl StateRoot {
    pub fn new(path: &Path) -> Result<StateRoot> {
        let path =
            std::path::absolute(path).with_context(|| format!("--root {}", path.display()))?;
        Ok(StateRoot(path))
    }

    /// Compiled seccomp programs, reused across containers with the same
    /// profile; a dot-name no container id can have.
    pub fn seccomp_cache_dir(&self) -> PathBuf {
        self.0.join(".seccomp-cache")
    }

    pub fn container_dir(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(self.0.join(id))
    }

    /// Creates the container's directory; exactly one of several concurrent
    /// creates of the same id succeeds (mkdir is atomic).
    pub fn claim(&self, id: &str) -> Result<PathBuf> {
        let dir = self.container_dir(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0)
            .with_context(|| format!("creating state root {}", self.0.display()))?;
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("container with id {id} already exists")
            }
            Err(e) => Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }

    /// Ids of every container with a state directory, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.0) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.0.display())),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| validate_id(name).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// runc's rule, letters, digits and `_ + - .` (anything else could escape the
/// state root), except that an id may not start with a dot: those names are
/// the runtime's own (`.seccomp-cache`).
pub fn validate_id(id: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+-.".contains(c);
    if id.is_empty() || id.starts_with('.') || !id.chars().all(allowed) {
        bail!("invalid container id {id:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_the_root_are_rejected() {
        for bad in ["", ".", "..", ".seccomp-cache", "a/b", "../x", "a b", "x\n"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        for good in ["abc", "a.b-c_d+e", "0123456789abcdef"] {
            validate_id(good).unwrap();
        }
    }

    #[test]
    fn our_own_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::of(nix::unistd::getpid()).unwrap();
        assert!(me.is_alive());
        let recycled = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!recycled.is_alive());
    }

    #[test]
    fn a_summary_of_a_saved_state_reports_what_the_state_reports() {
        let mut config = Spec::default();
        config.set_annotations(Some(HashMap::from([("org.example".into(), "x".into())])));
        let state = State {
            id: "summary".into(),
            bundle: "/bundle".into(),
            rootfs: "/bundle/rootfs".into(),
            created: "2026-12-04T11:00:00Z".into(),
            phase: Phase::Started,
            creator: None,
            init: Some(ProcessId {
                pid: 42,
                start_time: 1,
            }),
            cgroup: None,
            intel_rdt: None,
            shared_rootfs: None,
            config,
        };
        let saved = serde_json::to_vec(&state).unwrap();
        let summary: State<ConfigSummary> = serde_json::from_slice(&saved).unwrap();
        assert_eq!(
            summary.to_oci_json(Status::Running),
            state.to_oci_json(Status::Running)
        );
    }

    #[test]
    fn the_status_rules_follow_the_spec() {
        assert!(Status::Created.can_start() && !Status::Running.can_start());
        assert!(Status::Stopped.can_delete() && !Status::Running.can_delete());
        assert!(!Status::Created.can_delete());
        assert!(!Status::Stopped.can_kill(false));
    }

    #[test]
    fn the_status_rules_follow_runc_where_the_spec_is_silent() {
        assert!(Status::Paused.can_kill(false));
        assert!(Status::Stopped.can_kill(true));
        assert!(!Status::Paused.can_exec(false) && Status::Paused.can_exec(true));
        assert!(Status::Created.can_pause() && !Status::Paused.can_pause());
    }
}
