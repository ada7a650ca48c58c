//! The container's systemd unit as `linux.cgroupsPath` names it: `slice:prefix:name`, as runc
//! reads it (`system.slice:docker:<id>`, `kubepods-burstable-pod<uid>.slice:cri-containerd:<id>`).

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// A transient unit berth starts for the container; stored in the container state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// `<prefix>-<name>.scope`, or `<name>` itself when it names a slice.
    pub name: String,
    /// The slice the unit goes in.
    pub slice: String,
    /// Started by the user's systemd instance (rootless), not the system's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub user: bool,
}

impl Unit {
    /// Parses `cgroups_path` as runc does: empty or absent means `:runc:<id>` (`berth` here);
    /// an empty slice is `system.slice` (`user.slice` for the user's instance); an empty name
    /// the container id. A prefix may be empty: the scope is then `<name>.scope`.
    pub fn from_cgroups_path(
        cgroups_path: Option<&str>,
        container_id: &str,
        user: bool,
    ) -> Result<Unit> {
        let path = cgroups_path.unwrap_or_default();
        let (slice, prefix, name) = match path.split(':').collect::<Vec<_>>()[..] {
            [""] => ("", "berth", ""),
            [slice, prefix, name] => (slice, prefix, name),
            _ => bail!(
                "linux.cgroupsPath {path:?}: with --systemd-cgroup it must be \
                 \"slice:prefix:name\" (e.g. \"system.slice:docker:<id>\")"
            ),
        };
        let slice = match slice {
            "" if user => "user.slice",
            "" => "system.slice",
            slice => slice,
        };
        expand_slice(slice)?;
        let name = if name.is_empty() { container_id } else { name };
        let unit_name = match (prefix, name) {
            (_, name) if name.ends_with(".slice") => {
                expand_slice(name)?;
                name.to_string()
            }
            ("", name) => format!("{name}.scope"),
            (prefix, name) => format!("{prefix}-{name}.scope"),
        };
        check_unit_name(&unit_name, path)?;
        Ok(Unit {
            name: unit_name,
            slice: slice.to_string(),
            user,
        })
    }

    pub fn is_slice(&self) -> bool {
        self.name.ends_with(".slice")
    }

    /// The unit's cgroup below its systemd instance's: a slice's own place in the slice tree,
    /// or a scope inside its slice.
    pub fn cgroup(&self) -> String {
        let expanded = |slice: &str| expand_slice(slice).expect("checked when parsed");
        if self.is_slice() {
            expanded(&self.name)
        } else {
            format!(
                "{}/{}",
                expanded(&self.slice).trim_end_matches('/'),
                self.name
            )
        }
    }
}

/// A slice's cgroup path: `-` separates parents, so `a-b-c.slice` is
/// `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the root.
pub fn expand_slice(slice: &str) -> Result<String> {
    let invalid = || -> Result<String> {
        bail!("linux.cgroupsPath: {slice:?} is not a slice name (like system.slice or a-b.slice)")
    };
    let Some(stem) = slice.strip_suffix(".slice") else {
        return invalid();
    };
    if stem == "-" {
        return Ok("/".to_string());
    }
    if stem.is_empty() || slice.contains('/') {
        return invalid();
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if part.is_empty() {
            return invalid();
        }
        prefix.push_str(part);
        path.push_str(&format!("/{prefix}.slice"));
        prefix.push('-');
    }
    Ok(path)
}

/// systemd's rule for unit names: at most 255 bytes of `[A-Za-z0-9:_.\-\\@]`.
fn check_unit_name(unit: &str, cgroups_path: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || ":_.-\\@".contains(c);
    if unit.len() > 255 || !unit.chars().all(allowed) || unit.starts_with('.') {
        bail!(
            "linux.cgroupsPath {cgroups_path:?}: {unit:?} is not a valid systemd unit name \
             (letters, digits and :_.-\\@ only)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(path: &str) -> Unit {
        Unit::from_cgroups_path(Some(path), "c1", false).unwrap()
    }

    #[test]
    fn scopes_are_named_prefix_dash_name_in_their_slice() {
        let u = unit("system.slice:docker:abc");
        assert_eq!(
            (u.name.as_str(), u.slice.as_str()),
            ("docker-abc.scope", "system.slice")
        );
        assert_eq!(u.cgroup(), "/system.slice/docker-abc.scope");
    }

    #[test]
    fn nested_slices_expand_the_systemd_way() {
        let u = unit("kubepods-burstable-pod1.slice:cri-containerd:abc");
        assert_eq!(
            u.cgroup(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/\
             cri-containerd-abc.scope"
        );
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
    }

    #[test]
    fn empty_parts_take_runcs_defaults() {
        let u = Unit::from_cgroups_path(None, "c1", false).unwrap();
        assert_eq!(
            (u.name.as_str(), u.slice.as_str()),
            ("berth-c1.scope", "system.slice")
        );
        let u = Unit::from_cgroups_path(Some("::"), "c1", true).unwrap();
        assert_eq!(
            (u.name.as_str(), u.slice.as_str()),
            ("c1.scope", "user.slice")
        );
        assert!(u.user);
        assert_eq!(unit(":libpod:x").slice, "system.slice");
    }

    #[test]
    fn a_name_ending_in_slice_is_a_slice_unit() {
        let u = unit("kubepods.slice:x:kubepods-besteffort.slice");
        assert!(u.is_slice());
        assert_eq!(u.name, "kubepods-besteffort.slice");
        assert_eq!(u.cgroup(), "/kubepods.slice/kubepods-besteffort.slice");
    }

    #[test]
    fn malformed_paths_are_refused_naming_the_field() {
        for bad in [
            "/berth/c1",
            "system.slice:docker",
            "a:b:c:d",
            "system:docker:x",
            "a--b.slice:p:n",
            "-a.slice:p:n",
            "system.slice:p:a/b",
            "system.slice:p:a b",
        ] {
            let err = Unit::from_cgroups_path(Some(bad), "c1", false).unwrap_err();
            assert!(
                err.to_string().contains("linux.cgroupsPath"),
                "{bad}: {err}"
            );
        }
    }
}
