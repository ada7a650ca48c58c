//! Which namespaces the container gets: created fresh by clone3, or joined by
//! path with setns. Validated and opened once in the parent, so the child only
//! acts on fds that were checked (a path swapped later changes nothing).
//!
//! A namespace belongs to the user namespace its creator was in, and only
//! privilege there lets the container set it up. So when a user namespace is
//! joined by path while others are new, the new ones must be made from inside
//! the joined one: an intermediate process enters it and clones the init (see
//! `intermediate`). Otherwise the init is cloned directly by the runtime.

mod id_maps;
mod intermediate;
mod mapped_userns;

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns, unshare};
use oci_spec::runtime::{Linux, LinuxNamespace, LinuxNamespaceType};

use crate::sys::{self, Forked};

pub use id_maps::IdMaps;
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
    /// A user namespace joined by path while clone3 creates other namespaces:
    /// entered before that clone, by the intermediate process, so that it owns
    /// them. Such a user namespace is not in `joined`.
    user_joined_before_clone: Option<Joined>,
    /// uid_map and gid_map contents: written for a new user namespace; for a
    /// joined one (which has its own), what they must be.
    id_maps: Option<IdMaps>,
    /// Lines for /proc/self/timens_offsets: "<clock> <secs> <nanos>".
    time_offsets: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum UserNamespace {
    /// No user namespace in the config: the runtime's.
    Runtime,
    New,
    /// Given by path.
    Joined,
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
            user_joined_before_clone: None,
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
        plan.user_joined_before_clone = plan.take_user_to_join_before_clone();
        plan.id_maps = id_maps(linux, plan.user_namespace())?;
        plan.time_offsets = time_offsets(linux)?;
        if !plan.new_time && !plan.time_offsets.is_empty() {
            bail!("linux.timeOffsets: requires a new time namespace");
        }
        Ok(plan)
    }

    /// The joined user namespace, out of `joined`, when clone3 creates other
    /// namespaces. New cgroup and time namespaces do not count: the init
    /// unshares them itself, after joining.
    fn take_user_to_join_before_clone(&mut self) -> Option<Joined> {
        if self.clone_flags.is_empty() {
            return None;
        }
        let index = (self.joined.iter()).position(|j| j.kind == LinuxNamespaceType::User)?;
        Some(self.joined.remove(index))
    }

    /// True when the container gets this namespace, new or joined.
    pub fn has(&self, kind: LinuxNamespaceType) -> bool {
        self.clone_flags.contains(clone_flag(kind))
            || (kind == LinuxNamespaceType::Cgroup && self.new_cgroup)
            || (kind == LinuxNamespaceType::Time && self.new_time)
            || (kind == LinuxNamespaceType::User && self.user_joined_before_clone.is_some())
            || self.joined.iter().any(|j| j.kind == kind)
    }

    fn user_namespace(&self) -> UserNamespace {
        if self.clone_flags.contains(CloneFlags::CLONE_NEWUSER) {
            UserNamespace::New
        } else if self.has(LinuxNamespaceType::User) {
            UserNamespace::Joined
        } else {
            UserNamespace::Runtime
        }
    }

    /// Forks the container's init: `Forked::Child` in the init, the init's pid
    /// and pidfd in the runtime. The init is in the new namespaces, the joined
    /// pid namespace and `cgroup`; the other joined namespaces are entered by
    /// `enter_in_child`.
    pub fn clone_init(&self, cgroup: Option<BorrowedFd>) -> Result<Forked> {
        let user = (self.user_joined_before_clone.as_ref()).map(|user| user.fd.as_fd());
        let pid = self.joined_pid();
        // Entering its own pid namespace again after `clone_in_pid_namespace` left it needs
        // CAP_SYS_ADMIN over the user namespace owning it, which root in a user namespace (as
        // rootless podman runs the runtime) lacks over the host's. Such a runtime clones the
        // init through an intermediate process that joins the pid namespace instead.
        if user.is_none() && (pid.is_none() || crate::rootless::has_host_privilege()) {
            return clone_in_pid_namespace(pid, self.clone_flags, cgroup);
        }
        intermediate::clone_init_inside(user, pid, self.clone_flags, cgroup)
    }

    /// In the parent, between clone and Go: a new user namespace's id
    /// mappings (the child cannot write its own beyond its single uid).
    pub fn write_id_maps(&self, child: nix::unistd::Pid) -> Result<()> {
        let (UserNamespace::New, Some(maps)) = (self.user_namespace(), &self.id_maps) else {
            return Ok(());
        };
        maps.write(child, "linux")
    }

    /// The pid namespace to join, which the parent enters around the clone
    /// (see `clone_in_pid_namespace`).
    fn joined_pid(&self) -> Option<BorrowedFd<'_>> {
        self.joined_fd(LinuxNamespaceType::Pid)
    }

    /// The namespace of this type given by path, if any.
    pub fn joined_fd(&self, kind: LinuxNamespaceType) -> Option<BorrowedFd<'_>> {
        let joined = self.joined.iter().find(|j| j.kind == kind);
        joined.map(|j| j.fd.as_fd())
    }

    /// In the child: joins the namespaces given by path (user first, so the
    /// others are entered with its credentials; pid was handled by the parent,
    /// and user by the intermediate process when it had to come before the
    /// clone), then unshares a time namespace. The cgroup namespace comes
    /// later: [`NamespacePlan::enter_cgroup_namespace`].
    pub fn enter_in_child(&self) -> Result<()> {
        let (user, others): (Vec<&Joined>, Vec<&Joined>) = (self.joined.iter())
            .filter(|j| j.kind != LinuxNamespaceType::Pid)
            .partition(|j| j.kind == LinuxNamespaceType::User);
        user.into_iter().try_for_each(join)?;
        if let (UserNamespace::Joined, Some(maps)) = (self.user_namespace(), &self.id_maps) {
            // Now, while /proc is still the runtime's: a joined mount
            // namespace may have another.
            maps.check_joined()?;
        }
        others.into_iter().try_for_each(join)?;
        if self.has(LinuxNamespaceType::User) {
            become_namespace_root()?;
        }
        if self.new_time {
            unshare(clone_flag(LinuxNamespaceType::Time)).context("unshare the time namespace")?;
            write_time_offsets(&self.time_offsets)?;
        }
        Ok(())
    }

    /// In the child, once it is in all of them (the cgroup one too) and before the container's
    /// `/proc` replaces the runtime's: the namespaces of the container, opened for an
    /// unprivileged `exec`, which may not open them through the init's pid; in the order to
    /// join them. A time namespace is the one the init enters at execve.
    pub fn open_own(&self) -> Result<Vec<Joined>> {
        use LinuxNamespaceType::*;
        // The mount namespace last: joining it changes the root and cwd.
        let kinds = [User, Pid, Network, Ipc, Uts, Cgroup, Time, Mount];
        let open = |kind| {
            let file = match kind {
                Time => "time_for_children",
                other => name(other),
            };
            let path = format!("/proc/thread-self/ns/{file}");
            let opened = File::open(&path).with_context(|| format!("opening {path}"))?;
            Ok(Joined {
                kind,
                fd: opened.into(),
            })
        };
        kinds
            .into_iter()
            .filter(|&k| self.has(k))
            .map(open)
            .collect()
    }

    /// In the child, once it sits in its cgroups: a new cgroup namespace takes them as its root.
    pub fn enter_cgroup_namespace(&self) -> Result<()> {
        if self.new_cgroup {
            unshare(CloneFlags::CLONE_NEWCGROUP).context("unshare the cgroup namespace")?;
        }
        Ok(())
    }
}

pub fn join(joined: &Joined) -> Result<()> {
    setns(joined.fd.as_fd(), clone_flag(joined.kind))
        .with_context(|| format!("setns into the {} namespace", name(joined.kind)))
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
/// mistake (runc refuses both). A joined user namespace has its own: the
/// config may repeat them in full or not give any (see `IdMaps::check_joined`).
fn id_maps(linux: &Linux, user_namespace: UserNamespace) -> Result<Option<IdMaps>> {
    let uid = linux.uid_mappings().as_deref().unwrap_or_default();
    let gid = linux.gid_mappings().as_deref().unwrap_or_default();
    let (given, none) = (
        !uid.is_empty() && !gid.is_empty(),
        uid.is_empty() && gid.is_empty(),
    );
    match user_namespace {
        UserNamespace::Runtime if none => Ok(None),
        UserNamespace::Runtime => {
            bail!("linux.uidMappings: mappings need a user namespace in linux.namespaces")
        }
        UserNamespace::Joined if none => Ok(None),
        _ if given => Ok(Some(IdMaps::new(uid, gid))),
        UserNamespace::New => {
            bail!("linux.uidMappings: a new user namespace needs uid and gid mappings")
        }
        UserNamespace::Joined => bail!(
            "linux.uidMappings: give both the uid and gid mappings of the joined user \
             namespace, or neither"
        ),
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
    use oci_spec::runtime::LinuxIdMapping;

    fn plan(namespaces: &str) -> Result<NamespacePlan> {
        let linux: Linux =
            serde_json::from_str(&format!(r#"{{"namespaces":{namespaces}}}"#)).unwrap();
        NamespacePlan::from_spec(&linux)
    }

    #[test]
    fn duplicates_are_errors() {
        let err = plan(r#"[{"type":"mount"},{"type":"pid"},{"type":"pid"}]"#)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "linux.namespaces[2]: duplicate pid namespace"
        );
    }

    #[test]
    fn without_a_mount_namespace_the_container_shares_the_runtimes() {
        let plan = plan(r#"[{"type":"pid"}]"#).unwrap();
        assert!(!plan.has(LinuxNamespaceType::Mount));
        assert_eq!(plan.clone_flags, CloneFlags::CLONE_NEWPID);
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

    fn joined_user_before_clone(plan: &NamespacePlan) -> bool {
        plan.user_joined_before_clone.is_some()
    }

    #[test]
    fn a_joined_user_namespace_is_entered_before_the_clone_of_new_namespaces() {
        let plan = plan(r#"[{"type":"mount"},{"type":"user","path":"/proc/self/ns/user"}]"#);
        let plan = plan.unwrap();
        assert!(joined_user_before_clone(&plan));
        assert!(plan.joined.is_empty(), "the init must not join it again");
        assert!(plan.has(LinuxNamespaceType::User));
        assert_eq!(plan.user_namespace(), UserNamespace::Joined);
    }

    #[test]
    fn a_joined_user_namespace_without_new_clone_namespaces_is_joined_by_the_init() {
        // Cgroup and time namespaces are unshared by the init after joining.
        let plan = plan(
            r#"[{"type":"mount","path":"/proc/self/ns/mnt"},{"type":"cgroup"},
                {"type":"user","path":"/proc/self/ns/user"}]"#,
        )
        .unwrap();
        assert!(!joined_user_before_clone(&plan));
        assert_eq!(plan.joined.len(), 2);
        assert_eq!(plan.user_namespace(), UserNamespace::Joined);
    }

    #[test]
    fn without_a_joined_user_namespace_nothing_is_entered_before_the_clone() {
        let plan = plan(r#"[{"type":"mount"},{"type":"uts","path":"/proc/self/ns/uts"}]"#);
        let plan = plan.unwrap();
        assert!(!joined_user_before_clone(&plan));
        assert_eq!(plan.user_namespace(), UserNamespace::Runtime);
    }

    fn plan_with_mappings(namespaces: &str, uid: &str, gid: &str) -> Result<NamespacePlan> {
        let linux =
            format!(r#"{{"namespaces":{namespaces},"uidMappings":{uid},"gidMappings":{gid}}}"#);
        NamespacePlan::from_spec(&serde_json::from_str(&linux).unwrap())
    }

    #[test]
    fn a_joined_user_namespace_takes_both_mappings_or_none_and_writes_none() {
        let joined = r#"[{"type":"mount"},{"type":"user","path":"/proc/self/ns/user"}]"#;
        let mapping = r#"[{"containerID":0,"hostID":0,"size":1}]"#;
        let plan = plan_with_mappings(joined, mapping, mapping).unwrap();
        let one = serde_json::from_str::<Vec<LinuxIdMapping>>(mapping).unwrap();
        assert_eq!(plan.id_maps, Some(IdMaps::new(&one, &one)));
        // Not written: writing would fail, no process has this pid.
        plan.write_id_maps(nix::unistd::Pid::from_raw(i32::MAX))
            .unwrap();
        let err = plan_with_mappings(joined, mapping, "[]").err().unwrap();
        assert!(err.to_string().contains("or neither"), "{err}");
        let err = plan_with_mappings(r#"[{"type":"mount"}]"#, mapping, mapping);
        let err = err.err().unwrap();
        assert!(err.to_string().contains("need a user namespace"), "{err}");
    }
}
