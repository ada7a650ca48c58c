//! Error cases: unknown containers, broken bundles, and failures reported through `--log`.

use std::fs;

use serde_json::{Value, json};

use crate::common::Container;

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
