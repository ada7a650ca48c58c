//! `process`: identity, capabilities, rlimits, umask, no_new_privs, oom_score_adj, cwd, env —
//! checked from inside the container — and the CVE-2024-21626 escapes (a leaked host fd reached
//! through /proc/self/fd/N as cwd or program).

use std::os::fd::{AsRawFd, OwnedFd};

use serde_json::{Value, json};

use crate::common::{Container, is_berth};

/// A container whose `process` has `patch`'s fields (merged over the default config's) and runs
/// `sh -c script`.
fn container(patch: Value, script: &str) -> Container {
    let c = Container::new();
    c.configure_json(|config| {
        let process = &mut config["process"];
        for (key, value) in patch.as_object().expect("patch is an object") {
            process[key] = value.clone();
        }
        process["args"] = json!(["sh", "-c", script]);
    });
    c
}

/// The lines of /proc/self/status named in `fields`, tabs turned into single spaces.
const STATUS: &str = "grep -E '^(Uid|Gid|Groups|Umask|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status | tr '\\t' ' '";

fn assert_lines(stdout: &str, expected: &[&str]) {
    for line in expected {
        assert!(
            stdout.lines().any(|l| l.trim_end() == *line),
            "missing {line:?} in:\n{stdout}"
        );
    }
}

#[test]
fn user_groups_umask_and_capabilities_are_applied() {
    let c = container(
        json!({
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 23},
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL"],
                "inheritable": ["CAP_KILL"],
                "ambient": ["CAP_KILL"]
            }
        }),
        STATUS,
    );
    let out = c.run().success();
    assert_lines(
        &out.stdout,
        &[
            "Uid: 1000 1000 1000 1000",
            "Gid: 1000 1000 1000 1000",
            "Groups: 10 20",
            "Umask: 0027",
            // After execve a non-root process keeps exactly its ambient capabilities.
            "CapInh: 0000000000000020",
            "CapPrm: 0000000000000020",
            "CapEff: 0000000000000020",
            "CapBnd: 0000000000000421",
            "CapAmb: 0000000000000020",
        ],
    );
}

/// For root, execve recomputes permitted and effective from the bounding set (file
/// capabilities of a root exec are "all"), whatever effective said before.
#[test]
fn root_gets_the_configured_bounding_set() {
    let c = container(
        json!({"capabilities": {
            "bounding": ["CAP_SYS_ADMIN", "CAP_KILL"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_SYS_ADMIN", "CAP_KILL"]
        }}),
        STATUS,
    );
    let out = c.run().success();
    assert_lines(
        &out.stdout,
        &[
            "Uid: 0 0 0 0",
            "Groups:",
            "CapPrm: 0000000000200020",
            "CapEff: 0000000000200020",
            "CapBnd: 0000000000200020",
            "CapAmb: 0000000000000000",
        ],
    );
}

#[test]
fn no_new_privileges_follows_the_config() {
    for (value, expected) in [(true, "NoNewPrivs: 1"), (false, "NoNewPrivs: 0")] {
        let c = container(json!({"noNewPrivileges": value}), STATUS);
        assert_lines(&c.run().success().stdout, &[expected]);
    }
}

#[test]
fn rlimits_are_set() {
    let c = container(
        json!({"rlimits": [
            {"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
            {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600}
        ]}),
        "grep -E '^Max (open files|core file size|processes)' /proc/self/limits | tr -s ' '",
    );
    let out = c.run().success();
    assert_lines(
        &out.stdout,
        &[
            "Max core file size 0 0 bytes",
            "Max processes 500 600 processes",
            "Max open files 1000 2000 files",
        ],
    );
}

#[test]
fn duplicate_rlimits_are_rejected() {
    let c = container(
        json!({"rlimits": [
            {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10},
            {"type": "RLIMIT_NOFILE", "soft": 20, "hard": 20}
        ]}),
        "true",
    );
    let out = c.run().failure();
    if is_berth() {
        assert!(
            out.stderr
                .contains("process.rlimits[1]: RLIMIT_NOFILE is already set by process.rlimits[0]"),
            "{out}"
        );
    }
}

#[test]
fn oom_score_adj_is_set() {
    let c = container(json!({"oomScoreAdj": 123}), "cat /proc/self/oom_score_adj");
    assert_eq!(c.run().success().stdout, "123\n");
}

#[test]
fn lowering_oom_score_adj_without_cap_sys_resource_is_explained() {
    if !is_berth() {
        return; // runc's message is its own
    }
    let c = container(json!({"oomScoreAdj": -1000}), "true");
    let out = c.run().failure();
    assert!(out.stderr.contains("process.oomScoreAdj"), "{out}");
    assert!(out.stderr.contains("CAP_SYS_RESOURCE"), "{out}");
}

#[test]
fn scheduler_and_io_priority_are_set() {
    let c = container(
        json!({
            "scheduler": {"policy": "SCHED_BATCH", "nice": 7},
            "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 6}
        }),
        // /proc/self/stat: field 19 is the nice value, 41 the policy (3 = SCHED_BATCH).
        "awk '{print $19, $41}' /proc/self/stat; ionice -p $$",
    );
    assert_eq!(c.run().success().stdout, "7 3\nbest-effort: prio 6\n");
}

#[test]
fn personality_linux32_changes_the_machine_name() {
    let c = container(json!({}), "uname -m");
    c.configure_json(|config| config["linux"]["personality"] = json!({"domain": "LINUX32"}));
    assert_eq!(c.run().success().stdout, "i686\n");
}

#[test]
fn exec_cpu_affinity_final_is_the_process_affinity() {
    let c = container(
        json!({"execCPUAffinity": {"initial": "0-1", "final": "1"}}),
        "grep Cpus_allowed_list /proc/self/status | tr '\\t' ' '",
    );
    assert_eq!(c.run().success().stdout, "Cpus_allowed_list: 1\n");
}

#[test]
fn cwd_env_and_home_are_set() {
    let c = container(
        json!({"user": {"uid": 1000, "gid": 1000}, "cwd": "/tmp", "env": ["PATH=/bin", "A=1", "A=2"]}),
        "pwd; echo \"A=$A HOME=$HOME\"; env | grep -c '^A='",
    );
    assert_eq!(c.run().success().stdout, "/tmp\nA=2 HOME=/home/user\n1\n");
}

#[test]
fn a_missing_program_fails_with_runc_s_message() {
    let mut c = Container::new();
    let out = c.run_args(&["no-such-program"]).failure();
    // The log line escapes the quotes around the name.
    assert!(out.stderr.contains("no-such-program"), "{out}");
    assert!(
        out.stderr.contains("executable file not found in $PATH"),
        "{out}"
    );
}

/// Opens /tmp on the host without O_CLOEXEC, so that the runtime inherits it as a leaked fd.
fn leak_host_dir() -> OwnedFd {
    nix::fcntl::open(
        "/tmp",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .expect("open /tmp")
}

#[test]
fn a_leaked_host_fd_cannot_become_the_cwd() {
    let leaked = leak_host_dir();
    let c = container(
        json!({"cwd": format!("/proc/self/fd/{}", leaked.as_raw_fd())}),
        "pwd; ls /",
    );
    let out = c.run().failure();
    assert!(
        !out.stdout.contains("bt-"),
        "the process saw the host's /tmp:\n{out}"
    );
    if is_berth() {
        assert!(out.stderr.contains("process.cwd"), "{out}");
    }
}

#[test]
fn a_leaked_host_fd_cannot_be_the_program_path() {
    let leaked = leak_host_dir();
    let mut c = Container::new();
    let program = format!("/proc/self/fd/{}/../bin/sh", leaked.as_raw_fd());
    let out = c.run_args(&[&program, "-c", "echo escaped"]).failure();
    assert!(!out.stdout.contains("escaped"), "{out}");
}

#[test]
fn a_leaked_host_fd_is_closed_in_the_container() {
    let leaked = leak_host_dir();
    let mut c = Container::new();
    let out = c.sh(&format!(
        "ls /proc/self/fd/{} 2>&1 || echo closed",
        leaked.as_raw_fd()
    ));
    assert!(out.ends_with("closed\n"), "{out}");
}

#[test]
fn exec_inherits_the_container_capabilities_and_adds_cap() {
    let mut c = Container::new();
    c.configure(|spec| crate::common::set_args(spec, &["sleep", "1000"]));
    c.configure_json(|config| {
        config["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]
        });
        config["process"]["noNewPrivileges"] = json!(false);
    });
    c.create().success();
    c.start().success();
    let plain = c.exec(&[], &["sh", "-c", STATUS]).success();
    assert_lines(
        &plain.stdout,
        &[
            "CapEff: 0000000000000020",
            "CapBnd: 0000000000000020",
            "NoNewPrivs: 0",
        ],
    );
    let added = c
        .exec(
            &["--cap", "CAP_CHOWN", "--no-new-privs"],
            &["sh", "-c", STATUS],
        )
        .success();
    assert_lines(
        &added.stdout,
        &[
            "CapEff: 0000000000000021",
            "CapBnd: 0000000000000021",
            "NoNewPrivs: 1",
        ],
    );
}
