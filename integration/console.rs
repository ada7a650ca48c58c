//! `--console-socket`: runc's protocol, one `sendmsg` carrying the pty master with SCM_RIGHTS.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use oci_spec::runtime::BoxBuilder;

use crate::common::fd_socket::FdSocket;
use crate::common::{COMMAND_TIMEOUT, Container, process_mut, set_args};

/// Reads everything the container wrote to the pty, until the slave side is closed.
fn drain(master: OwnedFd, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut master = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let wait_ms = remaining.as_millis().min(u16::MAX as u128) as u16;
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(wait_ms)).expect("poll the pty master");
        assert!(
            ready > 0,
            "pty output did not end within {timeout:?}; so far: {:?}",
            String::from_utf8_lossy(&out)
        );
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // EIO: every slave fd is closed — the container is done.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => panic!("reading the pty master: {e}"),
        }
    }
    String::from_utf8_lossy(&out).replace('\r', "")
}

#[test]
fn console_socket_receives_the_pty_master() {
    let mut c = Container::new();
    c.configure(|spec| {
        set_args(spec, &["sh", "-c", "tty; stty size; echo done"]);
        let process = process_mut(spec);
        process.set_terminal(Some(true));
        process.set_console_size(Some(
            BoxBuilder::default()
                .height(30u64)
                .width(100u64)
                .build()
                .unwrap(),
        ));
    });
    let socket = FdSocket::bind(&c.dir.join("console.sock"));
    c.create_with(&["--console-socket", socket.path()])
        .success();
    let (name, master) = socket.receive(COMMAND_TIMEOUT);
    assert!(
        name.contains("pts") || name.contains("ptmx"),
        "payload should name the pty: {name:?}"
    );

    c.start().success();
    let output = drain(master, COMMAND_TIMEOUT);
    assert_eq!(output, "/dev/pts/0\n30 100\ndone\n");
}

#[test]
fn exec_tty_sends_its_pty_over_the_console_socket() {
    // As containerd calls it: detached, the pty's master handed over the console socket (runc
    // refuses a console socket without --detach).
    let mut c = Container::new();
    c.start_sleeper();
    let socket = FdSocket::bind(&c.dir.join("exec-console.sock"));
    c.exec(
        &["--detach", "--tty", "--console-socket", socket.path()],
        &["sh", "-c", "tty; echo done"],
    )
    .success();
    let (_, master) = socket.receive(COMMAND_TIMEOUT);
    let output = drain(master, COMMAND_TIMEOUT);
    let mut lines = output.lines();
    let tty = lines.next().unwrap_or_default();
    assert!(
        tty.starts_with("/dev/pts/"),
        "not a pty of the container's devpts: {output:?}"
    );
    assert_eq!(lines.next(), Some("done"), "{output:?}");
}

#[test]
fn run_with_terminal_and_no_console_socket_proxies_the_pty() {
    // `run` in the foreground with terminal: true relays between its own stdio and the
    // container's pty. util-linux `script` gives the runtime a terminal to relay to.
    let mut c = Container::new();
    c.configure(|spec| {
        set_args(spec, &["sh", "-c", "tty; echo proxied"]);
        process_mut(spec).set_terminal(Some(true));
    });
    let command = format!(
        "{} --root {} run --bundle {} {}",
        crate::common::runtime().display(),
        c.root.display(),
        c.bundle.display(),
        c.id
    );
    let out = c
        .spawn_program(
            std::path::Path::new("/usr/bin/script"),
            &["--quiet", "--return", "--command", &command, "/dev/null"],
            |_| {},
        )
        .wait(COMMAND_TIMEOUT)
        .success();
    // `script` turns the EOF of its own stdin (/dev/null) into a control character for the
    // pty, which the container's terminal may echo (`^@`) anywhere, depending on timing.
    let stdout = out.stdout.replace('\r', "");
    let lines: Vec<&str> = stdout.lines().collect();
    let tty = lines.iter().position(|l| l.ends_with("/dev/pts/0"));
    let proxied = lines.iter().position(|l| l.ends_with("proxied"));
    assert!(tty.is_some() && tty < proxied, "{out}");
}

/// The terminal of a non-root process is its own (runc gives the process's stdio to its uid;
/// the group stays devpts's `gid=5`, tty, even though the busybox image has no such group).
#[test]
fn the_terminal_belongs_to_the_process_user() {
    let mut c = Container::new();
    c.configure(|spec| {
        set_args(
            spec,
            &["sh", "-c", "stat -L -c %u:%g /proc/self/fd/0 $(tty)"],
        );
        let process = process_mut(spec);
        process.set_terminal(Some(true));
        process.user_mut().set_uid(1000);
        process.user_mut().set_gid(1000);
    });
    let socket = FdSocket::bind(&c.dir.join("console.sock"));
    c.create_with(&["--console-socket", socket.path()])
        .success();
    let (_, master) = socket.receive(COMMAND_TIMEOUT);
    c.start().success();
    assert_eq!(drain(master, COMMAND_TIMEOUT), "1000:5\n1000:5\n");
}

#[test]
fn an_exec_terminal_belongs_to_the_exec_user() {
    let mut c = Container::new();
    c.start_sleeper();
    let socket = FdSocket::bind(&c.dir.join("exec-console.sock"));
    c.exec(
        &[
            "--detach",
            "--tty",
            "--user",
            "1000:1000",
            "--console-socket",
            socket.path(),
        ],
        &["sh", "-c", "stat -L -c %u:%g $(tty)"],
    )
    .success();
    let (_, master) = socket.receive(COMMAND_TIMEOUT);
    assert_eq!(drain(master, COMMAND_TIMEOUT), "1000:5\n");
}

/// Not only terminals: a non-root process may reopen the stdout the caller gave it (nginx-style
/// images write their logs to /dev/stdout), as with runc.
#[test]
fn a_non_root_process_can_reopen_its_stdout() {
    let mut c = Container::new();
    c.configure(|spec| {
        set_args(spec, &["sh", "-c", "echo reopened > /dev/stdout"]);
        process_mut(spec).user_mut().set_uid(1000);
        process_mut(spec).user_mut().set_gid(1000);
    });
    let out = c.run().success();
    assert_eq!(out.stdout, "reopened\n");
}
