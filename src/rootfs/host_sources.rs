//! Bind sources the runtime clones itself, before the init is cloned, with its own privileges
//! in its own namespaces. The init inherits the detached clones (close-on-exec fds) and attaches
//! them like any other bind mount ([`super::mount::mount_entry`]). Two kinds of mounts need it:
//!
//! - idmapped mounts (see `idmap`): only root in the user namespace that owns the source's
//!   superblock may idmap it, and the init may be in the container's user namespace already;
//! - with a user namespace of the container's (and a mount namespace of its own), every other
//!   bind mount: the init is root of that namespace only and may not reach the source at all (a
//!   directory only the host's root may search), which runc's init likewise gets from its parent.
//!   A rootless runtime has no more privilege than its init (and may not clone mounts): it
//!   leaves these to the init.
//!
//! A clone is a copy of the runtime's mount, not of the container namespace's copy the init
//! would have bound, so it first gets the propagation that copy would have (see
//! `propagation`): with the default `rslave`, or in a user namespace of the container's, a
//! slave, never a peer of the host's mounts.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use super::idmap;
use super::mount::clone_bind_source;
use super::options::parse_options;
use super::propagation::RootPropagation;

/// The mounts the runtime made, by index in `mounts`, for the init to attach.
#[derive(Default)]
pub struct HostClones(Vec<(usize, OwnedFd)>);

impl HostClones {
    /// The clone made for `mounts[index]`, if any.
    pub fn take(&mut self, index: usize) -> Option<OwnedFd> {
        let position = self.0.iter().position(|(i, _)| *i == index)?;
        Some(self.0.swap_remove(position).1)
    }
}

/// Which bind mounts the runtime clones besides the idmapped ones.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum OtherBinds {
    /// The init makes them (no user namespace, a joined mount namespace, a rootless runtime).
    LeftToInit,
    /// All of them: the init will be root of the container's user namespace only.
    Cloned,
}

/// In the runtime, before the init is cloned. `bundle_dir` anchors relative sources, as the
/// init's chdir does; `joined_user_namespace` is the container's user namespace when it is
/// joined by path.
pub fn clone_bind_sources(
    spec: &Spec,
    bundle_dir: &Path,
    joined_user_namespace: Option<BorrowedFd>,
    other_binds: OtherBinds,
) -> Result<HostClones> {
    let idmapped = idmap::requests(spec)?;
    let linux = spec.linux().as_ref();
    let propagation = RootPropagation::of(linux.and_then(|l| l.rootfs_propagation().as_deref()))?;
    let namespaces = linux
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or_default();
    let user_namespace = namespaces
        .iter()
        .any(|ns| ns.typ() == LinuxNamespaceType::User);
    let mut clones = HostClones::default();
    for (index, mount) in spec.mounts().iter().flatten().enumerate() {
        let idmap = idmapped.iter().find(|request| request.index == index);
        if idmap.is_none() && (other_binds == OtherBinds::LeftToInit || !is_new_bind(mount)) {
            continue;
        }
        let field = format!("mounts[{index}]");
        let Some(source) = mount.source() else {
            continue; // refused by the init, with the field named
        };
        let recursive = parse_options(mount.options().as_deref().unwrap_or_default()).recursive;
        let what = if idmap.is_some() {
            "idmapped mount of"
        } else {
            "bind source"
        };
        let clone = clone_bind_source(&bundle_dir.join(source), recursive)
            .and_then(|clone| {
                propagation.give_to_clone(clone.as_fd(), recursive, user_namespace)?;
                if let Some(request) = idmap {
                    request.apply(clone.as_fd(), joined_user_namespace, &field)?;
                }
                Ok(clone)
            })
            .with_context(|| format!("{field}: {what} {}", source.display()))?;
        clones.0.push((index, clone));
    }
    Ok(clones)
}

/// A bind mount to make, not a remount of one.
fn is_new_bind(mount: &Mount) -> bool {
    let plan = parse_options(mount.options().as_deref().unwrap_or_default());
    (plan.bind || mount.typ().as_deref() == Some("bind")) && !plan.remount
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_are_taken_by_index() {
        let fd = |_| OwnedFd::from(std::fs::File::open("/").unwrap());
        let mut made = HostClones(vec![(1, fd(())), (4, fd(()))]);
        assert!(made.take(0).is_none());
        assert!(made.take(4).is_some());
        assert!(made.take(4).is_none());
        assert!(made.take(1).is_some());
    }

    #[test]
    fn only_new_binds_are_cloned() {
        let mount = |json: serde_json::Value| -> Mount { serde_json::from_value(json).unwrap() };
        assert!(is_new_bind(&mount(serde_json::json!(
            {"destination": "/a", "source": "/x", "options": ["rbind"]}
        ))));
        assert!(is_new_bind(&mount(serde_json::json!(
            {"destination": "/a", "type": "bind", "source": "/x"}
        ))));
        assert!(!is_new_bind(&mount(serde_json::json!(
            {"destination": "/a", "source": "/x", "options": ["bind", "remount", "ro"]}
        ))));
        assert!(!is_new_bind(&mount(serde_json::json!(
            {"destination": "/a", "type": "tmpfs", "source": "tmpfs"}
        ))));
    }
}
