//! `create`: load the bundle, claim the id, clone the init into its
//! namespaces, drive it through the handshake (see `crate::sync`) to the
//! `created` state. Any failure undoes everything done so far.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources};

use super::notify;
use super::pidfd_socket::{PidfdOf, PidfdSocket};
use super::rollback::Rollback;
use super::state::{Phase, ProcessId, START_SOCKET, State, StateRoot, Status};
use crate::atomic_write::write_atomically;
use crate::cgroups::{self, CgroupOptions};
use crate::hooks;
use crate::init::{self, InitArgs};
use crate::intelrdt;
use crate::namespaces::NamespacePlan;
use crate::netdev::NetDevices;
use crate::process;
use crate::rootfs;
use crate::seccomp::{self, PendingFilter};
use crate::spec::{self, Bundle};
use crate::sync::{Channel, Message};
use crate::sys::{self, Forked};
use crate::trace;

pub struct CreateOptions {
    pub id: String,
    pub cgroups: CgroupOptions,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub pidfd_socket: Option<PathBuf>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
}

/// Where the pty master of a `terminal: true` container goes.
pub enum ConsoleTarget {
    /// No terminal requested (or allowed).
    None,
    /// runc's --console-socket: a unix socket of the caller's.
    Socket(PathBuf),
    /// Foreground `run` without a console socket: berth receives the master
    /// itself and proxies it to its own stdio.
    Proxy,
}

impl ConsoleTarget {
    /// For a terminal: the socket the child sends the pty master on, and with
    /// `Proxy` our end that receives it. `missing` explains a terminal with
    /// nowhere to send it.
    pub fn connect(&self, missing: &str) -> Result<(Option<UnixStream>, Option<UnixStream>)> {
        match self {
            ConsoleTarget::None => bail!("{missing}"),
            ConsoleTarget::Socket(path) => {
                let stream = UnixStream::connect(path)
                    .with_context(|| format!("--console-socket {}", path.display()))?;
                Ok((Some(stream), None))
            }
            ConsoleTarget::Proxy => {
                let (ours, theirs) = UnixStream::pair().context("socketpair for the console")?;
                Ok((Some(theirs), Some(ours)))
            }
        }
    }
}

/// A container in the `created` state whose init is this process's child.
pub struct Created {
    pub init: Pid,
    /// Our end of the console socketpair, with `ConsoleTarget::Proxy`.
    pub console_receiver: Option<UnixStream>,
    /// The container's directory and its state as saved: `run` starts it without reading
    /// state.json back.
    pub dir: PathBuf,
    pub state: State,
}

pub fn create(
    root: &StateRoot,
    options: &CreateOptions,
    console: ConsoleTarget,
) -> Result<Created> {
    let mut bundle = trace::timed("load and validate the bundle", || {
        spec::load(&options.bundle)
    })?;
    let namespaces = NamespacePlan::from_spec(bundle.linux())?;
    let clones = trace::span("clone bind sources (idmapped, out of reach)");
    let host_clones = rootfs::clone_bind_sources(
        &bundle.spec,
        &bundle.dir,
        namespaces.joined_fd(LinuxNamespaceType::User),
        other_binds(&namespaces, options.cgroups.rootless),
    )?;
    drop(clones);
    let preserved_fds = options.preserve_fds + pass_listen_fds(&mut bundle)?;
    let (console_for_init, console_receiver) = connect_console(&bundle, console)?;
    let pidfd_socket = (options.pidfd_socket.as_deref())
        .map(PidfdSocket::connect)
        .transpose()?;
    let cgroups_path = bundle
        .linux()
        .cgroups_path()
        .as_ref()
        .map(|p| p.to_string_lossy());
    let cgroup = trace::timed("cgroup: find the hierarchies", || {
        cgroups::for_new_container(cgroups_path.as_deref(), &options.id, options.cgroups)
    })?;
    let net_devices = NetDevices::plan(bundle.linux(), options.cgroups.rootless)?;
    let rdt_group = intelrdt::plan(bundle.linux(), &options.id)?;
    let resources = container_resources(&bundle);
    let seccomp_filter = trace::timed("seccomp: compile (or load from the cache)", || {
        (bundle.linux().seccomp().as_ref())
            .map(|config| seccomp::compile_cached(config, &root.seccomp_cache_dir()))
            .transpose()
    })?;

    // Without a mount namespace of its own the container's mounts land in ours: note what the
    // rootfs showed before, for delete (and the rollback) to detach what the init stacks on it.
    let shared_rootfs = (!namespaces.has(LinuxNamespaceType::Mount))
        .then(|| rootfs::RootfsBase::record(&bundle.rootfs))
        .transpose()?;

    let claim = trace::span("claim the id, first state.json");
    let dir = root.claim(&options.id)?;
    let mut rollback = Rollback::new(&dir, rdt_group.as_ref());
    rollback.shared_rootfs = shared_rootfs.map(|base| (bundle.rootfs.clone(), base));
    let mut state = State {
        id: options.id.clone(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        phase: Phase::Creating,
        creator: Some(ProcessId::of(nix::unistd::getpid())?),
        init: None,
        cgroup: Some(cgroup.handle()),
        intel_rdt: rdt_group.clone(),
        shared_rootfs,
        config: bundle.spec.clone(),
    };
    state.save(&dir)?;
    drop(claim);
    let extra_mounts = notify::prepare(&dir, &mut bundle)?.into_iter().collect();
    let cgroup = rollback.cgroup.insert(cgroup);
    trace::timed("cgroup: create", || cgroup.create())?;
    // None when rootless berth could not make one (see `cgroups::for_new_container`).
    state.cgroup = Some(cgroup.handle()).filter(|handle| !handle.dirs.is_empty());
    state.save(&dir)?;
    trace::timed("cgroup: apply the limits", || cgroup.apply(&resources))?;

    let start_listener = UnixListener::bind(socket_path(&dir, START_SOCKET)?.path)
        .context("creating the start socket")?;
    let (channel, child_channel) = Channel::pair()?;
    let hook_state = state.to_oci_json(Status::Creating);
    let cgroup_self_join = cgroup.self_join_for_init()?;
    let forked = trace::timed("clone the init", || {
        process::clone_with_oom_score_adj(bundle.process().oom_score_adj(), || {
            namespaces
                .clone_init(cgroup.clone_into_fd())
                .context("starting the container init")
        })
    })?;
    let (init, init_pidfd) = match forked {
        Forked::Child => {
            drop((channel, pidfd_socket));
            init::run(InitArgs {
                id: &options.id,
                bundle: &bundle,
                namespaces: &namespaces,
                channel: child_channel,
                start_listener,
                console_socket: console_for_init,
                no_pivot: options.no_pivot,
                no_new_keyring: options.no_new_keyring,
                preserved_fds,
                hook_state,
                extra_mounts,
                host_clones,
                cgroup_self_join,
                serves_namespaces: namespaces.has(LinuxNamespaceType::Time)
                    || (options.cgroups.rootless && namespaces.has(LinuxNamespaceType::User)),
                prepared: None,
                own_namespaces: Vec::new(),
                seccomp: PendingFilter::new(seccomp_filter, bundle.process()),
            })
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    // The init has its own copies of these fds now.
    let init_fds = (child_channel, start_listener, console_for_init);
    drop((init_fds, host_clones, cgroup_self_join));
    rollback.init = Some((init, init_pidfd));

    state.init = Some(ProcessId::of(init)?);
    state.save(&dir)?;
    trace::timed("write the id maps", || namespaces.write_id_maps(init))?;
    if let Some(devices) = &net_devices {
        trace::timed("move the network devices", || {
            devices.move_into_container(namespaces.joined_fd(LinuxNamespaceType::Network), init)
        })?;
    }
    if let Some(group) = &rdt_group {
        trace::timed("intelRdt: join the control group", || {
            group.create(init.as_raw())
        })?;
    }
    channel.send(&Message::Go {
        host_pid: init.as_raw(),
    })?;
    // The init sets up its first mounts meanwhile.
    let joined = trace::timed("cgroup: the runtime's part of the join", || {
        cgroup.add_init(init.as_raw())
    });
    let init_joins_the_rest = joined.map_err(|err| {
        let init_gave_up = (rollback.init.as_ref())
            .and_then(|(_, pidfd)| reason_init_gave_up(&channel, pidfd.as_fd()));
        init_gave_up.unwrap_or(err)
    })?;
    // Fails only when the init exited (it failed meanwhile): its reason is read next.
    let _ = channel.send_cgroup_joined(&init_joins_the_rest);
    drop(init_joins_the_rest);
    trace::timed("wait for the init: rootfs", || {
        channel.expect(Message::RunHooks, "the container init")
    })?;
    let hook_json = serde_json::to_vec(&state.to_oci_json(Status::Creating))?;
    let hooks = bundle.spec.hooks().as_ref();
    trace::timed("prestart and createRuntime hooks", || {
        hooks::run_all(
            "prestart",
            hooks.and_then(|h| h.prestart().as_ref()),
            &hook_json,
        )?;
        hooks::run_all(
            "createRuntime",
            hooks.and_then(|h| h.create_runtime().as_ref()),
            &hook_json,
        )
    })?;
    channel.send(&Message::HooksDone)?;
    trace::timed("wait for the init: ready", || {
        wait_until_ready(&channel, &bundle, init, &state)
    })?;

    if let (Some(socket), Some((_, pidfd))) = (&pidfd_socket, &rollback.init) {
        socket.send(pidfd.as_fd(), PidfdOf::Init)?;
    }
    if let Some(pid_file) = &options.pid_file {
        write_atomically(pid_file, init.to_string().as_bytes())
            .with_context(|| format!("--pid-file {}", pid_file.display()))?;
    }
    state.phase = Phase::Created;
    state.creator = None;
    trace::timed("state.json: created", || state.save(&dir))?;

    rollback.disarm();
    Ok(Created {
        init,
        console_receiver,
        dir,
        state,
    })
}

/// Why the init exited, if it already has: the `Failed` it sent before it did.
fn reason_init_gave_up(channel: &Channel, init_pidfd: BorrowedFd) -> Option<anyhow::Error> {
    if !sys::wait_for_exit(init_pidfd, Some(Duration::ZERO)).unwrap_or(false) {
        return None;
    }
    match channel.recv() {
        Ok(Some(Message::Failed(reason))) => Some(anyhow::anyhow!(reason)),
        _ => None,
    }
}

/// The rest of the init's setup; on the way it may hand over a seccomp notify
/// fd for the agent.
fn wait_until_ready(channel: &Channel, bundle: &Bundle, init: Pid, state: &State) -> Result<()> {
    loop {
        match channel.recv_with_fd()? {
            Some((Message::Ready, _)) => return Ok(()),
            Some((Message::Trace(records), _)) => trace::absorb(records),
            Some((Message::SeccompNotify, fd)) => seccomp::forward_notify_fd(
                channel,
                fd,
                bundle.linux().seccomp().as_ref(),
                init.as_raw(),
                &state.to_oci_json(Status::Creating),
            )?,
            Some((Message::Failed(reason), _)) => bail!("{reason}"),
            Some((other, _)) => bail!("the container init sent {other:?}, expected Ready"),
            None => bail!("the container init exited before it was ready"),
        }
    }
}

/// A path to `dir/name` that fits sun_path (108 bytes) however deep the state
/// root is: a long one goes through /proc/self/fd of an fd of the directory,
/// which must stay open while the path is used.
pub struct SocketPath {
    pub path: PathBuf,
    _dir: Option<std::fs::File>,
}

pub fn socket_path(dir: &Path, name: &str) -> Result<SocketPath> {
    const SUN_PATH_MAX: usize = 107;
    let direct = dir.join(name);
    if direct.as_os_str().len() <= SUN_PATH_MAX {
        return Ok(SocketPath {
            path: direct,
            _dir: None,
        });
    }
    let handle = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/{name}", handle.as_raw_fd()));
    Ok(SocketPath {
        path,
        _dir: Some(handle),
    })
}

/// An init in a user namespace of the container's is root of that namespace only: the runtime
/// clones its bind sources, unless it has no more privilege than that itself (rootless) or the
/// sources belong to a joined mount namespace.
fn other_binds(namespaces: &NamespacePlan, rootless: bool) -> rootfs::OtherBinds {
    let new_mount_namespace = namespaces.clone_flags.contains(CloneFlags::CLONE_NEWNS);
    if namespaces.has(LinuxNamespaceType::User) && new_mount_namespace && !rootless {
        rootfs::OtherBinds::Cloned
    } else {
        rootfs::OtherBinds::LeftToInit
    }
}

/// `linux.resources` with the device rules every container gets (runc's
/// default allow list), which the cgroup enforces.
pub(super) fn container_resources(bundle: &Bundle) -> LinuxResources {
    let mut resources = bundle.linux().resources().clone().unwrap_or_default();
    let rules = cgroups::container_device_rules(resources.devices().as_deref().unwrap_or_default());
    resources.set_devices(Some(rules));
    resources
}

/// The console socket checks of runc, and the connection the init will use.
pub(super) fn connect_console(
    bundle: &Bundle,
    console: ConsoleTarget,
) -> Result<(Option<UnixStream>, Option<UnixStream>)> {
    let terminal = bundle.process().terminal().unwrap_or(false);
    match (terminal, console) {
        (false, ConsoleTarget::Socket(_)) => {
            bail!("--console-socket: process.terminal is false, there is no console to send")
        }
        (false, _) => Ok((None, None)),
        (true, target) => {
            target.connect("process.terminal is true: a detached container needs --console-socket")
        }
    }
}

/// systemd socket activation: LISTEN_FDS fds (from 3) pass through, and the
/// container's process is told it is their listener (it will be pid 1 or the
/// pid it has in its namespace; runc sets LISTEN_PID=1 likewise).
fn pass_listen_fds(bundle: &mut Bundle) -> Result<i32> {
    let Ok(value) = std::env::var("LISTEN_FDS") else {
        return Ok(0);
    };
    let count: i32 = value
        .parse()
        .with_context(|| format!("LISTEN_FDS={value:?} is not a number"))?;
    bundle.set_process_env(&[
        ("LISTEN_FDS", count.to_string()),
        ("LISTEN_PID", "1".into()),
    ]);
    Ok(count)
}
