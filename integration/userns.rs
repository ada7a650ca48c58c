//! User namespaces: the parent writes the id maps, the container's root is an
//! unprivileged id on the host, and exec joins the same namespace. A container
//! may also join another's user namespace by path and still get namespaces of
//! its own (a pod's containers), which that user namespace then owns.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::process::Command;
use std::time::Duration;

use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, MountBuilder,
    Spec,
};

use crate::common::{COMMAND_TIMEOUT, Container, HostBind, remove_namespace, set_args};

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

/// A container whose mapped root cannot reach a bind source (a directory only the host's root
/// may search) still gets it: the runtime opens the source with its own privileges, as runc.
#[test]
fn bind_sources_out_of_the_mapped_roots_reach_are_mounted() {
    let mut c = userns_container(&["cat", "/mnt/file"]);
    let secret = c.dir.join("secret");
    fs::create_dir_all(secret.join("inner")).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(secret.join("inner/file"), "only root could reach me\n").unwrap();
    c.configure(|spec| add_bind(spec, &secret.join("inner"), "/mnt", &["rbind", "ro"]));
    let out = c.run().success();
    assert_eq!(out.stdout, "only root could reach me\n");
}

/// The runtime's clone of a bind source is a copy of its own mount: in the container's user
/// namespace it must still arrive as a slave, never a peer that could propagate mounts out.
#[test]
fn cloned_bind_sources_do_not_propagate_to_the_host() {
    let mut c = userns_container(&[]);
    let shared = c.dir.join("shared");
    fs::create_dir(&shared).unwrap();
    let _peer_group = HostBind::shared(&shared);
    c.configure(|spec| add_bind(spec, &shared, "/mnt", &["rbind"]));
    let fields = c.sh("awk '$5 == \"/mnt\" { print $7 }' /proc/self/mountinfo");
    assert!(
        fields.starts_with("master:"),
        "/mnt is not a slave: {fields}"
    );
}

fn add_bind(spec: &mut Spec, source: &std::path::Path, destination: &str, options: &[&str]) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(
        MountBuilder::default()
            .destination(destination)
            .typ("bind")
            .source(source)
            .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap(),
    );
    spec.set_mounts(Some(mounts));
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

/// A container that joins the user namespace of `owner`'s init by path, as a
/// pod's containers do, and gets new pid, network, ipc, uts and mount
/// namespaces (the default config's) with hostname "joined".
fn container_joining_user_namespace_of(owner: &Container, args: &[&str]) -> Container {
    let mut c = Container::with_args(args);
    c.configure(|spec| {
        join_namespace_of(owner, spec, LinuxNamespaceType::User, "user");
        spec.set_hostname(Some("joined".into()));
    });
    c
}

/// Puts `owner`'s init's namespace of `kind` (`name` in /proc/PID/ns) in the
/// config by path, in place of a new one.
fn join_namespace_of(owner: &Container, spec: &mut Spec, kind: LinuxNamespaceType, name: &str) {
    remove_namespace(spec, kind);
    let path = format!("/proc/{}/ns/{name}", owner.state_json()["pid"]);
    let linux = spec.linux_mut().as_mut().unwrap();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.push(
        LinuxNamespaceBuilder::default()
            .typ(kind)
            .path(path)
            .build()
            .unwrap(),
    );
    linux.set_namespaces(Some(namespaces));
}

fn user_namespace_of(c: &Container) -> String {
    let link = fs::read_link(format!("/proc/{}/ns/user", c.state_json()["pid"])).unwrap();
    link.to_string_lossy().into_owned()
}

// runc deviates: 1.1.5 refuses a joined user namespace without uidMappings.
#[test]
fn a_container_joins_a_user_namespace_and_owns_its_new_namespaces() {
    let owner = userns_container(&["sleep", "1000"]);
    owner.create().success();
    let mut c = container_joining_user_namespace_of(&owner, &[]);
    // Setting the hostname and mounting /proc and /dev/pts (gid=5, a mapped
    // id) need privilege over the new uts and mount namespaces.
    let out = c.sh(
        "readlink /proc/self/ns/user; cat /proc/self/uid_map; hostname; echo $$; \
         grep -c ' /dev/pts devpts ' /proc/self/mounts",
    );
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        words,
        [
            user_namespace_of(&owner).as_str(),
            "0",
            &HOST_BASE.to_string(),
            "65536",
            "joined",
            "1",
            "1"
        ],
        "{out}"
    );
}

// runc deviates: 1.1.5 refuses a joined user namespace without uidMappings.
#[test]
fn exec_joins_a_container_that_joined_a_user_namespace() {
    let owner = userns_container(&["sleep", "1000"]);
    owner.create().success();
    let c = container_joining_user_namespace_of(&owner, &["sleep", "1000"]);
    c.create().success();
    c.start().success();
    c.wait_for_status("running", COMMAND_TIMEOUT);
    let out = c
        .exec(
            &[],
            &[
                "sh",
                "-c",
                "readlink /proc/self/ns/user; id -u; hostname; cat /proc/1/comm",
            ],
        )
        .success();
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(
        words,
        [user_namespace_of(&owner).as_str(), "0", "joined", "sleep"],
        "{out}"
    );
}

// runc deviates: 1.1.5 refuses a joined user namespace without uidMappings.
#[test]
fn a_container_joins_user_and_pid_namespaces_and_owns_its_new_ones() {
    let mut owner = userns_container(&[]);
    owner.start_sleeper();
    let mut c = container_joining_user_namespace_of(&owner, &[]);
    c.configure(|spec| join_namespace_of(&owner, spec, LinuxNamespaceType::Pid, "pid"));
    // Mounting /proc needs privilege over the joined pid namespace too.
    let out = c.sh("hostname; cat /proc/1/comm");
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, ["joined", "sleep"], "{out}");
}

/// The config may repeat the joined namespace's own mappings (containerd and
/// CRI-O do); others cannot be applied and are an error.
// runc deviates: 1.1.5 ignores mappings that are not the namespace's (runc 1.2
// refuses them).
#[test]
fn mappings_given_with_a_joined_user_namespace_must_be_its_own() {
    let owner = userns_container(&["sleep", "1000"]);
    owner.create().success();
    let mut same = container_joining_user_namespace_of(&owner, &["true"]);
    same.configure(|spec| {
        let linux = spec.linux_mut().as_mut().unwrap();
        linux.set_uid_mappings(Some(mapping()));
        linux.set_gid_mappings(Some(mapping()));
    });
    same.run().success();

    let mut other = container_joining_user_namespace_of(&owner, &["true"]);
    other.configure(|spec| {
        let shifted = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(HOST_BASE + 65536)
            .size(65536u32)
            .build()
            .unwrap();
        let linux = spec.linux_mut().as_mut().unwrap();
        linux.set_uid_mappings(Some(vec![shifted]));
        linux.set_gid_mappings(Some(vec![shifted]));
    });
    let out = other.run().failure();
    assert!(out.stderr.contains("linux.uidMappings"), "{out}");
    other.assert_no_leaks();
}

/// The intermediate process that enters the joined user namespace fails to
/// clone the init there (the namespace allows no new uts namespace): create
/// fails with why, and neither process nor anything else is left.
#[test]
fn a_failure_inside_the_joined_user_namespace_leaves_nothing_behind() {
    let owner = userns_container(&["sleep", "1000"]);
    owner.create().success();
    let limit = Command::new("nsenter")
        .arg(format!(
            "--user=/proc/{}/ns/user",
            owner.state_json()["pid"]
        ))
        .args(["sh", "-c", "echo 0 > /proc/sys/user/max_uts_namespaces"])
        .status()
        .unwrap();
    assert!(limit.success());
    let c = container_joining_user_namespace_of(&owner, &["true"]);
    let out = c.create().failure();
    if crate::common::is_berth() {
        assert!(out.stderr.contains("No space left on device"), "{out}");
    }
    c.assert_no_leaks();
}

// runc deviates: 1.1.5 refuses a joined user namespace without uidMappings.
#[test]
fn sigkill_during_create_of_a_container_joining_a_user_namespace_cleans_up() {
    let owner = userns_container(&["sleep", "1000"]);
    owner.create().success();
    for delay_ms in (0..15).chain([20, 30, 50]) {
        let c = container_joining_user_namespace_of(&owner, &["sleep", "1000"]);
        crate::faults::kill_create_after(&c, Duration::from_millis(delay_ms));
    }
}
