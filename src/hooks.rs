//! OCI hooks: run a hook binary with the state JSON on stdin, its own args and
//! env, and an optional timeout. Where a hook runs (which namespaces) is the
//! caller's business: the lifecycle calls these at the moments the spec names.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::Hook;

use crate::{logging, sys};

/// Runs `hooks` in order; the first failure stops the rest and is returned.
pub fn run_all(kind: &str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Result<()> {
    for (index, hook) in hooks.into_iter().flatten().enumerate() {
        run_numbered(kind, index, hook, state_json)?;
    }
    Ok(())
}

/// Runs every one of `hooks` in order, a failure only logged as a warning: the spec's rule for
/// poststop hooks ("the remaining hooks and lifecycle continue as if the hook had succeeded").
pub fn run_all_warning_on_failure(kind: &str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) {
    for (index, hook) in hooks.into_iter().flatten().enumerate() {
        if let Err(err) = run_numbered(kind, index, hook, state_json) {
            logging::log(logging::Level::Warning, &format!("{err:#}"));
        }
    }
}

fn run_numbered(kind: &str, index: usize, hook: &Hook, state_json: &[u8]) -> Result<()> {
    run(hook, state_json)
        // runc's words, which people search for.
        .with_context(|| {
            format!(
                "error running {kind} hook #{index} ({})",
                hook.path().display()
            )
        })
}

fn run(hook: &Hook, state_json: &[u8]) -> Result<()> {
    let mut command = Command::new(hook.path());
    // argv[0] comes from `args` when given, as with execve.
    if let Some((arg0, rest)) = hook.args().as_deref().and_then(|a| a.split_first()) {
        std::os::unix::process::CommandExt::arg0(&mut command, arg0);
        command.args(rest);
    }
    command.env_clear();
    for entry in hook.env().iter().flatten() {
        let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
        command.env(key, value);
    }
    sys::spawn_with_fork(&mut command);
    let mut child = command
        .stdin(Stdio::piped())
        .spawn()
        .context("starting the hook")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json);
    }
    let timeout = hook
        .timeout()
        .map(|secs| Duration::from_secs(secs.max(0) as u64));
    if let Some(timeout) = timeout
        && !exits_within(&mut child, timeout)?
    {
        let _ = child.kill();
        let _ = child.wait();
        bail!("timed out after {}s", timeout.as_secs());
    }
    let status = child.wait().context("waiting for the hook")?;
    if !status.success() {
        bail!("failed: {status}");
    }
    Ok(())
}

/// Whether the hook exits before `timeout`.
fn exits_within(child: &mut Child, timeout: Duration) -> Result<bool> {
    match sys::pidfd_open(nix::unistd::Pid::from_raw(child.id() as i32)) {
        Ok(pidfd) => {
            sys::wait_for_exit(pidfd.as_fd(), Some(timeout)).context("polling the hook's pidfd")
        }
        // startContainer hooks run under the container's seccomp filter, and a profile
        // older than pidfd_open refuses it (EPERM, or ENOSYS from the stub).
        Err(err) if matches!(err.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) => {
            polls_exit_within(child, timeout)
        }
        Err(err) => Err(err).context("pidfd_open of the hook"),
    }
}

/// `exits_within` with nothing but wait4 and nanosleep, which every profile allows.
fn polls_exit_within(child: &mut Child, timeout: Duration) -> Result<bool> {
    const INTERVAL: Duration = Duration::from_millis(10);
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().context("waiting for the hook")?.is_some() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(INTERVAL);
    }
}
