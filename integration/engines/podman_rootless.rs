//! Rootless podman: podman run by an unprivileged user of the host (made for this test process
//! with useradd, removed at exit), the way most podman users run containers. podman keeps a
//! user namespace in which the user is root, and conmon runs the runtime there as root, with
//! neither `--root` nor `$USER`. Containers get no cgroup of their own on cgroup v1, and no
//! network here (`--network none`: no slirp4netns).

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common;
use crate::common::host_user::HostUser;
use crate::harness::engine::{ENGINE_TIMEOUT, Engine, Kind, Session};
use crate::harness::{Runtime, at_exit, engine_scenarios, image_tar, private_dir};

/// The private rootless podman of this test process, set up on first use.
pub fn rootless_podman() -> &'static Engine {
    static PODMAN: OnceLock<Engine> = OnceLock::new();
    PODMAN.get_or_init(set_up)
}

/// The uid of the user that runs it, once set up.
static USER_UID: OnceLock<u32> = OnceLock::new();

/// Makes the user, writes its configuration under `private_dir("podman-rootless")`, loads the
/// test image as the user, registers the teardown.
fn set_up() -> Engine {
    let dir = private_dir("podman-rootless");
    let user = HostUser::new(&format!("podman{}", std::process::id()));
    USER_UID
        .set(user.uid)
        .expect("one rootless podman per test process");
    let (storage, run, home, runtime_dir) = (
        dir.join("storage"),
        dir.join("run"),
        dir.join("home"),
        dir.join("xdg"),
    );
    // vfs: rootless overlay mounts depend on the kernel and podman's version.
    let mut env = crate::podman::write_config(&dir, &storage, &run, "vfs");
    for made in [&home, &runtime_dir] {
        fs::create_dir_all(made).expect("create the user's directories");
    }
    fs::set_permissions(&runtime_dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    chown_tree(&dir, &user);
    env.extend([
        ("HOME".to_string(), home.into_os_string()),
        (
            "XDG_RUNTIME_DIR".to_string(),
            runtime_dir.clone().into_os_string(),
        ),
        ("USER".to_string(), user.name.clone().into()),
    ]);
    let (uid, gid) = (user.uid.to_string(), user.gid.to_string());
    let engine = Engine {
        kind: Kind::Podman,
        program: "setpriv".into(),
        global_args: [
            "--reuid",
            &uid,
            "--regid",
            &gid,
            "--clear-groups",
            "--",
            "podman",
            "--root",
            path(&storage),
            "--runroot",
            path(&run),
        ]
        .map(String::from)
        .into(),
        env,
        run_args: ["--pull", "never"].map(String::from).into(),
        // None is made: rootless podman gives containers no cgroup of their own on v1.
        cgroup_parent: format!("/berth-engines-{}-podman-rootless", std::process::id()),
        // Where runc and berth keep a rootless caller's state without --root.
        runtime_roots: [Runtime::Berth, Runtime::Runc]
            .map(|r| {
                let binary = r.binary();
                let name = binary.file_name().expect("a runtime binary's name");
                (r, runtime_dir.join(name))
            })
            .into(),
        runs_as: Some((user.uid, user.gid)),
    };
    let teardown_engine = engine.clone();
    at_exit(move || teardown(&teardown_engine, user));

    let load = engine
        .spawn(
            &["load", "--input", path(image_tar())],
            &dir,
            "load",
            |_| {},
        )
        .wait(ENGINE_TIMEOUT);
    assert_eq!(load.code, 0, "rootless podman load failed:\n{load}");
    engine
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn chown_tree(dir: &Path, user: &HostUser) {
    chown(dir, Some(user.uid), Some(user.gid)).expect("chown to the test user");
    for entry in fs::read_dir(dir).expect("read the podman dir") {
        let entry = entry.expect("a directory entry");
        if entry.file_type().expect("file type").is_dir() {
            chown_tree(&entry.path(), user);
        } else {
            chown(entry.path(), Some(user.uid), Some(user.gid)).expect("chown to the test user");
        }
    }
}

/// Removes every container, then podman's pause process (which holds the user namespace, and
/// would keep userdel from removing the user), then the user; returns what should not have
/// been there.
fn teardown(engine: &Engine, user: HostUser) -> Vec<String> {
    let dir = private_dir("podman-rootless");
    let mut leftovers = Vec::new();
    let rm = ["rm", "--all", "--force", "--time", "0"];
    let out = engine
        .spawn(&rm, &dir, "rm-all", |_| {})
        .wait(ENGINE_TIMEOUT);
    if out.code != 0 {
        leftovers.push(format!("rootless podman rm --all failed:\n{out}"));
    }
    // In containers.conf's tmp_dir (see podman::write_config).
    let pause_pid = fs::read_to_string(dir.join("tmp/pause.pid"));
    if let Some(pid) = pause_pid.ok().and_then(|pid| pid.trim().parse().ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        wait_until_gone(pid);
    }
    leftovers.extend(kill_processes_of(&user));
    leftovers.extend(engine.leftovers(&[], &dir));
    drop(user);
    leftovers
}

/// Up to 5 s for `pid` to be reaped (by the host's init: podman detached it).
fn wait_until_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills whatever still runs as the user (a conmon, a container's process), described; not
/// zombies, which hold nothing and wait for the host's init.
fn kill_processes_of(user: &HostUser) -> Vec<String> {
    let uid = user.uid.to_string();
    let mut killed = Vec::new();
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let status = fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            let value = status.lines().find_map(|line| line.strip_prefix(name));
            value.and_then(|v| v.split_whitespace().next())
        };
        if field("Uid:") == Some(uid.as_str()) && field("State:") != Some("Z") {
            killed.push(format!("process {pid}: {}", common::describe_process(pid)));
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    killed
}

engine_scenarios! {
    engine: rootless_podman(), session: Session, scenarios: crate::podman_rootless;
    run_and_exec,
    pid_namespace_of_another_container,
    exec_with_the_users_id_kept,
}

/// `run` in the foreground and `exec` into a running container: root inside, and the exec'd
/// process in the container's pid namespace. berth's exec once had to go back to the host's pid
/// namespace, which root in a user namespace may not enter.
pub fn run_and_exec(s: &Session) {
    assert_eq!(s.run(&[], &["id", "-u"]).success().stdout, "0\n");
    let name = s.sleeper(&[]);
    let script = "id -u; readlink /proc/self/ns/pid; readlink /proc/1/ns/pid";
    let out = s.exec(&[], &name, &["sh", "-c", script]).success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(
        lines[1], lines[2],
        "exec is not in the container's pid namespace"
    );
}

/// `--pid container:<first>`: the runtime is given the first container's pid namespace by path.
pub fn pid_namespace_of_another_container(s: &Session) {
    let first = s.sleeper(&[]);
    let second = s.sleeper(&["--pid", &format!("container:{first}")]);
    let link = |name: &str| fs::read_link(format!("/proc/{}/ns/pid", s.pid(name))).expect("ns");
    assert_eq!(link(&second), link(&first));
}

/// `--userns keep-id`: the container has a user namespace of its own, mapping the user's uid
/// to itself, which exec joins.
pub fn exec_with_the_users_id_kept(s: &Session) {
    let name = s.sleeper(&["--userns", "keep-id"]);
    let out = s.exec(&[], &name, &["id", "-u"]).success();
    let uid = USER_UID.get().expect("set up");
    assert_eq!(out.stdout.trim(), uid.to_string(), "{out}");
}

/// The shared scenarios (see `scenarios::shared_scenarios!`) rootless podman can run here:
/// not those that need a cgroup of the container's own (limits, pause, OOM, stats, update),
/// which rootless podman does not give on cgroup v1 (they fail with runc too), nor `devices`
/// (no device nodes in a user namespace); nor `instant_exit_50`, a minute of the same runs.
pub mod shared {
    use super::*;

    engine_scenarios! {
        engine: rootless_podman(), session: Session, scenarios: crate::scenarios;
        runtime_state, run_exit_code, run_command_not_found, exec_command_not_found, run_stdin,
        run_tty, run_env, run_workdir, run_hostname, run_user, run_user_unknown, cap_add_drop,
        read_only, tmpfs, bind_volume, network_none, run_init, exec_exit_code, exec_user,
        exec_tty, ps_top, restart, stop, stop_signal_rtmin, kill, rm_force_running, logs,
        security_opts, ulimits, sysctls, shm_size, oom_score_adj, join_namespaces, pid_host,
        cgroupns_private, uts_host, commit, restart_policy,
    }
}
