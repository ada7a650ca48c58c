//! AppArmor: detection as runc does it, and the profile the process takes at execve.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::trusted_proc::ProcRoot;

/// runc's test: the securityfs directory exists and the module parameter says `Y`.
pub fn enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|param| parameter_says_enabled(&param))
}

fn parameter_says_enabled(param: &[u8]) -> bool {
    param.first() == Some(&b'Y')
}

/// libapparmor's aa_change_onexec: the calling thread enters `profile` at its next execve.
/// Kernels before 5.1 have no per-LSM attr directory; there the shared attr/exec is AppArmor's.
pub fn change_on_exec(profile: &str) -> Result<()> {
    let proc = ProcRoot::open()?;
    let mut file = match proc.open_file("thread-self/attr/apparmor/exec", OFlag::O_WRONLY) {
        Err(err) if err.downcast_ref::<Errno>() == Some(&Errno::ENOENT) => {
            proc.open_file("thread-self/attr/exec", OFlag::O_WRONLY)?
        }
        other => other?,
    };
    file.write_all(exec_request(profile).as_bytes())
        .with_context(|| format!("changing to profile {profile:?} on exec"))
}

fn exec_request(profile: &str) -> String {
    format!("exec {profile}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_leading_y_means_enabled() {
        assert!(parameter_says_enabled(b"Y\n"));
        assert!(!parameter_says_enabled(b"N\n"));
        assert!(!parameter_says_enabled(b""));
        assert!(!parameter_says_enabled(b"y"));
    }

    #[test]
    fn the_request_names_the_profile() {
        assert_eq!(exec_request("docker-default"), "exec docker-default");
    }
}
