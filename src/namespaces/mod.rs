//! Which namespaces the container gets: created fresh by clone3, or joined by
//! path with setns. Validated and opened once in the parent, so the child only
//! acts on fds that were checked (a path swapped later changes nothing).

mod mapped_userns;

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns, unshare};
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespace, LinuxNamespaceType};

use crate::sys::{self, Forked};

pub use mapped_userns::user_namespace_with;

/// A namespace the container joins, with the fd opened and type-checked.
pub struct Joined {
    pub kind: LinuxNamespaceType,
    pub fd: OwnedFd,
}

pub struct NamespacePlan {
    /// New namespaces created by clone3 itself.
    pub clone_flags: CloneFlags,
    /// A new cgroup namespace is unshared by the child once it sits in its
    /// cgroup, so that cgroup becomes the namespace's root.
    pub new_cgroup: bool,
    /// A new time namespace must be unshared and given its offsets before any
    /// process lives in it; the init enters it at execve.
    pub new_time: bool,
    pub joined: Vec<Joined>,
    /// uid_map and gid_map contents for a new user namespace.
    id_maps: Option<IdMaps>,
    /// Lines for /proc/self/timens_offsets: "<clock> <secs> <nanos>".
    time_offsets: Vec<String>,
}

/// uid_map and gid_map contents, rendered from runtime-spec mappings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMaps {
    uid: String,
    gid: String,
}

impl IdMaps {
    pub fn new(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> IdMaps {
        let render = |mappings: &[LinuxIdMapping]| -> String {
            mappings
                .iter()
                .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
                .collect()
        };
        IdMaps {
            uid: render(uid),
            gid: render(gid),
        }
    }

    /// Writes the maps of `child`'s new user namespace (from the parent: the child cannot map
    /// more than its own id). `owner` is the config.json object the mappings come from.
    pub fn write(&self, child: nix::unistd::Pid, owner: &str) -> Result<()> {
        std::fs::write(format!("/proc/{child}/uid_map"), &self.uid)
            .with_context(|| format!("{owner}.uidMappings: writing uid_map"))?;
        std::fs::write(format!("/proc/{child}/gid_map"), &self.gid)
            .with_context(|| format!("{owner}.gidMappings: writing gid_map"))
    }
}

pub fn clone_flag(kind: LinuxNamespaceType) -> CloneFlags {
    match kind {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

pub fn name(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

impl NamespacePlan {
    pub fn from_spec(linux: &Linux) -> Result<NamespacePlan> {
        let namespaces = linux.namespaces().as_deref().unwrap_or_default();
        check_no_duplicates(namespaces)?;
        let mut plan = NamespacePlan {
            clone_flags: CloneFlags::empty(),
            new_cgroup: false,
            new_time: false,
            joined: Vec::new(),
            id_maps: None,
            time_offsets: Vec::new(),
        };
        for (index, ns) in namespaces.iter().enumerate() {
            let field = format!("linux.namespaces[{index}]");
            match ns.path() {
                Some(path) => plan.joined.push(open_checked(ns.typ(), path, &field)?),
                None => match ns.typ() {
                    LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                    LinuxNamespaceType::Time => plan.new_time = true,
                    kind => plan.clone_flags |= clone_flag(kind),
                },
            }
        }
        if !plan.has(LinuxNamespaceType::Mount) {
            bail!("linux.namespaces: a mount namespace is required to set up the rootfs");
        }
        plan.check_joined_user_namespace()?;
        plan.id_maps = id_maps(linux, plan.clone_flags.contains(CloneFlags::CLONE_NEWUSER))?;
        plan.time_offsets = time_offsets(linux)?;
        if !plan.new_time && !plan.time_offsets.is_empty() {
            bail!("linux.timeOffsets: requires a new time namespace");
        }
        Ok(plan)
    }

    /// New namespaces come from clone3 in the parent, so they belong to the
    /// host's user namespace; a child that then joins another user namespace
    /// would have no privilege over them (its mounts would fail). Until the
    /// child creates them itself after joining, refuse the combination.
    fn check_joined_user_namespace(&self) -> Result<()> {
        let joins_user = self
            .joined
            .iter()
            .any(|j| j.kind == LinuxNamespaceType::User);
        let creates_any = !self.clone_flags.is_empty() || self.new_cgroup || self.new_time;
        if joins_user && creates_any {
            bail!(
                "linux.namespaces: joining a user namespace by path together with new \
                 namespaces is not supported yet (join every namespace by path, or create a \
                 new user namespace)"
            );
        }
        Ok(())
    }

    /// True when the container gets this namespace, new or joined.
    pub fn has(&self, kind: LinuxNamespaceType) -> bool {
        self.clone_flags.contains(clone_flag(kind))
            || (kind == LinuxNamespaceType::Cgroup && self.new_cgroup)
            || (kind == LinuxNamespaceType::Time && self.new_time)
            || self.joined.iter().any(|j| j.kind == kind)
    }

    /// In the parent, between clone and Go: the new user namespace's id
    /// mappings (the child cannot write its own beyond its single uid).
    pub fn write_id_maps(&self, child: nix::unistd::Pid) -> Result<()> {
        match &self.id_maps {
            Some(maps) => maps.write(child, "linux"),
            None => Ok(()),
        }
    }

    /// The pid namespace to join, which the parent enters around the clone
    /// (see `clone_in_pid_namespace`).
    pub fn joined_pid(&self) -> Option<BorrowedFd<'_>> {
        self.joined_fd(LinuxNamespaceType::Pid)
    }

    /// The namespace of this type given by path, if any.
    pub fn joined_fd(&self, kind: LinuxNamespaceType) -> Option<BorrowedFd<'_>> {
        let joined = self.joined.iter().find(|j| j.kind == kind);
        joined.map(|j| j.fd.as_fd())
    }

    /// In the child: joins the namespaces given by path (user first, so the
    /// others are entered with its credentials; pid was handled by the parent),
    /// then unshares cgroup and time namespaces.
    pub fn enter_in_child(&self) -> Result<()> {
        let mut ordered: Vec<&Joined> = self
            .joined
            .iter()
            .filter(|j| j.kind != LinuxNamespaceType::Pid)
            .collect();
        ordered.sort_by_key(|j| j.kind != LinuxNamespaceType::User);
        for joined in ordered {
            setns(joined.fd.as_fd(), clone_flag(joined.kind))
                .with_context(|| format!("setns into the {} namespace", name(joined.kind)))?;
        }
        if self.has(LinuxNamespaceType::User) {
            become_namespace_root()?;
        }
        if self.new_cgroup {
            unshare(CloneFlags::CLONE_NEWCGROUP).context("unshare the cgroup namespace")?;
        }
        if self.new_time {
            unshare(clone_flag(LinuxNamespaceType::Time)).context("unshare the time namespace")?;
            write_time_offsets(&self.time_offsets)?;
        }
        Ok(())
    }
}

/// clone3 with the child placed in `pid_namespace` (a namespace fd or a
/// pidfd), which setns can only arrange for children: the caller's
/// pid-namespace-for-children is switched for the clone and back afterwards,
/// so the runtime's later children (hooks) stay in the runtime's namespace.
pub fn clone_in_pid_namespace(
    pid_namespace: Option<BorrowedFd>,
    flags: CloneFlags,
    cgroup: Option<BorrowedFd>,
) -> Result<Forked> {
    let Some(target) = pid_namespace else {
        return sys::clone3(flags.bits(), cgroup).context("clone3");
    };
    let own = File::open("/proc/self/ns/pid").context("opening /proc/self/ns/pid")?;
    setns(target, CloneFlags::CLONE_NEWPID).context("setns into the pid namespace")?;
    let forked = sys::clone3(flags.bits(), cgroup).context("clone3")?;
    // The child is in the target namespace for good; only the parent goes back.
    if let Forked::Parent { .. } = forked {
        setns(own.as_fd(), CloneFlags::CLONE_NEWPID)
            .context("setns back into the runtime's pid namespace")?;
    }
    Ok(forked)
}

fn check_no_duplicates(namespaces: &[LinuxNamespace]) -> Result<()> {
    for (index, ns) in namespaces.iter().enumerate() {
        if namespaces[..index]
            .iter()
            .any(|earlier| earlier.typ() == ns.typ())
        {
            bail!(
                "linux.namespaces[{index}]: duplicate {} namespace",
                name(ns.typ())
            );
        }
    }
    Ok(())
}

fn open_checked(kind: LinuxNamespaceType, path: &Path, field: &str) -> Result<Joined> {
    let file =
        File::open(path).with_context(|| format!("{field}.path: opening {}", path.display()))?;
    let actual = sys::namespace_type(file.as_fd())
        .with_context(|| format!("{field}.path: {} is not a namespace", path.display()))?;
    if actual != clone_flag(kind).bits() {
        bail!(
            "{field}.path: {} is not a {} namespace",
            path.display(),
            name(kind)
        );
    }
    Ok(Joined {
        kind,
        fd: file.into(),
    })
}

/// A process keeps its host ids when it enters a user namespace, which map to
/// nothing there: it must take the namespace's root ids to own what it creates.
fn become_namespace_root() -> Result<()> {
    use nix::unistd::{Gid, Uid, setresgid, setresuid};
    let (root_uid, root_gid) = (Uid::from_raw(0), Gid::from_raw(0));
    setresgid(root_gid, root_gid, root_gid).context("setresgid(0) in the user namespace")?;
    setresuid(root_uid, root_uid, root_uid).context("setresuid(0) in the user namespace")
}

/// A new user namespace needs both mappings; mappings without one are a
/// mistake (runc refuses both).
fn id_maps(linux: &Linux, new_user_namespace: bool) -> Result<Option<IdMaps>> {
    let uid = linux.uid_mappings().as_deref().unwrap_or_default();
    let gid = linux.gid_mappings().as_deref().unwrap_or_default();
    match (new_user_namespace, uid.is_empty(), gid.is_empty()) {
        (true, false, false) => Ok(Some(IdMaps::new(uid, gid))),
        (true, _, _) => bail!("linux.uidMappings: a new user namespace needs uid and gid mappings"),
        (false, true, true) => Ok(None),
        (false, _, _) => {
            bail!("linux.uidMappings: mappings need a new user namespace in linux.namespaces")
        }
    }
}

/// Must happen before any process lives in the new namespace: the kernel
/// refuses offsets once the namespace has a member.
fn write_time_offsets(lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    std::fs::write("/proc/self/timens_offsets", lines.concat())
        .context("linux.timeOffsets: writing /proc/self/timens_offsets")
}

/// runtime-spec's `timeOffsets` keys are the kernel's clock names.
fn time_offsets(linux: &Linux) -> Result<Vec<String>> {
    let Some(offsets) = linux.time_offsets() else {
        return Ok(Vec::new());
    };
    let mut lines = Vec::new();
    for (clock, offset) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            bail!("linux.timeOffsets.{clock}: unknown clock (monotonic or boottime)");
        }
        lines.push(format!(
            "{clock} {} {}\n",
            offset.secs().unwrap_or(0),
            offset.nanosecs().unwrap_or(0)
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(namespaces: &str) -> Result<NamespacePlan> {
        let linux: Linux =
            serde_json::from_str(&format!(r#"{{"namespaces":{namespaces}}}"#)).unwrap();
        NamespacePlan::from_spec(&linux)
    }

    #[test]
    fn duplicates_and_a_missing_mount_namespace_are_errors() {
        let err = plan(r#"[{"type":"mount"},{"type":"pid"},{"type":"pid"}]"#)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "linux.namespaces[2]: duplicate pid namespace"
        );
        let err = plan(r#"[{"type":"pid"}]"#).err().unwrap();
        assert!(err.to_string().contains("mount namespace is required"));
    }

    #[test]
    fn a_path_to_a_namespace_of_another_type_is_an_error() {
        let err = plan(r#"[{"type":"mount"},{"type":"network","path":"/proc/self/ns/uts"}]"#);
        let message = err.err().unwrap().to_string();
        assert_eq!(
            message,
            "linux.namespaces[1].path: /proc/self/ns/uts is not a net namespace"
        );
    }

    #[test]
    fn new_namespaces_become_clone_flags_except_cgroup_and_time() {
        let plan =
            plan(r#"[{"type":"mount"},{"type":"pid"},{"type":"cgroup"},{"type":"time"}]"#).unwrap();
        assert_eq!(
            plan.clone_flags,
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID
        );
        assert!(plan.new_cgroup && plan.new_time);
    }

    #[test]
    fn a_new_user_namespace_needs_mappings() {
        let err = plan(r#"[{"type":"mount"},{"type":"user"}]"#).err().unwrap();
        assert!(err.to_string().starts_with("linux.uidMappings"), "{err}");
    }

    #[test]
    fn joining_a_user_namespace_with_new_namespaces_is_refused() {
        let err = plan(r#"[{"type":"mount"},{"type":"user","path":"/proc/self/ns/user"}]"#);
        assert!(
            err.err()
                .unwrap()
                .to_string()
                .contains("joining a user namespace")
        );
    }
}
