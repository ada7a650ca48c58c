//! The last step: the environment as runc builds it, the program looked up in the container, and
//! execve.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{SFlag, fstat};
use oci_spec::runtime::Process;

use super::sys;

/// Used to look the program up when `process.env` has no PATH (it is not added to the env).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A program resolved inside the container with its final argv and environment; build it before
/// blocking on `start` so that a missing program fails `create`, as in runc.
#[derive(Debug)]
pub struct ExecPlan {
    program: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

/// Resolves `args[0]` inside the container (via PATH from `process.env`) and prepares the
/// environment: duplicates removed (the last value wins), HOME from the container's /etc/passwd
/// when missing, `TERM=xterm` for a terminal. Runs as root, before a seccomp filter may be
/// loaded (runc looks the program up as the final user, after it): the final user's permission
/// to run the program is execve's to check.
pub fn prepare_exec(process: &Process) -> Result<ExecPlan> {
    let args = process.args().as_deref().unwrap_or_default();
    let name = args
        .first()
        .context("process.args: must name the program to run")?;
    let mut env = dedup_env(process.env().as_deref().unwrap_or_default());
    if !has_var(&env, "HOME") {
        let home = read_container_passwd()
            .and_then(|passwd| home_of(&passwd, process.user().uid()))
            .unwrap_or_else(|| "/".to_owned());
        env.push(format!("HOME={home}"));
    }
    if process.terminal() == Some(true) && !has_var(&env, "TERM") {
        env.push("TERM=xterm".to_owned());
    }
    let path_var = env
        .iter()
        .find_map(|entry| entry.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let program = resolve_program(name, path_var)?;
    Ok(ExecPlan {
        program: c_string(
            program.into_os_string().into_encoded_bytes(),
            "process.args[0]",
        )?,
        args: args
            .iter()
            .enumerate()
            .map(|(i, arg)| c_string(arg.clone().into_bytes(), &format!("process.args[{i}]")))
            .collect::<Result<_>>()?,
        env: env
            .into_iter()
            .map(|entry| c_string(entry.into_bytes(), "process.env"))
            .collect::<Result<_>>()?,
    })
}

impl ExecPlan {
    /// execve; returns only on failure. Nothing else here: a seccomp filter may be in force.
    pub fn exec(self) -> Result<Infallible> {
        let errno = sys::execve(&self.program, &self.args, &self.env);
        Err(anyhow!(
            "exec {:?}: {}",
            self.program,
            errno.desc().to_lowercase()
        ))
    }
}

fn c_string(bytes: Vec<u8>, field: &str) -> Result<CString> {
    CString::new(bytes).map_err(|_| anyhow!("{field}: contains a NUL byte"))
}

fn has_var(env: &[String], name: &str) -> bool {
    env.iter().any(|entry| {
        entry
            .split_once('=')
            .is_some_and(|(key, value)| key == name && !value.is_empty())
    })
}

/// Keeps each variable once, at its first position, with its last value (runc's rule).
fn dedup_env(env: &[String]) -> Vec<String> {
    let mut result: Vec<String> = Vec::with_capacity(env.len());
    for entry in env {
        let name = entry
            .split_once('=')
            .map_or(entry.as_str(), |(name, _)| name);
        let same_name =
            |existing: &String| existing.split_once('=').is_some_and(|(n, _)| n == name);
        match result.iter_mut().find(|existing| same_name(existing)) {
            Some(existing) => existing.clone_from(entry),
            None => result.push(entry.clone()),
        }
    }
    result
}

fn read_container_passwd() -> Option<String> {
    let file = sys::open_in_root(Path::new("/etc/passwd"), OFlag::O_RDONLY).ok()?;
    let mut passwd = String::new();
    std::fs::File::from(file).read_to_string(&mut passwd).ok()?;
    Some(passwd)
}

/// The home directory of `uid` in passwd(5) text, if it has a non-empty one.
fn home_of(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let matches = fields.len() >= 7 && fields[2].parse() == Ok(uid) && !fields[5].is_empty();
        matches.then(|| fields[5].to_owned())
    })
}

/// runc's lookup: a name containing '/' is used as is, anything else is searched in the
/// absolute entries of PATH. Each candidate is opened inside the container root without magic
/// links, so `/proc/self/fd/N/…` cannot reach a file outside the container.
fn resolve_program(name: &str, path_var: &str) -> Result<PathBuf> {
    if name.contains('/') {
        let path = absolute_in_cwd(Path::new(name))?;
        return match executable(&path) {
            Ok(()) => Ok(path),
            Err(errno) => bail!("exec {name:?}: {}", errno.desc().to_lowercase()),
        };
    }
    path_var
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .filter(|candidate| candidate.is_absolute())
        .find(|candidate| executable(candidate).is_ok())
        .ok_or_else(|| anyhow!("exec {name:?}: executable file not found in $PATH"))
}

fn absolute_in_cwd(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    let cwd = nix::unistd::getcwd().context("getcwd")?;
    Ok(cwd.join(path))
}

/// A regular file with an execute bit, as Go's exec.LookPath checks; execve does the real
/// permission check.
fn executable(path: &Path) -> Result<(), Errno> {
    let file = sys::open_in_root(path, OFlag::O_PATH)?;
    let stat = fstat(&file)?;
    let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    if kind == SFlag::S_IFDIR {
        return Err(Errno::EISDIR);
    }
    if kind != SFlag::S_IFREG || stat.st_mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn dedup_keeps_first_position_and_last_value() {
        let env = strings(&["A=1", "B=2", "A=3", "C"]);
        assert_eq!(dedup_env(&env), strings(&["A=3", "B=2", "C"]));
    }

    #[test]
    fn home_comes_from_the_matching_passwd_line() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nbroken\nnobody:x:65534:65534::/nonexistent:/bin/false\nempty:x:7:7:::\n";
        assert_eq!(home_of(passwd, 0).as_deref(), Some("/root"));
        assert_eq!(home_of(passwd, 65534).as_deref(), Some("/nonexistent"));
        assert_eq!(home_of(passwd, 7), None);
        assert_eq!(home_of(passwd, 1000), None);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let env = strings(&["HOME=", "TERM=xterm"]);
        assert!(!has_var(&env, "HOME"));
        assert!(has_var(&env, "TERM"));
    }

    // These resolve on the host root, which has /bin/sh and /etc like any container would.
    #[test]
    fn program_lookup_follows_path() {
        assert_eq!(
            resolve_program("sh", "relative:/nonexistent:/bin").unwrap(),
            Path::new("/bin/sh")
        );
        assert_eq!(
            resolve_program("no-such-program", "/bin")
                .unwrap_err()
                .to_string(),
            "exec \"no-such-program\": executable file not found in $PATH"
        );
    }

    #[test]
    fn names_with_a_slash_are_checked_directly() {
        assert_eq!(
            resolve_program("/bin/sh", "").unwrap(),
            Path::new("/bin/sh")
        );
        assert_eq!(
            resolve_program("/etc", "").unwrap_err().to_string(),
            "exec \"/etc\": is a directory"
        );
        assert_eq!(
            resolve_program("/etc/passwd", "").unwrap_err().to_string(),
            "exec \"/etc/passwd\": permission denied"
        );
    }

    #[test]
    fn magic_links_cannot_lead_out_of_the_root() {
        let dir = std::fs::File::open("/bin").unwrap();
        let path = format!("/proc/self/fd/{}/sh", std::os::fd::AsRawFd::as_raw_fd(&dir));
        let message = resolve_program(&path, "").unwrap_err().to_string();
        assert!(message.contains("too many symbolic links"), "{message}");
    }
}
