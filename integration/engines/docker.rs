//! Docker (Debian's docker.io 20.10) with berth registered as a runtime: a private dockerd on
//! a private containerd, the everyday scenarios of `scenarios` and Docker's own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::host_user::HostUser;
use crate::common::{systemd_unit_loaded, systemd_unit_property};
use crate::harness::containerd::Containerd;
use crate::harness::daemon::Daemon;
use crate::harness::engine::{ENGINE_TIMEOUT, Engine, Kind, Session};
use crate::harness::{
    CgroupDriver, Runtime, at_exit, engine_scenarios, image_tar, overlay_works, private_dir,
    readme_block, readme_snippet, stop_slice,
};

/// The Docker CLI of Debian's docker.io (not whatever `docker` comes first in PATH).
const DOCKER_CLI: &str = "/usr/bin/docker";

/// The private Docker of this test process, started on first use.
pub fn docker() -> &'static Engine {
    static DOCKER: OnceLock<Engine> = OnceLock::new();
    DOCKER.get_or_init(|| start(CgroupDriver::Cgroupfs, None))
}

/// Another private Docker, with `userns-remap` to a user made for it: every container in a user
/// namespace that maps its root to the user's subordinate ids.
pub fn docker_userns_remap() -> &'static Engine {
    static DOCKER: OnceLock<Engine> = OnceLock::new();
    DOCKER.get_or_init(|| {
        let user = HostUser::new(&format!("dockremap{}", std::process::id()));
        start(CgroupDriver::Cgroupfs, Some(user))
    })
}

/// Another private Docker, with README.md's line for systemd hosts: needs systemd as PID 1
/// (`make test-systemd`).
pub fn docker_systemd() -> &'static Engine {
    static DOCKER: OnceLock<Engine> = OnceLock::new();
    DOCKER.get_or_init(|| start(CgroupDriver::Systemd, None))
}

/// Starts containerd and dockerd with everything under a private dir, berth registered as
/// runtime `berth` (runc is Docker's built-in `runc`), no networking set up (no bridge, no
/// iptables), overlay2 storage where it works, containers under a cgroup parent of this
/// process (`/berth-engines-<pid>-docker`, or with systemd (`native.cgroupdriver=systemd`)
/// scopes `docker-<id>.scope` in the slice `berth_engines_<pid>_docker.slice`); loads the test
/// image; registers the teardown. With `userns_remap`, dockerd remaps to that user, which the
/// teardown removes.
fn start(driver: CgroupDriver, userns_remap: Option<HostUser>) -> Engine {
    let (dir, parent_arg, cgroup_parent) = match driver {
        CgroupDriver::Cgroupfs => {
            let name = if userns_remap.is_some() {
                "docker-userns"
            } else {
                "docker"
            };
            let parent = format!("/berth-engines-{}-{name}", std::process::id());
            (private_dir(name), parent.clone(), parent)
        }
        CgroupDriver::Systemd => {
            // No `-` in the name: systemd would nest the slice in parent slices.
            let slice = format!("berth_engines_{}_docker.slice", std::process::id());
            (
                private_dir("docker-systemd"),
                slice.clone(),
                format!("/{slice}"),
            )
        }
    };
    let containerd = Containerd::start(&dir.join("containerd"), false, "");

    // README.md's daemon.json (and its systemd line), plus where dockerd 20.10 keeps its
    // identity key (default /etc/docker/key.json).
    let mut config: serde_json::Value = serde_json::from_str(&readme_snippet(r#""runtimes""#))
        .expect("README.md's daemon.json snippet is JSON");
    if driver == CgroupDriver::Systemd {
        let systemd: serde_json::Value = serde_json::from_str(&readme_block(r#""exec-opts""#))
            .expect("README.md's daemon.json line for systemd is JSON");
        for (key, value) in systemd.as_object().expect("a JSON object") {
            config[key] = value.clone();
        }
    }
    config["deprecated-key-path"] = dir.join("key.json").to_str().into();
    if let Some(user) = &userns_remap {
        config["userns-remap"] = user.name.as_str().into();
    }
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
        .args(["--cgroup-parent", &parent_arg])
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
        runs_as: None,
    };
    let io = dir.join("io");
    let info = |engine: &Engine| {
        engine
            .spawn(&["info"], &io, "info", |_| {})
            .wait(ENGINE_TIMEOUT)
    };
    let dockerd = Daemon::start("dockerd", dockerd, &dir.join("dockerd.log"), || {
        info(&engine).code == 0
    });
    let teardown_engine = engine.clone();
    let teardown_dir = dir.clone();
    at_exit(move || {
        let leftovers = teardown(&teardown_engine, &teardown_dir, driver, dockerd, containerd);
        drop(userns_remap);
        leftovers
    });

    let tar = image_tar().to_str().expect("utf-8 run dir");
    let load = engine
        .spawn(&["load", "--input", tar], &io, "load", |_| {})
        .wait(ENGINE_TIMEOUT);
    assert_eq!(load.code, 0, "docker load failed:\n{load}");
    engine
}

/// Removes every container of this Docker, stops dockerd and containerd by PID, and removes
/// what they leave in `dir` and below its cgroup parent (with systemd a slice, then stopped so
/// that systemd forgets it); returns what should not have been there.
fn teardown(
    engine: &Engine,
    dir: &Path,
    driver: CgroupDriver,
    dockerd: Daemon,
    containerd: Containerd,
) -> Vec<String> {
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
    leftovers.extend(engine.leftovers(&[], dir));
    if driver == CgroupDriver::Systemd {
        leftovers.extend(stop_slice(engine.cgroup_parent.trim_start_matches('/')));
    }
    leftovers
}

crate::scenarios::shared_scenarios! { engine: docker() }

/// The shared scenarios (see `scenarios::shared_scenarios!`) under `userns-remap`, but
/// `devices` and `pid_host`, which Docker does not allow there (they fail with runc too).
/// Docker sends `oomScoreAdj` with every process, which berth's init could not write from
/// inside the new user namespace until the runtime set it for the clone.
pub mod userns_remap {
    use super::*;

    engine_scenarios! {
        engine: docker_userns_remap(), session: Session, scenarios: crate::scenarios;
        runtime_state, run_exit_code, run_command_not_found, exec_command_not_found, run_stdin,
        run_tty, run_env, run_workdir, run_hostname, run_user, run_user_unknown, cap_add_drop,
        read_only, tmpfs, bind_volume, network_none, run_init, memory_limit, pids_limit,
        cpu_limit, oom_kill, exec_exit_code, exec_user, exec_tty, ps_top, pause_unpause, stats,
        update, restart, stop, stop_signal_rtmin, kill, rm_force_running, rm_force_paused, logs,
        instant_exit_50, security_opts, ulimits, sysctls, shm_size, oom_score_adj, cpuset,
        memory_reservation, join_namespaces, cgroupns_private, uts_host, commit, restart_policy,
    }
}

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

/// Docker with the systemd cgroup driver (README.md's `exec-opts` line), on a host with systemd
/// as PID 1: the shared scenarios that set, read, change and freeze limits, and that each
/// container is a scope of systemd with its limits. Ignored elsewhere; `make test-systemd` runs
/// them.
pub mod systemd {
    use super::*;

    engine_scenarios! {
        #[ignore = "needs systemd as PID 1: make test-systemd"]
        engine: docker_systemd(), session: Session, scenarios: crate::scenarios;
            memory_limit,
            cpu_limit,
            oom_kill,
            update,
            pause_unpause,
            stats,
            rm_force_paused,
    }

    pub mod own {
        use super::*;

        engine_scenarios! {
            #[ignore = "needs systemd as PID 1: make test-systemd"]
            engine: docker_systemd(), session: Session, scenarios: crate::docker::systemd::own;
                a_container_is_a_scope_with_its_limits,
        }

        /// The container runs in `docker-<id>.scope` in Docker's slice, whose properties hold
        /// its limits (systemd enforces them, not only the cgroup files); `rm` stops the unit.
        pub fn a_container_is_a_scope_with_its_limits(s: &Session) {
            assert_eq!(
                s.cli(&["info", "--format", "{{.CgroupDriver}}"])
                    .success()
                    .stdout
                    .trim(),
                "systemd"
            );
            let name = s.sleeper(&["--memory", "64m", "--pids-limit", "20"]);
            let id = s.id(&name).expect("a running container has an id");
            let unit = format!("docker-{id}.scope");
            let slice = s.engine.cgroup_parent.trim_start_matches('/');
            let membership = fs::read_to_string(format!("/proc/{}/cgroup", s.pid(&name)))
                .expect("read the container's /proc/PID/cgroup");
            assert_eq!(membership.trim(), format!("0::/{slice}/{unit}"));
            assert_eq!(systemd_unit_property(&unit, "Slice"), slice);
            assert_eq!(systemd_unit_property(&unit, "MemoryMax"), "67108864");
            assert_eq!(systemd_unit_property(&unit, "TasksMax"), "20");
            s.cli(&s.engine.rm_args(&name)).success();
            assert!(!systemd_unit_loaded(&unit), "{unit} outlived `docker rm`");
        }
    }
}
