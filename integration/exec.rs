//! `exec` into a running container, and fds passed through with `--preserve-fds`.

use std::fs;

use serde_json::json;

use crate::common::{COMMAND_TIMEOUT, Container, runtime};

#[test]
fn exec_propagates_exit_code() {
    let mut c = Container::new();
    c.start_sleeper();
    let out = c.exec(&[], &["sh", "-c", "exit 7"]);
    assert_eq!(out.code, 7, "{out}");
}

#[test]
fn exec_killed_by_signal_exits_128_plus_signal() {
    let mut c = Container::new();
    c.start_sleeper();
    let out = c.exec(&[], &["sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.code, 128 + 9, "{out}");
}

#[test]
fn exec_sets_env_cwd_and_user() {
    let mut c = Container::new();
    c.start_sleeper();
    let out = c
        .exec(
            &[
                "--env",
                "GREETING=hi",
                "--cwd",
                "/tmp",
                "--user",
                "1000:1000",
            ],
            &["sh", "-c", "echo $GREETING; pwd; id -u; id -g"],
        )
        .success();
    assert_eq!(out.stdout, "hi\n/tmp\n1000\n1000\n");
}

#[test]
fn exec_joins_the_container_namespaces() {
    let mut c = Container::new();
    c.start_sleeper();
    let script = "for ns in pid net ipc uts mnt; do readlink /proc/1/ns/$ns; readlink /proc/self/ns/$ns; done";
    let out = c.exec(&[], &["sh", "-c", script]).success();
    let links: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(links.len(), 10, "{out}");
    for pair in links.chunks(2) {
        assert_eq!(pair[0], pair[1], "exec is not in the init's namespace");
    }
}

#[test]
fn exec_into_a_created_container_enters_its_time_namespace() {
    // The init is not in its new time namespace until its execve: its pidfd gives the host's.
    let c = Container::with_args(&["sleep", "1000"]);
    c.configure_json(|config| {
        let linux = &mut config["linux"];
        linux["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({"type": "time"}));
        linux["timeOffsets"] = json!({"boottime": {"secs": 864000}});
    });
    c.create().success();
    let inside = c.exec(&[], &["cat", "/proc/uptime"]).success();
    let boottime = |uptime: &str| -> f64 {
        let seconds = uptime.split_whitespace().next().expect("uptime");
        seconds.parse().expect("seconds")
    };
    let host = boottime(&fs::read_to_string("/proc/uptime").unwrap());
    let offset = boottime(&inside.stdout) - host;
    assert!(
        (863_000.0..865_000.0).contains(&offset),
        "the exec'd process sees a boot time {offset} s off the host's: {inside}"
    );
}

#[test]
fn exec_process_file_runs_an_oci_process() {
    // containerd and conmon pass `--process FILE` with an OCI process object.
    let mut c = Container::new();
    c.start_sleeper();
    let process = c.dir.join("process.json");
    let json = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo from-process-file $X"],
        "env": ["PATH=/bin", "X=1"],
        "cwd": "/"
    });
    fs::write(&process, json.to_string()).unwrap();
    let out = c
        .exec(&["--process", process.to_str().unwrap()], &[])
        .success();
    assert_eq!(out.stdout, "from-process-file 1\n");
}

#[test]
fn exec_detach_writes_pid_file() {
    let mut c = Container::new();
    c.start_sleeper();
    let pid_file = c.dir.join("exec.pid");
    c.exec(
        &["--detach", "--pid-file", pid_file.to_str().unwrap()],
        &["sleep", "1000"],
    )
    .success();
    let pid = fs::read_to_string(&pid_file).expect("pid file");
    let pid: i32 = pid.parse().expect("decimal pid without newline");
    let ps = c.cmd(&["ps", "--format", "json", &c.id]).success();
    assert!(
        ps.stdout.contains(&pid.to_string()),
        "exec'd pid not in ps: {ps}"
    );
}

#[test]
fn exec_that_cannot_start_its_process_exits_255() {
    // runc's code: callers tell an exec that never ran from the process's own exit status.
    let mut c = Container::new();
    c.start_sleeper();
    for args in [
        &["/no/such/program"][..],
        &["/etc"],
        &["no-such-program-in-path"],
    ] {
        let out = c.exec(&[], args);
        assert_eq!(out.code, 255, "{out}");
        assert!(out.stderr.contains("exec failed"), "{out}");
    }
    let out = c.exec(&["--detach"], &["/no/such/program"]);
    assert_eq!(out.code, 255, "{out}");
}

#[test]
fn exec_into_stopped_container_fails() {
    let mut c = Container::new();
    c.start_sleeper();
    c.kill("KILL").success();
    c.wait_for_status("stopped", COMMAND_TIMEOUT);
    c.exec(&[], &["/bin/true"]).failure();
}

/// Runs the runtime through `sh` so that `sh` puts `file` on fd 3 — the fd the runtime must
/// pass through with `--preserve-fds 1`.
fn with_fd3(c: &Container, file: &std::path::Path, args: &[&str]) -> crate::common::Output {
    let script = format!("exec \"$@\" 3>>'{}'", file.display());
    let root = c.root.to_str().unwrap();
    let mut full = vec![
        "-c",
        &script,
        "sh",
        runtime().to_str().unwrap(),
        "--root",
        root,
    ];
    full.extend_from_slice(args);
    c.spawn_program(std::path::Path::new("/bin/sh"), &full, |_| {})
        .wait(COMMAND_TIMEOUT)
}

#[test]
fn run_preserve_fds_passes_fd_3() {
    let mut c = Container::new();
    c.configure(|spec| {
        crate::common::set_args(spec, &["sh", "-c", "echo preserved >&3"]);
    });
    let file = c.dir.join("fd3.txt");
    let bundle = c.bundle.to_str().unwrap().to_string();
    with_fd3(
        &c,
        &file,
        &["run", "--preserve-fds", "1", "--bundle", &bundle, &c.id],
    )
    .success();
    assert_eq!(fs::read_to_string(&file).unwrap(), "preserved\n");
}

#[test]
fn exec_preserve_fds_passes_fd_3() {
    let mut c = Container::new();
    c.start_sleeper();
    let file = c.dir.join("fd3.txt");
    with_fd3(
        &c,
        &file,
        &[
            "exec",
            "--preserve-fds",
            "1",
            &c.id,
            "sh",
            "-c",
            "echo exec-preserved >&3",
        ],
    )
    .success();
    assert_eq!(fs::read_to_string(&file).unwrap(), "exec-preserved\n");
}

#[test]
fn fds_beyond_preserved_ones_are_closed() {
    let mut c = Container::new();
    // fd 3 is open in the runtime but not preserved: the container must not see it.
    c.configure(|spec| {
        crate::common::set_args(spec, &["sh", "-c", "ls /proc/self/fd"]);
    });
    let file = c.dir.join("fd3.txt");
    let bundle = c.bundle.to_str().unwrap().to_string();
    let out = with_fd3(&c, &file, &["run", "--bundle", &bundle, &c.id]).success();
    // ls itself opens one fd for the directory it lists: 0 1 2 and that one.
    let fds: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(fds.len(), 4, "unexpected fds in the container: {fds:?}");
    assert_eq!(&fds[..3], ["0", "1", "2"]);
}

#[test]
fn listen_fds_pass_through_with_listen_pid_one() {
    // Socket activation (sd_listen_fds): LISTEN_PID names the runtime's own pid (the shell
    // execs it), LISTEN_FDS=1 hands it fd 3; the runtime passes fd 3 on and tells the container
    // that its pid 1 owns it.
    let mut c = Container::new();
    c.configure(|spec| {
        crate::common::set_args(
            spec,
            &[
                "sh",
                "-c",
                "echo $LISTEN_FDS $LISTEN_PID; echo activated >&3",
            ],
        );
    });
    let file = c.dir.join("fd3.txt");
    let bundle = c.bundle.to_str().unwrap().to_string();
    let script = format!(
        "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\" 3>>'{}'",
        file.display()
    );
    let root = c.root.to_str().unwrap();
    let args = [
        "-c",
        &script,
        "sh",
        runtime().to_str().unwrap(),
        "--root",
        root,
        "run",
        "--bundle",
        &bundle,
        &c.id,
    ];
    let out = c
        .spawn_program(std::path::Path::new("/bin/sh"), &args, |_| {})
        .wait(COMMAND_TIMEOUT)
        .success();
    assert_eq!(out.stdout, "1 1\n");
    assert_eq!(fs::read_to_string(&file).unwrap(), "activated\n");
}
