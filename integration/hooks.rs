//! OCI hooks: each kind runs at the moment and in the namespaces runtime-spec
//! 1.3 names, gets the state JSON on stdin, and fails the way the spec says.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{Hook, HookBuilder, Hooks, HooksBuilder};
use serde_json::Value;

use crate::common::{COMMAND_TIMEOUT, Container, is_berth, set_args};

/// A host shell hook appending "<kind> <status> <mount ns> <state json>" to `log`.
fn logging_hook(kind: &str, log: &Path) -> Hook {
    let script = format!(
        "echo \"{kind} $(cat | tr -d '\\n' | sed 's/.*\"status\":\"\\([a-z]*\\)\".*/\\1/') \
         $(readlink /proc/self/ns/mnt)\" >> {}",
        log.display()
    );
    HookBuilder::default()
        .path("/bin/sh")
        .args(vec!["sh".to_string(), "-c".to_string(), script])
        .build()
        .expect("hook")
}

fn failing_hook() -> Hook {
    HookBuilder::default()
        .path("/bin/sh")
        .args(["sh", "-c", "exit 7"].map(String::from).to_vec())
        .build()
        .expect("hook")
}

fn with_hooks(c: &mut Container, hooks: Hooks) {
    c.configure(|spec| {
        spec.set_hooks(Some(hooks));
    });
}

fn log_path(c: &Container) -> PathBuf {
    c.dir.join("hooks.log")
}

fn log_lines(c: &Container) -> Vec<String> {
    fs::read_to_string(log_path(c))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn host_mount_ns() -> String {
    fs::read_link("/proc/self/ns/mnt")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn every_hook_runs_in_order_with_the_state_and_in_its_namespace() {
    let mut c = Container::with_args(&["sleep", "1000"]);
    let log = log_path(&c);
    let hooks = HooksBuilder::default()
        .prestart(vec![logging_hook("prestart", &log)])
        .create_runtime(vec![logging_hook("createRuntime", &log)])
        .create_container(vec![logging_hook("createContainer", &log)])
        .poststart(vec![logging_hook("poststart", &log)])
        .poststop(vec![logging_hook("poststop", &log)])
        .build()
        .unwrap();
    with_hooks(&mut c, hooks);
    c.create().success();
    c.start().success();
    c.kill("KILL").success();
    c.wait_for_status("stopped", COMMAND_TIMEOUT);
    c.delete().success();

    let lines = log_lines(&c);
    let kinds: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop"
        ],
        "{lines:?}"
    );
    let field = |i: usize, n: usize| lines[i].split(' ').nth(n).unwrap().to_string();
    assert_eq!(field(0, 1), "creating", "{lines:?}");
    assert_eq!(field(3, 1), "running", "{lines:?}");
    assert_eq!(field(4, 1), "stopped", "{lines:?}");
    let host = host_mount_ns();
    // createRuntime runs in the runtime's namespaces, createContainer in the container's.
    assert_eq!(field(1, 2), host, "{lines:?}");
    if is_berth() {
        // runc deviates: runc 1.1.5 runs createContainer hooks in the host's namespaces.
        assert_ne!(field(2, 2), host, "{lines:?}");
    }
}

#[test]
fn start_container_hooks_run_inside_the_container_before_the_process() {
    let mut c = Container::new();
    // The hook's path resolves inside the container: the rootfs's busybox sh.
    let hook = HookBuilder::default()
        .path("/bin/sh")
        .args(
            [
                "sh",
                "-c",
                "cat > /dev/shm/start-state; hostname > /dev/shm/start-host",
            ]
            .map(String::from)
            .to_vec(),
        )
        .build()
        .unwrap();
    with_hooks(
        &mut c,
        HooksBuilder::default()
            .start_container(vec![hook])
            .build()
            .unwrap(),
    );
    c.configure(|spec| {
        spec.set_hostname(Some("hooked".into()));
        set_args(
            spec,
            &["sh", "-c", "cat /dev/shm/start-host /dev/shm/start-state"],
        );
    });
    let out = c.run().success();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("hooked"), "{out}");
    let state: Value = serde_json::from_str(lines.next().unwrap_or_default()).expect("state JSON");
    assert_eq!(state["id"], c.id.as_str());
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let mut c = Container::with_args(&["true"]);
    with_hooks(
        &mut c,
        HooksBuilder::default()
            .create_runtime(vec![failing_hook()])
            .build()
            .unwrap(),
    );
    let out = c.create().failure();
    if is_berth() {
        assert!(
            out.stderr.contains("error running createRuntime hook"),
            "{out}"
        );
    }
    c.assert_no_leaks();
}

#[test]
fn a_failing_poststart_hook_fails_start_and_stops_the_container() {
    let mut c = Container::with_args(&["sleep", "1000"]);
    with_hooks(
        &mut c,
        HooksBuilder::default()
            .poststart(vec![failing_hook()])
            .build()
            .unwrap(),
    );
    c.create().success();
    c.start().failure();
    // runc deviates: runc 1.1.5 leaves the container running after a failed poststart hook.
    if is_berth() {
        c.wait_for_status("stopped", COMMAND_TIMEOUT);
    }
}

#[test]
fn a_failing_poststop_hook_is_only_a_warning() {
    let mut c = Container::with_args(&["true"]);
    with_hooks(
        &mut c,
        HooksBuilder::default()
            .poststop(vec![failing_hook()])
            .build()
            .unwrap(),
    );
    c.create().success();
    c.start().success();
    c.wait_for_status("stopped", COMMAND_TIMEOUT);
    c.delete().success();
    c.assert_no_leaks();
}

#[test]
fn a_hook_past_its_timeout_fails_create() {
    let mut c = Container::with_args(&["true"]);
    let slow = HookBuilder::default()
        .path("/bin/sleep")
        .args(["sleep", "30"].map(String::from).to_vec())
        .timeout(1i64)
        .build()
        .unwrap();
    with_hooks(
        &mut c,
        HooksBuilder::default()
            .create_runtime(vec![slow])
            .build()
            .unwrap(),
    );
    let started = std::time::Instant::now();
    c.create().failure();
    assert!(started.elapsed() < Duration::from_secs(20));
    c.assert_no_leaks();
}

#[test]
fn create_container_hooks_run_in_the_rootfs() {
    // As runc: hooks that write `./lib/...` rely on it.
    let mut c = Container::new();
    let cwd_file = c.dir.join("hook-cwd");
    let hook = HookBuilder::default()
        .path("/bin/sh")
        .args(
            ["sh", "-c", &format!("pwd > {}", cwd_file.display())]
                .map(String::from)
                .to_vec(),
        )
        .build()
        .expect("hook");
    let hooks = HooksBuilder::default()
        .create_container(vec![hook])
        .build()
        .unwrap();
    with_hooks(&mut c, hooks);
    c.create().success();
    let cwd = fs::read_to_string(&cwd_file).expect("the hook ran");
    assert_eq!(Path::new(cwd.trim()), c.bundle.join("rootfs"));
}
