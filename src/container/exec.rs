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
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::Container;
use super::create::ConsoleTarget;
use super::foreground::{self, receive_pty_master};
use super::state::{StateRoot, write_atomically};
use crate::namespaces::{self, clone_flag};
use crate::process;
use crate::sync::{Channel, Message};
use crate::sys::{self, Forked};

pub struct ExecRequest {
    pub process: Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console: ConsoleTarget,
    pub preserve_fds: i32,
}

/// Returns the exit code berth should exit with (0 when detached).
pub fn exec(root: &StateRoot, id: &str, request: ExecRequest) -> Result<i32> {
    let (init_pidfd, join, cgroup) = {
        // The lock is held only while checking: a long foreground exec must
        // not block kill or delete.
        let container = Container::load(root, id)?;
        let status = container.status();
        if !status.can_exec() {
            bail!("cannot exec in container {id}: it is {}", status.name());
        }
        let cgroup = container.state.cgroup_manager()?;
        (
            container.init_pidfd()?,
            namespaces_to_join(&container),
            cgroup,
        )
    };
    let (console_for_child, console_receiver) = console_pair(&request)?;
    let signals = (!request.detach)
        .then(foreground::block_signals)
        .transpose()?;
    let (channel, child_channel) = Channel::pair()?;

    let forked =
        namespaces::clone_in_pid_namespace(Some(init_pidfd.as_fd()), CloneFlags::empty(), None)
            .context("starting the exec process")?;
    let (pid, _pidfd) = match forked {
        Forked::Child => {
            drop(channel);
            let failure = run_child(
                &init_pidfd,
                join,
                console_for_child.as_ref(),
                &request,
                &child_channel,
            );
            let Err(err) = failure;
            let _ = child_channel.send(&Message::Failed(format!("{err:#}")));
            sys::exit_now(1)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop((child_channel, console_for_child));
    if let Some(cgroup) = &cgroup {
        cgroup.add_process(pid.as_raw())?;
    }
    process::set_initial_cpu_affinity(pid, &request.process)?;

    channel.send(&Message::Go {
        host_pid: pid.as_raw(),
    })?;
    match channel.recv()? {
        None => {} // the channel closed on execve
        Some(Message::Failed(reason)) => bail!("{reason}"),
        Some(other) => bail!("the exec process sent {other:?}"),
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

/// The namespaces the container's config gave it (new or joined) except pid,
/// which the parent enters around the clone; the user namespace only when the
/// container has one (joining one's own fails).
fn namespaces_to_join(container: &Container) -> CloneFlags {
    let linux = container.state.config.linux().as_ref();
    let namespaces = linux.and_then(|l| l.namespaces().as_ref());
    namespaces
        .into_iter()
        .flatten()
        .map(|ns| ns.typ())
        .filter(|&kind| kind != LinuxNamespaceType::Pid)
        .fold(CloneFlags::empty(), |flags, kind| flags | clone_flag(kind))
}

fn console_pair(request: &ExecRequest) -> Result<(Option<UnixStream>, Option<UnixStream>)> {
    let terminal = request.process.terminal().unwrap_or(false);
    match (&request.console, terminal) {
        (_, false) => Ok((None, None)),
        (ConsoleTarget::Socket(path), true) => {
            let stream = UnixStream::connect(path)
                .with_context(|| format!("--console-socket {}", path.display()))?;
            Ok((Some(stream), None))
        }
        (ConsoleTarget::Proxy, true) => {
            let (ours, theirs) = UnixStream::pair().context("socketpair for the console")?;
            Ok((Some(theirs), Some(ours)))
        }
        (ConsoleTarget::None, true) => bail!("--tty with --detach needs --console-socket"),
    }
}

fn run_child(
    init_pidfd: &OwnedFd,
    join: CloneFlags,
    console: Option<&UnixStream>,
    request: &ExecRequest,
    channel: &Channel,
) -> Result<std::convert::Infallible> {
    sys::set_parent_death_signal(Some(Signal::SIGKILL)).context("prctl(PR_SET_PDEATHSIG)")?;
    sys::set_non_dumpable().context("prctl(PR_SET_DUMPABLE)")?;
    sys::reset_signals().context("resetting signal handlers")?;
    channel.expect_go()?;
    setns(init_pidfd.as_fd(), join).context("setns into the container's namespaces")?;
    if let Some(socket) = console {
        let pty = process::console::open_pty(request.process.console_size())?;
        process::console::send_master(socket.as_fd(), &pty)?;
        process::console::attach_slave(pty)?;
    }
    process::apply(&request.process, None)?;
    let plan = process::prepare_exec(&request.process)?;
    process::mark_fds_cloexec(3 + request.preserve_fds)?;
    process::set_final_cpu_affinity(&request.process)?;
    // The process outlives a detached `berth exec` by design.
    sys::set_parent_death_signal(None).context("prctl(PR_SET_PDEATHSIG)")?;
    plan.exec()
}
