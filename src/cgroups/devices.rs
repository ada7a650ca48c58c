//! The device rules a container's cgroup gets, as runc composes them.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// Devices every container may use whatever its rules say (runc's `AllowedDevices`): mknod of
/// any node, and null, random, full, tty, zero, urandom, the pty slaves and ptmx.
const ALWAYS_ALLOWED: &[(LinuxDeviceType, Option<i64>, Option<i64>, &str)] = &[
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"),
    (LinuxDeviceType::C, Some(136), None, "rwm"),
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"),
];

/// `linux.resources.devices`, then the always-allowed devices: the only rules the device cgroup
/// gets (later rules win). An entry of `linux.devices` only makes the node: access to it is
/// what these rules grant, as with runc; a fifo is never in the device cgroup.
///
/// runc 1.1 drops an always-allowed rule when `linux.devices` lists a node at the same path
/// (`/dev/null` there and a deny-all rule, and its init cannot reopen `/dev/null`); berth keeps
/// the whole list: listing a node changes its file, not who may use it.
/// The lifecycle passes the result as `resources.devices` to `apply` at create time.
pub fn container_device_rules(spec_rules: &[LinuxDeviceCgroup]) -> Vec<LinuxDeviceCgroup> {
    let always = ALWAYS_ALLOWED.iter().map(|&(typ, major, minor, access)| {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(typ));
        rule.set_major(major);
        rule.set_minor(minor);
        rule.set_access(Some(access.to_string()));
        rule
    });
    spec_rules.iter().cloned().chain(always).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_rules_come_first_then_the_always_allowed_ones() {
        let deny_all: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":false,"access":"rwm"}"#).unwrap();
        let rules = container_device_rules(std::slice::from_ref(&deny_all));
        assert_eq!(rules.len(), 1 + ALWAYS_ALLOWED.len());
        assert_eq!(rules[0], deny_all);
        assert_eq!(rules[1].to_string(), "c *:* m");
        assert_eq!(rules[3].to_string(), "c 1:3 rwm");
        assert_eq!(rules.last().unwrap().to_string(), "c 5:2 rwm");
    }
}
