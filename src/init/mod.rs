//! The container's init: the child that `create` clones. It runs the inside
//! half of the pipeline — namespaces, rootfs, console, process identity —
//! then waits, blocked in accept(), until `start` connects, and execs the
//! user's process. No re-exec: this is the runtime's own code in the child of
//! clone3, so the runtime is single-threaded here by construction.

use std::convert::Infallible;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxNamespaceType, Mount};

use crate::cgroups::SelfJoin;
use crate::hooks;
use crate::memory_policy::MemoryPolicy;
use crate::namespaces::{Joined, NamespacePlan};
use crate::process::{self, Prepared};
use crate::rootfs::{self, HostClones, RootfsOptions};
use crate::seccomp::PendingFilter;
use crate::spec::Bundle;
use crate::sync::{self, Channel, Message};
use crate::{sys, trace};

pub struct InitArgs<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    pub namespaces: &'a NamespacePlan,
    pub channel: Channel,
    /// Listening socket of the start handshake (close-on-exec).
    pub start_listener: UnixListener,
    /// Where the pty master goes when `process.terminal` is set.
    pub console_socket: Option<UnixStream>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// fds 3.. that pass into the container (--preserve-fds, LISTEN_FDS).
    pub preserved_fds: i32,
    /// The state JSON for the hooks this process runs, without pid and status.
    pub hook_state: serde_json::Value,
    /// Mounts the runtime adds after the config's (the notify socket).
    pub extra_mounts: Vec<Mount>,
    /// Bind sources the runtime cloned (inherited close-on-exec fds), attached by the rootfs
    /// setup.
    pub host_clones: HostClones,
    /// What the init writes to first, to move itself into the container's cgroup.
    pub cgroup_self_join: SelfJoin,
    /// Whether the init hands its namespaces to `exec` while it waits for `start`: it has a
    /// time namespace, which it enters only at execve, or the runtime is unprivileged and
    /// cannot open them through the init's pid.
    pub serves_namespaces: bool,
    /// Filled in by setup: the process to exec once started.
    pub prepared: Option<Prepared>,
    /// Filled in by setup when `serves_namespaces`.
    pub own_namespaces: Vec<Joined>,
    pub seccomp: PendingFilter,
}

/// Never returns: the init either execs the user's process or exits, and
/// reports why on whichever channel its peer is listening to at that moment.
pub fn run(mut args: InitArgs) -> ! {
    trace::in_child("init");
    let connection = match set_up(&mut args) {
        Ok(()) => wait_for_start(&args),
        Err(err) => {
            let _ = args.channel.send(&Message::Failed(format!("{err:#}")));
            sys::exit_now(1)
        }
    };
    let mut connection = match connection {
        Ok(connection) => connection,
        Err(_) => sys::exit_now(1),
    };
    let Err(err) = start_user_process(args, &mut connection);
    // `start` reads this until EOF; success is an EOF with no `Failed` before it.
    let _ = sync::write_line(&mut connection, &Message::Failed(format!("{err:#}")));
    sys::exit_now(1)
}

/// Everything up to the `created` state.
fn set_up(args: &mut InitArgs) -> Result<()> {
    // A creator killed mid-create must not leave a half-made container.
    sys::set_parent_death_signal(Some(Signal::SIGKILL)).context("prctl(PR_SET_PDEATHSIG)")?;
    sys::reset_signals().context("resetting signal handlers")?;
    let host_pid = trace::timed("wait for Go (id maps)", || args.channel.expect_go())?;
    // Only now (CVE-2019-5736): /proc/<pid>/ of a non-dumpable process belongs to root, and a
    // rootless parent must write our uid_map and gid_map before Go. Until Go nothing of the
    // container runs that could reach us.
    sys::set_non_dumpable().context("prctl(PR_SET_DUMPABLE)")?;
    args.hook_state["pid"] = host_pid.into();
    process::set_initial_cpu_affinity(args.bundle.process())?;
    let self_join = std::mem::take(&mut args.cgroup_self_join);
    if !self_join.is_empty() {
        trace::timed("cgroup: join (by itself)", || self_join.join())?;
    }
    trace::timed("enter the namespaces", || args.namespaces.enter_in_child())?;
    set_host_and_domain_name(args)?;
    if !args.no_new_keyring {
        let _span = trace::span("session keyring");
        crate::lsm::set_keyring_label(args.bundle.process())?;
        sys::join_session_keyring(&format!("_ses.{}", args.id))
            .context("joining a new session keyring")?;
    }

    // Relative bind-mount sources are relative to the bundle, as with runc.
    nix::unistd::chdir(&args.bundle.dir).context("chdir into the bundle")?;
    let spec = &args.bundle.spec;
    let (channel, namespaces) = (&args.channel, args.namespaces);
    let options = RootfsOptions {
        rootfs: &args.bundle.rootfs,
        no_pivot: args.no_pivot,
        own_mount_namespace: args.namespaces.has(LinuxNamespaceType::Mount),
        cgroup_namespace: args.namespaces.has(LinuxNamespaceType::Cgroup),
        extra_mounts: args.extra_mounts.clone(),
        host_clones: std::mem::take(&mut args.host_clones),
        // The mounts before this point overlap the runtime's part of the cgroup join.
        before_cgroup_use: Some(Box::new(|| {
            let rest = trace::timed("wait for the cgroup join", || {
                channel.expect_cgroup_joined()
            })?;
            if !rest.is_empty() {
                trace::timed("cgroup: join the rest (by itself)", || rest.join())?;
            }
            namespaces.enter_cgroup_namespace()
        })),
    };
    let prepared = trace::timed("rootfs: mounts and devices", || {
        rootfs::prepare(spec, options)
    })?;
    if args.serves_namespaces {
        args.own_namespaces = args.namespaces.open_own()?;
    }
    args.channel.send(&Message::RunHooks)?;
    trace::timed("wait for the prestart and createRuntime hooks", || {
        args.channel.expect(Message::HooksDone, "the runtime")
    })?;
    // As runc: in the rootfs, with the container's mounts in place (hooks write `./lib/...`).
    nix::unistd::chdir(&args.bundle.rootfs).context("chdir into the rootfs")?;
    run_hooks(args, "createContainer", "creating")?;
    let entered = trace::timed("rootfs: pivot_root", || prepared.enter())?;
    match &args.console_socket {
        Some(socket) => trace::timed("console", || set_up_console(args.bundle, socket))?,
        // As runc: the init leads a session of its own inside the container (CRIU refuses to
        // checkpoint a container whose session leader is outside its pid namespace).
        None => {
            nix::unistd::setsid().context("setsid")?;
        }
    }
    trace::timed("rootfs: read-only and masked paths, sysctl", || {
        entered.finish(spec)
    })?;
    // Resolves the program now, so that a missing one fails `create`, as with runc.
    let prepared = trace::timed("process: limits, cwd, groups, program lookup", || {
        process::prepare(
            args.bundle.process(),
            args.bundle.linux().personality().as_ref(),
        )
    })?;
    if let Some(policy) = MemoryPolicy::of(args.bundle.linux())? {
        policy.apply()?;
    }
    process::console::give_stdio_to(args.bundle.process().user().uid())?;
    process::mark_fds_cloexec(3 + args.preserved_fds)?;
    trace::timed(
        "seccomp: load the filter (before the identity switch)",
        || args.seccomp.before_identity(&args.channel),
    )?;
    trace::timed("process: user and capabilities", || {
        prepared.assume_identity()
    })?;
    args.seccomp.after_identity(&args.channel)?;
    args.prepared = Some(prepared);
    // Past this point the creator exits by design: its death must not kill us.
    sys::set_parent_death_signal(None).context("prctl(PR_SET_PDEATHSIG)")?;
    if let Some(records) = trace::take() {
        args.channel.send(&Message::Trace(records))?;
    }
    args.channel.send(&Message::Ready)
}

fn set_host_and_domain_name(args: &InitArgs) -> Result<()> {
    let spec = &args.bundle.spec;
    let has_uts = args.namespaces.has(LinuxNamespaceType::Uts);
    if let Some(hostname) = spec.hostname() {
        anyhow::ensure!(has_uts, "hostname: requires a uts namespace");
        nix::unistd::sethostname(hostname).context("hostname: sethostname")?;
    }
    if let Some(domainname) = spec.domainname() {
        anyhow::ensure!(has_uts, "domainname: requires a uts namespace");
        sys::set_domain_name(domainname).context("domainname: setdomainname")?;
    }
    Ok(())
}

fn set_up_console(bundle: &Bundle, socket: &UnixStream) -> Result<()> {
    let pty = process::console::open_and_send(socket.as_fd(), bundle.process().console_size())?;
    rootfs::bind_console(Path::new(&pty.name))?;
    process::console::attach_slave(pty)
}

fn run_hooks(args: &InitArgs, kind: &str, status: &str) -> Result<()> {
    let hooks = args.bundle.spec.hooks().as_ref();
    let list = hooks.and_then(|h| match kind {
        "createContainer" => h.create_container().as_ref(),
        _ => h.start_container().as_ref(),
    });
    if list.is_none() {
        return Ok(());
    }
    let _span = trace::span_with(|| format!("{kind} hooks"));
    let mut state = args.hook_state.clone();
    state["status"] = status.into();
    hooks::run_all(kind, list, &serde_json::to_vec(&state)?)
}

/// Blocks until `start` connects; the connection is close-on-exec, so `start`
/// sees EOF exactly when execve succeeded. Meanwhile it answers unprivileged `exec`s.
///
/// The init is not dumpable (CVE-2019-5736: its /proc/<pid>/exe is the runtime's binary, and
/// it holds fds of the host), so the kernel lets only a process with CAP_SYS_PTRACE over the
/// host open its namespaces or setns through its pidfd. Becoming dumpable, as runc's init is
/// while it waits (runc's binary is a sealed copy), would open all of that to any process
/// `exec` starts in the container: it has the init's credentials. So the init hands the
/// namespace fds, and nothing else, to whoever may connect here (the state directory's
/// owner, who may start or kill the container anyway).
fn wait_for_start(args: &InitArgs) -> Result<UnixStream> {
    let _span = trace::span("blocked until `start`");
    loop {
        let (connection, _) = args
            .start_listener
            .accept()
            .context("accept on the start socket")?;
        // A peer that went away or sent nothing we know does not start the container.
        match sync::read_request(&connection) {
            Ok(Some(Message::Start)) => return Ok(connection),
            Ok(Some(Message::SendNamespaces)) => {
                let _ = send_namespaces(&args.own_namespaces, &connection);
            }
            _ => {}
        }
    }
}

fn send_namespaces(namespaces: &[Joined], connection: &UnixStream) -> Result<()> {
    let kinds = namespaces.iter().map(|ns| ns.kind).collect();
    let mut line = serde_json::to_vec(&Message::Namespaces(kinds))?;
    line.push(b'\n');
    let fds: Vec<_> = namespaces.iter().map(|ns| ns.fd.as_fd()).collect();
    sys::send_fds(connection.as_fd(), &line, &fds).context("sending the namespaces")
}

/// The last steps: the seccomp filter (if not loaded yet), then, as in runc, the
/// startContainer hooks under it; the phases of the trace go to `start` on `connection`.
fn start_user_process(mut args: InitArgs, connection: &mut UnixStream) -> Result<Infallible> {
    process::set_final_cpu_affinity(args.bundle.process())?;
    args.seccomp.before_exec(&args.channel)?;
    run_hooks(&args, "startContainer", "created")?;
    if let Some(records) = trace::take() {
        sync::write_line(connection, &Message::Trace(records))?;
    }
    let prepared = args.prepared.take().context("setup prepared no process")?;
    prepared.exec()
}
