//! The container's process (config.md "Process", config-linux.md): cwd, env, user, umask,
//! capabilities, rlimits, oom_score_adj, the AppArmor profile and a seccomp filter.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use crate::common::set_args;
use crate::filesystem::cap_mask;
use crate::suite::{self, Checks};

/// The fields of /proc/self/status a script printed (`Name:\tvalue` lines).
fn status_fields(out: &str) -> HashMap<&str, &str> {
    out.lines().filter_map(|l| l.split_once(":\t")).collect()
}

/// runtime-tools `process`: cwd and env as configured (cwd a directory only root can enter).
#[test]
fn process() {
    let mut c = suite::container();
    let test_dir = c.bundle.join("rootfs/test");
    fs::create_dir(&test_dir).unwrap();
    fs::set_permissions(&test_dir, fs::Permissions::from_mode(0o700)).unwrap();
    suite::edit(&mut c, |config| {
        config["process"]["cwd"] = "/test".into();
        let env = config["process"]["env"].as_array_mut().unwrap();
        env.extend(["testa=valuea".into(), "testb=123".into()]);
    });
    let out = c.sh("pwd; echo \"$testa\"; echo \"$testb\"");
    assert_eq!(out, "/test\nvaluea\n123\n");
}

/// runtime-tools `process_user`: uid, gid, additional groups and umask.
#[test]
fn process_user() {
    let mut c = suite::container();
    suite::edit(&mut c, |config| {
        config["process"]["user"] = json!({"uid": 10, "gid": 10, "additionalGids": [5],
                                           "umask": 2});
    });
    let out = c.sh("grep -E '^(Uid|Gid|Groups|Umask):' /proc/self/status");
    let status = status_fields(&out);
    let mut checks = Checks::default();
    checks.equal("Uid", status.get("Uid").copied(), Some("10\t10\t10\t10"));
    checks.equal("Gid", status.get("Gid").copied(), Some("10\t10\t10\t10"));
    let groups: Vec<&str> = status
        .get("Groups")
        .unwrap_or(&"")
        .split_whitespace()
        .collect();
    checks.check(
        groups.contains(&"5"),
        format!("additional gid 5 missing: {groups:?}"),
    );
    checks.equal("Umask", status.get("Umask").copied(), Some("0002"));
    checks.done();
}

/// Every capability the host lets its processes have (this test's bounding set).
fn host_capabilities() -> Vec<String> {
    let bounding = caps::read(None, caps::CapSet::Bounding).expect("read the bounding set");
    let mut names: Vec<String> = bounding.iter().map(|cap| cap.to_string()).collect();
    names.sort();
    names
}

/// runtime-tools `process_capabilities`: a privileged process (every capability in every set)
/// has them all. Only capabilities the host grants at all can be asked for.
#[test]
fn process_capabilities() {
    let names = host_capabilities();
    let missing: Vec<String> = caps::all()
        .into_iter()
        .map(|cap| cap.to_string())
        .filter(|cap| !names.contains(cap))
        .collect();
    if !missing.is_empty() {
        suite::note(&format!(
            "the host grants no process {}",
            missing.join(", ")
        ));
    }
    let mut c = suite::container();
    suite::edit(&mut c, |config| {
        let sets = [
            "bounding",
            "effective",
            "inheritable",
            "permitted",
            "ambient",
        ];
        for set in sets {
            config["process"]["capabilities"][set] = json!(names);
        }
        config["linux"].as_object_mut().unwrap().remove("seccomp");
    });
    let out = c.sh("grep '^Cap' /proc/self/status");
    let status = status_fields(&out);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let expected = cap_mask(&names);
    let mut checks = Checks::default();
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        checks.equal(set, status.get(set).copied(), Some(expected.as_str()));
    }
    checks.done();
}

/// runtime-tools `process_capabilities_fail`: an unknown capability is an error.
#[test]
fn process_capabilities_fail() {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["true"]));
    c.configure_json(|config| {
        let bounding = config["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .unwrap();
        bounding.push("CAP_TEST".into());
    });
    let out = c.run();
    assert_ne!(out.code, 0, "CAP_TEST was accepted:\n{out}");
}

/// runtime-tools `process_oom_score_adj`.
#[test]
fn process_oom_score_adj() {
    let mut c = suite::container();
    suite::edit(&mut c, |config| {
        config["process"]["oomScoreAdj"] = 500.into()
    });
    assert_eq!(c.sh("cat /proc/self/oom_score_adj"), "500\n");
}

/// runtime-tools `process_rlimits`: each rlimit's soft and hard values.
#[test]
fn process_rlimits() {
    const GIB: u64 = 1 << 30;
    let limits = [
        ("RLIMIT_AS", "Max address space", 2 * GIB, GIB),
        ("RLIMIT_CORE", "Max core file size", 4 * GIB, 3 * GIB),
        ("RLIMIT_DATA", "Max data size", 6 * GIB, 5 * GIB),
        ("RLIMIT_FSIZE", "Max file size", 8 * GIB, 7 * GIB),
        ("RLIMIT_STACK", "Max stack size", 10 * GIB, 9 * GIB),
        ("RLIMIT_CPU", "Max cpu time", 120, 60),
        ("RLIMIT_NOFILE", "Max open files", 4000, 3000),
    ];
    let mut c = suite::container();
    suite::edit(&mut c, |config| {
        config["process"]["rlimits"] = limits
            .iter()
            .map(|(typ, _, hard, soft)| json!({"type": typ, "hard": hard, "soft": soft}))
            .collect();
    });
    let script = limits
        .map(|(_, label, _, _)| format!("/oci-check limit '{label}'"))
        .join("; ");
    let out = c.sh(&script);
    let expected: Vec<String> = limits
        .iter()
        .map(|(_, _, hard, soft)| format!("{soft} {hard}"))
        .collect();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        expected,
        "soft and hard values"
    );
}

/// runtime-tools `process_rlimits_fail`: an unknown rlimit is an error.
#[test]
fn process_rlimits_fail() {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["true"]));
    c.configure_json(|config| {
        config["process"]["rlimits"] = json!([{"type": "RLIMIT_TEST", "hard": 1024, "soft": 1024}]);
    });
    let out = c.run();
    assert_ne!(out.code, 0, "RLIMIT_TEST was accepted:\n{out}");
}

/// runtime-tools `linux_process_apparmor_profile`: the process runs under the profile; one
/// the host does not have loaded cannot be applied, which must be an error.
#[test]
fn linux_process_apparmor_profile() {
    if !Path::new("/sys/kernel/security/apparmor").exists() {
        return suite::skip("the host has no AppArmor");
    }
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["true"]));
    suite::edit(&mut c, |config| {
        config["process"]["apparmorProfile"] = "acme_secure_profile".into();
    });
    let out = c.run();
    assert_ne!(
        out.code, 0,
        "an unloaded AppArmor profile was accepted:\n{out}"
    );
}

/// runtime-tools `linux_seccomp`: a filter that makes getcwd fail is in effect.
#[test]
fn linux_seccomp() {
    let mut c = suite::container();
    suite::edit(&mut c, |config| {
        config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    // busybox's pwd applet calls getcwd (sh's builtin would only print $PWD).
    let out =
        c.sh("grep '^Seccomp:' /proc/self/status; busybox pwd >/dev/null 2>&1 || echo denied");
    assert_eq!(out, "Seccomp:\t2\ndenied\n");
}
