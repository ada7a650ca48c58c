//! Idmapped mounts: runtime-spec `mounts[].uidMappings`/`gidMappings` and the `idmap`/`ridmap`
//! options, done with mount_setattr(MOUNT_ATTR_IDMAP).
//!
//! Only root in the user namespace that owns the source's superblock (the host's) may idmap a
//! mount, and the init may already be inside the container's user namespace: the runtime
//! clones such a source and idmaps the clone before the init is cloned (see `host_sources`).
//!
//! As in runc 1.2: a mount is idmapped when it has mappings or one of the options; `ridmap`
//! maps the whole tree of an `rbind`, `idmap` (or mappings alone) only its top mount; an option
//! without mappings takes the container's user namespace mappings; only bind mounts qualify.

use std::os::fd::{AsFd, BorrowedFd};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Mount, Spec};

use super::options::{IdmapScope, parse_options};
use super::sys;
use crate::namespaces::{IdMaps, user_namespace_with};

/// The kernel's limit on the lines of a uid_map or gid_map.
const MAX_EXTENTS: usize = 340;

/// One idmapped mount to make.
#[derive(Debug, PartialEq)]
pub struct IdmapRequest {
    /// Its index in `mounts`.
    pub index: usize,
    scope: IdmapScope,
    /// `None`: the mappings of the user namespace the container joins by path.
    maps: Option<IdMaps>,
}

/// The container's user namespace, whose mappings `idmap`/`ridmap` without mappings take.
enum ContainerUserNamespace<'a> {
    None,
    New {
        uid: &'a [LinuxIdMapping],
        gid: &'a [LinuxIdMapping],
    },
    Joined,
}

/// Bundle-loading check: every idmapped mount is well-formed.
pub fn validate(spec: &Spec) -> Result<()> {
    requests(spec).map(drop)
}

impl IdmapRequest {
    /// Idmaps `clone`, the detached clone of this mount's source. `joined_user_namespace` is
    /// the container's user namespace when it is joined by path.
    pub fn apply(
        &self,
        clone: BorrowedFd,
        joined_user_namespace: Option<BorrowedFd>,
        field: &str,
    ) -> Result<()> {
        let own_namespace = (self.maps.as_ref())
            .map(|maps| user_namespace_with(maps, field))
            .transpose()?;
        let userns = match &own_namespace {
            Some(namespace) => namespace.as_fd(),
            None => joined_user_namespace.context("the joined user namespace is not open")?,
        };
        let recursive = self.scope == IdmapScope::Tree;
        sys::mount_setattr_idmap(clone, recursive, userns).map_err(|errno| {
            let hint = match errno {
                Errno::EINVAL => " (does the filesystem support idmapped mounts?)",
                _ => "",
            };
            anyhow!("mount_setattr(MOUNT_ATTR_IDMAP): {}{hint}", errno.desc())
        })
    }
}

/// Every idmapped mount of `mounts`, checked.
pub fn requests(spec: &Spec) -> Result<Vec<IdmapRequest>> {
    let container = container_user_namespace(spec);
    let mut requests = Vec::new();
    for (index, mount) in spec.mounts().iter().flatten().enumerate() {
        requests.extend(request_for(index, mount, &container)?);
    }
    Ok(requests)
}

fn container_user_namespace(spec: &Spec) -> ContainerUserNamespace<'_> {
    let Some(linux) = spec.linux() else {
        return ContainerUserNamespace::None;
    };
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    match namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::User)
    {
        None => ContainerUserNamespace::None,
        Some(user) if user.path().is_some() => ContainerUserNamespace::Joined,
        Some(_) => ContainerUserNamespace::New {
            uid: linux.uid_mappings().as_deref().unwrap_or_default(),
            gid: linux.gid_mappings().as_deref().unwrap_or_default(),
        },
    }
}

/// What `mounts[index]` asks for: nothing (the common case, decided without parsing the
/// options), or an idmapped bind mount, checked.
fn request_for(
    index: usize,
    mount: &Mount,
    container: &ContainerUserNamespace,
) -> Result<Option<IdmapRequest>> {
    let uid = mount.uid_mappings().as_deref().unwrap_or_default();
    let gid = mount.gid_mappings().as_deref().unwrap_or_default();
    let options = mount.options().as_deref().unwrap_or_default();
    let option = options.iter().find(|o| *o == "idmap" || *o == "ridmap");
    if uid.is_empty() && gid.is_empty() && option.is_none() {
        return Ok(None);
    }
    let field = format!("mounts[{index}]");
    let plan = parse_options(options);
    if !plan.bind && mount.typ().as_deref() != Some("bind") {
        bail!(
            "{field}: only bind mounts can be idmapped (uidMappings, gidMappings, idmap, ridmap)"
        );
    }
    if plan.remount {
        bail!("{field}.options: an idmapped mount cannot be a remount (only a new mount is)");
    }
    if mount.source().is_none() {
        bail!("{field}.source: a bind mount needs a source");
    }
    let maps = match (uid.is_empty(), gid.is_empty(), container) {
        (false, false, _) => {
            check_mappings(&format!("{field}.uidMappings"), uid)?;
            check_mappings(&format!("{field}.gidMappings"), gid)?;
            Some(IdMaps::new(uid, gid))
        }
        (false, true, _) => bail!("{field}.gidMappings: required together with uidMappings"),
        (true, false, _) => bail!("{field}.uidMappings: required together with gidMappings"),
        (true, true, ContainerUserNamespace::New { uid, gid }) => Some(IdMaps::new(uid, gid)),
        (true, true, ContainerUserNamespace::Joined) => None,
        (true, true, ContainerUserNamespace::None) => bail!(
            "{field}.options: {:?} without uidMappings/gidMappings uses the container's user \
             namespace mappings, but linux.namespaces has no user namespace",
            option.map_or("", String::as_str)
        ),
    };
    Ok(Some(IdmapRequest {
        index,
        scope: plan.idmap.unwrap_or(IdmapScope::Top),
        maps,
    }))
}

/// What the kernel would refuse in a uid_map/gid_map, found before anything runs.
fn check_mappings(field: &str, mappings: &[LinuxIdMapping]) -> Result<()> {
    if mappings.len() > MAX_EXTENTS {
        bail!("{field}: at most {MAX_EXTENTS} mappings");
    }
    for (i, mapping) in mappings.iter().enumerate() {
        let size = u64::from(mapping.size());
        if size == 0 {
            bail!("{field}[{i}].size: must be at least 1");
        }
        // Ids are 32-bit and u32::MAX is the invalid id: a range must end below it.
        let last_id = u64::from(u32::MAX) - 1;
        for (name, first) in [
            ("containerID", mapping.container_id()),
            ("hostID", mapping.host_id()),
        ] {
            if u64::from(first) + size - 1 > last_id {
                bail!("{field}[{i}]: {name} {first} + size {size} overflows the 32-bit id range");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    fn mount(extra: serde_json::Value) -> serde_json::Value {
        let mut mount = serde_json::json!({"destination": "/data", "source": "/srv/data"});
        mount
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        mount
    }

    fn maps(container: u32, host: u32, size: u32) -> serde_json::Value {
        serde_json::json!([{"containerID": container, "hostID": host, "size": size}])
    }

    fn spec_with(mount: serde_json::Value, user_namespace: Option<serde_json::Value>) -> Spec {
        let mut namespaces = vec![serde_json::json!({"type": "mount"})];
        namespaces.extend(user_namespace);
        spec(serde_json::json!({
            "ociVersion": "1.3.0",
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}, mount],
            "linux": {
                "namespaces": namespaces,
                "uidMappings": maps(0, 100000, 65536),
                "gidMappings": maps(0, 100000, 65536),
            }
        }))
    }

    fn error(spec: &Spec) -> String {
        format!("{:#}", requests(spec).unwrap_err())
    }

    #[test]
    fn mounts_without_idmapping_need_nothing() {
        let spec = spec_with(mount(serde_json::json!({"options": ["rbind", "ro"]})), None);
        assert_eq!(requests(&spec).unwrap(), []);
    }

    #[test]
    fn mappings_alone_idmap_the_top_mount_and_the_option_picks_the_scope() {
        let given = serde_json::json!({
            "options": ["rbind"], "uidMappings": maps(1000, 0, 1), "gidMappings": maps(1000, 0, 2)
        });
        let spec = spec_with(mount(given.clone()), None);
        let expected = IdmapRequest {
            index: 1,
            scope: IdmapScope::Top,
            maps: Some(IdMaps::new(
                spec.mounts().as_ref().unwrap()[1]
                    .uid_mappings()
                    .as_ref()
                    .unwrap(),
                spec.mounts().as_ref().unwrap()[1]
                    .gid_mappings()
                    .as_ref()
                    .unwrap(),
            )),
        };
        assert_eq!(requests(&spec).unwrap(), [expected]);

        let mut recursive = given;
        recursive["options"] = serde_json::json!(["rbind", "ridmap"]);
        let spec = spec_with(mount(recursive), None);
        assert_eq!(requests(&spec).unwrap()[0].scope, IdmapScope::Tree);
    }

    #[test]
    fn the_option_alone_takes_the_container_user_namespace_mappings() {
        let idmap = serde_json::json!({"type": "bind", "options": ["idmap"]});
        let new_userns = spec_with(
            mount(idmap.clone()),
            Some(serde_json::json!({"type": "user"})),
        );
        let linux = new_userns.linux().as_ref().unwrap();
        let container_maps = IdMaps::new(
            linux.uid_mappings().as_ref().unwrap(),
            linux.gid_mappings().as_ref().unwrap(),
        );
        assert_eq!(requests(&new_userns).unwrap()[0].maps, Some(container_maps));

        let joined = serde_json::json!({"type": "user", "path": "/proc/1/ns/user"});
        let joined_userns = spec_with(mount(idmap.clone()), Some(joined));
        assert_eq!(requests(&joined_userns).unwrap()[0].maps, None);

        let no_userns = spec_with(mount(idmap), None);
        let err = error(&no_userns);
        assert!(err.starts_with("mounts[1].options: \"idmap\""), "{err}");
        assert!(err.contains("no user namespace"), "{err}");
    }

    #[test]
    fn only_new_bind_mounts_with_both_mappings_qualify() {
        let both = |extra: serde_json::Value| {
            let mut m = mount(serde_json::json!({
                "uidMappings": maps(0, 1000, 1), "gidMappings": maps(0, 1000, 1)
            }));
            m.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            spec_with(m, None)
        };
        let tmpfs = both(serde_json::json!({"type": "tmpfs", "source": "tmpfs"}));
        assert!(
            error(&tmpfs).starts_with("mounts[1]: only bind mounts"),
            "{}",
            error(&tmpfs)
        );
        let remount = both(serde_json::json!({"options": ["bind", "remount"]}));
        assert!(
            error(&remount).starts_with("mounts[1].options"),
            "{}",
            error(&remount)
        );

        let uid_only = spec_with(
            mount(serde_json::json!({"options": ["bind"], "uidMappings": maps(0, 1000, 1)})),
            None,
        );
        assert!(error(&uid_only).starts_with("mounts[1].gidMappings: required"));
        let gid_only = spec_with(
            mount(serde_json::json!({"options": ["bind"], "gidMappings": maps(0, 1000, 1)})),
            None,
        );
        assert!(error(&gid_only).starts_with("mounts[1].uidMappings: required"));
    }

    #[test]
    fn empty_and_overflowing_ranges_are_refused_with_their_field() {
        let with_uid_maps = |uid: serde_json::Value| {
            spec_with(
                mount(serde_json::json!({
                    "options": ["bind"], "uidMappings": uid, "gidMappings": maps(0, 1000, 1)
                })),
                None,
            )
        };
        let err = error(&with_uid_maps(maps(0, 1000, 0)));
        assert_eq!(err, "mounts[1].uidMappings[0].size: must be at least 1");
        let err = error(&with_uid_maps(maps(0, u32::MAX - 1, 2)));
        assert!(err.starts_with("mounts[1].uidMappings[0]: hostID"), "{err}");
        let err = error(&with_uid_maps(maps(1, 0, u32::MAX)));
        assert!(
            err.starts_with("mounts[1].uidMappings[0]: containerID"),
            "{err}"
        );
        // The largest valid range: ids 0 ..= u32::MAX - 1.
        requests(&with_uid_maps(maps(0, 0, u32::MAX))).unwrap();
        let too_many: Vec<_> = (0..=MAX_EXTENTS as u32)
            .map(|i| serde_json::json!({"containerID": i, "hostID": i, "size": 1}))
            .collect();
        let err = error(&with_uid_maps(serde_json::Value::from(too_many)));
        assert!(
            err.starts_with("mounts[1].uidMappings: at most 340"),
            "{err}"
        );
    }
}
