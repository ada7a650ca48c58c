//! AppArmor and SELinux labels: `process.apparmorProfile`, `process.selinuxLabel` and
//! `linux.mountLabel`.
//!
//! The parent refuses a label for an LSM the host does not have enabled, before anything is
//! created ([`check_host_supports`]); the child then writes the labels it was given without
//! asking again, through [`crate::trusted_proc`]. A process without labels opens nothing here.

mod apparmor;
pub mod selinux;

use std::fmt;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::Process;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lsm {
    AppArmor,
    SeLinux,
}

impl Lsm {
    fn enabled_on_host(self) -> bool {
        match self {
            Lsm::AppArmor => apparmor::enabled(),
            Lsm::SeLinux => selinux::enabled(),
        }
    }
}

impl fmt::Display for Lsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lsm::AppArmor => "AppArmor",
            Lsm::SeLinux => "SELinux",
        })
    }
}

/// Refuses every label whose LSM the host does not have enabled; the LSM is only looked up when
/// a label asks for it. runc does the same for `process.selinuxLabel` ("selinux label is
/// specified in config, but selinux is disabled or not supported"); for an AppArmor profile and
/// a mount label it has no check and fails later, in its init, with the kernel's EINVAL
/// (`write /proc/self/attr/exec: invalid argument`, or the mount of /dev). berth refuses the same
/// configs, before anything exists, naming the field. Running without the label instead would
/// silently give the container less confinement than its config asks for.
pub fn check_host_supports(process: &Process, mount_label: Option<&str>) -> Result<()> {
    check_labels(process, mount_label, Lsm::enabled_on_host)
}

fn check_labels(
    process: &Process,
    mount_label: Option<&str>,
    enabled: impl Fn(Lsm) -> bool,
) -> Result<()> {
    let labels = [
        (
            "process.apparmorProfile",
            Lsm::AppArmor,
            process.apparmor_profile().as_deref(),
        ),
        (
            "process.selinuxLabel",
            Lsm::SeLinux,
            process.selinux_label().as_deref(),
        ),
        ("linux.mountLabel", Lsm::SeLinux, mount_label),
    ];
    for (field, lsm, label) in labels {
        if let Some(label) = label.filter(|label| !label.is_empty())
            && !enabled(lsm)
        {
            bail!("{field}: {lsm} is not enabled on this host, so {label:?} cannot be applied");
        }
    }
    Ok(())
}

fn non_empty(label: &Option<String>) -> Option<&str> {
    label.as_deref().filter(|label| !label.is_empty())
}

/// The labels the calling thread takes at its next execve. Runs as root before any seccomp
/// filter and before no_new_privs: the filter may not allow these writes, and AppArmor refuses a
/// profile change once no_new_privs is set.
pub fn set_exec_labels(process: &Process) -> Result<()> {
    if let Some(profile) = non_empty(process.apparmor_profile()) {
        apparmor::change_on_exec(profile).context("process.apparmorProfile")?;
    }
    if let Some(label) = non_empty(process.selinux_label()) {
        selinux::set_exec_label(label).context("process.selinuxLabel")?;
    }
    Ok(())
}

/// Gives the session keyring the init is about to create the process's SELinux label, as runc
/// does.
pub fn set_keyring_label(process: &Process) -> Result<()> {
    match non_empty(process.selinux_label()) {
        Some(label) => selinux::set_keyring_label(label)
            .context("process.selinuxLabel: labelling the session keyring"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn process(labels: serde_json::Value) -> Process {
        let mut value = json!({"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"});
        value.as_object_mut().unwrap().extend(
            labels
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        serde_json::from_value(value).unwrap()
    }

    fn error_without_lsms(process: &Process, mount_label: Option<&str>) -> String {
        check_labels(process, mount_label, |_| false)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_label_for_a_disabled_lsm_names_the_field() {
        assert_eq!(
            error_without_lsms(&process(json!({"apparmorProfile": "docker-default"})), None),
            "process.apparmorProfile: AppArmor is not enabled on this host, so \
             \"docker-default\" cannot be applied"
        );
        assert_eq!(
            error_without_lsms(
                &process(json!({"selinuxLabel": "system_u:system_r:c:s0"})),
                None
            ),
            "process.selinuxLabel: SELinux is not enabled on this host, so \
             \"system_u:system_r:c:s0\" cannot be applied"
        );
        assert_eq!(
            error_without_lsms(&process(json!({})), Some("system_u:object_r:f:s0")),
            "linux.mountLabel: SELinux is not enabled on this host, so \
             \"system_u:object_r:f:s0\" cannot be applied"
        );
    }

    #[test]
    fn only_the_lsm_a_label_needs_is_asked() {
        let apparmor = process(json!({"apparmorProfile": "p"}));
        check_labels(&apparmor, None, |lsm| lsm == Lsm::AppArmor).unwrap();
        let selinux = process(json!({"selinuxLabel": "l"}));
        check_labels(&selinux, Some("m"), |lsm| lsm == Lsm::SeLinux).unwrap();
        assert!(check_labels(&selinux, None, |lsm| lsm == Lsm::AppArmor).is_err());
    }

    fn errno_of(err: &anyhow::Error) -> Option<i32> {
        err.downcast_ref::<std::io::Error>()?.raw_os_error()
    }

    /// On a host without either LSM (this project's development host) each write reaches the
    /// kernel through the trusted procfs and gets its EINVAL. The tests run on a thread other
    /// than the main one, where /proc/self/attr/* would answer EACCES (a task may only write its
    /// own attributes): this also shows the writes go to thread-self. With an LSM enabled they
    /// would relabel the test thread, so they check nothing there.
    #[test]
    fn without_the_lsm_the_kernel_refuses_each_write() {
        if apparmor::enabled() || selinux::enabled() {
            return;
        }
        for result in [
            apparmor::change_on_exec("unconfined"),
            selinux::set_exec_label("system_u:system_r:container_t:s0"),
            selinux::set_keyring_label("system_u:system_r:container_t:s0"),
        ] {
            let err = result.unwrap_err();
            assert_eq!(errno_of(&err), Some(libc::EINVAL), "{err:#}");
        }
    }

    #[test]
    fn empty_or_missing_labels_ask_nothing() {
        let empty = process(json!({"apparmorProfile": "", "selinuxLabel": ""}));
        check_labels(&empty, Some(""), |lsm| panic!("{lsm} was looked up")).unwrap();
        check_labels(&process(json!({})), None, |lsm| {
            panic!("{lsm} was looked up")
        })
        .unwrap();
    }
}
