//! `linux.memoryPolicy` (runtime-spec 1.3): the NUMA memory policy of the container's processes.
//! The init, and each exec'd process, sets it with set_mempolicy(2) before execve, as runc does;
//! a task's policy is inherited by its children and kept across execve.
//!
//! Checked when the bundle is loaded, before anything is created: the node counts each mode
//! takes (runc's rules), flags that exclude each other, and (except for relative node numbers)
//! nodes this host has. What only the kernel can judge (a mode or flag it does not know, nodes
//! outside the container's cpuset) fails `create` with the kernel's answer.

use std::path::Path;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{Linux, LinuxMemoryPolicy, MemoryPolicyFlagType, MemoryPolicyModeType};

use crate::spec::parse_number_list;
use crate::sys;

/// Not in the libc crate yet (Linux 5.15 and 6.9).
const MPOL_PREFERRED_MANY: libc::c_int = 5;
const MPOL_WEIGHTED_INTERLEAVE: libc::c_int = 6;

/// The nodes the host has, in the kernel's list syntax.
const ONLINE_NODES: &str = "/sys/devices/system/node/online";

/// Every mode and flag berth recognizes (`berth features`), in the spec's spelling.
pub const MODES: [&str; 7] = [
    "MPOL_DEFAULT",
    "MPOL_BIND",
    "MPOL_INTERLEAVE",
    "MPOL_WEIGHTED_INTERLEAVE",
    "MPOL_PREFERRED",
    "MPOL_PREFERRED_MANY",
    "MPOL_LOCAL",
];
pub const FLAGS: [&str; 3] = [
    "MPOL_F_NUMA_BALANCING",
    "MPOL_F_RELATIVE_NODES",
    "MPOL_F_STATIC_NODES",
];

/// A validated `linux.memoryPolicy`, ready for set_mempolicy.
#[derive(Debug, PartialEq)]
pub struct MemoryPolicy {
    mode: MemoryPolicyModeType,
    flags: Vec<MemoryPolicyFlagType>,
    nodes: Vec<usize>,
}

impl MemoryPolicy {
    /// The container's policy, if its config sets one; errors name the JSON field.
    pub fn of(linux: &Linux) -> Result<Option<MemoryPolicy>> {
        linux.memory_policy().as_ref().map(Self::parse).transpose()
    }

    fn parse(config: &LinuxMemoryPolicy) -> Result<MemoryPolicy> {
        let nodes = match config.nodes().as_deref().map(str::trim) {
            None | Some("") => Vec::new(),
            Some(list) => parse_number_list(list, "node")
                .map_err(|err| anyhow::anyhow!("linux.memoryPolicy.nodes: {err}"))?,
        };
        let policy = MemoryPolicy {
            mode: config.mode(),
            flags: config.flags().clone().unwrap_or_default(),
            nodes,
        };
        policy.check_node_count()?;
        if policy.has(MemoryPolicyFlagType::MpolFStaticNodes)
            && policy.has(MemoryPolicyFlagType::MpolFRelativeNodes)
        {
            bail!(
                "linux.memoryPolicy.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude \
                 each other"
            );
        }
        Ok(policy)
    }

    /// runc's rules: default and local take no nodes; preferred takes any number (none means
    /// local); the others need at least one.
    fn check_node_count(&self) -> Result<()> {
        use MemoryPolicyModeType::*;
        let mode = self.mode;
        match (mode, self.nodes.len()) {
            (MpolDefault | MpolLocal, 1..) => {
                bail!("linux.memoryPolicy.nodes: {mode} takes no nodes")
            }
            (MpolBind | MpolInterleave | MpolWeightedInterleave | MpolPreferredMany, 0) => {
                bail!("linux.memoryPolicy.nodes: {mode} needs at least one node")
            }
            _ => Ok(()),
        }
    }

    fn has(&self, flag: MemoryPolicyFlagType) -> bool {
        self.flags.contains(&flag)
    }

    /// Nodes the host does not have are refused, except relative node numbers, which the
    /// kernel maps onto whatever nodes the process may use.
    pub fn check_host(&self) -> Result<()> {
        if self.nodes.is_empty() || self.has(MemoryPolicyFlagType::MpolFRelativeNodes) {
            return Ok(());
        }
        self.check_nodes_exist(&online_nodes()?)
    }

    fn check_nodes_exist(&self, online: &[usize]) -> Result<()> {
        match self.nodes.iter().find(|node| !online.contains(node)) {
            Some(node) => bail!(
                "linux.memoryPolicy.nodes: this host has no NUMA node {node} (it has {})",
                format_list(online)
            ),
            None => Ok(()),
        }
    }

    /// Sets the policy of the calling process (the init or an exec'd process, before execve).
    pub fn apply(&self) -> Result<()> {
        let word_bits = libc::c_ulong::BITS as usize;
        let words = self.nodes.last().map_or(0, |last| last / word_bits + 1);
        let mut mask: Vec<libc::c_ulong> = vec![0; words];
        for node in &self.nodes {
            mask[node / word_bits] |= 1 << (node % word_bits);
        }
        sys::set_mempolicy(self.mode_with_flags(), &mask)
            .with_context(|| format!("linux.memoryPolicy: set_mempolicy({})", self.describe()))
    }

    fn mode_with_flags(&self) -> libc::c_int {
        let mode = match self.mode {
            MemoryPolicyModeType::MpolDefault => libc::MPOL_DEFAULT,
            MemoryPolicyModeType::MpolBind => libc::MPOL_BIND,
            MemoryPolicyModeType::MpolInterleave => libc::MPOL_INTERLEAVE,
            MemoryPolicyModeType::MpolWeightedInterleave => MPOL_WEIGHTED_INTERLEAVE,
            MemoryPolicyModeType::MpolPreferred => libc::MPOL_PREFERRED,
            MemoryPolicyModeType::MpolPreferredMany => MPOL_PREFERRED_MANY,
            MemoryPolicyModeType::MpolLocal => libc::MPOL_LOCAL,
        };
        self.flags.iter().fold(mode, |mode, flag| {
            mode | match flag {
                MemoryPolicyFlagType::MpolFNumaBalancing => libc::MPOL_F_NUMA_BALANCING,
                MemoryPolicyFlagType::MpolFRelativeNodes => libc::MPOL_F_RELATIVE_NODES,
                MemoryPolicyFlagType::MpolFStaticNodes => libc::MPOL_F_STATIC_NODES,
            }
        })
    }

    /// `MPOL_BIND|MPOL_F_STATIC_NODES, nodes 0-1`, for messages.
    fn describe(&self) -> String {
        let mode: Vec<String> = std::iter::once(self.mode.to_string())
            .chain(self.flags.iter().map(|flag| flag.to_string()))
            .collect();
        match self.nodes.as_slice() {
            [] => format!("{}, no nodes", mode.join("|")),
            nodes => format!("{}, nodes {}", mode.join("|"), format_list(nodes)),
        }
    }
}

fn online_nodes() -> Result<Vec<usize>> {
    let path = Path::new(ONLINE_NODES);
    let list = match std::fs::read_to_string(path) {
        Ok(list) => list,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("linux.memoryPolicy: this kernel has no NUMA support ({ONLINE_NODES} is missing)")
        }
        Err(e) => return Err(e).with_context(|| format!("reading {ONLINE_NODES}")),
    };
    parse_number_list(list.trim(), "node").map_err(|err| anyhow::anyhow!("{ONLINE_NODES}: {err}"))
}

fn format_list(nodes: &[usize]) -> String {
    let names: Vec<String> = nodes.iter().map(usize::to_string).collect();
    names.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Result<MemoryPolicy> {
        let config: LinuxMemoryPolicy = serde_json::from_str(json).unwrap();
        MemoryPolicy::parse(&config)
    }

    fn error(json: &str) -> String {
        format!("{:#}", policy(json).unwrap_err())
    }

    #[test]
    fn modes_and_flags_become_the_kernel_values() {
        let bind =
            policy(r#"{"mode":"MPOL_BIND","nodes":"0-2,5","flags":["MPOL_F_STATIC_NODES"]}"#)
                .unwrap();
        assert_eq!(bind.nodes, [0, 1, 2, 5]);
        assert_eq!(bind.mode_with_flags(), 2 | (1 << 15));
        assert_eq!(
            bind.describe(),
            "MPOL_BIND|MPOL_F_STATIC_NODES, nodes 0,1,2,5"
        );
        let many = policy(r#"{"mode":"MPOL_PREFERRED_MANY","nodes":"1"}"#).unwrap();
        assert_eq!(many.mode_with_flags(), 5);
        let weighted = policy(r#"{"mode":"MPOL_WEIGHTED_INTERLEAVE","nodes":"1"}"#).unwrap();
        assert_eq!(weighted.mode_with_flags(), 6);
        assert!(policy(r#"{"mode":"MPOL_LOCAL"}"#).unwrap().nodes.is_empty());
        assert!(policy(r#"{"mode":"MPOL_PREFERRED","nodes":""}"#).is_ok());
    }

    #[test]
    fn node_counts_follow_runc() {
        let err = error(r#"{"mode":"MPOL_BIND"}"#);
        assert_eq!(
            err,
            "linux.memoryPolicy.nodes: MPOL_BIND needs at least one node"
        );
        let err = error(r#"{"mode":"MPOL_DEFAULT","nodes":"0"}"#);
        assert_eq!(err, "linux.memoryPolicy.nodes: MPOL_DEFAULT takes no nodes");
        assert!(error(r#"{"mode":"MPOL_INTERLEAVE","nodes":"x"}"#).contains("not a node number"));
    }

    #[test]
    fn static_and_relative_nodes_exclude_each_other() {
        let err = error(
            r#"{"mode":"MPOL_BIND","nodes":"0","flags":["MPOL_F_STATIC_NODES","MPOL_F_RELATIVE_NODES"]}"#,
        );
        assert!(err.starts_with("linux.memoryPolicy.flags: "), "{err}");
    }

    #[test]
    fn nodes_must_exist_on_the_host() {
        let bind = policy(r#"{"mode":"MPOL_BIND","nodes":"0,3"}"#).unwrap();
        bind.check_nodes_exist(&[0, 1, 3]).unwrap();
        let err = bind.check_nodes_exist(&[0, 1]).unwrap_err().to_string();
        assert_eq!(
            err,
            "linux.memoryPolicy.nodes: this host has no NUMA node 3 (it has 0,1)"
        );
    }
}
