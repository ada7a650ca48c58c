//! `maskedPaths` and `readonlyPaths`, applied inside the entered container root.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::stat::{SFlag, fstat};
use oci_spec::runtime::Spec;

use super::devices::verified_char_device;
use super::mount::{attach, new_filesystem};
use super::options::MountPlan;
use super::resolve::open_path_in_root;
use super::sys::{self, MountAttr};
use crate::lsm::selinux;

const RDONLY: MountAttr = MountAttr {
    set: libc::MOUNT_ATTR_RDONLY,
    clear: 0,
    propagation: 0,
};

/// Bundle-loading check: the spec wants both lists absolute ("paths in the container
/// namespace"); a relative one would silently mean something else to each runtime.
pub fn validate(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let lists = [
        (
            "maskedPaths",
            linux.and_then(|l| l.masked_paths().as_deref()),
        ),
        (
            "readonlyPaths",
            linux.and_then(|l| l.readonly_paths().as_deref()),
        ),
    ];
    for (field, paths) in lists {
        for (index, path) in paths.unwrap_or_default().iter().enumerate() {
            if !path.starts_with('/') {
                bail!("linux.{field}[{index}]: {path:?} is not an absolute path");
            }
        }
    }
    Ok(())
}

/// The path's handle, or `None` when it does not exist (those paths are skipped).
fn open_existing(root: BorrowedFd<'_>, path: &Path, field: &str) -> Result<Option<OwnedFd>> {
    match open_path_in_root(root, path, true) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{field}: open {}", path.display())),
    }
}

/// Bind each path onto itself, read-only for the whole tree. Missing paths are skipped.
pub fn make_readonly(root: BorrowedFd<'_>, paths: &[String]) -> Result<()> {
    for path in paths {
        let path = Path::new(path);
        let Some(target) = open_existing(root, path, "readonlyPaths")? else {
            continue;
        };
        let flags = libc::OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32;
        let clone = sys::open_tree_fd(target.as_fd(), flags)
            .with_context(|| format!("readonlyPaths: open_tree {}", path.display()))?;
        sys::mount_setattr_fd(clone.as_fd(), true, RDONLY)
            .with_context(|| format!("readonlyPaths: make {} read-only", path.display()))?;
        attach(root, &clone, &target, path).context("readonlyPaths")?;
    }
    Ok(())
}

/// Hide each path: files under a bind of the container's /dev/null (checked to be the real
/// 1:3 device, never an image-provided symlink: CVE-2025-31133), directories under an empty
/// read-only tmpfs labelled with `mount_label`. Missing paths are skipped.
pub fn mask(root: BorrowedFd<'_>, paths: &[String], mount_label: Option<&str>) -> Result<()> {
    let mut null = None;
    for path in paths {
        let path = Path::new(path);
        let Some(target) = open_existing(root, path, "maskedPaths")? else {
            continue;
        };
        let st = fstat(target.as_fd())
            .with_context(|| format!("maskedPaths: fstat {}", path.display()))?;
        let cover = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            let plan = MountPlan {
                attr: RDONLY,
                data: selinux::labelled_mount_data("tmpfs", vec![], mount_label),
                ..Default::default()
            };
            new_filesystem("tmpfs", Path::new("tmpfs"), &plan).context("maskedPaths: tmpfs")?
        } else {
            if null.is_none() {
                null = Some(
                    verified_char_device(root, Path::new("/dev/null"), 1, 3)
                        .context("maskedPaths")?,
                );
            }
            let null = null
                .as_ref()
                .map(|fd| fd.as_fd())
                .context("maskedPaths: /dev/null")?;
            sys::open_tree_fd(null, libc::OPEN_TREE_CLONE)
                .context("maskedPaths: open_tree /dev/null")?
        };
        attach(root, &cover, &target, path).context("maskedPaths")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_and_readonly_paths_must_be_absolute() {
        let spec = |field: &str, path: &str| -> Spec {
            serde_json::from_value(serde_json::json!({
                "ociVersion": "1.2.0", "linux": {field: ["/proc/kcore", path]}
            }))
            .unwrap()
        };
        validate(&spec("maskedPaths", "/sys/firmware")).unwrap();
        let err = validate(&spec("maskedPaths", "proc/keys")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.maskedPaths[1]: \"proc/keys\" is not an absolute path"
        );
        let err = validate(&spec("readonlyPaths", "sys")).unwrap_err();
        assert!(
            err.to_string().starts_with("linux.readonlyPaths[1]"),
            "{err}"
        );
    }
}
