//! The id mappings of a user namespace: written by the parent into a new one (the container's,
//! between clone and Go, or the one carrying an idmapped mount's mappings), or checked against a
//! joined one.
//!
//! Root writes them as given. An unprivileged user (rootless) may write only a mapping of its
//! own uid and gid, and for the gid only after denying setgroups, as the kernel demands; any
//! other mapping goes through the setuid helpers newuidmap and newgidmap (Debian's `uidmap`,
//! ranges from /etc/subuid and /etc/subgid), as with runc.

use std::process::Command;

use anyhow::{Context, Result, bail};
use nix::unistd::{Pid, getegid, geteuid};
use oci_spec::runtime::LinuxIdMapping;

/// uid and gid mappings of a user namespace: the container's (`linux.uidMappings`…) or an
/// idmapped mount's (`mounts[i].uidMappings`…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMaps {
    uid: Vec<LinuxIdMapping>,
    gid: Vec<LinuxIdMapping>,
}

/// One of the two map files, and how a rootless parent writes it.
struct MapFile {
    name: &'static str,
    /// The config.json field the mappings come from, below their owner.
    field: &'static str,
    helper: &'static str,
}

const UID_MAP: MapFile = MapFile {
    name: "uid_map",
    field: "uidMappings",
    helper: "newuidmap",
};
const GID_MAP: MapFile = MapFile {
    name: "gid_map",
    field: "gidMappings",
    helper: "newgidmap",
};

impl IdMaps {
    pub fn new(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> IdMaps {
        IdMaps {
            uid: uid.to_vec(),
            gid: gid.to_vec(),
        }
    }

    /// Writes the maps of `child`'s new user namespace. `owner` is the config.json object the
    /// mappings come from (`linux`, `mounts[3]`), for errors.
    pub fn write(&self, child: Pid, owner: &str) -> Result<()> {
        let privileged = geteuid().is_root();
        write_map(
            child,
            owner,
            &UID_MAP,
            &self.uid,
            geteuid().as_raw(),
            privileged,
        )?;
        write_map(
            child,
            owner,
            &GID_MAP,
            &self.gid,
            getegid().as_raw(),
            privileged,
        )
    }

    /// Mappings cannot be applied to a joined user namespace, which has its own. containerd
    /// and CRI-O repeat them in the config (runc 1.1 required them), so they are accepted when
    /// they are the namespace's, and refused otherwise, as runc 1.2 does. Run in the child once
    /// in the namespace, where /proc/self/*_map shows exactly those mappings.
    pub fn check_joined(&self) -> Result<()> {
        let files = [
            ("uid_map", &self.uid, UID_MAP.field),
            ("gid_map", &self.gid, GID_MAP.field),
        ];
        for (file, configured, field) in files {
            let field = format!("linux.{field}");
            let path = format!("/proc/self/{file}");
            let actual = std::fs::read_to_string(&path)
                .with_context(|| format!("{field}: reading {path}"))?;
            // The kernel pads the columns: the same numbers in the same order match.
            if !actual
                .split_whitespace()
                .eq(render(configured).split_whitespace())
            {
                let actual: Vec<&str> = actual.split_whitespace().collect();
                bail!(
                    "{field}: not the mappings of the joined user namespace ({})",
                    actual.join(" ")
                );
            }
        }
        Ok(())
    }
}

fn write_map(
    child: Pid,
    owner: &str,
    map: &MapFile,
    mappings: &[LinuxIdMapping],
    own_id: u32,
    privileged: bool,
) -> Result<()> {
    let field = format!("{owner}.{}", map.field);
    if !privileged && !maps_only(mappings, own_id) {
        return run_helper(child, &field, map.helper, mappings);
    }
    if !privileged && map.name == GID_MAP.name {
        write_proc_file(child, "setgroups", "deny")
            .with_context(|| format!("{field}: denying setgroups"))?;
    }
    write_proc_file(child, map.name, &render(mappings))
        .with_context(|| format!("{field}: writing {}", map.name))
}

/// The one mapping the kernel lets an unprivileged process write: its own id, once.
fn maps_only(mappings: &[LinuxIdMapping], own_id: u32) -> bool {
    matches!(mappings, [m] if m.host_id() == own_id && m.size() == 1)
}

fn render(mappings: &[LinuxIdMapping]) -> String {
    mappings
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn write_proc_file(child: Pid, name: &str, contents: &str) -> std::io::Result<()> {
    std::fs::write(format!("/proc/{child}/{name}"), contents)
}

/// `newuidmap <pid> <inside> <outside> <count>...`: checks the ranges against /etc/subuid.
fn run_helper(child: Pid, field: &str, helper: &str, mappings: &[LinuxIdMapping]) -> Result<()> {
    let ranges = mappings
        .iter()
        .flat_map(|m| [m.container_id(), m.host_id(), m.size()])
        .map(|n| n.to_string());
    let output = Command::new(helper)
        .arg(child.to_string())
        .args(ranges)
        .output()
        .with_context(|| {
            format!("{field}: mapping more than your own id needs {helper} (Debian package uidmap)")
        })?;
    if !output.status.success() {
        bail!(
            "{field}: {helper} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(container_id: u32, host_id: u32, size: u32) -> LinuxIdMapping {
        let json = format!(r#"{{"containerID":{container_id},"hostID":{host_id},"size":{size}}}"#);
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn only_a_single_mapping_of_ones_own_id_is_written_directly() {
        assert!(maps_only(&[mapping(0, 1000, 1)], 1000));
        assert!(!maps_only(&[mapping(0, 1000, 1)], 1001));
        assert!(!maps_only(&[mapping(0, 1000, 2)], 1000));
        assert!(!maps_only(
            &[mapping(0, 1000, 1), mapping(1, 100000, 65536)],
            1000
        ));
    }

    #[test]
    fn map_lines_are_container_host_size() {
        let lines = render(&[mapping(0, 1000, 1), mapping(1, 100000, 65536)]);
        assert_eq!(lines, "0 1000 1\n1 100000 65536\n");
    }
}
