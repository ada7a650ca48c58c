//! `berth exec`'s process flags (runc's), turned into an OCI `process`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{Capabilities, Capability, Process};

/// runc's process flags of `exec`. The command puts the container id before these (the
/// positional ARGS come last) and owns --console-socket, --detach, --pid-file, --preserve-fds.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ExecOptions {
    /// path to a process.json (an OCI `process` object); the other process flags are ignored
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    /// allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// current working directory in the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// set environment variables (NAME=VALUE)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// UID (format: <uid>[:<gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// additional gids
    #[arg(short = 'g', long = "additional-gids", value_delimiter = ',')]
    pub additional_gids: Vec<u32>,
    /// add a capability to the bounding set for the process
    #[arg(short = 'c', long = "cap")]
    pub caps: Vec<String>,
    /// set the no new privileges value for the process
    #[arg(long)]
    pub no_new_privs: bool,
    /// the command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Builds the process to exec, on top of the container's `process` as runc does: a process file
/// replaces it but inherits the capabilities, rlimits and noNewPrivileges it leaves out; flags
/// override the container's values (env is appended, --cap is added to bounding, effective and
/// permitted, and to ambient when the inheritable set is not empty).
/// `validate` runs on the result (exec has no personality of its own).
pub fn exec_process(opts: &ExecOptions, container_process: &Process) -> Result<Process> {
    let process = match &opts.process {
        Some(path) => from_file(path, container_process)?,
        None => from_flags(opts, container_process)?,
    };
    super::validate(&process, None)?;
    Ok(process)
}

fn from_file(path: &PathBuf, container_process: &Process) -> Result<Process> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut deserializer = serde_json::Deserializer::from_reader(std::io::BufReader::new(file));
    let mut process: Process = serde_path_to_error::deserialize(&mut deserializer)
        .with_context(|| format!("{}: invalid process", path.display()))?;
    if process.capabilities().is_none() {
        process.set_capabilities(container_process.capabilities().clone());
    }
    if process.rlimits().as_ref().is_none_or(Vec::is_empty) {
        process.set_rlimits(container_process.rlimits().clone());
    }
    if process.no_new_privileges().is_none() {
        process.set_no_new_privileges(container_process.no_new_privileges());
    }
    Ok(process)
}

fn from_flags(opts: &ExecOptions, container_process: &Process) -> Result<Process> {
    if opts.args.is_empty() {
        bail!("exec: a command to run is required");
    }
    let mut process = container_process.clone();
    process.set_args(Some(opts.args.clone()));
    process.set_terminal(Some(opts.tty));
    if let Some(cwd) = &opts.cwd {
        process.set_cwd(cwd.clone());
    }
    if !opts.env.is_empty() {
        let mut env = process.env().clone().unwrap_or_default();
        env.extend(opts.env.iter().cloned());
        process.set_env(Some(env));
    }
    if let Some(user) = &opts.user {
        let (uid, gid) = parse_user(user)?;
        process.user_mut().set_uid(uid);
        if let Some(gid) = gid {
            process.user_mut().set_gid(gid);
        }
    }
    if !opts.additional_gids.is_empty() {
        let mut gids = process.user().additional_gids().clone().unwrap_or_default();
        gids.extend(&opts.additional_gids);
        process.user_mut().set_additional_gids(Some(gids));
    }
    if opts.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    add_capabilities(&mut process, &opts.caps)?;
    Ok(process)
}

/// `--user uid[:gid]`, numeric only (no passwd lookup, as in runc).
fn parse_user(user: &str) -> Result<(u32, Option<u32>)> {
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (user, None),
    };
    let parse = |value: &str, what: &str| {
        value
            .parse::<u32>()
            .with_context(|| format!("--user {user:?}: {what} {value:?} is not a number"))
    };
    Ok((
        parse(uid, "uid")?,
        gid.map(|gid| parse(gid, "gid")).transpose()?,
    ))
}

fn add_capabilities(process: &mut Process, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let added: Capabilities = names
        .iter()
        .map(|name| {
            serde_json::from_value::<Capability>(serde_json::Value::String(name.clone()))
                .map_err(|_| anyhow::anyhow!("--cap {name:?}: unknown capability"))
        })
        .collect::<Result<_>>()?;
    // Without `capabilities` the process keeps every capability: nothing to add.
    let Some(mut capabilities) = process.capabilities().clone() else {
        return Ok(());
    };
    let extend = |set: &Option<Capabilities>| {
        let mut set = set.clone().unwrap_or_default();
        set.extend(added.iter().copied());
        Some(set)
    };
    let with_ambient = capabilities
        .inheritable()
        .as_ref()
        .is_some_and(|set| !set.is_empty());
    let (bounding, effective, permitted) = (
        extend(capabilities.bounding()),
        extend(capabilities.effective()),
        extend(capabilities.permitted()),
    );
    capabilities.set_bounding(bounding);
    capabilities.set_effective(effective);
    capabilities.set_permitted(permitted);
    if with_ambient {
        let ambient = extend(capabilities.ambient());
        capabilities.set_ambient(ambient);
    }
    process.set_capabilities(Some(capabilities));
    Ok(())
}
