//! Hooks (config.md "POSIX-platform Hooks", runtime.md "Lifecycle"): order, timing, the state on
//! their stdin, and what a failing one does.
//!
//! runtime-tools was written for the lifecycle before runtime-spec 1.0.2: its `prestart`,
//! `hooks_stdin` and `poststart_fail` cases expect prestart hooks to run at `start` (with status
//! `created`) and a failing poststart hook to be only a warning. The spec now runs prestart
//! hooks during `create`, while the container is `creating`, and a failing poststart hook is an
//! error that stops the container; these cases check the spec.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::{Container, set_args};
use crate::suite::{self, Checks, reaches};

/// A hook running `script` with the container's own busybox sh (a host path, as the spec
/// requires: hooks resolve in the runtime's namespace).
fn hook(c: &Container, script: &str) -> Value {
    let sh = c.bundle.join("rootfs/bin/sh");
    json!({"path": sh, "args": ["sh", "-c", script]})
}

/// A hook that appends `line` to `output`.
fn appends(c: &Container, output: &Path, line: &str) -> Value {
    hook(c, &format!("echo '{line}' >> {}", output.display()))
}

fn set_hooks(c: &mut Container, hooks: Value) {
    suite::edit(c, |config| config["hooks"] = hooks);
}

/// A container whose process appends "process called" to /output; the host path of that file.
fn container_writing_output() -> (Container, PathBuf) {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["sh", "-c", "echo 'process called' >> /output"]));
    let output = c.bundle.join("rootfs/output");
    (c, output)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// runtime-tools `hooks`: hooks of each kind run in the listed order.
#[test]
fn hooks() {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["true"]));
    let output = c.bundle.join("rootfs/output");
    let hooks = ["prestart", "poststart", "poststop"].map(|kind| {
        let name = kind.replace("post", "post-").replace("pre", "pre-");
        let list: Vec<Value> = (1..=2)
            .map(|n| appends(&c, &output, &format!("{name}{n} called")))
            .collect();
        (kind, Value::from(list))
    });
    set_hooks(
        &mut c,
        Value::Object(hooks.into_iter().map(|(k, v)| (k.into(), v)).collect()),
    );
    c.create().success();
    c.start().success();
    assert!(reaches(&c, &["stopped"]), "the container did not stop");
    c.delete().success();
    assert_eq!(
        read(&output),
        "pre-start1 called\npre-start2 called\npost-start1 called\npost-start2 called\n\
         post-stop1 called\npost-stop2 called\n"
    );
}

/// runtime-tools `hooks_stdin`: every hook reads the container's state on stdin.
#[test]
fn hooks_stdin() {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["sleep", "30"]));
    let dir = c.bundle.join("rootfs");
    let saves = |name: &str| {
        let mut hook = hook(&c, &format!("cat > {}", dir.join(name).display()));
        hook["timeout"] = 10.into();
        json!([hook])
    };
    let hooks = json!({
        "prestart": saves("prestart"), "poststart": saves("poststart"),
        "poststop": saves("poststop")
    });
    set_hooks(&mut c, hooks);
    let annotations = json!({"org.opencontainers.runtime-tools": "hook stdin test"});
    suite::edit(&mut c, |config| config["annotations"] = annotations.clone());
    c.create().success();
    let pid = c.state_json()["pid"].clone();
    c.start().success();
    c.kill("KILL").success();
    assert!(reaches(&c, &["stopped"]), "the container did not stop");
    c.delete().success();

    let mut checks = Checks::default();
    for (hook, status) in [
        ("prestart", "creating"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let text = read(&dir.join(hook));
        let Ok(state) = serde_json::from_str::<Value>(&text) else {
            checks.check(false, format!("{hook}: stdin was not the state: {text:?}"));
            continue;
        };
        checks.equal(
            &format!("{hook}: id"),
            state["id"].as_str(),
            Some(c.id.as_str()),
        );
        checks.equal(
            &format!("{hook}: bundle"),
            state["bundle"].as_str(),
            c.bundle.to_str(),
        );
        checks.equal(
            &format!("{hook}: status"),
            state["status"].as_str(),
            Some(status),
        );
        checks.equal(
            &format!("{hook}: annotations"),
            &state["annotations"],
            &annotations,
        );
        if hook != "poststop" {
            checks.equal(&format!("{hook}: pid"), &state["pid"], &pid);
        }
    }
    checks.done();
}

/// runtime-tools `prestart`: prestart hooks run during create (after the environment exists,
/// before the process runs), before the process.
#[test]
fn prestart() {
    let (mut c, output) = container_writing_output();
    let hooks = json!({"prestart": [appends(&c, &output, "pre-start called")]});
    set_hooks(&mut c, hooks);
    c.create().success();
    assert_eq!(read(&output), "pre-start called\n", "after create");
    c.start().success();
    assert!(reaches(&c, &["stopped"]), "the container did not stop");
    assert_eq!(
        read(&output),
        "pre-start called\nprocess called\n",
        "after the process"
    );
}

/// runtime-tools `prestart_fail`: a failing prestart hook is an error; the process never runs
/// and the container is destroyed.
#[test]
fn prestart_fail() {
    let (mut c, output) = container_writing_output();
    let fails = json!({"path": c.bundle.join("rootfs/bin/false"), "args": ["false"]});
    let hooks = json!({"prestart": [fails]});
    set_hooks(&mut c, hooks);
    let mut checks = Checks::default();
    let created = c.create();
    let started = c.start();
    checks.check(
        created.code != 0 || started.code != 0,
        "a failing prestart hook generated no error",
    );
    checks.check(!output.exists(), "the process ran");
    checks.fails("state of the destroyed container", &c.state());
    checks.done();
}

/// runtime-tools `poststart`: poststart hooks run once the user's program runs (they see its
/// command line) and before `start` returns.
#[test]
fn poststart() {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["sleep", "30"]));
    let output = c.bundle.join("rootfs/output");
    let script = format!(
        "pid=$(sed 's/.*\"pid\": *\\([0-9]*\\).*/\\1/'); tr '\\0' ' ' < /proc/$pid/cmdline > {}",
        output.display()
    );
    let hooks = json!({"poststart": [hook(&c, &script)]});
    set_hooks(&mut c, hooks);
    c.create().success();
    assert!(!output.exists(), "poststart hook ran at create");
    c.start().success();
    assert_eq!(read(&output), "sleep 30 ", "the process poststart saw");
}

/// runtime-tools `poststart_fail`: a failing poststart hook is an error and the container is
/// stopped (runtime-tools expects only a warning, as in runtime-spec before 1.0.2).
#[test]
fn poststart_fail() {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["sleep", "30"]));
    let fails = json!({"path": c.bundle.join("rootfs/bin/false"), "args": ["false"]});
    let hooks = json!({"poststart": [fails]});
    set_hooks(&mut c, hooks);
    c.create().success();
    let mut checks = Checks::default();
    checks.fails("start with a failing poststart hook", &c.start());
    checks.check(
        reaches(&c, &["stopped"]) || c.status().is_none(),
        "the container was not stopped",
    );
    checks.done();
}

/// runtime-tools `poststop`: poststop hooks run when the container is deleted, not before.
#[test]
fn poststop() {
    let (mut c, output) = container_writing_output();
    let hooks = json!({"poststop": [appends(&c, &output, "post-stop called")]});
    set_hooks(&mut c, hooks);
    c.create().success();
    c.start().success();
    assert!(reaches(&c, &["stopped"]), "the container did not stop");
    assert_eq!(read(&output), "process called\n", "before delete");
    c.delete().success();
    assert_eq!(
        read(&output),
        "process called\npost-stop called\n",
        "after delete"
    );
}

/// runtime-tools `poststop_fail`: a failing poststop hook is only a warning: the next one runs
/// and delete succeeds.
#[test]
fn poststop_fail() {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["true"]));
    let output = c.bundle.join("rootfs/output");
    let fails = json!({"path": c.bundle.join("rootfs/bin/false"), "args": ["false"]});
    let hooks = json!({"poststop": [fails, appends(&c, &output, "post-stop called")]});
    set_hooks(&mut c, hooks);
    c.create().success();
    c.start().success();
    assert!(reaches(&c, &["stopped"]), "the container did not stop");
    c.delete().success();
    assert_eq!(read(&output), "post-stop called\n");
}
