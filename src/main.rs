//! berth: an OCI container runtime, a drop-in replacement for runc.

// The C runtime calls berth's `main` below directly, not through std's wrapper.
#![cfg_attr(not(test), no_main)]

mod atomic_write;
mod cgroups;
mod cli;
mod container;
mod criu;
mod features;
mod hooks;
mod init;
mod intelrdt;
mod logging;
mod lsm;
mod memory_policy;
mod namespaces;
mod netdev;
mod process;
mod rootfs;
mod rootless;
mod seccomp;
mod spec;
mod sync;
mod sys;
mod trace;
mod trusted_proc;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cgroups::CgroupOptions;
use cli::{Cli, Command, CreateArgs, CriuArgs};
use container::state::StateRoot;
use container::{
    CheckpointOptions, ConsoleTarget, CreateOptions, ExecRequest, RestoreOptions, RunOptions,
};

/// The entry point, called by the C runtime. std's own (`fn main`) would first locate the main
/// thread's stack guard, for a nicer message on a stack overflow: glibc's pthread_getattr_np
/// parses /proc/self/maps for it, about 120,000 instructions, a tenth of all `berth state`
/// costs. What else std does there that berth needs, `sys::prepare_process` does.
#[cfg(not(test))]
// SAFETY: the only `main` symbol: with no_main std defines none.
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    run()
}

/// Parses the command line, runs the command and exits with its code (flushing stdout).
#[cfg_attr(test, allow(dead_code))]
fn run() -> ! {
    sys::prepare_process();
    // One vDSO clock read: where the trace's timeline starts, should --debug turn it on.
    let started = trace::Instant::now();
    let cli = cli::parse(std::env::args().collect());
    if let Err(err) = logging::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!("berth: {err:#}");
        std::process::exit(1);
    }
    if cli.debug {
        trace::enable("berth", started);
        trace::record_since("parse the command line", started);
    }
    let result = dispatch(cli);
    trace::report();
    match result {
        Ok(code) => std::process::exit(code),
        // A reader that went away (`berth list | head`) is no error of ours.
        Err(err) if is_broken_pipe(&err) => std::process::exit(0),
        Err(err) => {
            let message = format!("{err:#}");
            logging::log(logging::Level::Error, &message);
            // As runc: the bare message, which callers match words in.
            if logging::logs_to_file() {
                eprintln!("{message}");
            }
            std::process::exit(if err.is::<ExecFailed>() { 255 } else { 1 });
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Runs the command; returns the exit code (a container's, for run and exec).
fn dispatch(cli: Cli) -> Result<i32> {
    if cli.version {
        write!(std::io::stdout(), "{}", features::version_text())?;
        return Ok(0);
    }
    let Some(command) = cli.command else {
        bail!("no command given; see berth --help");
    };
    let rootless = rootless::is_rootless(cli.rootless.as_deref())?;
    let root_dir = cli.root.unwrap_or_else(rootless::default_state_root);
    let root = &StateRoot::new(&root_dir)?;
    let cgroup_options = CgroupOptions {
        systemd: cli.systemd_cgroup,
        rootless,
    };
    match command {
        // As `runc spec --rootless`: only an explicit flag asks for the rootless config.
        Command::Spec { bundle } => {
            write_default_spec(&bundle, cli.rootless.as_deref() == Some("true"))?
        }
        Command::Create(args) => {
            let console = (args.bundle.console_socket.clone())
                .map_or(ConsoleTarget::None, ConsoleTarget::Socket);
            container::create(root, &create_options(args, cgroup_options)?, console)?;
        }
        Command::Run(args) => {
            let options = RunOptions {
                console_socket: absolute(args.create.bundle.console_socket.clone())?,
                create: create_options(args.create, cgroup_options)?,
                detach: args.foreground.detach,
                keep: args.keep,
                no_subreaper: args.foreground.no_subreaper,
            };
            return container::run(root, &options);
        }
        Command::Start { id } => container::start(root, &id)?,
        Command::State { id } => container::state(root, &id)?,
        Command::Kill { all, id, signal } => container::kill(root, &id, signal.parse()?, all)?,
        Command::Delete { force, id } => container::delete(root, &id, force)?,
        Command::Exec(args) => return exec(root, args).context(ExecFailed),
        Command::Ps {
            format,
            id,
            ps_args,
        } => container::ps(root, &id, format, &ps_args)?,
        Command::List { format, quiet } => container::list(root, format, quiet)?,
        Command::Pause { id } => container::pause(root, &id)?,
        Command::Resume { id } => container::resume(root, &id)?,
        Command::Update { resources, rdt, id } => container::update(root, &id, &resources, &rdt)?,
        Command::Events {
            interval,
            stats,
            id,
        } => container::events(root, &id, interval, stats)?,
        Command::Checkpoint(args) => {
            let id = args.id.clone();
            container::checkpoint(root, &id, checkpoint_options(args)?)?
        }
        Command::Restore(args) => {
            // --no-pivot is accepted, as runc does: CRIU restores the root as it was.
            let options = RestoreOptions {
                id: args.id,
                bundle: args.bundle.bundle,
                cgroups: cgroup_options,
                criu: criu_options(args.criu)?,
                pid_file: absolute(args.bundle.pid_file)?,
                console_socket: absolute(args.bundle.console_socket)?,
                detach: args.foreground.detach,
                no_subreaper: args.foreground.no_subreaper,
            };
            return container::restore(root, &options);
        }
        Command::Features => {
            let json = serde_json::to_string_pretty(&features::features())?;
            writeln!(std::io::stdout(), "{json}")?
        }
    }
    Ok(0)
}

fn write_default_spec(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join(spec::CONFIG_FILE);
    if path.exists() {
        bail!("{} already exists; remove it first", path.display());
    }
    let json = serde_json::to_string_pretty(&spec::default_spec(rootless))?;
    std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

fn create_options(args: CreateArgs, cgroups: CgroupOptions) -> Result<CreateOptions> {
    Ok(CreateOptions {
        id: args.id,
        cgroups,
        bundle: args.bundle.bundle,
        pid_file: absolute(args.bundle.pid_file)?,
        pidfd_socket: args.pidfd_socket,
        preserve_fds: args.preserve_fds,
        no_pivot: args.bundle.no_pivot,
        no_new_keyring: args.no_new_keyring,
    })
}

fn criu_options(args: CriuArgs) -> Result<criu::CriuOptions> {
    let image_path = match args.image_path {
        Some(path) => path,
        // runc's default.
        None => std::env::current_dir()
            .context("the current directory")?
            .join("checkpoint"),
    };
    let cgroup_mode = match args.manage_cgroups_mode {
        None => criu::CgroupMode::Default,
        Some(cli::ManageCgroupsMode::Soft) => criu::CgroupMode::Soft,
        Some(cli::ManageCgroupsMode::Full) => criu::CgroupMode::Full,
        Some(cli::ManageCgroupsMode::Strict) => criu::CgroupMode::Strict,
        Some(cli::ManageCgroupsMode::Ignore) => criu::CgroupMode::Ignore,
    };
    let empty_ns = (args.empty_ns.iter())
        .map(|cli::EmptyNamespace::Network| libc::CLONE_NEWNET as u32)
        .fold(0, |mask, flag| mask | flag);
    Ok(criu::CriuOptions {
        image_path: std::path::absolute(&image_path)
            .with_context(|| format!("--image-path {}", image_path.display()))?,
        work_path: absolute(args.work_path)?,
        tcp_established: args.tcp_established,
        ext_unix_sk: args.ext_unix_sk,
        shell_job: args.shell_job,
        file_locks: args.file_locks,
        cgroup_mode,
        empty_ns,
        auto_dedup: args.auto_dedup,
        lazy_pages: args.lazy_pages,
    })
}

fn checkpoint_options(args: cli::CheckpointArgs) -> Result<CheckpointOptions> {
    let page_server = args
        .page_server
        .as_deref()
        .map(parse_page_server)
        .transpose()?;
    let status_fd = args.status_fd.map(status_fd).transpose()?;
    Ok(CheckpointOptions {
        criu: criu_options(args.criu)?,
        parent_path: args.parent_path,
        leave_running: args.leave_running,
        pre_dump: args.pre_dump,
        page_server,
        status_fd,
    })
}

/// --page-server ADDRESS:PORT (the address may be an IPv6 one in brackets).
fn parse_page_server(value: &str) -> Result<(String, i32)> {
    let usage = "use --page-server ADDRESS:PORT to specify the page server";
    let (address, port) = value.rsplit_once(':').context(usage)?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .with_context(|| format!("--page-server {value}: invalid port number"))?;
    if address.is_empty() {
        bail!("{usage}");
    }
    Ok((address.to_string(), i32::from(port)))
}

/// --status-fd: an fd berth inherited open for writing; berth owns it from here on.
fn status_fd(fd: i32) -> Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::os::fd::{BorrowedFd, FromRawFd};
    if fd < 0 {
        bail!("invalid --status-fd {fd}");
    }
    // SAFETY: only borrowed to ask its flags; an fd that is not open fails with EBADF.
    let flags = fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFL)
        .with_context(|| format!("invalid --status-fd {fd}"))?;
    let mode = OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE;
    if mode == OFlag::O_RDONLY {
        bail!("invalid --status-fd {fd}: not writable");
    }
    // SAFETY: the fd is open (F_GETFL succeeded) and nothing else in berth refers to it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Wraps every error of `exec`, which then exits 255: runc's words and code for an exec that
/// did not get its process running.
#[derive(Debug, thiserror::Error)]
#[error("exec failed")]
struct ExecFailed;

fn exec(root: &StateRoot, args: cli::ExecArgs) -> Result<i32> {
    let config = {
        let dir = root.container_dir(&args.id)?;
        container::state::State::load(&dir)
            .map_err(|_| container::NotFound(args.id.clone()))?
            .config
    };
    let base = config
        .process()
        .as_ref()
        .context("the container has no process")?;
    let process = process::exec_process(&args.process, base)?;
    let console = match (&args.console_socket, args.detach) {
        (Some(path), _) => ConsoleTarget::Socket(path.clone()),
        (None, false) => ConsoleTarget::Proxy,
        (None, true) => ConsoleTarget::None,
    };
    let request = ExecRequest {
        process,
        detach: args.detach,
        pid_file: absolute(args.pid_file)?,
        pidfd_socket: args.pidfd_socket,
        console,
        preserve_fds: args.preserve_fds,
        ignore_paused: args.ignore_paused,
        sub_cgroups: cgroups::SubCgroups::parse(&args.cgroups)?,
    };
    container::exec(root, &args.id, request)
}

/// Relative paths in flags are relative to where berth was started.
fn absolute(path: Option<PathBuf>) -> Result<Option<PathBuf>> {
    path.map(|p| std::path::absolute(&p).with_context(|| format!("path {}", p.display())))
        .transpose()
}
