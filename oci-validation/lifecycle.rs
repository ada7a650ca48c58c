//! The operations of runtime.md — state, create, start, kill, delete — and their errors, plus
//! the CLI behaviour runtime-tools checks with them (`--pid-file`, config handling).

use std::fs;

use serde_json::Value;

use crate::common::{Container, set_args};
use crate::suite::{self, Checks, reaches};

/// A container whose process appends "process called" to /output in its rootfs.
fn writes_output() -> (Container, std::path::PathBuf) {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["sh", "-c", "echo 'process called' >> /output"]));
    let output = c.bundle.join("rootfs/output");
    (c, output)
}

/// runtime-tools `create`: an id is required, create makes a container `state` reports, and an
/// id already in use is refused.
#[test]
fn create() {
    let c = suite::container();
    let bundle = c.bundle.to_str().unwrap();
    let mut checks = Checks::default();
    checks.fails(
        "create without an id",
        &c.cmd(&["create", "--bundle", bundle]),
    );
    checks.succeeds("create", &c.create());
    let state = c.state_json();
    checks.equal("state id", state["id"].as_str(), Some(c.id.as_str()));
    checks.fails("create with an id in use", &c.create());
    checks.equal(
        "status after a refused create",
        c.status(),
        Some("created".into()),
    );
    checks.done();
}

/// runtime-tools `start`: an id is required; only a created container starts; process.args
/// run at start, not before; a second start has no effect; a config without `process` cannot
/// be started.
#[test]
fn start() {
    let (mut c, output) = writes_output();
    let mut checks = Checks::default();
    checks.fails("start without an id", &c.cmd(&["start"]));
    checks.fails("start of a container that does not exist", &c.start());
    checks.succeeds("create", &c.create());
    checks.check(!output.exists(), "process.args ran before start");
    checks.succeeds("start", &c.start());
    checks.check(reaches(&c, &["stopped"]), "the container never stopped");
    let first = fs::read_to_string(&output).unwrap_or_default();
    checks.equal("the process's output", first.as_str(), "process called\n");
    checks.fails("start of a stopped container", &c.start());
    let again = fs::read_to_string(&output).unwrap_or_default();
    checks.equal("output after a refused start", again, first);
    checks.succeeds("delete", &c.delete());

    // The spec: "This operation MUST generate an error if `process` was not set." A runtime
    // may refuse such a config at create already.
    suite::edit(&mut c, |config| {
        config.as_object_mut().unwrap().remove("process");
    });
    let _ = fs::remove_file(&output);
    let created = c.create();
    let started = c.start();
    checks.check(
        created.code != 0 || started.code != 0,
        format!("a container without process started:\n{created}\n{started}"),
    );
    checks.check(!output.exists(), "something ran without a process");
    checks.done();
}

/// runtime-tools `state`: an id is required, an unknown id is an error, and the state of a
/// created container is the spec's.
#[test]
fn state() {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["true"]));
    let mut checks = Checks::default();
    checks.fails("state without an id", &c.cmd(&["state"]));
    checks.fails("state of a container that does not exist", &c.state());
    checks.succeeds("create", &c.create());
    let state = c.state_json();
    checks.check(
        state["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        format!("ociVersion: {state}"),
    );
    checks.equal("id", state["id"].as_str(), Some(c.id.as_str()));
    checks.equal("status", state["status"].as_str(), Some("created"));
    checks.check(
        state["pid"].as_i64().is_some_and(|pid| pid > 0),
        format!("pid of a created container: {state}"),
    );
    checks.equal("bundle", state["bundle"].as_str(), c.bundle.to_str());
    checks.done();
}

/// runtime-tools `kill`: an id is required; signals go to created and running containers only.
#[test]
fn kill() {
    let mut checks = Checks::default();
    let c = suite::container();
    checks.fails("kill without an id", &c.cmd(&["kill"]));
    checks.fails("kill of a container that does not exist", &c.kill("KILL"));

    let mut created = suite::container();
    created.configure(|spec| set_args(spec, &["true"]));
    checks.succeeds("create", &created.create());
    checks.succeeds("kill of a created container", &created.kill("KILL"));
    checks.check(reaches(&created, &["stopped"]), "killed, it did not stop");

    let mut stopped = suite::container();
    stopped.configure(|spec| set_args(spec, &["true"]));
    checks.succeeds("create", &stopped.create());
    checks.succeeds("start", &stopped.start());
    checks.check(reaches(&stopped, &["stopped"]), "`true` did not stop");
    checks.fails("kill of a stopped container", &stopped.kill("KILL"));

    let mut running = suite::container();
    running.configure(|spec| set_args(spec, &["sleep", "30"]));
    checks.succeeds("create", &running.create());
    checks.succeeds("start", &running.start());
    checks.succeeds("kill of a running container", &running.kill("KILL"));
    checks.check(reaches(&running, &["stopped"]), "killed, it did not stop");
    checks.done();
}

/// runtime-tools `kill_no_effect`: a signal to a stopped container changes nothing.
#[test]
fn kill_no_effect() {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["true"]));
    c.create().success();
    c.start().success();
    assert!(reaches(&c, &["stopped"]), "`true` did not stop");
    let before: Value = c.state_json();
    let _ = c.kill("KILL");
    assert_eq!(
        c.state_json(),
        before,
        "kill of a stopped container changed its state"
    );
}

/// runtime-tools `killsig`: kill sends the signal asked for (each trapped by the process).
#[test]
fn killsig() {
    let mut checks = Checks::default();
    for signal in ["TERM", "USR1", "HUP"] {
        let mut c = suite::container();
        let script = format!(
            "trap 'touch /{signal}; exit 0' {signal}; touch /ready; \
                              while :; do sleep 0.1; done"
        );
        c.configure(|spec| set_args(spec, &["sh", "-c", &script]));
        c.create().success();
        c.start().success();
        let ready = c.bundle.join("rootfs/ready");
        let deadline = std::time::Instant::now() + suite::SETTLE;
        while !ready.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        checks.succeeds(&format!("kill {signal}"), &c.kill(signal));
        checks.check(reaches(&c, &["stopped"]), format!("{signal}: did not stop"));
        checks.check(
            c.bundle.join("rootfs").join(signal).exists(),
            format!("the process never got {signal}"),
        );
    }
    checks.done();
}

/// runtime-tools `delete`: an id is required; created and running containers are not deleted
/// (and keep working).
#[test]
fn delete() {
    let mut checks = Checks::default();
    let c = suite::container();
    checks.fails("delete without an id", &c.cmd(&["delete"]));

    let mut created = suite::container();
    created.configure(|spec| set_args(spec, &["true"]));
    checks.succeeds("create", &created.create());
    checks.fails("delete of a created container", &created.delete());
    checks.equal("status after", created.status(), Some("created".into()));

    let mut running = suite::container();
    running.configure(|spec| set_args(spec, &["sleep", "30"]));
    checks.succeeds("create", &running.create());
    checks.succeeds("start", &running.start());
    checks.fails("delete of a running container", &running.delete());
    checks.equal("status after", running.status(), Some("running".into()));
    checks.done();
}

/// runtime-tools `config_updates_without_affect`: changing config.json after create does not
/// change the container: it starts as it was created.
#[test]
fn config_updates_without_affect() {
    let mut c = suite::container();
    let script = "cat /proc/self/oom_score_adj /proc/sys/net/ipv4/ip_forward > /result";
    c.configure(|spec| set_args(spec, &["sh", "-c", script]));
    suite::edit(&mut c, |config| {
        config["process"]["oomScoreAdj"] = 100.into();
        config["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
    });
    c.create().success();
    fs::write(c.bundle.join("config.json"), r#"{"ociVersion": "1.0.0"}"#).unwrap();
    c.start().success();
    assert!(reaches(&c, &["stopped"]), "the container did not stop");
    let result = fs::read_to_string(c.bundle.join("rootfs/result")).unwrap_or_default();
    assert_eq!(result, "100\n1\n", "the process did not run as created");
}

/// runtime-tools `pidfile`: `create --pid-file` writes the container's pid.
#[test]
fn pidfile() {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["true"]));
    let pid_file = c.dir.join("pidfile");
    c.create_with(&["--pid-file", pid_file.to_str().unwrap()])
        .success();
    let written = fs::read_to_string(&pid_file).expect("the pid file");
    let state = c.state_json();
    assert_eq!(written.trim().parse::<i64>().ok(), state["pid"].as_i64());
}

/// runtime-tools `misc_props`: unknown annotations and properties are ignored, an invalid
/// ociVersion is an error.
#[test]
fn misc_props() {
    let mut checks = Checks::default();
    let run_with = |edit: &dyn Fn(&mut Value)| {
        let mut c = suite::container();
        c.configure(|spec| set_args(spec, &["true"]));
        // Raw JSON: the harness's typed spec would drop an unknown property.
        c.configure_json(|config| edit(config));
        let out = c.run();
        (c, out)
    };
    let (_c, out) = run_with(&|config| {
        config["annotations"] = serde_json::json!({"org.example.unknown-key": ""});
    });
    checks.succeeds("an unknown annotation", &out);
    let (_c, out) = run_with(&|config| config["unknown"] = "unknown".into());
    checks.succeeds("an unknown property", &out);
    let (_c, out) = run_with(&|config| config["ociVersion"] = "invalid".into());
    checks.fails("ociVersion \"invalid\"", &out);
    checks.done();
}
