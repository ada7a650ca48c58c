//! Commands that report rather than run: --version, spec, list, ps, features.

use std::fs;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde_json::Value;

use crate::common::Container;

#[test]
fn version_has_runc_shape() {
    let c = Container::new();
    let out = c.cmd(&["--version"]).success();
    let mut lines = out.stdout.lines();
    let first = lines.next().unwrap_or_default();
    assert!(
        first.contains(" version "),
        "first line `<name> version X`:\n{out}"
    );
    assert!(
        out.stdout.lines().any(|l| l.starts_with("spec: 1.")),
        "a `spec: 1.x.y` line:\n{out}"
    );
}

#[test]
fn spec_writes_a_default_config_that_runs() {
    let c = Container::new();
    let bundle = c.bundle.to_str().unwrap();
    fs::remove_file(c.bundle.join("config.json")).unwrap();
    c.cmd(&["spec", "--bundle", bundle]).success();
    let spec = Spec::load(c.bundle.join("config.json")).expect("spec output parses as a Spec");
    let process = spec.process().as_ref().expect("a process");
    assert_eq!(
        process.terminal(),
        Some(true),
        "runc's default is an interactive sh"
    );
    assert_eq!(process.args().as_deref(), Some(&["sh".to_string()][..]));
    let kinds: Vec<LinuxNamespaceType> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|ns| ns.typ())
        .collect();
    let mut runcs = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    // runc's adds a cgroup namespace on a cgroup v2 host only; configs written for runc on a
    // v1 host add one themselves.
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        runcs.push(LinuxNamespaceType::Cgroup);
    }
    assert_eq!(kinds, runcs);
    let mounts = spec.mounts().clone().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| m.destination().to_str() == Some("/proc"))
    );

    // And it refuses to overwrite an existing config, as runc does.
    c.cmd(&["spec", "--bundle", bundle]).failure();
}

#[test]
fn list_shows_containers_under_root() {
    let mut c = Container::new();
    c.start_sleeper();
    let out = c.cmd(&["list", "--format", "json"]).success();
    let list: Value = serde_json::from_str(&out.stdout).expect("list JSON");
    let entries = list.as_array().expect("a JSON array");
    assert_eq!(entries.len(), 1, "{out}");
    assert_eq!(entries[0]["id"], c.id.as_str());
    assert_eq!(entries[0]["status"], "running");
    assert_eq!(entries[0]["pid"], c.state_json()["pid"]);

    let quiet = c.cmd(&["list", "--quiet"]).success();
    assert_eq!(quiet.stdout, format!("{}\n", c.id));

    let table = c.cmd(&["list"]).success();
    assert!(table.stdout.starts_with("ID"), "{table}");
    assert!(table.stdout.contains(&c.id), "{table}");
}

#[test]
fn list_of_empty_root_is_empty() {
    let c = Container::new();
    fs::create_dir_all(&c.root).unwrap();
    let out = c.cmd(&["list", "--quiet"]).success();
    assert_eq!(out.stdout, "");
}

#[test]
fn ps_json_lists_container_pids() {
    let mut c = Container::new();
    c.start_sleeper();
    let init = c.state_json()["pid"].clone();
    let out = c.cmd(&["ps", "--format", "json", &c.id]).success();
    let pids: Value = serde_json::from_str(&out.stdout).expect("ps JSON");
    let pids = pids.as_array().expect("a JSON array of pids");
    assert!(pids.contains(&init), "init {init} missing from {out}");
}

#[test]
fn features_describes_the_build() {
    let c = Container::new();
    let out = c.cmd(&["features"]).success();
    let features: Value = serde_json::from_str(&out.stdout).expect("features JSON");
    assert!(features["ociVersionMin"].is_string(), "{out}");
    assert!(features["ociVersionMax"].is_string(), "{out}");
    let namespaces = features["linux"]["namespaces"]
        .as_array()
        .expect("namespaces");
    for kind in ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"] {
        assert!(
            namespaces.iter().any(|n| n == kind),
            "{kind} missing:\n{out}"
        );
    }
}

#[test]
fn single_dash_long_flags_parse() {
    // go-runc may send single-dash long flags (`-no-subreaper`); urfave/cli, which runc uses,
    // accepts them for every flag.
    let c = Container::new();
    c.cmd(&["delete", "-force", &c.id]).success();
    let root = c.root.to_str().unwrap();
    c.spawn_program(
        crate::common::runtime(),
        &["-root", root, "list", "-quiet"],
        |_| {},
    )
    .wait(crate::common::COMMAND_TIMEOUT)
    .success();
}
