//! What Docker and podman sent the runtime (captures/, see its README), fed to the runtime
//! directly: no engine, so a failure here points at the input that broke. Each replay runs
//! with berth and with runc, as the engine scenarios do.
//!
//! A captured config is made runnable here the way /work/shared/tools/callers-smoke does it:
//! the test rootfs, no hooks, no bind mounts of the engine's own files, no namespace paths, the
//! test's cgroup, no terminal, and `true` as the command (after an init's `--`). Everything
//! else — seccomp, capabilities, devices, mounts, user, rlimits, resources — is as sent.

use std::fs::{self, File};
use std::path::Path;

use serde_json::{Value, json};

use crate::common::{COMMAND_TIMEOUT, Container, MARKER_ENV, Output, set_args};
use crate::harness::{Runtime, cgroup, engine_scenarios};

const CAPTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/engines/captures");

/// One replay's runtime. (`engine_scenarios!` hands every session an engine: replays have
/// none, hence the unit.)
pub struct Replay {
    runtime: Runtime,
}

impl Replay {
    pub fn new(_: &(), runtime: Runtime) -> Self {
        Replay { runtime }
    }

    /// `<runtime> --root <c's root> args…` for container `c`, stdin adjusted by `adjust`.
    #[track_caller]
    fn cmd_with(
        &self,
        c: &Container,
        args: &[&str],
        adjust: impl FnOnce(&mut std::process::Command),
    ) -> Output {
        let root = c.root.to_str().expect("utf-8 temp dir");
        let full = [&["--root", root][..], args].concat();
        c.spawn_program(&self.runtime.binary(), &full, adjust)
            .wait(COMMAND_TIMEOUT)
    }

    #[track_caller]
    fn cmd(&self, c: &Container, args: &[&str]) -> Output {
        self.cmd_with(c, args, |_| {})
    }

    /// A running container of this runtime whose process sleeps, with `resources`.
    #[track_caller]
    fn sleeper(&self, resources: Value) -> Container {
        let mut c = Container::new();
        c.configure(|spec| set_args(spec, &["sleep", "1000"]));
        c.configure_json(|config| config["linux"]["resources"] = resources);
        let bundle = c.bundle.to_str().expect("utf-8 temp dir").to_string();
        self.cmd(&c, &["create", "--bundle", &bundle, &c.id])
            .success();
        self.cmd(&c, &["start", &c.id]).success();
        c
    }

    /// The pid of `c`'s process, from this runtime's `state`.
    #[track_caller]
    fn pid(&self, c: &Container) -> i32 {
        let out = self.cmd(c, &["state", &c.id]).success();
        let state: Value = serde_json::from_str(&out.stdout).expect("state is JSON");
        state["pid"].as_i64().expect("a pid") as i32
    }

    #[track_caller]
    fn remove(&self, c: &Container) {
        self.cmd(c, &["delete", "--force", &c.id]).success();
    }
}

fn capture(name: &str) -> Value {
    let path = Path::new(CAPTURES).join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The captured config `captured`, made runnable in the bundle whose default config is
/// `default` (see the module docs).
fn runnable_here(mut captured: Value, default: &Value) -> Value {
    captured["root"] = json!({ "path": "rootfs", "readonly": captured["root"]["readonly"] });
    captured
        .as_object_mut()
        .expect("a config object")
        .remove("hooks");
    let host_has = |mount: &Value| {
        mount["type"] != "bind"
            || mount["source"]
                .as_str()
                .is_some_and(|s| Path::new(s).exists())
    };
    captured["mounts"]
        .as_array_mut()
        .expect("mounts")
        .retain(host_has);
    for namespace in captured["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
    {
        namespace
            .as_object_mut()
            .expect("a namespace")
            .remove("path");
    }
    captured["linux"]["cgroupsPath"] = default["linux"]["cgroupsPath"].clone();
    let process = &mut captured["process"];
    process["terminal"] = json!(false);
    // An init stays, with `true` as its child.
    let args = process["args"].as_array().expect("args");
    let mut new_args: Vec<Value> = match args.iter().position(|a| a == "--") {
        Some(end) => args[..=end].to_vec(),
        None => Vec::new(),
    };
    new_args.push(json!("true"));
    process["args"] = json!(new_args);
    let marker = default["process"]["env"]
        .as_array()
        .and_then(|env| {
            env.iter()
                .find(|e| e.as_str().is_some_and(|e| e.starts_with(MARKER_ENV)))
        })
        .expect("the default config has the marker")
        .clone();
    process["env"].as_array_mut().expect("env").push(marker);
    captured
}

/// Runs every captured config whose name starts with `engine`-; panics listing the failures.
fn run_configs(r: &Replay, engine: &str) {
    let mut names: Vec<String> = fs::read_dir(CAPTURES)
        .expect("read captures")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{engine}-")) && n.ends_with(".json"))
        .filter(|n| !n.contains("-exec") && !n.contains("-update"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no {engine} configs in {CAPTURES}");
    let failures: Vec<String> = names
        .iter()
        .filter_map(|name| {
            let c = Container::new();
            c.configure_json(|config| *config = runnable_here(capture(name), config));
            let bundle = c.bundle.to_str().expect("utf-8 temp dir");
            let out = r.cmd(&c, &["run", "--bundle", bundle, &c.id]);
            (out.code != 0).then(|| format!("{name}:\n{out}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Docker's configs: --init, --read-only, joined namespaces, --device.
pub fn docker_configs(r: &Replay) {
    run_configs(r, "docker");
}

/// podman's configs: tty, --init, --uidmap, --systemd=always, a pod's infra, --privileged,
/// --device.
pub fn podman_configs(r: &Replay) {
    run_configs(r, "podman");
}

/// A captured `exec --process` file (user 1000:1000, env WHO=exec, cwd /tmp) runs as sent.
fn exec_process(r: &Replay, name: &str) {
    let c = r.sleeper(json!({}));
    let process = c.dir.join("process.json");
    fs::write(&process, capture(name).to_string()).expect("write the process file");
    let process = process.to_str().expect("utf-8 temp dir");
    let out = r.cmd(&c, &["exec", "--process", process, &c.id]).success();
    assert_eq!(out.stdout, "1000\n1000\nexec\n/tmp\n", "{out}");
    r.remove(&c);
}

pub fn docker_exec(r: &Replay) {
    exec_process(r, "docker-exec.json");
}

pub fn podman_exec(r: &Replay) {
    exec_process(r, "podman-exec.json");
}

/// Memory limit, memory soft limit and CPU quota of the container's cgroup.
fn limits(r: &Replay, c: &Container) -> [String; 3] {
    let pid = r.pid(c);
    let files = if cgroup::is_v1("memory") {
        [
            "memory.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "cpu.cfs_quota_us",
        ]
    } else {
        ["memory.max", "memory.low", "cpu.max"]
    };
    let controllers = ["memory", "memory", "cpu"];
    [0, 1, 2].map(|i| cgroup::read(pid, controllers[i], files[i]))
}

/// `update --resources -` with what Docker sends for `update --memory 128m --cpus 1.5 …`:
/// the new limits apply, the unchanged ones (sent as 0) stay.
pub fn docker_update(r: &Replay) {
    let c = r.sleeper(json!({ "memory": { "limit": 67108864, "swap": 134217728 } }));
    let [_, soft_limit, _] = limits(r, &c);
    let resources = Path::new(CAPTURES).join("docker-update.json");
    let out = r.cmd_with(&c, &["update", "--resources", "-", &c.id], |cmd| {
        cmd.stdin(File::open(&resources).expect("open the capture"));
    });
    out.success();
    let [limit, soft_limit_after, quota] = limits(r, &c);
    assert_eq!(limit, "134217728");
    assert_eq!(soft_limit_after, soft_limit, "reservation 0 means unset");
    assert!(quota.starts_with("150000"), "{quota}");
    r.remove(&c);
}

/// `update --resources -` with what Docker sends for `update --restart always`: every limit
/// 0, meaning unset; nothing changes.
pub fn docker_update_restart(r: &Replay) {
    let c = r.sleeper(json!({
        "memory": { "limit": 67108864 },
        "cpu": { "quota": 50000, "period": 100000 }
    }));
    let before = limits(r, &c);
    let resources = Path::new(CAPTURES).join("docker-update-restart.json");
    let out = r.cmd_with(&c, &["update", "--resources", "-", &c.id], |cmd| {
        cmd.stdin(File::open(&resources).expect("open the capture"));
    });
    out.success();
    assert_eq!(limits(r, &c), before);
    r.remove(&c);
}

/// `update --resources=FILE` (conmon's spelling) with what podman sends.
pub fn podman_update(r: &Replay) {
    let c = r.sleeper(json!({ "memory": { "limit": 67108864, "swap": 134217728 } }));
    let resources = Path::new(CAPTURES).join("podman-update.json");
    let flag = format!("--resources={}", resources.display());
    r.cmd(&c, &["update", &flag, &c.id]).success();
    let [limit, _, quota] = limits(r, &c);
    assert_eq!(limit, "134217728");
    assert!(quota.starts_with("150000"), "{quota}");
    r.remove(&c);
}

engine_scenarios! {
    engine: (), session: Replay, scenarios: crate::replay;
    docker_configs,
    podman_configs,
    docker_exec,
    podman_exec,
    docker_update,
    docker_update_restart,
    podman_update,
}
