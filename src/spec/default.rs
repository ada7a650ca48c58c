//! The config.json that `berth spec` writes: runc's default, so that bundles
//! and documentation written for runc work unchanged.

use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Mount, Spec,
};

const DEFAULT_CONFIG: &str = r#"{
  "ociVersion": "1.3.0",
  "process": {
    "terminal": true,
    "user": { "uid": 0, "gid": 0 },
    "args": ["sh"],
    "env": [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "TERM=xterm"
    ],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
    "noNewPrivileges": true
  },
  "root": { "path": "rootfs", "readonly": true },
  "hostname": "berth",
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
      "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
      "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
    { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
      "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
      "options": ["nosuid", "noexec", "nodev"] },
    { "destination": "/sys", "type": "sysfs", "source": "sysfs",
      "options": ["nosuid", "noexec", "nodev", "ro"] },
    { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
      "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
  ],
  "linux": {
    "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
    "namespaces": [
      { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
      { "type": "uts" }, { "type": "mount" }
    ],
    "maskedPaths": [
      "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
      "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
      "/proc/scsi"
    ],
    "readonlyPaths": [
      "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
    ]
  }
}"#;

/// runc's default spec, or its rootless variant (`spec --rootless`).
pub fn default_spec(rootless: bool) -> Spec {
    let mut spec: Spec = serde_json::from_str(DEFAULT_CONFIG).expect("the built-in spec parses");
    // As runc: a cgroup namespace on a cgroup v2 host only, so that configs written for runc on
    // a v1 host, which add one, are not refused as giving it twice.
    if crate::cgroups::is_unified_host().unwrap_or(false) {
        add_namespace(&mut spec, LinuxNamespaceType::Cgroup);
    }
    if rootless {
        make_rootless(
            &mut spec,
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
    }
    spec
}

/// As runc does: no network namespace (an unprivileged user cannot set one
/// up), a user namespace mapping only the caller, /sys bound from the host
/// (sysfs cannot be mounted without owning the network namespace), no uid=/gid=
/// mount options (those ids are not mapped) and no cgroup resources.
fn make_rootless(spec: &mut Spec, uid: u32, gid: u32) {
    let linux = spec
        .linux_mut()
        .as_mut()
        .expect("the default spec has linux");
    if let Some(namespaces) = linux.namespaces_mut() {
        namespaces.retain(|ns| {
            !matches!(
                ns.typ(),
                LinuxNamespaceType::Network | LinuxNamespaceType::User
            )
        });
    }
    linux.set_uid_mappings(Some(vec![single_mapping(uid)]));
    linux.set_gid_mappings(Some(vec![single_mapping(gid)]));
    linux.set_resources(None);
    add_namespace(spec, LinuxNamespaceType::User);

    let mounts = spec.mounts().clone().unwrap_or_default();
    spec.set_mounts(Some(mounts.into_iter().map(rootless_mount).collect()));
}

fn add_namespace(spec: &mut Spec, typ: LinuxNamespaceType) {
    let linux = spec
        .linux_mut()
        .as_mut()
        .expect("the default spec has linux");
    let mut namespace = LinuxNamespace::default();
    namespace.set_typ(typ);
    linux
        .namespaces_mut()
        .get_or_insert_default()
        .push(namespace);
}

fn single_mapping(host_id: u32) -> LinuxIdMapping {
    LinuxIdMappingBuilder::default()
        .host_id(host_id)
        .container_id(0u32)
        .size(1u32)
        .build()
        .expect("all mapping fields are set")
}

fn rootless_mount(mut mount: Mount) -> Mount {
    if mount.destination() == std::path::Path::new("/sys") {
        mount.set_source(Some("/sys".into()));
        mount.set_typ(Some("none".into()));
        let options = ["rbind", "nosuid", "noexec", "nodev", "ro"];
        mount.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
        return mount;
    }
    if let Some(options) = mount.options().clone() {
        let kept = options
            .into_iter()
            .filter(|o| !o.starts_with("uid=") && !o.starts_with("gid="))
            .collect();
        mount.set_options(Some(kept));
    }
    mount
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_maps_the_caller_and_drops_the_network_namespace() {
        let mut spec = default_spec(false);
        make_rootless(&mut spec, 1000, 1001);
        let linux = spec.linux().as_ref().unwrap();
        let kinds: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert!(!kinds.contains(&LinuxNamespaceType::Network));
        assert_eq!(kinds.last(), Some(&LinuxNamespaceType::User));
        assert_eq!(linux.uid_mappings().as_ref().unwrap()[0].host_id(), 1000);
        assert_eq!(linux.gid_mappings().as_ref().unwrap()[0].host_id(), 1001);
        assert!(linux.resources().is_none());
        let devpts = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination().ends_with("pts"))
            .unwrap();
        assert!(
            !devpts
                .options()
                .as_ref()
                .unwrap()
                .iter()
                .any(|o| o.starts_with("gid="))
        );
    }
}
