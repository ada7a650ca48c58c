//! The start trace (`--debug`): every phase of a command, and of the init and exec'd process
//! it started, in one timeline; nothing of it without `--debug`. Only what is logged is
//! checked, never how long anything took. berth's own feature: runc has no trace.

use std::fs;

use oci_spec::runtime::Hooks;
use serde_json::json;

use crate::common::{Container, Output, is_berth, process_mut, set_args};

/// One line of the timeline: (offset in ms, process, phase).
fn trace_lines(log: &str) -> Vec<(f64, String, String)> {
    log.lines()
        .filter_map(|line| line.split_once("msg=\"trace ").map(|(_, rest)| rest))
        .map(|rest| {
            let mut fields = rest.split_whitespace();
            let offset = fields.next().and_then(|f| f.parse().ok()).expect("offset");
            let process = fields.nth(3).expect("process").to_string();
            let phase = fields.collect::<Vec<_>>().join(" ");
            (offset, process, phase.trim_end_matches('"').to_string())
        })
        .collect()
}

#[track_caller]
fn assert_phase(out: &Output, process: &str, phase: &str) {
    let lines = trace_lines(&out.stderr);
    assert!(
        lines
            .iter()
            .any(|(_, p, what)| p == process && what == phase),
        "no phase {phase:?} of {process} in the trace:\n{out}"
    );
}

#[test]
fn run_traces_itself_and_the_init_in_one_timeline() {
    if !is_berth() {
        return;
    }
    let c = Container::with_args(&["/bin/true"]);
    let out = c
        .cmd(&[
            "--debug",
            "run",
            "--bundle",
            c.bundle.to_str().unwrap(),
            &c.id,
        ])
        .success();
    for phase in ["create", "load and validate the bundle", "start", "delete"] {
        assert_phase(&out, "berth", phase);
    }
    // Sent with Ready, and on the start connection after `start`.
    assert_phase(&out, "init", "rootfs: mounts and devices");
    assert_phase(&out, "init", "mount /proc");
    assert_phase(&out, "init", "blocked until `start`");
    let offsets: Vec<f64> = trace_lines(&out.stderr).iter().map(|l| l.0).collect();
    assert!(
        offsets.is_sorted(),
        "the timeline is in the order phases began:\n{out}"
    );
}

#[test]
fn each_lifecycle_command_traces_its_phases() {
    if !is_berth() {
        return;
    }
    let mut c = Container::with_args(&["sleep", "1000"]);
    // The init runs startContainer hooks, and the init and exec'd process their setup, under
    // Docker's filter, loaded before the identity switch: the trace must still reach berth.
    c.configure(|spec| {
        let profile = include_str!("common/docker-seccomp.json");
        let seccomp = serde_json::from_str(profile).expect("Docker's profile");
        spec.linux_mut()
            .as_mut()
            .unwrap()
            .set_seccomp(Some(seccomp));
        process_mut(spec).set_no_new_privileges(Some(false));
        let hook = serde_json::from_value(json!({"path": "/bin/true"})).expect("hook");
        let mut hooks = Hooks::default();
        hooks.set_start_container(Some(vec![hook]));
        spec.set_hooks(Some(hooks));
    });
    let bundle = c.bundle.to_str().unwrap();
    let create = c.cmd(&["--debug", "create", "--bundle", bundle, &c.id]);
    assert_phase(&create.success(), "init", "process: user and capabilities");
    let start = c.cmd(&["--debug", "start", &c.id]).success();
    assert_phase(&start, "init", "startContainer hooks");
    assert_phase(
        &start,
        "berth",
        "wait for the init: startContainer hooks, execve",
    );
    let exec = c.cmd(&["--debug", "exec", &c.id, "/bin/true"]).success();
    assert_phase(&exec, "exec", "enter the namespaces");
    assert_phase(&exec, "berth", "wait for the process: setup, execve");
    let delete = c.cmd(&["--debug", "delete", "--force", &c.id]).success();
    assert_phase(&delete, "berth", "remove the state directory");
}

#[test]
fn without_debug_there_is_no_trace_and_with_a_log_file_it_goes_there() {
    if !is_berth() {
        return;
    }
    let mut c = Container::new();
    c.configure(|spec| set_args(spec, &["echo", "hello"]));
    let bundle = c.bundle.to_str().unwrap();
    let quiet = c.cmd(&["run", "--bundle", bundle, &c.id]).success();
    assert!(trace_lines(&quiet.stderr).is_empty(), "{quiet}");

    let log = c.dir.join("berth.log");
    let log_flag = log.to_str().unwrap();
    let logged = c
        .cmd(&[
            "--log", log_flag, "--debug", "run", "--bundle", bundle, &c.id,
        ])
        .success();
    assert_eq!(
        logged.stdout, "hello\n",
        "the container's output is its own"
    );
    assert!(trace_lines(&logged.stderr).is_empty(), "{logged}");
    let log = fs::read_to_string(&log).expect("the log file");
    assert!(
        trace_lines(&log)
            .iter()
            .any(|(_, process, _)| process == "init"),
        "the log file has the timeline:\n{log}"
    );
}

#[test]
fn readme_trace_example() {
    if !is_berth() {
        return;
    }
    let c = Container::new();
    let out = c.run_readme_example("trace-demo").success();
    assert!(out.stdout.contains("init   rootfs: pivot_root"), "{out}");
}
