//! User namespaces: the parent writes the id maps, the container's root is an
//! unprivileged id on the host, and exec joins the same namespace.

use std::fs;
use std::os::unix::fs::{MetadataExt, chown};

use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, MountBuilder,
};

use crate::common::{COMMAND_TIMEOUT, Container, set_args};

const HOST_BASE: u32 = 200_000;

fn mapping() -> Vec<LinuxIdMapping> {
    vec![
        LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(HOST_BASE)
            .size(65536u32)
            .build()
            .unwrap(),
    ]
}

/// A container with a new user namespace mapping 0..65536 to HOST_BASE.. (the
/// rootfs stays owned by the unmapped host root: paths must exist in it).
fn userns_container(args: &[&str]) -> Container {
    let mut c = Container::with_args(args);
    c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().unwrap();
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::User)
                .build()
                .unwrap(),
        );
        linux.set_namespaces(Some(namespaces));
        linux.set_uid_mappings(Some(mapping()));
        linux.set_gid_mappings(Some(mapping()));
    });
    c
}

#[test]
fn the_container_sees_its_maps_and_is_root_inside() {
    let mut c = userns_container(&[]);
    let out = c.sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g");
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "0",
            &HOST_BASE.to_string(),
            "65536",
            "0",
            &HOST_BASE.to_string(),
            "65536",
            "0",
            "0"
        ],
        "{out}"
    );
}

#[test]
fn the_containers_root_is_an_unprivileged_id_on_the_host() {
    let c = userns_container(&["sleep", "1000"]);
    c.create().success();
    let pid = c.state_json()["pid"].as_i64().unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|id| id == HOST_BASE.to_string()),
        "{uid_line}"
    );
}

#[test]
fn files_the_container_creates_belong_to_the_mapped_host_id() {
    let mut c = userns_container(&[]);
    let data = c.dir.join("data");
    fs::create_dir(&data).unwrap();
    chown(&data, Some(HOST_BASE), Some(HOST_BASE)).unwrap();
    c.configure(|spec| {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.push(
            MountBuilder::default()
                .destination("/tmp")
                .typ("bind")
                .source(&data)
                .options(["bind", "rw"].map(String::from).to_vec())
                .build()
                .unwrap(),
        );
        spec.set_mounts(Some(mounts));
    });
    c.sh("touch /tmp/made-inside");
    let meta = fs::metadata(data.join("made-inside")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (HOST_BASE, HOST_BASE));
}

#[test]
fn exec_joins_the_user_namespace() {
    let c = userns_container(&["sleep", "1000"]);
    c.create().success();
    c.start().success();
    c.wait_for_status("running", COMMAND_TIMEOUT);
    let out = c
        .exec(&[], &["sh", "-c", "id -u; cat /proc/self/uid_map"])
        .success();
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(words, ["0", "0", &HOST_BASE.to_string(), "65536"], "{out}");
}

#[test]
fn mappings_without_a_user_namespace_are_an_error() {
    let mut c = Container::with_args(&["true"]);
    c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().unwrap();
        linux.set_uid_mappings(Some(mapping()));
        linux.set_gid_mappings(Some(mapping()));
        set_args(spec, &["true"]);
    });
    let out = c.run().failure();
    if crate::common::is_berth() {
        assert!(out.stderr.contains("linux.uidMappings"), "{out}");
    }
    c.assert_no_leaks();
}
