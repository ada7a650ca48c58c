//! SELinux: detection as go-selinux (runc's library) does it, and the labels a process takes.

use std::path::Path;

use anyhow::Result;
use nix::sys::statfs::{SELINUX_MAGIC, statfs};
use nix::sys::statvfs::FsFlags;

use crate::trusted_proc::ProcRoot;

/// Where selinuxfs lives on every current distribution; go-selinux looks there first.
const SELINUXFS: &str = "/sys/fs/selinux";

/// go-selinux's test: a writable selinuxfs is mounted, and our own context is not `kernel`
/// (what every task has while no policy is loaded). A context that cannot be read counts as
/// enabled, as there.
pub fn enabled() -> bool {
    selinuxfs_mounted()
        && context_means_enabled(
            &std::fs::read("/proc/thread-self/attr/current").unwrap_or_default(),
        )
}

fn selinuxfs_mounted() -> bool {
    if is_writable_selinuxfs(Path::new(SELINUXFS)) {
        return true;
    }
    // The mount table is read only when the kernel has selinuxfs at all.
    let in_kernel =
        std::fs::read_to_string("/proc/filesystems").is_ok_and(|list| lists_selinuxfs(&list));
    in_kernel
        && procfs::process::Process::myself()
            .and_then(|me| me.mountinfo())
            .is_ok_and(|mounts| {
                mounts.into_iter().any(|mount| {
                    mount.fs_type == "selinuxfs" && is_writable_selinuxfs(&mount.mount_point)
                })
            })
}

fn is_writable_selinuxfs(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| {
        fs.filesystem_type() == SELINUX_MAGIC && !fs.flags().contains(FsFlags::ST_RDONLY)
    })
}

/// /proc/filesystems lines are `[nodev]\t<name>`.
fn lists_selinuxfs(filesystems: &str) -> bool {
    filesystems
        .lines()
        .any(|line| line.split('\t').nth(1) == Some("selinuxfs"))
}

fn context_means_enabled(current: &[u8]) -> bool {
    let end = current
        .iter()
        .rposition(|&byte| byte != 0 && !byte.is_ascii_whitespace())
        .map_or(0, |last| last + 1);
    &current[..end] != b"kernel"
}

/// The context the calling thread takes at its next execve.
pub fn set_exec_label(label: &str) -> Result<()> {
    ProcRoot::open()?.write("thread-self/attr/exec", label.as_bytes())
}

/// The context of the next key(ring) the calling thread creates; execve resets it.
pub fn set_keyring_label(label: &str) -> Result<()> {
    ProcRoot::open()?.write("thread-self/attr/keycreate", label.as_bytes())
}

/// Filesystems that cannot take a `context=` option, as in runc: proc and sysfs are labelled by
/// the kernel, and the cgroup2 superblock is shared with the host's. (Type `cgroup` mounts go
/// their own way; only the tmpfs of a v1 host is labelled.)
const UNLABELLED_FILESYSTEMS: &[&str] = &["proc", "sysfs", "cgroup2"];

/// The mount data for a new `fs_type` filesystem with `label` (linux.mountLabel) added as its
/// SELinux `context=`. Each option goes to fsconfig(2) on its own, so unlike runc's mount(2)
/// data string the label is not quoted (its MCS categories hold commas).
pub fn labelled_mount_data(
    fs_type: &str,
    mut data: Vec<(String, Option<String>)>,
    label: Option<&str>,
) -> Vec<(String, Option<String>)> {
    if let Some(label) = label.filter(|_| !UNLABELLED_FILESYSTEMS.contains(&fs_type)) {
        data.push(("context".to_owned(), Some(label.to_owned())));
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_context_means_no_policy() {
        assert!(!context_means_enabled(b"kernel"));
        assert!(!context_means_enabled(b"kernel\0"));
        assert!(!context_means_enabled(b"kernel\n"));
        assert!(context_means_enabled(
            b"system_u:system_r:container_runtime_t:s0\0"
        ));
        // Unreadable: go-selinux counts that as enabled too.
        assert!(context_means_enabled(b""));
    }

    #[test]
    fn selinuxfs_is_found_in_the_filesystem_list() {
        assert!(lists_selinuxfs("nodev\tsysfs\nnodev\tselinuxfs\n\text4\n"));
        assert!(!lists_selinuxfs("nodev\tsysfs\nnodev\tproc\n\text4\n"));
        assert!(!lists_selinuxfs("nodev\tselinuxfs2\n"));
    }

    fn data(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    #[test]
    fn the_mount_label_is_added_as_context() {
        let label = "system_u:object_r:container_file_t:s0:c1,c2";
        for fs_type in ["tmpfs", "devpts", "mqueue"] {
            assert_eq!(
                labelled_mount_data(fs_type, data(&[("mode", "755")]), Some(label)),
                data(&[("mode", "755"), ("context", label)]),
                "{fs_type}"
            );
        }
        assert_eq!(
            labelled_mount_data("tmpfs", vec![], None),
            vec![],
            "no label, no context"
        );
    }

    #[test]
    fn kernel_labelled_filesystems_get_no_context() {
        for fs_type in ["proc", "sysfs", "cgroup2"] {
            assert_eq!(
                labelled_mount_data(fs_type, vec![], Some("system_u:object_r:x:s0")),
                vec![],
                "{fs_type}"
            );
        }
    }
}
