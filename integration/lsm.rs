//! AppArmor and SELinux labels on a host that has neither LSM enabled (this project's
//! development host): every label fails `create` and `exec`, leaving nothing behind. On a host
//! with one of them these tests return at once: applying labels needs such a host, and is not
//! tested here (see README.md).
//!
//! runc fails these too, but later and in its own words: an AppArmor profile or a mount label
//! with the kernel's "invalid argument" from inside its init, a process label with "selinux
//! label is specified in config, but selinux is disabled or not supported". Only berth's
//! messages are checked to name the field.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::common::{COMMAND_TIMEOUT, Container, Output, is_berth};

fn host_has_an_lsm() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists() || Path::new("/sys/fs/selinux").exists()
}

/// One label a config can ask for: where it goes in config.json, and the field it is.
struct Label {
    field: &'static str,
    set: fn(&mut Value),
}

const LABELS: [Label; 3] = [
    Label {
        field: "process.apparmorProfile",
        set: |config| config["process"]["apparmorProfile"] = json!("berth-test"),
    },
    Label {
        field: "process.selinuxLabel",
        set: |config| {
            config["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
        },
    },
    Label {
        field: "linux.mountLabel",
        set: |config| {
            config["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2");
        },
    },
];

#[track_caller]
fn assert_refused(out: &Output, field: &str) {
    assert_ne!(out.code, 0, "{field} was accepted:\n{out}");
    if is_berth() {
        assert!(
            out.stderr.contains(field) && out.stderr.contains("is not enabled on this host"),
            "the error should name {field} and say why:\n{out}"
        );
    }
}

#[test]
fn create_refuses_labels_without_their_lsm() {
    if host_has_an_lsm() {
        return;
    }
    for label in LABELS {
        let c = Container::new();
        c.configure_json(label.set);
        let out = c.create();
        assert_refused(&out, label.field);
        assert_eq!(
            c.status(),
            None,
            "{}: the container exists:\n{out}",
            label.field
        );
        c.assert_no_leaks();
    }
}

#[test]
fn exec_refuses_labels_without_their_lsm() {
    if host_has_an_lsm() {
        return;
    }
    let mut c = Container::new();
    c.start_sleeper();
    let before = c.processes();
    let process_file = c.dir.join("process.json");
    let file_flag = process_file.to_str().unwrap();
    let attempts: [(&str, Vec<&str>, Option<Value>); 4] = [
        (
            "process.apparmorProfile",
            vec!["--apparmor", "berth-test"],
            None,
        ),
        (
            "process.selinuxLabel",
            vec!["--process-label", "system_u:system_r:c:s0"],
            None,
        ),
        (
            "process.apparmorProfile",
            vec!["--process", file_flag],
            Some(json!({"apparmorProfile": "berth-test"})),
        ),
        (
            "process.selinuxLabel",
            vec!["--process", file_flag],
            Some(json!({"selinuxLabel": "system_u:system_r:c:s0"})),
        ),
    ];
    for (field, flags, labels) in attempts {
        if let Some(labels) = labels {
            let mut process = json!({"user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/"});
            process
                .as_object_mut()
                .unwrap()
                .extend(labels.as_object().unwrap().clone());
            fs::write(&process_file, process.to_string()).unwrap();
        }
        let out = c.exec(&flags, &["true"]);
        assert_refused(&out, field);
        assert_eq!(
            c.processes(),
            before,
            "{field}: an exec process was left:\n{out}"
        );
    }
    c.wait_for_status("running", COMMAND_TIMEOUT);
}
