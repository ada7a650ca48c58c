//! What users do every day with Docker and podman, written once for both (their command lines
//! agree on all of it). Each scenario gets a [`Session`]: one engine, one runtime;
//! `shared_scenarios!` lists them once and each engine file expands it.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::harness::cgroup;
use crate::harness::engine::{Kind, Session};

/// Generates, for one engine, the tests of every scenario in this file that both engines run
/// (`berth::<scenario>` and `runc::<scenario>`, see `engine_scenarios!`). The list lives here
/// only: a scenario added to it runs on Docker and on podman.
macro_rules! shared_scenarios {
    (engine: $engine:expr) => {
        $crate::harness::engine_scenarios! {
            engine: $engine, session: $crate::harness::engine::Session, scenarios: $crate::scenarios;
            runtime_state,
            run_exit_code,
            run_command_not_found,
            exec_command_not_found,
            run_stdin,
            run_tty,
            run_env,
            run_workdir,
            run_hostname,
            run_user,
            run_user_unknown,
            cap_add_drop,
            read_only,
            tmpfs,
            bind_volume,
            network_none,
            run_init,
            memory_limit,
            pids_limit,
            cpu_limit,
            oom_kill,
            exec_exit_code,
            exec_user,
            exec_tty,
            ps_top,
            pause_unpause,
            stats,
            update,
            restart,
            stop,
            stop_signal_rtmin,
            kill,
            rm_force_running,
            rm_force_paused,
            logs,
            instant_exit_50,
            security_opts,
            ulimits,
            sysctls,
            devices,
            shm_size,
            oom_score_adj,
            cpuset,
            memory_reservation,
            join_namespaces,
            pid_host,
            cgroupns_private,
            uts_host,
            commit,
            restart_policy,
        }
    };
}
pub(crate) use shared_scenarios;

/// How long a container may take to reach a state the test waits for.
const SETTLE: Duration = Duration::from_secs(30);

/// Polls `condition` until it holds; panics with `what` after [`SETTLE`].
#[track_caller]
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The container's status as the engine reports it (`running`, `paused`, `exited` …).
fn status(s: &Session, name: &str) -> String {
    s.inspect(name, "{{.State.Status}}")
}

/// `wait <name>`: blocks until the container exits; returns its exit code.
#[track_caller]
fn wait_exit(s: &Session, name: &str) -> i32 {
    let out = s.cli(&["wait", name]).success();
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("exit code from wait ({e}):\n{out}"))
}

/// A cgroup file of the container's: `v1` or `v2` by the host's hierarchy for `controller`.
/// Asserts that the host (by the container's pid) and the container (its /sys/fs/cgroup) both
/// read `expected`.
#[track_caller]
fn assert_cgroup(s: &Session, name: &str, controller: &str, files: (&str, &str), expected: &str) {
    let (file, inside) = if cgroup::is_v1(controller) {
        (files.0, format!("/sys/fs/cgroup/{controller}/{}", files.0))
    } else {
        (files.1, format!("/sys/fs/cgroup/{}", files.1))
    };
    let host = cgroup::read(s.pid(name), controller, file);
    assert_eq!(host, expected, "{file} seen from the host");
    let out = s.exec(&[], name, &["cat", &inside]).success();
    assert_eq!(out.stdout.trim(), expected, "{inside} inside:\n{out}");
}

/// The engine runs the container with the runtime it was asked for: the engine's inspect
/// names it, and the container's state is in the runtime root the engine gives it.
pub fn runtime_state(s: &Session) {
    let name = s.sleeper(&[]);
    let id = s.id(&name).expect("a running container has an id");
    let state = s.engine.runtime_root(s.runtime).join(&id);
    assert!(state.is_dir(), "no {}", state.display());
    let format = match s.engine.kind {
        Kind::Docker => "{{.HostConfig.Runtime}}",
        Kind::Podman => "{{.OCIRuntime}}",
    };
    assert_eq!(s.inspect(&name, format), s.runtime.name());
}

/// `run` returns the container's exit code and its stdout and stderr, apart.
pub fn run_exit_code(s: &Session) {
    let out = s.run(&[], &["sh", "-c", "echo out; echo err >&2; exit 42"]);
    assert_eq!(out.code, 42, "{out}");
    assert_eq!(out.stdout, "out\n", "{out}");
    assert_eq!(out.stderr, "err\n", "{out}");
}

/// `run -i` passes stdin through to the container, up to its end.
pub fn run_stdin(s: &Session) {
    let input = s.dir.join("stdin");
    fs::write(&input, "line one\nline two\n").expect("write stdin file");
    let out = s.run_with(&["--interactive"], &["sh", "-c", "cat; echo done"], |cmd| {
        cmd.stdin(File::open(&input).expect("open stdin file"));
    });
    assert_eq!(out.success().stdout, "line one\nline two\ndone\n");
}

/// `run -t` gives the process a terminal as stdin, stdout and controlling tty.
pub fn run_tty(s: &Session) {
    let out = s.run(
        &["--tty"],
        &["sh", "-c", "tty; test -t 0 && test -t 1 && echo both"],
    );
    let out = out.success();
    let lines: Vec<&str> = out.stdout.lines().map(str::trim_end).collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{out}");
    assert_eq!(lines[1], "both", "{out}");
}

/// `-e` variables come with the image's own (PATH).
pub fn run_env(s: &Session) {
    let out = s.run(
        &["--env", "GREETING=hello world", "--env", "EMPTY="],
        &["sh", "-c", r#"echo "$GREETING|${EMPTY-unset}|$PATH""#],
    );
    assert_eq!(
        out.success().stdout,
        "hello world||/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
}

/// `-w` sets the working directory; Docker creates it when the image lacks it (podman
/// refuses).
pub fn run_workdir(s: &Session) {
    let out = s.run(&["--workdir", "/tmp"], &["pwd"]).success();
    assert_eq!(out.stdout, "/tmp\n");
    if s.engine.kind == Kind::Docker {
        let out = s.run(&["--workdir", "/new/dir"], &["pwd"]).success();
        assert_eq!(out.stdout, "/new/dir\n");
    }
}

/// `--hostname` is the container's hostname (in its own UTS namespace).
pub fn run_hostname(s: &Session) {
    let out = s.run(&["--hostname", "box.example"], &["hostname"]);
    assert_eq!(out.success().stdout, "box.example\n");
}

/// `--user` by number, with a group and extra groups, and by name from the image's passwd.
pub fn run_user(s: &Session) {
    let out = s.run(
        &["--user", "1000:1000", "--group-add", "65534"],
        &["sh", "-c", "id -u; id -g; id -G; touch /root/x"],
    );
    assert_eq!(out.code, 1, "a non-root user must not write /root:\n{out}");
    assert_eq!(out.stdout, "1000\n1000\n1000 65534\n", "{out}");
    let out = s.run(&["--user", "user"], &["sh", "-c", "id -u; echo $HOME"]);
    assert_eq!(out.success().stdout, "1000\n/home/user\n");
}

/// The effective capability set of the container's process.
fn effective_caps(s: &Session, opts: &[&str]) -> u64 {
    let hex = status_field(s, opts, "CapEff");
    u64::from_str_radix(&hex, 16).expect("hex capability set")
}

/// `--cap-drop ALL --cap-add X` leaves exactly X; dropping one takes its power away.
pub fn cap_add_drop(s: &Session) {
    const CAP_CHOWN: u64 = 1 << 0;
    const CAP_NET_ADMIN: u64 = 1 << 12;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    let caps = effective_caps(s, &["--cap-drop", "ALL", "--cap-add", "NET_ADMIN"]);
    assert_eq!(caps, CAP_NET_ADMIN, "{caps:#x}");
    let default = effective_caps(s, &[]);
    assert_ne!(default & CAP_CHOWN, 0, "{default:#x}");
    assert_eq!(default & CAP_SYS_ADMIN, 0, "{default:#x}");
    let out = s.run(&["--cap-drop", "CHOWN"], &["chown", "1000", "/tmp"]);
    assert_ne!(out.code, 0, "chown without CAP_CHOWN:\n{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
}

/// `--read-only` makes the root filesystem read-only; a `--tmpfs` in it stays writable.
pub fn read_only(s: &Session) {
    let out = s.run(
        &["--read-only", "--tmpfs", "/scratch"],
        &["sh", "-c", "touch /scratch/ok && touch /bad"],
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
}

/// `--tmpfs PATH:OPTIONS` mounts a tmpfs with those options.
pub fn tmpfs(s: &Session) {
    let out = s.run(
        &["--tmpfs", "/scratch:size=1m,mode=1770"],
        &[
            "sh",
            "-c",
            "grep ' /scratch ' /proc/mounts; stat -c %a /scratch; touch /scratch/f",
        ],
    );
    let out = out.success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("tmpfs /scratch tmpfs "), "{out}");
    assert!(lines[0].contains("size=1024k"), "{out}");
    assert_eq!(lines[1], "1770", "{out}");
}

/// `-v HOST:CONTAINER` shares a host directory both ways; `:ro` makes it read-only inside.
pub fn bind_volume(s: &Session) {
    let host = s.dir.join("volume");
    fs::create_dir_all(&host).expect("create the volume dir");
    fs::set_permissions(&host, fs::Permissions::from_mode(0o777)).expect("chmod volume");
    fs::write(host.join("from-host"), "host\n").expect("write into the volume");
    let volume = format!("{}:/data", host.display());
    let out = s.run(
        &["--volume", &volume],
        &[
            "sh",
            "-c",
            "cat /data/from-host; echo container > /data/from-container",
        ],
    );
    assert_eq!(out.success().stdout, "host\n");
    let written = fs::read_to_string(host.join("from-container")).expect("file from inside");
    assert_eq!(written, "container\n");

    let read_only = format!("{volume}:ro");
    let out = s.run(&["--volume", &read_only], &["touch", "/data/x"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
}

/// `--network none`: a network namespace of its own with only the loopback device.
pub fn network_none(s: &Session) {
    let out = s.run(&[], &["ls", "/sys/class/net"]).success();
    assert_eq!(out.stdout, "lo\n");
    let host_net = fs::read_link("/proc/self/ns/net").expect("host netns");
    let name = s.sleeper(&[]);
    let container_net = fs::read_link(format!("/proc/{}/ns/net", s.pid(&name)));
    assert_ne!(container_net.expect("container netns"), host_net);
}

/// `--init`: the engine's init (docker-init, catatonit) is PID 1 and runs the command as its
/// child.
pub fn run_init(s: &Session) {
    let out = s.run(
        &["--init"],
        &["sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '"],
    );
    let out = out.success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_ne!(lines[0], "1", "the command must not be PID 1:\n{out}");
    let init = match s.engine.kind {
        Kind::Docker => "/sbin/docker-init",
        Kind::Podman => "/run/podman-init",
    };
    assert!(lines[1].starts_with(init), "PID 1 is not {init}:\n{out}");
}

/// `--memory` is the memory limit of the container's cgroup, seen from the host and inside.
pub fn memory_limit(s: &Session) {
    let name = s.sleeper(&["--memory", "64m"]);
    let files = ("memory.limit_in_bytes", "memory.max");
    assert_cgroup(s, &name, "memory", files, "67108864");
    assert_eq!(s.inspect(&name, "{{.HostConfig.Memory}}"), "67108864");
}

/// `--pids-limit` caps the container's tasks, and forking past it fails.
pub fn pids_limit(s: &Session) {
    let name = s.sleeper(&["--pids-limit", "10"]);
    assert_cgroup(s, &name, "pids", ("pids.max", "pids.max"), "10");
    let fork_many = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 100 & done; wait";
    let out = s.exec(&[], &name, &["sh", "-c", fork_many]);
    assert!(out.stderr.contains("can't fork"), "{out}");
}

/// `--cpus` becomes a CFS quota over the default period, `--cpu-shares` the shares.
pub fn cpu_limit(s: &Session) {
    let name = s.sleeper(&["--cpus", "0.5", "--cpu-shares", "512"]);
    if cgroup::is_v1("cpu") {
        assert_cgroup(s, &name, "cpu", ("cpu.cfs_quota_us", ""), "50000");
        assert_cgroup(s, &name, "cpu", ("cpu.cfs_period_us", ""), "100000");
        assert_cgroup(s, &name, "cpu", ("cpu.shares", ""), "512");
    } else {
        assert_cgroup(s, &name, "cpu", ("", "cpu.max"), "50000 100000");
    }
}

/// A process that exceeds the container's memory limit is OOM-killed: the kernel counts it in
/// the container's cgroup, the exec or the container exits 137, Docker says `OOMKilled`.
pub fn oom_kill(s: &Session) {
    // dd's 64 MiB buffer alone is twice the limit; no swap to escape to.
    let limit = ["--memory", "32m", "--memory-swap", "32m"];
    let dd = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"];
    let name = s.sleeper(&limit);
    assert_eq!(s.exec(&[], &name, &dd).code, 137);
    if cgroup::is_v1("memory") {
        let oom_control = cgroup::read(s.pid(&name), "memory", "memory.oom_control");
        assert!(oom_control.contains("oom_kill 1"), "{oom_control}");
    }

    // The container's own process is OOM-killed. containerd 1.6's shim starts watching the
    // cgroup for OOM events only after `start` returns, so an OOM before that is never reported
    // (with runc as with berth): the container waits for a file that `exec` creates, which
    // can only happen after the start. It outlives dd by a second so that the shim sends the
    // OOM event before the exit event.
    let script = format!(
        "until [ -e /go ]; do sleep 0.1; done; {}; status=$?; sleep 1; exit $status",
        dd.join(" ")
    );
    let name = s.start(&limit, &["sh", "-c", &script]);
    s.exec(&[], &name, &["touch", "/go"]).success();
    assert_eq!(wait_exit(s, &name), 137);
    // podman 4.3 reports false, with runc as well as berth: conmon 2.1.6 sees the OOM but
    // writes its marker file into its working directory, podman looks for it in the bundle.
    if s.engine.kind == Kind::Docker {
        assert_eq!(s.inspect(&name, "{{.State.OOMKilled}}"), "true");
    }
}

/// `exec` into a running container returns the process's exit code and output.
pub fn exec_exit_code(s: &Session) {
    let name = s.sleeper(&[]);
    let out = s.exec(&[], &name, &["sh", "-c", "echo in; exit 7"]);
    assert_eq!(out.code, 7, "{out}");
    assert_eq!(out.stdout, "in\n", "{out}");
}

/// `exec --user`, `--env` and `--workdir` apply to the exec'd process only.
pub fn exec_user(s: &Session) {
    let name = s.sleeper(&[]);
    let opts = [
        "--user",
        "1000:1000",
        "--env",
        "WHO=exec",
        "--workdir",
        "/tmp",
    ];
    let out = s.exec(&opts, &name, &["sh", "-c", "id -u; id -g; echo $WHO; pwd"]);
    assert_eq!(out.success().stdout, "1000\n1000\nexec\n/tmp\n");
    let out = s.exec(&["--user", "user"], &name, &["id", "-u"]).success();
    assert_eq!(out.stdout, "1000\n");
    assert_eq!(s.exec(&[], &name, &["id", "-u"]).success().stdout, "0\n");
}

/// `exec -t` gives the exec'd process a terminal of its own.
pub fn exec_tty(s: &Session) {
    let name = s.sleeper(&[]);
    let out = s.exec(
        &["--tty"],
        &name,
        &["sh", "-c", "tty; test -t 1 && echo yes"],
    );
    let out = out.success();
    let lines: Vec<&str> = out.stdout.lines().map(str::trim_end).collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{out}");
    assert_eq!(lines[1], "yes", "{out}");
}

/// `ps` lists the running container, `top` its processes (the runtime's `ps` under Docker).
pub fn ps_top(s: &Session) {
    let name = s.sleeper(&[]);
    s.exec(&["--detach"], &name, &["sleep", "999"]).success();
    let filter = format!("name={name}");
    let ps = s.cli(&[
        "ps",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    let ps = ps.success();
    assert!(ps.stdout.starts_with(&format!("{name} Up")), "{ps}");
    wait_until("top shows both processes", || {
        let top = s.cli(&["top", &name]).success();
        top.stdout.contains("sleep 1000") && top.stdout.contains("sleep 999")
    });
}

/// `pause` freezes every process of the container, `unpause` thaws them.
pub fn pause_unpause(s: &Session) {
    let name = s.sleeper(&[]);
    let pid = s.pid(&name);
    s.cli(&["pause", &name]).success();
    assert_eq!(status(s, &name), "paused");
    if cgroup::is_v1("freezer") {
        assert_eq!(cgroup::read(pid, "freezer", "freezer.state"), "FROZEN");
    } else {
        assert_eq!(cgroup::read(pid, "freezer", "cgroup.freeze"), "1");
    }
    s.cli(&["unpause", &name]).success();
    assert_eq!(status(s, &name), "running");
    assert_eq!(
        s.exec(&[], &name, &["echo", "thawed"]).success().stdout,
        "thawed\n"
    );
}

/// `stats` reports the container's memory use against its limit.
pub fn stats(s: &Session) {
    let name = s.sleeper(&["--memory", "64m"]);
    let out = s.cli(&["stats", "--no-stream", "--format", "{{.MemUsage}}", &name]);
    let out = out.success();
    let (usage, limit) = out.stdout.trim().split_once(" / ").expect("usage / limit");
    assert!(!usage.starts_with("0B"), "{out}");
    // Docker counts in MiB, podman in MB.
    assert!(["64MiB", "67.11MB"].contains(&limit), "{out}");
}

/// `update` changes the limits of a running container, in its cgroup.
pub fn update(s: &Session) {
    let name = s.sleeper(&["--memory", "64m", "--memory-swap", "128m"]);
    let mut update = vec!["update", "--memory", "128m", "--memory-swap", "256m"];
    update.extend(["--cpus", "1.5"]);
    // podman 4.3's update has no --pids-limit.
    if s.engine.kind == Kind::Docker {
        update.extend(["--pids-limit", "50"]);
    }
    update.push(&name);
    s.cli(&update).success();
    let files = ("memory.limit_in_bytes", "memory.max");
    assert_cgroup(s, &name, "memory", files, "134217728");
    if cgroup::is_v1("cpu") {
        assert_cgroup(s, &name, "cpu", ("cpu.cfs_quota_us", ""), "150000");
    }
    // Docker records the new limits; podman 4.3 only applies them.
    if s.engine.kind == Kind::Docker {
        assert_cgroup(s, &name, "pids", ("pids.max", "pids.max"), "50");
        assert_eq!(s.inspect(&name, "{{.HostConfig.Memory}}"), "134217728");
    }
}

/// `restart` stops the container and starts it again: a new process, still running.
pub fn restart(s: &Session) {
    let name = s.start(
        &[],
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        ],
    );
    let before = s.pid(&name);
    s.cli(&["restart", "--time", "10", &name]).success();
    assert_eq!(status(s, &name), "running");
    assert_ne!(s.pid(&name), before);
    assert_eq!(
        s.exec(&[], &name, &["echo", "again"]).success().stdout,
        "again\n"
    );
}

/// `stop` sends SIGTERM (a process that handles it exits cleanly), then SIGKILL after the
/// timeout (a process that ignores it: exit 137).
pub fn stop(s: &Session) {
    let name = s.start(
        &[],
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        ],
    );
    s.cli(&["stop", "--time", "30", &name]).success();
    assert_eq!(wait_exit(s, &name), 0);
    let stubborn = s.sleeper(&[]);
    s.cli(&["stop", "--time", "1", &stubborn]).success();
    assert_eq!(wait_exit(s, &stubborn), 137);
}

/// `--stop-signal SIGRTMIN+3` (what systemd in a container wants) is what `stop` sends.
pub fn stop_signal_rtmin(s: &Session) {
    // 37 is SIGRTMIN+3 as glibc and Go count (SIGRTMIN = 34).
    let script = "trap 'exit 0' 37; while :; do sleep 0.1; done";
    let name = s.start(&["--stop-signal", "SIGRTMIN+3"], &["sh", "-c", script]);
    s.cli(&["stop", "--time", "30", &name]).success();
    assert_eq!(wait_exit(s, &name), 0, "stopped by SIGKILL, not SIGRTMIN+3");
}

/// `kill` sends SIGKILL by default (exit 137) or the signal asked for.
pub fn kill(s: &Session) {
    let name = s.sleeper(&[]);
    s.cli(&["kill", &name]).success();
    assert_eq!(wait_exit(s, &name), 137);
    let script = "trap 'exit 3' USR1; while :; do sleep 0.1; done";
    let name = s.start(&[], &["sh", "-c", script]);
    s.cli(&["kill", "--signal", "USR1", &name]).success();
    assert_eq!(wait_exit(s, &name), 3);
}

/// `rm -f` of a running container removes it and everything of it on the host.
pub fn rm_force_running(s: &Session) {
    let name = s.sleeper(&[]);
    let id = s.id(&name).expect("id");
    s.exec(&["--detach"], &name, &["sleep", "999"]).success();
    s.cli(&s.engine.rm_args(&name)).success();
    let traces = s.engine.traces_of(&id);
    assert!(traces.is_empty(), "left behind:\n  {}", traces.join("\n  "));
}

/// `rm -f` of a paused container too (the runtime must thaw it to kill it).
pub fn rm_force_paused(s: &Session) {
    let name = s.sleeper(&[]);
    let id = s.id(&name).expect("id");
    s.cli(&["pause", &name]).success();
    s.cli(&s.engine.rm_args(&name)).success();
    let traces = s.engine.traces_of(&id);
    assert!(traces.is_empty(), "left behind:\n  {}", traces.join("\n  "));
}

/// `logs` has what the container wrote on stdout and stderr.
pub fn logs(s: &Session) {
    let name = s.start(&[], &["sh", "-c", "echo to-stdout; echo to-stderr >&2"]);
    assert_eq!(wait_exit(s, &name), 0);
    let out = s.cli(&["logs", &name]).success();
    assert_eq!(out.stdout, "to-stdout\n", "{out}");
    assert_eq!(out.stderr, "to-stderr\n", "{out}");
}

/// 50 containers that exit at once, one after the other, each removed (`--rm`): every one
/// returns its exit code and leaves no process, mount, cgroup or state behind.
pub fn instant_exit_50(s: &Session) {
    let mut ids = Vec::new();
    for i in 0..50 {
        let code = (i % 3).to_string();
        let out = s.run(&["--rm"], &["sh", "-c", &format!("exit {code}")]);
        assert_eq!(out.code.to_string(), code, "run {i}:\n{out}");
        ids.push(s.id(&s.last_name()).expect("id"));
    }
    let traces: Vec<String> = ids.iter().flat_map(|id| s.engine.traces_of(id)).collect();
    assert!(traces.is_empty(), "left behind:\n  {}", traces.join("\n  "));
}

/// A field of the container process's /proc/self/status (`CapEff`, `Seccomp` …).
pub fn status_field(s: &Session, opts: &[&str], field: &str) -> String {
    let out = s.run(opts, &["cat", "/proc/self/status"]).success();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")));
    let line = line.unwrap_or_else(|| panic!("no {field} in:\n{out}"));
    line.split_whitespace().nth(1).expect("a value").to_string()
}

/// This test process's own status field, for comparison.
pub fn host_status_field(field: &str) -> String {
    let status = fs::read_to_string("/proc/self/status").expect("read own status");
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:")));
    let line = line.unwrap_or_else(|| panic!("no {field} in own status"));
    line.split_whitespace().nth(1).expect("a value").to_string()
}

/// The engine's default seccomp filter is on (mode 2) unless `seccomp=unconfined`;
/// `no-new-privileges` sets the flag.
pub fn security_opts(s: &Session) {
    assert_eq!(status_field(s, &[], "Seccomp"), "2");
    assert_eq!(status_field(s, &[], "NoNewPrivs"), "0");
    let unconfined = ["--security-opt", "seccomp=unconfined"];
    assert_eq!(status_field(s, &unconfined, "Seccomp"), "0");
    let no_new_privs = ["--security-opt", "no-new-privileges"];
    assert_eq!(status_field(s, &no_new_privs, "NoNewPrivs"), "1");
    assert_eq!(status_field(s, &no_new_privs, "Seccomp"), "2");
}

/// `--ulimit` sets the soft and hard limits of the container's process.
pub fn ulimits(s: &Session) {
    let out = s.run(
        &["--ulimit", "nofile=512:1000", "--ulimit", "nproc=300:400"],
        &["sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -Su; ulimit -Hu"],
    );
    assert_eq!(out.success().stdout, "512\n1000\n300\n400\n");
}

/// `--sysctl` sets namespaced kernel parameters (network and IPC namespace ones).
pub fn sysctls(s: &Session) {
    let out = s.run(
        &[
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--sysctl",
            "kernel.msgmax=12345",
        ],
        &[
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/kernel/msgmax",
        ],
    );
    assert_eq!(out.success().stdout, "1\n12345\n");
}

/// `--device HOST:CONTAINER:PERMISSIONS` makes the node and allows only what was asked.
pub fn devices(s: &Session) {
    // loop-control: not among the engines' default devices, and opening it does nothing.
    let script = "stat -c '%t,%T' /dev/lc; : < /dev/lc && echo read; : > /dev/lc && echo write";
    let out = s.run(
        &["--device", "/dev/loop-control:/dev/lc:r"],
        &["sh", "-c", script],
    );
    assert_eq!(
        out.code, 1,
        "opening a read-only device for writing must fail:\n{out}"
    );
    assert_eq!(out.stdout, "a,ed\nread\n", "{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
    let out = s.run(
        &["--device", "/dev/loop-control:/dev/lc:rw"],
        &["sh", "-c", script],
    );
    assert_eq!(out.success().stdout, "a,ed\nread\nwrite\n");
}

/// `--shm-size` is the size of the container's /dev/shm.
pub fn shm_size(s: &Session) {
    let out = s.run(
        &["--shm-size", "16m"],
        &["grep", " /dev/shm ", "/proc/mounts"],
    );
    let out = out.success();
    assert!(out.stdout.contains("size=16384k"), "{out}");
}

/// `--oom-score-adj` is the container process's, and its exec'd processes'.
pub fn oom_score_adj(s: &Session) {
    let name = s.sleeper(&["--oom-score-adj", "500"]);
    let host = fs::read_to_string(format!("/proc/{}/oom_score_adj", s.pid(&name)));
    assert_eq!(host.expect("read oom_score_adj").trim(), "500");
    let out = s
        .exec(&[], &name, &["cat", "/proc/self/oom_score_adj"])
        .success();
    assert_eq!(out.stdout, "500\n");
}

/// `--cpuset-cpus` pins the container to those CPUs.
pub fn cpuset(s: &Session) {
    let name = s.sleeper(&["--cpuset-cpus", "0"]);
    assert_cgroup(s, &name, "cpuset", ("cpuset.cpus", "cpuset.cpus"), "0");
    let out = s.exec(
        &[],
        &name,
        &["grep", "Cpus_allowed_list", "/proc/self/status"],
    );
    assert_eq!(out.success().stdout, "Cpus_allowed_list:\t0\n");
}

/// `--memory-reservation` is the soft limit (v1) or `memory.low` (v2).
pub fn memory_reservation(s: &Session) {
    let name = s.sleeper(&["--memory", "64m", "--memory-reservation", "32m"]);
    let files = ("memory.soft_limit_in_bytes", "memory.low");
    assert_cgroup(s, &name, "memory", files, "33554432");
}

/// `--pid`, `--network` and `--ipc container:OTHER` join the other container's namespaces
/// (the runtime gets their paths).
pub fn join_namespaces(s: &Session) {
    let first = s.sleeper(&["--ipc", "shareable"]);
    let first_pid = s.pid(&first);
    let of = format!("container:{first}");
    let second = s.sleeper(&["--pid", &of, "--network", &of, "--ipc", &of]);
    let second_pid = s.pid(&second);
    for ns in ["pid", "net", "ipc"] {
        let link = |pid: i32| fs::read_link(format!("/proc/{pid}/ns/{ns}")).expect("ns link");
        assert_eq!(link(first_pid), link(second_pid), "{ns} namespace");
    }
    let out = s.exec(&[], &second, &["ps", "-o", "args"]).success();
    assert_eq!(out.stdout.matches("sleep 1000").count(), 2, "{out}");
}

/// `--pid host`: the container sees the host's processes.
pub fn pid_host(s: &Session) {
    let name = s.sleeper(&["--pid", "host"]);
    let link = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/pid")).expect("ns link");
    assert_eq!(link(&s.pid(&name).to_string()), link("self"));
    let me = std::process::id().to_string();
    let out = s.exec(&[], &name, &["test", "-d", &format!("/proc/{me}")]);
    assert_eq!(
        out.code, 0,
        "the test process is not visible inside:\n{out}"
    );
}

/// `commit` (which pauses the container while it copies) makes an image of its filesystem.
pub fn commit(s: &Session) {
    let name = s.sleeper(&[]);
    s.exec(&[], &name, &["sh", "-c", "echo kept > /committed"])
        .success();
    let image = format!("localhost/{name}:committed");
    s.cli(&["commit", &name, &image]).success();
    assert_eq!(status(s, &name), "running");
    let out = s.run_image(&image, &["--rm"], &["cat", "/committed"]);
    assert_eq!(out.success().stdout, "kept\n");
    s.cli(&["rmi", &image]).success();
}

/// `--restart on-failure:N` starts a failing container again, N times.
pub fn restart_policy(s: &Session) {
    let name = s.start(&["--restart", "on-failure:2"], &["sh", "-c", "exit 3"]);
    wait_until("the container is restarted twice and stays exited", || {
        s.inspect(&name, "{{.RestartCount}} {{.State.Status}}") == "2 exited"
    });
    assert_eq!(s.inspect(&name, "{{.State.ExitCode}}"), "3");
}

/// A command that does not exist exits 127, one that cannot be executed 126: the engines tell
/// them apart by the runtime's words ("executable file not found", "permission denied").
pub fn run_command_not_found(s: &Session) {
    let out = s.run(&[], &["/no/such/program"]);
    assert_eq!(out.code, 127, "{out}");
    let out = s.run(&[], &["no-such-program-in-path"]);
    assert_eq!(out.code, 127, "{out}");
    let out = s.run(&[], &["/etc/passwd"]);
    assert_eq!(out.code, 126, "{out}");
}

/// `exec` of a command that does not exist or cannot be executed fails with the runtime's
/// reason: podman tells them apart (127, 126) by its words, Docker's exec says 126 for both.
pub fn exec_command_not_found(s: &Session) {
    let name = s.sleeper(&[]);
    let missing = s.exec(&[], &name, &["/no/such/program"]);
    let not_executable = s.exec(&[], &name, &["/etc/passwd"]);
    let expected = match s.engine.kind {
        Kind::Docker => (126, 126),
        Kind::Podman => (127, 126),
    };
    assert_eq!(
        (missing.code, not_executable.code),
        expected,
        "{missing}\n{not_executable}"
    );
    let said = format!("{}{}", missing.stdout, missing.stderr);
    assert!(said.contains("/no/such/program"), "{missing}");
}

/// `--user UID:GID` that the image's passwd does not know: the numbers as given, HOME=/.
pub fn run_user_unknown(s: &Session) {
    let out = s.run(
        &["--user", "4242:4343"],
        &["sh", "-c", "id -u; id -g; echo $HOME"],
    );
    assert_eq!(out.success().stdout, "4242\n4343\n/\n");
}

/// `--cgroupns private`: the container sees its own cgroup as the root.
pub fn cgroupns_private(s: &Session) {
    let name = s.sleeper(&["--cgroupns", "private"]);
    let host = fs::read_link("/proc/self/ns/cgroup").expect("own cgroup ns");
    let container = fs::read_link(format!("/proc/{}/ns/cgroup", s.pid(&name)));
    assert_ne!(container.expect("container cgroup ns"), host);
    let out = s
        .exec(&[], &name, &["grep", "memory", "/proc/self/cgroup"])
        .success();
    assert!(out.stdout.trim_end().ends_with(":/"), "{out}");
}

/// `--uts host`: the host's hostname, and no UTS namespace of its own.
pub fn uts_host(s: &Session) {
    let out = s.run(&["--uts", "host"], &["hostname"]).success();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(out.stdout, host);
}
