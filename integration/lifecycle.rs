//! The container lifecycle: run, create → start → kill → delete, the state JSON, and the
//! state machine's refusals.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::common::{COMMAND_TIMEOUT, Container, host_namespace, set_args};

/// The container's init is pid 1 of its namespace, and the kernel drops signals to it that it
/// has no handler for: to see SIGTERM work, the process must trap it.
const TERM_AWARE_SLEEPER: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"];

#[test]
fn run_true_exits_zero_and_leaves_nothing() {
    let mut c = Container::new();
    c.run_args(&["/bin/true"]).success();
    c.assert_no_leaks();
}

#[test]
fn run_propagates_exit_code() {
    let mut c = Container::new();
    let out = c.run_args(&["sh", "-c", "exit 3"]);
    assert_eq!(out.code, 3, "{out}");
}

#[test]
fn run_passes_container_output_through() {
    let mut c = Container::new();
    let out = c
        .run_args(&["sh", "-c", "echo out; echo err >&2"])
        .success();
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err\n"), "{out}");
}

#[test]
fn run_killed_by_signal_exits_128_plus_signal() {
    let mut c = Container::new();
    c.configure(|spec| set_args(spec, &["sleep", "1000"]));
    let bundle = c.bundle.to_str().unwrap().to_string();
    let run = c.spawn(&["run", "--bundle", &bundle, &c.id]);
    c.wait_for_status("running", COMMAND_TIMEOUT);
    c.kill("KILL").success();
    let out = run.wait(COMMAND_TIMEOUT);
    assert_eq!(out.code, 128 + 9, "{out}");
}

#[test]
fn create_start_kill_delete() {
    let mut c = Container::new();
    c.configure(|spec| {
        set_args(spec, TERM_AWARE_SLEEPER);
        spec.set_annotations(Some(
            [("org.berth.test".to_string(), "lifecycle".to_string())].into(),
        ));
    });
    c.create().success();

    let state = c.state_json();
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state["id"], c.id.as_str());
    assert!(state["ociVersion"].is_string(), "{state}");
    assert_eq!(state["bundle"], c.bundle.to_str().unwrap());
    assert_eq!(state["rootfs"], c.bundle.join("rootfs").to_str().unwrap());
    assert_eq!(state["annotations"]["org.berth.test"], "lifecycle");
    assert!(state["owner"].is_string(), "{state}");
    let created = state["created"].as_str().expect("created is a string");
    assert!(
        created.len() >= 20 && created.contains('T'),
        "created not RFC3339: {created}"
    );
    let pid = state["pid"].as_i64().expect("pid is a number");
    assert!(
        pid > 0 && Path::new(&format!("/proc/{pid}")).exists(),
        "{state}"
    );

    c.start().success();
    let state = c.state_json();
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(state["pid"], pid, "start must not change the pid");

    // No signal argument: SIGTERM is the default.
    c.cmd(&["kill", &c.id]).success();
    c.wait_for_status("stopped", COMMAND_TIMEOUT);

    c.delete().success();
    c.state().failure();
    c.assert_no_leaks();
}

#[test]
fn kill_accepts_numeric_short_and_long_signal_names() {
    for signal in ["9", "KILL", "SIGKILL"] {
        let mut c = Container::new();
        c.start_sleeper();
        c.kill(signal).success();
        c.wait_for_status("stopped", COMMAND_TIMEOUT);
    }
}

#[test]
fn start_of_running_or_stopped_container_fails_and_changes_nothing() {
    let mut c = Container::new();
    c.start_sleeper();
    let before = c.state_json();
    c.start().failure();
    assert_eq!(c.state_json(), before, "a refused start changed the state");

    c.kill("KILL").success();
    c.wait_for_status("stopped", COMMAND_TIMEOUT);
    c.start().failure();
    assert_eq!(c.status().as_deref(), Some("stopped"));
}

#[test]
fn delete_running_without_force_fails_and_changes_nothing() {
    // The spec: "deleting a container that is not stopped MUST generate an error".
    let mut c = Container::new();
    c.start_sleeper();
    let before = c.state_json();
    c.delete().failure();
    assert_eq!(c.state_json(), before, "a refused delete changed the state");
}

#[test]
fn delete_created_without_force_fails_and_changes_nothing() {
    // runc deviates: runc kills and deletes a `created` container on plain `delete`. The spec:
    // "deleting a container that is not stopped MUST generate an error".
    let mut c = Container::new();
    c.configure(|spec| set_args(spec, &["sleep", "1000"]));
    c.create().success();
    let before = c.state_json();
    c.delete().failure();
    assert_eq!(c.state_json(), before, "a refused delete changed the state");
}

#[test]
fn delete_force_kills_a_running_container() {
    let mut c = Container::new();
    c.start_sleeper();
    // The leak check must see the container's processes, or it could not see them leak: here
    // one that no `state` output named.
    let pid = c.exec_detached_sleeper();
    assert!(c.processes().contains(&pid), "leak check misses pid {pid}");
    assert!(
        !c.leaks().is_empty(),
        "a running container must count as leftovers"
    );
    c.delete_force().success();
    c.state().failure();
    c.assert_no_leaks();
}

#[test]
fn delete_force_cleans_a_created_container() {
    let mut c = Container::new();
    c.configure(|spec| set_args(spec, &["sleep", "1000"]));
    c.create().success();
    c.delete_force().success();
    c.assert_no_leaks();
}

#[test]
fn delete_force_of_missing_container_exits_zero() {
    let c = Container::new();
    c.delete_force().success();
}

#[test]
fn create_with_duplicate_id_fails_and_keeps_the_first() {
    let mut c = Container::new();
    c.configure(|spec| set_args(spec, &["sleep", "1000"]));
    c.create().success();
    let before = c.state_json();
    c.create().failure();
    assert_eq!(
        c.state_json(),
        before,
        "a refused create changed the first container"
    );
    c.start().success();
}

#[test]
fn pid_file_holds_the_init_pid_without_newline() {
    let mut c = Container::new();
    c.configure(|spec| set_args(spec, &["sleep", "1000"]));
    let pid_dir = c.dir.join("pids");
    fs::create_dir(&pid_dir).unwrap();
    let pid_file = pid_dir.join("init.pid");
    c.create_with(&["--pid-file", pid_file.to_str().unwrap()])
        .success();
    let content = fs::read_to_string(&pid_file).expect("pid file written");
    assert_eq!(
        content,
        c.state_json()["pid"].to_string(),
        "pid file content"
    );
    // Written as a temp file and renamed: nothing else may remain next to it.
    let names: Vec<_> = fs::read_dir(&pid_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["init.pid"],
        "leftover temp files next to the pid file"
    );
}

#[test]
fn hostname_and_domainname_are_set() {
    // runc deviates: runc 1.1.5 ignores `domainname` (supported since runc 1.2).
    let mut c = Container::new();
    c.configure(|spec| {
        spec.set_hostname(Some("box-one".into()));
        spec.set_domainname(Some("berth.test".into()));
    });
    let out = c.sh("hostname; cat /proc/sys/kernel/domainname");
    assert_eq!(out, "box-one\nberth.test\n");
}

#[test]
fn configured_namespaces_are_new_and_others_shared_with_the_host() {
    let mut c = Container::new();
    // The default config unshares pid, net, ipc, uts and mnt; cgroup, user and time stay shared.
    let kinds = ["pid", "net", "ipc", "uts", "mnt", "cgroup", "user"];
    let script: String = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}; "))
        .collect();
    let inside = c.sh(&script);
    let inside: Vec<&str> = inside.lines().collect();
    assert_eq!(inside.len(), kinds.len(), "{inside:?}");
    for (kind, inside) in kinds.iter().zip(inside) {
        let host = host_namespace(kind);
        if ["cgroup", "user"].contains(kind) {
            assert_eq!(inside, host, "{kind} namespace should be the host's");
        } else {
            assert_ne!(inside, host, "{kind} namespace should be new");
        }
    }
}

#[test]
fn container_process_is_pid_one() {
    let mut c = Container::new();
    assert_eq!(c.sh("echo $$"), "1\n");
}

#[test]
fn run_detach_returns_while_container_runs() {
    let mut c = Container::new();
    c.configure(|spec| set_args(spec, &["sleep", "1000"]));
    let bundle = c.bundle.to_str().unwrap().to_string();
    let out = c
        .spawn(&["run", "--detach", "--bundle", &bundle, &c.id])
        .wait(Duration::from_secs(10));
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(c.status().as_deref(), Some("running"));
}

#[test]
fn concurrent_creates_of_one_id_have_exactly_one_winner() {
    // runc deviates: runc 1.1.5 sometimes lets every racer fail ("exec fifo … already exists",
    // "unable to store init state"), leaving no container.
    let mut c = Container::new();
    c.configure(|spec| set_args(spec, &["sleep", "1000"]));
    let bundle = c.bundle.to_str().unwrap().to_string();
    let creates: Vec<_> = (0..4)
        .map(|_| c.spawn(&["create", "--bundle", &bundle, &c.id]))
        .collect();
    let outputs: Vec<_> = creates
        .into_iter()
        .map(|s| s.wait(COMMAND_TIMEOUT))
        .collect();
    let winners = outputs.iter().filter(|o| o.code == 0).count();
    assert_eq!(winners, 1, "{outputs:#?}");
    assert_eq!(c.status().as_deref(), Some("created"));
    c.start().success();
}

#[test]
fn ps_of_a_stopped_container_lists_no_process() {
    let mut c = Container::new();
    c.start_sleeper();
    c.kill("KILL").success();
    c.wait_for_status("stopped", COMMAND_TIMEOUT);
    let table = c.cmd(&["ps", &c.id]).success();
    assert_eq!(table.stdout.lines().count(), 1, "only the header:\n{table}");
    let json = c.cmd(&["ps", "--format", "json", &c.id]).success();
    // runc's answer (Go's nil slice), not `[]`.
    assert_eq!(json.stdout, "null\n", "{json}");
}

#[test]
fn kill_all_signals_every_container_process() {
    let mut c = Container::new();
    c.start_sleeper();
    c.exec(&["--detach"], &["sleep", "1000"]).success();
    c.cmd(&["kill", "--all", &c.id, "KILL"]).success();
    c.wait_for_status("stopped", COMMAND_TIMEOUT);
}
