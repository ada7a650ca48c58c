//! `berth features` (runtime-spec features.md) and `berth --version`: what this
//! build really supports, kept true as features land.

use serde_json::{Value, json};

pub const SPEC_VERSION: &str = "1.3.0";

pub fn version_text() -> String {
    format!(
        "berth version {}\ncommit: {}\nspec: {SPEC_VERSION}\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("BERTH_COMMIT").unwrap_or("unknown"),
    )
}

pub fn features() -> Value {
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": crate::rootfs::SUPPORTED_MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": crate::cgroups::features(),
            "seccomp": crate::seccomp::features(),
            // As in runc: the build can apply them; whether this host has them is another matter.
            "apparmor": { "enabled": true },
            "selinux": { "enabled": true },
            "intelRdt": { "enabled": true, "schemata": true, "monitoring": true },
            "mountExtensions": { "idmap": { "enabled": true } },
            "netDevices": { "enabled": true },
            "memoryPolicy": {
                "modes": crate::memory_policy::MODES,
                "flags": crate::memory_policy::FLAGS,
            },
        },
        "annotations": {
            "org.opencontainers.runc.version": env!("CARGO_PKG_VERSION"),
            // As runc's: the build can checkpoint; CRIU itself is the host's.
            "org.opencontainers.runc.checkpoint.enabled": "true",
        },
    })
}
