//! `berth exec`'s process flags (runc's), turned into an OCI `process`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{Capabilities, Capability, Process};

// runc's process flags of `exec`. The command puts the container id before these (the
// positional ARGS come last) and owns --console-socket, --detach, --pid-file, --preserve-fds.
// (Not a doc comment: clap would make it the help text of `exec`.)
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
    /// AppArmor profile for the process
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux label for the process
    #[arg(long)]
    pub process_label: Option<String>,
    /// the command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Builds the process to exec, on top of the container's `process` as runc does: a process file
/// replaces it but inherits the capabilities, rlimits and noNewPrivileges it leaves out; flags
/// override the container's values (env is appended, --cap is added to bounding, effective and
/// permitted, and to ambient when an inheritable set is configured).
/// `validate` runs on the result (exec has no personality of its own), then the labels are
/// checked against the host, as for `create`.
pub fn exec_process(opts: &ExecOptions, container_process: &Process) -> Result<Process> {
    let process = match &opts.process {
        Some(path) => from_file(path, container_process)?,
        None => from_flags(opts, container_process)?,
    };
    super::validate(&process, None)?;
    crate::lsm::check_host_supports(&process, None)?;
    Ok(process)
}

fn from_file(path: &Path, container_process: &Process) -> Result<Process> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let invalid = || format!("{}: invalid process", path.display());
    let mut json: serde_json::Value =
        serde_json::from_reader(std::io::BufReader::new(file)).with_context(invalid)?;
    // As runc, whose process file leaves Go's zero values: without `user`, uid 0 and gid 0.
    if let Some(fields) = json.as_object_mut() {
        (fields.entry("user")).or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
    }
    let mut process: Process = serde_path_to_error::deserialize(json).with_context(invalid)?;
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
    if opts.apparmor.is_some() {
        process.set_apparmor_profile(opts.apparmor.clone());
    }
    if opts.process_label.is_some() {
        process.set_selinux_label(opts.process_label.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    struct Cli {
        id: String,
        #[command(flatten)]
        exec: ExecOptions,
    }

    fn parse(args: &[&str]) -> ExecOptions {
        Cli::try_parse_from(std::iter::once("exec").chain(args.iter().copied()))
            .unwrap()
            .exec
    }

    fn container_process() -> Process {
        serde_json::from_value(json!({
            "user": {"uid": 5, "gid": 6, "additionalGids": [7]},
            "args": ["sh"], "cwd": "/", "env": ["PATH=/bin", "A=1"],
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL"], "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10}],
            "noNewPrivileges": true
        }))
        .unwrap()
    }

    #[test]
    fn flags_override_the_container_process() {
        let opts = parse(&[
            "id", "--cwd", "/tmp", "-e", "B=2", "--user", "1:2", "-g", "8,9", "--tty", "ls", "-l",
            "--all",
        ]);
        assert_eq!(opts.args, ["ls", "-l", "--all"]);
        let p = exec_process(&opts, &container_process()).unwrap();
        assert_eq!(p.args().as_deref().unwrap(), ["ls", "-l", "--all"]);
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(p.env().as_deref().unwrap(), ["PATH=/bin", "A=1", "B=2"]);
        assert_eq!((p.user().uid(), p.user().gid()), (1, 2));
        assert_eq!(p.user().additional_gids().as_deref().unwrap(), [7, 8, 9]);
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.rlimits(), container_process().rlimits());
    }

    #[test]
    fn user_without_gid_keeps_the_container_gid() {
        let p = exec_process(&parse(&["id", "-u", "42", "id"]), &container_process()).unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (42, 6));
    }

    #[test]
    fn non_numeric_users_are_rejected() {
        let error =
            exec_process(&parse(&["id", "-u", "root", "id"]), &container_process()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--user \"root\": uid \"root\" is not a number"
        );
    }

    #[test]
    fn security_label_flags_become_the_process_labels() {
        let opts = parse(&["id", "--apparmor", "p", "--process-label", "l", "sh"]);
        let p = from_flags(&opts, &container_process()).unwrap();
        assert_eq!(p.apparmor_profile().as_deref(), Some("p"));
        assert_eq!(p.selinux_label().as_deref(), Some("l"));
    }

    #[test]
    fn a_command_is_required() {
        assert!(exec_process(&parse(&["id"]), &container_process()).is_err());
    }

    #[test]
    fn caps_are_added_to_bounding_effective_permitted_and_ambient() {
        let p = exec_process(
            &parse(&["id", "--cap", "CAP_CHOWN", "sh"]),
            &container_process(),
        )
        .unwrap();
        let caps = p.capabilities().as_ref().unwrap();
        for set in [
            caps.bounding(),
            caps.effective(),
            caps.permitted(),
            caps.ambient(),
        ] {
            assert!(set.as_ref().unwrap().contains(&Capability::Chown));
        }
        assert!(
            !caps
                .inheritable()
                .as_ref()
                .unwrap()
                .contains(&Capability::Chown)
        );
        let error = exec_process(
            &parse(&["id", "--cap", "CAP_BOGUS", "sh"]),
            &container_process(),
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "--cap \"CAP_BOGUS\": unknown capability");
    }

    /// `exec --process FILE` with `json` in FILE (a temporary file named after `case`), into a
    /// container whose process is `container_process()`.
    fn exec_process_from_file(case: &str, json: &str) -> Result<Process> {
        let path =
            std::env::temp_dir().join(format!("berth-process-{case}-{}.json", std::process::id()));
        std::fs::write(&path, json).unwrap();
        let options = ExecOptions {
            process: Some(path.clone()),
            ..Default::default()
        };
        let result = exec_process(&options, &container_process());
        std::fs::remove_file(&path).unwrap();
        result
    }

    #[test]
    fn a_process_file_inherits_what_it_leaves_out() {
        let p = exec_process_from_file(
            "inherits",
            r#"{"user": {"uid": 3, "gid": 3}, "args": ["top"], "cwd": "/"}"#,
        )
        .unwrap();
        assert_eq!(p.args().as_deref().unwrap(), ["top"]);
        assert_eq!(p.user().uid(), 3);
        assert_eq!(p.capabilities(), container_process().capabilities());
        assert_eq!(p.rlimits(), container_process().rlimits());
        assert_eq!(p.no_new_privileges(), Some(true));
    }

    #[test]
    fn a_process_file_without_user_runs_as_root() {
        // runc's bats "runc exec [tty consolesize]" sends one.
        let p = exec_process_from_file("rootuser", r#"{"args": ["stty", "-a"], "cwd": "/"}"#);
        let user = p.unwrap().user().clone();
        assert_eq!((user.uid(), user.gid()), (0, 0));
    }

    #[test]
    fn a_bad_process_file_names_the_field() {
        let result = exec_process_from_file("bad", r#"{"user": {"uid": "x"}, "cwd": "/"}"#);
        let message = format!("{:#}", result.unwrap_err());
        assert!(message.contains("user.uid"), "{message}");
    }
}
