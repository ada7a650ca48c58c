//! Docker (Debian's docker.io 20.10) with berth registered as a runtime: a private dockerd on
//! a private containerd, the everyday scenarios of `scenarios` and Docker's own.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::harness::containerd::Containerd;
use crate::harness::daemon::Daemon;
use crate::harness::engine::{ENGINE_TIMEOUT, Engine, Kind, Session};
use crate::harness::{
    Runtime, at_exit, engine_scenarios, image_tar, overlay_works, private_dir, readme_snippet,
};

/// The Docker CLI of Debian's docker.io (not whatever `docker` comes first in PATH).
const DOCKER_CLI: &str = "/usr/bin/docker";

/// The private Docker of this test process, started on first use.
pub fn docker() -> &'static Engine {
    static DOCKER: OnceLock<Engine> = OnceLock::new();
    DOCKER.get_or_init(start)
}

/// Starts containerd and dockerd with everything under `private_dir("docker")`, berth
/// registered as runtime `berth` (runc is Docker's built-in `runc`), no networking set up
/// (no bridge, no iptables), overlay2 storage where it works, containers under the cgroup `/berth-engines-<pid>-docker`; loads
/// the test image; registers the teardown.
fn start() -> Engine {
    let dir = private_dir("docker");
    let cgroup_parent = format!("/berth-engines-{}-docker", std::process::id());
    let containerd = Containerd::start(&dir.join("containerd"), false, "");

    // README.md's daemon.json, plus where dockerd 20.10 keeps its identity key (default
    // /etc/docker/key.json).
    let mut config: serde_json::Value = serde_json::from_str(&readme_snippet(r#""runtimes""#))
        .expect("README.md's daemon.json snippet is JSON");
    config["deprecated-key-path"] = dir.join("key.json").to_str().into();
    let config_file = dir.join("daemon.json");
    fs::write(&config_file, config.to_string()).expect("write daemon.json");

    let socket = dir.join("docker.sock");
    let host = format!("unix://{}", socket.display());
    let exec_root = dir.join("exec");
    let storage_driver = if overlay_works() { "overlay2" } else { "vfs" };
    let mut dockerd = Command::new("dockerd");
    dockerd
        .arg("--config-file")
        .arg(&config_file)
        .arg("--containerd")
        .arg(&containerd.socket)
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(&exec_root)
        .arg("--pidfile")
        .arg(dir.join("dockerd.pid"))
        .args(["--host", &host])
        .args(["--storage-driver", storage_driver])
        .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
        .args(["--ip-masq=false", "--ip-forward=false"])
        .args(["--cgroup-parent", &cgroup_parent])
        .current_dir(&dir);
    let cli_config = dir.join("cli");
    let engine = Engine {
        kind: Kind::Docker,
        program: PathBuf::from(DOCKER_CLI),
        global_args: vec!["--host".to_string(), host],
        env: vec![("DOCKER_CONFIG".to_string(), cli_config.into_os_string())],
        run_args: Vec::new(),
        cgroup_parent,
        // dockerd 20.10 gives every runc-like runtime the default one's root.
        runtime_roots: [Runtime::Berth, Runtime::Runc]
            .map(|r| (r, exec_root.join("runtime-runc/moby")))
            .into(),
    };
    let info = |engine: &Engine| {
        engine
            .spawn(&["info"], &dir.join("io"), "info", |_| {})
            .wait(ENGINE_TIMEOUT)
    };
    let dockerd = Daemon::start("dockerd", dockerd, &dir.join("dockerd.log"), || {
        info(&engine).code == 0
    });
    let teardown_engine = engine.clone();
    at_exit(move || teardown(&teardown_engine, dockerd, containerd));

    let tar = image_tar().to_str().expect("utf-8 run dir");
    let load = engine
        .spawn(&["load", "--input", tar], &dir.join("io"), "load", |_| {})
        .wait(ENGINE_TIMEOUT);
    assert_eq!(load.code, 0, "docker load failed:\n{load}");
    engine
}

/// Removes every container of this Docker, stops dockerd and containerd by PID, and removes
/// what they leave; returns what should not have been there.
fn teardown(engine: &Engine, dockerd: Daemon, containerd: Containerd) -> Vec<String> {
    let dir = private_dir("docker");
    let io = dir.join("io");
    let mut leftovers = Vec::new();
    let ps = engine
        .spawn(
            &["ps", "--all", "--quiet", "--no-trunc"],
            &io,
            "ps-all",
            |_| {},
        )
        .wait(ENGINE_TIMEOUT);
    let ids: Vec<&str> = ps.stdout.split_whitespace().collect();
    if !ids.is_empty() {
        let mut rm = vec!["rm", "--force"];
        rm.extend_from_slice(&ids);
        engine
            .spawn(&rm, &io, "rm-all", |_| {})
            .wait(ENGINE_TIMEOUT);
    }
    leftovers.extend(dockerd.stop());
    leftovers.extend(containerd.daemon.stop());
    leftovers.extend(engine.leftovers(&[], &dir));
    leftovers
}

crate::scenarios::shared_scenarios! { engine: docker() }

/// Docker's own scenarios.
pub mod own {
    use super::*;
    use crate::harness::cgroup;

    engine_scenarios! {
        engine: docker(), session: Session, scenarios: crate::docker::own;
            update_restart_policy,
    }

    /// `update --restart` changes no limit, yet Docker hands the runtime every resource as 0
    /// ("unset"): the container keeps its limits, and runs on.
    pub fn update_restart_policy(s: &Session) {
        let name = s.sleeper(&["--memory", "64m", "--cpus", "0.5"]);
        let pid = s.pid(&name);
        let files = if cgroup::is_v1("memory") {
            [
                ("memory", "memory.limit_in_bytes"),
                ("memory", "memory.soft_limit_in_bytes"),
                ("cpu", "cpu.cfs_quota_us"),
                ("cpu", "cpu.cfs_period_us"),
                ("cpu", "cpu.shares"),
            ]
        } else {
            [
                ("memory", "memory.max"),
                ("memory", "memory.low"),
                ("cpu", "cpu.max"),
                ("cpu", "cpu.weight"),
                ("memory", "memory.swap.max"),
            ]
        };
        let read_all = || files.map(|(controller, file)| cgroup::read(pid, controller, file));
        let before = read_all();
        s.cli(&["update", "--restart", "always", &name]).success();
        assert_eq!(read_all(), before, "{files:?}");
        let policy = s.inspect(&name, "{{.HostConfig.RestartPolicy.Name}}");
        assert_eq!(policy, "always");
        assert_eq!(
            s.exec(&[], &name, &["echo", "alive"]).success().stdout,
            "alive\n"
        );
    }
}
