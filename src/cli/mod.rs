//! The command line, flag for flag runc's (see shared/reference/cli-contract.md).

mod normalize;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::logging::LogFormat;

/// Parses berth's command line (exits with clap's message on a usage error). Only the
/// subcommand given is built: the others are a name and a line of help until asked for.
///
/// Callers put the global flags before the subcommand (runc accepts them nowhere else), and
/// that is parsed without clap's copy of each global flag into every subcommand, which cost
/// more than the rest of a parse. Anything else (help, a usage error, a global flag after the
/// subcommand) is parsed again as berth's full definition, with what it prints and accepts.
pub fn parse(args: Vec<String>) -> Cli {
    try_parse(args).unwrap_or_else(|err| err.exit())
}

fn try_parse(args: Vec<String>) -> Result<Cli, clap::Error> {
    let mut leading_globals = Cli::command().mut_args(|arg| arg.global(false));
    let args = normalize::normalize_args(&leading_globals, args);
    parse_with(&mut leading_globals, args.clone()).or_else(|_| {
        let mut command = Cli::command();
        parse_with(&mut command, args).map_err(|err| err.format(&mut command))
    })
}

fn parse_with(command: &mut clap::Command, args: Vec<String>) -> Result<Cli, clap::Error> {
    let mut matches = command.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches_mut(&mut matches)
}

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    about = "An OCI container runtime",
    disable_version_flag = true
)]
pub struct Cli {
    /// Directory for the containers' state [default: /run/berth, or $XDG_RUNTIME_DIR/berth when
    /// rootless]
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Log file (default: stderr)
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// Log debug messages too
    #[arg(long, global = true)]
    pub debug: bool,
    /// Let systemd make the container's cgroup, a transient unit (cgroupsPath is
    /// slice:prefix:name)
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Whether berth lacks privilege over the host, so that it runs containers without a cgroup
    /// unless one is delegated (true, false or auto: an unprivileged user or root in a user
    /// namespace); with `spec`: write a config for an unprivileged user
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Print the version
    #[arg(short = 'v', long)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    /// Write a default config.json into the bundle
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Create a container (it waits for `start`)
    Create(CreateArgs),
    /// Create and start a container
    Run(RunArgs),
    /// Start a created container
    Start { id: String },
    /// Print a container's state as JSON
    State { id: String },
    /// Send a signal to a container's init (default SIGTERM)
    Kill {
        /// Signal every process of the container
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a stopped container (or any, with --force)
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a new process inside a container
    Exec(ExecArgs),
    /// List the processes of a container
    Ps {
        #[arg(short, long, value_enum, default_value_t)]
        format: OutputFormat,
        id: String,
        /// Arguments for ps(1) (default -ef)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers
    List {
        #[arg(short, long, value_enum, default_value_t)]
        format: OutputFormat,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze every process of a container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// Change a container's resource limits
    Update {
        #[command(flatten)]
        resources: crate::cgroups::UpdateArgs,
        #[command(flatten)]
        rdt: crate::intelrdt::RdtUpdateArgs,
        id: String,
    },
    /// Stream a container's stats and OOM events as JSON
    Events {
        /// Time between stats events
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        /// Print one stats event and exit
        #[arg(long)]
        stats: bool,
        id: String,
    },
    /// Describe what this build of berth supports (runtime-spec features.md)
    Features,
    /// Checkpoint a running container with CRIU (then delete it, unless --leave-running)
    Checkpoint(CheckpointArgs),
    /// Restore a container from a checkpoint with CRIU
    Restore(RestoreArgs),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

// The flags `create`, `run` and `restore` share: the bundle, and what the caller gets of the
// container's init. (Plain comments on flattened structs: see the test below.)
#[derive(Args, Debug)]
pub struct BundleArgs {
    /// Bundle directory (holds config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// File to write the init's pid to
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root
    #[arg(long)]
    pub no_pivot: bool,
}

// The flags `run` and `restore` share: whether berth stays the container's parent.
#[derive(Args, Debug)]
pub struct ForegroundArgs {
    /// Return once the container runs (default: wait, and exit with its status)
    #[arg(short, long)]
    pub detach: bool,
    /// Do not become a subreaper for the container's orphans
    #[arg(long)]
    pub no_subreaper: bool,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// Unix socket that receives a pidfd of the container's init
    #[arg(long)]
    pub pidfd_socket: Option<PathBuf>,
    /// Do not create a new session keyring
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many fds from 3 on into the container
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    #[command(flatten)]
    pub foreground: ForegroundArgs,
    /// Keep the container after it exited
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Unix socket that receives the pty master
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Return once the process started
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process's pid to
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives a pidfd of the process
    #[arg(long)]
    pub pidfd_socket: Option<PathBuf>,
    /// Pass this many fds from 3 on into the process
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Exec in a paused container too (the process runs once it is resumed)
    #[arg(long)]
    pub ignore_paused: bool,
    /// Run the process in an existing sub-cgroup of the container's: PATH in every hierarchy,
    /// or on cgroup v1 CONTROLLER[,CONTROLLER]:PATH (repeatable)
    #[arg(long = "cgroup", value_name = "[CONTROLLER:]PATH")]
    pub cgroups: Vec<String>,
    pub id: String,
    /// The process flags and the command line; declared after the id so the
    /// command's positional arguments come last.
    #[command(flatten)]
    pub process: crate::process::ExecOptions,
}

// The CRIU flags `checkpoint` and `restore` share (a plain comment: see the test below).
#[derive(Args, Debug)]
pub struct CriuArgs {
    /// Directory of the CRIU image files [default: ./checkpoint]
    #[arg(long)]
    pub image_path: Option<PathBuf>,
    /// Directory for CRIU's work files and log [default: the image directory]
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// Allow open TCP connections
    #[arg(long)]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow shell jobs
    #[arg(long)]
    pub shell_job: bool,
    /// Handle file locks
    #[arg(long)]
    pub file_locks: bool,
    /// How CRIU treats the cgroups [default: CRIU's, soft]
    #[arg(long, value_enum)]
    pub manage_cgroups_mode: Option<ManageCgroupsMode>,
    /// Create this namespace without restoring its contents (network: always so, as in runc)
    #[arg(long, value_enum)]
    pub empty_ns: Vec<EmptyNamespace>,
    /// Deduplicate the memory images as they are written or read
    #[arg(long)]
    pub auto_dedup: bool,
    /// Restore memory pages lazily, on first access (userfaultfd)
    #[arg(long)]
    pub lazy_pages: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ManageCgroupsMode {
    Soft,
    Full,
    Strict,
    Ignore,
}

/// The namespaces --empty-ns takes (runc's: only the network one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmptyNamespace {
    Network,
}

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// The previous (pre-)dump, relative to the image directory
    #[arg(long)]
    pub parent_path: Option<PathBuf>,
    /// Leave the container running after the checkpoint
    #[arg(long)]
    pub leave_running: bool,
    /// Dump only the memory, and leave the container running
    #[arg(long)]
    pub pre_dump: bool,
    /// ADDRESS:PORT of a CRIU page server to send the memory pages to
    #[arg(long)]
    pub page_server: Option<String>,
    /// An open fd that gets a \0 once the lazy-pages server is ready (with --lazy-pages)
    #[arg(long)]
    pub status_fd: Option<i32>,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    #[command(flatten)]
    pub bundle: BundleArgs,
    #[command(flatten)]
    pub foreground: ForegroundArgs,
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Cli, clap::Error> {
        try_parse(line.split(' ').map(String::from).collect())
    }

    #[test]
    fn global_flags_are_taken_before_and_after_the_subcommand() {
        for line in [
            "berth --root /r --debug --systemd-cgroup state id",
            "berth state --root /r --debug --systemd-cgroup id",
            "berth --root /r state --debug id --systemd-cgroup",
        ] {
            let cli = parse_line(line).unwrap();
            assert_eq!(cli.root, Some(PathBuf::from("/r")), "{line}");
            assert!(cli.debug && cli.systemd_cgroup, "{line}");
            assert!(matches!(cli.command, Some(Command::State { id }) if id == "id"));
        }
        let spec = parse_line("berth spec --rootless").unwrap();
        assert_eq!(spec.rootless.as_deref(), Some("true"));
    }

    /// Help and usage errors are those of berth's full definition: a subcommand's help lists
    /// the global flags.
    #[test]
    fn help_and_usage_errors_are_the_full_definitions() {
        for line in [
            "berth state --help",
            "berth --help",
            "berth state",
            "berth nosuch",
        ] {
            let full = Cli::command()
                .try_get_matches_from(line.split(' '))
                .unwrap_err();
            let parsed = parse_line(line).err().unwrap();
            assert_eq!(parsed.to_string(), full.to_string(), "{line}");
            assert_eq!(parsed.kind(), full.kind(), "{line}");
        }
        let help = parse_line("berth state --help").err().unwrap().to_string();
        assert!(help.contains("--systemd-cgroup"), "{help}");
    }

    /// Subcommands are built only when used (`defer`): once built, each must keep the help
    /// line `berth --help` lists for it, which a doc comment on a flattened struct would
    /// replace.
    #[test]
    fn a_built_subcommand_keeps_its_help_line() {
        let listed = Cli::command();
        let mut built = Cli::command();
        built.build();
        for subcommand in listed.get_subcommands() {
            let name = subcommand.get_name();
            let about = |command: &clap::Command| command.get_about().map(|a| a.to_string());
            assert_eq!(
                about(built.find_subcommand(name).unwrap()),
                about(subcommand),
                "`berth {name} --help`"
            );
        }
    }
}
