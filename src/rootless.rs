//! berth without privilege over the host: run by an unprivileged user, or by root inside a user
//! namespace (as podman runs it). Such a berth cannot create cgroups unless one was delegated to
//! it, so it runs containers without one (see `cgroups::for_new_container`), and it keeps its
//! state under the user's runtime directory.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// runc's `--rootless` values: `true`, `false`, or `auto` (the default: decide from who we are).
pub fn is_rootless(flag: Option<&str>) -> Result<bool> {
    match flag {
        None | Some("auto") => Ok(!has_host_privilege()),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => bail!("--rootless {other:?}: expected true, false or auto"),
    }
}

/// Whether this process is root on the host: root outside any user namespace.
pub fn has_host_privilege() -> bool {
    nix::unistd::geteuid().is_root() && !in_user_namespace()
}

/// Where state goes without `--root`: as runc, `$XDG_RUNTIME_DIR/berth` for an unprivileged user
/// (or for root in a user namespace on behalf of a user), `/run/berth` otherwise.
pub fn default_state_root() -> PathBuf {
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty());
    match runtime_dir {
        Some(dir) if honours_runtime_dir() => PathBuf::from(dir).join("berth"),
        _ => PathBuf::from("/run/berth"),
    }
}

/// Real root on the host ignores `$XDG_RUNTIME_DIR` (sudo keeps a user's); root in a user
/// namespace honours it unless `$USER` says it is root there too. As runc decides: an unset
/// `$USER` honours it, which is how conmon runs the runtime for rootless podman.
fn honours_runtime_dir() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return true;
    }
    in_user_namespace() && !user_is_root(std::env::var_os("USER").as_deref())
}

fn user_is_root(user: Option<&std::ffi::OsStr>) -> bool {
    user.is_some_and(|name| name == "root")
}

/// Whether this process is in a user namespace other than the initial one, whose uid_map maps
/// the whole id range onto itself.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|map| !is_initial_uid_map(&map))
}

fn is_initial_uid_map(map: &str) -> bool {
    let fields: Vec<&str> = map.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_identity_map_of_every_id_is_the_initial_namespace() {
        assert!(is_initial_uid_map("         0          0 4294967295\n"));
        assert!(!is_initial_uid_map("         0       1000          1\n"));
        assert!(!is_initial_uid_map("0 0 4294967295\n1 1 1\n"));
        assert!(!is_initial_uid_map(""));
    }

    #[test]
    fn only_a_user_named_root_keeps_root_in_a_user_namespace_off_the_runtime_dir() {
        assert!(user_is_root(Some("root".as_ref())));
        assert!(!user_is_root(None));
        assert!(!user_is_root(Some("".as_ref())));
        assert!(!user_is_root(Some("alice".as_ref())));
    }

    #[test]
    fn rootless_flag_values() {
        assert!(is_rootless(Some("true")).unwrap());
        assert!(!is_rootless(Some("false")).unwrap());
        let err = is_rootless(Some("yes")).unwrap_err().to_string();
        assert!(err.contains("expected true, false or auto"), "{err}");
    }
}
