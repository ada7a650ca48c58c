//! `exec`: start another process inside a running container. The child of
//! clone3 joins the init's namespaces through its pidfd (setns with several
//! flags at once), takes on the process settings and execs; the parent
//! either returns (detached) or stays in the foreground.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, Process};

use super::Container;
use super::create::{ConsoleTarget, socket_path};
use super::foreground::{self, receive_pty_master};
use super::pidfd_socket::{PidfdOf, PidfdSocket};
use super::state::{START_SOCKET, StateRoot, Status};
use crate::atomic_write::write_atomically;
use crate::cgroups::{CgroupManager, SelfJoin, SubCgroups};
use crate::intelrdt::RdtGroup;
use crate::memory_policy::MemoryPolicy;
use crate::namespaces::{self, Joined, clone_flag};
use crate::process;
use crate::seccomp::{self, PendingFilter};
use crate::sync::{self, Channel, Message};
use crate::sys::{self, Forked};
use crate::trace;

pub struct ExecRequest {
    pub process: Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub pidfd_socket: Option<PathBuf>,
    pub console: ConsoleTarget,
    pub preserve_fds: i32,
    /// Exec in a paused container too.
    pub ignore_paused: bool,
    /// `--cgroup`: sub-cgroups of the container's to run the process in.
    pub sub_cgroups: SubCgroups,
}

/// Returns the exit code berth should exit with (0 when detached).
pub fn exec(root: &StateRoot, id: &str, request: ExecRequest) -> Result<i32> {
    let mut target = trace::timed("load the container", || {
        ExecTarget::load(root, id, request.ignore_paused)
    })?;
    // Exec'd processes get the container's filter, as with runc.
    let filter = trace::timed("seccomp: compile (or load from the cache)", || {
        (target.seccomp.as_ref())
            .map(|config| seccomp::compile_cached(config, &root.seccomp_cache_dir()))
            .transpose()
    })?;
    let mut filter = PendingFilter::new(filter, &request.process);
    let (console_for_child, console_receiver) = console_pair(&request)?;
    let pidfd_socket = (request.pidfd_socket.as_deref())
        .map(PidfdSocket::connect)
        .transpose()?;
    let signals = (!request.detach)
        .then(foreground::block_signals)
        .transpose()?;
    let (channel, child_channel) = Channel::pair()?;
    // Opened before entering the container's user namespace: the kernel checks the opener.
    let joining = match &target.cgroup {
        Some(cgroup) => cgroup.joining_for_exec(&request.sub_cgroups)?,
        None => None,
    };
    let runtime_joins = target.cgroup.is_some() && joining.is_none();
    let (clone_into_cgroup, cgroup_self_join) = match joining {
        Some(joining) => (joining.clone_into, Some(joining.self_join)),
        None => (None, None),
    };

    target.enter_pid_namespace()?;
    let forked = trace::timed("clone the process", || {
        let cgroup = clone_into_cgroup.as_ref().map(|fd| fd.as_fd());
        process::clone_with_oom_score_adj(request.process.oom_score_adj(), || {
            sys::clone3(CloneFlags::empty().bits(), cgroup).context("starting the exec process")
        })
    })?;
    let (pid, pidfd) = match forked {
        Forked::Child => {
            trace::in_child("exec");
            drop((channel, pidfd_socket));
            let child = ExecChild {
                target: &target,
                request: &request,
                console: console_for_child.as_ref(),
                channel: &child_channel,
            };
            let Err(err) = child.run(cgroup_self_join, &mut filter);
            let _ = child_channel.send(&Message::Failed(format!("{err:#}")));
            sys::exit_now(1)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop((child_channel, console_for_child));
    drop((clone_into_cgroup, cgroup_self_join));
    if let Some(cgroup) = target.cgroup.as_ref().filter(|_| runtime_joins) {
        trace::timed("cgroup: join (the runtime adds the process)", || {
            cgroup.add_exec_process(pid.as_raw(), &request.sub_cgroups)
        })?;
    }
    if let Some(group) = &target.intel_rdt {
        group.add_process(pid.as_raw())?;
    }
    channel.send(&Message::Go {
        host_pid: pid.as_raw(),
    })?;
    trace::timed("wait for the process: setup, execve", || {
        wait_for_execve(&channel, &target, pid)
    })?;
    if let Some(socket) = &pidfd_socket {
        socket.send(pidfd.as_fd(), PidfdOf::Exec)?;
    }

    let pty = console_receiver
        .as_ref()
        .map(receive_pty_master)
        .transpose()?;
    if let Some(pid_file) = &request.pid_file {
        write_atomically(pid_file, pid.to_string().as_bytes())
            .with_context(|| format!("--pid-file {}", pid_file.display()))?;
    }
    let Some(signals) = signals else {
        return Ok(0);
    };
    let _raw_terminal = pty.as_ref().map(|_| foreground::RawTerminal::enter());
    foreground::wait(pid, signals, pty)
}

/// What exec needs of the container, read under its lock; the lock is not
/// kept: a long foreground exec must not block kill or delete.
struct ExecTarget {
    init_pidfd: OwnedFd,
    /// The namespaces a created init handed over (see `init::wait_for_start`): joined
    /// instead of through `init_pidfd`, which an unprivileged runtime may not use on it.
    init_namespaces: Option<Vec<Joined>>,
    /// Namespaces the child joins through the pidfd.
    namespaces: CloneFlags,
    /// Whether the parent must enter the container's pid namespace before the clone: it has
    /// one (new or joined), which berth is not in yet.
    pid_namespace: bool,
    cgroup: Option<Box<dyn CgroupManager>>,
    seccomp: Option<LinuxSeccomp>,
    /// The container's, which exec'd processes get too (as with runc).
    memory_policy: Option<MemoryPolicy>,
    intel_rdt: Option<RdtGroup>,
    state_json: serde_json::Value,
    /// The init's root, for a container in the runtime's mount namespace: joining the
    /// namespaces does not put the child there, a chroot does.
    shared_namespace_root: Option<OwnedFd>,
}

impl ExecTarget {
    fn load(root: &StateRoot, id: &str, ignore_paused: bool) -> Result<ExecTarget> {
        let container = Container::load(root, id)?;
        let status = container.status();
        if !status.can_exec(ignore_paused) {
            // runc's words.
            let hint = if status == Status::Paused {
                " (use --ignore-paused to override)"
            } else {
                ""
            };
            bail!("{id}: cannot exec in a {} container{hint}", status.name());
        }
        let linux = container.state.config.linux().as_ref();
        let init_pidfd = container.init_pidfd()?;
        let init_namespaces = (status == Status::Created && created_init_hands_over(&container))
            .then(|| namespaces_of_created_init(&container))
            .transpose()?;
        let shared_namespace_root = (!has_namespace(&container, LinuxNamespaceType::Mount))
            .then(|| container.init_root())
            .transpose()?;
        Ok(ExecTarget {
            init_pidfd,
            init_namespaces,
            shared_namespace_root,
            namespaces: namespaces_to_join(&container),
            pid_namespace: has_namespace(&container, LinuxNamespaceType::Pid),
            cgroup: container.state.cgroup_manager()?,
            seccomp: linux.and_then(|l| l.seccomp().clone()),
            memory_policy: linux.map(MemoryPolicy::of).transpose()?.flatten(),
            intel_rdt: container.state.intel_rdt.clone(),
            state_json: container.state.to_oci_json(status),
        })
    }
}

impl ExecTarget {
    /// Only a child can enter a pid namespace, so the parent switches its namespace for
    /// children before the clone, and for good: this process only waits for that child
    /// afterwards, so it never needs to come back — and could not when it lacks CAP_SYS_ADMIN
    /// over its own pid namespace (root in a user namespace, as rootless podman runs it).
    /// An unprivileged berth may enter that pid namespace only from the container's user
    /// namespace (setns needs CAP_SYS_ADMIN there), which it owns: it joins both.
    fn enter_pid_namespace(&mut self) -> Result<()> {
        let user = CloneFlags::CLONE_NEWUSER;
        let mut kinds = CloneFlags::empty();
        if self.pid_namespace {
            kinds |= CloneFlags::CLONE_NEWPID;
        }
        if !nix::unistd::geteuid().is_root() && self.namespaces.contains(user) {
            if let Some(cgroup) = &self.cgroup {
                cgroup.prepare_exec_from_user_namespace();
            }
            kinds |= user;
        }
        if kinds.is_empty() {
            return Ok(());
        }
        self.join_namespaces(kinds)
            .context("setns into the container's pid namespace")?;
        self.namespaces.remove(user & kinds);
        self.pid_namespace = false;
        Ok(())
    }

    /// Joins the init's namespaces of the kinds in `kinds`.
    fn join_namespaces(&self, kinds: CloneFlags) -> Result<()> {
        let Some(namespaces) = &self.init_namespaces else {
            return Ok(setns(self.init_pidfd.as_fd(), kinds)?);
        };
        (namespaces.iter())
            .filter(|ns| kinds.contains(clone_flag(ns.kind)))
            .try_for_each(namespaces::join)
    }
}

/// Whether exec into a created container joins the namespaces its init hands over rather
/// than those its pidfd gives: that init enters a new time namespace only at its execve, and
/// an unprivileged runtime may not use its pidfd at all (see `init::wait_for_start`).
fn created_init_hands_over(container: &Container) -> bool {
    let unprivileged = !nix::unistd::geteuid().is_root();
    has_namespace(container, LinuxNamespaceType::Time)
        || (unprivileged && has_namespace(container, LinuxNamespaceType::User))
}

/// Asks the created init for its namespaces, on its start socket.
fn namespaces_of_created_init(container: &Container) -> Result<Vec<Joined>> {
    let socket = socket_path(&container.dir, START_SOCKET)?;
    let mut connection = UnixStream::connect(&socket.path)
        .context("connecting to the container's init for its namespaces")?;
    sync::write_line(&mut connection, &Message::SendNamespaces)?;
    let (line, fds) =
        sys::receive_fds(connection.as_fd()).context("receiving the container's namespaces")?;
    match serde_json::from_slice(&line) {
        Ok(Message::Namespaces(kinds)) if kinds.len() == fds.len() => Ok(kinds
            .into_iter()
            .zip(fds)
            .map(|(kind, fd)| Joined { kind, fd })
            .collect()),
        _ => bail!("the container's init sent no namespaces"),
    }
}

/// The child's channel closes when it calls execve; before that it may hand
/// over a seccomp notify fd for the agent, or report why it failed.
fn wait_for_execve(channel: &Channel, target: &ExecTarget, pid: Pid) -> Result<()> {
    loop {
        match channel.recv_with_fd()? {
            None => return Ok(()),
            Some((Message::Trace(records), _)) => trace::absorb(records),
            Some((Message::SeccompNotify, fd)) => seccomp::forward_notify_fd(
                channel,
                fd,
                target.seccomp.as_ref(),
                pid.as_raw(),
                &target.state_json,
            )?,
            Some((Message::Failed(reason), _)) => bail!("{reason}"),
            Some((other, _)) => bail!("the exec process sent {other:?}"),
        }
    }
}

/// The namespaces the container's config gave it (new or joined) except pid,
/// which the parent enters around the clone; the user namespace only when the
/// container has one (joining one's own fails).
fn namespaces_to_join(container: &Container) -> CloneFlags {
    namespace_kinds(container)
        .filter(|&kind| kind != LinuxNamespaceType::Pid)
        .fold(CloneFlags::empty(), |flags, kind| flags | clone_flag(kind))
}

fn has_namespace(container: &Container, kind: LinuxNamespaceType) -> bool {
    namespace_kinds(container).any(|k| k == kind)
}

fn namespace_kinds(container: &Container) -> impl Iterator<Item = LinuxNamespaceType> + '_ {
    let linux = container.state.config.linux().as_ref();
    let namespaces = linux.and_then(|l| l.namespaces().as_ref());
    namespaces.into_iter().flatten().map(|ns| ns.typ())
}

fn console_pair(request: &ExecRequest) -> Result<(Option<UnixStream>, Option<UnixStream>)> {
    if !request.process.terminal().unwrap_or(false) {
        return Ok((None, None));
    }
    request
        .console
        .connect("--tty with --detach needs --console-socket")
}

/// The exec process before execve: joins the container and becomes the
/// configured process.
struct ExecChild<'a> {
    target: &'a ExecTarget,
    request: &'a ExecRequest,
    console: Option<&'a UnixStream>,
    channel: &'a Channel,
}

impl ExecChild<'_> {
    fn run(
        &self,
        cgroup_self_join: Option<SelfJoin>,
        filter: &mut PendingFilter,
    ) -> Result<std::convert::Infallible> {
        sys::set_parent_death_signal(Some(Signal::SIGKILL)).context("prctl(PR_SET_PDEATHSIG)")?;
        sys::set_non_dumpable().context("prctl(PR_SET_DUMPABLE)")?;
        sys::reset_signals().context("resetting signal handlers")?;
        trace::timed("wait for Go (the runtime's joins)", || {
            self.channel.expect_go()
        })?;
        let process = &self.request.process;
        process::set_initial_cpu_affinity(process)?;
        if let Some(self_join) = cgroup_self_join {
            trace::timed("cgroup: join (by itself)", || self_join.join())?;
        }
        let entering = trace::span("enter the namespaces");
        // A pidfd with no namespace flags is EINVAL: a container may have none but pid.
        if !self.target.namespaces.is_empty() {
            (self.target)
                .join_namespaces(self.target.namespaces)
                .context("setns into the container's namespaces")?;
        }
        if let Some(root) = &self.target.shared_namespace_root {
            nix::unistd::fchdir(root.as_fd()).context("chdir into the container's root")?;
            nix::unistd::chroot(".").context("chroot into the container's root")?;
        }
        drop(entering);
        if let Some(socket) = self.console {
            let _span = trace::span("console");
            let pty = process::console::open_and_send(socket.as_fd(), process.console_size())?;
            process::console::attach_slave(pty)?;
        } else {
            // As runc: a session of its own inside the container. What the process leaves
            // behind is reparented to the container's init, and CRIU refuses to checkpoint a
            // tree with a session led from outside the container's pid namespace.
            nix::unistd::setsid().context("setsid")?;
        }
        let prepared = trace::timed("process: limits, cwd, groups, program lookup", || {
            process::prepare(process, None)
        })?;
        if let Some(policy) = &self.target.memory_policy {
            policy.apply()?;
        }
        process::console::give_stdio_to(process.user().uid())?;
        process::mark_fds_cloexec(3 + self.request.preserve_fds)?;
        // The rest runs with the seccomp filter, which may deny what sending needs.
        if let Some(records) = trace::take() {
            self.channel.send(&Message::Trace(records))?;
        }
        filter.before_identity(self.channel)?;
        prepared.assume_identity()?;
        filter.after_identity(self.channel)?;
        process::set_final_cpu_affinity(process)?;
        filter.before_exec(self.channel)?;
        // The process outlives a detached `berth exec` by design.
        sys::set_parent_death_signal(None).context("prctl(PR_SET_PDEATHSIG)")?;
        prepared.exec()
    }
}
