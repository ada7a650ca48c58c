//! `--pidfd-socket` (runc 1.2+): one message on the caller's socket, payload `standard` (the
//! init, from `create`/`run`) or `setns` (an exec'd process), carrying a pidfd of that process.
//! The receiver checks the fd is a pidfd of the process `state` or `--pid-file` names, and uses
//! it as containerd's shim does: to signal the process.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::common::fd_socket::FdSocket;
use crate::common::{COMMAND_TIMEOUT, Container};

/// The pid a pidfd refers to, from its fdinfo; panics if `fd` is no pidfd of a live process.
#[track_caller]
fn pid_of(pidfd: &OwnedFd) -> i32 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))
        .expect("fdinfo of the received fd");
    info.lines()
        .find_map(|line| line.strip_prefix("Pid:"))
        .and_then(|pid| pid.trim().parse().ok())
        .filter(|&pid| pid > 0)
        .unwrap_or_else(|| panic!("not a pidfd of a live process:\n{info}"))
}

fn kill_through(pidfd: &OwnedFd) {
    // SAFETY: plain syscall on an fd we own; a null siginfo means "as kill(2) would send it".
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    assert_eq!(
        ret,
        0,
        "pidfd_send_signal: {}",
        std::io::Error::last_os_error()
    );
}

fn state_pid(c: &Container) -> i32 {
    c.state_json()["pid"].as_i64().expect("state has a pid") as i32
}

#[test]
fn create_sends_a_pidfd_of_the_init() {
    let c = Container::with_args(&["sleep", "1000"]);
    let socket = FdSocket::bind(&c.dir.join("pidfd.sock"));
    c.create_with(&["--pidfd-socket", socket.path()]).success();
    let (payload, pidfd) = socket.receive(COMMAND_TIMEOUT);
    assert_eq!(payload, "standard");
    assert_eq!(pid_of(&pidfd), state_pid(&c));

    kill_through(&pidfd);
    c.wait_for_status("stopped", COMMAND_TIMEOUT);
}

#[test]
fn run_detached_sends_a_pidfd_of_the_init() {
    let c = Container::with_args(&["sleep", "1000"]);
    let socket = FdSocket::bind(&c.dir.join("pidfd.sock"));
    let bundle = c.bundle.to_str().unwrap();
    c.cmd(&[
        "run",
        "--detach",
        "--bundle",
        bundle,
        "--pidfd-socket",
        socket.path(),
        &c.id,
    ])
    .success();
    let (payload, pidfd) = socket.receive(COMMAND_TIMEOUT);
    assert_eq!(payload, "standard");
    assert_eq!(c.status().as_deref(), Some("running"));
    assert_eq!(pid_of(&pidfd), state_pid(&c));

    kill_through(&pidfd);
    c.wait_for_status("stopped", COMMAND_TIMEOUT);
}

#[test]
fn exec_sends_a_pidfd_of_the_exec_process() {
    let mut c = Container::new();
    c.start_sleeper();
    let socket = FdSocket::bind(&c.dir.join("pidfd.sock"));
    let pid_file = c.dir.join("exec.pid");
    c.exec(
        &[
            "--detach",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--pidfd-socket",
            socket.path(),
        ],
        &["sleep", "1000"],
    )
    .success();
    let (payload, pidfd) = socket.receive(COMMAND_TIMEOUT);
    assert_eq!(payload, "setns");
    let exec_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(pid_of(&pidfd), exec_pid);

    kill_through(&pidfd);
    // A pidfd turns readable when its process has exited (the container's init, sleep, never
    // reaps it).
    let mut poll = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let ready = nix::poll::poll(&mut poll, PollTimeout::from(10_000u16)).unwrap();
    assert_eq!(ready, 1, "the exec process outlived SIGKILL");
    assert_eq!(c.status().as_deref(), Some("running"));
}

#[test]
fn an_unreachable_pidfd_socket_fails_create_and_leaves_nothing() {
    let c = Container::with_args(&["true"]);
    let missing = c.dir.join("nobody-listens.sock");
    let out = c
        .create_with(&["--pidfd-socket", missing.to_str().unwrap()])
        .failure();
    assert!(out.stderr.contains("pidfd-socket"), "{out}");
    assert_eq!(
        c.status(),
        None,
        "the container exists after a failed create"
    );
    c.assert_no_leaks();
}

#[test]
fn the_readme_example_kills_the_init_through_its_pidfd() {
    let c = Container::new();
    let out = c.run_readme_example("pidfd-demo").success();
    assert!(out.stdout.starts_with("standard "), "{out}");
}
