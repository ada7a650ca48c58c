//! tools/capture-runtime, which records what engines send (BERTH_ENGINES_CAPTURE), records
//! each kind of input and still hands the runtime all of it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::private_dir;

const CAPTURE_RUNTIME: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/capture-runtime");

/// Runs capture-runtime with `runtime args…` in `dir` (stdin from `stdin`); returns its stdout
/// and the one call directory it made.
fn capture(dir: &Path, stdin: &str, runtime: &str, args: &[&str]) -> (String, PathBuf) {
    let calls = dir.join("calls");
    fs::create_dir_all(&calls).expect("create the capture dir");
    let input = dir.join("stdin");
    fs::write(&input, stdin).expect("write stdin");
    let out = Command::new(CAPTURE_RUNTIME)
        .arg(&calls)
        .arg(runtime)
        .args(args)
        .current_dir(dir)
        .stdin(File::open(&input).expect("open stdin"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run capture-runtime");
    assert!(out.status.success(), "capture-runtime failed: {out:?}");
    let recorded: Vec<PathBuf> = fs::read_dir(&calls)
        .expect("read the capture dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(recorded.len(), 1, "one call, one record: {recorded:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    (stdout, recorded[0].clone())
}

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

/// `create` records argv, cwd and the bundle's config.json; the runtime gets the same argv.
#[test]
fn capture_runtime_records_create() {
    let dir = private_dir("capture-create");
    let bundle = dir.join("bundle");
    fs::create_dir_all(&bundle).expect("create bundle");
    fs::write(bundle.join("config.json"), r#"{"ociVersion":"1.0.2"}"#).expect("write config");
    let bundle = bundle.to_str().expect("utf-8 run dir");
    let args = ["--root", "/r", "create", "--bundle", bundle, "id 1"];
    // printf stands in for the runtime: it prints the arguments it was given.
    let (stdout, call) = capture(&dir, "", "printf", &[&["[%s]"][..], &args].concat());
    assert_eq!(
        stdout,
        format!("[--root][/r][create][--bundle][{bundle}][id 1]")
    );
    assert_eq!(
        read(call.join("argv")),
        format!("[%s]\n{}\n", args.join("\n"))
    );
    assert_eq!(read(call.join("cwd")).trim(), dir.to_str().expect("utf-8"));
    assert_eq!(read(call.join("config.json")), r#"{"ociVersion":"1.0.2"}"#);
}

/// `update --resources -` records the resources from stdin and passes them on.
#[test]
fn capture_runtime_records_stdin_resources() {
    let dir = private_dir("capture-update");
    let resources = r#"{"memory":{"limit":0}}"#;
    // `sh -c cat ARG…`: the arguments become $0…, cat copies stdin to stdout.
    let (stdout, call) = capture(
        &dir,
        resources,
        "sh",
        &["-c", "cat", "update", "--resources", "-", "id"],
    );
    assert_eq!(stdout, resources);
    assert_eq!(read(call.join("resources.json")), resources);
}
