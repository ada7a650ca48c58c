//! Error cases: unknown containers, broken bundles, and failures reported through `--log`.

use std::fs;

use serde_json::{Value, json};

use crate::common::{COMMAND_TIMEOUT, Container};

#[test]
fn commands_on_unknown_container_fail() {
    let c = Container::new();
    for args in [
        vec!["state", c.id.as_str()],
        vec!["start", &c.id],
        vec!["kill", &c.id, "KILL"],
        vec!["delete", &c.id],
        vec!["exec", &c.id, "/bin/true"],
        vec!["ps", &c.id],
    ] {
        let out = c.cmd(&args).failure();
        // runc deviates (quality, not spec): its message ("container does not exist") omits
        // the id.
        assert!(
            out.stderr.contains(&c.id),
            "error should name the container:\n{out}"
        );
    }
}

#[test]
fn missing_config_json_is_named() {
    let c = Container::new();
    fs::remove_file(c.bundle.join("config.json")).unwrap();
    let out = c.create().failure();
    assert!(out.stderr.contains("config.json"), "{out}");
    c.assert_no_leaks();
}

#[test]
fn config_with_wrong_type_names_the_field() {
    let c = Container::new();
    // runc deviates (quality, not spec): it names the field but not the file.
    c.configure_json(|config| config["process"]["args"] = json!(5));
    let out = c.create().failure();
    assert!(
        out.stderr.contains("config.json"),
        "should name the file:\n{out}"
    );
    assert!(
        out.stderr.contains("process.args"),
        "should name the field:\n{out}"
    );
    c.assert_no_leaks();
}

#[test]
fn config_with_bad_json_syntax_names_the_file() {
    let c = Container::new();
    // runc deviates (quality, not spec): its message does not name the file.
    fs::write(c.bundle.join("config.json"), "{\"ociVersion\": \"1.0.2\",").unwrap();
    let out = c.create().failure();
    assert!(out.stderr.contains("config.json"), "{out}");
    c.assert_no_leaks();
}

#[test]
fn config_with_missing_rootfs_fails_cleanly() {
    let c = Container::new();
    c.configure_json(|config| config["root"]["path"] = json!("no-such-rootfs"));
    let out = c.create().failure();
    assert!(out.stderr.contains("no-such-rootfs"), "{out}");
    c.assert_no_leaks();
}

#[test]
fn config_with_missing_executable_fails_without_leaks() {
    let mut c = Container::new();
    let out = c.run_args(&["/no/such/binary"]).failure();
    assert!(out.stderr.contains("/no/such/binary"), "{out}");
    c.assert_no_leaks();
}

/// Runs a failing command with `--log FILE --log-format json`; returns the last error entry.
fn logged_error(c: &Container, args: &[&str]) -> Value {
    let log = c.dir.join("log.json");
    let _ = fs::remove_file(&log);
    let mut full = vec!["--log", log.to_str().unwrap(), "--log-format", "json"];
    full.extend_from_slice(args);
    c.cmd(&full).failure();
    let text = fs::read_to_string(&log).expect("the log file is written on failure");
    let entries: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let error = entries
        .iter()
        .rev()
        .find(|e| e["level"] == "error")
        .unwrap_or_else(|| panic!("no error entry in:\n{text}"))
        .clone();
    assert!(
        error["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{error}"
    );
    let time = error["time"].as_str().expect("time is a string");
    assert!(
        time.len() >= 20 && time.contains('T'),
        "time not RFC3339: {time}"
    );
    error
}

#[test]
fn log_format_json_records_failures() {
    // containerd shows users the last error entry of this file: every failure must reach it.
    let c = Container::new();
    logged_error(&c, &["start", &c.id]);
    let bundle = c.bundle.to_str().unwrap();
    c.configure_json(|config| config["process"]["args"] = json!(5));
    let error = logged_error(&c, &["create", "--bundle", bundle, &c.id]);
    assert!(
        error["msg"].as_str().unwrap().contains("process.args"),
        "{error}"
    );
    c.assert_no_leaks();
}

#[test]
fn log_flag_with_equals_form_is_accepted() {
    // conmon passes `--log-format=json --log=FILE`.
    let c = Container::new();
    let log = c.dir.join("log.json");
    let log_flag = format!("--log={}", log.display());
    c.cmd(&[&log_flag, "--log-format=json", "state", &c.id])
        .failure();
    let text = fs::read_to_string(&log).expect("log written");
    assert!(text.contains("\"level\":\"error\""), "{text}");
}

/// Runs `args` (`{id}` stands for the container's id) three ways — errors to stderr, and with
/// `--log FILE` in text and in JSON — and checks that each exits `code` and, when it fails,
/// carries `words` (runc's) on stderr and in the log's last error entry.
#[track_caller]
fn assert_refusal(c: &Container, args: &[&str], words: &str, code: i32) {
    let args: Vec<String> = args.iter().map(|a| a.replace("{id}", &c.id)).collect();
    let words = words.replace("{id}", &c.id);
    let log = c.dir.join("refusal.log");
    let log_flag = format!("--log={}", log.display());
    for log_flags in [
        vec![],
        vec![log_flag.as_str()],
        vec![&log_flag, "--log-format=json"],
    ] {
        let _ = fs::remove_file(&log);
        let mut full: Vec<&str> = log_flags.clone();
        full.extend(args.iter().map(String::as_str));
        let out = c.cmd(&full);
        assert_eq!(out.code, code, "{out}");
        if code == 0 {
            continue;
        }
        assert!(
            out.stderr.contains(&words),
            "stderr lacks {words:?}:\n{out}"
        );
        if log_flags.is_empty() {
            continue;
        }
        let text = fs::read_to_string(&log).expect("the log file is written on failure");
        let last_error = text
            .lines()
            .rfind(|line| line.contains("error"))
            .unwrap_or_else(|| panic!("no error in the log of {out}:\n{text}"));
        assert!(
            last_error.contains(&words),
            "the log lacks {words:?}:\n{text}"
        );
    }
}

/// What containerd's shim and podman match in a failed command's output (`does not exist`,
/// `container not running` ...): runc 1.1.5's words, checked against it with
/// `BERTH_BIN=/usr/sbin/runc`. The exec refusals also exit 255, as runc's.
#[test]
fn refusals_carry_runcs_words() {
    let mut c = Container::new();
    let missing = ["state", "kill", "delete", "pause", "resume", "start", "ps"];
    for command in missing {
        assert_refusal(&c, &[command, "{id}"], "container does not exist", 1);
    }
    assert_refusal(
        &c,
        &["kill", "--all", "{id}", "9"],
        "container does not exist",
        1,
    );
    assert_refusal(
        &c,
        &["exec", "{id}", "true"],
        "container does not exist",
        255,
    );
    assert_refusal(&c, &["delete", "--force", "{id}"], "", 0);

    c.start_sleeper();
    assert_refusal(&c, &["resume", "{id}"], "container not paused", 1);
    assert_refusal(
        &c,
        &["start", "{id}"],
        "cannot start an already running container",
        1,
    );
    let not_stopped = "cannot delete container {id} that is not stopped";
    assert_refusal(
        &c,
        &["delete", "{id}"],
        &format!("{not_stopped}: running"),
        1,
    );

    c.cmd(&["pause", &c.id]).success();
    assert_refusal(&c, &["pause", "{id}"], "container not running", 1);
    let start_paused = "cannot start a container in the paused state";
    assert_refusal(&c, &["start", "{id}"], start_paused, 1);
    assert_refusal(
        &c,
        &["delete", "{id}"],
        &format!("{not_stopped}: paused"),
        1,
    );
    let exec_paused = "cannot exec in a paused container (use --ignore-paused to override)";
    assert_refusal(&c, &["exec", "{id}", "true"], exec_paused, 255);

    c.cmd(&["resume", &c.id]).success();
    c.kill("KILL").success();
    c.wait_for_status("stopped", COMMAND_TIMEOUT);
    assert_refusal(&c, &["kill", "{id}", "KILL"], "container not running", 1);
    assert_refusal(&c, &["kill", "--all", "{id}", "9"], "", 0);
    assert_refusal(&c, &["pause", "{id}"], "container not running", 1);
    assert_refusal(&c, &["resume", "{id}"], "container not paused", 1);
    let start_stopped = "cannot start a container that has stopped";
    assert_refusal(&c, &["start", "{id}"], start_stopped, 1);
    let exec_stopped = "cannot exec in a stopped container";
    assert_refusal(&c, &["exec", "{id}", "true"], exec_stopped, 255);
    assert_refusal(
        &c,
        &["update", "--pids-limit", "10", "{id}"],
        "container not running",
        1,
    );
    let events = "container with id {id} is not running";
    assert_refusal(&c, &["events", "--stats", "{id}"], events, 1);
}
