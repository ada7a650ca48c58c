//! The systemd cgroup driver (`--systemd-cgroup`), checked against a real systemd: in the VM of
//! `tools/vm/test-systemd`, where the harness passes the flag to every command (see
//! `common::systemd_cgroup`), the container's unit is read back with `systemctl show`. On a host
//! without systemd (the development host) the flag must fail cleanly.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oci_spec::runtime::{HookBuilder, HooksBuilder, LinuxNamespaceType};
use serde_json::json;

use crate::common::host_user::HostUser;
use crate::common::readme::readme_block;
use crate::common::{
    COMMAND_TIMEOUT, Container, Output, remove_namespace, runtime, set_args, systemd_cgroup,
    systemd_unit_loaded, systemd_unit_property,
};
use crate::rootless::RootlessContainer;

/// Whether this test runs here: the driver's tests need the harness in systemd mode.
fn on_systemd() -> bool {
    if !systemd_cgroup() {
        println!("skipped: needs a systemd host (tools/vm/test-systemd)");
    }
    systemd_cgroup()
}

/// Whether the controllers are cgroup v1's: systemd's hybrid layout (`tools/vm/test-v2
/// --systemd-v1`), where some of systemd's properties and the cgroup files have other names.
fn cgroup_v1() -> bool {
    !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// systemd's name of a limit's property on this host: `v2`'s, or on cgroup v1 `v1`'s.
fn property_name(v2: &'static str, v1: &'static str) -> &'static str {
    if cgroup_v1() { v1 } else { v2 }
}

/// The unit's cgroup file `files.1`, or on cgroup v1 `files.0` in `controller`'s hierarchy;
/// trimmed.
#[track_caller]
fn unit_cgroup_file(unit: &str, controller: &str, files: (&str, &str)) -> String {
    let path = if cgroup_v1() {
        format!(
            "/sys/fs/cgroup/{controller}/system.slice/{unit}/{}",
            files.0
        )
    } else {
        format!("/sys/fs/cgroup/system.slice/{unit}/{}", files.1)
    };
    let content = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    content.trim().to_string()
}

/// A running container with `resources` merged into the default config's.
fn sleeper_with(resources: serde_json::Value) -> Container {
    let mut c = Container::new();
    c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().expect("default config has linux");
        let mut merged = serde_json::to_value(linux.resources()).expect("serialize resources");
        for (key, value) in resources.as_object().expect("an object") {
            merged[key] = value.clone();
        }
        linux.set_resources(Some(
            serde_json::from_value(merged).expect("resources parse"),
        ));
    });
    c.start_sleeper();
    c
}

#[test]
fn without_systemd_the_flag_is_a_one_line_error_that_changes_nothing() {
    if Path::new("/run/systemd/system").exists() {
        println!("skipped: systemd runs here");
        return;
    }
    let mut c = Container::new();
    let bundle = c.bundle.to_str().unwrap().to_string();
    let run = |c: &Container| {
        c.cmd(&["--systemd-cgroup", "run", "--bundle", &bundle, &c.id])
            .failure()
    };
    // The harness's cgroupfs path is no systemd one: refused by name first.
    let out = run(&c);
    assert!(out.stderr.contains("linux.cgroupsPath"), "{out}");
    assert!(out.stderr.contains("slice:prefix:name"), "{out}");
    let systemd_path = format!("system.slice:berth-it:{}", c.id);
    c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().expect("default config has linux");
        linux.set_cgroups_path(Some(PathBuf::from(systemd_path)));
    });
    let out = run(&c);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    assert!(out.stderr.contains("systemd is not running"), "{out}");
    assert!(out.stderr.contains("without --systemd-cgroup"), "{out}");
    assert!(!c.state_dir().exists(), "a state dir was left");
    let scope = format!("system.slice/berth-it-{}.scope", c.id);
    let made: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path().join(&scope))
        .chain([Path::new("/sys/fs/cgroup").join(&scope)])
        .filter(|d| d.exists())
        .collect();
    assert!(made.is_empty(), "cgroups were made: {made:?}");
    c.assert_no_leaks();
}

/// `out` is a one-line error with each of `words`, and the container left nothing behind (no
/// state, process, cgroup or unit: see `Container::leaks`).
#[track_caller]
fn assert_refused_leaving_nothing(c: &Container, out: &Output, words: &[&str]) {
    assert_ne!(out.code, 0, "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    for word in words {
        assert!(out.stderr.contains(word), "no {word:?} in:\n{out}");
    }
    c.assert_no_leaks();
}

#[test]
fn a_malformed_cgroups_path_is_a_one_line_error_that_changes_nothing() {
    if !on_systemd() {
        return;
    }
    let mut c = Container::new();
    c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().expect("default config has linux");
        linux.set_cgroups_path(Some(PathBuf::from("system.slice:berth-it")));
    });
    let out = c.cmd(&["run", "--bundle", c.bundle.to_str().unwrap(), &c.id]);
    let words = [
        "linux.cgroupsPath",
        "system.slice:berth-it",
        "slice:prefix:name",
    ];
    assert_refused_leaving_nothing(&c, &out, &words);
}

#[test]
fn with_the_system_bus_unreachable_the_flag_is_a_one_line_error_that_changes_nothing() {
    if !on_systemd() {
        return;
    }
    // systemd runs, but in this mount namespace the bus's socket is gone, as when dbus is not
    // installed or not running.
    let c = Container::new();
    let script = "mount -t tmpfs none /run/dbus && exec \"$0\" \"$@\"";
    let root = c.root.to_str().unwrap();
    let bundle = c.bundle.to_str().unwrap();
    let runtime = crate::common::runtime().to_str().unwrap();
    let args = [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        runtime,
        "--root",
        root,
        "--systemd-cgroup",
        "run",
        "--bundle",
        bundle,
        &c.id,
    ];
    let out = c
        .spawn_program(Path::new("unshare"), &args, |_| {})
        .wait(COMMAND_TIMEOUT);
    let words = [
        "--systemd-cgroup",
        "cannot reach systemd",
        "without --systemd-cgroup",
    ];
    assert_refused_leaving_nothing(&c, &out, &words);
}

#[test]
fn the_unit_is_a_delegated_scope_with_the_init_and_the_limits() {
    if !on_systemd() {
        return;
    }
    let c = sleeper_with(json!({
        "memory": {"limit": 67108864},
        "pids": {"limit": 20},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
    }));
    let unit = c.systemd_unit();
    assert_eq!(systemd_unit_property(&unit, "ActiveState"), "active");
    assert_eq!(systemd_unit_property(&unit, "Slice"), "system.slice");
    assert_eq!(systemd_unit_property(&unit, "Delegate"), "yes");
    let memory_max = property_name("MemoryMax", "MemoryLimit");
    assert_eq!(systemd_unit_property(&unit, memory_max), "67108864");
    assert_eq!(systemd_unit_property(&unit, "TasksMax"), "20");
    let (cpu_weight, weight) = if cgroup_v1() {
        ("CPUShares", "1024")
    } else {
        ("CPUWeight", "100")
    };
    assert_eq!(systemd_unit_property(&unit, cpu_weight), weight);
    assert_eq!(systemd_unit_property(&unit, "CPUQuotaPerSecUSec"), "500ms");
    let cgroup = format!("/system.slice/{unit}");
    assert_eq!(systemd_unit_property(&unit, "ControlGroup"), cgroup);
    let state: serde_json::Value = serde_json::from_str(&c.state().success().stdout).unwrap();
    let pid = state["pid"]
        .as_i64()
        .expect("a running container has a pid");
    for controller in ["memory", "pids", "cpu"] {
        let procs = unit_cgroup_file(&unit, controller, ("cgroup.procs", "cgroup.procs"));
        assert!(procs.lines().any(|p| p == pid.to_string()), "{procs}");
    }
    let files = ("memory.limit_in_bytes", "memory.max");
    assert_eq!(unit_cgroup_file(&unit, "memory", files), "67108864");
}

#[test]
fn update_sets_the_units_properties_and_files() {
    if !on_systemd() {
        return;
    }
    let c = sleeper_with(json!({"memory": {"limit": 67108864}, "pids": {"limit": 20}}));
    c.cmd(&["update", "--memory", "128M", "--pids-limit", "30", &c.id])
        .success();
    let unit = c.systemd_unit();
    let memory_max = property_name("MemoryMax", "MemoryLimit");
    assert_eq!(systemd_unit_property(&unit, memory_max), "134217728");
    assert_eq!(systemd_unit_property(&unit, "TasksMax"), "30");
    let memory = ("memory.limit_in_bytes", "memory.max");
    assert_eq!(unit_cgroup_file(&unit, "memory", memory), "134217728");
    assert_eq!(
        unit_cgroup_file(&unit, "pids", ("pids.max", "pids.max")),
        "30"
    );
}

#[test]
fn the_init_is_in_the_units_cgroup_in_every_hierarchy() {
    if !on_systemd() {
        return;
    }
    let c = sleeper_with(json!({}));
    let state: serde_json::Value = serde_json::from_str(&c.state().success().stdout).unwrap();
    let pid = state["pid"]
        .as_i64()
        .expect("a running container has a pid");
    let membership = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let unit_cgroup = format!(":/system.slice/{}", c.systemd_unit());
    // Also in the hierarchies systemd leaves alone (on cgroup v1: cpuset, freezer, ...).
    let elsewhere: Vec<&str> = (membership.lines())
        .filter(|line| !line.ends_with(&unit_cgroup))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "the init is elsewhere in {elsewhere:?}"
    );
}

#[test]
fn an_exec_runs_in_the_units_cgroup_in_every_hierarchy() {
    if !on_systemd() {
        return;
    }
    let c = sleeper_with(json!({}));
    let out = c
        .cmd(&["exec", &c.id, "cat", "/proc/1/cgroup", "/proc/self/cgroup"])
        .success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let (init, exec) = lines.split_at(lines.len() / 2);
    // Also in the hierarchies systemd leaves alone (on cgroup v1: cpuset, freezer, ...).
    assert_eq!(init, exec, "the exec'd process is not where the init is");
}

#[test]
fn pause_and_resume_freeze_the_units_cgroup() {
    if !on_systemd() {
        return;
    }
    let c = sleeper_with(json!({}));
    let unit = c.systemd_unit();
    let frozen = || {
        let state = unit_cgroup_file(&unit, "freezer", ("freezer.state", "cgroup.events"));
        state == "FROZEN" || state.lines().any(|line| line == "frozen 1")
    };
    c.cmd(&["pause", &c.id]).success();
    assert!(frozen());
    c.cmd(&["resume", &c.id]).success();
    assert!(!frozen());
}

#[test]
fn delete_stops_the_unit() {
    if !on_systemd() {
        return;
    }
    let c = sleeper_with(json!({}));
    c.kill("KILL").success();
    c.wait_for_status("stopped", COMMAND_TIMEOUT);
    c.delete().success();
    assert!(
        !systemd_unit_loaded(&c.systemd_unit()),
        "the unit is still known"
    );
    c.assert_no_leaks();
}

#[test]
fn a_killed_create_leaves_nothing_after_delete_force_and_berth_has_one_thread() {
    if !on_systemd() {
        return;
    }
    // The createRuntime hook runs after the unit started: it records how many threads berth
    // (its parent) has, then holds `create` there to be killed.
    let mut c = Container::new();
    let tasks = c.dir.join("berth-tasks");
    let hook_pid = c.dir.join("hook-pid");
    let script = format!(
        "echo $$ > {pid}; ls /proc/$PPID/task | wc -l > {tasks}.tmp; mv {tasks}.tmp {tasks}; \
         exec sleep 1000",
        pid = hook_pid.display(),
        tasks = tasks.display()
    );
    c.configure(|spec| {
        set_args(spec, &["sleep", "1000"]);
        let hook = HookBuilder::default()
            .path(PathBuf::from("/bin/sh"))
            .args(vec!["sh".into(), "-c".into(), script])
            .build()
            .unwrap();
        let hooks = HooksBuilder::default().create_runtime(vec![hook]).build();
        spec.set_hooks(Some(hooks.unwrap()));
    });
    let bundle = c.bundle.to_str().unwrap();
    let mut create = c.spawn(&["create", "--bundle", bundle, &c.id]);
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while !tasks.exists() {
        assert!(Instant::now() < deadline, "the hook never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        systemd_unit_loaded(&c.systemd_unit()),
        "no unit while create runs"
    );
    let _ = kill(Pid::from_raw(create.child.id() as i32), Signal::SIGKILL);
    let _ = create.child.wait();
    let hook: i32 = fs::read_to_string(&hook_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = kill(Pid::from_raw(hook), Signal::SIGKILL);
    assert_eq!(
        fs::read_to_string(&tasks).unwrap().trim(),
        "1",
        "berth's threads"
    );
    c.delete_force().success();
    assert!(
        !systemd_unit_loaded(&c.systemd_unit()),
        "the unit is still known"
    );
    c.assert_no_leaks();
}

#[test]
fn the_readme_example_runs_in_a_scope_with_its_limit() {
    if !on_systemd() {
        return;
    }
    if cgroup_v1() {
        println!("skipped: the example shows cgroup v2's MemoryMax (MemoryLimit on v1)");
        return;
    }
    let c = Container::new();
    let out = c.run_readme_example("sd-demo").success();
    assert!(out.stdout.contains("MemoryMax=67108864"), "{out}");
    let unit = format!("demo-{}.scope", c.id);
    assert!(
        !systemd_unit_loaded(&unit),
        "{unit} outlived delete --force"
    );
}

/// podman with README.md's `cgroup_manager = "systemd"` and berth as its runtime, from the
/// README's drop-in, with its own storage in the test's dir.
fn podman(c: &Container, args: &[&str]) -> std::process::Output {
    let conf = c.dir.join("containers.conf");
    if !conf.exists() {
        let drop_in = readme_block("[engine.runtimes]")
            .replace(
                "/usr/local/sbin/berth",
                crate::common::runtime().to_str().unwrap(),
            )
            .replace("[engine]\n", &readme_block("cgroup_manager"));
        fs::write(&conf, drop_in).unwrap();
    }
    let storage = |name: &str| c.dir.join(name).to_str().unwrap().to_string();
    Command::new("podman")
        .args(["--root", &storage("storage"), "--runroot", &storage("run")])
        .args(["--storage-driver", "vfs", "--runtime", "berth"])
        .args(args)
        .env("CONTAINERS_CONF", &conf)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run podman")
}

#[test]
fn podman_with_the_systemd_cgroup_manager_runs_a_memory_limited_container() {
    if !on_systemd() {
        return;
    }
    let c = Container::new();
    let rootfs = c.bundle.join("rootfs");
    let import = format!(
        "tar -C {0} -c . | podman --root {1}/storage --runroot {1}/run \
         --storage-driver vfs import - localhost/berth-sd:latest",
        rootfs.display(),
        c.dir.display()
    );
    let out = Command::new("sh").args(["-c", &import]).output().unwrap();
    assert!(out.status.success(), "import: {out:?}");
    let run = ["run", "-d", "--network", "none", "--memory", "64m"];
    let out = podman(
        &c,
        &[&run[..], &["localhost/berth-sd:latest", "sleep", "1000"]].concat(),
    );
    assert!(out.status.success(), "podman run: {out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let unit = format!("libpod-{id}.scope");
    let max = systemd_unit_property(&unit, property_name("MemoryMax", "MemoryLimit"));
    let removed = podman(&c, &["rm", "--force", "--time", "0", &id]);
    assert_eq!(max, "67108864", "{unit}");
    assert!(removed.status.success(), "podman rm: {removed:?}");
    assert!(!systemd_unit_loaded(&unit), "{unit} outlived podman rm");
}

/// The systemd instance of a test user (`user@<uid>.service`, with its session bus), started
/// as logind starts it for a lingering user; stopped, and the linger undone, on drop.
struct UserManager {
    name: String,
    uid: u32,
}

impl UserManager {
    fn start(user: &HostUser) -> UserManager {
        let manager = UserManager {
            name: user.name.clone(),
            uid: user.uid,
        };
        let linger = Command::new("loginctl")
            .args(["enable-linger", &user.name])
            .status()
            .expect("run loginctl");
        assert!(linger.success(), "loginctl enable-linger {}", user.name);
        // Booting a user's systemd under emulation takes a while.
        let deadline = Instant::now() + 4 * COMMAND_TIMEOUT;
        let bus = manager.runtime_dir().join("bus");
        while !(bus.exists()
            && systemd_unit_property(&manager.service(), "ActiveState") == "active")
        {
            assert!(
                Instant::now() < deadline,
                "{} did not start",
                manager.service()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        manager
    }

    fn service(&self) -> String {
        format!("user@{}.service", self.uid)
    }

    /// $XDG_RUNTIME_DIR of the user's session: where its bus listens.
    fn runtime_dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/user/{}", self.uid))
    }

    /// The environment a login session of the user has.
    fn session_env(&self, cmd: &mut Command) {
        cmd.env("XDG_RUNTIME_DIR", self.runtime_dir());
    }

    /// Waits until this systemd owns its name on the session bus, which it takes only once the
    /// bus has started (on the first connection to its socket): before, the bus knows no user
    /// systemd, and root in a user namespace asks the system's.
    fn wait_for_its_bus_name(&self, r: &RootlessContainer) {
        let owner = [
            "busctl",
            "--user",
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetConnectionUnixUser",
            "s",
            "org.freedesktop.systemd1",
        ];
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while r.as_user(&owner, |cmd| self.session_env(cmd)).code != 0 {
            assert!(
                Instant::now() < deadline,
                "{} is not on its bus",
                self.service()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `property` of `unit` in this systemd (`systemctl --user show`, run as `r`'s user).
    #[track_caller]
    fn unit_property(&self, r: &RootlessContainer, unit: &str, property: &str) -> String {
        let args = [
            "systemctl",
            "--user",
            "show",
            "--property",
            property,
            "--value",
            unit,
        ];
        let out = r.as_user(&args, |cmd| self.session_env(cmd)).success();
        out.stdout.trim().to_string()
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        let _ = Command::new("loginctl")
            .args(["disable-linger", &self.name])
            .status();
        let runtime_dir_service = format!("user-runtime-dir@{}.service", self.uid);
        let _ = Command::new("systemctl")
            .args(["stop", &self.service(), &runtime_dir_service])
            .status();
    }
}

/// A rootless container (`spec --rootless`, run by a test user) with `cgroupsPath` in
/// systemd form, its slice left to the default, and a memory and a pids limit.
fn rootless_with_limits() -> RootlessContainer {
    let mut r = RootlessContainer::new(&["sleep", "1000"]);
    let cgroups_path = format!(":berth-it:{}", r.c.id);
    r.c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().expect("default config has linux");
        linux.set_cgroups_path(Some(PathBuf::from(cgroups_path)));
        let limits = json!({"memory": {"limit": 67108864}, "pids": {"limit": 32}});
        linux.set_resources(Some(
            serde_json::from_value(limits).expect("resources parse"),
        ));
    });
    r
}

#[test]
fn rootless_the_users_systemd_runs_the_scope_with_the_limits() {
    if !on_systemd() {
        return;
    }
    let r = rootless_with_limits();
    let create = [
        "--systemd-cgroup",
        "create",
        "--bundle",
        r.bundle(),
        &r.c.id,
    ];
    if cgroup_v1() {
        let out = r.berth(&create);
        assert_refused_leaving_nothing(&r.c, &out, &["rootless", "needs cgroup v2"]);
        return;
    }
    let manager = UserManager::start(&r.user);
    let berth = |args: &[&str]| r.berth_with(args, |cmd| manager.session_env(cmd));
    berth(&create).success();
    // runc's default slice for the user's instance: its user.slice.
    let unit = format!("berth-it-{}.scope", r.c.id);
    let show = |property: &str| manager.unit_property(&r, &unit, property);
    assert_in_the_users_scope_with_the_limits(&r, &manager, &unit);

    // Started first: a rootless exec into a container still waiting for `start` fails with
    // EPERM from setns (runc's works), a bug apart from the driver's.
    berth(&["--systemd-cgroup", "start", &r.c.id]).success();
    // The exec'd process joins the init's cgroup (the user's systemd moves it there: the
    // user may not move it out of berth's cgroup), and sees the limits.
    let script = "cat /proc/1/cgroup /proc/self/cgroup /sys/fs/cgroup/memory.max \
                  /sys/fs/cgroup/pids.max";
    let inside = berth(&["--systemd-cgroup", "exec", &r.c.id, "sh", "-c", script]).success();
    let words: Vec<&str> = inside.stdout.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{inside}");
    assert_eq!(
        words[0], words[1],
        "the exec'd process is not in the init's cgroup"
    );
    assert_eq!(words[2..], ["67108864", "32"], "{inside}");

    berth(&["--systemd-cgroup", "delete", "--force", &r.c.id]).success();
    assert_eq!(show("LoadState"), "not-found");
    r.c.assert_no_leaks();
}

/// The container's init is in `unit` of the user's systemd, which has the limits of
/// [`rootless_with_limits`].
#[track_caller]
fn assert_in_the_users_scope_with_the_limits(
    r: &RootlessContainer,
    manager: &UserManager,
    unit: &str,
) {
    let show = |property: &str| manager.unit_property(r, unit, property);
    let uid = r.user.uid;
    let cgroup = format!("/user.slice/user-{uid}.slice/user@{uid}.service/user.slice/{unit}");
    assert_eq!(show("ControlGroup"), cgroup);
    assert_eq!(show("MemoryMax"), "67108864");
    assert_eq!(show("TasksMax"), "32");
    let pid = r.c.state_json()["pid"].as_i64().expect("state has the pid");
    let init_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(init_cgroup, format!("0::{cgroup}\n"));
}

/// Root in a user namespace the user made, as rootless podman runs the runtime, with the
/// user's session bus: the user's systemd runs the scope, as with runc. The bus knows the
/// caller as the user (SO_PEERCRED), not as uid 0: a client that claims its uid in the
/// namespace (libdbus did) is refused.
#[test]
fn root_in_a_user_namespace_with_a_users_bus_asks_the_users_systemd() {
    if !on_systemd() {
        return;
    }
    if cgroup_v1() {
        println!("skipped: the user's systemd needs cgroup v2 (see the rootless test)");
        return;
    }
    let mut r = rootless_with_limits();
    // The namespace is the one unshare makes: the config shares it.
    r.c.configure(|spec| {
        remove_namespace(spec, LinuxNamespaceType::User);
        let linux = spec.linux_mut().as_mut().expect("default config has linux");
        linux.set_uid_mappings(None);
        linux.set_gid_mappings(None);
    });
    let manager = UserManager::start(&r.user);
    manager.wait_for_its_bus_name(&r);
    let (berth, root) = (runtime().to_str().unwrap(), r.c.root.to_str().unwrap());
    let in_user_namespace = |args: &[&str]| {
        let mut command = vec![
            "unshare",
            "--user",
            "--map-root-user",
            berth,
            "--root",
            root,
        ];
        command.push("--systemd-cgroup");
        command.extend_from_slice(args);
        r.as_user(&command, |cmd| {
            cmd.env_remove("DBUS_SESSION_BUS_ADDRESS");
            manager.session_env(cmd);
        })
    };
    in_user_namespace(&["create", "--bundle", r.bundle(), &r.c.id]).success();
    let unit = format!("berth-it-{}.scope", r.c.id);
    assert_in_the_users_scope_with_the_limits(&r, &manager, &unit);
    in_user_namespace(&["delete", "--force", &r.c.id]).success();
    assert_eq!(manager.unit_property(&r, &unit, "LoadState"), "not-found");
    r.c.assert_no_leaks();
}

#[test]
fn rootless_without_the_users_bus_the_flag_is_a_one_line_error_that_changes_nothing() {
    if !on_systemd() || cgroup_v1() {
        return;
    }
    let r = rootless_with_limits();
    // A runtime dir without a bus in it, as where dbus-user-session is not installed.
    let runtime_dir = r.c.dir.join("xdg");
    fs::create_dir(&runtime_dir).unwrap();
    let run = ["--systemd-cgroup", "run", "--bundle", r.bundle(), &r.c.id];
    let out = r.berth_with(&run, |cmd| {
        cmd.env_remove("DBUS_SESSION_BUS_ADDRESS");
        cmd.env("XDG_RUNTIME_DIR", &runtime_dir);
    });
    let words = [
        "no user session bus",
        "dbus-user-session",
        "without --systemd-cgroup",
    ];
    assert_refused_leaving_nothing(&r.c, &out, &words);
}

/// Root in a user namespace of its own, as in a system container whose systemd runs as its
/// root, without a user's session bus: the unit is the system's systemd's (runc asks `busctl
/// --user status` there), not a user's, which does not exist.
#[test]
fn root_in_a_user_namespace_without_a_users_bus_asks_the_systems_systemd() {
    if !on_systemd() {
        return;
    }
    let c = Container::with_args(&["sleep", "1000"]);
    // What that namespace may mount: only root is mapped (no devpts `gid=5`, as `spec
    // --rootless` leaves it out), and a cgroup filesystem needs a cgroup namespace of its own.
    c.configure_json(|config| {
        let mounts = config["mounts"].as_array_mut().expect("mounts");
        mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
        for options in mounts
            .iter_mut()
            .filter_map(|m| m["options"].as_array_mut())
        {
            options.retain(|o| o != "gid=5");
        }
    });
    let (berth, root, bundle) = (
        runtime(),
        c.root.to_str().unwrap(),
        c.bundle.to_str().unwrap(),
    );
    let berth = berth.to_str().unwrap();
    let create = [
        "--user",
        "--map-root-user",
        berth,
        "--root",
        root,
        "--systemd-cgroup",
        "create",
        "--bundle",
        bundle,
        &c.id,
    ];
    let in_user_namespace = |cmd: &mut Command| {
        cmd.env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("XDG_RUNTIME_DIR");
    };
    (c.spawn_program(Path::new("unshare"), &create, in_user_namespace))
        .wait(COMMAND_TIMEOUT)
        .success();
    let unit = c.systemd_unit();
    let cgroup = format!("/system.slice/{unit}");
    assert_eq!(systemd_unit_property(&unit, "ControlGroup"), cgroup);
    let pid = c.state_json()["pid"].as_i64().expect("state has the pid");
    let init_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        init_cgroup.lines().any(|l| l.ends_with(&cgroup)),
        "{init_cgroup}"
    );
    c.delete_force().success();
    assert!(!systemd_unit_loaded(&unit), "{unit} outlived delete");
    c.assert_no_leaks();
}
