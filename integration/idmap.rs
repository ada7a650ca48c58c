//! Idmapped mounts (runtime-spec 1.2+ `mounts[].uidMappings`/`gidMappings`, options
//! `idmap`/`ridmap`): the ownership a container sees through the mount, and the owner a file
//! it creates gets on the host, with and without a container user namespace.
//!
//! An idmapped mount reads an on-disk id as a container id of the mount's mappings: with
//! `containerID 1000 → hostID 0`, a file owned by 1000 on disk shows as owned by 0, and a file
//! created by uid 0 is stored as 1000. Ids outside the mappings show as the overflow id.
//!
//! runc 1.1.5 predates idmapped mounts and ignores these fields; it fails these tests.

use std::fs;
use std::os::unix::fs::{MetadataExt, chown};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::{Container, HostBind, Output, is_berth, set_args};

/// The host id the container's user namespace maps its root to (as in `userns.rs`).
const HOST_BASE: u32 = 200_000;

fn overflow_id() -> String {
    fs::read_to_string("/proc/sys/kernel/overflowuid")
        .unwrap()
        .trim()
        .to_string()
}

fn mapping(container_id: u32, host_id: u32, size: u32) -> Value {
    json!([{"containerID": container_id, "hostID": host_id, "size": size}])
}

/// A directory in the test's temp dir (ext4 /tmp: supports idmapped mounts) owned by
/// `owner`, holding `owned-by-1000` (1000:1000) and `owned-by-root` (0:0).
fn host_dir(c: &Container, name: &str, owner: u32) -> PathBuf {
    let dir = c.dir.join(name);
    fs::create_dir(&dir).unwrap();
    chown(&dir, Some(owner), Some(owner)).unwrap();
    fs::write(dir.join("owned-by-1000"), "").unwrap();
    chown(dir.join("owned-by-1000"), Some(1000), Some(1000)).unwrap();
    fs::write(dir.join("owned-by-root"), "").unwrap();
    dir
}

/// Adds `mount` to config.json and gives the container a user namespace mapping
/// 0..65536 to HOST_BASE.. when `userns` is set.
fn configure(c: &mut Container, script: &str, mount: Value, userns: bool) {
    c.configure(|spec| set_args(spec, &["sh", "-c", script]));
    c.configure_json(|config| {
        config["mounts"].as_array_mut().unwrap().push(mount);
        if userns {
            let linux = &mut config["linux"];
            linux["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            linux["uidMappings"] = mapping(0, HOST_BASE, 65536);
            linux["gidMappings"] = mapping(0, HOST_BASE, 65536);
        }
    });
}

fn bind(source: &Path, options: &[&str]) -> Value {
    json!({"destination": "/mnt", "type": "bind", "source": source, "options": options})
}

fn with_mappings(mut mount: Value, uid: Value, gid: Value) -> Value {
    mount["uidMappings"] = uid;
    mount["gidMappings"] = gid;
    mount
}

fn host_owner(path: &Path) -> (u32, u32) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid())
}

const SHOW_AND_CREATE: &str =
    "stat -c %u:%g /mnt/owned-by-1000 /mnt/owned-by-root && touch /mnt/made-inside";

#[test]
fn mount_mappings_without_a_user_namespace() {
    let mut c = Container::new();
    // Owned by 1000, so that the container's root (mapped to it) may create files there.
    let data = host_dir(&c, "data", 1000);
    let mount = with_mappings(
        bind(&data, &["bind"]),
        mapping(1000, 0, 1),
        mapping(1000, 0, 1),
    );
    configure(&mut c, SHOW_AND_CREATE, mount, false);
    let out = c.run().success();
    let overflow = overflow_id();
    assert_eq!(out.stdout, format!("0:0\n{overflow}:{overflow}\n"), "{out}");
    assert_eq!(host_owner(&data.join("made-inside")), (1000, 1000));
}

#[test]
fn mount_mappings_inside_a_user_namespace() {
    let mut c = Container::new();
    let data = host_dir(&c, "data", 1000);
    // On-disk 1000 becomes host HOST_BASE: the container's root.
    let mount = with_mappings(
        bind(&data, &["bind", "idmap"]),
        mapping(1000, HOST_BASE, 1),
        mapping(1000, HOST_BASE, 1),
    );
    configure(&mut c, SHOW_AND_CREATE, mount, true);
    let out = c.run().success();
    let overflow = overflow_id();
    assert_eq!(out.stdout, format!("0:0\n{overflow}:{overflow}\n"), "{out}");
    assert_eq!(host_owner(&data.join("made-inside")), (1000, 1000));
}

#[test]
fn the_idmap_option_alone_uses_the_container_user_namespace() {
    let mut c = Container::new();
    let data = host_dir(&c, "data", 0);
    configure(
        &mut c,
        SHOW_AND_CREATE,
        bind(&data, &["bind", "idmap"]),
        true,
    );
    let out = c.run().success();
    // The host's ids show unchanged inside, as if the container were not id-shifted.
    assert_eq!(out.stdout, "1000:1000\n0:0\n", "{out}");
    assert_eq!(host_owner(&data.join("made-inside")), (0, 0));
}

#[test]
fn ridmap_maps_nested_mounts_and_idmap_only_the_top_one() {
    let mut recursive = Container::new();
    let mut top_only = Container::new();
    let outer = host_dir(&recursive, "outer", 1000);
    let nested = host_dir(&recursive, "nested", 1000);
    fs::create_dir(outer.join("inner")).unwrap();
    let _nested_mount = HostBind::new(&nested, &outer.join("inner"));
    let script = "stat -c %u:%g /mnt/owned-by-1000 /mnt/inner/owned-by-1000";
    let idmapped_rbind = |option: &str| {
        with_mappings(
            bind(&outer, &["rbind", option]),
            mapping(1000, 0, 1),
            mapping(1000, 0, 1),
        )
    };

    configure(&mut recursive, script, idmapped_rbind("ridmap"), false);
    let out = recursive.run().success();
    assert_eq!(out.stdout, "0:0\n0:0\n", "{out}");

    configure(&mut top_only, script, idmapped_rbind("idmap"), false);
    let out = top_only.run().success();
    assert_eq!(out.stdout, "0:0\n1000:1000\n", "{out}");
}

/// Runs a container whose config has `mount` added, expecting a failure that names `field`
/// and leaves nothing behind.
#[track_caller]
fn refused(mount: Value, userns: bool, field: &str) -> Output {
    let mut c = Container::new();
    configure(&mut c, "true", mount, userns);
    let out = c.run().failure();
    if is_berth() {
        assert!(out.stderr.contains(field), "expected {field}:\n{out}");
    }
    c.assert_no_leaks();
    out
}

#[test]
fn invalid_idmapped_mounts_are_refused_naming_the_field() {
    let source = std::env::temp_dir();
    let one = || mapping(0, 1000, 1);
    // The default config has 7 mounts; ours is mounts[7].
    let tmpfs = json!({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs"});
    refused(
        with_mappings(tmpfs, one(), one()),
        false,
        "mounts[7]: only bind mounts",
    );
    refused(
        bind(&source, &["bind", "ridmap"]),
        false,
        "mounts[7].options",
    );
    let mut uid_only = bind(&source, &["bind"]);
    uid_only["uidMappings"] = one();
    refused(uid_only, false, "mounts[7].gidMappings");
    refused(
        with_mappings(bind(&source, &["bind"]), mapping(0, 1000, 0), one()),
        true,
        "mounts[7].uidMappings[0].size",
    );
}

#[test]
fn a_filesystem_without_idmapping_support_fails_cleanly() {
    // procfs cannot be idmapped: mount_setattr fails after the helper user namespace exists.
    let mount = with_mappings(
        bind(Path::new("/proc/sys"), &["rbind"]),
        mapping(0, 1000, 1),
        mapping(0, 1000, 1),
    );
    let out = refused(mount, false, "mounts[7]: idmapped mount of /proc/sys");
    if is_berth() {
        assert!(out.stderr.contains("MOUNT_ATTR_IDMAP"), "{out}");
    }
}
