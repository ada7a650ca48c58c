//! `linux.sysctl`: only namespaced keys, written through [`ProcRoot`], which the container
//! cannot have redirected.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::trusted_proc::ProcRoot;

/// SysV IPC keys that live in the IPC namespace (as runc lists them).
const IPC_KEYS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];
const UTS_KEYS: &[&str] = &["kernel.hostname", "kernel.domainname"];

/// Which of the namespaces that scope sysctls the container gets.
#[derive(Clone, Copy, Debug, Default)]
pub struct SysctlNamespaces {
    pub ipc: bool,
    pub net: bool,
    pub uts: bool,
}

impl SysctlNamespaces {
    pub fn of(spec: &Spec) -> Self {
        let mut ns = Self::default();
        let list = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
        for n in list.into_iter().flatten() {
            match n.typ() {
                LinuxNamespaceType::Ipc => ns.ipc = true,
                LinuxNamespaceType::Network => ns.net = true,
                LinuxNamespaceType::Uts => ns.uts = true,
                _ => {}
            }
        }
        ns
    }
}

/// Refuse a key that would change the host: it must be namespaced and the container must have
/// that namespace.
pub fn check_key(key: &str, ns: SysctlNamespaces) -> Result<()> {
    let field = format!("linux.sysctl[{key:?}]");
    if key.contains('/') || key.split('.').any(str::is_empty) {
        bail!("{field}: malformed sysctl name");
    }
    let (needed, have) = if IPC_KEYS.contains(&key) || key.starts_with("fs.mqueue.") {
        ("ipc", ns.ipc)
    } else if key.starts_with("net.") {
        ("network", ns.net)
    } else if UTS_KEYS.contains(&key) {
        ("uts", ns.uts)
    } else {
        bail!("{field}: not in a separate kernel namespace, refusing to change the host's value");
    };
    if !have {
        bail!("{field}: needs a new {needed} namespace, the container would share the host's");
    }
    Ok(())
}

/// Validate every `linux.sysctl` key (usable before anything is started).
pub fn validate(spec: &Spec) -> Result<()> {
    let ns = SysctlNamespaces::of(spec);
    sysctls(spec).try_for_each(|(key, _)| check_key(key, ns))
}

fn sysctls(spec: &Spec) -> impl Iterator<Item = (&String, &String)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
}

/// The file under /proc for a (validated) key.
pub fn proc_path(key: &str) -> PathBuf {
    Path::new("sys").join(key.replace('.', "/"))
}

/// Write every `linux.sysctl` entry. Must run after entering the rootfs and before
/// readonlyPaths makes /proc/sys read-only.
pub fn apply(spec: &Spec) -> Result<()> {
    validate(spec)?;
    let mut entries = sysctls(spec).peekable();
    if entries.peek().is_none() {
        return Ok(());
    }
    let proc = ProcRoot::open().context("linux.sysctl")?;
    for (key, value) in entries {
        proc.write(proc_path(key), value.as_bytes())
            .with_context(|| format!("linux.sysctl[{key:?}] = {value:?}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: SysctlNamespaces = SysctlNamespaces {
        ipc: true,
        net: true,
        uts: true,
    };

    #[test]
    fn namespaced_keys_need_their_namespace() {
        for key in [
            "net.ipv4.ip_forward",
            "kernel.shmmax",
            "fs.mqueue.msg_max",
            "kernel.hostname",
        ] {
            check_key(key, ALL).unwrap();
            let err = check_key(key, SysctlNamespaces::default()).unwrap_err();
            assert!(err.to_string().contains("needs a new"), "{err}");
        }
    }

    #[test]
    fn host_wide_and_malformed_keys_are_refused() {
        for key in [
            "kernel.panic",
            "vm.swappiness",
            "fs.file-max",
            "net/ipv4/ip_forward",
            "net..x",
            "",
        ] {
            assert!(check_key(key, ALL).is_err(), "{key}");
        }
    }

    #[test]
    fn keys_map_to_proc_sys() {
        assert_eq!(
            proc_path("net.ipv4.ip_forward"),
            Path::new("sys/net/ipv4/ip_forward")
        );
    }
}
