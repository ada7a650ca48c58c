//! Paused containers: what may still be done to a container whose cgroup is frozen, as runc
//! 1.1.5 does it. Frozen by the v1 freezer on the development host and by cgroup.freeze in the
//! cgroup v2 VM, where `tools/vm/test-v2` runs every test whose name contains "cgroups".

use oci_spec::runtime::LinuxNamespaceType;

use crate::common::{COMMAND_TIMEOUT, Container, remove_namespace, set_args};

/// A running container whose init sleeps, with a second process exec'd beside it, paused.
fn paused_container(own_pid_namespace: bool) -> Container {
    let mut c = Container::new();
    if !own_pid_namespace {
        // The exec'd process then does not die with the init: only its cgroup holds it.
        c.configure(|spec| remove_namespace(spec, LinuxNamespaceType::Pid));
    }
    c.start_sleeper();
    c.exec_detached_sleeper();
    c.cmd(&["pause", &c.id]).success();
    assert_eq!(c.status().as_deref(), Some("paused"));
    c
}

#[test]
fn delete_force_removes_a_paused_container() {
    for own_pid_namespace in [true, false] {
        let c = paused_container(own_pid_namespace);
        // A SIGKILL stays pending on a frozen task: delete must thaw, and must return.
        c.delete_force().success();
        c.assert_no_leaks();
    }
}

#[test]
fn sigkill_stops_a_paused_container() {
    for all in [false, true] {
        let c = paused_container(true);
        let mut kill = vec!["kill"];
        if all {
            kill.push("--all");
        }
        kill.extend([c.id.as_str(), "KILL"]);
        c.cmd(&kill).success();
        c.wait_for_status("stopped", COMMAND_TIMEOUT);
        c.delete().success();
        c.assert_no_leaks();
    }
}

#[test]
fn exec_into_a_paused_container_needs_ignore_paused() {
    let c = paused_container(true);
    let refused = c.exec(&[], &["true"]).failure();
    assert!(
        refused
            .stderr
            .contains("cannot exec in a paused container (use --ignore-paused to override)"),
        "{refused}"
    );
    // The process starts frozen with the rest of the container, and runs once it is resumed.
    let exec = c.spawn(&["exec", "--ignore-paused", &c.id, "echo", "ran"]);
    c.cmd(&["resume", &c.id]).success();
    let output = exec.wait(COMMAND_TIMEOUT).success();
    assert_eq!(output.stdout, "ran\n");
}

#[test]
fn a_created_container_pauses_and_starts_once_resumed() {
    let mut c = Container::new();
    c.configure(|spec| set_args(spec, &["sleep", "1000"]));
    c.create().success();
    c.cmd(&["pause", &c.id]).success();
    assert_eq!(c.status().as_deref(), Some("paused"));
    let refused = c.start().failure();
    assert!(
        refused
            .stderr
            .contains("cannot start a container in the paused state"),
        "{refused}"
    );
    c.cmd(&["resume", &c.id]).success();
    assert_eq!(c.status().as_deref(), Some("created"));
    c.start().success();
    c.wait_for_status("running", COMMAND_TIMEOUT);
    c.delete_force().success();
    c.assert_no_leaks();
}
